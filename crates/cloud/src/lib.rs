//! Sovereign's cloud: accounts, consent, cloud messaging and backup for one region, with every
//! privacy promise enforced where the data is stored.
//!
//! [`app`] builds the HTTP service of one region; [`sites::start_site`] runs one region as a site
//! on its own host; [`start_cloud`] serves a set of regions in one process, each as its own site
//! (own data directory under `DIR/sites/`, own TLS and federation key, peers known only from the
//! generated federation file), sharing the directory.
//! Tests start the real servers on port 0 and speak HTTPS to them:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use sovereign_cloud::{CloudOptions, Policies, clock::SystemClock};
//! use sovereign_model::RegionId;
//!
//! let cloud = sovereign_cloud::start_cloud(CloudOptions {
//!     data_dir: "./data".into(),
//!     policies: Policies::embedded()?,
//!     regions: vec![(RegionId::parse("in-mumbai")?, "127.0.0.1:0".parse()?)],
//!     databases: Default::default(),
//!     clock: std::sync::Arc::new(SystemClock),
//! })
//! .await?;
//! println!("{}", cloud.regions[0].url);
//! # Ok(()) }
//! ```

pub mod blobs;
pub mod clock;
pub mod config;
pub mod deletion;
pub mod directory;
pub mod domain;
pub mod erasure;
pub mod error;
pub mod export;
pub mod extract;
pub mod faults;
pub mod federation;
pub mod hub;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod migration;
pub mod ops;
pub mod placement;
pub mod retention;
pub mod routes;
pub mod scope_keys;
pub mod session_token;
pub mod sites;
pub mod sms;
pub mod state;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::limit::ConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use config::Policies;
pub use error::ApiError;
pub use state::{AppState, RegionOptions, RegionState};

/// The whole HTTP service of one region.
pub fn app(state: AppState) -> Router {
    let limits = state.policies.limits.clone();
    Router::new()
        .merge(routes::accounts::router())
        .merge(routes::me::router())
        .merge(routes::sessions::router())
        .merge(routes::consents::router())
        .merge(routes::messages::router())
        .merge(routes::backup::router())
        .merge(routes::health::router())
        .merge(routes::ops::router())
        .merge(routes::dashboard::router())
        .merge(routes::internal::router())
        .merge(routes::moves::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async {
            ApiError::invalid("method", "this path does not accept this method")
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            federation::sign_answers,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
            },
        ))
        .layer(ConcurrencyLimitLayer::new(limits.concurrent_requests_max))
        .with_state(state)
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = metrics::method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&metrics::RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// A region's server, running.
pub struct ServerHandle {
    addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    housekeeping: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish (up to `grace`), and waits.
    pub async fn shutdown(self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        self.housekeeping.abort();
        let _ = self.task.await;
    }

    /// Runs until the server stops by itself.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.task.await.context("server task")?.context("server");
        self.housekeeping.abort();
        result
    }
}

/// Which regions to run in this process, and where.
pub struct CloudOptions {
    pub data_dir: std::path::PathBuf,
    pub policies: Policies,
    /// Each region and the address it listens on (port 0 picks a free port).
    pub regions: Vec<(sovereign_model::RegionId, SocketAddr)>,
    /// Regions whose store is a PostgreSQL database (`postgres://` URL); the others keep theirs
    /// in SQLite under `data_dir`.
    pub databases: std::collections::BTreeMap<sovereign_model::RegionId, String>,
    pub clock: std::sync::Arc<dyn clock::Clock>,
}

/// A region serving in this process.
pub struct RunningRegion {
    pub id: sovereign_model::RegionId,
    pub url: String,
    pub state: AppState,
    pub server: ServerHandle,
}

/// The regions of one process, sharing a directory.
pub struct Cloud {
    pub regions: Vec<RunningRegion>,
    pub directory: directory::Directory,
}

impl Cloud {
    pub fn region(&self, id: &str) -> Option<&RunningRegion> {
        self.regions.iter().find(|r| r.id.as_str() == id)
    }

    /// Stops every region, letting requests in flight finish (up to `grace`).
    pub async fn shutdown(self, grace: Duration) {
        for region in self.regions {
            region.server.shutdown(grace).await;
        }
    }
}

/// Starts the given regions over HTTPS, each on its own port, with its own store, keys and blob
/// store, and one shared directory. Every listener is bound before any region opens, so each
/// region knows every other's address from the start.
///
/// # Errors
/// When an address cannot be bound, or a region's files cannot be opened or created.
pub async fn start_cloud(options: CloudOptions) -> anyhow::Result<Cloud> {
    start_cloud_on(options, None).await
}

/// [`start_cloud`] with the given directory (e.g. on etcd); `None` opens the SQLite directory
/// in the data directory.
///
/// # Errors
/// As [`start_cloud`].
pub async fn start_cloud_on(
    options: CloudOptions,
    directory: Option<directory::Directory>,
) -> anyhow::Result<Cloud> {
    let CloudOptions {
        data_dir,
        policies,
        regions,
        mut databases,
        clock,
    } = options;
    if let Some(unknown) = databases
        .keys()
        .find(|id| !regions.iter().any(|(region, _)| region == *id))
    {
        anyhow::bail!("a database is given for region {unknown}, which is not being started");
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut listeners = Vec::new();
    let mut urls = std::collections::BTreeMap::new();
    for (id, listen) in &regions {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding {listen} for {id}"))?;
        listener.set_nonblocking(true)?;
        urls.insert(id.clone(), format!("https://{}", listener.local_addr()?));
        listeners.push((id.clone(), listener));
    }
    // A data directory from before sites: its stores would be silently left behind.
    if data_dir.join("regions").is_dir() && !data_dir.join(sites::SITES_DIR).is_dir() {
        anyhow::bail!(
            "{} holds regions in the layout before sites (regions/ beside keys/): move each \
             region's regions/<region>/ and keys/<region>.* into sites/<region>/, or start afresh",
            data_dir.display()
        );
    }
    // Each region is its own site under DIR/sites/<region>/; what one knows of another comes
    // only from the federation file written from their published stanzas.
    let federation = sites::prepare_local_sites(&data_dir, &urls)?;
    let peers = std::sync::Arc::new(federation.peer_table());
    let directory = match directory {
        Some(directory) => directory,
        None => directory::Directory::open(&sites::directory_path(&data_dir))?,
    };
    let mut running = Vec::new();
    for (id, listener) in listeners {
        let site = sites::site_dir(&data_dir, &id);
        let tls_config = std::sync::Arc::new(
            tls::load_or_create(&site)?
                .server_config()
                .context("loading the server certificate")?,
        );
        let mut options = RegionOptions::new(site, id.clone(), policies.clone());
        options.clock = clock.clone();
        options.directory = Some(directory.clone());
        options.peers = Some(peers.clone());
        options.sms_outbox = Some(data_dir.join("sms-outbox.jsonl"));
        options.database = databases.remove(&id);
        let state = RegionState::open(options).await?;
        let server = serve(state.clone(), listener, tls_config)?;
        let url = urls.get(&id).cloned().unwrap_or_default();
        running.push(RunningRegion {
            id,
            url,
            state,
            server,
        });
    }
    Ok(Cloud {
        regions: running,
        directory,
    })
}

pub(crate) fn serve(
    state: AppState,
    listener: std::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
) -> anyhow::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let handle = axum_server::Handle::new();
    let state_for_housekeeping = state.clone();
    let server = axum_server::from_tcp_rustls(listener, config)?
        .handle(handle.clone())
        .serve(app(state).into_make_service_with_connect_info::<SocketAddr>());
    let task = tokio::spawn(server);
    let limits_state = state_for_housekeeping;
    let housekeeping = tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        // The ledger's tail is signed at least every T/2, so no entry waits more than T.
        let lag = limits_state
            .ledger
            .checkpoint_secs_max
            .div_ceil(2)
            .clamp(1, 60);
        let mut ledger_tick = tokio::time::interval(Duration::from_secs(lag));
        let mut erasure_round = tokio::time::interval(erasure::ERASURE_SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = every_minute.tick() => {
                    limits_state.limits.forget_idle();
                    if let Err(error) = retention::sweep(&limits_state).await {
                        tracing::error!(%error, "retention sweep failed");
                    }
                    if let Err(error) = placement::reconcile_consents(&limits_state).await {
                        tracing::error!(%error, "consent reconciliation failed");
                    }
                }
                _ = ledger_tick.tick() => {
                    let now = limits_state.now_ms();
                    if let Err(error) = limits_state
                        .store
                        .ledger_checkpoint(limits_state.ledger.clone(), now)
                        .await
                    {
                        tracing::error!(%error, "signing the ledger's tail failed");
                    }
                }
                _ = erasure_round.tick() => erasure::housekeeping(&limits_state).await,
            }
            if let Err(error) = deletion::finish_deletions(&limits_state).await {
                tracing::error!(%error, "finishing interrupted deletions failed");
            }
        }
    });
    Ok(ServerHandle {
        addr,
        handle,
        task,
        housekeeping,
    })
}
