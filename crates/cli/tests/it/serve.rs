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
                .join(format!("regions/{region}/store.sqlite"))
                .exists()
        );
        assert!(dir.path().join(format!("keys/{region}.kek")).exists());
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
