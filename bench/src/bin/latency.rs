//! The phone-side helpers of `bench/latency.sh`, all speaking to the cloud through the phone's
//! own client (`sovereign_device::CloudClient`, which follows `307 wrong_region` and stays at
//! the region it was sent to):
//!
//! - `loop`: a phone that keeps working during a migration: signs in, then reads its profile and
//!   inbox and sends itself a message, again and again until a stop file appears, counting what
//!   succeeded, what was fenced for a moment (`503 user_migrating`, retried after a second) and
//!   what failed;
//! - `photos`: a camera roll synced to the backup: signs the user up if needed, grants
//!   `backup.photos` and uploads N JPEG-sized photos, a few at a time, timing the whole sync;
//! - `report`: the tables of the README from the stages' `device run --timings` files.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};
use sovereign_bench::percentile;
use sovereign_device::client::{BackupKind, CloudClient, Photo, TlsSettings};

/// Longest a `loop` runs even if its stop file never appears.
const LOOP_SECS_MAX: u64 = 1800;
/// Most photos one `photos` run uploads.
const PHOTOS_MAX: usize = 10_000;
/// Most photos uploaded at once.
const PHOTO_UPLOADS_PARALLEL_MAX: usize = 16;
/// Largest photo generated (the server's default `photo_bytes_max` is 16 MiB).
const PHOTO_BYTES_MAX: usize = 15 * 1024 * 1024;
/// Most error messages a `loop` keeps as samples.
const ERROR_SAMPLES_MAX: usize = 10;

#[derive(Parser)]
enum Command {
    Loop(LoopArgs),
    Photos(PhotoArgs),
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct Cloud {
    /// The region the phone talks to first.
    #[arg(long)]
    cloud: String,
    /// The CA bundle of the sites.
    #[arg(long)]
    ca: PathBuf,
    /// The user's phone number.
    #[arg(long)]
    phone: String,
    #[arg(long, default_value = sovereign_device::sim::PASSWORD_DEFAULT)]
    password: String,
}

#[derive(clap::Args)]
struct LoopArgs {
    #[command(flatten)]
    cloud: Cloud,
    /// Stop when this file exists.
    #[arg(long)]
    stop_file: PathBuf,
    /// Write the counts here as JSON.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct PhotoArgs {
    #[command(flatten)]
    cloud: Cloud,
    /// The SMS gateway file of the user's home site (for the sign-up code).
    #[arg(long)]
    sms_outbox: PathBuf,
    #[arg(long, default_value_t = 200)]
    count: usize,
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    min_bytes: usize,
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    max_bytes: usize,
    /// Uploads at once (a phone's backup client uploads a few in parallel).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Photo ids are PREFIX-N; a second roll needs another prefix.
    #[arg(long, default_value = "roll")]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The user has an account already: sign in only (a sign-up at a region the number moved
    /// to would be sent back to the residency policy's home).
    #[arg(long)]
    existing_account: bool,
    /// Write the result here as JSON.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// A stage as NAME=TIMINGS.json[,TIMINGS.json...]:SECONDS[,SECONDS...][:LOOP.json], one
    /// timings file and procedure time per run, in order; the first stage is the baseline.
    #[arg(long, required = true)]
    stage: Vec<String>,
    /// Photo syncs as NAME=RESULT.json, in order; the first is the baseline.
    #[arg(long)]
    photos: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let command = Command::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match command {
        Command::Loop(args) => runtime.block_on(phone_loop(args)),
        Command::Photos(args) => runtime.block_on(photos(args)),
        Command::Report(args) => report(&args),
    }
}

fn client(cloud: &Cloud) -> anyhow::Result<CloudClient> {
    let tls = TlsSettings::from_files(&cloud.ca, None)?;
    Ok(CloudClient::new(&cloud.cloud, &tls)?)
}

async fn phone_loop(args: LoopArgs) -> anyhow::Result<()> {
    let client = client(&args.cloud)?;
    let mut session = client
        .sign_in(&args.cloud.phone, &args.cloud.password, "bench-loop")
        .await
        .context("signing in")?;
    let (mut ok, mut fenced, mut errors, mut signed_in_again) = (0usize, 0usize, 0usize, 0usize);
    let mut samples: Vec<String> = Vec::new();
    let mut regions = Vec::<String>::new();
    let started = Instant::now();
    let mut n = 0u64;
    while !args.stop_file.exists() && started.elapsed() < Duration::from_secs(LOOP_SECS_MAX) {
        n += 1;
        let id = format!("00000000-0000-4000-8000-{n:012}");
        let results = [
            client.me(&session).await.map(|_| ()),
            client.messages(&session, None).await.map(|_| ()),
            client
                .send_message(&session, &args.cloud.phone, "still here", &id)
                .await
                .map(|_| ()),
        ];
        let base = client.base_url();
        if regions.last() != Some(&base) {
            regions.push(base);
        }
        for result in results {
            match result {
                Ok(()) => ok += 1,
                Err(e) if e.api_code() == Some("user_migrating") => {
                    fenced += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) if e.api_code() == Some("unauthorized") => {
                    errors += 1;
                    keep(&mut samples, e.to_string());
                    signed_in_again += 1;
                    if let Ok(s) = client
                        .sign_in(&args.cloud.phone, &args.cloud.password, "bench-loop")
                        .await
                    {
                        session = s;
                    }
                }
                Err(e) => {
                    errors += 1;
                    keep(&mut samples, e.to_string());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let result = json!({
        "requests": ok + fenced + errors,
        "ok": ok,
        "fenced_503_retried": fenced,
        "errors": errors,
        "signed_in_again": signed_in_again,
        "regions_in_order": regions,
        "error_samples": samples,
        "secs": started.elapsed().as_secs_f64(),
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&result)?)?;
    Ok(())
}

fn keep(samples: &mut Vec<String>, message: String) {
    if samples.len() < ERROR_SAMPLES_MAX {
        samples.push(message);
    }
}

/// A photo of `len` bytes: a JPEG signature, then bytes as incompressible as a JPEG's.
fn photo(len: usize, seed: u64) -> anyhow::Result<Photo> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    while bytes.len() < len {
        // xorshift64: fast and, for TLS and the store, as good as camera noise.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    Ok(Photo::new(bytes)?)
}

async fn photos(args: PhotoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=PHOTOS_MAX).contains(&args.count),
        "--count: 1 to {PHOTOS_MAX}"
    );
    anyhow::ensure!(
        (1..=PHOTO_UPLOADS_PARALLEL_MAX).contains(&args.parallel),
        "--parallel: 1 to {PHOTO_UPLOADS_PARALLEL_MAX}"
    );
    anyhow::ensure!(
        4 < args.min_bytes && args.min_bytes <= args.max_bytes && args.max_bytes <= PHOTO_BYTES_MAX,
        "--min-bytes and --max-bytes: 5 <= min <= max <= {PHOTO_BYTES_MAX}"
    );
    let client = client(&args.cloud)?;
    let phone = &args.cloud.phone;
    // Sign up unless the number has an account already (the second roll, after the move).
    if !args.existing_account {
        let outbox_start = std::fs::metadata(&args.sms_outbox).map_or(0, |m| m.len());
        let started = client
            .sign_up(phone, &args.cloud.password)
            .await
            .context("signing up")?;
        let code = read_code(&args.sms_outbox, outbox_start, phone)?;
        match client.verify(&started.verification_id, &code).await {
            Ok(_) => {}
            Err(e) if e.api_code() == Some("phone_taken") => {}
            Err(e) => return Err(e).context("verifying"),
        }
    }
    let session = client
        .sign_in(phone, &args.cloud.password, "bench-photos")
        .await
        .context("signing in")?;
    let scope = BackupKind::Photos.scope();
    let consents = client.consents(&session).await?;
    let consent = consents
        .iter()
        .find(|c| c.scope == scope.as_str())
        .context("no backup.photos consent offered")?;
    if !consent.granted {
        client
            .grant(&session, scope, consent.notice.version)
            .await
            .context("granting backup.photos")?;
    }
    let span = args.max_bytes - args.min_bytes + 1;
    let sizes: Vec<usize> = (0..args.count)
        .map(|i| {
            let h = (i as u64 + args.seed).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 16;
            args.min_bytes + (h as usize % span)
        })
        .collect();
    let total: usize = sizes.iter().sum();
    let next = Arc::new(AtomicUsize::new(0));
    let sizes = Arc::new(sizes);
    let session = Arc::new(session);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.parallel {
        let (client, next, sizes, session) =
            (client.clone(), next.clone(), sizes.clone(), session.clone());
        let (prefix, seed) = (args.prefix.clone(), args.seed);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&len) = sizes.get(i) else {
                    return anyhow::Ok(());
                };
                let image = photo(len, seed * 1_000_003 + i as u64)?;
                client
                    .put_photo(&session, &format!("{prefix}-{i}"), &image)
                    .await
                    .with_context(|| format!("uploading photo {i}"))?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let result = json!({
        "region": client.base_url(),
        "photos": args.count,
        "bytes": total,
        "parallel": args.parallel,
        "secs": secs,
        "mbit_per_s": total as f64 * 8.0 / 1e6 / secs,
    });
    println!("{result}");
    std::fs::write(&args.out, serde_json::to_vec_pretty(&result)?)?;
    Ok(())
}

/// The latest code texted to `phone` after `start` bytes of the SMS gateway file.
fn read_code(outbox: &std::path::Path, start: u64, phone: &str) -> anyhow::Result<String> {
    let text = std::fs::read(outbox).with_context(|| format!("reading {}", outbox.display()))?;
    let tail = text.get(start as usize..).unwrap_or_default();
    let e164: String = phone
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|m| m["to"] == e164.as_str())
        .and_then(|m| m["code"].as_str().map(str::to_owned))
        .with_context(|| format!("no code for {e164} in {}", outbox.display()))
}

struct Stage {
    name: String,
    ms: Vec<f64>,
    requests: usize,
    runs: usize,
    /// The median of the runs' procedure times.
    secs: f64,
    loop_result: Option<Value>,
}

fn read_json(path: &str) -> anyhow::Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {path}"))
}

fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let mut stages = Vec::new();
    for spec in &args.stage {
        let (name, rest) = spec
            .split_once('=')
            .with_context(|| format!("--stage {spec}: expected NAME=TIMINGS:SECONDS[:LOOP]"))?;
        let mut parts = rest.split(':');
        let mut ms: Vec<f64> = Vec::new();
        for path in parts.next().unwrap_or_default().split(',') {
            let timings = read_json(path)?;
            ms.extend(
                timings
                    .as_array()
                    .with_context(|| format!("{path}: not an array"))?
                    .iter()
                    .filter_map(|r| r["ms"].as_f64()),
            );
        }
        let mut secs: Vec<f64> = parts
            .next()
            .context("--stage: no SECONDS")?
            .split(',')
            .map(|s| s.parse::<f64>().context("--stage: SECONDS"))
            .collect::<anyhow::Result<_>>()?;
        secs.sort_by(f64::total_cmp);
        let loop_result = parts.next().map(read_json).transpose()?;
        ms.sort_by(f64::total_cmp);
        stages.push(Stage {
            name: name.to_owned(),
            requests: ms.len(),
            ms,
            runs: secs.len(),
            secs: percentile(&secs, 0.5),
            loop_result,
        });
    }
    let base = stages.first().context("no stage")?;
    let base_p50 = percentile(&base.ms, 0.5);
    let base_mean = base.ms.iter().sum::<f64>() / base.ms.len().max(1) as f64;
    println!(
        "| stage | runs | requests | p50 ms | p99 ms | mean ms | whole procedure s (median) | saving per request vs {} (p50 / mean) |",
        base.name
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for stage in &stages {
        let (p50, p99) = (percentile(&stage.ms, 0.5), percentile(&stage.ms, 0.99));
        let mean = stage.ms.iter().sum::<f64>() / stage.ms.len().max(1) as f64;
        println!(
            "| {} | {} | {} | {p50:.0} | {p99:.0} | {mean:.0} | {:.2} | {:.0} / {:.0} ms |",
            stage.name,
            stage.runs,
            stage.requests,
            stage.secs,
            base_p50 - p50,
            base_mean - mean
        );
    }
    let loops: Vec<&Stage> = stages.iter().filter(|s| s.loop_result.is_some()).collect();
    if !loops.is_empty() {
        println!();
        println!(
            "| phone during the move into | requests | ok | fenced (503, retried) | errors | regions it talked to, in order |"
        );
        println!("|---|---:|---:|---:|---:|---|");
        for stage in loops {
            let l = stage.loop_result.as_ref().unwrap_or(&Value::Null);
            let regions: Vec<&str> = l["regions_in_order"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                stage.name,
                l["requests"],
                l["ok"],
                l["fenced_503_retried"],
                l["errors"],
                regions.join(" → ")
            );
            if let Some(samples) = l["error_samples"].as_array() {
                for s in samples.iter().take(3) {
                    println!("|   error: {} | | | | | |", s.as_str().unwrap_or_default());
                }
            }
        }
    }
    if !args.photos.is_empty() {
        println!();
        println!("| photo sync homed in | photos | MB | s | Mbit/s | speed-up |");
        println!("|---|---:|---:|---:|---:|---:|");
        let mut first = None;
        for spec in &args.photos {
            let (name, path) = spec
                .split_once('=')
                .with_context(|| format!("--photos {spec}: expected NAME=RESULT"))?;
            let r = read_json(path)?;
            let secs = r["secs"].as_f64().context("no secs")?;
            let base_secs = *first.get_or_insert(secs);
            println!(
                "| {name} | {} | {:.0} | {secs:.1} | {:.1} | {:.2}x |",
                r["photos"],
                r["bytes"].as_f64().unwrap_or_default() / 1e6,
                r["mbit_per_s"].as_f64().unwrap_or_default(),
                base_secs / secs
            );
        }
    }
    Ok(())
}
