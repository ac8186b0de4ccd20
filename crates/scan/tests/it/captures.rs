//! Capture formats, link types, IP versions and fragments.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::network::packet::LinkType;
use sovereign_scan::synth::{self, PcapWriter, PcapngWriter};

use crate::support::*;

fn packets() -> Vec<Vec<u8>> {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    synth::tcp_conversation(addr(CLIENT), addr(SERVER_CN), &request, OK, 1400)
}

fn pcap_with(link: LinkType, vlan: &[u16], packets: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), link).unwrap();
    for (i, p) in packets.iter().enumerate() {
        w.frame(1_000_000 + i as i64, &synth::frame(link, vlan, p))
            .unwrap();
    }
    w.into_inner()
}

#[test]
fn every_link_type_is_read() {
    let cases: [(LinkType, &[u16]); 6] = [
        (LinkType::ETHERNET, &[]),
        (LinkType::ETHERNET, &[100]),
        (LinkType::ETHERNET, &[100, 200]),
        (LinkType::RAW, &[]),
        (LinkType::LINUX_SLL, &[]),
        (LinkType::LINUX_SLL2, &[]),
    ];
    for (link, vlan) in cases {
        let report = scan(&pcap_with(link, vlan, &packets()));
        assert_eq!(find(&report, K::Imei).len(), 1, "{link:?} {vlan:?}");
    }
}

#[test]
fn ipv6_is_read() {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    let packets = synth::tcp_conversation(
        addr("[2001:db8::2]:40000"),
        addr("[2400:3200::1]:80"),
        &request,
        OK,
        100,
    );
    let report = scan(&synth::pcap(&packets));
    let f = find(&report, K::Imei);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].dst, "[2400:3200::1]:80");
}

#[test]
fn pcapng_with_several_interfaces() {
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    let eth = w.interface(LinkType::ETHERNET).unwrap();
    let raw = w.interface(LinkType::RAW).unwrap();
    // The handshake on one interface, the data on the other: one flow all the same.
    for (i, p) in packets().iter().enumerate() {
        let (id, link) = if i % 2 == 0 {
            (eth, LinkType::ETHERNET)
        } else {
            (raw, LinkType::RAW)
        };
        w.packet(
            id,
            1_411_632_000_000_000 + i as i64,
            &synth::frame(link, &[], p),
        )
        .unwrap();
    }
    let report = scan(&w.into_inner());
    let f = find(&report, K::Imei);
    assert_eq!(f.len(), 1, "{}", describe(&report));
    assert_eq!(f[0].first_seen, "2014-09-25T08:00:00.000003Z");
}

#[test]
fn ipv4_fragments_are_reassembled() {
    let body = format!("{}imei=356938035643809", "x".repeat(3000));
    let request = post("t.example", "text/plain", "", body.as_bytes());
    // One big segment, cut into IP fragments; the identifier is in the last one.
    let mut packets = Vec::new();
    for p in synth::tcp_conversation(addr(CLIENT), addr(SERVER_CN), &request, OK, 10_000) {
        if p.len() > 1000 {
            let mut fragments = synth::ipv4_fragments(&p, 1200);
            fragments.reverse();
            packets.extend(fragments);
        } else {
            packets.push(p);
        }
    }
    let report = scan(&synth::pcap(&packets));
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
}

#[test]
fn udp_datagrams_in_ipv4_fragments_are_reassembled() {
    let payload = format!("{}sn=R58M12ABCDE", "y".repeat(2000));
    let packet = synth::ip(
        "10.0.0.2".parse().unwrap(),
        "223.5.5.5".parse().unwrap(),
        17,
        &synth::udp(5000, 9999, payload.as_bytes()),
    );
    let report = scan(&synth::pcap(&synth::ipv4_fragments(&packet, 800)));
    let f = find(&report, K::Serial);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].protocol, "udp");
}

#[test]
fn ipv6_fragments_are_reassembled() {
    let body = format!("{}imei=356938035643809", "x".repeat(3000));
    let request = post("t.example", "text/plain", "", body.as_bytes());
    let (client, server) = (addr("[2001:db8::2]:40000"), addr("[2400:cb00::1]:80"));
    let mut packets = Vec::new();
    for (i, p) in synth::tcp_conversation(client, server, &request, OK, 10_000)
        .into_iter()
        .enumerate()
    {
        if p.len() > 1000 {
            let mut fragments = synth::ipv6_fragments(&p, 1200, 7 + i as u32);
            fragments.swap(0, 2);
            packets.extend(fragments);
        } else {
            packets.push(p);
        }
    }
    let report = scan(&synth::pcap(&packets));
    let f = find(&report, K::Imei);
    assert_eq!(f.len(), 1, "{}", describe(&report));
    assert_eq!(f[0].dst, "[2400:cb00::1]:80");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    // UDP in IPv6 fragments; a datagram missing a fragment is a warning, and the rest is kept.
    let datagram = |id: u32, text: &str| {
        let payload = format!("{}{text}", "y".repeat(2000));
        let packet = synth::ip(
            "2001:db8::2".parse().unwrap(),
            "2400:cb00::1".parse().unwrap(),
            17,
            &synth::udp(5000, 9999, payload.as_bytes()),
        );
        synth::ipv6_fragments(&packet, 800, id)
    };
    let mut packets = datagram(1, "sn=R58M12ABCDE");
    let mut lost = datagram(2, "imei=356938035643809");
    lost.remove(1);
    packets.extend(lost);
    let report = scan(&synth::pcap(&packets));
    let f = find(&report, K::Serial);
    assert_eq!(f.len(), 1, "{}", describe(&report));
    assert_eq!(f[0].protocol, "udp");
    assert!(find(&report, K::Imei).is_empty());
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("1 fragmented ip datagrams could not be reassembled")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn several_captures_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pcap");
    let b = dir.path().join("b.pcap");
    std::fs::write(&a, synth::pcap(&packets())).unwrap();
    let request = post("t.example", "text/plain", "", b"iccid 8991000900123456789");
    std::fs::write(&b, exchange_pcap(SERVER_CN, &request, OK)).unwrap();
    let report = scanner()
        .scan_paths(&[a, b.clone()], &mut sovereign_scan::progress::NoProgress)
        .unwrap();
    assert_eq!(report.captures.len(), 2);
    assert_eq!(find(&report, K::Imei).len(), 1);
    let iccid = find(&report, K::Iccid);
    assert_eq!(iccid[0].capture, b.display().to_string());
}

#[test]
fn har_entries_are_scanned() {
    let har = serde_json::json!({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [
        {"startedDateTime": "2014-09-25T08:12:03.250Z", "serverIPAddress": "223.5.5.5",
         "request": {"method": "POST", "url": "http://api.example.cn/reg?imei=356938035643809",
                     "headers": [{"name": "X-Imsi", "value": "404450123456789"}],
                     "postData": {"mimeType": "application/x-www-form-urlencoded", "text": "phone=%2B919876543210"}},
         "response": {"status": 200, "headers": [], "content": {"mimeType": "application/json",
                      "text": base64_of("{\"sn\":\"R58M12ABCDE\"}"), "encoding": "base64"}}},
        {"startedDateTime": "2014-09-25T08:12:04Z", "serverIPAddress": "",
         "request": {"method": "GET", "url": "https://secure.example.in/?m=asha.rao%40example.in", "headers": []},
         "response": {"status": 200, "headers": [], "content": {"mimeType": "text/plain", "text": ""}}}
    ]}});
    let report = scanner()
        .scan_bytes("t.har", har.to_string().as_bytes())
        .unwrap();
    let imei = find(&report, K::Imei);
    assert_eq!(imei[0].host.as_deref(), Some("api.example.cn"));
    assert_eq!(imei[0].first_seen, "2014-09-25T08:12:03.250000Z");
    assert_eq!(imei[0].country.as_deref(), Some("CN"));
    assert!(imei[0].cleartext);
    assert_eq!(find(&report, K::Imsi)[0].chain, ["http-header", "plain"]);
    assert_eq!(
        find(&report, K::Phone)[0].chain,
        ["http-body", "form", "e164"]
    );
    assert_eq!(find(&report, K::Serial)[0].direction, "inbound");
    let email = find(&report, K::Email);
    assert!(!email[0].cleartext, "https is not cleartext on the wire");
    assert_eq!(email[0].frame, 2);
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn unknown_format_is_an_input_error() {
    let err = scanner().scan_bytes("x.bin", b"GIF89a....").unwrap_err();
    assert!(
        err.to_string().contains("not a pcap, pcapng or har"),
        "{err}"
    );
}
