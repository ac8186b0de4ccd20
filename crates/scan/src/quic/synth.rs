//! QUIC connections made up for tests and the benchmark: real packet protection (aws-lc-rs)
//! under made-up TLS secrets, with the key log lines that match. No TLS handshake is run: the
//! ClientHello and ServerHello carry what the scanner reads (random, SNI, ALPN, the cipher
//! suite), and the 1-RTT keys come from the made-up traffic secrets directly.
//!
//! Used for the QUIC versions aioquic does not speak (draft-29) and for the QUIC-heavy capture
//! of `bench/scan.sh`.

use crate::quic::packet::{self, Keys, Version};

/// One HTTP/3 request and its response on one stream.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub path: String,
    /// Request header fields besides the pseudo-headers, sent as QPACK literals.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
}

/// The datagrams of one connection (`true` when the client sent it) and its key log lines.
#[derive(Debug, Clone, Default)]
pub struct Built {
    pub datagrams: Vec<(bool, Vec<u8>)>,
    pub keylog: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn varint(value: u64, out: &mut Vec<u8>) {
    if value < 1 << 6 {
        out.push(value as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&(value as u16 | 0x4000).to_be_bytes());
    } else if value < 1 << 30 {
        out.extend_from_slice(&(value as u32 | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

fn client_hello(random: &[u8; 32], sni: &str) -> Vec<u8> {
    let mut ext = Vec::new();
    let name = sni.as_bytes();
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&((5 + name.len()) as u16).to_be_bytes());
    ext.extend_from_slice(&((3 + name.len()) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    ext.extend_from_slice(&[0, 16, 0, 5, 0, 3, 2, b'h', b'3']);
    ext.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    let mut body = vec![3, 3];
    body.extend_from_slice(random);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    handshake(1, &body)
}

fn server_hello(suite: u16) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&suite.to_be_bytes());
    body.push(0);
    body.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
    handshake(2, &body)
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

fn crypto_frame(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x06, 0];
    varint(data.len() as u64, &mut out);
    out.extend_from_slice(data);
    out
}

fn stream_frame(id: u64, offset: u64, data: &[u8], fin: bool) -> Vec<u8> {
    let mut out = vec![0x0e | u8::from(fin)];
    varint(id, &mut out);
    varint(offset, &mut out);
    varint(data.len() as u64, &mut out);
    out.extend_from_slice(data);
    out
}

/// A QPACK string literal without Huffman coding, with a `bits`-bit length prefix under `flags`.
fn qpack_string(flags: u8, bits: u32, text: &[u8], out: &mut Vec<u8>) {
    let max = (1usize << bits) - 1;
    if text.len() < max {
        out.push(flags | text.len() as u8);
    } else {
        out.push(flags | max as u8);
        let mut rest = text.len() - max;
        while rest >= 0x80 {
            out.push((rest as u8 & 0x7f) | 0x80);
            rest >>= 7;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(text);
}

/// An HTTP/3 HEADERS frame of literal field lines (no dynamic table).
fn headers_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = vec![0, 0];
    for (name, value) in fields {
        qpack_string(0x20, 3, name.as_bytes(), &mut block);
        qpack_string(0x00, 7, value.as_bytes(), &mut block);
    }
    let mut out = vec![0x01];
    varint(block.len() as u64, &mut out);
    out.extend_from_slice(&block);
    out
}

fn data_frame(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn long_packet(
    version: &Version,
    keys: &Keys,
    dcid: &[u8],
    scid: &[u8],
    pn: u64,
    mut payload: Vec<u8>,
    pad_to: usize,
) -> Option<Vec<u8>> {
    // Initial's type bits are those the version gives Initial (v2 changed them).
    let type_bits: u8 = if version.number == packet::V2.number {
        1
    } else {
        0
    };
    let mut header = vec![0xc0 | type_bits << 4 | 0x01]; // 2-byte packet number
    header.extend_from_slice(&version.number.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(scid.len() as u8);
    header.extend_from_slice(scid);
    header.push(0); // no token
    let overhead = header.len() + 2 + 2 + packet::TAG_BYTES;
    if overhead + payload.len() < pad_to {
        payload.resize(pad_to - overhead, 0); // PADDING frames
    }
    let length = 2 + payload.len() + packet::TAG_BYTES;
    header.extend_from_slice(&(length as u16 | 0x4000).to_be_bytes());
    header.extend_from_slice(&(pn as u16).to_be_bytes());
    packet::protect(keys, &header, pn, &payload)
}

fn short_packet(keys: &Keys, dcid: &[u8], pn: u64, payload: &[u8]) -> Option<Vec<u8>> {
    let mut header = vec![0x40 | 0x01];
    header.extend_from_slice(dcid);
    header.extend_from_slice(&(pn as u16).to_be_bytes());
    packet::protect(keys, &header, pn, payload)
}

/// Most stream bytes put in one 1-RTT packet.
const PACKET_PAYLOAD_BYTES: usize = 1200;

/// Builds one connection of `version` to `sni`: client and server Initial packets, then every
/// exchange on its own bidirectional stream in 1-RTT packets, the client's control stream
/// first. `seed` makes the client random, connection IDs and secrets differ per connection.
pub fn connection(
    version: &'static Version,
    sni: &str,
    seed: u64,
    exchanges: &[Exchange],
) -> Option<Built> {
    let mut random = [0u8; 32];
    random[..8].copy_from_slice(&seed.to_be_bytes());
    random[8..16].copy_from_slice(&(!seed).to_be_bytes());
    let client_cid = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes();
    let server_cid = seed.wrapping_add(0x1234_5678).to_be_bytes();
    let original_dcid = (seed ^ 0xa5a5_a5a5_a5a5_a5a5).to_be_bytes();
    let (client_initial, server_initial) = Keys::initial(version, &original_dcid)?;
    let suite = packet::suite(0x1301)?;
    let client_secret = [seed as u8 ^ 0x11; 32];
    let server_secret = [seed as u8 ^ 0x22; 32];
    let client_keys = Keys::from_secret(suite, version, &client_secret)?;
    let server_keys = Keys::from_secret(suite, version, &server_secret)?;
    let mut built = Built {
        datagrams: Vec::new(),
        keylog: format!(
            "CLIENT_TRAFFIC_SECRET_0 {r} {}\nSERVER_TRAFFIC_SECRET_0 {r} {}\n",
            hex(&client_secret),
            hex(&server_secret),
            r = hex(&random)
        ),
    };
    let hello = crypto_frame(&client_hello(&random, sni));
    built.datagrams.push((
        true,
        long_packet(
            version,
            &client_initial,
            &original_dcid,
            &client_cid,
            0,
            hello,
            1200,
        )?,
    ));
    let hello = crypto_frame(&server_hello(0x1301));
    built.datagrams.push((
        false,
        long_packet(
            version,
            &server_initial,
            &client_cid,
            &server_cid,
            0,
            hello,
            0,
        )?,
    ));
    let (mut client_pn, mut server_pn) = (0u64, 0u64);
    // The control stream: type 0, SETTINGS with no dynamic table.
    let control = [0x00, 0x04, 0x02, 0x01, 0x00];
    built.datagrams.push((
        true,
        short_packet(
            &client_keys,
            &server_cid,
            client_pn,
            &stream_frame(2, 0, &control, false),
        )?,
    ));
    client_pn += 1;
    for (i, exchange) in exchanges.iter().enumerate() {
        let id = 4 * i as u64;
        let mut fields: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", sni),
            (":path", &exchange.path),
        ];
        fields.extend(
            exchange
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let mut request = headers_frame(&fields);
        request.extend_from_slice(&data_frame(&exchange.body));
        let mut response_fields: Vec<(&str, &str)> = vec![(":status", "200")];
        response_fields.extend(
            exchange
                .response_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let mut response = headers_frame(&response_fields);
        response.extend_from_slice(&data_frame(&exchange.response_body));
        for (from_client, data) in [(true, &request), (false, &response)] {
            let chunks: Vec<&[u8]> = data.chunks(PACKET_PAYLOAD_BYTES).collect();
            let mut offset = 0u64;
            for (n, chunk) in chunks.iter().enumerate() {
                let frame = stream_frame(id, offset, chunk, n + 1 == chunks.len());
                offset += chunk.len() as u64;
                let datagram = if from_client {
                    client_pn += 1;
                    short_packet(&client_keys, &server_cid, client_pn - 1, &frame)?
                } else {
                    server_pn += 1;
                    short_packet(&server_keys, &client_cid, server_pn - 1, &frame)?
                };
                built.datagrams.push((from_client, datagram));
            }
        }
    }
    Some(built)
}
