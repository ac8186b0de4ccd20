//! A user's services placed apart from their account.
//!
//! The home region (the directory's `home_region`) keeps the account: phone index, password,
//! sessions and the authoritative consent history. A service (messaging, backup) may live in
//! another region (the directory's placement); that region holds a 'service' row for the user
//! (sealed phone, the data key wrapped under its own key, a mirror of the consents) and the
//! service's data. This module is what the two ask of each other, always over the signed
//! federation ([`crate::federation`]):
//!
//! - a service region asks the home whether a bearer token is a live session
//!   ([`SESSION_VERIFY_PATH`]; answers are cached for [`SESSION_CACHE_MS`]);
//! - the home pushes every consent change to the service regions before it answers
//!   ([`CONSENT_SYNC_PATH`]); a withdrawal erases the scope's data there first;
//! - the home deletes the user in the service regions before it deletes the account
//!   ([`USER_DELETE_PATH`]) and gathers their parts for an export ([`USER_EXPORT_PATH`]).
//!
//! If a service region cannot be reached the request fails with `503 region_unavailable` and
//! says nothing was done.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::{Value, json};
use sovereign_crypto::hex;
use sovereign_model::{ConsentScope, RegionId};

use crate::domain::Service;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::UserRow;

pub const SESSION_VERIFY_PATH: &str = "/internal/v1/sessions/verify";
pub const CONSENT_SYNC_PATH: &str = "/internal/v1/consents/sync";
pub const USER_DELETE_PATH: &str = "/internal/v1/users/delete";
pub const USER_EXPORT_PATH: &str = "/internal/v1/users/export";
pub const USER_STATS_PATH: &str = "/internal/v1/users/stats";

/// How long a service region trusts its user's home's word that a token is a live session.
/// A session ended at home may keep working this long in the service regions.
pub const SESSION_CACHE_MS: i64 = 30_000;
/// Most tokens a region remembers; when full it forgets them all and asks again.
pub const SESSION_CACHE_ENTRIES_MAX: usize = 10_000;
/// Rounds of pushing a change to the service regions: a placement may change (a service move
/// flips) while a change is being pushed, and the new region must get it too.
pub const PUSH_ROUNDS_MAX: usize = 4;

/// Tokens vouched for by their users' home regions: digest → (user id, trusted until).
#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<[u8; 32], (String, i64)>>,
}

impl SessionCache {
    fn get(&self, digest: &[u8; 32], now: i64) -> Option<String> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(digest)
            .filter(|(_, until)| *until > now)
            .map(|(user, _)| user.clone())
    }

    fn put(&self, digest: [u8; 32], user: String, until: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= SESSION_CACHE_ENTRIES_MAX {
                entries.clear();
            }
            entries.insert(digest, (user, until));
        }
    }
}

/// The user whose session a token is, asked of the home regions of the users whose services
/// live here (and of the regions users left from here). `None` when none of them knows it.
///
/// # Errors
/// `503 region_unavailable` when a home that might know it does not answer.
pub async fn remote_session(
    state: &AppState,
    digest: [u8; 32],
) -> Result<Option<String>, ApiError> {
    let now = state.now_ms();
    if let Some(user) = state.session_cache.get(&digest, now) {
        return Ok(Some(user));
    }
    let mut homes: BTreeSet<RegionId> = state
        .directory
        .homes_served_in(state.region.id.clone())
        .await?
        .into_iter()
        .collect();
    for region in state.store.moved_regions().await? {
        if let Ok(region) = RegionId::parse(&region) {
            homes.insert(region);
        }
    }
    homes.remove(&state.region.id);
    let mut unavailable = None;
    for home in homes {
        let body = json!({ "token_digest": hex(&digest) });
        match state
            .federation
            .post(&home, SESSION_VERIFY_PATH, &body, now)
            .await
        {
            Ok((200, answer)) => {
                let (Some(user), Some(expires)) =
                    (answer["user_id"].as_str(), answer["expires_at_ms"].as_i64())
                else {
                    continue;
                };
                state.session_cache.put(
                    digest,
                    user.to_owned(),
                    expires.min(now + SESSION_CACHE_MS),
                );
                return Ok(Some(user.to_owned()));
            }
            Ok((404, _)) => {}
            Ok(_) | Err(_) => unavailable = Some(home),
        }
    }
    match unavailable {
        Some(home) => Err(ApiError::RegionUnavailable(home.to_string())),
        None => Ok(None),
    }
}

/// Sends an authenticated request to where it belongs: a service's path to the region that
/// holds the service for this user, everything else to the home region (`307 wrong_region`).
///
/// # Errors
/// The redirect, or `401` when the directory no longer knows the user.
pub async fn route(
    state: &AppState,
    user_id: &str,
    row: Option<&UserRow>,
    path: &str,
) -> Result<(), ApiError> {
    let service = Service::of_path(path);
    let region = match (service, row) {
        // The account's paths: served where the account is.
        (None, Some(row)) if !row.service_only => return Ok(()),
        (None, _) => state.directory.home_of(user_id.to_owned()).await?,
        (Some(service), _) => {
            state
                .directory
                .service_region(user_id.to_owned(), service)
                .await?
        }
    };
    match region {
        Some(region) if region != state.region.id => Err(state.redirect_to(&region, path)),
        Some(_) if row.is_some() => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The regions other than this one that hold one of the user's services.
async fn service_regions(state: &AppState, user_id: &str) -> Result<BTreeSet<RegionId>, ApiError> {
    Ok(state
        .directory
        .placements(user_id.to_owned())
        .await?
        .into_iter()
        .map(|(_, region)| region)
        .filter(|region| *region != state.region.id)
        .collect())
}

/// Brings the consent mirror of every region holding one of the user's services up to this
/// (home) region's consents, minus `withdrawing` if given (a withdrawal is pushed, and its data
/// erased there, before it is committed here). Returns once each has applied it.
///
/// # Errors
/// `503 region_unavailable` naming a region that did not apply it.
pub async fn push_consents(
    state: &AppState,
    user_id: &str,
    withdrawing: Option<ConsentScope>,
) -> Result<(), ApiError> {
    post_to_service_regions(state, user_id, CONSENT_SYNC_PATH, || async {
        // Read after the change committed here, so the newest state is what goes out.
        let mut version = state.store.consent_version(user_id.to_owned()).await?;
        let consents: Vec<Value> = state
            .store
            .consents(user_id.to_owned())
            .await?
            .into_iter()
            .filter(|c| Some(c.scope) != withdrawing)
            .map(|c| {
                json!({
                    "scope": c.scope.as_str(),
                    "notice_version": c.notice_version,
                    "granted_at_ms": c.granted_at,
                })
            })
            .collect();
        if withdrawing.is_some() {
            // The withdrawal's own event is about to be appended here.
            version += 1;
        }
        Ok(json!({ "user_id": user_id, "version": version, "consents": consents }))
    })
    .await
}

/// Deletes the user in every region holding one of their services (crypto-shredding there
/// first), before the account goes here.
///
/// # Errors
/// `503 region_unavailable` naming a region that did not confirm.
pub async fn delete_remote(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    post_to_service_regions(state, user_id, USER_DELETE_PATH, || async {
        Ok(json!({ "user_id": user_id }))
    })
    .await
}

/// Posts to every region holding one of the user's services until each has answered 200. The
/// placements are read again each round (a service may move meanwhile) and `body` is built per
/// round, so that what goes out is the newest state.
async fn post_to_service_regions<F, Fut>(
    state: &AppState,
    user_id: &str,
    path: &str,
    mut body: F,
) -> Result<(), ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, ApiError>>,
{
    let mut done = BTreeSet::new();
    for _ in 0..PUSH_ROUNDS_MAX {
        let pending: Vec<RegionId> = service_regions(state, user_id)
            .await?
            .into_iter()
            .filter(|r| !done.contains(r))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let body = body().await?;
        for region in pending {
            let (status, _) = state
                .federation
                .post(&region, path, &body, state.now_ms())
                .await?;
            if status != 200 {
                tracing::warn!(%region, status, path, "a service region refused a change");
                return Err(ApiError::RegionUnavailable(region.to_string()));
            }
            done.insert(region);
        }
    }
    Err(ApiError::RegionUnavailable(
        "the user's services keep moving; retry".to_owned(),
    ))
}

/// The parts of an export held in other regions: each `{"messages": [...], "backup": {...}}`.
///
/// # Errors
/// `503 region_unavailable` when a region holding a service does not answer.
pub async fn export_remote(state: &AppState, user_id: &str) -> Result<Vec<Value>, ApiError> {
    let mut parts = Vec::new();
    for region in service_regions(state, user_id).await? {
        let body = json!({ "user_id": user_id });
        let (status, part) = state
            .federation
            .post(&region, USER_EXPORT_PATH, &body, state.now_ms())
            .await?;
        if status != 200 {
            return Err(ApiError::RegionUnavailable(region.to_string()));
        }
        parts.push(part);
    }
    Ok(parts)
}

/// The service whose data a retention category counts; `None` for the account's own.
pub fn service_of_category(category: &str) -> Option<Service> {
    match category {
        "undelivered_messages" | "delivered_messages" => Some(Service::Messaging),
        "backup_contacts" | "backup_sms" | "backup_photos" => Some(Service::Backup),
        _ => None,
    }
}

/// What the dashboard shows per category for the services held elsewhere: for each such
/// service, its region and that region's figures (`{"categories": [...]}` per region).
///
/// # Errors
/// `503 region_unavailable` when a region holding a service does not answer.
pub async fn stats_remote(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<(Service, RegionId, Value)>, ApiError> {
    let mut out = Vec::new();
    for (service, region) in state.directory.placements(user_id.to_owned()).await? {
        if region == state.region.id {
            continue;
        }
        let body = json!({ "user_id": user_id });
        let (status, answer) = state
            .federation
            .post(&region, USER_STATS_PATH, &body, state.now_ms())
            .await?;
        if status != 200 {
            return Err(ApiError::RegionUnavailable(region.to_string()));
        }
        out.push((service, region, answer));
    }
    Ok(out)
}

/// Where each service of the user lives (the home for one not placed elsewhere).
pub async fn service_regions_of(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<(Service, RegionId)>, ApiError> {
    let placed = state.directory.placements(user_id.to_owned()).await?;
    Ok(Service::ALL
        .into_iter()
        .map(|service| {
            let region = placed
                .iter()
                .find(|(s, _)| *s == service)
                .map_or_else(|| state.region.id.clone(), |(_, r)| r.clone());
            (service, region)
        })
        .collect())
}

/// Whether this region holds `service` for the user now (by the directory).
pub async fn holds(state: &AppState, user_id: &str, service: Service) -> Result<bool, ApiError> {
    Ok(state
        .directory
        .service_region(user_id.to_owned(), service)
        .await?
        .is_some_and(|r| r == state.region.id))
}
