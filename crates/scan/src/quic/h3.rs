//! HTTP/3 (RFC 9114) on reassembled QUIC streams: frames, the stream types of unidirectional
//! streams, SETTINGS, and a request or response put together from its HEADERS (decoded with
//! QPACK) and DATA frames.

use crate::quic::packet::varint;
use crate::quic::qpack::{DynamicTable, Field};

pub const FRAME_DATA: u64 = 0x00;
pub const FRAME_HEADERS: u64 = 0x01;
pub const FRAME_SETTINGS: u64 = 0x04;
pub const STREAM_CONTROL: u64 = 0x00;
pub const STREAM_PUSH: u64 = 0x01;
pub const STREAM_QPACK_ENCODER: u64 = 0x02;
pub const STREAM_QPACK_DECODER: u64 = 0x03;
const SETTINGS_QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
/// Most frames read from one stream.
pub const H3_FRAMES_MAX: usize = 1 << 16;

/// One HTTP/3 frame, borrowing its payload from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H3Frame<'a> {
    pub kind: u64,
    /// Where the payload starts in the stream.
    pub offset: usize,
    pub payload: &'a [u8],
}

/// The frames of `data` from `at`; `cut` is set when the last one is cut short (the stream
/// was not captured to its end, or is not HTTP/3).
#[derive(Debug, Default)]
pub struct Frames<'a> {
    pub frames: Vec<H3Frame<'a>>,
    pub cut: bool,
}

/// Splits `data[at..]` into frames.
pub fn frames(data: &[u8], mut at: usize) -> Frames<'_> {
    let mut out = Frames::default();
    while at < data.len() {
        if out.frames.len() >= H3_FRAMES_MAX {
            out.cut = true;
            break;
        }
        let header = data.get(at..).unwrap_or_default();
        let Some((kind, a)) = varint(header) else {
            out.cut = true;
            break;
        };
        let Some((len, b)) = header.get(a..).and_then(varint) else {
            out.cut = true;
            break;
        };
        let start = at + a + b;
        let Some(payload) = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .and_then(|end| data.get(start..end))
        else {
            out.cut = true;
            break;
        };
        out.frames.push(H3Frame {
            kind,
            offset: start,
            payload,
        });
        at = start + payload.len();
    }
    out
}

/// The type of a unidirectional stream and where its content starts.
pub fn uni_stream_type(data: &[u8]) -> Option<(u64, usize)> {
    varint(data)
}

/// SETTINGS_QPACK_MAX_TABLE_CAPACITY from a control stream (after its type), if sent.
pub fn qpack_max_table_capacity(data: &[u8], at: usize) -> Option<u64> {
    let settings = frames(data, at)
        .frames
        .into_iter()
        .find(|f| f.kind == FRAME_SETTINGS)?;
    let mut p = settings.payload;
    while let Some((id, a)) = varint(p) {
        let (value, b) = p.get(a..).and_then(varint)?;
        if id == SETTINGS_QPACK_MAX_TABLE_CAPACITY {
            return Some(value);
        }
        p = &p[a + b..];
    }
    None
}

/// A request or a response: its fields (every HEADERS frame's, trailers included), where the
/// first HEADERS frame is, and the DATA frames joined.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<Field>,
    pub headers_offset: usize,
    pub body: Vec<u8>,
    pub body_offset: usize,
    /// What could not be read, for a warning.
    pub problems: Vec<String>,
}

impl Message {
    /// The first value of a field, as text.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads one direction of a request stream, decoding HEADERS with `table` (the sender's).
pub fn message(data: &[u8], table: &DynamicTable) -> Message {
    let mut message = Message::default();
    let split = frames(data, 0);
    for frame in &split.frames {
        match frame.kind {
            FRAME_HEADERS => {
                if message.fields.is_empty() {
                    message.headers_offset = frame.offset;
                }
                match table.field_section(frame.payload) {
                    Ok(fields) => message.fields.extend(fields),
                    Err(e) => message.problems.push(e.to_string()),
                }
            }
            FRAME_DATA => {
                if message.body.is_empty() {
                    message.body_offset = frame.offset;
                }
                message.body.extend_from_slice(frame.payload);
            }
            _ => {}
        }
    }
    if split.cut {
        message
            .problems
            .push("the stream ends inside an http/3 frame".to_owned());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_stream_gives_fields_and_a_joined_body() {
        // HEADERS (:method GET from the static table), two DATA frames, an unknown frame type
        // (reserved 0x21), then a cut DATA frame.
        let mut s = vec![0x01, 3, 0, 0, 0xc0 | 17];
        s.extend_from_slice(&[0x00, 3]);
        s.extend_from_slice(b"abc");
        s.extend_from_slice(&[0x21, 1, 9]);
        s.extend_from_slice(&[0x00, 2]);
        s.extend_from_slice(b"de");
        s.extend_from_slice(&[0x00, 5, b'x']);
        let m = message(&s, &DynamicTable::default());
        assert_eq!(m.fields, [(b":method".to_vec(), b"GET".to_vec())]);
        assert_eq!(m.body, b"abcde");
        assert_eq!(m.body_offset, 7);
        assert_eq!(m.problems, ["the stream ends inside an http/3 frame"]);
    }

    #[test]
    fn settings_give_the_qpack_capacity() {
        // Control stream type 0, SETTINGS with 0x06 = 0x4000 (2-byte varint), 0x01 = 4096.
        let s = [0x00, 0x04, 6, 0x06, 0x40, 0x00, 0x01, 0x50, 0x00];
        let (kind, at) = uni_stream_type(&s).unwrap();
        assert_eq!(kind, STREAM_CONTROL);
        assert_eq!(qpack_max_table_capacity(&s, at), Some(4096));
    }
}
