//! QUIC packets: versions, headers, key derivation, header protection and packet protection
//! (RFC 9000 17, RFC 9001 5, RFC 9369 3).
//!
//! Everything borrows from the datagram and checks lengths before slicing; a packet that does
//! not parse or does not open is `None`, never a panic. The cryptography is aws-lc-rs: HKDF,
//! the AEADs and its QUIC header-protection masks (see ARCHITECTURE.md for why not rustls).

use aws_lc_rs::aead::quic::{self as hp, HeaderProtectionKey};
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

/// Longest connection ID (RFC 9000 17.2).
pub const CID_BYTES_MAX: usize = 20;
/// Bytes of an AEAD nonce.
const NONCE_BYTES: usize = 12;
/// Bytes of the AEAD tag.
pub const TAG_BYTES: usize = 16;
/// Bytes of the header-protection sample.
const SAMPLE_BYTES: usize = 16;

/// A QUIC version we can read.
#[derive(Debug, PartialEq, Eq)]
pub struct Version {
    pub number: u32,
    pub name: &'static str,
    /// The salt of the Initial secret.
    salt: [u8; 20],
    /// `quic ` (v1, drafts) or `quicv2 ` (v2): the prefix of the key, iv, hp and ku labels.
    label_prefix: &'static str,
    /// The long-header type bits of Initial, 0-RTT, Handshake and Retry, in that order.
    type_bits: [u8; 4],
}

/// QUIC v1 (RFC 9001 5.2).
pub static V1: Version = Version {
    number: 0x0000_0001,
    name: "QUIC v1",
    salt: [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ],
    label_prefix: "quic ",
    type_bits: [0, 1, 2, 3],
};

/// QUIC v2 (RFC 9369 3.3).
pub static V2: Version = Version {
    number: 0x6b33_43cf,
    name: "QUIC v2",
    salt: [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d,
        0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ],
    label_prefix: "quicv2 ",
    type_bits: [1, 2, 3, 0],
};

/// draft-ietf-quic-tls-29 (its 5.2); drafts 30 to 32 use the same salt and labels.
pub static DRAFT_29: Version = Version {
    number: 0xff00_001d,
    name: "QUIC draft-29",
    salt: [
        0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11,
        0xe0, 0x43, 0x90, 0xa8, 0x99,
    ],
    label_prefix: "quic ",
    type_bits: [0, 1, 2, 3],
};

static DRAFT_30: Version = Version {
    number: 0xff00_001e,
    name: "QUIC draft-30",
    salt: DRAFT_29.salt,
    label_prefix: "quic ",
    type_bits: [0, 1, 2, 3],
};
static DRAFT_31: Version = Version {
    number: 0xff00_001f,
    name: "QUIC draft-31",
    salt: DRAFT_29.salt,
    label_prefix: "quic ",
    type_bits: [0, 1, 2, 3],
};
static DRAFT_32: Version = Version {
    number: 0xff00_0020,
    name: "QUIC draft-32",
    salt: DRAFT_29.salt,
    label_prefix: "quic ",
    type_bits: [0, 1, 2, 3],
};

/// The version with this number, if we can read it.
pub fn version(number: u32) -> Option<&'static Version> {
    [&V1, &V2, &DRAFT_29, &DRAFT_30, &DRAFT_31, &DRAFT_32]
        .into_iter()
        .find(|v| v.number == number)
}

/// The type of a long-header packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

impl Version {
    fn long_type(&self, first: u8) -> LongType {
        let bits = (first >> 4) & 3;
        match self.type_bits.iter().position(|&b| b == bits) {
            Some(0) => LongType::Initial,
            Some(1) => LongType::ZeroRtt,
            Some(2) => LongType::Handshake,
            _ => LongType::Retry,
        }
    }
}

/// A QUIC variable-length integer (RFC 9000 16): its value and length.
pub fn varint(data: &[u8]) -> Option<(u64, usize)> {
    let first = *data.first()?;
    let len = 1usize << (first >> 6);
    let bytes = data.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for &b in &bytes[1..] {
        value = value << 8 | u64::from(b);
    }
    Some((value, len))
}

/// A cursor over borrowed bytes; every read checks the length first.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub data: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, at: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }
    pub fn rest(&self) -> &'a [u8] {
        self.data.get(self.at..).unwrap_or_default()
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let bytes = self.data.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn varint(&mut self) -> Option<u64> {
        let (value, len) = varint(self.rest())?;
        self.at += len;
        Some(value)
    }
    /// A varint length, then that many bytes.
    pub fn varint_bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }
}

/// A long-header packet, header protection still on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongHeader<'a> {
    pub version: &'static Version,
    pub kind: LongType,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    /// Where the (protected) packet number starts, from the start of the packet.
    pub pn_offset: usize,
    /// The packet's length in the datagram: later bytes are the next coalesced packet.
    pub len: usize,
}

/// Why a long header was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLong {
    /// A short header.
    Short,
    /// Version negotiation, or a version we cannot read.
    Version(u32),
    /// Cut short or inconsistent.
    Malformed,
}

/// Reads the long header at the start of `data`.
///
/// # Errors
/// [`NotLong`] says why not.
pub fn parse_long(data: &[u8]) -> Result<LongHeader<'_>, NotLong> {
    let mut r = Reader::new(data);
    let first = r.u8().ok_or(NotLong::Malformed)?;
    if first & 0x80 == 0 {
        return Err(NotLong::Short);
    }
    let number = r
        .take(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(NotLong::Malformed)?;
    let version = version(number).ok_or(NotLong::Version(number))?;
    let dcid = read_cid(&mut r).ok_or(NotLong::Malformed)?;
    let scid = read_cid(&mut r).ok_or(NotLong::Malformed)?;
    let kind = version.long_type(first);
    if kind == LongType::Retry {
        return Ok(LongHeader {
            version,
            kind,
            dcid,
            scid,
            pn_offset: data.len(),
            len: data.len(),
        });
    }
    if kind == LongType::Initial {
        r.varint_bytes().ok_or(NotLong::Malformed)?; // token
    }
    let length = r.varint().ok_or(NotLong::Malformed)?;
    let pn_offset = r.at;
    let len = usize::try_from(length)
        .ok()
        .and_then(|l| pn_offset.checked_add(l))
        .filter(|&l| l <= data.len())
        .ok_or(NotLong::Malformed)?;
    Ok(LongHeader {
        version,
        kind,
        dcid,
        scid,
        pn_offset,
        len,
    })
}

fn read_cid<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let len = usize::from(r.u8()?);
    if len > CID_BYTES_MAX {
        return None;
    }
    r.take(len)
}

/// A cipher suite of TLS 1.3 that QUIC can use (RFC 9001 5.3; not CCM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    pub id: u16,
    aead: &'static aead::Algorithm,
    hp: &'static hp::Algorithm,
    hkdf: hkdf::Algorithm,
    key_bytes: usize,
    hash_bytes: usize,
}

/// The suite with this IANA number, if QUIC packets under it can be opened.
pub fn suite(id: u16) -> Option<Suite> {
    let (aead, hp, hkdf, key_bytes, hash_bytes) = match id {
        0x1301 => (&aead::AES_128_GCM, &hp::AES_128, hkdf::HKDF_SHA256, 16, 32),
        0x1302 => (&aead::AES_256_GCM, &hp::AES_256, hkdf::HKDF_SHA384, 32, 48),
        0x1303 => (
            &aead::CHACHA20_POLY1305,
            &hp::CHACHA20,
            hkdf::HKDF_SHA256,
            32,
            32,
        ),
        _ => return None,
    };
    Some(Suite {
        id,
        aead,
        hp,
        hkdf,
        key_bytes,
        hash_bytes,
    })
}

/// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
fn expand_label(
    algorithm: hkdf::Algorithm,
    secret: &[u8],
    label: &str,
    len: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Prk::new_less_safe(algorithm, secret);
    let length = u16::try_from(len).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label.as_bytes(), &[0]];
    let mut out = Zeroizing::new(vec![0u8; len]);
    prk.expand(&info, Len(len)).ok()?.fill(&mut out).ok()?;
    Some(out)
}

/// The AEAD key and IV of one direction and key phase.
pub struct PacketKey {
    aead: LessSafeKey,
    iv: [u8; NONCE_BYTES],
}

/// Everything one direction of one packet number space needs: packet key, header-protection
/// key, and (for 1-RTT) the secret of the next key phase.
pub struct Keys {
    pub suite: Suite,
    version: &'static Version,
    pub current: PacketKey,
    hp: HeaderProtectionKey,
    secret: Zeroizing<Vec<u8>>,
    /// The key phase bit that `current` goes with (1-RTT only).
    pub phase: bool,
    /// How many key updates were followed.
    pub updates: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keys")
            .field("suite", &self.suite.id)
            .field("phase", &self.phase)
            .finish()
    }
}

fn packet_key(suite: Suite, version: &Version, secret: &[u8]) -> Option<PacketKey> {
    let prefix = version.label_prefix;
    let key = expand_label(suite.hkdf, secret, &format!("{prefix}key"), suite.key_bytes)?;
    let iv = expand_label(suite.hkdf, secret, &format!("{prefix}iv"), NONCE_BYTES)?;
    Some(PacketKey {
        aead: LessSafeKey::new(UnboundKey::new(suite.aead, &key).ok()?),
        iv: iv.as_slice().try_into().ok()?,
    })
}

impl Keys {
    /// The keys of a TLS traffic secret (RFC 9001 5.1).
    pub fn from_secret(suite: Suite, version: &'static Version, secret: &[u8]) -> Option<Keys> {
        let hp_key = expand_label(
            suite.hkdf,
            secret,
            &format!("{}hp", version.label_prefix),
            suite.key_bytes,
        )?;
        Some(Keys {
            suite,
            version,
            current: packet_key(suite, version, secret)?,
            hp: HeaderProtectionKey::new(suite.hp, &hp_key).ok()?,
            secret: Zeroizing::new(secret.to_vec()),
            phase: false,
            updates: 0,
        })
    }

    /// The client's and the server's Initial keys from the client's first Destination
    /// Connection ID (RFC 9001 5.2): no key log needed.
    pub fn initial(version: &'static Version, dcid: &[u8]) -> Option<(Keys, Keys)> {
        // Invariant: 0x1301 is in the table of `suite`.
        let suite = suite(0x1301)?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &version.salt).extract(dcid);
        let side = |label: &[u8]| -> Option<Zeroizing<Vec<u8>>> {
            let length = 32u16.to_be_bytes();
            let label_len = [u8::try_from(6 + label.len()).ok()?];
            let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
            let mut out = Zeroizing::new(vec![0u8; 32]);
            prk.expand(&info, hkdf::HKDF_SHA256)
                .ok()?
                .fill(&mut out)
                .ok()?;
            Some(out)
        };
        let client = Keys::from_secret(suite, version, &side(b"client in")?)?;
        let server = Keys::from_secret(suite, version, &side(b"server in")?)?;
        Some((client, server))
    }

    /// Moves to the next key phase (RFC 9001 6): a new secret from "quic ku", same hp key.
    fn update(&mut self) -> Option<()> {
        let (secret, key) = self.next_phase()?;
        self.current = key;
        self.secret = secret;
        self.phase = !self.phase;
        self.updates += 1;
        Some(())
    }

    /// The secret and packet key of the next key phase.
    fn next_phase(&self) -> Option<(Zeroizing<Vec<u8>>, PacketKey)> {
        let label = format!("{}ku", self.version.label_prefix);
        let next = expand_label(self.suite.hkdf, &self.secret, &label, self.suite.hash_bytes)?;
        let key = packet_key(self.suite, self.version, &next)?;
        Some((next, key))
    }
}

/// A packet whose protection was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub pn: u64,
    /// The frames.
    pub payload: Vec<u8>,
}

/// Removes header protection and opens the packet `packet[..]` whose packet number starts at
/// `pn_offset`. `largest` is the largest packet number opened so far in its space (to expand
/// the truncated number). For short headers, a flipped key phase bit moves `keys` to the next
/// phase when the packet opens under it. `None` when the packet is too short or does not open.
pub fn open(
    keys: &mut Keys,
    packet: &[u8],
    pn_offset: usize,
    largest: Option<u64>,
) -> Option<Opened> {
    let first = *packet.first()?;
    let long = first & 0x80 != 0;
    let sample_at = pn_offset.checked_add(4)?;
    let sample = packet.get(sample_at..sample_at.checked_add(SAMPLE_BYTES)?)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let first = first ^ (mask[0] & if long { 0x0f } else { 0x1f });
    let pn_len = usize::from(first & 3) + 1;
    let pn_end = pn_offset + pn_len;
    let mut header = packet.get(..pn_end)?.to_vec();
    header[0] = first;
    let mut truncated: u64 = 0;
    for (i, byte) in header[pn_offset..].iter_mut().enumerate() {
        *byte ^= mask[1 + i];
        truncated = truncated << 8 | u64::from(*byte);
    }
    let pn = decode_packet_number(largest, truncated, pn_len);
    let body = packet.get(pn_end..)?;
    if body.len() < TAG_BYTES {
        return None;
    }
    let phase = first & 0x04 != 0;
    if !long && phase != keys.phase {
        // A key update: try the next phase, keep it only if the packet opens under it.
        let (secret, key) = keys.next_phase()?;
        let payload = seal_open(&key, pn, &header, body)?;
        keys.current = key;
        keys.secret = secret;
        keys.phase = phase;
        keys.updates += 1;
        return Some(Opened { pn, payload });
    }
    let payload = seal_open(&keys.current, pn, &header, body)?;
    Some(Opened { pn, payload })
}

fn nonce(key: &PacketKey, pn: u64) -> Nonce {
    let mut nonce = key.iv;
    for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    Nonce::assume_unique_for_key(nonce)
}

fn seal_open(key: &PacketKey, pn: u64, header: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let mut buf = body.to_vec();
    let len = key
        .aead
        .open_in_place(nonce(key, pn), Aad::from(header), &mut buf)
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

/// RFC 9000 A.3: the full packet number closest to the next one expected.
pub fn decode_packet_number(largest: Option<u64>, truncated: u64, pn_len: usize) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let window = 1u64 << (pn_len * 8);
    let half = window / 2;
    let candidate = (expected & !(window - 1)) | truncated;
    if candidate.saturating_add(half) <= expected && candidate < (1u64 << 62) - window {
        candidate + window
    } else if candidate > expected.saturating_add(half) && candidate >= window {
        candidate - window
    } else {
        candidate
    }
}

/// Protects a packet: the inverse of [`open`], for tests and the benchmark's generator. `header`
/// ends with the packet number (of `pn_len` bytes, its low bits in the first byte already) and
/// for long headers holds a Length that counts the number, `payload` and the tag.
pub fn protect(keys: &Keys, header: &[u8], pn: u64, payload: &[u8]) -> Option<Vec<u8>> {
    let first = *header.first()?;
    let pn_len = usize::from(first & 3) + 1;
    let pn_offset = header.len().checked_sub(pn_len)?;
    let mut body = payload.to_vec();
    keys.current
        .aead
        .seal_in_place_append_tag(nonce(&keys.current, pn), Aad::from(header), &mut body)
        .ok()?;
    let mut packet = header.to_vec();
    packet.extend_from_slice(&body);
    let sample_at = pn_offset + 4;
    let sample = packet.get(sample_at..sample_at + SAMPLE_BYTES)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    packet[0] ^= mask[0] & if first & 0x80 != 0 { 0x0f } else { 0x1f };
    for i in 0..pn_len {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    Some(packet)
}

/// Moves `keys` to the next key phase (for tests and the generator; decryption does it itself).
pub fn update_keys(keys: &mut Keys) -> Option<()> {
    keys.update()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn unhex(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn initial_keys_of_rfc_9001_a_1_and_rfc_9369_a_1() {
        let dcid = unhex("8394c8f03e515708");
        // (version, client key, iv, hp, server key, iv, hp)
        let cases = [
            (
                &V1,
                "1f369613dd76d5467730efcbe3b1a22d",
                "fa044b2f42a3fd3b46fb255c",
                "9f50449e04a0e810283a1e9933adedd2",
                "cf3a5331653c364c88f0f379b6067e37",
                "0ac1493ca1905853b0bba03e",
                "c206b8d9b9f0f37644430b490eeaa314",
            ),
            (
                &V2,
                "8b1a0bc121284290a29e0971b5cd045d",
                "91f73e2351d8fa91660e909f",
                "45b95e15235d6f45a6b19cbcb0294ba9",
                "82db637861d55e1d011f19ea71d5d2a7",
                "dd13c276499c0249d3310652",
                "edf6d05c83121201b436e16877593c3a",
            ),
        ];
        for (version, ck, civ, chp, sk, siv, shp) in cases {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &version.salt).extract(&dcid);
            let mut initial = [0u8; 32];
            // Each side's secret the way `Keys::initial` derives it, then its key, iv and hp.
            for (label, key, iv, hp) in [("client in", ck, civ, chp), ("server in", sk, siv, shp)] {
                let length = 32u16.to_be_bytes();
                let label_len = [(6 + label.len()) as u8];
                let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label.as_bytes(), &[0]];
                prk.expand(&info, hkdf::HKDF_SHA256)
                    .unwrap()
                    .fill(&mut initial)
                    .unwrap();
                let p = version.label_prefix;
                let derive = |l: &str, n| expand_label(hkdf::HKDF_SHA256, &initial, l, n).unwrap();
                assert_eq!(
                    *derive(&format!("{p}key"), 16),
                    unhex(key),
                    "{} {label}",
                    version.name
                );
                assert_eq!(
                    *derive(&format!("{p}iv"), 12),
                    unhex(iv),
                    "{} {label}",
                    version.name
                );
                assert_eq!(
                    *derive(&format!("{p}hp"), 16),
                    unhex(hp),
                    "{} {label}",
                    version.name
                );
            }
        }
    }

    #[test]
    fn chacha20_short_header_packet_of_rfc_9001_a_5_opens() {
        let secret = unhex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b");
        let mut keys = Keys::from_secret(suite(0x1303).unwrap(), &V1, &secret).unwrap();
        let packet = unhex("4cfe4189655e5cd55c41f69080575d7999c25a5bfb");
        let opened = open(&mut keys, &packet, 1, Some(654_360_563)).unwrap();
        assert_eq!(opened.pn, 654_360_564);
        assert_eq!(opened.payload, [0x01]);
        // One bit flipped in the ciphertext: no longer opens.
        let mut bad = packet.clone();
        bad[8] ^= 1;
        assert!(open(&mut keys, &bad, 1, Some(654_360_563)).is_none());
    }

    #[test]
    fn a_key_update_is_followed_and_a_wrong_phase_is_not_taken() {
        let secret = [7u8; 32];
        let suite = suite(0x1301).unwrap();
        let sender = Keys::from_secret(suite, &V2, &secret).unwrap();
        let mut receiver = Keys::from_secret(suite, &V2, &secret).unwrap();
        let header = [0x41, 9, 9, 0, 5];
        let packet = protect(&sender, &header, 5, b"first phase, long enough").unwrap();
        let opened = open(&mut receiver, &packet, 3, None).unwrap();
        assert_eq!(opened.payload, b"first phase, long enough");
        let mut updated = Keys::from_secret(suite, &V2, &secret).unwrap();
        update_keys(&mut updated).unwrap();
        let header = [0x45, 9, 9, 0, 6];
        let packet = protect(&updated, &header, 6, b"second phase, long enough").unwrap();
        let opened = open(&mut receiver, &packet, 3, Some(5)).unwrap();
        assert_eq!(opened.payload, b"second phase, long enough");
        assert_eq!(receiver.updates, 1);
        // A packet claiming the other phase under the old key does not move the receiver.
        let header = [0x41, 9, 9, 0, 7];
        let stale = protect(&updated, &header, 7, b"wrong phase bit, long").unwrap();
        assert!(open(&mut receiver, &stale, 3, Some(6)).is_none());
        assert_eq!(receiver.updates, 1);
    }

    #[test]
    fn varints_of_rfc_9000_a_1() {
        assert_eq!(
            varint(&unhex("c2197c5eff14e88c")),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(varint(&unhex("9d7f3e7d")), Some((494_878_333, 4)));
        assert_eq!(varint(&unhex("7bbd")), Some((15_293, 2)));
        assert_eq!(varint(&unhex("25")), Some((37, 1)));
        assert_eq!(varint(&unhex("4025")), Some((37, 2)));
        assert_eq!(varint(&unhex("7b")), None);
    }

    #[test]
    fn packet_numbers_of_rfc_9000_a_3() {
        assert_eq!(
            decode_packet_number(Some(0xa82f30ea), 0x9b32, 2),
            0xa82f9b32
        );
        assert_eq!(decode_packet_number(None, 0, 1), 0);
        assert_eq!(decode_packet_number(Some(0xff), 0x01, 1), 0x101);
    }

    #[test]
    fn every_named_version_reads_and_others_do_not() {
        for n in [1, 0x6b3343cf, 0xff00001d, 0xff000020] {
            assert!(version(n).is_some(), "{n:x}");
        }
        for n in [0, 2, 0xff00001c, 0x1a2a3a4a] {
            assert!(version(n).is_none(), "{n:x}");
        }
        let mut short = vec![0x40];
        short.extend_from_slice(&[0; 30]);
        assert_eq!(parse_long(&short), Err(NotLong::Short));
        assert_eq!(
            parse_long(&[0xc0, 0, 0, 0, 0, 0, 0]),
            Err(NotLong::Version(0))
        );
        // A connection ID longer than 20 bytes.
        let mut bad = vec![0xc0, 0, 0, 0, 1, 21];
        bad.extend_from_slice(&[0; 40]);
        assert_eq!(parse_long(&bad), Err(NotLong::Malformed));
    }
}
