//! The HTTP/2-inside-TLS benchmark capture (bench/scan.sh `h2`), shared by gen_capture and the
//! test that scans a small one (tests/it/bench_captures.rs).
//!
//! Many TLS 1.3 connections made by rustls in memory (AES-128-GCM and ChaCha20-Poly1305 in
//! turn, ALPN h2), each carrying 8 to 23 HTTP/2 POSTs and their answers. Header blocks are
//! HPACK with every string Huffman-coded (our own encoder on the RFC 7541 code,
//! `hpack::huffman_encode`) and the connection's repeated headers (user agent, `x-android-id`,
//! content type) added to the dynamic table on the first request and sent as indices after.
//! Bodies are JSON, half of them gzip'd, split into DATA frames. Planted from
//! bench/scan-profile.toml: the IMEI in `:path` (every 10th request), the Android ID in a header
//! (every connection), the e-mail in JSON bodies (every 7th), the IMSI in gzip'd bodies (every
//! 11th), the serial in responses (every 13th).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConnection};
use sovereign_scan::network::packet::LinkType;
use sovereign_scan::protocols::hpack::huffman_encode;
use sovereign_scan::synth::{self, PcapWriter};

#[derive(Debug, Default)]
struct Lines(Mutex<String>);

impl rustls::KeyLog for Lines {
    fn log(&self, label: &str, random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(random), hex(secret));
        self.0.lock().expect("not poisoned").push_str(&line);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

/// One direction's HPACK encoder: Huffman strings, a dynamic table of 4096 bytes.
#[derive(Default)]
struct Hpack {
    table: VecDeque<(String, String)>,
    size: usize,
}

const TABLE_BYTES: usize = 4096;

fn integer(out: &mut Vec<u8>, first: u8, prefix_bits: u32, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

fn string(out: &mut Vec<u8>, text: &str) {
    let coded = huffman_encode(text.as_bytes());
    integer(out, 0x80, 7, coded.len());
    out.extend_from_slice(&coded);
}

/// Static table indices of the names used (RFC 7541 appendix A).
fn static_name(name: &str) -> Option<usize> {
    Some(match name {
        ":authority" => 1,
        ":path" => 4,
        "content-encoding" => 26,
        "content-length" => 28,
        "content-type" => 31,
        "user-agent" => 58,
        _ => return None,
    })
}

impl Hpack {
    /// A field from the dynamic table when it is there, else a literal with incremental
    /// indexing (`index`) or without indexing.
    fn field(&mut self, out: &mut Vec<u8>, name: &str, value: &str, index: bool) {
        match (name, value) {
            (":method", "POST") => return out.push(0x83),
            (":scheme", "https") => return out.push(0x87),
            (":status", "200") => return out.push(0x88),
            _ => {}
        }
        if let Some(p) = self.table.iter().position(|(n, v)| n == name && v == value) {
            return integer(out, 0x80, 7, 62 + p);
        }
        let (first, bits) = if index { (0x40, 6) } else { (0x00, 4) };
        match static_name(name) {
            Some(i) => integer(out, first, bits, i),
            None => {
                out.push(first);
                string(out, name);
            }
        }
        string(out, value);
        if index {
            let size = name.len() + value.len() + 32;
            while self.size + size > TABLE_BYTES {
                let Some((n, v)) = self.table.pop_back() else {
                    break;
                };
                self.size -= n.len() + v.len() + 32;
            }
            self.table.push_front((name.to_owned(), value.to_owned()));
            self.size += size;
        }
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn data(out: &mut Vec<u8>, stream: u32, body: &[u8]) {
    let chunks: Vec<&[u8]> = body.chunks(16_384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let end = if i + 1 == chunks.len() { 1 } else { 0 };
        frame(out, 0, end, stream, chunk);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// TLS configurations made once: two client suites sharing one key log.
pub struct Tls {
    server: Arc<rustls::ServerConfig>,
    clients: Vec<Arc<rustls::ClientConfig>>,
    lines: Arc<Lines>,
}

impl Tls {
    pub fn new() -> Tls {
        let certified = rcgen::generate_simple_self_signed(vec!["api.example.com".to_owned()])
            .expect("a certificate");
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("version")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        server.alpn_protocols = vec![b"h2".to_vec()];
        server.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let lines = Arc::new(Lines::default());
        let clients = [
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ]
        .into_iter()
        .map(|suite| {
            let provider = Arc::new(rustls::crypto::CryptoProvider {
                cipher_suites: vec![suite],
                ..default_provider()
            });
            let mut c = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("version")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![b"h2".to_vec()];
            c.key_log = lines.clone();
            Arc::new(c)
        })
        .collect();
        Tls {
            server: Arc::new(server),
            clients,
            lines,
        }
    }

    /// The key log of every connection made so far.
    pub fn keylog(&self) -> String {
        self.lines.0.lock().expect("not poisoned").clone()
    }
}

/// Moves TLS bytes both ways until neither side has more; each write is one chunk, in order.
fn pump(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
    chunks: &mut Vec<(bool, Vec<u8>)>,
) {
    loop {
        let mut moved = false;
        while client.wants_write() {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).expect("write");
            let mut rest = &buf[..];
            while !rest.is_empty() {
                server.read_tls(&mut rest).expect("read");
                server.process_new_packets().expect("process");
                io::copy(&mut server.reader(), &mut io::sink()).ok();
            }
            chunks.push((true, buf));
            moved = true;
        }
        while server.wants_write() {
            let mut buf = Vec::new();
            server.write_tls(&mut buf).expect("write");
            let mut rest = &buf[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).expect("read");
                client.process_new_packets().expect("process");
                io::copy(&mut client.reader(), &mut io::sink()).ok();
            }
            chunks.push((false, buf));
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// One connection's TLS chunks, in the order they were sent.
fn connection(tls: &Tls, n: u64, rng: &mut Rng, requests: &mut u64) -> Vec<(bool, Vec<u8>)> {
    let host = format!("api{}.example.com", n % 50);
    let name = ServerName::try_from("api.example.com").expect("name");
    let config = tls.clients[(n % 2) as usize].clone();
    let mut client = ClientConnection::new(config, name).expect("client");
    let mut server = ServerConnection::new(tls.server.clone()).expect("server");
    let mut chunks = Vec::new();
    pump(&mut client, &mut server, &mut chunks);
    let (mut enc_client, mut enc_server) = (Hpack::default(), Hpack::default());
    let mut first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut first, 4, 0, 0, &[0, 1, 0, 0, 16, 0]);
    let mut settings = Vec::new();
    frame(&mut settings, 4, 0, 0, &[]);
    frame(&mut settings, 4, 1, 0, &[]);
    let mut server_first = true;
    for i in 0..8 + rng.below(16) {
        *requests += 1;
        let r = *requests;
        let stream = 2 * i as u32 + 1;
        let path = if r.is_multiple_of(10) {
            format!("/v1/sync/{r}?imei=356938035643809&t={}", rng.hex(8))
        } else {
            format!("/v1/sync/{r}?t={}", rng.hex(8))
        };
        let gzipped = r.is_multiple_of(2);
        let mut json = format!("{{\"event\":\"sync\",\"seq\":{r},\"payload\":\"{}\"", {
            let len = 2000 + rng.below(10_000) as usize;
            rng.hex(len)
        });
        if r.is_multiple_of(7) {
            json.push_str(",\"email\":\"asha.rao@example.in\"");
        }
        if gzipped && r.is_multiple_of(11) {
            json.push_str(",\"imsi\":\"404450123456789\"");
        }
        json.push('}');
        let body = if gzipped {
            gzip(json.as_bytes())
        } else {
            json.into_bytes()
        };
        let mut block = Vec::new();
        enc_client.field(&mut block, ":method", "POST", false);
        enc_client.field(&mut block, ":scheme", "https", false);
        enc_client.field(&mut block, ":authority", &host, true);
        enc_client.field(&mut block, ":path", &path, false);
        enc_client.field(&mut block, "user-agent", "okhttp/4.12.0", true);
        enc_client.field(&mut block, "x-android-id", "9774d56d682e549c", true);
        enc_client.field(&mut block, "content-type", "application/json", true);
        if gzipped {
            enc_client.field(&mut block, "content-encoding", "gzip", true);
        }
        let mut wire = if i == 0 { first.clone() } else { Vec::new() };
        frame(&mut wire, 1, 0x4, stream, &block);
        data(&mut wire, stream, &body);
        client.writer().write_all(&wire).expect("write");
        pump(&mut client, &mut server, &mut chunks);
        let mut answer = format!("{{\"ok\":true,\"seq\":{r},\"next\":\"{}\"", {
            let len = 1000 + rng.below(4000) as usize;
            rng.hex(len)
        });
        if r.is_multiple_of(13) {
            answer.push_str(",\"device\":\"R58M12ABCDE\"");
        }
        answer.push('}');
        let mut block = Vec::new();
        enc_server.field(&mut block, ":status", "200", false);
        enc_server.field(&mut block, "content-type", "application/json", true);
        let mut wire = if server_first {
            settings.clone()
        } else {
            Vec::new()
        };
        server_first = false;
        frame(&mut wire, 1, 0x4, stream, &block);
        data(&mut wire, stream, answer.as_bytes());
        server.writer().write_all(&wire).expect("write");
        pump(&mut client, &mut server, &mut chunks);
    }
    chunks
}

/// Writes about `bytes` bytes of HTTP/2-inside-TLS traffic as an Ethernet pcap; returns the key
/// log of its connections.
pub fn write(out: impl Write, bytes: u64, seed: u64) -> io::Result<String> {
    let tls = Tls::new();
    let mut w = PcapWriter::new(out, LinkType::ETHERNET)?;
    let mut rng = Rng(seed | 1);
    let (mut written, mut time_us) = (24_u64, 1_700_000_000_000_000_i64);
    let phone = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let (mut n, mut requests) = (0_u64, 0_u64);
    while written < bytes {
        n += 1;
        let client = SocketAddr::new(phone, 20000 + (n % 40000) as u16);
        let server = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(223, 5, 5, 1 + (n % 200) as u8)),
            443,
        );
        let chunks = connection(&tls, n, &mut rng, &mut requests);
        for packet in tcp_packets(client, server, &chunks) {
            let frame = synth::frame(LinkType::ETHERNET, &[], &packet);
            time_us += 20;
            written += 16 + frame.len() as u64;
            w.frame(time_us, &frame)?;
        }
    }
    w.into_inner().flush()?;
    Ok(tls.keylog())
}

/// A TCP connection carrying `chunks` in order, each cut into segments.
pub fn tcp_packets(
    client: SocketAddr,
    server: SocketAddr,
    chunks: &[(bool, Vec<u8>)],
) -> Vec<Vec<u8>> {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const FIN: u8 = 0x01;
    let (c, s) = (client.ip(), server.ip());
    let (cp, sp) = (client.port(), server.port());
    let (mut cseq, mut sseq) = (1000_u32, 5000_u32);
    let mut packets = vec![
        synth::ip(c, s, 6, &synth::tcp(cp, sp, cseq, 0, SYN, &[])),
        synth::ip(s, c, 6, &synth::tcp(sp, cp, sseq, cseq + 1, SYN | ACK, &[])),
    ];
    cseq += 1;
    sseq += 1;
    packets.push(synth::ip(
        c,
        s,
        6,
        &synth::tcp(cp, sp, cseq, sseq, ACK, &[]),
    ));
    for (from_client, data) in chunks {
        for piece in data.chunks(1448) {
            if *from_client {
                packets.push(synth::ip(
                    c,
                    s,
                    6,
                    &synth::tcp(cp, sp, cseq, sseq, ACK | PSH, piece),
                ));
                cseq = cseq.wrapping_add(piece.len() as u32);
            } else {
                packets.push(synth::ip(
                    s,
                    c,
                    6,
                    &synth::tcp(sp, cp, sseq, cseq, ACK | PSH, piece),
                ));
                sseq = sseq.wrapping_add(piece.len() as u32);
            }
        }
    }
    packets.push(synth::ip(
        c,
        s,
        6,
        &synth::tcp(cp, sp, cseq, sseq, FIN | ACK, &[]),
    ));
    packets.push(synth::ip(
        s,
        c,
        6,
        &synth::tcp(sp, cp, sseq, cseq + 1, FIN | ACK, &[]),
    ));
    packets
}
