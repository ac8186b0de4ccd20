//! The `sovereign` command. It only parses flags, loads configuration and calls into the
//! libraries: the cloud (`serve`), the scanner (`scan`), the phone (`device`); `demo` puts the
//! three together.

mod demo;
mod device;
mod federation;
mod ledger;
mod migrate;
mod ops;
mod retention;
mod scan;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sovereign: a phone cloud that keeps its privacy promises, and the instrument that checks them.
#[derive(Parser)]
#[command(name = "sovereign", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The headline: the cloud, two simulated phones (2014 and ours) captured with tcpdump, both
    /// captures scanned, the reports side by side and every claim checked.
    Demo(demo::DemoArgs),
    /// Run the cloud: accounts, consent, messaging and backup, over HTTPS.
    Serve(serve::ServeArgs),
    /// Find a phone's identifiers in captured traffic and say where they went.
    Scan(scan::ScanArgs),
    /// Sites: print the stanza a site publishes in the federation file.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Move users between regions while they keep using the service; resumable.
    Migrate(migrate::MigrateArgs),
    /// Staff access: operator keys and registration, signed requests, approvals and reads.
    #[command(subcommand)]
    Ops(ops::OpsCommand),
    /// The access ledger: verify it end to end.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Retention: what will be deleted when.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// The phone: run the 2014 test procedure on a simulated phone, or its legacy endpoint.
    #[command(subcommand)]
    Device(device::DeviceCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Federation(command) => federation::run(command),
        Command::Ops(command) => ops::run(command),
        Command::Ledger(command) => ledger::run(command),
        Command::Retention(command) => retention::run(command),
        Command::Device(command) => device::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sovereign: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The store file of a configured region under `data_dir` (a site's own directory, or the
/// one-machine layout of `sovereign serve` holding it under `sites/<region>/`).
fn region_store(
    data_dir: &std::path::Path,
    region: &str,
    config: Option<&std::path::Path>,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let region = sovereign_model::RegionId::parse(region).context("--region")?;
    let policies = match config {
        Some(dir) => sovereign_cloud::Policies::from_dir(dir)
            .with_context(|| format!("loading policies from {}", dir.display()))?,
        None => sovereign_cloud::Policies::embedded()?,
    };
    if policies.regions.get(&region).is_none() {
        anyhow::bail!("region {region} is not configured");
    }
    let dir = sovereign_cloud::sites::resolve_site_dir(data_dir, &region)
        .join("regions")
        .join(region.as_str());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("store.sqlite"))
}
