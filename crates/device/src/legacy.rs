//! The 2014 phone's account endpoint, "hosted in cn-beijing", and the phone's client of it.
//!
//! The endpoint is part of the simulator: one plain HTTP and one HTTPS listener on loopback that
//! answer every request with a small JSON acknowledgement and record what they received. Its host
//! name, [`LEGACY_HOST`], is under `.test` (RFC 2606): the client connects to the listener's
//! address and names the host in the Host header and, over TLS, in SNI, so no DNS is involved.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use serde::Serialize;
use sovereign_crypto::LocalCa;
use tokio::sync::broadcast;

use crate::DeviceError;
use crate::journal::{Journal, Needles, RequestRecord};
use crate::tls::{KeyLogFile, client_config, network_error};

/// The account endpoint's host name.
pub const LEGACY_HOST: &str = "account.cn-beijing.legacy.test";
/// The region the endpoint stands for.
pub const LEGACY_REGION: &str = "cn-beijing";
/// Most requests the endpoint keeps; later ones are counted, not kept.
pub const LEGACY_RECORDS_MAX: usize = 10_000;
/// Largest request body the endpoint accepts.
pub const LEGACY_BODY_BYTES_MAX: usize = 64 * 1024;
/// How long the phone waits for the endpoint.
const LEGACY_TIMEOUT_SECS: u64 = 30;
/// Requests the live feed holds for a slow reader before it skips.
const FEED_CAPACITY: usize = 1024;

/// One request the endpoint received.
#[derive(Debug, Clone, Serialize)]
pub struct LegacyRecord {
    /// Arrival order, from 0.
    pub seq: usize,
    pub tls: bool,
    pub method: String,
    pub path: String,
    /// The Host header.
    pub host: String,
    pub body: String,
}

#[derive(Clone)]
struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
    feed: broadcast::Sender<LegacyRecord>,
}

#[derive(Default)]
struct RecorderInner {
    records: Vec<LegacyRecord>,
    received: usize,
}

#[derive(Clone)]
struct Listener {
    recorder: Recorder,
    tls: bool,
}

async fn record(
    State(listener): State<Listener>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], &'static str) {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Ok(mut inner) = listener.recorder.inner.lock() {
        let record = LegacyRecord {
            seq: inner.received,
            tls: listener.tls,
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            host,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        inner.received += 1;
        // Nobody listening to the feed is fine.
        let _ = listener.recorder.feed.send(record.clone());
        if inner.records.len() < LEGACY_RECORDS_MAX {
            inner.records.push(record);
        }
    }
    (
        [("content-type", "application/json")],
        "{\"code\":0,\"result\":\"ok\"}",
    )
}

/// The endpoint, running. Dropping it stops both listeners.
pub struct LegacyEndpoint {
    http: SocketAddr,
    https: SocketAddr,
    ca_pem: String,
    recorder: Recorder,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LegacyEndpoint {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LegacyEndpoint {
    /// Starts the plain HTTP listener on `http` and the HTTPS one on `https` (port 0 picks a
    /// free port), with a fresh CA whose certificate names [`LEGACY_HOST`].
    ///
    /// # Errors
    /// When an address cannot be bound or the certificate cannot be made.
    pub async fn start(http: SocketAddr, https: SocketAddr) -> Result<LegacyEndpoint, DeviceError> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| DeviceError::Legacy(format!("{what}: {e}"));
        let (ca, _) = LocalCa::generate("Legacy account endpoint CA (simulator)")
            .map_err(|e| fail("making its CA", &e))?;
        let leaf = ca
            .issue_server_cert(&[LEGACY_HOST])
            .map_err(|e| fail("making its certificate", &e))?;
        let server_config = server_config(&leaf.cert_pem, ca.cert_pem(), &leaf.key_pem)?;
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let recorder = Recorder {
            inner: Arc::new(Mutex::new(RecorderInner::default())),
            feed,
        };
        let router = |tls: bool| {
            Router::new()
                .fallback(record)
                .layer(DefaultBodyLimit::max(LEGACY_BODY_BYTES_MAX))
                .with_state(Listener {
                    recorder: recorder.clone(),
                    tls,
                })
        };
        let plain = tokio::net::TcpListener::bind(http)
            .await
            .map_err(|e| fail(&format!("binding {http}"), &e))?;
        let plain_addr = plain.local_addr().map_err(|e| fail("local address", &e))?;
        let secure = std::net::TcpListener::bind(https)
            .map_err(|e| fail(&format!("binding {https}"), &e))?;
        secure
            .set_nonblocking(true)
            .map_err(|e| fail("listener", &e))?;
        let secure_addr = secure.local_addr().map_err(|e| fail("local address", &e))?;
        let plain_router = router(false);
        let plain_task = tokio::spawn(async move {
            if let Err(error) = axum::serve(plain, plain_router).await {
                tracing::warn!(%error, "legacy endpoint (http) stopped");
            }
        });
        let rustls_config =
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config));
        let secure_server = axum_server::from_tcp_rustls(secure, rustls_config)
            .map_err(|e| fail("TLS listener", &e))?;
        let secure_router = router(true);
        let secure_task = tokio::spawn(async move {
            if let Err(error) = secure_server.serve(secure_router.into_make_service()).await {
                tracing::warn!(%error, "legacy endpoint (https) stopped");
            }
        });
        Ok(LegacyEndpoint {
            http: plain_addr,
            https: secure_addr,
            ca_pem: ca.cert_pem().to_owned(),
            recorder,
            tasks: vec![plain_task, secure_task],
        })
    }

    /// The plain HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The HTTPS listener's address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// The CA that signed the HTTPS listener's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the phone finds this endpoint.
    pub fn target(&self) -> LegacyTarget {
        LegacyTarget {
            http: self.http,
            https: self.https,
            ca_pem: self.ca_pem.as_bytes().to_vec(),
        }
    }

    /// What it received so far, in arrival order (at most [`LEGACY_RECORDS_MAX`]).
    pub fn records(&self) -> Vec<LegacyRecord> {
        self.recorder
            .inner
            .lock()
            .map(|inner| inner.records.clone())
            .unwrap_or_default()
    }

    /// Every request as it arrives.
    pub fn subscribe(&self) -> broadcast::Receiver<LegacyRecord> {
        self.recorder.feed.subscribe()
    }
}

fn server_config(
    cert_pem: &str,
    ca_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, DeviceError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |e: &dyn std::fmt::Display| DeviceError::Legacy(format!("TLS configuration: {e}"));
    let chain = CertificateDer::pem_slice_iter(format!("{cert_pem}{ca_pem}").as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| fail(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| fail(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Where a phone finds a legacy endpoint: its two listeners and the CA of the HTTPS one.
#[derive(Debug, Clone)]
pub struct LegacyTarget {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub ca_pem: Vec<u8>,
}

/// The 2014 phone's client of its account endpoint: cleartext HTTP before the update, HTTPS
/// after it, always to [`LEGACY_HOST`].
pub(crate) struct LegacyClient {
    plain: reqwest::Client,
    secure: reqwest::Client,
    target: LegacyTarget,
    journal: Journal,
    needles: Arc<Needles>,
}

impl LegacyClient {
    pub(crate) fn new(
        target: LegacyTarget,
        key_log: Option<Arc<KeyLogFile>>,
        journal: Journal,
        needles: Needles,
    ) -> Result<LegacyClient, DeviceError> {
        let build = |builder: reqwest::ClientBuilder, addr: SocketAddr| {
            builder
                .http1_only()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(LEGACY_TIMEOUT_SECS))
                .user_agent("Dalvik/1.6.0 (Linux; U; Android 4.4.4; legacy-2014 simulator)")
                // No DNS: the .test name is the listener's address.
                .resolve(LEGACY_HOST, addr)
                .build()
                .map_err(|e| DeviceError::Legacy(format!("client: {e}")))
        };
        let tls = client_config(&target.ca_pem, "the legacy endpoint's CA", key_log)?;
        let plain = build(reqwest::Client::builder(), target.http)?;
        let secure = build(
            reqwest::Client::builder().use_preconfigured_tls(tls),
            target.https,
        )?;
        Ok(LegacyClient {
            plain,
            secure,
            target,
            journal,
            needles: Arc::new(needles),
        })
    }

    /// Posts `body` (JSON) to `path` on the endpoint, over TLS or not.
    pub(crate) async fn post(&self, path: &str, body: &str, tls: bool) -> Result<u16, DeviceError> {
        let (client, scheme, addr) = if tls {
            (&self.secure, "https", self.target.https)
        } else {
            (&self.plain, "http", self.target.http)
        };
        let url = format!("{scheme}://{LEGACY_HOST}:{}{path}", addr.port());
        let sent = format!("POST {url}\ncontent-type: application/json\n\n{body}").into_bytes();
        let mut record = RequestRecord {
            method: "POST".to_owned(),
            url: url.clone(),
            host: LEGACY_HOST.to_owned(),
            connect: addr.to_string(),
            tls,
            status: None,
            elapsed_ms: None,
            identifiers: self.needles.find(&sent),
            sent,
        };
        let result = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                record.status = Some(status);
                self.journal.push(record);
                Ok(status)
            }
            Err(error) => {
                self.journal.push(record);
                Err(network_error(&url, &error))
            }
        }
    }
}
