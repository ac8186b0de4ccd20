//! `sovereign scan --profile PROFILE CAPTURE... --format json` without the rest of the binary,
//! through the same entry point (`run::execute`). bench/scan.sh falls back to it when the
//! `sovereign` binary does not build.
//!
//! Usage: scan PROFILE.toml CAPTURE...

use sovereign_scan::run::{Inputs, OutputFormat, Request, execute};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(profile) = args.next() else {
        eprintln!("usage: scan PROFILE.toml CAPTURE...");
        return std::process::ExitCode::from(2);
    };
    let request = Request {
        profile: profile.into(),
        policy: None,
        sites: sovereign_scan::Sites::default(),
        inputs: Inputs::Scan(args.map(Into::into).collect()),
        format: OutputFormat::Json,
        // KEYLOG=PATH gives a key log, as `--keylog PATH` does.
        keylogs: std::env::var_os("KEYLOG")
            .filter(|k| !k.is_empty())
            .map(Into::into)
            .into_iter()
            .collect(),
        // THREADS=N picks the worker threads, as `--threads N` does.
        threads: std::env::var("THREADS").ok().and_then(|t| t.parse().ok()),
    };
    let mut progress = sovereign_scan::progress::TerminalProgress::default();
    match execute(&request, &mut progress) {
        Ok(outcome) => {
            print!("{}", outcome.rendered);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scan: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
