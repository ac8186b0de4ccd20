//! `sovereign ops`: operator keys, registration, and signed requests and decisions over the API.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sovereign_cloud::ops::{
    AccessRequest, Decision, check_operator_name, decision_bytes, http_bytes,
};
use sovereign_cloud::store::Store;
use sovereign_crypto::{PUBLIC_KEY_BYTES, SigningKey, from_hex, hex};
use sovereign_model::ConsentScope;

use crate::region_store;

/// Longest key file we read.
const KEY_FILE_BYTES_MAX: u64 = 4096;

#[derive(clap::Subcommand)]
pub enum OpsCommand {
    /// Create an operator key: FILE (PKCS#8, mode 0600) and FILE.pub (the public key, hex).
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Register an operator's public key in a region's store (run on the region's host).
    Register {
        #[command(flatten)]
        store: StoreArgs,
        /// The operator's name: a-z, 0-9, '.', '_' or '-'.
        #[arg(long)]
        name: String,
        /// The public key file `ops keygen` wrote (FILE.pub, hex).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
    /// Revoke an operator's key: nothing they signed counts any more.
    Unregister {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        name: String,
    },
    /// Ask for read-only access to one user's data, for named scopes, with a reason.
    Request {
        #[command(flatten)]
        client: ClientArgs,
        /// The user's id.
        #[arg(long)]
        user: String,
        /// Comma-separated consent scopes, e.g. messaging,backup.sms.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Why you need the data (shown to the approvers and to the user), e.g. a ticket number.
        #[arg(long)]
        reason: String,
        /// How long the grant may stay open: e.g. 30m, 2h, 3600s (capped by the server).
        #[arg(long, default_value = "1h")]
        duration: String,
    },
    /// Show a request and its approvals.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        request: String,
    },
    /// Approve a request (signs the digest of everything in it, its expiry included).
    Approve {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        request: String,
    },
    /// Deny a request: it can never open.
    Deny {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        request: String,
    },
    /// End an open grant before its time.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        request: String,
    },
    /// Read one scope of the user's data through an open grant (prints JSON).
    Read {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        request: String,
        #[arg(long)]
        scope: String,
    },
}

#[derive(clap::Args)]
pub struct StoreArgs {
    #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
    pub data_dir: PathBuf,
    #[arg(long, value_name = "ID")]
    pub region: String,
    /// Policy directory, as for `serve --config` (to know its regions).
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    /// The region's PostgreSQL database (postgres://...), when `serve` was given one.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

#[derive(clap::Args)]
pub struct ClientArgs {
    /// The region's base URL, e.g. https://127.0.0.1:8445.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The CA certificate to trust (DIR/tls/ca.pem).
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// Your private key file (from `ops keygen`, mode 0600).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Your registered operator name.
    #[arg(long)]
    operator: String,
}

pub fn run(command: OpsCommand) -> anyhow::Result<ExitCode> {
    match command {
        OpsCommand::Keygen { out } => keygen(&out),
        OpsCommand::Register {
            store,
            name,
            public_key,
        } => register(&store, &name, &public_key),
        OpsCommand::Unregister { store: args, name } => {
            let signer = ledger_signer(&args)?;
            let approvals_required = policies(&args)?.ops.approvals_required;
            let (store, now) = open_store(&args)?;
            block_on(async move {
                store
                    .revoke_operator_recorded(signer, name.clone(), now, approvals_required)
                    .await
                    .with_context(|| format!("revoking {name}"))
            })?;
            println!("revoked");
            Ok(ExitCode::SUCCESS)
        }
        OpsCommand::Request {
            client,
            user,
            scopes,
            reason,
            duration,
        } => {
            let duration = parse_duration(&duration)?;
            let mut parsed = Vec::new();
            for name in &scopes {
                parsed.push(
                    ConsentScope::parse(name.trim())
                        .with_context(|| format!("--scopes: {name:?} is not a consent scope"))?,
                );
            }
            if parsed.is_empty() {
                bail!("--scopes: name at least one scope");
            }
            let api = Api::new(&client)?;
            block_on(async move {
                let region = api.region().await?;
                let now = now_ms();
                let request = AccessRequest {
                    id: uuid::Uuid::new_v4().to_string(),
                    region,
                    requester: client.operator.clone(),
                    user_id: user,
                    scopes: parsed,
                    reason,
                    requested_at_ms: now,
                    not_after_ms: now
                        .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
                };
                let body = json!({
                    "id": request.id,
                    "requester": request.requester,
                    "user_id": request.user_id,
                    "scopes": request.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "reason": request.reason,
                    "requested_at_ms": request.requested_at_ms,
                    "not_after_ms": request.not_after_ms,
                    "signature": hex(&api.key.sign(&request.signed_bytes())),
                });
                let view = api.post("/v1/ops/requests", body).await?;
                print_view(&view);
                Ok(ExitCode::SUCCESS)
            })
        }
        OpsCommand::Show { client, request } => {
            let api = Api::new(&client)?;
            block_on(async move {
                let view = api.get(&format!("/v1/ops/requests/{request}")).await?;
                print_view(&view);
                Ok(ExitCode::SUCCESS)
            })
        }
        OpsCommand::Approve { client, request } => decide(&client, &request, Decision::Approve),
        OpsCommand::Deny { client, request } => decide(&client, &request, Decision::Deny),
        OpsCommand::Revoke { client, request } => decide(&client, &request, Decision::Revoke),
        OpsCommand::Read {
            client,
            request,
            scope,
        } => {
            let api = Api::new(&client)?;
            block_on(async move {
                // The server answers a page at a time (each page a read in the ledger): print
                // each as it comes and follow `next` to the end.
                let mut path = format!("/v1/ops/grants/{request}/data/{scope}");
                loop {
                    let data = api.get(&path).await?;
                    println!("{}", serde_json::to_string_pretty(&data)?);
                    match data["next"].as_str() {
                        Some(next) => {
                            path = format!(
                                "/v1/ops/grants/{request}/data/{scope}?after={}",
                                url_escape(next)
                            );
                        }
                        None => break,
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// `text` as a URL query value (cursors are letters, digits, `:`, `.`, `-` and `_`, but an
/// item id may hold more).
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `90s`, `30m`, `2h` or a plain number of seconds.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit_secs) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3600),
        _ => (text, 1),
    };
    let n: u64 = number.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("--duration {text:?}: expected a positive number with s, m or h, e.g. 2h")
    })?;
    Ok(Duration::from_secs(n.saturating_mul(unit_secs)))
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    if out.exists() {
        bail!("{} exists; refusing to overwrite a key", out.display());
    }
    let pkcs8 = SigningKey::generate_pkcs8()?;
    let key = SigningKey::from_pkcs8(&pkcs8)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    std::io::Write::write_all(&mut file, &pkcs8)?;
    file.sync_all()?;
    let public = public_path(out);
    std::fs::write(&public, format!("{}\n", hex(&key.public_key())))
        .with_context(|| format!("writing {}", public.display()))?;
    println!("private key: {} (mode 0600; keep it secret)", out.display());
    println!(
        "public key:  {} ({})",
        public.display(),
        hex(&key.public_key())
    );
    Ok(ExitCode::SUCCESS)
}

fn public_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads a private key file, refusing one that others can read.
fn load_key(path: &Path) -> anyhow::Result<SigningKey> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading key file {}", path.display()))?;
    if meta.len() > KEY_FILE_BYTES_MAX {
        bail!(
            "key file {} is {} bytes; a key is far smaller",
            path.display(),
            meta.len()
        );
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {:o}; it must be readable by its owner only (chmod 600)",
            path.display(),
            mode & 0o777
        );
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("reading key file {}", path.display()))?;
    SigningKey::from_pkcs8(&bytes).with_context(|| format!("key file {}", path.display()))
}

/// The region's ledger key (under the site's `keys/`, as `serve` keeps it): registering and
/// revoking operators are ledger entries, sealed like every other.
fn ledger_signer(
    args: &StoreArgs,
) -> anyhow::Result<std::sync::Arc<sovereign_cloud::ledger::LedgerSigner>> {
    let region = sovereign_model::RegionId::parse(&args.region).context("--region")?;
    let policies = policies(args)?;
    let site = sovereign_cloud::sites::resolve_site_dir(&args.data_dir, &region);
    let mut signer = sovereign_cloud::ledger::load_or_create_signer(
        &site,
        &region,
        policies.ops.ledger_checkpoint_entries,
    )?;
    signer.checkpoint_secs_max = policies.ops.ledger_checkpoint_secs_max;
    Ok(std::sync::Arc::new(signer))
}

/// The policies `serve --config` would use.
fn policies(args: &StoreArgs) -> anyhow::Result<sovereign_cloud::Policies> {
    Ok(match &args.config {
        Some(dir) => sovereign_cloud::Policies::from_dir(dir)
            .with_context(|| format!("loading policies from {}", dir.display()))?,
        None => sovereign_cloud::Policies::embedded()?,
    })
}

fn open_store(args: &StoreArgs) -> anyhow::Result<(Store, i64)> {
    let path = region_store(&args.data_dir, &args.region, args.config.as_deref())?;
    let store = match &args.database {
        Some(url) => Store::open_postgres(url).with_context(|| {
            format!(
                "opening the store of {}",
                sovereign_cloud::store::redact_url(url)
            )
        })?,
        None => Store::open(&path).with_context(|| format!("opening {}", path.display()))?,
    };
    Ok((store, now_ms()))
}

fn register(args: &StoreArgs, name: &str, public_key: &Path) -> anyhow::Result<ExitCode> {
    check_operator_name(name)
        .map_err(anyhow::Error::msg)
        .context("--name")?;
    let text = std::fs::read_to_string(public_key)
        .with_context(|| format!("reading public key {}", public_key.display()))?;
    let key = from_hex(&text)
        .ok()
        .filter(|k| k.len() == PUBLIC_KEY_BYTES)
        .with_context(|| {
            format!(
                "public key {} must hold {PUBLIC_KEY_BYTES} bytes in hex (the .pub file `ops keygen` wrote)",
                public_key.display()
            )
        })?;
    let signer = ledger_signer(args)?;
    let (store, now) = open_store(args)?;
    let owned = name.to_owned();
    block_on(async move {
        Ok(store
            .register_operator_recorded(signer, owned, key, now)
            .await?)
    })
    .with_context(|| format!("registering {name}"))?;
    println!("registered operator {name} in region {}", args.region);
    Ok(ExitCode::SUCCESS)
}

fn decide(client: &ClientArgs, request: &str, decision: Decision) -> anyhow::Result<ExitCode> {
    let api = Api::new(client)?;
    let request = request.to_owned();
    block_on(async move {
        let view = api.get(&format!("/v1/ops/requests/{request}")).await?;
        let field = |name: &str| view[name].clone();
        let scopes: Vec<ConsentScope> = field("scopes")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().and_then(ConsentScope::parse))
            .collect();
        let signed = AccessRequest {
            id: request.clone(),
            region: field("region").as_str().unwrap_or_default().to_owned(),
            requester: field("requester").as_str().unwrap_or_default().to_owned(),
            user_id: field("user_id").as_str().unwrap_or_default().to_owned(),
            scopes,
            reason: field("reason").as_str().unwrap_or_default().to_owned(),
            requested_at_ms: field("requested_at_ms").as_i64().unwrap_or_default(),
            not_after_ms: field("not_after_ms").as_i64().unwrap_or_default(),
        };
        // The signature covers the digest of what is shown here, so a server that showed one
        // request and stored another would get a signature that verifies for neither.
        eprintln!(
            "{} request {} by {} for user {} ({}) until {}: {}",
            decision.as_str(),
            signed.id,
            signed.requester,
            signed.user_id,
            signed.scopes_joined(),
            field("not_after").as_str().unwrap_or_default(),
            signed.reason
        );
        let at = now_ms();
        let message = decision_bytes(
            decision,
            &signed.region,
            &signed.id,
            &api.operator,
            &signed.digest(),
            at,
        );
        let view = api
            .post(
                &format!("/v1/ops/requests/{request}/{}", decision.as_str()),
                json!({"operator": api.operator, "signed_at_ms": at, "signature": hex(&api.key.sign(&message))}),
            )
            .await?;
        print_view(&view);
        Ok(ExitCode::SUCCESS)
    })
}

fn print_view(view: &Value) {
    println!(
        "request {} is {} ({} of {} approvals: {})",
        view["id"].as_str().unwrap_or_default(),
        view["state"].as_str().unwrap_or_default(),
        view["approvals"].as_array().map_or(0, Vec::len),
        view["approvals_required"],
        view["approvals"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
}

struct Api {
    base: String,
    client: reqwest::Client,
    key: SigningKey,
    operator: String,
}

impl Api {
    fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        check_operator_name(&args.operator)
            .map_err(anyhow::Error::msg)
            .context("--operator")?;
        let key = load_key(&args.key)?;
        let ca = std::fs::read(&args.ca)
            .with_context(|| format!("reading --ca {}", args.ca.display()))?;
        let ca = reqwest::Certificate::from_pem(&ca)
            .with_context(|| format!("--ca {} is not a PEM certificate", args.ca.display()))?;
        let base = args.server.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            bail!("--server {base}: must be an https:// URL");
        }
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTPS client")?;
        Ok(Api {
            base,
            client,
            key,
            operator: args.operator.clone(),
        })
    }

    async fn region(&self) -> anyhow::Result<String> {
        let health = self
            .send(self.client.get(format!("{}/healthz", self.base)))
            .await?;
        health["region"]
            .as_str()
            .map(str::to_owned)
            .context("the server did not say its region")
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let region = self.region().await?;
        let at = now_ms();
        let signature = self.key.sign(&http_bytes(&region, "GET", path, at));
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .header("sovereign-operator", &self.operator)
                .header("sovereign-signed-at", at.to_string())
                .header("sovereign-signature", hex(&signature)),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "the server refused ({status}, {}): {}",
                body["code"].as_str().unwrap_or("?"),
                body["detail"].as_str().unwrap_or("no detail")
            );
        }
        Ok(body)
    }
}
