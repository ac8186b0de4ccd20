//! `sovereign ledger verify`: checks a region's access ledger offline, from its store (the SQLite
//! file, or the region's PostgreSQL database with `--database`). With `--public-key` it needs
//! nothing of the region's secrets: anyone holding a copy of the data and the published
//! `.ledger.pub` can run it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sovereign_cloud::ledger::{LEDGER_CHECKPOINT_SECS_MAX_DEFAULT, LagBounds};
use sovereign_model::RegionId;

#[derive(clap::Subcommand)]
pub enum LedgerCommand {
    /// Recompute every entry's hashes, the chain and the Merkle tree, check every entry's seal and
    /// every checkpoint's signature, root and chain head (so each extends the one before), and
    /// the bounds between checkpoints; say which tail no checkpoint covers yet. Exits 1 and
    /// names the first bad entry or checkpoint when the ledger was changed.
    Verify {
        #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
        data_dir: PathBuf,
        #[arg(long, value_name = "ID")]
        region: String,
        /// The region's PostgreSQL database (postgres://...), when `serve` was given one.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// The region's published ledger public key (`<region>.ledger.pub`). Without it, the
        /// key is taken from the region's private key under DIR/keys (the operator's check).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Most entries between checkpoints: the region's `ledger_checkpoint_entries`.
        #[arg(long, value_name = "N", default_value_t = 16)]
        checkpoint_entries: u32,
        /// Oldest an uncovered entry may be: the region's `ledger_checkpoint_secs_max`.
        #[arg(long, value_name = "SECS", default_value_t = LEDGER_CHECKPOINT_SECS_MAX_DEFAULT)]
        checkpoint_secs_max: u64,
        /// Judge the tail's age at this time (Unix milliseconds), e.g. when the copy was
        /// taken; default now.
        #[arg(long, value_name = "MS")]
        at_ms: Option<i64>,
    },
}

pub fn run(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let LedgerCommand::Verify {
        data_dir,
        region,
        database,
        public_key,
        checkpoint_entries,
        checkpoint_secs_max,
        at_ms,
    } = command;
    let region = RegionId::parse(&region).context("--region")?;
    let site = sovereign_cloud::sites::resolve_site_dir(&data_dir, &region);
    let verdict = match public_key {
        Some(file) => {
            let key = sovereign_cloud::ledger::read_public_key(&file).context("--public-key")?;
            let now = at_ms.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0)
            });
            let bounds = LagBounds {
                entries_max: i64::from(checkpoint_entries.max(1)),
                secs_max: i64::try_from(checkpoint_secs_max).unwrap_or(i64::MAX),
                now_ms: Some(now),
            };
            sovereign_cloud::ledger::verify_store_with(
                &site,
                &region,
                database.as_deref(),
                &key,
                &bounds,
            )?
        }
        None => sovereign_cloud::ledger::verify_store(&site, &region, database.as_deref())?,
    };
    match verdict {
        Ok(summary) => {
            println!(
                "ledger of {region} verifies: {} entries ({} sealed), {} signed checkpoints, \
                 Merkle root {}",
                summary.entries, summary.sealed, summary.checkpoints, summary.root_hex
            );
            match summary.uncovered {
                None => println!("every entry is covered by a signed checkpoint"),
                Some(tail) => println!(
                    "not yet covered by a checkpoint: entries {} to {} (the oldest from {}); \
                     each is sealed, and the next checkpoint will cover them",
                    tail.from,
                    tail.to,
                    sovereign_cloud::clock::rfc3339(tail.oldest_at)
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            println!("ledger of {region} does NOT verify: {fault}");
            Ok(ExitCode::from(1))
        }
    }
}
