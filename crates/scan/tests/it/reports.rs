//! What a user sees: JSON, table, HTML, policy, rating, exit-code rating, diff.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::Severity;
use sovereign_scan::run::{Inputs, OutputFormat, Request, execute};

use crate::support::*;

fn write_capture(
    dir: &std::path::Path,
    name: &str,
    body: &[u8],
    server: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let request = post("account.example.cn", "text/plain", "", body);
    std::fs::write(&path, exchange_pcap(server, &request, OK)).unwrap();
    path
}

fn request(inputs: Inputs, format: OutputFormat) -> Request {
    Request {
        profile: fixture("profile.toml"),
        policy: None,
        sites: sovereign_scan::Sites::default(),
        inputs,
        format,
        keylogs: Vec::new(),
        threads: None,
    }
}

#[test]
fn json_has_the_fields_the_issue_names() {
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(dir.path(), "a.pcap", b"imei=356938035643809", SERVER_CN);
    let outcome = execute(
        &request(Inputs::Scan(vec![capture]), OutputFormat::Json),
        &mut sovereign_scan::progress::NoProgress,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&outcome.rendered).unwrap();
    assert_eq!(json["rating"], "critical");
    for key in ["findings", "captures", "warnings"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let f = &json["findings"][0];
    for key in [
        "identifier",
        "encoding",
        "protocol",
        "src",
        "dst",
        "dst_ip",
        "host",
        "site",
        "country",
        "cross_border",
        "severity",
        "first_seen",
        "frame",
        "count",
        "evidence",
    ] {
        assert!(f.get(key).is_some(), "{key} missing in {f}");
    }
    assert_eq!(f["identifier"], "imei");
    assert_eq!(f["host"], "account.example.cn");
    assert_eq!(f["dst"], "223.5.5.5:80");
    assert_eq!(f["frame"], 4);
    assert!(
        !outcome.rendered.contains("356938035643809"),
        "evidence must be masked"
    );
}

#[test]
fn table_is_the_default_and_says_the_rating_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(dir.path(), "a.pcap", b"imei=356938035643809", SERVER_IN);
    let outcome = execute(
        &request(Inputs::Scan(vec![capture]), OutputFormat::Table),
        &mut sovereign_scan::progress::NoProgress,
    )
    .unwrap();
    assert!(
        outcome.rendered.starts_with("Rating: HIGH\nHigh severity"),
        "{}",
        outcome.rendered
    );
    assert!(outcome.rendered.contains("account.example.cn"));
    assert_eq!(outcome.rating, Severity::High);
}

#[test]
fn html_is_one_self_contained_file_with_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(
        dir.path(),
        "a.pcap",
        b"imei=356938035643809 <script>",
        SERVER_CN,
    );
    let outcome = execute(
        &request(Inputs::Scan(vec![capture]), OutputFormat::Html),
        &mut sovereign_scan::progress::NoProgress,
    )
    .unwrap();
    let html = outcome.rendered;
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 2, "flow chart and timeline");
    assert!(html.contains("account.example.cn (CN)"));
    assert!(!html.contains("<script"), "evidence is escaped");
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "no network: {external}");
    }
}

#[test]
fn no_findings_rates_none() {
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(dir.path(), "a.pcap", b"nothing here", SERVER_CN);
    let outcome = execute(
        &request(Inputs::Scan(vec![capture]), OutputFormat::Table),
        &mut sovereign_scan::progress::NoProgress,
    )
    .unwrap();
    assert_eq!(outcome.rating, Severity::None);
    assert!(
        outcome
            .rendered
            .contains("No identifier of the device was seen")
    );
}

#[test]
fn policy_file_replaces_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let capture = write_capture(dir.path(), "a.pcap", b"imei=356938035643809", SERVER_CN);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nkinds = [\"imei\"]\nseverity = \"medium\"\n",
    )
    .unwrap();
    let mut r = request(Inputs::Scan(vec![capture]), OutputFormat::Json);
    r.policy = Some(policy.clone());
    let outcome = execute(&r, &mut sovereign_scan::progress::NoProgress).unwrap();
    assert_eq!(outcome.rating, Severity::Medium);

    std::fs::write(&policy, "[[rule]]\nseverity = \"severe\"\n").unwrap();
    let err = execute(&r, &mut sovereign_scan::progress::NoProgress).unwrap_err();
    assert!(err.to_string().contains("severe"), "{err}");
}

#[test]
fn diff_shows_what_appeared_disappeared_and_changed() {
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.pcap");
    let after = dir.path().join("after.pcap");
    // Before: IMEI and IMSI to Beijing. After the update: IMSI gone, IMEI now stays at home
    // (a change), and the serial number appears.
    let mut packets = Vec::new();
    let r1 = post(
        "account.example.cn",
        "text/plain",
        "",
        b"imei=356938035643809 imsi=404450123456789",
    );
    packets.extend(sovereign_scan::synth::tcp_conversation(
        addr(CLIENT),
        addr(SERVER_CN),
        &r1,
        OK,
        1400,
    ));
    std::fs::write(&before, sovereign_scan::synth::pcap(&packets)).unwrap();
    let r2 = post(
        "account.example.cn",
        "text/plain",
        "",
        b"imei=356938035643809 sn=R58M12ABCDE",
    );
    std::fs::write(&after, exchange_pcap(SERVER_IN, &r2, OK)).unwrap();
    let outcome = execute(
        &request(Inputs::Diff { before, after }, OutputFormat::Json),
        &mut sovereign_scan::progress::NoProgress,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&outcome.rendered).unwrap();
    assert_eq!(json["before_rating"], "critical");
    assert_eq!(json["after_rating"], "high");
    assert_eq!(json["appeared"][0]["identifier"], "serial");
    assert_eq!(json["disappeared"][0]["identifier"], "imsi");
    assert_eq!(json["changed"][0]["after"]["identifier"], "imei");
    assert_eq!(json["changed"][0]["fields"][0], "severity");
    assert_eq!(outcome.rating, Severity::High);
    let _ = K::Imei;
}

#[test]
fn profile_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        "[device]\nhome_country = \"IN\"\n[identifiers]\nimie = \"1\"\n",
    )
    .unwrap();
    let mut r = request(Inputs::Scan(vec![]), OutputFormat::Table);
    r.profile = profile.clone();
    let err = execute(&r, &mut sovereign_scan::progress::NoProgress).unwrap_err();
    assert!(err.to_string().contains("imie"), "{err}");

    std::fs::write(&profile, "[device]\nhome_country = \"IN\"\n").unwrap();
    let err = execute(&r, &mut sovereign_scan::progress::NoProgress).unwrap_err();
    assert!(err.to_string().contains("no identifier"), "{err}");
}
