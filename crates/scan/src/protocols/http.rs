//! HTTP/1.x messages in a reassembled stream: start line, headers and body, de-chunked.

use std::borrow::Cow;

/// Most headers one message may have; a message with more is scanned raw.
pub const HEADERS_MAX: usize = 128;
/// Most bytes of a de-chunked body.
pub const BODY_BYTES_MAX: usize = 64 << 20;
/// Most chunks in one chunked body.
pub const CHUNKS_MAX: usize = 1 << 20;

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// One HTTP message, borrowed from the stream where it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub direction: Direction,
    /// The request target (path and query) or the response's status line.
    pub target: &'a [u8],
    /// The header lines, raw.
    pub head: &'a [u8],
    pub host: Option<String>,
    pub content_type: Option<String>,
    /// `Content-Encoding` codings in the order they were applied.
    pub content_encoding: Vec<String>,
    pub body: Cow<'a, [u8]>,
    /// Where the body starts, from the start of the message.
    pub body_offset: usize,
    /// Bytes of the stream this message took.
    pub len: usize,
    /// The body was cut short, and by what.
    pub body_cut: Option<BodyCut>,
}

/// Why a body is shorter than its message said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCut {
    /// The stream ended first (the capture missed the rest, or a limit of reassembly cut it).
    EndOfData,
    /// It had more than [`CHUNKS_MAX`] chunks.
    ChunksMax,
    /// It de-chunked to more than [`BODY_BYTES_MAX`] bytes.
    BodyBytesMax,
}

impl std::fmt::Display for BodyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyCut::EndOfData => f.write_str("the stream ends first"),
            BodyCut::ChunksMax => write!(f, "more than {CHUNKS_MAX} chunks"),
            BodyCut::BodyBytesMax => write!(f, "more than {BODY_BYTES_MAX} bytes"),
        }
    }
}

/// Whether `data` starts like an HTTP/1.x request or response.
pub fn starts_message(data: &[u8]) -> Option<Direction> {
    if data.starts_with(b"HTTP/1.") {
        return Some(Direction::Response);
    }
    METHODS
        .iter()
        .any(|m| data.starts_with(m))
        .then_some(Direction::Request)
}

/// Where the next message seems to start after `from`, for resynchronising after a gap or
/// garbage: the start of a line that [`starts_message`] accepts.
pub fn resync(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(found) = memchr::memmem::find(data.get(at..)?, b"HTTP/1.") {
        let hit = at + found;
        let line_start = memchr::memrchr(b'\n', &data[..hit]).map_or(0, |n| n + 1);
        if line_start >= from && starts_message(&data[line_start..]).is_some() {
            return Some(line_start);
        }
        at = hit + 1;
    }
    None
}

/// Parses the message at the start of `data`. `None` when it is not a complete message head;
/// a body cut short by the end of `data` is returned with `body_cut`.
pub fn parse(data: &[u8]) -> Option<Message<'_>> {
    let direction = starts_message(data)?;
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let (head_len, target, status) = match direction {
        Direction::Request => {
            let mut request = httparse::Request::new(&mut headers);
            let httparse::Status::Complete(len) = request.parse(data).ok()? else {
                return None;
            };
            let path = request.path?.as_bytes();
            (len, path, 0)
        }
        Direction::Response => {
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(len) = response.parse(data).ok()? else {
                return None;
            };
            let line_end = memchr::memchr(b'\n', data).unwrap_or(0);
            (len, &data[..line_end], response.code?)
        }
    };
    let line_end = memchr::memchr(b'\n', data)
        .map_or(0, |n| n + 1)
        .min(head_len);
    let head = &data[line_end..head_len];
    let mut host = None;
    let mut content_type = None;
    let mut content_encoding = Vec::new();
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    for header in headers.iter().take_while(|h| !h.name.is_empty()) {
        // Only five headers matter here; the others are not even copied.
        let name = header.name;
        let value = || String::from_utf8_lossy(header.value).trim().to_owned();
        if name.eq_ignore_ascii_case("host") {
            host = Some(value().to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value().to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("content-encoding") {
            content_encoding.extend(
                value()
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty() && c != "identity"),
            );
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value().parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value().to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &data[head_len..];
    let no_body =
        direction == Direction::Response && (status < 200 || status == 204 || status == 304);
    let (body, consumed, body_cut): (Cow<'_, [u8]>, usize, Option<BodyCut>) = if no_body {
        (Cow::Borrowed(&[][..]), 0, None)
    } else if chunked {
        let (body, consumed, cut) = dechunk(rest);
        (Cow::Owned(body), consumed, cut)
    } else if let Some(length) = content_length {
        let available = length.min(rest.len());
        (
            Cow::Borrowed(&rest[..available]),
            available,
            (available < length).then_some(BodyCut::EndOfData),
        )
    } else if direction == Direction::Response {
        // No length: the body runs to the end of the connection.
        (Cow::Borrowed(rest), rest.len(), None)
    } else {
        (Cow::Borrowed(&[][..]), 0, None)
    };
    Some(Message {
        direction,
        target,
        head,
        host,
        content_type,
        content_encoding,
        body,
        body_offset: head_len,
        len: head_len + consumed,
        body_cut,
    })
}

/// Undoes chunked transfer coding: the body, the bytes it took, and why it was cut short if it
/// was. Past [`CHUNKS_MAX`] chunks or [`BODY_BYTES_MAX`] bytes the body ends there; the bytes
/// after it are left for the caller (who scans them raw).
pub fn dechunk(data: &[u8]) -> (Vec<u8>, usize, Option<BodyCut>) {
    let mut body = Vec::new();
    let mut at = 0;
    for _ in 0..CHUNKS_MAX {
        let Some(rest) = data.get(at..) else { break };
        let Ok(httparse::Status::Complete((size_len, size))) = httparse::parse_chunk_size(rest)
        else {
            return (body, data.len(), Some(BodyCut::EndOfData));
        };
        at += size_len;
        if size == 0 {
            // Trailers end at an empty line.
            let rest = &data[at..];
            let end = memchr::memmem::find(rest, b"\r\n")
                .filter(|&n| n == 0)
                .map(|_| 2)
                .or_else(|| memchr::memmem::find(rest, b"\r\n\r\n").map(|n| n + 4))
                .unwrap_or(rest.len());
            return (body, at + end, None);
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let available = size.min(data.len() - at);
        let room = BODY_BYTES_MAX.saturating_sub(body.len());
        body.extend_from_slice(&data[at..at + available.min(room)]);
        if room < available {
            return (body, at + room, Some(BodyCut::BodyBytesMax));
        }
        if available < size {
            return (body, data.len(), Some(BodyCut::EndOfData));
        }
        at += size;
        // The CRLF after the chunk data.
        if data.get(at..at + 2) == Some(b"\r\n") {
            at += 2;
        }
    }
    (body, at.min(data.len()), Some(BodyCut::ChunksMax))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_length_and_pipelined_successor() {
        let data = b"POST /a?x=1 HTTP/1.1\r\nHost: Example.COM\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        let m = parse(data).unwrap();
        assert_eq!(m.target, b"/a?x=1");
        assert_eq!(m.host.as_deref(), Some("example.com"));
        assert_eq!(&*m.body, b"hello");
        assert_eq!(starts_message(&data[m.len..]), Some(Direction::Request));
    }

    #[test]
    fn chunked_response() {
        let data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\nHTTP/1.1 204 No\r\n\r\n";
        let m = parse(data).unwrap();
        assert_eq!(&*m.body, b"hello world");
        assert_eq!(m.body_cut, None);
        assert!(data[m.len..].starts_with(b"HTTP/1.1 204"));
    }

    #[test]
    fn truncated_body_is_marked_cut() {
        let m = parse(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc").unwrap();
        assert_eq!(m.body_cut, Some(BodyCut::EndOfData));
        assert_eq!(&*m.body, b"abc");
    }

    #[test]
    fn resync_finds_the_next_message() {
        let data = b"garbage\r\nmore\r\nGET /x HTTP/1.1\r\n\r\n";
        assert_eq!(resync(data, 0), Some(15));
    }

    #[test]
    fn headers_max_makes_a_message_raw() {
        let mut data = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=HEADERS_MAX {
            data.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        data.extend_from_slice(b"\r\n");
        assert!(parse(&data).is_none());
    }

    #[test]
    fn absurd_chunk_size_does_not_panic() {
        let (body, _, cut) = dechunk(b"ffffffffffffffff\r\nabc");
        assert_eq!(body, b"abc");
        assert_eq!(cut, Some(BodyCut::EndOfData));
    }

    #[test]
    fn body_bytes_max_cuts_a_chunked_body_and_leaves_the_rest() {
        let size = BODY_BYTES_MAX + 10;
        let mut data = format!("{size:x}\r\n").into_bytes();
        let head = data.len();
        data.resize(head + size, b'a');
        data.extend_from_slice(b"\r\n0\r\n\r\n");
        let (body, consumed, cut) = dechunk(&data);
        assert_eq!(body.len(), BODY_BYTES_MAX);
        assert_eq!(cut, Some(BodyCut::BodyBytesMax));
        assert_eq!(consumed, head + BODY_BYTES_MAX, "the rest is the caller's");
    }

    #[test]
    fn chunks_max_ends_the_body_and_leaves_the_rest() {
        let mut data = b"1\r\nx\r\n".repeat(CHUNKS_MAX);
        let kept = data.len();
        data.extend_from_slice(b"1\r\ny\r\n0\r\n\r\n");
        let (body, consumed, cut) = dechunk(&data);
        assert_eq!(body.len(), CHUNKS_MAX);
        assert_eq!(cut, Some(BodyCut::ChunksMax));
        assert_eq!(consumed, kept);
    }
}
