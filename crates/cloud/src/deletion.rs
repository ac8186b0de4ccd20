//! Account deletion, in an order a crash at any step can be resumed from.
//!
//! 1. The parts in other regions (the user's services) are deleted; if one cannot be, nothing
//!    here is, and the user retries.
//! 2. The wrapped data key is destroyed and the sessions end, in one commit that also marks the
//!    user `deleting`. From here on nothing of the user's can be decrypted, and the row's
//!    `deleting` state is the durable record that the rest must be finished.
//! 3. The blobs are deleted.
//! 4. The directory entry is removed, so the number is free again.
//! 5. The rows are purged, the user's row last: until then the user is listed as being deleted.
//!
//! Steps 3-5 are each idempotent, and [`finish_deletions`] runs them for every user still marked
//! `deleting`, at start and on every housekeeping pass. So an interrupted deletion never burns
//! the number: at worst the number is free a minute later.

use crate::error::ApiError;
use crate::faults;
use crate::state::AppState;

/// Deletes the account `id` (steps 1-5).
///
/// # Errors
/// When another region cannot delete its part (nothing is deleted then), or a later step fails
/// (the sweeper finishes it).
pub async fn delete_account(state: &AppState, id: &str) -> Result<(), ApiError> {
    crate::placement::delete_remote(state, id).await?;
    state.store.shred_user(id.to_owned()).await?;
    state.faults.check(faults::DELETE_AFTER_SHRED)?;
    finish(state, id).await
}

/// Steps 3-5 for a user already marked `deleting` here.
async fn finish(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.blobs.delete_user(id).await;
    state
        .keys
        .destroy_scope_keys(&crate::domain::UserId::from_stored(id.to_owned()));
    state.faults.check(faults::DELETE_AFTER_BLOBS)?;
    // A user marked `deleting` because they moved away (or whose account was never here) keeps
    // their directory entry: it names where they are now. Only an entry naming this region as
    // the home is this deletion's to remove.
    let moved = state.store.moved_user(id.to_owned()).await?.is_some();
    if !moved && state.directory.home_of(id.to_owned()).await?.as_ref() == Some(&state.region.id) {
        state.directory.remove(id.to_owned()).await?;
    }
    state.faults.check(faults::DELETE_AFTER_DIRECTORY)?;
    state.store.purge_user(id.to_owned()).await?;
    crate::erasure::scrub_after_erasure(state).await;
    Ok(())
}

/// Finishes every deletion (and every move's clean-up) that stopped after step 2.
///
/// # Errors
/// When the store cannot list them; a user whose steps fail is left for the next pass.
pub async fn finish_deletions(state: &AppState) -> Result<usize, ApiError> {
    let mut finished = 0;
    for user_id in state.store.users_being_deleted().await? {
        match finish(state, &user_id).await {
            Ok(()) => finished += 1,
            Err(error) => {
                tracing::warn!(user_id, %error, "an interrupted deletion could not be finished yet");
            }
        }
    }
    Ok(finished)
}
