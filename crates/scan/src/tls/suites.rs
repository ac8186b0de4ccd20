//! The cipher suites we decrypt, by IANA number: how each protects its records (an AEAD, or a
//! CBC block cipher with an HMAC) and which hash its TLS 1.2 PRF or TLS 1.3 HKDF uses.
//!
//! The key exchange (RSA, DHE, ECDHE, PSK and their mixes) changes nothing once the master
//! secret is in the key log, so suites differing only in it share a row shape. RC4, NULL,
//! export and ARIA suites are not here: a flow using one is listed with the suite's number and
//! a note that it is not decrypted.

/// The hash of the TLS 1.2 PRF (and of the TLS 1.3 key schedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

/// An authenticated cipher (TLS 1.2 RFC 5288, 6655, 7905; TLS 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
    Aes128Ccm,
    Aes256Ccm,
    /// CCM with an 8-byte tag.
    Aes128Ccm8,
    Aes256Ccm8,
}

impl Aead {
    pub fn key_len(self) -> usize {
        match self {
            Aead::Aes128Gcm | Aead::Aes128Ccm | Aead::Aes128Ccm8 => 16,
            Aead::Aes256Gcm | Aead::Aes256Ccm | Aead::Aes256Ccm8 | Aead::ChaCha20Poly1305 => 32,
        }
    }

    pub fn tag_len(self) -> usize {
        match self {
            Aead::Aes128Ccm8 | Aead::Aes256Ccm8 => 8,
            _ => 16,
        }
    }

    /// TLS 1.2: bytes of the IV from the key block. GCM and CCM take a 4-byte salt and carry
    /// the other 8 nonce bytes in each record; ChaCha20-Poly1305 XORs a 12-byte IV with the
    /// sequence number.
    pub fn tls12_iv_len(self) -> usize {
        match self {
            Aead::ChaCha20Poly1305 => 12,
            _ => 4,
        }
    }
}

/// A block cipher used in CBC mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Aes128,
    Aes256,
    Camellia128,
    Camellia256,
    TripleDes,
}

impl Block {
    pub fn key_len(self) -> usize {
        match self {
            Block::Aes128 | Block::Camellia128 => 16,
            Block::TripleDes => 24,
            Block::Aes256 | Block::Camellia256 => 32,
        }
    }

    pub fn block_len(self) -> usize {
        match self {
            Block::TripleDes => 8,
            _ => 16,
        }
    }
}

/// The record MAC of a CBC suite: HMAC in TLS, SSL 3.0's own construction in SSL 3.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mac {
    Sha1,
    Sha256,
    Sha384,
}

impl Mac {
    pub fn output_len(self) -> usize {
        match self {
            Mac::Sha1 => 20,
            Mac::Sha256 => 32,
            Mac::Sha384 => 48,
        }
    }
}

/// How a suite protects records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    Aead(Aead),
    Cbc(Block, Mac),
}

/// A cipher suite we can decrypt.
#[derive(Debug)]
pub struct Suite {
    pub id: u16,
    pub name: &'static str,
    pub tls13: bool,
    pub protection: Protection,
    /// The TLS 1.2 PRF hash (or TLS 1.3 HKDF hash); TLS 1.0 and 1.1 use MD5 and SHA-1.
    pub hash: Hash,
}

impl Suite {
    /// Whether this suite may be used with `version` (a TLS, SSL or DTLS wire version):
    /// TLS 1.3 suites only with 1.3, AEAD and SHA-2 MAC suites from TLS 1.2 (DTLS 1.2) on,
    /// SHA-1 CBC suites with every version from SSL 3.0.
    pub fn allowed_with(&self, version: u16) -> bool {
        match (version, self.protection) {
            (0x0304, _) => self.tls13,
            _ if self.tls13 => false,
            (0x0303 | 0xfefd, _) => true,
            (0x0300..=0x0302 | 0xfeff, Protection::Cbc(_, Mac::Sha1)) => true,
            _ => false,
        }
    }
}

const S256: Hash = Hash::Sha256;
const S384: Hash = Hash::Sha384;
use Aead::*;
use Block::{Aes128, Aes256, Camellia128, Camellia256, TripleDes};
use Mac::{Sha1, Sha256, Sha384};

const fn tls13(id: u16, name: &'static str, aead: Aead, hash: Hash) -> Suite {
    Suite {
        id,
        name,
        tls13: true,
        protection: Protection::Aead(aead),
        hash,
    }
}

const fn aead(id: u16, name: &'static str, aead: Aead, hash: Hash) -> Suite {
    Suite {
        id,
        name,
        tls13: false,
        protection: Protection::Aead(aead),
        hash,
    }
}

/// A CBC suite: its PRF hash is SHA-384 with a SHA-384 MAC, else SHA-256 (RFC 5246, 5289).
const fn cbc(id: u16, name: &'static str, block: Block, mac: Mac) -> Suite {
    Suite {
        id,
        name,
        tls13: false,
        protection: Protection::Cbc(block, mac),
        hash: match mac {
            Mac::Sha384 => Hash::Sha384,
            _ => Hash::Sha256,
        },
    }
}

/// Every suite we decrypt.
pub static SUITES: &[Suite] = &[
    tls13(0x1301, "TLS_AES_128_GCM_SHA256", Aes128Gcm, S256),
    tls13(0x1302, "TLS_AES_256_GCM_SHA384", Aes256Gcm, S384),
    tls13(
        0x1303,
        "TLS_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    tls13(0x1304, "TLS_AES_128_CCM_SHA256", Aes128Ccm, S256),
    tls13(0x1305, "TLS_AES_128_CCM_8_SHA256", Aes128Ccm8, S256),
    aead(0x009c, "TLS_RSA_WITH_AES_128_GCM_SHA256", Aes128Gcm, S256),
    aead(0x009d, "TLS_RSA_WITH_AES_256_GCM_SHA384", Aes256Gcm, S384),
    aead(
        0x009e,
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0x009f,
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0x00a2,
        "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0x00a3,
        "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(0x00a8, "TLS_PSK_WITH_AES_128_GCM_SHA256", Aes128Gcm, S256),
    aead(0x00a9, "TLS_PSK_WITH_AES_256_GCM_SHA384", Aes256Gcm, S384),
    aead(
        0x00aa,
        "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0x00ab,
        "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0x00ac,
        "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0x00ad,
        "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0xc02b,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0xc02c,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0xc02d,
        "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0xc02e,
        "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0xc02f,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0xc030,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0xc031,
        "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0xc032,
        "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0xd001,
        "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        S256,
    ),
    aead(
        0xd002,
        "TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        S384,
    ),
    aead(
        0xcca8,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    aead(
        0xcca9,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    aead(
        0xccaa,
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    aead(
        0xccab,
        "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    aead(
        0xccac,
        "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    aead(
        0xccad,
        "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    aead(
        0xccae,
        "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        S256,
    ),
    aead(0xc09c, "TLS_RSA_WITH_AES_128_CCM", Aes128Ccm, S256),
    aead(0xc09d, "TLS_RSA_WITH_AES_256_CCM", Aes256Ccm, S256),
    aead(0xc09e, "TLS_DHE_RSA_WITH_AES_128_CCM", Aes128Ccm, S256),
    aead(0xc09f, "TLS_DHE_RSA_WITH_AES_256_CCM", Aes256Ccm, S256),
    aead(0xc0a0, "TLS_RSA_WITH_AES_128_CCM_8", Aes128Ccm8, S256),
    aead(0xc0a1, "TLS_RSA_WITH_AES_256_CCM_8", Aes256Ccm8, S256),
    aead(0xc0a2, "TLS_DHE_RSA_WITH_AES_128_CCM_8", Aes128Ccm8, S256),
    aead(0xc0a3, "TLS_DHE_RSA_WITH_AES_256_CCM_8", Aes256Ccm8, S256),
    aead(0xc0a4, "TLS_PSK_WITH_AES_128_CCM", Aes128Ccm, S256),
    aead(0xc0a5, "TLS_PSK_WITH_AES_256_CCM", Aes256Ccm, S256),
    aead(0xc0a6, "TLS_DHE_PSK_WITH_AES_128_CCM", Aes128Ccm, S256),
    aead(0xc0a7, "TLS_DHE_PSK_WITH_AES_256_CCM", Aes256Ccm, S256),
    aead(0xc0a8, "TLS_PSK_WITH_AES_128_CCM_8", Aes128Ccm8, S256),
    aead(0xc0a9, "TLS_PSK_WITH_AES_256_CCM_8", Aes256Ccm8, S256),
    aead(0xc0aa, "TLS_PSK_DHE_WITH_AES_128_CCM_8", Aes128Ccm8, S256),
    aead(0xc0ab, "TLS_PSK_DHE_WITH_AES_256_CCM_8", Aes256Ccm8, S256),
    aead(0xc0ac, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", Aes128Ccm, S256),
    aead(0xc0ad, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM", Aes256Ccm, S256),
    aead(
        0xc0ae,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
        Aes128Ccm8,
        S256,
    ),
    aead(
        0xc0af,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
        Aes256Ccm8,
        S256,
    ),
    aead(
        0xd003,
        "TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256",
        Aes128Ccm8,
        S256,
    ),
    aead(
        0xd005,
        "TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256",
        Aes128Ccm,
        S256,
    ),
    cbc(0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", TripleDes, Sha1),
    cbc(0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA", TripleDes, Sha1),
    cbc(0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", TripleDes, Sha1),
    cbc(0x008b, "TLS_PSK_WITH_3DES_EDE_CBC_SHA", TripleDes, Sha1),
    cbc(
        0xc008,
        "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
        TripleDes,
        Sha1,
    ),
    cbc(
        0xc012,
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        TripleDes,
        Sha1,
    ),
    cbc(0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256", Aes128, Sha256),
    cbc(0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256", Aes256, Sha256),
    cbc(
        0x0040,
        "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256",
        Aes128,
        Sha256,
    ),
    cbc(
        0x0067,
        "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        Aes128,
        Sha256,
    ),
    cbc(
        0x006a,
        "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256",
        Aes256,
        Sha256,
    ),
    cbc(
        0x006b,
        "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        Aes256,
        Sha256,
    ),
    cbc(0xc009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0xc00a, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(0xc013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0xc014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(
        0xc023,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        Aes128,
        Sha256,
    ),
    cbc(
        0xc024,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        Aes256,
        Sha384,
    ),
    cbc(
        0xc027,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        Aes128,
        Sha256,
    ),
    cbc(
        0xc028,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        Aes256,
        Sha384,
    ),
    cbc(0x008c, "TLS_PSK_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0x008d, "TLS_PSK_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(0x0090, "TLS_DHE_PSK_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0x0091, "TLS_DHE_PSK_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(0x0094, "TLS_RSA_PSK_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0x0095, "TLS_RSA_PSK_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(0x00ae, "TLS_PSK_WITH_AES_128_CBC_SHA256", Aes128, Sha256),
    cbc(0x00af, "TLS_PSK_WITH_AES_256_CBC_SHA384", Aes256, Sha384),
    cbc(
        0x00b2,
        "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256",
        Aes128,
        Sha256,
    ),
    cbc(
        0x00b3,
        "TLS_DHE_PSK_WITH_AES_256_CBC_SHA384",
        Aes256,
        Sha384,
    ),
    cbc(
        0x00b6,
        "TLS_RSA_PSK_WITH_AES_128_CBC_SHA256",
        Aes128,
        Sha256,
    ),
    cbc(
        0x00b7,
        "TLS_RSA_PSK_WITH_AES_256_CBC_SHA384",
        Aes256,
        Sha384,
    ),
    cbc(0xc035, "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA", Aes128, Sha1),
    cbc(0xc036, "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA", Aes256, Sha1),
    cbc(
        0xc037,
        "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
        Aes128,
        Sha256,
    ),
    cbc(
        0xc038,
        "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384",
        Aes256,
        Sha384,
    ),
    cbc(
        0x0041,
        "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
        Camellia128,
        Sha1,
    ),
    cbc(
        0x0045,
        "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
        Camellia128,
        Sha1,
    ),
    cbc(
        0x0084,
        "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
        Camellia256,
        Sha1,
    ),
    cbc(
        0x0088,
        "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
        Camellia256,
        Sha1,
    ),
    cbc(
        0x00ba,
        "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0x00be,
        "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0x00c0,
        "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256",
        Camellia256,
        Sha256,
    ),
    cbc(
        0x00c4,
        "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256",
        Camellia256,
        Sha256,
    ),
    cbc(
        0xc072,
        "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0xc073,
        "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384",
        Camellia256,
        Sha384,
    ),
    cbc(
        0xc076,
        "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0xc077,
        "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384",
        Camellia256,
        Sha384,
    ),
    cbc(
        0xc094,
        "TLS_PSK_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0xc095,
        "TLS_PSK_WITH_CAMELLIA_256_CBC_SHA384",
        Camellia256,
        Sha384,
    ),
    cbc(
        0xc096,
        "TLS_DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0xc097,
        "TLS_DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384",
        Camellia256,
        Sha384,
    ),
    cbc(
        0xc098,
        "TLS_RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0xc099,
        "TLS_RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384",
        Camellia256,
        Sha384,
    ),
    cbc(
        0xc09a,
        "TLS_ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256",
        Camellia128,
        Sha256,
    ),
    cbc(
        0xc09b,
        "TLS_ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384",
        Camellia256,
        Sha384,
    ),
];

/// The suite with this IANA number, if we decrypt it.
pub fn find_suite(id: u16) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_numbers_are_unique_and_names_match_their_shape() {
        for (i, suite) in SUITES.iter().enumerate() {
            assert!(
                SUITES[i + 1..].iter().all(|other| other.id != suite.id),
                "0x{:04x} twice",
                suite.id
            );
            let expect_384 = suite.name.ends_with("SHA384");
            assert_eq!(suite.hash == Hash::Sha384, expect_384, "{}", suite.name);
            match suite.protection {
                Protection::Aead(a) => {
                    assert_eq!(
                        suite.name.contains("CCM_8"),
                        a.tag_len() == 8,
                        "{}",
                        suite.name
                    );
                    assert_eq!(
                        suite.name.contains("_256_"),
                        a.key_len() == 32 && a != ChaCha20Poly1305,
                        "{}",
                        suite.name
                    );
                }
                Protection::Cbc(block, _) => {
                    assert!(suite.name.contains("CBC"), "{}", suite.name);
                    assert_eq!(
                        suite.name.contains("_256_"),
                        block.key_len() == 32,
                        "{}",
                        suite.name
                    );
                }
            }
        }
    }
}
