//! `sovereign serve`: with `--region ID`, one region as a site on its own host (its own data
//! directory, TLS and federation key; the other sites known from `--federation FILE`); without
//! it, every region on this machine, each as its own site under `DIR/sites/<region>/`. A store
//! is SQLite (the embedded default) or, with `--region ID --database postgres://...`, PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use std::sync::Arc;

use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::sites::SiteOptions;
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

    /// The federation file naming every site's URL, pinned federation key and TLS CA (each
    /// site's `sovereign federation publish` output), with --region. Default: DIR/federation.toml
    /// if it exists; without one the site runs alone, making and accepting no peer calls.
    #[arg(long, value_name = "FILE")]
    federation: Option<PathBuf>,

    /// Where the directory (phone hash → user and home region) lives: the path of its SQLite
    /// file (default DIR/directory.sqlite), or for sites on several hosts etcd, as
    /// etcd://[USER@]HOST:PORT[,HOST:PORT...]/PREFIX (etcds:// over TLS), the user's password in the environment
    /// variable SOVEREIGN_DIRECTORY_PASSWORD.
    #[arg(long, value_name = "LOCATION")]
    directory: Option<String>,

    /// The CA certificates (PEM) of the etcd members' TLS certificates, for a directory given
    /// as etcds://HOST:PORT[,...]/PREFIX (etcd with --cert-file/--key-file).
    #[arg(long, value_name = "FILE", requires = "directory")]
    directory_ca: Option<PathBuf>,

    /// The site's TLS certificate chain (PEM), with --region and --tls-key, instead of the local
    /// CA's certificate.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// CA certificates (PEM) trusted for peers whose federation entry pins no CA, with --region.
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,

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
    let databases: std::collections::BTreeMap<RegionId, String> = match (
        &args.database,
        &args.region,
    ) {
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
    let site_only = [
        (args.federation.is_some(), "--federation"),
        (args.tls_cert.is_some(), "--tls-cert"),
        (args.ca_bundle.is_some(), "--ca-bundle"),
    ];
    if let Some((_, flag)) = site_only.iter().find(|(given, _)| *given)
        && args.region.is_none()
    {
        anyhow::bail!("{flag} needs --region: it configures one site");
    }
    let directory_ca = match &args.directory_ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        // The directory: an SQLite file (default DIR/directory.sqlite, the one-machine
        // layout's and a site's own) or etcd for sites on several hosts.
        let directory = match &args.directory {
            None => None,
            Some(location) => Some(
                sovereign_cloud::directory::Directory::at(
                    Some(location),
                    &sovereign_cloud::sites::directory_path(&args.data_dir),
                    std::env::var("SOVEREIGN_DIRECTORY_PASSWORD").ok(),
                    directory_ca,
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
        let cloud = if args.region.is_some() {
            // Invariant: with --region, `regions` holds exactly that region.
            let (region, listen) = regions.into_iter().next().context("no region")?;
            sovereign_cloud::sites::start_site(SiteOptions {
                data_dir: args.data_dir.clone(),
                database: databases.get(&region).cloned(),
                region,
                listen,
                policies,
                federation_file: args.federation.clone(),
                directory,
                tls_cert_key: args.tls_cert.clone().zip(args.tls_key.clone()),
                ca_bundle: args.ca_bundle.clone(),
                clock: Arc::new(SystemClock),
            })
            .await?
        } else {
            sovereign_cloud::start_cloud_on(
                CloudOptions {
                    data_dir: args.data_dir.clone(),
                    policies,
                    regions,
                    databases,
                    clock: Arc::new(SystemClock),
                },
                directory,
            )
            .await?
        };
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
