use std::path::PathBuf;

/// Everything that can stop a scan. Problems inside a capture (a truncated file, a gap in a TCP
/// stream, a body that does not decompress) are not errors: they become warnings in the report and
/// the scan goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Profile(#[from] sovereign_model::ParseProfileError),
    #[error("policy {path}: {message}")]
    Policy { path: String, message: String },
    #[error("sites {path}: {message}")]
    Sites { path: String, message: String },
    #[error("{path} is not a pcap, pcapng or har capture (starts with {magic:02x?})")]
    UnknownCaptureFormat { path: PathBuf, magic: Vec<u8> },
    #[error("{path} is not a valid capture: {message}")]
    Capture { path: PathBuf, message: String },
    #[error(transparent)]
    KeyLog(#[from] crate::tls::keylog::KeyLogError),
    #[error("key log {path} is larger than {max} bytes")]
    KeyLogTooLarge { path: PathBuf, max: u64 },
    #[error("ip-to-country database is unreadable: {0}")]
    GeoDatabase(String),
    #[error("no identifier to search for: the profile {0} lists none")]
    EmptyProfile(String),
    #[error("building the matcher failed: {0}")]
    Matcher(String),
}
