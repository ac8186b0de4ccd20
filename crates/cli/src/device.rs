//! `sovereign device`: flags, then the device library runs the phone.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sovereign_device::report::{render_footer, render_header, render_step};
use sovereign_device::{
    BackupKind, CloudTarget, LEGACY_HOST, LegacyEndpoint, LegacyTarget, Phone, PhoneOptions,
    PhoneProfile, procedure,
};

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Run the 2014 test procedure on a simulated phone and say what each step sent.
    Run(RunArgs),
    /// Run the legacy account endpoint ("hosted in cn-beijing") the legacy-2014 phone talks to.
    LegacyEndpoint(LegacyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Behaviour {
    /// What the 2014 investigation found: identifiers to cn-beijing before any consent.
    #[value(name = "legacy-2014")]
    Legacy2014,
    /// Ours: nothing before consent, never IMEI/IMSI/ICCID, only the home region, only TLS.
    Sovereign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 when every step ran, 2 for usage, input or network errors.")]
pub struct RunArgs {
    /// The phone's profile (the scanner's profile format), e.g. config/phone.toml.
    #[arg(long, value_name = "PROFILE.toml")]
    profile: PathBuf,
    /// What the phone's system services do.
    #[arg(long, value_enum)]
    behaviour: Behaviour,
    /// The cloud (any region's https URL; sign-up is redirected to the home region).
    #[arg(long, value_name = "URL")]
    cloud: Option<String>,
    /// The CA the cloud's certificates chain to (DATA_DIR/tls/ca.pem).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The cloud's SMS gateway file, where the sign-up code arrives (DATA_DIR/sms-outbox.jsonl).
    #[arg(long, value_name = "FILE")]
    sms_outbox: Option<PathBuf>,
    /// Append TLS secrets here in SSLKEYLOGFILE format, for `sovereign scan --keylog`.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
    /// A running legacy endpoint: its HTTP then its HTTPS address (or http://ADDR and
    /// https://ADDR in any order). Without it, legacy-2014 starts its own on loopback.
    #[arg(long, value_name = "ADDR", num_args = 1..=2)]
    legacy: Vec<String>,
    /// The CA of that legacy endpoint (written by `legacy-endpoint --ca-out`).
    #[arg(long, value_name = "FILE", requires = "legacy")]
    legacy_ca: Option<PathBuf>,
    /// What backup-on turns on (sovereign): photos by default; contacts and SMS are opt-in.
    #[arg(long, value_name = "LIST", default_value = "photos")]
    backup: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The user already has an account (sovereign): sign-in signs in without signing up, and
    /// --sms-outbox is not needed.
    #[arg(long)]
    existing_account: bool,
    /// Write each request's method, path, status and milliseconds (to the answer's headers)
    /// here as a JSON array, for `bench/latency.sh`.
    #[arg(long, value_name = "FILE")]
    timings: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LegacyArgs {
    /// Where the plain HTTP listener listens.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the HTTPS listener listens (default: the same address, a free port).
    #[arg(long, value_name = "ADDR")]
    listen_tls: Option<SocketAddr>,
    /// Write the CA of the HTTPS listener here, for `device run --legacy-ca`.
    #[arg(long, value_name = "FILE")]
    ca_out: Option<PathBuf>,
}

pub fn run(command: DeviceCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match command {
        DeviceCommand::Run(args) => runtime.block_on(run_phone(args)),
        DeviceCommand::LegacyEndpoint(args) => runtime.block_on(legacy_endpoint(args)),
    }
}

fn parse_backup(list: &str) -> anyhow::Result<BTreeSet<BackupKind>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| BackupKind::parse(s).context("--backup"))
        .collect()
}

fn parse_legacy(values: &[String], ca: Option<&PathBuf>) -> anyhow::Result<Option<LegacyTarget>> {
    if values.is_empty() {
        return Ok(None);
    }
    let (mut http, mut https) = (None, None);
    for (i, value) in values.iter().enumerate() {
        let (slot, addr) = if let Some(rest) = value.strip_prefix("https://") {
            (&mut https, rest)
        } else if let Some(rest) = value.strip_prefix("http://") {
            (&mut http, rest)
        } else if i == 0 {
            (&mut http, value.as_str())
        } else {
            (&mut https, value.as_str())
        };
        let addr: SocketAddr = addr
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("--legacy {value:?} is not an IP address and port"))?;
        *slot = Some(addr);
    }
    let (Some(http), Some(https)) = (http, https) else {
        anyhow::bail!("--legacy needs both addresses of the endpoint: HTTP, then HTTPS");
    };
    let ca = ca.context(
        "--legacy needs --legacy-ca FILE, the endpoint's CA (see legacy-endpoint --ca-out)",
    )?;
    let ca_pem = sovereign_device::tls::read_ca_file(ca)?;
    Ok(Some(LegacyTarget {
        http,
        https,
        ca_pem,
    }))
}

async fn run_phone(args: RunArgs) -> anyhow::Result<ExitCode> {
    let profile = PhoneProfile::load(&args.profile)?;
    let behaviour = match args.behaviour {
        Behaviour::Legacy2014 => sovereign_device::Behaviour::Legacy2014,
        Behaviour::Sovereign => sovereign_device::Behaviour::Sovereign,
    };
    let mut options = PhoneOptions::new(behaviour);
    options.backup = parse_backup(&args.backup)?;
    options.key_log = args.keylog.clone();
    options.sms_outbox = args.sms_outbox.clone();
    options.existing_account = args.existing_account;
    options.legacy = parse_legacy(&args.legacy, args.legacy_ca.as_ref())?;
    if let Some(url) = &args.cloud {
        let ca = args
            .ca
            .as_ref()
            .context("--cloud needs --ca FILE, the cloud's CA (DATA_DIR/tls/ca.pem)")?;
        options.cloud = Some(CloudTarget {
            url: url.clone(),
            ca_pem: sovereign_device::tls::read_ca_file(ca)?,
            ca_origin: ca.display().to_string(),
        });
    }
    let phone_number = profile.phone().to_owned();
    let mut phone = Phone::new(profile, options).await?;
    let text = args.format == Format::Text;
    let mut stdout = std::io::stdout().lock();
    if text {
        write!(stdout, "{}", render_header(&phone_number, behaviour))?;
        if let Some(endpoint) = phone.own_legacy_endpoint() {
            writeln!(
                stdout,
                "started the legacy account endpoint {LEGACY_HOST} on http://{} and https://{}",
                endpoint.http_addr(),
                endpoint.https_addr()
            )?;
        }
    }
    let mut steps = Vec::new();
    for step in procedure() {
        let report = phone.run_step(step).await?;
        if text {
            write!(stdout, "{}", render_step(&report, steps.last()))?;
            stdout.flush()?;
        }
        steps.push(report);
    }
    let report = phone.report(steps);
    if let Some(path) = &args.timings {
        let timings: Vec<serde_json::Value> = report
            .steps
            .iter()
            .flat_map(|step| step.requests.iter().map(move |r| (step, r)))
            .map(|(step, r)| {
                let path = url_path(&r.url);
                serde_json::json!({
                    "step": step.step,
                    "method": r.method,
                    "host": r.host,
                    "path": path,
                    "status": r.status,
                    "ms": r.elapsed_ms,
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&timings)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if text {
        write!(stdout, "{}", render_footer(&report))?;
    } else {
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The path (and query) of `url`: what follows `scheme://host:port`.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |i| &rest[i..])
}

async fn legacy_endpoint(args: LegacyArgs) -> anyhow::Result<ExitCode> {
    let tls = args
        .listen_tls
        .unwrap_or_else(|| SocketAddr::new(args.listen.ip(), 0));
    let endpoint = LegacyEndpoint::start(args.listen, tls).await?;
    if let Some(path) = &args.ca_out {
        std::fs::write(path, endpoint.ca_pem())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut feed = endpoint.subscribe();
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "legacy account endpoint {LEGACY_HOST} (simulated, \"hosted in cn-beijing\")"
        )?;
        writeln!(stdout, "  listening on http://{}", endpoint.http_addr())?;
        writeln!(stdout, "  listening on https://{}", endpoint.https_addr())?;
        match &args.ca_out {
            Some(path) => writeln!(stdout, "  its CA is in {}", path.display())?,
            None => writeln!(
                stdout,
                "  its CA is not saved; pass --ca-out FILE to let `device run --legacy` trust it"
            )?,
        }
        writeln!(
            stdout,
            "every request it receives follows, one JSON line each; Ctrl-C stops it"
        )?;
        stdout.flush()?;
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            received = feed.recv() => match received {
                Ok(record) => {
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "{}", serde_json::to_string(&record)?)?;
                    stdout.flush()?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                    eprintln!("sovereign: {skipped} requests were not printed (output too slow)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}
