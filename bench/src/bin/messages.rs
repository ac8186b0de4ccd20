//! Messages per second end to end through the cloud (sent over HTTPS, sealed, durably stored,
//! pushed to the recipient's WebSocket), with latency percentiles; and in the same run, the same
//! rows written straight into SQLite with the same durability settings (WAL, synchronous=FULL).
//!
//! Run it with `bench/messages.sh`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sovereign_bench::{make_user, percentile};
use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::{CloudOptions, Policies};
use sovereign_model::RegionId;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser)]
struct Args {
    /// Concurrent sender → recipient pairs.
    #[arg(long, default_value_t = 64)]
    pairs: usize,
    /// Messages each sender sends, one after another.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Where the server's and the baseline's databases go (a real disk, not tmpfs).
    #[arg(long, default_value = "bench/out")]
    out: PathBuf,
}

/// Bytes of a sealed field: one format byte, a 12-byte nonce and a 16-byte tag around the value.
const SEALED_OVERHEAD_BYTES: usize = 29;
/// The stack's message rows seal an E.164 number (13 bytes here) and a body of about 64 bytes.
const PEER_SEALED_BYTES: usize = 13 + SEALED_OVERHEAD_BYTES;
const BODY_SEALED_BYTES: usize = 64 + SEALED_OVERHEAD_BYTES;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::fs::create_dir_all(&args.out)?;
    let total = args.pairs * args.messages;
    println!(
        "messages end to end: {} pairs x {} messages = {total} messages, HTTPS + WebSocket push, SQLite WAL synchronous=FULL",
        args.pairs, args.messages
    );

    let stack = run_stack(&args).await?;
    let per_message = sqlite_baseline(&args.out, total, 1)?;
    let grouped = sqlite_baseline(&args.out, total, 512)?;

    let stack_rate = total as f64 / stack.seconds;
    println!();
    println!(
        "{:<44} {:>10} {:>12} {:>12} {:>12}",
        "", "msg/s", "seconds", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} {:>10.0} {:>12.2} {:>12.2} {:>12.2}",
        "sovereign (HTTPS, sealed, durable, pushed)",
        stack_rate,
        stack.seconds,
        stack.p50_ms,
        stack.p99_ms
    );
    println!(
        "{:<44} {:>10.0} {:>12.2}",
        "sqlite, 2 rows + 1 commit per message",
        total as f64 / per_message,
        per_message
    );
    println!(
        "{:<44} {:>10.0} {:>12.2}",
        "sqlite, 2 rows per message, 512 per commit",
        total as f64 / grouped,
        grouped
    );
    println!();
    println!(
        "ratio sovereign / sqlite (1 commit per message):   {:.2}x",
        stack_rate / (total as f64 / per_message)
    );
    println!(
        "ratio sovereign / sqlite (512 messages per commit): {:.2}x",
        stack_rate / (total as f64 / grouped)
    );
    Ok(())
}

struct StackResult {
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn phone(i: usize) -> String {
    // Valid Indian mobile numbers: +91 98 followed by eight digits.
    format!("+9198{:08}", 10_000_000 + i)
}

async fn run_stack(args: &Args) -> anyhow::Result<StackResult> {
    let dir = tempfile::tempdir_in(&args.out)?;
    let mut policies = Policies::embedded()?;
    // The benchmark signs up every user from one address.
    policies.limits.signups_per_minute = 1_000_000;
    policies.limits.logins_per_minute = 1_000_000;
    policies.limits.verifications_per_minute = 1_000_000;
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: dir.path().to_path_buf(),
        policies,
        regions: vec![(RegionId::parse("in-mumbai")?, "127.0.0.1:0".parse()?)],
        databases: Default::default(),
        clock: Arc::new(SystemClock),
    })
    .await?;
    let base = format!(
        "https://localhost:{}",
        cloud.regions[0].server.addr().port()
    );
    let ca = std::fs::read(dir.path().join("tls/ca.pem"))?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .pool_max_idle_per_host(args.pairs * 2)
        .build()?;

    eprint!("setting up {} users ...", args.pairs * 2);
    let setup = Instant::now();
    let mut tokens = Vec::new();
    for i in 0..args.pairs * 2 {
        tokens.push(
            make_user(&client, &base, dir.path(), &phone(i), &["messaging"])
                .await?
                .1,
        );
    }
    eprintln!(" {:.1} s", setup.elapsed().as_secs_f64());

    let tls = Arc::new(client_tls(&ca)?);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for pair in 0..args.pairs {
        let (sender, recipient) = (tokens[2 * pair].clone(), tokens[2 * pair + 1].clone());
        let (client, base, tls) = (client.clone(), base.clone(), tls.clone());
        let recipient_phone = phone(2 * pair + 1);
        let messages = args.messages;
        tasks.push(tokio::spawn(async move {
            // The recipient listens before the sender starts.
            let mut request =
                format!("{}/v1/messages/ws", base.replace("https", "wss")).into_client_request()?;
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {recipient}").parse()?);
            let connector = tokio_tungstenite::Connector::Rustls(tls);
            let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
                request,
                None,
                false,
                Some(connector),
            )
            .await?;
            let sending = tokio::spawn(async move {
                for n in 0..messages {
                    let sent_at = started.elapsed().as_nanos();
                    let body = format!(
                        "{sent_at:>16} message {n:>6} of this pair, as long as a short text"
                    );
                    let reply = client
                        .post(format!("{base}/v1/messages"))
                        .bearer_auth(&sender)
                        .json(&json!({"to": recipient_phone, "body": body}))
                        .send()
                        .await?;
                    if reply.status() != 202 {
                        bail!("send answered {}: {}", reply.status(), reply.text().await?);
                    }
                }
                anyhow::Ok(())
            });
            let mut latencies_ms = Vec::with_capacity(messages);
            while latencies_ms.len() < messages {
                let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
                    .await
                    .context("no push for 60 s")?
                    .context("socket closed")??;
                let frame: Value = serde_json::from_str(frame.to_text()?)?;
                let body = frame["body"].as_str().context("frame without body")?;
                let sent_at: u128 = body.split_whitespace().next().context("body")?.parse()?;
                let now = started.elapsed().as_nanos();
                latencies_ms.push((now - sent_at) as f64 / 1e6);
            }
            sending.await??;
            anyhow::Ok(latencies_ms)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    cloud.shutdown(Duration::from_secs(5)).await;
    Ok(StackResult {
        seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    })
}

fn client_tls(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Writes `messages` x 2 rows shaped like the stack's message rows (the sender's copy and the
/// recipient's copy), `per_commit` messages per transaction, with the stack's durability
/// settings. Returns the seconds it took.
fn sqlite_baseline(out: &Path, messages: usize, per_commit: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(out)?;
    let conn = rusqlite::Connection::open(dir.path().join("baseline.sqlite"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, \
         owner_id TEXT NOT NULL, box TEXT NOT NULL, peer_sealed BLOB NOT NULL, body_sealed BLOB NOT NULL, \
         created_at INTEGER NOT NULL, delivered_at INTEGER, expires_at INTEGER NOT NULL, \
         UNIQUE (owner_id, box, id)) STRICT;",
    )?;
    let peer = vec![0xa5u8; PEER_SEALED_BYTES];
    let body = vec![0x5au8; BODY_SEALED_BYTES];
    let started = Instant::now();
    let mut n = 0;
    while n < messages {
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (id, owner_id, box, peer_sealed, body_sealed, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)",
            )?;
            for _ in 0..per_commit.min(messages - n) {
                let id = format!("00000000-0000-4000-8000-{n:012}");
                insert.execute(rusqlite::params![
                    id,
                    "sender-user-id-0000000000000000000",
                    "sent",
                    peer,
                    body
                ])?;
                insert.execute(rusqlite::params![
                    id,
                    "recipient-user-id-000000000000000",
                    "inbox",
                    peer,
                    body
                ])?;
                n += 1;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed().as_secs_f64())
}
