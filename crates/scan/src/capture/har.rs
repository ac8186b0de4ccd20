//! HAR 1.2 (HTTP Archive) files, as browsers and proxies export them.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use serde::Deserialize;

/// Largest HAR file we read into memory.
pub const HAR_BYTES_MAX: u64 = 1 << 30;
/// Most entries one HAR file may have.
pub const HAR_ENTRIES_MAX: usize = 1_000_000;

#[derive(Deserialize)]
struct Har {
    log: Log,
}

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    started_date_time: String,
    request: Request,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default, rename = "serverIPAddress")]
    server_ip_address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    url: String,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostData {
    #[serde(default)]
    mime_type: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    #[serde(default)]
    mime_type: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    encoding: Option<String>,
}

/// One side of an exchange, ready to search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    pub head: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One request and its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub url: String,
    pub host: Option<String>,
    pub port: u16,
    pub server_ip: IpAddr,
    /// `http:` rather than `https:`.
    pub cleartext: bool,
    pub time_us: i64,
    pub request: Part,
    pub response: Part,
}

/// Parses a HAR document: its first `entries_max` exchanges (normally [`HAR_ENTRIES_MAX`]) and
/// how many entries past them were left out.
///
/// # Errors
/// A message when the text is not a HAR document.
pub fn parse(text: &[u8], entries_max: usize) -> Result<(Vec<Exchange>, usize), String> {
    // Fiddler and some Windows tools start the file with a UTF-8 byte-order mark, which JSON
    // does not allow.
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let har: Har = serde_json::from_slice(text).map_err(|e| format!("not a har file: {e}"))?;
    let dropped = har.log.entries.len().saturating_sub(entries_max);
    let exchanges = har
        .log
        .entries
        .into_iter()
        .take(entries_max)
        .map(exchange)
        .collect();
    Ok((exchanges, dropped))
}

fn head(headers: &[Header]) -> String {
    headers
        .iter()
        .map(|h| format!("{}: {}\r\n", h.name, h.value))
        .collect()
}

fn exchange(entry: Entry) -> Exchange {
    let url = entry.request.url;
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url.as_str()));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.trim_matches(['[', ']']), p.parse().ok())
        }
        _ => (authority, None),
    };
    let cleartext = scheme.eq_ignore_ascii_case("http");
    let port = port.unwrap_or(if cleartext { 80 } else { 443 });
    let server_ip = entry
        .server_ip_address
        .as_deref()
        .map(|s| s.trim_matches(['[', ']']))
        .and_then(|s| s.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let request = Part {
        head: head(&entry.request.headers),
        content_type: entry
            .request
            .post_data
            .as_ref()
            .map(|p| p.mime_type.to_ascii_lowercase())
            .unwrap_or_default(),
        body: entry
            .request
            .post_data
            .map(|p| p.text.into_bytes())
            .unwrap_or_default(),
    };
    let response = entry.response.map_or_else(Part::default, |r| {
        let (content_type, body) = match r.content {
            Some(c) => {
                let body = if c.encoding.as_deref() == Some("base64") {
                    base64::engine::general_purpose::STANDARD
                        .decode(c.text.as_bytes())
                        .unwrap_or_else(|_| c.text.into_bytes())
                } else {
                    c.text.into_bytes()
                };
                (c.mime_type.to_ascii_lowercase(), body)
            }
            None => (String::new(), Vec::new()),
        };
        Part {
            head: head(&r.headers),
            content_type,
            body,
        }
    });
    Exchange {
        host: (!host.is_empty()).then(|| host.to_ascii_lowercase()),
        url: url.clone(),
        port,
        server_ip,
        cleartext,
        time_us: crate::report::parse_rfc3339(&entry.started_date_time).unwrap_or(0),
        request,
        response,
    }
}
