//! A capture shaped like a phone's traffic, for the benchmark and the tests: many short
//! connections, each one request of a few KB (JSON, form, base64 and gzip bodies) and a
//! hex-heavy response, a DNS lookup before each new server, some UDP, several connections open
//! at once with their packets interleaved. One request in 20 carries an identifier of
//! `bench/scan-profile.toml` (the test profile), plain, URL-encoded, in base64 or gzipped.
//!
//! Deterministic: the same seed and size give the same bytes.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine as _;

use crate::network::packet::LinkType;
use crate::synth::{self, PcapWriter};

/// Connections open at once; their packets are interleaved.
pub const CONNECTIONS_OPEN: usize = 8;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn filler(rng: &mut Rng, bytes: usize) -> String {
    const WORDS: [&str; 12] = [
        "session",
        "locale",
        "en_IN",
        "screen",
        "1080x2340",
        "battery",
        "87",
        "network",
        "wifi",
        "build",
        "UP1A.231005",
        "theme",
    ];
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        out.push_str(WORDS[rng.below(WORDS.len())]);
        out.push(' ');
    }
    out
}

fn hex(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        out.push_str(&format!("{:016x}", rng.next()));
    }
    out
}

/// One request: its head and body, by kind.
/// `planted`: the kind of body that carries an identifier, 0 to 3.
fn request(rng: &mut Rng, host: &str, planted: Option<usize>) -> Vec<u8> {
    let size = 1000 + rng.below(4000);
    let kind = planted.unwrap_or_else(|| rng.below(4));
    let secret = match (planted.is_some(), kind) {
        (false, _) => String::new(),
        (true, 0) => "\"imei\":\"356938035643809\",".to_owned(),
        (true, 1) => "phone=%2B919876543210&".to_owned(),
        (true, 2) => base64::engine::general_purpose::STANDARD.encode("imsi=404450123456789"),
        (true, _) => "asha.rao@example.in ".to_owned(),
    };
    let text = filler(rng, size);
    let (content_type, extra, body) = match kind {
        0 => (
            "application/json",
            "",
            format!("{{{secret}\"events\":\"{text}\"}}").into_bytes(),
        ),
        1 => (
            "application/x-www-form-urlencoded",
            "",
            format!("{secret}q={}", text.replace(' ', "+")).into_bytes(),
        ),
        2 => (
            "application/json",
            "",
            format!(
                "{{\"blob\":\"{secret}{}\"}}",
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
            )
            .into_bytes(),
        ),
        _ => (
            "text/plain",
            "Content-Encoding: gzip\r\n",
            gzip(format!("{secret}{text}").as_bytes()),
        ),
    };
    let mut r = format!(
        "POST /v1/collect HTTP/1.1\r\nHost: {host}\r\nUser-Agent: okhttp/4.12.0\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

fn response(rng: &mut Rng) -> Vec<u8> {
    let bytes = 200 + rng.below(1500);
    let body = format!("{{\"token\":\"{}\"}}", hex(rng, bytes));
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}

/// A DNS response naming `host` as `address` (one question, one A answer).
fn dns_answer(id: u16, host: &str, address: Ipv4Addr) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    for label in host.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    m.extend_from_slice(&address.octets());
    m
}

/// Writes about `bytes` bytes of phone-shaped traffic as an Ethernet pcap to `out`; the bytes
/// written.
///
/// # Errors
/// When writing to `out` fails.
pub fn write(out: impl Write, bytes: u64, seed: u64) -> io::Result<u64> {
    let mut w = PcapWriter::new(out, LinkType::ETHERNET)?;
    // The pcap header; each frame adds its own 16-byte header.
    let mut written = 24_u64;
    let mut rng = Rng(seed | 1);
    let phone = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let resolver = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 53);
    // Servers in several countries of the shipped database: China, the US, India, Germany.
    let prefixes = [[223, 5, 5], [8, 8, 4], [103, 21, 124], [46, 4, 0]];
    let time_us = 1_700_000_000_000_000_i64;
    let mut port = 30000_u16;
    let mut request_count = 0_u64;
    // Packets of the connections open now, each drained one packet at a time in turn.
    let mut open: Vec<std::collections::VecDeque<Vec<u8>>> = Vec::new();
    let mut time_us = time_us;
    let mut frame = |w: &mut PcapWriter<_>, packet: &[u8]| {
        time_us += 50 + (packet.len() as i64 % 7);
        let data = synth::frame(LinkType::ETHERNET, &[], packet);
        written += 16 + data.len() as u64;
        w.frame(time_us, &data).map(|()| written)
    };
    let mut done = 24;
    while done < bytes {
        while open.len() < CONNECTIONS_OPEN {
            let n = rng.below(200);
            let prefix = prefixes[n % prefixes.len()];
            let server_ip = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], (n % 250) as u8 + 1);
            let host = format!("api{n}.example.com");
            // A lookup first, as a phone does; DNS names hosts of the flows after it.
            let answer = dns_answer(n as u16, &host, server_ip);
            let dns = synth::ip(
                resolver.ip(),
                phone,
                17,
                &synth::udp(53, 40000 + (n as u16), &answer),
            );
            done = frame(&mut w, &dns)?;
            if rng.below(10) == 0 {
                // Some UDP besides: a datagram to the same server.
                let payload = hex(&mut rng, 200);
                let datagram = synth::ip(
                    phone,
                    IpAddr::V4(server_ip),
                    17,
                    &synth::udp(port, 443, payload.as_bytes()),
                );
                done = frame(&mut w, &datagram)?;
            }
            request_count += 1;
            let planted = request_count
                .is_multiple_of(20)
                .then_some((request_count / 20 % 4) as usize);
            port = if port >= 65000 { 30000 } else { port + 1 };
            // One connection in 8 is a push channel speaking its own binary protocol, not
            // HTTP: its host is known from the DNS answer alone.
            let (request, response, server_port) = if request_count % 8 == 3 {
                let mut hello = format!("\x00\x01push {n} ").into_bytes();
                if request_count % 24 == 3 {
                    hello.extend_from_slice(b"device 356938035643809 ");
                }
                hello.extend_from_slice(hex(&mut rng, 300).as_bytes());
                (hello, hex(&mut rng, 100).into_bytes(), 5228)
            } else {
                (request(&mut rng, &host, planted), response(&mut rng), 80)
            };
            let packets = synth::tcp_conversation(
                SocketAddr::new(phone, port),
                SocketAddr::new(IpAddr::V4(server_ip), server_port),
                &request,
                &response,
                1448,
            );
            open.push(packets.into());
        }
        let turn = rng.below(open.len());
        if let Some(packet) = open[turn].pop_front() {
            done = frame(&mut w, &packet)?;
        }
        if open[turn].is_empty() {
            open.swap_remove(turn);
        }
    }
    for mut packets in open {
        while let Some(packet) = packets.pop_front() {
            done = frame(&mut w, &packet)?;
        }
    }
    let mut out = w.into_inner();
    out.flush()?;
    Ok(done)
}
