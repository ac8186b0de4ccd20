//! One QUIC connection followed from its datagrams: connection IDs, the keys of each packet
//! number space, the ClientHello and ServerHello from the Initial CRYPTO frames, and the data
//! of every stream, reassembled and bounded.
//!
//! Initial packets open with keys derived from the client's first Destination Connection ID, so
//! every connection gets its ClientHello read (SNI, ALPN, versions). With the TLS 1.3 secrets
//! of its client random (from a key log), Handshake, 0-RTT and 1-RTT packets open too, and
//! their STREAM frames are kept for HTTP/3.
//!
//! A packet can come before its keys can be known: reordered ahead of the server's Initial
//! (whose ServerHello gives the suite, and whose Source Connection ID names the client's short
//! packets), or coalesced after the first Initial of a ClientHello too long for one (post-
//! quantum key shares) whose random finds the secrets. Such packets are kept, bounded by
//! [`QUIC_EARLY_PACKETS_MAX`] and [`QUIC_EARLY_BYTES_MAX`], and opened once the hellos are in;
//! without a key log nothing is kept past the ClientHello.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::quic::frame::{self, Frame};
use crate::quic::packet::{self, Keys, LongHeader, LongType, Version};
use crate::tls::keylog::{CLIENT_RANDOM_BYTES, Secrets};
use crate::transport::reassembly::{MARKS_MAX, Mark};

/// Most QUIC connections followed in one capture; later ones are counted in a warning.
pub const QUIC_CONNECTIONS_MAX: usize = 100_000;
/// Most streams kept per connection.
pub const QUIC_STREAMS_MAX: usize = 4096;
/// Most bytes kept of one direction of one stream.
pub const QUIC_STREAM_BYTES_MAX: usize = 16 << 20;
/// Most stream bytes kept per connection, all streams together.
pub const QUIC_CONNECTION_BYTES_MAX: usize = 64 << 20;
/// Most bytes of Initial CRYPTO data kept per direction (a ClientHello with post-quantum key
/// shares is a few KiB).
pub const QUIC_CRYPTO_BYTES_MAX: usize = 64 << 10;
/// Most connection IDs remembered per side.
pub const QUIC_CIDS_MAX: usize = 64;
/// Most warnings one connection keeps.
pub const QUIC_WARNINGS_MAX: usize = 8;
/// Most Handshake, 0-RTT and 1-RTT packets kept per connection that came before the keys to
/// open them could be known (reordered ahead of the ServerHello, or coalesced after the first
/// part of a ClientHello that takes two Initial packets); they are opened once the keys are.
pub const QUIC_EARLY_PACKETS_MAX: usize = 64;
/// Most bytes of such packets kept per connection.
pub const QUIC_EARLY_BYTES_MAX: usize = 128 << 10;

const _: () = assert!(QUIC_STREAM_BYTES_MAX <= QUIC_CONNECTION_BYTES_MAX);

const CLIENT: usize = 0;
const SERVER: usize = 1;
const INITIAL: usize = 0;
const HANDSHAKE: usize = 1;
const APPLICATION: usize = 2;

/// The bytes of one direction of a stream (or of the Initial CRYPTO data), by offset. Pieces
/// may come out of order or again (retransmissions); a piece not captured leaves zeros.
#[derive(Debug, Default, Clone)]
pub struct Buffer {
    pub data: Vec<u8>,
    /// Which frame brought which offset, sorted by offset.
    pub marks: Vec<Mark>,
    pub fin: bool,
    /// Bytes past the limit were dropped.
    pub truncated: bool,
}

impl Buffer {
    /// Writes `bytes` at `offset`, up to `max` bytes in all; returns how many new bytes the
    /// buffer grew by.
    fn write(&mut self, offset: u64, bytes: &[u8], max: usize, frame: u64, time_us: i64) -> usize {
        let Ok(start) = usize::try_from(offset) else {
            self.truncated = true;
            return 0;
        };
        if start >= max {
            self.truncated |= !bytes.is_empty();
            return 0;
        }
        let room = max - start;
        let bytes = if bytes.len() > room {
            self.truncated = true;
            &bytes[..room]
        } else {
            bytes
        };
        let end = start + bytes.len();
        let before = self.data.len();
        if end > before {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(bytes);
        if !bytes.is_empty() && self.marks.len() < MARKS_MAX {
            let at = self.marks.partition_point(|m| m.offset <= offset);
            self.marks.insert(
                at,
                Mark {
                    offset,
                    frame,
                    time_us,
                },
            );
        }
        self.data.len() - before
    }
}

/// What a ClientHello in an Initial packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub random: [u8; CLIENT_RANDOM_BYTES],
    pub server_name: Option<String>,
    pub alpn: Vec<String>,
    /// The TLS versions of `supported_versions`.
    pub tls_versions: Vec<u16>,
}

/// Longest server name kept.
const SERVER_NAME_BYTES_MAX: usize = 255;
/// Most ALPN names kept.
const ALPN_MAX: usize = 16;

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Parses a ClientHello body (after its 4-byte handshake header).
pub fn parse_client_hello(body: &[u8]) -> Option<Hello> {
    let random: [u8; CLIENT_RANDOM_BYTES] = body.get(2..34)?.try_into().ok()?;
    let mut at = 34;
    at += 1 + usize::from(*body.get(at)?); // legacy_session_id
    at += 2 + usize::from(u16_at(body, at)?); // cipher_suites
    at += 1 + usize::from(*body.get(at)?); // legacy_compression_methods
    let mut hello = Hello {
        random,
        server_name: None,
        alpn: Vec::new(),
        tls_versions: Vec::new(),
    };
    let Some(total) = u16_at(body, at) else {
        return Some(hello);
    };
    let list = body.get(at + 2..at + 2 + usize::from(total))?;
    let mut e = 0;
    while let (Some(kind), Some(len)) = (u16_at(list, e), u16_at(list, e + 2)) {
        let Some(ext) = list.get(e + 4..e + 4 + usize::from(len)) else {
            break;
        };
        e += 4 + usize::from(len);
        match kind {
            0 => {
                // server_name: list length, then (type, length, name).
                if let (Some(&0), Some(n)) = (ext.get(2), u16_at(ext, 3)) {
                    hello.server_name = ext
                        .get(5..5 + usize::from(n))
                        .filter(|name| name.len() <= SERVER_NAME_BYTES_MAX)
                        .and_then(|name| std::str::from_utf8(name).ok())
                        .map(str::to_ascii_lowercase);
                }
            }
            16 => {
                let mut p = 2;
                while let Some(&n) = ext.get(p) {
                    let Some(name) = ext.get(p + 1..p + 1 + usize::from(n)) else {
                        break;
                    };
                    if hello.alpn.len() < ALPN_MAX {
                        hello.alpn.push(String::from_utf8_lossy(name).into_owned());
                    }
                    p += 1 + usize::from(n);
                }
            }
            43 => {
                let n = usize::from(*ext.first().unwrap_or(&0));
                let mut p = 1;
                while p + 2 <= (n + 1).min(ext.len()) {
                    hello.tls_versions.extend(u16_at(ext, p));
                    p += 2;
                }
            }
            _ => {}
        }
    }
    Some(hello)
}

/// The cipher suite of a ServerHello body.
fn server_hello_suite(body: &[u8]) -> Option<u16> {
    let at = 34 + 1 + usize::from(*body.get(34)?);
    u16_at(body, at)
}

/// The first handshake message of `data` if it is complete and of type `kind`: its body.
fn handshake_message(data: &[u8], kind: u8) -> Option<&[u8]> {
    let [t, a, b, c, ..] = *data else {
        return None;
    };
    if t != kind {
        return None;
    }
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    data.get(4..4 + len)
}

/// The state of one QUIC connection.
pub struct Connection {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub version: &'static Version,
    pub first_time_us: i64,
    /// The order the connection was first seen in, for the report.
    pub order: u64,
    /// Connection IDs each side chose (the Destination Connection IDs of packets to it).
    cids: [Vec<Vec<u8>>; 2],
    keys: [[Option<Keys>; 2]; 3],
    zero_rtt: Option<Keys>,
    largest: [[Option<u64>; 2]; 3],
    pub crypto: [Buffer; 2],
    pub hello: Option<Hello>,
    pub cipher_suite: Option<u16>,
    secrets: Option<Secrets>,
    secrets_looked_up: bool,
    pub streams: BTreeMap<u64, [Buffer; 2]>,
    stream_bytes: usize,
    /// UDP payload bytes sent by the client and by the server.
    pub bytes: [u64; 2],
    /// Packets opened per space (0-RTT counts as application).
    pub opened: [u64; 3],
    /// Packets that should have opened under the keys we had and did not.
    pub failed: u64,
    /// Handshake, 0-RTT and 1-RTT packets seen without their keys.
    pub unkeyed: u64,
    /// Packets that came before their keys could be known, kept to be opened once they are.
    early: Vec<Early>,
    early_bytes: usize,
    pub close_reason: Option<String>,
    pub warnings: Vec<String>,
    /// The server's name from a DNS answer seen before the connection began.
    pub dns_host: Option<String>,
}

/// A packet kept until its keys are known.
#[derive(Debug, Clone)]
struct Early {
    side: usize,
    long: bool,
    data: Vec<u8>,
    frame: u64,
    time_us: i64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("client", &self.client)
            .field("server", &self.server)
            .field("version", &self.version.name)
            .field("hello", &self.hello)
            .field("opened", &self.opened)
            .finish()
    }
}

/// A datagram that starts a connection: a long-header Initial of a known version that opens
/// with the keys of its own Destination Connection ID, so its sender is the client.
pub fn starts_connection(datagram: &[u8]) -> Option<(&'static Version, Vec<u8>)> {
    let header = packet::parse_long(datagram).ok()?;
    if header.kind != LongType::Initial {
        return None;
    }
    let (mut client, _) = Keys::initial(header.version, header.dcid)?;
    let packet = datagram.get(..header.len)?;
    packet::open(&mut client, packet, header.pn_offset, None)?;
    Some((header.version, header.dcid.to_vec()))
}

impl Connection {
    pub fn new(
        client: SocketAddr,
        server: SocketAddr,
        version: &'static Version,
        initial_dcid: &[u8],
        time_us: i64,
        order: u64,
    ) -> Connection {
        let (c, s) = match Keys::initial(version, initial_dcid) {
            Some((c, s)) => (Some(c), Some(s)),
            None => (None, None),
        };
        Connection {
            client,
            server,
            version,
            first_time_us: time_us,
            order,
            cids: [Vec::new(), vec![initial_dcid.to_vec()]],
            keys: [[c, s], [None, None], [None, None]],
            zero_rtt: None,
            largest: [[None; 2]; 3],
            crypto: Default::default(),
            hello: None,
            cipher_suite: None,
            secrets: None,
            secrets_looked_up: false,
            streams: BTreeMap::new(),
            stream_bytes: 0,
            bytes: [0; 2],
            opened: [0; 3],
            failed: 0,
            unkeyed: 0,
            early: Vec::new(),
            early_bytes: 0,
            close_reason: None,
            warnings: Vec::new(),
            dns_host: None,
        }
    }

    fn warn(&mut self, message: String) {
        if self.warnings.len() < QUIC_WARNINGS_MAX {
            self.warnings.push(message);
        }
    }

    fn add_cid(&mut self, side: usize, cid: &[u8]) {
        let list = &mut self.cids[side];
        if list.len() < QUIC_CIDS_MAX && !list.iter().any(|c| c == cid) {
            list.push(cid.to_vec());
        }
    }

    /// Whether any 1-RTT (or 0-RTT) packet was opened: the content was visible.
    pub fn decrypted(&self) -> bool {
        self.opened[APPLICATION] > 0
    }

    /// Why the content was not visible, when it was not.
    pub fn hidden_because(&self) -> Option<String> {
        if self.decrypted() {
            return None;
        }
        let reason = if self.hello.is_none() {
            "the client's initial packets (its clienthello) were not captured whole".to_owned()
        } else if self.secrets.is_none() {
            "no key log entry for its client random: only the initial packets (sni, alpn) were read"
                .to_owned()
        } else if self.cipher_suite.is_none() {
            "the server's initial packet (its serverhello) was not captured".to_owned()
        } else if self.cipher_suite.and_then(packet::suite).is_none() {
            format!(
                "cipher suite 0x{:04x} is not one quic packets can be opened with here",
                self.cipher_suite.unwrap_or(0)
            )
        } else if self.keys[APPLICATION].iter().all(Option::is_none) {
            "the key log has no CLIENT_TRAFFIC_SECRET_0 or SERVER_TRAFFIC_SECRET_0 for it"
                .to_owned()
        } else if self.failed > 0 {
            format!(
                "{} packets did not open with the logged secrets",
                self.failed
            )
        } else {
            "no 1-rtt packet was captured".to_owned()
        };
        Some(reason)
    }

    /// Takes one UDP datagram of this connection.
    pub fn datagram(
        &mut self,
        from_client: bool,
        data: &[u8],
        frame: u64,
        time_us: i64,
        lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>,
    ) {
        let side = if from_client { CLIENT } else { SERVER };
        self.bytes[side] += data.len() as u64;
        let mut rest = data;
        // Coalesced packets (RFC 9000 12.2): long headers carry their length; a short header
        // runs to the end of the datagram.
        while let Some(&first) = rest.first() {
            if first & 0x80 == 0 {
                if first & 0x40 != 0 {
                    self.short_packet(side, rest, frame, time_us);
                }
                break;
            }
            let Ok(header) = packet::parse_long(rest) else {
                break;
            };
            let (packet, next) = rest.split_at(header.len);
            self.long_packet(side, packet, &header, frame, time_us, lookup);
            rest = next;
        }
    }

    fn long_packet(
        &mut self,
        side: usize,
        data: &[u8],
        header: &LongHeader<'_>,
        frame: u64,
        time_us: i64,
        lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>,
    ) {
        self.add_cid(side, header.scid);
        let space = match header.kind {
            LongType::Retry => {
                // The client starts over with the Retry's Source Connection ID (RFC 9001 5.2).
                if side == SERVER
                    && let Some((c, s)) = Keys::initial(self.version, header.scid)
                {
                    self.keys[INITIAL] = [Some(c), Some(s)];
                    self.largest[INITIAL] = [None; 2];
                }
                return;
            }
            LongType::Initial => INITIAL,
            LongType::Handshake => HANDSHAKE,
            LongType::ZeroRtt => APPLICATION,
        };
        let keys = if header.kind == LongType::ZeroRtt {
            self.zero_rtt.as_mut()
        } else {
            self.keys[space][side].as_mut()
        };
        let Some(keys) = keys else {
            self.keep_early(side, true, data, frame, time_us);
            return;
        };
        let Some(opened) = packet::open(keys, data, header.pn_offset, self.largest[space][side])
        else {
            self.failed += 1;
            return;
        };
        self.opened_packet(side, space, opened, frame, time_us, lookup);
    }

    fn short_packet(&mut self, side: usize, data: &[u8], frame: u64, time_us: i64) {
        // The Destination Connection ID is one the other side chose; its length is not on
        // the wire, so it is found among those IDs.
        let peer = 1 - side;
        let Some(cid_len) = self.cids[peer]
            .iter()
            .filter(|c| data.get(1..1 + c.len()) == Some(c.as_slice()))
            .map(Vec::len)
            .max()
        else {
            self.keep_early(side, false, data, frame, time_us);
            return;
        };
        let Some(keys) = self.keys[APPLICATION][side].as_mut() else {
            self.keep_early(side, false, data, frame, time_us);
            return;
        };
        let Some(opened) = packet::open(keys, data, 1 + cid_len, self.largest[APPLICATION][side])
        else {
            self.failed += 1;
            return;
        };
        self.opened_packet(side, APPLICATION, opened, frame, time_us, &|_| None);
    }

    fn opened_packet(
        &mut self,
        side: usize,
        space: usize,
        opened: packet::Opened,
        frame: u64,
        time_us: i64,
        lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>,
    ) {
        self.opened[space] += 1;
        let largest = &mut self.largest[space][side];
        *largest = Some(largest.map_or(opened.pn, |l| l.max(opened.pn)));
        let mut crypto: Vec<(u64, &[u8])> = Vec::new();
        let mut streams: Vec<(u64, u64, &[u8], bool)> = Vec::new();
        let mut cids: Vec<&[u8]> = Vec::new();
        let mut close = None;
        let result = frame::frames(&opened.payload, &mut |f| match f {
            Frame::Crypto { offset, data } => crypto.push((offset, data)),
            Frame::Stream {
                id,
                offset,
                data,
                fin,
            } => streams.push((id, offset, data, fin)),
            Frame::NewConnectionId { cid } => cids.push(cid),
            Frame::ConnectionClose { code, reason } => {
                close = Some(format!(
                    "closed with error 0x{code:x}: {}",
                    String::from_utf8_lossy(reason)
                ));
            }
        });
        if let Err(e) = result {
            self.warn(format!("packet {} : {e}", opened.pn));
        }
        for cid in cids {
            self.add_cid(side, cid);
        }
        if close.is_some() {
            self.close_reason = close;
        }
        if space == INITIAL {
            for (offset, data) in crypto {
                self.crypto[side].write(offset, data, QUIC_CRYPTO_BYTES_MAX, frame, time_us);
            }
            self.read_hellos(lookup);
            self.open_early(lookup);
        }
        for (id, offset, data, fin) in streams {
            self.stream(side, id, offset, data, fin, frame, time_us);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stream(
        &mut self,
        side: usize,
        id: u64,
        offset: u64,
        data: &[u8],
        fin: bool,
        frame: u64,
        time_us: i64,
    ) {
        if !self.streams.contains_key(&id) && self.streams.len() >= QUIC_STREAMS_MAX {
            self.warn(format!(
                "more than {QUIC_STREAMS_MAX} streams; stream {id} and later ones are not kept"
            ));
            return;
        }
        let room = QUIC_CONNECTION_BYTES_MAX.saturating_sub(self.stream_bytes);
        let buffers = self.streams.entry(id).or_default();
        let buffer = &mut buffers[side];
        let max = QUIC_STREAM_BYTES_MAX.min(buffer.data.len() + room);
        let was_truncated = buffer.truncated;
        let grown = buffer.write(offset, data, max, frame, time_us);
        buffer.fin |= fin;
        let now_truncated = buffer.truncated;
        self.stream_bytes += grown;
        if now_truncated && !was_truncated {
            self.warn(format!(
                "stream {id} is longer than {QUIC_STREAM_BYTES_MAX} bytes (or the connection's \
                 streams than {QUIC_CONNECTION_BYTES_MAX}); the rest is not kept"
            ));
        }
    }

    /// Whether keys not known yet may still come: the ClientHello (whose random finds the
    /// secrets) or, with secrets, the ServerHello (whose suite derives the keys) is missing.
    fn keys_may_come(&self) -> bool {
        !self.secrets_looked_up || (self.secrets.is_some() && self.cipher_suite.is_none())
    }

    /// A packet that did not find its keys (or, short, its connection ID): kept while they may
    /// still come, within [`QUIC_EARLY_PACKETS_MAX`] and [`QUIC_EARLY_BYTES_MAX`].
    fn keep_early(&mut self, side: usize, long: bool, data: &[u8], frame: u64, time_us: i64) {
        if !self.keys_may_come() {
            self.unkeyed += 1;
            return;
        }
        if self.early.len() >= QUIC_EARLY_PACKETS_MAX
            || self.early_bytes + data.len() > QUIC_EARLY_BYTES_MAX
        {
            self.unkeyed += 1;
            self.warn(format!(
                "more than {QUIC_EARLY_PACKETS_MAX} packets ({QUIC_EARLY_BYTES_MAX} bytes) came before their keys could be known; later ones are not opened"
            ));
            return;
        }
        self.early_bytes += data.len();
        self.early.push(Early {
            side,
            long,
            data: data.to_vec(),
            frame,
            time_us,
        });
    }

    /// Opens the packets kept for their keys, now that the hellos may have brought them; what
    /// still has no keys is kept again while they may come.
    fn open_early(&mut self, lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>) {
        if self.early.is_empty() {
            return;
        }
        let ready = self.keys[HANDSHAKE].iter().any(Option::is_some)
            || self.keys[APPLICATION].iter().any(Option::is_some)
            || self.zero_rtt.is_some();
        if !ready && self.keys_may_come() {
            return;
        }
        let early = std::mem::take(&mut self.early);
        self.early_bytes = 0;
        for e in early {
            if !e.long {
                self.short_packet(e.side, &e.data, e.frame, e.time_us);
            } else if let Ok(header) = packet::parse_long(&e.data) {
                // Only Handshake and 0-RTT packets are kept: their opening reads no hello.
                self.long_packet(e.side, &e.data, &header, e.frame, e.time_us, lookup);
            }
        }
    }

    fn read_hellos(&mut self, lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>) {
        if self.hello.is_none()
            && let Some(body) = handshake_message(&self.crypto[CLIENT].data, 1)
        {
            self.hello = parse_client_hello(body);
        }
        if self.cipher_suite.is_none()
            && let Some(body) = handshake_message(&self.crypto[SERVER].data, 2)
        {
            self.cipher_suite = server_hello_suite(body);
        }
        if !self.secrets_looked_up
            && let Some(hello) = &self.hello
        {
            self.secrets_looked_up = true;
            self.secrets = lookup(&hello.random);
            self.install_keys();
        }
        if self.cipher_suite.is_some() && self.keys[HANDSHAKE][CLIENT].is_none() {
            self.install_keys();
        }
    }

    /// Derives what the secrets and the negotiated suite allow. 0-RTT comes before the
    /// ServerHello, so it is tried with TLS_AES_128_GCM_SHA256 until the suite is known.
    fn install_keys(&mut self) {
        let Some(secrets) = &self.secrets else {
            return;
        };
        let version = self.version;
        let derive = |suite: Option<packet::Suite>,
                      secret: &Option<zeroize::Zeroizing<Vec<u8>>>| {
            Keys::from_secret(suite?, version, secret.as_ref()?)
        };
        let zero_rtt_suite = packet::suite(self.cipher_suite.unwrap_or(0x1301));
        if self.opened[APPLICATION] == 0 {
            self.zero_rtt = derive(zero_rtt_suite, &secrets.client_early);
        }
        let suite = self.cipher_suite.and_then(packet::suite);
        if suite.is_none() {
            return;
        }
        self.keys[HANDSHAKE] = [
            derive(suite, &secrets.client_handshake),
            derive(suite, &secrets.server_handshake),
        ];
        self.keys[APPLICATION] = [
            derive(suite, &secrets.client_traffic_0),
            derive(suite, &secrets.server_traffic_0),
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_take_pieces_out_of_order_and_stop_at_their_limit() {
        let mut b = Buffer::default();
        assert_eq!(b.write(3, b"def", 8, 2, 0), 6);
        assert_eq!(b.write(0, b"abc", 8, 1, 0), 0);
        assert_eq!(b.data, b"abcdef");
        assert_eq!(b.marks.iter().map(|m| m.frame).collect::<Vec<_>>(), [1, 2]);
        assert!(!b.truncated);
        assert_eq!(b.write(6, b"ghij", 8, 3, 0), 2);
        assert_eq!(b.data, b"abcdefgh");
        assert!(b.truncated);
        assert_eq!(b.write(u64::MAX, b"x", 8, 4, 0), 0);
    }

    fn connection() -> Connection {
        let a: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let b: SocketAddr = "223.5.5.5:443".parse().unwrap();
        Connection::new(a, b, &packet::V1, &[1, 2, 3, 4], 0, 1)
    }

    #[test]
    fn quic_stream_bytes_max_and_streams_max_are_enforced() {
        let mut c = connection();
        let end = QUIC_STREAM_BYTES_MAX as u64;
        c.stream(CLIENT, 0, end - 2, b"abcd", false, 1, 0);
        let kept = &c.streams[&0][CLIENT];
        assert_eq!(kept.data.len(), QUIC_STREAM_BYTES_MAX);
        assert_eq!(&kept.data[QUIC_STREAM_BYTES_MAX - 2..], b"ab");
        assert!(kept.truncated);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let mut c = connection();
        for id in 0..=QUIC_STREAMS_MAX as u64 {
            c.stream(CLIENT, id * 4, 0, b"x", true, 1, 0);
        }
        assert_eq!(c.streams.len(), QUIC_STREAMS_MAX);
        assert!(c.warnings[0].contains("streams"), "{:?}", c.warnings);
    }

    #[test]
    fn quic_connection_bytes_max_is_enforced_over_all_streams() {
        let mut c = connection();
        let streams = QUIC_CONNECTION_BYTES_MAX / QUIC_STREAM_BYTES_MAX;
        for id in 0..streams as u64 {
            c.stream(
                CLIENT,
                id * 4,
                QUIC_STREAM_BYTES_MAX as u64 - 1,
                b"y",
                false,
                1,
                0,
            );
        }
        assert_eq!(c.stream_bytes, QUIC_CONNECTION_BYTES_MAX);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        c.stream(CLIENT, streams as u64 * 4, 0, b"z", false, 1, 0);
        assert_eq!(c.stream_bytes, QUIC_CONNECTION_BYTES_MAX);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn a_client_hello_gives_sni_alpn_and_versions() {
        let mut ext = Vec::new();
        let name = b"Quic.Example";
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((5 + name.len()) as u16).to_be_bytes());
        ext.extend_from_slice(&((3 + name.len()) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        ext.extend_from_slice(&[0, 16, 0, 8, 0, 6, 2, b'h', b'3', 2, b'h', b'q']);
        ext.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let hello = parse_client_hello(&body).unwrap();
        assert_eq!(hello.random, [9; 32]);
        assert_eq!(hello.server_name.as_deref(), Some("quic.example"));
        assert_eq!(hello.alpn, ["h3", "hq"]);
        assert_eq!(hello.tls_versions, [0x0304]);
        for cut in 0..34 {
            assert_eq!(parse_client_hello(&body[..cut]), None);
        }
    }
}
