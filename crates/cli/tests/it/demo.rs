//! `sovereign demo` end to end: the cloud, both phones, real loopback captures made with tcpdump,
//! both scanned with the phones' key logs. Needs tcpdump and the right to capture (the test
//! command installs tcpdump; CI runs as root).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn sovereign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sovereign"))
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn strings<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn the_demo_proves_both_behaviours_from_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let output = sovereign()
        .args(["demo", "--format", "json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["ok"], true);
    let checks = summary["checks"].as_array().unwrap();
    assert!(checks.len() >= 13, "{checks:?}");
    assert!(checks.iter().all(|c| c["holds"] == true), "{checks:?}");

    // The captures are real pcap files written by tcpdump, with the key logs beside them.
    for name in ["legacy-2014", "sovereign"] {
        let capture = std::fs::read(out.join(format!("{name}.pcap"))).unwrap();
        assert!(
            capture.starts_with(&[0xd4, 0xc3, 0xb2, 0xa1])
                || capture.starts_with(&[0xa1, 0xb2, 0xc3, 0xd4]),
            "{name}.pcap is not a pcap file"
        );
        let keys = std::fs::read_to_string(out.join(format!("{name}.keys"))).unwrap();
        assert!(
            keys.lines()
                .any(|l| l.starts_with("CLIENT_TRAFFIC_SECRET_0 ")),
            "{keys}"
        );
        // Self-contained HTML: nothing fetched from anywhere.
        let html = std::fs::read_to_string(out.join(format!("{name}.html"))).unwrap();
        assert!(html.contains("<svg"), "{name}.html has no picture");
        for outside in ["src=\"http", "href=\"http", "url(http", "@import"] {
            assert!(
                !html.contains(outside),
                "{name}.html refers outside: {outside}"
            );
        }
    }

    // What 2014 found, from the wire: the legacy phone's identifiers in cleartext to
    // cn-beijing, and after the update base64 inside TLS.
    let legacy = json_file(&out.join("legacy-2014.json"));
    let findings = legacy["findings"].as_array().unwrap();
    for kind in ["imei", "imsi", "phone", "carrier", "contact"] {
        assert!(
            findings.iter().any(|f| f["identifier"] == kind
                && f["site"] == "cn-beijing"
                && f["country"] == "CN"),
            "legacy: no {kind} to cn-beijing"
        );
    }
    assert!(findings.iter().any(|f| {
        let chain = strings(f, "chain");
        f["identifier"] == "imei" && chain.first() == Some(&"tls") && chain.contains(&"base64")
    }));
    assert!(matches!(
        legacy["rating"].as_str(),
        Some("high" | "critical")
    ));

    // Ours: only the phone number, only inside TLS, only to in-mumbai; every TLS flow opened.
    let ours = json_file(&out.join("sovereign.json"));
    let findings = ours["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "the phone number was not seen");
    for f in findings {
        assert_eq!(f["identifier"], "phone", "{f}");
        assert_eq!(f["site"], "in-mumbai", "{f}");
        assert_eq!(f["cross_border"], false, "{f}");
        assert_eq!(strings(f, "chain").first(), Some(&"tls"), "{f}");
    }
    let flows = ours["tls_flows"].as_array().unwrap();
    assert!(!flows.is_empty());
    for flow in flows {
        assert_eq!(flow["decrypted"], true, "{flow}");
        // The connections themselves are placed by the sites file, like the findings.
        assert_eq!(flow["site"], "in-mumbai", "{flow}");
        assert_eq!(flow["country"], "IN", "{flow}");
    }

    // The same capture by hand, as the README shows: with the key log the same findings; without
    // it nothing can be read, and every TLS flow is listed as not visible.
    let scan = |keylog: bool| {
        let mut command = sovereign();
        command
            .args(["scan", "--format", "json", "--profile"])
            .arg(out.join("phone.toml"))
            .arg("--sites")
            .arg(out.join("sites.toml"));
        if keylog {
            command.arg("--keylog").arg(out.join("sovereign.keys"));
        }
        let output = command.arg(out.join("sovereign.pcap")).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let by_hand = scan(true);
    assert_eq!(
        by_hand["findings"].as_array().unwrap().len(),
        findings.len()
    );
    let blind = scan(false);
    assert!(blind["findings"].as_array().unwrap().is_empty());
    let flows = blind["tls_flows"].as_array().unwrap();
    assert!(!flows.is_empty());
    assert!(flows.iter().all(|f| f["decrypted"] == false), "{flows:?}");
}

#[test]
fn without_tcpdump_the_demo_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let output = sovereign()
        .args(["demo", "--out"])
        .arg(dir.path().join("demo"))
        .env("PATH", &empty_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tcpdump is not installed"), "{stderr}");
    assert!(stderr.contains("apt-get install tcpdump"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_profile_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("phone.toml");
    std::fs::write(
        &profile,
        "[device]\nname = \"x\"\nhome_country = \"IN\"\nimei = 1\n",
    )
    .unwrap();
    let output = sovereign()
        .args(["demo", "--out"])
        .arg(dir.path().join("demo"))
        .arg("--profile")
        .arg(&profile)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("imei"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
