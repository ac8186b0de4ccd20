//! The store's operations, one method per thing the service does to its data. Consent checks
//! happen here, in the same transaction as the write they guard (and again in SQL triggers).

use super::db::{Connection, OptionalExtension, Row, params};
use sovereign_model::ConsentScope;

use super::{Store, StoreError, consent_error};
use crate::clock::UnixMs;

/// Most rows one page of a listing returns.
pub const PAGE_ROWS_MAX: u32 = 500;

#[derive(Debug, Clone)]
pub struct NewVerification {
    pub id: String,
    pub user_id: String,
    pub phone_index: [u8; 32],
    pub phone_sealed: Vec<u8>,
    pub password_hash: String,
    pub wrapped_key: Vec<u8>,
    pub code_digest: [u8; 32],
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    Created {
        user_id: String,
        phone_index: Vec<u8>,
    },
    WrongCode {
        attempts_left: u32,
    },
    TooManyAttempts,
    AlreadyUsed,
    Expired,
    Unknown,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub phone_sealed: Vec<u8>,
    pub password_hash: String,
    pub wrapped_key: Option<Vec<u8>>,
    pub region: String,
    pub created_at: UnixMs,
    /// A 'service' row: this region holds only some of the user's services, their account is
    /// in their home region (no password, no sessions, consents mirrored from the home).
    pub service_only: bool,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub device_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
}

#[derive(Debug, Clone)]
pub struct ConsentRow {
    pub scope: ConsentScope,
    pub notice_version: u32,
    pub granted_at: UnixMs,
}

#[derive(Debug, Clone)]
pub struct ConsentEventRow {
    pub seq: i64,
    pub scope: String,
    pub action: String,
    pub notice_version: Option<u32>,
    pub at: UnixMs,
}

/// One copy of a message, sealed for its owner.
#[derive(Debug, Clone)]
pub struct MessageCopy {
    pub id: String,
    pub owner_id: String,
    pub peer_sealed: Vec<u8>,
    pub body_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub seq: i64,
    pub id: String,
    pub box_name: String,
    pub peer_sealed: Vec<u8>,
    pub body_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub delivered_at: Option<UnixMs>,
}

/// Where a page of [`Store::messages_page`] starts: after this place in this box (the default,
/// before everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCursor {
    pub box_name: String,
    pub box_seq: i64,
}

impl MessageCursor {
    /// The place of `row`, to start the next page after it.
    pub fn after(row: &MessageRow) -> MessageCursor {
        MessageCursor {
            box_name: row.box_name.clone(),
            box_seq: row.seq,
        }
    }

    /// `inbox:12`, as clients carry it.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.box_name, self.box_seq)
    }

    /// The cursor [`MessageCursor::encode`] wrote; `None` for anything else.
    pub fn decode(text: &str) -> Option<MessageCursor> {
        let (box_name, seq) = text.split_once(':')?;
        let box_seq = seq.parse::<i64>().ok().filter(|n| *n >= 0)?;
        matches!(box_name, "inbox" | "sent").then(|| MessageCursor {
            box_name: box_name.to_owned(),
            box_seq,
        })
    }
}

#[derive(Debug, Clone)]
pub struct BackupRow {
    pub kind: String,
    pub item_id: String,
    pub version: i64,
    pub change_seq: i64,
    pub deleted: bool,
    pub data_sealed: Option<Vec<u8>>,
    pub blob_path: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub updated_at: UnixMs,
}

#[derive(Debug, Clone)]
pub struct BackupPut {
    pub owner_id: String,
    pub kind: &'static str,
    pub scope: ConsentScope,
    pub item_id: String,
    /// `Some(v)`: only if the current version is `v`; `Some(0)`: only if it does not exist.
    pub expected_version: Option<i64>,
    pub data_sealed: Option<Vec<u8>>,
    pub blob_path: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub now: UnixMs,
    /// The user's quota for this kind, checked in the write's own commit.
    pub quota: BackupQuota,
}

/// How much of one backup kind a user may hold: live items, and for photos their total bytes.
/// `None` is no limit (the store's own tests; migration never goes through a put).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupQuota {
    pub items_max: Option<i64>,
    pub bytes_max: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupWritten {
    pub version: i64,
    /// The blob the write replaced or deleted, for the caller to remove after commit.
    pub old_blob: Option<String>,
}

fn user_row(row: &Row) -> super::db::DbResult<UserRow> {
    Ok(UserRow {
        id: row.get(0)?,
        phone_sealed: row.get(1)?,
        password_hash: row.get(2)?,
        wrapped_key: row.get(3)?,
        region: row.get(4)?,
        created_at: row.get(5)?,
        service_only: row.get::<_, String>(6)? == "service",
    })
}

/// A user being moved into this region does not exist here until the move completes.
const NOT_MOVING_IN: &str = "NOT EXISTS (SELECT 1 FROM migration_fences f \
                             WHERE f.user_id = users.id AND f.role = 'target')";

const USER_COLUMNS: &str = "id, phone_sealed, password_hash, wrapped_key, region, created_at, kind";

fn message_row(row: &Row) -> super::db::DbResult<MessageRow> {
    Ok(MessageRow {
        seq: row.get(0)?,
        id: row.get(1)?,
        box_name: row.get(2)?,
        peer_sealed: row.get(3)?,
        body_sealed: row.get(4)?,
        created_at: row.get(5)?,
        delivered_at: row.get(6)?,
    })
}

const MESSAGE_COLUMNS: &str =
    "box_seq, id, box, peer_sealed, body_sealed, created_at, delivered_at";

fn backup_row(row: &Row) -> super::db::DbResult<BackupRow> {
    Ok(BackupRow {
        kind: row.get(0)?,
        item_id: row.get(1)?,
        version: row.get(2)?,
        change_seq: row.get(3)?,
        deleted: row.get::<_, i64>(4)? != 0,
        data_sealed: row.get(5)?,
        blob_path: row.get(6)?,
        content_type: row.get(7)?,
        size_bytes: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

const BACKUP_COLUMNS: &str = "kind, item_id, version, change_seq, deleted, data_sealed, blob_path, \
                              content_type, size_bytes, updated_at";

/// See [`Store::service_writable`].
fn service_writable(
    conn: &Connection,
    user_id: &str,
    service: crate::domain::Service,
) -> Result<(), StoreError> {
    let fenced = conn
        .query_row(
            "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = ?1 AND state = 'active') \
             OR EXISTS (SELECT 1 FROM service_fences WHERE user_id = ?1 AND service = ?2)",
            params![user_id, service.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if fenced {
        Err(StoreError::Migrating)
    } else {
        Ok(())
    }
}

/// Whether the user has granted `scope`. A user who is no longer active here (moved away or
/// being deleted while a request was in flight) is [`StoreError::Migrating`]: the client retries
/// and is then sent where the user went, instead of being told consent is missing.
pub(crate) fn has_consent(
    conn: &Connection,
    user_id: &str,
    scope: ConsentScope,
) -> Result<bool, StoreError> {
    let active = conn
        .query_row(
            "SELECT 1 FROM users WHERE id = ?1 AND state = 'active'",
            params![user_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !active {
        return Err(StoreError::Migrating);
    }
    Ok(conn
        .query_row(
            "SELECT 1 FROM consent_state WHERE user_id = ?1 AND scope = ?2",
            params![user_id, scope.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Deletes every row of the data a scope covers; returns the blobs to delete after the commit.
pub(crate) fn erase_scope_data(
    conn: &Connection,
    user_id: &str,
    scope: ConsentScope,
) -> Result<Vec<String>, StoreError> {
    let mut blobs = Vec::new();
    match scope {
        ConsentScope::Messaging => {
            conn.execute("DELETE FROM messages WHERE owner_id = ?1", params![user_id])?;
        }
        ConsentScope::BackupContacts | ConsentScope::BackupSms | ConsentScope::BackupPhotos => {
            let kind = scope.as_str().trim_start_matches("backup.");
            let mut stmt = conn.prepare(
                "SELECT blob_path FROM backup_items WHERE owner_id = ?1 AND kind = ?2 \
                 AND blob_path IS NOT NULL",
            )?;
            for path in stmt.query_map(params![user_id, kind], |r| r.get(0))? {
                blobs.push(path?);
            }
            conn.execute(
                "DELETE FROM backup_items WHERE owner_id = ?1 AND kind = ?2",
                params![user_id, kind],
            )?;
        }
        // No API stores location or diagnostics data yet; nothing else to erase.
        ConsentScope::Location | ConsentScope::Diagnostics => {}
    }
    Ok(blobs)
}

/// The next value of one of the user's counters ([`USER_COUNTERS`]), which number their
/// mailboxes and backup changes: the user's own, moved with them, so that the cursors a client
/// holds keep their meaning in the next region (schema_v5_cursors.sql).
pub(crate) fn next_user_counter(
    conn: &Connection,
    user_id: &str,
    name: &'static str,
) -> Result<i64, StoreError> {
    debug_assert!(USER_COUNTERS.contains(&name));
    Ok(conn.query_row(
        "INSERT INTO user_counters (user_id, name, value) VALUES (?1, ?2, 1) \
         ON CONFLICT (user_id, name) DO UPDATE SET value = user_counters.value + 1 RETURNING value",
        params![user_id, name],
        |row| row.get(0),
    )?)
}

/// Refuses a put that would take the owner's live items of its kind past `put.quota`: one more
/// item (a replacement of a live item is not one more), or for photos more bytes in total (the
/// replaced item's bytes are not counted). Runs inside the put's commit.
fn check_backup_quota(conn: &Connection, put: &BackupPut) -> Result<(), StoreError> {
    if put.quota == BackupQuota::default() {
        return Ok(());
    }
    let (items, bytes): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM backup_items \
         WHERE owner_id = ?1 AND kind = ?2 AND deleted = 0 AND item_id <> ?3",
        params![put.owner_id, put.kind, put.item_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some(limit) = put.quota.items_max
        && items >= limit
    {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::BackupItems(put.kind),
            limit,
        });
    }
    if let Some(limit) = put.quota.bytes_max
        && bytes + put.size_bytes.unwrap_or(0) > limit
    {
        return Err(StoreError::QuotaExceeded {
            quota: Quota::BackupBytes(put.kind),
            limit,
        });
    }
    Ok(())
}

/// The per-user quotas of `server.toml`, as a refusal names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Live items of one backup kind.
    BackupItems(&'static str),
    /// Total bytes of one backup kind (photos).
    BackupBytes(&'static str),
    /// Undelivered messages in one recipient's inbox.
    InboxPending,
}

impl Quota {
    /// The stable name clients and metrics see: `contacts_items`, `photos_bytes`,
    /// `inbox_pending`.
    pub fn name(self) -> &'static str {
        match self {
            Quota::BackupItems("contacts") => "contacts_items",
            Quota::BackupItems("sms") => "sms_items",
            Quota::BackupItems(_) => "photos_items",
            Quota::BackupBytes(_) => "photos_bytes",
            Quota::InboxPending => "inbox_pending",
        }
    }
}

/// The counters of one user: the inbox's and sent box's positions, and backup changes.
pub const USER_COUNTERS: [&str; 3] = ["inbox", "sent", "backup"];

/// Stores one copy of a message in `box_name` at the next place of that mailbox, once: a copy
/// with the same id is left as it is (a retried send). `pending_max`: refused with
/// [`StoreError::QuotaExceeded`] when the owner already has that many undelivered messages in
/// this box (checked in the write's commit, so two concurrent sends cannot both pass it; a
/// retry of a stored copy is never refused).
fn insert_message(
    conn: &Connection,
    copy: &MessageCopy,
    box_name: &'static str,
    pending_max: Option<i64>,
) -> Result<(), StoreError> {
    let exists = conn
        .query_row(
            "SELECT 1 FROM messages WHERE owner_id = ?1 AND box = ?2 AND id = ?3",
            params![copy.owner_id, box_name, copy.id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        return Ok(());
    }
    if let Some(limit) = pending_max {
        let pending: i64 = conn.query_row(
            "SELECT COUNT(*) FROM messages WHERE owner_id = ?1 AND box = ?2 \
             AND delivered_at IS NULL",
            params![copy.owner_id, box_name],
            |r| r.get(0),
        )?;
        if pending >= limit {
            return Err(StoreError::QuotaExceeded {
                quota: Quota::InboxPending,
                limit,
            });
        }
    }
    let box_seq = next_user_counter(conn, &copy.owner_id, box_name)?;
    conn.execute(
        "INSERT INTO messages (id, owner_id, box, box_seq, peer_sealed, body_sealed, created_at, \
         expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (owner_id, box, id) DO NOTHING",
        params![
            copy.id,
            copy.owner_id,
            box_name,
            box_seq,
            copy.peer_sealed,
            copy.body_sealed,
            copy.created_at,
            copy.expires_at
        ],
    )
    .map_err(|e| consent_error(e, ConsentScope::Messaging))?;
    Ok(())
}

/// Removes every row of a shredded user (see [`Store::purge_user`]).
fn purge(conn: &Connection, user_id: &str) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM messages WHERE owner_id = ?1",
        "DELETE FROM backup_items WHERE owner_id = ?1",
        "DELETE FROM consent_state WHERE user_id = ?1",
        "DELETE FROM consent_events WHERE user_id = ?1",
        "DELETE FROM sessions WHERE user_id = ?1",
        "DELETE FROM verifications WHERE user_id = ?1",
        "DELETE FROM service_fences WHERE user_id = ?1",
        "DELETE FROM user_counters WHERE user_id = ?1",
        "DELETE FROM consent_outbox WHERE user_id = ?1",
        "DELETE FROM users WHERE id = ?1 AND state = 'deleting'",
    ] {
        conn.execute(sql, params![user_id])?;
    }
    Ok(())
}

impl Store {
    // ---- accounts ----

    pub async fn create_verification(&self, v: NewVerification) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO verifications (id, user_id, phone_index, phone_sealed, password_hash, \
                 wrapped_key, code_digest, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    v.id,
                    v.user_id,
                    v.phone_index,
                    v.phone_sealed,
                    v.password_hash,
                    v.wrapped_key,
                    v.code_digest,
                    v.created_at,
                    v.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Checks a one-time code and, when it is right, creates the account in the same commit.
    /// A wrong code is counted (and committed) so that guessing is bounded by `attempts_max`.
    pub async fn verify(
        &self,
        id: String,
        code_digest: [u8; 32],
        attempts_max: u32,
        region: String,
        now: UnixMs,
    ) -> Result<VerifyOutcome, StoreError> {
        self.write(move |conn| {
            let row = conn
                .query_row(
                    "SELECT user_id, phone_index, phone_sealed, password_hash, wrapped_key, \
                     code_digest, attempts, expires_at, consumed_at FROM verifications WHERE id = ?1",
                    params![id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Vec<u8>>(4)?,
                            r.get::<_, Vec<u8>>(5)?,
                            r.get::<_, u32>(6)?,
                            r.get::<_, i64>(7)?,
                            r.get::<_, Option<i64>>(8)?,
                        ))
                    },
                )
                .optional()?;
            let Some((user_id, index, phone, password, key, digest, attempts, expires, consumed)) =
                row
            else {
                return Ok(VerifyOutcome::Unknown);
            };
            if consumed.is_some() {
                return Ok(VerifyOutcome::AlreadyUsed);
            }
            if now >= expires {
                return Ok(VerifyOutcome::Expired);
            }
            if attempts >= attempts_max {
                return Ok(VerifyOutcome::TooManyAttempts);
            }
            if digest != code_digest {
                conn.execute(
                    "UPDATE verifications SET attempts = attempts + 1 WHERE id = ?1",
                    params![id],
                )?;
                let attempts_left = attempts_max - attempts - 1;
                return Ok(if attempts_left == 0 {
                    VerifyOutcome::TooManyAttempts
                } else {
                    VerifyOutcome::WrongCode { attempts_left }
                });
            }
            let taken = conn
                .query_row("SELECT 1 FROM users WHERE phone_index = ?1", params![index], |_| Ok(()))
                .optional()?
                .is_some();
            if taken {
                return Err(StoreError::PhoneTaken);
            }
            conn.execute(
                "INSERT INTO users (id, phone_index, phone_sealed, password_hash, wrapped_key, \
                 region, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![user_id, index, phone, password, key, region, now],
            )?;
            conn.execute(
                "UPDATE verifications SET consumed_at = ?2, phone_sealed = ?3, \
                 password_hash = '', wrapped_key = ?3 WHERE id = ?1",
                params![id, now, Vec::<u8>::new()],
            )?;
            Ok(VerifyOutcome::Created { user_id, phone_index: index })
        })
        .await
    }

    pub async fn user_by_phone_index(
        &self,
        index: [u8; 32],
    ) -> Result<Option<UserRow>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE phone_index = ?1 AND state = 'active' \
                         AND kind = 'account' AND {NOT_MOVING_IN}"
                    ),
                    params![index],
                    user_row,
                )
                .optional()?)
        })
        .await
    }

    pub async fn user(&self, id: String) -> Result<Option<UserRow>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND state = 'active' AND {NOT_MOVING_IN}"),
                    params![id],
                    user_row,
                )
                .optional()?)
        })
        .await
    }

    // ---- sessions ----

    pub async fn create_session(
        &self,
        token_digest: [u8; 32],
        session: SessionRow,
        user_id: String,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO sessions (token_digest, id, user_id, device_sealed, created_at, \
                 expires_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)",
                params![
                    token_digest,
                    session.id,
                    user_id,
                    session.device_sealed,
                    session.created_at,
                    session.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// The user a live token belongs to.
    pub async fn session_user(
        &self,
        token_digest: [u8; 32],
        now: UnixMs,
    ) -> Result<Option<String>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_digest = ?1 AND s.expires_at > ?2 AND u.state = 'active' \
                     AND NOT EXISTS (SELECT 1 FROM migration_fences f \
                     WHERE f.user_id = u.id AND f.role = 'target')",
                    params![token_digest, now],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// The user a live token belongs to and when the session ends, for a region that holds
    /// some of the user's services and asks their home (`/internal/v1/sessions/verify`).
    pub async fn session_owner(
        &self,
        token_digest: [u8; 32],
        now: UnixMs,
    ) -> Result<Option<(String, UnixMs)>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT s.user_id, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_digest = ?1 AND s.expires_at > ?2 AND u.state = 'active' \
                     AND u.kind = 'account' AND NOT EXISTS (SELECT 1 FROM migration_fences f \
                     WHERE f.user_id = u.id AND f.role = 'target')",
                    params![token_digest, now],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?)
        })
        .await
    }

    pub async fn sessions(&self, user_id: String) -> Result<Vec<SessionRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, device_sealed, created_at, expires_at FROM sessions \
                 WHERE user_id = ?1 ORDER BY created_at",
            )?;
            let rows = stmt.query_map(params![user_id], |r| {
                Ok(SessionRow {
                    id: r.get(0)?,
                    device_sealed: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    // ---- consent ----

    /// Refuses with [`StoreError::Migrating`] when `service` of the user is fenced here
    /// (moving away, or gone), or the whole user is (not active here). A write checks it under
    /// the scope guard before it makes a per-scope key
    /// ([`crate::keys::RegionKeys::scope_guard`]): a move fences the service before it
    /// destroys the service's keys under that guard exclusively, so no key is made here again
    /// for data that can no longer commit here.
    pub async fn service_writable(
        &self,
        user_id: String,
        service: crate::domain::Service,
    ) -> Result<(), StoreError> {
        self.read(move |conn| service_writable(conn, &user_id, service))
            .await
    }

    /// [`Store::has_consent`] and [`Store::service_writable`] for the scope's service, in one
    /// read: whether a write of `scope` may make its key here.
    pub async fn has_consent_to_write(
        &self,
        user_id: String,
        scope: ConsentScope,
        service: crate::domain::Service,
    ) -> Result<bool, StoreError> {
        self.read(move |conn| {
            if !has_consent(conn, &user_id, scope)? {
                return Ok(false);
            }
            service_writable(conn, &user_id, service)?;
            Ok(true)
        })
        .await
    }

    /// Whether `user_id` has granted `scope` right now (see [`has_consent`]).
    pub async fn has_consent(
        &self,
        user_id: String,
        scope: ConsentScope,
    ) -> Result<bool, StoreError> {
        self.read(move |conn| has_consent(conn, &user_id, scope))
            .await
    }

    pub async fn consents(&self, user_id: String) -> Result<Vec<ConsentRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT scope, notice_version, granted_at FROM consent_state WHERE user_id = ?1",
            )?;
            let rows = stmt.query_map(params![user_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (scope, notice_version, granted_at) = row?;
                if let Some(scope) = ConsentScope::parse(&scope) {
                    out.push(ConsentRow {
                        scope,
                        notice_version,
                        granted_at,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn consent_history(
        &self,
        user_id: String,
    ) -> Result<Vec<ConsentEventRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT seq, scope, action, notice_version, at FROM consent_events \
                 WHERE user_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![user_id], |r| {
                Ok(ConsentEventRow {
                    seq: r.get(0)?,
                    scope: r.get(1)?,
                    action: r.get(2)?,
                    notice_version: r.get(3)?,
                    at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Grants a scope against a notice version. Granting again is a no-op, not a new event.
    pub async fn grant(
        &self,
        user_id: String,
        scope: ConsentScope,
        notice_version: u32,
        now: UnixMs,
    ) -> Result<ConsentRow, StoreError> {
        self.write(move |conn| {
            let current: Option<(u32, i64)> = conn
                .query_row(
                    "SELECT notice_version, granted_at FROM consent_state \
                     WHERE user_id = ?1 AND scope = ?2",
                    params![user_id, scope.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((version, granted_at)) = current
                && version == notice_version
            {
                return Ok(ConsentRow {
                    scope,
                    notice_version,
                    granted_at,
                });
            }
            conn.execute(
                "INSERT INTO consent_state (user_id, scope, notice_version, granted_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id, scope) DO UPDATE \
                 SET notice_version = excluded.notice_version, granted_at = excluded.granted_at",
                params![user_id, scope.as_str(), notice_version, now],
            )?;
            conn.execute(
                "INSERT INTO consent_events (user_id, scope, action, notice_version, at) \
                 VALUES (?1, ?2, 'grant', ?3, ?4)",
                params![user_id, scope.as_str(), notice_version, now],
            )?;
            Ok(ConsentRow {
                scope,
                notice_version,
                granted_at: now,
            })
        })
        .await
    }

    /// Withdraws a scope and erases, in the same commit, every row of the data it covered.
    /// Returns the blobs to delete from the object store after the commit.
    pub async fn withdraw(
        &self,
        user_id: String,
        scope: ConsentScope,
        now: UnixMs,
    ) -> Result<Vec<String>, StoreError> {
        self.write(move |conn| {
            let removed = conn.execute(
                "DELETE FROM consent_state WHERE user_id = ?1 AND scope = ?2",
                params![user_id, scope.as_str()],
            )?;
            if removed == 0 {
                return Ok(Vec::new());
            }
            conn.execute(
                "INSERT INTO consent_events (user_id, scope, action, notice_version, at) \
                 VALUES (?1, ?2, 'withdraw', NULL, ?3)",
                params![user_id, scope.as_str(), now],
            )?;
            erase_scope_data(conn, &user_id, scope)
        })
        .await
    }

    // ---- messaging ----

    /// Stores the sender's copy and the recipient's copy of a message in one commit. Refused
    /// when either side has not granted `messaging`; the recipient's refusal is reported as
    /// `NotFound` so the caller cannot tell it from a number without an account.
    /// Returns the recipient copy's cursor position.
    /// `inbox_pending_max`: the recipient's quota of undelivered messages.
    pub async fn send_message(
        &self,
        sent: MessageCopy,
        inbox: MessageCopy,
        inbox_pending_max: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write(move |conn| {
            if !has_consent(conn, &sent.owner_id, ConsentScope::Messaging)? {
                return Err(StoreError::ConsentRequired(ConsentScope::Messaging));
            }
            if !has_consent(conn, &inbox.owner_id, ConsentScope::Messaging)? {
                return Err(StoreError::NotFound);
            }
            // Idempotent: a retried send (same id) stores each copy once.
            insert_message(conn, &sent, "sent", None)?;
            insert_message(conn, &inbox, "inbox", inbox_pending_max)?;
            Ok(conn.query_row(
                "SELECT box_seq FROM messages WHERE owner_id = ?1 AND box = 'inbox' AND id = ?2",
                params![inbox.owner_id, inbox.id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Stores one copy of a message whose other copy lives in another region. The owner's
    /// `messaging` consent is checked in the same commit; a recipient without it is reported as
    /// `NotFound`, as in [`Store::send_message`]. `pending_max` as in [`Store::send_message`].
    pub async fn store_message_copy(
        &self,
        copy: MessageCopy,
        box_name: &'static str,
        pending_max: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write(move |conn| {
            if !has_consent(conn, &copy.owner_id, ConsentScope::Messaging)? {
                return Err(if box_name == "inbox" {
                    StoreError::NotFound
                } else {
                    StoreError::ConsentRequired(ConsentScope::Messaging)
                });
            }
            // Idempotent: a forward retried after a lost answer stores the copy once.
            insert_message(conn, &copy, box_name, pending_max)?;
            Ok(conn.query_row(
                "SELECT box_seq FROM messages WHERE owner_id = ?1 AND box = ?2 AND id = ?3",
                params![copy.owner_id, box_name, copy.id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn messages_after(
        &self,
        owner_id: String,
        box_name: &'static str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let limit = limit.min(PAGE_ROWS_MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE owner_id = ?1 AND box = ?2 \
                 AND box_seq > ?3 ORDER BY box_seq LIMIT ?4"
            ))?;
            let rows =
                stmt.query_map(params![owner_id, box_name, after_seq, limit], message_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The newest cursor position in a user's inbox (0 when empty).
    pub async fn latest_inbox_seq(&self, owner_id: String) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(box_seq), 0) FROM messages WHERE owner_id = ?1 AND box = 'inbox'",
                params![owner_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn undelivered(&self, owner_id: String) -> Result<Vec<MessageRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE owner_id = ?1 AND box = 'inbox' \
                 AND delivered_at IS NULL ORDER BY box_seq LIMIT {PAGE_ROWS_MAX}"
            ))?;
            let rows = stmt.query_map(params![owner_id], message_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Marks a received message delivered. Acknowledging twice is fine.
    pub async fn ack(
        &self,
        owner_id: String,
        message_id: String,
        now: UnixMs,
        delivered_expires_at: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let exists = conn
                .query_row(
                    "SELECT delivered_at FROM messages WHERE owner_id = ?1 AND box = 'inbox' \
                     AND id = ?2",
                    params![owner_id, message_id],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .optional()?;
            match exists {
                None => Err(StoreError::NotFound),
                Some(Some(_)) => Ok(()),
                Some(None) => {
                    conn.execute(
                        "UPDATE messages SET delivered_at = ?3, expires_at = ?4 \
                         WHERE owner_id = ?1 AND box = 'inbox' AND id = ?2",
                        params![owner_id, message_id, now, delivered_expires_at],
                    )?;
                    Ok(())
                }
            }
        })
        .await
    }

    // ---- backup ----

    pub async fn backup_item(
        &self,
        owner_id: String,
        kind: &'static str,
        item_id: String,
    ) -> Result<Option<BackupRow>, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {BACKUP_COLUMNS} FROM backup_items \
                         WHERE owner_id = ?1 AND kind = ?2 AND item_id = ?3"
                    ),
                    params![owner_id, kind, item_id],
                    backup_row,
                )
                .optional()?)
        })
        .await
    }

    /// Creates or replaces an item, checking consent and the expected version in one commit.
    pub async fn put_backup(&self, put: BackupPut) -> Result<BackupWritten, StoreError> {
        self.write(move |conn| {
            if !has_consent(conn, &put.owner_id, put.scope)? {
                return Err(StoreError::ConsentRequired(put.scope));
            }
            let current: Option<(i64, bool, Option<String>)> = conn
                .query_row(
                    "SELECT version, deleted, blob_path FROM backup_items \
                     WHERE owner_id = ?1 AND kind = ?2 AND item_id = ?3",
                    params![put.owner_id, put.kind, put.item_id],
                    |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0, r.get(2)?)),
                )
                .optional()?;
            let live_version = current.as_ref().filter(|c| !c.1).map_or(0, |c| c.0);
            if let Some(expected) = put.expected_version
                && expected != live_version
            {
                return Err(StoreError::VersionConflict { current: live_version });
            }
            check_backup_quota(conn, &put)?;
            let version = current.as_ref().map_or(0, |c| c.0) + 1;
            let change_seq = next_user_counter(conn, &put.owner_id, "backup")?;
            conn.execute(
                "INSERT INTO backup_items (owner_id, kind, item_id, version, change_seq, deleted, \
                 data_sealed, blob_path, content_type, size_bytes, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (owner_id, kind, item_id) DO UPDATE SET version = excluded.version, \
                 change_seq = excluded.change_seq, deleted = 0, data_sealed = excluded.data_sealed, \
                 blob_path = excluded.blob_path, content_type = excluded.content_type, \
                 size_bytes = excluded.size_bytes, updated_at = excluded.updated_at",
                params![
                    put.owner_id,
                    put.kind,
                    put.item_id,
                    version,
                    change_seq,
                    put.data_sealed,
                    put.blob_path,
                    put.content_type,
                    put.size_bytes,
                    put.now
                ],
            )
            .map_err(|e| consent_error(e, put.scope))?;
            Ok(BackupWritten { version, old_blob: current.and_then(|c| c.2) })
        })
        .await
    }

    /// Replaces an item with a tombstone (so that sync clients learn of the deletion) that holds
    /// no data. Deleting never needs consent.
    pub async fn delete_backup(
        &self,
        owner_id: String,
        kind: &'static str,
        item_id: String,
        expected_version: Option<i64>,
        now: UnixMs,
    ) -> Result<BackupWritten, StoreError> {
        self.write(move |conn| {
            let current: Option<(i64, bool, Option<String>)> = conn
                .query_row(
                    "SELECT version, deleted, blob_path FROM backup_items \
                     WHERE owner_id = ?1 AND kind = ?2 AND item_id = ?3",
                    params![owner_id, kind, item_id],
                    |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0, r.get(2)?)),
                )
                .optional()?;
            let Some((version, false, blob)) = current else {
                return Err(StoreError::NotFound);
            };
            if let Some(expected) = expected_version
                && expected != version
            {
                return Err(StoreError::VersionConflict { current: version });
            }
            let change_seq = next_user_counter(conn, &owner_id, "backup")?;
            conn.execute(
                "UPDATE backup_items SET version = ?4, change_seq = ?5, deleted = 1, \
                 data_sealed = NULL, blob_path = NULL, content_type = NULL, size_bytes = NULL, \
                 updated_at = ?6 WHERE owner_id = ?1 AND kind = ?2 AND item_id = ?3",
                params![owner_id, kind, item_id, version + 1, change_seq, now],
            )?;
            Ok(BackupWritten {
                version: version + 1,
                old_blob: blob,
            })
        })
        .await
    }

    pub async fn backup_changes(
        &self,
        owner_id: String,
        kind: &'static str,
        since: i64,
        limit: u32,
    ) -> Result<Vec<BackupRow>, StoreError> {
        let limit = limit.min(PAGE_ROWS_MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {BACKUP_COLUMNS} FROM backup_items WHERE owner_id = ?1 AND kind = ?2 \
                 AND change_seq > ?3 ORDER BY change_seq LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![owner_id, kind, since, limit], backup_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One page of a user's live items of one kind, in item id order after `after` (keyset
    /// pagination over the primary key: each page costs the same however many came before),
    /// for an export or an operator's read.
    pub async fn backup_page(
        &self,
        owner_id: String,
        kind: &'static str,
        after: String,
        limit: u32,
    ) -> Result<Vec<BackupRow>, StoreError> {
        let limit = limit.clamp(1, PAGE_ROWS_MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {BACKUP_COLUMNS} FROM backup_items WHERE owner_id = ?1 AND kind = ?2 \
                 AND item_id > ?3 AND deleted = 0 ORDER BY item_id LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![owner_id, kind, after, limit], backup_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One page of a user's messages, both boxes, in (box, place in the box) order after
    /// `after` (keyset pagination over the mailbox index), for an export or an operator's read.
    pub async fn messages_page(
        &self,
        owner_id: String,
        after: MessageCursor,
        limit: u32,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let limit = limit.clamp(1, PAGE_ROWS_MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE owner_id = ?1 \
                 AND (box > ?2 OR (box = ?2 AND box_seq > ?3)) ORDER BY box, box_seq LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![owner_id, after.box_name, after.box_seq, limit],
                message_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    // ---- account deletion ----

    /// Step one of deleting an account: destroy the wrapped data key (after this commit nothing
    /// of the user's can be decrypted) and end every session.
    pub async fn shred_user(&self, user_id: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            let changed = conn.execute(
                "UPDATE users SET wrapped_key = NULL, state = 'deleting' WHERE id = ?1",
                params![user_id],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            conn.execute("DELETE FROM sessions WHERE user_id = ?1", params![user_id])?;
            Ok(())
        })
        .await
    }

    /// Step two: remove every row of a shredded user.
    pub async fn purge_user(&self, user_id: String) -> Result<(), StoreError> {
        self.write(move |conn| purge(conn, &user_id)).await
    }

    /// [`Store::purge_user`] for a user who moved away: background work of the migration,
    /// behind live requests in the writer's queue.
    pub async fn purge_moved_user(&self, user_id: String) -> Result<(), StoreError> {
        self.write_background(move |conn| purge(conn, &user_id))
            .await
    }

    /// Users whose deletion was interrupted after their key was destroyed.
    pub async fn users_being_deleted(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT id FROM users WHERE state = 'deleting'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
