//! Staff access under k-of-n approval: what operators sign, and the only path by which an
//! operator's read reaches a user's data key.
//!
//! Every signed message is [`canonical`] with the domain [`OPS_DOMAIN`]:
//!
//! - a request: `"request", region, request id, requester, user id, scopes (sorted, comma-joined),
//!   reason, requested_at_ms, not_after_ms` (integers as 8-byte big-endian);
//! - a decision: `"approve" | "deny" | "revoke", region, request id, operator,
//!   SHA-256(request bytes), signed_at_ms`: an approval covers every field of the request,
//!   its expiry included;
//! - an operator's GET: `"http", region, method, path, signed_at_ms`, fresh within
//!   `signature_age_secs_max`.
//!
//! [`unwrap_for_grant`] is the one function that unwraps a user's data key for an operator. It
//! re-verifies the requester's signature and k distinct approvers' signatures (none by the
//! requester, none by a revoked key), the grant's state, expiry and scope, and commits a `read`
//! ledger entry, all before it unwraps anything.

use serde_json::Value;
use sovereign_crypto::{canonical, digest_sha256, verify_signature};
use sovereign_model::ConsentScope;

use crate::clock::UnixMs;
use crate::domain::{BackupKind, UserId};
use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::state::AppState;
use crate::store::{OperatorRow, OpsRequestRow};

pub const OPS_DOMAIN: &str = "sovereign/ops/v1";
pub const REASON_CHARS_MAX: usize = 500;
pub const OPERATOR_NAME_BYTES_MAX: usize = 64;

/// A request for access as the requester signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: String,
    pub region: String,
    pub requester: String,
    pub user_id: String,
    /// Sorted by name, no duplicates.
    pub scopes: Vec<ConsentScope>,
    pub reason: String,
    pub requested_at_ms: i64,
    pub not_after_ms: i64,
}

impl AccessRequest {
    pub fn scopes_joined(&self) -> String {
        let mut names: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }

    pub fn signed_bytes(&self) -> Vec<u8> {
        canonical(
            OPS_DOMAIN,
            &[
                b"request",
                self.region.as_bytes(),
                self.id.as_bytes(),
                self.requester.as_bytes(),
                self.user_id.as_bytes(),
                self.scopes_joined().as_bytes(),
                self.reason.as_bytes(),
                &self.requested_at_ms.to_be_bytes(),
                &self.not_after_ms.to_be_bytes(),
            ],
        )
    }

    pub fn digest(&self) -> [u8; 32] {
        digest_sha256(&self.signed_bytes())
    }

    /// The request as stored.
    pub fn from_row(region: &str, row: &OpsRequestRow) -> AccessRequest {
        AccessRequest {
            id: row.id.clone(),
            region: region.to_owned(),
            requester: row.requester.clone(),
            user_id: row.user_id.clone(),
            scopes: row
                .scopes
                .split(',')
                .filter_map(ConsentScope::parse)
                .collect(),
            reason: row.reason.clone(),
            requested_at_ms: row.requested_at,
            not_after_ms: row.not_after,
        }
    }
}

/// What an operator decides about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
    Revoke,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
            Decision::Revoke => "revoke",
        }
    }

    pub fn parse(text: &str) -> Option<Decision> {
        match text {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            "revoke" => Some(Decision::Revoke),
            _ => None,
        }
    }
}

pub fn decision_bytes(
    decision: Decision,
    region: &str,
    request_id: &str,
    operator: &str,
    request_digest: &[u8; 32],
    signed_at_ms: i64,
) -> Vec<u8> {
    canonical(
        OPS_DOMAIN,
        &[
            decision.as_str().as_bytes(),
            region.as_bytes(),
            request_id.as_bytes(),
            operator.as_bytes(),
            request_digest,
            &signed_at_ms.to_be_bytes(),
        ],
    )
}

/// What an operator signs for a request: `path` is the path with its query, if any.
pub fn http_bytes(region: &str, method: &str, path: &str, signed_at_ms: i64) -> Vec<u8> {
    canonical(
        OPS_DOMAIN,
        &[
            b"http",
            region.as_bytes(),
            method.as_bytes(),
            path.as_bytes(),
            &signed_at_ms.to_be_bytes(),
        ],
    )
}

/// # Errors
/// When the name is empty, longer than [`OPERATOR_NAME_BYTES_MAX`], or has characters other
/// than lowercase letters, digits, `.`, `_` and `-`.
pub fn check_operator_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= OPERATOR_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "operator name {name:?} must be 1 to {OPERATOR_NAME_BYTES_MAX} characters of a-z, 0-9, '.', '_' or '-'"
        ))
    }
}

/// The live key of a registered operator.
pub(crate) fn live_operator<'a>(
    operators: &'a [OperatorRow],
    name: &str,
) -> Result<&'a OperatorRow, ApiError> {
    operators
        .iter()
        .find(|o| o.name == name && o.revoked_at.is_none())
        .ok_or_else(|| ApiError::UnknownOperator(name.to_owned()))
}

/// Checks that a signature was made recently by the server's clock.
pub(crate) fn check_fresh(state: &AppState, signed_at_ms: i64) -> Result<(), ApiError> {
    let age_ms_max = i64::try_from(state.policies.ops.signature_age_secs_max)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    if state.now_ms().abs_diff(signed_at_ms) > age_ms_max.unsigned_abs() {
        return Err(ApiError::StaleSignature {
            age_secs_max: state.policies.ops.signature_age_secs_max,
        });
    }
    Ok(())
}

/// A grant whose signatures, state, expiry and scope were just verified. Only
/// [`verify_grant`] makes one.
pub struct VerifiedGrant {
    request: OpsRequestRow,
    approvers: Vec<String>,
    scope: ConsentScope,
}

impl VerifiedGrant {
    pub fn approvers(&self) -> &[String] {
        &self.approvers
    }
}

/// Re-verifies everything a read through a grant depends on, from the stored signatures.
async fn verify_grant(
    state: &AppState,
    request_id: &str,
    scope: ConsentScope,
    reader: &str,
    now: UnixMs,
) -> Result<VerifiedGrant, ApiError> {
    let (request, decisions) = state
        .store
        .ops_request(request_id.to_owned())
        .await?
        .ok_or(ApiError::NotFound)?;
    let operators = state.store.operators().await?;
    let region = state.region.id.as_str();
    let signed = AccessRequest::from_row(region, &request);
    let requester =
        live_operator(&operators, &request.requester).map_err(|_| ApiError::QuorumNotMet {
            verified: 0,
            required: state.policies.ops.approvals_required,
        })?;
    if verify_signature(
        &requester.public_key,
        &signed.signed_bytes(),
        &request.signature,
    )
    .is_err()
    {
        return Err(ApiError::QuorumNotMet {
            verified: 0,
            required: state.policies.ops.approvals_required,
        });
    }
    if reader != request.requester {
        return Err(ApiError::NotRequester);
    }
    let digest = signed.digest();
    let verifies = |d: &crate::store::DecisionRow, decision: Decision| {
        d.decision == decision.as_str()
            && live_operator(&operators, &d.operator).is_ok_and(|op| {
                let message =
                    decision_bytes(decision, region, &request.id, &d.operator, &digest, d.at);
                verify_signature(&op.public_key, &message, &d.signature).is_ok()
            })
    };
    if decisions.iter().any(|d| verifies(d, Decision::Deny)) {
        return Err(ApiError::GrantNotOpen {
            state: "denied".into(),
        });
    }
    if decisions.iter().any(|d| verifies(d, Decision::Revoke)) || request.state == "revoked" {
        return Err(ApiError::GrantNotOpen {
            state: "revoked".into(),
        });
    }
    if now >= request.not_after || request.state == "expired" {
        return Err(ApiError::GrantNotOpen {
            state: "expired".into(),
        });
    }
    let mut approvers: Vec<String> = decisions
        .iter()
        .filter(|d| d.operator != request.requester && verifies(d, Decision::Approve))
        .map(|d| d.operator.clone())
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    let required = state.policies.ops.approvals_required;
    if approvers.len() < required as usize {
        return Err(ApiError::QuorumNotMet {
            verified: approvers.len() as u32,
            required,
        });
    }
    if request.state != "open" {
        return Err(ApiError::GrantNotOpen {
            state: request.state.clone(),
        });
    }
    if !signed.scopes.contains(&scope) {
        return Err(ApiError::ScopeNotGranted(scope.as_str().to_owned()));
    }
    Ok(VerifiedGrant {
        request,
        approvers,
        scope,
    })
}

/// The only way an operator's read reaches a user's data key: verify the grant's k signatures,
/// state, expiry and scope, commit a `read` ledger entry, and only then unwrap the key.
///
/// # Errors
/// Every refusal of [`verify_grant`]; `NotFound` when the user no longer exists.
pub async fn unwrap_for_grant(
    state: &AppState,
    request_id: &str,
    scope: ConsentScope,
    reader: &str,
) -> Result<(VerifiedGrant, AuthUser), ApiError> {
    let now = state.now_ms();
    let grant = verify_grant(state, request_id, scope, reader, now).await?;
    let row = state
        .store
        .user(grant.request.user_id.clone())
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .store
        .record_ops_read(
            grant.request.id.clone(),
            reader.to_owned(),
            grant.scope.as_str().to_owned(),
            state.ledger.clone(),
            now,
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => ApiError::GrantNotOpen {
                state: "expired".into(),
            },
            other => other.into(),
        })?;
    let id = UserId::from_stored(row.id.clone());
    let wrapped = row.wrapped_key.as_deref().ok_or(ApiError::NotFound)?;
    let key = state
        .keys
        .unwrap(wrapped, &id)
        .map_err(ApiError::Internal)?;
    Ok((
        grant,
        AuthUser {
            id,
            row,
            key,
            session: None,
        },
    ))
}

/// One page of the user's data of one scope, decrypted, for an operator holding an open grant,
/// and the cursor of the next page (`None`: the last one). Each page is a read of its own: the
/// grant is verified and a `read` entry committed for it before anything is decrypted. A page
/// holds at most `export_page_rows` items (photos: at most [`crate::export::PAGE_BYTES_MAX`]
/// bytes past the first), so a read costs the same memory however much the user holds.
///
/// # Errors
/// As [`unwrap_for_grant`]; `422 invalid_field` for a cursor this API did not write.
pub async fn read_scope(
    state: &AppState,
    request_id: &str,
    scope: ConsentScope,
    reader: &str,
    after: Option<&str>,
) -> Result<(VerifiedGrant, Value, Option<String>), ApiError> {
    use crate::export::Part;
    let part = match scope {
        ConsentScope::Messaging => Some(Part::Messages),
        ConsentScope::BackupContacts | ConsentScope::BackupSms | ConsentScope::BackupPhotos => {
            let kind = scope.as_str().trim_start_matches("backup.");
            Some(Part::Backup(
                BackupKind::parse(kind).map_err(|_| ApiError::NotFound)?,
            ))
        }
        // No API stores location or diagnostics data; there is nothing to read.
        ConsentScope::Location | ConsentScope::Diagnostics => None,
    };
    // A cursor that cannot be ours is refused before the read is committed to the ledger.
    if let (Some(Part::Messages), Some(after)) = (part, after)
        && crate::store::MessageCursor::decode(after).is_none()
    {
        return Err(ApiError::invalid("after", "must be a cursor of this API"));
    }
    let (grant, user) = unwrap_for_grant(state, request_id, scope, reader).await?;
    let Some(part) = part else {
        return Ok((grant, Value::Array(Vec::new()), None));
    };
    let (items, next) = crate::export::local_page(state, &user, part, after).await?;
    Ok((grant, Value::Array(items), next))
}
