//! What the phone sent: every request, and which of the profile's identifiers it carried in which
//! encoding. The simulator fills a [`Journal`] as it goes; each step's report is a slice of it.

use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::Serialize;
use sovereign_model::IdentifierKind;
use sovereign_model::Profile;

/// Most requests one journal keeps; the procedure makes a few dozen.
pub const JOURNAL_REQUESTS_MAX: usize = 10_000;
/// Shortest run of base64 characters decoded when looking for identifiers inside base64.
const BASE64_RUN_CHARS_MIN: usize = 8;

/// How an identifier appeared in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    Plain,
    UrlEncoded,
    Base64,
    Hex,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::UrlEncoded => "url-encoded",
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
        }
    }
}

/// One identifier found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Carried {
    pub kind: IdentifierKind,
    pub encoding: Encoding,
}

/// One request the phone made.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub url: String,
    /// The host name the request named (Host header and, over TLS, SNI).
    pub host: String,
    /// The address it was sent to.
    pub connect: String,
    pub tls: bool,
    /// The HTTP status of the answer; absent when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Milliseconds from sending the request to its answer's headers; absent without an answer.
    /// Kept for `device run --timings`; not part of the printed report.
    #[serde(skip)]
    pub elapsed_ms: Option<f64>,
    /// The profile's identifiers this request carried (URL, headers and body), by encoding.
    pub identifiers: Vec<Carried>,
    /// The request's URL, headers the phone set, and body, exactly as sent (the bearer token
    /// masked). Kept for checks; not part of the printed report.
    #[serde(skip)]
    pub sent: Vec<u8>,
}

/// The requests made so far, shared between the clients of one phone.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    inner: Arc<Mutex<JournalInner>>,
}

#[derive(Debug, Default)]
struct JournalInner {
    records: Vec<RequestRecord>,
    dropped: usize,
}

impl Journal {
    pub fn new() -> Journal {
        Journal::default()
    }

    pub(crate) fn push(&self, record: RequestRecord) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.records.len() < JOURNAL_REQUESTS_MAX {
                inner.records.push(record);
            } else {
                inner.dropped += 1;
            }
        }
    }

    /// How many requests are recorded.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.records.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records from index `start` on.
    pub fn since(&self, start: usize) -> Vec<RequestRecord> {
        self.inner.lock().map_or_else(
            |_| Vec::new(),
            |inner| inner.records.get(start..).unwrap_or_default().to_vec(),
        )
    }

    /// Requests not recorded because the journal was full.
    pub fn dropped(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.dropped)
    }
}

/// The profile's identifiers as the byte strings to look for, each with its kind.
#[derive(Debug, Clone, Default)]
pub struct Needles {
    needles: Vec<(IdentifierKind, String)>,
}

/// Digits of a phone number, without `+` or separators.
pub fn phone_digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

impl Needles {
    pub fn from_profile(profile: &Profile) -> Needles {
        let ids = &profile.identifiers;
        let mut needles = Vec::new();
        let mut add = |kind, value: Option<&String>| {
            if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
                needles.push((kind, value.trim().to_owned()));
            }
        };
        add(IdentifierKind::Imei, ids.imei.as_ref());
        add(IdentifierKind::Imsi, ids.imsi.as_ref());
        add(IdentifierKind::Iccid, ids.iccid.as_ref());
        add(IdentifierKind::Carrier, ids.carrier.as_ref());
        add(IdentifierKind::AndroidId, ids.android_id.as_ref());
        add(IdentifierKind::AdvertisingId, ids.advertising_id.as_ref());
        add(IdentifierKind::WifiMac, ids.wifi_mac.as_ref());
        add(IdentifierKind::Serial, ids.serial.as_ref());
        add(IdentifierKind::Email, ids.email.as_ref());
        // Numbers are looked for as digits, which also finds them in E.164 with a `+`.
        add(
            IdentifierKind::Phone,
            ids.phone.as_deref().map(phone_digits).as_ref(),
        );
        for contact in &profile.contacts {
            add(
                IdentifierKind::Contact,
                contact.phone.as_deref().map(phone_digits).as_ref(),
            );
            add(IdentifierKind::Contact, contact.name.as_ref());
        }
        for sms in &profile.sms {
            add(IdentifierKind::Sms, Some(&sms.text));
        }
        if let Some(location) = profile.location {
            add(
                IdentifierKind::Location,
                Some(&format!("{:.4}", location.lat)),
            );
        }
        Needles { needles }
    }

    /// Which identifiers `haystack` carries, and how: plain (any case), URL-encoded, hex (either
    /// case), or inside any run of base64 or base64url characters.
    pub fn find(&self, haystack: &[u8]) -> Vec<Carried> {
        let lower = haystack.to_ascii_lowercase();
        let decoded = base64_runs(haystack);
        let mut found = Vec::new();
        for (kind, value) in &self.needles {
            let value_lower = value.to_ascii_lowercase();
            let mut add = |encoding| {
                let carried = Carried {
                    kind: *kind,
                    encoding,
                };
                if !found.contains(&carried) {
                    found.push(carried);
                }
            };
            if contains(&lower, value_lower.as_bytes()) {
                add(Encoding::Plain);
            }
            let url = url_encode(value).to_ascii_lowercase();
            if url != value_lower && contains(&lower, url.as_bytes()) {
                add(Encoding::UrlEncoded);
            }
            if contains(&lower, hex_lower(value.as_bytes()).as_bytes()) {
                add(Encoding::Hex);
            }
            if decoded.iter().any(|d| contains(d, value.as_bytes())) {
                add(Encoding::Base64);
            }
        }
        found.sort();
        found
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes everything but unreserved characters (RFC 3986), as forms and query strings do.
pub fn url_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decoded bytes of every run of base64 (or base64url) characters long enough to hide an
/// identifier.
fn base64_runs(haystack: &[u8]) -> Vec<Vec<u8>> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    let mut out = Vec::new();
    for run in haystack.split(|b| !is_b64(*b)) {
        if run.len() < BASE64_RUN_CHARS_MIN {
            continue;
        }
        let normal: Vec<u8> = run
            .iter()
            .map(|b| match b {
                b'-' => b'+',
                b'_' => b'/',
                other => *other,
            })
            .collect();
        // A run of n characters holds floor(n * 6 / 8) bytes; drop the partial last group.
        let usable = normal.len() - normal.len() % 4;
        let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
        for len in [normal.len(), usable] {
            if let Some(slice) = normal.get(..len)
                && let Ok(bytes) = engine.decode(slice)
            {
                out.push(bytes);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needles() -> Needles {
        Needles {
            needles: vec![
                (IdentifierKind::Imei, "356938035643809".into()),
                (IdentifierKind::Carrier, "Vodafone IN".into()),
            ],
        }
    }

    #[test]
    fn journal_requests_max_is_enforced() {
        let journal = Journal::new();
        let record = RequestRecord {
            method: "GET".into(),
            url: "https://x/".into(),
            host: "x".into(),
            connect: "x:443".into(),
            tls: true,
            status: None,
            elapsed_ms: None,
            identifiers: Vec::new(),
            sent: Vec::new(),
        };
        for _ in 0..=JOURNAL_REQUESTS_MAX {
            journal.push(record.clone());
        }
        assert_eq!(journal.len(), JOURNAL_REQUESTS_MAX);
        assert_eq!(journal.dropped(), 1);
    }

    #[test]
    fn finds_each_encoding() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("356938035643809");
        let cases: [(&str, Vec<Encoding>); 5] = [
            ("imei=356938035643809", vec![Encoding::Plain]),
            (
                "{\"d\":\"3335363933383033353634333830390a\"}",
                vec![Encoding::Hex],
            ),
            (&format!("x={b64}&y=1"), vec![Encoding::Base64]),
            ("carrier=Vodafone%20IN", vec![Encoding::UrlEncoded]),
            ("nothing here", vec![]),
        ];
        for (haystack, expected) in cases {
            let found: Vec<Encoding> = needles()
                .find(haystack.as_bytes())
                .into_iter()
                .map(|c| c.encoding)
                .collect();
            assert_eq!(found, expected, "{haystack}");
        }
    }
}
