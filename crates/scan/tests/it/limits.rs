//! Every named bound crossed: a clear warning or error, the rest still scanned, no panic.
//! Bounds of a gigabyte are lowered through `Limits` (the same code path, a smaller number).

use sovereign_model::IdentifierKind as K;
use sovereign_scan::network::packet::LinkType;
use sovereign_scan::synth::{self, PcapngWriter};
use sovereign_scan::{Limits, Profile, Scanner};

use crate::support::*;

fn has_warning(report: &sovereign_scan::Report, text: &str) -> bool {
    report.warnings.iter().any(|w| w.contains(text))
}

/// A flow that sends `body` and never ends (no FIN): it stays buffered until the capture ends.
fn open_flow(client_port: u16, body: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = synth::tcp_conversation(
        addr(&format!("10.0.0.2:{client_port}")),
        addr(SERVER_CN),
        &post("t.example", "text/plain", "", body),
        b"",
        1000,
    );
    // Drop the FINs at the end.
    packets.truncate(packets.len() - 2);
    packets
}

#[test]
fn buffered_bytes_max_scans_the_largest_flow_early() {
    let mut big = b"imei=356938035643809&".to_vec();
    big.resize(20_000, b'.');
    let small = b"imsi=404450123456789".to_vec();
    let mut packets = open_flow(40001, &big);
    packets.extend(open_flow(40002, &small));
    let capture = synth::pcap(&packets);
    let limits = Limits {
        buffered_bytes_max: 10_000,
        ..Limits::default()
    };
    let report = scanner()
        .with_limits(limits)
        .scan_bytes("t.pcap", &capture)
        .unwrap();
    assert!(
        has_warning(
            &report,
            "more than 10000 bytes buffered; 10.0.0.2:40001 ↔ 223.5.5.5:80 was scanned in pieces"
        ),
        "{:?}",
        report.warnings
    );
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
    assert_eq!(find(&report, K::Imsi).len(), 1, "{}", describe(&report));
    // The default bound is far away: no warning.
    let report = scan(&capture);
    assert!(!has_warning(&report, "buffered"), "{:?}", report.warnings);
}

#[test]
fn dns_answers_max_keeps_the_first_answers_and_warns() {
    let answer = |name: &str, address: [u8; 4]| {
        synth::ip(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            17,
            &synth::udp(53, 33333, &crate::attribution::dns_answer(name, address)),
        )
    };
    let mut packets = vec![
        answer("one.example.cn", [223, 5, 5, 5]),
        answer("two.example.cn", [223, 5, 5, 6]),
    ];
    for (port, server) in [(40001, "223.5.5.5:9000"), (40002, "223.5.5.6:9000")] {
        packets.extend(synth::tcp_conversation(
            addr(&format!("10.0.0.2:{port}")),
            addr(server),
            b"\x00\x01binary imsi 404450123456789",
            b"",
            100,
        ));
    }
    let limits = Limits {
        dns_answers_max: 1,
        ..Limits::default()
    };
    let report = scanner()
        .with_limits(limits)
        .scan_bytes("t.pcap", &synth::pcap(&packets))
        .unwrap();
    assert!(
        has_warning(
            &report,
            "more than 1 dns answers; later ones (223.5.5.6 is two.example.cn) do not name hosts"
        ),
        "{:?}",
        report.warnings
    );
    let mut hosts: Vec<Option<&str>> = find(&report, K::Imsi)
        .iter()
        .map(|f| f.host.as_deref())
        .collect();
    hosts.sort();
    assert_eq!(hosts, [None, Some("one.example.cn")]);
}

#[test]
fn chunks_max_cuts_the_body_and_the_rest_is_scanned_raw() {
    use sovereign_scan::protocols::http::CHUNKS_MAX;
    let mut body = b"1a\r\nimei=356938035643809&x=1\r\n".to_vec();
    body.extend_from_slice(&b"1\r\n.\r\n".repeat(CHUNKS_MAX));
    body.extend_from_slice(b"14\r\nimsi=404450123456789\r\n0\r\n\r\n");
    let mut request =
        b"POST /up HTTP/1.1\r\nHost: t.example\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(&body);
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert!(
        has_warning(
            &report,
            &format!("is cut short (more than {CHUNKS_MAX} chunks)")
        ),
        "{:?}",
        report.warnings
    );
    let imei = find(&report, K::Imei);
    assert_eq!(imei[0].chain, ["http-body", "plain"]);
    // After the last chunk kept, the rest of the stream is searched as raw TCP.
    let imsi = find(&report, K::Imsi);
    assert_eq!(imsi[0].chain, ["tcp", "plain"], "{}", describe(&report));
}

#[test]
fn interfaces_max_skips_the_packets_of_the_others() {
    use sovereign_scan::capture::INTERFACES_MAX;
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    for _ in 0..=INTERFACES_MAX {
        w.interface(LinkType::RAW).unwrap();
    }
    let last = u32::try_from(INTERFACES_MAX).unwrap();
    let first = synth::tcp_conversation(
        addr(CLIENT),
        addr(SERVER_CN),
        &post("t.example", "text/plain", "", b"imei=356938035643809"),
        OK,
        1400,
    );
    let second = synth::tcp_conversation(
        addr("10.0.0.2:40001"),
        addr(SERVER_CN),
        &post("t.example", "text/plain", "", b"imsi=404450123456789"),
        OK,
        1400,
    );
    for (interface, packets) in [(0, first), (last, second)] {
        for p in packets {
            w.packet(interface, 0, &synth::frame(LinkType::RAW, &[], &p))
                .unwrap();
        }
    }
    let report = scan(&w.into_inner());
    assert!(
        has_warning(
            &report,
            &format!("more than {INTERFACES_MAX} interfaces; packets of the others are skipped")
        ),
        "{:?}",
        report.warnings
    );
    assert_eq!(find(&report, K::Imei).len(), 1);
    assert!(find(&report, K::Imsi).is_empty());
}

fn har(entries: usize) -> Vec<u8> {
    let entry = |i: usize| {
        serde_json::json!({"startedDateTime": "2014-09-25T08:12:03Z", "serverIPAddress": "223.5.5.5",
            "request": {"method": "GET", "url": format!("http://api.example.cn/{i}?imei=356938035643809"), "headers": []},
            "response": {"status": 200, "headers": [], "content": {"mimeType": "text/plain",
                "text": if i + 1 == entries { "imsi=404450123456789" } else { "" }}}})
    };
    let entries: Vec<serde_json::Value> = (0..entries).map(entry).collect();
    serde_json::json!({"log": {"version": "1.2", "entries": entries}})
        .to_string()
        .into_bytes()
}

#[test]
fn har_entries_max_scans_the_first_entries_and_warns() {
    let limits = Limits {
        har_entries_max: 3,
        ..Limits::default()
    };
    let report = scanner()
        .with_limits(limits)
        .scan_bytes("t.har", &har(5))
        .unwrap();
    assert!(
        has_warning(
            &report,
            "t.har: more than 3 har entries; the last 2 are not scanned"
        ),
        "{:?}",
        report.warnings
    );
    assert_eq!(find(&report, K::Imei)[0].count, 3);
    assert!(find(&report, K::Imsi).is_empty());
    // Within the bound: every entry.
    let report = scanner().scan_bytes("t.har", &har(5)).unwrap();
    assert_eq!(find(&report, K::Imei)[0].count, 5);
    assert_eq!(find(&report, K::Imsi).len(), 1);
}

#[test]
fn har_bytes_max_is_an_input_error_that_names_the_file_and_the_bound() {
    let data = har(2);
    let limits = Limits {
        har_bytes_max: data.len() as u64 - 1,
        ..Limits::default()
    };
    let err = scanner()
        .with_limits(limits)
        .scan_bytes("big.har", &data)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "big.har is not a valid capture: a har file larger than {} bytes",
            data.len() - 1
        )
    );
    let limits = Limits {
        har_bytes_max: data.len() as u64,
        ..Limits::default()
    };
    assert!(
        scanner()
            .with_limits(limits)
            .scan_bytes("t.har", &data)
            .is_ok()
    );
}

#[test]
fn needles_max_is_a_clear_error() {
    use sovereign_scan::finding::needle::NEEDLES_MAX;
    // Every contact's number expands to a few hundred patterns.
    let mut text = String::from("[device]\nhome_country = \"IN\"\n");
    for i in 0..2000 {
        text.push_str(&format!("[[contacts]]\nphone = \"+9198{i:08}\"\n"));
    }
    let profile = Profile::from_toml(&text, "many.toml").unwrap();
    let err = Scanner::new(profile, sovereign_scan::Policy::builtin())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("building the matcher failed: ")
            && err.ends_with(&format!("patterns, at most {NEEDLES_MAX} allowed")),
        "{err}"
    );
}

#[test]
fn policy_bytes_max_is_an_error_not_a_truncated_policy() {
    use sovereign_scan::run::{Inputs, OutputFormat, POLICY_BYTES_MAX, Request, execute};
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let mut text = "[[rule]]\nseverity = \"low\"\n".to_owned();
    text.push_str(&"#".repeat(POLICY_BYTES_MAX as usize + 1 - text.len()));
    std::fs::write(&policy, &text).unwrap();
    let capture = dir.path().join("a.pcap");
    std::fs::write(
        &capture,
        exchange_pcap(SERVER_CN, &post("t", "text/plain", "", b"x"), OK),
    )
    .unwrap();
    let request = Request {
        profile: fixture("profile.toml"),
        policy: Some(policy.clone()),
        sites: sovereign_scan::Sites::default(),
        inputs: Inputs::Scan(vec![capture]),
        format: OutputFormat::Json,
        keylogs: Vec::new(),
        threads: None,
    };
    let err = execute(&request, &mut sovereign_scan::progress::NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("policy.toml")
            && err.contains(&format!("larger than {POLICY_BYTES_MAX} bytes")),
        "{err}"
    );
    text.pop();
    std::fs::write(&policy, &text).unwrap();
    assert!(execute(&request, &mut sovereign_scan::progress::NoProgress).is_ok());
}

#[test]
fn server_name_bytes_max_drops_an_absurd_sni() {
    use sovereign_scan::tls::hello::{SERVER_NAME_BYTES_MAX, client_hello_sni};
    let fits = "a".repeat(SERVER_NAME_BYTES_MAX);
    let hello = crate::attribution::client_hello(&fits);
    assert_eq!(client_hello_sni(&hello).as_deref(), Some(fits.as_str()));
    let long = "a".repeat(SERVER_NAME_BYTES_MAX + 1);
    assert_eq!(
        client_hello_sni(&crate::attribution::client_hello(&long)),
        None
    );
}

#[test]
fn read_buffer_bytes_max_stops_at_a_larger_block_and_keeps_what_came_before() {
    use sovereign_scan::capture::READ_BUFFER_BYTES_MAX;
    let conversation = |port: u16, body: &[u8]| {
        synth::pcap(&synth::tcp_conversation(
            addr(&format!("10.0.0.2:{port}")),
            addr(SERVER_CN),
            &post("t.example", "text/plain", "", body),
            OK,
            1400,
        ))
    };
    let mut data = conversation(40001, b"imei=356938035643809");
    let at = data.len();
    // One record of READ_BUFFER_BYTES_MAX + 1 bytes, all there.
    let caplen = u32::try_from(READ_BUFFER_BYTES_MAX + 1).unwrap();
    for field in [0, 0, caplen, caplen] {
        data.extend_from_slice(&field.to_le_bytes());
    }
    data.resize(data.len() + READ_BUFFER_BYTES_MAX + 1, 0);
    data.extend_from_slice(&conversation(40002, b"imsi=404450123456789")[24..]);
    let report = scan(&data);
    assert!(
        has_warning(
            &report,
            &format!(
                "a block at byte {at} is larger than {READ_BUFFER_BYTES_MAX} bytes; the rest of the capture is skipped"
            )
        ),
        "{:?}",
        report.warnings
    );
    assert_eq!(find(&report, K::Imei).len(), 1);
    assert!(find(&report, K::Imsi).is_empty());
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Letters that do not compress away, so that a body spans pieces even gzipped.
fn noise(bytes: usize) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..bytes)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'a' + (seed % 26) as u8)
        })
        .collect()
}

/// An h2c flow and a WebSocket flow longer than `buffered_bytes_max`, scanned in pieces that
/// cut frames anywhere: the HPACK table, a gzip body split over pieces and a masked message
/// fragmented over pieces lose nothing.
#[test]
fn http2_and_websocket_flows_scanned_in_pieces_lose_nothing_issue_11() {
    use std::io::Write;
    // HTTP/2: stream 1 adds x-imsi to the dynamic table and sends a gzip JSON body with the
    // e-mail at its end; stream 3, in a later piece, names x-imsi by its index only.
    let mut block = vec![0x83, 0x86, 0x84, 0x40, 6];
    block.extend_from_slice(b"x-imsi");
    block.push(15);
    block.extend_from_slice(b"404450123456789");
    block.extend_from_slice(&[0x00, 16]);
    block.extend_from_slice(b"content-encoding");
    block.extend_from_slice(&[4]);
    block.extend_from_slice(b"gzip");
    block.extend_from_slice(&[0x00, 12]);
    block.extend_from_slice(b"content-type");
    block.extend_from_slice(&[16]);
    block.extend_from_slice(b"application/json");
    let json = format!(
        r#"{{"pad":"{}","email":"asha.rao@example.in"}}"#,
        noise(30_000)
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    let mut client = sovereign_scan::protocols::h2::PREFACE.to_vec();
    client.extend(h2_frame(4, 0, 0, &[]));
    client.extend(h2_frame(1, 0x4, 1, &block));
    for (i, chunk) in body.chunks(16_000).enumerate() {
        let last = (i + 1) * 16_000 >= body.len();
        client.extend(h2_frame(0, u8::from(last), 1, chunk));
    }
    client.extend(h2_frame(1, 0x5, 3, &[0x82, 0x86, 0x84, 0xbe]));
    let mut packets = synth::tcp_conversation(
        addr("10.0.0.2:40001"),
        addr(SERVER_CN),
        &client,
        &h2_frame(4, 0, 0, &[]),
        700,
    );
    // WebSocket: the IMEI in a masked text message whose two fragments span pieces.
    let mut request = b"GET /s HTTP/1.1\r\nHost: ws.example.cn\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    let message = format!("{} imei 356938035643809", noise(20_000));
    let key = [0x55, 0xaa, 1, 2];
    let (a, b) = message.as_bytes().split_at(12_000);
    for (opcode, part) in [(0x01u8, a), (0x80, b)] {
        request.extend_from_slice(&[opcode, 0x80 | 126]);
        request.extend_from_slice(&(part.len() as u16).to_be_bytes());
        request.extend_from_slice(&key);
        request.extend(part.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    packets.extend(synth::tcp_conversation(
        addr("10.0.0.2:40002"),
        addr("223.5.5.5:8080"),
        &request,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        700,
    ));
    let capture = synth::pcap(&packets);
    for limit in [usize::MAX, 5_000, 9_999] {
        let limits = Limits {
            buffered_bytes_max: limit,
            ..Limits::default()
        };
        let report = scanner()
            .with_limits(limits)
            .scan_bytes("t.pcap", &capture)
            .unwrap();
        let what = format!(
            "limit {limit}:\n{}\n{:?}",
            describe(&report),
            report.warnings
        );
        assert_eq!(
            limit != usize::MAX,
            has_warning(&report, "in pieces"),
            "{what}"
        );
        let imsi = find(&report, K::Imsi);
        assert_eq!(imsi.len(), 1, "{what}");
        assert_eq!(imsi[0].count, 2, "both streams: {what}");
        assert_eq!(imsi[0].chain, ["h2", "http-header", "plain"], "{what}");
        let email = find(&report, K::Email);
        assert_eq!(
            email.iter().map(|f| f.chain.join(">")).collect::<Vec<_>>(),
            ["h2>http-body>gzip>json>plain"],
            "{what}"
        );
        let imei = find(&report, K::Imei);
        assert_eq!(imei.len(), 1, "{what}");
        assert_eq!(imei[0].chain, ["websocket", "plain"], "{what}");
        assert!(
            !report.warnings.iter().any(|w| !w.contains("in pieces")),
            "{what}"
        );
    }
}
