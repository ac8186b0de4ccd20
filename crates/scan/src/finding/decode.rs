//! Undoing the layers around an identifier: compression, JSON escapes, URL and form encoding,
//! and base64 blobs of compressed data, searched again at every level up to
//! [`DECODE_DEPTH_MAX`]. Every finding carries the layers it was found under, outermost first.

use std::io::Read;

use base64::Engine as _;

use crate::finding::matcher::{Hit, Match, Matcher};

/// How many layers deep we decode (compression inside base64 inside compression ...).
pub const DECODE_DEPTH_MAX: usize = 4;
/// Most bytes one decompression may produce; a larger output is cut here with a warning, so a
/// decompression bomb costs at most this much memory.
pub const DECODED_BYTES_MAX: usize = 64 << 20;
/// Longest base64 blob we decode.
pub const BASE64_BLOB_BYTES_MAX: usize = 16 << 20;
/// Most matches we take from one buffer; past this the buffer is noise, not traffic.
pub const MATCHES_PER_BUFFER_MAX: usize = 1 << 16;
/// Bytes of context shown either side of a match in the evidence.
pub const EVIDENCE_CONTEXT_BYTES: usize = 24;

/// Where one identifier was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub target: usize,
    /// Layers outermost first, ending with the identifier's own encoding.
    pub chain: Vec<String>,
    pub encoding: String,
    /// Offset in the outermost buffer: of the match itself, or of the blob that contained it.
    pub offset: usize,
    /// Context around the match, with the identifier masked.
    pub evidence: String,
}

/// What the searcher reports to.
pub trait Sink {
    fn found(&mut self, found: Found);
    fn warn(&mut self, message: String);
}

/// Searches buffers with the matcher and decodes what can be decoded.
pub struct Searcher<'m> {
    matcher: &'m Matcher,
    scratch: Vec<Vec<Match>>,
}

impl<'m> Searcher<'m> {
    pub fn new(matcher: &'m Matcher) -> Searcher<'m> {
        Searcher {
            matcher,
            scratch: vec![Vec::new(); DECODE_DEPTH_MAX + 1],
        }
    }

    /// Searches `data` found under `layers` (e.g. `["http-body"]`); `offset` is where `data`
    /// starts in its stream.
    pub fn search(&mut self, data: &[u8], layers: &[&str], offset: usize, sink: &mut dyn Sink) {
        // Borrowed: owned names only for a match (a phone's short flows searched many small
        // buffers, each paying for a vector of strings).
        let mut chain: Vec<&str> = layers.to_vec();
        self.search_at(data, &mut chain, 0, Some(offset), 0, sink);
    }

    /// `origin`: when `Some`, `data` is the outermost buffer and matches report their own
    /// offset plus it; when `None`, matches report `blob_offset`, where the blob started.
    fn search_at(
        &mut self,
        data: &[u8],
        chain: &mut Vec<&str>,
        depth: usize,
        origin: Option<usize>,
        blob_offset: usize,
        sink: &mut dyn Sink,
    ) {
        if depth >= DECODE_DEPTH_MAX
            && let Some(coding) = compression_magic(data)
        {
            sink.warn(too_deep(coding, chain));
        }
        if depth < DECODE_DEPTH_MAX {
            if let Some(coding) = compression_magic(data) {
                let (decoded, problem) = decompress(coding, data);
                if let Some(problem) = problem.filter(|_| !decoded.is_empty()) {
                    sink.warn(format!(
                        "{coding} data under {}: {problem}",
                        chain.join("/")
                    ));
                }
                if !decoded.is_empty() {
                    chain.push(coding);
                    let at = origin.unwrap_or(blob_offset);
                    self.search_at(&decoded, chain, depth + 1, None, at, sink);
                    chain.pop();
                    return;
                }
            }
            if has_json_escape(data) {
                let unescaped = json_unescape(data);
                chain.push("json");
                let at = origin.unwrap_or(blob_offset);
                self.search_at(&unescaped, chain, depth + 1, None, at, sink);
                chain.pop();
                return;
            }
        }
        let mut matches = std::mem::take(&mut self.scratch[depth]);
        matches.clear();
        self.matcher.find_all(data, &mut matches);
        if matches.len() > MATCHES_PER_BUFFER_MAX {
            sink.warn(format!(
                "{} matches under {}, only the first {MATCHES_PER_BUFFER_MAX} are kept",
                matches.len(),
                chain.join("/")
            ));
            matches.truncate(MATCHES_PER_BUFFER_MAX);
        }
        // Expand to (target, match) and drop matches inside a longer match of the same target:
        // "+8613800138000" is one finding, not three (e164, e164 without "+", national digits).
        let mut found: Vec<(usize, &str, Match)> = Vec::new();
        let mut blobs: Vec<usize> = Vec::new();
        let mut wrappers: Vec<usize> = Vec::new();
        for m in &matches {
            for hit in self.matcher.hits(m.entry) {
                match hit {
                    Hit::Identifier { target, encoding } => found.push((*target, encoding, *m)),
                    Hit::CompressedBase64 => blobs.push(m.start),
                    Hit::Base64Wrapper { skip } => {
                        // The blob's 4-character groups start where this pattern's group did.
                        let group = m.start.checked_sub(usize::from(*skip));
                        wrappers.extend(group.map(|g| base64_blob_start(data, m.start, g)));
                    }
                }
            }
        }
        found.sort_by(|a, b| (a.0, a.2.start, b.2.end).cmp(&(b.0, b.2.start, a.2.end)));
        let mut ranges: Vec<(usize, usize)> =
            found.iter().map(|(_, _, m)| (m.start, m.end)).collect();
        ranges.sort_unstable();
        // Once per buffer, not once per finding: per finding it made a buffer of n matches cost
        // n² (issue 11: a 648 KB capture took 35 s).
        let longest = longest_range(&ranges);
        let mut last: Option<(usize, usize)> = None;
        for (target, encoding, m) in found {
            if let Some((t, end)) = last
                && t == target
                && m.end <= end
            {
                continue;
            }
            last = Some((target, m.end));
            let mut full: Vec<String> = chain.iter().map(|s| (*s).to_owned()).collect();
            full.push(encoding.to_owned());
            sink.found(Found {
                target,
                chain: full,
                encoding: encoding.to_owned(),
                offset: origin.map_or(blob_offset, |o| o + m.start),
                evidence: evidence_among(data, m.start, m.end, &ranges, longest),
            });
        }
        if depth >= DECODE_DEPTH_MAX {
            if !wrappers.is_empty() {
                sink.warn(too_deep("base64", chain));
            } else if let Some(coding) = blobs.iter().find_map(|&start| {
                let head = &data[start..data.len().min(start + 8)];
                base64_decode(head).and_then(|d| compression_magic(&d))
            }) {
                sink.warn(too_deep(coding, chain));
            }
        }
        if depth < DECODE_DEPTH_MAX {
            // Blobs holding an identifier base64-encoded once more: decoded whatever they hold.
            wrappers.sort_unstable();
            wrappers.dedup();
            let mut done_until = 0;
            for start in wrappers {
                if start < done_until {
                    continue;
                }
                let end = base64_run_end(data, start);
                done_until = end;
                let Some(decoded) = base64_decode(&data[start..end]) else {
                    continue;
                };
                chain.push("base64");
                let at = origin.map_or(blob_offset, |o| o + start);
                self.search_at(&decoded, chain, depth + 1, None, at, sink);
                chain.pop();
            }
            blobs.sort_unstable();
            let mut done_until = 0;
            for start in blobs {
                if start < done_until {
                    continue;
                }
                let end = base64_run_end(data, start);
                done_until = end;
                let Some(decoded) = base64_decode(&data[start..end]) else {
                    continue;
                };
                if compression_magic(&decoded).is_none() {
                    continue;
                }
                chain.push("base64");
                let at = origin.map_or(blob_offset, |o| o + start);
                self.search_at(&decoded, chain, depth + 1, None, at, sink);
                chain.pop();
            }
        }
        self.scratch[depth] = matches;
    }
}

fn too_deep(what: &str, chain: &[&str]) -> String {
    format!(
        "{what} data under {} is nested deeper than {DECODE_DEPTH_MAX} layers; it is not decoded further",
        chain.join("/")
    )
}

/// Where the base64 blob holding a match at `at` starts: the first byte of the run of base64
/// characters before `at` (at most [`BASE64_BLOB_BYTES_MAX`] back) that is a group boundary,
/// given that `group` is one.
fn base64_blob_start(data: &[u8], at: usize, group: usize) -> usize {
    let floor = at.saturating_sub(BASE64_BLOB_BYTES_MAX);
    let mut start = at;
    while start > floor && is_base64_byte(data[start - 1]) {
        start -= 1;
    }
    // Move forward to the first group boundary: 0 to 3 characters, never past the match.
    (start + (group + 4 - start % 4) % 4).min(at)
}

/// The compression format `data` starts with, by its magic bytes.
pub fn compression_magic(data: &[u8]) -> Option<&'static str> {
    match data {
        [0x1f, 0x8b, 0x08, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        // A zlib header: deflate (method 8), 32K window, and the check bits right.
        [cmf @ 0x78, flg, _, ..] if (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0 => {
            Some("deflate")
        }
        _ => None,
    }
}

/// Decompresses `data` encoded with an HTTP content coding (`gzip`, `x-gzip`, `deflate`, `br`,
/// `zstd`). Returns what could be decoded and, if the data was cut, corrupt or larger than
/// [`DECODED_BYTES_MAX`], what went wrong. An unknown coding returns nothing and says so.
pub fn decompress(coding: &str, data: &[u8]) -> (Vec<u8>, Option<String>) {
    let limit = DECODED_BYTES_MAX as u64 + 1;
    // Compressed text usually grows four to ten times; start there instead of doubling up to it.
    let mut out = Vec::with_capacity(data.len().saturating_mul(8).clamp(4096, 1 << 20));
    let result = match coding {
        "gzip" | "x-gzip" => gunzip(data, &mut out, limit as usize),
        "deflate" => {
            // Servers send both zlib-wrapped (as RFC 9110 says) and raw deflate. The zlib
            // header is two bytes; its Adler-32 trailer is not checked (see `inflate_raw`).
            match data {
                [cmf, flg, rest @ ..]
                    if cmf & 0x0f == 8
                        && flg & 0x20 == 0
                        && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0 =>
                {
                    inflate_raw(rest, &mut out, limit as usize).map(|_| ())
                }
                _ => inflate_raw(data, &mut out, limit as usize).map(|_| ()),
            }
        }
        "br" => brotli::Decompressor::new(data, 4096)
            .take(limit)
            .read_to_end(&mut out)
            .map(|_| ()),
        "zstd" => match zstd::stream::read::Decoder::with_buffer(data) {
            Ok(decoder) => decoder.take(limit).read_to_end(&mut out).map(|_| ()),
            Err(e) => Err(e),
        },
        other => {
            return (
                Vec::new(),
                Some(format!("unknown content coding {other:?}")),
            );
        }
    };
    let mut problem = result
        .err()
        .map(|e| format!("cannot be fully decoded ({e})"));
    if out.len() > DECODED_BYTES_MAX {
        out.truncate(DECODED_BYTES_MAX);
        problem = Some(format!(
            "decodes to more than {DECODED_BYTES_MAX} bytes; the rest is not searched"
        ));
    }
    (out, problem)
}

/// Inflates the raw deflate stream at the start of `data` into `out` until it ends or `out`
/// holds `limit` bytes: the input bytes it took. The checksums of the gzip and zlib wrappers are
/// not verified: we search what we can decode, and checking cost a tenth of inflating. Writing
/// straight into `out`'s spare capacity also saves zeroing it first, as `read_to_end` does.
fn inflate_raw(data: &[u8], out: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    use flate2::Decompress;
    thread_local! {
        // One inflater per thread, reset for each body: setting up a new one (allocating and
        // zeroing its window) cost as much as inflating a phone's small gzip bodies.
        static INFLATER: std::cell::RefCell<Decompress> = std::cell::RefCell::new(Decompress::new(false));
    }
    INFLATER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut inflater) => {
            inflater.reset(false);
            inflate_with(&mut inflater, data, out, limit)
        }
        // Not reentrant today; a fresh one if that ever changes.
        Err(_) => inflate_with(&mut Decompress::new(false), data, out, limit),
    })
}

fn inflate_with(
    inflater: &mut flate2::Decompress,
    data: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    use flate2::{FlushDecompress, Status};
    loop {
        let room = limit.saturating_sub(out.len());
        if room == 0 {
            return Ok(data.len());
        }
        if out.len() == out.capacity() {
            out.reserve_exact(out.capacity().max(4096).min(room));
        }
        let (read, written) = (inflater.total_in(), inflater.total_out());
        let input = data.get(read as usize..).unwrap_or_default();
        let status = inflater
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if status == Status::StreamEnd {
            return Ok(inflater.total_in() as usize);
        }
        if inflater.total_in() == read && inflater.total_out() == written {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the compressed data ends early",
            ));
        }
    }
}

/// The length of the gzip member header at the start of `data`; `None` when there is none.
fn gzip_header_bytes(data: &[u8]) -> Option<usize> {
    let [0x1f, 0x8b, 8, flags, ..] = *data else {
        return None;
    };
    let mut at = 10_usize;
    if flags & 0x04 != 0 {
        let extra = data.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_le_bytes([extra[0], extra[1]]));
    }
    for field in [0x08, 0x10] {
        // File name, comment: zero-terminated.
        if flags & field != 0 {
            at += memchr::memchr(0, data.get(at..)?)? + 1;
        }
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    (at <= data.len()).then_some(at)
}

/// Decompresses gzip data of one or more members.
fn gunzip(data: &[u8], out: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
    let mut at = 0;
    loop {
        let Some(header) = gzip_header_bytes(&data[at..]) else {
            if at == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no gzip header",
                ));
            }
            // Whatever follows the last member (padding, garbage) is not gzip.
            return Ok(());
        };
        at += header;
        at += inflate_raw(&data[at..], out, limit)?;
        // The trailer: CRC-32 and length, 8 bytes.
        at = at.saturating_add(8);
        if at >= data.len() || out.len() >= limit {
            return Ok(());
        }
    }
}

fn has_json_escape(data: &[u8]) -> bool {
    // One memchr pass for the rare backslash beats two memmem passes for the pairs.
    memchr::memchr_iter(b'\\', data).any(|i| matches!(data.get(i + 1), Some(b'u' | b'/')))
}

/// Undoes JSON string escapes (`\uXXXX` with surrogate pairs, `\/`, `\n` ...) anywhere in
/// `data`; anything that is not a valid escape is kept as it is.
pub fn json_unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if b != b'\\' || i + 1 >= data.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let simple = match data[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if data[i + 1] == b'u'
            && let Some(unit) = hex4(data.get(i + 2..i + 6))
        {
            let mut consumed = 6;
            let mut code = u32::from(unit);
            if (0xd800..0xdc00).contains(&unit)
                && data.get(i + 6..i + 8) == Some(b"\\u")
                && let Some(low) = hex4(data.get(i + 8..i + 12))
                && (0xdc00..0xe000).contains(&low)
            {
                code = 0x10000 + ((code - 0xd800) << 10) + (u32::from(low) - 0xdc00);
                consumed = 12;
            }
            let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0_u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += consumed;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex4(digits: Option<&[u8]>) -> Option<u16> {
    let digits = std::str::from_utf8(digits?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

/// Undoes percent-encoding, and `+` for space when `form` is set. `None` when there was nothing
/// to undo.
pub fn url_decode(data: &[u8], form: bool) -> Option<Vec<u8>> {
    let next_special = |from: usize| {
        let rest = &data[from..];
        let found = if form {
            memchr::memchr2(b'%', b'+', rest)
        } else {
            memchr::memchr(b'%', rest)
        };
        found.map(|at| from + at)
    };
    let mut at = next_special(0)?;
    let mut out = Vec::with_capacity(data.len());
    let mut copied = 0;
    // Runs between escapes are copied whole: form bodies are mostly plain text.
    loop {
        out.extend_from_slice(&data[copied..at]);
        if data[at] == b'+' {
            out.push(b' ');
            copied = at + 1;
        } else {
            match (
                data.get(at + 1).and_then(|&h| hex_value(h)),
                data.get(at + 2).and_then(|&l| hex_value(l)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    copied = at + 3;
                }
                _ => {
                    out.push(b'%');
                    copied = at + 1;
                }
            }
        }
        match next_special(copied) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(&data[copied..]);
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

fn base64_run_end(data: &[u8], start: usize) -> usize {
    let limit = start.saturating_add(BASE64_BLOB_BYTES_MAX).min(data.len());
    let mut end = start;
    while end < limit && is_base64_byte(data[end]) {
        end += 1;
    }
    end
}

/// Decodes base64 or base64url, padded or not; `None` when it is neither.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mut normal: Vec<u8> = text
        .iter()
        .take_while(|&&b| b != b'=')
        .map(|&b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .collect();
    if normal.len() % 4 == 1 {
        normal.pop();
    }
    engine.decode(&normal).ok()
}

/// `data[start..end]` with `EVIDENCE_CONTEXT_BYTES` either side, anything unprintable shown as
/// `.`. The match is masked but for its two first and last characters; every other identifier
/// in `others` (sorted by start) that reaches into the context is masked whole, so that evidence
/// never shows one.
pub fn evidence(data: &[u8], start: usize, end: usize, others: &[(usize, usize)]) -> String {
    evidence_among(data, start, end, others, longest_range(others))
}

/// The length of the longest of `ranges`.
fn longest_range(ranges: &[(usize, usize)]) -> usize {
    ranges
        .iter()
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(0)
}

/// [`evidence`] with the longest of `others` computed once by the caller, who shows many
/// matches of one buffer.
fn evidence_among(
    data: &[u8],
    start: usize,
    end: usize,
    others: &[(usize, usize)],
    longest: usize,
) -> String {
    let end = end.min(data.len());
    let start = start.min(end);
    let from = start.saturating_sub(EVIDENCE_CONTEXT_BYTES);
    let to = end.saturating_add(EVIDENCE_CONTEXT_BYTES).min(data.len());
    let mut hidden = vec![false; to - from];
    // `others` is sorted by start: only ranges starting before `to` and at most the longest
    // range's length before `from` can reach into the window.
    let first = others.partition_point(|&(a, _)| a < from.saturating_sub(longest));
    for &(a, b) in others[first..].iter().take_while(|&&(a, _)| a < to) {
        for i in a.max(from)..b.min(to) {
            hidden[i - from] = true;
        }
    }
    hide_secret_values(data, from, to, &mut hidden);
    let own = mask(&data[start..end]);
    let mut out = String::with_capacity(to - from);
    for i in from..to {
        if i == start {
            out.push_str(&own);
        }
        if (start..end).contains(&i) {
            continue;
        }
        let b = data[i];
        out.push(if hidden[i - from] {
            '*'
        } else if b.is_ascii_graphic() || b == b' ' {
            char::from(b)
        } else {
            '.'
        });
    }
    if start == to {
        out.push_str(&own);
    }
    out
}

/// Field names whose values evidence never shows (lower case): credentials sit right next to
/// identifiers in sign-up and sign-in bodies, and a report is shared more widely than a capture.
const SECRET_FIELDS: [&[u8]; 6] = [
    b"password",
    b"passwd",
    b"secret",
    b"token",
    b"authorization",
    b"api_key",
];
/// How far before the evidence window a secret field's name is looked for, so that a value that
/// starts inside the window is hidden even when its name is just outside.
const SECRET_LOOKBACK_BYTES: usize = 32;

/// Marks in `hidden` (the window `from..to`) the value of every secret field: after the name,
/// the rest of the key and its separators (quotes, spaces, `:` or `=`), up to the next `"`, `&`,
/// `,`, `;`, `}` or line end.
fn hide_secret_values(data: &[u8], from: usize, to: usize, hidden: &mut [bool]) {
    let look_from = from.saturating_sub(SECRET_LOOKBACK_BYTES);
    let lower = data[look_from..to].to_ascii_lowercase();
    for name in SECRET_FIELDS {
        for at in memchr::memmem::find_iter(&lower, name) {
            let mut i = look_from + at + name.len();
            while i < to && (data[i].is_ascii_alphanumeric() || matches!(data[i], b'_' | b'-')) {
                i += 1;
            }
            if i >= to || !matches!(data[i], b'"' | b'\'' | b' ' | b'\t' | b':' | b'=') {
                continue;
            }
            while i < to && matches!(data[i], b'"' | b'\'' | b' ' | b'\t' | b':' | b'=') {
                i += 1;
            }
            while i < to && !matches!(data[i], b'"' | b'&' | b',' | b';' | b'}' | b'\r' | b'\n') {
                if i >= from {
                    hidden[i - from] = true;
                }
                i += 1;
            }
        }
    }
}

/// An identifier as it may be shown: its first two and last two characters, stars between.
pub fn mask(value: &[u8]) -> String {
    let n = value.len();
    let mut out = String::with_capacity(n);
    for (i, &b) in value.iter().enumerate() {
        let keep = n >= 8 && (i < 2 || i + 2 >= n) && b.is_ascii_graphic();
        out.push(if keep { char::from(b) } else { '*' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        let table: [(&[u8], &[u8]); 5] = [
            (br#"\u0033\u0035"#, b"35"),
            (br#"a\/b"#, b"a/b"),
            (br#"\ud83d\ude00"#, "\u{1f600}".as_bytes()),
            (br#"\uzzzz"#, br#"\uzzzz"#),
            (b"\\", b"\\"),
        ];
        for (input, expected) in table {
            assert_eq!(json_unescape(input), expected, "{input:?}");
        }
    }

    #[test]
    fn url_and_form_decoding() {
        assert_eq!(url_decode(b"a%40b.com", false).unwrap(), b"a@b.com");
        assert_eq!(url_decode(b"hi+there%2", true).unwrap(), b"hi there%2");
        assert_eq!(url_decode(b"plain", true), None);
        assert_eq!(url_decode(b"a+b", false), None);
        // (input, decoded as a form, decoded as a URL)
        let table: [(&[u8], &[u8], &[u8]); 8] = [
            (b"%41", b"A", b"A"),
            (b"x%4a%4Ay", b"xJJy", b"xJJy"),
            (b"%%41", b"%A", b"%A"),
            (b"%2g%", b"%2g%", b"%2g%"),
            (b"%+1", b"% 1", b"%+1"),
            (b"+%2B+", b" + ", b"+++"),
            (b"imei=35%20%31", b"imei=35 1", b"imei=35 1"),
            (b"%e2%82%ac", "\u{20ac}".as_bytes(), "\u{20ac}".as_bytes()),
        ];
        for (input, form, url) in table {
            assert_eq!(
                url_decode(input, true).unwrap(),
                form,
                "{input:?} as a form"
            );
            assert_eq!(url_decode(input, false).unwrap(), url, "{input:?} as a URL");
        }
    }

    #[test]
    fn decompressed_bytes_max_cuts_a_bomb() {
        let zeros = vec![0_u8; DECODED_BYTES_MAX + 4096];
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        let bomb = encoder.finish().unwrap();
        let (out, problem) = decompress("gzip", &bomb);
        assert_eq!(out.len(), DECODED_BYTES_MAX);
        assert!(problem.unwrap().contains("more than"));
    }

    #[test]
    fn gzip_and_deflate_as_servers_send_them() {
        use std::io::Write as _;
        let text = b"imei=356938035643809&more=text".repeat(50);
        let gzip = |name: Option<&str>| {
            let mut builder = flate2::GzBuilder::new();
            if let Some(name) = name {
                builder = builder.filename(name).comment("c").extra(vec![1, 2, 3]);
            }
            let mut e = builder.write(Vec::new(), flate2::Compression::default());
            e.write_all(&text).unwrap();
            e.finish().unwrap()
        };
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&text).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).unwrap();
        let raw = raw.finish().unwrap();
        let mut two = gzip(None);
        two.extend_from_slice(&gzip(Some("f.txt")));
        let table: [(&str, Vec<u8>, usize, bool); 6] = [
            ("gzip", gzip(None), 1, false),
            ("gzip", gzip(Some("name.json")), 1, false),
            ("x-gzip", two, 2, false),
            ("deflate", zlib.clone(), 1, false),
            ("deflate", raw, 1, false),
            // Cut short: what was decoded, and a problem.
            ("deflate", zlib[..zlib.len() / 2].to_vec(), 0, true),
        ];
        for (coding, data, copies, cut) in table {
            let (out, problem) = decompress(coding, &data);
            assert_eq!(problem.is_some(), cut, "{coding}: {problem:?}");
            if cut {
                assert!(text.starts_with(&out) && !out.is_empty(), "{coding}");
            } else {
                assert_eq!(out, text.repeat(copies), "{coding}");
            }
        }
        let (out, problem) = decompress("gzip", b"\x1f\x8b\x08garbage");
        assert!(out.is_empty());
        assert!(problem.unwrap().contains("cannot be fully decoded"));
    }

    #[test]
    fn evidence_masks_every_identifier_in_its_context() {
        let data = b"imei=356938035643809&carrier=Vodafone";
        let shown = evidence(data, 29, 37, &[(5, 20), (29, 37)]);
        assert_eq!(shown, "***************&carrier=Vo****ne");
    }

    #[test]
    fn evidence_never_shows_a_credential_beside_an_identifier() {
        let data =
            br#"{"phone":"+919876543210","password":"correct horse battery staple","device":"x"}"#;
        let shown = evidence(data, 10, 23, &[(10, 23)]);
        assert!(!shown.contains("correct"), "{shown}");
        assert!(shown.contains(r#""password":"****"#), "{shown}");
        // The header's name lies before the window; its value reaches into it.
        let data = b"Authorization: Bearer abc123def\r\nX-Imei: 356938035643809\r\n";
        let shown = evidence(data, 41, 56, &[(41, 56)]);
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(shown.contains("X-Imei: 35"), "{shown}");
        // Other fields stay readable; a field named like a secret (access_token) is hidden.
        let data = b"carrier=Vodafone&imei=356938035643809";
        let shown = evidence(data, 22, 37, &[(22, 37)]);
        assert!(shown.contains("carrier=Vodafone"), "{shown}");
        let data = b"access_token=s3cr3t&imei=356938035643809";
        let shown = evidence(data, 25, 40, &[(25, 40)]);
        assert!(shown.contains("token=******&"), "{shown}");
    }

    #[test]
    fn mask_keeps_only_the_ends() {
        assert_eq!(mask(b"353456789012345"), "35***********45");
        assert_eq!(mask(b"short"), "*****");
    }
}
