//! The region's store: SQL lives here and nowhere else.
//!
//! SQLite is the embedded default. All writes go through one writer thread that commits them in
//! groups: while one commit waits for its fsync, the next requests queue and share the next
//! commit. Each request runs in its own savepoint, so one failing request never undoes another,
//! and a request is answered only after its commit is durable. Reads use a small pool of
//! read-only connections that see committed snapshots (WAL mode).

mod dashboard;
mod ledger;
mod migration;
mod ops;
mod queries;
mod retention;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use sovereign_model::ConsentScope;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub use ledger::*;
pub use migration::*;
pub use ops::*;
pub use queries::*;
pub use retention::*;

/// Requests waiting for the writer; senders wait when it is full (backpressure).
pub const WRITE_QUEUE_JOBS_MAX: usize = 4096;
/// Most requests one commit carries.
pub const COMMIT_BATCH_JOBS_MAX: usize = 512;
/// Read connections per region store.
pub const READ_CONNECTIONS_MAX: usize = 8;
const _: () = assert!(COMMIT_BATCH_JOBS_MAX <= WRITE_QUEUE_JOBS_MAX);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("consent for {0} is not granted")]
    ConsentRequired(ConsentScope),
    #[error("record not found")]
    NotFound,
    #[error("version conflict: current version is {current}")]
    VersionConflict { current: i64 },
    #[error("an account with this phone number exists")]
    PhoneTaken,
    #[error("the user is being moved to another region; retry in a moment")]
    Migrating,
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("store is closed")]
    Closed,
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("store schema version {found} is newer than this program's {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("store job panicked")]
    Panicked,
    #[error("{0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StoreError {
    /// Errors raised by the schema's own triggers become the typed errors they stand for.
    fn from(error: rusqlite::Error) -> StoreError {
        match &error {
            rusqlite::Error::SqliteFailure(_, Some(message))
                if message.starts_with("user_migrating") =>
            {
                StoreError::Migrating
            }
            _ => StoreError::Sqlite(error),
        }
    }
}

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A queued write. Called with the connection to run it, or with `None` to fail it unrun.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
];

/// A region's SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<Job>,
    readers: Arc<Readers>,
}

struct Readers {
    pool: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable
    // before we answer (an fsync of the WAL per commit group).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `path` and starts its writer.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut writer_conn = open_connection(path)?;
        migrate(&mut writer_conn)?;
        let mut pool = Vec::with_capacity(READ_CONNECTIONS_MAX);
        for _ in 0..READ_CONNECTIONS_MAX {
            let conn = open_connection(path)?;
            conn.pragma_update(None, "query_only", "ON")?;
            pool.push(conn);
        }
        let (tx, rx) = mpsc::channel::<Job>(WRITE_QUEUE_JOBS_MAX);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .map_err(|e| StoreError::Commit(format!("starting writer thread: {e}")))?;
        Ok(Store {
            writer: tx,
            readers: Arc::new(Readers {
                pool: Mutex::new(pool),
                permits: Semaphore::new(READ_CONNECTIONS_MAX),
            }),
        })
    }

    /// Runs `f` in its own savepoint inside the next group commit and returns its result once
    /// that commit is durable. If `f` fails, its changes are rolled back and nothing else is.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => run_in_savepoint(conn, f),
                None => Err(StoreError::Commit("the transaction could not begin".into())),
            };
            Box::new(move |committed| {
                let outcome = match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Commit(e)),
                };
                let _ = reply.send(outcome);
            })
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read-only connection that sees the last committed state.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let _permit = readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers_for_task = Arc::clone(&readers);
        tokio::task::spawn_blocking(move || {
            // Invariant: a permit guarantees a pooled connection is free; the pool lock is only
            // poisoned if a push/pop panicked, which they cannot.
            let conn = readers_for_task
                .pool
                .lock()
                .expect("reader pool")
                .pop()
                .expect("permit");
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&conn)));
            readers_for_task
                .pool
                .lock()
                .expect("reader pool")
                .push(conn);
            result.unwrap_or(Err(StoreError::Panicked))
        })
        .await
        .map_err(|_| StoreError::Panicked)?
    }
}

fn run_in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("SAVEPOINT job")?;
    let result =
        std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or(Err(StoreError::Panicked));
    let end = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    conn.execute_batch(end)?;
    result
}

fn writer_loop(conn: Connection, mut jobs: mpsc::Receiver<Job>) {
    let mut completions: Vec<Completion> = Vec::with_capacity(COMMIT_BATCH_JOBS_MAX);
    while let Some(first) = jobs.blocking_recv() {
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string());
        if let Err(e) = begun {
            tracing::error!(error = %e, "store writer could not begin a transaction");
            let _ = conn.execute_batch("ROLLBACK");
            first(None)(Err(e));
            continue;
        }
        completions.push(first(Some(&conn)));
        while completions.len() < COMMIT_BATCH_JOBS_MAX {
            match jobs.try_recv() {
                Ok(job) => completions.push(job(Some(&conn))),
                Err(_) => break,
            }
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for complete in completions.drain(..) {
            complete(committed.clone());
        }
    }
}

/// Maps the store's own consent triggers to the typed error.
pub(crate) fn consent_error(error: rusqlite::Error, scope: ConsentScope) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(_, Some(message))
            if message.starts_with("consent_required") =>
        {
            StoreError::ConsentRequired(scope)
        }
        _ => StoreError::from(error),
    }
}
