//! Malformed input: truncated files, garbage, absurd lengths. Never a panic.

use sovereign_model::IdentifierKind as K;

use crate::support::*;

fn capture() -> Vec<u8> {
    let first = post("t.example", "text/plain", "", b"imei=356938035643809");
    let mut packets =
        sovereign_scan::synth::tcp_conversation(addr(CLIENT), addr(SERVER_CN), &first, OK, 1400);
    let second = post("t.example", "text/plain", "", b"imsi=404450123456789");
    packets.extend(sovereign_scan::synth::tcp_conversation(
        addr("10.0.0.2:40001"),
        addr(SERVER_CN),
        &second,
        OK,
        1400,
    ));
    sovereign_scan::synth::pcap(&packets)
}

#[test]
fn a_truncated_capture_reports_what_came_before_the_cut() {
    let data = capture();
    let cut = &data[..data.len() - 30];
    let report = scan(cut);
    assert_eq!(find(&report, K::Imei).len(), 1);
    assert_eq!(find(&report, K::Imsi).len(), 1);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("ends inside a block")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn every_prefix_and_corruption_of_a_capture_is_survived() {
    let data = capture();
    let scanner = scanner();
    for end in (0..data.len()).step_by(7) {
        let _ = scanner.scan_bytes("t.pcap", &data[..end]);
    }
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..300 {
        let mut copy = data.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = 24 + (seed as usize) % (copy.len() - 24);
            copy[at] = (seed >> 32) as u8;
        }
        let _ = scanner.scan_bytes("t.pcap", &copy);
    }
}

#[test]
fn absurd_lengths_in_a_pcap_record() {
    let mut data = capture();
    // The first record's captured length: 4 GiB - 1.
    data[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let report = scan(&data);
    assert!(!report.warnings.is_empty());
}

#[test]
fn garbage_after_a_valid_header_is_a_warning_not_an_error() {
    let mut data = capture()[..24].to_vec();
    data.extend_from_slice(&[0xff; 100]);
    let report = scan(&data);
    assert!(report.findings.is_empty());
}

#[test]
fn a_garbage_har_is_an_input_error() {
    assert!(scanner().scan_bytes("t.har", b"{\"log\": 5}").is_err());
}

#[test]
fn matches_per_buffer_max_keeps_the_first_and_warns() {
    use sovereign_scan::finding::decode::MATCHES_PER_BUFFER_MAX;
    let body = b"356938035643809 ".repeat(MATCHES_PER_BUFFER_MAX + 1);
    let request = post("t.example", "text/plain", "", &body);
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert!(
        report.warnings.iter().any(|w| w.contains("only the first")),
        "{:?}",
        report.warnings
    );
    // Each occurrence is two matches (the IMEI and its 14-digit form inside it).
    assert_eq!(
        find(&report, K::Imei)[0].count,
        MATCHES_PER_BUFFER_MAX as u64 / 2
    );
}

#[test]
fn warnings_max_counts_the_rest() {
    use sovereign_scan::engine::WARNINGS_MAX;
    // Many flows, each with a hole in its stream: one warning each.
    let (c, s) = (addr(CLIENT), addr(SERVER_CN));
    let mut packets = Vec::new();
    for i in 0..=WARNINGS_MAX as u16 {
        let t = |seq: u32| sovereign_scan::synth::tcp(10_000 + i, 80, seq, 1, 0x18, b"data");
        packets.push(sovereign_scan::synth::ip(c.ip(), s.ip(), 6, &t(1)));
        packets.push(sovereign_scan::synth::ip(c.ip(), s.ip(), 6, &t(100)));
    }
    let report = scan(&sovereign_scan::synth::pcap(&packets));
    assert_eq!(report.warnings.len(), WARNINGS_MAX + 1);
    assert!(
        report
            .warnings
            .last()
            .unwrap()
            .contains("more warnings were not kept")
    );
}
