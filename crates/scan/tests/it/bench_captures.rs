//! The generators of bench/scan.sh's `h2` and `quic` captures (crates/scan/examples/gen/),
//! kept honest: a small capture of each, scanned with its key log, has every connection
//! decrypted and every planted identifier found where it was planted, as often as planted.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::Report;
use sovereign_scan::tls::keylog::KeyLog;

use crate::support::*;

#[path = "../../examples/gen/h2.rs"]
#[allow(dead_code)]
mod gen_h2;
#[path = "../../examples/gen/quic.rs"]
mod gen_quic;

fn scan_with(capture: &[u8], keylog: &str) -> Report {
    let mut keys = KeyLog::default();
    keys.add_text(keylog, "generated").unwrap();
    scanner()
        .with_keys(keys)
        .scan_bytes("bench.pcap", capture)
        .unwrap()
}

/// The sightings of `kind` whose chain starts with `prefix`.
fn sightings(report: &Report, kind: K, prefix: &str) -> u64 {
    find(report, kind)
        .iter()
        .filter(|f| f.chain.join(" > ").starts_with(prefix))
        .map(|f| f.count)
        .sum()
}

#[test]
fn the_h2_bench_capture_decrypts_and_every_planted_identifier_is_found() {
    let mut pcap = Vec::new();
    let keylog = gen_h2::write(&mut pcap, 2 << 20, 7).unwrap();
    let report = scan_with(&pcap, &keylog);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(report.tls_flows.len() > 5);
    assert!(
        report.tls_flows.iter().all(|f| f.decrypted),
        "{:?}",
        report.tls_flows
    );
    // Sent on every request, from the dynamic table after the connection's first.
    let requests = sightings(&report, K::AndroidId, "tls > h2 > http-header > plain");
    assert!(requests > 50, "{}", describe(&report));
    assert_eq!(
        sightings(&report, K::Imei, "tls > h2 > http-uri"),
        requests / 10,
        "{}",
        describe(&report)
    );
    // Every 7th body, gzip'd or not.
    let email = sightings(&report, K::Email, "tls > h2 > http-body > json")
        + sightings(&report, K::Email, "tls > h2 > http-body > gzip > json");
    assert_eq!(email, requests / 7, "{}", describe(&report));
    assert!(sightings(&report, K::Email, "tls > h2 > http-body > gzip > json") > 0);
    assert_eq!(
        sightings(&report, K::Imsi, "tls > h2 > http-body > gzip > json"),
        requests / 22,
        "{}",
        describe(&report)
    );
    assert_eq!(
        sightings(&report, K::Serial, "tls > h2 > http-body > json"),
        requests / 13
    );
}

#[test]
fn the_quic_bench_capture_decrypts_and_every_planted_identifier_is_found() {
    let mut pcap = Vec::new();
    let keylog = gen_quic::write(&mut pcap, 2 << 20, 7).unwrap();
    let report = scan_with(&pcap, &keylog);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let quic: Vec<_> = report
        .tls_flows
        .iter()
        .filter(|f| f.protocol == "quic")
        .collect();
    assert!(quic.len() > 5);
    assert!(quic.iter().all(|f| f.decrypted), "{quic:?}");
    let android = sightings(&report, K::AndroidId, "quic > h3 > http-header");
    assert!(android > 30, "{}", describe(&report));
    // The path is searched as the URI (and again among the header fields).
    let imei = sightings(&report, K::Imei, "quic > h3 > http-uri");
    let email = sightings(&report, K::Email, "quic > h3 > http-body > json");
    let serial = sightings(&report, K::Serial, "quic > h3 > http-body > json");
    // Every 3rd, 10th, 7th and 13th request: within one of a third of the requests over each.
    let requests = android * 3;
    for (seen, every) in [(imei, 10), (email, 7), (serial, 13)] {
        assert!(
            seen.abs_diff(requests / every) <= 1,
            "{seen} of every {every}th of ~{requests}: {}",
            describe(&report)
        );
    }
}
