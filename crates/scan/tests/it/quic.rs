//! QUIC and HTTP/3: real connections recorded on loopback by `fixtures/record-quic.sh` (our own
//! aioquic client and server, with the client's key log), scanned with and without the key log.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::progress::NoProgress;
use sovereign_scan::quic::{packet as quic_packet, synth as quic_synth};
use sovereign_scan::tls::keylog::KeyLog;
use sovereign_scan::{Report, TlsFlowReport, synth};

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
        // Once, as the URI: not again as a header line.
        assert!(
            chains(&report, K::Imei)
                .iter()
                .all(|c| c.starts_with("quic>h3>http-uri")),
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

/// UDP packets between `client` and `server` for the datagrams of a made-up connection.
fn udp_packets(client: &str, server: &str, datagrams: &[(bool, Vec<u8>)]) -> Vec<Vec<u8>> {
    let (c, s) = (addr(client), addr(server));
    datagrams
        .iter()
        .map(|(from_client, d)| {
            let (a, b) = if *from_client { (c, s) } else { (s, c) };
            synth::ip(a.ip(), b.ip(), 17, &synth::udp(a.port(), b.port(), d))
        })
        .collect()
}

fn exchange() -> quic_synth::Exchange {
    quic_synth::Exchange {
        path: "/v1/ping".into(),
        headers: vec![("x-device".into(), "356938035643809".into())],
        body: br#"{"imsi":"404450123456789"}"#.to_vec(),
        response_headers: vec![("content-type".into(), "application/json".into())],
        response_body: br#"{"ok":true}"#.to_vec(),
    }
}

#[test]
fn draft_29_and_v2_connections_made_up_with_their_salts_are_read_issue_11() {
    // aioquic speaks only v1 and v2, so draft-29 (and v2 again) are built here: real packet
    // protection under each version's Initial salt and labels, made-up 1-RTT secrets.
    for (version, name) in [
        (&quic_packet::DRAFT_29, "QUIC draft-29 (TLS 1.3)"),
        (&quic_packet::V2, "QUIC v2 (TLS 1.3)"),
    ] {
        let built = quic_synth::connection(version, "edge.example.cn", 7, &[exchange()]).unwrap();
        let pcap = synth::pcap(&udp_packets(
            "10.0.0.2:50000",
            "223.5.5.5:443",
            &built.datagrams,
        ));
        let listed = scan(&pcap);
        let flows = quic_flows(&listed);
        assert_eq!(flows.len(), 1, "{name}");
        assert_eq!(flows[0].version.as_deref(), Some(name));
        assert_eq!(flows[0].sni.as_deref(), Some("edge.example.cn"));
        assert_eq!(flows[0].country.as_deref(), Some("CN"));
        assert!(!flows[0].decrypted);
        let mut keys = KeyLog::default();
        keys.add_text(&built.keylog, "made up").unwrap();
        let report = scanner()
            .with_keys(keys)
            .scan_bytes("t.pcap", &pcap)
            .unwrap();
        assert!(
            quic_flows(&report)[0].decrypted,
            "{name}: {:?}",
            quic_flows(&report)[0].note
        );
        assert_eq!(
            chains(&report, K::Imei),
            ["quic>h3>http-header>plain"],
            "{name}: {}",
            describe(&report)
        );
        assert_eq!(chains(&report, K::Imsi), ["quic>h3>http-body>json>plain"]);
        assert!(find(&report, K::Imei)[0].cross_border);
    }
}

#[test]
fn a_corrupted_1rtt_packet_is_named_in_the_note_issue_11() {
    let built =
        quic_synth::connection(&quic_packet::V1, "edge.example.cn", 9, &[exchange()]).unwrap();
    let mut datagrams = built.datagrams.clone();
    for (_, d) in datagrams.iter_mut().skip(2) {
        let last = d.len() - 1;
        d[last] ^= 1; // the tag no longer matches
    }
    let pcap = synth::pcap(&udp_packets("10.0.0.2:50000", "223.5.5.5:443", &datagrams));
    let mut keys = KeyLog::default();
    keys.add_text(&built.keylog, "made up").unwrap();
    let report = scanner()
        .with_keys(keys)
        .scan_bytes("t.pcap", &pcap)
        .unwrap();
    let flow = quic_flows(&report)[0];
    assert!(!flow.decrypted);
    assert_eq!(
        flow.note.as_deref(),
        Some("3 packets did not open with the logged secrets")
    );
    assert!(report.findings.is_empty(), "{}", describe(&report));
}

#[test]
fn initial_packets_protected_by_rustls_open_for_v1_v2_and_draft_29_issue_11() {
    // An independent check of each version's salt and labels: rustls (a dev-dependency) seals
    // a client Initial, the scanner opens it and reads its ClientHello.
    use rustls::Side;
    use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    use rustls::quic::Version;
    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let suite = TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|s| s.quic_suite())
        .unwrap();
    for (version, number, name) in [
        (Version::V1, 1u32, "QUIC v1"),
        (Version::V2, 0x6b3343cf, "QUIC v2"),
        (Version::V1Draft, 0xff00001d, "QUIC draft-29"),
    ] {
        let keys = suite.keys(&dcid, Side::Client, version);
        let type_bits = if number == 0x6b3343cf { 0x10 } else { 0x00 };
        let mut header = vec![0xc0 | type_bits | 0x01];
        header.extend_from_slice(&number.to_be_bytes());
        header.push(8);
        header.extend_from_slice(&dcid);
        header.extend_from_slice(&[0, 0]); // no source id, no token
        let mut payload = vec![0x06, 0x00, 0x40, 0x20, 0x01, 0x00, 0x00, 0x1c];
        payload.resize(payload.len() + 0x1c, 0); // a cut ClientHello is still a frame
        payload.resize(1100, 0);
        let length = 2 + payload.len() + 16;
        header.extend_from_slice(&(length as u16 | 0x4000).to_be_bytes());
        header.extend_from_slice(&[0x00, 0x02]); // packet number 2
        let tag = keys
            .local
            .packet
            .encrypt_in_place(2, &header, &mut payload)
            .unwrap();
        payload.extend_from_slice(tag.as_ref());
        let pn_at = header.len() - 2;
        let sample: Vec<u8> = payload[2..18].to_vec();
        let (first, pn) = header.split_at_mut(pn_at);
        keys.local
            .header
            .encrypt_in_place(&sample, &mut first[0], pn)
            .unwrap();
        let mut packet = header;
        packet.extend_from_slice(&payload);
        let (read, id) = sovereign_scan::quic::conn::starts_connection(&packet)
            .unwrap_or_else(|| panic!("{name} does not open"));
        assert_eq!(read.name, name);
        assert_eq!(id, dcid);
    }
}

/// An HPACK literal field without indexing, new name, no Huffman (lengths under 127).
fn hpack_literal(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// (identifier, chain without the transport's layers, count) of every finding.
fn sightings(report: &Report, prefix: &[&str]) -> Vec<(K, String, u64)> {
    let mut out: Vec<(K, String, u64)> = report
        .findings
        .iter()
        .map(|f| {
            assert!(
                f.chain.iter().zip(prefix).all(|(a, b)| a == b),
                "{:?} does not start with {prefix:?}",
                f.chain
            );
            (f.identifier, f.chain[prefix.len()..].join(">"), f.count)
        })
        .collect();
    out.sort();
    out
}

/// The same request over HTTP/2 and over HTTP/3 gives the same sightings: the IMEI in
/// `:path` once, as the URI (not a second time as a header line), the header and the body
/// under the same layers as HTTP/1.1's.
#[test]
fn http2_and_http3_report_the_same_sightings_for_the_same_request_issue_11() {
    let mut ask = exchange();
    ask.path = "/v1/ping?imei=356938035643809".into();
    ask.headers = vec![("x-imsi".into(), "404450123456789".into())];
    ask.body = br#"{"email":"asha.rao@example.in"}"#.to_vec();
    ask.response_headers = vec![];
    ask.response_body = b"ok".to_vec();
    let built =
        quic_synth::connection(&quic_packet::V1, "edge.example.cn", 11, &[ask.clone()]).unwrap();
    let mut keys = KeyLog::default();
    keys.add_text(&built.keylog, "made up").unwrap();
    let h3 = scanner()
        .with_keys(keys)
        .scan_bytes(
            "h3.pcap",
            &synth::pcap(&udp_packets(
                "10.0.0.2:50000",
                "223.5.5.5:443",
                &built.datagrams,
            )),
        )
        .unwrap();

    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "edge.example.cn"),
        (":path", ask.path.as_str()),
        ("x-imsi", "404450123456789"),
    ] {
        hpack_literal(name, value, &mut block);
    }
    let mut client = sovereign_scan::protocols::h2::PREFACE.to_vec();
    client.extend(h2_frame(4, 0, 0, &[]));
    client.extend(h2_frame(1, 0x4, 1, &block));
    client.extend(h2_frame(0, 0x1, 1, &ask.body));
    let mut server = h2_frame(4, 0, 0, &[]);
    server.extend(h2_frame(1, 0x4, 1, &[0x88]));
    server.extend(h2_frame(0, 0x1, 1, b"ok"));
    let h2 = scan(&exchange_pcap(SERVER_CN, &client, &server));

    let over_h3 = sightings(&h3, &["quic", "h3"]);
    assert_eq!(
        over_h3,
        sightings(&h2, &["h2"]),
        "h3:\n{}\nh2:\n{}",
        describe(&h3),
        describe(&h2)
    );
    assert_eq!(
        over_h3.iter().filter(|s| s.0 == K::Imei).count(),
        1,
        "{over_h3:?}"
    );
    assert!(
        over_h3.contains(&(K::Imsi, "http-header>plain".into(), 1)),
        "{over_h3:?}"
    );
}

/// The server's Initial (its ServerHello, which gives the suite, and its connection ID) is
/// captured after the client's first 1-RTT packets, as reordering on the path or a capture
/// that merges two interfaces gives: those packets are kept until their keys are known, then
/// opened.
#[test]
fn packets_before_their_keys_are_kept_and_opened_later_issue_11() {
    let built =
        quic_synth::connection(&quic_packet::V1, "edge.example.cn", 5, &[exchange()]).unwrap();
    let mut datagrams = built.datagrams.clone();
    let server_initial = datagrams.remove(1);
    // After every client datagram of the request.
    let at = datagrams
        .iter()
        .position(|(from_client, _)| !from_client)
        .unwrap_or(datagrams.len());
    datagrams.insert(at, server_initial);
    let pcap = synth::pcap(&udp_packets("10.0.0.2:50000", "223.5.5.5:443", &datagrams));
    let mut keys = KeyLog::default();
    keys.add_text(&built.keylog, "made up").unwrap();
    let report = scanner()
        .with_keys(keys)
        .scan_bytes("t.pcap", &pcap)
        .unwrap();
    assert!(
        quic_flows(&report)[0].decrypted,
        "{:?}",
        quic_flows(&report)[0].note
    );
    assert_eq!(
        chains(&report, K::Imei),
        ["quic>h3>http-header>plain"],
        "{}",
        describe(&report)
    );
    assert_eq!(chains(&report, K::Imsi), ["quic>h3>http-body>json>plain"]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

/// Past [`QUIC_EARLY_PACKETS_MAX`] packets waiting for their keys, later ones are counted and
/// a warning says so; the connection is still listed.
#[test]
fn quic_early_packets_max_is_enforced_issue_11() {
    use sovereign_scan::quic::conn::QUIC_EARLY_PACKETS_MAX;
    let many: Vec<_> = (0..QUIC_EARLY_PACKETS_MAX + 2)
        .map(|i| quic_synth::Exchange {
            path: format!("/v1/{i}"),
            ..exchange()
        })
        .collect();
    let built = quic_synth::connection(&quic_packet::V1, "edge.example.cn", 6, &many).unwrap();
    let mut datagrams = built.datagrams.clone();
    let server_initial = datagrams.remove(1);
    datagrams.push(server_initial);
    let pcap = synth::pcap(&udp_packets("10.0.0.2:50000", "223.5.5.5:443", &datagrams));
    let mut keys = KeyLog::default();
    keys.add_text(&built.keylog, "made up").unwrap();
    let report = scanner()
        .with_keys(keys)
        .scan_bytes("t.pcap", &pcap)
        .unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains(&format!("more than {QUIC_EARLY_PACKETS_MAX} packets"))),
        "{:?}",
        report.warnings
    );
    assert!(quic_flows(&report)[0].decrypted);
}
