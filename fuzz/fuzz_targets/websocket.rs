//! WebSocket frames and permessage-deflate on arbitrary streams, and the packet-layer
//! tunnels (IP-in-IP, GRE) on arbitrary payloads. The first byte picks the deflate settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::network::packet;
use sovereign_scan::protocols::websocket::{self, Deflate, Direction};

fuzz_target!(|data: &[u8]| {
    let Some((&settings, stream)) = data.split_first() else {
        return;
    };
    let deflate = match settings % 3 {
        0 => Deflate::Off,
        1 => Deflate::On {
            no_context_takeover: false,
        },
        _ => Deflate::On {
            no_context_takeover: true,
        },
    };
    let mut direction = Direction::new(deflate);
    // Twice through the same state: a context carried over must not break a second call.
    for _ in 0..2 {
        let parsed = direction.parse(stream);
        assert!(parsed.consumed <= stream.len());
        for message in &parsed.messages {
            assert!(message.data.len() <= websocket::MESSAGE_BYTES_MAX);
            assert!(message.offset < stream.len());
        }
    }
    // As a flow scanned in pieces: the stream cut at every 7th byte but the last piece.
    let mut direction = Direction::new(deflate);
    let mut pieces = stream.chunks(7).peekable();
    while let Some(piece) = pieces.next() {
        let parsed = if pieces.peek().is_some() {
            direction.parse_more(piece)
        } else {
            direction.parse(piece)
        };
        for message in &parsed.messages {
            assert!(message.data.len() <= websocket::MESSAGE_BYTES_MAX);
            assert!(message.offset <= piece.len());
        }
    }
    let _ = websocket::accepted_upgrade(stream, stream);
    let _ = websocket::Extensions::parse(&String::from_utf8_lossy(stream));
    for protocol in [packet::PROTO_IPIP, packet::PROTO_IPV6, packet::PROTO_GRE] {
        if let Some((ethertype, inner)) = packet::parse_tunnel(protocol, stream) {
            assert!(inner.len() <= stream.len());
            let _ = packet::parse_ip(ethertype, inner);
        }
    }
});
