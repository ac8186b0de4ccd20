//! HTTP/2 (RFC 9113) in one direction of a reassembled stream: frames split per stream, header
//! blocks (HEADERS, PUSH_PROMISE and their CONTINUATIONs) decoded with that direction's HPACK
//! decoder, DATA joined per stream with padding removed, SETTINGS_HEADER_TABLE_SIZE noted.
//!
//! [`Connection`] lives as long as the TCP (or TLS) flow: the two HPACK dynamic tables carry
//! over from one request to the next, and the request's `:authority` names the host of its
//! response.
//!
//! A flow too large to hold whole is scanned in pieces ([`Connection::read_more`] for each piece
//! but the last): a frame cut at the end of a piece is completed by the next (a longer DATA
//! frame is read as it comes), a header block awaiting CONTINUATION and the streams that have
//! not ended are carried over, so neither HPACK table misses an entry and a stream's body is
//! decoded whole, within [`FRAME_CARRY_BYTES_MAX`] and [`CARRIED_BYTES_MAX`].
//!
//! A stream the client opens with `:method CONNECT` and `:protocol websocket` (extended
//! CONNECT, RFC 8441) is remembered with the permessage-deflate offer it made
//! ([`Connection::websocket`]): its DATA, each direction, is WebSocket frames, which the engine
//! hands to [`crate::protocols::websocket`].
//!
//! ```
//! use sovereign_scan::protocols::h2::{Connection, PREFACE};
//! let mut conn = Connection::default();
//! let mut wire = PREFACE.to_vec();
//! // HEADERS on stream 1, END_HEADERS | END_STREAM, ":method: GET" (static index 2).
//! wire.extend_from_slice(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x82]);
//! let parsed = conn.read(true, &wire[PREFACE.len()..], PREFACE.len());
//! assert_eq!(parsed.streams[0].stream, 1);
//! assert_eq!(parsed.streams[0].headers[0].fields[0].value, b"GET");
//! ```

use std::collections::HashMap;

use crate::protocols::hpack::{self, Header};

/// What a client sends first (RFC 9113 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Most streams of one direction with a body or header block waiting to be searched; past
/// this a new stream's data is dropped with a warning.
pub const STREAMS_OPEN_MAX: usize = 10_000;
/// Most bytes of one stream's DATA kept; the rest is dropped with a warning.
pub const STREAM_BODY_BYTES_MAX: usize = 64 << 20;
/// Most bytes of one header block (HEADERS or PUSH_PROMISE and its CONTINUATIONs).
pub const HEADER_BLOCK_BYTES_MAX: usize = 1 << 20;
/// Most `:authority` values remembered per connection (one per request stream).
pub const AUTHORITIES_MAX: usize = 100_000;
/// Most extended-CONNECT WebSocket streams remembered per connection; past this a stream's
/// DATA is searched as an HTTP/2 body, with a warning.
pub const WEBSOCKET_STREAMS_MAX: usize = 10_000;
/// Most bytes of a frame cut at the end of one piece of a flow scanned in pieces
/// ([`Connection::read_more`]) kept to be completed by the next; the rest of a longer DATA
/// frame is read as it comes, of any other frame skipped with a warning.
pub const FRAME_CARRY_BYTES_MAX: usize = 64 << 10;
/// Most bytes of DATA (and header blocks awaiting CONTINUATION) of streams that have not ended
/// carried from one piece of a flow to the next, per direction; past this they are searched
/// at once, and what follows of them on its own.
pub const CARRIED_BYTES_MAX: usize = 4 << 20;

const STREAMS_WARNING: &str = "http/2 streams open at once";
const FRAME_HEADER_BYTES: usize = 9;
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const SETTINGS_HEADER_TABLE_SIZE: u16 = 1;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 8;

/// One decoded header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    /// Offset (in the direction's stream) of the frame that began the block.
    pub offset: usize,
    pub fields: Vec<Header>,
    /// Set for a PUSH_PROMISE: the request the server promises to answer.
    pub promised: bool,
}

/// What one stream sent in one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamData {
    pub stream: u32,
    pub headers: Vec<HeaderBlock>,
    pub body: Vec<u8>,
    /// Offset (in the direction's stream) of the first DATA frame.
    pub body_offset: usize,
    /// Bytes of DATA dropped past [`STREAM_BODY_BYTES_MAX`].
    pub body_dropped: usize,
}

impl StreamData {
    /// The last value of a header (lower-case name) in any of the stream's blocks.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .flat_map(|b| b.fields.iter().rev())
            .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.as_slice())
    }
}

/// What [`Connection::read`] got from one direction's bytes: streams in the order they ended.
#[derive(Debug, Default)]
pub struct Parsed {
    pub streams: Vec<StreamData>,
    pub warnings: Vec<String>,
}

/// A header block waiting for its CONTINUATIONs: stream, promised stream, offset of its first
/// frame, bytes so far, and whether its HEADERS frame ended the stream.
type Pending = (u32, Option<u32>, usize, Vec<u8>, bool);

/// Per-direction state that outlives one call of [`Connection::read`].
#[derive(Debug, Default, Clone)]
struct Side {
    decoder: hpack::Decoder,
    /// The header table size this side announced in SETTINGS: a bound on the other side's
    /// encoder, hence on size updates the other direction's decoder sees.
    announced_table_bytes: Option<u32>,
    /// Set after a bad header block: later blocks may decode wrongly, so decoding stops.
    hpack_broken: bool,
    /// What one piece of a flow left for the next.
    carry: Carry,
}

/// The state of one direction between pieces of a flow scanned in pieces: empty after a
/// [`Connection::read`].
#[derive(Debug, Default, Clone)]
struct Carry {
    /// The start of a frame the piece ended inside, up to [`FRAME_CARRY_BYTES_MAX`].
    frame: Vec<u8>,
    /// The rest of a longer frame, read from the start of the next piece.
    skip: Option<Skip>,
    /// Streams that have not ended, and where each is in `open`.
    open: Vec<StreamData>,
    index: HashMap<u32, usize>,
    /// A header block waiting for its CONTINUATIONs.
    pending: Option<Pending>,
    /// Where the piece ended in the direction's stream.
    end: usize,
}

/// The part of a frame longer than [`FRAME_CARRY_BYTES_MAX`] that the next piece starts with.
#[derive(Debug, Clone, Copy)]
struct Skip {
    bytes: usize,
    /// A DATA frame's stream: its bytes are the stream's body (padding included).
    data_of: Option<u32>,
    end_stream: bool,
}

/// The per-read variables of [`Connection::read`]'s frame loop.
struct Reading<'c> {
    carry: &'c mut Carry,
    parsed: Parsed,
    announced: Option<u32>,
}

/// One HTTP/2 connection, both directions.
#[derive(Debug, Default, Clone)]
pub struct Connection {
    client: Side,
    server: Side,
    /// `:authority` (or the upgraded request's Host) per stream, for its response.
    authorities: HashMap<u32, String>,
    /// Streams opened by extended CONNECT with `:protocol websocket`, up to
    /// [`WEBSOCKET_STREAMS_MAX`].
    websockets: HashMap<u32, WebSocketStream>,
    /// The server sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 section 3).
    pub connect_protocol_enabled: bool,
}

/// A stream opened as a WebSocket by extended CONNECT (RFC 8441 section 4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSocketStream {
    /// The client's `sec-websocket-extensions` offer, if it made one.
    pub offer: Option<String>,
}

impl Connection {
    /// Remembers the host of a stream: the upgraded HTTP/1.1 request's Host is stream 1's.
    pub fn set_authority(&mut self, stream: u32, host: String) {
        if self.authorities.len() < AUTHORITIES_MAX {
            self.authorities.insert(stream, host);
        }
    }

    /// The `:authority` a request on `stream` gave.
    pub fn authority(&self, stream: u32) -> Option<&str> {
        self.authorities.get(&stream).map(String::as_str)
    }

    /// Whether the client opened `stream` as a WebSocket (extended CONNECT), and its offer.
    pub fn websocket(&self, stream: u32) -> Option<&WebSocketStream> {
        self.websockets.get(&stream)
    }

    /// Remembers a WebSocket stream; `false` when [`WEBSOCKET_STREAMS_MAX`] are already.
    fn note_websocket(&mut self, stream: u32, ws: WebSocketStream) -> bool {
        if self.websockets.len() >= WEBSOCKET_STREAMS_MAX && !self.websockets.contains_key(&stream)
        {
            return false;
        }
        self.websockets.insert(stream, ws);
        true
    }

    /// Reads frames of one direction (`to_server`: from the client, after its preface) from
    /// `data`, which starts at `base` in that direction's stream: the whole of what is left of
    /// it, so streams that have not ended are handed over as far as they went.
    pub fn read(&mut self, to_server: bool, data: &[u8], base: usize) -> Parsed {
        self.read_piece(to_server, data, base, false)
    }

    /// Reads one piece of a direction that more will follow: a frame cut at its end, a header
    /// block awaiting CONTINUATION and the streams that have not ended wait for the next
    /// piece (read by `read_more` again, or `read` for the last). The next piece continues
    /// this one if it starts where this one ended, or at 0 (decrypted TLS, whose offsets
    /// start again in each piece); otherwise what was carried is handed over cut short.
    pub fn read_more(&mut self, to_server: bool, data: &[u8], base: usize) -> Parsed {
        self.read_piece(to_server, data, base, true)
    }

    fn read_piece(&mut self, to_server: bool, data: &[u8], base: usize, more: bool) -> Parsed {
        let mut carry = std::mem::take(&mut self.side(to_server).carry);
        let mut r = Reading {
            carry: &mut carry,
            parsed: Parsed::default(),
            announced: None,
        };
        let continues = base == r.carry.end || base == 0;
        if !continues {
            self.end_carry(to_server, &mut r);
        }
        // What was carried is reported where this piece starts: offsets of the last piece
        // would name its frames (or, inside TLS, mean nothing here).
        for s in &mut r.carry.open {
            s.body_offset = base;
            s.headers.iter_mut().for_each(|h| h.offset = base);
        }
        if let Some(p) = r.carry.pending.as_mut() {
            p.2 = base;
        }
        let mut at = 0;
        apply_skip(&mut r, data, &mut at, base);
        if !r.carry.frame.is_empty() {
            // Complete the frame the last piece ended inside: its header first, then as much
            // payload as it declares.
            let mut frame = std::mem::take(&mut r.carry.frame);
            let mut want = frame_len(&frame).unwrap_or(FRAME_HEADER_BYTES);
            loop {
                let take = want.saturating_sub(frame.len()).min(data.len() - at);
                frame.extend_from_slice(&data[at..at + take]);
                at += take;
                match frame_len(&frame) {
                    Some(len) if len != want && len <= FRAME_CARRY_BYTES_MAX => want = len,
                    _ => break,
                }
            }
            if frame_len(&frame).is_some_and(|len| len > FRAME_CARRY_BYTES_MAX) {
                // Only its header was carried: the rest is read as it comes.
                self.frames(to_server, &frame, base, &mut r, true);
                apply_skip(&mut r, data, &mut at, base);
            } else if more && frame_len(&frame).is_none_or(|len| frame.len() < len) {
                r.carry.frame = frame;
            } else {
                self.frames(to_server, &frame, base, &mut r, false);
            }
        }
        if at < data.len() {
            self.frames(to_server, &data[at..], base + at, &mut r, more);
        }
        if more {
            let held: usize = r.carry.open.iter().map(|s| s.body.len()).sum::<usize>()
                + r.carry.pending.as_ref().map_or(0, |p| p.3.len());
            if held > CARRIED_BYTES_MAX {
                r.parsed.warnings.push(format!(
                    "http/2 streams not ended in a piece of a flow scanned in pieces hold more than {CARRIED_BYTES_MAX} bytes; they are searched now, and what follows of them on its own"
                ));
                r.parsed.streams.append(&mut r.carry.open);
                r.carry.index.clear();
            }
            r.carry.end = base + data.len();
        } else {
            self.end_carry(to_server, &mut r);
        }
        let parsed = std::mem::take(&mut r.parsed);
        self.side(to_server).carry = carry;
        parsed
    }

    /// Hands over what a direction carried, cut short: the end of a flow, or a piece that does
    /// not continue the last.
    fn end_carry(&mut self, to_server: bool, r: &mut Reading<'_>) {
        let frame = std::mem::take(&mut r.carry.frame);
        if !frame.is_empty() {
            let end = r.carry.end;
            self.frames(to_server, &frame, end.saturating_sub(frame.len()), r, false);
        }
        if let Some(skip) = r.carry.skip.take() {
            r.parsed.warnings.push(format!(
                "http/2 frame is cut short: the last {} bytes were not captured",
                skip.bytes
            ));
        }
        if let Some((p_stream, ..)) = r.carry.pending.take() {
            r.parsed.warnings.push(format!(
                "http/2 header block of stream {p_stream} ends without END_HEADERS"
            ));
        }
        // Streams that did not end in this capture are searched for what they sent.
        r.parsed.streams.append(&mut r.carry.open);
        r.carry.index.clear();
        r.carry.end = 0;
    }

    /// Reads the frames of `data` (at `base`); with `more`, a frame cut at the end is carried.
    fn frames(
        &mut self,
        to_server: bool,
        data: &[u8],
        base: usize,
        r: &mut Reading<'_>,
        more: bool,
    ) {
        let mut at = 0;
        while at < data.len() {
            let Some(head) = data.get(at..at + FRAME_HEADER_BYTES) else {
                if more {
                    r.carry.frame = data[at..].to_vec();
                    break;
                }
                r.parsed.warnings.push(format!(
                    "http/2 frame header cut short at offset {}",
                    base + at
                ));
                break;
            };
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let start = at + FRAME_HEADER_BYTES;
            let frame_offset = base + at;
            let Some(payload) = data.get(start..start + len) else {
                if more && FRAME_HEADER_BYTES + len <= FRAME_CARRY_BYTES_MAX {
                    r.carry.frame = data[at..].to_vec();
                    break;
                }
                let part = &data[start..];
                if more {
                    // Too long to hold: a DATA frame's payload is read as it comes (its
                    // padding too, which only adds zeros), any other frame's is skipped.
                    let data_of = (kind == DATA && stream != 0).then_some(stream);
                    r.carry.skip = Some(Skip {
                        bytes: len - part.len(),
                        data_of,
                        end_stream: flags & END_STREAM != 0,
                    });
                    if data_of.is_none() {
                        r.parsed.warnings.push(format!(
                            "http/2 frame (type {kind}, stream {stream}) at offset {frame_offset} of {len} bytes is cut between two pieces of a flow scanned in pieces, longer than {FRAME_CARRY_BYTES_MAX}: it is skipped"
                        ));
                    }
                } else {
                    r.parsed.warnings.push(format!(
                        "http/2 frame (type {kind}, stream {stream}) at offset {frame_offset} is cut short: {} of {len} bytes",
                        part.len()
                    ));
                }
                // What arrived of a DATA frame is still worth searching.
                if kind == DATA && stream != 0 {
                    let body = if more {
                        // The pad length byte, if any; the padding comes at the end.
                        part.get(usize::from(flags & PADDED != 0)..)
                            .unwrap_or_default()
                    } else {
                        strip_padding(flags, part).unwrap_or(part)
                    };
                    if let Some(s) = slot(
                        &mut r.carry.open,
                        &mut r.carry.index,
                        stream,
                        &mut r.parsed.warnings,
                    ) {
                        append(s, body, frame_offset);
                    }
                }
                break;
            };
            at = start + len;
            self.frame(to_server, kind, flags, stream, payload, frame_offset, r);
        }
    }

    /// Takes one whole frame.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        to_server: bool,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        frame_offset: usize,
        r: &mut Reading<'_>,
    ) {
        let Reading {
            carry,
            parsed,
            announced,
        } = r;
        let Carry {
            open,
            index,
            pending,
            ..
        } = &mut **carry;
        if let Some((p_stream, promised, p_offset, mut block, p_end)) = pending.take() {
            if kind != CONTINUATION || stream != p_stream {
                parsed.warnings.push(format!(
                    "http/2 header block of stream {p_stream} not continued (frame type {kind} at offset {frame_offset})"
                ));
            } else {
                if block.len() + payload.len() > HEADER_BLOCK_BYTES_MAX {
                    parsed.warnings.push(format!(
                        "http/2 header block of stream {p_stream} is larger than {HEADER_BLOCK_BYTES_MAX} bytes; the connection's later headers are not decoded"
                    ));
                    self.side(to_server).hpack_broken = true;
                    return;
                }
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    self.header_block(
                        to_server, p_stream, promised, p_offset, &block, p_end, open, index, parsed,
                    );
                } else {
                    *pending = Some((p_stream, promised, p_offset, block, p_end));
                }
                return;
            }
        }
        match kind {
            DATA if stream != 0 => {
                let Some(body) = strip_padding(flags, payload) else {
                    parsed.warnings.push(format!(
                        "http/2 DATA frame at offset {frame_offset} has bad padding"
                    ));
                    return;
                };
                if let Some(s) = slot(open, index, stream, &mut parsed.warnings) {
                    append(s, body, frame_offset);
                }
                if flags & END_STREAM != 0 {
                    finish(open, index, stream, parsed);
                }
            }
            HEADERS | PUSH_PROMISE if stream != 0 => {
                let Some(mut fragment) = strip_padding(flags, payload) else {
                    parsed.warnings.push(format!(
                        "http/2 header frame at offset {frame_offset} has bad padding"
                    ));
                    return;
                };
                let mut promised = None;
                if kind == HEADERS && flags & PRIORITY != 0 {
                    fragment = fragment.get(5..).unwrap_or_default();
                }
                if kind == PUSH_PROMISE {
                    let Some(id) = fragment.get(..4) else {
                        return;
                    };
                    promised = Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff);
                    fragment = &fragment[4..];
                }
                // END_STREAM of a PUSH_PROMISE frame is not defined (that flag bit is unused).
                let end = kind == HEADERS && flags & END_STREAM != 0;
                if flags & END_HEADERS != 0 {
                    self.header_block(
                        to_server,
                        stream,
                        promised,
                        frame_offset,
                        fragment,
                        end,
                        open,
                        index,
                        parsed,
                    );
                } else {
                    *pending = Some((stream, promised, frame_offset, fragment.to_vec(), end));
                }
            }
            RST_STREAM => finish(open, index, stream, parsed),
            SETTINGS if flags & 0x1 == 0 => {
                for pair in payload.chunks_exact(6) {
                    let value = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
                    match u16::from_be_bytes([pair[0], pair[1]]) {
                        SETTINGS_HEADER_TABLE_SIZE => *announced = Some(value),
                        SETTINGS_ENABLE_CONNECT_PROTOCOL if !to_server => {
                            self.connect_protocol_enabled = value == 1;
                        }
                        _ => {}
                    }
                }
                if announced.is_some() {
                    self.side(to_server).announced_table_bytes = *announced;
                }
            }
            // PRIORITY, PING, GOAWAY, WINDOW_UPDATE and unknown types carry nothing to search.
            _ => {}
        }
    }

    fn side(&mut self, to_server: bool) -> &mut Side {
        if to_server {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn header_block(
        &mut self,
        to_server: bool,
        stream: u32,
        promised: Option<u32>,
        offset: usize,
        block: &[u8],
        end_stream: bool,
        open: &mut Vec<StreamData>,
        index: &mut HashMap<u32, usize>,
        parsed: &mut Parsed,
    ) {
        // The other side's SETTINGS bound this direction's table.
        let bound = if to_server {
            self.server.announced_table_bytes
        } else {
            self.client.announced_table_bytes
        };
        let side = self.side(to_server);
        if side.hpack_broken {
            return;
        }
        let mut fields = Vec::new();
        if let Err(e) = side.decoder.decode(block, &mut fields) {
            side.hpack_broken = true;
            parsed.warnings.push(format!(
                "http/2 header block of stream {stream} at offset {offset}: {e}; the connection's later headers in this direction are not decoded"
            ));
        }
        if let Some(bound) = bound
            && side.decoder.largest_size_update > bound as usize
        {
            parsed.warnings.push(format!(
                "http/2 hpack table resized to {} bytes, above the {bound} its peer's SETTINGS_HEADER_TABLE_SIZE allows",
                side.decoder.largest_size_update
            ));
            side.decoder.largest_size_update = 0;
        }
        if fields.is_empty() {
            if end_stream {
                finish(open, index, stream, parsed);
            }
            return;
        }
        let target = promised.unwrap_or(stream);
        if to_server || promised.is_some() {
            let authority = fields
                .iter()
                .find(|h| h.name == b":authority")
                .map(|h| String::from_utf8_lossy(&h.value).into_owned());
            if let Some(authority) = authority {
                self.set_authority(target, authority);
            }
        }
        if to_server && promised.is_none() && is_websocket_connect(&fields) {
            let offer = fields
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(b"sec-websocket-extensions"))
                .map(|h| String::from_utf8_lossy(&h.value).into_owned())
                .reduce(|a, b| format!("{a}, {b}"));
            if !self.note_websocket(stream, WebSocketStream { offer }) {
                parsed.warnings.push(format!(
                    "more than {WEBSOCKET_STREAMS_MAX} websocket streams on one http/2 connection; stream {stream} is searched as an http/2 body"
                ));
            }
        }
        if let Some(s) = slot(open, index, target, &mut parsed.warnings) {
            s.headers.push(HeaderBlock {
                offset,
                fields,
                promised: promised.is_some(),
            });
        }
        if end_stream {
            finish(open, index, stream, parsed);
        }
    }
}

/// A request header block that opens a WebSocket: `:method CONNECT` with `:protocol websocket`.
fn is_websocket_connect(fields: &[Header]) -> bool {
    let value = |name: &[u8]| fields.iter().find(|h| h.name == name).map(|h| &h.value[..]);
    value(b":method") == Some(b"CONNECT")
        && value(b":protocol").is_some_and(|p| p.eq_ignore_ascii_case(b"websocket"))
}

/// Reads what is left of a frame longer than [`FRAME_CARRY_BYTES_MAX`] from `data[*at..]`.
fn apply_skip(r: &mut Reading<'_>, data: &[u8], at: &mut usize, base: usize) {
    let Some(skip) = r.carry.skip.take() else {
        return;
    };
    let n = skip.bytes.min(data.len() - *at);
    if let Some(stream) = skip.data_of
        && let Some(s) = slot(
            &mut r.carry.open,
            &mut r.carry.index,
            stream,
            &mut r.parsed.warnings,
        )
    {
        append(s, &data[*at..*at + n], base + *at);
    }
    *at += n;
    if n < skip.bytes {
        r.carry.skip = Some(Skip {
            bytes: skip.bytes - n,
            ..skip
        });
    } else if skip.end_stream
        && let Some(stream) = skip.data_of
    {
        finish(&mut r.carry.open, &mut r.carry.index, stream, &mut r.parsed);
    }
}

/// The whole length of the frame `bytes` starts with, once its header is there.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let head = bytes.get(..3)?;
    (bytes.len() >= FRAME_HEADER_BYTES).then(|| {
        FRAME_HEADER_BYTES
            + (usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]))
    })
}

/// The payload of a PADDED frame without its pad length byte and padding.
fn strip_padding(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    if flags & PADDED == 0 {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
}

fn slot<'s>(
    open: &'s mut Vec<StreamData>,
    index: &mut HashMap<u32, usize>,
    stream: u32,
    warnings: &mut Vec<String>,
) -> Option<&'s mut StreamData> {
    if let Some(&i) = index.get(&stream) {
        return open.get_mut(i);
    }
    if open.len() >= STREAMS_OPEN_MAX {
        // Warn once per read: the first warning names the first stream dropped.
        if !warnings.iter().any(|w| w.contains(STREAMS_WARNING)) {
            warnings.push(format!(
                "more than {STREAMS_OPEN_MAX} {STREAMS_WARNING}; stream {stream} and later ones are not searched"
            ));
        }
        return None;
    }
    index.insert(stream, open.len());
    open.push(StreamData {
        stream,
        ..StreamData::default()
    });
    open.last_mut()
}

fn append(s: &mut StreamData, body: &[u8], frame_offset: usize) {
    if s.body.is_empty() && s.body_dropped == 0 {
        s.body_offset = frame_offset;
    }
    let room = STREAM_BODY_BYTES_MAX.saturating_sub(s.body.len());
    let take = body.len().min(room);
    s.body.extend_from_slice(&body[..take]);
    s.body_dropped += body.len() - take;
}

/// Moves an ended stream to the output.
fn finish(
    open: &mut Vec<StreamData>,
    index: &mut HashMap<u32, usize>,
    stream: u32,
    parsed: &mut Parsed,
) {
    let Some(i) = index.remove(&stream) else {
        return;
    };
    let done = open.swap_remove(i);
    if let Some(moved) = open.get(i)
        && let Some(slot) = index.get_mut(&moved.stream)
    {
        *slot = i;
    }
    if done.body_dropped > 0 {
        parsed.warnings.push(format!(
            "http/2 stream {stream} sent more than {STREAM_BODY_BYTES_MAX} bytes of DATA; {} bytes are not searched",
            done.body_dropped
        ));
    }
    parsed.streams.push(done);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn streams_are_joined_with_padding_and_continuation_removed() {
        let mut wire = frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 1, 0]);
        // HEADERS without END_HEADERS, PADDED and PRIORITY: ":method: GET", then a
        // CONTINUATION with ":authority: a.example" (literal, indexed name 1).
        let mut payload = vec![2, 0, 0, 0, 0, 16, 0x82];
        payload.extend_from_slice(&[0, 0]);
        wire.extend(frame(HEADERS, PADDED | PRIORITY, 3, &payload));
        let mut cont = vec![0x41, 9];
        cont.extend_from_slice(b"a.example");
        wire.extend(frame(CONTINUATION, END_HEADERS, 3, &cont));
        // Interleaved DATA of streams 3 and 5, padded on 3.
        wire.extend(frame(DATA, PADDED, 3, &[3, b'a', b'b', 0, 0, 0]));
        wire.extend(frame(DATA, END_STREAM, 5, b"zz"));
        wire.extend(frame(DATA, END_STREAM, 3, b"cd"));
        let mut conn = Connection::default();
        let parsed = conn.read(true, &wire, 24);
        assert_eq!(parsed.warnings, Vec::<String>::new());
        assert_eq!(parsed.streams.len(), 2);
        assert_eq!(parsed.streams[0].stream, 5);
        let s3 = &parsed.streams[1];
        assert_eq!(s3.body, b"abcd");
        assert_eq!(s3.header(":authority"), Some(&b"a.example"[..]));
        assert_eq!(s3.headers[0].offset, 24 + 15);
        assert_eq!(conn.authority(3), Some("a.example"));
        assert_eq!(conn.client.announced_table_bytes, Some(256));
    }

    /// A direction cut anywhere into pieces reads as it does whole: frames completed across the
    /// cut (a DATA frame longer than [`FRAME_CARRY_BYTES_MAX`] read as it comes), a header
    /// block awaiting CONTINUATION and unended streams carried, the HPACK table kept.
    #[test]
    fn a_direction_in_pieces_reads_as_it_does_whole() {
        // Stream 1: x-imsi as a literal with incremental indexing, split by a CONTINUATION,
        // DATA in two frames; stream 3 names it from the dynamic table (index 62); stream 5
        // has one DATA frame too long to carry; stream 7 never ends.
        let mut block = vec![0x82, 0x40, 6];
        block.extend_from_slice(b"x-imsi");
        block.push(15);
        block.extend_from_slice(b"404450123456789");
        let mut wire = frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]);
        wire.extend(frame(HEADERS, 0, 1, &block[..5]));
        wire.extend(frame(CONTINUATION, END_HEADERS, 1, &block[5..]));
        wire.extend(frame(DATA, PADDED, 1, &[2, b'a', b'b', 0, 0]));
        wire.extend(frame(DATA, END_STREAM, 1, b"cd"));
        wire.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82, 0xbe]));
        let long: Vec<u8> = (0..FRAME_CARRY_BYTES_MAX as u32 + 500)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        wire.extend(frame(HEADERS, END_HEADERS, 5, &[0x83]));
        wire.extend(frame(DATA, END_STREAM, 5, &long));
        wire.extend(frame(HEADERS, END_HEADERS, 7, &[0x82, 0xbe]));
        wire.extend(frame(DATA, 0, 7, b"open"));
        let read = |sizes: &[usize]| {
            let mut conn = Connection::default();
            let (mut streams, mut warnings) = (Vec::new(), Vec::new());
            let mut at = 0;
            for size in sizes.iter().cycle() {
                let end = (at + size).min(wire.len());
                let parsed = if end == wire.len() {
                    conn.read(true, &wire[at..end], 24 + at)
                } else {
                    conn.read_more(true, &wire[at..end], 24 + at)
                };
                streams.extend(parsed.streams.into_iter().map(|s| {
                    (
                        s.stream,
                        s.headers.into_iter().map(|h| h.fields).collect::<Vec<_>>(),
                        s.body,
                    )
                }));
                warnings.extend(parsed.warnings);
                at = end;
                if at == wire.len() {
                    break;
                }
            }
            streams.sort_by_key(|s| s.0);
            (streams, warnings)
        };
        let whole = read(&[wire.len()]);
        assert_eq!(whole.1, Vec::<String>::new());
        assert_eq!(whole.0.len(), 4);
        assert_eq!(whole.0[0].2, b"abcd");
        assert_eq!(whole.0[1].1[0][1].value, b"404450123456789");
        for sizes in [
            &[1][..],
            &[2, 7, 5],
            &[9, 1000, 3],
            &[40_000, 11],
            &[FRAME_CARRY_BYTES_MAX],
        ] {
            let pieces = read(sizes);
            // The long DATA frame read as it came keeps its padding: it has none here.
            assert_eq!(pieces, whole, "{sizes:?}");
        }
        // A piece that does not continue the last (a gap) ends what was carried, cut short.
        let mut conn = Connection::default();
        let cut = wire.len() - 3;
        conn.read_more(true, &wire[..cut], 24);
        let parsed = conn.read(true, b"xyz", 24 + cut + 100);
        assert!(
            parsed.warnings.iter().any(|w| w.contains("cut short")),
            "{:?}",
            parsed.warnings
        );
        assert!(parsed.streams.iter().any(|s| s.stream == 7));
    }

    /// Unended streams past [`CARRIED_BYTES_MAX`] are searched at once.
    #[test]
    fn carried_bytes_past_the_limit_are_handed_over() {
        let mut wire = Vec::new();
        let chunk = vec![b'z'; 16_000];
        for _ in 0..CARRIED_BYTES_MAX / chunk.len() + 1 {
            wire.extend(frame(DATA, 0, 1, &chunk));
        }
        let mut conn = Connection::default();
        let parsed = conn.read_more(true, &wire, 0);
        assert_eq!(parsed.streams.len(), 1);
        assert!(
            parsed.warnings[0].contains("searched now"),
            "{:?}",
            parsed.warnings
        );
        assert!(conn.read(true, &[], wire.len()).streams.is_empty());
    }

    #[test]
    fn push_promise_headers_go_to_the_promised_stream() {
        let mut payload = 2u32.to_be_bytes().to_vec();
        payload.push(0x84); // :path /
        let wire = frame(PUSH_PROMISE, END_HEADERS, 1, &payload);
        let parsed = Connection::default().read(false, &wire, 0);
        assert_eq!(parsed.streams[0].stream, 2);
        assert!(parsed.streams[0].headers[0].promised);
    }

    #[test]
    fn cut_frames_and_bad_blocks_warn() {
        let mut wire = frame(DATA, 0, 1, b"hello");
        wire.truncate(wire.len() - 2);
        let parsed = Connection::default().read(true, &wire, 0);
        assert_eq!(parsed.streams[0].body, b"hel");
        assert!(
            parsed.warnings[0].contains("cut short"),
            "{:?}",
            parsed.warnings
        );
        let mut conn = Connection::default();
        let bad = frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff]);
        let parsed = conn.read(true, &bad, 0);
        assert!(parsed.warnings[0].contains("not decoded"));
        let good = frame(HEADERS, END_HEADERS, 3, &[0x82]);
        assert!(conn.read(true, &good, 0).streams.is_empty());
    }

    #[test]
    fn streams_past_the_limit_are_dropped_with_one_warning() {
        let mut wire = Vec::new();
        for i in 0..STREAMS_OPEN_MAX as u32 + 2 {
            wire.extend(frame(DATA, 0, 2 * i + 1, b"x"));
        }
        let parsed = Connection::default().read(true, &wire, 0);
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].contains("streams open"));
        assert_eq!(parsed.streams.len(), STREAMS_OPEN_MAX);
    }

    /// Random bytes, and a valid exchange with random bytes flipped: warnings, never a panic.
    #[test]
    fn hostile_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = frame(
            HEADERS,
            END_HEADERS | PADDED,
            1,
            &[1, 0x82, 0x41, 2, b'a', b'b', 0],
        );
        valid.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x3f, 0xe1, 0x01]));
        valid.extend(frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0xbe]));
        valid.extend(frame(DATA, PADDED | END_STREAM, 1, &[2, b'x', 0, 0]));
        valid.extend(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0]));
        for round in 0..3000 {
            let mut data = if round % 2 == 0 {
                valid.clone()
            } else {
                (0..next() % 200).map(|_| next() as u8).collect()
            };
            for _ in 0..next() % 4 {
                if !data.is_empty() {
                    let i = next() as usize % data.len();
                    data[i] = next() as u8;
                }
            }
            let mut conn = Connection::default();
            let _ = conn.read(round % 3 == 0, &data, 0);
            let _ = conn.read(round % 3 != 0, &data, 0);
        }
    }

    #[test]
    fn extended_connect_marks_a_websocket_stream_with_its_offer() {
        // SETTINGS_ENABLE_CONNECT_PROTOCOL from the server.
        let mut conn = Connection::default();
        conn.read(false, &frame(SETTINGS, 0, 0, &[0, 8, 0, 0, 0, 1]), 0);
        assert!(conn.connect_protocol_enabled);
        // :method CONNECT (literal, indexed name 2), :protocol websocket (literal name),
        // sec-websocket-extensions permessage-deflate (literal name).
        let mut block = vec![0x02, 7];
        block.extend_from_slice(b"CONNECT");
        for (name, value) in [
            (&b":protocol"[..], &b"websocket"[..]),
            (b"sec-websocket-extensions", b"permessage-deflate"),
        ] {
            block.extend_from_slice(&[0x00, name.len() as u8]);
            block.extend_from_slice(name);
            block.push(value.len() as u8);
            block.extend_from_slice(value);
        }
        let mut wire = frame(HEADERS, END_HEADERS, 1, &block);
        // A plain CONNECT (no :protocol) is not a WebSocket.
        wire.extend(frame(
            HEADERS,
            END_HEADERS,
            3,
            &[0x02, 7, b'C', b'O', b'N', b'N', b'E', b'C', b'T'],
        ));
        let parsed = conn.read(true, &wire, 0);
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(
            conn.websocket(1).and_then(|w| w.offer.as_deref()),
            Some("permessage-deflate")
        );
        assert!(conn.websocket(3).is_none());
    }

    #[test]
    fn websocket_streams_past_the_limit_are_not_remembered() {
        let mut conn = Connection::default();
        for i in 0..WEBSOCKET_STREAMS_MAX as u32 {
            assert!(conn.note_websocket(2 * i + 1, WebSocketStream::default()));
        }
        assert!(!conn.note_websocket(
            2 * WEBSOCKET_STREAMS_MAX as u32 + 1,
            WebSocketStream::default()
        ));
        assert!(conn.note_websocket(1, WebSocketStream::default()));
    }

    #[test]
    fn a_body_past_its_limit_is_cut_with_a_warning() {
        let mut s = StreamData::default();
        append(&mut s, &vec![0; STREAM_BODY_BYTES_MAX], 0);
        append(&mut s, b"more", 9);
        assert_eq!(s.body.len(), STREAM_BODY_BYTES_MAX);
        assert_eq!(s.body_dropped, 4);
    }
}
