//! What `sovereign scan` does, minus flag parsing and writing the result: the binary stays thin.

use std::path::PathBuf;

use crate::progress::Progress;
use crate::tls::keylog::KeyLog;
use crate::{Policy, Profile, ScanError, Scanner, Severity, Sites};

/// Largest policy file we read.
pub const POLICY_BYTES_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
    Html,
}

/// Two captures to compare, or captures to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inputs {
    Scan(Vec<PathBuf>),
    Diff { before: PathBuf, after: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub profile: PathBuf,
    pub policy: Option<PathBuf>,
    /// Destinations the country database cannot place, by address: from `--sites FILE`
    /// ([`read_sites`]) or built by the caller ([`Sites::new`]). Empty for none.
    pub sites: Sites,
    pub inputs: Inputs,
    pub format: OutputFormat,
    /// TLS key logs (SSLKEYLOGFILE format) to decrypt TLS 1.2 and 1.3 with; a bad line in one
    /// is an error naming the file and line.
    pub keylogs: Vec<PathBuf>,
}

/// Reads a sites file (`--sites FILE`).
///
/// # Errors
/// When the file cannot be read or is not a valid sites file; the message names the problem.
pub fn read_sites(path: &PathBuf) -> Result<Sites, ScanError> {
    let text = read_small(path, crate::finding::sites::SITES_BYTES_MAX as u64)?;
    Sites::from_toml(&text, &path.display().to_string())
}

/// The rendered report and the rating an exit code is decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub rendered: String,
    /// For a scan, the overall rating; for a diff, the worst finding that appeared or changed.
    pub rating: Severity,
}

fn read_small(path: &PathBuf, limit: u64) -> Result<String, ScanError> {
    use std::io::Read as _;
    let io = |source| ScanError::Io {
        path: path.clone(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(limit + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > limit {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        )));
    }
    Ok(text)
}

/// Reads and merges key log files.
///
/// # Errors
/// When a file cannot be read, is larger than [`KEYLOG_BYTES_MAX`](crate::tls::keylog::KEYLOG_BYTES_MAX),
/// or has a line that is not in the key log format.
pub fn read_keylogs(paths: &[PathBuf]) -> Result<KeyLog, ScanError> {
    let mut keys = KeyLog::default();
    for path in paths {
        let too_large = || ScanError::KeyLogTooLarge {
            path: path.clone(),
            max: crate::tls::keylog::KEYLOG_BYTES_MAX,
        };
        // Refused before reading when its size says so; a pipe is measured as it is read.
        let size = std::fs::metadata(path)
            .map_err(|source| ScanError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if size > crate::tls::keylog::KEYLOG_BYTES_MAX {
            return Err(too_large());
        }
        // The file's text holds the secrets too: wiped when dropped, like the parsed ones.
        let text = zeroize::Zeroizing::new(read_small(path, crate::tls::keylog::KEYLOG_BYTES_MAX)?);
        if text.len() as u64 > crate::tls::keylog::KEYLOG_BYTES_MAX {
            return Err(too_large());
        }
        keys.add_text(&text, &path.display().to_string())?;
    }
    Ok(keys)
}

/// Runs a scan or a diff.
///
/// # Errors
/// When the profile, policy or a capture cannot be read or is invalid.
pub fn execute(request: &Request, progress: &mut dyn Progress) -> Result<Outcome, ScanError> {
    let origin = request.profile.display().to_string();
    let text = read_small(&request.profile, crate::profile::PROFILE_BYTES_MAX as u64)?;
    let profile = Profile::from_toml(&text, &origin)?;
    let policy = match &request.policy {
        Some(path) => {
            let text = read_small(path, POLICY_BYTES_MAX)?;
            Policy::from_toml(&text, &path.display().to_string())?
        }
        None => Policy::builtin(),
    };
    let keys = read_keylogs(&request.keylogs)?;
    let scanner = Scanner::new(profile, policy)?
        .with_sites(request.sites.clone())
        .with_keys(keys);
    match &request.inputs {
        Inputs::Scan(paths) => {
            let report = scanner.scan_paths(paths, progress)?;
            let rendered = match request.format {
                OutputFormat::Table => report.to_table(),
                OutputFormat::Json => report.to_json().unwrap_or_default() + "\n",
                OutputFormat::Html => crate::report::html::report(&report),
            };
            Ok(Outcome {
                rendered,
                rating: report.rating,
            })
        }
        Inputs::Diff { before, after } => {
            let old = scanner.scan_paths(std::slice::from_ref(before), progress)?;
            let new = scanner.scan_paths(std::slice::from_ref(after), progress)?;
            let diff = crate::report::diff::diff(&old, &new);
            let rendered = match request.format {
                OutputFormat::Table => diff.to_table(),
                OutputFormat::Json => diff.to_json().unwrap_or_default() + "\n",
                OutputFormat::Html => crate::report::html::diff(&diff),
            };
            Ok(Outcome {
                rendered,
                rating: diff.rating,
            })
        }
    }
}
