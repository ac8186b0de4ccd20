//! Real traffic recorded on loopback with tcpdump and dumpcap (see tests/fixtures/README.md).

use sovereign_model::IdentifierKind as K;

use crate::support::*;

#[test]
fn recorded_loopback_traffic_sll2_pcap_and_ethernet_pcapng() {
    for name in ["loopback.pcap", "loopback.pcapng"] {
        let report = scanner()
            .scan_paths(&[fixture(name)], &mut sovereign_scan::progress::NoProgress)
            .unwrap();
        let chains: Vec<(K, Vec<String>)> = report
            .findings
            .iter()
            .map(|f| (f.identifier, f.chain.clone()))
            .collect();
        let expect: [(K, &[&str]); 8] = [
            (K::Imei, &["http-uri", "url", "plain"]),
            (K::Carrier, &["http-uri", "url", "plain"]),
            (K::Imsi, &["http-body", "json", "base64"]),
            (K::WifiMac, &["http-body", "json", "mac-dash"]),
            (K::Sms, &["http-body", "json", "plain"]),
            (K::Phone, &["http-body", "gzip", "form", "e164"]),
            (K::Email, &["http-body", "gzip", "form", "plain"]),
            (K::Imei, &["http-header", "sha256"]),
        ];
        for (kind, chain) in expect {
            assert!(
                chains.iter().any(|(k, c)| *k == kind && c == chain),
                "{name}: {kind} {chain:?} not in\n{}",
                describe(&report)
            );
        }
        let location = find(&report, K::Location);
        assert!(location.iter().all(|f| f.direction == "inbound"));
        assert_eq!(location[0].chain[..3], ["http-body", "deflate", "json"]);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(
            find(&report, K::Imei)[0].host.as_deref(),
            Some("account.example.cn")
        );
    }
}

/// The terminal report of the recorded capture, compared with tests/fixtures/loopback.table.txt;
/// run with `UPDATE_SNAPSHOTS=1` to rewrite it after an intended change.
#[test]
fn table_report_snapshot() {
    let report = scanner()
        .scan_paths(
            &[fixture("loopback.pcap")],
            &mut sovereign_scan::progress::NoProgress,
        )
        .unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let table = report.to_table().replace(root, "$CRATE");
    let path = fixture("loopback.table.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &table).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        table, expected,
        "snapshot differs; UPDATE_SNAPSHOTS=1 rewrites it"
    );
}
