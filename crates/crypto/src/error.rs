/// Why a cryptographic operation failed. Deliberately vague about *why* a seal did not open:
/// wrong key, wrong record and tampering look the same to an attacker and to us.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    #[error("sealed value does not open: wrong key, wrong record, or tampered")]
    Open,
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error("key material has {actual} bytes, expected {expected}")]
    KeyLength { expected: usize, actual: usize },
    #[error("the system random generator failed")]
    Random,
    #[error("password hashing failed: {0}")]
    Password(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("key file format: {0}")]
    KeyFormat(String),
    #[error("certificate generation failed: {0}")]
    Certificate(String),
}
