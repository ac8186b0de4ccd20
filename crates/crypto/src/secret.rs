use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{digest, hmac, rand::SystemRandom};
use base64::Engine;

use crate::{CryptoError, KEY_BYTES};

/// Fills an array from the system's cryptographic random generator.
///
/// # Errors
/// When the generator fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

pub fn digest_sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    // Invariant: SHA-256 digests are 32 bytes.
    d.as_ref().try_into().expect("sha-256 is 32 bytes")
}

/// A new bearer token (256 random bits, base64url) and the digest under which it is stored.
/// The token itself is shown to the client once and never stored.
///
/// # Errors
/// When the system random generator fails.
pub fn random_token() -> Result<(String, [u8; 32]), CryptoError> {
    let raw: [u8; 32] = random_bytes()?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let digest = token_digest(&token);
    Ok((token, digest))
}

/// The stored form of a bearer token.
pub fn token_digest(token: &str) -> [u8; 32] {
    digest_sha256(token.as_bytes())
}

/// A numeric one-time code, uniformly distributed.
pub struct OneTimeCode;

impl OneTimeCode {
    /// # Errors
    /// When the system random generator fails.
    pub fn generate(digits: u32) -> Result<String, CryptoError> {
        assert!(digits >= 4);
        assert!(digits <= 9);
        let modulus = 10u32.pow(digits);
        // Rejection sampling removes the bias of `random % modulus`.
        let limit = u32::MAX - (u32::MAX % modulus);
        loop {
            let value = u32::from_le_bytes(random_bytes()?);
            if value < limit {
                return Ok(format!(
                    "{:0width$}",
                    value % modulus,
                    width = digits as usize
                ));
            }
        }
    }
}

/// HMAC-SHA-256 under a secret key: a lookup index for values we must find but not store, such
/// as phone numbers. Without the key the index cannot be brute-forced over the small space of
/// phone numbers.
#[derive(Clone)]
pub struct KeyedHasher(hmac::Key);

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHasher(..)")
    }
}

impl KeyedHasher {
    /// # Errors
    /// When `key` is not [`KEY_BYTES`] long.
    pub fn new(key: &[u8]) -> Result<KeyedHasher, CryptoError> {
        if key.len() != KEY_BYTES {
            return Err(CryptoError::KeyLength {
                expected: KEY_BYTES,
                actual: key.len(),
            });
        }
        Ok(KeyedHasher(hmac::Key::new(hmac::HMAC_SHA256, key)))
    }

    /// The keyed hash of `value` within `domain`, so one key serves several indexes whose hashes
    /// never collide with each other.
    pub fn hash(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        ctx.update(value);
        // Invariant: HMAC-SHA-256 tags are 32 bytes.
        ctx.sign()
            .as_ref()
            .try_into()
            .expect("hmac-sha256 is 32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_digested() {
        let (a, da) = random_token().unwrap();
        let (b, _) = random_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(token_digest(&a), da);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn codes_have_the_right_shape() {
        for _ in 0..100 {
            let code = OneTimeCode::generate(6).unwrap();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn keyed_hash_depends_on_key_and_domain() {
        let a = KeyedHasher::new(&[1; 32]).unwrap();
        let b = KeyedHasher::new(&[2; 32]).unwrap();
        assert_ne!(a.hash("phone", b"+1"), b.hash("phone", b"+1"));
        assert_ne!(a.hash("phone", b"+1"), a.hash("email", b"+1"));
        assert_eq!(a.hash("phone", b"+1"), a.hash("phone", b"+1"));
        assert!(KeyedHasher::new(&[0; 16]).is_err());
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
    }
}
