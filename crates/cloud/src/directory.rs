//! The directory: the one global piece. It maps the keyed hash of a phone number to the user's id
//! and home region, which is all that routing needs, and holds nothing personal in the clear.
//! In one process every region shares it; in production it is its own small replicated service.
//!
//! Besides the home region (where the account lives) it holds, per user, where each service
//! lives when that is not the home (`placements`); no row means "with the account".
//!
//! Two backends answer the same calls: SQLite (the embedded default, one file) and etcd for
//! sites on several hosts (the `etcd` module, behind the `etcd` feature: compare-and-swap writes,
//! reads from a watched cache).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use sovereign_model::RegionId;

use crate::domain::Service;
use crate::store::StoreError;

mod backend;
#[cfg(feature = "etcd")]
pub mod etcd;

pub use backend::{CacheStatus, Directory};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub user_id: String,
    pub home: RegionId,
}

/// Read connections of the directory: every authenticated request to a service reads it.
pub const DIRECTORY_READERS_MAX: usize = 4;

/// Most writes one commit of the directory carries.
pub const DIRECTORY_COMMIT_JOBS_MAX: usize = 256;
/// Writes waiting for the directory's writer; senders wait when it is full.
pub const DIRECTORY_WRITE_QUEUE_MAX: usize = 1024;

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A queued write: called with the connection to run it, or `None` to fail it unrun.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// The directory in one SQLite file.
///
/// Writes go through one writer thread that commits them in groups, as the region stores do:
/// while one commit waits for its fsync the next writes queue and share the next one. Each
/// write runs in its own savepoint, so one failing write undoes only itself, and it is
/// answered only once its commit is durable. (A migration's journal is the busiest writer:
/// every step of every user moving at once is one write.)
#[derive(Clone)]
pub struct SqliteDirectory {
    writer: tokio::sync::mpsc::Sender<Job>,
    /// Commits the writer has made.
    commits: Arc<std::sync::atomic::AtomicU64>,
    /// Readers see the last commit (WAL) without waiting behind a write's fsync.
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS directory (
    phone_index BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL UNIQUE,
    home_region TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS placements (
    user_id    TEXT NOT NULL,
    service    TEXT NOT NULL,
    region     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, service)
) STRICT;
CREATE INDEX IF NOT EXISTS placements_by_region ON placements(region);
CREATE TABLE IF NOT EXISTS former_regions (
    user_id TEXT NOT NULL,
    region  TEXT NOT NULL,
    left_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, region)
) STRICT;";

/// Most regions the directory remembers as having held a user's account or services; past
/// it the region left longest ago is forgotten (a federation of a few regions never gets
/// there: each region is remembered once, however often the user comes and goes).
pub const FORMER_REGIONS_MAX: usize = 16;

/// Remembers, in the transaction of a move, that `user_id`'s data left `region`, keeping
/// at most [`FORMER_REGIONS_MAX`] regions.
fn remember_left(
    conn: &Connection,
    user_id: &str,
    region: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO former_regions (user_id, region, left_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id, region) DO UPDATE SET left_at = excluded.left_at",
        params![user_id, region, now],
    )?;
    conn.execute(
        "DELETE FROM former_regions WHERE user_id = ?1 AND region NOT IN \
         (SELECT region FROM former_regions WHERE user_id = ?1 \
          ORDER BY left_at DESC, rowid DESC LIMIT ?2)",
        params![user_id, FORMER_REGIONS_MAX as i64],
    )?;
    Ok(())
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or(Err(StoreError::Panicked));
    match result {
        Ok(value) => {
            conn.execute_batch("RELEASE job")?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// The directory's writer: one `BEGIN IMMEDIATE` (which waits for another process's writer,
/// `sovereign migrate` beside `sovereign serve`, up to the busy timeout), every write queued by
/// then, one `COMMIT`; then each write is answered.
fn write_loop(
    conn: &Connection,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    commits: &std::sync::atomic::AtomicU64,
) {
    let mut completions: Vec<Completion> = Vec::with_capacity(DIRECTORY_COMMIT_JOBS_MAX);
    while let Some(first) = jobs.blocking_recv() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "the directory's writer could not begin a transaction");
            first(None)(Err(e.to_string()));
            continue;
        }
        completions.push(first(Some(conn)));
        while completions.len() < DIRECTORY_COMMIT_JOBS_MAX {
            match jobs.try_recv() {
                Ok(job) => completions.push(job(Some(conn))),
                Err(_) => break,
            }
        }
        let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for complete in completions.drain(..) {
            complete(committed.clone());
        }
    }
}

impl SqliteDirectory {
    /// # Errors
    /// When the file cannot be opened or created.
    pub fn open(path: &Path) -> Result<SqliteDirectory, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // As the store's: no temporary files outside the data directory.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.execute_batch(SCHEMA)?;
        let mut readers = Vec::with_capacity(DIRECTORY_READERS_MAX);
        for _ in 0..DIRECTORY_READERS_MAX {
            let reader = Connection::open(path)?;
            reader.busy_timeout(std::time::Duration::from_secs(10))?;
            reader.pragma_update(None, "query_only", "ON")?;
            reader.pragma_update(None, "temp_store", "MEMORY")?;
            readers.push(Mutex::new(reader));
        }
        let (writer, jobs) = tokio::sync::mpsc::channel(DIRECTORY_WRITE_QUEUE_MAX);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&commits);
        std::thread::Builder::new()
            .name("directory-writer".into())
            .spawn(move || write_loop(&conn, jobs, &counted))
            .map_err(|e| StoreError::Commit(format!("starting the directory's writer: {e}")))?;
        Ok(SqliteDirectory {
            writer,
            commits,
            readers: Arc::new(readers),
            next_reader: Arc::default(),
        })
    }

    /// How many commits the directory's writer has made (each one fsync), since it opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        let index = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % readers.len();
        tokio::task::spawn_blocking(move || {
            // Any free reader, so that a read never waits behind one held by a thread of lower
            // priority (a migration's) while another is free; else the one its turn gives.
            let free = (0..readers.len())
                .find_map(|i| readers[(index + i) % readers.len()].try_lock().ok());
            let conn = match free {
                Some(conn) => conn,
                None => readers[index].lock().map_err(|_| StoreError::Panicked)?,
            };
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Panicked)?
    }

    /// Runs `f` in its own savepoint inside the writer's next commit and returns its result
    /// once that commit is durable; if `f` fails, only its own changes are undone.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, f),
                None => Err(StoreError::Commit(
                    "the directory's transaction could not begin".into(),
                )),
            };
            Box::new(move |committed| {
                let _ = reply.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Commit(e)),
                });
            })
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn lookup(
        &self,
        phone_index: [u8; 32],
    ) -> Result<Option<DirectoryEntry>, StoreError> {
        self.read(move |conn| {
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT user_id, home_region FROM directory WHERE phone_index = ?1",
                    params![phone_index],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.and_then(|(user_id, home)| {
                RegionId::parse(&home)
                    .ok()
                    .map(|home| DirectoryEntry { user_id, home })
            }))
        })
        .await
    }

    /// Records a new user. Fails with [`StoreError::PhoneTaken`] when the number already belongs
    /// to a user, in any region.
    pub async fn claim(
        &self,
        phone_index: [u8; 32],
        user_id: String,
        home: RegionId,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO directory (phone_index, user_id, home_region, updated_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![phone_index, user_id, home.as_str(), now],
            )?;
            if inserted == 0 {
                Err(StoreError::PhoneTaken)
            } else {
                Ok(())
            }
        })
        .await
    }

    /// Points a user at a new home region (the last step of a migration). A service placed in
    /// the new home is with the account again, so its placement goes in the same commit, as
    /// does the old home's place among the user's former regions.
    pub async fn move_home(
        &self,
        user_id: String,
        home: RegionId,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            let old: Option<String> = conn
                .query_row(
                    "SELECT home_region FROM directory WHERE user_id = ?1",
                    params![user_id],
                    |r| r.get(0),
                )
                .optional()?;
            let old = old.ok_or(StoreError::NotFound)?;
            conn.execute(
                "UPDATE directory SET home_region = ?2, updated_at = ?3 WHERE user_id = ?1",
                params![user_id, home.as_str(), now],
            )?;
            if old != home.as_str() {
                remember_left(conn, &user_id, &old, now)?;
            }
            conn.execute(
                "DELETE FROM placements WHERE user_id = ?1 AND region = ?2",
                params![user_id, home.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// Where a user's service lives: its placement, else the home region. `None` for an
    /// unknown user.
    pub async fn service_region(
        &self,
        user_id: String,
        service: Service,
    ) -> Result<Option<RegionId>, StoreError> {
        self.read(move |conn| {
            let region: Option<String> = conn
                .query_row(
                    "SELECT COALESCE(p.region, d.home_region) FROM directory d LEFT JOIN placements p \
                     ON p.user_id = d.user_id AND p.service = ?2 WHERE d.user_id = ?1",
                    params![user_id, service.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(region.and_then(|r| RegionId::parse(&r).ok()))
        })
        .await
    }

    /// The user a number belongs to and the region holding their `service`.
    pub async fn lookup_service(
        &self,
        phone_index: [u8; 32],
        service: Service,
    ) -> Result<Option<(String, RegionId)>, StoreError> {
        self.read(move |conn| {
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT d.user_id, COALESCE(p.region, d.home_region) FROM directory d \
                     LEFT JOIN placements p ON p.user_id = d.user_id AND p.service = ?2 \
                     WHERE d.phone_index = ?1",
                    params![phone_index, service.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.and_then(|(user, region)| RegionId::parse(&region).ok().map(|r| (user, r))))
        })
        .await
    }

    /// The services of a user placed away from their home, and where.
    pub async fn placements(
        &self,
        user_id: String,
    ) -> Result<Vec<(Service, RegionId)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT service, region FROM placements WHERE user_id = ?1 ORDER BY service",
            )?;
            let rows = stmt.query_map(params![user_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (service, region) = row?;
                if let (Some(service), Ok(region)) =
                    (Service::parse(&service), RegionId::parse(&region))
                {
                    out.push((service, region));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Places a user's services in `region` (the flip of a service move). Placing a service in
    /// the home region removes its placement. The region each service leaves is remembered
    /// among the user's former regions in the same commit. [`StoreError::NotFound`] for an
    /// unknown user.
    pub async fn place(
        &self,
        user_id: String,
        services: Vec<Service>,
        region: RegionId,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            let home: Option<String> = conn
                .query_row(
                    "SELECT home_region FROM directory WHERE user_id = ?1",
                    params![user_id],
                    |r| r.get(0),
                )
                .optional()?;
            let home = home.ok_or(StoreError::NotFound)?;
            for service in services {
                let was: Option<String> = conn
                    .query_row(
                        "SELECT region FROM placements WHERE user_id = ?1 AND service = ?2",
                        params![user_id, service.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                let was = was.unwrap_or_else(|| home.clone());
                if was != region.as_str() {
                    remember_left(conn, &user_id, &was, now)?;
                }
                if home == region.as_str() {
                    conn.execute(
                        "DELETE FROM placements WHERE user_id = ?1 AND service = ?2",
                        params![user_id, service.as_str()],
                    )?;
                } else {
                    conn.execute(
                        "INSERT INTO placements (user_id, service, region, updated_at) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id, service) DO UPDATE SET \
                         region = excluded.region, updated_at = excluded.updated_at",
                        params![user_id, service.as_str(), region.as_str(), now],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The home regions of the users some of whose services live in `region`: the regions
    /// that can vouch for a token presented there.
    pub async fn homes_served_in(&self, region: RegionId) -> Result<Vec<RegionId>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT DISTINCT d.home_region FROM placements p JOIN directory d \
                 ON d.user_id = p.user_id WHERE p.region = ?1 ORDER BY 1",
            )?;
            let rows = stmt.query_map(params![region.as_str()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                if let Ok(home) = RegionId::parse(&row?) {
                    out.push(home);
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn home_of(&self, user_id: String) -> Result<Option<RegionId>, StoreError> {
        self.read(move |conn| {
            let home: Option<String> = conn
                .query_row(
                    "SELECT home_region FROM directory WHERE user_id = ?1",
                    params![user_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(home.and_then(|h| RegionId::parse(&h).ok()))
        })
        .await
    }

    /// The regions that have held the user's account or one of their services and that the
    /// data left since, the most recently left first. Where the user is now may be among them
    /// (a user who came back); callers leave out what they already ask.
    pub async fn former_regions(&self, user_id: String) -> Result<Vec<RegionId>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT f.region FROM former_regions f JOIN directory d ON d.user_id = f.user_id \
                 WHERE f.user_id = ?1 ORDER BY f.left_at DESC, f.rowid DESC",
            )?;
            let rows = stmt.query_map(params![user_id], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                if let Ok(region) = RegionId::parse(&row?) {
                    out.push(region);
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn remove(&self, user_id: String) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM placements WHERE user_id = ?1",
                params![user_id],
            )?;
            conn.execute(
                "DELETE FROM former_regions WHERE user_id = ?1",
                params![user_id],
            )?;
            conn.execute("DELETE FROM directory WHERE user_id = ?1", params![user_id])?;
            Ok(())
        })
        .await
    }
}

/// The migration journal lives beside the directory: it is global, like the moves it records.
const JOURNAL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS migrations (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS migration_users (
    migration_id TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    step         TEXT NOT NULL,
    PRIMARY KEY (migration_id, user_id)
) STRICT;";

impl SqliteDirectory {
    /// Starts a migration's journal, or finds the one a previous run left. Returns the users it
    /// holds with their last finished step; empty for a new migration.
    pub async fn journal_open(
        &self,
        id: String,
        spec: String,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.run(move |conn| {
            conn.execute_batch(JOURNAL_SCHEMA)?;
            conn.execute(
                "INSERT INTO migrations (id, spec, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
                params![id, spec, now],
            )?;
            let mut stmt =
                conn.prepare("SELECT user_id, step FROM migration_users WHERE migration_id = ?1 ORDER BY rowid")?;
            let rows = stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Records the users a migration moves (once, in one commit), all at step `selected`.
    pub async fn journal_select(&self, id: String, users: Vec<String>) -> Result<(), StoreError> {
        self.run(move |conn| {
            for user in &users {
                conn.execute(
                    "INSERT INTO migration_users (migration_id, user_id, step) VALUES (?1, ?2, 'selected') \
                     ON CONFLICT DO NOTHING",
                    params![id, user],
                )?;
            }
            Ok(())
        })
        .await
    }

    pub async fn journal_step(
        &self,
        id: String,
        user_id: String,
        step: &'static str,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.execute(
                "UPDATE migration_users SET step = ?3 WHERE migration_id = ?1 AND user_id = ?2",
                params![id, user_id, step],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal steps of users moving at once share the directory's commits (and fsyncs),
    /// and each is durable once answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_each_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.sqlite");
        let directory = SqliteDirectory::open(&path).unwrap();
        let users: Vec<String> = (0..200).map(|i| format!("u{i}")).collect();
        directory
            .journal_open("m".into(), "test".into(), 0)
            .await
            .unwrap();
        directory
            .journal_select("m".into(), users.clone())
            .await
            .unwrap();
        let before = directory.commits();
        let steps = users.iter().map(|user| {
            let directory = directory.clone();
            let user = user.clone();
            tokio::spawn(async move { directory.journal_step("m".into(), user, "copied").await })
        });
        for step in futures_util::future::join_all(steps).await {
            step.unwrap().unwrap();
        }
        let commits = directory.commits() - before;
        assert!(commits < 200, "200 writes took {commits} commits");
        // A failing write undoes only itself.
        let taken = directory.claim([7; 32], "a".into(), RegionId::parse("r-1").unwrap(), 0);
        let again = directory.claim([7; 32], "b".into(), RegionId::parse("r-1").unwrap(), 0);
        let (taken, again) = tokio::join!(taken, again);
        assert!(taken.is_ok() != again.is_ok(), "{taken:?} {again:?}");
        let reopened = Connection::open(&path).unwrap();
        let copied: i64 = reopened
            .query_row(
                "SELECT count(*) FROM migration_users WHERE step = 'copied'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(copied, 200);
    }

    /// A read takes any free reader: with all but one held (by threads that may run at a lower
    /// priority, a migration's), reads still run at once instead of queueing for held ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_take_a_free_reader() {
        let dir = tempfile::tempdir().unwrap();
        let directory = SqliteDirectory::open(&dir.path().join("directory.sqlite")).unwrap();
        let held: Vec<_> = directory.readers[1..]
            .iter()
            .map(|reader| reader.lock().unwrap())
            .collect();
        for i in 0..2 * DIRECTORY_READERS_MAX {
            let read = directory.home_of(format!("u{i}"));
            let answer = tokio::time::timeout(std::time::Duration::from_secs(10), read)
                .await
                .unwrap_or_else(|_| panic!("read {i} waited for a held reader"));
            assert_eq!(answer.unwrap(), None);
        }
        drop(held);
    }

    #[tokio::test]
    async fn former_regions_stay_within_their_bound_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let directory = SqliteDirectory::open(&dir.path().join("directory.sqlite")).unwrap();
        let region = |i: usize| RegionId::parse(&format!("r-{i}")).unwrap();
        directory
            .claim([1; 32], "u".into(), region(0), 0)
            .await
            .unwrap();
        // Moving on from region 0 to region MAX+1 leaves MAX+1 regions behind.
        for i in 1..=FORMER_REGIONS_MAX + 1 {
            directory
                .move_home("u".into(), region(i), i as i64)
                .await
                .unwrap();
        }
        let former = directory.former_regions("u".into()).await.unwrap();
        assert_eq!(former.len(), FORMER_REGIONS_MAX);
        assert_eq!(former[0], region(FORMER_REGIONS_MAX));
        assert!(!former.contains(&region(0)), "the oldest is forgotten");
        assert!(
            !former.contains(&region(FORMER_REGIONS_MAX + 1)),
            "home now"
        );
        // Moving to where the user already is leaves nothing.
        directory
            .move_home("u".into(), region(FORMER_REGIONS_MAX + 1), 100)
            .await
            .unwrap();
        assert_eq!(directory.former_regions("u".into()).await.unwrap(), former);
    }
}
