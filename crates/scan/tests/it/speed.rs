//! Issue 11, item 7: the cost of a scan grows with its input and its matches, not with their
//! square, and every thread count gives the same report. No timings here: a quadratic path
//! shows as a test that takes minutes instead of a fraction of a second.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::synth;

use crate::support::*;

/// 10^5 sightings of one identifier in one flow: four bodies of 25 000, each giving 50 000
/// raw matches (two patterns of the IMEI overlap at each sighting), under
/// `MATCHES_PER_BUFFER_MAX`. Quadratic in matches per buffer, this took minutes; linear, it
/// takes well under a second in release.
#[test]
fn issue11_a_hundred_thousand_matches_cost_linear_time() {
    const SIGHTINGS_PER_BODY: usize = 25_000;
    const BODIES: usize = 4;
    let body = b"356938035643809 ".repeat(SIGHTINGS_PER_BODY);
    let request = post("t.example", "text/plain", "", &body).repeat(BODIES);
    let capture = synth::pcap(&synth::tcp_conversation(
        addr(CLIENT),
        addr(SERVER_CN),
        &request,
        OK,
        1400,
    ));
    let report = scan(&capture);
    let imei = find(&report, K::Imei);
    assert_eq!(imei.len(), 1, "{}", describe(&report));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(imei[0].count, (BODIES * SIGHTINGS_PER_BODY) as u64);
}

/// The JSON report of scanning `paths` with `threads` threads.
fn json_with_threads(paths: &[std::path::PathBuf], threads: usize) -> String {
    scanner()
        .with_threads(threads)
        .scan_paths(paths, &mut sovereign_scan::progress::NoProgress)
        .unwrap()
        .to_json()
        .unwrap()
}

/// Flows sharded over four threads give the report of one thread, byte for byte: findings and
/// their first sightings, warnings in order, TLS flows, hosts named by DNS answers that another
/// thread's flow carried, statistics.
#[test]
fn issue11_four_threads_report_exactly_what_one_thread_does() {
    let dir = tempfile::tempdir().unwrap();
    let phone = dir.path().join("phone.pcap");
    let file = std::io::BufWriter::new(std::fs::File::create(&phone).unwrap());
    sovereign_scan::phone_traffic::write(file, 3 << 20, 7).unwrap();
    // Truncated part way through a frame: a reader warning after the frames' own.
    let cut = dir.path().join("cut.pcap");
    let bytes = std::fs::read(&phone).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3 + 5]).unwrap();
    // Flows with a segment lost each, interleaved and some left open: warnings from every
    // shard, at frames and at the end, to be merged in the one order.
    let lossy = dir.path().join("lossy.pcap");
    let mut flows: Vec<Vec<Vec<u8>>> = (0..12_u16)
        .map(|i| {
            let body = format!("imei=356938035643809&n={i}&").repeat(200);
            let mut packets = synth::tcp_conversation(
                addr(&format!("10.0.0.2:{}", 41000 + i)),
                addr(SERVER_CN),
                &post("t.example", "text/plain", "", body.as_bytes()),
                OK,
                500,
            );
            packets.remove(5);
            if i % 3 == 0 {
                packets.truncate(packets.len() - 2);
            }
            // Some flows in IPv4 fragments: the reader reassembles them and sends shards a
            // copy, where other payloads are ranges of the shared read buffers.
            if i % 4 == 1 {
                packets = packets
                    .iter()
                    .flat_map(|p| synth::ipv4_fragments(p, 160))
                    .collect();
            }
            packets
        })
        .collect();
    let mut interleaved = Vec::new();
    while flows.iter().any(|f| !f.is_empty()) {
        for (i, flow) in flows.iter_mut().enumerate() {
            for _ in 0..=(i % 3) {
                if !flow.is_empty() {
                    interleaved.push(flow.remove(0));
                }
            }
        }
    }
    std::fs::write(&lossy, synth::pcap(&interleaved)).unwrap();
    let lossy_path = lossy.clone();
    let cases: Vec<Vec<std::path::PathBuf>> = vec![
        vec![lossy.clone()],
        vec![fixture("loopback.pcap")],
        vec![fixture("loopback.pcapng")],
        vec![phone.clone()],
        vec![fixture("websocket.pcap"), fixture("quic-h3-v1.pcap")],
        vec![cut, fixture("loopback.pcapng"), lossy, phone],
    ];
    for paths in cases {
        let one = json_with_threads(&paths, 1);
        let four = json_with_threads(&paths, 4);
        assert!(one.contains("\"findings\""), "{one}");
        if paths[0] == lossy_path {
            assert!(one.matches("bytes missing").count() >= 12, "{one}");
        }
        assert!(
            one == four,
            "{paths:?}: one thread\n{one}\nfour threads\n{four}"
        );
    }
    // Decrypted QUIC (connections kept and listed by the shards) beside TLS and DNS.
    let mut keys = sovereign_scan::tls::keylog::KeyLog::default();
    for name in [
        "quic-h3-v1.keys",
        "quic-h3-v2.keys",
        "tls-suites.keys",
        "h2-tls.keys",
        "h2-websocket.keys",
    ] {
        keys.add_text(&std::fs::read_to_string(fixture(name)).unwrap(), name)
            .unwrap();
    }
    let paths = [
        fixture("quic-h3-v1.pcap"),
        fixture("loopback.pcap"),
        fixture("quic-h3-v2.pcap"),
        fixture("tls-suites.pcap"),
        fixture("h2-tls.pcap"),
        fixture("grpc.pcap"),
        fixture("h2-websocket.pcap"),
    ];
    let json = |threads| {
        scanner()
            .with_keys(keys.clone())
            .with_threads(threads)
            .scan_paths(&paths, &mut sovereign_scan::progress::NoProgress)
            .unwrap()
            .to_json()
            .unwrap()
    };
    let one = json(1);
    assert!(one.contains("\"quic\""), "{one}");
    assert!(one.contains("h3"), "{one}");
    assert!(one.contains("DTLS"), "{one}");
    assert!(one.contains("\"wss\""), "{one}");
    assert!(one.contains("\"h2\""), "{one}");
    assert!(one.contains("protobuf"), "{one}");
    assert_eq!(one, json(4));
}

/// The phone-shaped capture carries what the benchmark relies on: many flows, DNS-named hosts
/// and planted identifiers in every body kind.
#[test]
fn issue11_phone_traffic_has_many_short_flows_with_findings() {
    let mut capture = Vec::new();
    sovereign_scan::phone_traffic::write(&mut capture, 1 << 20, 3).unwrap();
    let report = scan(&capture);
    assert!(report.captures[0].tcp_flows > 100, "{:?}", report.captures);
    for kind in [K::Imei, K::Phone, K::Imsi, K::Email] {
        assert!(
            !find(&report, kind).is_empty(),
            "{kind}: {}",
            describe(&report)
        );
    }
    // A push channel (not HTTP) is named by the DNS answer before it.
    assert!(
        find(&report, K::Imei)
            .iter()
            .any(|f| f.protocol == "tcp" && f.host.as_deref().is_some_and(|h| h.starts_with("api"))),
        "{}",
        describe(&report)
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}
