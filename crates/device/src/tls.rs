//! The phone's TLS: rustls on aws-lc-rs, trusting the CA it is given, and writing every session's
//! secrets to a key log in the SSLKEYLOGFILE format so that `sovereign scan --keylog` can read
//! what went inside TLS.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::DeviceError;

/// Largest CA file read; a CA certificate is about a kilobyte.
pub const CA_FILE_BYTES_MAX: u64 = 1 << 20;

/// A key log in the NSS `SSLKEYLOGFILE` format: one line per secret,
/// `LABEL <client random, hex> <secret, hex>`, appended as each handshake produces it.
///
/// rustls's own `KeyLogFile` reads the path from the `SSLKEYLOGFILE` variable; this one is given
/// its path, since the workspace forbids the `unsafe` that setting the variable would take.
pub struct KeyLogFile {
    path: String,
    file: Mutex<std::fs::File>,
}

impl std::fmt::Debug for KeyLogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLogFile")
            .field("path", &self.path)
            .finish()
    }
}

impl KeyLogFile {
    /// Opens (creating, appending to) the key log at `path`, readable by the owner only: the
    /// secrets in it decrypt every session.
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub fn open(path: &Path) -> Result<KeyLogFile, DeviceError> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|e| DeviceError::KeyLog {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(KeyLogFile {
            path: path.display().to_string(),
            file: Mutex::new(file),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Invariant: writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        // One lock and one write per line, so lines from concurrent handshakes never interleave.
        let written = match self.file.lock() {
            Ok(mut file) => file.write_all(line.as_bytes()),
            Err(_) => Err(std::io::Error::other("key log lock poisoned")),
        };
        if let Err(error) = written {
            tracing::warn!(path = %self.path, %error, "could not write to the key log");
        }
    }

    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

/// The certificates of a PEM file, read with a bound.
///
/// # Errors
/// When the file cannot be read, is too large, or holds no certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, DeviceError> {
    let fail = |message: String| DeviceError::Ca {
        path: path.display().to_string(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > CA_FILE_BYTES_MAX {
        return Err(fail(format!(
            "{size} bytes, at most {CA_FILE_BYTES_MAX} allowed"
        )));
    }
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    roots(&pem, &path.display().to_string())?;
    Ok(pem)
}

fn roots(ca_pem: &[u8], origin: &str) -> Result<rustls::RootCertStore, DeviceError> {
    let fail = |message: String| DeviceError::Ca {
        path: origin.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| fail(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

/// The rustls client configuration the phone uses for every TLS connection: aws-lc-rs chosen
/// explicitly (the workspace links two providers, and a process-wide default would be a race),
/// TLS 1.2 and 1.3, only the given CA trusted, HTTP/1.1 (what the scanner parses), and the key
/// log when one is given.
///
/// # Errors
/// When `ca_pem` holds no usable certificate.
pub fn client_config(
    ca_pem: &[u8],
    ca_origin: &str,
    key_log: Option<Arc<KeyLogFile>>,
) -> Result<rustls::ClientConfig, DeviceError> {
    let roots = roots(ca_pem, ca_origin)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeviceError::Ca {
            path: ca_origin.to_owned(),
            message: format!("TLS configuration: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if let Some(key_log) = key_log {
        config.key_log = key_log;
    }
    Ok(config)
}

/// Turns a reqwest failure into an error that says what went wrong in the user's terms.
pub(crate) fn network_error(url: &str, error: &reqwest::Error) -> DeviceError {
    let mut chain = Vec::new();
    let mut tls = false;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        // io::Error::source skips the error it wraps, so look inside it explicitly.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(e), inner].into_iter().flatten() {
            if candidate.downcast_ref::<rustls::Error>().is_some() {
                tls = true;
            }
            let text = candidate.to_string();
            if !chain.contains(&text) {
                chain.push(text);
            }
        }
        current = e.source();
    }
    // reqwest and hyper wrap the cause in several layers that each repeat the URL; the
    // innermost one says what happened ("Connection refused", "invalid peer certificate").
    let message = chain.last().cloned().unwrap_or_default();
    if tls || message.contains("certificate") {
        DeviceError::Tls {
            url: url.to_owned(),
            message,
        }
    } else {
        DeviceError::Unreachable {
            url: url.to_owned(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_log_lines_have_the_nss_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        let log = KeyLogFile::open(&path).unwrap();
        rustls::KeyLog::log(&log, "CLIENT_RANDOM", &[0xab; 32], &[0x01; 48]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("CLIENT_RANDOM {} {}\n", "ab".repeat(32), "01".repeat(48))
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let err = client_config(b"hello", "ca.pem", None).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
