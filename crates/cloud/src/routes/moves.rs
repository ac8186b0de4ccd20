//! The target's side of a move from a site on another host ([`crate::migration::migrate_to_site`]).
//!
//! Each request must carry a valid peer signature, and the signer must be the site the directory
//! says holds what moves: the user's home for a whole-user move, the region of each moved service
//! for a service move. This site never takes a source's word for anything else: it opens the
//! sealed data key with its own key, checks that the rows' phone number is the one their phone
//! index names and that its own residency policy allows the user here, wraps the key under its
//! own key-encryption key, keeps the user invisible until the source asks it to go live (just
//! before the directory flips), and computes its own digest of what it holds.
//!
//! The crash tests stop the process ([`crate::faults::point`]) after each step here commits and before
//! it answers: `move.blob-stored`, `move.scope-keys-installed`, `move.installed`,
//! `move.digested`, `move.activated`.

use axum::extract::{Request, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use sovereign_crypto::{MOVE_PUBLIC_KEY_BYTES, SEALED_OVERHEAD_BYTES, SealedForMove, hex};
use sovereign_model::RegionId;

use crate::domain::{PhoneNumber, UserId};
use crate::error::ApiError;
use crate::extract::aad;
use crate::migration::{
    MOVE_ABANDON_PATH, MOVE_ACTIVATE_PATH, MOVE_BLOB_PATH, MOVE_DIGEST_PATH, MOVE_INSTALL_PATH,
    MOVE_PREPARE_PATH, MOVE_SNAPSHOT_BYTES_MAX,
};
use crate::routes::internal::signed_within;
use crate::state::AppState;
use crate::store::{MoveScope, UserSnapshot};

/// Most blob paths one prepare call may list.
pub const MOVE_BLOB_PATHS_MAX: usize = 100_000;
/// Longest blob path accepted (ours are `users/<uuid>/<uuid>`).
pub const MOVE_BLOB_PATH_BYTES_MAX: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(MOVE_PREPARE_PATH, post(prepare))
        .route(MOVE_BLOB_PATH, post(blob))
        .route(MOVE_INSTALL_PATH, post(install))
        .route(MOVE_DIGEST_PATH, post(digest))
        .route(MOVE_ACTIVATE_PATH, post(activate))
        .route(MOVE_ABANDON_PATH, post(abandon))
}

/// Refuses a move request from any site but the one that holds what moves. A user the
/// directory does not know is held by nobody.
async fn from_holder(
    state: &AppState,
    from: &RegionId,
    user_id: &str,
    scope: MoveScope,
) -> Result<(), ApiError> {
    if *from == state.region.id {
        return Err(ApiError::Unauthorized);
    }
    if scope.account {
        match state.directory.home_of(user_id.to_owned()).await? {
            Some(home) if home == *from => {}
            _ => return Err(ApiError::Unauthorized),
        }
    }
    let services = scope.services();
    if !scope.account && services.is_empty() {
        return Err(ApiError::invalid("scope", "moves nothing"));
    }
    for service in services {
        match state
            .directory
            .service_region(user_id.to_owned(), service)
            .await?
        {
            Some(region) if region == *from => {}
            _ => return Err(ApiError::Unauthorized),
        }
    }
    Ok(())
}

fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(user_id)
        .map(|_| ())
        .map_err(|_| ApiError::invalid("user_id", "must be a user id"))
}

/// A blob path of this user, as the store names them (`users/<user id>/<name>`): nothing that
/// could write outside the user's prefix.
fn check_blob_path(user_id: &str, path: &str) -> Result<(), ApiError> {
    let bad = || ApiError::invalid("path", "must be one of the user's blob paths");
    let rest = path
        .strip_prefix("users/")
        .and_then(|p| p.strip_prefix(user_id))
        .and_then(|p| p.strip_prefix('/'))
        .ok_or_else(bad)?;
    if path.len() > MOVE_BLOB_PATH_BYTES_MAX
        || rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prepare {
    user_id: String,
    scope: MoveScope,
    blob_paths: Vec<String>,
}

/// Which of the user's blobs this site lacks, and the public key to seal their data key to.
async fn prepare(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, Prepare) = signed_within(
        &state,
        request,
        MOVE_PREPARE_PATH,
        MOVE_BLOB_PATHS_MAX * (MOVE_BLOB_PATH_BYTES_MAX + 3) + 4096,
    )
    .await?;
    check_user_id(&body.user_id)?;
    if body.blob_paths.len() > MOVE_BLOB_PATHS_MAX {
        return Err(ApiError::invalid(
            "blob_paths",
            format!("at most {MOVE_BLOB_PATHS_MAX}"),
        ));
    }
    from_holder(&state, &from, &body.user_id, body.scope).await?;
    let mut missing = Vec::new();
    for path in &body.blob_paths {
        check_blob_path(&body.user_id, path)?;
        // An old blob is sent again, so the orphan sweep cannot take it before its row commits.
        if !state
            .blobs
            .exists_recent(path, crate::erasure::BLOB_REWRITE_AFTER_MS)
            .await
        {
            missing.push(path.clone());
        }
    }
    let user = UserId::from_stored(body.user_id);
    let public = state
        .keys
        .move_public_key(&user)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "missing": missing,
        "move_public_key": STANDARD.encode(public),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Blob {
    user_id: String,
    scope: MoveScope,
    path: String,
    sealed: String,
}

/// One of the user's sealed blobs, stored before the rows that point at it.
async fn blob(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let sealed_max = state.policies.limits.photo_bytes_max + SEALED_OVERHEAD_BYTES;
    let (from, body): (_, Blob) = signed_within(
        &state,
        request,
        MOVE_BLOB_PATH,
        sealed_max.div_ceil(3) * 4 + 4096,
    )
    .await?;
    check_user_id(&body.user_id)?;
    check_blob_path(&body.user_id, &body.path)?;
    from_holder(&state, &from, &body.user_id, body.scope).await?;
    if !body.scope.backup {
        return Err(ApiError::invalid("scope", "only backup has blobs"));
    }
    let sealed = STANDARD
        .decode(body.sealed.as_bytes())
        .map_err(|_| ApiError::invalid("sealed", "must be base64"))?;
    if sealed.len() > sealed_max {
        return Err(ApiError::PayloadTooLarge {
            limit_bytes: sealed_max,
        });
    }
    state
        .blobs
        .put(&body.path, sealed)
        .await
        .map_err(ApiError::internal)?;
    crate::faults::point("move.blob-stored");
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedKey {
    ephemeral_public: String,
    wrapped: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Install {
    scope: MoveScope,
    snapshot: UserSnapshot,
    sealed_key: SealedKey,
    /// The user's per-scope keys ([`crate::scope_keys`]), each sealed as the data key is.
    #[serde(default)]
    scope_keys: Vec<SealedScopeKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedScopeKey {
    scope: String,
    ephemeral_public: String,
    wrapped: String,
}

/// Opens a key the source sealed to this site's move key for `user`.
fn open_sealed(
    state: &AppState,
    user: &UserId,
    field: &str,
    ephemeral_public: &str,
    wrapped: &str,
) -> Result<sovereign_crypto::DataKey, ApiError> {
    let ephemeral_public: [u8; MOVE_PUBLIC_KEY_BYTES] = STANDARD
        .decode(ephemeral_public.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::invalid(field, "ephemeral_public must be 32 bytes"))?;
    let wrapped = STANDARD
        .decode(wrapped.as_bytes())
        .map_err(|_| ApiError::invalid(field, "wrapped must be base64"))?;
    state
        .keys
        .open_move(
            &SealedForMove {
                ephemeral_public,
                wrapped,
            },
            user,
        )
        .map_err(|_| ApiError::invalid(field, "does not open with this site's key"))
}

/// The scope of each per-scope key a move brings: one key per scope at most, and only for the
/// services the move carries. A key for another would replace the one this region seals that
/// service's data with here, and leave those rows unreadable.
fn check_key_scopes(
    scope_keys: &[SealedScopeKey],
    scope: MoveScope,
) -> Result<Vec<sovereign_model::ConsentScope>, ApiError> {
    let mut scopes = Vec::with_capacity(scope_keys.len());
    for sealed in scope_keys {
        let key_scope = sovereign_model::ConsentScope::parse(&sealed.scope)
            .filter(|s| crate::scope_keys::KEYED_SCOPES.contains(s))
            .ok_or_else(|| ApiError::invalid("scope_keys.scope", "not a scope with a key"))?;
        if !crate::domain::Service::of_scope(key_scope).is_some_and(|s| scope.has(s)) {
            return Err(ApiError::invalid(
                "scope_keys.scope",
                "is not a scope of a service this move carries",
            ));
        }
        if scopes.contains(&key_scope) {
            return Err(ApiError::invalid("scope_keys", "one per scope at most"));
        }
        scopes.push(key_scope);
    }
    Ok(scopes)
}

/// The user's rows and sealed data key: checked, re-wrapped and installed, still invisible.
async fn install(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, Install) =
        signed_within(&state, request, MOVE_INSTALL_PATH, MOVE_SNAPSHOT_BYTES_MAX).await?;
    let Install {
        scope,
        snapshot,
        sealed_key,
        scope_keys,
    } = body;
    let user_id = snapshot.user.id.clone();
    check_user_id(&user_id)?;
    from_holder(&state, &from, &user_id, scope).await?;
    let key_scopes = check_key_scopes(&scope_keys, scope)?;
    for path in snapshot.blob_paths() {
        check_blob_path(&user_id, path)?;
    }
    let ephemeral_public: [u8; MOVE_PUBLIC_KEY_BYTES] = STANDARD
        .decode(sealed_key.ephemeral_public.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::invalid("sealed_key.ephemeral_public", "must be 32 bytes"))?;
    let wrapped = STANDARD
        .decode(sealed_key.wrapped.as_bytes())
        .map_err(|_| ApiError::invalid("sealed_key.wrapped", "must be base64"))?;
    let user = UserId::from_stored(user_id.clone());
    let key = state
        .keys
        .open_move(
            &SealedForMove {
                ephemeral_public,
                wrapped,
            },
            &user,
        )
        .map_err(|_| ApiError::invalid("sealed_key", "does not open with this site's key"))?;
    // The rows' number must be the one their phone index names, and ours to hold.
    let phone = key
        .open(
            &aad("users", &user, user.as_str(), "phone"),
            &snapshot.user.phone_sealed,
        )
        .map_err(|_| ApiError::invalid("snapshot.user.phone_sealed", "does not open"))?;
    let phone = PhoneNumber::parse(&String::from_utf8_lossy(&phone))
        .map_err(|_| ApiError::invalid("snapshot.user.phone_sealed", "is not a phone number"))?;
    let index = state.keys.phone_index(&phone);
    if index.as_slice() != snapshot.user.phone_index.as_slice() {
        return Err(ApiError::invalid(
            "snapshot.user.phone_index",
            "is not the index of the sealed number",
        ));
    }
    // And the directory must give that number to this user: a holder of one user cannot bring
    // another person's number along under its own user's id.
    match state.directory.lookup(index).await? {
        Some(entry) if entry.user_id == user_id => {}
        _ => return Err(ApiError::Unauthorized),
    }
    let country = phone.country();
    if !state.policies.residency.allows(country, &state.region.id) {
        return Err(ApiError::Conflict(format!(
            "the residency policy does not allow region {} to hold users from {country}",
            state.region.id
        )));
    }
    let rewrapped = state.keys.wrap(&key, &user).map_err(ApiError::internal)?;
    // The per-scope keys go before the rows they open.
    for (key_scope, sealed) in key_scopes.iter().zip(&scope_keys) {
        let scope_key = open_sealed(
            &state,
            &user,
            "scope_keys",
            &sealed.ephemeral_public,
            &sealed.wrapped,
        )?;
        state
            .keys
            .install_scope_key(&user, *key_scope, &scope_key)
            .map_err(ApiError::Internal)?;
    }
    crate::faults::point("move.scope-keys-installed");
    let dropped = state
        .store
        .install_user(
            snapshot,
            scope,
            rewrapped,
            state.region.id.to_string(),
            state.now_ms(),
        )
        .await?;
    crate::faults::point("move.installed");
    for path in dropped {
        state.blobs.delete(&path).await;
    }
    tracing::info!(user_id, from = %from, "installed a moving user's copy");
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Digest {
    user_id: String,
    scope: MoveScope,
}

/// The digest of this site's copy, decrypted with its own copy of the key (`null`: no copy).
async fn digest(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, Digest) = signed_within(
        &state,
        request,
        MOVE_DIGEST_PATH,
        state.policies.limits.json_body_bytes_max,
    )
    .await?;
    check_user_id(&body.user_id)?;
    from_holder(&state, &from, &body.user_id, body.scope).await?;
    let Some(copied) = state
        .store
        .snapshot_user(body.user_id.clone(), body.scope)
        .await?
    else {
        return Ok(Json(json!({ "digest": null })));
    };
    let user = UserId::from_stored(body.user_id);
    let digest = crate::migration::digest(&copied, body.scope, &user, &state)
        .await
        .map_err(ApiError::internal)?;
    crate::faults::point("move.digested");
    Ok(Json(json!({ "digest": hex(&digest) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    user_id: String,
    scope: MoveScope,
}

/// Makes the copy live here; the source flips the directory next.
async fn activate(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (from, body): (_, Activate) = signed_within(
        &state,
        request,
        MOVE_ACTIVATE_PATH,
        state.policies.limits.json_body_bytes_max,
    )
    .await?;
    check_user_id(&body.user_id)?;
    from_holder(&state, &from, &body.user_id, body.scope).await?;
    // Always applied (it is idempotent): an account arriving where a service move left a
    // service row is not "moving in" (that row was live already), yet must become the account.
    // With no copy here it changes nothing; the source's digest check came first anyway.
    state
        .store
        .activate_user(body.user_id, body.scope.account)
        .await?;
    crate::faults::point("move.activated");
    Ok(Json(json!({ "active": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Abandon {
    user_id: String,
}

/// Drops the copy of a user deleted while moving here (the directory no longer knows them).
async fn abandon(State(state): State<AppState>, request: Request) -> Result<Json<Value>, ApiError> {
    let (_, body): (_, Abandon) = signed_within(
        &state,
        request,
        MOVE_ABANDON_PATH,
        state.policies.limits.json_body_bytes_max,
    )
    .await?;
    check_user_id(&body.user_id)?;
    crate::migration::abandon_copy(&state, &body.user_id).await?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_own_blob_paths_are_accepted() {
        let user = "0b6e8a4e-2f4c-4b8e-9a43-5d2f6e7c8a91";
        assert!(check_blob_path(user, &format!("users/{user}/3f2a-bc")).is_ok());
        for bad in [
            format!("users/{user}/"),
            format!("users/{user}/../other"),
            format!("users/{user}/a/b"),
            format!("users/{user}x/a"),
            format!("users/other/{user}"),
            format!("/users/{user}/a"),
            format!("users/{user}/{}", "a".repeat(MOVE_BLOB_PATH_BYTES_MAX)),
            "users".to_owned(),
        ] {
            assert!(check_blob_path(user, &bad).is_err(), "{bad:?} accepted");
        }
    }
}
