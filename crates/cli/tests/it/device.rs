//! `sovereign device` as a user runs it: against a cloud started in-process, and its own or a
//! separately started legacy endpoint.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::Value;

fn sovereign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
}

fn profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/phone.toml")
}

async fn run_async(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The home region of the demo profile, served in-process on a free port.
async fn mumbai(dir: &Path) -> sovereign_cloud::Cloud {
    sovereign_cloud::start_cloud(sovereign_cloud::CloudOptions {
        data_dir: dir.to_path_buf(),
        policies: sovereign_cloud::Policies::embedded().unwrap(),
        regions: vec![(
            sovereign_model::RegionId::parse("in-mumbai").unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )],
        databases: Default::default(),
        clock: Arc::new(sovereign_cloud::clock::SystemClock),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_run_sovereign_reports_every_step_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = mumbai(dir.path()).await;
    let key_log = dir.path().join("keys.log");
    let mut command = sovereign();
    command
        .args([
            "device",
            "run",
            "--behaviour",
            "sovereign",
            "--format",
            "json",
        ])
        .arg("--profile")
        .arg(profile())
        .args(["--cloud", &cloud.regions[0].url])
        .arg("--ca")
        .arg(dir.path().join("tls/ca.pem"))
        .arg("--sms-outbox")
        .arg(dir.path().join("sms-outbox.jsonl"))
        .arg("--keylog")
        .arg(&key_log)
        .args(["--backup", "photos,contacts"])
        .arg("--timings")
        .arg(dir.path().join("timings.json"));
    let output = run_async(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    // Issue 10, item 5: one timing per request, in order, for bench/latency.sh.
    let timings: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("timings.json")).unwrap()).unwrap();
    let requests: Vec<&Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["requests"].as_array().unwrap())
        .collect();
    let timings = timings.as_array().unwrap();
    assert_eq!(timings.len(), requests.len());
    for (timing, request) in timings.iter().zip(&requests) {
        assert_eq!(timing["method"], request["method"]);
        assert!(
            request["url"]
                .as_str()
                .unwrap()
                .ends_with(timing["path"].as_str().unwrap())
        );
        assert!(
            timing["path"].as_str().unwrap().starts_with("/v1/"),
            "{timing}"
        );
        assert_eq!(timing["status"], request["status"]);
        assert!(
            timing["ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{timing}"
        );
    }
    assert_eq!(report["behaviour"], "sovereign");
    assert_eq!(report["region"], "in-mumbai");
    assert_eq!(report["backup"], serde_json::json!(["contacts", "photos"]));
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 22);
    assert_eq!(steps[11]["step"], "sign-in");
    for step in &steps[..11] {
        assert_eq!(step["requests"], serde_json::json!([]), "{}", step["step"]);
    }
    for step in steps {
        for request in step["requests"].as_array().unwrap() {
            assert_eq!(request["tls"], true, "{request}");
            for carried in request["identifiers"].as_array().unwrap() {
                assert!(
                    ["phone", "contact"].contains(&carried["kind"].as_str().unwrap()),
                    "{request}"
                );
            }
        }
    }
    let backup = steps[13]["summary"].as_str().unwrap();
    assert!(backup.contains("to in-mumbai (opted in)"), "{backup}");
    assert!(backup.contains("sms backup stays off"), "{backup}");
    assert!(
        std::fs::read_to_string(&key_log)
            .unwrap()
            .contains("CLIENT_TRAFFIC_SECRET_0 ")
    );
}

#[test]
fn device_run_legacy_starts_its_endpoint_and_prints_each_step() {
    let output = sovereign()
        .args(["device", "run", "--behaviour", "legacy-2014", "--profile"])
        .arg(profile())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("started the legacy account endpoint account.cn-beijing.legacy.test"),
        "{text}"
    );
    assert!(text.contains(" 1. first-boot:"), "{text}");
    assert!(text.contains("[cleartext, 127.0.0.1:"), "{text}");
    assert!(
        text.contains("carries imei (plain), phone (plain), carrier (plain)"),
        "{text}"
    );
    assert!(text.contains("-- after the update --"), "{text}");
    assert!(text.contains("imei (base64), imsi (base64)"), "{text}");
    assert!(text.contains("received 21 requests"), "{text}");
}

/// Kills the endpoint when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn legacy_endpoint_command_records_what_a_phone_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("legacy-ca.pem");
    let child = sovereign()
        .args([
            "device",
            "legacy-endpoint",
            "--listen",
            "127.0.0.1:0",
            "--ca-out",
        ])
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut lines = BufReader::new(running.0.stdout.take().unwrap()).lines();
    let mut addresses = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.trim().strip_prefix("listening on ") {
            addresses.push(url.to_owned());
        }
        if line.starts_with("every request") {
            break;
        }
    }
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    let output = sovereign()
        .args([
            "device",
            "run",
            "--behaviour",
            "legacy-2014",
            "--format",
            "json",
            "--profile",
        ])
        .arg(profile())
        .arg("--legacy")
        .args(&addresses)
        .arg("--legacy-ca")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        report.get("legacy_endpoint").is_none(),
        "used the running endpoint"
    );
    let records: Vec<Value> = lines
        .take(21)
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), 21);
    assert_eq!(records[0]["tls"], false);
    assert!(
        records[0]["body"]
            .as_str()
            .unwrap()
            .contains("864983021458734")
    );
    assert_eq!(records[20]["tls"], true);
}

fn fails_with(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_errors_are_clear_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_profile = dir.path().join("bad.toml");
    std::fs::write(
        &bad_profile,
        "[device]\nhome_country = \"IN\"\n[identifiers]\nimie = \"1\"\n",
    )
    .unwrap();
    let garbage_ca = dir.path().join("garbage.pem");
    std::fs::write(&garbage_ca, "hello").unwrap();
    let cloud = mumbai(dir.path()).await;
    let url = cloud.regions[0].url.clone();
    let ca = dir.path().join("tls/ca.pem");
    let outbox = dir.path().join("sms-outbox.jsonl");
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let base = |behaviour: &str, profile: &Path| {
        let mut command = sovereign();
        command
            .args(["device", "run", "--behaviour", behaviour, "--profile"])
            .arg(profile);
        command
    };
    fails_with(&run_async(base("xiaomi", &profile())).await, "legacy-2014");
    fails_with(&run_async(base("sovereign", &bad_profile)).await, "imie");
    let mut no_ca = base("sovereign", &profile());
    no_ca.args(["--cloud", &url]);
    fails_with(&run_async(no_ca).await, "--ca");
    let mut bad_ca = base("sovereign", &profile());
    bad_ca.args(["--cloud", &url]).arg("--ca").arg(&garbage_ca);
    fails_with(&run_async(bad_ca).await, "holds no PEM certificate");
    let mut unreachable = base("sovereign", &profile());
    unreachable
        .args(["--cloud", &format!("https://127.0.0.1:{dead_port}")])
        .arg("--ca")
        .arg(&ca)
        .arg("--sms-outbox")
        .arg(&outbox);
    fails_with(&run_async(unreachable).await, "cannot reach");
    let mut wrong_ca = base("sovereign", &profile());
    let other = dir.path().join("other-ca.pem");
    let (other_ca, _) = sovereign_crypto::LocalCa::generate("someone else").unwrap();
    std::fs::write(&other, other_ca.cert_pem()).unwrap();
    wrong_ca
        .args(["--cloud", &url])
        .arg("--ca")
        .arg(&other)
        .arg("--sms-outbox")
        .arg(&outbox);
    fails_with(&run_async(wrong_ca).await, "certificate");
    let mut bad_backup = base("sovereign", &profile());
    bad_backup.args(["--backup", "calendar"]);
    fails_with(&run_async(bad_backup).await, "calendar");
}
