//! Erasure's SQL: which blobs a row still points at, the `moved_*` sweep, and making erased
//! rows leave the store's files (SQLite's WAL checkpoint, PostgreSQL's VACUUM).

use super::db::{Connection, Dialect, OptionalExtension, params};
use super::{Store, StoreError};
use crate::clock::UnixMs;

/// What one sweep of the `moved_*` tables removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MovedSweep {
    pub tokens: u64,
    pub users: u64,
}

/// The tables a withdrawal or a deletion erases rows of: what PostgreSQL vacuums afterwards.
const ERASED_TABLES: &str = "backup_items, messages, sessions, consent_state, users";

fn referenced(conn: &Connection, path: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM backup_items WHERE blob_path = ?1",
            params![path],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

impl Store {
    /// The paths among `paths` that no row points at.
    pub async fn unreferenced_blobs(&self, paths: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| {
            let mut out = Vec::new();
            for path in paths {
                if !referenced(conn, &path)? {
                    out.push(path);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Removes moved-away tokens past their expiry and moved-away users who left before
    /// `users_before` and have no token left.
    pub async fn sweep_moved(
        &self,
        now: UnixMs,
        users_before: UnixMs,
    ) -> Result<MovedSweep, StoreError> {
        self.write(move |conn| {
            let tokens = conn.execute(
                "DELETE FROM moved_tokens WHERE expires_at <= ?1",
                params![now],
            )? as u64;
            let users = conn.execute(
                "DELETE FROM moved_users WHERE moved_at <= ?1 AND NOT EXISTS \
                 (SELECT 1 FROM moved_tokens t WHERE t.user_id = moved_users.user_id)",
                params![users_before],
            )? as u64;
            Ok(MovedSweep { tokens, users })
        })
        .await
    }

    /// Makes erased rows leave the store's files. SQLite (whose connections run with
    /// `secure_delete`, so freed cells and pages are zeroed) checkpoints its WAL into the
    /// database and truncates it, so no frame holding an erased row's old page stays behind;
    /// PostgreSQL vacuums the tables erasure deletes from (see ARCHITECTURE.md for what that
    /// does and does not remove). It runs on a connection of its own, outside the writer's
    /// transaction, and waits for readers to move past the erased rows.
    pub async fn scrub(&self) -> Result<(), StoreError> {
        let scrubber = self.scrubber.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match &*scrubber {
                Scrubber::Sqlite(path) => Connection::Sqlite(super::open_connection(path)?),
                Scrubber::Postgres(config) => super::connect_postgres(config, super::Role::Writer)?,
            };
            match conn.dialect() {
                Dialect::Sqlite => {
                    // Busy means a reader still holds an old snapshot: the next scrub (after
                    // the next erasure, or the periodic one) finishes the job.
                    let (busy, _, _): (i64, i64, i64) =
                        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", params![], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?;
                    if busy != 0 {
                        tracing::warn!("WAL checkpoint was blocked by a reader; retried later");
                    }
                }
                Dialect::Postgres => conn.execute_batch(&format!("VACUUM {ERASED_TABLES}"))?,
            }
            Ok(())
        })
        .await
        .map_err(|_| StoreError::Panicked)?
    }
}

/// How [`Store::scrub`] reaches the store: a connection of its own.
pub(crate) enum Scrubber {
    Sqlite(std::path::PathBuf),
    Postgres(Box<postgres::Config>),
}
