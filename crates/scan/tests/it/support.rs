use std::net::SocketAddr;
use std::path::PathBuf;

use sovereign_model::IdentifierKind;
use sovereign_scan::{Finding, Policy, Profile, Report, Scanner, synth};

pub const CLIENT: &str = "10.0.0.2:40000";
/// An address the shipped database places in China (the profile's home is India).
pub const SERVER_CN: &str = "223.5.5.5:80";
pub const SERVER_IN: &str = "103.21.124.1:80";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn profile() -> Profile {
    let text = std::fs::read_to_string(fixture("profile.toml")).unwrap();
    Profile::from_toml(&text, "profile.toml").unwrap()
}

pub fn scanner() -> Scanner {
    Scanner::new(profile(), Policy::builtin()).unwrap()
}

pub fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

pub fn post(host: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /api HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// One HTTP exchange to `server`, in a pcap.
pub fn exchange_pcap(server: &str, request: &[u8], response: &[u8]) -> Vec<u8> {
    synth::pcap(&synth::tcp_conversation(
        addr(CLIENT),
        addr(server),
        request,
        response,
        1400,
    ))
}

pub fn scan(capture: &[u8]) -> Report {
    scanner().scan_bytes("test.pcap", capture).unwrap()
}

pub fn find(report: &Report, kind: IdentifierKind) -> Vec<&Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.identifier == kind)
        .collect()
}

pub fn describe(report: &Report) -> String {
    report
        .findings
        .iter()
        .map(|f| format!("{} {} [{}]", f.identifier, f.encoding, f.chain.join(">")))
        .collect::<Vec<_>>()
        .join("\n")
}
