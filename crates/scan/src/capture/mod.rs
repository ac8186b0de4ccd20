//! Capture files: pcap, pcapng (any number of interfaces) and HAR, read as a stream of frames.

pub mod har;

use std::io::Read;
use std::path::Path;

use pcap_parser::{PcapBlockOwned, PcapError, pcapng::Block};

use crate::ScanError;
use crate::network::packet::LinkType;

/// Bytes the pcap reader buffers; it grows up to [`READ_BUFFER_BYTES_MAX`] for a larger block.
pub const READ_BUFFER_BYTES: usize = 1 << 20;
/// Largest block we accept in a pcap or pcapng file (a frame plus its header).
pub const READ_BUFFER_BYTES_MAX: usize = 64 << 20;
/// Most interfaces one pcapng file may declare.
pub const INTERFACES_MAX: usize = 1024;

/// What kind of file a capture is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    Pcap,
    Pcapng,
    Har,
}

impl CaptureFormat {
    /// # Errors
    /// When the bytes are not the start of a pcap, pcapng or HAR (JSON) file.
    pub fn detect(path: &Path, head: &[u8]) -> Result<CaptureFormat, ScanError> {
        let magic = head.get(..4).map(|m| [m[0], m[1], m[2], m[3]]);
        match magic {
            Some([0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4])
            | Some([0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d]) => {
                return Ok(CaptureFormat::Pcap);
            }
            Some([0x0a, 0x0d, 0x0d, 0x0a]) => return Ok(CaptureFormat::Pcapng),
            _ => {}
        }
        let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
        if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return Ok(CaptureFormat::Har);
        }
        Err(ScanError::UnknownCaptureFormat {
            path: path.to_owned(),
            magic: head.iter().take(8).copied().collect(),
        })
    }
}

/// One captured frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub link: LinkType,
    /// Microseconds since the Unix epoch.
    pub time_us: i64,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_s: i64,
}

/// pcapng Decryption Secrets Block secrets type of a TLS key log ("TLSK").
pub const SECRETS_TYPE_TLS_KEY_LOG: u32 = 0x544c_534b;

/// What a capture holds besides frames: secrets embedded in it.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Frame(Frame<'a>),
    /// A pcapng Decryption Secrets Block: its secrets type and its data (unpadded).
    Secrets {
        kind: u32,
        data: &'a [u8],
    },
}

/// Reads every frame of a pcap or pcapng stream and hands it to `on_frame` together with the
/// number of file bytes consumed so far. A file that ends inside a block or turns malformed
/// stops there with a warning: what came before is kept.
///
/// # Errors
/// When the header is not recognised or a read fails.
pub fn read_frames(
    path: &Path,
    file: impl Read + Send,
    mut on_frame: impl FnMut(Frame<'_>, u64),
    warnings: &mut Vec<String>,
) -> Result<(), ScanError> {
    read_items(
        path,
        file,
        |item, done| {
            if let Item::Frame(frame) = item {
                on_frame(frame, done);
            }
        },
        warnings,
    )
}

/// As [`read_frames`], and also hands over the Decryption Secrets Blocks of a pcapng.
///
/// # Errors
/// As [`read_frames`].
pub fn read_items(
    path: &Path,
    file: impl Read + Send,
    mut on_item: impl FnMut(Item<'_>, u64),
    warnings: &mut Vec<String>,
) -> Result<(), ScanError> {
    let fail = |message: String| ScanError::Capture {
        path: path.to_owned(),
        message,
    };
    let mut reader =
        pcap_parser::create_reader(READ_BUFFER_BYTES, file).map_err(|e| fail(describe(&e)))?;
    let mut buffer_bytes = READ_BUFFER_BYTES;
    let mut legacy_link = LinkType::ETHERNET;
    let mut legacy_nanos = false;
    let mut interfaces: Vec<Interface> = Vec::new();
    loop {
        let consumed = reader.consumed() as u64;
        match reader.next() {
            Ok((length, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        legacy_link = LinkType(u32::try_from(header.network.0).unwrap_or(u32::MAX));
                        legacy_nanos = header.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(packet) => {
                        let fraction = i64::from(packet.ts_usec);
                        let micros = if legacy_nanos {
                            fraction / 1000
                        } else {
                            fraction
                        };
                        let data = packet
                            .data
                            .get(..packet.caplen as usize)
                            .unwrap_or(packet.data);
                        on_item(
                            Item::Frame(Frame {
                                link: legacy_link,
                                time_us: i64::from(packet.ts_sec) * 1_000_000 + micros,
                                data,
                            }),
                            consumed + length as u64,
                        );
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        if interfaces.len() >= INTERFACES_MAX {
                            warnings.push(format!(
                                "{}: more than {INTERFACES_MAX} interfaces; packets of the others are skipped",
                                path.display()
                            ));
                        } else {
                            interfaces.push(Interface {
                                link: LinkType(u32::from(idb.linktype.0 as u16)),
                                resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset_s: idb.ts_offset(),
                            });
                        }
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        if let Some(interface) = interfaces.get(epb.if_id as usize) {
                            let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let seconds = ticks / interface.resolution;
                            let fraction = ticks % interface.resolution;
                            let micros =
                                u128::from(fraction) * 1_000_000 / u128::from(interface.resolution);
                            let time_us = i64::try_from(seconds)
                                .unwrap_or(i64::MAX / 2_000_000)
                                .saturating_add(interface.offset_s)
                                .saturating_mul(1_000_000)
                                .saturating_add(micros as i64);
                            let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                            on_item(
                                Item::Frame(Frame {
                                    link: interface.link,
                                    time_us,
                                    data,
                                }),
                                consumed + length as u64,
                            );
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        if let Some(interface) = interfaces.first() {
                            let data = spb.data.get(..spb.origlen as usize).unwrap_or(spb.data);
                            on_item(
                                Item::Frame(Frame {
                                    link: interface.link,
                                    time_us: 0,
                                    data,
                                }),
                                consumed + length as u64,
                            );
                        }
                    }
                    PcapBlockOwned::NG(Block::DecryptionSecrets(dsb)) => {
                        let len = usize::try_from(dsb.secrets_len).unwrap_or(usize::MAX);
                        let data = dsb.data.get(..len).unwrap_or(dsb.data);
                        on_item(
                            Item::Secrets {
                                kind: dsb.secrets_type.0,
                                data,
                            },
                            consumed + length as u64,
                        );
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                // `consume` would move the unread rest of the buffer to its start every time
                // half of it is read, copying most of the file a second time; `refill` shifts
                // anyway, and only a few bytes are left unread when it is called.
                reader.consume_noshift(length);
            }
            Err(PcapError::Eof) => return Ok(()),
            Err(PcapError::Incomplete(_)) => {
                reader.refill().map_err(|e| fail(describe(&e)))?;
            }
            Err(PcapError::BufferTooSmall) => {
                if buffer_bytes >= READ_BUFFER_BYTES_MAX {
                    warnings.push(format!(
                        "{}: a block at byte {consumed} is larger than {READ_BUFFER_BYTES_MAX} bytes; the rest of the capture is skipped",
                        path.display()
                    ));
                    return Ok(());
                }
                buffer_bytes *= 2;
                if !reader.grow(buffer_bytes) {
                    return Err(fail(format!(
                        "cannot grow the read buffer to {buffer_bytes} bytes"
                    )));
                }
                reader.refill().map_err(|e| fail(describe(&e)))?;
            }
            Err(PcapError::UnexpectedEof) => {
                warnings.push(format!(
                    "{}: capture ends inside a block at byte {consumed}; findings are from the packets before it",
                    path.display()
                ));
                return Ok(());
            }
            Err(PcapError::ReadError) => {
                return Err(fail(format!("read error at byte {consumed}")));
            }
            Err(e) => {
                warnings.push(format!(
                    "{}: capture is malformed at byte {consumed} ({}); findings are from the packets before it",
                    path.display(),
                    describe(&e)
                ));
                return Ok(());
            }
        }
    }
}

/// A pcap-parser error without the input bytes it may carry.
fn describe<I>(error: &PcapError<I>) -> String {
    match error {
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => "block larger than the read buffer".into(),
        PcapError::UnexpectedEof => "file ends inside a block".into(),
        PcapError::ReadError => "read error".into(),
        PcapError::Incomplete(n) => format!("incomplete block, {n} more bytes needed"),
        PcapError::HeaderNotRecognized => "file header not recognised".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("parse error {kind:?}")
        }
    }
}
