//! The cryptography Sovereign's cloud is built on, with no I/O: callers store what it returns.
//!
//! - **Envelope encryption.** Every user has a [`DataKey`] (AES-256-GCM). Every personal field or
//!   blob is sealed with it, with the record's identity as associated data, so a sealed value
//!   moved to another record fails to open. The data key is stored only wrapped by the region's
//!   [`KeyEncryptionKey`]. Destroying the wrapped key makes every sealed value of that user
//!   unreadable (crypto-shredding).
//! - **Keyed hashes** ([`KeyedHasher`], HMAC-SHA-256) to look records up by a phone number without
//!   storing the number.
//! - **Passwords** with Argon2id, **bearer tokens** stored as SHA-256 digests, one-time codes.
//! - **Key hand-over between regions** ([`seal_for_move`]): a moving user's data key sealed to
//!   the target region's X25519 key for that user, so only that region can open it.
//! - **A local certificate authority** for TLS on every listener.
//! - **Ed25519 signatures** over a [`canonical`] encoding, for operators' approvals and the
//!   region's access ledger, and the ledger's **Merkle tree** (RFC 6962) and hash chain.
//!
//! ```
//! use sovereign_crypto::{DataKey, KeyEncryptionKey};
//!
//! let kek = KeyEncryptionKey::generate().unwrap();
//! let dek = DataKey::generate().unwrap();
//! let sealed = dek.seal(b"message:42", b"hello").unwrap();
//! let wrapped = kek.wrap(&dek, b"user:7").unwrap();
//! let dek = kek.unwrap(&wrapped, b"user:7").unwrap();
//! assert_eq!(dek.open(b"message:42", &sealed).unwrap(), b"hello");
//! assert!(dek.open(b"message:43", &sealed).is_err());
//! ```

mod aead;
mod error;
mod merkle;
mod merkle_proofs;
mod password;
mod peer;
mod secret;
mod signing;
mod tls;
mod transfer;

pub use aead::{DataKey, KEY_BYTES, KeyEncryptionKey, SEALED_OVERHEAD_BYTES};
pub use error::CryptoError;
pub use merkle::{
    MerkleTree, PROOF_HASHES_MAX, chain_hash, frontier_push, frontier_root, inclusion_proof,
    leaf_hash, merkle_root, node_hash, verify_inclusion,
};
pub use merkle_proofs::{
    SubtreeSource, completed_by, consistency_proof_from, inclusion_proof_from, verify_consistency,
};
pub use password::{hash_password, verify_password};
pub use peer::{PEER_PUBLIC_KEY_BYTES, PEER_SIGNATURE_BYTES, PeerIdentity, peer_signature_valid};
pub use secret::{
    KeyedHasher, OneTimeCode, digest_sha256, hex, random_bytes, random_token, token_digest,
};
pub use signing::{
    CANONICAL_FIELD_BYTES_MAX, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, canonical, from_hex,
    verify_signature,
};
pub use tls::{IssuedCertificate, LocalCa};
pub use transfer::{MOVE_PUBLIC_KEY_BYTES, SealedForMove, move_public_key, seal_for_move};
