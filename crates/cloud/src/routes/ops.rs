//! Staff access over the API: operators request access to one user's data, others approve or
//! deny, each action signed with the operator's Ed25519 key; an open grant is read-only. And the
//! user's own view of the access ledger, with inclusion proofs.
//!
//! Operators authenticate every call with their signature: POST bodies carry the signature of
//! the action itself (see [`crate::ops`]); GETs carry `sovereign-operator`,
//! `sovereign-signed-at` (Unix ms) and `sovereign-signature` (hex) headers over
//! `("http", region, method, path, signed_at)`.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sovereign_crypto::{SIGNATURE_BYTES, from_hex, hex, verify_signature};
use sovereign_model::ConsentScope;
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::extract::{AuthUser, StrictJson};
use crate::ops::{
    AccessRequest, Decision, REASON_CHARS_MAX, check_fresh, check_operator_name, decision_bytes,
    http_bytes, live_operator,
};
use crate::state::AppState;
use crate::store::{DecisionRow, NewDecision, OpsRequestRow, StoreError};

pub const HEADER_OPERATOR: &str = "sovereign-operator";
pub const HEADER_SIGNED_AT: &str = "sovereign-signed-at";
pub const HEADER_SIGNATURE: &str = "sovereign-signature";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/ops/requests", post(create_request))
        .route("/v1/ops/requests/{id}", get(show_request))
        .route("/v1/ops/requests/{id}/{decision}", post(decide))
        .route(
            "/v1/ops/grants/{id}/data/{scope}",
            get(read_data)
                .post(refuse_write)
                .put(refuse_write)
                .patch(refuse_write)
                .delete(refuse_write),
        )
        .route("/v1/me/access-log", get(access_log))
        .route("/v1/me/ledger/consistency", get(consistency))
}

/// Largest tree size a proof request may name: far beyond any ledger, small enough that sizes
/// stay exact in JavaScript's numbers (the dashboard checks proofs in the browser).
pub const LEDGER_TREE_SIZE_MAX: i64 = (1 << 53) - 1;

/// `?since=` of the access log: the head the client saw last.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    /// Tree size of the last signed checkpoint the client saw: the reply then carries the
    /// consistency proof from it to the current one.
    since: Option<String>,
}

/// `?from=&to=` of a consistency proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// Tree size of the older head (any size from 1 to `to`).
    from: Option<String>,
    /// Tree size of a signed checkpoint; the newest when absent.
    to: Option<String>,
}

/// A tree size from a query string: a decimal number from 1 to [`LEDGER_TREE_SIZE_MAX`].
fn parse_tree_size(field: &str, text: &str) -> Result<i64, ApiError> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(
            field,
            format!("must be a tree size: a whole number from 1 to {LEDGER_TREE_SIZE_MAX}"),
        ));
    }
    match text.parse::<i64>() {
        Ok(size) if (1..=LEDGER_TREE_SIZE_MAX).contains(&size) => Ok(size),
        _ => Err(ApiError::invalid(
            field,
            format!("must be a tree size: a whole number from 1 to {LEDGER_TREE_SIZE_MAX}"),
        )),
    }
}

fn checkpoint_json(c: &crate::store::CheckpointRow) -> Value {
    json!({
        "tree_size": c.tree_size,
        "root": hex(&c.root),
        "chain_head": hex(&c.chain_head),
        "at_ms": c.at,
        "public_key": hex(&c.public_key),
        "signature": hex(&c.signature),
    })
}

/// The consistency proof from the tree of `from` entries to the signed checkpoint of `to` (the
/// newest when `None`), with that checkpoint, as JSON.
///
/// # Errors
/// `invalid_field` when `from` is beyond `to` or `to` is not a signed checkpoint.
pub async fn consistency_json(
    state: &AppState,
    from: i64,
    to: Option<i64>,
) -> Result<Value, ApiError> {
    match state.store.ledger_consistency(from, to).await? {
        Some((checkpoint, proof)) => Ok(json!({
            "region": state.region.id.as_str(),
            "from": from,
            "to": checkpoint.tree_size,
            "proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
            "checkpoint": checkpoint_json(&checkpoint),
        })),
        None if to.is_some() => Err(ApiError::invalid(
            "to",
            "must be the size of a signed checkpoint, at least `from`",
        )),
        None => Err(ApiError::invalid(
            "from",
            "is beyond the region's newest signed checkpoint",
        )),
    }
}

/// The RFC 9162 consistency proof between two heads of this region's ledger: that the signed
/// checkpoint of `to` entries (the newest by default) extends the tree of `from` entries, so a
/// user who remembers an older head can check that nothing before it was rewritten.
#[utoipa::path(get, path = "/v1/me/ledger/consistency", params(ConsistencyQuery),
    responses((status = 200, description = "{from, to, proof: [hex], checkpoint}"),
              (status = 401), (status = 422, description = "invalid_field: from or to")),
    security(("bearer" = [])))]
pub async fn consistency(
    State(state): State<AppState>,
    _user: AuthUser,
    query: Result<axum::extract::Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(consistency_answer(&state, query).await?))
}

/// The consistency endpoint's answer, for the API and the dashboard alike.
///
/// # Errors
/// `invalid_field` naming the bad parameter.
pub async fn consistency_answer(
    state: &AppState,
    query: Result<axum::extract::Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Value, ApiError> {
    let axum::extract::Query(query) =
        query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let from = parse_tree_size(
        "from",
        query
            .from
            .as_deref()
            .ok_or_else(|| ApiError::invalid("from", "is required"))?,
    )?;
    let to = query
        .to
        .as_deref()
        .map(|t| parse_tree_size("to", t))
        .transpose()?;
    if let Some(to) = to
        && to < from
    {
        return Err(ApiError::invalid("to", "must be at least `from`"));
    }
    consistency_json(state, from, to).await
}

fn parse_signature(text: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = from_hex(text).map_err(|_| ApiError::invalid("signature", "must be hex"))?;
    if bytes.len() != SIGNATURE_BYTES {
        return Err(ApiError::invalid(
            "signature",
            format!("must be {SIGNATURE_BYTES} bytes (Ed25519)"),
        ));
    }
    Ok(bytes)
}

fn check_uuid(field: &str, value: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(value)
        .map(|_| ())
        .map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// An operator whose signature over this very GET verified.
pub struct OperatorAuth {
    pub name: String,
}

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::invalid(name, "header is required for operator calls"))
        };
        let name = header(HEADER_OPERATOR)?;
        let signed_at: i64 = header(HEADER_SIGNED_AT)?
            .parse()
            .map_err(|_| ApiError::invalid(HEADER_SIGNED_AT, "must be Unix milliseconds"))?;
        let signature = parse_signature(&header(HEADER_SIGNATURE)?)?;
        check_operator_name(&name).map_err(|m| ApiError::invalid(HEADER_OPERATOR, m))?;
        let operators = state.store.operators().await?;
        let operator = live_operator(&operators, &name)?;
        // The query is signed with the path: a page's cursor is part of what was asked.
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |p| p.as_str());
        let message = http_bytes(
            state.region.id.as_str(),
            parts.method.as_str(),
            target,
            signed_at,
        );
        verify_signature(&operator.public_key, &message, &signature)
            .map_err(|_| ApiError::BadSignature)?;
        check_fresh(state, signed_at)?;
        Ok(OperatorAuth { name })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    id: String,
    requester: String,
    user_id: String,
    scopes: Vec<String>,
    reason: String,
    requested_at_ms: i64,
    not_after_ms: i64,
    signature: String,
}

#[derive(Serialize, ToSchema)]
pub struct RequestView {
    id: String,
    region: String,
    requester: String,
    user_id: String,
    scopes: Vec<String>,
    reason: String,
    requested_at_ms: i64,
    not_after_ms: i64,
    not_after: String,
    state: String,
    approvals: Vec<String>,
    approvals_required: u32,
    denials: Vec<String>,
}

fn request_view(state: &AppState, row: &OpsRequestRow, decisions: &[DecisionRow]) -> RequestView {
    let by = |kind: &str| {
        decisions
            .iter()
            .filter(|d| d.decision == kind)
            .map(|d| d.operator.clone())
            .collect()
    };
    RequestView {
        id: row.id.clone(),
        region: state.region.id.to_string(),
        requester: row.requester.clone(),
        user_id: row.user_id.clone(),
        scopes: row.scopes.split(',').map(str::to_owned).collect(),
        reason: row.reason.clone(),
        requested_at_ms: row.requested_at,
        not_after_ms: row.not_after,
        not_after: rfc3339(row.not_after),
        state: if (row.state == "pending" || row.state == "open") && state.now_ms() >= row.not_after
        {
            "expired".to_owned()
        } else {
            row.state.clone()
        },
        approvals: by("approve"),
        approvals_required: state.policies.ops.approvals_required,
        denials: by("deny"),
    }
}

/// An operator asks for read-only access to one user's data, for named scopes, with a reason.
#[utoipa::path(post, path = "/v1/ops/requests", request_body = CreateRequest,
    responses((status = 201, body = RequestView), (status = 401, description = "unknown_operator, bad_signature or stale_signature"),
              (status = 409, description = "conflict"), (status = 422, description = "invalid_field")))]
pub async fn create_request(
    State(state): State<AppState>,
    StrictJson(body): StrictJson<CreateRequest>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    check_uuid("id", &body.id)?;
    check_uuid("user_id", &body.user_id)?;
    check_operator_name(&body.requester).map_err(|m| ApiError::invalid("requester", m))?;
    if body.scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "name at least one scope"));
    }
    let mut scopes = Vec::new();
    for name in &body.scopes {
        let scope = ConsentScope::parse(name)
            .ok_or_else(|| ApiError::invalid("scopes", format!("{name:?} is not a scope")))?;
        if scopes.contains(&scope) {
            return Err(ApiError::invalid(
                "scopes",
                format!("{name} is named twice"),
            ));
        }
        scopes.push(scope);
    }
    let reason_chars = body.reason.chars().count();
    if body.reason.trim().is_empty()
        || reason_chars > REASON_CHARS_MAX
        || body.reason.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "reason",
            format!("must be 1 to {REASON_CHARS_MAX} printable characters"),
        ));
    }
    let duration_ms = body.not_after_ms.saturating_sub(body.requested_at_ms);
    let duration_ms_max = i64::try_from(state.policies.ops.grant_duration_secs_max)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    if duration_ms <= 0 || duration_ms > duration_ms_max {
        return Err(ApiError::invalid(
            "not_after_ms",
            format!(
                "the grant must last more than 0 and at most {} s",
                state.policies.ops.grant_duration_secs_max
            ),
        ));
    }
    let signature = parse_signature(&body.signature)?;
    let operators = state.store.operators().await?;
    let requester = live_operator(&operators, &body.requester)?;
    let request = AccessRequest {
        id: body.id,
        region: state.region.id.to_string(),
        requester: body.requester,
        user_id: body.user_id,
        scopes,
        reason: body.reason,
        requested_at_ms: body.requested_at_ms,
        not_after_ms: body.not_after_ms,
    };
    verify_signature(&requester.public_key, &request.signed_bytes(), &signature)
        .map_err(|_| ApiError::BadSignature)?;
    check_fresh(&state, request.requested_at_ms)?;
    if state.store.user(request.user_id.clone()).await?.is_none() {
        return Err(ApiError::invalid("user_id", "no such user in this region"));
    }
    let row = OpsRequestRow {
        id: request.id.clone(),
        requester: request.requester.clone(),
        user_id: request.user_id.clone(),
        scopes: request.scopes_joined(),
        reason: request.reason.clone(),
        requested_at: request.requested_at_ms,
        not_after: request.not_after_ms,
        signature,
        state: "pending".into(),
        opened_at: None,
        closed_at: None,
    };
    state
        .store
        .create_ops_request(row.clone(), state.ledger.clone(), state.now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(request_view(&state, &row, &[]))))
}

/// A request as it stands, for the operators deciding on it (signed GET).
#[utoipa::path(get, path = "/v1/ops/requests/{id}", params(("id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 401), (status = 404)))]
pub async fn show_request(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let (row, decisions) = state
        .store
        .ops_request(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(request_view(&state, &row, &decisions)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    operator: String,
    signed_at_ms: i64,
    signature: String,
}

/// Approve, deny or revoke, signed over the request's digest. The k-th approval from operators
/// other than the requester opens the grant; one denial closes the request.
#[utoipa::path(post, path = "/v1/ops/requests/{id}/{decision}", request_body = DecisionBody,
    params(("id" = String, Path), ("decision" = String, Path, description = "approve, deny or revoke")),
    responses((status = 200, body = RequestView), (status = 401), (status = 403, description = "self_approval"),
              (status = 404), (status = 409, description = "conflict")))]
pub async fn decide(
    State(state): State<AppState>,
    Path((id, decision)): Path<(String, String)>,
    StrictJson(body): StrictJson<DecisionBody>,
) -> Result<Json<RequestView>, ApiError> {
    let decision = Decision::parse(&decision).ok_or(ApiError::NotFound)?;
    check_operator_name(&body.operator).map_err(|m| ApiError::invalid("operator", m))?;
    let signature = parse_signature(&body.signature)?;
    let (row, _) = state
        .store
        .ops_request(id.clone())
        .await?
        .ok_or(ApiError::NotFound)?;
    let operators = state.store.operators().await?;
    let operator = live_operator(&operators, &body.operator)?;
    let region = state.region.id.to_string();
    let digest = AccessRequest::from_row(&region, &row).digest();
    let message = decision_bytes(
        decision,
        &region,
        &id,
        &body.operator,
        &digest,
        body.signed_at_ms,
    );
    verify_signature(&operator.public_key, &message, &signature)
        .map_err(|_| ApiError::BadSignature)?;
    check_fresh(&state, body.signed_at_ms)?;
    if decision == Decision::Approve && body.operator == row.requester {
        return Err(ApiError::SelfApproval);
    }
    state
        .store
        .decide_ops(
            NewDecision {
                request_id: id.clone(),
                operator: body.operator,
                decision: decision.as_str(),
                signed_at: body.signed_at_ms,
                signature,
                approvals_required: state.policies.ops.approvals_required,
                now: state.now_ms(),
            },
            state.ledger.clone(),
        )
        .await?;
    let (row, decisions) = state
        .store
        .ops_request(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(request_view(&state, &row, &decisions)))
}

/// Reads one scope of the user's data through an open grant. The k approvals are verified again
/// from their signatures, and a `read` entry is committed to the ledger, before anything is
/// decrypted.
#[utoipa::path(get, path = "/v1/ops/grants/{id}/data/{scope}", params(("id" = String, Path), ("scope" = String, Path), DataQuery),
    responses((status = 200, description = "one page of the scope's data, decrypted, and `next`: the cursor of the next page, or null"), (status = 401),
              (status = 403, description = "quorum_not_met, grant_not_open, scope_not_granted, not_requester or read_only_grant")))]
pub async fn read_data(
    State(state): State<AppState>,
    operator: OperatorAuth,
    Path((id, scope)): Path<(String, String)>,
    query: Result<Query<DataQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let scope = ConsentScope::parse(&scope).ok_or_else(|| ApiError::ScopeNotGranted(scope))?;
    let (grant, data, next) =
        crate::ops::read_scope(&state, &id, scope, &operator.name, query.after.as_deref()).await?;
    Ok(Json(json!({
        "request_id": id,
        "scope": scope.as_str(),
        "read_by": operator.name,
        "approved_by": grant.approvers(),
        "read_at": rfc3339(state.now_ms()),
        "items": data,
        "next": next,
    })))
}

/// Where a page of an operator's read starts: the `next` of the page before.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DataQuery {
    after: Option<String>,
}

/// Every write through a grant is refused: grants are read-only by construction.
pub async fn refuse_write() -> ApiError {
    ApiError::ReadOnlyGrant
}

/// The user's own entries in the access ledger, newest first, each with an RFC 6962 inclusion
/// proof against the region's latest signed checkpoint; `elsewhere`, the same from each region
/// holding one of the user's services; `former`, the same from each region the user's data
/// has left (or `{"region", "available": false}` for one that did not answer).
#[utoipa::path(get, path = "/v1/me/access-log", params(AccessLogQuery),
    responses((status = 200, description = "entries, inclusion proofs and the signed checkpoint"), (status = 401)),
    security(("bearer" = [])))]
pub async fn access_log(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<axum::extract::Query<AccessLogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(query) =
        query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let since = query
        .since
        .as_deref()
        .map(|t| parse_tree_size("since", t))
        .transpose()?;
    let mut log = ledger_json(&state, user.id.as_str()).await?;
    // The proof that today's checkpoint extends the one the client remembers. A remembered head
    // larger than today's is no error of the client's: it is said, and the client must alarm.
    if let Some(since) = since {
        let to = log["checkpoint"]["tree_size"].as_i64();
        log["consistency"] = match to {
            Some(to) if since <= to => consistency_json(&state, since, Some(to)).await?,
            _ => json!({
                "from": since,
                "to": to,
                "proof": null,
                "problem": "the remembered head is newer than the region's newest checkpoint",
            }),
        };
    }
    // Reads of the data the user's services hold in other regions are in those regions'
    // ledgers: each says what it holds, with its own proofs and checkpoint.
    let mut elsewhere = Vec::new();
    for (_, part) in crate::placement::access_remote(&state, user.id.as_str()).await? {
        elsewhere.push(part);
    }
    log["elsewhere"] = Value::Array(elsewhere);
    // Reads made where the user's data was before (a region they or a service left) are in
    // those regions' ledgers; one that does not answer is marked, not fatal.
    log["former"] = Value::Array(crate::placement::access_former(&state, user.id.as_str()).await?);
    Ok(Json(log))
}

/// This region's ledger entries about a user, newest first, each with its inclusion proof
/// against the region's latest signed checkpoint.
///
/// # Errors
/// When the store cannot be read or a checkpoint cannot be signed.
pub async fn ledger_json(state: &AppState, user_id: &str) -> Result<Value, ApiError> {
    match state
        .store
        .ledger_checkpoint(state.ledger.clone(), state.now_ms())
        .await
    {
        // A region refusing to sign over a rewritten ledger still shows the user what its last
        // signed checkpoint proves (and /healthz says why it signs no more).
        Ok(_) | Err(StoreError::LedgerRewritten(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let Some(ledger) = state.store.user_ledger(user_id.to_owned()).await? else {
        return Ok(json!({
            "region": state.region.id.as_str(),
            "checkpoint": null,
            "entries": [],
        }));
    };
    let c = &ledger.checkpoint;
    let entries: Vec<Value> = ledger
        .entries
        .iter()
        .map(|(row, proof)| {
            json!({
                "seq": row.seq,
                "at": rfc3339(row.at),
                "at_ms": row.at,
                "kind": row.kind,
                "user_id": row.user_id,
                "request_id": row.request_id,
                "operator": row.operator,
                "detail": row.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
                "detail_hash": hex(&row.detail_hash),
                "leaf_hash": hex(&row.leaf_hash),
                "inclusion_proof": proof.iter().map(|h| hex(h)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "region": state.region.id.as_str(),
        "checkpoint": checkpoint_json(c),
        "entries": entries,
    }))
}
