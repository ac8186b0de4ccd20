//! Extractors that parse and check input once, at the edge.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use sovereign_crypto::{DataKey, token_digest};

use crate::domain::{Service, UserId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::UserRow;

/// A JSON body parsed strictly: the right content type, within the size limit, and no field the
/// type does not define.
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let limit = state.policies.limits.json_body_bytes_max;
        let bytes = read_body(req, limit).await?;
        parse_json(&bytes).map(StrictJson)
    }
}

pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        })
    }
}

/// Reads a whole body, refusing it as soon as it passes `limit_bytes`.
pub async fn read_body(req: Request, limit_bytes: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), limit_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit_bytes })
}

/// Parses JSON into `T`, naming the offending field in every error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => {
                if let Some(field) = between_backticks(&message, "unknown field `") {
                    ApiError::UnknownField(field)
                } else if let Some(field) = between_backticks(&message, "missing field `") {
                    ApiError::invalid(&field, "is required")
                } else {
                    let reason = message
                        .split(" at line ")
                        .next()
                        .unwrap_or(&message)
                        .to_owned();
                    ApiError::invalid(path.trim_start_matches('.'), reason)
                }
            }
            _ => ApiError::MalformedJson(message),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

fn between_backticks(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_owned())
}

/// The signed-in user, from `Authorization: Bearer TOKEN`, with their data key unwrapped.
pub struct AuthUser {
    pub id: UserId,
    pub row: UserRow,
    pub key: DataKey,
    /// The session stored here that the request's token belongs to; `None` for a token another
    /// region vouched for, and for requests not made with a session (operator reads).
    pub session: Option<SessionRef>,
}

/// The session a request was made with.
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub id: String,
    pub token_digest: [u8; 32],
    /// When the session expires (`i64::MAX` for another site's session: its issuer knows).
    pub expires_at: i64,
    /// The site that issued the session, when it is not this one.
    pub issuer: Option<sovereign_model::RegionId>,
}

/// How stale a session's `last_seen_at` may get before a request writes it again: the list
/// shows when a session was last used to within this, at one write per session per this long.
pub const LAST_SEEN_GRANULARITY_MS: i64 = 5 * 60_000;

/// The session a token names, if it is live here; records its use when `last_seen_at` is stale.
pub async fn live_session(
    state: &AppState,
    digest: [u8; 32],
) -> Result<Option<crate::store::LiveSession>, ApiError> {
    let now = state.now_ms();
    let Some(session) = state.store.live_session(digest, now).await? else {
        return Ok(None);
    };
    let stale = session
        .last_seen_at
        .is_none_or(|seen| now - seen >= LAST_SEEN_GRANULARITY_MS);
    if stale {
        // Off the request's path: a request never waits for this write, and one refused (the
        // user is being moved) only leaves the time stale.
        let store = state.store.clone();
        tokio::spawn(async move {
            let _ = store.touch_session(digest, now).await;
        });
    }
    Ok(Some(session))
}

/// Longest bearer token we look at.
const TOKEN_BYTES_MAX: usize = 128;

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= TOKEN_BYTES_MAX)
            .ok_or(ApiError::Unauthorized)?;
        let digest = token_digest(token);
        let path = parts.uri.path();
        // Where a redirect sends the client: the same path and query (a cursor in `after=` or
        // `since=` must reach the next region).
        let path_and_query = parts.uri.path_and_query().map_or(path, |p| p.as_str());
        let (user_id, session) = match live_session(state, digest).await? {
            Some(live) => {
                let session = SessionRef {
                    id: live.id,
                    token_digest: digest,
                    expires_at: live.expires_at,
                    issuer: None,
                };
                (live.user_id, Some(session))
            }
            None => {
                // A user who moved to another region is sent there; their token works there.
                if let Some(region) = state.store.moved_token(digest, state.now_ms()).await?
                    && let Ok(region) = sovereign_model::RegionId::parse(&region)
                {
                    return Err(state.redirect_to(&region, path_and_query));
                }
                // A user whose account is elsewhere and some of whose services are here: the
                // token's issuer, if it is their home, says whose token it is.
                let user = crate::placement::remote_session(state, token)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                // Known here by its digest; its sockets check with the issuer and close when
                // the home says it ended.
                let session = crate::session_token::issuer(token).map(|issuer| SessionRef {
                    id: crate::placement::remote_session_id(&digest),
                    token_digest: digest,
                    expires_at: i64::MAX,
                    issuer: Some(issuer),
                });
                (user, session)
            }
        };
        let row = state.store.user(user_id.clone()).await?;
        if row.is_none()
            && let Some(region) = state.store.moved_user(user_id.clone()).await?
            && let Ok(region) = sovereign_model::RegionId::parse(&region)
            && Service::of_path(path).is_none()
        {
            // The user left this region while the request was on its way.
            return Err(state.redirect_to(&region, path_and_query));
        }
        // A service's path is served where the service lives, the rest where the account is.
        crate::placement::route(state, &user_id, row.as_ref(), path, path_and_query).await?;
        let row = row.ok_or(ApiError::Unauthorized)?;
        let id = UserId::from_stored(user_id);
        let wrapped = row.wrapped_key.as_deref().ok_or(ApiError::Unauthorized)?;
        let key = state
            .keys
            .unwrap(wrapped, &id)
            .map_err(ApiError::Internal)?;
        Ok(AuthUser {
            id,
            row,
            key,
            session,
        })
    }
}

/// The client's address, for rate limits.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(ClientIp(ip))
    }
}

/// Associated data naming one sealed field of one record: `table/owner/record/field`.
pub fn aad(table: &str, owner: &UserId, record: &str, field: &str) -> Vec<u8> {
    format!("{table}/{owner}/{record}/{field}").into_bytes()
}
