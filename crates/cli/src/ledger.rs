//! `sovereign ledger verify`: checks a region's access ledger offline, from its store (the SQLite
//! file, or the region's PostgreSQL database with `--database`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sovereign_model::RegionId;

#[derive(clap::Subcommand)]
pub enum LedgerCommand {
    /// Check every entry's hashes and the chain, and every checkpoint's signature, Merkle root and
    /// chain head. Exits 1 and names the first bad entry when the ledger was changed.
    Verify {
        #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
        data_dir: PathBuf,
        #[arg(long, value_name = "ID")]
        region: String,
        /// The region's PostgreSQL database (postgres://...), when `serve` was given one.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
}

pub fn run(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let LedgerCommand::Verify {
        data_dir,
        region,
        database,
    } = command;
    let region = RegionId::parse(&region).context("--region")?;
    let site = sovereign_cloud::sites::resolve_site_dir(&data_dir, &region);
    match sovereign_cloud::ledger::verify_store(&site, &region, database.as_deref())? {
        Ok(summary) => {
            println!(
                "ledger of {region} verifies: {} entries, {} signed checkpoints, Merkle root {}",
                summary.entries, summary.checkpoints, summary.root_hex
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            println!("ledger of {region} does NOT verify: {fault}");
            Ok(ExitCode::from(1))
        }
    }
}
