//! Host and country of each finding, and whether it crossed the home border.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::synth;

use crate::support::*;

#[test]
fn country_from_the_database_and_cross_border() {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.country.as_deref(), Some("CN"));
    assert!(f.cross_border);
    assert_eq!(f.severity, sovereign_scan::Severity::Critical);
    assert_eq!(f.dst_ip, "223.5.5.5");
    assert!(report.ip_country_database.contains("iptoasn-country-mmdb"));

    let report = scan(&exchange_pcap(SERVER_IN, &request, OK));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.country.as_deref(), Some("IN"));
    assert!(!f.cross_border);
    assert_eq!(f.severity, sovereign_scan::Severity::High);
}

#[test]
fn private_addresses_have_no_country_and_cross_no_border() {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    let report = scan(&exchange_pcap("192.168.1.10:80", &request, OK));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.country, None);
    assert!(!f.cross_border);
}

#[test]
fn host_from_the_http_host_header() {
    let request = post(
        "Account.Example.CN",
        "text/plain",
        "",
        b"imei=356938035643809",
    );
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert_eq!(
        find(&report, K::Imei)[0].host.as_deref(),
        Some("account.example.cn")
    );
}

/// A DNS answer for `name` → `address`, from the resolver to the client.
pub fn dns_answer(name: &str, address: [u8; 4]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    m.extend_from_slice(&address);
    m
}

#[test]
fn host_from_an_earlier_dns_answer() {
    let answer = synth::ip(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        17,
        &synth::udp(53, 33333, &dns_answer("raw.example.cn", [223, 5, 5, 5])),
    );
    // Not HTTP, so no Host header: only the DNS answer names the server.
    let packets: Vec<Vec<u8>> = std::iter::once(answer)
        .chain(synth::tcp_conversation(
            addr(CLIENT),
            addr("223.5.5.5:9000"),
            b"\x00\x01binary imsi 404450123456789",
            b"",
            100,
        ))
        .collect();
    let report = scan(&synth::pcap(&packets));
    let f = &find(&report, K::Imsi)[0];
    assert_eq!(f.host.as_deref(), Some("raw.example.cn"));
    assert_eq!(f.protocol, "tcp");
    assert_eq!(f.chain, ["tcp", "plain"]);
}

/// A TLS 1.2 ClientHello record asking for `name`.
pub fn client_hello(name: &str) -> Vec<u8> {
    let mut sni = Vec::new();
    let entry_len = 3 + name.len();
    sni.extend_from_slice(&((entry_len) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[test]
fn host_from_tls_sni() {
    assert_eq!(
        sovereign_scan::tls::client_hello_sni(&client_hello("Secure.Example.CN")).as_deref(),
        Some("secure.example.cn")
    );
    // A client that sends its IMEI in the clear right after the ClientHello bytes.
    let mut data = client_hello("secure.example.cn");
    data.extend_from_slice(b"imei=356938035643809");
    let packets = synth::tcp_conversation(addr(CLIENT), addr("223.5.5.5:443"), &data, b"", 1400);
    let report = scan(&synth::pcap(&packets));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.host.as_deref(), Some("secure.example.cn"));
    assert_eq!(f.protocol, "tls");
    assert!(!f.cleartext);
}
