//! HPACK (RFC 7541), the header compression of HTTP/2: integers, string literals with Huffman
//! coding, the static table and one decoder's dynamic table.
//!
//! Written here rather than taken from a crate: the `h2` crate's decoder is private to it, and
//! the stand-alone HPACK crates are unmaintained or tied to a server. A scanner also wants
//! what a server does not: it keeps going after a bad block (the table is then out of step and
//! the caller says so) and bounds everything by named limits.
//!
//! ```
//! use sovereign_scan::protocols::hpack::Decoder;
//! // RFC 7541 C.4.1: a request whose :authority is Huffman-coded.
//! let block = [0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0,
//!              0xab, 0x90, 0xf4, 0xff];
//! let mut headers = Vec::new();
//! Decoder::default().decode(&block, &mut headers)?;
//! assert_eq!(headers[3].value, b"www.example.com");
//! # Ok::<(), sovereign_scan::protocols::hpack::HpackError>(())
//! ```

use std::collections::VecDeque;

/// The dynamic table size a decoder starts with (SETTINGS_HEADER_TABLE_SIZE's default).
pub const TABLE_BYTES_DEFAULT: usize = 4096;
/// Largest dynamic table a size update may ask for. Peers announce up to a few 64 KiB; more is
/// a malformed or hostile capture, refused so it cannot hold unbounded memory.
pub const TABLE_BYTES_MAX: usize = 1 << 20;
/// Most header fields one block may decode to.
pub const HEADERS_PER_BLOCK_MAX: usize = 1024;
/// Most bytes (names and values) one block may decode to: indexed fields copy table entries, so
/// a small block can expand to much more than itself.
pub const HEADER_LIST_BYTES_MAX: usize = 1 << 20;

const _: () = assert!(TABLE_BYTES_DEFAULT <= TABLE_BYTES_MAX);

/// Why a header block could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HpackError {
    #[error("header block ends inside a field at byte {0}")]
    Truncated(usize),
    #[error("integer at byte {0} overflows")]
    IntegerOverflow(usize),
    #[error("index {0} is in neither the static nor the dynamic table")]
    BadIndex(usize),
    #[error("huffman string ends with bad padding or holds the end-of-string code")]
    BadHuffman,
    #[error("table size update to {0} bytes is above {TABLE_BYTES_MAX}")]
    TableTooLarge(usize),
    #[error(
        "more than {HEADERS_PER_BLOCK_MAX} fields or {HEADER_LIST_BYTES_MAX} bytes in one block"
    )]
    ListTooLarge,
}

/// One header field, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// One direction's decoder: its dynamic table lives as long as the connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Newest entry first (dynamic index 62 is `table[0]`).
    table: VecDeque<Header>,
    /// RFC 7541 4.1: the sum of name length, value length and 32 for each entry.
    size: usize,
    max_size: usize,
    /// Largest size update seen, for the caller to compare with what SETTINGS allowed.
    pub largest_size_update: usize,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: TABLE_BYTES_DEFAULT,
            largest_size_update: 0,
        }
    }
}

impl Decoder {
    /// The dynamic table's current size in bytes, as RFC 7541 4.1 counts it.
    pub fn table_bytes(&self) -> usize {
        self.size
    }

    /// Decodes one complete header block (HEADERS or PUSH_PROMISE with its CONTINUATIONs)
    /// into `out`, updating the dynamic table.
    ///
    /// # Errors
    /// When the block is malformed; what was decoded before the error is in `out`, and the
    /// dynamic table may now be out of step with the encoder's.
    pub fn decode(&mut self, block: &[u8], out: &mut Vec<Header>) -> Result<(), HpackError> {
        let mut at = 0;
        let mut list_bytes = 0usize;
        while at < block.len() {
            let first = block[at];
            let header = if first & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                self.entry(index)?.clone()
            } else if first & 0xe0 == 0x20 {
                let size = integer(block, &mut at, 5)?;
                if size > TABLE_BYTES_MAX {
                    return Err(HpackError::TableTooLarge(size));
                }
                self.largest_size_update = self.largest_size_update.max(size);
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // 0x40: with incremental indexing (6-bit index); 0x00 and 0x10: without indexing
                // and never indexed (4-bit index).
                let indexing = first & 0x40 != 0;
                let index = integer(block, &mut at, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    string(block, &mut at)?
                } else {
                    self.entry(index)?.name.clone()
                };
                let value = string(block, &mut at)?;
                let header = Header { name, value };
                if indexing {
                    self.insert(header.clone());
                }
                header
            };
            list_bytes += header.name.len() + header.value.len();
            if out.len() >= HEADERS_PER_BLOCK_MAX || list_bytes > HEADER_LIST_BYTES_MAX {
                return Err(HpackError::ListTooLarge);
            }
            out.push(header);
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<&Header, HpackError> {
        if index == 0 {
            return Err(HpackError::BadIndex(0));
        }
        if index <= STATIC_TABLE.len() {
            return Ok(&STATIC[index - 1]);
        }
        self.table
            .get(index - STATIC_TABLE.len() - 1)
            .ok_or(HpackError::BadIndex(index))
    }

    fn insert(&mut self, header: Header) {
        let size = header.name.len() + header.value.len() + 32;
        // RFC 7541 4.4: an entry larger than the table empties it and is not added.
        self.evict(size);
        if size <= self.max_size {
            self.size += size;
            self.table.push_front(header);
        }
    }

    /// Evicts oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some(old) = self.table.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= old.name.len() + old.value.len() + 32;
        }
    }
}

/// RFC 7541 5.1: an integer with an `n`-bit prefix, starting at `block[*at]`.
fn integer(block: &[u8], at: &mut usize, n: u32) -> Result<usize, HpackError> {
    let start = *at;
    let first = *block.get(start).ok_or(HpackError::Truncated(start))?;
    let mask = ((1u16 << n) - 1) as u8;
    let mut value = usize::from(first & mask);
    *at += 1;
    if value < usize::from(mask) {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let byte = *block.get(*at).ok_or(HpackError::Truncated(*at))?;
        *at += 1;
        // Four continuation bytes carry 28 bits: more than any length or index can need.
        if shift > 21 {
            return Err(HpackError::IntegerOverflow(start));
        }
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// RFC 7541 5.2: a string literal, Huffman-coded when its first bit is set.
fn string(block: &[u8], at: &mut usize) -> Result<Vec<u8>, HpackError> {
    let huffman = block.get(*at).is_some_and(|b| b & 0x80 != 0);
    let len = integer(block, at, 7)?;
    let end = at.checked_add(len).ok_or(HpackError::Truncated(*at))?;
    let raw = block.get(*at..end).ok_or(HpackError::Truncated(*at))?;
    *at = end;
    if huffman {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// The code length of each symbol (0-255, then end-of-string) of RFC 7541 Appendix B. The code
/// is canonical (codes of one length are consecutive, in symbol order, and each length's first
/// code follows the previous length's last), so the lengths alone define it.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const CODE_BITS_MAX: usize = 30;
const EOS: u16 = 256;

/// The canonical code's decoding tables: per length, its first code, how many codes it has,
/// and where its symbols start in `symbols` (sorted by length, then value).
struct Canonical {
    first: [u32; CODE_BITS_MAX + 1],
    count: [u32; CODE_BITS_MAX + 1],
    start: [u16; CODE_BITS_MAX + 1],
    symbols: [u16; 257],
}

const CANONICAL: Canonical = {
    let mut count = [0u32; CODE_BITS_MAX + 1];
    let mut i = 0;
    while i < 257 {
        count[CODE_LENGTHS[i] as usize] += 1;
        i += 1;
    }
    let mut first = [0u32; CODE_BITS_MAX + 1];
    let mut start = [0u16; CODE_BITS_MAX + 1];
    let mut code = 0u32;
    let mut index = 0u16;
    let mut len = 1;
    while len <= CODE_BITS_MAX {
        first[len] = code;
        start[len] = index;
        code = (code + count[len]) << 1;
        index += count[len] as u16;
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = start;
    let mut s = 0;
    while s < 257 {
        let l = CODE_LENGTHS[s] as usize;
        symbols[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    Canonical {
        first,
        count,
        start,
        symbols,
    }
};

/// Decodes a Huffman-coded string (RFC 7541 5.2): bit by bit through the canonical code; the
/// padding must be fewer than 8 one-bits (a prefix of the end-of-string code). QPACK (HTTP/3)
/// uses the same code.
///
/// # Errors
/// [`HpackError::BadHuffman`] for bad padding or the end-of-string code inside the string.
pub fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, HpackError> {
    let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
    let mut code = 0u32;
    let mut len = 0usize;
    let mut ones = true;
    for byte in raw {
        for bit in (0..8).rev() {
            let b = u32::from(byte >> bit & 1);
            code = code << 1 | b;
            len += 1;
            ones &= b == 1;
            let offset = code.wrapping_sub(CANONICAL.first[len]);
            if offset < CANONICAL.count[len] {
                let symbol = CANONICAL.symbols[usize::from(CANONICAL.start[len]) + offset as usize];
                if symbol == EOS {
                    return Err(HpackError::BadHuffman);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
                ones = true;
            } else if len >= CODE_BITS_MAX {
                return Err(HpackError::BadHuffman);
            }
        }
    }
    if len > 7 || !ones {
        return Err(HpackError::BadHuffman);
    }
    Ok(out)
}

/// RFC 7541 Appendix A.
/// Huffman-codes a string (RFC 7541 5.2) with the canonical code rebuilt from `CODE_LENGTHS`:
/// for captures made up by the benchmark and tests, and the round-trip test of the decoder.
pub fn huffman_encode(text: &[u8]) -> Vec<u8> {
    let mut bits: u64 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for &b in text {
        let len = CODE_LENGTHS[usize::from(b)] as usize;
        let rank = CANONICAL.symbols[usize::from(CANONICAL.start[len])..]
            .iter()
            .position(|&s| s == u16::from(b))
            .unwrap_or(0);
        let code = CANONICAL.first[len] + rank as u32;
        bits = bits << len | u64::from(code);
        n += len;
        while n >= 8 {
            out.push((bits >> (n - 8)) as u8);
            n -= 8;
        }
    }
    if n > 0 {
        out.push(((bits << (8 - n)) as u8) | ((1u8 << (8 - n)) - 1));
    }
    out
}

const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

static STATIC: std::sync::LazyLock<Vec<Header>> = std::sync::LazyLock::new(|| {
    STATIC_TABLE
        .iter()
        .map(|(n, v)| Header {
            name: n.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
        })
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pairs(headers: &[Header]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.name).into_owned(),
                    String::from_utf8_lossy(&h.value).into_owned(),
                )
            })
            .collect()
    }

    fn decode_all(decoder: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        decoder.decode(&hex(block), &mut out).unwrap();
        pairs(&out)
    }

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn rfc7541_c1_integers() {
        // C.1.1 10 in a 5-bit prefix, C.1.2 1337 in a 5-bit prefix, C.1.3 42 at an octet boundary.
        let mut at = 0;
        assert_eq!(integer(&[0x0a], &mut at, 5), Ok(10));
        at = 0;
        assert_eq!(integer(&[0x1f, 0x9a, 0x0a], &mut at, 5), Ok(1337));
        assert_eq!(at, 3);
        at = 0;
        assert_eq!(integer(&[0x2a], &mut at, 8), Ok(42));
        at = 0;
        assert_eq!(
            integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x0f], &mut at, 5),
            Err(HpackError::IntegerOverflow(0))
        );
    }

    #[test]
    fn rfc7541_c2_literals() {
        let mut d = Decoder::default();
        // C.2.1 literal with indexing.
        let h = decode_all(
            &mut d,
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        );
        assert_eq!(h, p(&[("custom-key", "custom-header")]));
        assert_eq!(d.table_bytes(), 55);
        // C.2.2 literal without indexing.
        let mut d = Decoder::default();
        let h = decode_all(&mut d, "040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(h, p(&[(":path", "/sample/path")]));
        assert_eq!(d.table_bytes(), 0);
        // C.2.3 never indexed.
        let h = decode_all(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(h, p(&[("password", "secret")]));
        assert_eq!(d.table_bytes(), 0);
        // C.2.4 indexed.
        assert_eq!(decode_all(&mut d, "82"), p(&[(":method", "GET")]));
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        let mut d = Decoder::default();
        let first = decode_all(&mut d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        assert_eq!(
            first,
            p(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(d.table_bytes(), 57);
        let second = decode_all(&mut d, "8286 84be 5808 6e6f 2d63 6163 6865");
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
        assert_eq!(d.table_bytes(), 110);
        let third = decode_all(
            &mut d,
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        );
        assert_eq!(third[1], (":scheme".into(), "https".into()));
        assert_eq!(third[2], (":path".into(), "/index.html".into()));
        assert_eq!(third[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(third[4], ("custom-key".into(), "custom-value".into()));
        assert_eq!(d.table_bytes(), 164);
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::default();
        let first = decode_all(&mut d, "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        assert_eq!(first[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(d.table_bytes(), 57);
        let second = decode_all(&mut d, "8286 84be 5886 a8eb 1064 9cbf");
        assert_eq!(second[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(second[4], ("cache-control".into(), "no-cache".into()));
        let third = decode_all(
            &mut d,
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        );
        assert_eq!(third[4], ("custom-key".into(), "custom-value".into()));
        assert_eq!(d.table_bytes(), 164);
    }

    #[test]
    fn rfc7541_c5_responses_evict_with_a_256_byte_table() {
        let mut d = Decoder::default();
        // A size update to 256 first, as an encoder would after SETTINGS_HEADER_TABLE_SIZE=256.
        let first = decode_all(
            &mut d,
            "3fe1 01 4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        );
        assert_eq!(first[0], (":status".into(), "302".into()));
        assert_eq!(
            first[3],
            ("location".into(), "https://www.example.com".into())
        );
        assert_eq!(d.table_bytes(), 222);
        assert_eq!(d.largest_size_update, 256);
        // C.5.2: ":status: 307" evicts ":status: 302".
        let second = decode_all(&mut d, "4803 3330 37c1 c0bf");
        assert_eq!(second[0], (":status".into(), "307".into()));
        assert_eq!(second[1], ("cache-control".into(), "private".into()));
        assert_eq!(d.table_bytes(), 222);
    }

    #[test]
    fn huffman_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
        assert_eq!(
            huffman_encode(b"www.example.com"),
            hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")
        );
    }

    #[test]
    fn huffman_rejects_bad_padding_and_eos() {
        // "www.example.com" with its last (padding) byte's low bit cleared.
        let mut bad = hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff");
        *bad.last_mut().unwrap() = 0xfe;
        assert_eq!(huffman_decode(&bad), Err(HpackError::BadHuffman));
        // A whole byte of padding is too much.
        let mut long = hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff");
        long.push(0xff);
        assert_eq!(huffman_decode(&long), Err(HpackError::BadHuffman));
        // The end-of-string code itself (30 one-bits) is an error, not a symbol.
        assert_eq!(
            huffman_decode(&[0xff, 0xff, 0xff, 0xfc]),
            Err(HpackError::BadHuffman)
        );
    }

    #[test]
    fn limits_are_enforced() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        // A size update just above TABLE_BYTES_MAX: 0x3f then TABLE_BYTES_MAX + 1 - 31.
        let mut block = vec![0x3f];
        let mut rest = TABLE_BYTES_MAX + 1 - 31;
        while rest >= 0x80 {
            block.push((rest & 0x7f) as u8 | 0x80);
            rest >>= 7;
        }
        block.push(rest as u8);
        assert_eq!(
            d.decode(&block, &mut out),
            Err(HpackError::TableTooLarge(TABLE_BYTES_MAX + 1))
        );
        // HEADERS_PER_BLOCK_MAX + 1 indexed fields.
        let many = vec![0x82; HEADERS_PER_BLOCK_MAX + 1];
        out.clear();
        assert_eq!(d.decode(&many, &mut out), Err(HpackError::ListTooLarge));
        assert_eq!(out.len(), HEADERS_PER_BLOCK_MAX);
        // An index past the tables, and a literal cut short.
        assert_eq!(d.decode(&[0xbe], &mut out), Err(HpackError::BadIndex(62)));
        assert_eq!(
            d.decode(&[0x40, 0x05, b'a'], &mut out),
            Err(HpackError::Truncated(2))
        );
    }
}
