//! `sovereign scan`: flags, then the scanner library does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sovereign_scan::Severity;
use sovereign_scan::run::{Inputs, OutputFormat, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FailOn {
    Low,
    Medium,
    High,
    Critical,
}

/// Exit codes: 0 when the rating is below --fail-on, 1 at or above it, 2 for usage or input
/// errors.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 when the rating is below --fail-on, 1 at or above it, 2 for usage or input errors."
)]
pub struct ScanArgs {
    /// The device profile (TOML): its identifiers and home country.
    #[arg(long, value_name = "PROFILE.toml")]
    profile: PathBuf,
    /// Captures to scan: pcap, pcapng or HAR.
    #[arg(
        value_name = "CAPTURE",
        required_unless_present = "diff",
        conflicts_with = "diff"
    )]
    captures: Vec<PathBuf>,
    /// Compare two captures: findings that appear, disappear or change.
    #[arg(long, num_args = 2, value_names = ["BEFORE", "AFTER"])]
    diff: Option<Vec<PathBuf>>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Severity rules (TOML) replacing the built-in defaults.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Named destinations (TOML `[[site]]` address, name, country) for addresses the country
    /// database cannot place, such as lab networks and loopback.
    #[arg(long, value_name = "FILE")]
    sites: Option<PathBuf>,
    /// Worker threads for pcap and pcapng captures, flows sharded between them (default: one
    /// per core). The report is the same whatever the number.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(usize))]
    threads: Option<usize>,
    /// A TLS key log (SSLKEYLOGFILE format) to decrypt TLS 1.2 and 1.3 with; repeatable. Keys
    /// in a pcapng's Decryption Secrets Blocks are used without it.
    #[arg(long, value_name = "FILE")]
    keylog: Vec<PathBuf>,
    /// Exit with 1 when the rating is at or above this.
    #[arg(long, value_enum, default_value_t = FailOn::High)]
    fail_on: FailOn,
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let inputs = match args.diff {
        Some(pair) => {
            let [before, after]: [PathBuf; 2] = pair
                .try_into()
                .map_err(|_| anyhow::anyhow!("--diff takes two captures, BEFORE and AFTER"))?;
            Inputs::Diff { before, after }
        }
        None => Inputs::Scan(args.captures),
    };
    let sites = match &args.sites {
        Some(path) => sovereign_scan::run::read_sites(path)?,
        None => sovereign_scan::Sites::default(),
    };
    let request = Request {
        profile: args.profile,
        policy: args.policy,
        sites,
        inputs,
        format: match args.format {
            Format::Table => OutputFormat::Table,
            Format::Json => OutputFormat::Json,
            Format::Html => OutputFormat::Html,
        },
        keylogs: args.keylog,
        threads: args.threads,
    };
    let mut progress = sovereign_scan::progress::TerminalProgress::default();
    let outcome = sovereign_scan::run::execute(&request, &mut progress)?;
    match &args.output {
        Some(path) => std::fs::write(path, &outcome.rendered)
            .with_context(|| format!("writing report {}", path.display()))?,
        None => print!("{}", outcome.rendered),
    }
    let threshold = match args.fail_on {
        FailOn::Low => Severity::Low,
        FailOn::Medium => Severity::Medium,
        FailOn::High => Severity::High,
        FailOn::Critical => Severity::Critical,
    };
    Ok(if outcome.rating >= threshold {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        scan: ScanArgs,
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scan/tests/fixtures")
    }

    fn run_with(args: &[&str]) -> anyhow::Result<ExitCode> {
        let profile = fixtures().join("profile.toml");
        let mut argv = vec!["scan".to_owned(), "--profile".to_owned()];
        argv.push(profile.display().to_string());
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        run(Cli::try_parse_from(argv)?.scan)
    }

    #[test]
    fn exit_code_is_one_at_or_above_fail_on_and_zero_below() {
        let dir = std::env::temp_dir().join(format!("sovereign-scan-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("report.json");
        let capture = fixtures().join("loopback.pcap");
        let capture = capture.to_str().unwrap();
        let out_arg = out.to_str().unwrap();
        // The recorded traffic rates high: failing at high gives 1, at critical 0.
        let code = run_with(&[capture, "--format", "json", "--output", out_arg]).unwrap();
        assert_eq!(code, ExitCode::from(1));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(json["rating"], "high");
        let code = run_with(&[capture, "--fail-on", "critical", "--output", out_arg]).unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sites_name_the_destinations_the_database_cannot_place() {
        let dir = std::env::temp_dir().join(format!("sovereign-scan-sites-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sites = dir.join("sites.toml");
        std::fs::write(
            &sites,
            "[[site]]\naddress = \"127.0.0.1:8765\"\nname = \"in-mumbai\"\ncountry = \"SG\"\n",
        )
        .unwrap();
        let out = dir.join("report.json");
        let capture = fixtures().join("loopback.pcap");
        let (capture, sites_arg, out_arg) = (
            capture.to_str().unwrap(),
            sites.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        run_with(&[
            capture, "--sites", sites_arg, "--format", "json", "--output", out_arg,
        ])
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let to_site: Vec<&serde_json::Value> = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["dst"] == "127.0.0.1:8765")
            .collect();
        assert!(!to_site.is_empty());
        for f in to_site {
            assert_eq!(f["site"], "in-mumbai");
            assert_eq!(f["country"], "SG");
            assert_eq!(f["cross_border"], true);
        }
        std::fs::write(&sites, "[[site]]\naddress = \"127.0.0.1\"\nnom = \"x\"\n").unwrap();
        let err = run_with(&[capture, "--sites", sites_arg]).unwrap_err();
        assert!(format!("{err:#}").contains("nom"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn input_errors_are_errors_for_exit_code_two() {
        // main() turns an Err into exit code 2.
        let err = run_with(&["/nonexistent/capture.pcap"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/capture.pcap"),
            "{err:#}"
        );
    }

    #[test]
    fn a_bad_keylog_is_an_input_error_naming_file_and_line() {
        let dir =
            std::env::temp_dir().join(format!("sovereign-scan-keylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keylog = dir.join("sslkeys.txt");
        std::fs::write(&keylog, "# NSS key log\nCLIENT_RANDOM 00 11\n").unwrap();
        let capture = fixtures().join("loopback.pcap");
        let err = run_with(&[
            capture.to_str().unwrap(),
            "--keylog",
            keylog.to_str().unwrap(),
        ])
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("key log {}, line 2:", keylog.display())),
            "{message}"
        );
        // An empty key log (no TLS session in it) is fine, and --keylog repeats.
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        let e = empty.to_str().unwrap();
        let out = dir.join("r.json");
        let o = out.to_str().unwrap();
        run_with(&[
            capture.to_str().unwrap(),
            "--keylog",
            e,
            "--keylog",
            e,
            "--output",
            o,
        ])
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn usage_errors_are_reported_by_clap() {
        // Clap exits with 2 on usage errors: no capture, or a bad --fail-on.
        assert!(Cli::try_parse_from(["scan", "--profile", "p.toml"]).is_err());
        assert!(Cli::try_parse_from(["scan", "--profile", "p", "c", "--fail-on", "x"]).is_err());
        assert!(Cli::try_parse_from(["scan", "--profile", "p", "--diff", "a"]).is_err());
        assert!(Cli::try_parse_from(["scan", "--profile", "p", "--diff", "a", "b"]).is_ok());
    }
}
