//! QUIC and HTTP/3 parsers: long headers, Initial packet opening, frames, a whole connection
//! fed datagrams, HTTP/3 frames, QPACK encoder streams and field sections, Huffman strings;
//! and a made-up connection with real protection and its secrets, its datagrams fed in the
//! order the input picks (repeated, dropped, corrupted): packets before their keys.
//! Any input: values or `None`/errors, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sovereign_scan::quic::{conn, frame, h3, packet, qpack, synth};
use sovereign_scan::tls::keylog::KeyLog;

/// One made-up connection and its key log, built once.
fn built() -> &'static Option<(synth::Built, KeyLog)> {
    static BUILT: OnceLock<Option<(synth::Built, KeyLog)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exchange = synth::Exchange {
            path: "/v1/ping".into(),
            headers: vec![("x-imei".into(), "356938035643809".into())],
            body: b"{}".to_vec(),
            response_headers: Vec::new(),
            response_body: b"ok".to_vec(),
        };
        let built = synth::connection(&packet::V1, "a.example", 3, &[exchange.clone(), exchange])?;
        let mut keys = KeyLog::default();
        keys.add_text(&built.keylog, "fuzz").ok()?;
        Some((built, keys))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            // A datagram as the engine sees a new one, then the same bytes as frames.
            let _ = conn::starts_connection(rest);
            let _ = frame::frames(rest, &mut |_| {});
        }
        1 => {
            // A connection fed datagrams: each a length byte, then that many bytes.
            let client = "10.0.0.2:5000".parse().expect("a socket address");
            let server = "10.0.0.1:443".parse().expect("a socket address");
            let mut c = conn::Connection::new(client, server, &packet::V1, &[1; 8], 0, 1);
            let mut at = 0;
            while let Some(&len) = rest.get(at) {
                let end = (at + 1 + usize::from(len)).min(rest.len());
                let datagram = &rest[at + 1..end];
                c.datagram(len % 2 == 0, datagram, 1, 0, &|_| None);
                at = end;
            }
            let _ = c.hidden_because();
        }
        2 => {
            // An encoder stream, then a field section against the table it built.
            let cut = rest.len() / 2;
            let mut table = qpack::DynamicTable::default();
            table.max_capacity = 4096;
            let _ = table.encoder_stream(&rest[..cut]);
            let _ = table.field_section(&rest[cut..]);
            let _ = h3::message(rest, &table);
            let _ = h3::qpack_max_table_capacity(rest, 0);
        }
        3 => {
            let Some((built, keys)) = built() else {
                return;
            };
            let n = built.datagrams.len();
            let (client, server) = ("10.0.0.2:5000".parse(), "10.0.0.1:443".parse());
            let (Ok(client), Ok(server)) = (client, server) else {
                return;
            };
            let Some((version, dcid)) = conn::starts_connection(&built.datagrams[0].1) else {
                return;
            };
            let mut c = conn::Connection::new(client, server, version, &dcid, 0, 1);
            for &b in rest {
                let (from_client, datagram) = &built.datagrams[usize::from(b & 0x7f) % n];
                let mut datagram = datagram.clone();
                if b & 0x80 != 0
                    && let Some(last) = datagram.last_mut()
                {
                    *last ^= 1;
                }
                c.datagram(*from_client, &datagram, 1, 0, &|r| keys.get(r).cloned());
            }
            let _ = c.hidden_because();
        }
        _ => {
            let _ = sovereign_scan::protocols::hpack::huffman_decode(rest);
            let _ = packet::parse_long(rest);
            let _ = packet::varint(rest);
        }
    }
});
