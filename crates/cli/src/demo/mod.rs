//! `sovereign demo`: the scanner proving, from the wire, what the cloud promises.
//!
//! One run: the cloud starts embedded (every region, free loopback ports), the legacy account
//! endpoint starts as the 2014 phone's "cn-beijing" server, and for each behaviour tcpdump
//! captures loopback while a simulated phone runs the 2014 procedure. Both captures are then
//! scanned with the phones' TLS key logs, the reports written (HTML and JSON), shown side by side,
//! and each claim checked against what the scanner found: exit 0 when every claim holds, 1 when
//! one does not, 2 when the demo could not run (tcpdump missing, say).

mod tcpdump;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;
use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::{CloudOptions, Policies};
use sovereign_device::PhoneProfile;
use sovereign_device::legacy::{LegacyEndpoint, LegacyTarget};
use sovereign_device::sim::{Behaviour, CloudTarget, Phone, PhoneOptions, Step, procedure};
use sovereign_model::IdentifierKind;
use sovereign_scan::report::{Finding, Report};

/// The phone the demo runs unless `--profile` names another: an Indian subscriber.
const PHONE_TOML: &str = include_str!("../../../../config/phone.toml");
/// The region the 2014 phone's account endpoint stands for.
const LEGACY_REGION: &str = "cn-beijing";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit codes: 0 when every claim holds, 1 when one does not, 2 when the demo could not run.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 when every claim holds, 1 when one does not, 2 when the demo could not run (e.g. tcpdump missing or not permitted)."
)]
pub struct DemoArgs {
    /// Where the captures, key logs and reports go. Files of an earlier demo there are replaced.
    #[arg(long, value_name = "DIR", default_value = "sovereign-demo")]
    out: PathBuf,
    /// The phone's profile (scanner profile format). Default: the built-in Indian handset
    /// (config/phone.toml).
    #[arg(long, value_name = "PROFILE.toml")]
    profile: Option<PathBuf>,
    /// `text`: the two reports side by side and the claims; `json`: the same, for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// What one behaviour's run produced.
#[derive(Debug, Serialize)]
struct Run {
    behaviour: &'static str,
    capture: PathBuf,
    key_log: PathBuf,
    html: PathBuf,
    json: PathBuf,
    /// When the user first agreed to anything (the start of the sign-in step), UTC microseconds.
    consent_at_us: i64,
    /// The region holding the account, for `sovereign`.
    home_region: Option<String>,
    #[serde(skip)]
    report: Report,
    rating: String,
    findings: usize,
}

/// A claim of the demo and whether the scan bears it out.
#[derive(Debug, Serialize)]
struct Check {
    behaviour: &'static str,
    claim: String,
    holds: bool,
    /// What the scan showed, in a line.
    detail: String,
}

#[derive(Debug, Serialize)]
struct Summary {
    ok: bool,
    out: PathBuf,
    runs: Vec<Run>,
    checks: Vec<Check>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let summary = runtime.block_on(demo(&args))?;
    match args.format {
        Format::Text => print!("{}", render_text(&summary)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
    }
    Ok(if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn demo(args: &DemoArgs) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args
        .out
        .canonicalize()
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let profile_path = match &args.profile {
        Some(path) => path.clone(),
        None => {
            let path = out.join("phone.toml");
            std::fs::write(&path, PHONE_TOML)
                .with_context(|| format!("writing {}", path.display()))?;
            path
        }
    };
    let profile = PhoneProfile::load(&profile_path)?;

    eprintln!("demo: starting the cloud (every region, embedded) ...");
    let cloud_dir = tempfile::tempdir().context("creating the cloud's data directory")?;
    let policies = Policies::embedded()?;
    let regions_config = policies.regions.clone();
    let residency = policies.residency.clone();
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: cloud_dir.path().to_owned(),
        policies,
        regions: regions_config
            .regions
            .iter()
            .map(|region| (region.id.clone(), loopback))
            .collect(),
        databases: BTreeMap::new(),
        clock: std::sync::Arc::new(SystemClock),
    })
    .await?;
    let legacy = LegacyEndpoint::start(loopback, loopback).await?;

    // What the analyst knows about the lab's addresses: each region's port and country, and
    // the legacy endpoint standing for cn-beijing.
    let mut sites = Vec::new();
    for region in &cloud.regions {
        let config = regions_config
            .get(&region.id)
            .context("a running region is configured")?;
        sites.push(Site {
            address: region.server.addr(),
            name: region.id.as_str().to_owned(),
            country: config.country.as_str().to_owned(),
        });
    }
    let legacy_country = regions_config
        .regions
        .iter()
        .find(|r| r.id.as_str() == LEGACY_REGION)
        .map_or("CN".to_owned(), |r| r.country.as_str().to_owned());
    for address in [legacy.http_addr(), legacy.https_addr()] {
        sites.push(Site {
            address,
            name: LEGACY_REGION.to_owned(),
            country: legacy_country.clone(),
        });
    }
    let ports: Vec<u16> = sites.iter().map(|s| s.address.port()).collect();
    let sites_path = out.join("sites.toml");
    std::fs::write(&sites_path, sites_toml(&sites))
        .with_context(|| format!("writing {}", sites_path.display()))?;
    // The phone picks its home region itself, from its own number's country and the published
    // residency table, so that its number never reaches a region that may not hold it (entering
    // at another region would carry the number there before the redirect).
    let number = sovereign_cloud::domain::PhoneNumber::parse(profile.phone())
        .map_err(|error| anyhow::anyhow!("the profile's phone number: {error}"))?;
    let home = residency.home_region(number.country()).clone();
    let entry = cloud
        .region(home.as_str())
        .with_context(|| format!("home region {home} is not running"))?;
    let ca_path = cloud_dir.path().join("tls").join("ca.pem");
    let ca_pem =
        std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;

    let mut runs = Vec::new();
    for behaviour in [Behaviour::Legacy2014, Behaviour::Sovereign] {
        let name = behaviour.as_str();
        let capture_path = out.join(format!("{name}.pcap"));
        let key_log = out.join(format!("{name}.keys"));
        for stale in [&capture_path, &key_log] {
            match std::fs::remove_file(stale) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("removing {}", stale.display()));
                }
            }
        }
        let mut options = PhoneOptions::new(behaviour);
        options.cloud = Some(CloudTarget {
            url: entry.url.clone(),
            ca_pem: ca_pem.clone(),
            ca_origin: ca_path.display().to_string(),
        });
        options.sms_outbox = Some(cloud_dir.path().join("sms-outbox.jsonl"));
        options.key_log = Some(key_log.clone());
        options.legacy = Some(LegacyTarget {
            http: legacy.http_addr(),
            https: legacy.https_addr(),
            ca_pem: legacy.ca_pem().as_bytes().to_vec(),
        });

        eprintln!("demo: {name}: capturing loopback with tcpdump, running the 2014 procedure ...");
        let capture = {
            let path = capture_path.clone();
            let ports = ports.clone();
            tokio::task::spawn_blocking(move || tcpdump::Capture::start(&path, &ports)).await??
        };
        let mut phone = Phone::new(profile.clone(), options).await?;
        let mut consent_at_us = None;
        let mut steps = Vec::new();
        for step in procedure() {
            if step == Step::SignIn && consent_at_us.is_none() {
                consent_at_us = Some(now_us());
            }
            let report = phone
                .run_step(step)
                .await
                .with_context(|| format!("{name}: step {step}"))?;
            eprintln!(
                "  {:>2}. {:<20} {}",
                report.number,
                step.as_str(),
                report.summary
            );
            steps.push(report);
        }
        let run_report = phone.report(steps);
        drop(phone);
        tokio::task::spawn_blocking(move || capture.stop()).await??;

        eprintln!(
            "demo: {name}: scanning {} with its key log ...",
            capture_path.display()
        );
        let report = scan(&profile_path, &capture_path, &key_log, &sites_path)?;
        let html = out.join(format!("{name}.html"));
        let json = out.join(format!("{name}.json"));
        std::fs::write(&html, sovereign_scan::report::html::report(&report))
            .with_context(|| format!("writing {}", html.display()))?;
        std::fs::write(&json, report.to_json()? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        runs.push(Run {
            behaviour: name,
            capture: capture_path,
            key_log,
            html,
            json,
            consent_at_us: consent_at_us.unwrap_or(i64::MAX),
            home_region: run_report.region.clone(),
            rating: report.rating.as_str().to_owned(),
            findings: report.findings.len(),
            report,
        });
    }
    cloud.shutdown(Duration::from_secs(2)).await;
    drop(legacy);

    let mut checks = Vec::new();
    if let [legacy_run, sovereign_run] = runs.as_slice() {
        checks.extend(legacy_checks(legacy_run));
        checks.extend(sovereign_checks(sovereign_run));
    }
    Ok(Summary {
        ok: !checks.is_empty() && checks.iter().all(|c| c.holds),
        out,
        runs,
        checks,
    })
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// An address the demo knows the place of.
#[derive(Debug, Clone)]
struct Site {
    address: SocketAddr,
    name: String,
    country: String,
}

/// Scans one capture as an analyst would by hand:
/// `sovereign scan --profile P --keylog K --sites S CAPTURE`.
fn scan(profile: &Path, capture: &Path, key_log: &Path, sites: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(profile)
        .with_context(|| format!("reading {}", profile.display()))?;
    let profile = sovereign_scan::Profile::from_toml(&text, &profile.display().to_string())?;
    let keys = sovereign_scan::run::read_keylogs(&[key_log.to_owned()])?;
    let sites = sovereign_scan::run::read_sites(&sites.to_owned())?;
    let scanner = sovereign_scan::Scanner::new(profile, sovereign_scan::Policy::builtin())?
        .with_sites(sites)
        .with_keys(keys);
    Ok(scanner.scan_paths(
        &[capture.to_owned()],
        &mut sovereign_scan::progress::NoProgress,
    )?)
}

/// The sites file for the scanner: what the analyst knows about the lab's addresses.
fn sites_toml(sites: &[Site]) -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        "# Written by `sovereign demo`: the lab's loopback addresses, each standing for a region.\n",
    );
    for site in sites {
        let _ = write!(
            text,
            "\n[[site]]\naddress = \"{}\"\nname = \"{}\"\ncountry = \"{}\"\n",
            site.address, site.name, site.country
        );
    }
    text
}

fn is_kind(finding: &Finding, kinds: &[IdentifierKind]) -> bool {
    kinds.contains(&finding.identifier)
}

fn inside_tls(finding: &Finding) -> bool {
    finding.chain.first().is_some_and(|c| c == "tls")
}

fn place(finding: &Finding) -> String {
    let site = finding_site(finding).unwrap_or("?");
    let country = finding.country.as_deref().unwrap_or("??");
    format!("{site} ({country})")
}

fn finding_site(finding: &Finding) -> Option<&str> {
    finding.site.as_deref()
}

fn check(behaviour: &'static str, claim: &str, holds: bool, detail: String) -> Check {
    Check {
        behaviour,
        claim: claim.to_owned(),
        holds,
        detail,
    }
}

/// What 2014 found, which the scan of the legacy phone must show.
fn legacy_checks(run: &Run) -> Vec<Check> {
    let b = run.behaviour;
    let findings = &run.report.findings;
    let before: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.first_seen_us < run.consent_at_us)
        .collect();
    let mut checks = Vec::new();
    // 2014: IMEI, carrier and number at first boot, before the user agreed to anything.
    for (kind, rated) in [
        (IdentifierKind::Imei, sovereign_scan::Severity::High),
        (IdentifierKind::Phone, sovereign_scan::Severity::High),
        // A carrier's name alone identifies nobody: the policy rates it medium, not high.
        (IdentifierKind::Carrier, sovereign_scan::Severity::Medium),
    ] {
        let hit = before.iter().find(|f| {
            f.identifier == kind
                && finding_site(f) == Some(LEGACY_REGION)
                && f.cleartext
                && f.severity >= rated
        });
        checks.push(check(
            b,
            &format!(
                "{kind} sent in cleartext to {LEGACY_REGION} before any consent, rated {} or worse",
                rated.as_str()
            ),
            hit.is_some(),
            hit.map_or("not found".to_owned(), |f| describe(f)),
        ));
    }
    let imsi = findings
        .iter()
        .find(|f| f.identifier == IdentifierKind::Imsi && f.first_seen_us >= run.consent_at_us);
    checks.push(check(
        b,
        &format!("IMSI sent to {LEGACY_REGION} after sign-in"),
        imsi.is_some_and(|f| finding_site(f) == Some(LEGACY_REGION)),
        imsi.map_or("not found".to_owned(), describe),
    ));
    let contact = findings.iter().find(|f| {
        f.identifier == IdentifierKind::Contact && finding_site(f) == Some(LEGACY_REGION)
    });
    checks.push(check(
        b,
        &format!("contacts' numbers sent to {LEGACY_REGION}"),
        contact.is_some(),
        contact.map_or("not found".to_owned(), describe),
    ));
    let hidden = findings.iter().find(|f| {
        inside_tls(f)
            && f.chain.iter().any(|c| c.starts_with("base64"))
            && is_kind(
                f,
                &[
                    IdentifierKind::Imei,
                    IdentifierKind::Imsi,
                    IdentifierKind::Phone,
                ],
            )
    });
    checks.push(check(
        b,
        "after the update, the same identifiers base64-encoded inside TLS",
        hidden.is_some(),
        hidden.map_or("not found".to_owned(), describe),
    ));
    checks.push(check(
        b,
        "overall rating high or critical",
        run.report.rating >= sovereign_scan::Severity::High,
        format!("rating {}", run.rating),
    ));
    checks
}

/// What our cloud promises, which the scan of the sovereign phone must show.
fn sovereign_checks(run: &Run) -> Vec<Check> {
    let b = run.behaviour;
    let findings = &run.report.findings;
    let home = run.home_region.as_deref().unwrap_or("?");
    let mut checks = Vec::new();
    let early: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.first_seen_us < run.consent_at_us)
        .collect();
    checks.push(check(
        b,
        "no identifier leaves the phone before the user agrees to anything",
        early.is_empty(),
        summarise(&early),
    ));
    let hardware: Vec<&Finding> = findings
        .iter()
        .filter(|f| {
            is_kind(
                f,
                &[
                    IdentifierKind::Imei,
                    IdentifierKind::Imsi,
                    IdentifierKind::Iccid,
                ],
            )
        })
        .collect();
    checks.push(check(
        b,
        "never an IMEI, IMSI or ICCID, in any encoding",
        hardware.is_empty(),
        summarise(&hardware),
    ));
    let others: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.identifier != IdentifierKind::Phone)
        .collect();
    let phone = findings
        .iter()
        .find(|f| f.identifier == IdentifierKind::Phone);
    checks.push(check(
        b,
        "after consent, only the user's phone number",
        others.is_empty() && phone.is_some(),
        if phone.is_none() {
            "the phone number was not seen at all: was the traffic visible?".to_owned()
        } else {
            summarise(&others)
        },
    ));
    let away: Vec<&Finding> = findings
        .iter()
        .filter(|f| finding_site(f) != Some(home))
        .collect();
    checks.push(check(
        b,
        &format!("only to the user's home region ({home})"),
        away.is_empty() && run.home_region.is_some(),
        summarise(&away),
    ));
    let clear: Vec<&Finding> = findings.iter().filter(|f| !inside_tls(f)).collect();
    checks.push(check(
        b,
        "only inside TLS",
        clear.is_empty(),
        summarise(&clear),
    ));
    let opaque: Vec<String> = run
        .report
        .tls_flows
        .iter()
        .filter(|flow| !flow.decrypted)
        .map(|flow| format!("{} -> {}", flow.src, flow.dst))
        .collect();
    checks.push(check(
        b,
        "every TLS flow decrypted with the phone's key log (nothing went unseen)",
        opaque.is_empty() && !run.report.tls_flows.is_empty(),
        if opaque.is_empty() {
            format!("{} TLS flows, all decrypted", run.report.tls_flows.len())
        } else {
            format!("not visible: {}", opaque.join(", "))
        },
    ));
    checks
}

fn describe(finding: &Finding) -> String {
    format!(
        "{} as {} via {} to {}, {}",
        finding.identifier,
        finding.encoding,
        finding.chain.join(">"),
        place(finding),
        finding.severity.as_str()
    )
}

fn summarise(findings: &[&Finding]) -> String {
    match findings {
        [] => "none".to_owned(),
        [one] => describe(one),
        [first, rest @ ..] => format!("{} (and {} more)", describe(first), rest.len()),
    }
}

/// The two reports side by side, one row per identifier kind, then the claims.
fn render_text(summary: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let width = 50;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<width$} {:<width$}",
        "identifier", "legacy-2014", "sovereign"
    );
    let _ = writeln!(out, "{}", "-".repeat(16 + 2 * width + 2));
    let kinds: Vec<IdentifierKind> = IdentifierKind::ALL.to_vec();
    for kind in kinds {
        let cells: Vec<String> = summary
            .runs
            .iter()
            .map(|run| cell(&run.report, kind))
            .collect();
        if cells.iter().all(|c| c == "-") {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<16} {:<width$} {:<width$}",
            kind.as_str(),
            cells.first().map_or("", String::as_str),
            cells.get(1).map_or("", String::as_str)
        );
    }
    let ratings: Vec<String> = summary
        .runs
        .iter()
        .map(|r| r.rating.to_uppercase())
        .collect();
    let _ = writeln!(
        out,
        "{:<16} {:<width$} {:<width$}",
        "RATING",
        ratings.first().map_or("", String::as_str),
        ratings.get(1).map_or("", String::as_str)
    );
    let _ = writeln!(out);
    for check in &summary.checks {
        let mark = if check.holds { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "{mark} {}: {}", check.behaviour, check.claim);
        if !check.holds {
            let _ = writeln!(out, "       saw: {}", check.detail);
        }
    }
    let _ = writeln!(out);
    for run in &summary.runs {
        let _ = writeln!(
            out,
            "{}: report {} (JSON {}), capture {}, key log {}",
            run.behaviour,
            run.html.display(),
            run.json.display(),
            run.capture.display(),
            run.key_log.display()
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if summary.ok {
            "Every claim holds."
        } else {
            "Some claims do not hold (FAIL above)."
        }
    );
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// One report's findings of one kind, in a few words: where, how, how bad.
fn cell(report: &Report, kind: IdentifierKind) -> String {
    let of_kind: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.identifier == kind)
        .collect();
    let Some(worst) = of_kind.iter().max_by_key(|f| f.severity) else {
        return "-".to_owned();
    };
    let how = if inside_tls(worst) {
        "in TLS"
    } else if worst.cleartext {
        "cleartext"
    } else {
        ""
    };
    let mut text = format!(
        "{} {} -> {}",
        worst.severity.as_str().to_uppercase(),
        how,
        place(worst)
    );
    if of_kind.len() > 1 {
        let _ =
            std::fmt::Write::write_fmt(&mut text, format_args!(" (+{} more)", of_kind.len() - 1));
    }
    text
}
