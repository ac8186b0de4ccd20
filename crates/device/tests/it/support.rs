use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use sovereign_cloud::clock::SystemClock;
use sovereign_cloud::{Cloud, CloudOptions, Policies};
use sovereign_device::{Behaviour, CloudTarget, PhoneOptions, PhoneProfile};

pub struct TestCloud {
    pub dir: tempfile::TempDir,
    pub cloud: Cloud,
}

/// Every configured region, in one process, each on a free loopback port.
pub async fn spawn_cloud() -> TestCloud {
    let dir = tempfile::tempdir().unwrap();
    let policies = Policies::embedded().unwrap();
    let regions = policies
        .regions
        .regions
        .iter()
        .map(|r| (r.id.clone(), "127.0.0.1:0".parse().unwrap()))
        .collect();
    let cloud = sovereign_cloud::start_cloud(CloudOptions {
        data_dir: dir.path().to_path_buf(),
        policies,
        regions,
        databases: Default::default(),
        clock: Arc::new(SystemClock),
    })
    .await
    .unwrap();
    assert_eq!(cloud.regions.len(), 6);
    TestCloud { dir, cloud }
}

impl TestCloud {
    pub fn url(&self, region: &str) -> String {
        self.cloud.region(region).unwrap().url.clone()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("sms-outbox.jsonl")
    }

    /// Options for a `sovereign` phone entering the cloud at `region`.
    pub fn options(&self, region: &str) -> PhoneOptions {
        let mut options = PhoneOptions::new(Behaviour::Sovereign);
        options.cloud = Some(CloudTarget {
            url: self.url(region),
            ca_pem: std::fs::read(self.ca_path()).unwrap(),
            ca_origin: self.ca_path().display().to_string(),
        });
        options.sms_outbox = Some(self.outbox());
        options
    }

    /// How many accounts a region's store holds.
    pub fn users_in(&self, region: &str) -> i64 {
        let path = self
            .dir
            .path()
            .join(format!("sites/{region}/regions/{region}/store.sqlite"));
        let conn =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .unwrap()
    }

    pub fn regions(&self) -> Vec<String> {
        self.cloud
            .regions
            .iter()
            .map(|r| r.id.to_string())
            .collect()
    }
}

pub fn profile_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/phone.toml")
}

pub fn profile() -> PhoneProfile {
    PhoneProfile::load(&profile_path()).unwrap()
}

/// Every byte string under which `value` could travel: as is, in either case, hex in either
/// case, and base64 and base64url at each of the three alignments (the part of the encoding that
/// depends only on the value).
pub fn encodings(value: &str) -> Vec<Vec<u8>> {
    let mut out = vec![
        value.as_bytes().to_vec(),
        value.to_ascii_lowercase().into_bytes(),
        value.to_ascii_uppercase().into_bytes(),
    ];
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(hex.clone().into_bytes());
    out.push(hex.to_ascii_uppercase().into_bytes());
    for engine in [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for shift in 0..3 {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(value.as_bytes());
            let encoded = engine.encode(&bytes);
            // Characters touched by the prefix, and the last partial group, vary with context.
            let skip = if shift == 0 {
                0
            } else {
                (shift * 8).div_ceil(6)
            };
            let whole = (bytes.len() * 8) / 6;
            out.push(encoded.as_bytes()[skip..whole].to_vec());
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The hardware and subscriber identifiers of the demo profile.
pub fn hardware_ids() -> Vec<(&'static str, String)> {
    let ids = profile().profile().identifiers.clone();
    vec![
        ("imei", ids.imei.unwrap()),
        ("imsi", ids.imsi.unwrap()),
        ("iccid", ids.iccid.unwrap()),
    ]
}

/// Checks that a key log is in the NSS format and holds secrets of at least one session.
pub fn assert_key_log_well_formed(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let labels = [
        "CLIENT_RANDOM",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    ];
    let mut lines = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert!(labels.contains(&fields[0]), "{line}");
        assert_eq!(fields[1].len(), 64, "client random is 32 bytes: {line}");
        assert!(
            [64, 96].contains(&fields[2].len()),
            "a secret is 32 or 48 bytes: {line}"
        );
        assert!(
            fields[1..].iter().all(|f| f
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
            "{line}"
        );
        lines += 1;
    }
    assert!(text.contains("CLIENT_TRAFFIC_SECRET_0 "), "{text}");
    assert!(lines >= 4, "{text}");
}
