use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sovereign_cloud::clock::{Clock as _, ManualClock};
use sovereign_cloud::store::db::{self, DbResult, Row};
use sovereign_cloud::{AppState, Cloud, CloudOptions, Policies};
use sovereign_model::RegionId;

pub use sovereign_cloud::store::db::Value as SqlValue;

pub use crate::pg_cluster::{fresh_database, off_runtime};

pub const START_MS: i64 = 1_790_000_000_000;

pub struct TestApp {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub ca_pem: Vec<u8>,
    /// The region's PostgreSQL database when the tests run on PostgreSQL.
    pub database: Option<String>,
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
    let mumbai = RegionId::parse("in-mumbai").unwrap();
    let databases = test_databases(std::slice::from_ref(&mumbai));
    let database = databases.get(&mumbai).cloned();
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: dir.path().to_path_buf(),
        policies,
        regions: vec![(mumbai, "127.0.0.1:0".parse().unwrap())],
        databases,
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
    // On PostgreSQL the region really has no SQLite file.
    assert_eq!(
        dir.path()
            .join("sites/in-mumbai/regions/in-mumbai/store.sqlite")
            .exists(),
        database.is_none()
    );
    TestApp {
        base,
        dir,
        client,
        clock,
        state,
        ca_pem,
        database,
        _cloud: cloud,
    }
}

impl TestApp {
    /// The region's own site directory (`DIR/sites/in-mumbai`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("sites/in-mumbai")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("regions/in-mumbai/store.sqlite")
    }

    /// The region's store, on whichever backend the tests run.
    pub fn db(&self) -> TestDb {
        TestDb::new(self.db_path(), self.database.clone())
    }

    /// Checks the region's ledger offline as an outsider would, as `sovereign ledger verify
    /// --public-key` does: with only the region's published `.ledger.pub`, and the region's
    /// bounds between checkpoints, judged at the region's clock.
    pub fn verify_ledger(
        &self,
    ) -> Result<sovereign_cloud::ledger::LedgerSummary, sovereign_cloud::ledger::LedgerFault> {
        let region = RegionId::parse("in-mumbai").unwrap();
        let public = sovereign_cloud::ledger::read_public_key(
            &self.data_dir().join("keys/in-mumbai.ledger.pub"),
        )
        .unwrap();
        let ops = &self.state.policies.ops;
        let bounds = sovereign_cloud::ledger::LagBounds {
            entries_max: i64::from(ops.ledger_checkpoint_entries),
            secs_max: ops.ledger_checkpoint_secs_max as i64,
            now_ms: Some(self.clock.now_ms()),
        };
        off_runtime(|| {
            sovereign_cloud::ledger::verify_store_with(
                &self.data_dir(),
                &region,
                self.database.as_deref(),
                &public,
                &bounds,
            )
            .unwrap()
        })
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
    /// Each region's PostgreSQL database when the tests run on PostgreSQL.
    pub databases: BTreeMap<RegionId, String>,
    pub clock: Arc<ManualClock>,
}

pub async fn spawn_regions(ids: &[&str]) -> TestCloud {
    spawn_regions_with(ids, |_| {}).await
}

pub async fn spawn_regions_with(ids: &[&str], adjust: impl FnOnce(&mut Policies)) -> TestCloud {
    let regions: Vec<RegionId> = ids.iter().map(|id| RegionId::parse(id).unwrap()).collect();
    spawn_regions_on(ids, adjust, test_databases(&regions)).await
}

/// Like [`spawn_regions_with`], with exactly the regions in `on_postgres` on PostgreSQL (each
/// in a fresh database of the test cluster) and the others on SQLite, whatever the backend of
/// the test run.
pub async fn spawn_regions_mixed(
    ids: &[&str],
    adjust: impl FnOnce(&mut Policies),
    on_postgres: &[&str],
) -> TestCloud {
    let databases = on_postgres
        .iter()
        .map(|id| (RegionId::parse(id).unwrap(), fresh_database()))
        .collect();
    spawn_regions_on(ids, adjust, databases).await
}

async fn spawn_regions_on(
    ids: &[&str],
    adjust: impl FnOnce(&mut Policies),
    databases: BTreeMap<RegionId, String>,
) -> TestCloud {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let mut policies = Policies::embedded().unwrap();
    adjust(&mut policies);
    let regions: Vec<RegionId> = ids.iter().map(|id| RegionId::parse(id).unwrap()).collect();
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: dir.path().to_path_buf(),
        policies,
        regions: regions
            .into_iter()
            .map(|id| (id, "127.0.0.1:0".parse().unwrap()))
            .collect(),
        databases: databases.clone(),
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
    for id in ids {
        assert_eq!(
            dir.path()
                .join(format!("sites/{id}/regions/{id}/store.sqlite"))
                .exists(),
            !databases.contains_key(&RegionId::parse(id).unwrap())
        );
    }
    TestCloud {
        dir,
        client,
        cloud,
        databases,
        clock,
    }
}

impl TestCloud {
    pub fn url(&self, region: &str) -> String {
        self.cloud.region(region).unwrap().url.clone()
    }

    /// A region's store, on whichever backend the tests run.
    pub fn db(&self, region: &str) -> TestDb {
        TestDb::new(
            self.dir
                .path()
                .join(format!("sites/{region}/regions/{region}/store.sqlite")),
            self.databases
                .get(&RegionId::parse(region).unwrap())
                .cloned(),
        )
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

    /// `GET path` at `region` with a bearer token (redirects are not followed).
    pub async fn get_at(&self, region: &str, path: &str, token: &str) -> Reply {
        self.call(region, Method::GET, path, Some(token), None)
            .await
    }

    /// Grants `scope` (notice version 1) at `region`.
    pub async fn grant_at(&self, region: &str, token: &str, scope: &str) {
        let path = format!("/v1/consents/{scope}");
        let body = json!({"notice_version": 1});
        let reply = self
            .call(region, Method::PUT, &path, Some(token), Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
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

// ---- the backends ----

/// Which backend the tests put regions on: `SOVEREIGN_TEST_BACKEND=postgres` puts every region
/// on its own database of a throwaway PostgreSQL 15 cluster; anything else (or nothing) keeps
/// SQLite files.
pub fn on_postgres() -> bool {
    match std::env::var("SOVEREIGN_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("SOVEREIGN_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

/// A fresh database for each region when the tests run on PostgreSQL; none otherwise.
pub fn test_databases(regions: &[RegionId]) -> BTreeMap<RegionId, String> {
    if !on_postgres() {
        return BTreeMap::new();
    }
    regions
        .iter()
        .map(|region| (region.clone(), fresh_database()))
        .collect()
}

/// A region's store as the tests see it, below the service: the SQLite file, or the region's
/// PostgreSQL database. Statements use `?N` placeholders on both.
pub enum TestDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl TestDb {
    pub fn new(path: PathBuf, database: Option<String>) -> TestDb {
        match database {
            Some(url) => TestDb::Postgres(url),
            None => TestDb::Sqlite(path),
        }
    }

    fn with<T: Send>(&self, f: impl FnOnce(&db::Connection) -> T + Send) -> T {
        match self {
            TestDb::Sqlite(path) => f(&db::Connection::Sqlite(
                rusqlite::Connection::open(path).unwrap(),
            )),
            TestDb::Postgres(url) => off_runtime(|| {
                let client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                f(&db::Connection::postgres(client))
            }),
        }
    }

    /// Runs one statement; the error is the database's message (a trigger's, say).
    pub fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<usize, String> {
        self.with(|conn| conn.execute(sql, params).map_err(|e| error_text(&e)))
    }

    /// Runs statements without parameters, separated by semicolons.
    pub fn execute_batch(&self, sql: &str) -> Result<(), String> {
        self.with(|conn| conn.execute_batch(sql).map_err(|e| error_text(&e)))
    }

    /// The first row of a query, through `f`.
    pub fn query_row<T: Send>(
        &self,
        sql: &str,
        params: &[SqlValue],
        f: impl FnOnce(&Row) -> DbResult<T> + Send,
    ) -> Result<T, String> {
        self.with(|conn| conn.query_row(sql, params, f).map_err(|e| error_text(&e)))
    }

    /// `SELECT count(*) ...` as a number.
    pub fn count(&self, sql: &str) -> i64 {
        self.query_row(sql, &[], |r| r.get(0)).unwrap()
    }

    /// Everything the store holds at rest: for SQLite the database file and its WAL, byte for
    /// byte; for PostgreSQL the database's files in the cluster after a checkpoint, and every
    /// value of every row of every table (text and bytes as stored, not hex-escaped, so that a
    /// value the server compressed is searched too).
    pub fn bytes_at_rest(&self) -> Vec<u8> {
        match self {
            TestDb::Sqlite(path) => {
                let mut bytes = std::fs::read(path).unwrap();
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                if let Ok(more) = std::fs::read(&wal) {
                    bytes.extend(more);
                }
                bytes
            }
            TestDb::Postgres(url) => off_runtime(|| {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let tables: Vec<String> = client
                    .query(
                        "SELECT table_name::text FROM information_schema.tables \
                         WHERE table_schema = 'public' ORDER BY 1",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                assert!(tables.len() >= 10, "tables: {tables:?}");
                let mut bytes = Vec::new();
                client.batch_execute("CHECKPOINT").unwrap();
                let row = client
                    .query_one(
                        "SELECT current_setting('data_directory'), oid::text FROM pg_database \
                         WHERE datname = current_database()",
                        &[],
                    )
                    .unwrap();
                let (data_dir, oid): (String, String) = (row.get(0), row.get(1));
                let files = crate::accounts::walk(&Path::new(&data_dir).join("base").join(oid));
                assert!(!files.is_empty());
                for file in files {
                    bytes.extend(std::fs::read(file).unwrap());
                }
                for table in tables {
                    for row in client
                        .query(&format!("SELECT * FROM {table}"), &[])
                        .unwrap()
                    {
                        for index in 0..row.len() {
                            match row.get::<_, SqlValue>(index) {
                                SqlValue::Null => {}
                                SqlValue::Int(i) => bytes.extend(i.to_string().as_bytes()),
                                SqlValue::Text(t) => bytes.extend(t.as_bytes()),
                                SqlValue::Blob(b) => bytes.extend(b),
                            }
                            bytes.push(0);
                        }
                    }
                }
                bytes
            }),
        }
    }
}

fn error_text(error: &db::DbError) -> String {
    match error.message() {
        Some(message) => format!("{error}: {message}"),
        None => error.to_string(),
    }
}

// ---- WebSockets ----

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the push socket at `base` (trusting `ca_pem`) with `token`; `Err` with the HTTP status
/// when it is refused.
pub async fn open_socket_at(base: &str, ca_pem: &[u8], token: &str) -> Result<Socket, u16> {
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("{}/v1/messages/ws", base.replace("https", "wss"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("websocket: {other}"),
    }
}

/// The close code the socket receives within `within` (`None`: closed without a frame).
/// Panics if it is still open then.
pub async fn closed_within(socket: &mut Socket, within: Duration) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("the socket is still open");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}
