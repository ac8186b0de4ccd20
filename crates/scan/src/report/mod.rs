//! The report: findings with attribution and severity, rendered as a table or JSON.

pub mod diff;
pub mod html;

use std::fmt::Write as _;

use serde::Serialize;
use sovereign_model::IdentifierKind;

use crate::finding::policy::Severity;

/// One identifier, in one encoding, sent one way to one destination; repeated sightings are
/// counted, the first is described.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub identifier: IdentifierKind,
    /// How the identifier itself was written: `plain`, `base64`, `sha256(e164)`, ...
    pub encoding: String,
    /// The decode chain, outermost first, ending with `encoding`.
    pub chain: Vec<String>,
    pub protocol: String,
    /// The HTTP/2 stream of the first sighting (`h2`, `h2c`), absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<u32>,
    /// `outbound` (phone to server) or `inbound` (server to phone).
    pub direction: String,
    pub src: String,
    pub dst: String,
    pub dst_ip: String,
    /// The remote party's name, from HTTP Host, TLS SNI or an earlier DNS answer.
    pub host: Option<String>,
    /// The name of the `--sites` entry the remote party matched, if any.
    pub site: Option<String>,
    /// The remote party's country (ISO 3166 alpha-2): the site's when it matched one, else the
    /// IP-to-country database's.
    pub country: Option<String>,
    pub cross_border: bool,
    pub cleartext: bool,
    pub severity: Severity,
    pub first_seen: String,
    #[serde(skip)]
    pub first_seen_us: i64,
    /// The capture (path) of the first sighting.
    pub capture: String,
    /// The frame number of the first sighting in its capture, from 1.
    pub frame: u64,
    pub count: u64,
    /// Context of the first sighting, with the identifier masked.
    pub evidence: String,
}

/// A TLS connection (over TCP) or a QUIC connection (over UDP, TLS 1.3 inside), whether or not
/// its content could be decrypted: a flow whose content was not visible is still a destination
/// the phone talked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFlowReport {
    /// `tls` or `quic`.
    pub protocol: String,
    /// The client (phone) address.
    pub src: String,
    pub dst: String,
    pub dst_ip: String,
    /// The server's name: SNI, else an HTTP Host seen inside, else an earlier DNS answer.
    pub host: Option<String>,
    /// The server name the ClientHello asked for.
    pub sni: Option<String>,
    pub country: Option<String>,
    pub cross_border: bool,
    /// The name of the `--sites` entry the server matched, if any.
    pub site: Option<String>,
    /// `TLS 1.2`, `TLS 1.3`, ...; absent when the ServerHello was not captured.
    pub version: Option<String>,
    /// The IANA name of the cipher suite, or its number in hex.
    pub cipher: Option<String>,
    /// The application protocols the ClientHello offered (QUIC: `h3`, ...); empty for TLS.
    pub alpn: Vec<String>,
    /// Whether its content was decrypted (and searched).
    pub decrypted: bool,
    /// Why it was not decrypted.
    pub note: Option<String>,
    /// Stream bytes, both directions.
    pub bytes: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub first_seen: Option<String>,
    #[serde(skip)]
    pub first_seen_us: i64,
    pub capture: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureInfo {
    pub path: String,
    pub format: crate::capture::CaptureFormat,
    pub frames: u64,
    pub bytes: u64,
    pub tcp_flows: u64,
    /// Frames of a link type the scanner reads; the others are named in a warning.
    pub readable_frames: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub rating: Severity,
    pub advisory: String,
    pub device: String,
    pub home_country: String,
    pub findings: Vec<Finding>,
    /// Every TLS and QUIC connection, with whether its content was visible.
    pub tls_flows: Vec<TlsFlowReport>,
    pub captures: Vec<CaptureInfo>,
    pub warnings: Vec<String>,
    pub ip_country_database: String,
}

/// The advisory of a scan that could read none of its frames: "no identifier was seen" would
/// be a clean bill of health from an instrument that saw nothing.
pub const NOTHING_READABLE: &str = "Nothing in the captures could be read (see the warnings for the link types), so this scan says nothing about the device.";

impl Report {
    /// Whether the captures had frames but none the scanner could read.
    pub fn nothing_readable(&self) -> bool {
        self.captures.iter().any(|c| c.frames > 0)
            && self.captures.iter().all(|c| c.readable_frames == 0)
    }

    /// The rating as the table and the page title it: `NOT RATED` when nothing was readable.
    pub fn rating_label(&self) -> String {
        if self.nothing_readable() && self.findings.is_empty() {
            "NOT RATED".to_owned()
        } else {
            self.rating.as_str().to_uppercase()
        }
    }

    /// # Errors
    /// Never in practice: every field serialises.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// A terminal summary: the rating, one line per finding, then the warnings.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Rating: {}", self.rating_label());
        let _ = writeln!(out, "{}", self.advisory);
        let _ = writeln!(out);
        if self.findings.is_empty() {
            let _ = writeln!(out, "No findings.");
        } else {
            let mut header = vec![
                "SEVERITY",
                "IDENTIFIER",
                "DECODE CHAIN",
                "PROTOCOL",
                "HOST",
                "SITE",
                "DST",
                "COUNTRY",
                "BORDER",
                "COUNT",
                "FIRST SEEN",
                "FRAME",
            ];
            let mut rows: Vec<Vec<String>> = self
                .findings
                .iter()
                .map(|f| {
                    vec![
                        f.severity.as_str().to_owned(),
                        f.identifier.as_str().to_owned(),
                        f.chain.join(">"),
                        format!(
                            "{}{}{}",
                            f.protocol,
                            f.stream.map(|s| format!(" #{s}")).unwrap_or_default(),
                            if f.direction == "inbound" {
                                " (in)"
                            } else {
                                ""
                            }
                        ),
                        f.host.clone().unwrap_or_else(|| "-".into()),
                        f.site.clone().unwrap_or_else(|| "-".into()),
                        f.dst.clone(),
                        f.country.clone().unwrap_or_else(|| "-".into()),
                        if f.cross_border {
                            "crossed".into()
                        } else {
                            "-".into()
                        },
                        f.count.to_string(),
                        f.first_seen.clone(),
                        f.frame.to_string(),
                    ]
                })
                .collect();
            // The SITE column only when `--sites` named the destination of some finding.
            if self.findings.iter().all(|f| f.site.is_none()) {
                let site = header
                    .iter()
                    .position(|h| *h == "SITE")
                    .unwrap_or(header.len());
                header.remove(site);
                for row in &mut rows {
                    row.remove(site);
                }
            }
            let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: &[&str]| {
                let mut s = String::new();
                for (i, (cell, &w)) in cells.iter().zip(widths.iter()).enumerate() {
                    if i + 1 == cells.len() {
                        s.push_str(cell);
                    } else {
                        let _ = write!(s, "{cell:<w$}  ");
                    }
                }
                s.trim_end().to_owned()
            };
            let _ = writeln!(out, "{}", line(&header));
            for row in &rows {
                let cells: Vec<&str> = row.iter().map(String::as_str).collect();
                let _ = writeln!(out, "{}", line(&cells));
            }
        }
        if !self.tls_flows.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "TLS connections:");
            let header = [
                "CONTENT", "HOST", "DST", "COUNTRY", "VERSION", "CIPHER", "BYTES",
            ];
            let rows: Vec<[String; 7]> = self
                .tls_flows
                .iter()
                .map(|t| {
                    [
                        if t.decrypted {
                            "decrypted".to_owned()
                        } else {
                            "not visible".to_owned()
                        },
                        t.host.clone().unwrap_or_else(|| "-".into()),
                        t.dst.clone(),
                        t.country.clone().unwrap_or_else(|| "-".into()),
                        t.version.clone().unwrap_or_else(|| "-".into()),
                        t.cipher.clone().unwrap_or_else(|| "-".into()),
                        t.bytes.to_string(),
                    ]
                })
                .collect();
            let mut widths = header.map(str::len);
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: [&str; 7]| {
                let mut s = String::new();
                for (cell, w) in cells.iter().zip(widths) {
                    let _ = write!(s, "{cell:<w$}  ");
                }
                s.trim_end().to_owned()
            };
            let _ = writeln!(out, "{}", line(header));
            for (row, flow) in rows.iter().zip(&self.tls_flows) {
                let mut text = line([
                    &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
                ]);
                if let Some(note) = &flow.note {
                    let _ = write!(text, "  ({note})");
                }
                let _ = writeln!(out, "{text}");
            }
        }
        let _ = writeln!(out);
        for capture in &self.captures {
            let _ = writeln!(
                out,
                "Capture {} ({:?}): {} frames, {} bytes, {} tcp flows",
                capture.path, capture.format, capture.frames, capture.bytes, capture.tcp_flows
            );
        }
        let _ = writeln!(out, "Countries from {}", self.ip_country_database);
        if !self.warnings.is_empty() {
            let _ = writeln!(out, "\nWarnings:");
            for warning in &self.warnings {
                let _ = writeln!(out, "  {warning}");
            }
        }
        out
    }
}

/// Microseconds since the epoch as RFC 3339 UTC, e.g. `2014-09-25T08:12:03.250000Z`.
pub fn rfc3339(time_us: i64) -> String {
    let seconds = time_us.div_euclid(1_000_000);
    let micros = time_us.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into microseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(b.get(r)?).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0_i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let mut scale = 100_000;
        while let Some(c) = b.get(at).filter(|c| c.is_ascii_digit()) {
            micros += i64::from(c - b'0') * scale;
            scale /= 10;
            at += 1;
        }
    }
    let offset_s = match b.get(at) {
        Some(b'+') | Some(b'-') => {
            let sign = if b[at] == b'-' { -1 } else { 1 };
            sign * (num(at + 1..at + 3)? * 3600 + num(at + 4..at + 6)? * 60)
        }
        _ => 0,
    };
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset_s) * 1_000_000 + micros)
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for text in [
            "1970-01-01T00:00:00.000000Z",
            "2014-09-25T08:12:03.250000Z",
            "2026-02-28T23:59:59.999999Z",
        ] {
            let us = parse_rfc3339(text).unwrap();
            assert_eq!(rfc3339(us), text);
        }
        assert_eq!(
            parse_rfc3339("2014-09-25T10:12:03+02:00"),
            parse_rfc3339("2014-09-25T08:12:03Z")
        );
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
