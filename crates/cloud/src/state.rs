//! Everything one region's handlers share. A region's state holds its own store, keys and blobs
//! and nothing of any other region's.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use sovereign_model::{RegionConfig, RegionId};

use crate::blobs::Blobs;
use crate::clock::{Clock, SystemClock};
use crate::config::Policies;
use crate::directory::Directory;
use crate::federation::{Federation, PeerTable, load_or_create_identity};
use crate::hub::Hub;
use crate::keys::RegionKeys;
use crate::ledger::LedgerSigner;
use crate::limits::{Rate, RateLimits};
use crate::metrics::Metrics;
use crate::sites::{FEDERATION_FILE, FederationFile};
use crate::sms::{FileOutbox, SmsGateway};
use crate::store::Store;

pub type AppState = Arc<RegionState>;

pub struct RegionState {
    pub region: RegionConfig,
    pub policies: Policies,
    pub store: Store,
    pub keys: RegionKeys,
    pub blobs: Blobs,
    pub sms: Arc<dyn SmsGateway>,
    pub clock: Arc<dyn Clock>,
    pub hub: Hub,
    pub limits: RateLimits,
    pub metrics: Metrics,
    /// The global routing table (phone index → user, home region); nothing personal in it.
    pub directory: Directory,
    /// This region's identity towards other regions, and their public addresses and keys.
    pub federation: Federation,
    /// The region's access-ledger key (`DIR/keys/<region>.ledger.p8`).
    pub ledger: Arc<LedgerSigner>,
    /// Tokens of users whose services live here, as their home regions vouched for them.
    pub session_cache: crate::placement::SessionCache,
    /// Where the next round of consent reconciliation starts in the outbox (a user id; empty:
    /// from the start), so that users whose pushes keep failing do not starve the rest.
    pub consent_reconcile_after: std::sync::Mutex<String>,
    /// Points where tests stop multi-step operations half-way (none armed otherwise).
    pub faults: crate::faults::Faults,
}

/// What it takes to open a region.
pub struct RegionOptions {
    pub data_dir: PathBuf,
    pub region: RegionId,
    pub policies: Policies,
    pub clock: Arc<dyn Clock>,
    /// The directory shared by the regions of this process; `None` opens `DIR/directory.sqlite`.
    pub directory: Option<Directory>,
    /// Where the other sites are and their pinned keys; `None` reads `DIR/federation.toml`, or
    /// without one pins no peer (no peer call is made or accepted).
    pub peers: Option<Arc<PeerTable>>,
    /// CA certificates (PEM) trusted for peers whose federation entry pins no CA.
    pub peer_ca_bundle: Vec<u8>,
    /// The SMS gateway file; `None`: `DIR/sms-outbox.jsonl`.
    pub sms_outbox: Option<PathBuf>,
    /// The region's PostgreSQL database (`postgres://user@host:port/db`); `None` keeps the store
    /// in `DIR/regions/<region>/store.sqlite`. One region per database.
    pub database: Option<String>,
}

impl RegionOptions {
    pub fn new(data_dir: PathBuf, region: RegionId, policies: Policies) -> RegionOptions {
        RegionOptions {
            data_dir,
            region,
            policies,
            clock: Arc::new(SystemClock),
            directory: None,
            peers: None,
            peer_ca_bundle: Vec::new(),
            sms_outbox: None,
            database: None,
        }
    }
}

impl RegionState {
    /// Opens a region's store, keys and blobs under `data_dir`, creating them on first start, and
    /// finishes any account deletion a crash interrupted.
    ///
    /// # Errors
    /// When the region is not configured, or its files cannot be opened or created.
    pub async fn open(options: RegionOptions) -> anyhow::Result<AppState> {
        let RegionOptions {
            data_dir,
            region,
            policies,
            clock,
            directory,
            peers,
            peer_ca_bundle,
            sms_outbox,
            database,
        } = options;
        let config = policies
            .regions
            .get(&region)
            .with_context(|| {
                let known: Vec<_> = policies
                    .regions
                    .regions
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect();
                format!(
                    "region {region} is not configured; known regions: {}",
                    known.join(", ")
                )
            })?
            .clone();
        let region_dir = data_dir.join("regions").join(region.as_str());
        std::fs::create_dir_all(&region_dir)
            .with_context(|| format!("creating {}", region_dir.display()))?;
        let location = crate::store::region_store_location(&data_dir, &region, database.as_deref());
        let shown = location.display();
        // Opening PostgreSQL blocks (the synchronous client runs its own runtime), so it runs
        // off the async workers.
        let store = tokio::task::spawn_blocking(move || Store::open_at(&location))
            .await
            .context("opening the store panicked")?
            .with_context(|| format!("opening store {shown}"))?;
        let keys = RegionKeys::load_or_create(&data_dir, &region)?;
        let identity = load_or_create_identity(&data_dir, &region)?;
        let directory = match directory {
            Some(directory) => directory,
            None => Directory::open(&data_dir.join("directory.sqlite"))?,
        };
        let peers = match peers {
            Some(peers) => peers,
            None => {
                let file = data_dir.join(FEDERATION_FILE);
                Arc::new(if file.exists() {
                    FederationFile::read(&file)?.peer_table()
                } else {
                    PeerTable::unpinned(&policies.regions)
                })
            }
        };
        // A federation file that pins another key for this site would have every peer refuse
        // it: say so at start rather than at the first call.
        if let Some(pinned) = peers.get(&region).and_then(|p| p.public_key.as_deref())
            && pinned != identity.public_key()
        {
            anyhow::bail!(
                "the federation file pins a different federation key for {region} than \
                 {}/keys/{region}.peer.pk8: publish this site's stanza again",
                data_dir.display()
            );
        }
        let federation = Federation::new(region.clone(), identity, peers, &peer_ca_bundle)?;
        let blobs = Blobs::local(&region_dir.join("blobs"))?;
        let mut ledger = crate::ledger::load_or_create_signer(
            &data_dir,
            &region,
            policies.ops.ledger_checkpoint_entries,
        )?;
        ledger.checkpoint_secs_max = policies.ops.ledger_checkpoint_secs_max;
        let ledger = Arc::new(ledger);
        let sms = Arc::new(FileOutbox::new(
            sms_outbox.unwrap_or_else(|| data_dir.join("sms-outbox.jsonl")),
        ));
        let l = &policies.limits;
        let limits = RateLimits::new(crate::limits::Rates {
            signups_per_network: Rate::per_minute(l.signups_per_minute),
            logins_per_network: Rate::per_minute(l.logins_per_minute),
            verifications_per_network: Rate::per_minute(l.verifications_per_minute),
            signups_per_phone: Rate::per_hour(l.signups_per_phone_per_hour),
            logins_per_account: Rate::per_hour(l.logins_per_account_per_hour),
        });
        let state = Arc::new(RegionState {
            region: config,
            policies,
            store,
            keys,
            blobs,
            sms,
            clock,
            hub: Hub::default(),
            limits,
            metrics: Metrics::default(),
            directory,
            federation,
            ledger,
            session_cache: Default::default(),
            consent_reconcile_after: Default::default(),
            faults: Default::default(),
        });
        // The whole ledger is recomputed once per start; from then on each checkpoint checks
        // only what was appended since the last one (see store/ledger.rs).
        state
            .store
            .ledger_startup(state.ledger.clone(), state.now_ms())
            .await?;
        let finished = crate::deletion::finish_deletions(&state).await?;
        if finished > 0 {
            tracing::info!(finished, "finished interrupted account deletions");
        }
        Ok(state)
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A `307 wrong_region` sending the client to the same path in `region`.
    pub fn redirect_to(&self, region: &RegionId, path: &str) -> crate::error::ApiError {
        let base = self.federation.url_of(region).unwrap_or_default();
        crate::error::ApiError::WrongRegion {
            region: region.to_string(),
            location: format!("{base}{path}"),
        }
    }
}
