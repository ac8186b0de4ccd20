//! Issue 11, item 6: what the scanner reads besides plain Ethernet/IP captures, and what it
//! says about what it cannot read.

use std::io::Write;
use std::net::IpAddr;

use sovereign_model::IdentifierKind as K;
use sovereign_scan::network::packet::LinkType;
use sovereign_scan::synth::{self, PcapWriter, PcapngWriter};

use crate::support::*;

fn imei_packets() -> Vec<Vec<u8>> {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    synth::tcp_conversation(addr(CLIENT), addr(SERVER_CN), &request, OK, 1400)
}

fn pcap_of(link: LinkType, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), link).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.frame(1_000_000 + i as i64, f).unwrap();
    }
    w.into_inner()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn issue_11_unreadable_link_types_are_named_and_the_report_is_not_clean() {
    // 802.11 with radiotap, as a monitor-mode capture gives: the scanner reads none of it.
    let frames: Vec<Vec<u8>> = imei_packets()
        .iter()
        .map(|p| [&[0_u8, 0, 8, 0, 0, 0, 0, 0][..], p].concat())
        .collect();
    let report = scan(&pcap_of(LinkType(127), &frames));
    assert!(
        report.warnings.iter().any(|w| w.contains(&format!(
            "{} frames of link type IEEE802_11_RADIOTAP (127) cannot be read",
            frames.len()
        ))),
        "{:?}",
        report.warnings
    );
    assert!(report.findings.is_empty());
    let table = report.to_table();
    assert!(!table.contains("No identifier"), "{table}");
    assert!(table.contains("Rating: NOT RATED"), "{table}");
    assert!(
        table.contains("Nothing in the captures could be read"),
        "{table}"
    );
    let html = sovereign_scan::report::html::report(&report);
    assert!(!html.contains("No identifier"));
    assert!(html.contains("Nothing in the captures could be read"));
    let json = report.to_json().unwrap();
    assert!(json.contains("Nothing in the captures could be read"));

    // PPP, NFLOG, PKTAP and a number nobody named, in one pcapng beside readable Ethernet: the
    // report is rated as usual and each unread link type is counted.
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    let eth = w.interface(LinkType::ETHERNET).unwrap();
    let others: Vec<u32> = [9, 239, 258, 4000]
        .iter()
        .map(|&l| w.interface(LinkType(l)).unwrap())
        .collect();
    for (i, p) in imei_packets().iter().enumerate() {
        w.packet(eth, i as i64, &synth::frame(LinkType::ETHERNET, &[], p))
            .unwrap();
        w.packet(others[i % others.len()], i as i64, p).unwrap();
    }
    let report = scan(&w.into_inner());
    assert_eq!(find(&report, K::Imei).len(), 1);
    for name in ["PPP (9)", "NFLOG (239)", "PKTAP (258)", "link type 4000 "] {
        assert!(
            report.warnings.iter().any(|w| w.contains(name)),
            "{name}: {:?}",
            report.warnings
        );
    }
    assert!(!report.to_table().contains("NOT RATED"));
}

#[test]
fn issue_11_ip_in_ip_and_gre_are_unwrapped() {
    let outer4 = |inner_proto: u8, inner: &[u8]| {
        synth::ip(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            inner_proto,
            inner,
        )
    };
    let outer6 = |inner_proto: u8, inner: &[u8]| {
        synth::ip(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            inner_proto,
            inner,
        )
    };
    let v6_packets = {
        let request = post("t.example", "text/plain", "", b"imei=356938035643809");
        synth::tcp_conversation(
            addr("[2001:db8::9]:40000"),
            addr("[2400:3200::1]:80"),
            &request,
            OK,
            1400,
        )
    };
    type Wrap = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, Vec<Vec<u8>>, Wrap)> = vec![
        (
            "ipv4 in ipv4",
            imei_packets(),
            Box::new(move |p| outer4(4, p)),
        ),
        (
            "ipv6 in ipv4",
            v6_packets.clone(),
            Box::new(move |p| outer4(41, p)),
        ),
        (
            "ipv6 in ipv6",
            v6_packets.clone(),
            Box::new(move |p| outer6(41, p)),
        ),
        (
            "ipv4 in ipv6",
            imei_packets(),
            Box::new(move |p| outer6(4, p)),
        ),
        (
            "gre ipv4",
            imei_packets(),
            Box::new(move |p| outer4(47, &synth::gre(0x0800, p))),
        ),
        (
            "gre ethernet with a vlan tag",
            imei_packets(),
            Box::new(move |p| {
                outer4(
                    47,
                    &synth::gre(0x6558, &synth::frame(LinkType::ETHERNET, &[7], p)),
                )
            }),
        ),
        (
            "gre inside ipv4 in ipv6",
            imei_packets(),
            Box::new(move |p| outer6(4, &outer4(47, &synth::gre(0x0800, p)))),
        ),
    ];
    for (name, packets, wrap) in cases {
        let wrapped: Vec<Vec<u8>> = packets.iter().map(|p| wrap(p)).collect();
        let report = scan(&synth::pcap(&wrapped));
        let f = find(&report, K::Imei);
        assert_eq!(f.len(), 1, "{name}: {}", describe(&report));
        let inner_server: IpAddr = f[0].dst_ip.parse().unwrap();
        assert!(
            ["223.5.5.5", "2400:3200::1"].contains(&inner_server.to_string().as_str()),
            "{name}: the inner destination, not the tunnel's: {}",
            f[0].dst
        );
    }
}

#[test]
fn issue_11_gzip_compressed_captures_are_read() {
    let pcap = synth::pcap(&imei_packets());
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    let eth = w.interface(LinkType::ETHERNET).unwrap();
    for (i, p) in imei_packets().iter().enumerate() {
        w.packet(eth, i as i64, &synth::frame(LinkType::ETHERNET, &[], p))
            .unwrap();
    }
    let pcapng = w.into_inner();
    let har = serde_json::json!({"log": {"entries": [{"request":
        {"url": "http://a.example/?imei=356938035643809", "headers": []}}]}})
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in [
        ("t.pcap.gz", gzip(&pcap)),
        ("t.pcapng.gz", gzip(&pcapng)),
        ("t.har.gz", gzip(har.as_bytes())),
        // Two gzip members one after the other, as `cat a.gz b.gz` makes.
        ("t2.pcap.gz", {
            let (a, b) = pcap.split_at(100);
            [gzip(a), gzip(b)].concat()
        }),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let report = scanner()
            .scan_paths(&[path], &mut sovereign_scan::progress::NoProgress)
            .unwrap();
        assert_eq!(
            find(&report, K::Imei).len(),
            1,
            "{name}: {:?}",
            report.warnings
        );
    }
}

#[test]
fn issue_11_har_with_a_utf8_bom_is_read() {
    let har = serde_json::json!({"log": {"entries": [{"request":
        {"url": "http://a.example/?imei=356938035643809", "headers": []}}]}})
    .to_string();
    let with_bom = [&b"\xef\xbb\xbf"[..], har.as_bytes()].concat();
    let report = scanner().scan_bytes("fiddler.har", &with_bom).unwrap();
    assert_eq!(find(&report, K::Imei).len(), 1);
}

#[test]
fn issue_11_phone_numbers_in_national_formats() {
    // The profile's phone is +91 98765 43210 and a contact +91 98123 45678 (India).
    for (body, kind) in [
        ("mobile=98765 43210", K::Phone),
        ("mobile=98765-43210", K::Phone),
        ("mobile=(098765) 43210", K::Phone),
        ("contact=98123 45678", K::Contact),
        ("contact=(098123)45678", K::Contact),
    ] {
        let request = post("t.example", "text/plain", "", body.as_bytes());
        let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
        assert_eq!(
            find(&report, kind).len(),
            1,
            "{body}: {}",
            describe(&report)
        );
    }
}

#[test]
fn issue_11_vlan_and_qinq_on_every_link_type_with_an_ethertype() {
    let cases: [(LinkType, &[u16]); 7] = [
        (LinkType::ETHERNET, &[10, 20, 30]),
        (LinkType::LINUX_SLL, &[100]),
        (LinkType::LINUX_SLL, &[100, 200]),
        (LinkType::LINUX_SLL2, &[100]),
        (LinkType::LINUX_SLL2, &[100, 200]),
        (LinkType::ETHERNET, &[5, 6]),
        (LinkType::LINUX_SLL2, &[1, 2, 3, 4]),
    ];
    for (link, vlan) in cases {
        let frames: Vec<Vec<u8>> = imei_packets()
            .iter()
            .map(|p| synth::frame(link, vlan, p))
            .collect();
        let report = scan(&pcap_of(link, &frames));
        assert_eq!(find(&report, K::Imei).len(), 1, "{link:?} {vlan:?}");
    }
}
