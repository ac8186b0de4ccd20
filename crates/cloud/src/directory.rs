//! The directory: the one global piece. It maps the keyed hash of a phone number to the user's id
//! and home region, which is all that routing needs, and holds nothing personal in the clear.
//! In one process every region shares it; in production it is its own small replicated service.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use sovereign_model::RegionId;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub user_id: String,
    pub home: RegionId,
}

#[derive(Clone)]
pub struct Directory {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS directory (
    phone_index BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL UNIQUE,
    home_region TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;";

impl Directory {
    /// # Errors
    /// When the file cannot be opened or created.
    pub fn open(path: &Path) -> Result<Directory, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Directory {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| StoreError::Panicked)?;
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Panicked)?
    }

    pub async fn lookup(
        &self,
        phone_index: [u8; 32],
    ) -> Result<Option<DirectoryEntry>, StoreError> {
        self.run(move |conn| {
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

    /// Points a user at a new home region (the last step of a migration).
    pub async fn move_home(
        &self,
        user_id: String,
        home: RegionId,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            let changed = conn.execute(
                "UPDATE directory SET home_region = ?2, updated_at = ?3 WHERE user_id = ?1",
                params![user_id, home.as_str(), now],
            )?;
            if changed == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
        .await
    }

    pub async fn home_of(&self, user_id: String) -> Result<Option<RegionId>, StoreError> {
        self.run(move |conn| {
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

    pub async fn remove(&self, user_id: String) -> Result<(), StoreError> {
        self.run(move |conn| {
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

impl Directory {
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
            let tx = conn.unchecked_transaction()?;
            for user in &users {
                tx.execute(
                    "INSERT INTO migration_users (migration_id, user_id, step) VALUES (?1, ?2, 'selected') \
                     ON CONFLICT DO NOTHING",
                    params![id, user],
                )?;
            }
            tx.commit()?;
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
