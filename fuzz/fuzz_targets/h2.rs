//! HTTP/2 frames and HPACK: the input is split in two (client and server bytes) and read by one
//! connection, so both dynamic tables and the authority map see hostile data; and the whole
//! input is also decoded as one header block. A stream opened by extended CONNECT has its DATA
//! read as WebSocket frames, as the engine does; and each direction read in two pieces. Any input: streams and warnings, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::protocols::{grpc, h2, hpack, websocket};

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (client, server) = data.split_at(cut);
    let mut conn = h2::Connection::default();
    // As a flow scanned in pieces: each direction cut in two, the first part read with more
    // to come, at a base that continues it or (as decrypted TLS does) starts again at 0.
    let piece = data.get(1).map_or(0, |&b| usize::from(b));
    for (to_server, bytes) in [(true, client), (false, server)] {
        let (first, second) = bytes.split_at(piece.min(bytes.len()));
        let _ = conn.read_more(to_server, first, 0);
        let base = if piece % 2 == 0 { first.len() } else { 0 };
        let _ = conn.read(to_server, second, base);
    }
    let mut conn = h2::Connection::default();
    for _ in 0..2 {
        for to_server in [true, false] {
            let parsed = conn.read(to_server, if to_server { client } else { server }, 0);
            for stream in parsed.streams {
                if let Some(ws) = conn.websocket(stream.stream) {
                    let ext = websocket::Extensions::parse(ws.offer.as_deref().unwrap_or(""));
                    let _ =
                        websocket::Direction::new(ext.deflate_for(to_server)).parse(&stream.body);
                }
            }
        }
    }
    let mut headers = Vec::new();
    let _ = hpack::Decoder::default().decode(data, &mut headers);
    let _ = grpc::messages(data);
    let _ = grpc::decode_text(data);
});
