//! The service's one error type. Every failure a client can see is an [`ApiError`], rendered as
//! RFC 9457 `application/problem+json` with a stable machine-readable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sovereign_model::ConsentScope;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("unknown field `{0}`: the API never accepts fields it does not define")]
    UnknownField(String),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("content type must be {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("{0:?} is not a valid phone number in international format")]
    InvalidPhone(String),
    #[error("missing, invalid or expired bearer token")]
    Unauthorized,
    #[error("phone number or password is wrong")]
    InvalidCredentials,
    #[error("not found")]
    NotFound,
    #[error("consent for scope {0} is required before this data can be stored")]
    ConsentRequired(ConsentScope),
    #[error("the recipient cannot receive cloud messages")]
    RecipientUnavailable,
    #[error("wrong verification code; {attempts_left} attempts left")]
    WrongCode { attempts_left: u32 },
    #[error("too many wrong codes for this verification; sign up again")]
    TooManyAttempts,
    #[error("this verification has already been used")]
    VerificationUsed,
    #[error("this verification has expired; sign up again")]
    VerificationExpired,
    #[error("an account with this phone number already exists")]
    PhoneTaken,
    #[error(
        "notice version {given} is not the current one ({current}); read the current notice first"
    )]
    NoticeOutdated { given: u32, current: u32 },
    #[error("the item has version {current}, not the one in If-Match")]
    VersionConflict { current: i64 },
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("this number's data lives in region {region}; send the request to {location}")]
    WrongRegion { region: String, location: String },
    #[error("your data is being moved to another region; retry in a moment")]
    UserMigrating,
    #[error("region {0} cannot be reached right now; try again later")]
    RegionUnavailable(String),
    /// The detail (which etcd error) goes to the log only.
    #[error("the directory cannot be reached right now; try again later")]
    DirectoryUnavailable(String),
    #[error("operator {0:?} is not registered in this region, or their key is revoked")]
    UnknownOperator(String),
    #[error("the signature does not verify with the operator's registered key")]
    BadSignature,
    #[error("the signature's time is more than {age_secs_max} s from the server's clock")]
    StaleSignature { age_secs_max: u64 },
    #[error("an operator cannot approve their own request; approvals must come from others")]
    SelfApproval,
    #[error("the grant is not open: it is {state}")]
    GrantNotOpen { state: String },
    #[error("the grant does not cover scope {0}")]
    ScopeNotGranted(String),
    #[error("grants are read-only: operators can never write a user's data")]
    ReadOnlyGrant,
    #[error(
        "only {verified} of the {required} approvals this grant needs verify; nothing was decrypted"
    )]
    QuorumNotMet { verified: u32, required: u32 },
    #[error("only the operator who requested the grant can read through it")]
    NotRequester,
    #[error("{0}")]
    Conflict(String),
    /// A per-user quota (`server.toml`) is reached: the write is refused whole, nothing stored.
    #[error("{detail}")]
    QuotaExceeded {
        quota: &'static str,
        limit: i64,
        detail: String,
    },
    #[error("the form's security token is missing or wrong; reload the page and try again")]
    CsrfRejected,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::UnknownField(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidField { .. } | ApiError::InvalidPhone(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::ConsentRequired(_) => StatusCode::FORBIDDEN,
            ApiError::RecipientUnavailable => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::WrongCode { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ApiError::VerificationUsed | ApiError::PhoneTaken => StatusCode::CONFLICT,
            ApiError::VerificationExpired => StatusCode::GONE,
            ApiError::NoticeOutdated { .. } => StatusCode::CONFLICT,
            ApiError::VersionConflict { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::WrongRegion { .. } => StatusCode::TEMPORARY_REDIRECT,
            ApiError::RegionUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DirectoryUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UserMigrating => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnknownOperator(_)
            | ApiError::BadSignature
            | ApiError::StaleSignature { .. } => StatusCode::UNAUTHORIZED,
            ApiError::SelfApproval
            | ApiError::GrantNotOpen { .. }
            | ApiError::ScopeNotGranted(_)
            | ApiError::ReadOnlyGrant
            | ApiError::QuorumNotMet { .. }
            | ApiError::NotRequester
            | ApiError::CsrfRejected => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            // 507, not 413: the request is not too large (a small one is refused as well), the
            // account's storage is full; the client must free some, not shrink the request.
            ApiError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnknownField(_) => "unknown_field",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::InvalidPhone(_) => "invalid_phone",
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::NotFound => "not_found",
            ApiError::ConsentRequired(_) => "consent_required",
            ApiError::RecipientUnavailable => "recipient_unavailable",
            ApiError::WrongCode { .. } => "wrong_code",
            ApiError::TooManyAttempts => "too_many_attempts",
            ApiError::VerificationUsed => "verification_used",
            ApiError::VerificationExpired => "verification_expired",
            ApiError::PhoneTaken => "phone_taken",
            ApiError::NoticeOutdated { .. } => "notice_outdated",
            ApiError::VersionConflict { .. } => "version_conflict",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::WrongRegion { .. } => "wrong_region",
            ApiError::RegionUnavailable(_) => "region_unavailable",
            ApiError::DirectoryUnavailable(_) => "directory_unavailable",
            ApiError::UserMigrating => "user_migrating",
            ApiError::UnknownOperator(_) => "unknown_operator",
            ApiError::BadSignature => "bad_signature",
            ApiError::StaleSignature { .. } => "stale_signature",
            ApiError::SelfApproval => "self_approval",
            ApiError::GrantNotOpen { .. } => "grant_not_open",
            ApiError::ScopeNotGranted(_) => "scope_not_granted",
            ApiError::ReadOnlyGrant => "read_only_grant",
            ApiError::QuorumNotMet { .. } => "quorum_not_met",
            ApiError::NotRequester => "not_requester",
            ApiError::Conflict(_) => "conflict",
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::CsrfRejected => "csrf_rejected",
            ApiError::Internal(_) => "internal",
        }
    }

    fn extra(&self) -> Option<(&'static str, Value)> {
        match self {
            ApiError::UnknownField(field) => Some(("field", json!(field))),
            ApiError::InvalidField { field, .. } => Some(("field", json!(field))),
            ApiError::ConsentRequired(scope) => Some(("scope", json!(scope.as_str()))),
            ApiError::WrongCode { attempts_left } => Some(("attempts_left", json!(attempts_left))),
            ApiError::NoticeOutdated { current, .. } => Some(("current_version", json!(current))),
            ApiError::VersionConflict { current } => Some(("current_version", json!(current))),
            ApiError::WrongRegion { region, .. } => Some(("region", json!(region))),
            ApiError::RegionUnavailable(region) => Some(("region", json!(region))),
            ApiError::GrantNotOpen { state } => Some(("state", json!(state))),
            ApiError::ScopeNotGranted(scope) => Some(("scope", json!(scope))),
            ApiError::UnknownOperator(name) => Some(("operator", json!(name))),
            ApiError::QuotaExceeded { quota, .. } => Some(("quota", json!(quota))),
            _ => None,
        }
    }

    /// The refusal of a write past a per-user quota, with a detail a person can act on.
    pub fn quota_exceeded(quota: crate::store::Quota, limit: i64) -> ApiError {
        use crate::store::Quota;
        let detail = match quota {
            Quota::BackupItems(kind) => {
                format!("your {kind} backup holds {limit} items, its limit; delete some first")
            }
            Quota::BackupBytes(kind) => format!(
                "your {kind} backup would pass its limit of {limit} bytes in total; delete some first"
            ),
            Quota::InboxPending => format!(
                "the recipient has {limit} undelivered messages, their limit; try again once they have read some"
            ),
        };
        ApiError::QuotaExceeded {
            quota: quota.name(),
            limit,
            detail,
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> ApiError {
        ApiError::Internal(error.into())
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::ConsentRequired(scope) => ApiError::ConsentRequired(scope),
            StoreError::NotFound => ApiError::NotFound,
            StoreError::VersionConflict { current } => ApiError::VersionConflict { current },
            StoreError::PhoneTaken => ApiError::PhoneTaken,
            StoreError::Migrating => ApiError::UserMigrating,
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::QuotaExceeded { quota, limit } => ApiError::quota_exceeded(quota, limit),
            StoreError::DirectoryUnavailable(detail) => {
                tracing::warn!(%detail, "the directory is unavailable");
                ApiError::DirectoryUnavailable(detail)
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = if let ApiError::Internal(source) = &self {
            // 5xx details go to the log, never to the client.
            tracing::error!(error = ?source, "internal error");
            "the server failed to handle this request; it has been logged".to_owned()
        } else {
            self.to_string()
        };
        let mut body = json!({
            "type": format!("/problems/{}", self.code()),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "code": self.code(),
            "detail": detail,
        });
        if let Some((key, value)) = self.extra() {
            body[key] = value;
        }
        if let ApiError::QuotaExceeded { limit, .. } = &self {
            body["limit"] = json!(limit);
        }
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::UserMigrating => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            ApiError::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::WrongRegion { location, .. } => {
                if let Ok(value) = HeaderValue::from_str(location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
            }
            _ => {}
        }
        response
    }
}
