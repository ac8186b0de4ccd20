//! The store's side of moving a user between regions: a sealed snapshot of everything a user has
//! here, installing such a snapshot in another region, fencing, and erasing the source.
//! Sealed values are copied as they are: they are bound to the user and record, not the region,
//! so only the wrapped data key changes on the way.

use super::db::{Connection, Dialect, OptionalExtension, params};

use super::{Store, StoreError};
use crate::clock::UnixMs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotUser {
    pub id: String,
    pub phone_index: Vec<u8>,
    pub phone_sealed: Vec<u8>,
    pub password_hash: String,
    pub wrapped_key: Vec<u8>,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSession {
    pub token_digest: Vec<u8>,
    pub id: String,
    pub device_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConsent {
    pub scope: String,
    pub notice_version: i64,
    pub granted_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConsentEvent {
    pub scope: String,
    pub action: String,
    pub notice_version: Option<i64>,
    pub at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMessage {
    pub id: String,
    pub box_name: String,
    pub peer_sealed: Vec<u8>,
    pub body_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub delivered_at: Option<UnixMs>,
    pub expires_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotBackup {
    pub kind: String,
    pub item_id: String,
    pub version: i64,
    pub deleted: bool,
    pub data_sealed: Option<Vec<u8>>,
    pub blob_path: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub updated_at: UnixMs,
}

/// Everything one user has in one region, sealed as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSnapshot {
    pub user: SnapshotUser,
    pub sessions: Vec<SnapshotSession>,
    pub consents: Vec<SnapshotConsent>,
    pub consent_events: Vec<SnapshotConsentEvent>,
    pub messages: Vec<SnapshotMessage>,
    pub backup: Vec<SnapshotBackup>,
}

impl UserSnapshot {
    /// Every blob the snapshot's rows point at.
    pub fn blob_paths(&self) -> impl Iterator<Item = &str> {
        self.backup.iter().filter_map(|b| b.blob_path.as_deref())
    }

    /// Bytes of sealed data, for progress and throughput figures (blobs not included).
    pub fn sealed_bytes(&self) -> usize {
        self.user.phone_sealed.len()
            + self
                .sessions
                .iter()
                .map(|s| s.device_sealed.len())
                .sum::<usize>()
            + self
                .messages
                .iter()
                .map(|m| m.peer_sealed.len() + m.body_sealed.len())
                .sum::<usize>()
            + self
                .backup
                .iter()
                .map(|b| b.data_sealed.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }
}

fn snapshot(conn: &Connection, user_id: &str) -> Result<Option<UserSnapshot>, StoreError> {
    let user = conn
        .query_row(
            "SELECT id, phone_index, phone_sealed, password_hash, wrapped_key, created_at FROM users \
             WHERE id = ?1 AND state = 'active' AND wrapped_key IS NOT NULL",
            params![user_id],
            |r| {
                Ok(SnapshotUser {
                    id: r.get(0)?,
                    phone_index: r.get(1)?,
                    phone_sealed: r.get(2)?,
                    password_hash: r.get(3)?,
                    wrapped_key: r.get(4)?,
                    created_at: r.get(5)?,
                })
            },
        )
        .optional()?;
    let Some(user) = user else { return Ok(None) };
    let mut stmt = conn.prepare(
        "SELECT token_digest, id, device_sealed, created_at, expires_at FROM sessions \
         WHERE user_id = ?1 ORDER BY id",
    )?;
    let sessions = stmt
        .query_map(params![user_id], |r| {
            Ok(SnapshotSession {
                token_digest: r.get(0)?,
                id: r.get(1)?,
                device_sealed: r.get(2)?,
                created_at: r.get(3)?,
                expires_at: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT scope, notice_version, granted_at FROM consent_state WHERE user_id = ?1 ORDER BY scope",
    )?;
    let consents = stmt
        .query_map(params![user_id], |r| {
            Ok(SnapshotConsent {
                scope: r.get(0)?,
                notice_version: r.get(1)?,
                granted_at: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT scope, action, notice_version, at FROM consent_events WHERE user_id = ?1 ORDER BY seq",
    )?;
    let consent_events = stmt
        .query_map(params![user_id], |r| {
            Ok(SnapshotConsentEvent {
                scope: r.get(0)?,
                action: r.get(1)?,
                notice_version: r.get(2)?,
                at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, box, peer_sealed, body_sealed, created_at, delivered_at, expires_at FROM messages \
         WHERE owner_id = ?1 ORDER BY seq",
    )?;
    let messages = stmt
        .query_map(params![user_id], |r| {
            Ok(SnapshotMessage {
                id: r.get(0)?,
                box_name: r.get(1)?,
                peer_sealed: r.get(2)?,
                body_sealed: r.get(3)?,
                created_at: r.get(4)?,
                delivered_at: r.get(5)?,
                expires_at: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT kind, item_id, version, deleted, data_sealed, blob_path, content_type, size_bytes, \
         updated_at FROM backup_items WHERE owner_id = ?1 ORDER BY kind, item_id",
    )?;
    let backup = stmt
        .query_map(params![user_id], |r| {
            Ok(SnapshotBackup {
                kind: r.get(0)?,
                item_id: r.get(1)?,
                version: r.get(2)?,
                deleted: r.get::<_, i64>(3)? != 0,
                data_sealed: r.get(4)?,
                blob_path: r.get(5)?,
                content_type: r.get(6)?,
                size_bytes: r.get(7)?,
                updated_at: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(UserSnapshot {
        user,
        sessions,
        consents,
        consent_events,
        messages,
        backup,
    }))
}

/// Makes this region's copy of the user exactly `snapshot` (with `wrapped_key`, wrapped under this
/// region's key), while keeping the user invisible here (fenced as 'target').
fn install(
    conn: &Connection,
    snapshot: &UserSnapshot,
    wrapped_key: &[u8],
    region: &str,
    now: UnixMs,
) -> Result<(), StoreError> {
    let u = &snapshot.user;
    conn.execute(
        "INSERT INTO migration_fences (user_id, role, since) VALUES (?1, 'target', ?2) \
         ON CONFLICT (user_id) DO NOTHING",
        params![u.id, now],
    )?;
    conn.execute(
        "INSERT INTO users (id, phone_index, phone_sealed, password_hash, wrapped_key, region, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET \
         phone_index = excluded.phone_index, phone_sealed = excluded.phone_sealed, \
         password_hash = excluded.password_hash, wrapped_key = excluded.wrapped_key, region = excluded.region",
        params![u.id, u.phone_index, u.phone_sealed, u.password_hash, wrapped_key, region, u.created_at],
    )?;
    // Small tables are replaced whole.
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", params![u.id])?;
    for s in &snapshot.sessions {
        conn.execute(
            "INSERT INTO sessions (token_digest, id, user_id, device_sealed, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![s.token_digest, s.id, u.id, s.device_sealed, s.created_at, s.expires_at],
        )?;
    }
    conn.execute(
        "DELETE FROM consent_state WHERE user_id = ?1",
        params![u.id],
    )?;
    for c in &snapshot.consents {
        conn.execute(
            "INSERT INTO consent_state (user_id, scope, notice_version, granted_at) VALUES (?1, ?2, ?3, ?4)",
            params![u.id, c.scope, c.notice_version, c.granted_at],
        )?;
    }
    // The history is append-only on both sides: add what this copy lacks.
    let have: i64 = conn.query_row(
        "SELECT count(*) FROM consent_events WHERE user_id = ?1",
        params![u.id],
        |r| r.get(0),
    )?;
    for e in snapshot.consent_events.iter().skip(have as usize) {
        conn.execute(
            "INSERT INTO consent_events (user_id, scope, action, notice_version, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u.id, e.scope, e.action, e.notice_version, e.at],
        )?;
    }
    // Messages and backup items: upsert what the source has, drop what it no longer has.
    // Messages go in the source's order, so a mailbox reads the same after the move.
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS keep (a TEXT, b TEXT, PRIMARY KEY (a, b))",
        [],
    )?;
    conn.execute("DELETE FROM keep", [])?;
    for m in &snapshot.messages {
        conn.execute(
            "INSERT INTO messages (id, owner_id, box, peer_sealed, body_sealed, created_at, delivered_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (owner_id, box, id) DO UPDATE SET \
             delivered_at = excluded.delivered_at, expires_at = excluded.expires_at",
            params![m.id, u.id, m.box_name, m.peer_sealed, m.body_sealed, m.created_at, m.delivered_at, m.expires_at],
        )?;
        conn.execute(
            "INSERT INTO keep (a, b) VALUES (?1, ?2)",
            params![m.box_name, m.id],
        )?;
    }
    conn.execute(
        "DELETE FROM messages WHERE owner_id = ?1 AND NOT EXISTS \
         (SELECT 1 FROM keep k WHERE k.a = messages.box AND k.b = messages.id)",
        params![u.id],
    )?;
    conn.execute("DELETE FROM keep", [])?;
    for b in &snapshot.backup {
        let current: Option<i64> = conn
            .query_row(
                "SELECT version FROM backup_items WHERE owner_id = ?1 AND kind = ?2 AND item_id = ?3",
                params![u.id, b.kind, b.item_id],
                |r| r.get(0),
            )
            .optional()?;
        if current != Some(b.version) {
            conn.execute(
                "DELETE FROM backup_items WHERE owner_id = ?1 AND kind = ?2 AND item_id = ?3",
                params![u.id, b.kind, b.item_id],
            )?;
            let change_seq: i64 = conn.query_row(
                "UPDATE counters SET value = value + 1 WHERE name = 'backup_change' RETURNING value",
                [],
                |r| r.get(0),
            )?;
            conn.execute(
                "INSERT INTO backup_items (owner_id, kind, item_id, version, change_seq, deleted, data_sealed, \
                 blob_path, content_type, size_bytes, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    u.id,
                    b.kind,
                    b.item_id,
                    b.version,
                    change_seq,
                    i64::from(b.deleted),
                    b.data_sealed,
                    b.blob_path,
                    b.content_type,
                    b.size_bytes,
                    b.updated_at
                ],
            )?;
        }
        conn.execute(
            "INSERT INTO keep (a, b) VALUES (?1, ?2)",
            params![b.kind, b.item_id],
        )?;
    }
    conn.execute(
        "DELETE FROM backup_items WHERE owner_id = ?1 AND NOT EXISTS \
         (SELECT 1 FROM keep k WHERE k.a = backup_items.kind AND k.b = backup_items.item_id)",
        params![u.id],
    )?;
    Ok(())
}

impl Store {
    /// Every active user of this region (not one being moved in): id, sealed phone, wrapped key.
    pub async fn active_users(&self) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, phone_sealed, wrapped_key FROM users WHERE state = 'active' \
                 AND wrapped_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM migration_fences f \
                 WHERE f.user_id = users.id AND f.role = 'target') ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// A consistent snapshot of one user, sealed as stored; `None` when the user is not here.
    pub async fn snapshot_user(&self, user_id: String) -> Result<Option<UserSnapshot>, StoreError> {
        // A read transaction gives one consistent view across all the tables.
        self.read(move |conn| {
            // PostgreSQL's default (READ COMMITTED) takes a new snapshot per statement.
            conn.execute_batch(match conn.dialect() {
                Dialect::Sqlite => "BEGIN",
                Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            })?;
            let result = snapshot(conn, &user_id);
            let _ = conn.execute_batch("COMMIT");
            result
        })
        .await
    }

    /// Installs (or brings up to date) the copy of a user moving into this region.
    pub async fn install_user(
        &self,
        snapshot: UserSnapshot,
        wrapped_key: Vec<u8>,
        region: String,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let state: Option<String> = conn
                .query_row(
                    "SELECT state FROM users WHERE id = ?1",
                    params![snapshot.user.id],
                    |r| r.get(0),
                )
                .optional()?;
            let moving_in = conn
                .query_row(
                    "SELECT 1 FROM migration_fences WHERE user_id = ?1 AND role = 'target'",
                    params![snapshot.user.id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if state.is_some() && !moving_in {
                // Already live here: a finished move is never overwritten by a stale copy.
                return Ok(());
            }
            install(conn, &snapshot, &wrapped_key, &region, now)
        })
        .await
    }

    /// Whether the user's copy here is being moved in (not live yet).
    pub async fn is_moving_in(&self, user_id: String) -> Result<bool, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT 1 FROM migration_fences WHERE user_id = ?1 AND role = 'target'",
                    params![user_id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
        .await
    }

    /// Makes a moved-in user live here.
    pub async fn activate_user(&self, user_id: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM migration_fences WHERE user_id = ?1 AND role = 'target'",
                params![user_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Stops every write to the user's data here until [`Store::finish_move`] or
    /// [`Store::unfence_user`].
    pub async fn fence_user(&self, user_id: String, now: UnixMs) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO migration_fences (user_id, role, since) VALUES (?1, 'source', ?2) \
                 ON CONFLICT (user_id) DO NOTHING",
                params![user_id, now],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn unfence_user(&self, user_id: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM migration_fences WHERE user_id = ?1 AND role = 'source'",
                params![user_id],
            )?;
            Ok(())
        })
        .await
    }

    /// The source's last step, in one commit: remember where the user went (and their tokens, so
    /// clients are redirected), lift the fence, destroy the wrapped data key and end the
    /// sessions. The rows go afterwards with [`Store::purge_user`].
    pub async fn finish_move(
        &self,
        user_id: String,
        to_region: String,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO moved_users (user_id, region, moved_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (user_id) DO UPDATE SET region = excluded.region, moved_at = excluded.moved_at",
                params![user_id, to_region, now],
            )?;
            conn.execute(
                "INSERT INTO moved_tokens (token_digest, user_id, expires_at) \
                 SELECT token_digest, user_id, expires_at FROM sessions WHERE user_id = ?1 \
                 ON CONFLICT (token_digest) DO NOTHING",
                params![user_id],
            )?;
            conn.execute("DELETE FROM migration_fences WHERE user_id = ?1", params![user_id])?;
            conn.execute(
                "UPDATE users SET wrapped_key = NULL, state = 'deleting' WHERE id = ?1",
                params![user_id],
            )?;
            conn.execute("DELETE FROM sessions WHERE user_id = ?1", params![user_id])?;
            Ok(())
        })
        .await
    }

    /// Where a token's user moved to, if they moved away from here.
    pub async fn moved_token(
        &self,
        token_digest: [u8; 32],
        now: UnixMs,
    ) -> Result<Option<String>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT m.region FROM moved_tokens t JOIN moved_users m ON m.user_id = t.user_id \
                     WHERE t.token_digest = ?1 AND t.expires_at > ?2",
                    params![token_digest, now],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Where a user moved to, if they moved away from here.
    pub async fn moved_user(&self, user_id: String) -> Result<Option<String>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT region FROM moved_users WHERE user_id = ?1",
                    params![user_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }
}
