//! Handing a user's data key from one region to another when the user moves.
//!
//! The source region holds the data key wrapped by its own key-encryption key; the target must
//! end up holding it wrapped by *its* key, and nothing in between (a TLS-terminating load
//! balancer, a log of the request) may see it. So the key travels sealed to the target:
//!
//! 1. the target derives an X25519 key pair for the user from its key-encryption key
//!    ([`move_public_key`]), so it keeps no state between the calls of a move and the pair
//!    is the same on a retry, and publishes the public half (in a signed answer);
//! 2. the source makes an ephemeral X25519 pair, agrees a secret with the target's public key,
//!    and wraps the data key under a key derived from that secret, the two public keys and the
//!    user ([`seal_for_move`]);
//! 3. the target agrees the same secret from its private half and opens it
//!    ([`KeyEncryptionKey::open_move`]), then wraps the key under its own key-encryption key.
//!
//! Only a holder of the target's key-encryption key can open what the source sends, and the
//! sealed key is bound to the user it belongs to.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use zeroize::Zeroize;

use crate::{CryptoError, DataKey, KEY_BYTES, KeyEncryptionKey, KeyedHasher};

/// Bytes of an X25519 public key.
pub const MOVE_PUBLIC_KEY_BYTES: usize = 32;

const PAIR_DOMAIN: &str = "sovereign-move-x25519-v1";
const WRAP_DOMAIN: &str = "sovereign-move-wrap-v1";

/// A data key sealed for one target region: the source's ephemeral public key and the data key
/// wrapped under the agreed secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedForMove {
    pub ephemeral_public: [u8; MOVE_PUBLIC_KEY_BYTES],
    pub wrapped: Vec<u8>,
}

fn move_private_key(kek: &KeyEncryptionKey, owner: &[u8]) -> Result<PrivateKey, CryptoError> {
    let mut seed = KeyedHasher::new(kek.as_bytes())?.hash(PAIR_DOMAIN, owner);
    let key = PrivateKey::from_private_key(&X25519, &seed);
    seed.zeroize();
    key.map_err(|_| CryptoError::KeyFormat("X25519 private key".to_owned()))
}

fn public_of(key: &PrivateKey) -> Result<[u8; MOVE_PUBLIC_KEY_BYTES], CryptoError> {
    let public = key
        .compute_public_key()
        .map_err(|_| CryptoError::KeyFormat("X25519 public key".to_owned()))?;
    public
        .as_ref()
        .try_into()
        .map_err(|_| CryptoError::KeyLength {
            expected: MOVE_PUBLIC_KEY_BYTES,
            actual: public.as_ref().len(),
        })
}

/// The key that wraps the data key: bound to the agreed secret, both public keys and the user.
fn wrapping_key(
    secret: &[u8],
    ephemeral_public: &[u8],
    target_public: &[u8],
    owner: &[u8],
) -> Result<KeyEncryptionKey, CryptoError> {
    let mut transcript = Vec::with_capacity(2 * MOVE_PUBLIC_KEY_BYTES + owner.len());
    transcript.extend_from_slice(ephemeral_public);
    transcript.extend_from_slice(target_public);
    transcript.extend_from_slice(owner);
    let mut bytes = KeyedHasher::new(secret)?.hash(WRAP_DOMAIN, &transcript);
    let key = KeyEncryptionKey::from_bytes(&bytes);
    bytes.zeroize();
    key
}

fn agree(
    private: &PrivateKey,
    peer_public: &[u8],
    then: impl FnOnce(&[u8]) -> Result<KeyEncryptionKey, CryptoError>,
) -> Result<KeyEncryptionKey, CryptoError> {
    if peer_public.len() != MOVE_PUBLIC_KEY_BYTES {
        return Err(CryptoError::KeyLength {
            expected: MOVE_PUBLIC_KEY_BYTES,
            actual: peer_public.len(),
        });
    }
    agreement::agree(
        private,
        UnparsedPublicKey::new(&X25519, peer_public),
        CryptoError::Open,
        |secret| {
            // X25519 with a low-order point gives an all-zero secret: refuse it.
            if secret.len() != KEY_BYTES || secret.iter().all(|b| *b == 0) {
                return Err(CryptoError::Open);
            }
            then(secret)
        },
    )
}

/// The public key a target region publishes for a user moving in (see the module docs).
///
/// # Errors
/// When the key cannot be derived (never for a valid key-encryption key).
pub fn move_public_key(
    kek: &KeyEncryptionKey,
    owner: &[u8],
) -> Result<[u8; MOVE_PUBLIC_KEY_BYTES], CryptoError> {
    public_of(&move_private_key(kek, owner)?)
}

/// Seals `key` so that only the region that published `target_public` for `owner` can open it.
///
/// # Errors
/// When `target_public` is not an X25519 public key, or the random generator fails.
pub fn seal_for_move(
    key: &DataKey,
    target_public: &[u8],
    owner: &[u8],
) -> Result<SealedForMove, CryptoError> {
    let ephemeral = PrivateKey::generate(&X25519).map_err(|_| CryptoError::Random)?;
    let ephemeral_public = public_of(&ephemeral)?;
    let wrap = agree(&ephemeral, target_public, |secret| {
        wrapping_key(secret, &ephemeral_public, target_public, owner)
    })?;
    Ok(SealedForMove {
        ephemeral_public,
        wrapped: wrap.wrap(key, owner)?,
    })
}

impl KeyEncryptionKey {
    /// Opens a data key that a source region sealed with [`seal_for_move`] to the public key
    /// this key-encryption key publishes for `owner`.
    ///
    /// # Errors
    /// [`CryptoError::Open`] when it was sealed for another region or user, or tampered with.
    pub fn open_move(&self, sealed: &SealedForMove, owner: &[u8]) -> Result<DataKey, CryptoError> {
        let private = move_private_key(self, owner)?;
        let target_public = public_of(&private)?;
        let wrap = agree(&private, &sealed.ephemeral_public, |secret| {
            wrapping_key(secret, &sealed.ephemeral_public, &target_public, owner)
        })?;
        wrap.unwrap(&sealed.wrapped, owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_target_opens_a_key_sealed_for_it_and_only_for_that_user() {
        let source = KeyEncryptionKey::generate().unwrap();
        let target = KeyEncryptionKey::generate().unwrap();
        let other = KeyEncryptionKey::generate().unwrap();
        let dek = DataKey::generate().unwrap();
        let sealed_data = dek.seal(b"message:1", b"hello").unwrap();
        let wrapped_at_source = source.wrap(&dek, b"user:7").unwrap();

        let public = move_public_key(&target, b"user:7").unwrap();
        assert_eq!(public, move_public_key(&target, b"user:7").unwrap());
        assert_ne!(public, move_public_key(&target, b"user:8").unwrap());
        let dek = source.unwrap(&wrapped_at_source, b"user:7").unwrap();
        let sealed = seal_for_move(&dek, &public, b"user:7").unwrap();

        let opened = target.open_move(&sealed, b"user:7").unwrap();
        assert_eq!(opened.open(b"message:1", &sealed_data).unwrap(), b"hello");
        assert!(other.open_move(&sealed, b"user:7").is_err());
        assert!(target.open_move(&sealed, b"user:8").is_err());
        let mut tampered = sealed.clone();
        tampered.ephemeral_public[0] ^= 1;
        assert!(target.open_move(&tampered, b"user:7").is_err());
        let mut tampered = sealed.clone();
        let last = tampered.wrapped.len() - 1;
        tampered.wrapped[last] ^= 1;
        assert!(target.open_move(&tampered, b"user:7").is_err());
    }

    #[test]
    fn bad_public_keys_are_refused() {
        let dek = DataKey::generate().unwrap();
        assert!(seal_for_move(&dek, &[0u8; 31], b"u").is_err());
        // The all-zero point is of low order: the agreed secret would be zero.
        assert!(seal_for_move(&dek, &[0u8; 32], b"u").is_err());
        let target = KeyEncryptionKey::generate().unwrap();
        let sealed = SealedForMove {
            ephemeral_public: [0u8; 32],
            wrapped: vec![1; 60],
        };
        assert!(target.open_move(&sealed, b"u").is_err());
    }
}
