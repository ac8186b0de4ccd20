//! HTTP/2 and gRPC on real traffic recorded on loopback by tests/fixtures/record-h2.sh: curl to
//! nghttpd over TLS (with curl's key log) and in the clear (prior knowledge), curl's
//! `Upgrade: h2c` to a server on Python's h2, and grpcio unary calls.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::Report;
use sovereign_scan::progress::NoProgress;
use sovereign_scan::tls::keylog::KeyLog;

use crate::support::*;

fn scan_fixture(name: &str, keys: Option<&str>) -> Report {
    let mut scanner = scanner();
    if let Some(keys) = keys {
        let mut log = KeyLog::default();
        let text = std::fs::read_to_string(fixture(keys)).unwrap();
        log.add_text(&text, keys).unwrap();
        scanner = scanner.with_keys(log);
    }
    scanner
        .scan_paths(&[fixture(name)], &mut NoProgress)
        .unwrap()
}

/// (identifier, chain, protocol, stream, direction) of every finding.
fn rows(report: &Report) -> Vec<(K, String, String, Option<u32>, String)> {
    report
        .findings
        .iter()
        .map(|f| {
            (
                f.identifier,
                f.chain.join(" > "),
                f.protocol.clone(),
                f.stream,
                f.direction.clone(),
            )
        })
        .collect()
}

fn assert_has(report: &Report, kind: K, chain: &str, protocol: &str, stream: u32) {
    let all = rows(report);
    assert!(
        all.iter()
            .any(|(k, c, p, s, _)| *k == kind && c == chain && p == protocol && *s == Some(stream)),
        "{kind} [{chain}] {protocol} stream {stream} not in\n{all:#?}\nwarnings: {:?}",
        report.warnings
    );
}

#[test]
fn h2_inside_tls_curl_to_nghttpd_path_header_and_gzip_body() {
    let report = scan_fixture("h2-tls.pcap", Some("h2-tls.keys"));
    assert_has(&report, K::Imei, "tls > h2 > http-uri > plain", "h2", 1);
    assert_has(&report, K::Imsi, "tls > h2 > http-header > plain", "h2", 1);
    assert_has(
        &report,
        K::Email,
        "tls > h2 > http-body > gzip > json > plain",
        "h2",
        1,
    );
    assert_has(
        &report,
        K::Carrier,
        "tls > h2 > http-body > gzip > json > plain",
        "h2",
        1,
    );
    let imei = &find(&report, K::Imei)[0];
    assert_eq!(imei.host.as_deref(), Some("api.example.cn:8443"));
    assert!(!imei.cleartext);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The stream is in the JSON and in the table.
    let json = report.to_json().unwrap();
    assert!(json.contains("\"stream\": 1"), "{json}");
    assert!(report.to_table().contains("h2 #1"));
}

#[test]
fn h2c_prior_knowledge_curl_to_nghttpd() {
    let report = scan_fixture("h2c-prior.pcap", None);
    assert_has(&report, K::Imei, "h2 > http-uri > plain", "h2c", 1);
    assert_has(&report, K::Imsi, "h2 > http-header > plain", "h2c", 1);
    assert_has(
        &report,
        K::Email,
        "h2 > http-body > gzip > json > plain",
        "h2c",
        1,
    );
    assert_eq!(
        find(&report, K::Imsi)[0].host.as_deref(),
        Some("push.example.cn")
    );
    assert!(find(&report, K::Imsi)[0].cleartext);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn h2c_upgrade_from_http1_then_the_response_on_stream_1() {
    let report = scan_fixture("h2c-upgrade.pcap", None);
    // The request went as HTTP/1.1 (it becomes stream 1); the answer came back as HTTP/2.
    let all = rows(&report);
    assert!(
        all.contains(&(
            K::Imei,
            "http-uri > plain".into(),
            "http".into(),
            None,
            "outbound".into()
        )),
        "{all:#?}"
    );
    assert_has(
        &report,
        K::Email,
        "h2 > http-body > gzip > json > plain",
        "h2c",
        1,
    );
    // The upgraded request's Host names the host of the HTTP/2 response.
    assert_eq!(
        find(&report, K::Email)[0].host.as_deref(),
        Some("push.example.cn")
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn grpc_unary_calls_imei_as_int64_and_gzip_compressed_nested_message() {
    let report = scan_fixture("grpc.pcap", None);
    assert_has(
        &report,
        K::Imei,
        "h2 > http-body > grpc > protobuf > field 3 > plain",
        "h2c",
        1,
    );
    assert_has(
        &report,
        K::Carrier,
        "h2 > http-body > grpc > protobuf > field 1 > plain",
        "h2c",
        1,
    );
    assert_has(
        &report,
        K::Imsi,
        "h2 > http-body > grpc > gzip > protobuf > field 2.1 > plain",
        "h2c",
        3,
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// field 3 = the IMEI as a varint, then a gRPC-Web trailer frame.
fn grpc_web_body() -> Vec<u8> {
    let mut msg = vec![0x18];
    varint(356_938_035_643_809, &mut msg);
    let mut body = vec![0, 0, 0, 0, msg.len() as u8];
    body.extend_from_slice(&msg);
    let trailer = b"grpc-status: 0\r\nx-imsi: 404450123456789\r\n";
    body.extend_from_slice(&[0x80, 0, 0, 0, trailer.len() as u8]);
    body.extend_from_slice(trailer);
    body
}

#[test]
fn grpc_web_over_http1_binary_and_text() {
    use base64::Engine as _;
    let binary = post(
        "api.example.cn",
        "application/grpc-web+proto",
        "",
        &grpc_web_body(),
    );
    let report = scan(&exchange_pcap(SERVER_CN, &binary, OK));
    let all = rows(&report);
    let has = |report_rows: &[(K, String, String, Option<u32>, String)], k: K, c: &str| {
        report_rows
            .iter()
            .any(|(kind, chain, ..)| *kind == k && chain == c)
    };
    assert!(
        has(
            &all,
            K::Imei,
            "http-body > grpc-web > protobuf > field 3 > plain"
        ),
        "{all:#?}"
    );
    assert!(
        has(&all, K::Imsi, "http-body > grpc-web > trailer > plain"),
        "{all:#?}"
    );
    // grpc-web-text: the same frames in base64, each padded on its own.
    let body = grpc_web_body();
    let (message, trailer) = body.split_at(14);
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = format!("{}{}", b64.encode(message), b64.encode(trailer));
    let request = post(
        "api.example.cn",
        "application/grpc-web-text",
        "",
        text.as_bytes(),
    );
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let all = rows(&report);
    assert!(
        has(
            &all,
            K::Imei,
            "http-body > base64 > grpc-web > protobuf > field 3 > plain"
        ),
        "{all:#?}"
    );
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The same header on two streams of one connection is one finding counted twice, naming the
/// first stream, not one finding per stream.
#[test]
fn one_identifier_on_many_streams_is_one_finding() {
    // ":method: GET", ":path: /", then x-imsi as a literal without indexing, new name.
    let mut block = vec![0x82, 0x84, 0x00, 6];
    block.extend_from_slice(b"x-imsi");
    block.push(15);
    block.extend_from_slice(b"404450123456789");
    let mut client = sovereign_scan::protocols::h2::PREFACE.to_vec();
    client.extend(h2_frame(1, 0x5, 1, &block));
    client.extend(h2_frame(1, 0x5, 3, &block));
    let server = h2_frame(4, 0, 0, &[]);
    let report = scan(&exchange_pcap(SERVER_CN, &client, &server));
    let imsi = find(&report, K::Imsi);
    assert_eq!(imsi.len(), 1, "{}", describe(&report));
    assert_eq!(imsi[0].count, 2);
    assert_eq!(imsi[0].stream, Some(1));
    assert_eq!(imsi[0].chain, ["h2", "http-header", "plain"]);
}

/// WebSocket over HTTP/2 extended CONNECT (RFC 8441) inside TLS: Python's h2 on both ends
/// (tests/fixtures/record-h2-websocket.sh), frames from the `websockets` library. Stream 1
/// negotiated permessage-deflate, stream 3 did not.
#[test]
fn websocket_over_h2_extended_connect_masked_fragmented_and_deflated() {
    let report = scan_fixture("h2-websocket.pcap", Some("h2-websocket.keys"));
    for (stream, deflate) in [(1, "deflate > "), (3, "")] {
        assert_has(
            &report,
            K::Imei,
            &format!("tls > h2 > websocket > {deflate}json > plain"),
            "wss",
            stream,
        );
        // Three fragments, the first masked and compressed, joined before inflating.
        assert_has(
            &report,
            K::Phone,
            &format!("tls > h2 > websocket > {deflate}json > e164"),
            "wss",
            stream,
        );
        // The server's answers, unmasked, compressed on stream 1.
        assert_has(
            &report,
            K::Email,
            &format!("tls > h2 > websocket > {deflate}json > plain"),
            "wss",
            stream,
        );
        let imsi = rows(&report)
            .into_iter()
            .filter(|(k, c, _, s, _)| {
                *k == K::Imsi
                    && *s == Some(stream)
                    && c.starts_with(&format!("tls > h2 > websocket > {deflate}base64"))
            })
            .count();
        assert_eq!(imsi, 1, "{}", describe(&report));
    }
    // A ping's payload, on both streams: control frames are never compressed (one finding,
    // named by the first stream it was seen on).
    assert_has(&report, K::Serial, "tls > h2 > websocket > plain", "wss", 1);
    assert_eq!(find(&report, K::Serial)[0].count, 2);
    // Nothing is searched as a raw HTTP/2 body: the frames are read as WebSocket.
    assert!(
        rows(&report)
            .iter()
            .all(|(_, c, _, _, _)| !c.contains("http-body")),
        "{}",
        describe(&report)
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

/// proto3 packs repeated numbers: the IMEI among packed int64s (field 4) and as a packed
/// fixed64 (field 5) is found, named by its field.
#[test]
fn packed_repeated_numbers_in_a_grpc_web_message_issue_11() {
    let mut packed = Vec::new();
    for v in [3u64, 356_938_035_643_809, 12] {
        varint(v, &mut packed);
    }
    let mut msg = vec![0x22, packed.len() as u8];
    msg.extend_from_slice(&packed);
    let fixed = [1u64, 356_938_035_643_809].map(u64::to_le_bytes).concat();
    msg.extend_from_slice(&[0x2a, fixed.len() as u8]);
    msg.extend_from_slice(&fixed);
    let mut body = vec![0, 0, 0, 0, msg.len() as u8];
    body.extend_from_slice(&msg);
    let request = post("api.example.cn", "application/grpc-web+proto", "", &body);
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let mut chains: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.identifier == K::Imei)
        .map(|f| f.chain.join(" > "))
        .collect();
    chains.sort();
    assert_eq!(
        chains,
        [
            "http-body > grpc-web > protobuf > field 4 > plain",
            "http-body > grpc-web > protobuf > field 5 > plain"
        ],
        "{:#?}",
        rows(&report)
    );
}
