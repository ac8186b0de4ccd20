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
