//! Withdrawn and deleted data leave nothing behind.
//!
//! - **Orphaned blobs.** A photo's sealed blob is written before its row commits, and a replaced
//!   or erased blob is deleted after the commit that drops its row. A crash, a cancelled request
//!   or a failed delete in between (on a put, a replace, a withdrawal, an account deletion, or a
//!   move's copy and catch-up) leaves a blob that no row points at. [`sweep_orphan_blobs`]
//!   deletes every blob older than [`BLOB_ORPHAN_GRACE_MS`] that no row points at; the server
//!   runs it every [`ERASURE_SWEEP_INTERVAL`]. The grace keeps a blob whose row is about to
//!   commit (a put in flight, a move's copy) from being taken: a move that finds a blob at the
//!   target older than half the grace writes it again ([`BLOB_REWRITE_AFTER_MS`]).
//! - **Erased rows.** After a withdrawal or a deletion, [`crate::store::Store::scrub`] makes the
//!   erased rows leave the store's files (SQLite: `secure_delete` and a WAL checkpoint with
//!   TRUNCATE; PostgreSQL: VACUUM).
//! - **Stale scope keys.** A crash between a withdrawal's commit and the destruction of the
//!   scope's key leaves the key; [`sweep_stale_scope_keys`] destroys every key older than
//!   [`BLOB_ORPHAN_GRACE_MS`] whose scope the user has not granted here (the age keeps a key a
//!   move has just installed, ahead of its rows and consents, from being taken).
//! - **Moved-away users.** `moved_tokens` go when they expire, `moved_users` [`MOVED_USER_KEEP_MS`]
//!   after the move (once none of their tokens is left).

use std::time::Duration;

use crate::retention::DAY_MS;
use crate::state::AppState;
use crate::store::{MovedSweep, StoreError};

/// How often the server sweeps orphaned blobs and the `moved_*` tables, and scrubs the store.
pub const ERASURE_SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// How old a blob no row points at must be before the sweep deletes it: far longer than any
/// request or any one user's move takes between writing a blob and committing its row.
pub const BLOB_ORPHAN_GRACE_MS: i64 = 6 * 60 * 60 * 1000;
/// A move's copy writes again a blob it finds at the target older than this, so that the sweep
/// cannot delete it between the copy and the commit of its row.
pub const BLOB_REWRITE_AFTER_MS: i64 = BLOB_ORPHAN_GRACE_MS / 2;
/// How long a region remembers where a user moved to (to redirect their old clients and vouch
/// for their tokens), after the move: longer than any session lives.
pub const MOVED_USER_KEEP_MS: i64 = 400 * DAY_MS;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("listing blobs: {0}")]
    Blobs(String),
    #[error("per-scope keys: {0}")]
    Keys(String),
}

/// Deletes every blob older than [`BLOB_ORPHAN_GRACE_MS`] that no row points at. Ages are by the
/// wall clock, the one the object store dates its objects by. Returns the paths deleted.
///
/// # Errors
/// When the blobs cannot be listed or the store cannot be read.
pub async fn sweep_orphan_blobs(state: &AppState) -> Result<Vec<String>, ErasureError> {
    let cutoff = crate::blobs::wall_clock_ms() - BLOB_ORPHAN_GRACE_MS;
    let old: Vec<String> = state
        .blobs
        .list()
        .await
        .map_err(|e| ErasureError::Blobs(e.to_string()))?
        .into_iter()
        .filter(|b| b.modified_ms <= cutoff)
        .map(|b| b.path)
        .collect();
    let orphans = state.store.unreferenced_blobs(old).await?;
    for path in &orphans {
        state.blobs.delete(path).await;
    }
    if !orphans.is_empty() {
        tracing::info!(count = orphans.len(), "deleted orphaned blobs");
    }
    Ok(orphans)
}

/// Destroys the per-scope keys of scopes their user has not granted here, once older than
/// [`BLOB_ORPHAN_GRACE_MS`] (see the module docs). Returns how many went.
///
/// # Errors
/// When the key store cannot be listed, a key not removed, or the store read.
pub async fn sweep_stale_scope_keys(state: &AppState) -> Result<usize, ErasureError> {
    let cutoff = crate::blobs::wall_clock_ms() - BLOB_ORPHAN_GRACE_MS;
    let keys = state
        .keys
        .list_scope_keys()
        .map_err(|e| ErasureError::Keys(e.to_string()))?;
    let mut destroyed = 0;
    for (user, scope, modified_ms) in keys.into_iter().filter(|k| k.2 <= cutoff) {
        // Exclusive, as a withdrawal is: no writer is between taking this key and its commit.
        let guard = state.keys.scope_guard(&user);
        let _exclusive = guard.write().await;
        let granted = state.store.consents(user.to_string()).await?;
        if granted.iter().any(|c| c.scope == scope) {
            continue;
        }
        state
            .keys
            .destroy_scope_key(&user, scope)
            .map_err(|e| ErasureError::Keys(e.to_string()))?;
        tracing::info!(user_id = %user, scope = scope.as_str(), modified_ms, "destroyed a stale scope key");
        destroyed += 1;
    }
    Ok(destroyed)
}

/// Sweeps the `moved_*` tables (see the module docs).
///
/// # Errors
/// When the store fails.
pub async fn sweep_moved(state: &AppState) -> Result<MovedSweep, StoreError> {
    let now = state.now_ms();
    state.store.sweep_moved(now, now - MOVED_USER_KEEP_MS).await
}

/// Everything the server does every [`ERASURE_SWEEP_INTERVAL`]; a failure is logged and the
/// next round tries again.
pub async fn housekeeping(state: &AppState) {
    if let Err(error) = sweep_orphan_blobs(state).await {
        tracing::error!(%error, "orphaned blob sweep failed");
    }
    if let Err(error) = sweep_stale_scope_keys(state).await {
        tracing::error!(%error, "stale scope key sweep failed");
    }
    if let Err(error) = sweep_moved(state).await {
        tracing::error!(%error, "moved users sweep failed");
    }
    if let Err(error) = state.store.scrub().await {
        tracing::error!(%error, "store scrub failed");
    }
}

/// After an erasure: the erased rows leave the store's files now rather than at the next
/// periodic scrub. A failure is logged; the periodic scrub retries.
pub async fn scrub_after_erasure(state: &AppState) {
    if let Err(error) = state.store.scrub().await {
        tracing::warn!(%error, "store scrub after erasure failed; the periodic one retries");
    }
}
