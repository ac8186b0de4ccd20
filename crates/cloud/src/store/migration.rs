//! The store's side of moving a user between regions: a sealed snapshot of everything a user has
//! here, installing such a snapshot in another region, fencing, and erasing the source.
//! Sealed values are copied as they are: they are bound to the user and record, not the region,
//! so only the wrapped data key changes on the way.

use serde::{Deserialize, Serialize};

use super::db::{Connection, Dialect, OptionalExtension, params};

use super::{Store, StoreError};
use crate::clock::UnixMs;
use crate::domain::Service;

/// What one move carries: the account (phone, password, sessions, consent history) and which
/// services' data. A whole-user move carries the account and the services the source holds;
/// a service move carries only its services (and the consent mirror they need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveScope {
    pub account: bool,
    pub messaging: bool,
    pub backup: bool,
}

impl MoveScope {
    pub fn whole() -> MoveScope {
        MoveScope {
            account: true,
            messaging: true,
            backup: true,
        }
    }

    pub fn has(&self, service: Service) -> bool {
        match service {
            Service::Messaging => self.messaging,
            Service::Backup => self.backup,
        }
    }

    pub fn services(&self) -> Vec<Service> {
        Service::ALL.into_iter().filter(|s| self.has(*s)).collect()
    }

    pub fn with(mut self, service: Service, on: bool) -> MoveScope {
        match service {
            Service::Messaging => self.messaging = on,
            Service::Backup => self.backup = on,
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotUser {
    pub id: String,
    #[serde(with = "b64")]
    pub phone_index: Vec<u8>,
    #[serde(with = "b64")]
    pub phone_sealed: Vec<u8>,
    pub password_hash: String,
    #[serde(with = "b64")]
    pub wrapped_key: Vec<u8>,
    pub created_at: UnixMs,
    /// "account" or "service" (see schema_v4.sql).
    pub kind: String,
    /// How much of the home's consent history the consents reflect: its length for an
    /// account, the mirrored version for a service row.
    pub consent_version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSession {
    #[serde(with = "b64")]
    pub token_digest: Vec<u8>,
    pub id: String,
    #[serde(with = "b64")]
    pub device_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConsent {
    pub scope: String,
    pub notice_version: i64,
    pub granted_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConsentEvent {
    pub scope: String,
    pub action: String,
    pub notice_version: Option<i64>,
    pub at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotMessage {
    pub id: String,
    pub box_name: String,
    /// Its place in the mailbox: the cursor clients hold (kept by the move).
    pub box_seq: i64,
    #[serde(with = "b64")]
    pub peer_sealed: Vec<u8>,
    #[serde(with = "b64")]
    pub body_sealed: Vec<u8>,
    pub created_at: UnixMs,
    pub delivered_at: Option<UnixMs>,
    pub expires_at: UnixMs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBackup {
    pub kind: String,
    pub item_id: String,
    pub version: i64,
    /// The user's change counter when it last changed: the cursor clients hold (kept).
    pub change_seq: i64,
    pub deleted: bool,
    #[serde(with = "b64_option")]
    pub data_sealed: Option<Vec<u8>>,
    pub blob_path: Option<String>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub updated_at: UnixMs,
}

/// Bytes as base64 in a snapshot sent between regions (JSON arrays of numbers would be four times
/// longer).
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

mod b64_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

/// Everything one user has in one region, sealed as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSnapshot {
    pub user: SnapshotUser,
    pub sessions: Vec<SnapshotSession>,
    pub consents: Vec<SnapshotConsent>,
    pub consent_events: Vec<SnapshotConsentEvent>,
    pub messages: Vec<SnapshotMessage>,
    pub backup: Vec<SnapshotBackup>,
    /// The user's counters of what moves ("inbox", "sent" with messaging, "backup" with
    /// backup): the target numbers what comes next after them, so cursors keep their meaning.
    pub counters: Vec<(String, i64)>,
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

fn snapshot(
    conn: &Connection,
    user_id: &str,
    scope: MoveScope,
) -> Result<Option<UserSnapshot>, StoreError> {
    let user = conn
        .query_row(
            "SELECT id, phone_index, phone_sealed, password_hash, wrapped_key, created_at, kind, \
             consent_version FROM users WHERE id = ?1 AND state = 'active' \
             AND wrapped_key IS NOT NULL",
            params![user_id],
            |r| {
                Ok(SnapshotUser {
                    id: r.get(0)?,
                    phone_index: r.get(1)?,
                    phone_sealed: r.get(2)?,
                    password_hash: r.get(3)?,
                    wrapped_key: r.get(4)?,
                    created_at: r.get(5)?,
                    kind: r.get(6)?,
                    consent_version: r.get(7)?,
                })
            },
        )
        .optional()?;
    let Some(mut user) = user else {
        return Ok(None);
    };
    if user.kind == "account" {
        user.consent_version = conn.query_row(
            "SELECT count(*) FROM consent_events WHERE user_id = ?1",
            params![user_id],
            |r| r.get(0),
        )?;
    }
    let mut stmt = conn.prepare(
        "SELECT token_digest, id, device_sealed, created_at, expires_at FROM sessions \
         WHERE user_id = ?1 ORDER BY id",
    )?;
    let sessions = stmt
        .query_map(params![if scope.account { user_id } else { "" }], |r| {
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
        .query_map(params![if scope.account { user_id } else { "" }], |r| {
            Ok(SnapshotConsentEvent {
                scope: r.get(0)?,
                action: r.get(1)?,
                notice_version: r.get(2)?,
                at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, box, peer_sealed, body_sealed, created_at, delivered_at, expires_at, box_seq \
         FROM messages WHERE owner_id = ?1 ORDER BY seq",
    )?;
    let messages = stmt
        .query_map(params![if scope.messaging { user_id } else { "" }], |r| {
            Ok(SnapshotMessage {
                id: r.get(0)?,
                box_name: r.get(1)?,
                peer_sealed: r.get(2)?,
                body_sealed: r.get(3)?,
                created_at: r.get(4)?,
                delivered_at: r.get(5)?,
                expires_at: r.get(6)?,
                box_seq: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT kind, item_id, version, deleted, data_sealed, blob_path, content_type, size_bytes, \
         updated_at, change_seq FROM backup_items WHERE owner_id = ?1 ORDER BY kind, item_id",
    )?;
    let backup = stmt
        .query_map(params![if scope.backup { user_id } else { "" }], |r| {
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
                change_seq: r.get(9)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt =
        conn.prepare("SELECT name, value FROM user_counters WHERE user_id = ?1 ORDER BY name")?;
    let counters = stmt
        .query_map(params![user_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|(name, _)| counter_moves(name, scope))
        .collect();
    Ok(Some(UserSnapshot {
        user,
        sessions,
        consents,
        consent_events,
        messages,
        backup,
        counters,
    }))
}

/// Makes this region's copy of what `scope` covers of the user exactly `snapshot` (with
/// `wrapped_key`, wrapped under this region's key). A user new here stays invisible (fenced as
/// 'target') until the move completes; the data of a service moving into a region where the
/// user already lives is unreachable until the directory places it here. Returns the blobs of
/// data the consent mirror no longer allows, to delete after the commit.
fn install(
    conn: &Connection,
    snapshot: &UserSnapshot,
    scope: MoveScope,
    wrapped_key: &[u8],
    region: &str,
    now: UnixMs,
) -> Result<Vec<String>, StoreError> {
    // Before anything is written: a snapshot with cursors the target cannot continue from is
    // refused whole.
    check_counters(snapshot, scope)?;
    let u = &snapshot.user;
    let existing: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT kind, state, consent_version FROM users WHERE id = ?1",
            params![u.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let mut blobs = Vec::new();
    match &existing {
        Some((_, state, _)) if state != "active" => {
            return Err(StoreError::Conflict(format!(
                "user {} is being deleted in {region}",
                u.id
            )));
        }
        None => {
            conn.execute(
                "INSERT INTO migration_fences (user_id, role, since) VALUES (?1, 'target', ?2) \
                 ON CONFLICT (user_id) DO NOTHING",
                params![u.id, now],
            )?;
            let (kind, password) = if scope.account {
                ("account", u.password_hash.as_str())
            } else {
                ("service", "")
            };
            conn.execute(
                "INSERT INTO users (id, phone_index, phone_sealed, password_hash, wrapped_key, region, \
                 created_at, kind, consent_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    u.id,
                    u.phone_index,
                    u.phone_sealed,
                    password,
                    wrapped_key,
                    region,
                    u.created_at,
                    kind,
                    u.consent_version
                ],
            )?;
        }
        Some(_) if scope.account => {
            // An account moving in, or joining the services that already live here (the row
            // stays a 'service' row until the move completes).
            conn.execute(
                "UPDATE users SET phone_index = ?2, phone_sealed = ?3, password_hash = ?4, \
                 wrapped_key = ?5, region = ?6 WHERE id = ?1",
                params![
                    u.id,
                    u.phone_index,
                    u.phone_sealed,
                    u.password_hash,
                    wrapped_key,
                    region
                ],
            )?;
        }
        Some(_) => {}
    }
    let kind_here = existing.as_ref().map_or(
        if scope.account { "account" } else { "service" },
        |(kind, _, _)| kind.as_str(),
    );
    let version_here = existing.as_ref().map_or(-1, |(_, _, v)| *v);
    if !scope.account && kind_here == "service" && u.consent_version >= version_here {
        let consents: Vec<(String, i64, i64)> = snapshot
            .consents
            .iter()
            .map(|c| (c.scope.clone(), c.notice_version, c.granted_at))
            .collect();
        blobs = apply_consent_mirror(conn, &u.id, u.consent_version, &consents)?;
    }
    for service in scope.services() {
        conn.execute(
            "DELETE FROM service_fences WHERE user_id = ?1 AND service = ?2",
            params![u.id, service.as_str()],
        )?;
    }
    if scope.account {
        install_account(conn, snapshot)?;
    }
    if scope.messaging {
        install_messages(conn, snapshot)?;
    }
    if scope.backup {
        install_backup(conn, snapshot)?;
    }
    for (name, value) in snapshot
        .counters
        .iter()
        .filter(|(n, _)| counter_moves(n, scope))
    {
        // Never backwards: what this region numbered already stays below what comes next.
        conn.execute(
            "INSERT INTO user_counters (user_id, name, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_id, name) DO UPDATE SET value = CASE \
             WHEN excluded.value > user_counters.value THEN excluded.value ELSE user_counters.value END",
            params![u.id, name, value],
        )?;
    }
    Ok(blobs)
}

/// Highest counter value a snapshot may bring (2^48: far past any real mailbox, far below
/// where `value + 1` could overflow an i64 in either engine).
pub const USER_COUNTER_MAX: i64 = 1 << 48;

/// Refuses a snapshot whose cursors a target could not continue from: counters out of range,
/// or a message or backup item numbered past the counter that numbers it.
fn check_counters(snapshot: &UserSnapshot, scope: MoveScope) -> Result<(), StoreError> {
    let counter = |name: &str| {
        snapshot
            .counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    };
    let bad = |what: String| Err(StoreError::Conflict(format!("the snapshot's {what}")));
    for (name, value) in &snapshot.counters {
        if !(0..=USER_COUNTER_MAX).contains(value) {
            return bad(format!("counter {name} = {value} is out of range"));
        }
    }
    for m in snapshot.messages.iter().filter(|_| scope.messaging) {
        if m.box_seq < 1 || m.box_seq > counter(&m.box_name) {
            return bad(format!(
                "message {} is at {} past its mailbox's counter",
                m.id, m.box_seq
            ));
        }
    }
    for b in snapshot.backup.iter().filter(|_| scope.backup) {
        if b.change_seq < 0 || b.change_seq > counter("backup") {
            return bad(format!(
                "item {} changed at {} past the counter",
                b.item_id, b.change_seq
            ));
        }
    }
    Ok(())
}

/// Whether the counter `name` moves with `scope` (the mailboxes with messaging, the change
/// counter with backup).
fn counter_moves(name: &str, scope: MoveScope) -> bool {
    match name {
        "inbox" | "sent" => scope.messaging,
        "backup" => scope.backup,
        _ => false,
    }
}

/// Makes the user's consents here (a 'service' row's mirror) exactly `consents`, at `version`
/// of the home's history; the data of a scope no longer granted is erased in the same commit,
/// as a withdrawal at home erases it there. Returns the blobs to delete after the commit.
pub(crate) fn apply_consent_mirror(
    conn: &Connection,
    user_id: &str,
    version: i64,
    consents: &[(String, i64, i64)],
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT scope FROM consent_state WHERE user_id = ?1")?;
    let current: Vec<String> = stmt
        .query_map(params![user_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut blobs = Vec::new();
    for scope in &current {
        if consents.iter().any(|(s, _, _)| s == scope) {
            continue;
        }
        if let Some(parsed) = sovereign_model::ConsentScope::parse(scope) {
            blobs.extend(super::queries::erase_scope_data(conn, user_id, parsed)?);
        }
        conn.execute(
            "DELETE FROM consent_state WHERE user_id = ?1 AND scope = ?2",
            params![user_id, scope],
        )?;
    }
    for (scope, notice_version, granted_at) in consents {
        conn.execute(
            "INSERT INTO consent_state (user_id, scope, notice_version, granted_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id, scope) DO UPDATE \
             SET notice_version = excluded.notice_version, granted_at = excluded.granted_at",
            params![user_id, scope, notice_version, granted_at],
        )?;
    }
    conn.execute(
        "UPDATE users SET consent_version = ?2 WHERE id = ?1",
        params![user_id, version],
    )?;
    Ok(blobs)
}

/// The account's own rows: sessions, consents and their history.
fn install_account(conn: &Connection, snapshot: &UserSnapshot) -> Result<(), StoreError> {
    let u = &snapshot.user;
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
    Ok(())
}

/// Messages: upsert what the source has, drop what it no longer has, in the source's order so
/// that a mailbox reads the same after the move.
fn install_messages(conn: &Connection, snapshot: &UserSnapshot) -> Result<(), StoreError> {
    let u = &snapshot.user;
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS keep (a TEXT, b TEXT, PRIMARY KEY (a, b))",
        [],
    )?;
    conn.execute("DELETE FROM keep", [])?;
    for m in &snapshot.messages {
        conn.execute(
            "INSERT INTO messages (id, owner_id, box, peer_sealed, body_sealed, created_at, delivered_at, expires_at, box_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (owner_id, box, id) DO UPDATE SET \
             delivered_at = excluded.delivered_at, expires_at = excluded.expires_at, box_seq = excluded.box_seq",
            params![m.id, u.id, m.box_name, m.peer_sealed, m.body_sealed, m.created_at, m.delivered_at, m.expires_at, m.box_seq],
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
    Ok(())
}

/// Backup items: upsert what the source has, drop what it no longer has.
fn install_backup(conn: &Connection, snapshot: &UserSnapshot) -> Result<(), StoreError> {
    let u = &snapshot.user;
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS keep (a TEXT, b TEXT, PRIMARY KEY (a, b))",
        [],
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
            // The source's number: a client's `since=` from there means the same here.
            let change_seq = b.change_seq;
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
    /// `accounts_only` leaves out users of whom this region holds only services.
    pub async fn active_users(
        &self,
        accounts_only: bool,
    ) -> Result<Vec<(String, Vec<u8>, Vec<u8>)>, StoreError> {
        self.read(move |conn| {
            let kind = if accounts_only {
                " AND kind = 'account'"
            } else {
                ""
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT id, phone_sealed, wrapped_key FROM users WHERE state = 'active' \
                 AND wrapped_key IS NOT NULL{kind} AND NOT EXISTS (SELECT 1 FROM migration_fences f \
                 WHERE f.user_id = users.id AND f.role = 'target') ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// A consistent snapshot of what `scope` covers of one user, sealed as stored; `None` when
    /// the user is not here.
    pub async fn snapshot_user(
        &self,
        user_id: String,
        scope: MoveScope,
    ) -> Result<Option<UserSnapshot>, StoreError> {
        // A read transaction gives one consistent view across all the tables.
        self.read_background(move |conn| {
            // PostgreSQL's default (READ COMMITTED) takes a new snapshot per statement.
            conn.execute_batch(match conn.dialect() {
                Dialect::Sqlite => "BEGIN",
                Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            })?;
            let result = snapshot(conn, &user_id, scope);
            let _ = conn.execute_batch("COMMIT");
            result
        })
        .await
    }

    /// Installs (or brings up to date) the copy of what `scope` covers of a user moving into
    /// this region. Returns blobs to delete (see [`install`]).
    pub async fn install_user(
        &self,
        snapshot: UserSnapshot,
        scope: MoveScope,
        wrapped_key: Vec<u8>,
        region: String,
        now: UnixMs,
    ) -> Result<Vec<String>, StoreError> {
        self.write_background(move |conn| {
            let kind: Option<String> = conn
                .query_row(
                    "SELECT kind FROM users WHERE id = ?1",
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
            if scope.account && kind.as_deref() == Some("account") && !moving_in {
                // Already live here: a finished move is never overwritten by a stale copy.
                return Ok(Vec::new());
            }
            install(conn, &snapshot, scope, &wrapped_key, &region, now)
        })
        .await
    }

    /// Stops every write to these services of the user here (and to their consents) until
    /// [`Store::erase_services`] or [`Store::unfence_services`].
    pub async fn fence_services(
        &self,
        user_id: String,
        services: Vec<Service>,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write_background(move |conn| {
            for service in services {
                conn.execute(
                    "INSERT INTO service_fences (user_id, service, state, since) \
                     VALUES (?1, ?2, 'moving', ?3) ON CONFLICT (user_id, service) DO UPDATE \
                     SET state = 'moving', since = excluded.since",
                    params![user_id, service.as_str(), now],
                )?;
            }
            Ok(())
        })
        .await
    }

    pub async fn unfence_services(
        &self,
        user_id: String,
        services: Vec<Service>,
    ) -> Result<(), StoreError> {
        self.write_background(move |conn| {
            for service in services {
                conn.execute(
                    "DELETE FROM service_fences WHERE user_id = ?1 AND service = ?2 \
                     AND state = 'moving'",
                    params![user_id, service.as_str()],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// The source's last step of a service move, in one commit: delete the services' rows and
    /// mark them gone (so a request already on its way cannot write them again here). Returns
    /// the blobs to delete after the commit.
    pub async fn erase_services(
        &self,
        user_id: String,
        services: Vec<Service>,
        now: UnixMs,
    ) -> Result<Vec<String>, StoreError> {
        self.write_background(move |conn| {
            let mut blobs = Vec::new();
            for service in services {
                match service {
                    Service::Messaging => {
                        conn.execute("DELETE FROM messages WHERE owner_id = ?1", params![user_id])?;
                    }
                    Service::Backup => {
                        let mut stmt = conn.prepare(
                            "SELECT blob_path FROM backup_items WHERE owner_id = ?1 \
                             AND blob_path IS NOT NULL",
                        )?;
                        for path in stmt.query_map(params![user_id], |r| r.get(0))? {
                            blobs.push(path?);
                        }
                        conn.execute(
                            "DELETE FROM backup_items WHERE owner_id = ?1",
                            params![user_id],
                        )?;
                    }
                }
                conn.execute(
                    "INSERT INTO service_fences (user_id, service, state, since) \
                     VALUES (?1, ?2, 'gone', ?3) ON CONFLICT (user_id, service) DO UPDATE \
                     SET state = 'gone', since = excluded.since",
                    params![user_id, service.as_str(), now],
                )?;
            }
            Ok(blobs)
        })
        .await
    }

    /// Applies the home region's consents to a user of whom this region holds only services
    /// (see [`apply_consent_mirror`]); an older `version` than the one applied is ignored.
    /// `None` when the user has no service row here. Returns the blobs to delete.
    pub async fn mirror_consents(
        &self,
        user_id: String,
        version: i64,
        consents: Vec<(String, i64, i64)>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.write(move |conn| {
            let current: Option<i64> = conn
                .query_row(
                    "SELECT consent_version FROM users WHERE id = ?1 AND kind = 'service' \
                     AND state = 'active'",
                    params![user_id],
                    |r| r.get(0),
                )
                .optional()?;
            match current {
                None => Ok(None),
                Some(current) if version < current => Ok(Some(Vec::new())),
                Some(_) => Ok(Some(apply_consent_mirror(
                    conn, &user_id, version, &consents,
                )?)),
            }
        })
        .await
    }

    /// How far the user's consent history goes (its length): the version a mirror is at.
    pub async fn consent_version(&self, user_id: String) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT count(*) FROM consent_events WHERE user_id = ?1",
                params![user_id],
                |r| r.get(0),
            )?)
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

    /// Makes a moved-in user live here; with `account`, their account too (a 'service' row
    /// whose account joined it becomes the account).
    pub async fn activate_user(&self, user_id: String, account: bool) -> Result<(), StoreError> {
        self.write_background(move |conn| {
            conn.execute(
                "DELETE FROM migration_fences WHERE user_id = ?1 AND role = 'target'",
                params![user_id],
            )?;
            if account {
                conn.execute(
                    "UPDATE users SET kind = 'account', consent_version = 0 WHERE id = ?1",
                    params![user_id],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Stops every write to the user's data here until [`Store::finish_move`] or
    /// [`Store::unfence_user`].
    pub async fn fence_user(&self, user_id: String, now: UnixMs) -> Result<(), StoreError> {
        self.write_background(move |conn| {
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
        self.write_background(move |conn| {
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
        self.write_background(move |conn| {
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

    /// The regions users left this region for: their homes can vouch for their tokens.
    pub async fn moved_regions(&self) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT region FROM moved_users WHERE region <> '' ORDER BY 1")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
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
