//! `sovereign retention report`: per category, what will be deleted when.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sovereign_cloud::Policies;
use sovereign_model::RegionId;

#[derive(clap::Subcommand)]
pub enum RetentionCommand {
    /// Per category: rows held, rows due now, and when the next and the last will be deleted.
    Report {
        #[arg(long, value_name = "DIR", default_value = "./sovereign-data")]
        data_dir: PathBuf,
        #[arg(long, value_name = "ID")]
        region: String,
        /// Policy directory, as for `serve --config`.
        #[arg(long, value_name = "DIR")]
        config: Option<PathBuf>,
        /// The region's PostgreSQL database (postgres://...), when `serve` was given one.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
}

pub fn run(command: RetentionCommand) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Report {
        data_dir,
        region,
        config,
        database,
    } = command;
    let region = RegionId::parse(&region).context("--region")?;
    let policies = match &config {
        Some(dir) => Policies::from_dir(dir)
            .with_context(|| format!("loading policies from {}", dir.display()))?,
        None => Policies::embedded()?,
    };
    let now = chrono::Utc::now().timestamp_millis();
    print!(
        "{}",
        sovereign_cloud::retention::report_store(
            &sovereign_cloud::sites::resolve_site_dir(&data_dir, &region),
            &region,
            database.as_deref(),
            &policies.retention,
            now
        )?
    );
    Ok(ExitCode::SUCCESS)
}
