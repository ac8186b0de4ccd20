//! Ed25519 identities for servers that must prove to each other who they are (regions forwarding
//! to regions). The private key stays with its region; others hold only the public key.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::CryptoError;

/// Bytes of an Ed25519 public key and of a signature.
pub const PEER_PUBLIC_KEY_BYTES: usize = 32;
pub const PEER_SIGNATURE_BYTES: usize = 64;

/// A server's signing identity.
pub struct PeerIdentity(Ed25519KeyPair);

impl std::fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerIdentity(..)")
    }
}

impl PeerIdentity {
    /// A new identity and its PKCS#8 encoding, to be stored by the caller.
    ///
    /// # Errors
    /// When key generation fails.
    pub fn generate() -> Result<(PeerIdentity, Vec<u8>), CryptoError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| CryptoError::Random)?;
        let pkcs8 = pair
            .to_pkcs8()
            .map_err(|_| CryptoError::Random)?
            .as_ref()
            .to_vec();
        Ok((PeerIdentity(pair), pkcs8))
    }

    /// # Errors
    /// When `pkcs8` is not an Ed25519 private key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<PeerIdentity, CryptoError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(PeerIdentity)
            .map_err(|_| CryptoError::Malformed("not an Ed25519 PKCS#8 key"))
    }

    pub fn public_key(&self) -> [u8; PEER_PUBLIC_KEY_BYTES] {
        // Invariant: Ed25519 public keys are 32 bytes.
        self.0
            .public_key()
            .as_ref()
            .try_into()
            .expect("ed25519 public key")
    }

    pub fn sign(&self, message: &[u8]) -> [u8; PEER_SIGNATURE_BYTES] {
        // Invariant: Ed25519 signatures are 64 bytes.
        self.0
            .sign(message)
            .as_ref()
            .try_into()
            .expect("ed25519 signature")
    }
}

/// Whether `signature` is `public_key`'s signature of `message`.
pub fn peer_signature_valid(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    public_key.len() == PEER_PUBLIC_KEY_BYTES
        && signature.len() == PEER_SIGNATURE_BYTES
        && UnparsedPublicKey::new(&ED25519, public_key)
            .verify(message, signature)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let (a, pkcs8) = PeerIdentity::generate().unwrap();
        let (b, _) = PeerIdentity::generate().unwrap();
        let sig = a.sign(b"hello");
        assert!(peer_signature_valid(&a.public_key(), b"hello", &sig));
        assert!(!peer_signature_valid(&a.public_key(), b"hellO", &sig));
        assert!(!peer_signature_valid(&b.public_key(), b"hello", &sig));
        assert!(!peer_signature_valid(&a.public_key()[..31], b"hello", &sig));
        let again = PeerIdentity::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.public_key(), a.public_key());
        assert!(PeerIdentity::from_pkcs8(b"junk").is_err());
    }
}
