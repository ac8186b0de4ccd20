//! One capture scanned on several threads, with the report a single thread gives, byte for byte.
//!
//! The calling thread reads the capture once and parses link and IP headers (reassembling IP
//! fragments: only the first one has ports). It sends each TCP and UDP payload to the shard that
//! owns its flow, picked by a hash of the unordered endpoint pair, in batches over a bounded
//! channel ([`CHANNEL_BATCHES_MAX`]): a slow shard stops the reader instead of growing memory.
//! Each shard is an [`engine::Session`] that owns its flows outright.
//!
//! What crosses flows stays on the reading thread, in its own session, so that it happens in
//! capture order exactly as with one thread:
//! - DNS (UDP on a DNS port, TCP to or from port 53) is scanned there, and its table of answers
//!   names hosts: the reader looks up the name for the server of each flow a frame opens (and
//!   the destination of each datagram) when it reads the frame, and sends it along.
//! - The open-flow count ([`engine::FLOWS_OPEN_MAX`]): the reader mirrors which flows are open
//!   (the same opening and closing rules as the engine) and tells a shard which flow to close
//!   early, at the frame a single thread would have.
//! - Frame numbers and times, capture statistics, decryption secrets blocks (given to every
//!   shard in stream order; only the reader's session warns about them).
//!
//! Warnings and TLS flows are stamped with the frame (or end-of-capture step) they came from and
//! merged in that order; findings merge by the earliest sighting (capture, time, frame), the rule
//! the engine uses itself. The one bound that is per shard is [`crate::Limits::buffered_bytes_max`]
//! (each shard gets its share): which flow gets scanned in pieces under memory pressure can
//! differ from one thread.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;

use crate::capture;
use crate::engine::{self, CaptureStats, FlowKey, Session, Tally};
use crate::network::packet::{self, PROTO_TCP, PROTO_UDP, TCP_FIN, TCP_RST};
use crate::progress::Progress;
use crate::{ScanError, Scanner};

/// Most threads a scan uses.
pub const THREADS_MAX: usize = 64;
/// Batches in flight to one shard; past this the reader waits (backpressure).
pub const CHANNEL_BATCHES_MAX: usize = 4;
/// Payload bytes in one batch before it is sent.
pub const BATCH_BYTES_MAX: usize = 256 << 10;
/// Payloads (and other work) in one batch before it is sent.
pub const BATCH_ITEMS_MAX: usize = 4096;

const _: () = assert!(BATCH_BYTES_MAX >= 1 << 16);

/// When something happened, in the order a single thread does things: `(0, frame, step)` while
/// frames are read (step 0: a flow closed early to make room; 1: the frame itself; 2: a secrets
/// block after it), `(1, 0, 0)` the reader's own warnings, `(2, order, 0)` the flows still open
/// at the end, closed in the order they opened, `(3, 0, 0)` the IP layer's last word.
type Stamp = (u8, u64, u8);

/// The stamps of the warnings and TLS flows a shard's tally holds, index for index.
#[derive(Default)]
struct Stamps {
    warnings: Vec<Stamp>,
    tls_flows: Vec<Stamp>,
    quic_flows: Vec<Stamp>,
}

impl Stamps {
    fn note(&mut self, tally: &Tally, stamp: Stamp) {
        self.warnings.resize(tally.warnings.list.len(), stamp);
        self.tls_flows.resize(tally.tls_flows.len(), stamp);
        self.quic_flows.resize(tally.quic_flows.len(), stamp);
    }
}

enum Work {
    Payload {
        frame: u64,
        time_us: i64,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        bytes: Bytes,
        dns_hint: Option<Option<String>>,
    },
    Evict {
        frame: u64,
        key: FlowKey,
    },
    Secrets {
        frame: u64,
        kind: u32,
        bytes: Bytes,
    },
}

/// Where a payload of a batch is.
enum Bytes {
    /// In the read buffer the batch holds: most payloads, not copied.
    Shared(Range<usize>),
    /// In the batch's own bytes: what the reader put together itself (a reassembled IP
    /// datagram).
    Owned(Range<usize>),
}

struct Batch {
    /// The read buffer the `Shared` payloads are in; a batch holds payloads of one buffer.
    shared: Option<capture::SharedBuffer>,
    /// Bytes of `Shared` payloads, towards [`BATCH_BYTES_MAX`].
    shared_bytes: usize,
    owned: Vec<u8>,
    work: Vec<Work>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            shared: None,
            shared_bytes: 0,
            owned: Vec::new(),
            work: Vec::with_capacity(BATCH_ITEMS_MAX),
        }
    }

    fn bytes(&self, bytes: Range<usize>, shared: bool) -> &[u8] {
        let data = if shared {
            self.shared.as_deref().map_or(&[][..], Vec::as_slice)
        } else {
            self.owned.as_slice()
        };
        data.get(bytes).unwrap_or_default()
    }

    fn get(&self, bytes: &Bytes) -> &[u8] {
        match bytes {
            Bytes::Shared(range) => self.bytes(range.clone(), true),
            Bytes::Owned(range) => self.bytes(range.clone(), false),
        }
    }
}

/// Where `part` lies in `whole`, if it is a slice of it.
fn range_in(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    // Addresses compared, not dereferenced.
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// The reader's picture of one open TCP flow.
struct OpenFlow {
    client: SocketAddr,
    fin_to_server: bool,
    fin_to_client: bool,
    order: u64,
    /// `None`: the reader's own session (DNS over TCP).
    shard: Option<usize>,
}

struct Outbox {
    batch: Batch,
    send: mpsc::SyncSender<Batch>,
    recycled: mpsc::Receiver<Batch>,
}

impl Outbox {
    fn push(&mut self, work: Work) -> Result<(), ()> {
        self.batch.work.push(work);
        if self.batch.shared_bytes + self.batch.owned.len() >= BATCH_BYTES_MAX
            || self.batch.work.len() >= BATCH_ITEMS_MAX
        {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ()> {
        if self.batch.work.is_empty() {
            return Ok(());
        }
        let next = self.recycled.try_recv().unwrap_or_else(|_| Batch::new());
        let full = std::mem::replace(&mut self.batch, next);
        // The shard only hangs up when it panicked; the scope re-raises that panic.
        self.send.send(full).map_err(|_| ())
    }

    /// Appends `work` whose payload is `bytes`, the place filled in here: a range of `shared`
    /// when `bytes` lies in it, else a copy.
    fn payload(
        &mut self,
        make: impl FnOnce(Bytes) -> Work,
        bytes: &[u8],
        shared: &capture::SharedBuffer,
    ) {
        let place = match range_in(shared, bytes) {
            Some(range) => {
                let same = self
                    .batch
                    .shared
                    .as_ref()
                    .is_some_and(|b| std::sync::Arc::ptr_eq(b, shared));
                if !same {
                    // A batch holds one read buffer: the one it has goes with it.
                    if self.batch.shared.is_some() && self.flush().is_err() {
                        return;
                    }
                    self.batch.shared = Some(shared.clone());
                }
                self.batch.shared_bytes += bytes.len();
                Bytes::Shared(range)
            }
            None => {
                let at = self.batch.owned.len();
                self.batch.owned.extend_from_slice(bytes);
                Bytes::Owned(at..at + bytes.len())
            }
        };
        let _ = self.push(make(place));
    }
}

/// Notes a FIN or RST of `segment`, sent by `sender`: whether the flow is over (the engine's
/// rule: a reset, or a FIN each way).
fn mark_closing(flow: &mut OpenFlow, segment: &packet::TcpSegment<'_>, sender: SocketAddr) -> bool {
    if segment.flags & TCP_FIN != 0 {
        if sender == flow.client {
            flow.fin_to_server = true;
        } else {
            flow.fin_to_client = true;
        }
    }
    segment.flags & TCP_RST != 0 || (flow.fin_to_server && flow.fin_to_client)
}

/// Whether DNS on these ports is scanned by the reader's session (the engine's own rules: UDP
/// on 53, 5353, 5355; TCP to or from 53).
fn dns_udp(a: u16, b: u16) -> bool {
    let dns_port = |p: u16| matches!(p, 53 | 5353 | 5355);
    dns_port(a) || dns_port(b)
}

struct Dispatcher {
    outboxes: Vec<Outbox>,
    /// The read buffer the frame being read is in.
    shared: capture::SharedBuffer,
    open: HashMap<FlowKey, OpenFlow, rustc_hash::FxBuildHasher>,
    open_order: VecDeque<(FlowKey, u64)>,
    hasher: rustc_hash::FxBuildHasher,
}

impl Dispatcher {
    fn shard_of(&self, key: &FlowKey) -> usize {
        let mut h = self.hasher.build_hasher();
        key.hash(&mut h);
        (std::hash::Hasher::finish(&h) % self.outboxes.len() as u64) as usize
    }

    /// One IP payload of the frame the local session just read.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        local: &mut Session<'_>,
        stamps: &mut Stamps,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload: &[u8],
        time_us: i64,
    ) {
        let frame = local.frame_number();
        let (shard, dns_hint) = match protocol {
            PROTO_TCP => {
                let Some(s) = packet::parse_tcp(payload) else {
                    return;
                };
                let (src_sock, dst_sock) = (
                    SocketAddr::new(src, s.src_port),
                    SocketAddr::new(dst, s.dst_port),
                );
                let key = engine::flow_key(src_sock, dst_sock);
                let mut dns_hint = None;
                // One lookup for a frame of an open flow, the common case.
                if let Some(flow) = self.open.get_mut(&key) {
                    let shard = flow.shard;
                    if mark_closing(flow, &s, src_sock) {
                        self.forget(&key);
                    }
                    return self.send(
                        local,
                        stamps,
                        (src, dst, protocol, payload, time_us),
                        shard,
                        None,
                    );
                }
                {
                    if s.flags & TCP_RST != 0 && s.payload.is_empty() {
                        return;
                    }
                    let (client, server) = engine::client_and_server(src_sock, dst_sock, &s);
                    self.make_room(local, stamps, frame);
                    let shard = (s.src_port != 53 && s.dst_port != 53).then(|| self.shard_of(&key));
                    if shard.is_some() {
                        dns_hint = Some(local.dns_lookup(server.ip()));
                    }
                    self.open.insert(
                        key,
                        OpenFlow {
                            client,
                            fin_to_server: false,
                            fin_to_client: false,
                            order: frame,
                            shard,
                        },
                    );
                    self.open_order.push_back((key, frame));
                }
                // Invariant: inserted above when missing.
                let flow = self.open.get_mut(&key).expect("open flow");
                let shard = flow.shard;
                if mark_closing(flow, &s, src_sock) {
                    self.forget(&key);
                }
                (shard, dns_hint)
            }
            PROTO_UDP => {
                let Some(d) = packet::parse_udp(payload) else {
                    return;
                };
                if d.payload.is_empty() {
                    return;
                }
                if dns_udp(d.src_port, d.dst_port) {
                    (None, None)
                } else {
                    let key = engine::flow_key(
                        SocketAddr::new(src, d.src_port),
                        SocketAddr::new(dst, d.dst_port),
                    );
                    (Some(self.shard_of(&key)), Some(local.dns_lookup(dst)))
                }
            }
            _ => return,
        };
        self.send(
            local,
            stamps,
            (src, dst, protocol, payload, time_us),
            shard,
            dns_hint,
        );
    }

    /// A flow the reader no longer follows.
    fn forget(&mut self, key: &FlowKey) {
        self.open.remove(key);
        if self.open.is_empty() {
            self.open_order.clear();
        }
    }

    /// Scans a payload here (`shard` `None`) or sends it to its shard.
    fn send(
        &mut self,
        local: &mut Session<'_>,
        stamps: &mut Stamps,
        (src, dst, protocol, payload, time_us): (IpAddr, IpAddr, u8, &[u8], i64),
        shard: Option<usize>,
        dns_hint: Option<Option<String>>,
    ) {
        let frame = local.frame_number();
        match shard {
            None => {
                local.transport(src, dst, protocol, payload, time_us);
                stamps.note(local.tally(), (0, frame, 1));
            }
            Some(shard) => {
                self.outboxes[shard].payload(
                    |bytes| Work::Payload {
                        frame,
                        time_us,
                        src,
                        dst,
                        protocol,
                        bytes,
                        dns_hint,
                    },
                    payload,
                    &self.shared,
                );
            }
        }
    }

    /// The engine's `make_room_for_a_flow`, over every shard's flows together.
    fn make_room(&mut self, local: &mut Session<'_>, stamps: &mut Stamps, frame: u64) {
        while self.open.len() >= engine::FLOWS_OPEN_MAX {
            let Some((key, order)) = self.open_order.pop_front() else {
                return;
            };
            if self.open.get(&key).is_some_and(|f| f.order == order) {
                let Some(flow) = self.open.remove(&key) else {
                    return;
                };
                match flow.shard {
                    None => {
                        local.evict(key);
                        stamps.note(local.tally(), (0, frame, 0));
                    }
                    Some(shard) => {
                        let _ = self.outboxes[shard].push(Work::Evict { frame, key });
                    }
                }
            }
        }
    }
}

/// What one shard hands back.
struct ShardDone {
    tally: Tally,
    stamps: Stamps,
    tcp_flows: u64,
}

fn shard_main(
    scanner: &Scanner,
    index: usize,
    path: &Path,
    limits: crate::Limits,
    share: usize,
    inbox: mpsc::Receiver<Batch>,
    recycle: mpsc::Sender<Batch>,
) -> ShardDone {
    let mut tally = Tally::default();
    let mut stamps = Stamps::default();
    let tcp_flows;
    {
        let mut session = Session::new(&scanner.matcher, &mut tally, index, path);
        session.limits = limits;
        session.buffered_bytes_share = Some(share);
        session.set_keys(&scanner.keys);
        for mut batch in inbox {
            let mut works = std::mem::take(&mut batch.work);
            for work in works.drain(..) {
                match work {
                    Work::Payload {
                        frame,
                        time_us,
                        src,
                        dst,
                        protocol,
                        bytes,
                        dns_hint,
                    } => {
                        let payload = batch.get(&bytes);
                        session
                            .shard_payload(frame, src, dst, protocol, payload, time_us, dns_hint);
                        stamps.note(session.tally(), (0, frame, 1));
                    }
                    Work::Evict { frame, key } => {
                        session.evict(key);
                        stamps.note(session.tally(), (0, frame, 0));
                    }
                    Work::Secrets { frame, kind, bytes } => {
                        // The reader's session warns about a bad block once; here it only
                        // adds the keys.
                        let before = (
                            session.tally().warnings.list.len(),
                            session.tally().warnings.dropped,
                        );
                        session.secrets(kind, batch.get(&bytes));
                        let warnings = &mut session.tally_mut().warnings;
                        warnings.list.truncate(before.0);
                        warnings.dropped = before.1;
                        stamps.note(session.tally(), (0, frame, 2));
                    }
                }
            }
            batch.work = works;
            batch.owned.clear();
            batch.shared_bytes = 0;
            // Handing the read buffer back: it is reused once no shard holds it.
            batch.shared = None;
            // The reader may be gone already (the capture ended): then the batch is dropped.
            let _ = recycle.send(batch);
        }
        for (order, key) in session.open_flows() {
            session.close_flow(key);
            stamps.note(session.tally(), (2, order, 0));
        }
        // QUIC connections end the capture after every TCP flow, as with one thread.
        session.finish_quic(&mut |tally, order| stamps.note(tally, (3, order, 0)));
        session.list_dtls_flows(&mut |tally, order| stamps.note(tally, (4, order, 0)));
        tcp_flows = session.stats.tcp_flows;
    }
    ShardDone {
        tally,
        stamps,
        tcp_flows,
    }
}

/// Scans one pcap or pcapng capture with `threads` shards into `tally`.
///
/// # Errors
/// As [`capture::read_items`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_capture(
    scanner: &Scanner,
    tally: &mut Tally,
    index: usize,
    path: &Path,
    file: impl Read + Send,
    threads: usize,
    progress: &mut dyn Progress,
    progress_step_bytes: u64,
) -> Result<CaptureStats, ScanError> {
    let threads = threads.clamp(1, THREADS_MAX);
    let limits = scanner.limits;
    let share = (limits.buffered_bytes_max / (threads + 1)).max(1);
    std::thread::scope(|scope| {
        let mut outboxes = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (send, inbox) = mpsc::sync_channel(CHANNEL_BATCHES_MAX);
            let (recycle, recycled) = mpsc::channel();
            outboxes.push(Outbox {
                batch: Batch::new(),
                send,
                recycled,
            });
            workers
                .push(scope.spawn(move || {
                    shard_main(scanner, index, path, limits, share, inbox, recycle)
                }));
        }
        let mut dispatcher = Dispatcher {
            outboxes,
            open: HashMap::default(),
            open_order: VecDeque::new(),
            hasher: rustc_hash::FxBuildHasher,
            shared: capture::SharedBuffer::default(),
        };
        let mut local_tally = Tally::default();
        let mut stamps = Stamps::default();
        let (read, mut stats) = {
            let mut local = Session::new(&scanner.matcher, &mut local_tally, index, path);
            local.limits = limits;
            local.buffered_bytes_share = Some(share);
            local.set_keys(&scanner.keys);
            let mut warnings = Vec::new();
            let mut next_update = progress_step_bytes;
            let read = capture::read_items_shared(
                path,
                file,
                |item, done, shared| {
                    if !std::sync::Arc::ptr_eq(&dispatcher.shared, shared) {
                        dispatcher.shared = shared.clone();
                    }
                    match item {
                        capture::Item::Frame(frame) => {
                            local.frame_to(
                                frame.link,
                                frame.time_us,
                                frame.data,
                                &mut |local, src, dst, protocol, payload, time_us| {
                                    dispatcher.deliver(
                                        local,
                                        &mut stamps,
                                        src,
                                        dst,
                                        protocol,
                                        payload,
                                        time_us,
                                    );
                                },
                            );
                            stamps.note(local.tally(), (0, local.frame_number(), 1));
                        }
                        capture::Item::Secrets { kind, data } => {
                            let frame = local.frame_number();
                            local.secrets(kind, data);
                            stamps.note(local.tally(), (0, frame, 2));
                            for outbox in &mut dispatcher.outboxes {
                                outbox.payload(
                                    |bytes| Work::Secrets { frame, kind, bytes },
                                    data,
                                    shared,
                                );
                            }
                        }
                    }
                    if done >= next_update {
                        progress.advance(done);
                        next_update = done + progress_step_bytes;
                    }
                },
                &mut warnings,
            );
            for outbox in &mut dispatcher.outboxes {
                let _ = outbox.flush();
            }
            // Hanging up ends the shards' loops.
            dispatcher.outboxes.clear();
            if read.is_ok() {
                for warning in warnings {
                    local.warn(warning);
                }
                stamps.note(local.tally(), (1, 0, 0));
                for (order, key) in local.open_flows() {
                    local.close_flow(key);
                    stamps.note(local.tally(), (2, order, 0));
                }
                local.finish_quic(&mut |_, _| {});
                local.list_dtls_flows(&mut |_, _| {});
                local.finish_ip();
                stamps.note(local.tally(), (5, 0, 0));
            }
            (read, local.stats.clone())
        };
        let mut parts = vec![(local_tally, stamps)];
        for worker in workers {
            // A shard that panicked re-raises its panic here, as one thread would have.
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            stats.tcp_flows += done.tcp_flows;
            parts.push((done.tally, done.stamps));
        }
        read?;
        merge(tally, parts);
        Ok(stats)
    })
}

/// Adds the shards' tallies to `into` as if one thread had done all their work.
fn merge(into: &mut Tally, parts: Vec<(Tally, Stamps)>) {
    let mut warnings: Vec<(Stamp, String)> = Vec::new();
    let mut tls_flows = Vec::new();
    let mut quic_flows = Vec::new();
    let mut warnings_dropped = 0;
    let mut tls_flows_dropped = 0;
    for (part, stamps) in parts {
        // Destructured whole: a new field of `Tally` does not compile until it is merged here.
        let Tally {
            findings,
            warnings: part_warnings,
            tls_flows: part_tls_flows,
            tls_flows_dropped: part_tls_flows_dropped,
            quic_flows: part_quic_flows,
        } = part;
        for (key, occ) in findings {
            match into.findings.entry(key) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(occ);
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let entry = e.get_mut();
                    entry.count += occ.count;
                    if (occ.capture, occ.first_time_us, occ.frame)
                        < (entry.capture, entry.first_time_us, entry.frame)
                    {
                        let count = entry.count;
                        *entry = occ;
                        entry.count = count;
                    }
                }
            }
        }
        warnings.extend(stamps.warnings.into_iter().zip(part_warnings.list));
        warnings_dropped += part_warnings.dropped;
        tls_flows.extend(stamps.tls_flows.into_iter().zip(part_tls_flows));
        tls_flows_dropped += part_tls_flows_dropped;
        quic_flows.extend(stamps.quic_flows.into_iter().zip(part_quic_flows));
    }
    // Stable: within one stamp, a shard's own order stands (one stamp is one shard's work).
    warnings.sort_by_key(|(stamp, _)| *stamp);
    tls_flows.sort_by_key(|(stamp, _)| *stamp);
    quic_flows.sort_by_key(|(stamp, _)| *stamp);
    for (_, warning) in warnings {
        into.warnings.push(warning);
    }
    into.warnings.dropped += warnings_dropped;
    for (_, flow) in tls_flows {
        if into.tls_flows.len() < engine::TLS_FLOWS_MAX {
            into.tls_flows.push(flow);
        } else {
            into.tls_flows_dropped += 1;
        }
    }
    into.tls_flows_dropped += tls_flows_dropped;
    // TLS and QUIC connections share one bound, as with one thread.
    for (_, flow) in quic_flows {
        if into.tls_flows.len() + into.quic_flows.len() < engine::TLS_FLOWS_MAX {
            into.quic_flows.push(flow);
        } else {
            into.tls_flows_dropped += 1;
        }
    }
}
