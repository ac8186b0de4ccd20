//! Every suite OpenSSL here builds, recorded on loopback (tests/fixtures/tls-suites.pcap, made
//! by `record-tls-suites.sh`): `openssl s_client` sends `imei=356938035643809` to
//! `openssl s_server -rev`, one connection per suite and version, each on its own port. With
//! the clients' key log every flow is listed with its version and suite, decrypted, and the
//! IMEI found in it.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::Report;
use sovereign_scan::tls::keylog::KeyLog;

use crate::support::*;

fn scan_suites() -> Report {
    let mut keys = KeyLog::default();
    let text = std::fs::read_to_string(fixture("tls-suites.keys")).unwrap();
    keys.add_text(&text, "tls-suites.keys").unwrap();
    scanner()
        .with_keys(keys)
        .scan_paths(
            &[fixture("tls-suites.pcap")],
            &mut sovereign_scan::progress::NoProgress,
        )
        .unwrap()
}

/// Each (server port, version, suite) is listed as decrypted and the IMEI was found in it.
fn assert_suites(cases: &[(u16, &str, &str)]) {
    let report = scan_suites();
    let mut failed = Vec::new();
    for (port, version, cipher) in cases {
        let dst = format!("127.0.0.1:{port}");
        let Some(flow) = report.tls_flows.iter().find(|f| f.dst == dst) else {
            failed.push(format!("{dst}: not listed"));
            continue;
        };
        if flow.version.as_deref() != Some(*version) || flow.cipher.as_deref() != Some(*cipher) {
            failed.push(format!(
                "{dst}: listed as {:?} {:?}",
                flow.version, flow.cipher
            ));
        }
        if !flow.decrypted {
            failed.push(format!("{dst} {cipher}: not decrypted: {:?}", flow.note));
        }
        let imei = find(&report, K::Imei);
        if !imei
            .iter()
            .any(|f| f.dst == dst && (f.chain[0] == "tls" || f.chain[0] == "dtls"))
        {
            failed.push(format!("{dst} {cipher}: no IMEI found inside"));
        }
        if let Some(w) = report.warnings.iter().find(|w| w.contains(&dst)) {
            failed.push(format!("{dst}: {w}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}\n{}", describe(&report));
}

#[test]
fn tls13_ccm_and_ccm_8() {
    assert_suites(&[
        (5001, "TLS 1.3", "TLS_AES_128_CCM_SHA256"),
        (5002, "TLS 1.3", "TLS_AES_128_CCM_8_SHA256"),
    ]);
}

#[test]
fn tls12_psk_suites_gcm_and_chacha20() {
    assert_suites(&[
        (5003, "TLS 1.2", "TLS_PSK_WITH_AES_128_GCM_SHA256"),
        (5004, "TLS 1.2", "TLS_PSK_WITH_AES_256_GCM_SHA384"),
        (5005, "TLS 1.2", "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256"),
        (
            5006,
            "TLS 1.2",
            "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        ),
        (5007, "TLS 1.2", "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256"),
    ]);
}

#[test]
fn tls12_ccm_and_ccm_8() {
    assert_suites(&[
        (5008, "TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
        (5009, "TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"),
        (5010, "TLS 1.2", "TLS_PSK_WITH_AES_128_CCM"),
        (5011, "TLS 1.2", "TLS_PSK_WITH_AES_128_CCM_8"),
    ]);
}

#[test]
fn tls12_cbc_with_and_without_encrypt_then_mac() {
    assert_suites(&[
        (5012, "TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
        (5013, "TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
        (5014, "TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
        (5015, "TLS 1.2", "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256"),
        (
            5016,
            "TLS 1.2",
            "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256",
        ),
    ]);
}

#[test]
fn tls11_and_tls10_cbc() {
    assert_suites(&[
        (5017, "TLS 1.1", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
        (5018, "TLS 1.1", "TLS_PSK_WITH_AES_256_CBC_SHA"),
        (5019, "TLS 1.0", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
        (5020, "TLS 1.0", "TLS_PSK_WITH_AES_128_CBC_SHA"),
    ]);
}

#[test]
fn dtls_12_and_10_over_udp() {
    assert_suites(&[
        (5021, "DTLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        (5022, "DTLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
        (5023, "DTLS 1.0", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    ]);
}

/// DTLS 1.2 over a 256-byte MTU (tests/fixtures/dtls-fragments.pcap, made by
/// `record-dtls-fragments.sh`): OpenSSL splits its ClientHello (both, before and after the
/// cookie) over two handshake fragments in two datagrams. The fragments are joined, so the SNI
/// and the client's offer are read and the flow is decrypted.
#[test]
fn a_dtls_client_hello_in_fragments_is_joined_issue_11() {
    let mut keys = KeyLog::default();
    let text = std::fs::read_to_string(fixture("dtls-fragments.keys")).unwrap();
    keys.add_text(&text, "dtls-fragments.keys").unwrap();
    let report = scanner()
        .with_keys(keys)
        .scan_paths(
            &[fixture("dtls-fragments.pcap")],
            &mut sovereign_scan::progress::NoProgress,
        )
        .unwrap();
    let flow = report
        .tls_flows
        .iter()
        .find(|f| f.dst == "127.0.0.1:5031")
        .unwrap_or_else(|| panic!("not listed: {:#?}", report.tls_flows));
    assert_eq!(flow.sni.as_deref(), Some("api.example.cn"), "{flow:#?}");
    assert_eq!(flow.version.as_deref(), Some("DTLS 1.2"));
    assert!(flow.decrypted, "{:?}", flow.note);
    let imei = find(&report, K::Imei);
    assert!(
        imei.iter().any(|f| f.chain[0] == "dtls"),
        "{}",
        describe(&report)
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}
