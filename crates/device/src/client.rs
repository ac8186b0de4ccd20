//! A typed client for the cloud's API (v1).
//!
//! Every request body is one of this module's private structs, each with exactly the fields the
//! API defines. None of them has a field for an IMEI, an IMSI or an ICCID, and the client has no
//! method that sends caller-supplied bytes except a photo, so a program using it cannot send a
//! hardware or subscriber identifier to the cloud by mistake.
//!
//! A `307` (the cloud's `wrong_region`) is followed with the same method and body, and the
//! client then keeps talking to the region it was sent to: the user's home region.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sovereign_model::ConsentScope;

use crate::DeviceError;
use crate::journal::{Journal, Needles, RequestRecord};
use crate::tls::{KeyLogFile, client_config, network_error};

/// Redirects followed for one request before giving up.
pub const REDIRECTS_MAX: usize = 3;
/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT_SECS: u64 = 30;
/// Largest answer read from the cloud.
pub const RESPONSE_BYTES_MAX: usize = 32 << 20;
/// Largest problem+json detail kept in an error.
const DETAIL_CHARS_MAX: usize = 500;

/// How the phone's clients do TLS: which CA they trust, and where session secrets are logged.
#[derive(Clone)]
pub struct TlsSettings {
    pub ca_pem: Vec<u8>,
    /// Names the CA in error messages (usually its path).
    pub ca_origin: String,
    pub key_log: Option<Arc<KeyLogFile>>,
}

impl TlsSettings {
    /// Reads the CA file and opens the key log, if any.
    ///
    /// # Errors
    /// When the CA file holds no certificate or the key log cannot be opened.
    pub fn from_files(
        ca: &std::path::Path,
        key_log: Option<&std::path::Path>,
    ) -> Result<TlsSettings, DeviceError> {
        let ca_pem = crate::tls::read_ca_file(ca)?;
        let key_log = key_log.map(KeyLogFile::open).transpose()?.map(Arc::new);
        Ok(TlsSettings {
            ca_pem,
            ca_origin: ca.display().to_string(),
            key_log,
        })
    }
}

/// A signed-in session: the bearer token, which is never printed.
#[derive(Clone, Deserialize)]
pub struct Session {
    token: String,
    pub expires_at: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SignUpStarted {
    pub verification_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub user_id: String,
    /// The home region that holds the account.
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub device_name: String,
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    pub user_id: String,
    pub region: String,
    pub phone: String,
    pub created_at: String,
    pub sessions: Vec<SessionInfo>,
}

/// What the user is told before granting a scope.
#[derive(Debug, Clone, Deserialize)]
pub struct Notice {
    pub version: u32,
    pub purpose: String,
    pub data_categories: Vec<String>,
    pub retention: String,
    /// The region whose data centre holds this scope's data.
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Consent {
    pub scope: String,
    pub granted: bool,
    #[serde(default)]
    pub granted_notice_version: Option<u32>,
    #[serde(default)]
    pub granted_at: Option<String>,
    pub notice: Notice,
}

#[derive(Debug, Clone, Deserialize)]
struct ConsentList {
    consents: Vec<Consent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Grant {
    pub scope: String,
    pub granted: bool,
    #[serde(default)]
    pub notice_version: Option<u32>,
    #[serde(default)]
    pub granted_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sent {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub id: String,
    #[serde(rename = "box")]
    pub box_name: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    pub body: String,
    pub sent_at: String,
    #[serde(default)]
    pub delivered_at: Option<String>,
    pub cursor: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub cursor: String,
}

/// A backed-up contact, as the API stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRecord {
    pub name: String,
    pub phones: Vec<String>,
}

/// A backed-up SMS, as the API stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsRecord {
    /// The other party's number.
    pub address: String,
    pub text: String,
    /// "inbox" or "sent".
    pub direction: String,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stored {
    pub id: String,
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Contacts,
    Sms,
    Photos,
}

impl BackupKind {
    pub const ALL: [BackupKind; 3] = [BackupKind::Contacts, BackupKind::Sms, BackupKind::Photos];

    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Contacts => "contacts",
            BackupKind::Sms => "sms",
            BackupKind::Photos => "photos",
        }
    }

    /// # Errors
    /// When `name` is not contacts, sms or photos.
    pub fn parse(name: &str) -> Result<BackupKind, DeviceError> {
        BackupKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name.trim())
            .ok_or_else(|| DeviceError::UnknownBackupKind(name.to_owned()))
    }

    pub fn scope(self) -> ConsentScope {
        match self {
            BackupKind::Contacts => ConsentScope::BackupContacts,
            BackupKind::Sms => ConsentScope::BackupSms,
            BackupKind::Photos => ConsentScope::BackupPhotos,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChangePage {
    pub items: Vec<serde_json::Value>,
    pub cursor: String,
}

// The request bodies: exactly the API's fields, and nothing a caller could add to.

#[derive(Serialize)]
struct SignUpBody<'a> {
    phone: &'a str,
    password: &'a str,
}

#[derive(Serialize)]
struct VerifyBody<'a> {
    verification_id: &'a str,
    code: &'a str,
}

#[derive(Serialize)]
struct SignInBody<'a> {
    phone: &'a str,
    password: &'a str,
    device_name: &'a str,
}

#[derive(Serialize)]
struct GrantBody {
    notice_version: u32,
}

#[derive(Serialize)]
struct SendBody<'a> {
    to: &'a str,
    body: &'a str,
    id: &'a str,
}

enum Body {
    None,
    Json(Vec<u8>),
    Bytes {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// The client of one phone. Cheap to clone; clones share the home region and the journal.
#[derive(Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    base: Arc<Mutex<Url>>,
    journal: Journal,
    needles: Arc<Needles>,
}

fn origin_of(url: &Url) -> Url {
    let mut origin = url.clone();
    origin.set_path("");
    origin.set_query(None);
    origin.set_fragment(None);
    origin
}

impl CloudClient {
    /// A client of the cloud at `base_url` (any region's `https://HOST:PORT`).
    ///
    /// # Errors
    /// When the URL is not an `https` URL, or the TLS settings are unusable.
    pub fn new(base_url: &str, tls: &TlsSettings) -> Result<CloudClient, DeviceError> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| DeviceError::BadUrl(base_url.to_owned(), e.to_string()))?;
        if base.scheme() != "https" {
            return Err(DeviceError::BadUrl(
                base_url.to_owned(),
                "the cloud is only spoken to over https".to_owned(),
            ));
        }
        if base.host_str().is_none() {
            return Err(DeviceError::BadUrl(
                base_url.to_owned(),
                "it has no host".to_owned(),
            ));
        }
        let config = client_config(&tls.ca_pem, &tls.ca_origin, tls.key_log.clone())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .user_agent(concat!("sovereign-device/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DeviceError::BadUrl(base_url.to_owned(), e.to_string()))?;
        Ok(CloudClient {
            http,
            base: Arc::new(Mutex::new(origin_of(&base))),
            journal: Journal::new(),
            needles: Arc::new(Needles::default()),
        })
    }

    /// Records every request in `journal`, noting which of `needles` each one carried.
    pub fn with_journal(mut self, journal: Journal, needles: Needles) -> CloudClient {
        self.journal = journal;
        self.needles = Arc::new(needles);
        self
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The region the client talks to now: the one it was given, or the home region a
    /// redirect sent it to.
    pub fn base_url(&self) -> String {
        self.base
            .lock()
            .map(|b| b.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    fn url(&self, path: &str) -> Result<Url, DeviceError> {
        let base = self.base_url();
        Url::parse(&format!("{base}{path}"))
            .map_err(|e| DeviceError::BadUrl(path.to_owned(), e.to_string()))
    }

    /// Sends one request, following `307`/`308` to another https origin of the same cloud, and
    /// returns the final status and body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&Session>,
        body: Body,
    ) -> Result<(StatusCode, Vec<u8>, String), DeviceError> {
        let mut url = self.url(path)?;
        for _ in 0..=REDIRECTS_MAX {
            let mut headers = HeaderMap::new();
            let (bytes, content_type) = match &body {
                Body::None => (Vec::new(), None),
                Body::Json(bytes) => (bytes.clone(), Some("application/json".to_owned())),
                Body::Bytes {
                    content_type,
                    bytes,
                } => (bytes.clone(), Some(content_type.clone())),
            };
            if let Some(content_type) = &content_type {
                let value = HeaderValue::from_str(content_type).map_err(|_| {
                    DeviceError::BadUrl(content_type.clone(), "not a header value".to_owned())
                })?;
                headers.insert(reqwest::header::CONTENT_TYPE, value);
            }
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers);
            if let Some(session) = token {
                request = request.bearer_auth(&session.token);
            }
            if !bytes.is_empty() || matches!(body, Body::Json(_)) {
                request = request.body(bytes.clone());
            }
            let mut sent = format!("{method} {url}\n").into_bytes();
            if let Some(content_type) = &content_type {
                sent.extend_from_slice(format!("content-type: {content_type}\n").as_bytes());
            }
            if token.is_some() {
                sent.extend_from_slice(b"authorization: Bearer <redacted>\n");
            }
            sent.extend_from_slice(b"\n");
            sent.extend_from_slice(&bytes);
            let mut record = RequestRecord {
                method: method.to_string(),
                url: url.to_string(),
                host: url.host_str().unwrap_or_default().to_owned(),
                connect: format!(
                    "{}:{}",
                    url.host_str().unwrap_or_default(),
                    url.port_or_known_default().unwrap_or(443)
                ),
                tls: url.scheme() == "https",
                status: None,
                elapsed_ms: None,
                identifiers: self.needles.find(&sent),
                sent,
            };
            let started = std::time::Instant::now();
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    self.journal.push(record);
                    return Err(network_error(url.as_str(), &error));
                }
            };
            let status = response.status();
            record.status = Some(status.as_u16());
            record.elapsed_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            self.journal.push(record);
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let answer = read_limited(response, url.as_str()).await?;
            if matches!(
                status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            ) {
                let Some(location) = location else {
                    return Err(api_error(url.as_str(), status, &answer));
                };
                let next = url
                    .join(&location)
                    .map_err(|e| DeviceError::RedirectRefused {
                        from: url.to_string(),
                        to: location.clone(),
                        reason: e.to_string(),
                    })?;
                if next.scheme() != "https" {
                    return Err(DeviceError::RedirectRefused {
                        from: url.to_string(),
                        to: next.to_string(),
                        reason: "it would leave TLS".to_owned(),
                    });
                }
                if let Ok(mut base) = self.base.lock() {
                    *base = origin_of(&next);
                }
                url = next;
                continue;
            }
            return Ok((status, answer, content_type));
        }
        Err(DeviceError::TooManyRedirects {
            url: self.url(path)?.to_string(),
            max: REDIRECTS_MAX,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&Session>,
        body: Body,
    ) -> Result<T, DeviceError> {
        let (status, answer, _) = self.send(method, path, token, body).await?;
        let url = format!("{}{path}", self.base_url());
        if !status.is_success() {
            return Err(api_error(&url, status, &answer));
        }
        serde_json::from_slice(&answer).map_err(|e| DeviceError::BadResponse {
            url,
            message: e.to_string(),
        })
    }

    async fn call_empty(
        &self,
        method: Method,
        path: &str,
        token: Option<&Session>,
    ) -> Result<(), DeviceError> {
        let (status, answer, _) = self.send(method, path, token, Body::None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(api_error(
                &format!("{}{path}", self.base_url()),
                status,
                &answer,
            ))
        }
    }

    /// `POST /v1/accounts`: starts a sign-up; the cloud texts a one-time code to `phone`.
    ///
    /// # Errors
    /// Network and TLS failures, and the cloud's refusals (`invalid_phone`, `rate_limited`, …).
    pub async fn sign_up(&self, phone: &str, password: &str) -> Result<SignUpStarted, DeviceError> {
        let body = json(&SignUpBody { phone, password })?;
        self.call(Method::POST, "/v1/accounts", None, body).await
    }

    /// `POST /v1/accounts/verify`: completes a sign-up with the texted code.
    ///
    /// # Errors
    /// As [`CloudClient::sign_up`], and `wrong_code`, `phone_taken`, `verification_expired`.
    pub async fn verify(&self, verification_id: &str, code: &str) -> Result<Account, DeviceError> {
        let body = json(&VerifyBody {
            verification_id,
            code,
        })?;
        self.call(Method::POST, "/v1/accounts/verify", None, body)
            .await
    }

    /// `POST /v1/sessions`: signs in on a device named `device_name`.
    ///
    /// # Errors
    /// As [`CloudClient::sign_up`], and `invalid_credentials`.
    pub async fn sign_in(
        &self,
        phone: &str,
        password: &str,
        device_name: &str,
    ) -> Result<Session, DeviceError> {
        let body = json(&SignInBody {
            phone,
            password,
            device_name,
        })?;
        self.call(Method::POST, "/v1/sessions", None, body).await
    }

    /// `GET /v1/me`.
    ///
    /// # Errors
    /// Network and TLS failures, and `unauthorized`.
    pub async fn me(&self, session: &Session) -> Result<Me, DeviceError> {
        self.call(Method::GET, "/v1/me", Some(session), Body::None)
            .await
    }

    /// `GET /v1/consents`: every scope, whether it is granted, and its notice.
    ///
    /// # Errors
    /// Network and TLS failures, and `unauthorized`.
    pub async fn consents(&self, session: &Session) -> Result<Vec<Consent>, DeviceError> {
        let list: ConsentList = self
            .call(Method::GET, "/v1/consents", Some(session), Body::None)
            .await?;
        Ok(list.consents)
    }

    /// `PUT /v1/consents/{scope}`: grants `scope` against the notice version the user was shown.
    ///
    /// # Errors
    /// Network and TLS failures, `unauthorized`, and `notice_outdated`.
    pub async fn grant(
        &self,
        session: &Session,
        scope: ConsentScope,
        notice_version: u32,
    ) -> Result<Grant, DeviceError> {
        let body = json(&GrantBody { notice_version })?;
        let path = format!("/v1/consents/{}", scope.as_str());
        self.call(Method::PUT, &path, Some(session), body).await
    }

    /// `DELETE /v1/consents/{scope}`: withdraws `scope`; the cloud erases its data.
    ///
    /// # Errors
    /// Network and TLS failures, and `unauthorized`.
    pub async fn withdraw(
        &self,
        session: &Session,
        scope: ConsentScope,
    ) -> Result<Grant, DeviceError> {
        let path = format!("/v1/consents/{}", scope.as_str());
        self.call(Method::DELETE, &path, Some(session), Body::None)
            .await
    }

    /// `POST /v1/messages`: sends `body` to the account with the number `to`. `id` (a UUID the
    /// caller picks) makes a retried send store the message once.
    ///
    /// # Errors
    /// Network and TLS failures, `consent_required`, `recipient_unavailable`.
    pub async fn send_message(
        &self,
        session: &Session,
        to: &str,
        body: &str,
        id: &str,
    ) -> Result<Sent, DeviceError> {
        let payload = json(&SendBody { to, body, id })?;
        self.call(Method::POST, "/v1/messages", Some(session), payload)
            .await
    }

    /// `GET /v1/messages?after=CURSOR`: the inbox since a cursor (the polling fallback of the
    /// WebSocket).
    ///
    /// # Errors
    /// Network and TLS failures, and `unauthorized`.
    pub async fn messages(
        &self,
        session: &Session,
        after: Option<&str>,
    ) -> Result<MessagePage, DeviceError> {
        let path = match after {
            Some(cursor) => format!("/v1/messages?after={}", crate::journal::url_encode(cursor)),
            None => "/v1/messages".to_owned(),
        };
        self.call(Method::GET, &path, Some(session), Body::None)
            .await
    }

    /// `POST /v1/messages/{id}/ack`: acknowledges delivery.
    ///
    /// # Errors
    /// Network and TLS failures, and `not_found`.
    pub async fn ack(&self, session: &Session, id: &str) -> Result<(), DeviceError> {
        let path = format!("/v1/messages/{}/ack", crate::journal::url_encode(id));
        self.call_empty(Method::POST, &path, Some(session)).await
    }

    /// `PUT /v1/backup/contacts/{id}`.
    ///
    /// # Errors
    /// Network and TLS failures, and `consent_required` without a `backup.contacts` grant.
    pub async fn put_contact(
        &self,
        session: &Session,
        id: &str,
        contact: &ContactRecord,
    ) -> Result<Stored, DeviceError> {
        let path = format!("/v1/backup/contacts/{}", crate::journal::url_encode(id));
        self.call(Method::PUT, &path, Some(session), json(contact)?)
            .await
    }

    /// `PUT /v1/backup/sms/{id}`.
    ///
    /// # Errors
    /// Network and TLS failures, and `consent_required` without a `backup.sms` grant.
    pub async fn put_sms(
        &self,
        session: &Session,
        id: &str,
        sms: &SmsRecord,
    ) -> Result<Stored, DeviceError> {
        let path = format!("/v1/backup/sms/{}", crate::journal::url_encode(id));
        self.call(Method::PUT, &path, Some(session), json(sms)?)
            .await
    }

    /// `PUT /v1/backup/photos/{id}` with the image bytes.
    ///
    /// # Errors
    /// Network and TLS failures, and `consent_required` without a `backup.photos` grant.
    pub async fn put_photo(
        &self,
        session: &Session,
        id: &str,
        photo: &Photo,
    ) -> Result<Stored, DeviceError> {
        let path = format!("/v1/backup/photos/{}", crate::journal::url_encode(id));
        let body = Body::Bytes {
            content_type: photo.content_type().to_owned(),
            bytes: photo.bytes().to_vec(),
        };
        self.call(Method::PUT, &path, Some(session), body).await
    }

    /// `GET /v1/backup/{kind}?since=CURSOR`: what changed since a sync.
    ///
    /// # Errors
    /// Network and TLS failures, and `unauthorized`.
    pub async fn backup_changes(
        &self,
        session: &Session,
        kind: BackupKind,
        since: Option<&str>,
    ) -> Result<ChangePage, DeviceError> {
        let mut path = format!("/v1/backup/{}", kind.as_str());
        if let Some(cursor) = since {
            path.push_str(&format!("?since={}", crate::journal::url_encode(cursor)));
        }
        self.call(Method::GET, &path, Some(session), Body::None)
            .await
    }
}

/// An image to back up. Only an image: the constructor checks its signature, so the one
/// byte-carrying call of the client cannot be used to ship arbitrary data.
#[derive(Debug, Clone)]
pub struct Photo {
    content_type: &'static str,
    bytes: Vec<u8>,
}

impl Photo {
    /// # Errors
    /// When `bytes` is not a BMP, PNG or JPEG image.
    pub fn new(bytes: Vec<u8>) -> Result<Photo, DeviceError> {
        let content_type = if bytes.starts_with(b"BM") {
            "image/bmp"
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            "image/png"
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            "image/jpeg"
        } else {
            return Err(DeviceError::BadResponse {
                url: "photo".to_owned(),
                message: "not a BMP, PNG or JPEG image".to_owned(),
            });
        };
        Ok(Photo {
            content_type,
            bytes,
        })
    }

    pub fn content_type(&self) -> &str {
        self.content_type
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn json<T: Serialize>(value: &T) -> Result<Body, DeviceError> {
    serde_json::to_vec(value)
        .map(Body::Json)
        .map_err(|e| DeviceError::BadResponse {
            url: "request".to_owned(),
            message: e.to_string(),
        })
}

async fn read_limited(mut response: reqwest::Response, url: &str) -> Result<Vec<u8>, DeviceError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network_error(url, &e))? {
        if out.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(DeviceError::BadResponse {
                url: url.to_owned(),
                message: format!("answer larger than {RESPONSE_BYTES_MAX} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn api_error(url: &str, status: StatusCode, answer: &[u8]) -> DeviceError {
    let problem: Option<serde_json::Value> = serde_json::from_slice(answer).ok();
    let field = |name: &str| {
        problem
            .as_ref()
            .and_then(|p| p.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let detail = field("detail").unwrap_or_else(|| {
        String::from_utf8_lossy(answer)
            .chars()
            .take(DETAIL_CHARS_MAX)
            .collect()
    });
    DeviceError::Api {
        url: url.to_owned(),
        status: status.as_u16(),
        code: field("code").unwrap_or_else(|| "unknown".to_owned()),
        detail: detail.chars().take(DETAIL_CHARS_MAX).collect(),
    }
}
