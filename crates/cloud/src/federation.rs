//! How sites talk to each other. Each site has its own Ed25519 identity (its private key never
//! leaves it) and knows the others only from the federation file ([`crate::sites`]): their public
//! URL, pinned public key and the CA that signs their TLS certificate.
//!
//! A request from one site to another is signed over the sender, the receiving site, the method,
//! path, time, a random nonce and the body digest. The receiver refuses it unless it is addressed
//! to itself, from a pinned peer, within [`PEER_REQUEST_WINDOW_MS`] of its clock, and its nonce
//! is new (a bounded replay cache holds the nonces of the window). The answer is signed by the
//! answering site over the caller, path, nonce, status and body digest, and the caller refuses an
//! answer that is not signed by the pinned key of the site it called. Every check fails closed:
//! an unknown peer, a missing key or a bad signature is a refusal. A call has a bounded deadline
//! ([`PEER_CONNECT_TIMEOUT`], [`PEER_CALL_TIMEOUT`]) so a dead site fails fast.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sovereign_crypto::{PeerIdentity, digest_sha256, hex, peer_signature_valid, random_bytes};
use sovereign_model::{RegionId, RegionsConfig};

use crate::error::ApiError;
use crate::keys::write_private;
use crate::state::AppState;

pub const HEADER_FROM: &str = "sovereign-from-region";
pub const HEADER_TO: &str = "sovereign-to-region";
pub const HEADER_TIME: &str = "sovereign-time-ms";
pub const HEADER_NONCE: &str = "sovereign-nonce";
pub const HEADER_SIGNATURE: &str = "sovereign-signature";
pub const HEADER_ANSWER_SIGNATURE: &str = "sovereign-answer-signature";
/// How far a peer request's time may be from ours. Short, because every nonce of the window must
/// be remembered to refuse replays; clocks of servers are NTP-synchronised to well within this.
pub const PEER_REQUEST_WINDOW_MS: i64 = 30 * 1000;
/// Nonces remembered at most. Above this (more than a few thousand peer requests a second) new
/// requests are refused rather than letting replays in.
pub const REPLAY_CACHE_ENTRIES_MAX: usize = 100_000;
/// Bytes of a request nonce (sent as hex).
pub const NONCE_BYTES: usize = 16;
/// Longest an answer from a peer may be; the caller refuses a longer one.
pub const PEER_ANSWER_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest the TCP and TLS set-up with a peer may take: a site that is down fails here.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a whole call to a peer (connect, request, answer) may take.
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where every site is and how to recognise it: public information only.
#[derive(Debug, Clone, Default)]
pub struct PeerTable {
    peers: BTreeMap<RegionId, Peer>,
}

/// One site as the federation file names it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub url: String,
    /// The pinned Ed25519 public key; `None` refuses everything from and to the site.
    pub public_key: Option<Vec<u8>>,
    /// The CA (PEM) that signs the site's TLS certificate; `None` uses the operator's bundle.
    pub tls_ca: Option<String>,
}

fn private_key_path(data_dir: &Path, region: &RegionId) -> std::path::PathBuf {
    data_dir.join("keys").join(format!("{region}.peer.pk8"))
}

/// Loads a site's signing identity from `DIR/keys/`, creating it on first start. Its public key
/// is published through the federation file (`sovereign federation publish`), never read from
/// another site's disk.
///
/// # Errors
/// When the key file cannot be read, written or parsed.
pub fn load_or_create_identity(data_dir: &Path, region: &RegionId) -> anyhow::Result<PeerIdentity> {
    let dir = data_dir.join("keys");
    std::fs::create_dir_all(&dir)?;
    let private = private_key_path(data_dir, region);
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
    std::fs::write(
        dir.join(format!("{region}.peer.pub")),
        identity.public_key(),
    )?;
    Ok(identity)
}

impl PeerTable {
    /// Every configured region at its configured address, with no key pinned: a site without a
    /// federation file neither accepts nor makes peer calls.
    pub fn unpinned(regions: &RegionsConfig) -> PeerTable {
        let peers = regions
            .regions
            .iter()
            .map(|r| {
                let peer = Peer {
                    url: format!("https://{}", r.listen),
                    public_key: None,
                    tls_ca: None,
                };
                (r.id.clone(), peer)
            })
            .collect();
        PeerTable { peers }
    }

    pub fn from_peers(peers: BTreeMap<RegionId, Peer>) -> PeerTable {
        PeerTable { peers }
    }

    /// Kept for callers of the one-process layout: the configured addresses, overridden by
    /// `urls`, and no key pinned (keys come only from the federation file).
    pub fn load(
        _data_dir: &Path,
        regions: &RegionsConfig,
        urls: &BTreeMap<RegionId, String>,
    ) -> PeerTable {
        let mut table = PeerTable::unpinned(regions);
        for (id, url) in urls {
            if let Some(peer) = table.peers.get_mut(id) {
                peer.url.clone_from(url);
            }
        }
        table
    }

    pub fn url(&self, region: &RegionId) -> Option<&str> {
        self.peers.get(region).map(|p| p.url.as_str())
    }

    pub fn get(&self, region: &RegionId) -> Option<&Peer> {
        self.peers.get(region)
    }
}

/// One site's side of the federation: its own identity and everyone's public table.
pub struct Federation {
    me: RegionId,
    identity: PeerIdentity,
    peers: Arc<PeerTable>,
    /// One HTTP client per peer, trusting only the CA pinned for that peer (so one site's CA
    /// cannot vouch for another site's address). A peer without a usable CA has none.
    clients: BTreeMap<RegionId, reqwest::Client>,
    replay: Mutex<ReplayCache>,
    /// Longest answer taken from a peer: [`PEER_ANSWER_BYTES_MAX`] (smaller in tests).
    answer_bytes_max: usize,
}

/// Nonces seen within the window, with the time after which each may be forgotten.
#[derive(Default)]
struct ReplayCache {
    expires_ms: HashMap<String, i64>,
}

impl ReplayCache {
    /// Records `nonce`; false when it was seen before or the cache is full.
    fn insert(&mut self, nonce: &str, now_ms: i64) -> bool {
        if self.expires_ms.contains_key(nonce) {
            return false;
        }
        if self.expires_ms.len() >= REPLAY_CACHE_ENTRIES_MAX {
            self.expires_ms.retain(|_, expires| *expires >= now_ms);
            if self.expires_ms.len() >= REPLAY_CACHE_ENTRIES_MAX {
                return false;
            }
        }
        // A request is accepted while its time is within the window of ours, so its nonce must
        // be remembered until the latest moment that could still be true.
        self.expires_ms
            .insert(nonce.to_owned(), now_ms + 2 * PEER_REQUEST_WINDOW_MS);
        true
    }
}

struct RequestText<'a> {
    from: &'a str,
    to: &'a str,
    method: &'a str,
    path: &'a str,
    time_ms: i64,
    nonce: &'a str,
    body: &'a [u8],
}

impl RequestText<'_> {
    fn bytes(&self) -> Vec<u8> {
        format!(
            "sovereign-federation-v2\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.from,
            self.to,
            self.method,
            self.path,
            self.time_ms,
            self.nonce,
            hex(&digest_sha256(self.body))
        )
        .into_bytes()
    }
}

fn answer_text(
    answerer: &str,
    caller: &str,
    path: &str,
    nonce: &str,
    status: u16,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "sovereign-federation-answer-v1\n{answerer}\n{caller}\n{path}\n{nonce}\n{status}\n{}",
        hex(&digest_sha256(body))
    )
    .into_bytes()
}

fn valid_nonce(nonce: &str) -> bool {
    nonce.len() == 2 * NONCE_BYTES && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A peer's answer body, read as it arrives and given up (`None`) as soon as it passes
/// `limit_bytes`: a peer answering without end, or with a false length, costs at most this much
/// memory, never the whole of what it sends before the deadline.
async fn read_bounded(
    mut response: reqwest::Response,
    limit_bytes: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n > limit_bytes as u64)
    {
        return Ok(None);
    }
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if answer.len() + chunk.len() > limit_bytes {
            return Ok(None);
        }
        answer.extend_from_slice(&chunk);
    }
    Ok(Some(answer))
}

fn peer_client(ca_pem: &[u8]) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(PEER_CONNECT_TIMEOUT)
        .timeout(PEER_CALL_TIMEOUT)
        // A peer's answer is the answer: a redirect would send the signed request elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    for cert in reqwest::Certificate::from_pem_bundle(ca_pem)? {
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder.build()?)
}

impl Federation {
    /// `ca_pem` is the operator's CA bundle for peers whose entry pins no CA of its own (empty:
    /// such peers cannot be reached).
    ///
    /// # Errors
    /// When a CA certificate cannot be loaded into an HTTP client.
    pub fn new(
        me: RegionId,
        identity: PeerIdentity,
        peers: Arc<PeerTable>,
        ca_pem: &[u8],
    ) -> anyhow::Result<Federation> {
        let mut clients = BTreeMap::new();
        for (id, peer) in &peers.peers {
            let ca = peer.tls_ca.as_deref().map_or(ca_pem, str::as_bytes);
            if ca.is_empty() || *id == me {
                continue;
            }
            let client = peer_client(ca).with_context(|| format!("the TLS CA of site {id}"))?;
            clients.insert(id.clone(), client);
        }
        Ok(Federation {
            me,
            identity,
            peers,
            clients,
            replay: Mutex::new(ReplayCache::default()),
            answer_bytes_max: PEER_ANSWER_BYTES_MAX,
        })
    }

    pub fn me(&self) -> &RegionId {
        &self.me
    }

    pub fn url_of(&self, region: &RegionId) -> Option<&str> {
        self.peers.url(region)
    }

    /// Sends a signed JSON request to another site; returns its status and body once the answer's
    /// signature by that site checks out.
    ///
    /// # Errors
    /// [`ApiError::RegionUnavailable`] when the site is unknown, has no pinned key, does not
    /// answer within [`PEER_CALL_TIMEOUT`], or its answer is not signed by its pinned key.
    pub async fn post(
        &self,
        to: &RegionId,
        path: &str,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(u16, serde_json::Value), ApiError> {
        self.post_within(to, path, body, now_ms, PEER_CALL_TIMEOUT)
            .await
    }

    /// [`Federation::post`] with another deadline than [`PEER_CALL_TIMEOUT`]: for the calls of a
    /// move, which carry a user's data (a photo can take longer than 5 s on a slow WAN link).
    ///
    /// # Errors
    /// As [`Federation::post`].
    pub async fn post_within(
        &self,
        to: &RegionId,
        path: &str,
        body: &serde_json::Value,
        now_ms: i64,
        deadline: Duration,
    ) -> Result<(u16, serde_json::Value), ApiError> {
        let unavailable = || ApiError::RegionUnavailable(to.to_string());
        let peer = self.peers.get(to).ok_or_else(unavailable)?;
        let (Some(public_key), Some(client)) = (peer.public_key.as_deref(), self.clients.get(to))
        else {
            tracing::warn!(region = %to, "no pinned key or TLS trust for this site");
            return Err(unavailable());
        };
        let bytes = serde_json::to_vec(body).map_err(ApiError::internal)?;
        let (headers, nonce) = self.request_headers(to, "POST", path, &bytes, now_ms)?;
        let call = async {
            let response = client
                .post(format!("{}{path}", peer.url))
                .timeout(deadline)
                .header("content-type", "application/json")
                .headers(headers)
                .body(bytes)
                .send()
                .await?;
            let status = response.status().as_u16();
            let signature = response
                .headers()
                .get(HEADER_ANSWER_SIGNATURE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok());
            let answer = read_bounded(response, self.answer_bytes_max).await?;
            Ok::<_, reqwest::Error>((status, signature, answer))
        };
        // reqwest's own timeout covers the same ground; this one also bounds anything it might
        // not (a body that trickles in), so the deadline holds whatever the peer does.
        let outcome = tokio::time::timeout(deadline, call).await;
        let (status, signature, answer) = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                tracing::warn!(%error, region = %to, "call to site failed");
                return Err(unavailable());
            }
            Err(_) => {
                tracing::warn!(region = %to, "call to site passed its deadline");
                return Err(unavailable());
            }
        };
        let Some(answer) = answer else {
            tracing::warn!(region = %to, "site's answer is too long");
            return Err(unavailable());
        };
        let expected = answer_text(to.as_str(), self.me.as_str(), path, &nonce, status, &answer);
        if !signature.is_some_and(|s| peer_signature_valid(public_key, &expected, &s)) {
            tracing::warn!(region = %to, status, "site's answer is not signed by its pinned key");
            return Err(unavailable());
        }
        let body = serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }

    /// The headers that sign a request from this site to `to`, and the request's fresh nonce.
    ///
    /// # Errors
    /// When the random generator fails.
    pub fn request_headers(
        &self,
        to: &RegionId,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<(HeaderMap, String), ApiError> {
        let nonce = hex(&random_bytes::<NONCE_BYTES>().map_err(ApiError::internal)?);
        let text = RequestText {
            from: self.me.as_str(),
            to: to.as_str(),
            method,
            path,
            time_ms: now_ms,
            nonce: &nonce,
            body,
        };
        let signature = base64_encode(&self.identity.sign(&text.bytes()));
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (HEADER_FROM, self.me.as_str()),
            (HEADER_TO, to.as_str()),
            (HEADER_TIME, &now_ms.to_string()),
            (HEADER_NONCE, &nonce),
            (HEADER_SIGNATURE, &signature),
        ] {
            headers.insert(name, value.parse().map_err(ApiError::internal)?);
        }
        Ok((headers, nonce))
    }

    /// Checks that a request to `path` came from a peer site, addressed to this one, within the
    /// window and not seen before; returns which site.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a missing, unknown, stale, replayed, misaddressed or bad
    /// signature.
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
        let nonce = header(HEADER_NONCE)?;
        let addressed_here = header(HEADER_TO)? == self.me.as_str();
        let in_window = now_ms
            .checked_sub(time_ms)
            .is_some_and(|d| d.abs() <= PEER_REQUEST_WINDOW_MS);
        if !addressed_here || !in_window || !valid_nonce(nonce) || from == self.me {
            return Err(ApiError::Unauthorized);
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(header(HEADER_SIGNATURE)?)
            .map_err(|_| ApiError::Unauthorized)?;
        let public_key = self
            .peers
            .get(&from)
            .and_then(|p| p.public_key.as_deref())
            .ok_or(ApiError::Unauthorized)?;
        let text = RequestText {
            from: from.as_str(),
            to: self.me.as_str(),
            method,
            path,
            time_ms,
            nonce,
            body,
        };
        if !peer_signature_valid(public_key, &text.bytes(), &signature) {
            return Err(ApiError::Unauthorized);
        }
        // Only a correctly signed request takes a place in the cache, so no one but a peer can
        // fill it.
        let fresh = self
            .replay
            .lock()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("replay cache poisoned")))?
            .insert(nonce, now_ms);
        if fresh {
            Ok(from)
        } else {
            tracing::warn!(region = %from, "refused a replayed peer request");
            Err(ApiError::Unauthorized)
        }
    }

    /// The signature this site puts on its answer to a peer request.
    fn sign_answer(
        &self,
        caller: &str,
        path: &str,
        nonce: &str,
        status: u16,
        body: &[u8],
    ) -> String {
        let text = answer_text(self.me.as_str(), caller, path, nonce, status, body);
        base64_encode(&self.identity.sign(&text))
    }
}

/// Middleware: signs every answer to a request that carries a peer nonce, so the caller can tell
/// that the answer comes from the site it pinned. Signing an answer to an unauthenticated request
/// gives nothing away: it is bound to the caller's random nonce, which no one else can reuse.
pub async fn sign_answers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    sign_answers_as(&state.federation, request, next).await
}

/// [`sign_answers`] with the given federation's key: for a server that answers peer requests
/// outside an [`AppState`] (the tests' stand-in sites).
pub async fn sign_answers_as(federation: &Federation, request: Request, next: Next) -> Response {
    let nonce = request
        .headers()
        .get(HEADER_NONCE)
        .and_then(|v| v.to_str().ok())
        .filter(|n| valid_nonce(n))
        .map(str::to_owned);
    let Some(nonce) = nonce else {
        return next.run(request).await;
    };
    let caller = request
        .headers()
        .get(HEADER_FROM)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, PEER_ANSWER_BYTES_MAX).await else {
        return ApiError::internal(anyhow::anyhow!("answer to a peer is too long")).into_response();
    };
    let signature = federation.sign_answer(&caller, &path, &nonce, parts.status.as_u16(), &bytes);
    if let Ok(value) = signature.parse() {
        parts.headers.insert(HEADER_ANSWER_SIGNATURE, value);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_790_000_000_000;

    fn region(id: &str) -> RegionId {
        RegionId::parse(id).unwrap()
    }

    struct Site {
        id: RegionId,
        identity: PeerIdentity,
    }

    fn site(id: &str) -> Site {
        Site {
            id: region(id),
            identity: PeerIdentity::generate().unwrap().0,
        }
    }

    fn table(sites: &[&Site], url: &str, ca: Option<&str>) -> Arc<PeerTable> {
        let peers = sites
            .iter()
            .map(|s| {
                let peer = Peer {
                    url: url.to_owned(),
                    public_key: Some(s.identity.public_key().to_vec()),
                    tls_ca: ca.map(str::to_owned),
                };
                (s.id.clone(), peer)
            })
            .collect();
        Arc::new(PeerTable::from_peers(peers))
    }

    fn federation(me: &str, identity: PeerIdentity, peers: Arc<PeerTable>) -> Federation {
        Federation::new(region(me), identity, peers, b"").unwrap()
    }

    /// Mumbai and Singapore, each with the other's key pinned; returns (mumbai, singapore).
    fn pair() -> (Federation, Federation) {
        let (mumbai, singapore) = (site("in-mumbai"), site("sg-singapore"));
        let peers = table(&[&mumbai, &singapore], "https://127.0.0.1:1", None);
        (
            federation("in-mumbai", mumbai.identity, peers.clone()),
            federation("sg-singapore", singapore.identity, peers),
        )
    }

    #[test]
    fn a_replayed_request_is_refused() {
        let (mumbai, singapore) = pair();
        let (headers, _) = mumbai
            .request_headers(&region("sg-singapore"), "POST", "/x", b"{}", NOW_MS)
            .unwrap();
        assert_eq!(
            singapore
                .verify(&headers, "POST", "/x", b"{}", NOW_MS)
                .unwrap(),
            region("in-mumbai")
        );
        assert!(matches!(
            singapore.verify(&headers, "POST", "/x", b"{}", NOW_MS + 1),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn a_request_for_another_site_is_refused() {
        let (mumbai, singapore) = pair();
        let (mut headers, _) = mumbai
            .request_headers(&region("cn-beijing"), "POST", "/x", b"{}", NOW_MS)
            .unwrap();
        assert!(
            singapore
                .verify(&headers, "POST", "/x", b"{}", NOW_MS)
                .is_err()
        );
        // Readdressing it breaks the signature.
        headers.insert(HEADER_TO, "sg-singapore".parse().unwrap());
        assert!(
            singapore
                .verify(&headers, "POST", "/x", b"{}", NOW_MS)
                .is_err()
        );
    }

    #[test]
    fn a_request_outside_the_window_is_refused() {
        let (mumbai, singapore) = pair();
        let to = region("sg-singapore");
        let (late, _) = mumbai
            .request_headers(&to, "POST", "/x", b"{}", NOW_MS)
            .unwrap();
        let now = NOW_MS + PEER_REQUEST_WINDOW_MS + 1;
        assert!(singapore.verify(&late, "POST", "/x", b"{}", now).is_err());
        let (just, _) = mumbai
            .request_headers(&to, "POST", "/x", b"{}", NOW_MS)
            .unwrap();
        let now = NOW_MS + PEER_REQUEST_WINDOW_MS;
        assert!(singapore.verify(&just, "POST", "/x", b"{}", now).is_ok());
    }

    #[test]
    fn unknown_or_unpinned_peers_and_bad_signatures_are_refused() {
        let (mumbai, stranger) = (site("in-mumbai"), site("cn-beijing"));
        let singapore = site("sg-singapore");
        let singapore_key = singapore.identity.public_key().to_vec();
        let mut peers: BTreeMap<RegionId, Peer> = BTreeMap::new();
        // Mumbai is listed without a key: it is refused like a stranger.
        peers.insert(
            region("in-mumbai"),
            Peer {
                url: "https://127.0.0.1:1".into(),
                public_key: None,
                tls_ca: None,
            },
        );
        peers.insert(
            region("sg-singapore"),
            Peer {
                url: "https://127.0.0.1:1".into(),
                public_key: Some(singapore_key),
                tls_ca: None,
            },
        );
        let receiver = federation(
            "sg-singapore",
            singapore.identity,
            Arc::new(PeerTable::from_peers(peers)),
        );
        let to = region("sg-singapore");
        for sender in [mumbai, stranger] {
            let peers = table(&[&sender], "https://127.0.0.1:1", None);
            let id = sender.id.to_string();
            let fed = federation(&id, sender.identity, peers);
            let (headers, _) = fed
                .request_headers(&to, "POST", "/x", b"{}", NOW_MS)
                .unwrap();
            assert!(
                receiver
                    .verify(&headers, "POST", "/x", b"{}", NOW_MS)
                    .is_err()
            );
        }
        // A body other than the one signed.
        let (a, b) = pair();
        let (headers, _) = a.request_headers(&to, "POST", "/x", b"{}", NOW_MS).unwrap();
        assert!(
            b.verify(&headers, "POST", "/x", b"{\"a\":1}", NOW_MS)
                .is_err()
        );
    }

    #[test]
    fn the_replay_cache_is_bounded() {
        let mut cache = ReplayCache::default();
        for i in 0..REPLAY_CACHE_ENTRIES_MAX {
            assert!(cache.insert(&i.to_string(), NOW_MS));
        }
        // Full of nonces still inside the window: refuse rather than forget one.
        assert!(!cache.insert("one more", NOW_MS));
        // Once they have aged out, there is room again.
        assert!(cache.insert("one more", NOW_MS + 2 * PEER_REQUEST_WINDOW_MS + 1));
        assert_eq!(cache.expires_ms.len(), 1);
    }

    /// What the stand-in peer puts on its answers.
    #[derive(Clone, Copy)]
    enum Answer {
        Unsigned,
        SignedBy(&'static str),
        ForAnotherNonce,
    }

    /// A TLS server on loopback answering every request `{"ok":true}`, signed as `answer` says by
    /// `identity`; returns its URL and its CA.
    async fn stand_in_peer(identity: Arc<PeerIdentity>, answer: Answer) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let tls = crate::tls::load_or_create(dir.path()).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap();
        let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
            tls.server_config().unwrap(),
        ));
        let handler = move |headers: HeaderMap, request: Request| {
            let identity = identity.clone();
            async move {
                let body = br#"{"ok":true}"#.to_vec();
                let nonce = match answer {
                    Answer::ForAnotherNonce => "0".repeat(2 * NONCE_BYTES),
                    _ => headers[HEADER_NONCE].to_str().unwrap().to_owned(),
                };
                let caller = headers[HEADER_FROM].to_str().unwrap();
                let text = answer_text(
                    "sg-singapore",
                    caller,
                    request.uri().path(),
                    &nonce,
                    200,
                    &body,
                );
                let mut response = Response::new(axum::body::Body::from(body));
                if !matches!(answer, Answer::Unsigned) {
                    let signature = base64_encode(&identity.sign(&text));
                    response
                        .headers_mut()
                        .insert(HEADER_ANSWER_SIGNATURE, signature.parse().unwrap());
                }
                response
            }
        };
        (
            serve_tls(axum::Router::new().fallback(handler), config, dir),
            ca,
        )
    }

    /// Serves `app` over TLS on a free loopback port (keeping `dir`, its TLS files, alive);
    /// returns its URL.
    fn serve_tls(
        app: axum::Router,
        config: axum_server::tls_rustls::RustlsConfig,
        dir: tempfile::TempDir,
    ) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let server = axum_server::from_tcp_rustls(listener, config).unwrap();
        tokio::spawn(async move {
            let _dir = dir;
            server.serve(app.into_make_service()).await
        });
        url
    }

    #[tokio::test]
    async fn only_an_answer_signed_by_the_pinned_key_for_this_request_is_taken() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let singapore = Arc::new(PeerIdentity::generate().unwrap().0);
        let impostor = Arc::new(PeerIdentity::generate().unwrap().0);
        let to = region("sg-singapore");
        for (answer, taken) in [
            (Answer::Unsigned, false),
            (Answer::SignedBy("impostor"), false),
            (Answer::ForAnotherNonce, false),
            (Answer::SignedBy("singapore"), true),
        ] {
            let signer = match answer {
                Answer::SignedBy("impostor") => impostor.clone(),
                _ => singapore.clone(),
            };
            let (url, ca) = stand_in_peer(signer, answer).await;
            let mumbai = site("in-mumbai");
            let mut peers = BTreeMap::new();
            peers.insert(
                to.clone(),
                Peer {
                    url,
                    public_key: Some(singapore.public_key().to_vec()),
                    tls_ca: Some(ca),
                },
            );
            let fed = federation(
                "in-mumbai",
                mumbai.identity,
                Arc::new(PeerTable::from_peers(peers)),
            );
            let result = fed
                .post(&to, "/internal/x", &serde_json::json!({}), NOW_MS)
                .await;
            match result {
                Ok((200, body)) if taken => assert_eq!(body["ok"], true),
                Err(ApiError::RegionUnavailable(_)) if !taken => {}
                other => panic!("{:?}: {other:?}", taken),
            }
        }
    }

    /// A TLS server on loopback answering every request with a body that never ends, counting
    /// the bytes it has handed to the connection; returns its URL and its CA.
    async fn endless_peer(sent: Arc<std::sync::atomic::AtomicUsize>) -> (String, String) {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let tls = crate::tls::load_or_create(dir.path()).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap();
        let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
            tls.server_config().unwrap(),
        ));
        let handler = move || {
            let sent = sent.clone();
            async move {
                let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
                let stream = futures_util::stream::repeat_with(move || {
                    sent.fetch_add(chunk.len(), Ordering::Relaxed);
                    Ok::<_, std::io::Error>(chunk.clone())
                });
                Response::new(axum::body::Body::from_stream(stream))
            }
        };
        (
            serve_tls(axum::Router::new().fallback(handler), config, dir),
            ca,
        )
    }

    #[tokio::test]
    async fn a_peer_answering_without_end_costs_at_most_the_answer_limit() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let sent = Arc::new(AtomicUsize::new(0));
        let (url, ca) = endless_peer(sent.clone()).await;
        let (mumbai, singapore) = (site("in-mumbai"), site("sg-singapore"));
        let mut fed = federation(
            "in-mumbai",
            mumbai.identity,
            table(&[&singapore], &url, Some(&ca)),
        );
        fed.answer_bytes_max = 1024 * 1024;
        let (to, body) = (region("sg-singapore"), serde_json::json!({}));
        let result = fed.post(&to, "/internal/x", &body, NOW_MS).await;
        assert!(
            matches!(result, Err(ApiError::RegionUnavailable(_))),
            "{result:?}"
        );
        // The caller stopped reading at the limit: the peer got rid of little more than that
        // (what the socket buffers and TLS records hold), not everything it could send until
        // the call's deadline.
        let sent = sent.load(Ordering::Relaxed);
        let slack = 16 * 1024 * 1024;
        assert!(
            sent <= fed.answer_bytes_max + slack,
            "the peer sent {sent} bytes to a caller that takes {}",
            fed.answer_bytes_max
        );
    }

    #[tokio::test]
    async fn a_call_to_a_site_that_does_not_answer_ends_at_the_deadline() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // Bound but never accepted: the kernel completes the TCP handshake and then nothing
        // answers, as with a site whose host hangs.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", silent.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        crate::tls::load_or_create(dir.path()).unwrap();
        let ca = std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap();
        let (mumbai, singapore) = (site("in-mumbai"), site("sg-singapore"));
        let fed = federation(
            "in-mumbai",
            mumbai.identity,
            table(&[&singapore], &url, Some(&ca)),
        );
        let (to, body) = (region("sg-singapore"), serde_json::json!({}));
        let call = fed.post(&to, "/internal/x", &body, NOW_MS);
        // Generous beside the 5 s deadline, and shorter than the 10 s the calls used to wait.
        let bound = PEER_CALL_TIMEOUT + PEER_CONNECT_TIMEOUT;
        let result = tokio::time::timeout(bound, call)
            .await
            .expect("the call outlived its deadline");
        assert!(matches!(result, Err(ApiError::RegionUnavailable(_))));
        drop(silent);
    }
}
