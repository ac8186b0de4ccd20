//! Retention's SQL: what is past its time, deleted in one commit per sweep, and what will go when.

use super::db::{Connection, Row, params};
use serde_json::json;

use super::{Store, StoreError};
use crate::clock::UnixMs;
use crate::ledger::{LedgerKind, LedgerSigner};
use crate::store::{NewLedgerEntry, append_ledger};

/// Most grants one sweep expires; the rest wait for the next sweep a minute later.
pub const SWEEP_GRANTS_MAX: u32 = 1000;

/// What one sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub undelivered_messages: u64,
    pub delivered_messages: u64,
    pub sessions: u64,
    pub verification_codes: u64,
    pub grants_expired: u64,
    pub ledger_details: u64,
    pub closed_requests: u64,
}

/// The cut-off times of one sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepCutoffs {
    pub now: UnixMs,
    /// Ledger details and closed requests at or before this time go.
    pub ledger_before: UnixMs,
}

/// One retention category: how many rows, how many are due, and when the next and last go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryStats {
    pub category: &'static str,
    pub rows: i64,
    pub due_now: i64,
    pub next_deletion: Option<UnixMs>,
    pub last_deletion: Option<UnixMs>,
}

fn stats(
    conn: &Connection,
    category: &'static str,
    sql_from_where: &str,
    deletion_expr: &str,
    now: UnixMs,
    shift_ms: i64,
    user_id: Option<&str>,
) -> Result<CategoryStats, StoreError> {
    let sql = format!(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN {deletion_expr} <= ?1 THEN 1 ELSE 0 END), 0), \
         MIN({deletion_expr}), MAX({deletion_expr}) {sql_from_where}"
    );
    let row = |r: &Row| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
    let cutoff = now - shift_ms;
    let (rows, due, next, last): (i64, i64, Option<i64>, Option<i64>) = match user_id {
        Some(user) => conn.query_row(&sql, params![cutoff, user], row)?,
        None => conn.query_row(&sql, params![cutoff], row)?,
    };
    Ok(CategoryStats {
        category,
        rows,
        due_now: due,
        next_deletion: next.map(|t| t + shift_ms),
        last_deletion: last.map(|t| t + shift_ms),
    })
}

/// Every category of the region, as of `now`. `ledger_ms` is how long ledger details live.
///
/// # Errors
/// When the store cannot be read.
pub fn retention_stats(
    conn: &Connection,
    now: UnixMs,
    ledger_ms: i64,
) -> Result<Vec<CategoryStats>, StoreError> {
    Ok(vec![
        stats(
            conn,
            "undelivered_messages",
            "FROM messages WHERE box = 'inbox' AND delivered_at IS NULL",
            "expires_at",
            now,
            0,
            None,
        )?,
        stats(
            conn,
            "delivered_messages",
            "FROM messages WHERE box = 'sent' OR delivered_at IS NOT NULL",
            "expires_at",
            now,
            0,
            None,
        )?,
        stats(
            conn,
            "sessions",
            "FROM sessions",
            "expires_at",
            now,
            0,
            None,
        )?,
        stats(
            conn,
            "verification_codes",
            "FROM verifications",
            "expires_at",
            now,
            0,
            None,
        )?,
        stats(
            conn,
            "ledger_details",
            "FROM ledger_entries WHERE detail IS NOT NULL",
            "at",
            now,
            ledger_ms,
            None,
        )?,
        stats(
            conn,
            "closed_operator_requests",
            "FROM ops_requests WHERE closed_at IS NOT NULL",
            "closed_at",
            now,
            ledger_ms,
            None,
        )?,
    ])
}

/// One user's rows per category with their deletion dates, for the privacy dashboard.
///
/// # Errors
/// When the store cannot be read.
pub fn user_retention_stats(
    conn: &Connection,
    user_id: &str,
    now: UnixMs,
    ledger_ms: i64,
) -> Result<Vec<CategoryStats>, StoreError> {
    let mut out = vec![
        stats(
            conn,
            "undelivered_messages",
            "FROM messages WHERE owner_id = ?2 AND box = 'inbox' AND delivered_at IS NULL",
            "expires_at",
            now,
            0,
            Some(user_id),
        )?,
        stats(
            conn,
            "delivered_messages",
            "FROM messages WHERE owner_id = ?2 AND (box = 'sent' OR delivered_at IS NOT NULL)",
            "expires_at",
            now,
            0,
            Some(user_id),
        )?,
        stats(
            conn,
            "sessions",
            "FROM sessions WHERE user_id = ?2",
            "expires_at",
            now,
            0,
            Some(user_id),
        )?,
        stats(
            conn,
            "access_ledger_details",
            "FROM ledger_entries WHERE user_id = ?2 AND detail IS NOT NULL",
            "at",
            now,
            ledger_ms,
            Some(user_id),
        )?,
    ];
    for kind in ["contacts", "sms", "photos"] {
        let category = match kind {
            "contacts" => "backup_contacts",
            "sms" => "backup_sms",
            _ => "backup_photos",
        };
        let rows: i64 = conn.query_row(
            "SELECT COUNT(*) FROM backup_items WHERE owner_id = ?1 AND kind = ?2 AND deleted = 0",
            params![user_id, kind],
            |r| r.get(0),
        )?;
        out.push(CategoryStats {
            category,
            rows,
            due_now: 0,
            next_deletion: None,
            last_deletion: None,
        });
    }
    Ok(out)
}

/// Users being moved out: their rows are frozen until the move ends (the fence triggers would
/// refuse the whole statement), and whatever expired is swept at the target instead.
const FENCED: &str = "SELECT user_id FROM migration_fences WHERE role = 'source'";

impl Store {
    /// Deletes everything past its time in one commit, and expires grants past `not_after`
    /// (each with an `expire` ledger entry).
    pub async fn sweep(
        &self,
        cutoffs: SweepCutoffs,
        signer: std::sync::Arc<LedgerSigner>,
    ) -> Result<SweepCounts, StoreError> {
        self.write(move |conn| {
            let now = cutoffs.now;
            let mut counts = SweepCounts {
                undelivered_messages: conn.execute(
                    &format!(
                        "DELETE FROM messages WHERE expires_at <= ?1 AND box = 'inbox' \
                         AND delivered_at IS NULL AND owner_id NOT IN ({FENCED})"
                    ),
                    params![now],
                )? as u64,
                delivered_messages: conn
                    .execute(
                        &format!("DELETE FROM messages WHERE expires_at <= ?1 AND owner_id NOT IN ({FENCED})"),
                        params![now],
                    )?
                    as u64,
                sessions: conn
                    .execute(
                        &format!("DELETE FROM sessions WHERE expires_at <= ?1 AND user_id NOT IN ({FENCED})"),
                        params![now],
                    )?
                    as u64,
                verification_codes: conn.execute(
                    "DELETE FROM verifications WHERE expires_at <= ?1",
                    params![now],
                )? as u64,
                ..SweepCounts::default()
            };
            let mut stmt = conn.prepare(
                "SELECT id, user_id, requester, state FROM ops_requests \
                 WHERE state IN ('pending', 'open') AND not_after <= ?1 ORDER BY not_after LIMIT ?2",
            )?;
            let due: Vec<(String, String, String, String)> = stmt
                .query_map(params![now, SWEEP_GRANTS_MAX], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            for (id, user_id, requester, previous) in due {
                conn.execute(
                    "UPDATE ops_requests SET state = 'expired', closed_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                append_ledger(
                    conn,
                    &signer,
                    &NewLedgerEntry {
                        kind: LedgerKind::Expire,
                        user_id: &user_id,
                        request_id: &id,
                        operator: &requester,
                        detail: json!({ "was": previous }).to_string(),
                        at: now,
                    },
                )?;
                counts.grants_expired += 1;
            }
            counts.ledger_details = conn.execute(
                "UPDATE ledger_entries SET detail = NULL WHERE detail IS NOT NULL AND at <= ?1",
                params![cutoffs.ledger_before],
            )? as u64;
            let closed = "SELECT id FROM ops_requests WHERE closed_at IS NOT NULL AND closed_at <= ?1";
            conn.execute(
                &format!("DELETE FROM ops_decisions WHERE request_id IN ({closed})"),
                params![cutoffs.ledger_before],
            )?;
            counts.closed_requests = conn.execute(
                "DELETE FROM ops_requests WHERE closed_at IS NOT NULL AND closed_at <= ?1",
                params![cutoffs.ledger_before],
            )? as u64;
            Ok(counts)
        })
        .await
    }

    pub async fn retention_stats(
        &self,
        now: UnixMs,
        ledger_ms: i64,
    ) -> Result<Vec<CategoryStats>, StoreError> {
        self.read(move |conn| retention_stats(conn, now, ledger_ms))
            .await
    }

    pub async fn user_retention_stats(
        &self,
        user_id: String,
        now: UnixMs,
        ledger_ms: i64,
    ) -> Result<Vec<CategoryStats>, StoreError> {
        self.read(move |conn| user_retention_stats(conn, &user_id, now, ledger_ms))
            .await
    }
}
