//! Retention: each category of data lives as long as `config/retention.toml` says and no longer.
//!
//! [`sweep`] deletes what is past its time; the server runs it every minute, and tests call it
//! directly after moving a [`crate::clock::ManualClock`]. [`report`] says, per category, how
//! many rows there are, how many are due, and when the next and the last will go.
//!
//! Backups of a scope are erased in the same commit that withdraws its consent (see
//! `Store::withdraw`), so they have no waiting time to sweep.

use std::path::Path;

use anyhow::Context;
use sovereign_model::RegionId;

use crate::clock::{UnixMs, rfc3339};
use crate::config::RetentionPolicy;
use crate::state::AppState;
use crate::store::{CategoryStats, StoreError, SweepCounts, SweepCutoffs, retention_stats};

pub const DAY_MS: i64 = 86_400_000;

pub fn ledger_ms(policy: &RetentionPolicy) -> i64 {
    i64::from(policy.ledger_days) * DAY_MS
}

/// Deletes everything past its time as of the region's clock, expires grants past their end,
/// and signs a ledger checkpoint if the ledger grew.
///
/// # Errors
/// When the store fails.
pub async fn sweep(state: &AppState) -> Result<SweepCounts, StoreError> {
    let now = state.now_ms();
    let counts = state
        .store
        .sweep(
            SweepCutoffs {
                now,
                ledger_before: now - ledger_ms(&state.policies.retention),
            },
            state.ledger.clone(),
        )
        .await?;
    state
        .store
        .ledger_checkpoint(state.ledger.clone(), now)
        .await?;
    if counts != SweepCounts::default() {
        tracing::info!(?counts, "retention sweep");
    }
    Ok(counts)
}

/// What each category's policy says, in words.
pub fn policy_text(policy: &RetentionPolicy, category: &str) -> String {
    match category {
        "undelivered_messages" => {
            format!("{} days after sending", policy.undelivered_messages_days)
        }
        "delivered_messages" => format!(
            "{} days after delivery (sender's copy: after sending)",
            policy.delivered_messages_days
        ),
        "sessions" => format!("{} days after sign-in", policy.sessions_days),
        "verification_codes" => format!(
            "{} minutes after sending",
            policy.verification_codes_minutes
        ),
        "ledger_details" | "access_ledger_details" => format!(
            "details {} days after the entry; its hash stays",
            policy.ledger_days
        ),
        "closed_operator_requests" => format!("{} days after closing", policy.ledger_days),
        "backup_contacts" | "backup_sms" | "backup_photos" => {
            "until you withdraw the consent or delete the account".to_owned()
        }
        _ => String::new(),
    }
}

/// A region's retention report as text, one line per category.
pub fn format_report(
    region: &str,
    policy: &RetentionPolicy,
    now: UnixMs,
    stats: &[CategoryStats],
) -> String {
    let mut out = format!("retention report for region {region} at {}\n", rfc3339(now));
    out.push_str(&format!(
        "{:<26} {:>7} {:>7}  {:<24}  {:<24}  policy\n",
        "category", "rows", "due", "next deletion", "last deletion"
    ));
    for s in stats {
        let when = |t: Option<UnixMs>| t.map_or_else(|| "-".to_owned(), |t| rfc3339(t.max(now)));
        out.push_str(&format!(
            "{:<26} {:>7} {:>7}  {:<24}  {:<24}  {}\n",
            s.category,
            s.rows,
            s.due_now,
            when(s.next_deletion),
            when(s.last_deletion),
            policy_text(policy, s.category)
        ));
    }
    out.push_str("backups of a scope: erased in the same commit as the consent's withdrawal\n");
    out
}

/// The report, read straight from a region's store file (read-only).
///
/// # Errors
/// When the store cannot be opened or read.
pub fn report_file(
    data_dir: &Path,
    region: &RegionId,
    policy: &RetentionPolicy,
    now: UnixMs,
) -> anyhow::Result<String> {
    report_store(data_dir, region, None, policy, now)
}

/// [`report_file`] for a region whose store may be a PostgreSQL database (`database`, a
/// `postgres://` URL). It blocks: call it off the async runtime.
///
/// # Errors
/// When the store cannot be opened or read.
pub fn report_store(
    data_dir: &Path,
    region: &RegionId,
    database: Option<&str>,
    policy: &RetentionPolicy,
    now: UnixMs,
) -> anyhow::Result<String> {
    let location = crate::store::region_store_location(data_dir, region, database);
    let conn = crate::store::open_read_only(&location)
        .with_context(|| format!("opening {}", location.display()))?;
    let stats = retention_stats(&conn, now, ledger_ms(policy))
        .with_context(|| format!("reading {}", location.display()))?;
    Ok(format_report(region.as_str(), policy, now, &stats))
}
