//! QUIC and HTTP/3: real connections recorded on loopback by `fixtures/record-quic.sh` (our own
//! aioquic client and server, with the client's key log), scanned with and without the key log.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::progress::NoProgress;
use sovereign_scan::tls::keylog::KeyLog;
use sovereign_scan::{Report, TlsFlowReport};

use crate::support::*;

fn scan_fixture(name: &str, with_keys: bool) -> Report {
    let mut scanner = scanner();
    if with_keys {
        let mut keys = KeyLog::default();
        let keylog = fixture(&format!("{name}.keys"));
        keys.add_text(&std::fs::read_to_string(&keylog).unwrap(), "keys")
            .unwrap();
        scanner = scanner.with_keys(keys);
    }
    scanner
        .scan_paths(&[fixture(&format!("{name}.pcap"))], &mut NoProgress)
        .unwrap()
}

fn quic_flows(report: &Report) -> Vec<&TlsFlowReport> {
    report
        .tls_flows
        .iter()
        .filter(|f| f.protocol == "quic")
        .collect()
}

fn chains(report: &Report, kind: K) -> Vec<String> {
    find(report, kind)
        .iter()
        .map(|f| f.chain.join(">"))
        .collect()
}

#[test]
fn http3_over_quic_v1_and_v2_is_decrypted_with_the_key_log_issue_11() {
    for (name, version) in [("quic-h3-v1", "QUIC v1"), ("quic-h3-v2", "QUIC v2")] {
        let report = scan_fixture(name, true);
        let flows = quic_flows(&report);
        assert_eq!(flows.len(), 1, "{name}: {:#?}", report.tls_flows);
        let flow = flows[0];
        assert!(flow.decrypted, "{name}: {:?}", flow.note);
        assert_eq!(flow.sni.as_deref(), Some("api.example.cn"));
        assert_eq!(
            flow.version.as_deref(),
            Some(&*format!("{version} (TLS 1.3)"))
        );
        assert_eq!(flow.alpn, ["h3"]);
        assert!(flow.cipher.is_some());
        let all = describe(&report);
        // The IMEI in the path, the Android ID in a header (QPACK, the second time from the
        // dynamic table), the IMSI in a gzip JSON request body, the e-mail in the response's.
        assert!(
            chains(&report, K::Imei)
                .iter()
                .any(|c| c.starts_with("quic>h3>http-uri")),
            "{name}:\n{all}"
        );
        assert!(
            chains(&report, K::AndroidId).contains(&"quic>h3>http-header>plain".to_owned()),
            "{name}:\n{all}"
        );
        assert!(
            chains(&report, K::Imsi).contains(&"quic>h3>http-body>gzip>json>plain".to_owned()),
            "{name}:\n{all}"
        );
        assert!(
            chains(&report, K::Email).contains(&"quic>h3>http-body>gzip>json>plain".to_owned()),
            "{name}:\n{all}"
        );
        let header = &find(&report, K::AndroidId)[0];
        assert_eq!(header.protocol, "http3");
        assert!(!header.cleartext);
        assert_eq!(header.host.as_deref(), Some("api.example.cn"));
        assert_eq!(
            find(&report, K::AndroidId)[0].count,
            2,
            "{name}: both requests"
        );
        assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
    }
}

#[test]
fn without_the_key_log_a_quic_connection_is_listed_from_its_initial_packets_issue_11() {
    let report = scan_fixture("quic-h3-v1", false);
    let flows = quic_flows(&report);
    assert_eq!(flows.len(), 1, "{:#?}", report.tls_flows);
    let flow = flows[0];
    assert!(!flow.decrypted);
    assert_eq!(flow.sni.as_deref(), Some("api.example.cn"));
    assert_eq!(flow.host.as_deref(), Some("api.example.cn"));
    assert_eq!(flow.alpn, ["h3"]);
    assert_eq!(flow.dst, format!("127.0.0.1:{}", 4433));
    assert!(
        flow.note
            .as_deref()
            .unwrap_or("")
            .contains("no key log entry"),
        "{:?}",
        flow.note
    );
    // Nothing inside was visible, and the encrypted datagrams were not searched as plain UDP.
    assert!(report.findings.is_empty(), "{}", describe(&report));
    let table = report.to_table();
    assert!(table.contains("QUIC v1 (TLS 1.3)"), "{table}");
    let json = report.to_json().unwrap();
    assert!(json.contains("\"protocol\": \"quic\""), "{json}");
}
