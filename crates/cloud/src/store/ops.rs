//! Operator access: registered operators, their signed requests and decisions. Every change is
//! recorded in the access ledger in the same commit.

use super::db::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use super::{Store, StoreError};
use crate::clock::UnixMs;
use crate::ledger::{LedgerKind, LedgerSigner};
use crate::store::{NewLedgerEntry, append_ledger};

#[derive(Debug, Clone)]
pub struct OperatorRow {
    pub name: String,
    pub public_key: Vec<u8>,
    pub registered_at: UnixMs,
    pub revoked_at: Option<UnixMs>,
}

#[derive(Debug, Clone)]
pub struct OpsRequestRow {
    pub id: String,
    pub requester: String,
    pub user_id: String,
    /// Comma-separated and sorted, exactly as signed.
    pub scopes: String,
    pub reason: String,
    pub requested_at: UnixMs,
    pub not_after: UnixMs,
    pub signature: Vec<u8>,
    pub state: String,
    pub opened_at: Option<UnixMs>,
    pub closed_at: Option<UnixMs>,
}

#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub operator: String,
    pub decision: String,
    pub at: UnixMs,
    pub signature: Vec<u8>,
}

/// An operator's signed decision on a request.
#[derive(Debug, Clone)]
pub struct NewDecision {
    pub request_id: String,
    pub operator: String,
    /// "approve", "deny" or "revoke".
    pub decision: &'static str,
    pub signed_at: UnixMs,
    pub signature: Vec<u8>,
    /// k: approvals from operators other than the requester that open the grant.
    pub approvals_required: u32,
    pub now: UnixMs,
}

const REQUEST_COLUMNS: &str = "id, requester, user_id, scopes, reason, requested_at, not_after, \
                               signature, state, opened_at, closed_at";

fn request_row(r: &Row) -> super::db::DbResult<OpsRequestRow> {
    Ok(OpsRequestRow {
        id: r.get(0)?,
        requester: r.get(1)?,
        user_id: r.get(2)?,
        scopes: r.get(3)?,
        reason: r.get(4)?,
        requested_at: r.get(5)?,
        not_after: r.get(6)?,
        signature: r.get(7)?,
        state: r.get(8)?,
        opened_at: r.get(9)?,
        closed_at: r.get(10)?,
    })
}

fn load_request(conn: &Connection, id: &str) -> Result<Option<OpsRequestRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM ops_requests WHERE id = ?1"),
            params![id],
            request_row,
        )
        .optional()?)
}

fn load_decisions(conn: &Connection, id: &str) -> Result<Vec<DecisionRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT operator, decision, at, signature FROM ops_decisions WHERE request_id = ?1 \
         ORDER BY at, operator",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok(DecisionRow {
            operator: r.get(0)?,
            decision: r.get(1)?,
            at: r.get(2)?,
            signature: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds an operator. Names and keys are unique.
fn insert_operator(
    conn: &Connection,
    name: &str,
    public_key: &[u8],
    now: UnixMs,
) -> Result<(), StoreError> {
    let taken = conn
        .query_row(
            "SELECT name FROM operators WHERE name = ?1 OR public_key = ?2",
            params![name, public_key],
            |r| r.get::<_, String>(0),
        )
        .optional()?;
    if let Some(existing) = taken {
        return Err(StoreError::Conflict(format!(
            "operator {existing} already has this name or key"
        )));
    }
    conn.execute(
        "INSERT INTO operators (name, public_key, registered_at) VALUES (?1, ?2, ?3)",
        params![name, public_key, now],
    )?;
    Ok(())
}

/// Approvals of request `id` from live operators other than its requester.
fn live_approvers(conn: &Connection, request: &OpsRequestRow) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT d.operator FROM ops_decisions d JOIN operators o ON o.name = d.operator \
         WHERE d.request_id = ?1 AND d.decision = 'approve' AND o.revoked_at IS NULL \
         AND d.operator <> ?2 ORDER BY d.operator",
    )?;
    let rows = stmt.query_map(params![request.id, request.requester], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes an operator's key: nothing they signed counts any more, not even past approvals. In
/// the same commit every live request they made, and every open grant left with fewer than
/// `approvals_required` live approvers, is revoked; those requests are returned.
fn mark_revoked(
    conn: &Connection,
    name: &str,
    now: UnixMs,
    approvals_required: u32,
) -> Result<Vec<OpsRequestRow>, StoreError> {
    let changed = conn.execute(
        "UPDATE operators SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    let ids: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT DISTINCT r.id FROM ops_requests r LEFT JOIN ops_decisions d \
             ON d.request_id = r.id AND d.operator = ?1 AND d.decision = 'approve' \
             WHERE r.not_after > ?2 AND ((r.requester = ?1 AND r.state IN ('pending', 'open')) \
             OR (r.state = 'open' AND d.operator IS NOT NULL)) ORDER BY r.id",
        )?;
        let rows = stmt.query_map(params![name, now], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut ended = Vec::new();
    for id in ids {
        let Some(request) = load_request(conn, &id)? else {
            continue;
        };
        let held = request.requester != name
            && live_approvers(conn, &request)?.len() >= approvals_required as usize;
        if held {
            continue;
        }
        conn.execute(
            "UPDATE ops_requests SET state = 'revoked', closed_at = ?2 WHERE id = ?1",
            params![request.id, now],
        )?;
        ended.push(request);
    }
    Ok(ended)
}

impl Store {
    /// Registers an operator's public key, recording it in the ledger in the same commit (a
    /// `register_operator` entry naming the operator, with the key's hex as its detail), so who
    /// could sign requests at any time is part of what `ledger verify` checks.
    pub async fn register_operator_recorded(
        &self,
        signer: std::sync::Arc<crate::ledger::LedgerSigner>,
        name: String,
        public_key: Vec<u8>,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            insert_operator(conn, &name, &public_key, now)?;
            let detail = serde_json::json!({ "public_key": sovereign_crypto::hex(&public_key) });
            append_ledger(
                conn,
                &signer,
                &NewLedgerEntry {
                    kind: LedgerKind::RegisterOperator,
                    user_id: "",
                    request_id: "",
                    operator: &name,
                    detail: detail.to_string(),
                    at: now,
                },
            )?;
            Ok(())
        })
        .await
    }

    /// Revokes an operator's key and records it in the ledger in the same commit, with a
    /// `revoke` entry for each request or grant that ends with it (see `mark_revoked`).
    pub async fn revoke_operator_recorded(
        &self,
        signer: std::sync::Arc<crate::ledger::LedgerSigner>,
        name: String,
        now: UnixMs,
        approvals_required: u32,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let ended = mark_revoked(conn, &name, now, approvals_required)?;
            for request in &ended {
                let detail = json!({
                    "reason": request.reason,
                    "because": format!("operator {name}'s key was revoked"),
                });
                append_ledger(
                    conn,
                    &signer,
                    &entry(request, LedgerKind::Revoke, &name, detail, now),
                )?;
            }
            append_ledger(
                conn,
                &signer,
                &NewLedgerEntry {
                    kind: LedgerKind::RevokeOperator,
                    user_id: "",
                    request_id: "",
                    operator: &name,
                    detail: "{}".to_owned(),
                    at: now,
                },
            )?;
            Ok(())
        })
        .await
    }

    /// Registers an operator's public key without a ledger entry: for tests that need operators
    /// only. `sovereign ops register` uses [`Store::register_operator_recorded`].
    pub async fn register_operator(
        &self,
        name: String,
        public_key: Vec<u8>,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| insert_operator(conn, &name, &public_key, now))
            .await
    }

    pub async fn operators(&self) -> Result<Vec<OperatorRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT name, public_key, registered_at, revoked_at FROM operators ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(OperatorRow {
                    name: r.get(0)?,
                    public_key: r.get(1)?,
                    registered_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Stores a signed request (checked by the caller) and records it in the ledger.
    pub async fn create_ops_request(
        &self,
        request: OpsRequestRow,
        signer: std::sync::Arc<LedgerSigner>,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            if load_request(conn, &request.id)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "request {} already exists",
                    request.id
                )));
            }
            conn.execute(
                "INSERT INTO ops_requests (id, requester, user_id, scopes, reason, requested_at, \
                 not_after, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    request.id,
                    request.requester,
                    request.user_id,
                    request.scopes,
                    request.reason,
                    request.requested_at,
                    request.not_after,
                    request.signature
                ],
            )?;
            append_ledger(
                conn,
                &signer,
                &NewLedgerEntry {
                    kind: LedgerKind::Request,
                    user_id: &request.user_id,
                    request_id: &request.id,
                    operator: &request.requester,
                    detail: json!({
                        "scopes": request.scopes.split(',').collect::<Vec<_>>(),
                        "reason": request.reason,
                        "not_after_ms": request.not_after,
                    })
                    .to_string(),
                    at: now,
                },
            )?;
            Ok(())
        })
        .await
    }

    pub async fn ops_request(
        &self,
        id: String,
    ) -> Result<Option<(OpsRequestRow, Vec<DecisionRow>)>, StoreError> {
        self.read(move |conn| {
            let Some(request) = load_request(conn, &id)? else {
                return Ok(None);
            };
            let decisions = load_decisions(conn, &id)?;
            Ok(Some((request, decisions)))
        })
        .await
    }

    /// Records a signed decision (checked by the caller) and what follows from it, in one
    /// commit: the k-th approval opens the grant, a denial closes the request, a revocation ends
    /// the grant. Each step is a ledger entry.
    pub async fn decide_ops(
        &self,
        decision: NewDecision,
        signer: std::sync::Arc<LedgerSigner>,
    ) -> Result<OpsRequestRow, StoreError> {
        self.write(move |conn| {
            let request = load_request(conn, &decision.request_id)?.ok_or(StoreError::NotFound)?;
            let now = decision.now;
            let live = request.state == "pending" || request.state == "open";
            let allowed = match decision.decision {
                "revoke" => live,
                _ => request.state == "pending",
            };
            if !allowed || now >= request.not_after {
                let state = if live && now >= request.not_after {
                    "expired"
                } else {
                    request.state.as_str()
                };
                let verb = match decision.decision {
                    "approve" => "approved",
                    "deny" => "denied",
                    _ => "revoked",
                };
                return Err(StoreError::Conflict(format!(
                    "request {} is {state}; it cannot be {verb}",
                    request.id
                )));
            }
            if decision.operator == request.requester && decision.decision == "approve" {
                return Err(StoreError::Conflict(
                    "the requester cannot approve their own request".into(),
                ));
            }
            let inserted = conn.execute(
                "INSERT INTO ops_decisions (request_id, operator, decision, at, signature) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (request_id, operator, decision) DO NOTHING",
                params![
                    decision.request_id,
                    decision.operator,
                    decision.decision,
                    decision.signed_at,
                    decision.signature
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "{} has already made this decision on request {}",
                    decision.operator, request.id
                )));
            }
            let kind = match decision.decision {
                "approve" => LedgerKind::Approve,
                "deny" => LedgerKind::Deny,
                _ => LedgerKind::Revoke,
            };
            append_ledger(
                conn,
                &signer,
                &entry(&request, kind, &decision.operator, json!({ "reason": request.reason }), now),
            )?;
            match kind {
                LedgerKind::Approve => {
                    // A revoked operator's approval, made before the revocation, counts no more.
                    let approvers = live_approvers(conn, &request)?;
                    if approvers.len() >= decision.approvals_required as usize {
                        conn.execute(
                            "UPDATE ops_requests SET state = 'open', opened_at = ?2 WHERE id = ?1",
                            params![request.id, now],
                        )?;
                        append_ledger(
                            conn,
                            &signer,
                            &entry(
                                &request,
                                LedgerKind::Grant,
                                &request.requester,
                                json!({
                                    "scopes": request.scopes.split(',').collect::<Vec<_>>(),
                                    "reason": request.reason,
                                    "approvers": approvers,
                                    "not_after_ms": request.not_after,
                                }),
                                now,
                            ),
                        )?;
                    }
                }
                LedgerKind::Deny | LedgerKind::Revoke => {
                    let state = if kind == LedgerKind::Deny {
                        "denied"
                    } else {
                        "revoked"
                    };
                    conn.execute(
                        "UPDATE ops_requests SET state = ?2, closed_at = ?3 WHERE id = ?1",
                        params![request.id, state, now],
                    )?;
                }
                _ => {}
            }
            load_request(conn, &request.id)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    /// Records an operator's read through an open grant. Checks, in the same commit, that the
    /// grant is still open and unexpired, so a read is never returned without its ledger entry.
    pub async fn record_ops_read(
        &self,
        request_id: String,
        operator: String,
        scope: String,
        signer: std::sync::Arc<LedgerSigner>,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let request = load_request(conn, &request_id)?.ok_or(StoreError::NotFound)?;
            if request.state != "open" || now >= request.not_after {
                return Err(StoreError::Conflict(format!(
                    "grant {request_id} is not open"
                )));
            }
            append_ledger(
                conn,
                &signer,
                &NewLedgerEntry {
                    kind: LedgerKind::Read,
                    user_id: &request.user_id,
                    request_id: &request.id,
                    operator: &operator,
                    detail: json!({ "scope": scope, "reason": request.reason }).to_string(),
                    at: now,
                },
            )?;
            Ok(())
        })
        .await
    }
}

fn entry<'a>(
    request: &'a OpsRequestRow,
    kind: LedgerKind,
    operator: &'a str,
    detail: serde_json::Value,
    at: UnixMs,
) -> NewLedgerEntry<'a> {
    NewLedgerEntry {
        kind,
        user_id: &request.user_id,
        request_id: &request.id,
        operator,
        detail: detail.to_string(),
        at,
    }
}
