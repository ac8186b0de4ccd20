//! Migration throughput (users/s and MB/s, with verification on) and the latency of live
//! requests during a migration against the same load without one, in one run.
//!
//! Run it with `bench/migration.sh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};
use sovereign_bench::{make_user, percentile};
use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::migration::{MigrationSpec, Selector, migrate};
use sovereign_cloud::{CloudOptions, Policies};
use sovereign_model::{RegionId, ResidencyPolicy};

#[derive(Parser)]
struct Args {
    /// Users moved from in-mumbai to sg-singapore.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Contacts each moved user has backed up.
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// Photos each moved user has backed up (64 KiB each).
    #[arg(long, default_value_t = 2)]
    photos: usize,
    /// Concurrent clients of users who stay, making requests the whole time.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long the load runs without a migration.
    #[arg(long, default_value_t = 5)]
    baseline_secs: u64,
    #[arg(long, default_value = "bench/out")]
    out: std::path::PathBuf,
}

const PHOTO_BYTES: usize = 64 * 1024;
const SCOPES: &[&str] = &["messaging", "backup.contacts", "backup.photos"];

fn phone(i: usize) -> String {
    format!("+9198{:08}", 40_000_000 + i)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&args.out)?;
    let dir = tempfile::tempdir_in(&args.out)?;
    let mut policies = Policies::embedded()?;
    policies.residency = ResidencyPolicy::from_toml(
        "default = \"us-oregon\"\n[countries]\nIN = [\"in-mumbai\", \"sg-singapore\"]\n",
    )?;
    policies.limits.signups_per_minute = 1_000_000;
    policies.limits.logins_per_minute = 1_000_000;
    policies.limits.verifications_per_minute = 1_000_000;
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: dir.path().to_path_buf(),
        policies,
        regions: ["in-mumbai", "sg-singapore"]
            .iter()
            .map(|id| Ok((RegionId::parse(id)?, "127.0.0.1:0".parse()?)))
            .collect::<anyhow::Result<_>>()?,
        databases: Default::default(),
        clock: Arc::new(SystemClock),
    })
    .await?;
    let mumbai = cloud.region("in-mumbai").context("mumbai")?;
    let url = mumbai.url.clone();
    let ca = std::fs::read(dir.path().join("tls/ca.pem"))?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .build()?;

    eprint!(
        "setting up {} users who move and {} who stay ...",
        args.users, args.clients
    );
    let setup = Instant::now();
    let mut movers = Vec::new();
    for i in 0..args.users {
        let (user_id, token) = make_user(&client, &url, dir.path(), &phone(i), SCOPES).await?;
        for n in 0..args.contacts {
            let body =
                json!({"name": format!("contact {n} of user {i}"), "phones": [phone(10_000 + n)]});
            put(
                &client,
                &format!("{url}/v1/backup/contacts/c{n}"),
                &token,
                body,
            )
            .await?;
        }
        for n in 0..args.photos {
            let photo: Vec<u8> = (0..PHOTO_BYTES).map(|b| (b * 31 + n + i) as u8).collect();
            let reply = client
                .put(format!("{url}/v1/backup/photos/p{n}"))
                .bearer_auth(&token)
                .header("content-type", "image/jpeg")
                .body(photo)
                .send()
                .await?;
            anyhow::ensure!(reply.status().is_success(), "photo put: {}", reply.status());
        }
        movers.push(user_id);
    }
    let mut stayers = Vec::new();
    for i in 0..args.clients {
        stayers.push(
            make_user(&client, &url, dir.path(), &phone(50_000 + i), SCOPES)
                .await?
                .1,
        );
    }
    eprintln!(" {:.1} s", setup.elapsed().as_secs_f64());

    let baseline = load(&client, &url, &stayers, async {
        tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
        Ok(())
    })
    .await?;

    let source = mumbai.state.clone();
    let target = cloud
        .region("sg-singapore")
        .context("singapore")?
        .state
        .clone();
    let spec = MigrationSpec {
        from: source.region.id.clone(),
        to: target.region.id.clone(),
        selector: Selector::Users(movers.clone()),
        services: Vec::new(),
    };
    let mut migrated = None;
    let during = load(&client, &url, &stayers, async {
        let started = Instant::now();
        let report = migrate(&spec, &source, &target, |_| {}).await?;
        migrated = Some((report, started.elapsed().as_secs_f64()));
        Ok(())
    })
    .await?;
    let (report, seconds) = migrated.context("migration did not run")?;
    anyhow::ensure!(
        report.moved == args.users,
        "moved {} of {} users: {:?}",
        report.moved,
        args.users,
        report.skipped
    );

    println!(
        "migration: {} users, each {} contacts and {} photos of {} KiB; verification (decrypted digests) on; SQLite synchronous=FULL",
        args.users,
        args.contacts,
        args.photos,
        PHOTO_BYTES / 1024
    );
    println!(
        "  moved {} users, {:.1} MB in {:.2} s: {:.1} users/s, {:.2} MB/s",
        report.moved,
        report.bytes as f64 / 1e6,
        seconds,
        report.moved as f64 / seconds,
        report.bytes as f64 / 1e6 / seconds
    );
    println!();
    println!(
        "live requests of {} users who stay (GET /v1/messages, PUT a contact):",
        args.clients
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "", "req/s", "p50 ms", "p99 ms"
    );
    for (name, stats) in [
        ("without a migration", &baseline),
        ("during the migration", &during),
    ] {
        println!(
            "{name:<28} {:>10.0} {:>10.2} {:>10.2}",
            stats.rate, stats.p50_ms, stats.p99_ms
        );
    }
    println!();
    println!(
        "latency ratio during / without: p50 {:.2}x, p99 {:.2}x",
        during.p50_ms / baseline.p50_ms,
        during.p99_ms / baseline.p99_ms
    );
    cloud.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

struct LoadStats {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs the live load until `until` finishes; returns its throughput and latencies.
async fn load(
    client: &reqwest::Client,
    url: &str,
    tokens: &[String],
    until: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<LoadStats> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let (client, url, token, stop) =
                (client.clone(), url.to_owned(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t = Instant::now();
                    let reply = client
                        .get(format!("{url}/v1/messages"))
                        .bearer_auth(&token)
                        .send()
                        .await?;
                    anyhow::ensure!(reply.status() == 200, "poll: {}", reply.status());
                    reply.bytes().await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    let t = Instant::now();
                    let body = json!({"name": format!("live contact {n} of client {i}")});
                    put(
                        &client,
                        &format!("{url}/v1/backup/contacts/live{}", n % 50),
                        &token,
                        body,
                    )
                    .await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let outcome = until.await;
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    outcome?;
    latencies.sort_by(f64::total_cmp);
    Ok(LoadStats {
        rate: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    })
}

async fn put(client: &reqwest::Client, url: &str, token: &str, body: Value) -> anyhow::Result<()> {
    let reply = client
        .put(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(reply.status().is_success(), "put {url}: {}", reply.status());
    Ok(())
}
