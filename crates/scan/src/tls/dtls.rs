//! DTLS 1.0 and 1.2 (RFC 4347, 6347) over UDP, decrypted from the same key log as TLS.
//!
//! Each datagram holds whole records: type, version (0xfeff, 0xfefd), a 16-bit epoch, a 48-bit
//! sequence number and a length. Handshake messages carry 12-byte headers (type, length,
//! message sequence, fragment offset and length). The hellos we need come in one fragment on
//! most paths, but a small MTU (OpenSSL's `-mtu`, a VPN, a phone's tunnel) splits them: the
//! fragments of one message are joined, in any order, repeated or overlapping, up to
//! [`DTLS_HANDSHAKE_BYTES_MAX`]. Several handshake messages may share one record. A
//! ClientHello answered by a
//! HelloVerifyRequest is sent again with the cookie, under the same random: the last one read
//! counts. Once both hellos are in, the master secret gives the keys (TLS 1.1's record
//! protection for DTLS 1.0, TLS 1.2's for 1.2); records of epoch 1 are opened with the epoch
//! and sequence number as their 64-bit sequence, so datagrams lost or reordered do not matter.
//! A record failing authentication stops that direction with a warning, as in TLS.

use crate::tls::cipher::{self, RecordKey, Version};
use crate::tls::decrypt::{
    ClientHello, FLOW_WARNINGS_MAX, ServerHello, Visibility, parse_client_hello, parse_server_hello,
};
use crate::tls::keylog::{CLIENT_RANDOM_BYTES, Secrets};
use crate::tls::suites::find_suite;

/// Bytes of a DTLS record header.
pub const DTLS_HEADER_BYTES: usize = 13;
/// Bytes of a DTLS handshake message header.
const HANDSHAKE_HEADER_BYTES: usize = 12;
/// Longest DTLS record body we accept (as TLS: 2^14 plus 2048 of expansion).
pub const DTLS_RECORD_BYTES_MAX: usize = (1 << 14) + 2048;
/// Longest hello joined from handshake fragments; a longer one is not read (with a warning).
pub const DTLS_HANDSHAKE_BYTES_MAX: usize = 1 << 16;
/// Most distinct fragments of one hello kept while it is joined.
pub const DTLS_FRAGMENTS_MAX: usize = 256;

const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;

/// One DTLS record as it sits in a datagram.
pub struct DtlsRecord<'a> {
    pub content_type: u8,
    pub version: u16,
    pub epoch: u16,
    pub seq: u64,
    pub body: &'a [u8],
}

/// The records of one datagram; stops at the first that is not a DTLS record.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = DtlsRecord<'_>> {
    std::iter::from_fn(move || {
        let header = data.get(..DTLS_HEADER_BYTES)?;
        let content_type = header[0];
        let version = u16::from_be_bytes([header[1], header[2]]);
        let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        if !(20..=24).contains(&content_type)
            || !matches!(version, 0xfeff | 0xfefd | 0xfefc)
            || len > DTLS_RECORD_BYTES_MAX
        {
            return None;
        }
        let body = data.get(DTLS_HEADER_BYTES..DTLS_HEADER_BYTES + len)?;
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&header[5..11]);
        data = &data[DTLS_HEADER_BYTES + len..];
        Some(DtlsRecord {
            content_type,
            version,
            epoch: u16::from_be_bytes([header[3], header[4]]),
            seq: u64::from_be_bytes(seq),
            body,
        })
    })
}

/// Whether a datagram starts with a DTLS handshake record holding a ClientHello at epoch 0.
pub fn starts_like_dtls(data: &[u8]) -> bool {
    records(data).next().is_some_and(|r| {
        r.content_type == CONTENT_HANDSHAKE && r.epoch == 0 && r.body.first() == Some(&1)
    })
}

/// A DTLS ClientHello body without its cookie is a TLS one: version, random, session id,
/// cookie (dropped here), then suites, compression and extensions.
fn parse_dtls_client_hello(body: &[u8]) -> Option<ClientHello> {
    let session_len = usize::from(*body.get(34)?);
    let cookie_at = 35 + session_len;
    let cookie_len = usize::from(*body.get(cookie_at)?);
    let rest = body.get(cookie_at + 1 + cookie_len..)?;
    let tls = [body.get(..cookie_at)?, rest].concat();
    parse_client_hello(&tls)
}

/// A hello being joined from its fragments.
struct Joining {
    kind: u8,
    message_seq: u16,
    data: Vec<u8>,
    /// The byte ranges received so far, sorted and merged.
    covered: Vec<(usize, usize)>,
}

impl Joining {
    /// Adds `fragment` at `offset`; the whole message once every byte is there.
    fn add(&mut self, offset: usize, fragment: &[u8]) -> Option<&[u8]> {
        let end = offset.checked_add(fragment.len())?;
        self.data.get_mut(offset..end)?.copy_from_slice(fragment);
        self.covered.push((offset, end));
        self.covered.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.covered.len());
        for &(a, b) in &self.covered {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.covered = merged;
        (self.covered == [(0, self.data.len())]).then_some(&self.data[..])
    }
}

/// One direction of a DTLS flow.
#[derive(Default)]
struct Side {
    key: Option<RecordKey>,
    stopped: bool,
    records_opened: u64,
    bytes: u64,
    scratch: Vec<u8>,
    /// This side's hello being joined from fragments.
    joining: Option<Joining>,
}

/// The DTLS state of one UDP flow.
#[derive(Default)]
pub struct DtlsFlow {
    pub client_hello: Option<ClientHello>,
    pub server_hello: Option<ServerHello>,
    version: u16,
    /// Keys derived, waiting for their side's first record of epoch 1.
    client_key: Option<RecordKey>,
    server_key: Option<RecordKey>,
    client: Side,
    server: Side,
    keys_looked_up: bool,
    hidden_because: Option<String>,
    warnings: Vec<String>,
    pub first_time_us: Option<i64>,
    /// The frame that began the flow (the global frame number in a shard), to list flows alike
    /// whatever the thread count.
    pub first_frame: u64,
    /// The server's name from a DNS answer seen before the flow began.
    pub dns_host: Option<String>,
}

impl DtlsFlow {
    /// Reads one datagram of the flow and returns the application data it held.
    pub fn datagram(
        &mut self,
        to_server: bool,
        data: &[u8],
        time_us: i64,
        lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>,
    ) -> Vec<u8> {
        self.first_time_us.get_or_insert(time_us);
        let mut out = Vec::new();
        let mut side = std::mem::take(if to_server {
            &mut self.client
        } else {
            &mut self.server
        });
        side.bytes += data.len() as u64;
        for record in records(data) {
            if record.epoch == 0 {
                if record.content_type == CONTENT_HANDSHAKE {
                    self.handshake(to_server, &mut side, &record);
                }
                continue;
            }
            if !self.keys_looked_up && self.client_hello.is_some() && self.server_hello.is_some() {
                self.keys_looked_up = true;
                self.hidden_because = self.install_keys(lookup).err();
            }
            if to_server {
                if let Some(key) = self.client_key.take() {
                    side.key = Some(key);
                }
            } else if let Some(key) = self.server_key.take() {
                side.key = Some(key);
            }
            if side.stopped {
                continue;
            }
            let Some(key) = side.key.as_mut() else {
                continue;
            };
            key.seq = u64::from(record.epoch) << 48 | record.seq;
            let Ok(len) = u16::try_from(record.body.len()) else {
                continue;
            };
            let v = record.version.to_be_bytes();
            let l = len.to_be_bytes();
            let header = [record.content_type, v[0], v[1], l[0], l[1]];
            match key.open(&header, record.body, &mut side.scratch) {
                Some((content_type, range)) => {
                    side.records_opened += 1;
                    if content_type == CONTENT_APPLICATION_DATA {
                        out.extend_from_slice(&side.scratch[range]);
                    }
                }
                None => {
                    let who = if to_server { "client" } else { "server" };
                    self.warn(format!(
                        "the {who}'s dtls record {} of epoch {} failed authentication (a wrong key or a corrupted capture); the rest of this direction is not decrypted",
                        record.seq, record.epoch
                    ));
                    side.stopped = true;
                }
            }
        }
        *(if to_server {
            &mut self.client
        } else {
            &mut self.server
        }) = side;
        out
    }

    /// Reads the handshake messages of a record of epoch 0 (`side` is the sender's).
    fn handshake(&mut self, to_server: bool, side: &mut Side, record: &DtlsRecord<'_>) {
        let len = |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let mut rest = record.body;
        while let Some(header) = rest.get(..HANDSHAKE_HEADER_BYTES) {
            let (kind, length, message_seq, offset, fragment_len) = (
                header[0],
                len(&header[1..4]),
                u16::from_be_bytes([header[4], header[5]]),
                len(&header[6..9]),
                len(&header[9..12]),
            );
            let Some(fragment) =
                rest.get(HANDSHAKE_HEADER_BYTES..HANDSHAKE_HEADER_BYTES + fragment_len)
            else {
                return;
            };
            rest = &rest[HANDSHAKE_HEADER_BYTES + fragment_len..];
            // Only the hellos are read: the client's from the client, the server's from it.
            if (to_server, kind) != (true, 1) && (to_server, kind) != (false, 2) {
                continue;
            }
            if offset == 0 && fragment_len == length {
                side.joining = None;
                self.hello(to_server, fragment);
                continue;
            }
            if length > DTLS_HANDSHAKE_BYTES_MAX {
                self.warn(format!(
                    "a dtls hello in fragments is {length} bytes, more than {DTLS_HANDSHAKE_BYTES_MAX}: it is not read"
                ));
                continue;
            }
            // A fragment of another message (a ClientHello sent again with its cookie) starts
            // the joining again.
            let same = side.joining.as_ref().is_some_and(|j| {
                j.kind == kind && j.message_seq == message_seq && j.data.len() == length
            });
            if !same {
                side.joining = Some(Joining {
                    kind,
                    message_seq,
                    data: vec![0; length],
                    covered: Vec::new(),
                });
            }
            let Some(joining) = side.joining.as_mut() else {
                continue;
            };
            if joining.covered.len() >= DTLS_FRAGMENTS_MAX {
                self.warn(format!(
                    "a dtls hello comes in more than {DTLS_FRAGMENTS_MAX} pieces: it is not read"
                ));
                side.joining = None;
                continue;
            }
            let Some(whole) = joining.add(offset, fragment) else {
                continue;
            };
            let whole = whole.to_vec();
            side.joining = None;
            self.hello(to_server, &whole);
        }
    }

    fn hello(&mut self, to_server: bool, body: &[u8]) {
        if to_server {
            if let Some(hello) = parse_dtls_client_hello(body) {
                self.client_hello = Some(hello);
            }
        } else if let Some(hello) = parse_server_hello(body) {
            self.version = hello.version;
            self.server_hello = Some(hello);
        }
    }

    fn install_keys(
        &mut self,
        lookup: &dyn Fn(&[u8; CLIENT_RANDOM_BYTES]) -> Option<Secrets>,
    ) -> Result<(), String> {
        let (Some(client), Some(server)) = (&self.client_hello, &self.server_hello) else {
            return Err("the hellos were not captured".to_owned());
        };
        let suite = find_suite(server.cipher_suite).ok_or_else(|| {
            format!(
                "cipher suite {} is not one we decrypt",
                crate::tls::decrypt::suite_name(server.cipher_suite)
            )
        })?;
        let version = Version::from_wire(server.version)
            .filter(|v| matches!(v, Version::Tls11 | Version::Tls12))
            .filter(|_| suite.allowed_with(server.version))
            .ok_or_else(|| {
                format!(
                    "{} with {} is not decrypted",
                    crate::tls::decrypt::version_name(server.version),
                    suite.name
                )
            })?;
        let secrets = lookup(&client.random).ok_or("no key for this session in the key logs")?;
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
        self.client_key = Some(client_key);
        self.server_key = Some(server_key);
        Ok(())
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

    /// Datagram bytes of the client and the server.
    pub fn bytes(&self) -> (u64, u64) {
        (self.client.bytes, self.server.bytes)
    }

    pub fn visibility(&self) -> Visibility {
        if self.client.records_opened + self.server.records_opened > 0 {
            return Visibility::Decrypted;
        }
        Visibility::Hidden(match &self.hidden_because {
            Some(reason) => reason.clone(),
            None if !self.keys_looked_up => "the handshake was not captured".to_owned(),
            None => "no record could be decrypted".to_owned(),
        })
    }

    pub fn version(&self) -> Option<u16> {
        self.server_hello.as_ref().map(|_| self.version)
    }

    pub fn cipher_suite(&self) -> Option<u16> {
        self.server_hello.as_ref().map(|h| h.cipher_suite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DTLS 1.2 ClientHello body naming `sni`, padded by a made-up extension to `pad` bytes.
    fn client_hello(sni: &str, pad: usize) -> Vec<u8> {
        let mut b = vec![0xfe, 0xfd];
        b.extend_from_slice(&[7; 32]);
        b.extend_from_slice(&[0, 0]); // no session id, no cookie
        b.extend_from_slice(&[0, 2, 0xc0, 0x2b, 1, 0]);
        let name = sni.as_bytes();
        let mut ext = vec![0, 0];
        let list = name.len() + 3;
        ext.extend_from_slice(&((list + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        ext.extend_from_slice(&[0xff, 0x01, 0, 1, 0]); // renegotiation_info
        ext.extend_from_slice(&[0x44, 0x44]);
        ext.extend_from_slice(&(pad as u16).to_be_bytes());
        ext.resize(ext.len() + pad, 0);
        b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        b.extend_from_slice(&ext);
        b
    }

    /// A handshake record (epoch 0) holding fragments (message seq, offset, bytes) of one
    /// message of `length` bytes.
    fn record(length: usize, fragments: &[(u16, usize, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (seq, offset, bytes) in fragments {
            body.push(1);
            body.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
            body.extend_from_slice(&seq.to_be_bytes());
            body.extend_from_slice(&(*offset as u32).to_be_bytes()[1..]);
            body.extend_from_slice(&(bytes.len() as u32).to_be_bytes()[1..]);
            body.extend_from_slice(bytes);
        }
        let mut r = vec![CONTENT_HANDSHAKE, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(&body);
        r
    }

    fn read(datagrams: &[Vec<u8>]) -> DtlsFlow {
        let mut flow = DtlsFlow::default();
        for d in datagrams {
            flow.datagram(true, d, 0, &|_| None);
        }
        flow
    }

    fn sni(flow: &DtlsFlow) -> Option<&str> {
        flow.client_hello
            .as_ref()
            .and_then(|h| h.server_name.as_deref())
    }

    #[test]
    fn fragments_in_any_order_repeated_or_overlapping_are_joined() {
        let hello = client_hello("api.example.cn", 300);
        let n = hello.len();
        let (a, b, c) = (&hello[..100], &hello[100..250], &hello[250..]);
        // Last first, a repeat, an overlap, and two fragments in one record.
        let datagrams = [
            record(n, &[(0, 250, c)]),
            record(n, &[(0, 250, c)]),
            record(n, &[(0, 90, &hello[90..200]), (0, 0, a)]),
        ];
        assert_eq!(sni(&read(&datagrams)), None, "a hole at 200..250");
        let mut all = datagrams.to_vec();
        all.push(record(n, &[(0, 100, b)]));
        let flow = read(&all);
        assert_eq!(sni(&flow), Some("api.example.cn"));
        assert!(flow.warnings.is_empty(), "{:?}", flow.warnings);
        // A fragment of the next ClientHello (with its cookie: message seq 1) starts again.
        let mut flow = read(&[
            record(n, &[(0, 0, a)]),
            record(n, &[(1, 100, &hello[100..])]),
        ]);
        assert_eq!(sni(&flow), None);
        flow.datagram(true, &record(n, &[(1, 0, a)]), 0, &|_| None);
        assert_eq!(sni(&flow), Some("api.example.cn"));
    }

    #[test]
    fn hellos_past_the_limits_are_not_read_with_a_warning() {
        let long = client_hello("api.example.cn", DTLS_HANDSHAKE_BYTES_MAX);
        let flow = read(&[record(long.len(), &[(0, 0, &long[..1000])])]);
        assert!(
            flow.warnings[0].contains("more than 65536"),
            "{:?}",
            flow.warnings
        );
        let hello = client_hello("api.example.cn", 2000);
        let pieces: Vec<Vec<u8>> = (0..=DTLS_FRAGMENTS_MAX)
            .map(|i| record(hello.len(), &[(0, 2 * i, &hello[2 * i..2 * i + 1])]))
            .collect();
        let flow = read(&pieces);
        assert!(flow.warnings[0].contains("pieces"), "{:?}", flow.warnings);
        assert_eq!(sni(&flow), None);
    }
}
