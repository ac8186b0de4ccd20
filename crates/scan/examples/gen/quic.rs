//! The QUIC-heavy benchmark capture (bench/scan.sh `quic`), shared by gen_capture and the test
//! that scans a small one (tests/it/bench_captures.rs).
//!
//! Many QUIC v1 connections from `sovereign_scan::quic::synth` (real packet protection under
//! made-up TLS secrets, with their key log lines), each with 4 to 15 HTTP/3 POSTs of JSON bodies
//! and their answers. Planted from bench/scan-profile.toml: the IMEI in `:path` (every 10th
//! request), the Android ID in a header (every 3rd), the e-mail in request bodies (every 7th),
//! the serial in responses (every 13th).

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sovereign_scan::network::packet::LinkType;
use sovereign_scan::quic::{packet as quic_packet, synth as quic_synth};
use sovereign_scan::synth::{self, PcapWriter};

fn hex(seed: &mut u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            char::from(b"0123456789abcdef"[(*seed % 16) as usize])
        })
        .collect()
}

/// Writes about `bytes` bytes of QUIC traffic as an Ethernet pcap; returns the key log.
pub fn write(out: impl Write, bytes: u64, seed: u64) -> io::Result<String> {
    let mut w = PcapWriter::new(out, LinkType::ETHERNET)?;
    let mut rng = seed | 1;
    let (mut written, mut time_us) = (24_u64, 1_700_000_000_000_000_i64);
    let phone = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let (mut n, mut requests) = (0_u64, 0_u64);
    let mut keylog = String::new();
    while written < bytes {
        n += 1;
        let count = 4 + rng % 12;
        let exchanges: Vec<quic_synth::Exchange> = (0..count)
            .map(|_| {
                requests += 1;
                let r = requests;
                let path = if r.is_multiple_of(10) {
                    format!("/v1/events/{r}?imei=356938035643809")
                } else {
                    format!("/v1/events/{r}")
                };
                let mut headers = vec![
                    ("user-agent".to_owned(), "cronet/120.0".to_owned()),
                    ("content-type".to_owned(), "application/json".to_owned()),
                ];
                if r.is_multiple_of(3) {
                    headers.push(("x-android-id".to_owned(), "9774d56d682e549c".to_owned()));
                }
                let filler = 2000 + (rng % 8000) as usize;
                let mut body = format!("{{\"seq\":{r},\"payload\":\"{}\"", hex(&mut rng, filler));
                if r.is_multiple_of(7) {
                    body.push_str(",\"email\":\"asha.rao@example.in\"");
                }
                body.push('}');
                let mut answer = format!("{{\"ok\":true,\"next\":\"{}\"", hex(&mut rng, 1500));
                if r.is_multiple_of(13) {
                    answer.push_str(",\"device\":\"R58M12ABCDE\"");
                }
                answer.push('}');
                quic_synth::Exchange {
                    path,
                    headers,
                    body: body.into_bytes(),
                    response_headers: vec![(
                        "content-type".to_owned(),
                        "application/json".to_owned(),
                    )],
                    response_body: answer.into_bytes(),
                }
            })
            .collect();
        let sni = format!("edge{}.example.com", n % 50);
        let Some(built) = quic_synth::connection(&quic_packet::V1, &sni, n, &exchanges) else {
            return Err(io::Error::other("quic synth could not protect a packet"));
        };
        keylog.push_str(&built.keylog);
        let client = SocketAddr::new(phone, 20000 + (n % 40000) as u16);
        let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 4, 1 + (n % 200) as u8)), 443);
        for (from_client, datagram) in &built.datagrams {
            let (src, dst) = if *from_client {
                (client, server)
            } else {
                (server, client)
            };
            let packet = synth::ip(
                src.ip(),
                dst.ip(),
                17,
                &synth::udp(src.port(), dst.port(), datagram),
            );
            let frame = synth::frame(LinkType::ETHERNET, &[], &packet);
            time_us += 20;
            written += 16 + frame.len() as u64;
            w.frame(time_us, &frame)?;
        }
    }
    w.into_inner().flush()?;
    Ok(keylog)
}
