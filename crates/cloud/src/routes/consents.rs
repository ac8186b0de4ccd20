//! Consent: every scope is off until granted against its current notice; withdrawal is one call
//! and erases the scope's data in the same commit.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sovereign_model::ConsentScope;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::config::Notice;
use crate::error::ApiError;
use crate::extract::{AuthUser, StrictJson};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/consents", get(list))
        .route("/v1/consents/history", get(history))
        .route(
            "/v1/consents/{scope}",
            axum::routing::put(grant).delete(withdraw),
        )
}

#[derive(Serialize, ToSchema)]
pub struct NoticeView {
    #[serde(flatten)]
    notice: Notice,
    /// The region whose data centre holds this scope's data.
    region: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    scope: String,
    granted: bool,
    /// The notice version the grant was given against.
    #[serde(skip_serializing_if = "Option::is_none")]
    granted_notice_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    granted_at: Option<String>,
    notice: NoticeView,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentList {
    consents: Vec<ConsentView>,
}

fn parse_scope(name: &str) -> Result<ConsentScope, ApiError> {
    ConsentScope::parse(name).ok_or(ApiError::NotFound)
}

/// The notice of `scope`, naming `region` as where its data is held.
fn notice_view_in(state: &AppState, scope: ConsentScope, region: &str) -> NoticeView {
    let mut view = notice_view(state, scope);
    view.region = region.to_owned();
    view
}

fn notice_view(state: &AppState, scope: ConsentScope) -> NoticeView {
    // Invariant: `Policies::parse` refuses a notices file that lacks any scope.
    let notice = state
        .policies
        .notices
        .get(&scope)
        .expect("every scope has a notice")
        .clone();
    NoticeView {
        notice,
        region: state.region.id.to_string(),
    }
}

pub(crate) async fn consent_views(
    state: &AppState,
    user: &AuthUser,
) -> Result<Vec<ConsentView>, ApiError> {
    let granted = state.store.consents(user.id.to_string()).await?;
    // A scope's data is held where its service lives, which may not be here.
    let services = crate::placement::service_regions_of(state, user.id.as_str()).await?;
    Ok(ConsentScope::ALL
        .into_iter()
        .map(|scope| {
            let grant = granted.iter().find(|g| g.scope == scope);
            let region = crate::domain::Service::of_scope(scope)
                .and_then(|service| services.iter().find(|(s, _)| *s == service))
                .map_or_else(|| state.region.id.to_string(), |(_, r)| r.to_string());
            ConsentView {
                scope: scope.to_string(),
                granted: grant.is_some(),
                granted_notice_version: grant.map(|g| g.notice_version),
                granted_at: grant.map(|g| rfc3339(g.granted_at)),
                notice: notice_view_in(state, scope, &region),
            }
        })
        .collect())
}

/// Every scope, its state, and the notice the user is asked to read.
#[utoipa::path(get, path = "/v1/consents", responses((status = 200, body = ConsentList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<ConsentList>, ApiError> {
    Ok(Json(ConsentList {
        consents: consent_views(&state, &user).await?,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ConsentEvent {
    scope: String,
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice_version: Option<u32>,
    at: String,
}

pub(crate) async fn history_events(
    state: &AppState,
    user: &AuthUser,
) -> Result<Vec<ConsentEvent>, ApiError> {
    Ok(state
        .store
        .consent_history(user.id.to_string())
        .await?
        .into_iter()
        .map(|e| ConsentEvent {
            scope: e.scope,
            action: e.action,
            notice_version: e.notice_version,
            at: rfc3339(e.at),
        })
        .collect())
}

/// The append-only history of every grant and withdrawal.
#[utoipa::path(get, path = "/v1/consents/history", responses((status = 200, body = [ConsentEvent])), security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<ConsentEvent>>, ApiError> {
    Ok(Json(history_events(&state, &user).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The version of the notice the user was shown.
    notice_version: u32,
}

#[derive(Serialize, ToSchema)]
pub struct GrantResponse {
    scope: String,
    granted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    granted_at: Option<String>,
}

/// Grants a scope against the notice version the user read.
#[utoipa::path(put, path = "/v1/consents/{scope}", request_body = GrantRequest,
    params(("scope" = String, Path, description = "messaging, backup.contacts, backup.sms, backup.photos, location or diagnostics")),
    responses((status = 200, body = GrantResponse), (status = 404), (status = 409, description = "notice_outdated")), security(("bearer" = [])))]
pub async fn grant(
    State(state): State<AppState>,
    user: AuthUser,
    Path(scope): Path<String>,
    StrictJson(request): StrictJson<GrantRequest>,
) -> Result<Json<GrantResponse>, ApiError> {
    let scope = parse_scope(&scope)?;
    let current = notice_view(&state, scope).notice.version;
    if request.notice_version != current {
        return Err(ApiError::NoticeOutdated {
            given: request.notice_version,
            current,
        });
    }
    let row = grant_and_push(&state, user.id.to_string(), scope, current).await?;
    Ok(Json(GrantResponse {
        scope: scope.to_string(),
        granted: true,
        notice_version: Some(row.notice_version),
        granted_at: Some(rfc3339(row.granted_at)),
    }))
}

/// Grants a scope here, then in the consent mirror of every region holding one of the user's
/// services, before answering. The API and the dashboard both grant through this.
pub(crate) async fn grant_and_push(
    state: &AppState,
    user_id: String,
    scope: ConsentScope,
    notice_version: u32,
) -> Result<crate::store::ConsentRow, ApiError> {
    let row = state
        .store
        .grant(user_id.clone(), scope, notice_version, state.now_ms())
        .await?;
    crate::placement::push_consents(state, &user_id, None).await?;
    Ok(row)
}

/// Withdraws a scope: first in the regions holding the user's services (which erase its data
/// there), then here, where its rows go in the same commit and then its blobs. The API and the
/// dashboard both withdraw through this.
pub(crate) async fn withdraw_and_erase(
    state: &AppState,
    user_id: String,
    scope: ConsentScope,
) -> Result<(), ApiError> {
    crate::placement::push_consents(state, &user_id, Some(scope)).await?;
    // Exclusive from the commit to the key's destruction: writers of scoped data hold it
    // shared from taking the key to their commit.
    let guard = state
        .keys
        .scope_guard(&crate::domain::UserId::from_stored(user_id.clone()));
    let exclusive = guard.write().await;
    let erased = state
        .store
        .withdraw(user_id.clone(), scope, state.now_ms())
        .await?;
    // Also when the scope was not granted: a crash after an earlier withdrawal's commit left
    // its key behind.
    state
        .keys
        .destroy_scope_key(&crate::domain::UserId::from_stored(user_id.clone()), scope)
        .map_err(ApiError::Internal)?;
    drop(exclusive);
    for path in erased {
        state.blobs.delete(&path).await;
    }
    crate::erasure::scrub_after_erasure(state).await;
    // A service that moved meanwhile gets the final state too.
    crate::placement::push_consents(state, &user_id, None).await
}

/// Withdraws a scope; its data is erased at once.
#[utoipa::path(delete, path = "/v1/consents/{scope}",
    params(("scope" = String, Path, description = "a consent scope")),
    responses((status = 200, body = GrantResponse), (status = 404)), security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    user: AuthUser,
    Path(scope): Path<String>,
) -> Result<Json<GrantResponse>, ApiError> {
    let scope = parse_scope(&scope)?;
    withdraw_and_erase(&state, user.id.to_string(), scope).await?;
    Ok(Json(GrantResponse {
        scope: scope.to_string(),
        granted: false,
        notice_version: None,
        granted_at: None,
    }))
}
