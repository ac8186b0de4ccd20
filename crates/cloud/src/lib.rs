//! Sovereign's cloud: accounts, consent, cloud messaging and backup for one region, with every
//! privacy promise enforced where the data is stored.
//!
//! [`app`] builds the HTTP service of a region; [`start`] serves it over TLS. Tests start the
//! real server on port 0 and speak HTTPS to it:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use sovereign_cloud::{Policies, RegionOptions, RegionState};
//! use sovereign_model::RegionId;
//!
//! let options = RegionOptions::new("./data".into(), RegionId::parse("in-mumbai")?, Policies::embedded()?);
//! let state = RegionState::open(options).await?;
//! let server = sovereign_cloud::start(state, "127.0.0.1:0".parse()?, "./data".as_ref()).await?;
//! println!("https://{}", server.addr());
//! # Ok(()) }
//! ```

pub mod blobs;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod extract;
pub mod hub;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod retention;
pub mod routes;
pub mod sms;
pub mod state;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
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
        .merge(routes::consents::router())
        .merge(routes::messages::router())
        .merge(routes::backup::router())
        .merge(routes::health::router())
        .merge(routes::ops::router())
        .merge(routes::dashboard::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async {
            ApiError::invalid("method", "this path does not accept this method")
        })
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
    let method = request.method().to_string();
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

/// Serves a region over HTTPS on `listen` (port 0 picks a free port), with the certificate from
/// `data_dir/tls/` (created on first start).
///
/// # Errors
/// When the address cannot be bound or the TLS files cannot be loaded or created.
pub async fn start(
    state: AppState,
    listen: SocketAddr,
    data_dir: &Path,
) -> anyhow::Result<ServerHandle> {
    let tls = tls::load_or_create(data_dir)?;
    let config = axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(
        tls.server_config()
            .context("loading the server certificate")?,
    ));
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let state_for_housekeeping = state.clone();
    let server = axum_server::from_tcp_rustls(listener, config)?
        .handle(handle.clone())
        .serve(app(state).into_make_service_with_connect_info::<SocketAddr>());
    let task = tokio::spawn(server);
    let limits_state = state_for_housekeeping;
    let housekeeping = tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            limits_state.limits.forget_idle();
            if let Err(error) = retention::sweep(&limits_state).await {
                tracing::error!(%error, "retention sweep failed");
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
