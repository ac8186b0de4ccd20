//! QUIC frames (RFC 9000 19) in a decrypted packet payload: the ones whose content we need
//! (CRYPTO, STREAM, NEW_CONNECTION_ID, CONNECTION_CLOSE) are handed out, the others skipped by
//! their length. A frame type we do not know ends the packet: its length is unknown.

use crate::quic::packet::{CID_BYTES_MAX, Reader};

/// A frame we use, borrowing from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Crypto {
        offset: u64,
        data: &'a [u8],
    },
    Stream {
        id: u64,
        offset: u64,
        data: &'a [u8],
        fin: bool,
    },
    NewConnectionId {
        cid: &'a [u8],
    },
    ConnectionClose {
        code: u64,
        reason: &'a [u8],
    },
}

/// Why the rest of a payload was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame type 0x{kind:x} at byte {at} is not one quic defines")]
    Unknown { kind: u64, at: usize },
    #[error("frame type 0x{kind:x} at byte {at} is cut short")]
    Truncated { kind: u64, at: usize },
}

/// Calls `on` for each frame we use in `payload`, in order.
///
/// # Errors
/// At the first frame that is unknown or cut short; the frames before it were handed out.
pub fn frames<'a>(payload: &'a [u8], on: &mut dyn FnMut(Frame<'a>)) -> Result<(), FrameError> {
    let mut r = Reader::new(payload);
    while !r.is_empty() {
        let at = r.at;
        let kind = r.varint().ok_or(FrameError::Truncated { kind: 0, at })?;
        let cut = FrameError::Truncated { kind, at };
        match kind {
            0x00 | 0x01 | 0x1e => {} // PADDING, PING, HANDSHAKE_DONE
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, ranges, ECN counts.
                r.varint().ok_or(cut)?;
                r.varint().ok_or(cut)?;
                let ranges = r.varint().ok_or(cut)?;
                r.varint().ok_or(cut)?;
                // Each range is at least two bytes: a count beyond the payload is malformed,
                // and checking it first bounds the loop.
                if ranges > (payload.len() as u64) {
                    return Err(cut);
                }
                for _ in 0..ranges * 2 {
                    r.varint().ok_or(cut)?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        r.varint().ok_or(cut)?;
                    }
                }
            }
            0x04 => {
                // RESET_STREAM: id, error, final size.
                for _ in 0..3 {
                    r.varint().ok_or(cut)?;
                }
            }
            0x05 | 0x11 | 0x15 => {
                // STOP_SENDING, MAX_STREAM_DATA, STREAM_DATA_BLOCKED: two varints.
                r.varint().ok_or(cut)?;
                r.varint().ok_or(cut)?;
            }
            0x06 => {
                let offset = r.varint().ok_or(cut)?;
                let data = r.varint_bytes().ok_or(cut)?;
                on(Frame::Crypto { offset, data });
            }
            0x07 => {
                r.varint_bytes().ok_or(cut)?; // NEW_TOKEN
            }
            0x08..=0x0f => {
                let id = r.varint().ok_or(cut)?;
                let offset = if kind & 0x04 != 0 {
                    r.varint().ok_or(cut)?
                } else {
                    0
                };
                let data = if kind & 0x02 != 0 {
                    r.varint_bytes().ok_or(cut)?
                } else {
                    let rest = r.rest();
                    r.at = payload.len();
                    rest
                };
                on(Frame::Stream {
                    id,
                    offset,
                    data,
                    fin: kind & 0x01 != 0,
                });
            }
            0x10 | 0x12 | 0x13 | 0x14 | 0x16 | 0x17 | 0x19 => {
                r.varint().ok_or(cut)?;
            }
            0x18 => {
                // NEW_CONNECTION_ID: sequence, retire prior to, length, id, reset token.
                r.varint().ok_or(cut)?;
                r.varint().ok_or(cut)?;
                let len = usize::from(r.u8().ok_or(cut)?);
                if len == 0 || len > CID_BYTES_MAX {
                    return Err(cut);
                }
                let cid = r.take(len).ok_or(cut)?;
                r.take(16).ok_or(cut)?;
                on(Frame::NewConnectionId { cid });
            }
            0x1a | 0x1b => {
                r.take(8).ok_or(cut)?; // PATH_CHALLENGE, PATH_RESPONSE
            }
            0x1c | 0x1d => {
                let code = r.varint().ok_or(cut)?;
                if kind == 0x1c {
                    r.varint().ok_or(cut)?; // the frame type that caused it
                }
                let reason = r.varint_bytes().ok_or(cut)?;
                on(Frame::ConnectionClose { code, reason });
            }
            0x30 => {
                // DATAGRAM without a length (RFC 9221): the rest of the packet.
                r.at = payload.len();
            }
            0x31 => {
                r.varint_bytes().ok_or(cut)?;
            }
            _ => return Err(FrameError::Unknown { kind, at }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(payload: &[u8]) -> (Vec<Frame<'_>>, Result<(), FrameError>) {
        let mut out = Vec::new();
        let result = frames(payload, &mut |f| out.push(f));
        (out, result)
    }

    #[test]
    fn frames_we_use_come_out_and_others_are_skipped() {
        let mut p = vec![0x00, 0x00, 0x01]; // padding, ping
        p.extend_from_slice(&[0x02, 5, 0, 1, 0, 1, 2]); // ack with one more range
        p.extend_from_slice(&[0x06, 0, 3, b'a', b'b', b'c']); // crypto at 0
        p.extend_from_slice(&[0x10, 0x44, 0x00]); // max_data (2-byte varint)
        p.extend_from_slice(&[0x18, 1, 0, 2, 0xaa, 0xbb]);
        p.extend_from_slice(&[0x55; 16]);
        p.extend_from_slice(&[0x1d, 0, 2, b'o', b'k']);
        p.extend_from_slice(&[0x0f, 4, 0x40, 10, 2, b'h', b'i']); // stream 4, off 10, len, fin
        p.extend_from_slice(&[0x08, 8, b'r', b'e', b's', b't']); // stream 8 to the end
        let (out, result) = all(&p);
        assert_eq!(result, Ok(()));
        assert_eq!(
            out,
            [
                Frame::Crypto {
                    offset: 0,
                    data: b"abc"
                },
                Frame::NewConnectionId { cid: &[0xaa, 0xbb] },
                Frame::ConnectionClose {
                    code: 0,
                    reason: b"ok"
                },
                Frame::Stream {
                    id: 4,
                    offset: 10,
                    data: b"hi",
                    fin: true
                },
                Frame::Stream {
                    id: 8,
                    offset: 0,
                    data: b"rest",
                    fin: false
                },
            ]
        );
    }

    #[test]
    fn unknown_and_cut_frames_stop_the_packet() {
        let (out, result) = all(&[0x01, 0x21, 0x06, 0, 3]);
        assert!(out.is_empty());
        assert_eq!(result, Err(FrameError::Unknown { kind: 0x21, at: 1 }));
        let (_, result) = all(&[0x06, 0, 3, b'a']);
        assert_eq!(result, Err(FrameError::Truncated { kind: 6, at: 0 }));
        // An ACK announcing more ranges than bytes.
        let (_, result) = all(&[0x02, 0, 0, 0x7f, 0]);
        assert!(result.is_err());
    }
}
