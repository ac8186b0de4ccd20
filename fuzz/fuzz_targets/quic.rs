//! QUIC and HTTP/3 parsers: long headers, Initial packet opening, frames, a whole connection
//! fed datagrams, HTTP/3 frames, QPACK encoder streams and field sections, Huffman strings.
//! Any input: values or `None`/errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::quic::{conn, frame, h3, packet, qpack};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
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
        _ => {
            let _ = sovereign_scan::protocols::hpack::huffman_decode(rest);
            let _ = packet::parse_long(rest);
            let _ = packet::varint(rest);
        }
    }
});
