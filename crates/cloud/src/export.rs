//! The export, and an operator's read, in pages: what one request holds in memory is one page
//! of rows (at most `export_page_rows` rows, and for photos at most [`PAGE_BYTES_MAX`] bytes
//! past the first item), whatever the account holds.
//!
//! `GET /v1/me/export` is written to the response as it is read: the account, consents and
//! their history first, then the messages and each backup kind page by page (keyset pagination:
//! [`crate::store::Store::messages_page`], [`crate::store::Store::backup_page`]), each page of a
//! part held in another region asked of that region in turn ([`USER_EXPORT_PAGE_PATH`]), so
//! neither side holds the part whole. The document's last member is `"complete": true`; a
//! failure after the first byte cuts the response off (the chunked body ends without its last
//! chunk and the JSON is left unclosed), so a client never takes a partial export for a whole
//! one.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sovereign_model::RegionId;
use tokio::sync::mpsc;

use crate::clock::rfc3339;
use crate::domain::{BackupKind, Service};
use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::routes::{backup, consents, me, messages};
use crate::state::AppState;
use crate::store::MessageCursor;

/// Where the home asks a service region for one page of a part of an export it has begun.
pub const USER_EXPORT_PAGE_PATH: &str = "/internal/v1/users/export/page";
/// Most bytes of photos one page carries beyond its first item (a page always makes progress:
/// one photo of `photo_bytes_max` fits alone).
pub const PAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long after an export began (its ledger entry) its pages are handed over.
pub const EXPORT_WINDOW_MS: i64 = 60 * 60 * 1000;
/// Bytes gathered before they go to the client as one chunk.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks queued between the reader of the store and the connection: the reader waits for a
/// slow client instead of reading ahead.
const CHUNKS_QUEUED: usize = 2;

/// One part of an export: the messages, or one backup kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Messages,
    Backup(BackupKind),
}

impl Part {
    /// In the order the document holds them.
    pub const ALL: [Part; 4] = [
        Part::Messages,
        Part::Backup(BackupKind::Contacts),
        Part::Backup(BackupKind::Sms),
        Part::Backup(BackupKind::Photos),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Part::Messages => "messages",
            Part::Backup(kind) => kind.as_str(),
        }
    }

    /// # Errors
    /// `422 invalid_field` for an unknown part.
    pub fn parse(text: &str) -> Result<Part, ApiError> {
        match text {
            "messages" => Ok(Part::Messages),
            other => BackupKind::parse(other).map(Part::Backup).map_err(|_| {
                ApiError::invalid("part", "must be messages, contacts, sms or photos")
            }),
        }
    }

    pub fn service(self) -> Service {
        match self {
            Part::Messages => Service::Messaging,
            Part::Backup(_) => Service::Backup,
        }
    }
}

/// One page of a part held here: its items, decrypted, and the cursor after the last of them
/// (`None` when the part is done).
///
/// # Errors
/// `422 invalid_field` for a cursor this function did not write; store and decryption errors.
pub async fn local_page(
    state: &AppState,
    user: &AuthUser,
    part: Part,
    after: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let rows_max = state.policies.limits.export_page_rows;
    let user_id = user.id.to_string();
    match part {
        Part::Messages => {
            let after = match after {
                None => MessageCursor::default(),
                Some(text) => MessageCursor::decode(text)
                    .ok_or_else(|| ApiError::invalid("after", "must be a cursor of this API"))?,
            };
            let rows = state.store.messages_page(user_id, after, rows_max).await?;
            let next = (rows.len() as u64 >= u64::from(rows_max))
                .then(|| rows.last().map(|r| MessageCursor::after(r).encode()))
                .flatten();
            let mut items = Vec::with_capacity(rows.len());
            let keys = messages::MessageKeys::of(state, user)?;
            for row in &rows {
                items.push(
                    serde_json::to_value(messages::open_message(&keys, row)?)
                        .map_err(ApiError::internal)?,
                );
            }
            Ok((items, next))
        }
        Part::Backup(kind) => {
            let after = after.unwrap_or("").to_owned();
            let rows = state
                .store
                .backup_page(user_id, kind.as_str(), after, rows_max)
                .await?;
            let full = rows.len() as u64 >= u64::from(rows_max);
            let mut items = Vec::with_capacity(rows.len());
            let mut bytes = 0usize;
            let mut last = None;
            for row in &rows {
                let size = usize::try_from(row.size_bytes.unwrap_or(0)).unwrap_or(usize::MAX);
                if !items.is_empty() && bytes.saturating_add(size) > PAGE_BYTES_MAX {
                    // The rest goes in the next page.
                    return Ok((items, last));
                }
                bytes = bytes.saturating_add(size);
                items.push(backup::export_item(state, user, row).await?);
                last = Some(row.item_id.clone());
            }
            Ok((items, if full { last } else { None }))
        }
    }
}

/// A service region's part of an export, as the home reads it: begun (the region writes its
/// ledger entry and says which parts it holds), then page by page.
struct RemotePart {
    region: RegionId,
    parts: Vec<Part>,
}

/// Asks each region holding one of the user's services to begin its part of export
/// `export_id`: each checks that the user asked (their token) and writes its ledger entry.
async fn begin_remote(
    state: &AppState,
    user_id: &str,
    token: &str,
    export_id: &str,
) -> Result<Vec<RemotePart>, ApiError> {
    let mut out = Vec::new();
    for region in crate::placement::service_regions(state, user_id).await? {
        let body = json!({ "user_id": user_id, "session_token": token, "export_id": export_id });
        let (status, answer) = state
            .federation
            .post(
                &region,
                crate::placement::USER_EXPORT_PATH,
                &body,
                state.now_ms(),
            )
            .await?;
        if status != 200 {
            return Err(ApiError::RegionUnavailable(region.to_string()));
        }
        let parts = answer["parts"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.as_str().and_then(|p| Part::parse(p).ok()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(RemotePart { region, parts });
    }
    Ok(out)
}

/// One page of `part` from a region that began its part of the export.
async fn remote_page(
    state: &AppState,
    region: &RegionId,
    user_id: &str,
    export_id: &str,
    part: Part,
    after: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let body = json!({
        "user_id": user_id, "export_id": export_id, "part": part.as_str(), "after": after,
    });
    let (status, answer) = state
        .federation
        .post(region, USER_EXPORT_PAGE_PATH, &body, state.now_ms())
        .await?;
    if status != 200 {
        return Err(ApiError::RegionUnavailable(region.to_string()));
    }
    let Value::Object(mut answer) = answer else {
        return Err(ApiError::RegionUnavailable(region.to_string()));
    };
    let items = match answer.remove("items") {
        Some(Value::Array(items)) => items,
        _ => return Err(ApiError::RegionUnavailable(region.to_string())),
    };
    let next = answer
        .get("next")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((items, next))
}

/// Whether a service region's page moves its part forward: a page that promises more must
/// carry items and a cursor it never gave before, or a coerced region could keep the home
/// paging (and the client's export open) forever.
fn advances(
    cursors: &mut std::collections::HashSet<String>,
    items: &[Value],
    next: Option<&str>,
) -> bool {
    match next {
        None => true,
        Some(next) => !items.is_empty() && cursors.insert(next.to_owned()),
    }
}

/// The export's bytes on their way to the client, gathered into chunks.
struct Sink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

/// The client went away: stop reading.
struct Gone;

impl Sink {
    async fn raw(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        self.buf.extend_from_slice(bytes);
        self.flush_full().await
    }

    async fn value<T: Serialize>(&mut self, value: &T) -> Result<(), Gone> {
        // Invariant: serialising a `Value` or a derived `Serialize` into memory cannot fail.
        serde_json::to_writer(&mut self.buf, value).map_err(|_| Gone)?;
        self.flush_full().await
    }

    async fn flush_full(&mut self) -> Result<(), Gone> {
        if self.buf.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.send(Ok(chunk)).await.map_err(|_| Gone)
    }

    /// Cuts the response off: the client sees the body end in error, never a closed document.
    async fn fail(self) {
        let _ = self
            .tx
            .send(Err(std::io::Error::other("the export failed")))
            .await;
    }
}

/// Why writing stopped.
enum Stop {
    Gone,
    Failed(ApiError),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Stop {
        Stop::Gone
    }
}

impl From<ApiError> for Stop {
    fn from(error: ApiError) -> Stop {
        Stop::Failed(error)
    }
}

/// The export of `user`, whose session token `token` is, as a streamed response. What can fail
/// with a clear answer fails before the first byte (a region holding a service that does not
/// begin its part: `503 region_unavailable`).
///
/// # Errors
/// As above; the store's errors before the first byte.
pub async fn export_response(
    state: AppState,
    user: AuthUser,
    token: String,
) -> Result<Response, ApiError> {
    let user_id = user.id.to_string();
    let mut head = Map::new();
    head.insert("exported_at".into(), Value::from(rfc3339(state.now_ms())));
    head.insert("region".into(), Value::from(state.region.id.as_str()));
    let mut regions = Map::new();
    regions.insert("account".to_owned(), Value::from(state.region.id.as_str()));
    for service in Service::ALL {
        let region = state
            .directory
            .service_region(user_id.clone(), service)
            .await?
            .map_or_else(|| state.region.id.to_string(), |r| r.to_string());
        regions.insert(service.as_str().to_owned(), Value::from(region));
    }
    head.insert("regions".into(), Value::Object(regions));
    head.insert(
        "account".into(),
        serde_json::to_value(me::me_view(&state, &user).await?).map_err(ApiError::internal)?,
    );
    head.insert(
        "consents".into(),
        serde_json::to_value(consents::consent_views(&state, &user).await?)
            .map_err(ApiError::internal)?,
    );
    head.insert(
        "consent_history".into(),
        serde_json::to_value(consents::history_events(&state, &user).await?)
            .map_err(ApiError::internal)?,
    );
    let mut local = Vec::new();
    for part in Part::ALL {
        if crate::placement::holds(&state, &user_id, part.service()).await? {
            local.push(part);
        }
    }
    let export_id = uuid::Uuid::new_v4().simple().to_string();
    let remote = begin_remote(&state, &user_id, &token, &export_id).await?;

    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    tokio::spawn(async move {
        let mut sink = Sink {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES * 2),
        };
        let written = write_body(
            &state, &user, &user_id, &export_id, head, &local, &remote, &mut sink,
        )
        .await;
        match written {
            Ok(()) => {}
            Err(Stop::Gone) => tracing::debug!("the client left during an export"),
            Err(Stop::Failed(error)) => {
                tracing::warn!(%error, "an export failed after it began; the response is cut");
                sink.fail().await;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[allow(clippy::too_many_arguments)]
async fn write_body(
    state: &AppState,
    user: &AuthUser,
    user_id: &str,
    export_id: &str,
    head: Map<String, Value>,
    local: &[Part],
    remote: &[RemotePart],
    sink: &mut Sink,
) -> Result<(), Stop> {
    // The head, without its closing brace: the parts follow as further members.
    let head = serde_json::to_vec(&Value::Object(head)).map_err(ApiError::internal)?;
    sink.raw(&head[..head.len() - 1]).await?;
    for part in Part::ALL {
        match part {
            Part::Messages => sink.raw(b",\"messages\":[").await?,
            Part::Backup(BackupKind::Contacts) => {
                sink.raw(b"],\"backup\":{\"contacts\":[").await?;
            }
            Part::Backup(kind) => {
                sink.raw(format!("],\"{}\":[", kind.as_str()).as_bytes())
                    .await?;
            }
        }
        let mut first = true;
        if local.contains(&part) {
            let mut after: Option<String> = None;
            loop {
                let (items, next) = local_page(state, user, part, after.as_deref()).await?;
                write_items(sink, &items, &mut first).await?;
                sink.flush().await?;
                state.faults.check(crate::faults::EXPORT_AFTER_PAGE)?;
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        for region in remote.iter().filter(|r| r.parts.contains(&part)) {
            let mut after: Option<String> = None;
            let mut cursors = std::collections::HashSet::new();
            loop {
                let (items, next) = remote_page(
                    state,
                    &region.region,
                    user_id,
                    export_id,
                    part,
                    after.as_deref(),
                )
                .await?;
                if !advances(&mut cursors, &items, next.as_deref()) {
                    tracing::warn!(region = %region.region, part = part.as_str(),
                        "a service region's export pages make no progress; export cut");
                    return Err(ApiError::RegionUnavailable(region.region.to_string()).into());
                }
                write_items(sink, &items, &mut first).await?;
                sink.flush().await?;
                state.faults.check(crate::faults::EXPORT_AFTER_PAGE)?;
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
    }
    sink.raw(b"]},\"complete\":true}").await?;
    sink.flush().await?;
    Ok(())
}

async fn write_items(sink: &mut Sink, items: &[Value], first: &mut bool) -> Result<(), Gone> {
    for item in items {
        if !*first {
            sink.raw(b",").await?;
        }
        *first = false;
        sink.value(item).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_regions_pages_must_advance() {
        let mut cursors = std::collections::HashSet::new();
        let items = [json!({"id": 1})];
        assert!(advances(&mut cursors, &items, Some("a")));
        assert!(advances(&mut cursors, &items, Some("b")));
        assert!(
            !advances(&mut cursors, &items, Some("a")),
            "a cursor seen before"
        );
        assert!(
            !advances(&mut cursors, &[], Some("c")),
            "no items, yet more"
        );
        assert!(
            advances(&mut cursors, &[], None),
            "the last page may be empty"
        );
    }
}
