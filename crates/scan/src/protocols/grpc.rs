//! gRPC and gRPC-Web message framing: each message is a flag byte, a 4-byte big-endian length
//! and the message; flag bit 0 says it is compressed with the stream's `grpc-encoding`, and in
//! gRPC-Web bit 7 marks the trailers (header lines in the body). `application/grpc-web-text`
//! is the same framing in base64, possibly several padded chunks one after another.
//!
//! ```
//! use sovereign_scan::protocols::grpc::{messages, Kind};
//! let body = [0, 0, 0, 0, 2, 0x08, 0x01];
//! let (list, cut) = messages(&body);
//! assert_eq!(list[0].kind, Kind::Message);
//! assert_eq!(list[0].data, &[0x08, 0x01]);
//! assert!(!cut);
//! ```

use base64::Engine as _;

/// Largest message taken (gRPC's own default receive limit is 4 MiB); a larger length prefix
/// ends the walk with a warning and the rest of the body is searched raw.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 16 << 20;
/// Most messages taken from one stream body.
pub const GRPC_MESSAGES_MAX: usize = 100_000;

/// What a length-prefixed frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    /// Compressed with the stream's `grpc-encoding`.
    Compressed,
    /// gRPC-Web trailers: `name: value` lines.
    Trailers,
}

/// One length-prefixed frame of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    /// Where the frame's data starts in the body.
    pub offset: usize,
    pub data: &'a [u8],
}

/// Whether a content type is gRPC or gRPC-Web (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web`, `application/grpc-web-text+proto`...).
pub fn is_grpc(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..16)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
}

/// Whether the body is base64 (`application/grpc-web-text`).
pub fn is_text(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..25)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc-web-text"))
}

/// The frames of a body, and whether it ended inside one (or at a limit): the caller then
/// searches the rest as it is.
pub fn messages(body: &[u8]) -> (Vec<Frame<'_>>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        if out.len() >= GRPC_MESSAGES_MAX {
            return (out, true);
        }
        let Some(head) = body.get(at..at + 5) else {
            return (out, true);
        };
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > GRPC_MESSAGE_BYTES_MAX {
            return (out, true);
        }
        let start = at + 5;
        let Some(data) = body.get(start..start + len) else {
            return (out, true);
        };
        let kind = if head[0] & 0x80 != 0 {
            Kind::Trailers
        } else if head[0] & 0x01 != 0 {
            Kind::Compressed
        } else {
            Kind::Message
        };
        out.push(Frame {
            kind,
            offset: start,
            data,
        });
        at = start + len;
    }
    (out, false)
}

/// Decodes a `grpc-web-text` body: base64, where each chunk the server flushed is padded on
/// its own, so `=` may appear inside. Whitespace is ignored. `None` when it is not base64.
pub fn decode_text(body: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    // A chunk ends after its padding; decode each on its own.
    let mut start = 0;
    let mut i = 0;
    while i < clean.len() {
        if clean[i] == b'=' {
            while i < clean.len() && clean[i] == b'=' {
                i += 1;
            }
            base64::engine::general_purpose::STANDARD
                .decode_vec(&clean[start..i], &mut out)
                .ok()?;
            start = i;
        } else {
            i += 1;
        }
    }
    if start < clean.len() {
        base64::engine::general_purpose::STANDARD
            .decode_vec(&clean[start..], &mut out)
            .ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_compressed_and_trailers() {
        let mut body = vec![1, 0, 0, 0, 3, 0xaa, 0xbb, 0xcc];
        body.extend_from_slice(&[0x80, 0, 0, 0, 14]);
        body.extend_from_slice(b"grpc-status:0\n");
        let (list, cut) = messages(&body);
        assert!(!cut);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].kind, Kind::Compressed);
        assert_eq!(list[0].data, &[0xaa, 0xbb, 0xcc]);
        assert_eq!(list[1].kind, Kind::Trailers);
        assert_eq!(list[1].offset, 13);
    }

    #[test]
    fn a_cut_or_oversized_frame_stops_the_walk() {
        assert!(messages(&[0, 0, 0, 0, 5, 1, 2]).1);
        assert!(messages(&[0, 0, 0]).1);
        let over = (GRPC_MESSAGE_BYTES_MAX as u32 + 1).to_be_bytes();
        let body = [0, over[0], over[1], over[2], over[3], 0];
        let (list, cut) = messages(&body);
        assert!(list.is_empty());
        assert!(cut);
    }

    #[test]
    fn text_bodies_with_padded_chunks_decode() {
        // "AAAAAAIIAQ==" is a message [0x08, 0x01]; a second chunk follows its padding.
        let decoded = decode_text(b"AAAAAAIIAQ==gAAAAA0=\r\n").unwrap();
        assert_eq!(&decoded[..7], &[0, 0, 0, 0, 2, 0x08, 0x01]);
        assert_eq!(&decoded[7..], &[0x80, 0, 0, 0, 0x0d]);
        assert_eq!(decode_text(b"not base64!"), None);
    }

    #[test]
    fn content_types() {
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("application/grpc-web-text+proto"));
        assert!(!is_grpc("application/json"));
        assert!(is_text("application/grpc-web-text"));
        assert!(!is_text("application/grpc-web+proto"));
    }
}
