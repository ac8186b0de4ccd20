//! The region's store: SQL lives here and nowhere else.
//!
//! SQLite is the embedded default; a region can instead live in PostgreSQL
//! ([`StoreLocation::Postgres`]). Every operation is written once against [`db::Connection`],
//! which speaks to either. All writes go through one writer thread that commits them in
//! groups: while one commit waits for its fsync, the next requests queue and share the next
//! commit. Each request runs in its own savepoint, so one failing request never undoes another,
//! and a request is answered only after its commit is durable. Reads use a small pool of
//! read-only connections that see committed snapshots (WAL mode).

mod dashboard;
pub mod db;
mod erasure;
mod ledger;
mod migration;
mod ops;
mod outbox;
mod queries;
mod retention;
mod sent;
mod sessions;
mod trust;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use db::{Connection, DbError, Dialect, OptionalExtension};
use sovereign_model::ConsentScope;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub use erasure::*;
pub use ledger::*;
pub use migration::*;
pub use ops::*;
pub use queries::*;
pub use retention::*;
pub use sessions::*;

/// Requests waiting for the writer; senders wait when it is full (backpressure).
pub const WRITE_QUEUE_JOBS_MAX: usize = 4096;
/// Most requests one commit carries.
pub const COMMIT_BATCH_JOBS_MAX: usize = 512;
/// Read connections per region store.
pub const READ_CONNECTIONS_MAX: usize = 8;
/// Of those, how many background work (a migration's snapshots) may hold at once: the rest
/// stay free for live requests, which would otherwise wait for a connection held by a
/// migration's thread, running at a lower CPU priority (a priority inversion).
pub const BACKGROUND_READ_CONNECTIONS_MAX: usize = 2;
const _: () = assert!(BACKGROUND_READ_CONNECTIONS_MAX < READ_CONNECTIONS_MAX);
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
    #[error("{0}")]
    Database(DbError),
    #[error("{message}")]
    Open {
        /// The file, or the database URL without its password.
        location: String,
        /// What went wrong, naming the location.
        message: String,
    },
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
    /// A per-user quota of `server.toml` would be passed by this write.
    #[error("quota {} of {limit} is reached", quota.name())]
    QuotaExceeded { quota: Quota, limit: i64 },
    /// The directory's backend (etcd) cannot be reached, or cannot confirm an answer.
    #[error("the directory is unavailable: {0}")]
    DirectoryUnavailable(String),
    /// The ledger's tables no longer extend its last signed checkpoint (or an entry's seal does
    /// not hold): the region refuses to append to it or sign over it.
    #[error("the ledger was changed outside the server; refusing to sign over it: {0}")]
    LedgerRewritten(String),
}

impl From<DbError> for StoreError {
    /// Errors raised by the schema's own triggers (on either backend) become the typed errors
    /// they stand for.
    fn from(error: DbError) -> StoreError {
        match error.message() {
            Some(message) if message.starts_with("user_migrating") => StoreError::Migrating,
            _ => StoreError::Database(error),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::from(DbError::from(error))
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> StoreError {
        StoreError::from(DbError::from(error))
    }
}

/// Where a region's store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file (the embedded default).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database, by `postgres://` URL; one region per database.
    Postgres(String),
}

impl StoreLocation {
    /// The location for printing: a PostgreSQL URL's password is left out.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => redact_url(url),
        }
    }
}

/// `url` with the password of its user info replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// How long connecting to PostgreSQL may take before the store reports it unreachable.
pub const POSTGRES_CONNECT_SECONDS_MAX: u64 = 10;

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A queued write. Called with the connection to run it, or with `None` to fail it unrun.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// Which lane of the writer's queue a write waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Requests of users: every one queued goes into the next commit.
    Live,
    /// Work that may wait (a migration's copies, fences and erasures): committed on a thread
    /// of its own at a lower CPU priority, in commits of their own that start only when no
    /// live commit waits for the connection and run for at most
    /// [`BACKGROUND_WORK_PER_COMMIT`] (see [`Writer`]), so they never hold a live write back
    /// by more than that and its fsync.
    Background,
}

/// How long the background writes of one commit may run (at least one runs per commit, so
/// they always make progress).
pub const BACKGROUND_WORK_PER_COMMIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5_cursors.sql"),
    include_str!("schema_v6_consent_outbox.sql"),
    include_str!("schema_v7_ledger.sql"),
    include_str!("schema_v8_erasure.sql"),
    include_str!("schema_v9_sessions.sql"),
];

/// The same migrations for PostgreSQL: the same tables, and triggers that raise the same
/// messages; the `schema_version` table records how many ran.
const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("postgres/schema_v1.sql"),
    include_str!("postgres/schema_v2.sql"),
    include_str!("postgres/schema_v3.sql"),
    include_str!("postgres/schema_v4.sql"),
    include_str!("postgres/schema_v5_cursors.sql"),
    include_str!("postgres/schema_v6_consent_outbox.sql"),
    include_str!("postgres/schema_v7_ledger.sql"),
    include_str!("postgres/schema_v8_erasure.sql"),
    include_str!("postgres/schema_v9_sessions.sql"),
];
const _: () = assert!(MIGRATIONS.len() == POSTGRES_MIGRATIONS.len());

/// The schema version this program creates and reads: how many migrations there are.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A region's store, in SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Live writes, for the `store-writer` thread.
    live: mpsc::Sender<Job>,
    /// Background writes, for the `store-background` thread (see [`Writer`]).
    background: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    scrubber: Arc<erasure::Scrubber>,
}

struct Readers {
    pool: Mutex<Vec<Connection>>,
    permits: Semaphore,
    /// Taken before `permits` by background reads (see [`BACKGROUND_READ_CONNECTIONS_MAX`]).
    background_permits: Semaphore,
    /// PostgreSQL readers are opened when first needed (and again after a connection breaks);
    /// SQLite's are all opened up front, so this is `None` there.
    postgres: Option<postgres::Config>,
}

/// Prepared statements kept per SQLite connection.
pub const STATEMENT_CACHE_CAPACITY: usize = 512;

pub(crate) fn open_connection(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Every statement the store runs stays prepared (rusqlite keeps 16 by default; the store
    // has a few hundred distinct ones, and preparing one again costs as much as running it).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable
    // before we answer (an fsync of the WAL per commit group).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted cells and freed pages are zeroed, not left in the file's free space: an erased
    // row's sealed bytes must not outlive the commit that erased it (the WAL frames that held
    // them go at the next `Store::scrub`).
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Statement journals, sorters and transient indices stay in memory: on disk they are
    // files in the system's temporary directory (outside the region's data, not zeroed when
    // freed) holding pages of sealed rows, and creating one per statement cost more than half
    // of a migration's writes.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

fn migrate(conn: &mut rusqlite::Connection) -> Result<(), StoreError> {
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

fn postgres_config(url: &str) -> Result<postgres::Config, StoreError> {
    let open_error = |message: String| StoreError::Open {
        location: redact_url(url),
        message,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(open_error(format!(
            "{} is not a PostgreSQL URL (expected postgres://user@host:port/database)",
            redact_url(url)
        )));
    }
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        open_error(format!(
            "invalid URL {}: {}",
            redact_url(url),
            db::postgres_error_text(&e)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(POSTGRES_CONNECT_SECONDS_MAX));
    }
    if config.get_dbname().is_none() {
        return Err(open_error(format!("{} names no database", redact_url(url))));
    }
    Ok(config)
}

/// What a PostgreSQL connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

pub(crate) fn connect_postgres(
    config: &postgres::Config,
    role: Role,
) -> Result<Connection, StoreError> {
    let client = config
        .connect(postgres::NoTls)
        .map_err(|e| StoreError::Open {
            location: postgres_location(config),
            message: format!(
                "cannot connect to {}: {}",
                postgres_location(config),
                db::postgres_error_text(&e)
            ),
        })?;
    let conn = Connection::postgres(client);
    // Every commit waits for its WAL flush, as SQLite's synchronous=FULL does.
    conn.execute_batch("SET synchronous_commit = on; SET client_min_messages = warning")?;
    if role == Role::Reader {
        conn.execute_batch("SET default_transaction_read_only = on")?;
    }
    Ok(conn)
}

fn postgres_location(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or("");
    format!("postgres://{host}:{port}/{dbname}")
}

/// An arbitrary constant: the advisory lock that serialises schema migrations of one database.
const POSTGRES_MIGRATION_LOCK: i64 = 0x53_56_52_4e; // "SVRN"

fn migrate_postgres(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        conn.query_row(
            "SELECT pg_advisory_xact_lock(?1)::text",
            db::params![POSTGRES_MIGRATION_LOCK],
            |_| Ok(()),
        )?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (\
               one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version BIGINT NOT NULL)",
        )?;
        let version: i64 = conn
            .query_row("SELECT version FROM schema_version", db::params![], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let supported = POSTGRES_MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported,
            });
        }
        for (index, sql) in POSTGRES_MIGRATIONS
            .iter()
            .enumerate()
            .skip(version as usize)
        {
            conn.execute_batch(sql)?;
            conn.execute(
                "INSERT INTO schema_version (one, version) VALUES (TRUE, ?1) \
                 ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                db::params![index as i64 + 1],
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    result
}

/// Where a region's store is: `database` (a `postgres://` URL) when given, else the region's
/// SQLite file under `data_dir`.
pub fn region_store_location(
    data_dir: &Path,
    region: &sovereign_model::RegionId,
    database: Option<&str>,
) -> StoreLocation {
    match database {
        Some(url) => StoreLocation::Postgres(url.to_owned()),
        None => StoreLocation::Sqlite(
            data_dir
                .join("regions")
                .join(region.as_str())
                .join("store.sqlite"),
        ),
    }
}

/// A read-only connection to a region's store, for offline tools (`ledger verify`, the retention
/// report) that read it beside a running server. It does not create or migrate anything.
///
/// # Errors
/// When the file does not exist or cannot be opened, or the database cannot be reached.
pub fn open_read_only(location: &StoreLocation) -> Result<Connection, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => {
            if !path.exists() {
                return Err(StoreError::Open {
                    location: path.display().to_string(),
                    message: format!("no store at {}", path.display()),
                });
            }
            let conn = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            Ok(Connection::Sqlite(conn))
        }
        StoreLocation::Postgres(url) => connect_postgres(&postgres_config(url)?, Role::Reader),
    }
}

impl Store {
    /// Opens (creating and migrating if needed) the store at `location`.
    ///
    /// # Errors
    /// When the file or database cannot be opened or migrated, or the URL is not valid.
    pub fn open_at(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Store::open(path),
            StoreLocation::Postgres(url) => Store::open_postgres(url),
        }
    }

    /// Opens (creating the tables if needed) the region's PostgreSQL database at `url` and
    /// starts its writer. Readers connect when first needed.
    ///
    /// # Errors
    /// When the URL is not valid, the server cannot be reached, or the schema cannot be
    /// migrated.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let config = postgres_config(url)?;
        let writer_conn = connect_postgres(&config, Role::Writer)?;
        migrate_postgres(&writer_conn)?;
        let scrubber = erasure::Scrubber::Postgres(Box::new(config.clone()));
        Store::start(writer_conn, Vec::new(), Some(config), scrubber, None)
    }

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
            pool.push(Connection::Sqlite(conn));
        }
        // The writer's commits never checkpoint the WAL themselves (SQLite's default makes the
        // commit that passes 1,000 pages copy them all into the database and fsync it, which
        // puts that wait on whichever request's commit it was): a thread of its own does it.
        writer_conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoint = start_checkpointer(open_connection(path)?)?;
        let scrubber = erasure::Scrubber::Sqlite(path.to_path_buf());
        Store::start(
            Connection::Sqlite(writer_conn),
            pool,
            None,
            scrubber,
            Some(checkpoint),
        )
    }

    fn start(
        writer_conn: Connection,
        pool: Vec<Connection>,
        postgres: Option<postgres::Config>,
        scrubber: erasure::Scrubber,
        checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
    ) -> Result<Store, StoreError> {
        let writer = Arc::new(Writer {
            conn: Mutex::new(writer_conn),
            reconnect: postgres.clone(),
            live_waiting: AtomicUsize::new(0),
            parked: Mutex::new(Vec::new()),
            checkpoint,
        });
        let (live, live_jobs) = mpsc::channel::<Job>(WRITE_QUEUE_JOBS_MAX);
        let (background, background_jobs) = mpsc::channel::<Job>(WRITE_QUEUE_JOBS_MAX);
        let live_writer = Arc::clone(&writer);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(live_writer, live_jobs, Lane::Live))
            .map_err(|e| StoreError::Commit(format!("starting writer thread: {e}")))?;
        std::thread::Builder::new()
            .name("store-background".into())
            .spawn(move || {
                if let Err(e) =
                    crate::migration::lower_thread_priority(crate::migration::MIGRATION_NICE)
                {
                    tracing::warn!(error = %e, "could not lower the background writer's priority");
                }
                writer_loop(writer, background_jobs, Lane::Background)
            })
            .map_err(|e| StoreError::Commit(format!("starting writer thread: {e}")))?;
        Ok(Store {
            live,
            background,
            readers: Arc::new(Readers {
                pool: Mutex::new(pool),
                permits: Semaphore::new(READ_CONNECTIONS_MAX),
                background_permits: Semaphore::new(BACKGROUND_READ_CONNECTIONS_MAX),
                postgres,
            }),
            scrubber: Arc::new(scrubber),
        })
    }

    /// Runs `f` in its own savepoint inside the next group commit and returns its result once
    /// that commit is durable. If `f` fails, its changes are rolled back and nothing else is.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_in(Lane::Live, f).await
    }

    /// [`Store::write`] for work that may wait behind live requests (see [`Lane::Background`]):
    /// a migration's writes, so that moving users does not slow down the users who stay.
    pub(crate) async fn write_background<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_in(Lane::Background, f).await
    }

    async fn write_in<T, F>(&self, lane: Lane, f: F) -> Result<T, StoreError>
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
        let queue = match lane {
            Lane::Live => &self.live,
            Lane::Background => &self.background,
        };
        queue.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::read`] for work that may wait behind live requests (a migration's snapshots):
    /// it never holds more than [`BACKGROUND_READ_CONNECTIONS_MAX`] connections.
    pub(crate) async fn read_background<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _background = self
            .readers
            .background_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        self.read(f).await
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
            // Invariant: the pool lock is only poisoned if a push/pop panicked, which they
            // cannot.
            let pooled = readers_for_task.pool.lock().expect("reader pool").pop();
            let conn = match (pooled, &readers_for_task.postgres) {
                (Some(conn), _) => conn,
                (None, Some(config)) => connect_postgres(config, Role::Reader)?,
                // Invariant: SQLite's pool holds READ_CONNECTIONS_MAX connections and a permit
                // guarantees one of them is free.
                (None, None) => unreachable!("a permit guarantees a pooled connection"),
            };
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&conn)));
            // A PostgreSQL connection the server closed is dropped; the next read opens another.
            if !conn.is_closed() {
                readers_for_task
                    .pool
                    .lock()
                    .expect("reader pool")
                    .push(conn);
            }
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
    const UNDO: &str = "ROLLBACK TO job; RELEASE job";
    match result {
        Ok(value) => match conn.execute_batch("RELEASE job") {
            Ok(()) => Ok(value),
            Err(e) => {
                // On PostgreSQL a statement that failed inside a job that still returned Ok
                // leaves the savepoint aborted; undo the job so that the rest of the group
                // can commit.
                let _ = conn.execute_batch(UNDO);
                Err(e.into())
            }
        },
        Err(e) => {
            conn.execute_batch(UNDO)?;
            Err(e)
        }
    }
}

/// An arbitrary constant: the advisory lock a PostgreSQL writer holds for its transaction, so
/// that two processes writing one region's database (the server and `sovereign ops`, say) take
/// turns, as SQLite's `BEGIN IMMEDIATE` makes them.
const POSTGRES_WRITER_LOCK: i64 = 0x53_56_52_57; // "SVRW"

/// The writer's connection, which its two threads take in turn: `store-writer` commits live
/// writes, `store-background` (at [`crate::migration::MIGRATION_NICE`]) commits background
/// ones, so that the CPU a migration's writes cost is spent where live requests do not want
/// it, and a background commit never starts while a live one waits for the connection.
struct Writer {
    conn: Mutex<Connection>,
    /// Where a PostgreSQL writer reconnects when its server closed the connection.
    reconnect: Option<postgres::Config>,
    /// Live commits waiting for the connection.
    live_waiting: AtomicUsize,
    /// The jobs of a live commit waiting for the connection while a background commit holds
    /// it: that commit runs them before it ends, so that they share its fsync instead of
    /// waiting for it and then for one of their own.
    parked: Mutex<Vec<Job>>,
    /// SQLite's checkpointer (see [`start_checkpointer`]), told after each commit.
    checkpoint: Option<std::sync::mpsc::SyncSender<()>>,
}

/// How long the checkpointer gathers commits before it copies their WAL frames into the
/// database: one checkpoint (and one fsync of the database file) for all of them.
pub const CHECKPOINT_GATHER: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the thread that checkpoints a SQLite store's WAL on `conn`, [`CHECKPOINT_GATHER`]
/// after a commit tells it there is something to copy. Its checkpoints are PASSIVE: they
/// neither wait for nor hold back the writer or any reader (frames a reader still needs wait
/// for the next one). It ends when the store's writer does.
fn start_checkpointer(
    conn: rusqlite::Connection,
) -> Result<std::sync::mpsc::SyncSender<()>, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                std::thread::sleep(CHECKPOINT_GATHER);
                while rx.try_recv().is_ok() {}
                if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(%error, "WAL checkpoint failed; the next commit retries it");
                }
            }
        })
        .map_err(|e| StoreError::Commit(format!("starting the checkpointer: {e}")))?;
    Ok(tx)
}

/// A poisoned lock means a job panicked outside `catch_unwind`, which they cannot; what it
/// guards is still whole (every transaction ends in COMMIT or ROLLBACK).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writer {
    /// The connection for a live commit of `queued`; `None` when a background commit took
    /// every one of them in the meantime (and has committed them).
    fn take_live(
        &self,
        queued: &mut std::collections::VecDeque<Job>,
    ) -> Option<std::sync::MutexGuard<'_, Connection>> {
        if let Ok(conn) = self.conn.try_lock() {
            return Some(conn);
        }
        lock(&self.parked).extend(queued.drain(..));
        self.live_waiting.fetch_add(1, Ordering::SeqCst);
        let conn = lock(&self.conn);
        self.live_waiting.fetch_sub(1, Ordering::SeqCst);
        queued.extend(lock(&self.parked).drain(..));
        (!queued.is_empty()).then_some(conn)
    }

    /// The connection for a background commit, once no live commit waits for it.
    fn take_background(&self) -> std::sync::MutexGuard<'_, Connection> {
        loop {
            let conn = lock(&self.conn);
            if self.live_waiting.load(Ordering::SeqCst) == 0 {
                return conn;
            }
            drop(conn);
            std::thread::yield_now();
        }
    }
}

fn writer_loop(writer: Arc<Writer>, mut jobs: mpsc::Receiver<Job>, lane: Lane) {
    let mut completions: Vec<Completion> = Vec::with_capacity(COMMIT_BATCH_JOBS_MAX);
    // Jobs taken off the channel and not yet run.
    let mut queued = std::collections::VecDeque::<Job>::new();
    let take = |jobs: &mut mpsc::Receiver<Job>, queued: &mut std::collections::VecDeque<Job>| {
        while let Ok(job) = jobs.try_recv() {
            queued.push_back(job);
        }
    };
    loop {
        if queued.is_empty() {
            match jobs.blocking_recv() {
                Some(job) => queued.push_back(job),
                None => return,
            }
        }
        take(&mut jobs, &mut queued);
        let mut conn = match lane {
            Lane::Live => match writer.take_live(&mut queued) {
                Some(conn) => conn,
                None => continue,
            },
            Lane::Background => writer.take_background(),
        };
        // A PostgreSQL server that restarted closed our connection: open a new one.
        if let Some(config) = &writer.reconnect
            && conn.is_closed()
        {
            match connect_postgres(config, Role::Writer) {
                Ok(fresh) => *conn = fresh,
                Err(e) => {
                    drop(conn);
                    tracing::error!(error = %e, "store writer could not reconnect");
                    if let Some(first) = queued.pop_front() {
                        first(None)(Err(e.to_string()));
                    }
                    continue;
                }
            }
        }
        let begin = match conn.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE".to_owned(),
            // READ COMMITTED: with writers taking turns, each transaction sees every earlier
            // commit, as SQLite's single writer does.
            Dialect::Postgres => {
                format!("BEGIN; SELECT pg_advisory_xact_lock({POSTGRES_WRITER_LOCK})")
            }
        };
        let begun = conn.execute_batch(&begin).map_err(|e| e.to_string());
        if let Err(e) = begun {
            tracing::error!(error = %e, "store writer could not begin a transaction");
            let _ = conn.execute_batch("ROLLBACK");
            drop(conn);
            if let Some(first) = queued.pop_front() {
                first(None)(Err(e));
            }
            continue;
        }
        match lane {
            // Every live write queued, then those that came meanwhile: they all share the
            // commit's fsync.
            Lane::Live => {
                while completions.len() < COMMIT_BATCH_JOBS_MAX
                    && let Some(job) = queued.pop_front()
                {
                    completions.push(job(Some(&conn)));
                }
                take(&mut jobs, &mut queued);
                while completions.len() < COMMIT_BATCH_JOBS_MAX
                    && let Some(job) = queued.pop_front()
                {
                    completions.push(job(Some(&conn)));
                }
            }
            // Background work for a bounded time, and no longer once a live commit waits.
            Lane::Background => {
                let started = std::time::Instant::now();
                while completions.len() < COMMIT_BATCH_JOBS_MAX
                    && (completions.is_empty()
                        || (started.elapsed() < BACKGROUND_WORK_PER_COMMIT
                            && writer.live_waiting.load(Ordering::SeqCst) == 0))
                    && let Some(job) = queued.pop_front()
                {
                    completions.push(job(Some(&conn)));
                }
                // A live commit that came to wait for the connection meanwhile joins this one.
                let room = COMMIT_BATCH_JOBS_MAX
                    .saturating_sub(completions.len())
                    .max(1);
                let parked: Vec<Job> = {
                    let mut parked = lock(&writer.parked);
                    let n = parked.len().min(room);
                    parked.drain(..n).collect()
                };
                for job in parked {
                    completions.push(job(Some(&conn)));
                }
            }
        }
        let committed = commit(&conn);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        drop(conn);
        if let Some(checkpoint) = &writer.checkpoint {
            // Full means it is already told.
            let _ = checkpoint.try_send(());
        }
        for complete in completions.drain(..) {
            complete(committed.clone());
        }
    }
}

fn commit(conn: &Connection) -> Result<(), String> {
    if conn.dialect() == Dialect::Postgres {
        // PostgreSQL answers COMMIT of a failed transaction by rolling it back without an
        // error; a statement first tells the two apart, so no job is told its rows committed
        // when they did not.
        conn.execute_batch("SELECT 1").map_err(|e| e.to_string())?;
    }
    conn.execute_batch("COMMIT").map_err(|e| e.to_string())
}

/// Maps the store's own consent triggers to the typed error.
pub(crate) fn consent_error(error: DbError, scope: ConsentScope) -> StoreError {
    match error.message() {
        Some(message) if message.starts_with("consent_required") => {
            StoreError::ConsentRequired(scope)
        }
        _ => StoreError::from(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live write queued behind a migration's worth of background writes commits long before
    /// they are done: it waits for at most one commit's share of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_writes_go_ahead_of_background_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.sqlite")).unwrap();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut background = Vec::new();
        for _ in 0..200 {
            let (store, done) = (store.clone(), done.clone());
            background.push(tokio::spawn(async move {
                store
                    .write_background(|_| {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        Ok(())
                    })
                    .await
                    .unwrap();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
        }
        // Let the writer start on them.
        while done.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        store.write(|_| Ok(())).await.unwrap();
        let behind = 200 - done.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            behind >= 150,
            "the live write waited for {} of 200 background writes",
            200 - behind
        );
        for task in background {
            task.await.unwrap();
        }
    }

    /// Background writes run on a thread at the migration's CPU priority, live writes at the
    /// priority of the process that opened the store; both see each other's commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_writes_spend_cpu_at_the_migrations_priority() {
        fn nice() -> i32 {
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.sqlite")).unwrap();
        let opener = nice();
        let live = store
            .write(|conn| {
                conn.execute_batch("CREATE TABLE t (n INTEGER)")?;
                conn.execute("INSERT INTO t (n) VALUES (1)", [])?;
                Ok(nice())
            })
            .await
            .unwrap();
        let (background, seen) = store
            .write_background(|conn| {
                conn.execute("INSERT INTO t (n) VALUES (2)", [])?;
                let seen: i64 = conn.query_row("SELECT sum(n) FROM t", [], |row| row.get(0))?;
                Ok((nice(), seen))
            })
            .await
            .unwrap();
        assert_eq!(live, opener);
        assert_eq!(background, crate::migration::MIGRATION_NICE.max(opener));
        assert_eq!(seen, 3);
        let total: i64 = store
            .write(|conn| Ok(conn.query_row("SELECT sum(n) FROM t", [], |row| row.get(0))?))
            .await
            .unwrap();
        assert_eq!(total, 3);
    }

    /// No commit checkpoints the WAL itself, and the WAL is still checkpointed soon after
    /// commits, well before SQLite's own 1,000 pages would have made a commit do it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_beside_the_writer_not_by_its_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite");
        let store = Store::open(&path).unwrap();
        let every: i64 = store
            .write(|conn| Ok(conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(every, 0);
        let before = std::fs::metadata(&path).unwrap().len();
        store
            .write(|conn| {
                conn.execute_batch("CREATE TABLE t (b BLOB)")?;
                conn.execute(
                    "INSERT INTO t (b) VALUES (?1)",
                    [db::Value::Blob(vec![7; 256 * 1024])],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 256 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the commit's frames never reached the database file"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A migration's snapshots hold at most two of the eight read connections: with two held
    /// (and a third background read waiting for them), a live read still runs at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_reads_leave_connections_to_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.sqlite")).unwrap();
        let release = Arc::new(std::sync::Barrier::new(BACKGROUND_READ_CONNECTIONS_MAX + 1));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut held = Vec::new();
        for _ in 0..=BACKGROUND_READ_CONNECTIONS_MAX {
            let (store, release, running) = (store.clone(), release.clone(), running.clone());
            held.push(tokio::spawn(async move {
                store
                    .read_background(move |_| {
                        if running.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                            < BACKGROUND_READ_CONNECTIONS_MAX
                        {
                            release.wait();
                        }
                        Ok(())
                    })
                    .await
                    .unwrap();
            }));
        }
        while running.load(std::sync::atomic::Ordering::SeqCst) < BACKGROUND_READ_CONNECTIONS_MAX {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Give the third background read every chance to take a connection it must not get.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            running.load(std::sync::atomic::Ordering::SeqCst),
            BACKGROUND_READ_CONNECTIONS_MAX,
            "a background read ran beyond the cap"
        );
        let free = store.readers.permits.available_permits();
        assert_eq!(free, READ_CONNECTIONS_MAX - BACKGROUND_READ_CONNECTIONS_MAX);
        store.read(|_| Ok(())).await.unwrap();
        tokio::task::spawn_blocking(move || release.wait())
            .await
            .unwrap();
        for task in held {
            task.await.unwrap();
        }
        assert_eq!(
            running.load(std::sync::atomic::Ordering::SeqCst),
            BACKGROUND_READ_CONNECTIONS_MAX + 1
        );
    }

    /// Statement journals, sorters and temporary tables never go to a file outside the data
    /// directory (SQLite's default puts them in /var/tmp, holding pages of sealed rows).
    #[test]
    fn temporary_files_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(&dir.path().join("store.sqlite")).unwrap();
        let store: i64 = conn
            .pragma_query_value(None, "temp_store", |row| row.get(0))
            .unwrap();
        assert_eq!(store, 2, "temp_store is not MEMORY");
    }

    #[test]
    fn printed_urls_never_hold_the_password() {
        let cases = [
            (
                "postgres://sovereign:hunter2@db.internal:5432/in_mumbai",
                "postgres://sovereign:***@db.internal:5432/in_mumbai",
            ),
            (
                "postgres://sovereign@db.internal/in_mumbai",
                "postgres://sovereign@db.internal/in_mumbai",
            ),
            ("postgres://a:b:c@h/d", "postgres://a:***@h/d"),
            ("postgres://db.internal/x", "postgres://db.internal/x"),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn bad_urls_are_refused_before_connecting() {
        for url in ["mysql://h/d", "postgres://h:notaport/d", "postgres://h"] {
            match Store::open_postgres(url) {
                Err(StoreError::Open { location, message }) => {
                    assert!(!message.is_empty(), "{url}");
                    assert_eq!(location, redact_url(url));
                }
                Err(other) => panic!("{url}: {other}"),
                Ok(_) => panic!("{url} opened"),
            }
        }
    }
}
