//! `sovereign migrate`: move users from one region to another, online and resumably.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::directory::Directory;
use sovereign_cloud::migration::{
    MigrationEvent, MigrationSpec, Plan, Selector, check_services, migrate, migrate_to_site,
};
use sovereign_cloud::{Policies, RegionOptions, RegionState};
use sovereign_model::{CountryCode, RegionId};

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The data directory the regions run from (as given to `sovereign serve`), or with
    /// --region the data directory of that one site (as given to `sovereign serve --region`).
    #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
    data_dir: PathBuf,

    /// Run on the host of this site, the source of every move (--from, or each phase's `from`):
    /// open only its store and keys, and reach the target site, which must be running, through
    /// the federation file. The target does its side itself (it installs, re-wraps the data key
    /// sealed to it, checks its own residency policy and verifies); nothing of the target's disk
    /// is needed. Without --region both sites are opened from --data-dir (one machine).
    #[arg(long, value_name = "ID")]
    region: Option<String>,

    /// The federation file, with --region (default DIR/federation.toml), as for `sovereign serve`.
    #[arg(long, value_name = "FILE", requires = "region")]
    federation: Option<PathBuf>,

    /// CA certificates (PEM) trusted for sites whose federation entry pins no CA, with --region.
    #[arg(long, value_name = "FILE", requires = "region")]
    ca_bundle: Option<PathBuf>,

    /// Policy files replacing the built-in defaults (as for `sovereign serve`). The residency
    /// policy must allow the target region to hold the users moved there.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,

    /// The region users move out of.
    #[arg(long, value_name = "REGION", required_unless_present = "plan")]
    from: Option<String>,

    /// The region users move into.
    #[arg(long, value_name = "REGION", required_unless_present = "plan")]
    to: Option<String>,

    /// Move every user of the source whose phone number is from this country (ISO 3166 code).
    #[arg(long, value_name = "CC", conflicts_with_all = ["users", "plan"])]
    jurisdiction: Option<String>,

    /// Move the users listed in FILE, one user id or E.164 phone number per line.
    #[arg(long, value_name = "FILE", conflicts_with = "plan")]
    users: Option<PathBuf>,

    /// Move only these services, comma-separated (messaging,backup): the users' accounts stay
    /// where they are, and the services are placed in the target region. Naming every service,
    /// or leaving the flag out, moves whole users (account included).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    services: Vec<String>,

    /// A plan file of phases run in order (`[[phase]]` with name, from, to, jurisdiction or
    /// users, and optionally services). Running it again resumes where it stopped.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to"])]
    plan: Option<PathBuf>,

    /// A region whose store is a PostgreSQL database, as REGION=URL (as given to
    /// `sovereign serve --region REGION --database URL`); repeat for each such region.
    #[arg(long, value_name = "REGION=URL")]
    database: Vec<String>,

    /// The directory the regions use, as given to `sovereign serve --directory` (default the
    /// SQLite file in --data-dir); an etcd user's password is read from
    /// SOVEREIGN_DIRECTORY_PASSWORD. On etcd the migration journal lives there too.
    #[arg(long, value_name = "LOCATION")]
    directory: Option<String>,

    /// The CA certificates (PEM) of the etcd members' TLS certificates, for a directory given
    /// as etcds://HOST:PORT[,...]/PREFIX (etcd with --cert-file/--key-file).
    #[arg(long, value_name = "FILE", requires = "directory")]
    directory_ca: Option<PathBuf>,

    /// The CPU priority the tool runs at (Linux nice, 0 to 19). By default it yields: at 19,
    /// `sovereign serve` (at 0) gets the cores first whenever both want one, so live requests
    /// barely notice a migration on the same host. 0 moves users as fast as the host allows.
    #[arg(long, value_name = "N", default_value_t = sovereign_cloud::migration::MIGRATION_NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    nice: i32,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let services = check_services(&args.services).context("--services")?;
    let mut databases = std::collections::BTreeMap::new();
    for pair in &args.database {
        let Some((region, url)) = pair.split_once('=') else {
            bail!(
                "--database {}: expected REGION=URL",
                sovereign_cloud::store::redact_url(pair)
            );
        };
        let region = RegionId::parse(region).context("--database")?;
        databases.insert(region, url.to_owned());
    }
    let policies = match &args.config {
        Some(dir) => Policies::from_dir(dir)
            .with_context(|| format!("loading policies from {}", dir.display()))?,
        None => Policies::embedded()?,
    };
    let phases = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading plan {}", path.display()))?;
            Plan::from_toml(&text).with_context(|| format!("in plan {}", path.display()))?
        }
        None => vec![("migration".to_owned(), spec_from_flags(&args, services)?)],
    };
    let site = match &args.region {
        Some(id) => {
            let id = RegionId::parse(id).context("--region")?;
            for (name, spec) in &phases {
                if spec.from != id {
                    bail!(
                        "{name} moves users out of {}, not {id}: run it on {}'s host with --region {}",
                        spec.from,
                        spec.from,
                        spec.from
                    );
                }
            }
            Some(id)
        }
        None => None,
    };
    if args.directory.is_none() && !args.data_dir.join("directory.sqlite").exists() {
        bail!(
            "{} holds no regions (no directory.sqlite): give the --data-dir of `sovereign serve`",
            args.data_dir.display()
        );
    }
    let directory_ca = match &args.directory_ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    // Before any thread starts: each one the runtime and the stores start inherits it.
    if args.nice > 0 {
        sovereign_cloud::migration::lower_thread_priority(args.nice)
            .with_context(|| format!("--nice {}", args.nice))?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let directory = Directory::at(
            args.directory.as_deref(),
            &args.data_dir.join("directory.sqlite"),
            std::env::var("SOVEREIGN_DIRECTORY_PASSWORD").ok(),
            directory_ca,
            policies.regions.regions.iter().map(|r| r.id.clone()).collect(),
        )
        .await?;
        // The one-machine layout: each region is a site under DIR/sites/, and what one knows of
        // the others is DIR/federation.toml; a site on its own host has its own file.
        let federation_file = args
            .federation
            .clone()
            .unwrap_or_else(|| args.data_dir.join(sovereign_cloud::sites::FEDERATION_FILE));
        if site.is_some() && !federation_file.exists() {
            bail!(
                "{} does not exist: a site reaches the target only through its federation file (--federation)",
                federation_file.display()
            );
        }
        let ca_bundle = match &args.ca_bundle {
            Some(path) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            }
            None => Vec::new(),
        };
        let peers = if federation_file.exists() {
            Some(Arc::new(
                sovereign_cloud::sites::FederationFile::read(&federation_file)?.peer_table(),
            ))
        } else {
            None
        };
        let mut all_moved = true;
        for (name, spec) in phases {
            for region in [&spec.from, &spec.to] {
                if policies.regions.get(region).is_none() {
                    bail!("region {region} is not configured");
                }
            }
            let open = |region: &RegionId| {
                let dir = if site.is_some() {
                    args.data_dir.clone()
                } else {
                    sovereign_cloud::sites::resolve_site_dir(&args.data_dir, region)
                };
                let mut options = RegionOptions::new(dir, region.clone(), policies.clone());
                options.peers = peers.clone();
                options.peer_ca_bundle = ca_bundle.clone();
                if site.is_none() {
                    options.sms_outbox = Some(args.data_dir.join("sms-outbox.jsonl"));
                }
                options.clock = Arc::new(SystemClock);
                options.directory = Some(directory.clone());
                options.database = databases.get(region).cloned();
                RegionState::open(options)
            };
            let source = open(&spec.from).await?;
            let target = match site {
                Some(_) => None,
                None => Some(open(&spec.to).await?),
            };
            eprintln!("sovereign: {name}: {}", spec.describe());
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users {msg} [{elapsed}, eta {eta}]")
                    .context("progress style")?,
            );
            let started = Instant::now();
            let on_event = |event: &MigrationEvent| match event {
                MigrationEvent::Selected { users, already_done } => {
                    bar.set_length(*users as u64);
                    bar.set_position(*already_done as u64);
                }
                MigrationEvent::Moved { .. } => bar.inc(1),
                MigrationEvent::Skipped { user_id, reason } => {
                    bar.inc(1);
                    bar.println(format!("skipped {user_id}: {reason}"));
                }
            };
            let report = match &target {
                Some(target) => migrate(&spec, &source, target, on_event).await?,
                None => migrate_to_site(&spec, &source, on_event).await?,
            };
            bar.finish_and_clear();
            let seconds = started.elapsed().as_secs_f64().max(1e-9);
            let what = if spec.services.is_empty() {
                "users".to_owned()
            } else {
                let names: Vec<&str> = spec.services.iter().map(|s| s.as_str()).collect();
                format!("users' {}", names.join(" and "))
            };
            println!(
                "{name}: moved {} {what} ({:.1} MB) from {} to {} in {seconds:.2} s: {:.1} users/s, {:.2} MB/s; {} skipped",
                report.moved,
                report.bytes as f64 / 1e6,
                spec.from,
                spec.to,
                report.moved as f64 / seconds,
                report.bytes as f64 / 1e6 / seconds,
                report.skipped.len()
            );
            for (user, reason) in &report.skipped {
                println!("  skipped {user}: {reason}");
            }
            all_moved &= report.skipped.is_empty();
        }
        Ok(if all_moved { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

fn spec_from_flags(
    args: &MigrateArgs,
    services: Vec<sovereign_cloud::domain::Service>,
) -> anyhow::Result<MigrationSpec> {
    let region = |flag: &str, value: &Option<String>| -> anyhow::Result<RegionId> {
        let value = value
            .as_deref()
            .with_context(|| format!("--{flag} is required"))?;
        RegionId::parse(value).with_context(|| format!("--{flag}"))
    };
    let selector = match (&args.jurisdiction, &args.users) {
        (Some(cc), None) => {
            Selector::Jurisdiction(CountryCode::parse(cc).context("--jurisdiction")?)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let users: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            if users.is_empty() {
                bail!("{} lists no user", path.display());
            }
            Selector::Users(users)
        }
        _ => bail!("give either --jurisdiction CC or --users FILE (or --plan FILE)"),
    };
    Ok(MigrationSpec {
        from: region("from", &args.from)?,
        to: region("to", &args.to)?,
        selector,
        services,
    })
}
