//! Online migration of users between regions (`sovereign migrate`).
//!
//! Each user moves in steps, each recorded in a journal beside the directory so that a run
//! killed at any point is resumed by running it again:
//!
//! 1. **copy** a snapshot of the user's sealed rows and blobs to the target, with the data key
//!    re-wrapped under the target region's key; the user stays invisible at the target;
//! 2. **catch up** with what changed meanwhile, then **fence** the user at the source (its store
//!    refuses every write to their data) and copy the last changes;
//! 3. **verify** that a digest of the user's *decrypted* data at the source equals the one at
//!    the target (which also proves the re-wrapped key opens everything); once that is in the
//!    journal the move only goes forward (the source is never unfenced again: see below);
//! 4. **flip** the directory to the target and make the user live there;
//! 5. **erase** the source: remember where the user went (clients are redirected), destroy the
//!    wrapped key, then delete the rows and blobs.
//!
//! Every step is idempotent, so repeating one after a crash does no harm. The target's copy goes
//! live only after `verified` is journaled, and a mismatch un-fences the source only before that:
//! a copy that may have served the user (a sign-in there, a session swept there) is never
//! compared again, so a rerun cannot leave the user live in two regions. The crash tests stop
//! the tool at each step with [`crate::faults::point`].
//!
//! The target is either opened in the same process ([`migrate`], the one-machine layout, where
//! `sovereign migrate` holds both sites' data directories) or another site reached over the
//! federation ([`migrate_to_site`], for sites on separate hosts: the tool runs on the source's
//! host with only the source's data and keys). The target then does its side itself, asked by
//! signed peer requests ([`MOVE_PREPARE_PATH`] and the others, answered in
//! [`crate::routes::moves`]): it takes a user only from the site the directory says holds what
//! moves, decides residency by its own policy, derives the key the user's data key is sealed to
//! ([`sovereign_crypto::seal_for_move`]), wraps it under its own key, and computes its own digest.
//!
//! A move of some services only (`--services messaging`) takes the same steps for just those
//! services: the copy carries their rows and blobs and, if the user is new at the target, a
//! 'service' row (sealed phone, data key re-wrapped, a mirror of the consents, no password and
//! no sessions); only those services are fenced at the source; the digest covers their
//! decrypted data; the flip changes their placement in the directory, not the home; and the
//! source then erases them, and its 'service' row when no service of the user is left there.

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use base64::Engine;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use sovereign_crypto::{DataKey, digest_sha256, hex};
use sovereign_model::{ConsentScope, CountryCode, RegionId};

use crate::domain::{PhoneNumber, Service, UserId};
use crate::extract::aad;
use crate::state::AppState;
use crate::store::{MoveScope, StoreError, UserSnapshot};

/// Most users one migration may select.
pub const MIGRATION_USERS_MAX: usize = 1_000_000;
/// Users moved at the same time to another site: each spends most of its move waiting on
/// round trips to the target, so many go at once.
pub const MIGRATION_USERS_IN_FLIGHT_MAX: usize = 16;
/// Users moved at the same time to a target in this process: there each move's time is CPU
/// and fsyncs on the cores and disk that live requests use, and fewer at once leaves more of
/// the cores idle when a live request comes (`bench/migration.sh`: live p99 during a move
/// 1.25-2.5x with 4, 1.7-2.3x with 16; 220-270 users/s alone with 4, 320-360 with 16).
pub const MIGRATION_USERS_IN_FLIGHT_LOCAL: usize = 4;
/// Catch-up rounds before the user is fenced, however much still changes.
pub const CATCH_UP_ROUNDS_MAX: usize = 3;
/// How long one call of a move to the target site may take (it may carry a photo over a slow
/// WAN link); other peer calls keep [`crate::federation::PEER_CALL_TIMEOUT`].
pub const MOVE_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Most bytes of one user's rows (blobs apart) a move sends to another site in one request.
pub const MOVE_SNAPSHOT_BYTES_MAX: usize = 32 << 20;

/// The target's side of a move, asked by the source site (see [`crate::routes::moves`]):
/// which blobs it lacks, and the public key to seal the user's data key to.
pub const MOVE_PREPARE_PATH: &str = "/internal/v1/moves/prepare";
/// One sealed blob for the target.
pub const MOVE_BLOB_PATH: &str = "/internal/v1/moves/blob";
/// The user's rows and sealed data key; the target installs them, still invisible.
pub const MOVE_INSTALL_PATH: &str = "/internal/v1/moves/install";
/// The digest of the target's copy, decrypted with its own copy of the key.
pub const MOVE_DIGEST_PATH: &str = "/internal/v1/moves/digest";
/// Makes the copy live at the target, just before the directory sends the user there.
pub const MOVE_ACTIVATE_PATH: &str = "/internal/v1/moves/activate";
/// Drops a copy that never went live, of a user deleted while moving.
pub const MOVE_ABANDON_PATH: &str = "/internal/v1/moves/abandon";

/// How far a migration lowers the CPU priority of its threads (Linux nice, 0 to 19), so that
/// live requests, at nice 0, get the cores first whenever both want one: see
/// [`yielding_runtime`]. Its writes wait behind live ones in the store's writer too
/// ([`crate::store::Store::write_background`]).
pub const MIGRATION_NICE: i32 = 19;

/// Lowers the calling thread's CPU priority to `nice`. On Linux this is the thread's own, and
/// the threads it starts afterwards inherit it: `sovereign migrate` calls it before it starts
/// its runtime, so every thread of the tool yields.
///
/// # Errors
/// When the system refuses (raising a priority again needs privileges; lowering never does).
pub fn lower_thread_priority(nice: i32) -> std::io::Result<()> {
    let thread = rustix::thread::gettid();
    rustix::process::setpriority_process(Some(thread), nice)?;
    Ok(())
}

/// A runtime for a migration run in a process that also serves live requests (the benchmark,
/// a test): each of its threads, workers and blocking pool alike, runs at [`MIGRATION_NICE`].
/// The thread that calls `block_on` polls the migration's own futures: lower it too.
///
/// # Errors
/// When the runtime cannot start.
pub fn yielding_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("migration")
        .enable_all()
        .on_thread_start(|| {
            if let Err(e) = lower_thread_priority(MIGRATION_NICE) {
                tracing::warn!(error = %e, "could not lower a migration thread's priority");
            }
        })
        .build()
}

/// Where a move's target is.
pub enum Target<'a> {
    /// Opened in this process (the one-machine layout).
    Local(&'a AppState),
    /// Another site, called over the federation as the source.
    Site(RegionId),
}

impl Target<'_> {
    pub fn region(&self) -> &RegionId {
        match self {
            Target::Local(state) => &state.region.id,
            Target::Site(region) => region,
        }
    }
}

/// Which users a migration moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every user of the source whose phone number belongs to this country.
    Jurisdiction(CountryCode),
    /// These users, by user id or phone number (E.164).
    Users(Vec<String>),
}

/// One move: users (or some of their services) from one region to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSpec {
    pub from: RegionId,
    pub to: RegionId,
    pub selector: Selector,
    /// The services to move, without the account; empty moves whole users (account and every
    /// service the source holds for them). See [`check_services`].
    pub services: Vec<Service>,
}

impl MigrationSpec {
    /// Stable across runs, so that a rerun finds the journal of the run it resumes.
    pub fn id(&self) -> String {
        hex(&digest_sha256(self.describe().as_bytes())[..12])
    }

    pub fn describe(&self) -> String {
        let who = match &self.selector {
            Selector::Jurisdiction(cc) => format!("jurisdiction {cc}"),
            Selector::Users(users) => format!("{} listed users ({})", users.len(), users.join(",")),
        };
        if self.services.is_empty() {
            format!("{} -> {}: {who}", self.from, self.to)
        } else {
            let services: Vec<&str> = self.services.iter().map(|s| s.as_str()).collect();
            format!(
                "{} -> {}: {who}, services {}",
                self.from,
                self.to,
                services.join(",")
            )
        }
    }
}

/// Parses a `--services` list (or a plan phase's `services`). Naming every service, or none,
/// moves whole users (the account with them) and gives an empty list; naming some moves only
/// those, sorted and without repeats.
///
/// # Errors
/// When a name is unknown.
pub fn check_services(services: &[String]) -> anyhow::Result<Vec<Service>> {
    let mut parsed = BTreeSet::new();
    for service in services {
        let Some(s) = Service::parse(service.trim()) else {
            let known: Vec<&str> = Service::ALL.iter().map(|s| s.as_str()).collect();
            bail!(
                "unknown service {service:?}; services are {}",
                known.join(", ")
            );
        };
        parsed.insert(s);
    }
    if parsed.len() == Service::ALL.len() {
        parsed.clear();
    }
    Ok(parsed.into_iter().collect())
}

/// A plan file: phases run in order, each a [`MigrationSpec`].
///
/// ```toml
/// [[phase]]
/// name = "phase 1: Singapore"
/// from = "cn-beijing"
/// to = "sg-singapore"
/// jurisdiction = "SG"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(rename = "phase")]
    pub phases: Vec<PlanPhase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanPhase {
    pub name: String,
    pub from: RegionId,
    pub to: RegionId,
    pub jurisdiction: Option<CountryCode>,
    pub users: Option<Vec<String>>,
    #[serde(default)]
    pub services: Vec<String>,
}

impl Plan {
    /// # Errors
    /// When the text is not a plan: unknown keys, no phase, or a phase with both or neither of
    /// `jurisdiction` and `users`.
    pub fn from_toml(text: &str) -> anyhow::Result<Vec<(String, MigrationSpec)>> {
        let plan: Plan = toml::from_str(text).context("parsing the plan")?;
        if plan.phases.is_empty() {
            bail!("the plan has no [[phase]]");
        }
        plan.phases
            .into_iter()
            .map(|phase| {
                let services = check_services(&phase.services)
                    .with_context(|| format!("in phase {:?}", phase.name))?;
                let selector = match (phase.jurisdiction, phase.users) {
                    (Some(cc), None) => Selector::Jurisdiction(cc),
                    (None, Some(users)) => Selector::Users(users),
                    _ => bail!(
                        "phase {:?} needs exactly one of `jurisdiction` and `users`",
                        phase.name
                    ),
                };
                Ok((
                    phase.name,
                    MigrationSpec {
                        from: phase.from,
                        to: phase.to,
                        selector,
                        services,
                    },
                ))
            })
            .collect()
    }
}

/// What a migration reports as it goes.
#[derive(Debug, Clone)]
pub enum MigrationEvent {
    Selected { users: usize, already_done: usize },
    Moved { user_id: String, bytes: u64 },
    Skipped { user_id: String, reason: String },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub moved: usize,
    pub bytes: u64,
    pub skipped: Vec<(String, String)>,
}

/// Runs (or resumes) a migration between two regions opened in this process.
///
/// # Errors
/// When a store, the directory or the journal fails; a user who cannot be moved (their
/// jurisdiction does not allow the target, or verification fails) is skipped and reported, and
/// the rest go on.
pub async fn migrate(
    spec: &MigrationSpec,
    source: &AppState,
    target: &AppState,
    on_event: impl FnMut(&MigrationEvent),
) -> anyhow::Result<MigrationReport> {
    run(spec, source, &Target::Local(target), on_event).await
}

/// Runs (or resumes) a migration from the region opened in this process to another site, which
/// must be running and listed in the source's federation file.
///
/// # Errors
/// As [`migrate`]; a target that does not answer stops the users in flight (skipped, to be
/// resumed by running the migration again).
pub async fn migrate_to_site(
    spec: &MigrationSpec,
    source: &AppState,
    on_event: impl FnMut(&MigrationEvent),
) -> anyhow::Result<MigrationReport> {
    if source.federation.url_of(&spec.to).is_none() {
        bail!(
            "site {} is not in {}'s federation file: nothing to move users to",
            spec.to,
            spec.from
        );
    }
    run(spec, source, &Target::Site(spec.to.clone()), on_event).await
}

async fn run(
    spec: &MigrationSpec,
    source: &AppState,
    target: &Target<'_>,
    mut on_event: impl FnMut(&MigrationEvent),
) -> anyhow::Result<MigrationReport> {
    if source.region.id != spec.from || *target.region() != spec.to {
        bail!(
            "the opened regions do not match the migration {}",
            spec.describe()
        );
    }
    if spec.from == spec.to {
        bail!("source and target are both {}", spec.from);
    }
    let directory = &source.directory;
    let id = spec.id();
    let mut journal = directory
        .journal_open(id.clone(), spec.describe(), source.now_ms())
        .await?;
    if journal.is_empty() {
        let users = select(spec, source).await?;
        if users.len() > MIGRATION_USERS_MAX {
            bail!(
                "{} users selected, at most {MIGRATION_USERS_MAX} per migration",
                users.len()
            );
        }
        directory.journal_select(id.clone(), users).await?;
        journal = directory
            .journal_open(id.clone(), spec.describe(), source.now_ms())
            .await?;
    }
    let already_done = journal.iter().filter(|(_, step)| step == "done").count();
    on_event(&MigrationEvent::Selected {
        users: journal.len(),
        already_done,
    });
    let mut report = MigrationReport::default();
    // Several users move at once: each waits on its own commits (and round trips), and the
    // stores' group commit lets their writes share fsyncs.
    let in_flight = match target {
        Target::Local(_) => MIGRATION_USERS_IN_FLIGHT_LOCAL,
        Target::Site(_) => MIGRATION_USERS_IN_FLIGHT_MAX,
    };
    let id = &id;
    let mut moves =
        futures_util::stream::iter(journal.into_iter().filter(|(_, step)| step != "done"))
            .map(|(user_id, step)| async move {
                let outcome = move_user(id, &user_id, &step, &spec.services, source, target).await;
                (user_id, outcome)
            })
            .buffer_unordered(in_flight);
    while let Some((user_id, outcome)) = moves.next().await {
        match outcome {
            Ok(bytes) => {
                report.moved += 1;
                report.bytes += bytes;
                on_event(&MigrationEvent::Moved { user_id, bytes });
            }
            Err(reason) => {
                let reason = format!("{reason:#}");
                on_event(&MigrationEvent::Skipped {
                    user_id: user_id.clone(),
                    reason: reason.clone(),
                });
                report.skipped.push((user_id, reason));
            }
        }
    }
    Ok(report)
}

async fn select(spec: &MigrationSpec, source: &AppState) -> anyhow::Result<Vec<String>> {
    match &spec.selector {
        Selector::Jurisdiction(country) => {
            let mut users = Vec::new();
            let accounts_only = spec.services.is_empty();
            for (user_id, phone_sealed, wrapped) in source.store.active_users(accounts_only).await?
            {
                let id = UserId::from_stored(user_id.clone());
                let key = source.keys.unwrap(&wrapped, &id)?;
                if phone_of(&key, &id, &phone_sealed)?.country() == *country {
                    users.push(user_id);
                }
            }
            Ok(users)
        }
        Selector::Users(list) => {
            let mut users = Vec::new();
            for entry in list {
                let entry = entry.trim();
                if entry.starts_with('+') {
                    let phone = PhoneNumber::parse(entry).map_err(|e| anyhow::anyhow!("{e}"))?;
                    // The directory knows every number, wherever its account or services are.
                    let user = source
                        .directory
                        .lookup(source.keys.phone_index(&phone))
                        .await?;
                    let user = user.with_context(|| format!("{entry} has no account"))?;
                    users.push(user.user_id);
                } else {
                    uuid::Uuid::parse_str(entry).with_context(|| {
                        format!("{entry:?} is neither a phone number nor a user id")
                    })?;
                    users.push(entry.to_owned());
                }
            }
            Ok(users)
        }
    }
}

fn phone_of(key: &DataKey, user: &UserId, sealed: &[u8]) -> anyhow::Result<PhoneNumber> {
    let phone = key.open(&aad("users", user, user.as_str(), "phone"), sealed)?;
    PhoneNumber::parse(&String::from_utf8_lossy(&phone))
        .map_err(|e| anyhow::anyhow!("stored phone: {e}"))
}

/// What is left to move of a user: for a whole-user move the account and the services the
/// source holds; for a service move the listed services the source still holds.
async fn pending_scope(
    user_id: &str,
    services: &[Service],
    source: &AppState,
) -> anyhow::Result<MoveScope> {
    let whole = services.is_empty();
    let mut scope = MoveScope {
        account: whole,
        messaging: false,
        backup: false,
    };
    for service in Service::ALL {
        if !whole && !services.contains(&service) {
            continue;
        }
        let at = source
            .directory
            .service_region(user_id.to_owned(), service)
            .await?;
        // A user the directory does not know (yet) has everything with the account.
        let here = at.as_ref().is_none_or(|r| *r == source.region.id);
        scope = scope.with(service, here);
    }
    Ok(scope)
}

/// Moves one user from wherever the journal says they got to. Returns the bytes copied.
async fn move_user(
    migration: &str,
    user_id: &str,
    step: &str,
    services: &[Service],
    source: &AppState,
    target: &Target<'_>,
) -> anyhow::Result<u64> {
    let user = UserId::from_stored(user_id.to_owned());
    let whole = services.is_empty();
    let journal = |step: &'static str| {
        source
            .directory
            .journal_step(migration.to_owned(), user_id.to_owned(), step)
    };
    let mut bytes = 0;
    let mut step = step.to_owned();
    // What this run has put at the target: the snapshot last installed there (a later copy
    // that finds the source unchanged installs nothing) and the per-scope keys.
    let mut copied = Copied::default();
    let scope = pending_scope(user_id, services, source).await?;
    if step == "selected" {
        if !whole && scope.services().is_empty() {
            // Nothing of it here: done if every service is at the target already.
            for service in services {
                let at = source
                    .directory
                    .service_region(user_id.to_owned(), *service)
                    .await?
                    .with_context(|| format!("user {user_id} is not in the directory"))?;
                if at != *target.region() {
                    bail!(
                        "the {service} of user {user_id} is in {at}, not in {}",
                        source.region.id
                    );
                }
            }
            journal("done").await?;
            return Ok(0);
        }
        let Some(snapshot) = source
            .store
            .snapshot_user(user_id.to_owned(), scope)
            .await?
        else {
            if whole
                && source.directory.home_of(user_id.to_owned()).await?
                    == Some(target.region().clone())
            {
                journal("done").await?;
                return Ok(0);
            }
            bail!("user {user_id} is not in {}", source.region.id);
        };
        if whole && snapshot.user.kind != "account" {
            bail!(
                "the account of user {user_id} is not in {}, only some of their services: move those with --services",
                source.region.id
            );
        }
        let key = source.keys.unwrap(&snapshot.user.wrapped_key, &user)?;
        let country = phone_of(&key, &user, &snapshot.user.phone_sealed)?.country();
        // A site on another host decides by its own policy when the rows arrive.
        if let Target::Local(target) = target
            && !target.policies.residency.allows(country, &target.region.id)
        {
            bail!(
                "the residency policy does not allow region {} to hold users from {country}",
                target.region.id
            );
        }
        bytes += copy(&snapshot, scope, &user, source, target, &mut copied).await?;
        journal("copied").await?;
        crate::faults::point("migrate.copied");
        step = "copied".into();
    }
    if step == "copied" {
        // Catch up while the user keeps writing, then fence and take the rest.
        let mut last = source
            .store
            .snapshot_user(user_id.to_owned(), scope)
            .await?;
        for _ in 0..CATCH_UP_ROUNDS_MAX {
            let Some(snapshot) = &last else { break };
            if copied.is(snapshot) {
                // Nothing changed since the copy.
                break;
            }
            bytes += copy(snapshot, scope, &user, source, target, &mut copied).await?;
            let now = source
                .store
                .snapshot_user(user_id.to_owned(), scope)
                .await?;
            if now == last {
                break;
            }
            last = now;
        }
        if whole {
            source
                .store
                .fence_user(user_id.to_owned(), source.now_ms())
                .await?;
        } else {
            source
                .store
                .fence_services(user_id.to_owned(), scope.services(), source.now_ms())
                .await?;
        }
        journal("fenced").await?;
        crate::faults::point("migrate.fenced");
        step = "fenced".into();
    }
    if matches!(step.as_str(), "fenced" | "verified")
        && flipped_already(user_id, scope, source, target).await?
    {
        // Killed between the directory's flip and its journal entry: the flip is the move's
        // commit point, so the move goes on from there (checking the copy again would compare
        // it with a target that already serves the user).
        journal("flipped").await?;
        step = "flipped".into();
    }
    if step == "fenced" {
        if let Some(snapshot) = source
            .store
            .snapshot_user(user_id.to_owned(), scope)
            .await?
        {
            if !copied.is(&snapshot) {
                bytes += copy(&snapshot, scope, &user, source, target, &mut copied).await?;
            }
            let at_source = digest(&snapshot, scope, &user, source).await?;
            let at_target = target_digest(user_id, scope, source, target)
                .await?
                .context("the copy vanished from the target")?;
            if at_source != at_target {
                // The target's copy was never live (it is activated only once `verified` is
                // in the journal), so the source may take the user back.
                if whole {
                    source.store.unfence_user(user_id.to_owned()).await?;
                } else {
                    source
                        .store
                        .unfence_services(user_id.to_owned(), scope.services())
                        .await?;
                }
                journal("selected").await?;
                bail!(
                    "verification failed for user {user_id}: the target's copy differs; it stays in {}",
                    source.region.id
                );
            }
        }
        // From here the move only goes forward: the source stays fenced and is never taken
        // back, whatever happens at the target once its copy is live (a sign-in, a session
        // swept), so no rerun can leave the user live in two regions.
        journal("verified").await?;
        crate::faults::point("migrate.verified");
        step = "verified".into();
    }
    if step == "verified" {
        // Live at the target before the directory sends anyone there.
        activate(user_id, scope, source, target).await?;
        crate::faults::point("migrate.activated");
        let flipped = if whole {
            source
                .directory
                .move_home(user_id.to_owned(), target.region().clone(), source.now_ms())
                .await
        } else {
            source
                .directory
                .place(
                    user_id.to_owned(),
                    scope.services(),
                    target.region().clone(),
                    source.now_ms(),
                )
                .await
        };
        match flipped {
            Ok(()) => {}
            Err(StoreError::NotFound) => {
                // The account was deleted while it moved: its deletion could not know of the
                // copy at the target, so the copy goes here.
                abandon(user_id, source, target).await?;
                journal("done").await?;
                bail!("user {user_id} was deleted during the move");
            }
            Err(e) => return Err(e.into()),
        }
        crate::faults::point("migrate.flipped-unjournaled");
        journal("flipped").await?;
        crate::faults::point("migrate.flipped");
        step = "flipped".into();
    }
    if step == "flipped" {
        if whole {
            source
                .store
                .finish_move(
                    user_id.to_owned(),
                    target.region().to_string(),
                    source.now_ms(),
                )
                .await?;
            crate::faults::point("migrate.finished");
            source.blobs.delete_user(user_id).await;
            destroy_scope_keys(source, user_id).await?;
            source.store.purge_moved_user(user_id.to_owned()).await?;
        } else {
            erase_moved_services(user_id, services, source).await?;
        }
        journal("done").await?;
    }
    Ok(bytes)
}

/// The source's side after a service move's flip: the moved services' rows and blobs go, and
/// when the source held only services of the user and none is left, so does the user's row
/// (crypto-shredded first, as an account deletion does).
async fn erase_moved_services(
    user_id: &str,
    services: &[Service],
    source: &AppState,
) -> anyhow::Result<()> {
    let mut gone = Vec::new();
    let mut still_here = false;
    for service in Service::ALL {
        let at = source
            .directory
            .service_region(user_id.to_owned(), service)
            .await?;
        let here = at.as_ref() == Some(&source.region.id);
        if services.contains(&service) && !here {
            gone.push(service);
        }
        still_here |= here;
    }
    let gone_scopes: Vec<ConsentScope> = crate::scope_keys::KEYED_SCOPES
        .into_iter()
        .filter(|s| Service::of_scope(*s).is_some_and(|service| gone.contains(&service)))
        .collect();
    for path in source
        .store
        .erase_services(user_id.to_owned(), gone, source.now_ms())
        .await?
    {
        source.blobs.delete(&path).await;
    }
    {
        // Exclusive, as a withdrawal is: a write that took a key before the fence has
        // committed (or been refused) by now, and one after it makes none.
        let user = UserId::from_stored(user_id.to_owned());
        let guard = source.keys.scope_guard(&user);
        let _exclusive = guard.write().await;
        for scope in gone_scopes {
            source.keys.destroy_scope_key(&user, scope)?;
        }
    }
    let service_row = source
        .store
        .user(user_id.to_owned())
        .await?
        .is_some_and(|row| row.service_only);
    if service_row && !still_here {
        let home = source.directory.home_of(user_id.to_owned()).await?;
        source
            .store
            .finish_move(
                user_id.to_owned(),
                home.map_or_else(String::new, |h| h.to_string()),
                source.now_ms(),
            )
            .await?;
        source.blobs.delete_user(user_id).await;
        destroy_scope_keys(source, user_id).await?;
        source.store.purge_moved_user(user_id.to_owned()).await?;
    }
    Ok(())
}

/// The user's per-scope keys for the services `scope` moves.
fn moving_scope_keys(
    keys: &crate::keys::RegionKeys,
    user: &UserId,
    scope: MoveScope,
) -> anyhow::Result<Vec<(ConsentScope, DataKey)>> {
    let mut moving = keys.scope_keys(user)?;
    moving.retain(|(s, _)| Service::of_scope(*s).is_some_and(|service| scope.has(service)));
    Ok(moving)
}

/// What one run of a user's move has put at the target.
#[derive(Default)]
struct Copied {
    /// The snapshot installed last.
    snapshot: Option<UserSnapshot>,
    /// The per-scope keys installed (in a local target's key store).
    scope_keys: Vec<(ConsentScope, DataKey)>,
}

impl Copied {
    /// Whether `snapshot` is what the target was given last (so copying it again changes
    /// nothing there).
    fn is(&self, snapshot: &UserSnapshot) -> bool {
        self.snapshot.as_ref() == Some(snapshot)
    }
}

/// Destroys a moved-away user's per-scope keys at the source (file removals and fsyncs, off
/// the threads that serve requests).
async fn destroy_scope_keys(source: &AppState, user_id: &str) -> anyhow::Result<()> {
    let user = UserId::from_stored(user_id.to_owned());
    let guard = source.keys.scope_guard(&user);
    let _exclusive = guard.write().await;
    let keys = source.keys.clone();
    tokio::task::spawn_blocking(move || keys.destroy_scope_keys(&user))
        .await
        .context("destroying the per-scope keys")?;
    Ok(())
}

/// Copies a snapshot's blobs the target lacks, then installs its rows with the data key
/// re-wrapped for the target. Returns the bytes copied.
async fn copy(
    snapshot: &UserSnapshot,
    scope: MoveScope,
    user: &UserId,
    source: &AppState,
    target: &Target<'_>,
    copied: &mut Copied,
) -> anyhow::Result<u64> {
    let target = match target {
        Target::Local(target) => *target,
        Target::Site(to) => {
            let bytes = copy_to_site(snapshot, scope, user, source, to).await?;
            copied.snapshot = Some(snapshot.clone());
            return Ok(bytes);
        }
    };
    let mut bytes = snapshot.sealed_bytes() as u64;
    // The blobs the target lacks (or holds from so long ago that the orphan sweep could take
    // them before their rows commit), all in one go: on one filesystem they are linked.
    let mut missing = Vec::new();
    for path in snapshot.blob_paths() {
        if !target
            .blobs
            .exists_recent(path, crate::erasure::BLOB_REWRITE_AFTER_MS)
            .await
        {
            missing.push(path.to_owned());
        }
    }
    if !missing.is_empty() {
        bytes += target.blobs.copy_from(&source.blobs, missing).await?;
    }
    let key = source.keys.unwrap(&snapshot.user.wrapped_key, user)?;
    let rewrapped = target.keys.wrap(&key, user)?;
    // The per-scope keys of the services that move go before the rows they open; one this run
    // installed already is not written (and fsynced) again.
    if scope.messaging || scope.backup {
        let (from, to, who) = (source.keys.clone(), target.keys.clone(), user.clone());
        let installed = std::mem::take(&mut copied.scope_keys);
        copied.scope_keys = tokio::task::spawn_blocking(move || {
            let mut now = Vec::new();
            for (scope, key) in moving_scope_keys(&from, &who, scope)? {
                if !installed
                    .iter()
                    .any(|(s, k)| *s == scope && k.same_as(&key))
                {
                    to.install_scope_key(&who, scope, &key)?;
                }
                now.push((scope, key));
            }
            anyhow::Ok(now)
        })
        .await
        .context("installing the per-scope keys")??;
    }
    let dropped = target
        .store
        .install_user(
            snapshot.clone(),
            scope,
            rewrapped,
            target.region.id.to_string(),
            target.now_ms(),
        )
        .await?;
    for path in dropped {
        target.blobs.delete(&path).await;
    }
    copied.snapshot = Some(snapshot.clone());
    Ok(bytes)
}

/// [`copy`] to a site on another host: the target says which blobs it lacks and which public
/// key the user's data key is sealed to; the blobs go one per request, then the rows.
async fn copy_to_site(
    snapshot: &UserSnapshot,
    scope: MoveScope,
    user: &UserId,
    source: &AppState,
    to: &RegionId,
) -> anyhow::Result<u64> {
    let paths: Vec<&str> = snapshot.blob_paths().collect();
    let prepared = call_site(
        source,
        to,
        MOVE_PREPARE_PATH,
        &json!({ "user_id": user.as_str(), "scope": scope, "blob_paths": paths }),
    )
    .await?;
    let prepared: Prepared =
        serde_json::from_value(prepared).context("the target's answer to prepare")?;
    let mut bytes = snapshot.sealed_bytes() as u64;
    for path in &prepared.missing {
        if !paths.contains(&path.as_str()) {
            bail!("site {to} asked for blob {path}, which is not the user's");
        }
        let sealed = source
            .blobs
            .get(path)
            .await
            .with_context(|| format!("reading blob {path}"))?;
        bytes += sealed.len() as u64;
        call_site(
            source,
            to,
            MOVE_BLOB_PATH,
            &json!({
                "user_id": user.as_str(),
                "scope": scope,
                "path": path,
                "sealed": base64::engine::general_purpose::STANDARD.encode(&sealed),
            }),
        )
        .await?;
    }
    let public = base64::engine::general_purpose::STANDARD
        .decode(prepared.move_public_key.as_bytes())
        .context("the target's move key is not base64")?;
    let key = source.keys.unwrap(&snapshot.user.wrapped_key, user)?;
    let sealed = sovereign_crypto::seal_for_move(&key, &public, user.as_str().as_bytes())?;
    // Each per-scope key travels as the data key does, sealed to the same public key.
    let mut scope_keys = Vec::new();
    for (key_scope, key) in moving_scope_keys(&source.keys, user, scope)? {
        let sealed = sovereign_crypto::seal_for_move(&key, &public, user.as_str().as_bytes())?;
        scope_keys.push(json!({
            "scope": key_scope.as_str(),
            "ephemeral_public": base64::engine::general_purpose::STANDARD.encode(sealed.ephemeral_public),
            "wrapped": base64::engine::general_purpose::STANDARD.encode(&sealed.wrapped),
        }));
    }
    let mut rows = snapshot.clone();
    // The source's wrapping is of no use to the target, which wraps the key under its own.
    rows.user.wrapped_key.clear();
    let body = json!({
        "scope": scope,
        "snapshot": rows,
        "sealed_key": {
            "ephemeral_public": base64::engine::general_purpose::STANDARD.encode(sealed.ephemeral_public),
            "wrapped": base64::engine::general_purpose::STANDARD.encode(&sealed.wrapped),
        },
        "scope_keys": scope_keys,
    });
    let length = serde_json::to_vec(&body)?.len();
    if length > MOVE_SNAPSHOT_BYTES_MAX {
        bail!(
            "user {user}'s rows are {length} bytes, more than one move request carries ({MOVE_SNAPSHOT_BYTES_MAX})"
        );
    }
    call_site(source, to, MOVE_INSTALL_PATH, &body).await?;
    Ok(bytes)
}

#[derive(Deserialize)]
struct Prepared {
    missing: Vec<String>,
    move_public_key: String,
}

/// One signed call of a move to the target site; anything but `200` is an error naming the
/// site's problem code and detail.
async fn call_site(
    source: &AppState,
    to: &RegionId,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let (status, answer) = source
        .federation
        .post_within(to, path, body, source.now_ms(), MOVE_CALL_TIMEOUT)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if status != 200 {
        bail!(
            "site {to} refused {path} ({status} {}): {}",
            answer["code"].as_str().unwrap_or("?"),
            answer["detail"].as_str().unwrap_or("no detail")
        );
    }
    Ok(answer)
}

/// Whether the directory already places what this move carries at the target.
async fn flipped_already(
    user_id: &str,
    scope: MoveScope,
    source: &AppState,
    target: &Target<'_>,
) -> anyhow::Result<bool> {
    let to = Some(target.region().clone());
    if scope.account {
        return Ok(source.directory.home_of(user_id.to_owned()).await? == to);
    }
    let services = scope.services();
    for service in &services {
        if source
            .directory
            .service_region(user_id.to_owned(), *service)
            .await?
            != to
        {
            return Ok(false);
        }
    }
    Ok(!services.is_empty())
}

/// The digest of the target's copy ([`digest`]), `None` when it has none.
async fn target_digest(
    user_id: &str,
    scope: MoveScope,
    source: &AppState,
    target: &Target<'_>,
) -> anyhow::Result<Option<[u8; 32]>> {
    match target {
        Target::Local(target) => {
            let Some(copied) = target
                .store
                .snapshot_user(user_id.to_owned(), scope)
                .await?
            else {
                return Ok(None);
            };
            let user = UserId::from_stored(user_id.to_owned());
            Ok(Some(digest(&copied, scope, &user, target).await?))
        }
        Target::Site(to) => {
            let answer = call_site(
                source,
                to,
                MOVE_DIGEST_PATH,
                &json!({ "user_id": user_id, "scope": scope }),
            )
            .await?;
            match answer["digest"].as_str() {
                None => Ok(None),
                Some(text) => {
                    let bytes = crate::routes::internal::parse_digest(text).with_context(|| {
                        format!("site {to}'s digest {text:?} is not 32 bytes of hex")
                    })?;
                    Ok(Some(bytes))
                }
            }
        }
    }
}

async fn activate(
    user_id: &str,
    scope: MoveScope,
    source: &AppState,
    target: &Target<'_>,
) -> anyhow::Result<()> {
    match target {
        Target::Local(target) => {
            target
                .store
                .activate_user(user_id.to_owned(), scope.account)
                .await?;
        }
        Target::Site(to) => {
            call_site(
                source,
                to,
                MOVE_ACTIVATE_PATH,
                &json!({ "user_id": user_id, "scope": scope }),
            )
            .await?;
        }
    }
    Ok(())
}

/// Drops the target's copy of a user deleted while moving: their deletion could not know of it.
async fn abandon(user_id: &str, source: &AppState, target: &Target<'_>) -> anyhow::Result<()> {
    match target {
        Target::Local(target) => abandon_copy(target, user_id).await?,
        Target::Site(to) => {
            call_site(
                source,
                to,
                MOVE_ABANDON_PATH,
                &json!({ "user_id": user_id }),
            )
            .await?;
        }
    }
    Ok(())
}

/// Removes the copy of a user the directory no longer knows (deleted while moving here).
///
/// # Errors
/// [`StoreError::Conflict`] while the directory still knows the user (their copy stays);
/// when the directory or the store fails.
pub async fn abandon_copy(region: &AppState, user_id: &str) -> Result<(), StoreError> {
    if region
        .directory
        .home_of(user_id.to_owned())
        .await?
        .is_some()
    {
        return Err(StoreError::Conflict(format!(
            "user {user_id} is still in the directory: their copy stays"
        )));
    }
    let _ = region.store.shred_user(user_id.to_owned()).await;
    region.blobs.delete_user(user_id).await;
    region
        .keys
        .destroy_scope_keys(&UserId::from_stored(user_id.to_owned()));
    region.store.purge_user(user_id.to_owned()).await
}

/// A digest of everything a user has in a region, decrypted with that region's copy of the key:
/// equal digests mean equal data, and a key that opens all of it.
/// Only what `scope` moves counts: a service move compares the services' data (and the phone
/// number, which proves the key), not the account's password, sessions or consents.
pub async fn digest(
    snapshot: &UserSnapshot,
    scope: MoveScope,
    user: &UserId,
    region: &AppState,
) -> anyhow::Result<[u8; 32]> {
    let key = region.keys.unwrap(&snapshot.user.wrapped_key, user)?;
    // Messages and backup items are sealed with the user's key for their scope.
    let mut scope_keys = std::collections::BTreeMap::new();
    for (scope, key) in region.keys.scope_keys(user)? {
        scope_keys.insert(scope, key);
    }
    let mut lines = BTreeSet::new();
    let u = &snapshot.user;
    let phone = key.open(&aad("users", user, user.as_str(), "phone"), &u.phone_sealed)?;
    let password = if scope.account {
        u.password_hash.as_str()
    } else {
        "-"
    };
    lines.insert(format!("user {} {password} {}", hex(&phone), u.created_at));
    for s in &snapshot.sessions {
        let device = key.open(&aad("sessions", user, &s.id, "device"), &s.device_sealed)?;
        lines.insert(format!(
            "session {} {} {} {} {}",
            hex(&s.token_digest),
            s.id,
            hex(&device),
            s.created_at,
            s.expires_at
        ));
    }
    for c in snapshot.consents.iter().filter(|_| scope.account) {
        lines.insert(format!(
            "consent {} {} {}",
            c.scope, c.notice_version, c.granted_at
        ));
    }
    for (n, e) in snapshot.consent_events.iter().enumerate() {
        lines.insert(format!(
            "event {n:08} {} {} {:?} {}",
            e.scope, e.action, e.notice_version, e.at
        ));
    }
    let message_keys = crate::routes::messages::MessageKeys::new(
        user.clone(),
        scope_keys.get(&ConsentScope::Messaging).cloned(),
        key.clone(),
    );
    for m in &snapshot.messages {
        let record = format!("{}:{}", m.box_name, m.id);
        let peer = message_keys.open(&record, "peer", &m.peer_sealed)?;
        let body = message_keys.open(&record, "body", &m.body_sealed)?;
        lines.insert(format!(
            "message {record} {} {} {} {:?} {} at {}",
            hex(&peer),
            hex(&body),
            m.created_at,
            m.delivered_at,
            m.expires_at,
            m.box_seq
        ));
    }
    for b in &snapshot.backup {
        let record = format!("{}:{}", b.kind, b.item_id);
        let key = crate::domain::BackupKind::parse(&b.kind)
            .ok()
            .and_then(|kind| scope_keys.get(&kind.scope()))
            .with_context(|| format!("no key for {record}"));
        let content = match (&b.data_sealed, &b.blob_path) {
            (Some(sealed), _) => hex(&digest_sha256(
                &key?.open(&aad("backup", user, &record, "data"), sealed)?,
            )),
            (None, Some(path)) => {
                let sealed = region
                    .blobs
                    .get(path)
                    .await
                    .with_context(|| format!("reading blob {path}"))?;
                hex(&digest_sha256(
                    &key?.open(&aad("backup", user, &record, path), &sealed)?,
                ))
            }
            (None, None) => "-".to_owned(),
        };
        lines.insert(format!(
            "backup {record} {} {} {content} {:?} {:?} {} at {}",
            b.version, b.deleted, b.content_type, b.size_bytes, b.updated_at, b.change_seq
        ));
    }
    // The cursors clients hold mean the same at the target only if the counters came along.
    for (name, value) in &snapshot.counters {
        lines.insert(format!("counter {name} {value}"));
    }
    let text: Vec<String> = lines.into_iter().collect();
    Ok(digest_sha256(text.join("\n").as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread lowers its own priority, and a yielding runtime's threads all run lowered.
    #[test]
    fn migration_threads_yield() {
        fn nice(thread: rustix::thread::Pid) -> i32 {
            rustix::process::getpriority_process(Some(thread)).unwrap()
        }
        std::thread::spawn(move || {
            lower_thread_priority(5).unwrap();
            assert_eq!(nice(rustix::thread::gettid()), 5);
        })
        .join()
        .unwrap();
        let runtime = yielding_runtime().unwrap();
        let worker = runtime.block_on(async {
            tokio::spawn(async { nice(rustix::thread::gettid()) })
                .await
                .unwrap()
        });
        let blocking = runtime.block_on(async {
            tokio::task::spawn_blocking(move || nice(rustix::thread::gettid()))
                .await
                .unwrap()
        });
        assert_eq!((worker, blocking), (MIGRATION_NICE, MIGRATION_NICE));
    }

    #[test]
    fn the_2014_plan_moves_one_service_one_jurisdiction_at_a_time() {
        let phases = Plan::from_toml(include_str!("../../../config/migration-2014.toml")).unwrap();
        let moves: Vec<String> = phases.iter().map(|(_, spec)| spec.describe()).collect();
        let mut expected = Vec::new();
        for (to, cc) in [
            ("sg-singapore", "SG"),
            ("in-mumbai", "IN"),
            ("br-saopaulo", "BR"),
        ] {
            for services in [", services messaging", ", services backup", ""] {
                expected.push(format!("cn-beijing -> {to}: jurisdiction {cc}{services}"));
            }
        }
        assert_eq!(moves, expected);
    }

    #[test]
    fn naming_every_service_moves_whole_users() {
        let all = ["backup".to_owned(), "messaging".to_owned()];
        assert!(check_services(&all).unwrap().is_empty());
        assert!(check_services(&[]).unwrap().is_empty());
        let one = ["messaging".to_owned(), "messaging".to_owned()];
        assert_eq!(check_services(&one).unwrap(), [Service::Messaging]);
        assert!(check_services(&["photos".to_owned()]).is_err());
    }

    #[test]
    fn bad_plans_are_refused() {
        for bad in [
            "",
            "[[phase]]\nname = \"x\"\nfrom = \"a\"\nto = \"b\"\n",
            "[[phase]]\nname = \"x\"\nfrom = \"a\"\nto = \"b\"\njurisdiction = \"IN\"\nusers = [\"+1\"]\n",
            "[[phase]]\nname = \"x\"\nfrom = \"A\"\nto = \"b\"\njurisdiction = \"IN\"\n",
            "[[phase]]\nname = \"x\"\nfrom = \"a\"\nto = \"b\"\njurisdiction = \"IN\"\nservices = [\"photos\"]\n",
        ] {
            assert!(Plan::from_toml(bad).is_err(), "{bad:?} accepted");
        }
    }
}
