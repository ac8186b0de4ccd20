//! Protocol Buffers read without a schema: every field's number, and its value as the wire
//! type says (varint, fixed64, fixed32, length-delimited). A length-delimited field is text
//! when it reads as text, a nested message when it parses as one, else raw bytes.
//!
//! Numbers become their decimal text so that an identifier sent as an integer field (an IMEI
//! as `int64`) is found like one sent as a string. A length-delimited field that is neither
//! text nor a message may be a packed repeated field (proto3's default for repeated
//! scalars): its elements are leaves too, read as varints, fixed64 and fixed32 where the
//! bytes allow.
//!
//! ```
//! use sovereign_scan::protocols::protobuf::{leaves, Value};
//! // field 3 = varint 356938035643809, field 5 = "hi"
//! let msg = [0x18, 0xa1, 0x8b, 0xc9, 0xe6, 0xa1, 0x94, 0x51, 0x2a, 0x02, b'h', b'i'];
//! let fields = leaves(&msg).unwrap();
//! assert_eq!(fields[0].path, [3]);
//! assert_eq!(fields[0].value, Value::Number(356938035643809));
//! assert_eq!(fields[1].value, Value::Text(b"hi"));
//! ```

/// Deepest nesting of messages walked; deeper length-delimited fields are kept as bytes.
pub const PROTOBUF_DEPTH_MAX: usize = 16;
/// Most leaf fields taken from one message, nested ones included; the rest are not walked.
pub const PROTOBUF_FIELDS_MAX: usize = 100_000;

/// A leaf's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// A varint (also `bool` and enums).
    Number(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// A length-delimited field that reads as UTF-8 text.
    Text(&'a [u8]),
    /// A length-delimited field that is neither text nor a message (bytes, or packed numbers:
    /// their elements follow as leaves of the same field).
    Bytes(&'a [u8]),
}

/// One leaf: its field numbers from the outermost message in, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf<'a> {
    pub path: Vec<u32>,
    pub value: Value<'a>,
}

impl Leaf<'_> {
    /// `field 3`, `field 2.1`: how the decode chain names it.
    pub fn label(&self) -> String {
        let numbers: Vec<String> = self.path.iter().map(u32::to_string).collect();
        format!("field {}", numbers.join("."))
    }
}

/// The leaves of `message`, or `None` when it does not parse as a protobuf message at all
/// (the caller then searches it as raw bytes). Past [`PROTOBUF_FIELDS_MAX`] leaves the rest
/// is dropped; `truncated` in the second value says so.
pub fn leaves(message: &[u8]) -> Option<Vec<Leaf<'_>>> {
    let fields = fields(message)?;
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(&fields, &mut path, 0, &mut out);
    Some(out)
}

/// Whether [`leaves`] stopped at [`PROTOBUF_FIELDS_MAX`].
pub fn is_cut(leaves: &[Leaf<'_>]) -> bool {
    leaves.len() >= PROTOBUF_FIELDS_MAX
}

#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Delimited(&'a [u8]),
}

/// Splits a message into (field number, raw value); `None` unless every byte belongs to a
/// well-formed field. An empty message parses (to no fields).
fn fields(data: &[u8]) -> Option<Vec<(u32, Raw<'_>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let key = varint(data, &mut at)?;
        let number = u32::try_from(key >> 3).ok()?;
        // Field numbers run from 1 to 2^29 - 1.
        if number == 0 || number >= 1 << 29 {
            return None;
        }
        let raw = match key & 7 {
            0 => Raw::Varint(varint(data, &mut at)?),
            1 => {
                let bytes: [u8; 8] = data.get(at..at.checked_add(8)?)?.try_into().ok()?;
                at += 8;
                Raw::Fixed64(u64::from_le_bytes(bytes))
            }
            2 => {
                let len = usize::try_from(varint(data, &mut at)?).ok()?;
                let end = at.checked_add(len)?;
                let bytes = data.get(at..end)?;
                at = end;
                Raw::Delimited(bytes)
            }
            5 => {
                let bytes: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
                at += 4;
                Raw::Fixed32(u32::from_le_bytes(bytes))
            }
            // Groups (3, 4) are deprecated and 6, 7 do not exist: not a message we can walk.
            _ => return None,
        };
        out.push((number, raw));
    }
    Some(out)
}

fn walk<'a>(fields: &[(u32, Raw<'a>)], path: &mut Vec<u32>, depth: usize, out: &mut Vec<Leaf<'a>>) {
    for (number, raw) in fields {
        if out.len() >= PROTOBUF_FIELDS_MAX {
            return;
        }
        path.push(*number);
        let value = match *raw {
            Raw::Varint(v) => Some(Value::Number(v)),
            Raw::Fixed64(v) => Some(Value::Fixed64(v)),
            Raw::Fixed32(v) => Some(Value::Fixed32(v)),
            Raw::Delimited(bytes) if looks_like_text(bytes) => Some(Value::Text(bytes)),
            Raw::Delimited(bytes) => match fields_nested(bytes, depth) {
                Some(inner) => {
                    walk(&inner, path, depth + 1, out);
                    None
                }
                None => Some(Value::Bytes(bytes)),
            },
        };
        if let Some(value) = value {
            // Past the depth bound the bytes are a message not walked, not packed numbers.
            let packed = match value {
                Value::Bytes(bytes) if depth + 1 < PROTOBUF_DEPTH_MAX => Some(bytes),
                _ => None,
            };
            out.push(Leaf {
                path: path.clone(),
                value,
            });
            if let Some(bytes) = packed {
                walk_packed(bytes, path, out);
            }
        }
        path.pop();
    }
}

/// The elements of a packed repeated field (proto3 packs repeated scalars by default), as
/// each reading the length allows: varints when the bytes are a whole run of them, fixed64
/// and fixed32 when they are a whole number of elements. Without the schema the reading is
/// not known, so each is searched; a wrong one only gives numbers no identifier matches.
fn walk_packed<'a>(bytes: &'a [u8], path: &[u32], out: &mut Vec<Leaf<'a>>) {
    let push = |value: Value<'a>, out: &mut Vec<Leaf<'a>>| {
        if out.len() >= PROTOBUF_FIELDS_MAX {
            return false;
        }
        out.push(Leaf {
            path: path.to_vec(),
            value,
        });
        true
    };
    let mut at = 0;
    let mut numbers = Vec::new();
    while at < bytes.len() {
        match varint(bytes, &mut at) {
            Some(v) => numbers.push(v),
            None => {
                numbers.clear();
                break;
            }
        }
    }
    for v in numbers {
        if !push(Value::Number(v), out) {
            return;
        }
    }
    if bytes.len().is_multiple_of(8) {
        for chunk in bytes.chunks_exact(8) {
            let v = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !push(Value::Fixed64(v), out) {
                return;
            }
        }
    }
    if bytes.len().is_multiple_of(4) {
        for chunk in bytes.chunks_exact(4) {
            let v = u32::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !push(Value::Fixed32(v), out) {
                return;
            }
        }
    }
}

fn fields_nested(bytes: &[u8], depth: usize) -> Option<Vec<(u32, Raw<'_>)>> {
    if depth + 1 >= PROTOBUF_DEPTH_MAX || bytes.is_empty() {
        return None;
    }
    fields(bytes)
}

/// UTF-8 without control characters other than tab and line breaks: a string field. Short
/// nested messages can also read as text ("\x0a\x03abc" does not: 0x0a is a line feed but
/// 0x03 is a control character), which is why text is tried first only when it is clean.
fn looks_like_text(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && std::str::from_utf8(bytes).is_ok_and(|s| {
            s.chars()
                .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        })
}

/// A base-128 varint of at most 10 bytes.
fn varint(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *data.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn walks_numbers_text_nested_and_fixed() {
        let mut inner = vec![0x0a, 0x05];
        inner.extend_from_slice(b"Alice");
        inner.push(0x10);
        encode_varint(u64::MAX, &mut inner);
        let mut msg = vec![0x18];
        encode_varint(356_938_035_643_809, &mut msg);
        msg.push(0x22);
        msg.push(inner.len() as u8);
        msg.extend_from_slice(&inner);
        msg.push(0x29); // field 5, fixed64
        msg.extend_from_slice(&7u64.to_le_bytes());
        msg.push(0x35); // field 6, fixed32
        msg.extend_from_slice(&9u32.to_le_bytes());
        msg.extend_from_slice(&[0x3a, 0x02, 0x00, 0xff]); // field 7, bytes
        let l = leaves(&msg).unwrap();
        let got: Vec<(String, Value<'_>)> =
            l.iter().map(|f| (f.label(), f.value.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("field 3".into(), Value::Number(356_938_035_643_809)),
                ("field 4.1".into(), Value::Text(b"Alice")),
                ("field 4.2".into(), Value::Number(u64::MAX)),
                ("field 5".into(), Value::Fixed64(7)),
                ("field 6".into(), Value::Fixed32(9)),
                ("field 7".into(), Value::Bytes(&[0x00, 0xff])),
            ]
        );
    }

    /// proto3 packs repeated numbers into one length-delimited field: each element is a leaf
    /// of that field, read as varints, as fixed64 and as fixed32 where the length allows.
    #[test]
    fn packed_repeated_numbers_are_read() {
        let mut varints = Vec::new();
        encode_varint(356_938_035_643_809, &mut varints);
        encode_varint(919_876_543_210, &mut varints);
        let mut msg = vec![0x22, varints.len() as u8];
        msg.extend_from_slice(&varints);
        let mut fixed = 356_938_035_643_809u64.to_le_bytes().to_vec();
        fixed.extend_from_slice(&7u64.to_le_bytes());
        msg.extend_from_slice(&[0x2a, fixed.len() as u8]);
        msg.extend_from_slice(&fixed);
        let l = leaves(&msg).unwrap();
        let has = |label: &str, value: Value<'_>| {
            l.iter().any(|f| f.label() == label && f.value == value)
        };
        assert!(has("field 4", Value::Number(356_938_035_643_809)), "{l:?}");
        assert!(has("field 4", Value::Number(919_876_543_210)), "{l:?}");
        assert!(has("field 5", Value::Fixed64(356_938_035_643_809)), "{l:?}");
        assert!(has("field 5", Value::Fixed64(7)), "{l:?}");
        assert!(has("field 5", Value::Fixed32(7)), "{l:?}");
        // The raw bytes are still a leaf (an identifier as text inside binary).
        assert!(has("field 5", Value::Bytes(&fixed)), "{l:?}");
        // Not a whole number of elements: no fixed reading; a cut varint: no varint one.
        let l = leaves(&[0x2a, 3, 0x80, 0x80, 0x80]).unwrap();
        assert_eq!(l.len(), 1, "{l:?}");
        // The bound on leaves holds for packed elements too.
        let mut many = vec![0x22];
        let elements = vec![0x01u8; PROTOBUF_FIELDS_MAX + 5];
        encode_varint(elements.len() as u64, &mut many);
        many.extend_from_slice(&elements);
        let l = leaves(&many).unwrap();
        assert_eq!(l.len(), PROTOBUF_FIELDS_MAX);
    }

    #[test]
    fn malformed_messages_are_not_walked() {
        assert_eq!(leaves(&[0x0a, 0x05, b'a']), None); // length past the end
        assert_eq!(leaves(&[0x00, 0x01]), None); // field 0
        assert_eq!(leaves(&[0x0b]), None); // group start
        assert_eq!(leaves(&[0x08; 11]), None); // varint of 10+ bytes
        assert_eq!(leaves(&[]), Some(vec![]));
    }

    #[test]
    fn depth_and_field_limits_hold() {
        // PROTOBUF_DEPTH_MAX + 4 messages nested in field 1, with a non-text byte at the core.
        let mut msg = vec![0x08, 0x01];
        for _ in 0..PROTOBUF_DEPTH_MAX + 4 {
            let mut outer = vec![0x0a];
            encode_varint(msg.len() as u64, &mut outer);
            outer.extend_from_slice(&msg);
            msg = outer;
        }
        let l = leaves(&msg).unwrap();
        assert_eq!(l.len(), 1);
        assert!(matches!(l[0].value, Value::Bytes(_)));
        assert_eq!(l[0].path.len(), PROTOBUF_DEPTH_MAX);
        let many: Vec<u8> = [0x08, 0x01].repeat(PROTOBUF_FIELDS_MAX + 1);
        let l = leaves(&many).unwrap();
        assert_eq!(l.len(), PROTOBUF_FIELDS_MAX);
        assert!(is_cut(&l));
    }
}
