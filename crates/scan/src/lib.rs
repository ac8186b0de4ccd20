//! The scanner: finds a phone's identifiers in captured traffic, in any encoding, and says where
//! they went.
//!
//! It reads pcap, pcapng and HAR captures, reassembles TCP, parses HTTP/1.x, DNS and the TLS
//! ClientHello, undoes compression and encodings, and matches every identifier of a device
//! profile in one pass. Each finding is attributed to a host and a country and rated by a
//! policy. The crate does no network I/O: the IP-to-country database is compiled in.
//!
//! ```no_run
//! use sovereign_scan::{Policy, Profile, Scanner, progress::NoProgress};
//!
//! let profile = Profile::from_toml(
//!     "[device]\nhome_country = \"IN\"\n[identifiers]\nimei = \"356938035643809\"\n",
//!     "profile.toml",
//! )?;
//! let scanner = Scanner::new(profile, Policy::builtin())?;
//! let report = scanner.scan_paths(&["phone.pcap".into()], &mut NoProgress)?;
//! println!("{}", report.to_table());
//! # Ok::<(), sovereign_scan::ScanError>(())
//! ```
#![forbid(unsafe_code)]

// The folders follow the pipeline: capture → network → transport → protocols (and TLS) →
// finding → report; `engine` drives one capture through it and `run` is what the CLI calls.
pub mod capture;
pub mod engine;
mod error;
pub mod finding;
pub mod network;
pub mod phone_traffic;
pub mod progress;
pub mod protocols;
pub mod quic;
pub mod report;
pub mod run;
mod shard;
pub mod synth;
pub mod tls;
pub mod transport;

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use error::ScanError;
pub use finding::policy::{Policy, Severity};
pub use finding::sites::{Site, Sites};
pub use report::{Finding, Report, TlsFlowReport};
pub use sovereign_model::profile::{self, Profile};

use capture::CaptureFormat;
use engine::{Session, Tally};
use progress::Progress;

/// Inflated bytes of a gzip-compressed capture read before its format is detected.
const GZIP_HEAD_BYTES: u64 = 64 << 10;

/// Bytes of a file read between two progress updates.
const PROGRESS_STEP_BYTES: u64 = 4 << 20;

/// The bounds a scan enforces on what it holds. [`Limits::default`] is the named constants;
/// tests lower them to cross them without gigabytes of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// [`engine::BUFFERED_BYTES_MAX`].
    pub buffered_bytes_max: usize,
    /// [`engine::DNS_ANSWERS_MAX`].
    pub dns_answers_max: usize,
    /// [`capture::har::HAR_BYTES_MAX`].
    pub har_bytes_max: u64,
    /// [`capture::har::HAR_ENTRIES_MAX`].
    pub har_entries_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            buffered_bytes_max: engine::BUFFERED_BYTES_MAX,
            dns_answers_max: engine::DNS_ANSWERS_MAX,
            har_bytes_max: capture::har::HAR_BYTES_MAX,
            har_entries_max: capture::har::HAR_ENTRIES_MAX,
        }
    }
}

/// A profile compiled into a matcher, with the policy and the country database.
#[derive(Debug)]
pub struct Scanner {
    profile: Profile,
    targets: Vec<finding::needle::Target>,
    matcher: finding::matcher::Matcher,
    geo: finding::geo::Geo,
    policy: Policy,
    sites: Sites,
    limits: Limits,
    keys: tls::keylog::KeyLog,
    /// Shards of a pcap or pcapng scan; 1 scans on the calling thread alone.
    threads: usize,
}

impl Scanner {
    /// # Errors
    /// When the profile lists no identifier, or the matcher or database cannot be built.
    pub fn new(profile: Profile, policy: Policy) -> Result<Scanner, ScanError> {
        let (targets, needles) = finding::needle::expand(&profile);
        if targets.is_empty() {
            return Err(ScanError::EmptyProfile(profile.device.name.clone()));
        }
        let matcher = finding::matcher::Matcher::new(&needles)?;
        Ok(Scanner {
            profile,
            targets,
            matcher,
            geo: finding::geo::Geo::new()?,
            policy,
            sites: Sites::default(),
            limits: Limits::default(),
            keys: tls::keylog::KeyLog::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// Scans pcap and pcapng captures with `threads` worker threads (at most
    /// [`shard::THREADS_MAX`]; the default is one per core), flows sharded between them; 1 scans
    /// on the calling thread. The report is the same whatever the number.
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Scanner {
        self.threads = threads.clamp(1, shard::THREADS_MAX);
        self
    }

    /// Lowers (or raises) the bounds of [`Limits`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Scanner {
        self.limits = limits;
        self
    }

    /// Places destinations the country database cannot (lab networks, loopback): a finding
    /// whose remote party is one of `sites` takes its country and name.
    #[must_use]
    pub fn with_sites(mut self, sites: Sites) -> Scanner {
        self.sites = sites;
        self
    }

    /// Decrypts TLS 1.2 and 1.3 flows whose secrets `keys` holds (besides any secrets a
    /// pcapng capture carries itself).
    #[must_use]
    pub fn with_keys(mut self, keys: tls::keylog::KeyLog) -> Scanner {
        self.keys = keys;
        self
    }

    /// How many byte patterns the profile expanded to.
    pub fn pattern_count(&self) -> usize {
        finding::needle::expand(&self.profile).1.len()
    }

    /// Scans capture files, in order, into one report.
    ///
    /// # Errors
    /// When a file cannot be read or is not a capture at all. A capture that is truncated or
    /// malformed part way is not an error: the report has what came before and a warning.
    pub fn scan_paths(
        &self,
        paths: &[PathBuf],
        progress: &mut dyn Progress,
    ) -> Result<Report, ScanError> {
        let mut tally = Tally::default();
        let mut captures = Vec::new();
        for (index, path) in paths.iter().enumerate() {
            let io = |source| ScanError::Io {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            let size = file.metadata().map_err(io)?.len();
            let info = self.scan_reader(&mut tally, index, path, file, size, progress)?;
            captures.push(info);
        }
        Ok(self.report(tally, captures))
    }

    /// Scans one capture held in memory (tests and fuzzing use this).
    ///
    /// # Errors
    /// As [`Scanner::scan_paths`].
    pub fn scan_bytes(&self, name: &str, data: &[u8]) -> Result<Report, ScanError> {
        let mut tally = Tally::default();
        let info = self.scan_reader(
            &mut tally,
            0,
            Path::new(name),
            std::io::Cursor::new(data),
            data.len() as u64,
            &mut progress::NoProgress,
        )?;
        Ok(self.report(tally, vec![info]))
    }

    fn scan_reader(
        &self,
        tally: &mut Tally,
        index: usize,
        path: &Path,
        mut file: impl Read + Seek + Send,
        size: u64,
        progress: &mut dyn Progress,
    ) -> Result<report::CaptureInfo, ScanError> {
        let io = |source| ScanError::Io {
            path: path.to_owned(),
            source,
        };
        let mut head = Vec::with_capacity(16);
        (&mut file).take(16).read_to_end(&mut head).map_err(io)?;
        // Start again from the beginning: the pcap reader must see the header in its first read.
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        // A gzip-compressed capture (`.pcap.gz`, `.har.gz`) is read through an inflater; what
        // it holds is detected from its first inflated bytes, which are then read again.
        let mut file: Box<dyn Read + Send + '_> = if head.starts_with(&[0x1f, 0x8b]) {
            let mut inflated = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            // The pcap reader takes the file header from its first read, which a chain of a
            // short head and the inflater would cut short: the head is the first 64 KiB.
            head.clear();
            (&mut inflated)
                .take(GZIP_HEAD_BYTES)
                .read_to_end(&mut head)
                .map_err(io)?;
            Box::new(std::io::Cursor::new(head.clone()).chain(inflated))
        } else {
            Box::new(file)
        };
        let format = CaptureFormat::detect(path, &head)?;
        progress.begin(&path.display().to_string(), size);
        if self.threads > 1 && matches!(format, CaptureFormat::Pcap | CaptureFormat::Pcapng) {
            let stats = shard::scan_capture(
                self,
                tally,
                index,
                path,
                &mut file,
                self.threads,
                progress,
                PROGRESS_STEP_BYTES,
            )?;
            progress.end();
            return Ok(capture_info(path, format, &stats));
        }
        let mut session = Session::new(&self.matcher, tally, index, path);
        session.limits = self.limits;
        session.set_keys(&self.keys);
        match format {
            CaptureFormat::Pcap | CaptureFormat::Pcapng => {
                let mut warnings = Vec::new();
                let mut next_update = PROGRESS_STEP_BYTES;
                capture::read_items(
                    path,
                    &mut file,
                    |item, done| {
                        match item {
                            capture::Item::Frame(frame) => {
                                session.frame(frame.link, frame.time_us, frame.data);
                            }
                            capture::Item::Secrets { kind, data } => session.secrets(kind, data),
                        }
                        if done >= next_update {
                            progress.advance(done);
                            next_update = done + PROGRESS_STEP_BYTES;
                        }
                    },
                    &mut warnings,
                )?;
                for warning in warnings {
                    session.warn(warning);
                }
                session.finish();
            }
            CaptureFormat::Har => {
                let mut text = Vec::new();
                let har_bytes_max = self.limits.har_bytes_max;
                file.take(har_bytes_max + 1)
                    .read_to_end(&mut text)
                    .map_err(io)?;
                if text.len() as u64 > har_bytes_max {
                    return Err(ScanError::Capture {
                        path: path.to_owned(),
                        message: format!("a har file larger than {har_bytes_max} bytes"),
                    });
                }
                let (exchanges, dropped) = capture::har::parse(&text, self.limits.har_entries_max)
                    .map_err(|message| ScanError::Capture {
                        path: path.to_owned(),
                        message,
                    })?;
                if dropped > 0 {
                    session.warn(format!(
                        "{}: more than {} har entries; the last {dropped} are not scanned",
                        path.display(),
                        self.limits.har_entries_max
                    ));
                }
                for (i, exchange) in exchanges.iter().enumerate() {
                    session.har_entry(exchange, i as u64 + 1);
                }
                session.stats.bytes = text.len() as u64;
            }
        }
        progress.end();
        let stats = session.stats.clone();
        Ok(capture_info(path, format, &stats))
    }

    /// Where a remote party is: the analyst's site for it, if any, and its country (the site's,
    /// which wins because it names what the database cannot place, else the database's).
    fn locate(
        &self,
        remote: std::net::SocketAddr,
        countries: &mut HashMap<IpAddr, Option<String>>,
    ) -> (Option<&Site>, Option<String>) {
        match self.sites.find(remote) {
            Some(site) => (Some(site), Some(site.country.as_str().to_owned())),
            None => (
                None,
                countries
                    .entry(remote.ip())
                    .or_insert_with(|| self.geo.country(remote.ip()))
                    .clone(),
            ),
        }
    }

    fn report(&self, tally: Tally, captures: Vec<report::CaptureInfo>) -> Report {
        let home = self.profile.device.home_country.as_str().to_owned();
        let mut countries: HashMap<IpAddr, Option<String>> = HashMap::new();
        let mut findings: Vec<Finding> = tally
            .findings
            .into_iter()
            .map(|(key, occ)| {
                let kind = self.targets[key.target].kind;
                let remote = key.place.remote;
                let (site, country) = self.locate(remote, &mut countries);
                let cross_border = country.as_deref().is_some_and(|c| c != home);
                let hashed = ["md5", "sha1", "sha256"]
                    .iter()
                    .any(|h| key.encoding.starts_with(h));
                let severity = self.policy.rate(finding::policy::Facts {
                    kind,
                    cleartext: key.place.cleartext,
                    cross_border,
                    hashed,
                });
                Finding {
                    identifier: kind,
                    encoding: key.encoding,
                    chain: key.chain,
                    protocol: key.place.protocol.to_owned(),
                    stream: occ.stream,
                    direction: if key.place.outbound {
                        "outbound"
                    } else {
                        "inbound"
                    }
                    .to_owned(),
                    src: occ.src.to_string(),
                    dst: key.place.dst.to_string(),
                    dst_ip: key.place.dst.ip().to_string(),
                    host: key.place.host.or_else(|| site.map(|s| s.name.clone())),
                    site: site.map(|s| s.name.clone()),
                    country,
                    cross_border,
                    cleartext: key.place.cleartext,
                    severity,
                    first_seen: report::rfc3339(occ.first_time_us),
                    first_seen_us: occ.first_time_us,
                    capture: captures
                        .get(occ.capture)
                        .map(|c| c.path.clone())
                        .unwrap_or_default(),
                    frame: occ.frame,
                    count: occ.count,
                    evidence: occ.evidence,
                }
            })
            .collect();
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.first_seen_us.cmp(&b.first_seen_us))
                .then(a.identifier.cmp(&b.identifier))
                .then(a.chain.cmp(&b.chain))
                .then(a.dst.cmp(&b.dst))
        });
        let rating = findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::None);
        let mut tls_flows: Vec<TlsFlowReport> = tally
            .tls_flows
            .into_iter()
            .map(|flow| {
                let (site, country) = self.locate(flow.server, &mut countries);
                let (decrypted, note) = match flow.visibility {
                    tls::decrypt::Visibility::Decrypted => (true, None),
                    tls::decrypt::Visibility::Hidden(reason) => (false, Some(reason)),
                };
                TlsFlowReport {
                    protocol: "tls".to_owned(),
                    alpn: Vec::new(),
                    src: flow.client.ip().to_string(),
                    dst: flow.server.to_string(),
                    dst_ip: flow.server.ip().to_string(),
                    host: flow.host.or_else(|| site.map(|s| s.name.clone())),
                    sni: flow.sni,
                    cross_border: country.as_deref().is_some_and(|c| c != home),
                    country,
                    site: site.map(|s| s.name.clone()),
                    version: flow.version.map(tls::decrypt::version_name),
                    cipher: flow.cipher_suite.map(tls::decrypt::suite_name),
                    decrypted,
                    note,
                    bytes: flow.bytes_out + flow.bytes_in,
                    bytes_out: flow.bytes_out,
                    bytes_in: flow.bytes_in,
                    first_seen: flow.first_time_us.map(report::rfc3339),
                    first_seen_us: flow.first_time_us.unwrap_or(0),
                    capture: captures
                        .get(flow.capture)
                        .map(|c| c.path.clone())
                        .unwrap_or_default(),
                }
            })
            .collect();
        for flow in tally.quic_flows {
            let (site, country) = self.locate(flow.server, &mut countries);
            let (decrypted, note) = match flow.visibility {
                tls::decrypt::Visibility::Decrypted => (true, None),
                tls::decrypt::Visibility::Hidden(reason) => (false, Some(reason)),
            };
            tls_flows.push(TlsFlowReport {
                protocol: "quic".to_owned(),
                src: flow.client.ip().to_string(),
                dst: flow.server.to_string(),
                dst_ip: flow.server.ip().to_string(),
                host: flow.host.or_else(|| site.map(|s| s.name.clone())),
                sni: flow.sni,
                cross_border: country.as_deref().is_some_and(|c| c != home),
                country,
                site: site.map(|s| s.name.clone()),
                version: Some(format!("{} (TLS 1.3)", flow.version)),
                cipher: flow.cipher_suite.map(tls::decrypt::suite_name),
                alpn: flow.alpn,
                decrypted,
                note,
                bytes: flow.bytes_out + flow.bytes_in,
                bytes_out: flow.bytes_out,
                bytes_in: flow.bytes_in,
                first_seen: Some(report::rfc3339(flow.first_time_us)),
                first_seen_us: flow.first_time_us,
                capture: captures
                    .get(flow.capture)
                    .map(|c| c.path.clone())
                    .unwrap_or_default(),
            });
        }
        tls_flows.sort_by(|a, b| {
            (&a.capture, a.first_seen_us, &a.dst).cmp(&(&b.capture, b.first_seen_us, &b.dst))
        });
        let mut warnings = tally.warnings.list;
        if tally.tls_flows_dropped > 0 {
            warnings.push(format!(
                "{} more tls flows were not listed (at most {} are)",
                tally.tls_flows_dropped,
                engine::TLS_FLOWS_MAX
            ));
        }
        if tally.warnings.dropped > 0 {
            warnings.push(format!(
                "{} more warnings were not kept (at most {} are)",
                tally.warnings.dropped,
                engine::WARNINGS_MAX
            ));
        }
        let nothing_readable = findings.is_empty()
            && captures.iter().any(|c| c.frames > 0)
            && captures.iter().all(|c| c.readable_frames == 0);
        Report {
            rating,
            advisory: if nothing_readable {
                report::NOTHING_READABLE
            } else {
                rating.advisory()
            }
            .to_owned(),
            device: self.profile.device.name.clone(),
            home_country: home,
            findings,
            tls_flows,
            captures,
            warnings,
            ip_country_database: self.geo.version(),
        }
    }
}

fn capture_info(
    path: &Path,
    format: CaptureFormat,
    stats: &engine::CaptureStats,
) -> report::CaptureInfo {
    report::CaptureInfo {
        path: path.display().to_string(),
        format,
        frames: stats.frames,
        bytes: stats.bytes,
        tcp_flows: stats.tcp_flows,
        readable_frames: stats.readable_frames,
        first_seen: stats.first_time_us.map(report::rfc3339),
        last_seen: stats.last_time_us.map(report::rfc3339),
    }
}
