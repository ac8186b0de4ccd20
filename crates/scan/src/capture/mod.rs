//! Capture files: pcap, pcapng (any number of interfaces) and HAR, read as a stream of frames.

pub mod har;

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use pcap_parser::nom;
use pcap_parser::{LegacyPcapBlock, PcapBlockOwned, PcapError, pcap, pcapng, pcapng::Block};

use crate::ScanError;
use crate::network::packet::LinkType;

/// Bytes of one read buffer; a larger block gets a larger one, up to [`READ_BUFFER_BYTES_MAX`].
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
    read_items_shared(path, file, |item, done, _| on_item(item, done), warnings)
}

/// A read buffer that frames and secrets are borrowed from, shared with the threads that scan
/// them (see `shard.rs`): a thread keeps it alive while it holds ranges into it.
pub type SharedBuffer = Arc<Vec<u8>>;

/// Most buffers [`read_items_shared`] keeps for reuse once nobody else holds them.
const POOLED_READ_BUFFERS_MAX: usize = 64;

/// Read buffers no longer read from here, reused once every other holder dropped them: a
/// fresh megabyte per read costs page faults and zeroing again and again.
#[derive(Default)]
struct ReadBuffers {
    retired: VecDeque<SharedBuffer>,
}

impl ReadBuffers {
    /// A buffer of exactly `size` bytes (old contents, or zeros).
    fn take(&mut self, size: usize) -> Vec<u8> {
        let free = self
            .retired
            .iter()
            .position(|b| b.len() == size && Arc::strong_count(b) == 1);
        let mut buffer = free
            .and_then(|i| self.retired.remove(i))
            .and_then(|b| Arc::try_unwrap(b).ok())
            .unwrap_or_default();
        buffer.resize(size, 0);
        buffer
    }

    fn retire(&mut self, buffer: SharedBuffer) {
        if self.retired.len() >= POOLED_READ_BUFFERS_MAX {
            self.retired.pop_front();
        }
        self.retired.push_back(buffer);
    }
}

/// Fills `buffer[from..]` from `file` as far as it goes: the end of the filled part, which is
/// short of the buffer's end only at the end of the file.
fn fill(file: &mut impl Read, buffer: &mut [u8], mut from: usize) -> std::io::Result<usize> {
    while from < buffer.len() {
        match file.read(&mut buffer[from..]) {
            Ok(0) => break,
            Ok(n) => from += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(from)
}

/// pcap-parser's parser of one legacy pcap record, of the file's byte order and format.
type LegacyParse = fn(&[u8]) -> nom::IResult<&[u8], LegacyPcapBlock<'_>, PcapError<&[u8]>>;

/// How the blocks of the file are parsed, from its header.
enum Blocks {
    Legacy(LegacyParse),
    Ng { big_endian: bool },
}

/// As [`read_items`], and also hands over the buffer each item is borrowed from, so that a
/// caller can keep ranges of it instead of copying them. The file is read in buffers of
/// [`READ_BUFFER_BYTES`] (larger, up to [`READ_BUFFER_BYTES_MAX`], for a larger block); a block
/// cut by the end of a buffer is copied to the start of the next.
///
/// # Errors
/// As [`read_frames`].
pub fn read_items_shared(
    path: &Path,
    mut file: impl Read + Send,
    mut on_item: impl FnMut(Item<'_>, u64, &SharedBuffer),
    warnings: &mut Vec<String>,
) -> Result<(), ScanError> {
    let fail = |message: String| ScanError::Capture {
        path: path.to_owned(),
        message,
    };
    let read_error = |e: std::io::Error| fail(format!("read error: {e}"));
    let mut buffers = ReadBuffers::default();
    let mut first = buffers.take(READ_BUFFER_BYTES);
    let mut filled = fill(&mut file, &mut first, 0).map_err(read_error)?;
    let mut eof = filled < first.len();
    let mut buffer: SharedBuffer = Arc::new(first);
    if filled == 0 {
        return Err(fail(describe(&PcapError::<&[u8]>::Eof)));
    }
    // The file's offset of `buffer[0]`, and where the next block starts in `buffer`.
    let mut base: u64 = 0;
    let mut pos = 0;
    let mut legacy_link = LinkType::ETHERNET;
    let mut legacy_nanos = false;
    let mut blocks = if pcapng::parse_sectionheaderblock(&buffer[..filled]).is_ok() {
        Blocks::Ng { big_endian: false }
    } else {
        match pcap::parse_pcap_header(&buffer[..filled]) {
            Ok((rest, header)) => {
                legacy_link = LinkType(u32::try_from(header.network.0).unwrap_or(u32::MAX));
                legacy_nanos = header.is_nanosecond_precision();
                pos = filled - rest.len();
                Blocks::Legacy(if header.is_modified_format() {
                    pcap::parse_pcap_frame_modified
                } else if header.is_bigendian() {
                    pcap::parse_pcap_frame_be
                } else {
                    pcap::parse_pcap_frame
                })
            }
            Err(nom::Err::Incomplete(needed)) => {
                let n = match needed {
                    nom::Needed::Size(n) => n.get(),
                    nom::Needed::Unknown => 0,
                };
                return Err(fail(describe(&PcapError::<&[u8]>::Incomplete(n))));
            }
            Err(_) => return Err(fail(describe(&PcapError::<&[u8]>::HeaderNotRecognized))),
        }
    };
    let mut interfaces: Vec<Interface> = Vec::new();
    loop {
        let data = &buffer[pos..filled];
        if data.is_empty() && eof {
            return Ok(());
        }
        let consumed = base + pos as u64;
        let parsed = match &mut blocks {
            Blocks::Legacy(parse) => {
                parse(data).map(|(rest, b)| (data.len() - rest.len(), PcapBlockOwned::from(b)))
            }
            Blocks::Ng { big_endian } => {
                let parse = if *big_endian {
                    pcapng::parse_block_be
                } else {
                    pcapng::parse_block_le
                };
                parse(data).map(|(rest, b)| {
                    if let Block::SectionHeader(shb) = &b {
                        *big_endian = shb.big_endian();
                    }
                    (data.len() - rest.len(), PcapBlockOwned::from(b))
                })
            }
        };
        let needed = match parsed {
            Ok((length, block)) => {
                let done = consumed + length as u64;
                match block {
                    PcapBlockOwned::LegacyHeader(_) => {}
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
                        let frame = Frame {
                            link: legacy_link,
                            time_us: i64::from(packet.ts_sec) * 1_000_000 + micros,
                            data,
                        };
                        on_item(Item::Frame(frame), done, &buffer);
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
                            let frame = Frame {
                                link: interface.link,
                                time_us,
                                data,
                            };
                            on_item(Item::Frame(frame), done, &buffer);
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        if let Some(interface) = interfaces.first() {
                            let data = spb.data.get(..spb.origlen as usize).unwrap_or(spb.data);
                            let frame = Frame {
                                link: interface.link,
                                time_us: 0,
                                data,
                            };
                            on_item(Item::Frame(frame), done, &buffer);
                        }
                    }
                    PcapBlockOwned::NG(Block::DecryptionSecrets(dsb)) => {
                        let len = usize::try_from(dsb.secrets_len).unwrap_or(usize::MAX);
                        let data = dsb.data.get(..len).unwrap_or(dsb.data);
                        let item = Item::Secrets {
                            kind: dsb.secrets_type.0,
                            data,
                        };
                        on_item(item, done, &buffer);
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                // A parser that took nothing would loop forever; none does.
                pos += length.max(1);
                continue;
            }
            Err(nom::Err::Incomplete(nom::Needed::Size(n))) => n.get(),
            Err(nom::Err::Incomplete(nom::Needed::Unknown)) => 1,
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => match e {
                PcapError::Eof => return Ok(()),
                PcapError::Incomplete(n) => n.max(1),
                PcapError::UnexpectedEof => 0,
                PcapError::ReadError => return Err(fail(format!("read error at byte {consumed}"))),
                e => {
                    warnings.push(format!(
                        "{}: capture is malformed at byte {consumed} ({}); findings are from the packets before it",
                        path.display(),
                        describe(&e)
                    ));
                    return Ok(());
                }
            },
        };
        if eof || needed == 0 {
            warnings.push(format!(
                "{}: capture ends inside a block at byte {consumed}; findings are from the packets before it",
                path.display()
            ));
            return Ok(());
        }
        // The block goes past the end of this buffer: it starts the next one.
        let have = filled - pos;
        let need = have.saturating_add(needed);
        if need >= READ_BUFFER_BYTES_MAX {
            warnings.push(format!(
                "{}: a block at byte {consumed} is larger than {READ_BUFFER_BYTES_MAX} bytes; the rest of the capture is skipped",
                path.display()
            ));
            return Ok(());
        }
        let size = need
            .next_power_of_two()
            .clamp(READ_BUFFER_BYTES, READ_BUFFER_BYTES_MAX);
        let mut next = buffers.take(size);
        next[..have].copy_from_slice(&buffer[pos..filled]);
        filled = fill(&mut file, &mut next, have).map_err(read_error)?;
        eof = filled < next.len();
        buffers.retire(std::mem::replace(&mut buffer, Arc::new(next)));
        base += pos as u64;
        pos = 0;
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
