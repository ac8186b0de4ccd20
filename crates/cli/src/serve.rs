//! `sovereign serve`: one region of the cloud on the embedded default (SQLite, local files).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sovereign_cloud::{Policies, RegionOptions, RegionState};
use sovereign_model::RegionId;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the region keeps its database, keys, TLS certificates, blobs and SMS outbox.
    #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
    data_dir: PathBuf,

    /// The region to serve (an id from config/regions.toml). Default: the residency policy's
    /// default region.
    #[arg(long, value_name = "ID")]
    region: Option<String>,

    /// Address to listen on. Default: the region's address in config/regions.toml. Port 0 picks
    /// a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// A directory of policy files (regions.toml, residency.toml, notices.toml, retention.toml,
    /// server.toml) that replace the built-in defaults; files it lacks keep the default.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,

    /// Log filter, e.g. "info" or "sovereign_cloud=debug".
    #[arg(
        long,
        value_name = "FILTER",
        default_value = "info",
        env = "SOVEREIGN_LOG"
    )]
    log: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    let policies = match &args.config {
        Some(dir) => Policies::from_dir(dir)
            .with_context(|| format!("loading policies from {}", dir.display()))?,
        None => Policies::embedded()?,
    };
    let region = match &args.region {
        Some(id) => RegionId::parse(id).context("--region")?,
        None => policies.residency.default_region().clone(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = match args.listen {
            Some(addr) => addr,
            None => {
                policies
                    .regions
                    .get(&region)
                    .with_context(|| format!("region {region} is not configured"))?
                    .listen
            }
        };
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let options = RegionOptions::new(args.data_dir.clone(), region.clone(), policies);
        let state = RegionState::open(options).await?;
        let server = sovereign_cloud::start(state, listen, &args.data_dir).await?;
        let ca = args.data_dir.join("tls").join("ca.pem");
        println!(
            "sovereign: region {region} listening on https://{}",
            server.addr()
        );
        println!(
            "sovereign: data in {}, clients trust {}",
            args.data_dir.display(),
            ca.display()
        );
        println!(
            "sovereign: try  curl --cacert {} https://{}/healthz",
            ca.display(),
            server.addr()
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        eprintln!("sovereign: shutting down");
        server.shutdown(Duration::from_secs(10)).await;
        Ok(ExitCode::SUCCESS)
    })
}
