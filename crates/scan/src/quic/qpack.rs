//! QPACK (RFC 9204): the header compression of HTTP/3. The static table, the dynamic table
//! each encoder builds on its encoder stream, and field sections (HEADERS frames) decoded
//! against both.
//!
//! The scanner reads a connection after it was captured, so the dynamic table is not evicted:
//! every entry inserted is kept by its absolute index (up to [`QPACK_ENTRIES_MAX`] and
//! [`QPACK_TABLE_BYTES_MAX`]), and a field line's reference finds the entry it meant whatever
//! was evicted since. An encoder never references an evicted entry, so this gives the same
//! fields as a live decoder.

/// Most dynamic-table entries kept per encoder.
pub const QPACK_ENTRIES_MAX: usize = 1 << 16;
/// Most bytes of names and values kept per dynamic table.
pub const QPACK_TABLE_BYTES_MAX: usize = 4 << 20;
/// Longest name or value decoded.
pub const QPACK_STRING_BYTES_MAX: usize = 64 << 10;
/// Most fields one field section decodes to.
pub const QPACK_FIELDS_MAX: usize = 1024;

/// Why a QPACK instruction or field section could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QpackError {
    #[error("qpack input cut short")]
    Truncated,
    #[error("qpack integer too large")]
    Integer,
    #[error("qpack string of {0} bytes is longer than {QPACK_STRING_BYTES_MAX}")]
    StringTooLong(u64),
    #[error("qpack huffman string: {0}")]
    Huffman(#[from] crate::protocols::hpack::HpackError),
    #[error("qpack static table has no entry {0}")]
    StaticIndex(u64),
    #[error("qpack dynamic table has no entry {0} (the encoder stream was not captured?)")]
    DynamicIndex(u64),
    #[error(
        "qpack dynamic table is full ({QPACK_ENTRIES_MAX} entries or {QPACK_TABLE_BYTES_MAX} bytes)"
    )]
    TableFull,
    #[error("qpack field section has more than {QPACK_FIELDS_MAX} fields")]
    TooManyFields,
}

/// RFC 9204 Appendix A.
pub static STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

/// One decoded field.
pub type Field = (Vec<u8>, Vec<u8>);

/// The dynamic table one encoder builds, by absolute index.
#[derive(Debug, Default, Clone)]
pub struct DynamicTable {
    entries: Vec<Field>,
    bytes: usize,
    /// The decoder's SETTINGS_QPACK_MAX_TABLE_CAPACITY, for the Required Insert Count.
    pub max_capacity: u64,
}

/// A prefixed integer (RFC 7541 5.1) whose first byte's low `bits` bits start it.
fn integer(data: &[u8], at: &mut usize, bits: u32) -> Result<u64, QpackError> {
    let first = *data.get(*at).ok_or(QpackError::Truncated)?;
    *at += 1;
    let max = (1u64 << bits) - 1;
    let mut value = u64::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let byte = *data.get(*at).ok_or(QpackError::Truncated)?;
        *at += 1;
        if shift > 56 {
            return Err(QpackError::Integer);
        }
        value = value
            .checked_add(u64::from(byte & 0x7f) << shift)
            .ok_or(QpackError::Integer)?;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// A string literal whose Huffman flag is `huffman_bit` of the first byte and whose length has
/// a `bits`-bit prefix.
fn string(data: &[u8], at: &mut usize, huffman_bit: u8, bits: u32) -> Result<Vec<u8>, QpackError> {
    let huffman = data.get(*at).ok_or(QpackError::Truncated)? & huffman_bit != 0;
    let len = integer(data, at, bits)?;
    if len > QPACK_STRING_BYTES_MAX as u64 {
        return Err(QpackError::StringTooLong(len));
    }
    let end = at
        .checked_add(len as usize)
        .filter(|&e| e <= data.len())
        .ok_or(QpackError::Truncated)?;
    let raw = &data[*at..end];
    *at = end;
    if huffman {
        // QPACK's string literals use HPACK's Huffman code (RFC 9204 4.1.2).
        Ok(crate::protocols::hpack::huffman_decode(raw)?)
    } else {
        Ok(raw.to_vec())
    }
}

fn static_entry(index: u64) -> Result<Field, QpackError> {
    let (name, value) = usize::try_from(index)
        .ok()
        .and_then(|i| STATIC_TABLE.get(i))
        .ok_or(QpackError::StaticIndex(index))?;
    Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()))
}

impl DynamicTable {
    /// Entries inserted so far.
    pub fn inserts(&self) -> u64 {
        self.entries.len() as u64
    }

    fn get(&self, absolute: u64) -> Result<&Field, QpackError> {
        usize::try_from(absolute)
            .ok()
            .and_then(|i| self.entries.get(i))
            .ok_or(QpackError::DynamicIndex(absolute))
    }

    fn insert(&mut self, field: Field) -> Result<(), QpackError> {
        let size = field.0.len() + field.1.len();
        if self.entries.len() >= QPACK_ENTRIES_MAX || self.bytes + size > QPACK_TABLE_BYTES_MAX {
            return Err(QpackError::TableFull);
        }
        self.bytes += size;
        self.entries.push(field);
        Ok(())
    }

    /// Applies the encoder stream's instructions (RFC 9204 4.3) in `data`; returns how many
    /// bytes were used (an instruction cut short at the end is left for later).
    ///
    /// # Errors
    /// On an instruction that references a missing entry or fills the table.
    pub fn encoder_stream(&mut self, data: &[u8]) -> Result<usize, QpackError> {
        let mut at = 0;
        while at < data.len() {
            let start = at;
            let result = self.instruction(data, &mut at);
            match result {
                Ok(()) => {}
                Err(QpackError::Truncated) => return Ok(start),
                Err(e) => return Err(e),
            }
        }
        Ok(at)
    }

    fn instruction(&mut self, data: &[u8], at: &mut usize) -> Result<(), QpackError> {
        let first = data[*at];
        if first & 0x80 != 0 {
            // Insert With Name Reference.
            let is_static = first & 0x40 != 0;
            let index = integer(data, at, 6)?;
            let name = if is_static {
                static_entry(index)?.0
            } else {
                let absolute = self
                    .inserts()
                    .checked_sub(1 + index)
                    .ok_or(QpackError::DynamicIndex(index))?;
                self.get(absolute)?.0.clone()
            };
            let value = string(data, at, 0x80, 7)?;
            self.insert((name, value))
        } else if first & 0x40 != 0 {
            // Insert With Literal Name.
            let name = string(data, at, 0x20, 5)?;
            let value = string(data, at, 0x80, 7)?;
            self.insert((name, value))
        } else if first & 0x20 != 0 {
            // Set Dynamic Table Capacity: nothing to do, nothing is evicted.
            integer(data, at, 5)?;
            Ok(())
        } else {
            // Duplicate.
            let index = integer(data, at, 5)?;
            let absolute = self
                .inserts()
                .checked_sub(1 + index)
                .ok_or(QpackError::DynamicIndex(index))?;
            let field = self.get(absolute)?.clone();
            self.insert(field)
        }
    }

    /// RFC 9204 4.5.1.1: the Required Insert Count from its encoded form.
    fn required_insert_count(&self, encoded: u64) -> Result<u64, QpackError> {
        if encoded == 0 {
            return Ok(0);
        }
        let max_entries = self.max_capacity / 32;
        let full_range = 2 * max_entries;
        if max_entries == 0 {
            // The decoder's setting was not seen: take the encoded value as it is, which is
            // right as long as fewer than the table's capacity in entries were inserted.
            return Ok(encoded - 1);
        }
        if encoded > full_range {
            return Err(QpackError::DynamicIndex(encoded));
        }
        let max_value = self.inserts() + max_entries;
        let max_wrapped = (max_value / full_range) * full_range;
        let mut count = max_wrapped + encoded - 1;
        if count > max_value {
            if count <= full_range {
                return Err(QpackError::DynamicIndex(encoded));
            }
            count -= full_range;
        }
        Ok(count)
    }

    /// Decodes one field section (the payload of a HEADERS frame).
    ///
    /// # Errors
    /// On malformed input or a reference to an entry not in the table.
    pub fn field_section(&self, data: &[u8]) -> Result<Vec<Field>, QpackError> {
        let mut at = 0;
        let encoded = integer(data, &mut at, 8)?;
        let required = self.required_insert_count(encoded)?;
        let sign = data.get(at).ok_or(QpackError::Truncated)? & 0x80 != 0;
        let delta = integer(data, &mut at, 7)?;
        let base = if sign {
            required
                .checked_sub(delta + 1)
                .ok_or(QpackError::DynamicIndex(delta))?
        } else {
            required.checked_add(delta).ok_or(QpackError::Integer)?
        };
        let mut fields = Vec::new();
        while at < data.len() {
            if fields.len() >= QPACK_FIELDS_MAX {
                return Err(QpackError::TooManyFields);
            }
            let first = data[at];
            let field = if first & 0x80 != 0 {
                // Indexed Field Line.
                let is_static = first & 0x40 != 0;
                let index = integer(data, &mut at, 6)?;
                if is_static {
                    static_entry(index)?
                } else {
                    let absolute = base
                        .checked_sub(1 + index)
                        .ok_or(QpackError::DynamicIndex(index))?;
                    self.get(absolute)?.clone()
                }
            } else if first & 0x40 != 0 {
                // Literal Field Line With Name Reference.
                let is_static = first & 0x10 != 0;
                let index = integer(data, &mut at, 4)?;
                let name = if is_static {
                    static_entry(index)?.0
                } else {
                    let absolute = base
                        .checked_sub(1 + index)
                        .ok_or(QpackError::DynamicIndex(index))?;
                    self.get(absolute)?.0.clone()
                };
                (name, string(data, &mut at, 0x80, 7)?)
            } else if first & 0x20 != 0 {
                // Literal Field Line With Literal Name.
                let name = string(data, &mut at, 0x08, 3)?;
                (name, string(data, &mut at, 0x80, 7)?)
            } else if first & 0x10 != 0 {
                // Indexed Field Line With Post-Base Index.
                let index = integer(data, &mut at, 4)?;
                self.get(base.checked_add(index).ok_or(QpackError::Integer)?)?
                    .clone()
            } else {
                // Literal Field Line With Post-Base Name Reference.
                let index = integer(data, &mut at, 3)?;
                let name = self
                    .get(base.checked_add(index).ok_or(QpackError::Integer)?)?
                    .0
                    .clone();
                (name, string(data, &mut at, 0x80, 7)?)
            };
            fields.push(field);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_literal_and_huffman_fields_decode() {
        // Required Insert Count 0, Base 0; :method GET (static 17); :path with a literal value;
        // a literal name "x-id" and Huffman value "www.example.com" (RFC 7541 C.4.1's bytes).
        let mut block = vec![0x00, 0x00, 0xc0 | 17];
        block.extend_from_slice(&[0x50 | 1, 4]);
        block.extend_from_slice(b"/a/b");
        block.extend_from_slice(&[0x20 | 4]);
        block.extend_from_slice(b"x-id");
        block.push(0x80 | 12);
        block.extend_from_slice(&[
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ]);
        let fields = DynamicTable::default().field_section(&block).unwrap();
        let text: Vec<(String, String)> = fields
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                (":method".into(), "GET".into()),
                (":path".into(), "/a/b".into()),
                ("x-id".into(), "www.example.com".into()),
            ]
        );
    }

    #[test]
    fn dynamic_entries_from_the_encoder_stream_are_referenced() {
        // RFC 9204 B.2 in spirit: insert ":authority: www.example.com" by static name
        // reference, then "custom-key: custom-value" with a literal name, then duplicate.
        let mut table = DynamicTable {
            max_capacity: 220,
            ..DynamicTable::default()
        };
        let mut stream = vec![0x3f, 0xbd, 0x01]; // set capacity 220
        stream.extend_from_slice(&[0xc0, 15]);
        stream.extend_from_slice(b"www.example.com");
        stream.push(0x40 | 10);
        stream.extend_from_slice(b"custom-key");
        stream.push(12);
        stream.extend_from_slice(b"custom-value");
        stream.push(1); // duplicate relative 1: the authority
        // A cut instruction at the end is left unread.
        stream.extend_from_slice(&[0x40 | 10, b'x']);
        let used = table.encoder_stream(&stream).unwrap();
        assert_eq!(used, stream.len() - 2);
        assert_eq!(table.inserts(), 3);
        // Required Insert Count 3 (encoded 3 % (2*6) + 1 = 4), Base 3: relative 1 is the
        // custom-key entry, relative 0 the duplicate; then a post-base reference past it fails.
        let block = [0x04, 0x00, 0x80 | 1, 0x80];
        let fields = table.field_section(&block).unwrap();
        assert_eq!(
            fields[0],
            (b"custom-key".to_vec(), b"custom-value".to_vec())
        );
        assert_eq!(
            fields[1],
            (b":authority".to_vec(), b"www.example.com".to_vec())
        );
        assert_eq!(
            table.field_section(&[0x04, 0x00, 0x10]),
            Err(QpackError::DynamicIndex(3))
        );
        assert_eq!(
            DynamicTable::default().field_section(&[0x00, 0x00, 0xc0 | 63, 36]),
            Err(QpackError::StaticIndex(99))
        );
    }

    #[test]
    fn qpack_entries_max_is_enforced() {
        let mut table = DynamicTable::default();
        let one = [0x40 | 1, b'a', 0];
        let mut stream = Vec::new();
        for _ in 0..QPACK_ENTRIES_MAX {
            stream.extend_from_slice(&one);
        }
        assert!(table.encoder_stream(&stream).is_ok());
        assert_eq!(table.encoder_stream(&one), Err(QpackError::TableFull));
    }
}
