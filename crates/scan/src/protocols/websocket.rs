//! WebSocket (RFC 6455) frames in one direction of a stream, joined into messages, with
//! permessage-deflate (RFC 7692) inflated.
//!
//! The parser knows nothing of how the stream was opened: HTTP/1.1 `Upgrade: websocket` with a
//! `101` (the engine) or HTTP/2 extended CONNECT (RFC 8441) hand it the bytes after the
//! handshake and the deflate settings the handshake negotiated ([`Extensions::parse`] reads the
//! server's `Sec-WebSocket-Extensions`). Each direction is parsed on its own
//! ([`Direction::parse`]): the client's frames are masked, the server's are not, and each sender
//! has its own compression context. A flow scanned in pieces gives each piece but the last to
//! [`Direction::parse_more`], which keeps a frame cut at the end and a message still missing
//! fragments for the next piece.
//!
//! ```
//! use sovereign_scan::protocols::websocket::{Direction, Extensions};
//!
//! let ext = Extensions::parse("permessage-deflate; server_no_context_takeover");
//! let mut server = Direction::new(ext.deflate_for(false));
//! // A final text frame, unmasked: "hi".
//! let parsed = server.parse(&[0x81, 0x02, b'h', b'i']);
//! assert_eq!(parsed.messages[0].data, b"hi");
//! ```

use flate2::{Decompress, FlushDecompress, Status};

/// Most bytes of one message, joined from its fragments and inflated; past this the message is
/// cut there and a problem is recorded.
pub const MESSAGE_BYTES_MAX: usize = 16 << 20;
/// Most frames read from one direction of a stream; the rest of the stream is left unparsed
/// and a problem is recorded.
pub const FRAMES_MAX: usize = 1 << 20;
/// Most fragments (continuation frames) one message may have.
pub const FRAGMENTS_MAX: usize = 1 << 16;

/// Most bytes of a frame cut at the end of one piece of a flow scanned in pieces
/// ([`Direction::parse_more`]) kept to be completed by the next; the rest of a longer one is
/// not scanned (a problem says so) and the frames after it are read.
pub const FRAME_CARRY_BYTES_MAX: usize = 1 << 20;

const _: () = assert!(FRAGMENTS_MAX <= FRAMES_MAX);

/// The opcode of a frame (RFC 6455 section 5.2); unknown ones kept as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const CONTINUATION: Opcode = Opcode(0x0);
    pub const TEXT: Opcode = Opcode(0x1);
    pub const BINARY: Opcode = Opcode(0x2);
    pub const CLOSE: Opcode = Opcode(0x8);
    pub const PING: Opcode = Opcode(0x9);
    pub const PONG: Opcode = Opcode(0xa);

    /// Control frames (close, ping, pong and the reserved 0xb-0xf) are never fragmented and may
    /// come between the fragments of a message.
    pub fn is_control(self) -> bool {
        self.0 & 0x8 != 0
    }
}

/// What permessage-deflate settings the handshake agreed, from the server's
/// `Sec-WebSocket-Extensions` (the offer the server accepted, RFC 7692 section 7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    pub permessage_deflate: bool,
    pub client_no_context_takeover: bool,
    pub server_no_context_takeover: bool,
}

/// How one sender compresses its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Deflate {
    /// No compression was negotiated: RSV1 set on a frame is a protocol error we record.
    #[default]
    Off,
    /// Messages with RSV1 set are raw deflate; the LZ77 window carries over from one message to
    /// the next (context takeover) unless `no_context_takeover`.
    On { no_context_takeover: bool },
}

impl Extensions {
    /// Reads a `Sec-WebSocket-Extensions` value (all of them joined with `,`). Only
    /// permessage-deflate changes how frames read; other extensions are ignored, and the
    /// window-bits parameters do not matter to an inflater with the full 32 KiB window.
    pub fn parse(value: &str) -> Extensions {
        let mut ext = Extensions::default();
        for offer in value.split(',') {
            let mut params = offer.split(';').map(str::trim);
            if !params
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
            {
                continue;
            }
            // The server accepts one offer; the first permessage-deflate is it.
            if ext.permessage_deflate {
                break;
            }
            ext.permessage_deflate = true;
            for param in params {
                let name = param.split('=').next().unwrap_or("").trim();
                if name.eq_ignore_ascii_case("client_no_context_takeover") {
                    ext.client_no_context_takeover = true;
                } else if name.eq_ignore_ascii_case("server_no_context_takeover") {
                    ext.server_no_context_takeover = true;
                }
            }
        }
        ext
    }

    /// The compression of what the client (`client == true`) or the server sends.
    pub fn deflate_for(&self, client: bool) -> Deflate {
        if !self.permessage_deflate {
            return Deflate::Off;
        }
        Deflate::On {
            no_context_takeover: if client {
                self.client_no_context_takeover
            } else {
                self.server_no_context_takeover
            },
        }
    }
}

/// The value of header `name` in raw header lines (`Name: value\r\n`...), all its lines
/// joined with `,`; `None` when absent.
pub fn header_value(head: &[u8], name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if !line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        let v = String::from_utf8_lossy(line[colon + 1..].trim_ascii());
        match value.as_mut() {
            Some(all) => {
                all.push_str(", ");
                all.push_str(&v);
            }
            None => value = Some(v.into_owned()),
        }
    }
    value
}

/// Whether an HTTP/1.1 request's header lines ask to upgrade to WebSocket.
pub fn is_upgrade_request(head: &[u8]) -> bool {
    header_value(head, "upgrade").is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
}

/// When an HTTP/1.1 response (its status line and header lines) accepts a WebSocket upgrade
/// (`101` with `Upgrade: websocket`): the extensions it agreed.
pub fn accepted_upgrade(status_line: &[u8], head: &[u8]) -> Option<Extensions> {
    let status = status_line.split(|&b| b == b' ').nth(1)?;
    if status != b"101" || !is_upgrade_request(head) {
        return None;
    }
    Some(
        header_value(head, "sec-websocket-extensions")
            .map(|v| Extensions::parse(&v))
            .unwrap_or_default(),
    )
}

/// One message: a data message joined from its fragments, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Of the first frame: text, binary, or a control opcode.
    pub opcode: Opcode,
    /// The payload, unmasked, joined and inflated.
    pub data: Vec<u8>,
    /// It was compressed (RSV1 on its first frame) and `data` is the inflated payload.
    pub compressed: bool,
    /// Where its first frame starts in the bytes given to [`Direction::parse`].
    pub offset: usize,
}

/// What one call to [`Direction::parse`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub messages: Vec<Message>,
    /// Bytes of the input taken by whole frames; the rest is a frame cut short.
    pub consumed: usize,
    /// What went wrong, for the report's warnings: a message cut at a limit, a bad deflate
    /// stream, a frame the stream ends inside.
    pub problems: Vec<String>,
}

/// The state of one direction: compression context and a message being joined.
pub struct Direction {
    deflate: Deflate,
    inflater: Option<Decompress>,
    /// The inflater failed and context takeover is on: what follows cannot be inflated.
    inflater_broken: bool,
    frames: usize,
    /// What [`Direction::parse_more`] left for the next piece.
    carry: Option<Box<Carried>>,
}

/// A frame cut at the end of a piece, the message being joined, and how many bytes of a frame
/// too long to carry the next piece starts with.
#[derive(Default)]
struct Carried {
    frame: Vec<u8>,
    pending: Option<Pending>,
    skip: u64,
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direction")
            .field("deflate", &self.deflate)
            .field("inflater_broken", &self.inflater_broken)
            .field("frames", &self.frames)
            .finish()
    }
}

/// A frame header and where its payload is.
struct Frame<'a> {
    fin: bool,
    rsv1: bool,
    opcode: Opcode,
    payload: &'a [u8],
    /// Payload bytes the frame declares (more than `payload` when the input ends first).
    declared: u64,
    mask: Option<[u8; 4]>,
    header_len: usize,
}

/// Parses the frame at the start of `data`: `None` when even its header is not all there.
fn frame(data: &[u8]) -> Option<Frame<'_>> {
    let b0 = *data.first()?;
    let b1 = *data.get(1)?;
    let mut at = 2_usize;
    let declared = match b1 & 0x7f {
        126 => {
            let b = data.get(2..4)?;
            at = 4;
            u64::from(u16::from_be_bytes([b[0], b[1]]))
        }
        127 => {
            let b: [u8; 8] = data.get(2..10)?.try_into().ok()?;
            at = 10;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mask = if b1 & 0x80 != 0 {
        let m: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let available = (data.len() - at) as u64;
    let take = usize::try_from(declared.min(available)).ok()?;
    Some(Frame {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode: Opcode(b0 & 0x0f),
        payload: data.get(at..at.checked_add(take)?)?,
        declared,
        mask,
        header_len: at,
    })
}

/// The whole length (header and payload) of the frame `bytes` starts with, once its header
/// is there.
fn frame_total(bytes: &[u8]) -> Option<usize> {
    let f = frame(bytes)?;
    usize::try_from(f.declared).ok()?.checked_add(f.header_len)
}

/// Appends `payload` unmasked to `out`, keeping `out` within [`MESSAGE_BYTES_MAX`]; the key
/// position continues from `start` (a frame's payload bytes already unmasked).
fn unmask_into(out: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>) -> bool {
    let room = MESSAGE_BYTES_MAX.saturating_sub(out.len());
    let take = payload.len().min(room);
    match mask {
        None => out.extend_from_slice(&payload[..take]),
        Some(key) => out.extend(
            payload[..take]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4]),
        ),
    }
    take == payload.len()
}

struct Pending {
    opcode: Opcode,
    compressed: bool,
    offset: usize,
    data: Vec<u8>,
    fragments: usize,
    cut: bool,
}

impl Direction {
    pub fn new(deflate: Deflate) -> Direction {
        Direction {
            deflate,
            inflater: None,
            inflater_broken: false,
            frames: 0,
            carry: None,
        }
    }

    /// Parses the frames of `data`, the bytes one side sent after the handshake, into
    /// messages. A message whose last fragment is missing (the stream ends first) is returned
    /// as far as it goes. Never panics, whatever the bytes.
    pub fn parse(&mut self, data: &[u8]) -> Parsed {
        self.read(data, false)
    }

    /// Parses one piece of a direction that more will follow: a frame cut at its end (up to
    /// [`FRAME_CARRY_BYTES_MAX`]) and a message still missing fragments wait for the next
    /// piece (given to `parse_more` again, or `parse` for the last). Offsets are in each
    /// piece's bytes; what was carried over is at 0.
    pub fn parse_more(&mut self, data: &[u8]) -> Parsed {
        self.read(data, true)
    }

    fn read(&mut self, data: &[u8], more: bool) -> Parsed {
        let mut parsed = Parsed::default();
        let Carried {
            frame: carried,
            mut pending,
            skip,
        } = self.carry.take().map(|c| *c).unwrap_or_default();
        if let Some(p) = pending.as_mut() {
            p.offset = 0;
        }
        let mut at = usize::try_from(skip).unwrap_or(usize::MAX).min(data.len());
        let skip = skip - at as u64;
        if skip > 0 && !more {
            parsed.problems.push(format!(
                "the stream ends inside a websocket frame: its last {skip} bytes were not captured"
            ));
        }
        if !carried.is_empty() {
            // Complete the frame the last piece ended inside: header first, then payload.
            let mut frame = carried;
            loop {
                let total = frame_total(&frame);
                if total.is_some_and(|t| t > FRAME_CARRY_BYTES_MAX) {
                    break;
                }
                let want = total.unwrap_or(frame.len() + 1);
                let take = want.saturating_sub(frame.len()).min(data.len() - at);
                if take == 0 {
                    break;
                }
                frame.extend_from_slice(&data[at..at + take]);
                at += take;
            }
            let total = frame_total(&frame);
            let whole = total.is_some_and(|t| frame.len() >= t);
            let too_long = total.is_some_and(|t| t > FRAME_CARRY_BYTES_MAX);
            if more && !whole && !too_long {
                self.carry = Some(Box::new(Carried {
                    frame,
                    pending,
                    skip: 0,
                }));
                return parsed;
            }
            // A frame too long to carry: the part read is scanned, the rest skipped.
            self.frames(&frame, 0, &mut pending, &mut parsed, too_long);
            if let Some(c) = self.carry.as_mut() {
                let n = usize::try_from(c.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - at);
                at += n;
                c.skip -= n as u64;
            }
        }
        if at < data.len() {
            self.frames(&data[at..], at, &mut pending, &mut parsed, more);
        }
        if more {
            let carry = self.carry.get_or_insert_with(Box::default);
            carry.pending = pending;
            carry.skip += skip;
        } else {
            self.carry = None;
            if let Some(p) = pending.take() {
                self.finish(p, &mut parsed);
            }
        }
        parsed
    }

    /// Reads the frames of `data` (at `base` in the piece); with `more`, a frame cut at the
    /// end is carried, or the rest of it skipped when it is too long to carry.
    fn frames(
        &mut self,
        data: &[u8],
        base: usize,
        pending: &mut Option<Pending>,
        parsed: &mut Parsed,
        more: bool,
    ) {
        let mut at = 0_usize;
        while at < data.len() {
            if self.frames >= FRAMES_MAX {
                parsed.problems.push(format!(
                    "more than {FRAMES_MAX} websocket frames; the rest of the stream is not parsed"
                ));
                break;
            }
            let Some(f) = frame(&data[at..]) else {
                if more {
                    self.carry_frame(&data[at..]);
                    break;
                }
                parsed.problems.push(format!(
                    "the stream ends inside a websocket frame header at byte {}",
                    base + at
                ));
                break;
            };
            let whole = f.payload.len() as u64 == f.declared;
            if more && !whole {
                let total = f.declared.saturating_add(f.header_len as u64);
                if total <= FRAME_CARRY_BYTES_MAX as u64 {
                    self.carry_frame(&data[at..]);
                    break;
                }
                let rest = f.declared - f.payload.len() as u64;
                self.carry.get_or_insert_with(Box::default).skip = rest;
                parsed.problems.push(format!(
                    "a websocket frame of {} bytes at byte {} is cut between two pieces of a flow scanned in pieces, longer than {FRAME_CARRY_BYTES_MAX}: its last {rest} bytes are not scanned",
                    f.declared,
                    base + at
                ));
            }
            self.frames += 1;
            let offset = base + at;
            at += f.header_len + f.payload.len();
            if whole {
                parsed.consumed = base + at;
            } else if !more {
                parsed.problems.push(format!(
                    "the stream ends inside a websocket frame of {} bytes at byte {offset}; the part captured is scanned",
                    f.declared
                ));
            }
            if f.opcode.is_control() {
                let mut payload = Vec::with_capacity(f.payload.len());
                unmask_into(&mut payload, f.payload, f.mask);
                parsed.messages.push(Message {
                    opcode: f.opcode,
                    data: payload,
                    compressed: false,
                    offset,
                });
                continue;
            }
            if f.opcode == Opcode::CONTINUATION {
                let Some(p) = pending.as_mut() else {
                    parsed.problems.push(format!(
                        "a websocket continuation frame at byte {offset} continues no message; it is scanned alone"
                    ));
                    let mut payload = Vec::new();
                    unmask_into(&mut payload, f.payload, f.mask);
                    parsed.messages.push(Message {
                        opcode: f.opcode,
                        data: payload,
                        compressed: false,
                        offset,
                    });
                    continue;
                };
                p.fragments += 1;
                if p.fragments > FRAGMENTS_MAX {
                    if !p.cut {
                        parsed.problems.push(format!(
                            "a websocket message at byte {} has more than {FRAGMENTS_MAX} fragments; the rest is not scanned",
                            p.offset
                        ));
                    }
                    p.cut = true;
                } else if !unmask_into(&mut p.data, f.payload, f.mask) && !p.cut {
                    p.cut = true;
                    parsed.problems.push(format!(
                        "a websocket message at byte {} is longer than {MESSAGE_BYTES_MAX} bytes; the rest is not scanned",
                        p.offset
                    ));
                }
            } else {
                if let Some(p) = pending.take() {
                    parsed.problems.push(format!(
                        "a websocket message at byte {} ends without its final fragment",
                        p.offset
                    ));
                    self.finish(p, parsed);
                }
                let mut p = Pending {
                    opcode: f.opcode,
                    compressed: f.rsv1,
                    offset,
                    data: Vec::with_capacity(f.payload.len()),
                    fragments: 1,
                    cut: false,
                };
                if !unmask_into(&mut p.data, f.payload, f.mask) {
                    p.cut = true;
                    parsed.problems.push(format!(
                        "a websocket message at byte {offset} is longer than {MESSAGE_BYTES_MAX} bytes; the rest is not scanned"
                    ));
                }
                *pending = Some(p);
            }
            if f.fin
                && let Some(p) = pending.take()
            {
                self.finish(p, parsed);
            }
        }
    }

    fn carry_frame(&mut self, bytes: &[u8]) {
        self.carry.get_or_insert_with(Box::default).frame = bytes.to_vec();
    }

    /// Inflates a joined message if it was compressed and hands it over.
    fn finish(&mut self, mut p: Pending, parsed: &mut Parsed) {
        if p.compressed {
            match self.deflate {
                Deflate::Off => {
                    parsed.problems.push(format!(
                        "a websocket message at byte {} is marked compressed (rsv1) but no compression was negotiated; scanned as sent",
                        p.offset
                    ));
                    p.compressed = false;
                }
                Deflate::On {
                    no_context_takeover,
                } => match self.inflate(&p.data, no_context_takeover) {
                    Ok((data, cut)) => {
                        if cut {
                            parsed.problems.push(format!(
                                "a websocket message at byte {} inflates to more than {MESSAGE_BYTES_MAX} bytes; the rest is not scanned",
                                p.offset
                            ));
                        }
                        p.data = data;
                    }
                    Err(problem) => {
                        parsed.problems.push(format!(
                            "a websocket message at byte {}: {problem}; scanned as sent",
                            p.offset
                        ));
                        p.compressed = false;
                    }
                },
            }
        }
        parsed.messages.push(Message {
            opcode: p.opcode,
            data: p.data,
            compressed: p.compressed,
            offset: p.offset,
        });
    }

    /// Inflates one message's payload (RFC 7692 section 7.2.2: the sender removed the final
    /// `00 00 ff ff` of a sync flush; we put it back). The output and whether it was cut at
    /// [`MESSAGE_BYTES_MAX`].
    fn inflate(
        &mut self,
        data: &[u8],
        no_context_takeover: bool,
    ) -> Result<(Vec<u8>, bool), String> {
        if self.inflater_broken {
            return Err("an earlier message of this direction did not inflate, and the compression context carries over".into());
        }
        if no_context_takeover {
            self.inflater = None;
        }
        let inflater = self.inflater.get_or_insert_with(|| Decompress::new(false));
        let mut out: Vec<u8> =
            Vec::with_capacity(data.len().saturating_mul(3).min(MESSAGE_BYTES_MAX));
        let tail = [0x00, 0x00, 0xff, 0xff];
        for input in [data, &tail[..]] {
            let mut input = input;
            loop {
                if out.len() >= MESSAGE_BYTES_MAX {
                    // The context is now behind the sender's: later messages cannot inflate.
                    self.inflater_broken = !no_context_takeover;
                    // `reserve_exact` may still give more room than asked for.
                    out.truncate(MESSAGE_BYTES_MAX);
                    return Ok((out, true));
                }
                if out.capacity() == out.len() {
                    out.reserve_exact((out.len().max(4096)).min(MESSAGE_BYTES_MAX - out.len()));
                }
                let before_in = inflater.total_in();
                let before_out = inflater.total_out();
                let status = inflater.decompress_vec(input, &mut out, FlushDecompress::Sync);
                let read = (inflater.total_in() - before_in) as usize;
                let wrote = inflater.total_out() - before_out;
                input = &input[read.min(input.len())..];
                match status {
                    Err(e) => {
                        self.inflater_broken = !no_context_takeover;
                        self.inflater = None;
                        return Err(format!("permessage-deflate data does not inflate ({e})"));
                    }
                    Ok(Status::StreamEnd) => {
                        // A final deflate block: the sender starts a new context next time.
                        self.inflater = None;
                        return Ok((out, false));
                    }
                    Ok(_) => {
                        if input.is_empty() && out.len() < out.capacity() {
                            break;
                        }
                        if read == 0 && wrote == 0 && out.len() < out.capacity() {
                            break;
                        }
                    }
                }
            }
        }
        Ok((out, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frame_bytes(
        fin: bool,
        rsv1: bool,
        opcode: u8,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                f.extend_from_slice(&key);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    /// Raw deflate with a sync flush, the trailing `00 00 ff ff` removed, as a sender does.
    fn compress(compressor: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        compressor
            .compress_vec(data, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn handshake_headers() {
        let request = b"Host: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(is_upgrade_request(request));
        assert!(!is_upgrade_request(b"Upgrade: h2c\r\n"));
        let head = b"Upgrade: websocket\r\nx-other: 1\r\nsec-websocket-extensions: permessage-deflate; client_no_context_takeover\r\n\r\n";
        let ext = accepted_upgrade(b"HTTP/1.1 101 Switching Protocols\r", head).unwrap();
        assert!(ext.client_no_context_takeover);
        assert!(!ext.server_no_context_takeover);
        assert_eq!(accepted_upgrade(b"HTTP/1.1 200 OK", head), None);
        let plain = accepted_upgrade(b"HTTP/1.1 101 x", b"Upgrade: websocket\r\n").unwrap();
        assert_eq!(plain, Extensions::default());
    }

    #[test]
    fn masked_fragments_with_a_ping_between_are_joined() {
        let key = Some([1, 2, 3, 4]);
        let mut data = frame_bytes(false, false, 1, b"{\"imei\":\"3569", key);
        data.extend(frame_bytes(true, false, 9, b"ping!", key));
        data.extend(frame_bytes(false, false, 0, b"38035", key));
        data.extend(frame_bytes(true, false, 0, b"643809\"}", key));
        let parsed = Direction::new(Deflate::Off).parse(&data);
        assert_eq!(parsed.problems, Vec::<String>::new());
        assert_eq!(parsed.consumed, data.len());
        assert_eq!(parsed.messages.len(), 2);
        assert_eq!(parsed.messages[0].opcode, Opcode::PING);
        assert_eq!(parsed.messages[0].data, b"ping!");
        assert_eq!(parsed.messages[1].opcode, Opcode::TEXT);
        assert_eq!(parsed.messages[1].data, b"{\"imei\":\"356938035643809\"}");
        assert_eq!(parsed.messages[1].offset, 0);
    }

    /// `data` cut into pieces of the sizes in `sizes` (cycled), each but the last given to
    /// `parse_more`: the messages (opcode, data) and whether any problem was recorded.
    fn in_pieces(
        deflate: Deflate,
        data: &[u8],
        sizes: &[usize],
    ) -> (Vec<(Opcode, Vec<u8>)>, Vec<String>) {
        let mut d = Direction::new(deflate);
        let (mut messages, mut problems) = (Vec::new(), Vec::new());
        let mut at = 0;
        for size in sizes.iter().cycle() {
            let end = (at + size).min(data.len());
            let parsed = if end == data.len() {
                d.parse(&data[at..end])
            } else {
                d.parse_more(&data[at..end])
            };
            messages.extend(parsed.messages.into_iter().map(|m| (m.opcode, m.data)));
            problems.extend(parsed.problems);
            at = end;
            if at == data.len() {
                break;
            }
        }
        (messages, problems)
    }

    /// A stream cut anywhere into pieces reads as it does whole: frames completed across the
    /// cut, fragments joined, the deflate context kept.
    #[test]
    fn a_stream_in_pieces_reads_as_it_does_whole() {
        let key = Some([9, 8, 7, 6]);
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let first = compress(&mut c, b"{\"imei\":\"356938035643809\"}");
        let (a, b) = first.split_at(first.len() / 2);
        let mut data = frame_bytes(false, true, 1, a, key);
        data.extend(frame_bytes(true, false, 9, b"ping", key));
        data.extend(frame_bytes(true, false, 0, b, key));
        let long: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        data.extend(frame_bytes(true, true, 2, &compress(&mut c, &long), key));
        data.extend(frame_bytes(
            true,
            true,
            1,
            &compress(&mut c, b"imsi 404450123456789"),
            key,
        ));
        let deflate = Deflate::On {
            no_context_takeover: false,
        };
        let whole = in_pieces(deflate, &data, &[data.len()]);
        assert_eq!(whole.1, Vec::<String>::new());
        assert_eq!(whole.0.len(), 4);
        assert_eq!(whole.0[1].1, b"{\"imei\":\"356938035643809\"}");
        for sizes in [&[1][..], &[2, 3], &[5, 1000, 1], &[13, 40_000, 7], &[100]] {
            assert_eq!(in_pieces(deflate, &data, sizes), whole, "{sizes:?}");
        }
    }

    /// A frame longer than [`FRAME_CARRY_BYTES_MAX`] cut between pieces: its first part is
    /// scanned, its rest skipped with a problem, the frames after it still read.
    #[test]
    fn a_frame_too_long_to_carry_is_skipped_and_the_next_read() {
        let long = vec![b'x'; FRAME_CARRY_BYTES_MAX + 10];
        let mut data = frame_bytes(true, false, 2, &long, None);
        data.extend(frame_bytes(true, false, 1, b"imsi 404450123456789", None));
        for sizes in [&[1000][..], &[3, FRAME_CARRY_BYTES_MAX]] {
            let (messages, problems) = in_pieces(Deflate::Off, &data, sizes);
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("cut between two pieces")),
                "{problems:?}"
            );
            assert_eq!(
                messages.last().map(|m| &m.1[..]),
                Some(&b"imsi 404450123456789"[..])
            );
        }
    }

    #[test]
    fn lengths_of_16_and_64_bits() {
        let long = vec![b'a'; 70_000];
        let mut data = frame_bytes(true, false, 2, &long[..300], None);
        data.extend(frame_bytes(true, false, 2, &long, None));
        let parsed = Direction::new(Deflate::Off).parse(&data);
        assert_eq!(parsed.messages[0].data.len(), 300);
        assert_eq!(parsed.messages[1].data.len(), 70_000);
        assert_eq!(parsed.messages[1].offset, 304);
    }

    #[test]
    fn context_takeover_needs_the_previous_message() {
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let one = compress(&mut c, b"imei=356938035643809");
        // The second message refers back to the first's window.
        let two = compress(&mut c, b"imei=356938035643809");
        let mut data = frame_bytes(true, true, 1, &one, Some([9, 9, 9, 9]));
        data.extend(frame_bytes(true, true, 1, &two, Some([7, 7, 7, 7])));
        let ext = Extensions::parse("permessage-deflate; client_max_window_bits=15");
        let parsed = Direction::new(ext.deflate_for(true)).parse(&data);
        assert_eq!(parsed.problems, Vec::<String>::new());
        assert_eq!(parsed.messages[0].data, b"imei=356938035643809");
        assert_eq!(parsed.messages[1].data, b"imei=356938035643809");
        assert!(parsed.messages[1].compressed);
        assert!(two.len() < one.len(), "the second is a back reference");
    }

    #[test]
    fn no_context_takeover_resets_the_window() {
        let mut data = Vec::new();
        for _ in 0..2 {
            let mut c = flate2::Compress::new(flate2::Compression::default(), false);
            data.extend(frame_bytes(
                true,
                true,
                2,
                &compress(&mut c, b"356938035643809"),
                None,
            ));
        }
        let ext = Extensions::parse("x-other, permessage-deflate; server_no_context_takeover");
        assert_eq!(
            ext.deflate_for(false),
            Deflate::On {
                no_context_takeover: true
            }
        );
        assert_eq!(
            ext.deflate_for(true),
            Deflate::On {
                no_context_takeover: false
            }
        );
        let parsed = Direction::new(ext.deflate_for(false)).parse(&data);
        assert_eq!(parsed.problems, Vec::<String>::new());
        assert!(parsed.messages.iter().all(|m| m.data == b"356938035643809"));
    }

    #[test]
    fn a_compressed_message_may_be_fragmented() {
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let z = compress(&mut c, b"{\"phone\":\"+919876543210\"}");
        let (a, b) = z.split_at(z.len() / 2);
        let mut data = frame_bytes(false, true, 1, a, None);
        data.extend(frame_bytes(true, false, 0, b, None));
        let parsed = Direction::new(Deflate::On {
            no_context_takeover: false,
        })
        .parse(&data);
        assert_eq!(parsed.messages[0].data, b"{\"phone\":\"+919876543210\"}");
    }

    #[test]
    fn rsv1_without_negotiation_and_garbage_deflate_are_problems() {
        let data = frame_bytes(true, true, 1, b"plain", None);
        let parsed = Direction::new(Deflate::Off).parse(&data);
        assert_eq!(parsed.messages[0].data, b"plain");
        assert_eq!(parsed.problems.len(), 1);
        let mut d = Direction::new(Deflate::On {
            no_context_takeover: false,
        });
        let parsed = d.parse(&frame_bytes(true, true, 1, &[0xff; 16], None));
        assert_eq!(parsed.messages[0].data, [0xff; 16]);
        assert!(
            parsed.problems[0].contains("does not inflate"),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn message_bytes_max_cuts_a_message_and_a_bomb() {
        let big = vec![b'x'; MESSAGE_BYTES_MAX / 2 + 1];
        let mut data = frame_bytes(false, false, 2, &big, None);
        data.extend(frame_bytes(true, false, 0, &big, None));
        let parsed = Direction::new(Deflate::Off).parse(&data);
        assert_eq!(parsed.messages[0].data.len(), MESSAGE_BYTES_MAX);
        assert!(parsed.problems[0].contains("longer than"));

        let zeros = vec![0_u8; MESSAGE_BYTES_MAX + 1000];
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&zeros).unwrap();
        let bomb = e.finish().unwrap();
        let parsed = Direction::new(Deflate::On {
            no_context_takeover: true,
        })
        .parse(&frame_bytes(true, true, 2, &bomb, None));
        assert_eq!(parsed.messages[0].data.len(), MESSAGE_BYTES_MAX);
        assert!(
            parsed.problems[0].contains("inflates to more than"),
            "{:?}",
            parsed.problems
        );
    }

    #[test]
    fn frames_max_stops_the_stream() {
        let one = frame_bytes(true, false, 2, b"", None);
        let data = one.repeat(FRAMES_MAX + 2);
        let parsed = Direction::new(Deflate::Off).parse(&data);
        assert_eq!(parsed.messages.len(), FRAMES_MAX);
        assert!(parsed.problems[0].contains("more than"));
    }

    #[test]
    fn truncated_frames_do_not_panic() {
        let data = frame_bytes(true, false, 1, b"hello world", Some([1, 2, 3, 4]));
        for end in 0..data.len() {
            let parsed = Direction::new(Deflate::On {
                no_context_takeover: false,
            })
            .parse(&data[..end]);
            assert!(parsed.consumed <= end);
        }
        // A 64-bit length no capture holds.
        let huge = [
            0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2,
        ];
        let parsed = Direction::new(Deflate::Off).parse(&huge);
        assert_eq!(parsed.messages[0].data, [1, 2]);
    }
}
