//! What OpenSSL 3 here cannot produce: SSL 3.0 (and 3DES), SSL 2.0-format ClientHellos, and
//! pre-standard TLS 1.3 ServerHellos. The test writes these sessions itself with a small
//! record-layer encoder (below, independent of the scanner's decryption code): hellos in the
//! clear, a ChangeCipherSpec, then CBC records with their MAC, from a made-up master secret that
//! the key log gives.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::{Digest, Sha1};
use sovereign_model::IdentifierKind as K;
use sovereign_scan::Report;

use crate::support::*;

const MASTER: [u8; 48] = [0x4d; 48];
const SERVER_RANDOM: [u8; 32] = [0x5e; 32];
const SERVER: &str = "223.5.5.5:443";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Version {
    Ssl3,
    Tls10,
}

#[derive(Clone, Copy)]
enum Cipher {
    Aes128,
    TripleDes,
}

impl Cipher {
    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128 => 16,
            Cipher::TripleDes => 24,
        }
    }
    fn block_len(self) -> usize {
        match self {
            Cipher::Aes128 => 16,
            Cipher::TripleDes => 8,
        }
    }
    fn encrypt_block(self, key: &[u8], block: &mut [u8]) {
        match self {
            Cipher::Aes128 => aes::Aes128::new_from_slice(key)
                .unwrap()
                .encrypt_block(GenericArray::from_mut_slice(block)),
            Cipher::TripleDes => des::TdesEde3::new_from_slice(key)
                .unwrap()
                .encrypt_block(GenericArray::from_mut_slice(block)),
        }
    }
}

fn p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let mac = <M as KeyInit>::new_from_slice(secret).unwrap();
    let mut a = mac
        .clone()
        .chain_update(seed)
        .finalize()
        .into_bytes()
        .to_vec();
    let mut out = Vec::new();
    while out.len() < len {
        out.extend(
            mac.clone()
                .chain_update(&a)
                .chain_update(seed)
                .finalize()
                .into_bytes(),
        );
        a = mac
            .clone()
            .chain_update(&a)
            .finalize()
            .into_bytes()
            .to_vec();
    }
    out.truncate(len);
    out
}

fn key_block(version: Version, client_random: &[u8], len: usize) -> Vec<u8> {
    match version {
        Version::Ssl3 => {
            let mut out = Vec::new();
            for i in 1..=26u8 {
                let salt = vec![b'A' + i - 1; usize::from(i)];
                let inner = Sha1::new()
                    .chain_update(&salt)
                    .chain_update(MASTER)
                    .chain_update(SERVER_RANDOM)
                    .chain_update(client_random)
                    .finalize();
                out.extend(
                    Md5::new()
                        .chain_update(MASTER)
                        .chain_update(inner)
                        .finalize(),
                );
                if out.len() >= len {
                    break;
                }
            }
            out.truncate(len);
            out
        }
        Version::Tls10 => {
            let seed = [b"key expansion".as_slice(), &SERVER_RANDOM, client_random].concat();
            let md5 = p_hash::<Hmac<Md5>>(&MASTER[..24], &seed, len);
            let sha = p_hash::<Hmac<Sha1>>(&MASTER[24..], &seed, len);
            md5.iter().zip(sha).map(|(a, b)| a ^ b).collect()
        }
    }
}

/// One direction's CBC state: MAC key, cipher key, chained IV, sequence number.
struct Writer {
    version: Version,
    cipher: Cipher,
    mac_key: Vec<u8>,
    key: Vec<u8>,
    iv: Vec<u8>,
    seq: u64,
}

impl Writer {
    fn record(&mut self, content_type: u8, content: &[u8]) -> Vec<u8> {
        let wire = match self.version {
            Version::Ssl3 => [3, 0],
            Version::Tls10 => [3, 1],
        };
        let len = (content.len() as u16).to_be_bytes();
        let seq = self.seq.to_be_bytes();
        self.seq += 1;
        let mac = match self.version {
            Version::Ssl3 => {
                let inner = Sha1::new()
                    .chain_update(&self.mac_key)
                    .chain_update([0x36; 40])
                    .chain_update(seq)
                    .chain_update([content_type])
                    .chain_update(len)
                    .chain_update(content)
                    .finalize();
                Sha1::new()
                    .chain_update(&self.mac_key)
                    .chain_update([0x5c; 40])
                    .chain_update(inner)
                    .finalize()
                    .to_vec()
            }
            Version::Tls10 => <Hmac<Sha1> as KeyInit>::new_from_slice(&self.mac_key)
                .unwrap()
                .chain_update(seq)
                .chain_update([content_type])
                .chain_update(wire)
                .chain_update(len)
                .chain_update(content)
                .finalize()
                .into_bytes()
                .to_vec(),
        };
        let bs = self.cipher.block_len();
        let mut plain = [content, &mac].concat();
        let pad = bs - 1 - plain.len() % bs;
        plain.extend(std::iter::repeat_n(pad as u8, pad + 1));
        let mut previous = self.iv.clone();
        for block in plain.chunks_mut(bs) {
            for (b, p) in block.iter_mut().zip(&previous) {
                *b ^= p;
            }
            self.cipher.encrypt_block(&self.key, block);
            previous = block.to_vec();
        }
        self.iv = previous;
        let mut out = vec![content_type, wire[0], wire[1]];
        out.extend_from_slice(&(plain.len() as u16).to_be_bytes());
        out.extend(plain);
        out
    }
}

fn writers(version: Version, cipher: Cipher, client_random: &[u8]) -> (Writer, Writer) {
    let (m, k, b) = (20, cipher.key_len(), cipher.block_len());
    let block = key_block(version, client_random, 2 * (m + k + b));
    let part = |at: usize, n: usize| block[at..at + n].to_vec();
    let writer = |mac_at, key_at, iv_at| Writer {
        version,
        cipher,
        mac_key: part(mac_at, m),
        key: part(key_at, k),
        iv: part(iv_at, b),
        seq: 0,
    };
    (
        writer(0, 2 * m, 2 * m + 2 * k),
        writer(m, 2 * m + k, 2 * m + 2 * k + b),
    )
}

fn handshake_record(version: [u8; 2], kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(body);
    let mut record = vec![22, version[0], version[1]];
    record.extend_from_slice(&(message.len() as u16).to_be_bytes());
    record.extend(message);
    record
}

fn v3_client_hello(random: &[u8; 32], suite: u16) -> Vec<u8> {
    let mut body = vec![3, 0];
    body.extend_from_slice(random);
    body.push(0);
    body.extend_from_slice(&[0, 2]);
    body.extend_from_slice(&suite.to_be_bytes());
    body.extend_from_slice(&[1, 0]);
    handshake_record([3, 0], 1, &body)
}

/// An SSL 2.0-format ClientHello offering TLS 1.0 and `suite`, with a 32-byte challenge.
fn v2_client_hello(challenge: &[u8; 32], suite: u16) -> Vec<u8> {
    let mut body = vec![1, 3, 1, 0, 3, 0, 0, 0, 32, 0];
    body.extend_from_slice(&suite.to_be_bytes());
    body.extend_from_slice(challenge);
    let mut out = (0x8000 | body.len() as u16).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn server_hello(version: [u8; 2], suite: u16) -> Vec<u8> {
    let mut body = version.to_vec();
    body.extend_from_slice(&SERVER_RANDOM);
    body.push(0);
    body.extend_from_slice(&suite.to_be_bytes());
    body.push(0);
    handshake_record(version, 2, &body)
}

/// A whole session: `client_hello` in the clear, the server's hello, both ChangeCipherSpecs,
/// one request and one answer; with the key log line for it.
fn session(
    version: Version,
    cipher: Cipher,
    suite: u16,
    client_hello: &[u8],
    client_random: &[u8; 32],
) -> (Vec<u8>, Vec<u8>, String) {
    let wire = match version {
        Version::Ssl3 => [3, 0],
        Version::Tls10 => [3, 1],
    };
    let (mut client, mut server) = writers(version, cipher, client_random);
    let ccs = [20, wire[0], wire[1], 0, 1, 1];
    let mut to_server = client_hello.to_vec();
    to_server.extend_from_slice(&ccs);
    to_server.extend(client.record(22, &[20, 0, 0, 12, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]));
    to_server.extend(client.record(
        23,
        b"GET /register?imei=356938035643809 HTTP/1.1\r\nHost: api.example.cn\r\n\r\n",
    ));
    let mut to_client = server_hello(wire, suite);
    to_client.extend_from_slice(&ccs);
    to_client.extend(server.record(22, &[20, 0, 0, 12, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]));
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n{\"phone\":\"+919876543210\"}\n";
    to_client.extend(server.record(23, answer));
    let keys = format!("CLIENT_RANDOM {} {}\n", hex(client_random), hex(&MASTER));
    (to_server, to_client, keys)
}

fn scan_session(to_server: &[u8], to_client: &[u8], keys: &str) -> Report {
    let mut log = sovereign_scan::tls::keylog::KeyLog::default();
    log.add_text(keys, "test keylog").unwrap();
    let capture = exchange_pcap(SERVER, to_server, to_client);
    scanner()
        .with_keys(log)
        .scan_bytes("legacy.pcap", &capture)
        .unwrap()
}

fn assert_decrypted(report: &Report, version: &str, cipher: &str) {
    assert_eq!(report.tls_flows.len(), 1, "{}", describe(report));
    let flow = &report.tls_flows[0];
    assert_eq!(flow.version.as_deref(), Some(version));
    assert_eq!(flow.cipher.as_deref(), Some(cipher));
    assert!(flow.decrypted, "{flow:?}");
    let imei = find(report, K::Imei);
    assert!(
        imei.iter()
            .any(|f| f.chain[0] == "tls" && f.direction == "outbound"),
        "{}",
        describe(report)
    );
    let phone = find(report, K::Phone);
    assert!(
        phone
            .iter()
            .any(|f| f.chain[0] == "tls" && f.direction == "inbound"),
        "{}",
        describe(report)
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn ssl3_with_3des_and_with_aes() {
    let random = [0x31; 32];
    for (cipher, suite, name) in [
        (Cipher::TripleDes, 0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
        (Cipher::Aes128, 0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    ] {
        let hello = v3_client_hello(&random, suite);
        let (to_server, to_client, keys) = session(Version::Ssl3, cipher, suite, &hello, &random);
        assert_decrypted(
            &scan_session(&to_server, &to_client, &keys),
            "SSL 3.0",
            name,
        );
    }
}

#[test]
fn an_sslv2_format_client_hello_is_recognised_and_decrypted_as_the_chosen_version() {
    let challenge = [0x62; 32];
    let hello = v2_client_hello(&challenge, 0x002f);
    for version in [Version::Tls10, Version::Ssl3] {
        let (to_server, to_client, keys) =
            session(version, Cipher::Aes128, 0x002f, &hello, &challenge);
        let name = if version == Version::Ssl3 {
            "SSL 3.0"
        } else {
            "TLS 1.0"
        };
        assert_decrypted(
            &scan_session(&to_server, &to_client, &keys),
            name,
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        );
    }
}

#[test]
fn a_cbc_record_failing_its_mac_stops_that_direction_with_a_warning() {
    let random = [0x31; 32];
    let hello = v3_client_hello(&random, 0x002f);
    let (mut to_server, to_client, keys) =
        session(Version::Tls10, Cipher::Aes128, 0x002f, &hello, &random);
    // A byte of the request's last ciphertext block: its padding or MAC no longer checks.
    let last = to_server.len() - 3;
    to_server[last] ^= 1;
    let report = scan_session(&to_server, &to_client, &keys);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("client's record 1") && w.contains("failed authentication")),
        "{:?}",
        report.warnings
    );
    assert!(find(&report, K::Imei).iter().all(|f| f.chain[0] != "tls"));
    assert!(report.tls_flows[0].decrypted, "the server's side still is");
}

#[test]
fn tls13_drafts_are_listed_with_their_version_and_a_note() {
    let random = [0x31; 32];
    let hello = v3_client_hello(&random, 0x1301);
    // Draft 18's ServerHello: its version in the legacy field, no session id, no compression.
    let mut body = vec![0x7f, 0x12];
    body.extend_from_slice(&SERVER_RANDOM);
    body.extend_from_slice(&[0x13, 0x01, 0, 0]);
    let old = handshake_record([3, 1], 2, &body);
    // Draft 28 and Facebook's draft 23: the final format, the version in supported_versions.
    let new = |version: [u8; 2]| {
        let mut body = vec![3, 3];
        body.extend_from_slice(&SERVER_RANDOM);
        body.extend_from_slice(&[
            0, 0x13, 0x02, 0, 0, 6, 0, 0x2b, 0, 2, version[0], version[1],
        ]);
        handshake_record([3, 3], 2, &body)
    };
    for (server, version, cipher) in [
        (old, "TLS 1.3 draft 18", "TLS_AES_128_GCM_SHA256"),
        (
            new([0x7f, 0x1c]),
            "TLS 1.3 draft 28",
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            new([0xfb, 0x17]),
            "TLS 1.3 draft 23 (Facebook)",
            "TLS_AES_256_GCM_SHA384",
        ),
    ] {
        let mut to_client = server;
        to_client.extend_from_slice(&[23, 3, 3, 0, 20]);
        to_client.extend_from_slice(&[0xaa; 20]);
        let keys = format!("CLIENT_RANDOM {} {}\n", hex(&random), hex(&MASTER));
        let report = scan_session(&hello, &to_client, &keys);
        let flow = &report.tls_flows[0];
        assert_eq!(flow.version.as_deref(), Some(version));
        assert_eq!(flow.cipher.as_deref(), Some(cipher));
        assert!(!flow.decrypted);
        let note = flow.note.as_deref().unwrap_or_default();
        assert!(note.contains("pre-standard version of TLS 1.3"), "{note}");
    }
}
