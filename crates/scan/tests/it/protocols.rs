//! HTTP framing and content codings, DNS names, raw TCP and UDP.

use std::io::Write as _;

use sovereign_model::IdentifierKind as K;
use sovereign_scan::synth;

use crate::support::*;

fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
            }
            out
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn every_content_coding_of_requests_and_responses() {
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let body = compress(coding, b"{\"imei\":\"356938035643809\"}");
        let header = format!("Content-Encoding: {coding}\r\n");
        let request = post("t.example", "application/json", &header, &body);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        let report = scan(&exchange_pcap(SERVER_CN, &request, &response));
        let f = find(&report, K::Imei);
        assert_eq!(f.len(), 2, "{coding}: {}", describe(&report));
        for f in f {
            assert_eq!(f.chain, ["http-body", coding, "json", "plain"]);
        }
    }
}

#[test]
fn chunked_bodies_and_pipelined_requests() {
    let mut request =
        b"POST /a HTTP/1.1\r\nHost: t.example\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nimei=3\r\n8\r\n56938035\r\n6\r\n643809\r\n0\r\n\r\n"
            .to_vec();
    request.extend_from_slice(b"GET /b?sn=R58M12ABCDE HTTP/1.1\r\nHost: u.example\r\n\r\n");
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert_eq!(find(&report, K::Imei)[0].chain, ["http-body", "plain"]);
    let serial = &find(&report, K::Serial)[0];
    assert_eq!(serial.chain, ["http-uri", "plain"]);
    assert_eq!(serial.host.as_deref(), Some("u.example"));
}

#[test]
fn response_status_without_body() {
    let response = b"HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nsn: R58M12ABCDE     ";
    let request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let report = scan(&exchange_pcap(SERVER_CN, request, response));
    let f = &find(&report, K::Serial)[0];
    assert_eq!(f.direction, "inbound");
    assert_eq!(f.chain, ["http-body", "plain"]);
}

#[test]
fn a_corrupt_body_warns_and_is_not_fatal() {
    let request = post(
        "t.example",
        "text/plain",
        "Content-Encoding: gzip\r\n",
        b"\x1f\x8b\x08garbage",
    );
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert!(
        report.warnings.iter().any(|w| w.contains("gzip")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn dns_query_names_are_searched() {
    // An identifier exfiltrated in a DNS label, hex-encoded.
    let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    let label = b"333536393338303335363433383039";
    q.push(label.len() as u8);
    q.extend_from_slice(label);
    q.extend_from_slice(b"\x03log\x07example\x02cn\x00\x00\x01\x00\x01");
    let packet = synth::ip(
        "10.0.0.2".parse().unwrap(),
        "223.5.5.5".parse().unwrap(),
        17,
        &synth::udp(33333, 53, &q),
    );
    let report = scan(&synth::pcap(&[packet]));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.protocol, "dns");
    assert_eq!(f.chain, ["dns-name", "hex"]);
}

#[test]
fn raw_udp_and_tcp_payloads_are_searched() {
    let packet = synth::ip(
        "10.0.0.2".parse().unwrap(),
        "223.5.5.5".parse().unwrap(),
        17,
        &synth::udp(40000, 7000, b"\x01\x02mac=001a2b3c4d5e"),
    );
    let report = scan(&synth::pcap(&[packet]));
    assert_eq!(find(&report, K::WifiMac)[0].chain, ["udp", "mac-bare"]);

    let packets = synth::tcp_conversation(
        addr(CLIENT),
        addr("223.5.5.5:5222"),
        b"<iq>asha.rao@example.in</iq>",
        b"",
        5,
    );
    let report = scan(&synth::pcap(&packets));
    assert_eq!(find(&report, K::Email)[0].chain, ["tcp", "plain"]);
}
