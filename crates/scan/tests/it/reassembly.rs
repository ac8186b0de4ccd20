//! TCP reassembly seen from outside: out-of-order, retransmitted, overlapping segments, gaps.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::synth;

use crate::support::*;

fn split_request() -> Vec<Vec<u8>> {
    let request = post(
        "t.example",
        "text/plain",
        "",
        b"imei=356938035643809 and imsi=404450123456789",
    );
    // Eight-byte segments: every identifier straddles several.
    synth::tcp_conversation(addr(CLIENT), addr(SERVER_CN), &request, OK, 8)
}

#[test]
fn out_of_order_and_retransmitted_segments() {
    let mut packets = split_request();
    let data = 3..packets.len() - 3;
    packets[data.clone()].reverse();
    let again: Vec<Vec<u8>> = packets[data].iter().step_by(3).cloned().collect();
    let fin = packets.split_off(packets.len() - 2);
    packets.extend(again);
    packets.extend(fin);
    let report = scan(&synth::pcap(&packets));
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
    assert_eq!(find(&report, K::Imsi).len(), 1);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn overlapping_segments() {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    let (c, s) = (addr(CLIENT), addr(SERVER_CN));
    let seg = |seq: u32, data: &[u8]| {
        synth::ip(
            c.ip(),
            s.ip(),
            6,
            &synth::tcp(c.port(), s.port(), seq, 1, 0x18, data),
        )
    };
    // Segments of 20 bytes every 10 bytes: each overlaps the next by half.
    let mut packets = Vec::new();
    let mut at = 0;
    while at < request.len() {
        let end = (at + 20).min(request.len());
        packets.push(seg(1000 + at as u32, &request[at..end]));
        at += 10;
    }
    let report = scan(&synth::pcap(&packets));
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
}

#[test]
fn a_gap_warns_and_the_rest_is_still_scanned() {
    let first = post("t.example", "text/plain", "", b"imsi=404450123456789");
    let second = post("t.example", "text/plain", "", b"imei=356938035643809");
    let mut request = first.clone();
    request.extend_from_slice(&second);
    let mut packets = synth::tcp_conversation(addr(CLIENT), addr(SERVER_CN), &request, OK, 16);
    // Lose one segment inside the first message's body.
    let lost = 3 + first.len() / 16 - 1;
    packets.remove(lost);
    let report = scan(&synth::pcap(&packets));
    assert!(
        report.warnings.iter().any(|w| w.contains("bytes missing")),
        "{:?}",
        report.warnings
    );
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
}

#[test]
fn capture_started_mid_connection() {
    let packets = split_request();
    let report = scan(&synth::pcap(&packets[3..]));
    assert_eq!(find(&report, K::Imei).len(), 1);
}

#[test]
fn flows_open_max_scans_the_oldest_early() {
    use sovereign_scan::engine::FLOWS_OPEN_MAX;
    let (c, s) = (addr(CLIENT), addr(SERVER_CN));
    let mut w =
        synth::PcapWriter::new(Vec::new(), sovereign_scan::network::packet::LinkType::RAW).unwrap();
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    w.frame(
        0,
        &synth::ip(c.ip(), s.ip(), 6, &synth::tcp(1, 80, 1, 1, 0x18, &request)),
    )
    .unwrap();
    // Many more flows that never end.
    for i in 0..=FLOWS_OPEN_MAX as u32 {
        let src = std::net::Ipv4Addr::from(0x0a00_0000 + 2 + i);
        let p = synth::ip(
            src.into(),
            s.ip(),
            6,
            &synth::tcp(40000, 80, 1, 1, 0x18, b"x"),
        );
        w.frame(1, &p).unwrap();
    }
    let report = scan(&w.into_inner());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("tcp flows open at once"))
    );
    assert_eq!(find(&report, K::Imei).len(), 1);
}
