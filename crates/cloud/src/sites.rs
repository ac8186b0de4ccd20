//! A site per region: where a site keeps its own things, the federation file that is all it knows
//! of the others, and how a site (or every region on one machine, as separate sites) starts.
//!
//! A site's data directory holds only its own keys (`keys/`), TLS files (`tls/`), store and blobs
//! (`regions/<region>/`). What it knows of other sites comes from the federation file: for every
//! region, its public URL, its pinned federation public key and the CA that signs its TLS
//! certificate. `sovereign federation publish` prints a site's stanza; the operator gathers every
//! site's stanza into one file and gives it to each site. The directory is the one shared
//! component, given by path.
//!
//! On one machine (`sovereign serve` with no flags) the layout is
//! `DIR/sites/<region>/` per site, `DIR/federation.toml` generated from the sites' stanzas,
//! `DIR/directory.sqlite` and its phone index key `DIR/phone-index.key` (copied into each site as
//! an operator would), `DIR/tls/ca.pem` (every site's CA, for clients) and the SMS gateway file
//! `DIR/sms-outbox.jsonl`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sovereign_crypto::PEER_PUBLIC_KEY_BYTES;
use sovereign_model::RegionId;

use crate::clock::Clock;
use crate::config::Policies;
use crate::directory::Directory;
use crate::federation::{Peer, PeerTable, load_or_create_identity};
use crate::state::{RegionOptions, RegionState};
use crate::{Cloud, RunningRegion};

/// Longest federation file read.
pub const FEDERATION_FILE_BYTES_MAX: usize = 1024 * 1024;
/// Most sites one federation file may name.
pub const FEDERATION_SITES_MAX: usize = 64;
/// Longest site URL.
pub const SITE_URL_BYTES_MAX: usize = 2048;
/// Longest CA certificate text pinned for a site.
pub const SITE_CA_BYTES_MAX: usize = 64 * 1024;

/// The folder of every site on one machine.
pub const SITES_DIR: &str = "sites";
/// The federation file's name in a data directory.
pub const FEDERATION_FILE: &str = "federation.toml";
/// The phone index key file: the directory's key, the same at every site.
pub const PHONE_INDEX_KEY_FILE: &str = "phone-index.key";

/// What is wrong with a federation file.
#[derive(Debug, thiserror::Error)]
pub enum FederationFileError {
    #[error("the file has {0} bytes; at most {FEDERATION_FILE_BYTES_MAX} are read")]
    TooLong(usize),
    #[error("not valid TOML for a federation file: {0}")]
    Syntax(String),
    #[error("the file names {0} sites; at most {FEDERATION_SITES_MAX}")]
    TooManySites(usize),
    #[error("site {index}: {message}")]
    Site { index: usize, message: String },
}

/// One site's public stanza.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    pub region: String,
    /// Where other sites and clients reach it, `https://host:port`.
    pub url: String,
    /// Its Ed25519 federation public key, base64.
    pub federation_key: String,
    /// The CA certificate (PEM) that signs its TLS certificate; absent: peers use their
    /// operator's `--ca-bundle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    site: Vec<SiteEntry>,
}

/// Every site of a federation, checked.
#[derive(Debug, Clone, Default)]
pub struct FederationFile {
    pub sites: BTreeMap<RegionId, Peer>,
}

impl FederationFile {
    /// Parses and checks a federation file: unique valid region ids, `https://` URLs, 32-byte
    /// keys, PEM CA certificates.
    ///
    /// # Errors
    /// [`FederationFileError`] naming the first fault.
    pub fn parse(text: &str) -> Result<FederationFile, FederationFileError> {
        if text.len() > FEDERATION_FILE_BYTES_MAX {
            return Err(FederationFileError::TooLong(text.len()));
        }
        let file: FileText = toml::from_str(text)
            .map_err(|e| FederationFileError::Syntax(e.message().to_owned()))?;
        if file.site.len() > FEDERATION_SITES_MAX {
            return Err(FederationFileError::TooManySites(file.site.len()));
        }
        let mut sites = BTreeMap::new();
        for (index, entry) in file.site.into_iter().enumerate() {
            let fault = |message: &str| FederationFileError::Site {
                index,
                message: message.to_owned(),
            };
            let region =
                RegionId::parse(&entry.region).map_err(|_| fault("region is not a region id"))?;
            let host =
                url_host(&entry.url).ok_or_else(|| fault("url must be https://host[:port]"))?;
            if host.is_empty() || entry.url.len() > SITE_URL_BYTES_MAX {
                return Err(fault("url must be https://host[:port]"));
            }
            let key = base64::engine::general_purpose::STANDARD
                .decode(entry.federation_key.as_bytes())
                .ok()
                .filter(|k| k.len() == PEER_PUBLIC_KEY_BYTES)
                .ok_or_else(|| fault("federation_key must be a base64 Ed25519 public key"))?;
            if let Some(ca) = &entry.tls_ca
                && (ca.len() > SITE_CA_BYTES_MAX || !holds_certificate(ca))
            {
                return Err(fault("tls_ca must hold PEM certificates"));
            }
            let peer = Peer {
                url: entry.url.trim_end_matches('/').to_owned(),
                public_key: Some(key),
                tls_ca: entry.tls_ca,
            };
            if sites.insert(region.clone(), peer).is_some() {
                return Err(fault("this region is named twice"));
            }
        }
        Ok(FederationFile { sites })
    }

    /// # Errors
    /// When the file cannot be read or does not parse; the message names it.
    pub fn read(path: &Path) -> anyhow::Result<FederationFile> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        FederationFile::parse(text).with_context(|| format!("in {}", path.display()))
    }

    pub fn peer_table(&self) -> PeerTable {
        PeerTable::from_peers(self.sites.clone())
    }
}

fn holds_certificate(pem: &str) -> bool {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut any = false;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        if cert.is_err() {
            return false;
        }
        any = true;
    }
    any
}

/// The host of an `https://host[:port][/]` URL, without brackets; `None` for anything else.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) || authority.chars().any(char::is_whitespace) {
        return None;
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return (after.is_empty() || valid_port(after.strip_prefix(':')?)).then_some(host);
    }
    match authority.split_once(':') {
        Some((host, port)) => valid_port(port).then_some(host),
        None => Some(authority),
    }
}

fn valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok()
}

/// Renders stanzas as a federation file.
///
/// # Errors
/// When TOML serialisation fails (it does not for these types).
pub fn render(entries: &[SiteEntry]) -> anyhow::Result<String> {
    let text = toml::to_string(&FileText {
        site: entries.to_vec(),
    })?;
    Ok(format!(
        "# Sovereign federation: every site's public URL, pinned federation key and TLS CA.\n\
         # Gather each site's `sovereign federation publish` output here.\n\n{text}"
    ))
}

/// The stanza a site publishes: its URL, its federation public key (creating its identity on
/// first use) and its TLS CA (`ca_pem`; `None` takes the site's local CA, creating it with the
/// URL's host on the certificate).
///
/// # Errors
/// When the URL is not `https://host[:port]` or the site's files cannot be created or read.
pub fn publish(
    data_dir: &Path,
    region: &RegionId,
    url: &str,
    ca_pem: Option<String>,
) -> anyhow::Result<SiteEntry> {
    let host = url_host(url)
        .filter(|h| !h.is_empty())
        .with_context(|| format!("--url {url}: expected https://host[:port]"))?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let identity = load_or_create_identity(data_dir, region)?;
    let tls_ca = match ca_pem {
        Some(pem) => pem,
        None => crate::tls::local_ca_pem(data_dir, &[host])?,
    };
    Ok(SiteEntry {
        region: region.to_string(),
        url: url.trim_end_matches('/').to_owned(),
        federation_key: base64::engine::general_purpose::STANDARD.encode(identity.public_key()),
        tls_ca: Some(tls_ca),
    })
}

/// The site directory of `region` for the commands that take a `--data-dir`: the site of the
/// one-machine layout under it if there is one, else the directory itself (a site's own).
pub fn resolve_site_dir(data_dir: &Path, region: &RegionId) -> PathBuf {
    let site = site_dir(data_dir, region);
    if site.is_dir() {
        site
    } else {
        data_dir.to_path_buf()
    }
}

/// `DIR/sites/<region>`.
pub fn site_dir(root: &Path, region: &RegionId) -> PathBuf {
    root.join(SITES_DIR).join(region.as_str())
}

/// Where the directory of a `--data-dir` is: the one-machine layout's, or the site's own.
pub fn directory_path(data_dir: &Path) -> PathBuf {
    data_dir.join("directory.sqlite")
}

/// Puts the directory's phone index key at `site_dir/keys/`, as an operator copies it to each
/// host. Refuses a site that already holds a different one: it would route numbers apart.
///
/// # Errors
/// When the files cannot be read or written, or the site's key differs.
pub fn install_phone_index_key(shared: &Path, site_dir: &Path) -> anyhow::Result<()> {
    if !shared.exists() {
        let key: [u8; sovereign_crypto::KEY_BYTES] = sovereign_crypto::random_bytes()?;
        crate::keys::write_private(shared, &key)?;
    }
    let key = std::fs::read(shared).with_context(|| format!("reading {}", shared.display()))?;
    let keys = site_dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let target = keys.join(PHONE_INDEX_KEY_FILE);
    match std::fs::read(&target) {
        Ok(existing) if existing == key => Ok(()),
        Ok(_) => anyhow::bail!(
            "{} differs from the directory's phone index key {}",
            target.display(),
            shared.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::keys::write_private(&target, &key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", target.display())),
    }
}

/// How one site is run on its own host.
pub struct SiteOptions {
    /// The site's own data directory.
    pub data_dir: PathBuf,
    pub region: RegionId,
    pub listen: SocketAddr,
    pub policies: Policies,
    /// The region's PostgreSQL database; `None` keeps the store in SQLite under `data_dir`.
    pub database: Option<String>,
    /// The federation file; `None` takes `DIR/federation.toml` if it exists, else the site runs
    /// alone (it neither makes nor accepts peer calls).
    pub federation_file: Option<PathBuf>,
    /// The directory, opened (`Directory::at`: SQLite or etcd); `None`: the SQLite file
    /// `DIR/directory.sqlite`.
    pub directory: Option<Directory>,
    /// The operator's certificate chain and key (PEM); `None` uses the site's local CA.
    pub tls_cert_key: Option<(PathBuf, PathBuf)>,
    /// CA certificates (PEM) to trust for peers whose stanza pins no CA.
    pub ca_bundle: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
}

/// Starts one region as a site: its own keys, TLS and store under its data directory, the others
/// known only from the federation file.
///
/// # Errors
/// When the address cannot be bound, or a file cannot be read, created or parsed.
pub async fn start_site(options: SiteOptions) -> anyhow::Result<Cloud> {
    let SiteOptions {
        data_dir,
        region,
        listen,
        policies,
        database,
        federation_file,
        directory,
        tls_cert_key,
        ca_bundle,
        clock,
    } = options;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let tls = match &tls_cert_key {
        Some((cert, key)) => crate::tls::from_files(cert, key)?,
        None => crate::tls::load_or_create(&data_dir)?,
    };
    let tls_config = Arc::new(
        tls.server_config()
            .context("loading the server certificate")?,
    );
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("binding {listen} for {region}"))?;
    listener.set_nonblocking(true)?;
    let federation_file = federation_file.or_else(|| {
        let default = data_dir.join(FEDERATION_FILE);
        default.exists().then_some(default)
    });
    let peers = match &federation_file {
        Some(path) => FederationFile::read(path)?.peer_table(),
        None => {
            tracing::warn!(
                "no federation file: {region} runs alone and neither makes nor accepts peer calls"
            );
            PeerTable::unpinned(&policies.regions)
        }
    };
    let ca_bundle = match &ca_bundle {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => Vec::new(),
    };
    let directory = match directory {
        Some(directory) => directory,
        None => Directory::open(&directory_path(&data_dir))?,
    };
    let mut options = RegionOptions::new(data_dir, region.clone(), policies);
    options.clock = clock;
    options.directory = Some(directory.clone());
    options.peers = Some(Arc::new(peers));
    options.peer_ca_bundle = ca_bundle;
    options.database = database;
    let state = RegionState::open(options).await?;
    let url = format!("https://{}", listener.local_addr()?);
    let server = crate::serve(state.clone(), listener, tls_config)?;
    Ok(Cloud {
        regions: vec![RunningRegion {
            id: region,
            url,
            state,
            server,
        }],
        directory,
    })
}

/// Prepares every region of the one-machine layout as its own site under `root` and writes the
/// federation file and the clients' CA bundle from what each site publishes. Returns the parsed
/// federation file, as every site will read it.
///
/// # Errors
/// When a site's files cannot be created or read.
pub fn prepare_local_sites(
    root: &Path,
    urls: &BTreeMap<RegionId, String>,
) -> anyhow::Result<FederationFile> {
    let mut entries = Vec::new();
    let mut cas = BTreeSet::new();
    let shared_index_key = root.join(PHONE_INDEX_KEY_FILE);
    for (region, url) in urls {
        let site = site_dir(root, region);
        let entry = publish(&site, region, url, None)?;
        install_phone_index_key(&shared_index_key, &site)?;
        if let Some(ca) = &entry.tls_ca {
            cas.insert(ca.clone());
        }
        entries.push(entry);
    }
    let text = render(&entries)?;
    let path = root.join(FEDERATION_FILE);
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let tls = root.join("tls");
    std::fs::create_dir_all(&tls).with_context(|| format!("creating {}", tls.display()))?;
    let bundle: String = cas.into_iter().collect();
    std::fs::write(tls.join("ca.pem"), bundle).context("writing the clients' CA bundle")?;
    FederationFile::read(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(region: &str) -> SiteEntry {
        SiteEntry {
            region: region.to_owned(),
            url: "https://mumbai.example:8443".to_owned(),
            federation_key: base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            tls_ca: None,
        }
    }

    #[test]
    fn a_rendered_file_parses_back() {
        let text = render(&[entry("in-mumbai"), entry("sg-singapore")]).unwrap();
        let file = FederationFile::parse(&text).unwrap();
        assert_eq!(file.sites.len(), 2);
        let mumbai = &file.sites[&RegionId::parse("in-mumbai").unwrap()];
        assert_eq!(mumbai.url, "https://mumbai.example:8443");
        assert_eq!(mumbai.public_key.as_deref(), Some(&[7u8; 32][..]));
    }

    #[test]
    fn faults_are_refused() {
        let twice = render(&[entry("in-mumbai"), entry("in-mumbai")]).unwrap();
        let mut plain = entry("in-mumbai");
        plain.url = "http://mumbai.example".to_owned();
        let mut short = entry("in-mumbai");
        short.federation_key = "AAAA".to_owned();
        let mut ca = entry("in-mumbai");
        ca.tls_ca = Some("not a certificate".to_owned());
        for text in [
            twice,
            render(&[plain]).unwrap(),
            render(&[short]).unwrap(),
            render(&[ca]).unwrap(),
            "[[site]]\nregion = \"in-mumbai\"\n".to_owned(),
            "surprise = 1".to_owned(),
        ] {
            assert!(FederationFile::parse(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let many: Vec<SiteEntry> = (0..=FEDERATION_SITES_MAX)
            .map(|i| entry(&format!("xx-site{i}")))
            .collect();
        let text = render(&many).unwrap();
        assert!(text.len() < FEDERATION_FILE_BYTES_MAX);
        assert!(matches!(
            FederationFile::parse(&text),
            Err(FederationFileError::TooManySites(_))
        ));
        let long = " ".repeat(FEDERATION_FILE_BYTES_MAX + 1);
        assert!(matches!(
            FederationFile::parse(&long),
            Err(FederationFileError::TooLong(_))
        ));
    }

    #[test]
    fn deeply_nested_or_odd_toml_is_a_clear_error_not_a_crash() {
        // Everything the TOML parser reads before the site checks: nesting as deep as the
        // size limit allows, keys that are not `site`, sites of the wrong type.
        let depth = FEDERATION_FILE_BYTES_MAX / 2 - 8;
        let arrays = format!("x = {}{}", "[".repeat(depth), "]".repeat(depth));
        let tables = format!("x = {}{}", "{a = ".repeat(depth / 5), "}".repeat(depth / 5));
        for text in [
            arrays,
            tables,
            "site = 1".to_owned(),
            "site = [1]".to_owned(),
            "[[site]]\n[[site]]\n".to_owned(),
            "[[site]]\nregion = \"in-mumbai\"\nurl = \"https://\"\nfederation_key = \"\"\n"
                .to_owned(),
            "\u{feff}[[site]]".to_owned(),
        ] {
            assert!(
                FederationFile::parse(&text).is_err(),
                "{}",
                &text[..40.min(text.len())]
            );
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://a.example:1"), Some("a.example"));
        assert_eq!(url_host("https://a.example/"), Some("a.example"));
        assert_eq!(url_host("https://[::1]:8443"), Some("::1"));
        assert_eq!(url_host("https://a.example:port"), None);
        assert_eq!(url_host("https://a.example/x"), None);
        assert_eq!(url_host("http://a.example"), None);
    }
}
