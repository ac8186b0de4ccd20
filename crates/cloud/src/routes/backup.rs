//! Backup and sync of contacts, SMS and photos: idempotent puts keyed by the client's item id,
//! versions with `If-Match` for conflicts, and incremental sync from a cursor.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::blobs::Blobs;
use crate::clock::rfc3339;
use crate::domain::{BackupKind, ContactRecord, ItemId, Service, SmsRecord};
use crate::error::ApiError;
use crate::extract::{AuthUser, aad, parse_json, read_body, require_json};
use crate::state::AppState;
use crate::store::{BackupPut, BackupRow, PAGE_ROWS_MAX};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/backup/{kind}", get(changes))
        .route(
            "/v1/backup/{kind}/{id}",
            get(get_item).put(put_item).delete(delete_item),
        )
}

#[derive(Serialize, ToSchema)]
pub struct PutResponse {
    id: String,
    version: i64,
}

fn record_name(kind: BackupKind, id: &str) -> String {
    format!("{}:{id}", kind.as_str())
}

fn etag(version: i64) -> HeaderValue {
    // Invariant: a quoted decimal number is a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).expect("etag")
}

/// `If-Match: "3"` → only if the current version is 3; `If-None-Match: *` → only if absent.
fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        return match value.to_str() {
            Ok("*") => Ok(Some(0)),
            _ => Err(ApiError::invalid("If-None-Match", "only `*` is supported")),
        };
    }
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .map(Some)
        .ok_or_else(|| ApiError::invalid("If-Match", "must be an ETag returned by this API"))
}

/// The canonical stored form of a contact or SMS: checked, then re-serialised.
async fn json_payload(
    kind: BackupKind,
    request: Request,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    require_json(request.headers())?;
    let bytes = read_body(request, limit).await?;
    let canonical = match kind {
        BackupKind::Contacts => {
            let record: ContactRecord = parse_json(&bytes)?;
            record.check()?;
            serde_json::to_vec(&record)
        }
        BackupKind::Sms => {
            let record: SmsRecord = parse_json(&bytes)?;
            record.check()?;
            serde_json::to_vec(&record)
        }
        BackupKind::Photos => unreachable!("photos are not JSON"),
    };
    canonical.map_err(ApiError::internal)
}

fn photo_content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let allowed = content_type.starts_with("image/") || content_type == "application/octet-stream";
    if allowed && content_type.len() <= 100 {
        Ok(content_type)
    } else {
        Err(ApiError::UnsupportedMediaType {
            expected: "image/* or application/octet-stream",
        })
    }
}

/// The key that seals a kind's items: the user's key for its consent scope
/// ([`crate::scope_keys`]), destroyed when the scope is withdrawn.
fn scope_key(
    state: &AppState,
    user: &AuthUser,
    kind: BackupKind,
) -> Result<sovereign_crypto::DataKey, ApiError> {
    state
        .keys
        .scope_key(&user.id, kind.scope())
        .map_err(ApiError::Internal)?
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "user {} has {} items but no key for them",
                user.id,
                kind.as_str()
            ))
        })
}

/// The plaintext of a live item (JSON for contacts and SMS, the bytes of a photo).
async fn open_item(
    state: &AppState,
    user: &AuthUser,
    kind: BackupKind,
    row: &BackupRow,
) -> Result<Vec<u8>, ApiError> {
    let record = record_name(kind, &row.item_id);
    match (&row.data_sealed, &row.blob_path) {
        (Some(sealed), _) => scope_key(state, user, kind)?
            .open(&aad("backup", &user.id, &record, "data"), sealed)
            .map_err(ApiError::internal),
        (None, Some(path)) => {
            let sealed = state.blobs.get(path).await.map_err(ApiError::Internal)?;
            scope_key(state, user, kind)?
                .open(&aad("backup", &user.id, &record, path), &sealed)
                .map_err(ApiError::internal)
        }
        (None, None) => Err(ApiError::NotFound),
    }
}

/// Creates or replaces an item. Repeating the same put changes nothing and answers the same.
#[utoipa::path(put, path = "/v1/backup/{kind}/{id}",
    params(("kind" = String, Path, description = "contacts, sms or photos"), ("id" = String, Path, description = "the client's id for the item"),
           ("If-Match" = Option<String>, Header, description = "the ETag the client last saw"), ("If-None-Match" = Option<String>, Header, description = "`*`: create only")),
    request_body(content = ContactRecord, description = "contacts: ContactRecord; sms: SmsRecord; photos: the image bytes"),
    responses((status = 201, body = PutResponse), (status = 200, body = PutResponse), (status = 403, description = "consent_required"),
              (status = 412, description = "version_conflict"), (status = 413), (status = 415)),
    security(("bearer" = [])))]
pub async fn put_item(
    State(state): State<AppState>,
    user: AuthUser,
    Path((kind, id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let kind = BackupKind::parse(&kind)?;
    let id = ItemId::parse(&id)?;
    let expected = expected_version(request.headers())?;
    // Refuse early, before reading a large body; the store checks again when it writes.
    if !state
        .store
        .has_consent(user.id.to_string(), kind.scope())
        .await?
    {
        return Err(ApiError::ConsentRequired(kind.scope()));
    }
    let limits = &state.policies.limits;
    let (plaintext, content_type) = match kind {
        BackupKind::Photos => {
            let content_type = photo_content_type(request.headers())?;
            let bytes = read_body(request, limits.photo_bytes_max).await?;
            if bytes.is_empty() {
                return Err(ApiError::invalid("body", "a photo cannot be empty"));
            }
            (bytes.to_vec(), Some(content_type))
        }
        _ => (
            json_payload(kind, request, limits.json_body_bytes_max).await?,
            None,
        ),
    };

    // Held from taking the scope's key to the row's commit: a withdrawal waits for it before
    // destroying the key, so no row commits sealed with a destroyed key.
    let guard = state.keys.scope_guard(&user.id);
    let _shared = guard.read().await;
    let current = state
        .store
        .backup_item(user.id.to_string(), kind.as_str(), id.as_str().to_owned())
        .await?;
    let live = current.filter(|row| !row.deleted);
    if let Some(row) = &live
        && row.content_type == content_type
        && open_item(&state, &user, kind, row).await? == plaintext
    {
        return Ok(put_response(StatusCode::OK, id, row.version));
    }

    let record = record_name(kind, id.as_str());
    state
        .store
        .service_writable(user.id.to_string(), Service::Backup)
        .await?;
    let key = state
        .keys
        .scope_key_or_create(&user.id, kind.scope())
        .map_err(ApiError::Internal)?;
    let (data_sealed, blob_path) = match kind {
        BackupKind::Photos => {
            let path = Blobs::new_path(user.id.as_str());
            let sealed = key
                .seal(&aad("backup", &user.id, &record, &path), &plaintext)
                .map_err(ApiError::internal)?;
            state
                .blobs
                .put(&path, sealed)
                .await
                .map_err(ApiError::Internal)?;
            (None, Some(path))
        }
        _ => {
            let sealed = key
                .seal(&aad("backup", &user.id, &record, "data"), &plaintext)
                .map_err(ApiError::internal)?;
            (Some(sealed), None)
        }
    };
    let written = state
        .store
        .put_backup(BackupPut {
            owner_id: user.id.to_string(),
            kind: kind.as_str(),
            scope: kind.scope(),
            item_id: id.as_str().to_owned(),
            expected_version: expected,
            data_sealed,
            blob_path: blob_path.clone(),
            content_type,
            size_bytes: Some(plaintext.len() as i64),
            now: state.now_ms(),
            quota: limits.backup_quota(kind),
        })
        .await;
    let written = match written {
        Ok(written) => written,
        Err(e) => {
            if let Some(path) = &blob_path {
                state.blobs.delete(path).await;
            }
            return Err(state.metrics.count_quota(e.into()));
        }
    };
    if let Some(old) = written.old_blob {
        state.blobs.delete(&old).await;
    }
    let status = if live.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(put_response(status, id, written.version))
}

fn put_response(status: StatusCode, id: ItemId, version: i64) -> Response {
    let mut response = (
        status,
        Json(PutResponse {
            id: id.as_str().to_owned(),
            version,
        }),
    )
        .into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// One item: JSON for contacts and SMS, the image bytes for a photo. The ETag is its version.
#[utoipa::path(get, path = "/v1/backup/{kind}/{id}",
    params(("kind" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "the item"), (status = 404)), security(("bearer" = [])))]
pub async fn get_item(
    State(state): State<AppState>,
    user: AuthUser,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = BackupKind::parse(&kind)?;
    let id = ItemId::parse(&id)?;
    let row = state
        .store
        .backup_item(user.id.to_string(), kind.as_str(), id.as_str().to_owned())
        .await?
        .filter(|row| !row.deleted)
        .ok_or(ApiError::NotFound)?;
    let plaintext = open_item(&state, &user, kind, &row).await?;
    let mut response = match kind {
        BackupKind::Photos => {
            let content_type = row
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            ([(header::CONTENT_TYPE, content_type)], plaintext).into_response()
        }
        _ => {
            let data: Value = serde_json::from_slice(&plaintext).map_err(ApiError::internal)?;
            Json(serde_json::json!({
                "id": row.item_id, "version": row.version, "updated_at": rfc3339(row.updated_at), "data": data,
            }))
            .into_response()
        }
    };
    response
        .headers_mut()
        .insert(header::ETAG, etag(row.version));
    Ok(response)
}

/// Deletes an item; sync clients see a tombstone.
#[utoipa::path(delete, path = "/v1/backup/{kind}/{id}",
    params(("kind" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404), (status = 412)), security(("bearer" = [])))]
pub async fn delete_item(
    State(state): State<AppState>,
    user: AuthUser,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let kind = BackupKind::parse(&kind)?;
    let id = ItemId::parse(&id)?;
    let expected = expected_version(&headers)?.filter(|v| *v > 0);
    let written = state
        .store
        .delete_backup(
            user.id.to_string(),
            kind.as_str(),
            id.as_str().to_owned(),
            expected,
            state.now_ms(),
        )
        .await?;
    if let Some(old) = written.old_blob {
        state.blobs.delete(&old).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// The `cursor` of the last sync; omit for everything.
    since: Option<String>,
    /// At most this many items (default and maximum 500).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    cursor: String,
}

async fn item_json(
    state: &AppState,
    user: &AuthUser,
    kind: BackupKind,
    row: &BackupRow,
    photo_bytes: bool,
) -> Result<Value, ApiError> {
    let mut item = serde_json::json!({
        "id": row.item_id, "version": row.version, "deleted": row.deleted, "updated_at": rfc3339(row.updated_at),
    });
    if row.deleted {
        return Ok(item);
    }
    match kind {
        BackupKind::Photos => {
            item["content_type"] = row.content_type.clone().into();
            item["size"] = row.size_bytes.into();
            if photo_bytes {
                let bytes = open_item(state, user, kind, row).await?;
                item["data_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into();
            }
        }
        _ => {
            let plaintext = open_item(state, user, kind, row).await?;
            item["data"] = serde_json::from_slice(&plaintext).map_err(ApiError::internal)?;
        }
    }
    Ok(item)
}

pub(crate) async fn export_item(
    state: &AppState,
    user: &AuthUser,
    row: &BackupRow,
) -> Result<Value, ApiError> {
    let kind = BackupKind::parse(&row.kind)
        .map_err(|_| ApiError::internal(anyhow::anyhow!("stored kind {}", row.kind)))?;
    item_json(state, user, kind, row, true).await
}

/// Changes since a cursor: new and updated items with their data, and tombstones of deleted ones.
#[utoipa::path(get, path = "/v1/backup/{kind}", params(("kind" = String, Path), ChangesQuery),
    responses((status = 200, body = ChangePage)), security(("bearer" = [])))]
pub async fn changes(
    State(state): State<AppState>,
    user: AuthUser,
    Path(kind): Path<String>,
    query: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChangePage>, ApiError> {
    let kind = BackupKind::parse(&kind)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let since = match query.since.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid("since", "must be a cursor returned by this API"))?,
    };
    let limit = query.limit.unwrap_or(PAGE_ROWS_MAX).clamp(1, PAGE_ROWS_MAX);
    let rows = state
        .store
        .backup_changes(user.id.to_string(), kind.as_str(), since, limit)
        .await?;
    let cursor = rows.last().map_or(since, |r| r.change_seq).to_string();
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(item_json(&state, &user, kind, row, false).await?);
    }
    Ok(Json(ChangePage { items, cursor }))
}
