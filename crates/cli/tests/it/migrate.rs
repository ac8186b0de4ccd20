use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::{CloudOptions, Policies};
use sovereign_model::RegionId;

const USERS: usize = 30;

fn sovereign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
}

fn phone(i: usize) -> String {
    format!("+9198{:08}", 30_000_000 + i)
}

/// Two regions on free ports; Indian users live in Mumbai and may be held in Singapore.
fn write_config(dir: &std::path::Path) {
    std::fs::write(
        dir.join("regions.toml"),
        "[[region]]\nid = \"in-mumbai\"\nname = \"Mumbai\"\ncountry = \"IN\"\nlisten = \"127.0.0.1:0\"\n\
         [[region]]\nid = \"sg-singapore\"\nname = \"Singapore\"\ncountry = \"SG\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("residency.toml"),
        "default = \"sg-singapore\"\n[countries]\nIN = [\"in-mumbai\", \"sg-singapore\"]\n",
    )
    .unwrap();
}

/// With `SOVEREIGN_TEST_BACKEND=postgres`, each region gets a fresh database of the test's
/// throwaway PostgreSQL cluster; otherwise both stay on SQLite.
fn test_databases() -> BTreeMap<RegionId, String> {
    match std::env::var("SOVEREIGN_TEST_BACKEND").as_deref() {
        Ok("postgres") => ["in-mumbai", "sg-singapore"]
            .iter()
            .map(|id| {
                (
                    RegionId::parse(id).unwrap(),
                    crate::pg_cluster::fresh_database(),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `SELECT count(*) FROM {table}` in a region's store, on whichever backend it is.
fn count_rows(
    data: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
    region: &str,
    table: &str,
) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    match databases.get(&RegionId::parse(region).unwrap()) {
        Some(url) => crate::pg_cluster::off_runtime(|| {
            let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
            db.query_one(&sql, &[]).unwrap().get(0)
        }),
        None => {
            let db = rusqlite::Connection::open(
                data.join(format!("sites/{region}/regions/{region}/store.sqlite")),
            )
            .unwrap();
            db.query_row(&sql, [], |r| r.get(0)).unwrap()
        }
    }
}

/// Runs `sql` in a region's store, on whichever backend it is; returns the first column of
/// each row it gives, as text.
fn sql_at(
    data: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
    region: &str,
    sql: &str,
) -> Vec<String> {
    match databases.get(&RegionId::parse(region).unwrap()) {
        Some(url) => crate::pg_cluster::off_runtime(|| {
            let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
            db.query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        }),
        None => {
            let db = rusqlite::Connection::open(
                data.join(format!("sites/{region}/regions/{region}/store.sqlite")),
            )
            .unwrap();
            db.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut stmt = db.prepare(sql).unwrap();
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
    }
}

/// The users a region serves as their account's home: active account rows that still have
/// their key and that no move fences.
fn live_accounts(
    data: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
    region: &str,
) -> BTreeSet<String> {
    sql_at(
        data,
        databases,
        region,
        "SELECT id FROM users WHERE kind = 'account' AND state = 'active' AND wrapped_key IS NOT NULL \
         AND id NOT IN (SELECT user_id FROM migration_fences)",
    )
    .into_iter()
    .collect()
}

async fn start(
    data: &std::path::Path,
    config: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
) -> sovereign_cloud::Cloud {
    let mut policies = Policies::from_dir(config).unwrap();
    policies.limits.signups_per_minute = 10_000;
    policies.limits.logins_per_minute = 10_000;
    policies.limits.verifications_per_minute = 10_000;
    policies.limits.signups_per_phone_per_hour = 10_000;
    policies.limits.logins_per_account_per_hour = 10_000;
    sovereign_cloud::start_cloud(CloudOptions {
        data_dir: data.to_path_buf(),
        policies,
        regions: ["in-mumbai", "sg-singapore"]
            .iter()
            .map(|id| (RegionId::parse(id).unwrap(), "127.0.0.1:0".parse().unwrap()))
            .collect(),
        databases: databases.clone(),
        clock: Arc::new(SystemClock),
    })
    .await
    .unwrap()
}

fn client(data: &std::path::Path) -> reqwest::Client {
    let ca = std::fs::read(data.join("tls/ca.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.request(method, url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn populate(data: &std::path::Path, url: &str) -> Vec<String> {
    use reqwest::Method;
    let client = client(data);
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let (status, reply) = call(
            &client,
            Method::POST,
            format!("{url}/v1/accounts"),
            None,
            json!({"phone": phone(i), "password": "correct horse battery"}),
        )
        .await;
        assert_eq!(status, 202, "{reply}");
        let outbox = std::fs::read_to_string(data.join("sms-outbox.jsonl")).unwrap();
        let code = outbox
            .lines()
            .rev()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|m| m["to"] == phone(i))
            .unwrap()["code"]
            .clone();
        let (status, _) = call(
            &client,
            Method::POST,
            format!("{url}/v1/accounts/verify"),
            None,
            json!({"verification_id": reply["verification_id"], "code": code}),
        )
        .await;
        assert_eq!(status, 201);
        let (status, session) = call(
            &client,
            Method::POST,
            format!("{url}/v1/sessions"),
            None,
            json!({"phone": phone(i), "password": "correct horse battery", "device_name": format!("phone {i}")}),
        )
        .await;
        assert_eq!(status, 201);
        let token = session["token"].as_str().unwrap().to_owned();
        for scope in ["messaging", "backup.contacts", "backup.sms"] {
            let (status, _) = call(
                &client,
                Method::PUT,
                format!("{url}/v1/consents/{scope}"),
                Some(&token),
                json!({"notice_version": 1}),
            )
            .await;
            assert_eq!(status, 200);
        }
        for n in 0..4 {
            let (status, _) = call(
                &client,
                Method::PUT,
                format!("{url}/v1/backup/contacts/c{n}"),
                Some(&token),
                json!({"name": format!("friend {n} of {i}"), "phones": [phone(100 + n)]}),
            )
            .await;
            assert_eq!(status, 201);
        }
        let sms = json!({"address": "+919800000001", "text": format!("sms for {i}"), "direction": "inbox", "at": "2026-01-01T00:00:00Z"});
        call(
            &client,
            Method::PUT,
            format!("{url}/v1/backup/sms/s1"),
            Some(&token),
            sms,
        )
        .await;
        tokens.push(token);
    }
    for (i, token) in tokens.iter().enumerate() {
        let (status, _) = call(
            &client,
            Method::POST,
            format!("{url}/v1/messages"),
            Some(token),
            json!({"to": phone((i + 1) % USERS), "body": format!("hello from {i}")}),
        )
        .await;
        assert_eq!(status, 202);
    }
    tokens
}

/// An export with what legitimately changes in a move taken out: the region. (The cursors stay:
/// they are the user's own and move with them.)
fn comparable(mut export: Value) -> Value {
    export["exported_at"] = Value::Null;
    export["region"] = Value::Null;
    export["regions"] = Value::Null;
    export["account"]["region"] = Value::Null;
    for notice in export["consents"].as_array_mut().unwrap() {
        notice["notice"]["region"] = Value::Null;
    }
    export
}

/// Each user's export at `url`, made [`comparable`].
async fn exports_at(client: &reqwest::Client, url: &str, tokens: &[String]) -> Vec<Value> {
    let mut exports = Vec::new();
    for token in tokens {
        let (status, export) = call(
            client,
            reqwest::Method::GET,
            format!("{url}/v1/me/export"),
            Some(token),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200);
        exports.push(comparable(export));
    }
    exports
}

/// Every user is in Singapore, readable with the tokens they already had and unchanged from
/// `before`; nothing of theirs is left in Mumbai.
async fn assert_all_moved_to_singapore(
    client: &reqwest::Client,
    singapore: &str,
    tokens: &[String],
    before: &[Value],
    data: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
) {
    for (i, token) in tokens.iter().enumerate() {
        let (status, export) = call(
            client,
            reqwest::Method::GET,
            format!("{singapore}/v1/me/export"),
            Some(token),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "user {i}");
        assert_eq!(export["account"]["region"], "sg-singapore");
        assert_eq!(
            comparable(export),
            before[i],
            "user {i}'s data changed in the move"
        );
    }
    for table in [
        "users",
        "messages",
        "backup_items",
        "sessions",
        "consent_state",
        "consent_events",
    ] {
        let n = count_rows(data, databases, "in-mumbai", table);
        assert_eq!(n, 0, "{table} left in Mumbai");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_at_random_points_resumes_and_ends_correct() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    write_config(config.path());
    let databases = test_databases();
    let cloud = start(data.path(), config.path(), &databases).await;
    let mumbai = cloud.region("in-mumbai").unwrap().url.clone();
    let tokens = populate(data.path(), &mumbai).await;
    let client = client(data.path());
    let before = exports_at(&client, &mumbai, &tokens).await;
    cloud.shutdown(Duration::from_secs(5)).await;

    let migrate = || {
        let mut command = sovereign();
        command
            .args([
                "migrate",
                "--from",
                "in-mumbai",
                "--to",
                "sg-singapore",
                "--jurisdiction",
                "IN",
                "--data-dir",
            ])
            .arg(data.path())
            .arg("--config")
            .arg(config.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (region, url) in &databases {
            command.arg("--database").arg(format!("{region}={url}"));
        }
        command
    };
    let report = kill_and_resume(data.path(), migrate);
    println!("last run: {report}");

    // Everything is in Singapore, readable with the tokens the users already had; nothing is
    // left in Mumbai.
    let cloud = start(data.path(), config.path(), &databases).await;
    let singapore = cloud.region("sg-singapore").unwrap().url.clone();
    assert_all_moved_to_singapore(
        &client,
        &singapore,
        &tokens,
        &before,
        data.path(),
        &databases,
    )
    .await;
    cloud.shutdown(Duration::from_secs(5)).await;
}

/// Issue 10: the same move between sites on separate hosts. `sovereign migrate --region` runs
/// with only Mumbai's data directory and reaches Singapore, which keeps running (as does
/// Mumbai), through the federation file; killed at random points and resumed, it ends with every
/// user in Singapore exactly as they were and nothing left in Mumbai.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_to_a_running_site_killed_at_random_points_resumes_and_ends_correct() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    write_config(config.path());
    let databases = test_databases();
    let cloud = start(data.path(), config.path(), &databases).await;
    let mumbai = cloud.region("in-mumbai").unwrap().url.clone();
    let singapore = cloud.region("sg-singapore").unwrap().url.clone();
    let tokens = populate(data.path(), &mumbai).await;
    let client = client(data.path());
    let before = exports_at(&client, &mumbai, &tokens).await;

    let migrate = {
        let site_migrate = site_migrate(data.path(), config.path(), &databases);
        move || {
            let mut command = site_migrate(None);
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            command
        }
    };
    let root = data.path().to_path_buf();
    let report = tokio::task::spawn_blocking(move || kill_and_resume(&root, migrate))
        .await
        .unwrap();
    println!("last run: {report}");

    assert_all_moved_to_singapore(
        &client,
        &singapore,
        &tokens,
        &before,
        data.path(),
        &databases,
    )
    .await;
    cloud.shutdown(Duration::from_secs(5)).await;
}

/// Bad uses of `migrate --region` are refused before anything is opened.
#[test]
fn migrate_on_a_sites_host_refuses_what_it_cannot_do() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("directory.sqlite"), b"").unwrap();
    for (args, expected) in [
        (
            vec!["--region", "sg-singapore", "--from", "in-mumbai"],
            "run it on in-mumbai's host with --region in-mumbai",
        ),
        (
            vec!["--region", "in-mumbai", "--from", "in-mumbai"],
            "federation.toml does not exist",
        ),
        (
            vec!["--region", "IN MUMBAI", "--from", "in-mumbai"],
            "--region",
        ),
    ] {
        let out = sovereign()
            .arg("migrate")
            .args(&args)
            .args(["--to", "sg-singapore", "--jurisdiction", "IN", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `sovereign migrate --region in-mumbai` moving Indian users to the running Singapore site,
/// with only Mumbai's data directory, the federation file and the directory; stopped at the
/// crash point `fault` names, if any ([`sovereign_cloud::faults::point`]).
fn site_migrate(
    data: &std::path::Path,
    config: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
) -> impl Fn(Option<&str>) -> Command + Clone + Send + 'static {
    let (root, config_dir, databases) =
        (data.to_path_buf(), config.to_path_buf(), databases.clone());
    move |fault| {
        let mut command = sovereign();
        command
            .args(["migrate", "--region", "in-mumbai", "--from", "in-mumbai"])
            .args(["--to", "sg-singapore", "--jurisdiction", "IN", "--data-dir"])
            .arg(root.join("sites/in-mumbai"))
            .arg("--federation")
            .arg(root.join("federation.toml"))
            .arg("--directory")
            .arg(root.join("directory.sqlite"))
            .arg("--config")
            .arg(&config_dir)
            .env_remove(sovereign_cloud::faults::FAULT_ENV);
        if let Some(fault) = fault {
            command.env(sovereign_cloud::faults::FAULT_ENV, fault);
        }
        for (region, url) in &databases {
            command.arg("--database").arg(format!("{region}={url}"));
        }
        command
    }
}

/// Runs `migrate()` six times, killing it (SIGKILL) at pseudo-random moments, then once to the
/// end; returns the last run's report. The seed is printed so that a failure can be replayed.
fn kill_and_resume(data: &std::path::Path, migrate: impl Fn() -> Command) -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill schedule seed {seed}");
    let mut state = seed | 1;
    let mut kills = 0;
    let mut kills_mid_move = 0;
    let steps = || -> Vec<(String, i64)> {
        let Ok(journal) = rusqlite::Connection::open(data.join("directory.sqlite")) else {
            return Vec::new();
        };
        journal
            .prepare("SELECT step, count(*) FROM migration_users GROUP BY step ORDER BY step")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .unwrap_or_default()
    };
    for _ in 0..6 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Each run is killed a pseudo-random moment after the journal shows it made progress,
        // so that the kills land in the middle of the moves rather than while the binary starts.
        let after_progress = Duration::from_millis(state % 60);
        let at_start = steps();
        let mut child = migrate().spawn().unwrap();
        let started = std::time::Instant::now();
        let mut killed = false;
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(60) {
            if steps() != at_start {
                std::thread::sleep(after_progress);
                killed = child.try_wait().unwrap().is_none();
                if killed {
                    child.kill().unwrap();
                    kills += 1;
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let output = child.wait_with_output().unwrap();
        let now = steps();
        let moved = now.iter().any(|(step, n)| step != "selected" && *n > 0);
        let unfinished = now.iter().any(|(step, n)| step != "done" && *n > 0);
        if killed && moved && unfinished {
            kills_mid_move += 1;
        }
        println!(
            "{}after progress + {after_progress:?}: users by step {now:?}; {}",
            if killed { "killed " } else { "" },
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    println!("killed {kills} times, {kills_mid_move} of them in the middle of the moves");
    assert!(
        kills_mid_move >= 1,
        "the migration was never interrupted in the middle of a move; the test proves nothing"
    );
    let finished = migrate().output().unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let report = String::from_utf8_lossy(&finished.stdout).into_owned();
    assert!(report.contains("0 skipped"), "{report}");
    report
}

/// Issue 4: the 2014 shape, one service at a time: a plan moving messaging, then backup, to
/// Singapore while the accounts stay in Mumbai, killed at random points and resumed. At the
/// end each user signs in at home as before and their export (gathered from Singapore) is
/// unchanged; Mumbai holds their accounts and nothing of either service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_plan_killed_at_random_points_resumes_and_ends_correct_issue_4() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    write_config(config.path());
    let databases = test_databases();
    let cloud = start(data.path(), config.path(), &databases).await;
    let mumbai = cloud.region("in-mumbai").unwrap().url.clone();
    let tokens = populate(data.path(), &mumbai).await;
    let client = client(data.path());
    let before = exports_at(&client, &mumbai, &tokens).await;
    cloud.shutdown(Duration::from_secs(5)).await;

    let plan = config.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[[phase]]\nname = \"messaging\"\nfrom = \"in-mumbai\"\nto = \"sg-singapore\"\n\
         jurisdiction = \"IN\"\nservices = [\"messaging\"]\n\
         [[phase]]\nname = \"backup\"\nfrom = \"in-mumbai\"\nto = \"sg-singapore\"\n\
         jurisdiction = \"IN\"\nservices = [\"backup\"]\n",
    )
    .unwrap();
    let migrate = || {
        let mut command = sovereign();
        command
            .args(["migrate", "--plan"])
            .arg(&plan)
            .arg("--data-dir")
            .arg(data.path())
            .arg("--config")
            .arg(config.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (region, url) in &databases {
            command.arg("--database").arg(format!("{region}={url}"));
        }
        command
    };
    let report = kill_and_resume(data.path(), migrate);
    println!("last run: {report}");

    let cloud = start(data.path(), config.path(), &databases).await;
    let mumbai = cloud.region("in-mumbai").unwrap().url.clone();
    let singapore = cloud.region("sg-singapore").unwrap().url.clone();
    for (i, token) in tokens.iter().enumerate() {
        let (status, export) = call(
            &client,
            reqwest::Method::GET,
            format!("{mumbai}/v1/me/export"),
            Some(token),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "user {i}: {export}");
        assert_eq!(export["regions"]["account"], "in-mumbai");
        assert_eq!(export["regions"]["messaging"], "sg-singapore");
        assert_eq!(export["regions"]["backup"], "sg-singapore");
        assert_eq!(
            comparable(export),
            before[i],
            "user {i}'s data changed in the move"
        );
    }
    let (status, _) = call(
        &client,
        reqwest::Method::GET,
        format!("{singapore}/v1/backup/contacts"),
        Some(&tokens[0]),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    for table in ["messages", "backup_items"] {
        let n = count_rows(data.path(), &databases, "in-mumbai", table);
        assert_eq!(n, 0, "{table} left in Mumbai");
    }
    for table in ["sessions", "consent_events"] {
        let n = count_rows(data.path(), &databases, "sg-singapore", table);
        assert_eq!(n, 0, "{table} in Singapore");
    }
    assert_eq!(
        count_rows(data.path(), &databases, "in-mumbai", "users"),
        USERS as i64
    );
    assert_eq!(
        count_rows(data.path(), &databases, "sg-singapore", "users"),
        USERS as i64
    );
    cloud.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn bad_migrations_are_clear_errors() {
    let data = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--from",
                "in-mumbai",
                "--to",
                "sg-singapore",
                "--jurisdiction",
                "IN",
                "--services",
                "messaging",
            ],
            "no regions",
        ),
        (
            &[
                "--from",
                "in-mumbai",
                "--to",
                "sg-singapore",
                "--jurisdiction",
                "IN",
                "--services",
                "photos",
            ],
            "unknown service",
        ),
        (
            &[
                "--from",
                "in-mumbai",
                "--to",
                "sg-singapore",
                "--jurisdiction",
                "IND",
            ],
            "country code",
        ),
        (
            &["--from", "in-mumbai", "--to", "sg-singapore"],
            "--jurisdiction",
        ),
        (
            &[
                "--from",
                "in-mumbai",
                "--to",
                "sg-singapore",
                "--jurisdiction",
                "IN",
            ],
            "no regions",
        ),
        (
            &[
                "--from",
                "in-mumbai",
                "--to",
                "sg-singapore",
                "--nice",
                "20",
            ],
            "--nice",
        ),
        (
            &["--from", "in-mumbai", "--to", "sg-singapore", "--nice=-1"],
            "--nice",
        ),
    ];
    for (args, expected) in cases {
        let output = sovereign()
            .arg("migrate")
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let plan = data.path().join("plan.toml");
    std::fs::write(
        &plan,
        "[[phase]]\nname = \"one\"\nfrom = \"cn-beijing\"\nto = \"sg-singapore\"\nregion = \"x\"\n",
    )
    .unwrap();
    let output = sovereign()
        .args(["migrate", "--plan"])
        .arg(&plan)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("region"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `sovereign migrate --directory etcd://...`: the same move with the directory and its journal
/// on a three-member etcd cluster, one member of which is dead before the move starts.
#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_runs_with_the_directory_and_journal_on_etcd() {
    use sovereign_cloud::directory::Directory;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut cluster = crate::etcd_cluster::EtcdCluster::start();
    let location = cluster.location(None, "mig");
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    write_config(config.path());
    let databases = test_databases();
    let regions: Vec<RegionId> = ["in-mumbai", "sg-singapore"]
        .iter()
        .map(|id| RegionId::parse(id).unwrap())
        .collect();
    let sqlite = data.path().join("directory.sqlite");
    let open_directory = || Directory::at(Some(&location), &sqlite, None, None, regions.clone());
    let start_on_etcd = |directory: Directory| {
        let mut policies = Policies::from_dir(config.path()).unwrap();
        policies.limits.signups_per_minute = 10_000;
        policies.limits.logins_per_minute = 10_000;
        policies.limits.verifications_per_minute = 10_000;
        policies.limits.signups_per_phone_per_hour = 10_000;
        policies.limits.logins_per_account_per_hour = 10_000;
        sovereign_cloud::start_cloud_on(
            CloudOptions {
                data_dir: data.path().to_path_buf(),
                policies,
                regions: regions
                    .iter()
                    .map(|id| (id.clone(), "127.0.0.1:0".parse().unwrap()))
                    .collect(),
                databases: databases.clone(),
                clock: Arc::new(SystemClock),
            },
            Some(directory),
        )
    };
    let cloud = start_on_etcd(open_directory().await.unwrap())
        .await
        .unwrap();
    let mumbai = cloud.region("in-mumbai").unwrap().url.clone();
    let tokens = populate(data.path(), &mumbai).await;
    cloud.shutdown(Duration::from_secs(5)).await;
    assert!(!data.path().join("directory.sqlite").exists());

    cluster.kill(1);
    let output = sovereign()
        .args([
            "migrate",
            "--from",
            "in-mumbai",
            "--to",
            "sg-singapore",
            "--jurisdiction",
            "IN",
            "--directory",
            &location,
            "--data-dir",
        ])
        .arg(data.path())
        .arg("--config")
        .arg(config.path())
        .args(
            databases
                .iter()
                .flat_map(|(region, url)| ["--database".to_owned(), format!("{region}={url}")]),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!data.path().join("directory.sqlite").exists());
    // The journal is in etcd: every user done.
    let steps = cluster.ctl(&["get", "--prefix", "/mig/journal/", "--print-value-only"]);
    assert_eq!(steps.lines().filter(|l| *l == "done").count(), USERS);

    let directory = open_directory().await.unwrap();
    let cloud = start_on_etcd(directory.clone()).await.unwrap();
    let singapore = cloud.region("sg-singapore").unwrap().url.clone();
    let client = client(data.path());
    for (i, token) in tokens.iter().enumerate() {
        let (status, export) = call(
            &client,
            reqwest::Method::GET,
            format!("{singapore}/v1/me/export"),
            Some(token),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "user {i}");
        assert_eq!(export["account"]["region"], "sg-singapore");
    }
    assert_eq!(count_rows(data.path(), &databases, "in-mumbai", "users"), 0);
    cloud.shutdown(Duration::from_secs(5)).await;
}

/// The steps of a move `sovereign migrate` can stop at ([`sovereign_cloud::faults::point`]), in order.
const MOVE_FAULT_POINTS: [&str; 7] = [
    "migrate.copied",
    "migrate.fenced",
    "migrate.verified",
    "migrate.activated",
    "migrate.flipped-unjournaled",
    "migrate.flipped",
    "migrate.finished",
];

/// What the clients of [`a_migration_stopped_at_every_step_leaves_each_user_live_in_one_region_issue_12`]
/// had acknowledged: (user, contact id) for each contact a region answered 201 to.
type Acknowledged = Arc<std::sync::Mutex<Vec<(usize, String)>>>;

/// One client's write of a new contact for user `i`, at `url` or wherever it is redirected;
/// recorded when a region acknowledges it.
async fn write_contact(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    i: usize,
    id: String,
    acknowledged: &Acknowledged,
) {
    let mut url = format!("{url}/v1/backup/contacts/{id}");
    for _ in 0..3 {
        let Ok(response) = client
            .put(&url)
            .bearer_auth(token)
            .json(&json!({"name": id, "phones": [phone(200)]}))
            .send()
            .await
        else {
            return;
        };
        match response.status().as_u16() {
            200 | 201 => {
                acknowledged.lock().unwrap().push((i, id));
                return;
            }
            307 | 308 => match response.headers().get("location") {
                Some(location) => url = location.to_str().unwrap().to_owned(),
                None => return,
            },
            _ => return,
        }
    }
}

/// Issue 12, finding 1: `sovereign migrate` to a running site, stopped (abort, as SIGKILL) at
/// each step of the move in turn while clients keep signing in, writing and polling, and right
/// after the target's copy went live some users write at the target directly with the tokens
/// they hold (what a phone that followed an early redirect, or a session swept there, would
/// change). After the last rerun every user is live in exactly one region (the target; the
/// source answers none of their tokens) and every write a region acknowledged is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_stopped_at_every_step_leaves_each_user_live_in_one_region_issue_12() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    write_config(config.path());
    let databases = test_databases();
    let cloud = start(data.path(), config.path(), &databases).await;
    let mumbai = cloud.region("in-mumbai").unwrap().url.clone();
    let singapore = cloud.region("sg-singapore").unwrap().url.clone();
    let tokens = populate(data.path(), &mumbai).await;
    let client = client(data.path());
    let populated_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();

    let migrate = site_migrate(data.path(), config.path(), &databases);

    let acknowledged: Acknowledged = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = spawn_clients(&client, &mumbai, &tokens, &acknowledged, &stop);

    for (k, point) in MOVE_FAULT_POINTS.iter().enumerate() {
        let migrate = migrate.clone();
        let fault = point.to_string();
        let output = tokio::task::spawn_blocking(move || migrate(Some(&fault)).output().unwrap())
            .await
            .unwrap();
        println!(
            "stopped at {}: {:?} {}",
            MOVE_FAULT_POINTS[k],
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let at_target = assert_live_in_one_region(data.path(), &databases, point);
        // The target's sweeper ends the sessions it holds of users live there (as it does
        // when they expire): the target's copy now differs from what was copied.
        for user in &at_target {
            sql_at(
                data.path(),
                &databases,
                "sg-singapore",
                &format!(
                    "DELETE FROM sessions WHERE user_id = '{user}' AND created_at > {populated_ms} RETURNING id"
                ),
            );
        }
        // Whoever's copy is live at the target now may be written there directly.
        for (i, token) in tokens.iter().enumerate() {
            write_contact(
                &client,
                &singapore,
                token,
                i,
                format!("direct{k}x{i}"),
                &acknowledged,
            )
            .await;
        }
    }
    finish_migration(migrate, &stop, clients).await;

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.iter().any(|(_, id)| id.starts_with("direct")),
        "no write at the target was acknowledged: the test proves nothing"
    );
    assert_live_at_target_only(
        &client,
        (&mumbai, &singapore),
        &tokens,
        &acknowledged,
        (data.path(), &databases),
    )
    .await;
    cloud.shutdown(Duration::from_secs(5)).await;
}

/// After a move of every user: each is live at `singapore` and at no other (Mumbai answers none
/// of their tokens and holds none of their rows), and every write a region acknowledged is
/// there exactly once.
async fn assert_live_at_target_only(
    client: &reqwest::Client,
    (mumbai, singapore): (&str, &str),
    tokens: &[String],
    acknowledged: &[(usize, String)],
    (data, databases): (&std::path::Path, &BTreeMap<RegionId, String>),
) {
    for (i, token) in tokens.iter().enumerate() {
        let (status, export) = call(
            client,
            reqwest::Method::GET,
            format!("{singapore}/v1/me/export"),
            Some(token),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "user {i} at the target");
        let (status, _) = call(
            client,
            reqwest::Method::GET,
            format!("{mumbai}/v1/me/export"),
            Some(token),
            Value::Null,
        )
        .await;
        assert_ne!(status, 200, "user {i} is still live at the source");
        let contacts: Vec<&str> = export["backup"]["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        for (_, id) in acknowledged.iter().filter(|(user, _)| *user == i) {
            let copies = contacts.iter().filter(|c| **c == id.as_str()).count();
            assert_eq!(
                copies, 1,
                "user {i}'s acknowledged contact {id}: {copies} copies"
            );
        }
    }
    for table in ["users", "messages", "backup_items", "sessions"] {
        let n = count_rows(data, databases, "in-mumbai", table);
        assert_eq!(n, 0, "{table} left in Mumbai");
    }
}

/// Runs `migrate` once more without a crash point, then stops the clients; the run must move
/// every user that is left, skipping none.
async fn finish_migration(
    migrate: impl Fn(Option<&str>) -> Command + Send + 'static,
    stop: &std::sync::atomic::AtomicBool,
    clients: tokio::task::JoinHandle<()>,
) {
    let finished = tokio::task::spawn_blocking(move || migrate(None).output().unwrap())
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    clients.await.unwrap();
    let report = String::from_utf8_lossy(&finished.stdout);
    assert!(
        finished.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    assert!(report.contains("0 skipped"), "{report}");
}

/// Asserts that no user is live in both regions (after the move stopped at `point`); returns
/// the users live at the target.
fn assert_live_in_one_region(
    data: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
    point: &str,
) -> BTreeSet<String> {
    let (at_source, at_target) = (
        live_accounts(data, databases, "in-mumbai"),
        live_accounts(data, databases, "sg-singapore"),
    );
    let both: Vec<_> = at_source.intersection(&at_target).collect();
    assert!(
        both.is_empty(),
        "after stopping at {point}: users live in both regions: {both:?}"
    );
    at_target
}

/// Clients of every user, in turn, for as long as `stop` is unset: a new contact written at
/// Mumbai (following redirects), a sign-in again and a poll of the inbox. Errors (a region
/// down, a moved user) are expected; what a region acknowledges is recorded.
fn spawn_clients(
    client: &reqwest::Client,
    mumbai: &str,
    tokens: &[String],
    acknowledged: &Acknowledged,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (client, mumbai, tokens) = (client.clone(), mumbai.to_owned(), tokens.to_vec());
    let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let i = n % tokens.len();
            write_contact(
                &client,
                &mumbai,
                &tokens[i],
                i,
                format!("live{n}"),
                &acknowledged,
            )
            .await;
            let _ = client
                .post(format!("{mumbai}/v1/sessions"))
                .json(&json!({"phone": phone(i), "password": "correct horse battery", "device_name": "again"}))
                .send()
                .await;
            let _ = client
                .get(format!("{mumbai}/v1/messages?after=0"))
                .bearer_auth(&tokens[i])
                .send()
                .await;
            n += 1;
            // While a region is down its clients fail at once: do not spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The steps of a move at which a target site's `sovereign serve` can be stopped
/// (crates/cloud/src/routes/moves.rs), in order.
const TARGET_FAULT_POINTS: [&str; 5] = [
    "move.blob-stored",
    "move.scope-keys-installed",
    "move.installed",
    "move.digested",
    "move.activated",
];

/// A `sovereign serve --region` process over one site of the one-machine layout; killed
/// (SIGKILL) when dropped.
struct Site(std::process::Child);

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sovereign serve --region REGION` on the address of `url`, over the site's directory under
/// `data/sites/`, with the federation file and directory the in-process cloud wrote; stopped at
/// the crash point `fault`, if any. Its log goes to `data/REGION.log`.
fn serve_site(
    data: &std::path::Path,
    config: &std::path::Path,
    databases: &BTreeMap<RegionId, String>,
    (region, url): (&str, &str),
    fault: Option<&str>,
) -> Site {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join(format!("{region}.log")))
        .unwrap();
    let mut command = sovereign();
    command
        .args(["serve", "--region", region, "--listen"])
        .arg(url.trim_start_matches("https://"))
        .arg("--data-dir")
        .arg(data.join("sites").join(region))
        .arg("--federation")
        .arg(data.join("federation.toml"))
        .arg("--directory")
        .arg(data.join("directory.sqlite"))
        .arg("--config")
        .arg(config)
        .env_remove(sovereign_cloud::faults::FAULT_ENV)
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(fault) = fault {
        command.env(sovereign_cloud::faults::FAULT_ENV, fault);
    }
    if let Some(database) = databases.get(&RegionId::parse(region).unwrap()) {
        command.arg("--database").arg(database);
    }
    Site(command.spawn().unwrap())
}

/// Waits (bounded) until `url` answers HTTP at all.
async fn wait_up(client: &reqwest::Client, url: &str) {
    for _ in 0..400 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

/// Issue 12, item 1, the other half: the target site's `sovereign serve` stopped (abort, as
/// SIGKILL) at each step of its side of the moves in turn, and the source's `serve` killed with
/// it, while clients keep signing in, writing and polling and `sovereign migrate` runs against
/// them. After each stop no user is live in both regions; after the last rerun every user is
/// live at the target only and every acknowledged write is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_site_killed_at_every_step_of_the_moves_leaves_each_user_live_in_one_region_issue_12()
 {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    write_config(config.path());
    // The serve processes read their limits from the config: clients sign in again and again.
    let limits = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/server.toml"
    ))
    .unwrap()
    .lines()
    .map(|line| match line.split_once(" = ") {
        Some((key, _)) if key.ends_with("_per_minute") || key.ends_with("_per_hour") => {
            format!("{key} = 100000")
        }
        _ => line.to_owned(),
    })
    .collect::<Vec<_>>()
    .join("\n");
    std::fs::write(config.path().join("server.toml"), limits).unwrap();
    let databases = test_databases();
    let cloud = start(data.path(), config.path(), &databases).await;
    let mumbai = cloud.region("in-mumbai").unwrap().url.clone();
    let singapore = cloud.region("sg-singapore").unwrap().url.clone();
    let tokens = populate(data.path(), &mumbai).await;
    let client = client(data.path());
    // A few users with a photo, so that sealed blobs move too.
    for token in &tokens[..3] {
        let (status, _) = call(
            &client,
            reqwest::Method::PUT,
            format!("{mumbai}/v1/consents/backup.photos"),
            Some(token),
            json!({"notice_version": 1}),
        )
        .await;
        assert_eq!(status, 200);
        let stored = client
            .put(format!("{mumbai}/v1/backup/photos/p1"))
            .bearer_auth(token)
            .header("content-type", "image/jpeg")
            .body(vec![0xd8u8; 20_000])
            .send()
            .await
            .unwrap();
        assert_eq!(stored.status(), 201);
    }
    cloud.shutdown(Duration::from_secs(5)).await;

    let serve = |site: (&str, &str), fault: Option<&str>| {
        serve_site(data.path(), config.path(), &databases, site, fault)
    };
    let mut source = serve(("in-mumbai", &mumbai), None);
    wait_up(&client, &mumbai).await;
    let acknowledged: Acknowledged = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = spawn_clients(&client, &mumbai, &tokens, &acknowledged, &stop);
    let migrate = site_migrate(data.path(), config.path(), &databases);

    let mut stopped_at = Vec::new();
    for point in TARGET_FAULT_POINTS {
        let mut target = serve(("sg-singapore", &singapore), Some(point));
        wait_up(&client, &singapore).await;
        let run = migrate.clone();
        let output = tokio::task::spawn_blocking(move || run(None).output().unwrap())
            .await
            .unwrap();
        // The target either stopped at the point or is killed now; the source goes down too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(status) = target.0.try_wait().unwrap() {
            assert!(!status.success(), "the target ended by itself: {status:?}");
            stopped_at.push(point);
        }
        drop(target);
        drop(source);
        println!(
            "target stopped at {point}: migrate {:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        assert_live_in_one_region(data.path(), &databases, point);
        source = serve(("in-mumbai", &mumbai), None);
        wait_up(&client, &mumbai).await;
    }
    assert!(
        stopped_at.len() >= 4,
        "the moves reached only {stopped_at:?} of the target's steps"
    );
    let target = serve(("sg-singapore", &singapore), None);
    wait_up(&client, &singapore).await;
    finish_migration(migrate.clone(), &stop, clients).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > USERS,
        "only {} writes were acknowledged: the test proves little",
        acknowledged.len()
    );
    assert_live_at_target_only(
        &client,
        (&mumbai, &singapore),
        &tokens,
        &acknowledged,
        (data.path(), &databases),
    )
    .await;
    drop(target);
    drop(source);
}
