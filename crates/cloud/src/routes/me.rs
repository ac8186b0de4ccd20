//! The account itself: what we hold, all of it as an export, and deletion.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::Service;
use crate::error::ApiError;
use crate::extract::{AuthUser, aad};
use crate::routes::{backup, consents, messages};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me).delete(delete_account))
        .route("/v1/me/export", get(export))
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    id: String,
    device_name: String,
    created_at: String,
    expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeView {
    user_id: String,
    region: String,
    phone: String,
    created_at: String,
    sessions: Vec<SessionView>,
}

async fn me_view(state: &AppState, user: &AuthUser) -> Result<MeView, ApiError> {
    let phone = user
        .key
        .open(
            &aad("users", &user.id, user.id.as_str(), "phone"),
            &user.row.phone_sealed,
        )
        .map_err(ApiError::internal)?;
    let mut sessions = Vec::new();
    for s in state.store.sessions(user.id.to_string()).await? {
        let device = user
            .key
            .open(
                &aad("sessions", &user.id, &s.id, "device"),
                &s.device_sealed,
            )
            .map_err(ApiError::internal)?;
        sessions.push(SessionView {
            id: s.id,
            device_name: String::from_utf8_lossy(&device).into_owned(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
        });
    }
    Ok(MeView {
        user_id: user.id.to_string(),
        region: user.row.region.clone(),
        phone: String::from_utf8_lossy(&phone).into_owned(),
        created_at: rfc3339(user.row.created_at),
        sessions,
    })
}

/// The account: id, home region, phone number and signed-in devices.
#[utoipa::path(get, path = "/v1/me", responses((status = 200, body = MeView), (status = 401)), security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<MeView>, ApiError> {
    Ok(Json(me_view(&state, &user).await?))
}

/// Everything the service holds about the user, decrypted, as one JSON document.
#[utoipa::path(get, path = "/v1/me/export", responses((status = 200, description = "the export document")), security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    user: AuthUser,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // The user's own token goes with the request to the regions holding their services: it is
    // their proof that the user asked (see `placement::export_remote`).
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?
        .to_owned();
    export_document(&state, &user, &token).await.map(Json)
}

/// The export document of `user`, whose session token `token` is.
///
/// # Errors
/// When a region holding one of the user's services does not hand over its part.
pub async fn export_document(
    state: &AppState,
    user: &AuthUser,
    token: &str,
) -> Result<Value, ApiError> {
    let state = state.clone();
    let account = me_view(&state, user).await?;
    let consents = consents::consent_views(&state, user).await?;
    let history = consents::history_events(&state, user).await?;
    let user_id = user.id.to_string();
    let mut messages_out = Vec::new();
    if crate::placement::holds(&state, &user_id, Service::Messaging).await? {
        for row in state.store.messages_all(user_id.clone()).await? {
            messages_out.push(
                serde_json::to_value(messages::open_message(user, &row)?)
                    .map_err(ApiError::internal)?,
            );
        }
    }
    let mut backups = serde_json::Map::new();
    for kind in crate::domain::BackupKind::ALL {
        backups.insert(kind.as_str().to_owned(), Value::Array(Vec::new()));
    }
    if crate::placement::holds(&state, &user_id, Service::Backup).await? {
        for row in state.store.backup_all(user_id.clone()).await? {
            let item = backup::export_item(&state, user, &row).await?;
            if let Some(Value::Array(items)) = backups.get_mut(&row.kind) {
                items.push(item);
            }
        }
    }
    // The parts held in the regions where the user's services live.
    let mut regions = serde_json::Map::new();
    regions.insert("account".to_owned(), Value::from(state.region.id.as_str()));
    for service in Service::ALL {
        let region = state
            .directory
            .service_region(user_id.clone(), service)
            .await?
            .map_or_else(|| state.region.id.to_string(), |r| r.to_string());
        regions.insert(service.as_str().to_owned(), Value::from(region));
    }
    for part in crate::placement::export_remote(&state, &user_id, token).await? {
        if let Some(Value::Array(remote)) = part.get("messages") {
            messages_out.extend(remote.iter().cloned());
        }
        if let Some(Value::Object(remote)) = part.get("backup") {
            for (kind, items) in remote {
                if let (Some(Value::Array(mine)), Value::Array(theirs)) =
                    (backups.get_mut(kind), items)
                {
                    mine.extend(theirs.iter().cloned());
                }
            }
        }
    }
    Ok(serde_json::json!({
        "exported_at": rfc3339(state.now_ms()),
        "region": state.region.id.as_str(),
        "regions": regions,
        "account": account,
        "consents": consents,
        "consent_history": history,
        "messages": messages_out,
        "backup": backups,
    }))
}

/// Deletes the account: the other regions' parts first, then the data key (crypto-shredding),
/// the blobs, the directory entry and the rows, in an order a crash at any step can be resumed
/// from (see [`crate::deletion`]); an interrupted deletion is finished by the housekeeping.
#[utoipa::path(delete, path = "/v1/me", responses((status = 204), (status = 401)), security(("bearer" = [])))]
pub async fn delete_account(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    let id = user.id.to_string();
    drop(user);
    // A directory that cannot take the entry's removal now (etcd lost) would leave the number
    // claimed until the sweeper gets through: refuse before deleting anything.
    if state.directory.status().is_some_and(|s| !s.connected) {
        return Err(ApiError::DirectoryUnavailable(
            "the directory cannot record the deletion".to_owned(),
        ));
    }
    crate::deletion::delete_account(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
