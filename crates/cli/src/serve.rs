//! `sovereign serve`: the cloud's regions, each on SQLite (the embedded default, local files) or,
//! with `--region ID --database postgres://...`, one region on PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use std::sync::Arc;

use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::{CloudOptions, Policies};
use sovereign_model::RegionId;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the region keeps its database, keys, TLS certificates, blobs and SMS outbox.
    #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
    data_dir: PathBuf,

    /// Serve only this region (an id from config/regions.toml). Default: every configured region,
    /// each on its own port, its own database and its own key.
    #[arg(long, value_name = "ID")]
    region: Option<String>,

    /// Address to listen on, with --region. Default: the region's address in
    /// config/regions.toml. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Keep the region's store in this PostgreSQL database instead of SQLite, with --region
    /// (one region per database), e.g. postgres://sovereign@db.internal:5432/in_mumbai.
    /// Keys, certificates and blobs stay under --data-dir.
    #[arg(long, value_name = "URL")]
    database: Option<String>,

    /// Where the directory (phone hash → user and home region) lives: default the SQLite file
    /// in --data-dir; for sites on several hosts etcd, as
    /// etcd://[USER@]HOST:PORT[,HOST:PORT...]/PREFIX, the user's password in the environment
    /// variable SOVEREIGN_DIRECTORY_PASSWORD.
    #[arg(long, value_name = "LOCATION")]
    directory: Option<String>,

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
    let regions = match &args.region {
        Some(id) => {
            let id = RegionId::parse(id).context("--region")?;
            let config = policies.regions.get(&id).with_context(|| {
                let known: Vec<_> = policies
                    .regions
                    .regions
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect();
                format!(
                    "region {id} is not configured; known regions: {}",
                    known.join(", ")
                )
            })?;
            vec![(id, args.listen.unwrap_or(config.listen))]
        }
        None if args.listen.is_some() => {
            anyhow::bail!(
                "--listen needs --region: without it every region listens on its configured address"
            )
        }
        None => policies
            .regions
            .regions
            .iter()
            .map(|r| (r.id.clone(), r.listen))
            .collect(),
    };
    let databases = match (&args.database, &args.region) {
        (None, _) => Default::default(),
        (Some(_), None) => {
            anyhow::bail!("--database needs --region: each region has its own database")
        }
        (Some(url), Some(_)) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "--database {}: not a PostgreSQL URL (expected postgres://user@host:port/database)",
                    sovereign_cloud::store::redact_url(url)
                );
            }
            // Invariant: with --region, `regions` holds exactly that region.
            regions
                .iter()
                .map(|(id, _)| (id.clone(), url.clone()))
                .collect()
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let directory = match &args.directory {
            None => None,
            Some(location) => Some(
                sovereign_cloud::directory::Directory::at(
                    Some(location),
                    &args.data_dir.join("directory.sqlite"),
                    std::env::var("SOVEREIGN_DIRECTORY_PASSWORD").ok(),
                    policies
                        .regions
                        .regions
                        .iter()
                        .map(|r| r.id.clone())
                        .collect(),
                )
                .await?,
            ),
        };
        let cloud = sovereign_cloud::start_cloud_on(
            CloudOptions {
                data_dir: args.data_dir.clone(),
                policies,
                regions,
                databases,
                clock: Arc::new(SystemClock),
            },
            directory,
        )
        .await?;
        let ca = args.data_dir.join("tls").join("ca.pem");
        for region in &cloud.regions {
            println!(
                "sovereign: region {:<14} listening on {}",
                region.id.as_str(),
                region.url
            );
        }
        println!(
            "sovereign: data in {}, clients trust {}",
            args.data_dir.display(),
            ca.display()
        );
        if let Some(first) = cloud.regions.first() {
            println!(
                "sovereign: try  curl --cacert {} {}/healthz",
                ca.display(),
                first.url
            );
        }
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        eprintln!("sovereign: shutting down");
        cloud.shutdown(Duration::from_secs(10)).await;
        Ok(ExitCode::SUCCESS)
    })
}
