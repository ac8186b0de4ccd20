//! What regions ask of each other about users whose services live apart from their account
//! (see [`crate::placement`]). Every request must carry a valid peer signature
//! ([`crate::federation::Federation::verify`]); requests that change or read a user's data are
//! taken only from the user's home region.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sovereign_model::RegionId;

use crate::domain::{Service, UserId};
use crate::error::ApiError;
use crate::export::{Part, USER_EXPORT_PAGE_PATH};
use crate::extract::AuthUser;
use crate::placement::{
    CONSENT_SYNC_PATH, SESSION_END_PATH, SESSION_VERIFY_PATH, USER_ACCESS_PATH, USER_DELETE_PATH,
    USER_EXPORT_PATH, USER_STATS_PATH, holds,
};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(SESSION_VERIFY_PATH, post(verify_session))
        .route(SESSION_END_PATH, post(end_session))
        .route(CONSENT_SYNC_PATH, post(sync_consents))
        .route(USER_DELETE_PATH, post(delete_user))
        .route(USER_EXPORT_PATH, post(export_user))
        .route(USER_EXPORT_PAGE_PATH, post(export_page))
        .route(USER_STATS_PATH, post(user_stats))
        .route(USER_ACCESS_PATH, post(user_access_log))
}

/// The body of a request signed by a peer region, and which region signed it.
async fn signed<T: DeserializeOwned>(
    state: &AppState,
    request: Request,
    path: &str,
) -> Result<(RegionId, T), ApiError> {
    signed_within(
        state,
        request,
        path,
        state.policies.limits.json_body_bytes_max,
    )
    .await
}

/// [`signed`] with a body of at most `limit` bytes (a move's rows and blobs are larger).
pub(crate) async fn signed_within<T: DeserializeOwned>(
    state: &AppState,
    request: Request,
    path: &str,
    limit: usize,
) -> Result<(RegionId, T), ApiError> {
    let headers = request.headers().clone();
    let bytes = crate::extract::read_body(request, limit).await?;
    let from = state
        .federation
        .verify(&headers, "POST", path, &bytes, state.now_ms())?;
    Ok((from, crate::extract::parse_json(&bytes)?))
}

/// Refuses a request about a user from any region but the user's home. A user the directory
/// does not know has no home, and so no region may ask about them.
async fn from_home(state: &AppState, from: &RegionId, user_id: &str) -> Result<(), ApiError> {
    match state.directory.home_of(user_id.to_owned()).await? {
        Some(home) if home == *from => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionEnd {
    user_id: String,
    token_digest: String,
}

/// The user's home says one of their sessions ended: its token is refused here from now on and
/// its sockets here close.
async fn end_session(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, SessionEnd) = signed(&state, request, SESSION_END_PATH).await?;
    from_home(&state, &from, &body.user_id).await?;
    let digest = parse_digest(&body.token_digest)
        .ok_or_else(|| ApiError::invalid("token_digest", "must be 64 hex digits"))?;
    crate::placement::end_remote_session(&state, &body.user_id, digest);
    Ok(Json(json!({})))
}

/// 64 hex digits as 32 bytes.
pub(crate) fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifySession {
    token_digest: String,
}

/// A region holding one of the user's services asks whether a token is a live session here.
/// Only a region that holds a service of the token's user learns whose it is; for a token whose
/// user moved away from here, such a region learns where they went (`404` with `moved_to`), so
/// that it asks there next.
async fn verify_session(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (from, body): (_, VerifySession) = signed(&state, request, SESSION_VERIFY_PATH).await?;
    let digest = parse_digest(&body.token_digest)
        .ok_or_else(|| ApiError::invalid("token_digest", "must be 64 hex digits"))?;
    let now = state.now_ms();
    if let Some((user_id, expires_at)) = state.store.session_owner(digest, now).await? {
        if placed_in(&state, &user_id, &from).await? {
            return Ok((
                StatusCode::OK,
                Json(json!({ "user_id": user_id, "expires_at_ms": expires_at })),
            ));
        }
    } else if let Some((user_id, region)) = state.store.moved_token_owner(digest, now).await?
        && placed_in(&state, &user_id, &from).await?
    {
        return Ok((StatusCode::NOT_FOUND, Json(json!({ "moved_to": region }))));
    }
    Err(ApiError::NotFound)
}

/// Whether `region` holds one of the user's services, by the directory.
async fn placed_in(state: &AppState, user_id: &str, region: &RegionId) -> Result<bool, ApiError> {
    Ok(state
        .directory
        .placements(user_id.to_owned())
        .await?
        .iter()
        .any(|(_, r)| r == region))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentSync {
    user_id: String,
    version: i64,
    consents: Vec<MirroredConsent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MirroredConsent {
    scope: String,
    notice_version: i64,
    granted_at_ms: i64,
}

/// The home's consents for a user whose services live here; a scope no longer granted has
/// its data erased here in the same commit.
async fn sync_consents(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, ConsentSync) = signed(&state, request, CONSENT_SYNC_PATH).await?;
    from_home(&state, &from, &body.user_id).await?;
    let mut consents = Vec::new();
    for c in body.consents {
        if sovereign_model::ConsentScope::parse(&c.scope).is_none() {
            return Err(ApiError::invalid("consents.scope", "unknown scope"));
        }
        consents.push((c.scope, c.notice_version, c.granted_at_ms));
    }
    let user = crate::domain::UserId::from_stored(body.user_id.clone());
    // As at home: exclusive from the commit to the destruction of the withdrawn scopes' keys.
    let guard = state.keys.scope_guard(&user);
    let exclusive = guard.write().await;
    let applied = state
        .store
        .mirror_consents(body.user_id.clone(), body.version, consents)
        .await?;
    let held = applied.is_some();
    if held {
        // What the mirror holds now (a stale push changed nothing): a scope not granted has
        // no data here, and its key goes.
        let granted = state.store.consents(body.user_id).await?;
        for scope in crate::scope_keys::KEYED_SCOPES
            .into_iter()
            .filter(|s| !granted.iter().any(|c| c.scope == *s))
        {
            state
                .keys
                .destroy_scope_key(&user, scope)
                .map_err(ApiError::Internal)?;
        }
    }
    drop(exclusive);
    for path in applied.unwrap_or_default() {
        state.blobs.delete(&path).await;
    }
    if held {
        crate::erasure::scrub_after_erasure(&state).await;
    }
    Ok(Json(json!({ "held": held })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRef {
    user_id: String,
}

/// The home deletes a user: their 'service' row here is crypto-shredded, then every row and
/// blob goes.
async fn delete_user(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, UserRef) = signed(&state, request, USER_DELETE_PATH).await?;
    from_home(&state, &from, &body.user_id).await?;
    let row = state.store.user(body.user_id.clone()).await?;
    if row.as_ref().is_some_and(|r| r.service_only) {
        state.store.shred_user(body.user_id.clone()).await?;
        state.blobs.delete_user(&body.user_id).await;
        state
            .keys
            .destroy_scope_keys(&crate::domain::UserId::from_stored(body.user_id.clone()));
        state.store.purge_user(body.user_id).await?;
    }
    Ok(Json(json!({ "deleted": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    user_id: String,
    /// The bearer token of the user's own export request at home: the proof that the user
    /// asked. This region checks with the home that it is a live session of this user.
    session_token: String,
    /// The home's id for this export: its pages are asked for under it. (Defaulted so that a
    /// request without it is refused for its token first, then for the missing id.)
    #[serde(default)]
    export_id: String,
}

/// The user's row and key here, for a part of an export; `None` when this region holds no
/// service of theirs.
async fn service_user(state: &AppState, user_id: &str) -> Result<Option<AuthUser>, ApiError> {
    let Some(row) = state
        .store
        .user(user_id.to_owned())
        .await?
        .filter(|r| r.service_only)
    else {
        return Ok(None);
    };
    let id = UserId::from_stored(user_id.to_owned());
    let wrapped = row.wrapped_key.as_deref().ok_or(ApiError::NotFound)?;
    let key = state
        .keys
        .unwrap(wrapped, &id)
        .map_err(ApiError::Internal)?;
    Ok(Some(AuthUser {
        id,
        row,
        key,
        session: None,
    }))
}

/// The home begins an export: this region's part of it is handed over, page by page
/// ([`export_page`]), only for a request the user made (their session token, live at home),
/// and written in this region's ledger before anything leaves. Answers the parts held here.
async fn export_user(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, ExportRequest) = signed(&state, request, USER_EXPORT_PATH).await?;
    from_home(&state, &from, &body.user_id).await?;
    crate::placement::check_user_asked(&state, &from, &body.user_id, &body.session_token).await?;
    if body.export_id.is_empty()
        || body.export_id.len() > 64
        || !body.export_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ApiError::invalid(
            "export_id",
            "must be 1 to 64 letters or digits",
        ));
    }
    if service_user(&state, &body.user_id).await?.is_none() {
        return Ok(Json(json!({ "parts": [] })));
    }
    let mut services = Vec::new();
    for service in Service::ALL {
        if holds(&state, &body.user_id, service).await? {
            services.push(service);
        }
    }
    state
        .store
        .ledger_export(
            state.ledger.clone(),
            body.user_id.clone(),
            from.to_string(),
            body.export_id.clone(),
            json!({
                "to": from.as_str(),
                "services": services.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "asked_by": "user",
            })
            .to_string(),
            state.now_ms(),
        )
        .await?;
    let parts: Vec<&str> = Part::ALL
        .into_iter()
        .filter(|p| services.contains(&p.service()))
        .map(Part::as_str)
        .collect();
    Ok(Json(json!({ "parts": parts })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportPageRequest {
    user_id: String,
    export_id: String,
    part: String,
    after: Option<String>,
}

/// One page of this region's part of an export the home began (its ledger entry is here and
/// at most [`crate::export::EXPORT_WINDOW_MS`] old): `{"items": [...], "next": cursor|null}`.
async fn export_page(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, ExportPageRequest) =
        signed(&state, request, USER_EXPORT_PAGE_PATH).await?;
    from_home(&state, &from, &body.user_id).await?;
    let part = Part::parse(&body.part)?;
    let begun = state
        .store
        .export_begun(
            body.user_id.clone(),
            from.to_string(),
            body.export_id.clone(),
            state.now_ms() - crate::export::EXPORT_WINDOW_MS,
        )
        .await?;
    if !begun {
        return Err(ApiError::Unauthorized);
    }
    let Some(user) = service_user(&state, &body.user_id).await? else {
        return Ok(Json(json!({ "items": [], "next": null })));
    };
    if !holds(&state, &body.user_id, part.service()).await? {
        return Ok(Json(json!({ "items": [], "next": null })));
    }
    let (items, next) =
        crate::export::local_page(&state, &user, part, body.after.as_deref()).await?;
    Ok(Json(json!({ "items": items, "next": next })))
}

/// The home's dashboard asks what this region holds of a user and when it goes: counts and
/// deletion times per category, nothing decrypted.
async fn user_stats(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, UserRef) = signed(&state, request, USER_STATS_PATH).await?;
    from_home(&state, &from, &body.user_id).await?;
    let stats = state
        .store
        .user_retention_stats(
            body.user_id,
            state.now_ms(),
            crate::retention::ledger_ms(&state.policies.retention),
        )
        .await?;
    let categories: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "category": s.category,
                "rows": s.rows,
                "due_now": s.due_now,
                "next_deletion": s.next_deletion,
                "last_deletion": s.last_deletion,
            })
        })
        .collect();
    Ok(Json(json!({ "categories": categories })))
}

/// The home's access log asks for this region's ledger entries about a user whose services
/// live here or whose data lived here before (the ledger outlives the purge of a user who
/// moved away): operator reads of the data held here, and exports handed to the home. Only
/// the user's directory home may ask, and it gets only the entries about that user.
async fn user_access_log(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, UserRef) = signed(&state, request, USER_ACCESS_PATH).await?;
    from_home(&state, &from, &body.user_id).await?;
    Ok(Json(
        crate::routes::ops::ledger_json(&state, &body.user_id).await?,
    ))
}
