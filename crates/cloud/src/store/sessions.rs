//! A user's sessions as the user sees and ends them (`GET`/`DELETE /v1/sessions`).

use super::db::{OptionalExtension, params};
use super::{Store, StoreError};
use crate::clock::UnixMs;

/// A live session, as a request's token finds it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub user_id: String,
    pub id: String,
    pub expires_at: UnixMs,
    pub last_seen_at: Option<UnixMs>,
}

/// One of a user's sessions, for their list.
#[derive(Debug, Clone)]
pub struct ListedSession {
    pub id: String,
    pub device_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
    pub last_seen_at: Option<UnixMs>,
}

impl Store {
    /// The live session a token belongs to: unexpired, of an active user, and not of a user
    /// still arriving here by a move.
    pub async fn live_session(
        &self,
        token_digest: [u8; 32],
        now: UnixMs,
    ) -> Result<Option<LiveSession>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT s.user_id, s.id, s.expires_at, s.last_seen_at FROM sessions s \
                     JOIN users u ON u.id = s.user_id \
                     WHERE s.token_digest = ?1 AND s.expires_at > ?2 AND u.state = 'active' \
                     AND NOT EXISTS (SELECT 1 FROM migration_fences f \
                     WHERE f.user_id = u.id AND f.role = 'target')",
                    params![token_digest, now],
                    |r| {
                        Ok(LiveSession {
                            user_id: r.get(0)?,
                            id: r.get(1)?,
                            expires_at: r.get(2)?,
                            last_seen_at: r.get(3)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Records that a session was used at `now`.
    pub async fn touch_session(
        &self,
        token_digest: [u8; 32],
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE sessions SET last_seen_at = ?2 WHERE token_digest = ?1",
                params![token_digest, now],
            )?;
            Ok(())
        })
        .await
    }

    /// The user's unexpired sessions, oldest first.
    pub async fn session_list(
        &self,
        user_id: String,
        now: UnixMs,
    ) -> Result<Vec<ListedSession>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, device_sealed, created_at, expires_at, last_seen_at FROM sessions \
                 WHERE user_id = ?1 AND expires_at > ?2 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map(params![user_id, now], |r| {
                Ok(ListedSession {
                    id: r.get(0)?,
                    device_sealed: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    last_seen_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Ends one of the user's sessions; its token digest, or `None` when the user has no
    /// session with that id.
    pub async fn revoke_session(
        &self,
        user_id: String,
        id: String,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        self.write(move |conn| {
            let digest: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT token_digest FROM sessions WHERE user_id = ?1 AND id = ?2",
                    params![user_id, id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(digest) = digest.and_then(|d| <[u8; 32]>::try_from(d).ok()) else {
                return Ok(None);
            };
            conn.execute(
                "DELETE FROM sessions WHERE token_digest = ?1",
                params![digest.to_vec()],
            )?;
            Ok(Some(digest))
        })
        .await
    }
}
