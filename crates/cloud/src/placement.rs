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
//!   ([`USER_DELETE_PATH`]) and gathers their parts for an export ([`USER_EXPORT_PATH`]);
//! - the home's access log asks the service regions, and the regions the user's data has left
//!   (the directory's former regions), for their ledger entries about the user
//!   ([`USER_ACCESS_PATH`]): staff reads stay visible wherever the data was.
//!
//! If a service region cannot be reached the request fails with `503 region_unavailable` and
//! says nothing was done.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use sovereign_crypto::{hex, token_digest};
use sovereign_model::{ConsentScope, RegionId};

use crate::domain::Service;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::UserRow;

pub const SESSION_VERIFY_PATH: &str = "/internal/v1/sessions/verify";
pub const SESSION_END_PATH: &str = "/internal/v1/sessions/end";
pub const CONSENT_SYNC_PATH: &str = "/internal/v1/consents/sync";
pub const USER_DELETE_PATH: &str = "/internal/v1/users/delete";
pub const USER_EXPORT_PATH: &str = "/internal/v1/users/export";
pub const USER_STATS_PATH: &str = "/internal/v1/users/stats";
pub const USER_ACCESS_PATH: &str = "/internal/v1/users/access-log";

/// How long a service region trusts its user's home's word that a token is a live session.
/// A session ended at home is ended in the service regions at once ([`SESSION_END_PATH`]);
/// only when that notice is lost does it keep working there, at most this long.
pub const SESSION_CACHE_MS: i64 = 30_000;
/// Most tokens a region remembers; when full it forgets them all and asks again.
pub const SESSION_CACHE_ENTRIES_MAX: usize = 10_000;
/// How long a token no site vouched for is refused without asking again, so that a stream of
/// bad tokens costs the issuer at most one question each per this long.
pub const SESSION_MISS_MS: i64 = 30_000;
/// Most unknown tokens a region remembers; when full it forgets them all.
pub const SESSION_MISSES_MAX: usize = 10_000;
/// Longest a region waits for another site to say whose session a token is. A slow or dead
/// issuer makes the request fail (`503`) after this long, and is never waited on twice per
/// request: only one site is asked per hop.
pub const SESSION_VERIFY_DEADLINE_MS: u64 = 2_000;
/// Most sites one question about a token visits: its issuer, then where its user moved (the
/// 2014 plan moves a user twice: Beijing to Singapore to Mumbai).
pub const SESSION_HOPS_MAX: usize = 3;
/// Longest the home waits for a former region's ledger entries; past it (or on any refusal)
/// that region's part of the access log says it is unavailable and the rest is shown.
pub const FORMER_LEDGER_DEADLINE_MS: u64 = 3_000;
/// Rounds of pushing a change to the service regions: a placement may change (a service move
/// flips) while a change is being pushed, and the new region must get it too.
pub const PUSH_ROUNDS_MAX: usize = 4;

/// Tokens vouched for by their users' home regions (digest → user id, trusted until), and
/// tokens no one vouched for (digest → refused until).
#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<[u8; 32], (String, i64)>>,
    misses: Mutex<HashMap<[u8; 32], i64>>,
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

    /// Whether this token was recently refused by the site it names.
    fn missed(&self, digest: &[u8; 32], now: i64) -> bool {
        self.misses
            .lock()
            .ok()
            .and_then(|misses| misses.get(digest).copied())
            .is_some_and(|until| until > now)
    }

    fn miss(&self, digest: [u8; 32], until: i64) {
        if let Ok(mut misses) = self.misses.lock() {
            if misses.len() >= SESSION_MISSES_MAX {
                misses.clear();
            }
            misses.insert(digest, until);
        }
    }

    /// Forgets what the home said about this token, and refuses it without asking for a while:
    /// its session ended.
    fn forget(&self, digest: &[u8; 32], until: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(digest);
        }
        self.miss(*digest, until);
    }

    /// How many unknown tokens are remembered now.
    pub fn misses_len(&self) -> usize {
        self.misses.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// The user whose session a token is, on the word of the site that issued the token (the
/// token names it, [`crate::session_token`]); believed only from the user's directory home,
/// and never for a user whose account is here. What it opens is decided by [`route`]: a
/// service's path only where the directory places the service and this site holds a service
/// row for the user; an account path never (it is redirected to the home). A token naming no
/// other site, or one refused within [`SESSION_MISS_MS`], is `None` without asking anyone.
///
/// # Errors
/// `503 region_unavailable` when the site asked does not answer within
/// [`SESSION_VERIFY_DEADLINE_MS`].
pub async fn remote_session(state: &AppState, token: &str) -> Result<Option<String>, ApiError> {
    let Some(issuer) = crate::session_token::issuer(token) else {
        return Ok(None);
    };
    if issuer == state.region.id {
        return Ok(None);
    }
    let digest = token_digest(token);
    let Some(user) = vouched(state, digest, issuer).await? else {
        return Ok(None);
    };
    // Another site's word never opens an account held here.
    let row = state.store.user(user.clone()).await?;
    if row.is_some_and(|r| !r.service_only) {
        tracing::warn!("a site vouched for a token of a user whose account is here");
        return Ok(None);
    }
    Ok(Some(user))
}

/// The user whose session the token with `digest` is, on the word of its `issuer` (cached).
async fn vouched(
    state: &AppState,
    digest: [u8; 32],
    issuer: RegionId,
) -> Result<Option<String>, ApiError> {
    let now = state.now_ms();
    if let Some(user) = state.session_cache.get(&digest, now) {
        return Ok(Some(user));
    }
    if state.session_cache.missed(&digest, now) {
        return Ok(None);
    }
    let user = ask_issuer(state, digest, issuer, now).await?;
    if user.is_none() {
        state.session_cache.miss(digest, now + SESSION_MISS_MS);
    }
    Ok(user)
}

/// Whether a session of another site, which a socket here was opened with, is still live: the
/// cached word of its issuer, asked again once that runs out. `Err` when the issuer cannot be
/// asked (the socket stays open: a home that is down has not ended anything).
pub async fn remote_session_live(
    state: &AppState,
    digest: [u8; 32],
    issuer: &RegionId,
) -> Result<bool, ApiError> {
    Ok(vouched(state, digest, issuer.clone()).await?.is_some())
}

/// The id a socket opened here with another site's session goes by (the session's own id is
/// the home's to know): what [`SESSION_END_PATH`] ends.
pub fn remote_session_id(digest: &[u8; 32]) -> String {
    format!("remote-{}", hex(digest))
}

/// Called on the home when one of the user's sessions ended (revoked, signed out): the regions
/// holding their services forget the token at once and close its sockets. Best effort, in the
/// background: a region that misses the notice stops trusting the token within
/// [`SESSION_CACHE_MS`].
pub fn push_session_end(state: &AppState, user_id: &str, digest: [u8; 32]) {
    let (state, user_id) = (state.clone(), user_id.to_owned());
    tokio::spawn(async move {
        let body = json!({ "user_id": user_id, "token_digest": hex(&digest) });
        let pushed = post_to_service_regions(&state, &user_id, SESSION_END_PATH, || {
            let body = body.clone();
            async move { Ok(body) }
        })
        .await;
        if let Err(error) = pushed {
            tracing::warn!(%error, "a service region did not hear of a session's end");
        }
    });
}

/// Called in a service region when the home says a session ended.
pub fn end_remote_session(state: &AppState, user_id: &str, digest: [u8; 32]) {
    state
        .session_cache
        .forget(&digest, state.now_ms() + SESSION_MISS_MS);
    state.hub.end_session(user_id, &remote_session_id(&digest));
}

/// Asks the token's issuer whose session it is, following it (at most [`SESSION_HOPS_MAX`]
/// sites) to where the user moved; the answer counts only from the user's directory home.
async fn ask_issuer(
    state: &AppState,
    digest: [u8; 32],
    issuer: RegionId,
    now: i64,
) -> Result<Option<String>, ApiError> {
    let mut site = issuer;
    let mut asked = BTreeSet::new();
    for _ in 0..SESSION_HOPS_MAX {
        if site == state.region.id || !asked.insert(site.clone()) {
            return Ok(None);
        }
        let body = json!({ "token_digest": hex(&digest) });
        let reply = tokio::time::timeout(
            Duration::from_millis(SESSION_VERIFY_DEADLINE_MS),
            state
                .federation
                .post(&site, SESSION_VERIFY_PATH, &body, now),
        )
        .await;
        let (status, answer) = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) | Err(_) => return Err(ApiError::RegionUnavailable(site.to_string())),
        };
        match status {
            200 => {
                let (Some(user), Some(expires)) =
                    (answer["user_id"].as_str(), answer["expires_at_ms"].as_i64())
                else {
                    return Ok(None);
                };
                if state.directory.home_of(user.to_owned()).await? != Some(site.clone()) {
                    tracing::warn!(%site, "a site vouched for a user whose home it is not");
                    return Ok(None);
                }
                state.session_cache.put(
                    digest,
                    user.to_owned(),
                    expires.min(now + SESSION_CACHE_MS),
                );
                return Ok(Some(user.to_owned()));
            }
            404 => match answer["moved_to"].as_str().map(RegionId::parse) {
                Some(Ok(next)) => site = next,
                _ => return Ok(None),
            },
            _ => return Err(ApiError::RegionUnavailable(site.to_string())),
        }
    }
    Ok(None)
}

/// Sends an authenticated request to where it belongs: a service's path to the region that
/// holds the service for this user, everything else to the home region (`307 wrong_region`, to
/// `path_and_query` there: the query keeps its cursor).
///
/// # Errors
/// The redirect, or `401` when the directory no longer knows the user.
pub async fn route(
    state: &AppState,
    user_id: &str,
    row: Option<&UserRow>,
    path: &str,
    path_and_query: &str,
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
        Some(region) if region != state.region.id => {
            Err(state.redirect_to(&region, path_and_query))
        }
        Some(_) if row.is_some() => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The regions other than this one that hold one of the user's services.
pub(crate) async fn service_regions(
    state: &AppState,
    user_id: &str,
) -> Result<BTreeSet<RegionId>, ApiError> {
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
    // The history length the last round's state was read at; -1 when no round was needed.
    let pushed = std::sync::atomic::AtomicI64::new(-1);
    post_to_service_regions(state, user_id, CONSENT_SYNC_PATH, || async {
        // Read after the change committed here, so the newest state is what goes out.
        let mut version = state.store.consent_version(user_id.to_owned()).await?;
        pushed.store(version, std::sync::atomic::Ordering::Relaxed);
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
    .await?;
    // A withdrawal's first push is of a state not committed yet; only a committed one clears
    // the outbox (the withdrawal's own push after its commit does).
    if withdrawing.is_none() {
        let version = match pushed.load(std::sync::atomic::Ordering::Relaxed) {
            // No region holds a service of the user: nothing is owed to anyone (a service
            // placed later gets the consents with its copy).
            -1 => state.store.consent_version(user_id.to_owned()).await?,
            version => version,
        };
        state
            .store
            .consent_outbox_done(user_id.to_owned(), version)
            .await?;
    }
    Ok(())
}

/// Users whose consent changes one reconciliation round pushes again, at most.
pub const CONSENT_RECONCILE_USERS_MAX: u32 = 256;

/// Pushes the home's consents again for users whose last change some service region has not
/// confirmed (the consent outbox): a push lost to an unreachable region, or a withdrawal whose
/// final push was lost after a racing grant's older state had landed there. Run by each
/// region's housekeeping every minute, a batch of at most [`CONSENT_RECONCILE_USERS_MAX`] users
/// a round, each round after where the last one ended (and from the start again after the
/// last): users whose region stays down are tried every few rounds, never starving the rest.
/// Returns how many users are now confirmed everywhere.
///
/// # Errors
/// When the store cannot be read; a region that still cannot be reached only leaves its user
/// for the next round.
pub async fn reconcile_consents(state: &AppState) -> Result<usize, ApiError> {
    let after = state
        .consent_reconcile_after
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let mut due = state
        .store
        .consent_outbox_due(after.clone(), CONSENT_RECONCILE_USERS_MAX)
        .await?;
    if due.is_empty() && !after.is_empty() {
        due = state
            .store
            .consent_outbox_due(String::new(), CONSENT_RECONCILE_USERS_MAX)
            .await?;
    }
    let next = match due.last() {
        Some((last, _)) if due.len() == CONSENT_RECONCILE_USERS_MAX as usize => last.clone(),
        _ => String::new(),
    };
    if let Ok(mut after) = state.consent_reconcile_after.lock() {
        *after = next;
    }
    let mut confirmed = 0;
    for (user_id, _) in due {
        match push_consents(state, &user_id, None).await {
            Ok(()) => confirmed += 1,
            Err(error) => {
                tracing::warn!(user = %user_id, %error, "consent push still not confirmed");
            }
        }
    }
    Ok(confirmed)
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

/// Checks, at a service region, that `token` is a live session of `user_id` at `home` (the
/// user's directory home, which the caller has checked): the proof that the user asked for
/// what the home asks of this region on their behalf.
///
/// # Errors
/// `401` when the home does not vouch for the token as this user's; `503 region_unavailable`
/// when it does not answer within [`SESSION_VERIFY_DEADLINE_MS`].
pub async fn check_user_asked(
    state: &AppState,
    home: &RegionId,
    user_id: &str,
    token: &str,
) -> Result<(), ApiError> {
    let body = json!({ "token_digest": hex(&token_digest(token)) });
    let reply = tokio::time::timeout(
        Duration::from_millis(SESSION_VERIFY_DEADLINE_MS),
        state
            .federation
            .post(home, SESSION_VERIFY_PATH, &body, state.now_ms()),
    )
    .await;
    match reply {
        Ok(Ok((200, answer))) if answer["user_id"].as_str() == Some(user_id) => Ok(()),
        Ok(Ok(_)) => Err(ApiError::Unauthorized),
        Ok(Err(_)) | Err(_) => Err(ApiError::RegionUnavailable(home.to_string())),
    }
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

/// The user's entries in the ledgers of the regions holding their services elsewhere (operator
/// reads there, and the hand-overs of exports): each region's `{"region", "checkpoint",
/// "entries"}` as `/v1/me/access-log` shows its own.
///
/// # Errors
/// `503 region_unavailable` when a region holding a service does not answer.
pub async fn access_remote(
    state: &AppState,
    user_id: &str,
) -> Result<Vec<(RegionId, Value)>, ApiError> {
    let mut out = Vec::new();
    for region in service_regions(state, user_id).await? {
        let body = json!({ "user_id": user_id });
        let (status, answer) = state
            .federation
            .post(&region, USER_ACCESS_PATH, &body, state.now_ms())
            .await?;
        if status != 200 {
            return Err(ApiError::RegionUnavailable(region.to_string()));
        }
        out.push((region, answer));
    }
    Ok(out)
}

/// The user's entries in the ledgers of the regions their data has left (the directory's
/// former regions, less this one and those holding a service now, which [`access_remote`]
/// asks): staff reads made there before the user or a service moved away. Asked at once, each
/// within [`FORMER_LEDGER_DEADLINE_MS`]; a region that does not answer with its entries is
/// `{"region", "available": false}` and hides nothing else.
///
/// # Errors
/// Only when the directory cannot be read.
pub async fn access_former(state: &AppState, user_id: &str) -> Result<Vec<Value>, ApiError> {
    let held = service_regions(state, user_id).await?;
    let former: Vec<RegionId> = state
        .directory
        .former_regions(user_id.to_owned())
        .await?
        .into_iter()
        .filter(|r| *r != state.region.id && !held.contains(r))
        .collect();
    let body = json!({ "user_id": user_id });
    let asks = former.into_iter().map(|region| {
        let body = &body;
        async move {
            let reply = tokio::time::timeout(
                Duration::from_millis(FORMER_LEDGER_DEADLINE_MS),
                state
                    .federation
                    .post(&region, USER_ACCESS_PATH, body, state.now_ms()),
            )
            .await;
            match reply {
                Ok(Ok((200, mut part))) if part["entries"].is_array() => {
                    // The part is signed by the region asked; it speaks for itself only.
                    part["region"] = json!(region.as_str());
                    part["available"] = json!(true);
                    part
                }
                other => {
                    let why = match other {
                        Ok(Ok((status, _))) => format!("answered {status}"),
                        Ok(Err(error)) => error.to_string(),
                        Err(_) => "did not answer in time".to_owned(),
                    };
                    tracing::warn!(%region, why, "a former region's ledger could not be read");
                    json!({ "region": region.as_str(), "available": false })
                }
            }
        }
    });
    Ok(futures_util::future::join_all(asks).await)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_negative_cache_stays_within_its_bound() {
        let cache = SessionCache::default();
        for i in 0..=SESSION_MISSES_MAX {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.miss(digest, 100);
            assert!(cache.misses_len() <= SESSION_MISSES_MAX);
        }
        // Crossing the bound forgot the older ones; the newest is remembered until it expires.
        let mut newest = [0u8; 32];
        newest[..8].copy_from_slice(&(SESSION_MISSES_MAX as u64).to_le_bytes());
        assert!(cache.missed(&newest, 99));
        assert!(!cache.missed(&newest, 100));
        assert!(!cache.missed(&[0u8; 32], 99));
    }
}
