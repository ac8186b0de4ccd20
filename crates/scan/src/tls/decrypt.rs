//! TLS 1.2 and 1.3 decryption of one TCP flow, from logged secrets.
//!
//! The flow's two reassembled streams are cut into TLS records. The ClientHello gives the client
//! random (which finds the session's secrets in the key log) and the server name; the
//! ServerHello gives the version (its `supported_versions` extension for 1.3), the cipher suite
//! and the server random. From those and the secrets we derive each direction's AEAD key and IV
//! and open its records in order:
//!
//! - TLS 1.2 (RFC 5246, 5288, 7905): the key block is the PRF of the master secret; a direction
//!   is encrypted from its ChangeCipherSpec on, with sequence numbers from 0. AES-GCM nonces are
//!   the 4-byte implicit salt and the record's 8-byte explicit nonce; ChaCha20-Poly1305 nonces
//!   are the 12-byte IV XOR the sequence number. The additional data is the sequence number,
//!   type, version and plaintext length.
//! - TLS 1.3 (RFC 8446): HKDF-Expand-Label "key" and "iv" of the handshake traffic secret until
//!   that side's Finished, then of `*_TRAFFIC_SECRET_0`, then of each next secret after a
//!   KeyUpdate; sequence numbers restart with every key; the additional data is the record
//!   header; the real content type is the last non-zero byte of the plaintext. A client that
//!   offers 0-RTT starts under its early traffic secret until EndOfEarlyData, or until a record
//!   that does not open under it (the server refused the early data).
//!
//! Only application data comes out. A record that fails authentication (a wrong key or a
//! corrupted capture) stops decryption of that direction with a warning; so does a gap in the
//! stream, since the sequence number after it is unknown. Nothing here panics on bad input:
//! every length is checked before it is used, and every buffer has a bound below.
//!
//! The cryptography is aws-lc-rs: its AEADs, HKDF and TLS 1.2 PRF (see ARCHITECTURE.md).

use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use crate::tls::cipher::{self, NONCE_BYTES, RecordKey, Version};
use crate::tls::keylog::{CLIENT_RANDOM_BYTES, Secrets};
use crate::tls::suites::{Hash, Protection};
use crate::transport::reassembly::{MARKS_MAX, Mark, Run};

/// Longest TLS record body we accept: 2^14 bytes of plaintext plus 2048 of expansion
/// (RFC 5246 6.2.3; TLS 1.3 allows only 256). A longer length means we are not looking at TLS.
pub const RECORD_BYTES_MAX: usize = (1 << 14) + 2048;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 5;
/// Longest handshake message we reassemble (ClientHello, ServerHello, Finished, KeyUpdate);
/// longer ones (large certificate chains) are skipped, they are never needed.
pub const HANDSHAKE_MESSAGE_BYTES_MAX: usize = 1 << 16;
/// Most records read at the start of a stream looking for the hellos.
pub const HELLO_RECORDS_MAX: usize = 16;
/// Most 0-RTT records skipped unread (early data offered without its secret in the key logs)
/// before a record that still does not open counts as an authentication failure.
pub const EARLY_DATA_RECORDS_MAX: u64 = 64;
/// Most warnings one flow keeps.
pub const FLOW_WARNINGS_MAX: usize = 8;
/// Longest server name kept.
pub const SERVER_NAME_BYTES_MAX: usize = 255;

const _: () = assert!(HANDSHAKE_MESSAGE_BYTES_MAX >= RECORD_BYTES_MAX);

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_SERVER_HELLO: u8 = 2;
const HANDSHAKE_END_OF_EARLY_DATA: u8 = 5;
const HANDSHAKE_FINISHED: u8 = 20;
const HANDSHAKE_KEY_UPDATE: u8 = 24;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXTENSION_EARLY_DATA: u16 = 0x002a;
const EXTENSION_ENCRYPT_THEN_MAC: u16 = 0x0016;
/// The ServerHello random that marks a HelloRetryRequest (RFC 8446 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

pub use crate::tls::suites::{SUITES, Suite, find_suite};

/// A cipher suite's IANA name, or its number in hex when we do not know it.
pub fn suite_name(id: u16) -> String {
    find_suite(id).map_or_else(|| format!("0x{id:04x}"), |s| s.name.to_owned())
}

/// The protocol version a ServerHello chose, as a report writes it.
pub fn version_name(version: u16) -> String {
    match version {
        0x0300 => "SSL 3.0".to_owned(),
        0x0301 => "TLS 1.0".to_owned(),
        0x0302 => "TLS 1.1".to_owned(),
        0x0303 => "TLS 1.2".to_owned(),
        0x0304 => "TLS 1.3".to_owned(),
        0xfeff => "DTLS 1.0".to_owned(),
        0xfefd => "DTLS 1.2".to_owned(),
        0xfefc => "DTLS 1.3".to_owned(),
        0x0002 => "SSL 2.0".to_owned(),
        0x7f00..=0x7fff => format!("TLS 1.3 draft {}", version & 0xff),
        0x7e01..=0x7eff => format!("TLS 1.3 draft {} (Google experiment)", version & 0xff),
        0xfb00..=0xfbff => format!("TLS 1.3 draft {} (Facebook)", version & 0xff),
        v => format!("0x{v:04x}"),
    }
}

/// A pre-standard TLS 1.3 version: an IETF draft (0x7fNN), Facebook's (0xfbNN), Google's
/// experiments (0x7eNN).
pub fn is_draft(version: u16) -> bool {
    matches!(version, 0x7e01..=0x7fff | 0xfb00..=0xfbff)
}

/// Whether a stream starts with a TLS handshake record holding a ClientHello or ServerHello
/// (checked that far so that, say, a DNS-over-TCP message of 0x1603 bytes is not taken for TLS).
pub fn starts_like_tls(data: &[u8]) -> bool {
    parse_sslv2_client_hello(data).is_some()
        || matches!(
            data,
            [
                CONTENT_HANDSHAKE,
                0x03,
                0..=4,
                _,
                _,
                HANDSHAKE_CLIENT_HELLO | HANDSHAKE_SERVER_HELLO,
                ..
            ]
        )
}

/// How many bytes at the start of a TLS stream are records sent in the clear: the hellos, a
/// TLS 1.2 server's certificates, up to and including the first ChangeCipherSpec, stopping at
/// the first application-data record. What follows is ciphertext, which searching can only
/// turn into false positives (and time). Where the stream stops looking like TLS records, the
/// rest is included: it may be something else, and is searched as it is.
pub fn clear_prefix_len(data: &[u8]) -> usize {
    let mut at = parse_sslv2_client_hello(data).map_or(0, |(_, len)| len);
    loop {
        match cut_record(&data[at..]) {
            Cut::Record(record, len) => {
                if record.content_type == CONTENT_APPLICATION_DATA {
                    return at;
                }
                at += len;
                if record.content_type == CONTENT_CHANGE_CIPHER_SPEC {
                    return at;
                }
            }
            Cut::Incomplete | Cut::Invalid => return data.len(),
        }
    }
}

/// What a ClientHello tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub random: [u8; CLIENT_RANDOM_BYTES],
    pub server_name: Option<String>,
    /// The client offers TLS 1.3 0-RTT early data.
    pub early_data: bool,
}

/// What a ServerHello tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub random: [u8; 32],
    /// The negotiated version: `supported_versions` when present, else the legacy field.
    pub version: u16,
    pub cipher_suite: u16,
    /// The server agreed to encrypt-then-MAC for a CBC suite (RFC 7366).
    pub encrypt_then_mac: bool,
}

/// A little cursor over borrowed bytes; every read checks the length first.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Extensions as (type, body) pairs; stops at the first malformed one.
fn extensions(mut r: Reader<'_>) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let kind = r.u16()?;
        let body = r.vec16()?;
        Some((kind, body))
    })
}

/// Parses a ClientHello message body (after the 4-byte handshake header).
pub fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(body);
    r.u16()?; // legacy_version
    let random: [u8; 32] = r.take(32)?.try_into().ok()?;
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut server_name = None;
    let mut early_data = false;
    if let Some(list) = r.vec16() {
        for (kind, ext) in extensions(Reader(list)) {
            early_data |= kind == EXTENSION_EARLY_DATA;
            if kind != EXTENSION_SERVER_NAME {
                continue;
            }
            let mut e = Reader(ext);
            let mut names = Reader(e.vec16().unwrap_or_default());
            while let (Some(name_type), Some(name)) = (names.u8(), names.vec16()) {
                if name_type == 0 && name.len() <= SERVER_NAME_BYTES_MAX {
                    server_name = std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
                    break;
                }
            }
        }
    }
    Some(ClientHello {
        random,
        server_name,
        early_data,
    })
}

/// An SSL 2.0-format ClientHello at the start of a client stream (RFC 5246 E.2, RFC 6101 E.1):
/// a 2-byte header with the high bit set, then message type 1, the highest version offered
/// (SSL 3.0 or later: a client offering only SSL 2.0 is not one we can follow), the lengths of
/// the cipher specs, session id and challenge, and those. The TLS client random is the
/// challenge right-aligned in 32 zero bytes. Returns the hello and the bytes it took.
pub fn parse_sslv2_client_hello(data: &[u8]) -> Option<(ClientHello, usize)> {
    let mut r = Reader(data);
    let header = r.u16()?;
    if header & 0x8000 == 0 {
        return None;
    }
    let len = usize::from(header & 0x7fff);
    let mut r = Reader(r.take(len)?);
    let (kind, version) = (r.u8()?, r.u16()?);
    if kind != HANDSHAKE_CLIENT_HELLO || !(0x0300..=0x0304).contains(&version) {
        return None;
    }
    let (specs, session, challenge) = (r.u16()?, r.u16()?, r.u16()?);
    if specs % 3 != 0 || !(16..=32).contains(&challenge) {
        return None;
    }
    r.take(usize::from(specs))?;
    r.take(usize::from(session))?;
    let challenge = r.take(usize::from(challenge))?;
    let mut random = [0u8; CLIENT_RANDOM_BYTES];
    random[CLIENT_RANDOM_BYTES - challenge.len()..].copy_from_slice(challenge);
    let hello = ClientHello {
        random,
        server_name: None,
        early_data: false,
    };
    Some((hello, 2 + len))
}

/// Parses a ServerHello message body (after the 4-byte handshake header). TLS 1.3 drafts up to
/// 21 put their version in the legacy field and have no session id or compression method
/// (draft-ietf-tls-tls13-21 4.1.3); reading them as the final format would take the cipher
/// suite's first byte for a session id length.
pub fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    let random: [u8; 32] = r.take(32)?.try_into().ok()?;
    let old_draft = matches!(legacy_version, 0x7e01..=0x7f15);
    if !old_draft {
        r.vec8()?; // legacy_session_id_echo
    }
    let cipher_suite = r.u16()?;
    if !old_draft {
        r.u8()?; // legacy_compression_method
    }
    let mut version = legacy_version;
    let mut encrypt_then_mac = false;
    if let Some(list) = r.vec16() {
        for (kind, ext) in extensions(Reader(list)) {
            encrypt_then_mac |= kind == EXTENSION_ENCRYPT_THEN_MAC;
            if kind == EXTENSION_SUPPORTED_VERSIONS
                && let Some(selected) = Reader(ext).u16()
            {
                version = selected;
            }
        }
    }
    Some(ServerHello {
        random,
        version,
        cipher_suite,
        encrypt_then_mac,
    })
}

/// Reassembles handshake messages from the bodies of consecutive handshake records and hands
/// each complete one to a callback; messages longer than [`HANDSHAKE_MESSAGE_BYTES_MAX`] are
/// skipped unread.
#[derive(Debug, Default)]
struct HandshakeReader {
    buf: Vec<u8>,
    skip: usize,
}

impl HandshakeReader {
    fn push(&mut self, mut data: &[u8], on_message: &mut dyn FnMut(u8, &[u8])) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
            }
            if self.buf.len() < 4 {
                let n = (4 - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.buf.len() < 4 {
                    return;
                }
            }
            let len = usize::from(self.buf[1]) << 16
                | usize::from(self.buf[2]) << 8
                | usize::from(self.buf[3]);
            if len > HANDSHAKE_MESSAGE_BYTES_MAX {
                self.skip = len;
                self.buf.clear();
                continue;
            }
            let missing = (4 + len).saturating_sub(self.buf.len());
            let n = missing.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() < 4 + len {
                return;
            }
            on_message(self.buf[0], &self.buf[4..]);
            self.buf.clear();
            if data.is_empty() {
                return;
            }
        }
    }
}

/// One record as it sits in the stream.
struct Record<'a> {
    content_type: u8,
    header: [u8; RECORD_HEADER_BYTES],
    body: &'a [u8],
}

enum Cut<'a> {
    Record(Record<'a>, usize),
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS record header.
    Invalid,
}

fn cut_record(data: &[u8]) -> Cut<'_> {
    let Some(header) = data.get(..RECORD_HEADER_BYTES) else {
        return Cut::Incomplete;
    };
    let header: [u8; RECORD_HEADER_BYTES] = [header[0], header[1], header[2], header[3], header[4]];
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if !(CONTENT_CHANGE_CIPHER_SPEC..=24).contains(&header[0])
        || header[1] != 3
        || len > RECORD_BYTES_MAX
    {
        return Cut::Invalid;
    }
    match data.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len) {
        Some(body) => Cut::Record(
            Record {
                content_type: header[0],
                header,
                body,
            },
            RECORD_HEADER_BYTES + len,
        ),
        None => Cut::Incomplete,
    }
}

/// The first handshake message of type `wanted` in the plaintext handshake records at the
/// start of `data`, read with `on_message`; stops at the first record of another kind.
fn scan_hellos(data: &[u8], on_message: &mut dyn FnMut(u8, &[u8]) -> bool) {
    let mut reader = HandshakeReader::default();
    let mut at = 0;
    let mut done = false;
    for _ in 0..HELLO_RECORDS_MAX {
        let Cut::Record(record, len) = cut_record(&data[at..]) else {
            return;
        };
        at += len;
        match record.content_type {
            CONTENT_HANDSHAKE => reader.push(record.body, &mut |kind, body| {
                if !done {
                    done = on_message(kind, body);
                }
            }),
            // A TLS 1.3 middlebox-compatibility ChangeCipherSpec may sit between a
            // HelloRetryRequest and the real ServerHello.
            CONTENT_CHANGE_CIPHER_SPEC => {}
            _ => return,
        }
        if done {
            return;
        }
    }
}

/// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
fn expand_label(hash: Hash, secret: &[u8], label: &[u8], len: usize) -> Option<Zeroizing<Vec<u8>>> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let algorithm = match hash {
        Hash::Sha256 => hkdf::HKDF_SHA256,
        Hash::Sha384 => hkdf::HKDF_SHA384,
    };
    let prk = hkdf::Prk::new_less_safe(algorithm, secret);
    let length = u16::try_from(len).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    let mut out = Zeroizing::new(vec![0u8; len]);
    prk.expand(&info, Len(len)).ok()?.fill(&mut out).ok()?;
    Some(out)
}

fn tls13_key(suite: &Suite, secret: &[u8]) -> Option<RecordKey> {
    let Protection::Aead(aead) = suite.protection else {
        return None;
    };
    let key = expand_label(suite.hash, secret, b"key", aead.key_len())?;
    let iv = expand_label(suite.hash, secret, b"iv", NONCE_BYTES)?;
    RecordKey::aead(aead, &key, &iv, true)
}

/// Where a direction stands.
enum State {
    /// Records are read in the clear (hellos, TLS 1.2 before ChangeCipherSpec).
    Clear,
    /// Records are opened with this key.
    Open(RecordKey),
    /// We cannot or may no longer decrypt this direction; bytes are only counted.
    Stopped,
}

/// Decrypted application data of one direction, with marks mapping its offsets to frames.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plaintext {
    pub data: Vec<u8>,
    /// `offset` is into `data`; frame and time are of the record the bytes came from.
    pub marks: Vec<Mark>,
}

/// One direction of a TLS flow.
struct Side {
    state: State,
    /// TLS 1.2: the key that takes over at this side's ChangeCipherSpec.
    after_change_cipher_spec: Option<RecordKey>,
    /// TLS 1.3: the application traffic secret that takes over after this side's Finished,
    /// then the current one (for KeyUpdate).
    next_secret: Option<Zeroizing<Vec<u8>>>,
    application_secret: Option<Zeroizing<Vec<u8>>>,
    /// TLS 1.3 client with 0-RTT: the handshake key that takes over when early data ends
    /// (at EndOfEarlyData, or at the first record the early key does not open: the server
    /// refused the early data and the client moved on).
    handshake_key_after_early: Option<RecordKey>,
    /// TLS 1.3 client that offered early data we have no secret for: records that do not open
    /// before the first one that does are skipped as unreadable early data.
    early_data_unreadable: bool,
    early_records_skipped: u64,
    handshake: HandshakeReader,
    /// Bytes of an incomplete record carried to the next piece of the stream.
    held: Vec<u8>,
    /// Stream offset of the next byte expected.
    next_offset: u64,
    /// Stream bytes seen.
    bytes: u64,
    records_opened: u64,
    scratch: Vec<u8>,
}

impl Side {
    fn new() -> Side {
        Side {
            state: State::Clear,
            after_change_cipher_spec: None,
            next_secret: None,
            application_secret: None,
            handshake_key_after_early: None,
            early_data_unreadable: false,
            early_records_skipped: 0,
            handshake: HandshakeReader::default(),
            held: Vec::new(),
            next_offset: 0,
            bytes: 0,
            records_opened: 0,
            scratch: Vec::new(),
        }
    }
}

/// Whether the flow's content could be decrypted, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// At least one record was decrypted.
    Decrypted,
    /// Not decrypted; the reason, for the report.
    Hidden(String),
}

/// The TLS state of one TCP flow, kept across the pieces a large flow is scanned in.
pub struct TlsFlow {
    client: Side,
    server: Side,
    pub client_hello: Option<ClientHello>,
    pub server_hello: Option<ServerHello>,
    /// Why keys are not installed, when they are not.
    hidden_because: Option<String>,
    keys_looked_up: bool,
    tls13: bool,
    suite: Option<&'static Suite>,
    warnings: Vec<String>,
    pub first_time_us: Option<i64>,
}

impl std::fmt::Debug for TlsFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFlow")
            .field("client_hello", &self.client_hello)
            .field("server_hello", &self.server_hello)
            .finish_non_exhaustive()
    }
}

impl Default for TlsFlow {
    fn default() -> Self {
        TlsFlow::new()
    }
}

impl TlsFlow {
    pub fn new() -> TlsFlow {
        TlsFlow {
            client: Side::new(),
            server: Side::new(),
            client_hello: None,
            server_hello: None,
            hidden_because: None,
            keys_looked_up: false,
            tls13: false,
            suite: None,
            warnings: Vec::new(),
            first_time_us: None,
        }
    }

    fn warn(&mut self, message: String) {
        if self.warnings.len() < FLOW_WARNINGS_MAX {
            self.warnings.push(message);
        }
    }

    /// Warnings gathered since the last call.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Reads the hellos at the start of both streams, then looks up the session's secrets
    /// with `lookup` and derives the keys. Call once per piece, before [`TlsFlow::decrypt`].
    pub fn begin(
        &mut self,
        to_server: &[Run],
        to_client: &[Run],
        lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>,
    ) {
        if self.keys_looked_up {
            return;
        }
        fn first(runs: &[Run]) -> Option<&[u8]> {
            runs.first()
                .filter(|r| r.start == 0)
                .map(|r| r.data.as_slice())
        }
        if self.client_hello.is_none()
            && let Some(data) = first(to_server)
        {
            if let Some((hello, _)) = parse_sslv2_client_hello(data) {
                self.client_hello = Some(hello);
            }
            scan_hellos(data, &mut |kind, body| {
                if kind == HANDSHAKE_CLIENT_HELLO {
                    self.client_hello = parse_client_hello(body);
                    return true;
                }
                false
            });
        }
        if self.server_hello.is_none()
            && let Some(data) = first(to_client)
        {
            scan_hellos(data, &mut |kind, body| {
                if kind == HANDSHAKE_SERVER_HELLO {
                    match parse_server_hello(body) {
                        Some(hello) if hello.random == HELLO_RETRY_RANDOM => false,
                        hello => {
                            self.server_hello = hello;
                            true
                        }
                    }
                } else {
                    false
                }
            });
        }
        // A piece without both hellos is decided on: a stream whose hellos are not at its very
        // start (a capture that began mid-connection) cannot be decrypted later either.
        self.keys_looked_up = true;
        self.hidden_because = self.install_keys(lookup).err();
        if self.hidden_because.is_some() {
            self.client.state = State::Stopped;
            self.server.state = State::Stopped;
        }
    }

    fn install_keys(
        &mut self,
        lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>,
    ) -> Result<(), String> {
        let client = self
            .client_hello
            .clone()
            .ok_or("the client hello was not captured")?;
        let server = self
            .server_hello
            .clone()
            .ok_or("the server hello was not captured")?;
        if is_draft(server.version) {
            return Err(format!(
                "{} is a pre-standard version of TLS 1.3, which is not decrypted",
                version_name(server.version)
            ));
        }
        let suite = find_suite(server.cipher_suite).ok_or_else(|| {
            format!(
                "cipher suite {} is not one we decrypt",
                suite_name(server.cipher_suite)
            )
        })?;
        self.suite = Some(suite);
        let version = Version::from_wire(server.version)
            .filter(|_| suite.allowed_with(server.version))
            .ok_or_else(|| {
                format!(
                    "{} with {} is not decrypted",
                    version_name(server.version),
                    suite.name
                )
            })?;
        let secrets = lookup(&client.random).ok_or("no key for this session in the key logs")?;
        if suite.tls13 {
            self.tls13 = true;
            let need = |s: &Option<Zeroizing<Vec<u8>>>, label: &str| {
                s.clone()
                    .filter(|s| s.len() == suite.hash.output_len())
                    .ok_or_else(|| {
                        format!("the key logs have no {label} of the right length for this session")
                    })
            };
            let client_hs = need(&secrets.client_handshake, "CLIENT_HANDSHAKE_TRAFFIC_SECRET")?;
            let server_hs = need(&secrets.server_handshake, "SERVER_HANDSHAKE_TRAFFIC_SECRET")?;
            let client_app = need(&secrets.client_traffic_0, "CLIENT_TRAFFIC_SECRET_0")?;
            let server_app = need(&secrets.server_traffic_0, "SERVER_TRAFFIC_SECRET_0")?;
            let failed = || "key derivation failed".to_owned();
            let client_handshake_key = tls13_key(suite, &client_hs).ok_or_else(failed)?;
            let early = secrets
                .client_early
                .as_ref()
                .filter(|s| client.early_data && s.len() == suite.hash.output_len());
            match early {
                Some(early) => {
                    self.client.state = State::Open(tls13_key(suite, early).ok_or_else(failed)?);
                    self.client.handshake_key_after_early = Some(client_handshake_key);
                }
                None => {
                    self.client.state = State::Open(client_handshake_key);
                    self.client.early_data_unreadable = client.early_data;
                }
            }
            self.server.state = State::Open(tls13_key(suite, &server_hs).ok_or_else(failed)?);
            self.client.next_secret = Some(client_app);
            self.server.next_secret = Some(server_app);
        } else {
            let master = secrets
                .master
                .ok_or("the key logs have no CLIENT_RANDOM line for this session")?;
            let (client_key, server_key) = cipher::tls12_keys(
                suite,
                version,
                &master,
                &client.random,
                &server.random,
                server.encrypt_then_mac,
            )
            .ok_or("key derivation failed")?;
            self.client.after_change_cipher_spec = Some(client_key);
            self.server.after_change_cipher_spec = Some(server_key);
        }
        Ok(())
    }

    /// Decrypts the new bytes of one direction (`runs` in stream order, `marks` their frames)
    /// and returns the application data they held.
    pub fn decrypt(&mut self, to_server: bool, runs: &[Run], marks: &[Mark]) -> Plaintext {
        let mut out = Plaintext::default();
        // Plaintext is never longer than the records: one allocation, no regrowth copies.
        if !matches!(
            if to_server {
                &self.client.state
            } else {
                &self.server.state
            },
            State::Stopped
        ) {
            out.data.reserve(runs.iter().map(|r| r.data.len()).sum());
        }
        if self.first_time_us.is_none() {
            self.first_time_us = marks.first().map(|m| m.time_us);
        }
        let mut side = std::mem::replace(
            if to_server {
                &mut self.client
            } else {
                &mut self.server
            },
            Side::new(),
        );
        for run in runs {
            side.bytes += run.data.len() as u64;
            self.feed(&mut side, to_server, run, marks, &mut out);
        }
        *(if to_server {
            &mut self.client
        } else {
            &mut self.server
        }) = side;
        out
    }

    fn feed(
        &mut self,
        side: &mut Side,
        to_server: bool,
        run: &Run,
        marks: &[Mark],
        out: &mut Plaintext,
    ) {
        let who = if to_server { "client" } else { "server" };
        if run.start != side.next_offset {
            if !matches!(side.state, State::Stopped) {
                self.warn(format!(
                    "the {who}'s stream has a gap at offset {}; the rest of it is not decrypted",
                    side.next_offset
                ));
                side.state = State::Stopped;
            }
            side.held.clear();
        }
        side.next_offset = run.start + run.data.len() as u64;
        if matches!(side.state, State::Stopped) {
            return;
        }
        let mut data = run.data.as_slice();
        let mut offset = run.start;
        // An SSL 2.0-format ClientHello is not a TLS record: step over it.
        if to_server
            && run.start == 0
            && let Some((_, len)) = parse_sslv2_client_hello(data)
        {
            data = &data[len..];
            offset += len as u64;
        }
        // First finish the record left incomplete by the previous piece: its header, then its
        // body (at most RECORD_BYTES_MAX more bytes).
        if !side.held.is_empty() {
            let held_start = offset.saturating_sub(side.held.len() as u64);
            for _ in 0..2 {
                let need = match side.held.get(..RECORD_HEADER_BYTES) {
                    None => RECORD_HEADER_BYTES,
                    Some(h) => RECORD_HEADER_BYTES + usize::from(u16::from_be_bytes([h[3], h[4]])),
                };
                if matches!(cut_record(&side.held), Cut::Invalid) {
                    break;
                }
                let n = need.saturating_sub(side.held.len()).min(data.len());
                side.held.extend_from_slice(&data[..n]);
                data = &data[n..];
                offset += n as u64;
            }
            let held = std::mem::take(&mut side.held);
            match cut_record(&held) {
                Cut::Record(record, _) => self.record(side, who, &record, held_start, marks, out),
                Cut::Incomplete => {
                    side.held = held;
                    return;
                }
                Cut::Invalid => {
                    self.not_tls(side, who, held_start);
                    return;
                }
            }
        }
        loop {
            if matches!(side.state, State::Stopped) {
                return;
            }
            match cut_record(data) {
                Cut::Record(record, len) => {
                    self.record(side, who, &record, offset, marks, out);
                    data = &data[len..];
                    offset += len as u64;
                }
                Cut::Incomplete => {
                    // At most one record (RECORD_HEADER_BYTES + RECORD_BYTES_MAX) is held.
                    side.held.extend_from_slice(data);
                    return;
                }
                Cut::Invalid => {
                    self.not_tls(side, who, offset);
                    return;
                }
            }
        }
    }

    fn not_tls(&mut self, side: &mut Side, who: &str, offset: u64) {
        self.warn(format!(
            "the {who}'s stream is not a tls record at offset {offset}; the rest of it is not decrypted"
        ));
        side.state = State::Stopped;
    }

    fn record(
        &mut self,
        side: &mut Side,
        who: &str,
        record: &Record<'_>,
        offset: u64,
        marks: &[Mark],
        out: &mut Plaintext,
    ) {
        let encrypted = match side.state {
            State::Stopped => return,
            State::Clear => {
                if record.content_type == CONTENT_CHANGE_CIPHER_SPEC
                    && let Some(key) = side.after_change_cipher_spec.take()
                {
                    side.state = State::Open(key);
                }
                return;
            }
            State::Open(_) if self.tls13 => record.content_type == CONTENT_APPLICATION_DATA,
            State::Open(_) => true,
        };
        if !encrypted {
            // TLS 1.3: plaintext hellos and the middlebox-compatibility ChangeCipherSpec.
            return;
        }
        let State::Open(key) = &mut side.state else {
            return;
        };
        let seq = key.seq;
        let mut opened = key.open(&record.header, record.body, &mut side.scratch);
        if opened.is_none()
            && let Some(handshake_key) = side.handshake_key_after_early.take()
        {
            // The early data ended without EndOfEarlyData: the server refused it, and the
            // client went on under its handshake key.
            *key = handshake_key;
            opened = key.open(&record.header, record.body, &mut side.scratch);
        }
        if opened.is_none()
            && side.early_data_unreadable
            && side.records_opened == 0
            && side.early_records_skipped < EARLY_DATA_RECORDS_MAX
        {
            if side.early_records_skipped == 0 {
                self.warn(format!(
                    "the {who} sent 0-RTT early data and the key logs have no CLIENT_EARLY_TRAFFIC_SECRET for it; that data is not decrypted"
                ));
            }
            side.early_records_skipped += 1;
            return;
        }
        let Some((content_type, range)) = opened else {
            self.warn(format!(
                "the {who}'s record {seq} at offset {offset} failed authentication (a wrong key or a corrupted capture); the rest of this direction is not decrypted"
            ));
            side.state = State::Stopped;
            return;
        };
        key.seq += 1;
        side.records_opened += 1;
        let plaintext = &side.scratch[range];
        match content_type {
            CONTENT_APPLICATION_DATA => {
                if out.marks.len() < MARKS_MAX
                    && let Some(mark) = Mark::find(marks, offset)
                {
                    out.marks.push(Mark {
                        offset: out.data.len() as u64,
                        ..mark
                    });
                }
                out.data.extend_from_slice(plaintext);
            }
            CONTENT_HANDSHAKE if self.tls13 => {
                let mut finished = false;
                let mut key_update = false;
                let mut end_of_early_data = false;
                let plaintext = plaintext.to_vec();
                side.handshake.push(&plaintext, &mut |kind, _| match kind {
                    HANDSHAKE_FINISHED => finished = true,
                    HANDSHAKE_KEY_UPDATE => key_update = true,
                    HANDSHAKE_END_OF_EARLY_DATA => end_of_early_data = true,
                    _ => {}
                });
                if end_of_early_data && let Some(key) = side.handshake_key_after_early.take() {
                    side.state = State::Open(key);
                    return;
                }
                self.tls13_epoch(side, finished, key_update);
            }
            // Alerts, the TLS 1.2 Finished and anything else carry nothing to search.
            _ => {}
        }
    }

    /// TLS 1.3: after this side's Finished its application secret takes over; after a
    /// KeyUpdate the next secret is derived from the current one (RFC 8446 7.2).
    fn tls13_epoch(&mut self, side: &mut Side, finished: bool, key_update: bool) {
        let Some(suite) = self.suite else {
            return;
        };
        let secret = if finished && side.application_secret.is_none() {
            side.next_secret.take()
        } else if key_update {
            side.application_secret
                .as_ref()
                .and_then(|s| expand_label(suite.hash, s, b"traffic upd", suite.hash.output_len()))
        } else {
            return;
        };
        match secret.as_ref().and_then(|s| tls13_key(suite, s)) {
            Some(key) => side.state = State::Open(key),
            None => side.state = State::Stopped,
        }
        side.application_secret = secret;
    }

    /// Bytes of the client's and the server's stream seen so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.client.bytes, self.server.bytes)
    }

    /// Whether anything was decrypted, and why not if not.
    pub fn visibility(&self) -> Visibility {
        if self.client.records_opened + self.server.records_opened > 0 {
            return Visibility::Decrypted;
        }
        let reason = match &self.hidden_because {
            Some(reason) => reason.clone(),
            None if !self.keys_looked_up => "the handshake was not captured".to_owned(),
            None => "no record could be decrypted".to_owned(),
        };
        Visibility::Hidden(reason)
    }

    /// The negotiated version, when the ServerHello was seen.
    pub fn version(&self) -> Option<u16> {
        self.server_hello.as_ref().map(|h| h.version)
    }

    /// The negotiated cipher suite, when the ServerHello was seen.
    pub fn cipher_suite(&self) -> Option<u16> {
        self.server_hello.as_ref().map(|h| h.cipher_suite)
    }
}

/// A TLS flow as the report lists it, before attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSummary {
    pub client: std::net::SocketAddr,
    pub server: std::net::SocketAddr,
    pub sni: Option<String>,
    pub host: Option<String>,
    pub version: Option<u16>,
    pub cipher_suite: Option<u16>,
    pub visibility: Visibility,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub first_time_us: Option<i64>,
    pub capture: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8448 section 3 (simple 1-RTT handshake): the server's handshake traffic secret
    /// gives this key and IV.
    #[test]
    fn expand_label_matches_rfc_8448() {
        let secret = unhex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
        );
        let key = expand_label(Hash::Sha256, &secret, b"key", 16).unwrap();
        assert_eq!(
            *key,
            unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        let iv = expand_label(Hash::Sha256, &secret, b"iv", 12).unwrap();
        assert_eq!(*iv, unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30"));
    }

    #[test]
    fn the_clear_prefix_ends_before_ciphertext() {
        let record = |kind: u8, len: usize| {
            let mut r = vec![kind, 3, 3, (len >> 8) as u8, len as u8];
            r.resize(5 + len, 0xee);
            r
        };
        let hello = record(22, 40);
        let ccs = record(20, 1);
        let data = record(23, 100);
        let cases: [(Vec<u8>, usize); 6] = [
            ([hello.clone(), data.clone()].concat(), 45),
            ([hello.clone(), ccs.clone(), record(22, 40)].concat(), 51),
            ([hello.clone(), hello.clone()].concat(), 90),
            // Truncated inside a record, or not TLS at all: everything.
            ([hello.clone(), record(22, 40)[..20].to_vec()].concat(), 65),
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 18),
            (Vec::new(), 0),
        ];
        for (stream, expected) in cases {
            assert_eq!(clear_prefix_len(&stream), expected);
        }
    }

    #[test]
    fn handshake_messages_are_reassembled_across_pushes_and_long_ones_skipped() {
        let mut stream = vec![1, 0, 0, 3, b'a', b'b', b'c', 20, 0, 0, 0];
        let long = HANDSHAKE_MESSAGE_BYTES_MAX + 1;
        stream.extend_from_slice(&[11, (long >> 16) as u8, (long >> 8) as u8, long as u8]);
        stream.extend(std::iter::repeat_n(7, long));
        stream.extend_from_slice(&[24, 0, 0, 1, 0]);
        for piece in [1, 3, 5, 1000, stream.len()] {
            let mut reader = HandshakeReader::default();
            let mut seen = Vec::new();
            for chunk in stream.chunks(piece) {
                reader.push(chunk, &mut |kind, body| seen.push((kind, body.to_vec())));
            }
            assert_eq!(
                seen,
                [(1, b"abc".to_vec()), (20, vec![]), (24, vec![0])],
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn hellos_are_parsed_and_truncations_are_none() {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
        let name = b"api.example.cn";
        let mut sni = vec![0, 0];
        let list_len = (3 + name.len()) as u16;
        sni.extend_from_slice(&(list_len + 2).to_be_bytes());
        sni.extend_from_slice(&list_len.to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        body.extend_from_slice(&sni);
        let hello = parse_client_hello(&body).unwrap();
        assert_eq!(hello.random, [7; 32]);
        assert_eq!(hello.server_name.as_deref(), Some("api.example.cn"));
        for cut in 0..35 {
            assert_eq!(parse_client_hello(&body[..cut]), None, "cut at {cut}");
        }

        let mut body = vec![3, 3];
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 0x13, 2, 0, 0, 6, 0, 0x2b, 0, 2, 3, 4]);
        let hello = parse_server_hello(&body).unwrap();
        assert_eq!((hello.version, hello.cipher_suite), (0x0304, 0x1302));
        assert_eq!(parse_server_hello(&body[..30]), None);
    }
}
