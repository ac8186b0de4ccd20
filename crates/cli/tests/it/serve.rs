use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn sovereign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
}

#[test]
fn help_explains_every_flag() {
    let top = sovereign().arg("--help").output().unwrap();
    assert!(top.status.success());
    let text = String::from_utf8(top.stdout).unwrap();
    assert!(text.contains("serve"), "{text}");
    let serve = sovereign().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8(serve.stdout).unwrap();
    for flag in ["--data-dir", "--region", "--listen", "--config", "--log"] {
        assert!(text.contains(flag), "serve --help lacks {flag}:\n{text}");
    }
}

/// Kills the server when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_prints_where_it_listens_and_answers_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let child = sovereign()
        .args([
            "serve",
            "--region",
            "in-mumbai",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut lines = BufReader::new(running.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("region in-mumbai") && first.contains("listening on https://127.0.0.1:"),
        "{first}"
    );
    let url = first.split_whitespace().last().unwrap().to_owned();
    let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health: serde_json::Value = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["region"], "in-mumbai");
    assert!(dir.path().join("regions/in-mumbai/store.sqlite").exists());
}

#[test]
fn without_a_region_every_configured_region_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("regions.toml"),
        "[[region]]\nid = \"us-oregon\"\nname = \"Oregon\"\ncountry = \"US\"\nlisten = \"127.0.0.1:0\"\n\
         [[region]]\nid = \"in-mumbai\"\nname = \"Mumbai\"\ncountry = \"IN\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    std::fs::write(
        config.path().join("residency.toml"),
        "default = \"us-oregon\"\n[countries]\nIN = [\"in-mumbai\"]\n",
    )
    .unwrap();
    let child = sovereign()
        .args(["serve", "--config"])
        .arg(config.path())
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut lines = BufReader::new(running.0.stdout.take().unwrap()).lines();
    let table: Vec<String> = (0..2).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(
        table[0].contains("us-oregon") && table[0].contains("https://127.0.0.1:"),
        "{table:?}"
    );
    assert!(
        table[1].contains("in-mumbai") && table[1].contains("https://127.0.0.1:"),
        "{table:?}"
    );
    assert_ne!(
        table[0].rsplit(':').next(),
        table[1].rsplit(':').next(),
        "each region has its own port"
    );
    for region in ["us-oregon", "in-mumbai"] {
        assert!(
            dir.path()
                .join(format!("sites/{region}/regions/{region}/store.sqlite"))
                .exists()
        );
        assert!(
            dir.path()
                .join(format!("sites/{region}/keys/{region}.kek"))
                .exists()
        );
    }
}

#[test]
fn bad_flags_and_config_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_region = sovereign()
        .args([
            "serve",
            "--region",
            "mars-base",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(unknown_region.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown_region.stderr);
    assert!(
        stderr.contains("region mars-base is not configured"),
        "{stderr}"
    );

    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("residency.toml"),
        "default = \"nowhere\"\n",
    )
    .unwrap();
    let bad_config = sovereign()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config.path())
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad_config.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_config.stderr);
    assert!(
        stderr.contains("residency.toml") && stderr.contains("nowhere"),
        "{stderr}"
    );

    let bad_region_id = sovereign()
        .args(["serve", "--region", "Not A Region"])
        .output()
        .unwrap();
    assert_eq!(bad_region_id.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_region_id.stderr).contains("invalid region id"));
}

/// Issue 4: `--region ID --database postgres://...` puts the region's store on PostgreSQL (a
/// throwaway cluster the test starts); keys and certificates stay under --data-dir.
#[tokio::test]
async fn serve_with_a_database_puts_the_region_on_postgres_issue_4() {
    let dir = tempfile::tempdir().unwrap();
    let database = crate::pg_cluster::fresh_database();
    let child = sovereign()
        .args([
            "serve",
            "--region",
            "in-mumbai",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut lines = BufReader::new(running.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("region in-mumbai"), "{first}");
    let url = first.split_whitespace().last().unwrap().to_owned();
    let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let signup = client
        .post(format!("{url}/v1/accounts"))
        .json(&serde_json::json!({"phone": "+919812345678", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 202);
    assert!(!dir.path().join("regions/in-mumbai/store.sqlite").exists());
    let (version, verifications) = crate::pg_cluster::off_runtime(|| {
        let mut db = postgres::Client::connect(&database, postgres::NoTls).unwrap();
        let version: i64 = db
            .query_one("SELECT version FROM schema_version", &[])
            .unwrap()
            .get(0);
        let verifications: i64 = db
            .query_one("SELECT count(*) FROM verifications", &[])
            .unwrap()
            .get(0);
        (version, verifications)
    });
    assert_eq!(version, 5);
    assert_eq!(verifications, 1);
}

#[test]
fn database_flag_errors_are_clear_issue_4() {
    let dir = tempfile::tempdir().unwrap();
    let without_region = sovereign()
        .args([
            "serve",
            "--database",
            "postgres://db.internal/x",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(without_region.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&without_region.stderr);
    assert!(stderr.contains("--database needs --region"), "{stderr}");

    let not_postgres = sovereign()
        .args(["serve", "--region", "in-mumbai", "--listen", "127.0.0.1:0"])
        .args([
            "--database",
            "mysql://u:hunter2@db.internal/x",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(not_postgres.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&not_postgres.stderr);
    assert!(stderr.contains("not a PostgreSQL URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = sovereign()
        .args(["serve", "--region", "in-mumbai", "--listen", "127.0.0.1:0"])
        .arg("--database")
        .arg(format!("postgres://u:hunter2@127.0.0.1:{port}/in_mumbai"))
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("cannot connect to postgres://127.0.0.1:"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A free loopback port, released for the site to bind.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn publish(dir: &std::path::Path, region: &str, url: &str) -> String {
    let out = sovereign()
        .args(["federation", "publish", "--region", region, "--url", url])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn three_sites_run_from_their_own_directories_and_the_federation_file() {
    let root = tempfile::tempdir().unwrap();
    let regions = ["in-mumbai", "sg-singapore", "us-oregon"];
    let mut file = String::new();
    let mut sites = Vec::new();
    for region in regions {
        let port = free_port();
        let url = format!("https://localhost:{port}");
        let dir = root.path().join(region);
        let stanza = publish(&dir, region, &url);
        // Publishing again prints the same key: the site's identity is made once.
        assert_eq!(publish(&dir, region, &url), stanza);
        file.push_str(&stanza);
        sites.push((region, port, dir, url));
    }
    let federation = root.path().join("federation.toml");
    std::fs::write(&federation, &file).unwrap();
    let mut running = Vec::new();
    for (region, port, dir, url) in &sites {
        let child = sovereign()
            .args(["serve", "--region", region, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--federation")
            .arg(&federation)
            .arg("--directory")
            .arg(root.path().join("directory.sqlite"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut site = Running(child);
        let mut lines = BufReader::new(site.0.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(first.contains(&format!("region {region}")), "{first}");
        let ca = std::fs::read(dir.join("tls/ca.pem")).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let health = client.get(format!("{url}/healthz")).send().await.unwrap();
        assert!(health.status().is_success());
        running.push(site);
    }
    // A site whose federation file pins another key for it refuses to start.
    let other = root.path().join("other");
    let wrong = publish(&other, "in-mumbai", "https://localhost:1");
    let wrong_file = root.path().join("wrong.toml");
    std::fs::write(&wrong_file, wrong).unwrap();
    let out = sovereign()
        .args(["serve", "--region", "in-mumbai", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&sites[0].2)
        .arg("--federation")
        .arg(&wrong_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("different federation key"), "{err}");
    // Site flags without --region are refused (--directory is not one: every region of one
    // machine may share an etcd or SQLite directory).
    let out = sovereign()
        .args(["serve", "--federation", "x.toml", "--data-dir"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --region"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(running);
}
