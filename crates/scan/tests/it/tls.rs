//! TLS 1.2 and 1.3 decryption: real handshakes and records made by rustls (aws-lc-rs provider)
//! between an in-memory client and server, wrapped into pcap and pcapng captures.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConnection, SupportedCipherSuite};
use sovereign_model::IdentifierKind as K;
use sovereign_scan::capture::SECRETS_TYPE_TLS_KEY_LOG;
use sovereign_scan::network::packet::LinkType;
use sovereign_scan::tls::keylog::KeyLog;
use sovereign_scan::{Report, synth};

use crate::support::*;

const SNI: &str = "api.example.cn";
const SERVER: &str = "223.5.5.5:443";

/// Key log lines as rustls writes them through `ClientConfig::key_log`.
#[derive(Debug, Default)]
struct Lines(Mutex<String>);

impl rustls::KeyLog for Lines {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut text = self.0.lock().unwrap();
        text.push_str(&format!("{label} {} {}\n", hex(client_random), hex(secret)));
    }
}

/// What went over the wire in each direction, and the client's key log.
struct Session {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    keylog: String,
}

struct Case {
    suite: SupportedCipherSuite,
    version: &'static str,
    cipher: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |suite, version, cipher| Case {
        suite,
        version,
        cipher,
    };
    vec![
        case(
            cs::TLS13_AES_128_GCM_SHA256,
            "TLS 1.3",
            "TLS_AES_128_GCM_SHA256",
        ),
        case(
            cs::TLS13_AES_256_GCM_SHA384,
            "TLS 1.3",
            "TLS_AES_256_GCM_SHA384",
        ),
        case(
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            "TLS 1.3",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        case(
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "TLS 1.2",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        case(
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "TLS 1.2",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        case(
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "TLS 1.2",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ]
}

fn request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {SNI}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Moves TLS bytes between the two ends until neither has anything to send, recording them.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection, s: &mut Session) {
    loop {
        let mut moved = false;
        while client.wants_write() {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            s.to_server.extend_from_slice(&buf);
            let mut rest = &buf[..];
            while !rest.is_empty() {
                server.read_tls(&mut rest).unwrap();
                server.process_new_packets().unwrap();
            }
            moved = true;
        }
        while server.wants_write() {
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            s.to_client.extend_from_slice(&buf);
            let mut rest = &buf[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
                client.process_new_packets().unwrap();
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn drain(reader: &mut dyn std::io::Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A TLS session with one suite: the client posts `requests` (a KeyUpdate between each under
/// TLS 1.3), the server answers each with a body that holds the phone number.
fn session(suite: SupportedCipherSuite, requests: &[Vec<u8>]) -> Session {
    session_with(suite, requests, false)
}

/// As [`session`]; with `hello_retry` the server accepts only a group the client sends no key
/// share for, so TLS 1.3 goes through a HelloRetryRequest and a second ClientHello.
fn session_with(suite: SupportedCipherSuite, requests: &[Vec<u8>], hello_retry: bool) -> Session {
    let (server_config, client_config, lines) = configs(suite, hello_retry);
    let mut client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from(SNI.to_owned()).unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    let mut s = Session {
        to_server: Vec::new(),
        to_client: Vec::new(),
        keylog: String::new(),
    };
    pump(&mut client, &mut server, &mut s);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    for (i, request) in requests.iter().enumerate() {
        if i > 0 && matches!(suite, SupportedCipherSuite::Tls13(_)) {
            client.refresh_traffic_keys().unwrap();
            server.refresh_traffic_keys().unwrap();
        }
        exchange(&mut client, &mut server, &mut s, request);
    }
    client.send_close_notify();
    server.send_close_notify();
    pump(&mut client, &mut server, &mut s);
    s.keylog = lines.0.lock().unwrap().clone();
    s
}

/// One request and its answer, which holds the phone number.
fn exchange(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
    s: &mut Session,
    request: &[u8],
) {
    client.writer().write_all(request).unwrap();
    pump(client, server, s);
    assert_eq!(drain(&mut server.reader()), *request);
    let body = r#"{"phone":"+919876543210"}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    server.writer().write_all(response.as_bytes()).unwrap();
    pump(client, server, s);
    drain(&mut client.reader());
}

/// A server and a client configuration for one suite, with a self-signed certificate for
/// [`SNI`]; the client logs its secrets into the returned lines.
fn configs(
    suite: SupportedCipherSuite,
    hello_retry: bool,
) -> (rustls::ServerConfig, rustls::ClientConfig, Arc<Lines>) {
    let certified = rcgen::generate_simple_self_signed(vec![SNI.to_owned()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..default_provider()
    });
    let version = match suite {
        SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
        SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
    };
    let server_provider = if hello_retry {
        Arc::new(rustls::crypto::CryptoProvider {
            kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::SECP384R1],
            ..(*provider).clone()
        })
    } else {
        provider.clone()
    };
    let server_config = rustls::ServerConfig::builder_with_provider(server_provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let lines = Arc::new(Lines::default());
    client_config.key_log = lines.clone();
    (server_config, client_config, lines)
}

fn imei_session(suite: SupportedCipherSuite) -> Session {
    session(
        suite,
        &[request("/v1/register", r#"{"imei":"356938035643809"}"#)],
    )
}

fn pcap(s: &Session, segment_bytes: usize) -> Vec<u8> {
    synth::pcap(&synth::tcp_conversation(
        addr(CLIENT),
        addr(SERVER),
        &s.to_server,
        &s.to_client,
        segment_bytes,
    ))
}

/// A pcapng with the key log in a Decryption Secrets Block before the packets.
fn pcapng_with_secrets(s: &Session, secrets: &[u8]) -> Vec<u8> {
    let mut w = synth::PcapngWriter::new(Vec::new()).unwrap();
    w.decryption_secrets(SECRETS_TYPE_TLS_KEY_LOG, secrets)
        .unwrap();
    let interface = w.interface(LinkType::ETHERNET).unwrap();
    let packets =
        synth::tcp_conversation(addr(CLIENT), addr(SERVER), &s.to_server, &s.to_client, 1400);
    for (i, p) in packets.iter().enumerate() {
        let frame = synth::frame(LinkType::ETHERNET, &[], p);
        w.packet(interface, 1_411_632_000_000_000 + i as i64 * 1000, &frame)
            .unwrap();
    }
    w.into_inner()
}

fn keys(text: &str) -> KeyLog {
    let mut keys = KeyLog::default();
    keys.add_text(text, "test keylog").unwrap();
    keys
}

fn scan_with(capture: &[u8], keylog: Option<&str>) -> Report {
    let scanner = match keylog {
        Some(text) => scanner().with_keys(keys(text)),
        None => scanner(),
    };
    scanner.scan_bytes("tls.pcap", capture).unwrap()
}

fn assert_decrypted(report: &Report, case: &Case, what: &str) {
    let imei = find(report, K::Imei);
    assert_eq!(imei.len(), 1, "{what}: {}", describe(report));
    let f = imei[0];
    assert_eq!(f.chain, ["tls", "http-body", "json", "plain"], "{what}");
    assert_eq!(f.protocol, "https", "{what}");
    assert!(!f.cleartext, "{what}");
    assert_eq!(f.host.as_deref(), Some(SNI), "{what}");
    assert_eq!(f.direction, "outbound", "{what}");
    let phone = find(report, K::Phone);
    assert!(
        phone
            .iter()
            .any(|f| f.direction == "inbound" && f.chain[0] == "tls"),
        "{what}: the server's answer is decrypted too: {}",
        describe(report)
    );
    assert_eq!(report.tls_flows.len(), 1, "{what}");
    let flow = &report.tls_flows[0];
    assert!(flow.decrypted, "{what}: {flow:?}");
    assert_eq!(flow.sni.as_deref(), Some(SNI));
    assert_eq!(flow.version.as_deref(), Some(case.version), "{what}");
    assert_eq!(flow.cipher.as_deref(), Some(case.cipher), "{what}");
    assert_eq!(flow.country.as_deref(), Some("CN"));
    assert!(flow.bytes_out > 0 && flow.bytes_in > 0);
    assert!(
        !report.warnings.iter().any(|w| w.contains("tls")),
        "{what}: {:?}",
        report.warnings
    );
}

#[test]
fn every_suite_decrypts_with_a_keylog_file_and_with_a_secrets_block() {
    for case in cases() {
        let s = imei_session(case.suite);
        // Small segments put record boundaries in the middle of TCP segments and vice versa.
        for segment_bytes in [1400, 37] {
            let report = scan_with(&pcap(&s, segment_bytes), Some(&s.keylog));
            assert_decrypted(
                &report,
                &case,
                &format!("{} keylog/{segment_bytes}", case.cipher),
            );
        }
        let capture = pcapng_with_secrets(&s, s.keylog.as_bytes());
        let report = scan_with(&capture, None);
        assert_decrypted(&report, &case, &format!("{} secrets block", case.cipher));
    }
}

#[test]
fn without_keys_the_flow_is_listed_with_its_sni_as_not_visible() {
    for case in cases() {
        let s = imei_session(case.suite);
        let report = scan_with(&pcap(&s, 1400), None);
        assert!(find(&report, K::Imei).is_empty(), "{}", describe(&report));
        let flow = &report.tls_flows[0];
        assert!(!flow.decrypted);
        assert_eq!(flow.sni.as_deref(), Some(SNI));
        assert_eq!(flow.host.as_deref(), Some(SNI));
        assert_eq!(flow.dst, SERVER);
        assert_eq!(flow.dst_ip, "223.5.5.5");
        assert_eq!(flow.country.as_deref(), Some("CN"));
        assert_eq!(flow.version.as_deref(), Some(case.version));
        assert_eq!(flow.cipher.as_deref(), Some(case.cipher));
        assert!(flow.note.as_deref().unwrap().contains("no key"), "{flow:?}");
        assert_eq!(flow.bytes, (s.to_server.len() + s.to_client.len()) as u64);
        // A key log for another session changes nothing.
        let other = imei_session(case.suite);
        let report = scan_with(&pcap(&s, 1400), Some(&other.keylog));
        assert!(!report.tls_flows[0].decrypted);
        assert!(find(&report, K::Imei).is_empty());
    }
}

/// Every hex secret of a key log with its first digit changed: the same sessions, wrong keys.
fn wrong_secrets(keylog: &str) -> String {
    keylog
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split(' ').map(str::to_owned).collect();
            let flipped = if fields[2].starts_with('0') { "1" } else { "0" };
            fields[2].replace_range(..1, flipped);
            fields.join(" ") + "\n"
        })
        .collect()
}

#[test]
fn wrong_keys_leave_the_flow_not_visible_with_a_warning() {
    for case in cases() {
        let s = imei_session(case.suite);
        let report = scan_with(&pcap(&s, 1400), Some(&wrong_secrets(&s.keylog)));
        assert!(find(&report, K::Imei).is_empty(), "{}", describe(&report));
        assert!(!report.tls_flows[0].decrypted, "{}", case.cipher);
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("failed authentication") && w.contains(SERVER)),
            "{}: {:?}",
            case.cipher,
            report.warnings
        );
    }
}

#[test]
fn corrupted_ciphertext_warns_and_stops_only_that_direction() {
    for case in cases() {
        let mut s = imei_session(case.suite);
        // The client's last bytes are its encrypted close_notify alert: damage the record
        // before it, the one that carries the request, at its last byte (the tag).
        let mut starts = vec![0];
        while let Some(at) = starts.last().copied().filter(|at| *at < s.to_server.len()) {
            let len = u16::from_be_bytes([s.to_server[at + 3], s.to_server[at + 4]]);
            starts.push(at + 5 + usize::from(len));
        }
        let request_end = starts[starts.len() - 2];
        s.to_server[request_end - 1] ^= 0x40;
        let report = scan_with(&pcap(&s, 1400), Some(&s.keylog));
        assert!(find(&report, K::Imei).is_empty(), "{}", describe(&report));
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("client's record") && w.contains("failed authentication")),
            "{}: {:?}",
            case.cipher,
            report.warnings
        );
        // The server's direction is intact and still decrypted.
        assert!(report.tls_flows[0].decrypted);
        assert!(!find(&report, K::Phone).is_empty(), "{}", case.cipher);
    }
}

#[test]
fn truncated_and_garbled_streams_never_panic() {
    let s = imei_session(cs::TLS13_AES_128_GCM_SHA256);
    let keys = keys(&s.keylog);
    let scanner = scanner().with_keys(keys);
    for cut in (0..s.to_server.len()).step_by(97) {
        let capture = synth::pcap(&synth::tcp_conversation(
            addr(CLIENT),
            addr(SERVER),
            &s.to_server[..cut],
            &s.to_client[..cut.min(s.to_client.len())],
            100,
        ));
        let report = scanner.scan_bytes("cut.pcap", &capture).unwrap();
        assert!(report.tls_flows.len() <= 1);
    }
    for at in (0..s.to_server.len()).step_by(13) {
        let mut to_server = s.to_server.clone();
        to_server[at] ^= 0xff;
        let capture = synth::pcap(&synth::tcp_conversation(
            addr(CLIENT),
            addr(SERVER),
            &to_server,
            &s.to_client,
            300,
        ));
        scanner.scan_bytes("garbled.pcap", &capture).unwrap();
    }
}

#[test]
fn tls13_key_updates_are_followed() {
    let s = session(
        cs::TLS13_AES_256_GCM_SHA384,
        &[
            request("/a", r#"{"imei":"356938035643809"}"#),
            request("/b", r#"{"serial":"R58M12ABCDE"}"#),
            request("/c", r#"{"imsi":"404450123456789"}"#),
        ],
    );
    let report = scan_with(&pcap(&s, 1400), Some(&s.keylog));
    for kind in [K::Imei, K::Serial, K::Imsi] {
        let f = find(&report, kind);
        assert_eq!(f.len(), 1, "{kind}: {}", describe(&report));
        assert_eq!(f[0].chain[0], "tls");
    }
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn secrets_blocks_with_bad_lines_warn_and_keep_the_good_ones() {
    let s = imei_session(cs::TLS13_CHACHA20_POLY1305_SHA256);
    let secrets = format!("not a key log line\n{}", s.keylog);
    let report = scan_with(&pcapng_with_secrets(&s, secrets.as_bytes()), None);
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("decryption secrets block 1") && w.contains("line 1")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn keylog_garbage_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let keylog = dir.path().join("sslkeys.txt");
    let random = "ab".repeat(32);
    std::fs::write(
        &keylog,
        format!(
            "# SSL/TLS secrets log file\nCLIENT_RANDOM {random} {}\nCLIENT_RANDOM {random} zz\n",
            "cd".repeat(48)
        ),
    )
    .unwrap();
    let capture = dir.path().join("c.pcap");
    std::fs::write(
        &capture,
        pcap(&imei_session(cs::TLS13_AES_128_GCM_SHA256), 1400),
    )
    .unwrap();
    let request = sovereign_scan::run::Request {
        profile: fixture("profile.toml"),
        policy: None,
        inputs: sovereign_scan::run::Inputs::Scan(vec![capture]),
        format: sovereign_scan::run::OutputFormat::Json,
        keylogs: vec![keylog.clone()],
        sites: sovereign_scan::Sites::default(),
    };
    let err = sovereign_scan::run::execute(&request, &mut sovereign_scan::progress::NoProgress)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("key log {}, line 3: secret is not hex", keylog.display())
    );
}

#[test]
fn the_json_table_and_html_reports_list_tls_flows() {
    let dir = tempfile::tempdir().unwrap();
    let s = imei_session(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let capture = dir.path().join("c.pcap");
    std::fs::write(&capture, pcap(&s, 1400)).unwrap();
    let keylog = dir.path().join("keys.txt");
    std::fs::write(&keylog, &s.keylog).unwrap();
    for (keylogs, decrypted) in [(vec![], false), (vec![keylog], true)] {
        let mut request = sovereign_scan::run::Request {
            profile: fixture("profile.toml"),
            policy: None,
            inputs: sovereign_scan::run::Inputs::Scan(vec![capture.clone()]),
            format: sovereign_scan::run::OutputFormat::Json,
            keylogs,
            sites: sovereign_scan::Sites::default(),
        };
        let run = |request: &sovereign_scan::run::Request| {
            sovereign_scan::run::execute(request, &mut sovereign_scan::progress::NoProgress)
                .unwrap()
                .rendered
        };
        let json: serde_json::Value = serde_json::from_str(&run(&request)).unwrap();
        let flow = &json["tls_flows"][0];
        for key in [
            "src",
            "dst",
            "dst_ip",
            "host",
            "sni",
            "country",
            "version",
            "cipher",
            "decrypted",
            "bytes",
        ] {
            assert!(flow.get(key).is_some(), "{key}: {flow}");
        }
        assert_eq!(flow["decrypted"], decrypted);
        assert_eq!(flow["sni"], SNI);
        request.format = sovereign_scan::run::OutputFormat::Table;
        let table = run(&request);
        let expected = if decrypted {
            "decrypted"
        } else {
            "not visible"
        };
        let line = table
            .lines()
            .find(|l| l.starts_with(expected))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(line.starts_with(expected), "{table}");
        assert!(line.contains(SNI) && line.contains("TLS 1.2"), "{line}");
        request.format = sovereign_scan::run::OutputFormat::Html;
        let html = run(&request);
        assert!(html.contains("<h2>TLS connections</h2>"));
        assert!(html.contains(expected) && html.contains(SNI));
    }
}

#[test]
fn tls13_after_a_hello_retry_request() {
    let s = session_with(
        cs::TLS13_AES_128_GCM_SHA256,
        &[request("/v1/register", r#"{"imei":"356938035643809"}"#)],
        true,
    );
    // The server's first handshake message is a HelloRetryRequest; the real ServerHello follows.
    let hello_retry_random = [0xcf, 0x21, 0xad, 0x74];
    assert_eq!(
        s.to_client[11..15],
        hello_retry_random,
        "no HelloRetryRequest was made"
    );
    let report = scan_with(&pcap(&s, 1400), Some(&s.keylog));
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
    assert!(report.tls_flows[0].decrypted);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn a_flow_whose_client_hello_was_not_captured_is_listed_as_not_visible() {
    let s = imei_session(cs::TLS13_AES_128_GCM_SHA256);
    let first_record = 5 + usize::from(u16::from_be_bytes([s.to_server[3], s.to_server[4]]));
    let capture = synth::pcap(&synth::tcp_conversation(
        addr(CLIENT),
        addr(SERVER),
        &s.to_server[first_record..],
        &s.to_client,
        1400,
    ));
    let report = scan_with(&capture, Some(&s.keylog));
    assert!(find(&report, K::Imei).is_empty());
    let flow = &report.tls_flows[0];
    assert!(!flow.decrypted);
    assert_eq!(flow.sni, None);
    assert_eq!(flow.version.as_deref(), Some("TLS 1.3"));
    assert_eq!(
        flow.note.as_deref(),
        Some("the client hello was not captured")
    );
}

/// A TLS 1.3 resumption that sends the IMEI as 0-RTT early data, then the serial number as a
/// normal request. The server accepts the early data or, with `accept` false, refuses it.
fn early_data_session(accept: bool) -> Session {
    let (mut server_config, mut client_config, lines) =
        configs(cs::TLS13_AES_128_GCM_SHA256, false);
    server_config.max_early_data_size = 16 << 10;
    client_config.enable_early_data = true;
    let server_config = Arc::new(server_config);
    let client_config = Arc::new(client_config);
    let name = || ServerName::try_from(SNI.to_owned()).unwrap();
    // The first connection only leaves a ticket behind.
    let mut scratch = Session {
        to_server: Vec::new(),
        to_client: Vec::new(),
        keylog: String::new(),
    };
    let mut client = ClientConnection::new(client_config.clone(), name()).unwrap();
    let mut server = ServerConnection::new(server_config.clone()).unwrap();
    pump(&mut client, &mut server, &mut scratch);
    lines.0.lock().unwrap().clear();

    let mut server_config = (*server_config).clone();
    if !accept {
        server_config.max_early_data_size = 0;
    }
    let mut s = Session {
        to_server: Vec::new(),
        to_client: Vec::new(),
        keylog: String::new(),
    };
    let mut client = ClientConnection::new(client_config, name()).unwrap();
    let early = request("/v1/hello", r#"{"imei":"356938035643809"}"#);
    client
        .early_data()
        .expect("a ticket allowing early data")
        .write_all(&early)
        .unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    pump(&mut client, &mut server, &mut s);
    assert_eq!(client.is_early_data_accepted(), accept);
    if let Some(mut data) = server.early_data() {
        drain(&mut data);
    }
    exchange(
        &mut client,
        &mut server,
        &mut s,
        &request("/v1/next", r#"{"serial":"R58M12ABCDE"}"#),
    );
    s.keylog = lines.0.lock().unwrap().clone();
    s
}

#[test]
fn tls13_early_data_accepted_or_refused_with_and_without_its_secret() {
    for accept in [true, false] {
        let s = early_data_session(accept);
        assert!(s.keylog.contains("CLIENT_EARLY_TRAFFIC_SECRET"), "{accept}");
        let report = scan_with(&pcap(&s, 1400), Some(&s.keylog));
        let what = format!("accepted: {accept}: {}", describe(&report));
        // What the client sent as early data left the phone either way.
        assert_eq!(find(&report, K::Imei).len(), 1, "{what}");
        assert_eq!(find(&report, K::Imei)[0].chain[0], "tls", "{what}");
        assert_eq!(find(&report, K::Serial).len(), 1, "{what}");
        assert!(report.warnings.is_empty(), "{what}: {:?}", report.warnings);

        let without_early: String = s
            .keylog
            .lines()
            .filter(|l| !l.starts_with("CLIENT_EARLY_TRAFFIC_SECRET"))
            .map(|l| format!("{l}\n"))
            .collect();
        let report = scan_with(&pcap(&s, 1400), Some(&without_early));
        let what = format!("accepted: {accept}: {}", describe(&report));
        assert!(find(&report, K::Imei).is_empty(), "{what}");
        assert_eq!(find(&report, K::Serial).len(), 1, "{what}");
        assert!(
            report.warnings.iter().any(|w| w.contains("0-RTT")),
            "{what}: {:?}",
            report.warnings
        );
    }
}

#[test]
fn a_flow_scanned_in_pieces_carries_partial_records_over() {
    use sovereign_scan::tls::decrypt::{TlsFlow, Visibility};
    use sovereign_scan::transport::reassembly::{Mark, Run};
    for case in cases() {
        let req = request("/v1/register", r#"{"imei":"356938035643809"}"#);
        let s = session(case.suite, &[req.clone(), req.clone()]);
        let keys = keys(&s.keylog);
        // The first piece holds the hellos; the rest comes in pieces that cut records anywhere.
        let pieces = |data: &[u8]| -> Vec<Run> {
            let mut runs = Vec::new();
            let mut at = 0;
            for size in [1200_usize, 1, 4, 5, 7, 100, 333].iter().cycle() {
                if at >= data.len() {
                    break;
                }
                let end = (at + size).min(data.len());
                runs.push(Run {
                    start: at as u64,
                    data: data[at..end].to_vec(),
                });
                at = end;
            }
            runs
        };
        let (client, server) = (pieces(&s.to_server), pieces(&s.to_client));
        let marks = [Mark {
            offset: 0,
            frame: 1,
            time_us: 0,
        }];
        let mut flow = TlsFlow::new();
        flow.begin(&client[..1], &server[..1], &|r| keys.get(r).cloned());
        let mut sent = Vec::new();
        for run in &client {
            // The engine calls begin for every piece; after the first it changes nothing.
            flow.begin(std::slice::from_ref(run), &[], &|_| None);
            sent.extend(flow.decrypt(true, std::slice::from_ref(run), &marks).data);
        }
        let mut answered = Vec::new();
        for run in &server {
            answered.extend(flow.decrypt(false, std::slice::from_ref(run), &marks).data);
        }
        assert_eq!(sent, [req.clone(), req.clone()].concat(), "{}", case.cipher);
        let phone = b"+919876543210";
        let answers = answered.windows(phone.len()).filter(|w| w == phone).count();
        assert_eq!(answers, 2, "{}", case.cipher);
        assert!(
            answered.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            case.cipher
        );
        assert_eq!(flow.visibility(), Visibility::Decrypted);
        assert!(flow.take_warnings().is_empty(), "{}", case.cipher);
        assert_eq!(
            flow.bytes(),
            (s.to_server.len() as u64, s.to_client.len() as u64)
        );
    }
}

#[test]
fn a_record_longer_than_the_limit_ends_decryption_with_a_warning() {
    use sovereign_scan::tls::decrypt::RECORD_BYTES_MAX;
    let mut s = imei_session(cs::TLS13_AES_128_GCM_SHA256);
    let len = u16::try_from(RECORD_BYTES_MAX + 1).unwrap().to_be_bytes();
    s.to_server.extend_from_slice(&[23, 3, 3, len[0], len[1]]);
    s.to_server
        .extend(std::iter::repeat_n(0, RECORD_BYTES_MAX + 1));
    let report = scan_with(&pcap(&s, 1400), Some(&s.keylog));
    // What came before the bad record was decrypted.
    assert_eq!(find(&report, K::Imei).len(), 1, "{}", describe(&report));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("client's stream is not a tls record at offset")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_keylog_larger_than_the_limit_is_an_error() {
    use sovereign_scan::tls::keylog::KEYLOG_BYTES_MAX;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.txt");
    // Sparse: zero bytes on disk, but read as KEYLOG_BYTES_MAX + 1 bytes of text.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(KEYLOG_BYTES_MAX + 1)
        .unwrap();
    let err = sovereign_scan::run::read_keylogs(std::slice::from_ref(&path))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "key log {} is larger than {KEYLOG_BYTES_MAX} bytes",
            path.display()
        )
    );
}
