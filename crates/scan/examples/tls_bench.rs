//! What TLS decryption costs the scanner: the same HTTP/1.1 requests scanned in the clear, and
//! inside TLS 1.3 and TLS 1.2 (made by rustls in memory) with and without the key log.
//!
//! Usage: cargo run --release -p sovereign-scan --example tls_bench PROFILE.toml [MIB]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConnection, SupportedCipherSuite};
use sovereign_scan::tls::keylog::KeyLog;
use sovereign_scan::{Policy, Profile, Scanner, synth};

#[derive(Debug, Default)]
struct Lines(Mutex<String>);

impl rustls::KeyLog for Lines {
    fn log(&self, label: &str, random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(random), hex(secret));
        self.0.lock().expect("not poisoned").push_str(&line);
    }
}

/// The client's bytes on the wire after sending `plaintext`, and the key log.
fn tls_stream(suite: SupportedCipherSuite, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["bench.example".to_owned()])
        .expect("a certificate");
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
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .expect("version")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let mut client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("version")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let lines = Arc::new(Lines::default());
    client_config.key_log = lines.clone();
    let name = ServerName::try_from("bench.example").expect("name");
    let mut client = ClientConnection::new(Arc::new(client_config), name).expect("client");
    let mut server = ServerConnection::new(Arc::new(server_config)).expect("server");
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut pump = |client: &mut ClientConnection, server: &mut ServerConnection| loop {
        let mut moved = false;
        while client.wants_write() {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).expect("write");
            to_server.extend_from_slice(&buf);
            let mut rest = &buf[..];
            while !rest.is_empty() {
                server.read_tls(&mut rest).expect("read");
                server.process_new_packets().expect("process");
                // The server's application reads everything, or rustls's buffer fills.
                std::io::copy(&mut server.reader(), &mut std::io::sink()).ok();
            }
            moved = true;
        }
        while server.wants_write() {
            let mut buf = Vec::new();
            server.write_tls(&mut buf).expect("write");
            to_client.extend_from_slice(&buf);
            let mut rest = &buf[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).expect("read");
                client.process_new_packets().expect("process");
            }
            moved = true;
        }
        if !moved {
            return;
        }
    };
    pump(&mut client, &mut server);
    for piece in plaintext.chunks(64 << 10) {
        client.writer().write_all(piece).expect("write");
        pump(&mut client, &mut server);
    }
    let keylog = lines.0.lock().expect("not poisoned").clone();
    (to_server, to_client, keylog)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: tls_bench PROFILE.toml [MIB]");
    let mib: usize = args
        .next()
        .map_or(48, |m| m.parse().expect("MIB is a number"));
    let text = std::fs::read_to_string(&path).expect("reading the profile");
    let profile = Profile::from_toml(&text, &path).expect("a valid profile");
    let client: SocketAddr = "10.0.0.2:40000".parse().expect("address");
    let server: SocketAddr = "223.5.5.5:443".parse().expect("address");

    let body = "{\"event\":\"heartbeat\",\"build\":\"KTU84P\",\"payload\":\"".to_owned()
        + &"0123456789abcdef".repeat(60)
        + "\"}";
    let one = format!(
        "POST /v1/log HTTP/1.1\r\nHost: bench.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut http = Vec::new();
    while http.len() < mib << 20 {
        http.extend_from_slice(one.as_bytes());
    }
    let pcap = |to_server: &[u8], to_client: &[u8]| {
        synth::pcap(&synth::tcp_conversation(
            client, server, to_server, to_client, 1460,
        ))
    };
    let time = |label: &str, scanner: &Scanner, capture: &[u8]| {
        let start = Instant::now();
        let report = scanner.scan_bytes("bench.pcap", capture).expect("scan");
        let seconds = start.elapsed().as_secs_f64();
        let decrypted = report.tls_flows.first().map(|f| f.decrypted);
        println!(
            "{label:44} {:8.1} MiB {:7.3} s {:8.1} MiB/s  decrypted: {decrypted:?}",
            capture.len() as f64 / f64::from(1 << 20),
            seconds,
            capture.len() as f64 / f64::from(1 << 20) / seconds
        );
    };
    let plain = Scanner::new(profile.clone(), Policy::builtin()).expect("scanner");
    time("HTTP/1.1 in the clear", &plain, &pcap(&http, b""));
    for (name, suite) in [
        ("TLS 1.3 AES-128-GCM", cs::TLS13_AES_128_GCM_SHA256),
        (
            "TLS 1.3 ChaCha20-Poly1305",
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS 1.2 ECDHE-ECDSA AES-256-GCM",
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
    ] {
        let (to_server, to_client, keylog) = tls_stream(suite, &http);
        let capture = pcap(&to_server, &to_client);
        let mut keys = KeyLog::default();
        keys.add_text(&keylog, "bench")
            .expect("rustls writes a valid key log");
        let with_keys = Scanner::new(profile.clone(), Policy::builtin())
            .expect("scanner")
            .with_keys(keys);
        time(&format!("{name}, decrypted"), &with_keys, &capture);
        time(&format!("{name}, no keys"), &plain, &capture);
    }
}
