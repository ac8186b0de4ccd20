//! Ed25519 signatures for operators and for a region's access ledger, and the canonical encoding
//! of what they sign.
//!
//! Every signed message is [`canonical`]: a domain string and a list of fields, each written as a
//! 4-byte big-endian length followed by its bytes. Two different field lists never encode to the
//! same bytes, so a signature over one action can never be replayed as a signature over another.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// Longest field [`canonical`] accepts; every signed field is far shorter.
pub const CANONICAL_FIELD_BYTES_MAX: usize = 1 << 20;

/// The bytes that are signed: `domain` and `fields`, each length-prefixed (u32, big-endian).
///
/// # Panics
/// Never for fields shorter than [`CANONICAL_FIELD_BYTES_MAX`]; callers bound their inputs first.
pub fn canonical(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(4 + domain.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
    for field in std::iter::once(domain.as_bytes()).chain(fields.iter().copied()) {
        assert!(field.len() <= CANONICAL_FIELD_BYTES_MAX);
        // Invariant: the assert above keeps the length within u32.
        out.extend_from_slice(&u32::try_from(field.len()).expect("bounded").to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// An Ed25519 signing key (an operator's, or a region's ledger key).
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", crate::hex(&self.public_key()))
    }
}

impl SigningKey {
    /// A new key as a PKCS#8 v2 document, to be written to a private file.
    ///
    /// # Errors
    /// When the random generator fails.
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| CryptoError::Random)?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }

    /// # Errors
    /// When `pkcs8` is not an Ed25519 PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, CryptoError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(SigningKey)
            .map_err(|e| CryptoError::KeyFormat(format!("not an Ed25519 PKCS#8 key: {e}")))
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_BYTES] {
        // Invariant: Ed25519 public keys are 32 bytes.
        self.0
            .public_key()
            .as_ref()
            .try_into()
            .expect("ed25519 public key is 32 bytes")
    }

    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        // Invariant: Ed25519 signatures are 64 bytes.
        self.0
            .sign(message)
            .as_ref()
            .try_into()
            .expect("ed25519 signature is 64 bytes")
    }
}

/// Checks an Ed25519 signature.
///
/// # Errors
/// When the key or signature has the wrong length, or the signature does not verify.
pub fn verify_signature(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    if public_key.len() != PUBLIC_KEY_BYTES {
        return Err(CryptoError::KeyLength {
            expected: PUBLIC_KEY_BYTES,
            actual: public_key.len(),
        });
    }
    if signature.len() != SIGNATURE_BYTES {
        return Err(CryptoError::Malformed("signature is not 64 bytes"));
    }
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .map_err(|_| CryptoError::BadSignature)
}

/// Parses lowercase or uppercase hex.
///
/// # Errors
/// When `text` has an odd length or a character that is not a hex digit.
pub fn from_hex(text: &str) -> Result<Vec<u8>, CryptoError> {
    let text = text.trim();
    if text.len() & 1 == 1 {
        return Err(CryptoError::Malformed("hex has an odd number of digits"));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(CryptoError::Malformed(
            "hex has a character that is not a digit",
        )),
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let a = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let b = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let message = canonical("test", &[b"approve", b"42"]);
        let signature = a.sign(&message);
        verify_signature(&a.public_key(), &message, &signature).unwrap();
        assert!(verify_signature(&b.public_key(), &message, &signature).is_err());
        let other = canonical("test", &[b"approve", b"43"]);
        assert!(verify_signature(&a.public_key(), &other, &signature).is_err());
        assert!(verify_signature(&a.public_key()[..31], &message, &signature).is_err());
        assert!(verify_signature(&a.public_key(), &message, &signature[..63]).is_err());
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }

    #[test]
    fn canonical_fields_cannot_be_shifted() {
        assert_ne!(
            canonical("d", &[b"ab", b"c"]),
            canonical("d", &[b"a", b"bc"])
        );
        assert_ne!(canonical("d", &[b"x"]), canonical("e", &[b"x"]));
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(
            from_hex(&crate::hex(&[0, 0xab, 0xff])).unwrap(),
            [0, 0xab, 0xff]
        );
        assert_eq!(from_hex("ABcd").unwrap(), [0xab, 0xcd]);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }
}
