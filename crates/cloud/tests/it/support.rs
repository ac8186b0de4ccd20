use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sovereign_cloud::clock::ManualClock;
use sovereign_cloud::{AppState, Cloud, CloudOptions, Policies};
use sovereign_model::RegionId;

pub const START_MS: i64 = 1_790_000_000_000;

pub struct TestApp {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub ca_pem: Vec<u8>,
    /// Keeps the servers running for as long as the test holds the app.
    _cloud: Cloud,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The problem `code` of an error reply.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Policies)) -> TestApp {
    // The test binary links rustls with two crypto providers (reqwest's and ours); the server
    // picks its own explicitly, and the WebSocket client below uses the process default.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut policies = Policies::embedded().unwrap();
    adjust(&mut policies);
    let clock = ManualClock::new(START_MS);
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: dir.path().to_path_buf(),
        policies,
        regions: vec![(
            RegionId::parse("in-mumbai").unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )],
        clock: clock.clone(),
    })
    .await
    .unwrap();
    let region = cloud.region("in-mumbai").unwrap();
    let (state, port) = (region.state.clone(), region.server.addr().port());
    let ca_pem = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    TestApp {
        base,
        dir,
        client,
        clock,
        state,
        ca_pem,
        _cloud: cloud,
    }
}

impl TestApp {
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("regions/in-mumbai/store.sqlite")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        finish(request).await
    }

    pub async fn raw(&self, request: reqwest::RequestBuilder) -> Reply {
        finish(request).await
    }

    pub fn request(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// The last one-time code the SMS outbox holds for `phone`.
    pub fn code_for(&self, phone: &str) -> String {
        let outbox = std::fs::read_to_string(self.dir.path().join("sms-outbox.jsonl")).unwrap();
        outbox
            .lines()
            .rev()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|m| m["to"] == phone)
            .map(|m| m["code"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no SMS to {phone}"))
    }

    /// Signs up `phone` (E.164) and returns the new user id.
    pub async fn sign_up(&self, phone: &str) -> String {
        let reply = self
            .call(
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"phone": phone, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
        let verification_id = reply.body["verification_id"].as_str().unwrap().to_owned();
        let code = self.code_for(phone);
        let reply = self
            .call(
                Method::POST,
                "/v1/accounts/verify",
                None,
                Some(json!({"verification_id": verification_id, "code": code})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["user_id"].as_str().unwrap().to_owned()
    }

    pub async fn sign_in(&self, phone: &str) -> String {
        let reply = self
            .call(
                Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"phone": phone, "password": "correct horse battery", "device_name": "test phone"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["token"].as_str().unwrap().to_owned()
    }

    /// A signed-up, signed-in user: returns the bearer token.
    pub async fn user(&self, phone: &str) -> String {
        self.sign_up(phone).await;
        self.sign_in(phone).await
    }

    pub async fn grant(&self, token: &str, scope: &str) {
        let reply = self
            .call(
                Method::PUT,
                &format!("/v1/consents/{scope}"),
                Some(token),
                Some(json!({"notice_version": 1})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
}

async fn finish(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap().to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        bytes,
    }
}

pub const ALICE: &str = "+919812345678";
pub const BOB: &str = "+919876543210";
pub const CAROL: &str = "+919811122233";

/// Several regions in one process, as `sovereign serve` runs them.
pub struct TestCloud {
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub cloud: Cloud,
}

pub async fn spawn_regions(ids: &[&str]) -> TestCloud {
    spawn_regions_with(ids, |_| {}).await
}

pub async fn spawn_regions_with(ids: &[&str], adjust: impl FnOnce(&mut Policies)) -> TestCloud {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let mut policies = Policies::embedded().unwrap();
    adjust(&mut policies);
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: dir.path().to_path_buf(),
        policies,
        regions: ids
            .iter()
            .map(|id| (RegionId::parse(id).unwrap(), "127.0.0.1:0".parse().unwrap()))
            .collect(),
        clock: clock.clone(),
    })
    .await
    .unwrap();
    let ca_pem = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestCloud { dir, client, cloud }
}

impl TestCloud {
    pub fn url(&self, region: &str) -> String {
        self.cloud.region(region).unwrap().url.clone()
    }

    pub fn db(&self, region: &str) -> rusqlite::Connection {
        rusqlite::Connection::open(
            self.dir
                .path()
                .join(format!("regions/{region}/store.sqlite")),
        )
        .unwrap()
    }

    pub async fn call(
        &self,
        region: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url(region)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        finish(request).await
    }

    /// Signs `phone` up and in at its home region, opted in to messaging; returns the token.
    pub async fn user(&self, region: &str, phone: &str) -> String {
        let reply = self
            .call(
                region,
                Method::POST,
                "/v1/accounts",
                None,
                Some(json!({"phone": phone, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
        let outbox = std::fs::read_to_string(self.dir.path().join("sms-outbox.jsonl")).unwrap();
        let code = outbox
            .lines()
            .rev()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|m| m["to"] == phone)
            .unwrap()["code"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = json!({"verification_id": reply.body["verification_id"], "code": code});
        let reply = self
            .call(
                region,
                Method::POST,
                "/v1/accounts/verify",
                None,
                Some(body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let body =
            json!({"phone": phone, "password": "correct horse battery", "device_name": "phone"});
        let reply = self
            .call(region, Method::POST, "/v1/sessions", None, Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let token = reply.body["token"].as_str().unwrap().to_owned();
        let grant = self
            .call(
                region,
                Method::PUT,
                "/v1/consents/messaging",
                Some(&token),
                Some(json!({"notice_version": 1})),
            )
            .await;
        assert_eq!(grant.status, StatusCode::OK);
        token
    }
}

pub const BRUNO: &str = "+5511912345678";
