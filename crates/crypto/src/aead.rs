use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{CryptoError, random_bytes};

/// Bytes of every key this crate handles (AES-256).
pub const KEY_BYTES: usize = 32;
/// The first byte of every sealed value; a future format gets a new one.
const SEAL_FORMAT_V1: u8 = 1;
const TAG_BYTES: usize = 16;
/// How much longer a sealed value is than its plaintext: format byte, nonce and tag.
pub const SEALED_OVERHEAD_BYTES: usize = 1 + NONCE_LEN + TAG_BYTES;

/// A user's data key. Zeroed when dropped; never stored unwrapped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_BYTES]);

/// A region's key-encryption key: wraps the data keys of the users that region holds.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyEncryptionKey([u8; KEY_BYTES]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

fn key_from_slice(bytes: &[u8]) -> Result<[u8; KEY_BYTES], CryptoError> {
    bytes.try_into().map_err(|_| CryptoError::KeyLength {
        expected: KEY_BYTES,
        actual: bytes.len(),
    })
}

/// Seals `plaintext` as `format || nonce || ciphertext || tag` under a fresh random nonce.
/// 96-bit random nonces are safe for far more than the 2^32 seals per key a user could make.
fn seal(key: &[u8; KEY_BYTES], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    // Invariant: the key is exactly 32 bytes, which AES-256-GCM accepts.
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES key"));
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes()?;
    let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD_BYTES);
    out.push(SEAL_FORMAT_V1);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut out[1 + NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Random)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open(key: &[u8; KEY_BYTES], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < SEALED_OVERHEAD_BYTES {
        return Err(CryptoError::Malformed("shorter than nonce and tag"));
    }
    if sealed[0] != SEAL_FORMAT_V1 {
        return Err(CryptoError::Malformed("unknown format byte"));
    }
    // Invariant: the length check above guarantees the nonce slice is NONCE_LEN bytes.
    let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().expect("nonce length");
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES key"));
    let mut in_out = sealed[1 + NONCE_LEN..].to_vec();
    let plaintext_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut in_out,
        )
        .map_err(|_| CryptoError::Open)?
        .len();
    in_out.truncate(plaintext_len);
    Ok(in_out)
}

impl DataKey {
    /// # Errors
    /// When the system random generator fails.
    pub fn generate() -> Result<DataKey, CryptoError> {
        Ok(DataKey(random_bytes()?))
    }

    /// Seals `plaintext` bound to `aad`, the identity of the record it belongs to.
    ///
    /// # Errors
    /// When the system random generator fails.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(&self.0, aad, plaintext)
    }

    /// # Errors
    /// [`CryptoError::Open`] when the key, the associated data or the bytes are not the ones it
    /// was sealed with; [`CryptoError::Malformed`] when it is not a sealed value at all.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.0, aad, sealed)
    }

    /// Whether two keys are the same key (every byte compared, whatever differs first).
    pub fn same_as(&self, other: &DataKey) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
    }
}

impl KeyEncryptionKey {
    /// # Errors
    /// When the system random generator fails.
    pub fn generate() -> Result<KeyEncryptionKey, CryptoError> {
        Ok(KeyEncryptionKey(random_bytes()?))
    }

    /// # Errors
    /// When `bytes` is not [`KEY_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyEncryptionKey, CryptoError> {
        Ok(KeyEncryptionKey(key_from_slice(bytes)?))
    }

    /// The raw key, for writing it to its key file.
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// Wraps a data key for the record named by `owner` (the user's identity).
    ///
    /// # Errors
    /// When the system random generator fails.
    pub fn wrap(&self, key: &DataKey, owner: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(&self.0, &wrap_aad(owner), &key.0)
    }

    /// # Errors
    /// When `wrapped` was not wrapped by this key for `owner`.
    pub fn unwrap(&self, wrapped: &[u8], owner: &[u8]) -> Result<DataKey, CryptoError> {
        let mut bytes = open(&self.0, &wrap_aad(owner), wrapped)?;
        let key = key_from_slice(&bytes);
        bytes.zeroize();
        Ok(DataKey(key?))
    }
}

fn wrap_aad(owner: &[u8]) -> Vec<u8> {
    let mut aad = b"sovereign-dek-v1:".to_vec();
    aad.extend_from_slice(owner);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_same_only_as_itself() {
        let key = DataKey::generate().unwrap();
        assert!(key.same_as(&key.clone()));
        assert!(!key.same_as(&DataKey::generate().unwrap()));
    }

    #[test]
    fn seal_binds_key_and_record() {
        let key = DataKey::generate().unwrap();
        let other = DataKey::generate().unwrap();
        let sealed = key.seal(b"rec:1", b"secret").unwrap();
        assert_eq!(sealed.len(), 6 + SEALED_OVERHEAD_BYTES);
        assert_eq!(key.open(b"rec:1", &sealed).unwrap(), b"secret");
        assert!(matches!(
            key.open(b"rec:2", &sealed),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            other.open(b"rec:1", &sealed),
            Err(CryptoError::Open)
        ));
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(matches!(
            key.open(b"rec:1", &tampered),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            key.open(b"rec:1", &sealed[..10]),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn wrapping_binds_owner() {
        let kek = KeyEncryptionKey::generate().unwrap();
        let dek = DataKey::generate().unwrap();
        let wrapped = kek.wrap(&dek, b"u1").unwrap();
        assert!(kek.unwrap(&wrapped, b"u2").is_err());
        let other_region = KeyEncryptionKey::generate().unwrap();
        assert!(other_region.unwrap(&wrapped, b"u1").is_err());
        let back = kek.unwrap(&wrapped, b"u1").unwrap();
        let sealed = dek.seal(b"r", b"x").unwrap();
        assert_eq!(back.open(b"r", &sealed).unwrap(), b"x");
    }

    #[test]
    fn key_lengths_are_checked() {
        assert!(KeyEncryptionKey::from_bytes(&[0; 31]).is_err());
        assert!(KeyEncryptionKey::from_bytes(&[0; 32]).is_ok());
    }
}
