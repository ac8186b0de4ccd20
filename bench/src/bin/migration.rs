//! Migration throughput (users/s and MB/s, with verification on), alone and beside live
//! requests, and the latency of those live requests during a migration against the same load
//! without one, in one run.
//!
//! The migration runs as `sovereign migrate` does: on threads of its own at a lower CPU
//! priority ([`sovereign_cloud::migration::yielding_runtime`]), its writes in the store's
//! background lane. `--no-yield` runs it at the live requests' priority, for comparison.
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
use sovereign_cloud::migration::{MigrationReport, MigrationSpec, Selector, migrate};
use sovereign_cloud::state::AppState;
use sovereign_cloud::{CloudOptions, Policies};
use sovereign_model::{RegionId, ResidencyPolicy};

#[derive(Parser)]
struct Args {
    /// Users moved from in-mumbai to sg-singapore, in each of the two moves (alone, then
    /// beside the live load).
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
    /// The live load while measuring latency, as a fraction of the peak the same clients reach
    /// in a closed loop (measured first, in the same run): each client then sends on a fixed
    /// schedule (an open loop). 0 measures in the closed loop, at saturation.
    #[arg(long, default_value_t = 0.5)]
    offered_load: f64,
    /// Run the migration at the live requests' CPU priority instead of yielding to them.
    #[arg(long)]
    no_yield: bool,
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
        "setting up 2 x {} users who move and {} who stay ...",
        args.users, args.clients
    );
    let setup = Instant::now();
    let mut movers = Vec::new();
    for i in 0..2 * args.users {
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

    let source = mumbai.state.clone();
    let target = cloud
        .region("sg-singapore")
        .context("singapore")?
        .state
        .clone();
    let spec = |users: &[String]| MigrationSpec {
        from: source.region.id.clone(),
        to: target.region.id.clone(),
        selector: Selector::Users(users.to_vec()),
        services: Vec::new(),
    };
    let (alone_movers, loaded_movers) = movers.split_at(args.users);
    let yielding = !args.no_yield;

    anyhow::ensure!(
        (0.0..=1.0).contains(&args.offered_load),
        "--offered-load is a fraction of the peak, from 0 to 1"
    );
    let peak = load(&client, &url, &stayers, None, async {
        tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
        Ok(())
    })
    .await?;
    let rate = (args.offered_load > 0.0).then_some(peak.rate * args.offered_load);

    let (alone, alone_seconds) =
        run_migration(spec(alone_movers), source.clone(), target.clone(), yielding).await?;

    let baseline = load(&client, &url, &stayers, rate, async {
        tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
        Ok(())
    })
    .await?;

    let mut migrated = None;
    let during = load(&client, &url, &stayers, rate, async {
        migrated = Some(
            run_migration(
                spec(loaded_movers),
                source.clone(),
                target.clone(),
                yielding,
            )
            .await?,
        );
        Ok(())
    })
    .await?;
    let (loaded, loaded_seconds) = migrated.context("migration did not run")?;
    for report in [&alone, &loaded] {
        anyhow::ensure!(
            report.moved == args.users,
            "moved {} of {} users: {:?}",
            report.moved,
            args.users,
            report.skipped
        );
    }

    println!(
        "migration: {} users a move, each {} contacts and {} photos of {} KiB; verification (decrypted digests) on; SQLite synchronous=FULL; {}",
        args.users,
        args.contacts,
        args.photos,
        PHOTO_BYTES / 1024,
        if yielding {
            format!(
                "the migration yields (its threads at nice {}, its writes in the background lane)",
                sovereign_cloud::migration::MIGRATION_NICE
            )
        } else {
            "the migration does not yield (--no-yield)".to_owned()
        }
    );
    println!("{:<28} {:>10} {:>10} {:>10}", "", "users/s", "MB/s", "s");
    for (name, report, seconds) in [
        ("alone", &alone, alone_seconds),
        (
            &*format!("beside {} live clients", args.clients),
            &loaded,
            loaded_seconds,
        ),
    ] {
        println!(
            "{name:<28} {:>10.1} {:>10.2} {:>10.2}",
            report.moved as f64 / seconds,
            report.bytes as f64 / 1e6 / seconds,
            seconds
        );
    }
    println!();
    println!(
        "live requests of {} users who stay (GET /v1/messages, PUT a contact), {}:",
        args.clients,
        match rate {
            Some(r) => format!(
                "an open loop at {r:.0} req/s ({:.0}% of the {:.0} req/s closed-loop peak)",
                args.offered_load * 100.0,
                peak.rate
            ),
            None => format!("a closed loop at saturation (peak {:.0} req/s)", peak.rate),
        }
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "", "req/s", "p50 ms", "p99 ms", "GET p99 ms", "PUT p99 ms"
    );
    for (name, stats) in [
        ("without a migration", &baseline),
        ("during the migration", &during),
    ] {
        println!(
            "{name:<28} {:>10.0} {:>10.2} {:>10.2} {:>12.2} {:>12.2}",
            stats.rate, stats.p50_ms, stats.p99_ms, stats.read_p99_ms, stats.write_p99_ms
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

/// Runs one migration as `sovereign migrate` would: on a runtime of its own, yielding or not;
/// returns its report and how long it took.
async fn run_migration(
    spec: MigrationSpec,
    source: AppState,
    target: AppState,
    yielding: bool,
) -> anyhow::Result<(MigrationReport, f64)> {
    let runtime = if yielding {
        sovereign_cloud::migration::yielding_runtime()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("migration")
            .enable_all()
            .build()?
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("migration".into())
        .spawn(move || {
            // The migration's own futures run on this thread (block_on), not on the workers.
            if yielding
                && let Err(e) = sovereign_cloud::migration::lower_thread_priority(
                    sovereign_cloud::migration::MIGRATION_NICE,
                )
            {
                eprintln!("could not lower the migration's priority: {e}");
            }
            let started = Instant::now();
            let report = runtime.block_on(migrate(&spec, &source, &target, |_| {}));
            let _ = done.send(report.map(|r| (r, started.elapsed().as_secs_f64())));
        })?;
    finished.await.context("the migration's thread ended")?
}

struct LoadStats {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The polls' (GET /v1/messages) p99 alone.
    read_p99_ms: f64,
    /// The contact writes' (PUT) p99 alone.
    write_p99_ms: f64,
}

/// Runs the live load until `until` finishes; returns its throughput and latencies.
///
/// With `rate` none, each client sends its next request when the last is answered (a closed
/// loop, which finds the peak). With a rate (requests a second, over all clients), each client
/// sends on a fixed schedule whatever the server does (an open loop, as real users do); a
/// request sent late because the one before it was slow counts its latency from when it was
/// due, so a stall shows in full.
async fn load(
    client: &reqwest::Client,
    url: &str,
    tokens: &[String],
    rate: Option<f64>,
    until: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<LoadStats> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tokens_len = tokens.len() as f64;
    let interval = rate.map(|r| Duration::from_secs_f64(tokens_len / r));
    let tasks: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let (client, url, token, stop) =
                (client.clone(), url.to_owned(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut reads, mut writes) = (Vec::new(), Vec::new());
                // Clients start spread over one interval, not all at once.
                let mut due =
                    started + interval.map_or(Duration::ZERO, |d| d.mul_f64(i as f64 / tokens_len));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t = match interval {
                        Some(every) => {
                            tokio::time::sleep_until(due.into()).await;
                            let t = due;
                            due += every;
                            t
                        }
                        None => Instant::now(),
                    };
                    if n % 2 == 1 {
                        let reply = client
                            .get(format!("{url}/v1/messages"))
                            .bearer_auth(&token)
                            .send()
                            .await?;
                        anyhow::ensure!(reply.status() == 200, "poll: {}", reply.status());
                        reply.bytes().await?;
                        reads.push(t.elapsed().as_secs_f64() * 1e3);
                    } else {
                        let body = json!({"name": format!("live contact {n} of client {i}")});
                        put(
                            &client,
                            &format!("{url}/v1/backup/contacts/live{}", n % 50),
                            &token,
                            body,
                        )
                        .await?;
                        writes.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                anyhow::Ok((reads, writes))
            })
        })
        .collect();
    let outcome = until.await;
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    for task in tasks {
        let (r, w) = task.await??;
        reads.extend(r);
        writes.extend(w);
    }
    let mut latencies = [reads.as_slice(), writes.as_slice()].concat();
    outcome?;
    for list in [&mut latencies, &mut reads, &mut writes] {
        list.sort_by(f64::total_cmp);
    }
    Ok(LoadStats {
        rate: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        read_p99_ms: percentile(&reads, 0.99),
        write_p99_ms: percentile(&writes, 0.99),
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
