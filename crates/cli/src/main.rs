//! The `sovereign` command. It only parses flags, loads configuration and calls into the
//! libraries: the cloud (`serve`), the scanner (`scan`).

mod migrate;
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
    /// Run the cloud: accounts, consent, messaging and backup, over HTTPS.
    Serve(serve::ServeArgs),
    /// Find a phone's identifiers in captured traffic and say where they went.
    Scan(scan::ScanArgs),
    /// Move users between regions while they keep using the service; resumable.
    Migrate(migrate::MigrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Scan(args) => scan::run(args),
        Command::Migrate(args) => migrate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sovereign: {error:#}");
            ExitCode::from(2)
        }
    }
}
