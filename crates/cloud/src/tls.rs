//! TLS for every listener. On first start a local CA is created under `DIR/tls/` (`ca.pem`, and
//! `ca-key.pem` readable by the owner only) and a server certificate for `localhost`, `127.0.0.1`
//! and `::1` (and the site's public host name, given to `sovereign federation publish`). Clients
//! trust `DIR/tls/ca.pem`. Each site has its own CA; an operator may give a certificate instead.

use std::path::Path;

use anyhow::Context;
use sovereign_crypto::LocalCa;

use crate::keys::write_private;

pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ServerTls {
    /// The rustls configuration every listener uses: aws-lc-rs chosen explicitly (never left to
    /// whichever crypto features happen to be compiled in), TLS 1.2 and 1.3, HTTP/2 and 1.1.
    ///
    /// # Errors
    /// When the PEM texts are not a certificate chain and its private key.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .context("parsing the private key")?;
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Names on the server certificate.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// # Errors
/// When the files cannot be read or written or are not valid PEM.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<ServerTls> {
    load_or_create_for(data_dir, &[])
}

/// The site's certificate and key given by the operator (PEM files; the certificate file holds
/// the chain the server presents).
///
/// # Errors
/// When a file cannot be read.
pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<ServerTls> {
    Ok(ServerTls {
        cert_pem: std::fs::read_to_string(cert)
            .with_context(|| format!("reading {}", cert.display()))?,
        key_pem: std::fs::read_to_string(key)
            .with_context(|| format!("reading {}", key.display()))?,
    })
}

/// The local CA's certificate of a site (`DIR/tls/ca.pem`), creating the site's TLS files first
/// if they do not exist yet.
///
/// # Errors
/// As [`load_or_create`].
pub fn local_ca_pem(data_dir: &Path, names: &[&str]) -> anyhow::Result<String> {
    load_or_create_for(data_dir, names)?;
    let path = data_dir.join("tls").join("ca.pem");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// As [`load_or_create`], with `names` (the site's public host names) on a newly created
/// certificate beside the loopback names.
///
/// # Errors
/// When the files cannot be read or written or are not valid PEM.
pub fn load_or_create_for(data_dir: &Path, names: &[&str]) -> anyhow::Result<ServerTls> {
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server-key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok(ServerTls {
            cert_pem: std::fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?,
            key_pem: std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?,
        });
    }
    let ca = if ca_path.exists() && ca_key_path.exists() {
        let cert = std::fs::read_to_string(&ca_path)?;
        let key = std::fs::read_to_string(&ca_key_path)?;
        LocalCa::from_pem(&cert, &key)
            .with_context(|| format!("loading CA {}", ca_path.display()))?
    } else {
        // A name of its own per site: OpenSSL looks a certificate's issuer up in a CA bundle by
        // name, and with every site's CA called alike it picked the wrong one for all but the
        // first site of `DIR/tls/ca.pem`.
        let site = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tag = sovereign_crypto::hex(&sovereign_crypto::random_bytes::<4>()?);
        let (ca, files) = LocalCa::generate(&format!("Sovereign local CA {site} {tag}"))?;
        write_private(&ca_key_path, files.key_pem.as_bytes())?;
        std::fs::write(&ca_path, files.cert_pem.as_bytes())?;
        ca
    };
    let mut all: Vec<&str> = SERVER_NAMES.to_vec();
    all.extend(names.iter().filter(|n| !SERVER_NAMES.contains(n)));
    let server = ca.issue_server_cert(&all)?;
    // The chain the server presents: its certificate, then the CA's.
    let chain = format!("{}{}", server.cert_pem, ca.cert_pem());
    write_private(&key_path, server.key_pem.as_bytes())?;
    std::fs::write(&cert_path, chain.as_bytes())?;
    Ok(ServerTls {
        cert_pem: chain,
        key_pem: server.key_pem,
    })
}
