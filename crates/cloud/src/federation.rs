//! How regions talk to each other. Each region has its own Ed25519 identity (its private key
//! never leaves it); a request from one region to another carries the sender's signature over
//! the method, path, time and body digest, and the receiver checks it against the sender's public
//! key. Nothing else authenticates a region.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderMap;
use base64::Engine;
use sovereign_crypto::{PeerIdentity, digest_sha256, hex, peer_signature_valid};
use sovereign_model::{RegionId, RegionsConfig};

use crate::error::ApiError;
use crate::keys::write_private;

pub const HEADER_FROM: &str = "sovereign-from-region";
pub const HEADER_TIME: &str = "sovereign-time-ms";
pub const HEADER_SIGNATURE: &str = "sovereign-signature";
/// How far a peer's clock may be from ours before its requests are refused as replays.
pub const PEER_CLOCK_SKEW_MS_MAX: i64 = 5 * 60 * 1000;
/// Longest a forward to another region may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where every region is and how to recognise it: public information only.
#[derive(Debug, Clone)]
pub struct PeerTable {
    peers: BTreeMap<RegionId, Peer>,
}

#[derive(Debug, Clone)]
struct Peer {
    url: String,
    public_key: Option<Vec<u8>>,
}

fn public_key_path(data_dir: &Path, region: &RegionId) -> std::path::PathBuf {
    data_dir.join("keys").join(format!("{region}.peer.pub"))
}

/// Loads a region's signing identity from `DIR/keys/`, creating it (and publishing its public
/// key beside it) on first start.
///
/// # Errors
/// When the key file cannot be read, written or parsed.
pub fn load_or_create_identity(data_dir: &Path, region: &RegionId) -> anyhow::Result<PeerIdentity> {
    let dir = data_dir.join("keys");
    std::fs::create_dir_all(&dir)?;
    let private = dir.join(format!("{region}.peer.pk8"));
    let identity = if private.exists() {
        let bytes =
            std::fs::read(&private).with_context(|| format!("reading {}", private.display()))?;
        PeerIdentity::from_pkcs8(&bytes)
            .with_context(|| format!("parsing {}", private.display()))?
    } else {
        let (identity, pkcs8) = PeerIdentity::generate()?;
        write_private(&private, &pkcs8)?;
        identity
    };
    std::fs::write(public_key_path(data_dir, region), identity.public_key())?;
    Ok(identity)
}

impl PeerTable {
    /// Every configured region, at the URL given in `urls` if it runs in this process, else at its
    /// configured address; with its published public key if there is one.
    pub fn load(
        data_dir: &Path,
        regions: &RegionsConfig,
        urls: &BTreeMap<RegionId, String>,
    ) -> PeerTable {
        let peers = regions
            .regions
            .iter()
            .map(|r| {
                let url = urls
                    .get(&r.id)
                    .cloned()
                    .unwrap_or_else(|| format!("https://{}", r.listen));
                let public_key = std::fs::read(public_key_path(data_dir, &r.id)).ok();
                (r.id.clone(), Peer { url, public_key })
            })
            .collect();
        PeerTable { peers }
    }

    pub fn url(&self, region: &RegionId) -> Option<&str> {
        self.peers.get(region).map(|p| p.url.as_str())
    }
}

/// One region's side of the federation: its own identity and everyone's public table.
pub struct Federation {
    me: RegionId,
    identity: PeerIdentity,
    peers: Arc<PeerTable>,
    client: reqwest::Client,
}

fn signed_text(
    from: &str,
    to: &str,
    method: &str,
    path: &str,
    time_ms: i64,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "sovereign-federation-v1\n{from}\n{to}\n{method}\n{path}\n{time_ms}\n{}",
        hex(&digest_sha256(body))
    )
    .into_bytes()
}

impl Federation {
    /// # Errors
    /// When the CA certificate cannot be loaded into the HTTP client.
    pub fn new(
        me: RegionId,
        identity: PeerIdentity,
        peers: Arc<PeerTable>,
        ca_pem: &[u8],
    ) -> anyhow::Result<Federation> {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?)
            .timeout(FORWARD_TIMEOUT)
            .build()?;
        Ok(Federation {
            me,
            identity,
            peers,
            client,
        })
    }

    pub fn url_of(&self, region: &RegionId) -> Option<&str> {
        self.peers.url(region)
    }

    /// Sends a signed JSON request to another region; returns its status and body.
    ///
    /// # Errors
    /// [`ApiError::RegionUnavailable`] when the region is unknown or does not answer.
    pub async fn post(
        &self,
        to: &RegionId,
        path: &str,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(u16, serde_json::Value), ApiError> {
        let unavailable = || ApiError::RegionUnavailable(to.to_string());
        let url = self.peers.url(to).ok_or_else(unavailable)?;
        let bytes = serde_json::to_vec(body).map_err(ApiError::internal)?;
        let signature = self.identity.sign(&signed_text(
            self.me.as_str(),
            to.as_str(),
            "POST",
            path,
            now_ms,
            &bytes,
        ));
        let response = self
            .client
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .header(HEADER_FROM, self.me.as_str())
            .header(HEADER_TIME, now_ms.to_string())
            .header(
                HEADER_SIGNATURE,
                base64::engine::general_purpose::STANDARD.encode(signature),
            )
            .body(bytes)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, region = %to, "forward to region failed");
                unavailable()
            })?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }

    /// Checks that a request to `path` came from a peer region; returns which.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a missing, unknown, stale or bad signature.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<RegionId, ApiError> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(ApiError::Unauthorized)
        };
        let from = RegionId::parse(header(HEADER_FROM)?).map_err(|_| ApiError::Unauthorized)?;
        let time_ms: i64 = header(HEADER_TIME)?
            .parse()
            .map_err(|_| ApiError::Unauthorized)?;
        if (now_ms - time_ms).abs() > PEER_CLOCK_SKEW_MS_MAX || from == self.me {
            return Err(ApiError::Unauthorized);
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(header(HEADER_SIGNATURE)?)
            .map_err(|_| ApiError::Unauthorized)?;
        let public_key = self
            .peers
            .peers
            .get(&from)
            .and_then(|p| p.public_key.as_deref())
            .ok_or(ApiError::Unauthorized)?;
        let text = signed_text(from.as_str(), self.me.as_str(), method, path, time_ms, body);
        if peer_signature_valid(public_key, &text, &signature) {
            Ok(from)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
