//! The user's sessions: list them and end any one (a lost phone, a shared computer).
//!
//! Ending a session deletes its row, so its token is refused by the next request here, and
//! tells its open WebSockets to close. Regions holding some of the user's services are told too
//! ([`crate::placement::push_session_end`]): they forget the token and close its sockets there.
//! Should that notice be lost, they trust the home's word about a token for at most
//! [`crate::placement::SESSION_CACHE_MS`], so a revoked token stops working there within that.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::extract::{AuthUser, aad};
use crate::state::AppState;

/// Longest session id looked up (ids are UUIDs).
const SESSION_ID_BYTES_MAX: usize = 64;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/sessions/{id}", axum::routing::delete(revoke))
}

#[derive(Serialize, ToSchema)]
pub struct SessionListItem {
    pub id: String,
    /// The name the device gave when it signed in.
    pub device_name: String,
    pub created_at: String,
    pub expires_at: String,
    /// When the session was last used, to within a few minutes; `null` if not since it moved
    /// here or since this was recorded. No address or user agent is stored.
    pub last_seen_at: Option<String>,
    /// Whether this is the session the request was made with.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionListItem>,
}

/// The user's live sessions, oldest first.
///
/// # Errors
/// When the store cannot be read or a device name cannot be opened.
pub async fn session_items(
    state: &AppState,
    user: &AuthUser,
) -> Result<Vec<SessionListItem>, ApiError> {
    let current = user.session.as_ref().map(|s| s.id.as_str());
    let mut out = Vec::new();
    for s in state
        .store
        .session_list(user.id.to_string(), state.now_ms())
        .await?
    {
        let device = user
            .key
            .open(
                &aad("sessions", &user.id, &s.id, "device"),
                &s.device_sealed,
            )
            .map_err(ApiError::internal)?;
        out.push(SessionListItem {
            current: current == Some(s.id.as_str()),
            device_name: String::from_utf8_lossy(&device).into_owned(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            last_seen_at: s.last_seen_at.map(rfc3339),
            id: s.id,
        });
    }
    Ok(out)
}

/// The signed-in user's sessions.
#[utoipa::path(get, path = "/v1/sessions", responses((status = 200, body = SessionList), (status = 401)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SessionList>, ApiError> {
    Ok(Json(SessionList {
        sessions: session_items(&state, &user).await?,
    }))
}

/// Ends one of the user's sessions (this one too, if asked): its token is refused from now on
/// and its WebSockets close.
///
/// # Errors
/// `404` when the user has no session with that id.
pub async fn end(state: &AppState, user: &AuthUser, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > SESSION_ID_BYTES_MAX {
        return Err(ApiError::NotFound);
    }
    let Some(digest) = state
        .store
        .revoke_session(user.id.to_string(), id.to_owned())
        .await?
    else {
        return Err(ApiError::NotFound);
    };
    state.hub.end_session(user.id.as_str(), id);
    crate::placement::push_session_end(state, user.id.as_str(), digest);
    Ok(())
}

/// Ends one of the user's sessions.
#[utoipa::path(delete, path = "/v1/sessions/{id}", params(("id" = String, Path, description = "a session id from GET /v1/sessions")),
    responses((status = 204), (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    end(&state, &user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
