//! Record protection: the keys of one direction and how one record is opened.
//!
//! - AEAD suites (GCM and ChaCha20-Poly1305 through aws-lc-rs, CCM and CCM_8 through RustCrypto's
//!   `ccm`, which aws-lc-rs lacks): TLS 1.2 nonces are the 4-byte salt and the record's 8-byte
//!   explicit nonce (GCM, CCM) or the IV XOR the sequence number (ChaCha20); TLS 1.3 always XORs.
//! - CBC suites (RFC 2246, 4346, 5246; SSL 3.0 in RFC 6101): MAC-then-encrypt, or
//!   encrypt-then-MAC when the ServerHello agreed to it (RFC 7366). TLS 1.0 and SSL 3.0 chain
//!   the IV from the previous record's last ciphertext block; TLS 1.1 on send it in front of
//!   each record. The padding and the MAC are both checked: a record failing either is an
//!   authentication failure, like a bad AEAD tag.
//! - Key blocks: the TLS 1.2 PRF with the suite's hash, the TLS 1.0/1.1 PRF (MD5 XOR SHA-1),
//!   SSL 3.0's MD5/SHA-1 construction; all from the logged master secret.
//!
//! DTLS uses the same code: its sequence number for the MAC and the additional data is the
//! 16-bit epoch and the 48-bit record number, which the caller puts in [`RecordKey::seq`].

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, KeyInit};
use aws_lc_rs::aead::{self as lc, Aad, LessSafeKey, Nonce, UnboundKey};
use ccm::aead::AeadInPlace;
use ccm::consts::{U8, U12, U16};
use hmac::Hmac;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384};
use zeroize::Zeroizing;

use crate::tls::suites::{Aead, Block, Hash, Mac, Protection, Suite};

/// Bytes of an AEAD nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes of the explicit nonce in front of a TLS 1.2 GCM or CCM record.
const EXPLICIT_NONCE_BYTES: usize = 8;
/// Largest CBC block (AES, Camellia); 3DES has 8.
const BLOCK_BYTES_MAX: usize = 16;

/// The protocol versions whose records differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl Version {
    /// From a ServerHello's version: DTLS 1.0 is TLS 1.1's record protection, DTLS 1.2 is
    /// TLS 1.2's.
    pub fn from_wire(version: u16) -> Option<Version> {
        Some(match version {
            0x0300 => Version::Ssl3,
            0x0301 => Version::Tls10,
            0x0302 | 0xfeff => Version::Tls11,
            0x0303 | 0xfefd => Version::Tls12,
            0x0304 => Version::Tls13,
            _ => return None,
        })
    }
}

enum AeadKey {
    AwsLc(LessSafeKey),
    Ccm128(Box<ccm::Ccm<aes::Aes128, U16, U12>>),
    Ccm256(Box<ccm::Ccm<aes::Aes256, U16, U12>>),
    Ccm128x8(Box<ccm::Ccm<aes::Aes128, U8, U12>>),
    Ccm256x8(Box<ccm::Ccm<aes::Aes256, U8, U12>>),
}

impl AeadKey {
    fn new(aead: Aead, key: &[u8]) -> Option<AeadKey> {
        let lc = |algorithm: &'static lc::Algorithm| {
            Some(AeadKey::AwsLc(LessSafeKey::new(
                UnboundKey::new(algorithm, key).ok()?,
            )))
        };
        match aead {
            Aead::Aes128Gcm => lc(&lc::AES_128_GCM),
            Aead::Aes256Gcm => lc(&lc::AES_256_GCM),
            Aead::ChaCha20Poly1305 => lc(&lc::CHACHA20_POLY1305),
            Aead::Aes128Ccm => Some(AeadKey::Ccm128(Box::new(
                ccm::Ccm::new_from_slice(key).ok()?,
            ))),
            Aead::Aes256Ccm => Some(AeadKey::Ccm256(Box::new(
                ccm::Ccm::new_from_slice(key).ok()?,
            ))),
            Aead::Aes128Ccm8 => Some(AeadKey::Ccm128x8(Box::new(
                ccm::Ccm::new_from_slice(key).ok()?,
            ))),
            Aead::Aes256Ccm8 => Some(AeadKey::Ccm256x8(Box::new(
                ccm::Ccm::new_from_slice(key).ok()?,
            ))),
        }
    }

    /// Opens `buf` (ciphertext then tag) in place; the plaintext length, or `None` when the
    /// tag does not match.
    fn open(
        &self,
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
        buf: &mut [u8],
        tag_len: usize,
    ) -> Option<usize> {
        let len = buf.len().checked_sub(tag_len)?;
        let (text, tag) = buf.split_at_mut(len);
        let n = GenericArray::from_slice(&nonce);
        let ok = match self {
            AeadKey::AwsLc(key) => {
                let nonce = Nonce::assume_unique_for_key(nonce);
                // aws-lc-rs wants ciphertext and tag together.
                return key
                    .open_in_place(nonce, Aad::from(aad), buf)
                    .ok()
                    .map(|p| p.len());
            }
            AeadKey::Ccm128(k) => {
                k.decrypt_in_place_detached(n, aad, text, GenericArray::from_slice(tag))
            }
            AeadKey::Ccm256(k) => {
                k.decrypt_in_place_detached(n, aad, text, GenericArray::from_slice(tag))
            }
            AeadKey::Ccm128x8(k) => {
                k.decrypt_in_place_detached(n, aad, text, GenericArray::from_slice(tag))
            }
            AeadKey::Ccm256x8(k) => {
                k.decrypt_in_place_detached(n, aad, text, GenericArray::from_slice(tag))
            }
        };
        ok.ok().map(|()| len)
    }
}

enum BlockKey {
    Aes128(Box<aes::Aes128>),
    Aes256(Box<aes::Aes256>),
    Camellia128(Box<camellia::Camellia128>),
    Camellia256(Box<camellia::Camellia256>),
    TripleDes(Box<des::TdesEde3>),
}

impl BlockKey {
    fn new(block: Block, key: &[u8]) -> Option<BlockKey> {
        Some(match block {
            Block::Aes128 => BlockKey::Aes128(Box::new(aes::Aes128::new_from_slice(key).ok()?)),
            Block::Aes256 => BlockKey::Aes256(Box::new(aes::Aes256::new_from_slice(key).ok()?)),
            Block::Camellia128 => {
                BlockKey::Camellia128(Box::new(camellia::Camellia128::new_from_slice(key).ok()?))
            }
            Block::Camellia256 => {
                BlockKey::Camellia256(Box::new(camellia::Camellia256::new_from_slice(key).ok()?))
            }
            Block::TripleDes => {
                BlockKey::TripleDes(Box::new(des::TdesEde3::new_from_slice(key).ok()?))
            }
        })
    }

    /// Decrypts one block in place; `block` has the cipher's block length (the caller cuts
    /// with `chunks_exact` of it).
    fn decrypt_block(&self, block: &mut [u8]) {
        match self {
            BlockKey::Aes128(k) => k.decrypt_block(GenericArray::from_mut_slice(block)),
            BlockKey::Aes256(k) => k.decrypt_block(GenericArray::from_mut_slice(block)),
            BlockKey::Camellia128(k) => k.decrypt_block(GenericArray::from_mut_slice(block)),
            BlockKey::Camellia256(k) => k.decrypt_block(GenericArray::from_mut_slice(block)),
            BlockKey::TripleDes(k) => k.decrypt_block(GenericArray::from_mut_slice(block)),
        }
    }
}

enum Protect {
    Aead {
        key: AeadKey,
        aead: Aead,
        iv: [u8; NONCE_BYTES],
    },
    Cbc {
        key: BlockKey,
        block: Block,
        mac: Mac,
        mac_key: Zeroizing<Vec<u8>>,
        /// TLS 1.0 and SSL 3.0: the IV of the next record (the last ciphertext block).
        chained_iv: Option<[u8; BLOCK_BYTES_MAX]>,
        ssl3: bool,
        encrypt_then_mac: bool,
    },
}

/// The keys of one direction for one epoch, and the next sequence number.
pub struct RecordKey {
    protect: Protect,
    tls13: bool,
    pub seq: u64,
}

impl RecordKey {
    /// A TLS 1.3 key (or a TLS 1.2 AEAD key when `tls13` is false) from its key and IV.
    pub fn aead(aead: Aead, key: &[u8], iv: &[u8], tls13: bool) -> Option<RecordKey> {
        let mut full = [0u8; NONCE_BYTES];
        full.get_mut(..iv.len())?.copy_from_slice(iv);
        Some(RecordKey {
            protect: Protect::Aead {
                key: AeadKey::new(aead, key)?,
                aead,
                iv: full,
            },
            tls13,
            seq: 0,
        })
    }

    /// IV XOR the sequence number, left-padded (TLS 1.3, and TLS 1.2 ChaCha20-Poly1305).
    fn xor_nonce(iv: &[u8; NONCE_BYTES], seq: u64) -> [u8; NONCE_BYTES] {
        let mut nonce = *iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// Opens one record (`header` is the 5-byte TLS header, or DTLS's type, version and length
    /// in the same shape) into `scratch`: the real content type and where its plaintext is in
    /// `scratch`. `None` when authentication fails or the record is malformed. Does not advance
    /// the sequence number; a CBC key chaining its IV moves it on success only.
    pub fn open(
        &mut self,
        header: &[u8; 5],
        body: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Option<(u8, std::ops::Range<usize>)> {
        scratch.clear();
        let seq = self.seq;
        match &mut self.protect {
            Protect::Aead { key, aead, iv } if self.tls13 => {
                scratch.extend_from_slice(body);
                let len = key.open(Self::xor_nonce(iv, seq), header, scratch, aead.tag_len())?;
                // The inner plaintext is content, its type, then zero padding (RFC 8446 5.2).
                let end = scratch[..len].iter().rposition(|b| *b != 0)?;
                Some((scratch[end], 0..end))
            }
            Protect::Aead { key, aead, iv } => {
                let (nonce, ciphertext) = if aead.tls12_iv_len() == 4 {
                    let explicit = body.get(..EXPLICIT_NONCE_BYTES)?;
                    let mut nonce = [0u8; NONCE_BYTES];
                    nonce[..4].copy_from_slice(&iv[..4]);
                    nonce[4..].copy_from_slice(explicit);
                    (nonce, &body[EXPLICIT_NONCE_BYTES..])
                } else {
                    (Self::xor_nonce(iv, seq), body)
                };
                let plaintext_len = ciphertext.len().checked_sub(aead.tag_len())?;
                let aad = additional_data(seq, header, plaintext_len)?;
                scratch.extend_from_slice(ciphertext);
                let len = key.open(nonce, &aad, scratch, aead.tag_len())?;
                Some((header[0], 0..len))
            }
            Protect::Cbc {
                key,
                block,
                mac,
                mac_key,
                chained_iv,
                ssl3,
                encrypt_then_mac,
            } => {
                let bs = block.block_len();
                let mut body = body;
                if *encrypt_then_mac {
                    let split = body.len().checked_sub(mac.output_len())?;
                    let (protected, tag) = body.split_at(split);
                    // The MAC covers the header with the length of IV and ciphertext only.
                    let mut pseudo = *header;
                    pseudo[3..].copy_from_slice(&u16::try_from(split).ok()?.to_be_bytes());
                    let expected = record_mac(*mac, false, mac_key, seq, &pseudo, protected)?;
                    if expected.as_slice() != tag {
                        return None;
                    }
                    body = protected;
                }
                if body.is_empty() || !body.len().is_multiple_of(bs) {
                    return None;
                }
                let mut iv = [0u8; BLOCK_BYTES_MAX];
                let ciphertext = match chained_iv {
                    Some(chained) => {
                        iv[..bs].copy_from_slice(&chained[..bs]);
                        body
                    }
                    None => {
                        iv[..bs].copy_from_slice(body.get(..bs)?);
                        &body[bs..]
                    }
                };
                scratch.extend_from_slice(ciphertext);
                cbc_decrypt(key, bs, &iv[..bs], scratch);
                let pad = usize::from(*scratch.last()?);
                let unpadded = scratch.len().checked_sub(pad + 1)?;
                let padding_ok = if *ssl3 {
                    pad < bs
                } else {
                    scratch[unpadded..].iter().all(|b| usize::from(*b) == pad)
                };
                if !padding_ok {
                    return None;
                }
                let content_len = if *encrypt_then_mac {
                    unpadded
                } else {
                    let content_len = unpadded.checked_sub(mac.output_len())?;
                    let mut pseudo = *header;
                    pseudo[3..].copy_from_slice(&u16::try_from(content_len).ok()?.to_be_bytes());
                    let expected =
                        record_mac(*mac, *ssl3, mac_key, seq, &pseudo, &scratch[..content_len])?;
                    if expected.as_slice() != &scratch[content_len..unpadded] {
                        return None;
                    }
                    content_len
                };
                if let Some(chained) = chained_iv {
                    let last = ciphertext.get(ciphertext.len().checked_sub(bs)?..)?;
                    chained[..bs].copy_from_slice(last);
                }
                Some((header[0], 0..content_len))
            }
        }
    }
}

/// TLS 1.2 AEAD additional data: sequence number, type, version and plaintext length.
fn additional_data(seq: u64, header: &[u8; 5], plaintext_len: usize) -> Option<[u8; 13]> {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8..11].copy_from_slice(&header[..3]);
    aad[11..].copy_from_slice(&u16::try_from(plaintext_len).ok()?.to_be_bytes());
    Some(aad)
}

/// CBC decryption in place with `iv`; `data` is a whole number of blocks.
fn cbc_decrypt(key: &BlockKey, bs: usize, iv: &[u8], data: &mut [u8]) {
    let mut previous = [0u8; BLOCK_BYTES_MAX];
    previous[..bs].copy_from_slice(iv);
    for block in data.chunks_exact_mut(bs) {
        let mut this = [0u8; BLOCK_BYTES_MAX];
        this[..bs].copy_from_slice(block);
        key.decrypt_block(block);
        for (b, p) in block.iter_mut().zip(&previous[..bs]) {
            *b ^= p;
        }
        previous = this;
    }
}

/// The MAC of a record: HMAC over sequence number, type, version, length and content (TLS), or
/// SSL 3.0's nested hash over sequence number, type, length and content. `header` holds type,
/// version and the length the MAC covers.
fn record_mac(
    mac: Mac,
    ssl3: bool,
    key: &[u8],
    seq: u64,
    header: &[u8; 5],
    content: &[u8],
) -> Option<Vec<u8>> {
    let seq = seq.to_be_bytes();
    if ssl3 {
        // RFC 6101 5.2.3.1: hash(secret + pad_2 + hash(secret + pad_1 + seq + type + length + data)).
        fn nested<D: Digest>(key: &[u8], pads: usize, parts: &[&[u8]]) -> Vec<u8> {
            let mut inner = D::new();
            inner.update(key);
            inner.update(vec![0x36; pads]);
            for part in parts {
                inner.update(part);
            }
            let mut outer = D::new();
            outer.update(key);
            outer.update(vec![0x5c; pads]);
            outer.update(inner.finalize());
            outer.finalize().to_vec()
        }
        let parts: [&[u8]; 4] = [&seq, &header[..1], &header[3..], content];
        return match mac {
            Mac::Sha1 => Some(nested::<Sha1>(key, 40, &parts)),
            // SSL 3.0 has no SHA-2 suites.
            Mac::Sha256 | Mac::Sha384 => None,
        };
    }
    fn hmac<M: hmac::Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
        for part in parts {
            m.update(part);
        }
        Some(m.finalize().into_bytes().to_vec())
    }
    let parts: [&[u8]; 3] = [&seq, header, content];
    match mac {
        Mac::Sha1 => hmac::<Hmac<Sha1>>(key, &parts),
        Mac::Sha256 => hmac::<Hmac<Sha256>>(key, &parts),
        Mac::Sha384 => hmac::<Hmac<Sha384>>(key, &parts),
    }
}

/// P_hash of RFC 5246 5: HMAC chained over `seed` until `out` is full.
fn p_hash<M: hmac::Mac + hmac::digest::KeyInit + Clone>(
    secret: &[u8],
    seed: &[&[u8]],
    out: &mut [u8],
) -> Option<()> {
    let mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).ok()?;
    let mut a = {
        let mut m = mac.clone();
        for s in seed {
            m.update(s);
        }
        m.finalize().into_bytes()
    };
    let mut at = 0;
    while at < out.len() {
        let mut m = mac.clone();
        m.update(&a);
        for s in seed {
            m.update(s);
        }
        let chunk = m.finalize().into_bytes();
        let n = chunk.len().min(out.len() - at);
        out[at..at + n].copy_from_slice(&chunk[..n]);
        at += n;
        let mut m = mac.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
    Some(())
}

/// The TLS PRF of `version` (RFC 2246 5 for 1.0 and 1.1, RFC 5246 5 for 1.2), `len` bytes.
pub fn prf(
    version: Version,
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    seed: &[&[u8]],
    len: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    let mut full: Vec<&[u8]> = vec![label];
    full.extend_from_slice(seed);
    match version {
        Version::Tls12 => match hash {
            Hash::Sha256 => p_hash::<Hmac<Sha256>>(secret, &full, &mut out)?,
            Hash::Sha384 => p_hash::<Hmac<Sha384>>(secret, &full, &mut out)?,
        },
        Version::Tls10 | Version::Tls11 => {
            // The secret's two halves (sharing the middle byte when its length is odd) feed
            // P_MD5 and P_SHA1, whose outputs are XORed.
            let half = secret.len().div_ceil(2);
            let (first, second) = (&secret[..half], &secret[secret.len() - half..]);
            p_hash::<Hmac<Md5>>(first, &full, &mut out)?;
            let mut sha = Zeroizing::new(vec![0u8; len]);
            p_hash::<Hmac<Sha1>>(second, &full, &mut sha)?;
            for (o, s) in out.iter_mut().zip(sha.iter()) {
                *o ^= s;
            }
        }
        Version::Ssl3 | Version::Tls13 => return None,
    }
    Some(out)
}

/// SSL 3.0's key block (RFC 6101 6.2.2): MD5(master + SHA1("A" + master + randoms)), then
/// with "BB", "CCC", ... until `len` bytes.
fn ssl3_key_block(
    master: &[u8],
    server_random: &[u8],
    client_random: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 16));
    let mut i = 0u8;
    while out.len() < len {
        i += 1;
        let salt = vec![b'A' + i - 1; usize::from(i)];
        let inner = Sha1::new()
            .chain_update(&salt)
            .chain_update(master)
            .chain_update(server_random)
            .chain_update(client_random)
            .finalize();
        let block = Md5::new()
            .chain_update(master)
            .chain_update(inner)
            .finalize();
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    out
}

/// TLS 1.2 and older (and DTLS): the client's and the server's record keys from the master
/// secret. `encrypt_then_mac` is whether the ServerHello agreed to RFC 7366.
pub fn tls12_keys(
    suite: &Suite,
    version: Version,
    master: &[u8],
    client_random: &[u8],
    server_random: &[u8],
    encrypt_then_mac: bool,
) -> Option<(RecordKey, RecordKey)> {
    let (mac_len, key_len, iv_len) = match suite.protection {
        Protection::Aead(a) => (0, a.key_len(), a.tls12_iv_len()),
        Protection::Cbc(b, m) => (m.output_len(), b.key_len(), b.block_len()),
    };
    let len = 2 * (mac_len + key_len + iv_len);
    let block = match version {
        Version::Ssl3 => ssl3_key_block(master, server_random, client_random, len),
        _ => prf(
            version,
            suite.hash,
            master,
            b"key expansion",
            &[server_random, client_random],
            len,
        )?,
    };
    let (client_mac, rest) = block.split_at(mac_len);
    let (server_mac, rest) = rest.split_at(mac_len);
    let (client_key, rest) = rest.split_at(key_len);
    let (server_key, rest) = rest.split_at(key_len);
    let (client_iv, server_iv) = rest.split_at(iv_len);
    let side = |mac_key: &[u8], key: &[u8], iv: &[u8]| -> Option<RecordKey> {
        match suite.protection {
            Protection::Aead(a) => RecordKey::aead(a, key, iv, false),
            Protection::Cbc(block, mac) => {
                let chained = matches!(version, Version::Ssl3 | Version::Tls10).then(|| {
                    let mut first = [0u8; BLOCK_BYTES_MAX];
                    first[..iv.len()].copy_from_slice(iv);
                    first
                });
                Some(RecordKey {
                    protect: Protect::Cbc {
                        key: BlockKey::new(block, key)?,
                        block,
                        mac,
                        mac_key: Zeroizing::new(mac_key.to_vec()),
                        chained_iv: chained,
                        ssl3: version == Version::Ssl3,
                        encrypt_then_mac: encrypt_then_mac && version != Version::Ssl3,
                    },
                    tls13: false,
                    seq: 0,
                })
            }
        }
    };
    Some((
        side(client_mac, client_key, client_iv)?,
        side(server_mac, server_key, server_iv)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our P_SHA256 against aws-lc-rs's TLS 1.2 PRF.
    #[test]
    fn tls12_prf_matches_aws_lc() {
        use aws_lc_rs::tls_prf;
        let secret = [7u8; 48];
        let ours = prf(
            Version::Tls12,
            Hash::Sha256,
            &secret,
            b"key expansion",
            &[b"server", b"client"],
            100,
        )
        .unwrap();
        let theirs = tls_prf::Secret::new(&tls_prf::P_SHA256, &secret)
            .unwrap()
            .derive_with_seed_concatination(b"key expansion", b"server", b"client", 100)
            .unwrap();
        assert_eq!(ours.as_slice(), theirs.as_ref());
        let ours = prf(Version::Tls12, Hash::Sha384, &secret, b"x", &[b"y"], 70).unwrap();
        let theirs = tls_prf::Secret::new(&tls_prf::P_SHA384, &secret)
            .unwrap()
            .derive_with_seed_concatination(b"x", b"y", b"", 70)
            .unwrap();
        assert_eq!(ours.as_slice(), theirs.as_ref());
    }
}
