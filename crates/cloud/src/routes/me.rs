//! The account itself: what we hold, all of it as an export, and deletion.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::extract::{AuthUser, aad};
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

pub(crate) async fn me_view(state: &AppState, user: &AuthUser) -> Result<MeView, ApiError> {
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

/// Everything the service holds about the user, decrypted, as one JSON document, written as it
/// is read from the store, page by page (see [`crate::export`]). Its last member is
/// `"complete": true`; an export that fails part-way is cut off, never closed.
#[utoipa::path(get, path = "/v1/me/export", responses((status = 200, description = "the export document"), (status = 503, description = "region_unavailable")), security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    user: AuthUser,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    // The user's own token goes with the request to the regions holding their services: it is
    // their proof that the user asked (see `crate::export`).
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?
        .to_owned();
    crate::export::export_response(state, user, token).await
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
