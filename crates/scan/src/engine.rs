//! The scan itself: frames → IP → flows → streams → protocols → searcher → findings.

mod h2;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::finding::decode::{self, Found, Searcher, Sink};
use crate::finding::matcher::Matcher;
use crate::network::ipfrag::Defragmenter;
use crate::network::packet::{self, PROTO_TCP, PROTO_UDP, TCP_FIN, TCP_RST, TCP_SYN};
use crate::protocols::dns;
use crate::protocols::http::{self, Direction};
use crate::protocols::websocket;
use crate::tls::decrypt::{self, FlowSummary, TlsFlow};
use crate::tls::dtls::{self, DtlsFlow};
use crate::tls::hello;
use crate::tls::keylog::KeyLog;
use crate::transport::reassembly::{BufferPool, Loss, Mark, Run, Stream};

mod quic_flows;

/// Most TCP flows followed at once; past this the oldest is scanned and closed early.
pub const FLOWS_OPEN_MAX: usize = 100_000;
/// Most bytes held for all open flows together; past this the largest flow is scanned early.
pub const BUFFERED_BYTES_MAX: usize = 1 << 30;
/// Most warnings kept in a report; the rest are counted.
pub const WARNINGS_MAX: usize = 1000;
/// Most DNS answers remembered for attribution.
pub const DNS_ANSWERS_MAX: usize = 1 << 20;
/// Most TLS flows listed in a report; the rest are counted.
pub const TLS_FLOWS_MAX: usize = 100_000;

const _: () =
    assert!(crate::transport::reassembly::STREAM_BYTES_MAX as usize <= BUFFERED_BYTES_MAX);

/// Where a finding was seen: everything but the identifier and its encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub protocol: &'static str,
    pub src: IpAddr,
    pub dst: SocketAddr,
    /// The party away from the phone: the server of a TCP flow, the destination of a datagram.
    pub remote: SocketAddr,
    pub host: Option<String>,
    /// Readable on the wire (HTTP, DNS, raw TCP/UDP), as opposed to inside TLS.
    pub cleartext: bool,
    pub outbound: bool,
    /// The HTTP/2 stream, for findings inside one.
    pub stream: Option<u32>,
}

/// A finding before policy and attribution: the key and what was accumulated under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingKey {
    pub target: usize,
    pub chain: Vec<String>,
    pub encoding: String,
    pub place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrences {
    /// The sender of the first sighting.
    pub src: IpAddr,
    pub count: u64,
    pub first_time_us: i64,
    pub capture: usize,
    pub frame: u64,
    /// The HTTP/2 stream of the first sighting.
    pub stream: Option<u32>,
    pub evidence: String,
}

/// Warnings, bounded by [`WARNINGS_MAX`].
#[derive(Debug, Default, Clone)]
pub struct Warnings {
    pub list: Vec<String>,
    pub dropped: u64,
}

impl Warnings {
    pub fn push(&mut self, message: String) {
        if self.list.len() < WARNINGS_MAX {
            self.list.push(message);
        } else {
            self.dropped += 1;
        }
    }
}

/// What every capture of one run adds to.
#[derive(Debug, Default)]
pub struct Tally {
    pub findings: HashMap<FindingKey, Occurrences>,
    pub warnings: Warnings,
    /// Every TLS flow, decrypted or not, up to [`TLS_FLOWS_MAX`].
    pub tls_flows: Vec<FlowSummary>,
    pub tls_flows_dropped: u64,
    /// Every QUIC connection, decrypted or not, up to [`TLS_FLOWS_MAX`] (it counts both).
    pub quic_flows: Vec<crate::quic::QuicSummary>,
}

/// Where in its stream a buffer's bytes came from, to find their frame and time.
#[derive(Debug, Clone, Copy)]
enum Timing<'a> {
    Marks(&'a [Mark]),
    Fixed { frame: u64, time_us: i64 },
}

struct Collector<'a> {
    tally: &'a mut Tally,
    place: &'a Place,
    timing: Timing<'a>,
    capture: usize,
}

impl Sink for Collector<'_> {
    fn found(&mut self, found: Found) {
        let (frame, time_us) = match self.timing {
            Timing::Fixed { frame, time_us } => (frame, time_us),
            Timing::Marks(marks) => {
                Mark::find(marks, found.offset as u64).map_or((0, 0), |m| (m.frame, m.time_us))
            }
        };
        // One finding per identifier, encoding and destination, whichever phone address sent it
        // (a phone's address changes between networks): the first sender is kept.
        let mut place = self.place.clone();
        place.src = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        // Nor per HTTP/2 stream: a hundred requests on one connection are one finding, counted
        // a hundred times, that names the stream of the first.
        place.stream = None;
        let key = FindingKey {
            target: found.target,
            chain: found.chain,
            encoding: found.encoding,
            place,
        };
        let entry = self
            .tally
            .findings
            .entry(key)
            .or_insert_with(|| Occurrences {
                src: self.place.src,
                stream: self.place.stream,
                count: 0,
                first_time_us: time_us,
                capture: self.capture,
                frame,
                evidence: found.evidence.clone(),
            });
        entry.count += 1;
        // The first sighting is the earliest by capture, time and frame, whatever order the flows
        // were scanned in: a sharded scan merges its shards' findings by the same rule.
        if (self.capture, time_us, frame) < (entry.capture, entry.first_time_us, entry.frame) {
            entry.first_time_us = time_us;
            entry.src = self.place.src;
            entry.stream = self.place.stream;
            entry.capture = self.capture;
            entry.frame = frame;
            entry.evidence = found.evidence;
        }
    }

    fn warn(&mut self, message: String) {
        self.tally.warnings.push(message);
    }
}

#[derive(Debug)]
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    to_server: Stream,
    to_client: Stream,
    /// The host an earlier DNS answer gave for the server's address.
    dns_host: Option<String>,
    sni: Option<String>,
    http_host: Option<String>,
    order: u64,
    /// Set when the flow starts with a TLS handshake.
    tls: Option<Box<TlsFlow>>,
    /// Set once the flow (inside TLS or not) speaks HTTP/2: the client's preface, or an
    /// HTTP/1.1 `Upgrade: h2c` request.
    h2: Option<Box<crate::protocols::h2::Connection>>,
    /// The client's bytes after a WebSocket upgrade request, held until the server's `101`
    /// says which extensions apply (the client's direction is scanned first).
    websocket_client: Option<Box<WebSocketPending>>,
    /// After a WebSocket handshake: each direction's frame reader (client, server), kept
    /// from one piece of a flow scanned in pieces to the next.
    websocket: Option<Box<[Option<websocket::Direction>; 2]>>,
}

#[derive(Debug)]
struct WebSocketPending {
    data: Vec<u8>,
    /// Stream offset of `data`.
    base: usize,
    marks: Vec<Mark>,
    inside_tls: bool,
    /// The request's `Sec-WebSocket-Extensions`.
    offer: Option<String>,
}

impl Flow {
    fn held_bytes(&self) -> usize {
        self.to_server.held_bytes() + self.to_client.held_bytes()
    }
}

pub(crate) type FlowKey = (SocketAddr, SocketAddr);

/// A message body with what says how to decode it.
struct BodyParts<'b> {
    data: &'b [u8],
    /// Codings in the order they were applied.
    content_encoding: &'b [String],
    /// Lower case.
    content_type: &'b str,
    grpc_encoding: Option<&'b str>,
}

/// Which end of a new TCP flow is the client: the SYN's sender; without a SYN, the higher port.
pub(crate) fn client_and_server(
    src: SocketAddr,
    dst: SocketAddr,
    segment: &packet::TcpSegment<'_>,
) -> (SocketAddr, SocketAddr) {
    let sender_is_client = if segment.flags & TCP_SYN != 0 {
        segment.flags & 0x10 == 0
    } else {
        segment.src_port >= segment.dst_port
    };
    if sender_is_client {
        (src, dst)
    } else {
        (dst, src)
    }
}

pub(crate) fn flow_key(a: SocketAddr, b: SocketAddr) -> FlowKey {
    if a <= b { (a, b) } else { (b, a) }
}

/// Statistics of one capture, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub frames: u64,
    pub bytes: u64,
    pub tcp_flows: u64,
    /// Frames of a link type the scanner reads (HAR entries count as read).
    pub readable_frames: u64,
    pub first_time_us: Option<i64>,
    pub last_time_us: Option<i64>,
}

/// Where [`Session::frame_to`] hands an IP payload: source, destination, protocol, payload,
/// time.
pub(crate) type Deliver<'f, 'a> = dyn FnMut(&mut Session<'a>, IpAddr, IpAddr, u8, &[u8], i64) + 'f;

/// The state of scanning one capture.
pub struct Session<'a> {
    searcher: Searcher<'a>,
    tally: &'a mut Tally,
    capture: usize,
    label: String,
    flows: HashMap<FlowKey, Flow, rustc_hash::FxBuildHasher>,
    flow_order: VecDeque<(FlowKey, u64)>,
    next_order: u64,
    buffered_bytes: usize,
    dns: HashMap<IpAddr, String>,
    defrag: Defragmenter,
    frame: u64,
    pub stats: CaptureStats,
    pub limits: crate::Limits,
    dns_full_warned: bool,
    buffers: BufferPool,
    /// Key logs given by the caller, and those found in this capture's secrets blocks.
    keys: Option<&'a KeyLog>,
    capture_keys: KeyLog,
    secrets_blocks: u64,
    /// Set while decrypted TLS application data is scanned: protocols become `https`/`tls`,
    /// chains start with `tls` and nothing is cleartext.
    inside_tls: bool,
    quic: quic_flows::QuicFlows,
    /// DTLS flows by (client, server), up to [`TLS_FLOWS_MAX`]; listed beside TLS ones.
    dtls: HashMap<(SocketAddr, SocketAddr), Box<DtlsFlow>, rustc_hash::FxBuildHasher>,
    /// Frames by link type the scanner cannot read, for one warning per link type.
    unreadable_links: std::collections::BTreeMap<u32, u64>,
    tunnels_too_deep_warned: bool,

    /// In a shard (see `shard.rs`): the DNS name the dispatcher looked up, when the frame was
    /// read, for the server of the flow this frame opens or the destination of this datagram.
    /// The dispatcher holds the one DNS table, so that an answer names hosts from the frame
    /// after it on, whichever thread scans them.
    dns_hint: Option<Option<String>>,
    /// In a shard: its share of [`crate::Limits::buffered_bytes_max`], so that all shards
    /// together hold no more than the bound.
    pub(crate) buffered_bytes_share: Option<usize>,
    /// Set while a flow is scanned in pieces (not at its end): HTTP/2 and WebSocket readers
    /// keep what a piece ends inside of for the next.
    in_piece: bool,
}

/// Whether [`packet::parse_link`] reads this link type.
fn readable_link(link: packet::LinkType) -> bool {
    use packet::LinkType as L;
    matches!(
        link,
        L::NULL | L::ETHERNET | L::RAW | L::LOOP | L::LINUX_SLL | L::IPV4 | L::IPV6 | L::LINUX_SLL2
    ) || matches!(link.0, 12 | 14)
}

impl<'a> Session<'a> {
    pub fn new(matcher: &'a Matcher, tally: &'a mut Tally, capture: usize, path: &Path) -> Self {
        Session {
            searcher: Searcher::new(matcher),
            tally,
            capture,
            label: path.display().to_string(),
            flows: HashMap::default(),
            flow_order: VecDeque::new(),
            next_order: 0,
            buffered_bytes: 0,
            dns: HashMap::new(),
            defrag: Defragmenter::default(),
            frame: 0,
            stats: CaptureStats::default(),
            limits: crate::Limits::default(),
            dns_full_warned: false,
            buffers: BufferPool::default(),
            keys: None,
            capture_keys: KeyLog::default(),
            secrets_blocks: 0,
            inside_tls: false,
            quic: quic_flows::QuicFlows::default(),
            unreadable_links: std::collections::BTreeMap::new(),
            tunnels_too_deep_warned: false,
            dns_hint: None,
            buffered_bytes_share: None,
            dtls: HashMap::default(),
            in_piece: false,
        }
    }

    /// Decrypts TLS with these secrets (besides those the capture itself holds).
    pub fn set_keys(&mut self, keys: &'a KeyLog) {
        self.keys = Some(keys);
    }

    /// Takes a pcapng Decryption Secrets Block. TLS key logs are kept for the flows of this
    /// capture; a bad line in one is a warning (the capture's problem), the rest still counts.
    pub fn secrets(&mut self, kind: u32, data: &[u8]) {
        self.secrets_blocks += 1;
        let origin = format!(
            "{} (decryption secrets block {})",
            self.label, self.secrets_blocks
        );
        if kind != crate::capture::SECRETS_TYPE_TLS_KEY_LOG {
            self.warn(format!(
                "{origin}: secrets of type 0x{kind:08x} are not used; only tls key logs are"
            ));
            return;
        }
        let text = String::from_utf8_lossy(data);
        let (skipped, first) = self
            .capture_keys
            .add_text_skipping_bad_lines(&text, &origin);
        if let Some(first) = first {
            self.warn(format!("{first} ({skipped} lines skipped)"));
        }
    }

    /// Takes one captured frame.
    pub fn frame(&mut self, link: packet::LinkType, time_us: i64, data: &[u8]) {
        self.frame_to(
            link,
            time_us,
            data,
            &mut |session, src, dst, protocol, payload, time_us| {
                session.transport(src, dst, protocol, payload, time_us);
            },
        );
    }

    /// [`Session::frame`], handing each IP payload to `deliver` instead of scanning it here:
    /// the dispatcher of a sharded scan reads frames (and reassembles IP fragments) once and
    /// sends each payload to the shard that owns its flow.
    pub(crate) fn frame_to(
        &mut self,
        link: packet::LinkType,
        time_us: i64,
        data: &[u8],
        deliver: &mut Deliver<'_, 'a>,
    ) {
        self.frame += 1;
        self.stats.frames += 1;
        self.stats.bytes += data.len() as u64;
        self.stats.first_time_us.get_or_insert(time_us);
        self.stats.last_time_us = Some(time_us);
        if !readable_link(link) {
            *self.unreadable_links.entry(link.0).or_insert(0) += 1;
            return;
        }
        self.stats.readable_frames += 1;
        let Some((ethertype, rest)) = packet::parse_link(link, data) else {
            return;
        };
        self.network(ethertype, rest, time_us, 0, deliver);
    }

    /// An IP packet, or a fragment of one; `depth` counts the tunnels it came out of.
    fn network(
        &mut self,
        ethertype: u16,
        data: &[u8],
        time_us: i64,
        depth: usize,
        deliver: &mut Deliver<'_, 'a>,
    ) {
        let Some(ip) = packet::parse_ip(ethertype, data) else {
            return;
        };
        if let Some(fragment) = ip.fragment {
            let whole = self
                .defrag
                .add(ip.src, ip.dst, ip.protocol, fragment, ip.payload);
            if let Some(whole) = whole {
                let inner = match ip.dst {
                    IpAddr::V6(_) => packet::skip_ipv6_extensions(ip.protocol, &whole),
                    IpAddr::V4(_) => Some((ip.protocol, whole.as_slice())),
                };
                if let Some((protocol, payload)) = inner {
                    self.ip_payload(ip.src, ip.dst, protocol, payload, time_us, depth, deliver);
                }
            }
            return;
        }
        self.ip_payload(
            ip.src,
            ip.dst,
            ip.protocol,
            ip.payload,
            time_us,
            depth,
            deliver,
        );
    }

    /// An IP payload: unwrapped if it is a tunnel (IP-in-IP, GRE), else handed to `deliver`.
    #[allow(clippy::too_many_arguments)]
    fn ip_payload(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload: &[u8],
        time_us: i64,
        depth: usize,
        deliver: &mut Deliver<'_, 'a>,
    ) {
        if let Some((ethertype, inner)) = packet::parse_tunnel(protocol, payload) {
            if depth < packet::TUNNEL_DEPTH_MAX {
                self.network(ethertype, inner, time_us, depth + 1, deliver);
            } else if !self.tunnels_too_deep_warned {
                self.tunnels_too_deep_warned = true;
                self.tally.warnings.push(format!(
                    "{}: packets inside more than {} tunnels (ip-in-ip, gre) are not read",
                    self.label,
                    packet::TUNNEL_DEPTH_MAX
                ));
            }
            return;
        }
        deliver(self, src, dst, protocol, payload, time_us);
    }

    /// In a shard: one IP payload of global frame `frame`, with the DNS name the dispatcher
    /// found for it (see `dns_hint`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn shard_payload(
        &mut self,
        frame: u64,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload: &[u8],
        time_us: i64,
        dns_hint: Option<Option<String>>,
    ) {
        self.frame = frame;
        // Flows are ordered by the frame that opened them, the same in every shard, so that
        // the shards can close their flows in the one order a single thread would.
        self.next_order = frame.saturating_sub(1);
        self.dns_hint = dns_hint;
        self.transport(src, dst, protocol, payload, time_us);
        self.dns_hint = None;
    }

    /// The name an earlier DNS answer gave `ip`, or the dispatcher's (see `dns_hint`).
    fn dns_name(&mut self, ip: IpAddr) -> Option<String> {
        match self.dns_hint.take() {
            Some(hint) => hint,
            None => self.dns.get(&ip).cloned(),
        }
    }

    /// What [`Session::dns_name`] would say for `ip` now, without taking a hint.
    pub(crate) fn dns_lookup(&self, ip: IpAddr) -> Option<String> {
        self.dns.get(&ip).cloned()
    }

    /// The number of the frame read last.
    pub(crate) fn frame_number(&self) -> u64 {
        self.frame
    }

    pub(crate) fn tally(&self) -> &Tally {
        self.tally
    }

    pub(crate) fn tally_mut(&mut self) -> &mut Tally {
        self.tally
    }

    pub(crate) fn transport(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        payload: &[u8],
        time_us: i64,
    ) {
        match protocol {
            PROTO_TCP => {
                if let Some(segment) = packet::parse_tcp(payload) {
                    self.tcp(src, dst, segment, time_us);
                }
            }
            PROTO_UDP => {
                if let Some(datagram) = packet::parse_udp(payload) {
                    self.udp(src, dst, datagram, time_us);
                }
            }
            _ => {}
        }
    }

    fn udp(&mut self, src: IpAddr, dst: IpAddr, d: packet::UdpDatagram<'_>, time_us: i64) {
        if d.payload.is_empty() {
            return;
        }
        let src_sock = SocketAddr::new(src, d.src_port);
        let dst_sock = SocketAddr::new(dst, d.dst_port);
        let dns_port = |p: u16| matches!(p, 53 | 5353 | 5355);
        let timing = Timing::Fixed {
            frame: self.frame,
            time_us,
        };
        if (dns_port(d.src_port) || dns_port(d.dst_port))
            && let Some(message) = dns::parse(d.payload)
        {
            let outbound = dns_port(d.dst_port);
            let remote = if outbound { dst_sock } else { src_sock };
            self.dns_message(&message, src, dst_sock, remote, None, outbound, timing);
            return;
        }
        // Looked up before QUIC takes the datagram: a connection keeps the name its server had
        // when it began, whichever thread scans it (see `dns_name`).
        let host = self.dns_name(dst);
        if self.dtls_datagram(src_sock, dst_sock, d.payload, time_us, &host) {
            return;
        }
        if self.quic_datagram(src_sock, dst_sock, d.payload, time_us, &host) {
            return;
        }
        let place = Place {
            protocol: "udp",
            src,
            dst: dst_sock,
            remote: dst_sock,
            host,
            cleartext: true,
            outbound: true,
            stream: None,
        };
        self.search(d.payload, &["udp"], 0, &place, timing);
    }

    /// A datagram of a DTLS flow (one that began with a ClientHello): decrypted with the key
    /// logs and its application data searched (`dtls > ...`). Returns false for other UDP, and
    /// for the hellos, which are searched as they are.
    fn dtls_datagram(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        time_us: i64,
        dns_host: &Option<String>,
    ) -> bool {
        let (key, to_server) = if self.dtls.contains_key(&(src, dst)) {
            ((src, dst), true)
        } else if self.dtls.contains_key(&(dst, src)) {
            ((dst, src), false)
        } else if dtls::starts_like_dtls(payload) && self.dtls.len() < TLS_FLOWS_MAX {
            let mut flow = Box::<DtlsFlow>::default();
            flow.first_frame = self.frame;
            flow.dns_host = dns_host.clone();
            self.dtls.insert((src, dst), flow);
            ((src, dst), true)
        } else {
            return false;
        };
        let (keys, capture_keys) = (self.keys, &self.capture_keys);
        let Some(flow) = self.dtls.get_mut(&key) else {
            return false;
        };
        let plaintext = flow.datagram(to_server, payload, time_us, &|random| {
            capture_keys
                .get(random)
                .or_else(|| keys.and_then(|k| k.get(random)))
                .cloned()
        });
        for warning in flow.take_warnings() {
            self.tally.warnings.push(format!(
                "{}: dtls {} → {}: {warning}",
                self.label, key.0, key.1
            ));
        }
        let clear = dtls::records(payload).next().is_some_and(|r| r.epoch == 0);
        if plaintext.is_empty() {
            return !clear;
        }
        let (client, server) = key;
        let host = self.dtls.get(&key).and_then(|f| f.dns_host.clone());
        let place = Place {
            protocol: "dtls",
            src: if to_server { client.ip() } else { server.ip() },
            dst: if to_server { server } else { client },
            remote: server,
            host,
            cleartext: false,
            outbound: to_server,
            stream: None,
        };
        let timing = Timing::Fixed {
            frame: self.frame,
            time_us,
        };
        self.search(&plaintext, &["dtls"], 0, &place, timing);
        !clear
    }

    /// Lists the DTLS flows beside the TLS ones, in the order they began, calling `after` with
    /// the tally and the flow's first frame after each (a shard stamps what each one added).
    pub(crate) fn list_dtls_flows(&mut self, after: &mut dyn FnMut(&Tally, u64)) {
        let mut flows: Vec<_> = self.dtls.drain().collect();
        flows.sort_by_key(|(_, f)| f.first_frame);
        for ((client, server), flow) in flows {
            let order = flow.first_frame;
            if self.tally.tls_flows.len() >= TLS_FLOWS_MAX {
                self.tally.tls_flows_dropped += 1;
                continue;
            }
            let (bytes_out, bytes_in) = flow.bytes();
            let sni = flow
                .client_hello
                .as_ref()
                .and_then(|h| h.server_name.clone());
            self.tally.tls_flows.push(FlowSummary {
                client,
                server,
                host: sni.clone().or_else(|| flow.dns_host.clone()),
                sni,
                version: flow.version(),
                cipher_suite: flow.cipher_suite(),
                visibility: flow.visibility(),
                bytes_out,
                bytes_in,
                first_time_us: flow.first_time_us,
                capture: self.capture,
            });
            after(self.tally, order);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dns_message(
        &mut self,
        message: &dns::DnsMessage,
        src: IpAddr,
        dst: SocketAddr,
        remote: SocketAddr,
        host: Option<String>,
        outbound: bool,
        timing: Timing<'_>,
    ) {
        for (address, name) in &message.answers {
            if self.dns.len() < self.limits.dns_answers_max || self.dns.contains_key(address) {
                self.dns.insert(*address, name.clone());
            } else if !self.dns_full_warned {
                self.dns_full_warned = true;
                self.tally.warnings.push(format!(
                    "{}: more than {} dns answers; later ones ({address} is {name}) do not name hosts",
                    self.label, self.limits.dns_answers_max
                ));
            }
        }
        if message.names.is_empty() {
            return;
        }
        let names = message.names.join("\n");
        let place = Place {
            protocol: "dns",
            src,
            dst,
            remote,
            host,
            cleartext: true,
            outbound,
            stream: None,
        };
        self.search(names.as_bytes(), &["dns-name"], 0, &place, timing);
    }

    fn tcp(&mut self, src: IpAddr, dst: IpAddr, s: packet::TcpSegment<'_>, time_us: i64) {
        let src_sock = SocketAddr::new(src, s.src_port);
        let dst_sock = SocketAddr::new(dst, s.dst_port);
        let key = flow_key(src_sock, dst_sock);
        if !self.flows.contains_key(&key) {
            if s.flags & TCP_RST != 0 && s.payload.is_empty() {
                return;
            }
            let (client, server) = client_and_server(src_sock, dst_sock, &s);
            self.make_room_for_a_flow();
            self.next_order += 1;
            self.stats.tcp_flows += 1;
            let flow = Flow {
                client,
                server,
                to_server: Stream::with_buffer(self.buffers.take()),
                to_client: Stream::with_buffer(self.buffers.take()),
                dns_host: self.dns_name(server.ip()),
                sni: None,
                http_host: None,
                order: self.next_order,
                tls: None,
                websocket_client: None,
                websocket: None,
                h2: None,
            };
            self.flow_order.push_back((key, self.next_order));
            self.flows.insert(key, flow);
        }
        let frame = self.frame;
        // Invariant: the flow was inserted above if it was missing.
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let before = flow.held_bytes();
        let stream = if src_sock == flow.client {
            &mut flow.to_server
        } else {
            &mut flow.to_client
        };
        if s.flags & TCP_SYN != 0 {
            stream.syn(s.seq);
        }
        let data_seq = if s.flags & TCP_SYN != 0 {
            s.seq.wrapping_add(1)
        } else {
            s.seq
        };
        stream.segment(data_seq, s.payload, frame, time_us);
        if s.flags & TCP_FIN != 0 {
            stream.fin = true;
        }
        let after = flow.held_bytes();
        let done = s.flags & TCP_RST != 0 || (flow.to_server.fin && flow.to_client.fin);
        self.buffered_bytes = (self.buffered_bytes + after).saturating_sub(before);
        if done {
            self.close_flow(key);
        } else if self.buffered_bytes
            > self
                .buffered_bytes_share
                .unwrap_or(self.limits.buffered_bytes_max)
        {
            self.flush_largest_flow();
        }
    }

    fn make_room_for_a_flow(&mut self) {
        while self.flows.len() >= FLOWS_OPEN_MAX {
            let Some((key, order)) = self.flow_order.pop_front() else {
                return;
            };
            if self.flows.get(&key).is_some_and(|f| f.order == order) {
                self.evict(key);
            }
        }
    }

    /// Scans and closes an open flow to make room for a new one.
    pub(crate) fn evict(&mut self, key: FlowKey) {
        self.tally.warnings.push(format!(
            "{}: more than {FLOWS_OPEN_MAX} tcp flows open at once; {} ↔ {} was scanned before it ended",
            self.label, key.0, key.1
        ));
        self.close_flow(key);
    }

    fn flush_largest_flow(&mut self) {
        let largest = self
            .flows
            .iter()
            .max_by_key(|(_, f)| f.held_bytes())
            .map(|(k, _)| *k);
        if let Some(key) = largest {
            self.tally.warnings.push(format!(
                "{}: more than {} bytes buffered; {} ↔ {} was scanned in pieces",
                self.label, self.limits.buffered_bytes_max, key.0, key.1
            ));
            if let Some(mut flow) = self.flows.remove(&key) {
                self.in_piece = true;
                self.scan_flow(&mut flow);
                self.in_piece = false;
                self.flows.insert(key, flow);
            }
        }
    }

    pub(crate) fn close_flow(&mut self, key: FlowKey) {
        if let Some(mut flow) = self.flows.remove(&key) {
            self.scan_flow(&mut flow);
            self.list_tls_flow(&flow);
        }
        if self.flows.is_empty() {
            self.flow_order.clear();
        }
    }

    /// Ends the capture: scans every flow still open.
    pub fn finish(&mut self) {
        for (_, key) in self.open_flows() {
            self.close_flow(key);
        }
        self.finish_quic(&mut |_, _| {});
        self.list_dtls_flows(&mut |_, _| {});
        self.finish_ip();
    }

    /// The flows still open, in the order they were opened.
    pub(crate) fn open_flows(&self) -> Vec<(u64, FlowKey)> {
        let mut keys: Vec<(u64, FlowKey)> = self.flows.iter().map(|(k, f)| (f.order, *k)).collect();
        keys.sort();
        keys
    }

    /// Ends the IP layer: warns of fragments that never made a whole datagram.
    pub(crate) fn finish_ip(&mut self) {
        for (&link, &frames) in &self.unreadable_links {
            self.tally.warnings.push(format!(
                "{}: {frames} frames of link type {} cannot be read; they are not scanned",
                self.label,
                packet::LinkType(link)
            ));
        }
        let incomplete = self.defrag.incomplete() as u64 + self.defrag.dropped;
        if incomplete > 0 {
            self.tally.warnings.push(format!(
                "{}: {incomplete} fragmented ip datagrams could not be reassembled",
                self.label
            ));
        }
    }

    fn scan_flow(&mut self, flow: &mut Flow) {
        let held = flow.held_bytes();
        self.buffered_bytes = self.buffered_bytes.saturating_sub(held);
        let (runs, marks, losses) = flow.to_server.take();
        let (client_runs, client_marks, client_losses) = flow.to_client.take();
        self.report_losses(flow, true, &losses);
        self.report_losses(flow, false, &client_losses);
        // TLS needs both hellos before either direction can be decrypted.
        self.begin_tls(flow, &runs, &client_runs);
        self.scan_direction(flow, true, &runs, &marks);
        self.scan_direction(flow, false, &client_runs, &client_marks);
        if let Some(pending) = flow.websocket_client.take() {
            // No `101` came back (or the capture missed it): read the frames as uncompressed.
            // In a piece the `101` may still come: the client's frames are read from here on
            // as its offer says (it sets RSV1 only once deflate was agreed; an inflater that
            // keeps its window also reads messages compressed without context takeover).
            let inside_tls = std::mem::replace(&mut self.inside_tls, pending.inside_tls);
            let deflate = match &pending.offer {
                Some(offer) if self.in_piece => {
                    match websocket::Extensions::parse(offer).deflate_for(true) {
                        websocket::Deflate::Off => websocket::Deflate::Off,
                        websocket::Deflate::On { .. } => websocket::Deflate::On {
                            no_context_takeover: false,
                        },
                    }
                }
                _ => websocket::Deflate::Off,
            };
            self.websocket(
                flow,
                true,
                &pending.data,
                pending.base,
                &pending.marks,
                deflate,
            );
            self.inside_tls = inside_tls;
        }
        runs.into_iter().for_each(|r| self.buffers.give(r.data));
        client_runs
            .into_iter()
            .for_each(|r| self.buffers.give(r.data));
    }

    fn begin_tls(&mut self, flow: &mut Flow, to_server: &[Run], to_client: &[Run]) {
        if flow.tls.is_none() {
            let starts = |runs: &[Run]| {
                runs.first()
                    .is_some_and(|r| r.start == 0 && decrypt::starts_like_tls(&r.data))
            };
            if !starts(to_server) && !starts(to_client) {
                return;
            }
            flow.tls = Some(Box::default());
        }
        let Some(tls) = flow.tls.as_mut() else {
            return;
        };
        let (keys, capture_keys) = (self.keys, &self.capture_keys);
        tls.begin(to_server, to_client, &|random| {
            capture_keys
                .get(random)
                .or_else(|| keys.and_then(|k| k.get(random)))
                .cloned()
        });
        if flow.sni.is_none() {
            flow.sni = tls
                .client_hello
                .as_ref()
                .and_then(|h| h.server_name.clone());
        }
    }

    /// Decrypts what it can of one direction of a TLS flow and scans the application data as
    /// if it had been sent in the clear, marked as inside TLS.
    fn scan_tls_direction(
        &mut self,
        flow: &mut Flow,
        to_server: bool,
        runs: &[Run],
        marks: &[Mark],
    ) {
        let Some(tls) = flow.tls.as_mut() else {
            return;
        };
        let plaintext = tls.decrypt(to_server, runs, marks);
        for warning in tls.take_warnings() {
            self.tally.warnings.push(format!(
                "{}: tls {} → {}: {warning}",
                self.label, flow.client, flow.server
            ));
        }
        // What was sent in the clear is searched as it is: the hellos (an identifier in the
        // SNI) and a TLS 1.2 server's certificates. Ciphertext is not: it can only give false
        // positives, and costs time.
        let place = self.place(flow, "tls", to_server, false, None);
        if let Some(run) = runs.first().filter(|r| r.start == 0) {
            let clear = &run.data[..decrypt::clear_prefix_len(&run.data)];
            self.search(clear, &["tls"], 0, &place, Timing::Marks(marks));
        }
        if plaintext.data.is_empty() {
            return;
        }
        let run = Run {
            start: 0,
            data: plaintext.data,
        };
        self.inside_tls = true;
        self.scan_direction(
            flow,
            to_server,
            std::slice::from_ref(&run),
            &plaintext.marks,
        );
        self.inside_tls = false;
    }

    fn list_tls_flow(&mut self, flow: &Flow) {
        let Some(tls) = flow.tls.as_ref() else {
            return;
        };
        if self.tally.tls_flows.len() >= TLS_FLOWS_MAX {
            self.tally.tls_flows_dropped += 1;
            return;
        }
        let (bytes_out, bytes_in) = tls.bytes();
        self.tally.tls_flows.push(FlowSummary {
            client: flow.client,
            server: flow.server,
            sni: tls
                .client_hello
                .as_ref()
                .and_then(|h| h.server_name.clone()),
            host: flow
                .sni
                .clone()
                .or_else(|| flow.http_host.clone())
                .or_else(|| flow.dns_host.clone()),
            version: tls.version(),
            cipher_suite: tls.cipher_suite(),
            visibility: tls.visibility(),
            bytes_out,
            bytes_in,
            first_time_us: tls.first_time_us,
            capture: self.capture,
        });
    }

    fn report_losses(&mut self, flow: &Flow, to_server: bool, losses: &[Loss]) {
        let (a, b) = if to_server {
            (flow.client, flow.server)
        } else {
            (flow.server, flow.client)
        };
        for loss in losses {
            let message = match loss {
                Loss::Gap { at, bytes } => format!(
                    "{}: {bytes} bytes missing at offset {at} of tcp stream {a} → {b}; the rest of the stream is still scanned",
                    self.label
                ),
                Loss::Truncated => format!(
                    "{}: tcp stream {a} → {b} is longer than {} bytes; the rest is not scanned",
                    self.label,
                    crate::transport::reassembly::STREAM_BYTES_MAX
                ),
            };
            self.tally.warnings.push(message);
        }
    }

    fn scan_direction(&mut self, flow: &mut Flow, to_server: bool, runs: &[Run], marks: &[Mark]) {
        if flow.tls.is_some() && !self.inside_tls {
            self.scan_tls_direction(flow, to_server, runs, marks);
            return;
        }
        let (src, dst) = if to_server {
            (flow.client, flow.server)
        } else {
            (flow.server, flow.client)
        };
        let timing = Timing::Marks(marks);
        for run in runs {
            let data = run.data.as_slice();
            let base = run.start as usize;
            if flow.server.port() == 53 || flow.client.port() == 53 {
                for message in dns::parse_tcp_stream(data) {
                    self.dns_message(
                        &message,
                        src.ip(),
                        dst,
                        flow.server,
                        None,
                        to_server,
                        timing,
                    );
                }
                continue;
            }
            if flow
                .websocket
                .as_ref()
                .is_some_and(|w| w[usize::from(!to_server)].is_some())
            {
                let off = websocket::Deflate::Off;
                self.websocket(flow, to_server, data, base, marks, off);
                continue;
            }
            if let Some(start) = self.h2_start(flow, to_server, run) {
                self.h2_frames(flow, to_server, &data[start..], base + start, timing);
                continue;
            }
            if hello::looks_like_tls(data) {
                if to_server && flow.sni.is_none() {
                    flow.sni = hello::client_hello_sni(data);
                }
                let place = self.place(flow, "tls", to_server, false, None);
                self.search(data, &["tls"], base, &place, timing);
                continue;
            }
            let mut at = 0;
            while at < data.len() {
                let rest = &data[at..];
                let Some(message) = http::parse(rest) else {
                    let next = http::resync(data, at + 1).unwrap_or(data.len());
                    let place = self.place(flow, "tcp", to_server, true, None);
                    self.search(&data[at..next], &["tcp"], base + at, &place, timing);
                    at = next;
                    continue;
                };
                if message.direction == Direction::Request && flow.http_host.is_none() {
                    flow.http_host = message.host.clone();
                }
                let place = self.place(flow, "http", to_server, true, message.host.clone());
                self.http_message(&message, base + at, &place, timing, src, dst);
                at += message.len.max(1);
                // After `Upgrade: h2c` and its 101, the rest of the stream is HTTP/2.
                if let Some(skip) = self.h2_after_upgrade(flow, &message, &data[at..]) {
                    at += skip;
                    self.h2_frames(flow, to_server, &data[at..], base + at, timing);
                    break;
                }
                // After a WebSocket handshake the rest of each direction is frames.
                if message.direction == Direction::Request
                    && websocket::is_upgrade_request(message.head)
                {
                    flow.websocket_client = Some(Box::new(WebSocketPending {
                        data: data[at..].to_vec(),
                        base: base + at,
                        marks: marks.to_vec(),
                        inside_tls: self.inside_tls,
                        offer: websocket::header_value(message.head, "sec-websocket-extensions"),
                    }));
                    break;
                }
                if message.direction == Direction::Response
                    && let Some(ext) = websocket::accepted_upgrade(message.target, message.head)
                {
                    let deflate = ext.deflate_for(false);
                    self.websocket(flow, false, &data[at..], base + at, marks, deflate);
                    if let Some(pending) = flow.websocket_client.take() {
                        self.websocket(
                            flow,
                            true,
                            &pending.data,
                            pending.base,
                            &pending.marks,
                            ext.deflate_for(true),
                        );
                    }
                    break;
                }
            }
        }
    }

    /// Scans the WebSocket messages of one direction: `data` starts at stream offset `base`.
    /// The direction's reader is made with `deflate` the first time, then kept for the next
    /// piece of a flow scanned in pieces.
    fn websocket(
        &mut self,
        flow: &mut Flow,
        to_server: bool,
        data: &[u8],
        base: usize,
        marks: &[Mark],
        deflate: websocket::Deflate,
    ) {
        let sides = flow.websocket.get_or_insert_with(Box::default);
        let direction = sides[usize::from(!to_server)]
            .get_or_insert_with(|| websocket::Direction::new(deflate));
        let parsed = if self.in_piece {
            direction.parse_more(data)
        } else {
            direction.parse(data)
        };
        let (src, dst) = if to_server {
            (flow.client, flow.server)
        } else {
            (flow.server, flow.client)
        };
        for problem in parsed.problems {
            self.tally.warnings.push(format!(
                "{}: websocket {src} → {dst}: {problem}",
                self.label
            ));
        }
        let place = self.place(flow, "websocket", to_server, true, None);
        self.websocket_messages(&parsed.messages, &[], base, &place, Timing::Marks(marks));
    }

    /// Searches WebSocket messages, their layers after `outer` (`h2` for extended CONNECT);
    /// a message's offset is counted from `base`.
    fn websocket_messages(
        &mut self,
        messages: &[websocket::Message],
        outer: &[&'static str],
        base: usize,
        place: &Place,
        timing: Timing<'_>,
    ) {
        for message in messages {
            let mut layers: Vec<&str> = outer.to_vec();
            layers.push("websocket");
            if message.compressed {
                layers.push("deflate");
            }
            // Text and binary payloads are searched alike: an app's binary frames are often
            // JSON or base64 too, and the searcher undoes the encodings it recognises.
            let mut body = std::borrow::Cow::Borrowed(message.data.as_slice());
            if matches!(
                body.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'{' | b'[')
            ) {
                layers.push("json");
                if memchr::memchr(b'\\', &body).is_some() {
                    body = std::borrow::Cow::Owned(decode::json_unescape(&body));
                }
            }
            self.search(&body, &layers, base + message.offset, place, timing);
        }
    }

    fn place(
        &self,
        flow: &Flow,
        protocol: &'static str,
        to_server: bool,
        cleartext: bool,
        host: Option<String>,
    ) -> Place {
        let (src, dst) = if to_server {
            (flow.client, flow.server)
        } else {
            (flow.server, flow.client)
        };
        let (protocol, cleartext) = if self.inside_tls {
            let protocol = match protocol {
                "http" => "https",
                "tcp" => "tls",
                "websocket" => "wss",
                "h2c" => "h2",
                other => other,
            };
            (protocol, false)
        } else {
            (protocol, cleartext)
        };
        Place {
            protocol,
            src: src.ip(),
            dst,
            remote: flow.server,
            host: host
                .or_else(|| flow.http_host.clone())
                .or_else(|| flow.sni.clone())
                .or_else(|| flow.dns_host.clone()),
            cleartext,
            outbound: to_server,
            stream: None,
        }
    }

    fn http_message(
        &mut self,
        message: &http::Message<'_>,
        offset: usize,
        place: &Place,
        timing: Timing<'_>,
        src: SocketAddr,
        dst: SocketAddr,
    ) {
        if message.direction == Direction::Request {
            match decode::url_decode(message.target, true) {
                Some(decoded) => self.search(&decoded, &["http-uri", "url"], offset, place, timing),
                None => self.search(message.target, &["http-uri"], offset, place, timing),
            }
        }
        let head_offset = offset + message.body_offset.saturating_sub(message.head.len());
        self.search(message.head, &["http-header"], head_offset, place, timing);
        if message.body.is_empty() {
            return;
        }
        let body_offset = offset + message.body_offset;
        if let Some(cut) = message.body_cut {
            self.tally.warnings.push(format!(
                "{}: http body from {src} to {dst} is cut short ({cut}); the part captured is scanned",
                self.label
            ));
        }
        let content_type = message.content_type.as_deref().unwrap_or("");
        let body = BodyParts {
            data: &message.body,
            content_encoding: &message.content_encoding,
            content_type,
            // Only gRPC reads it: not worth a walk over every message's headers.
            grpc_encoding: crate::protocols::grpc::is_grpc(content_type)
                .then(|| h2::header_line(message.head, b"grpc-encoding"))
                .flatten(),
        };
        self.http_body(
            &body,
            vec!["http-body"],
            body_offset,
            place,
            timing,
            (src, dst),
        );
    }

    /// Decodes a body by its content coding and type (the same for HTTP/1.x and HTTP/2) and
    /// searches it under `layers`.
    fn http_body(
        &mut self,
        parts: &BodyParts<'_>,
        mut layers: Vec<&str>,
        body_offset: usize,
        place: &Place,
        timing: Timing<'_>,
        (src, dst): (SocketAddr, SocketAddr),
    ) {
        let mut body: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(parts.data);
        for coding in parts.content_encoding.iter().rev() {
            let (decoded, problem) = decode::decompress(coding, &body);
            if let Some(problem) = problem {
                self.tally.warnings.push(format!(
                    "{}: http body from {src} to {dst}, content-encoding {coding}: {problem}",
                    self.label
                ));
            }
            if decoded.is_empty() {
                break;
            }
            layers.push(match coding.as_str() {
                "x-gzip" => "gzip",
                "gzip" => "gzip",
                "deflate" => "deflate",
                "br" => "br",
                "zstd" => "zstd",
                _ => "decoded",
            });
            body = std::borrow::Cow::Owned(decoded);
        }
        let content_type = parts.content_type;
        if crate::protocols::grpc::is_grpc(content_type) {
            let grpc = h2::Grpc {
                text: crate::protocols::grpc::is_text(content_type),
                encoding: parts.grpc_encoding,
                web: content_type.to_ascii_lowercase().contains("grpc-web"),
            };
            self.grpc_body(&body, &grpc, &mut layers, body_offset, place, timing);
            return;
        }
        if content_type.contains("x-www-form-urlencoded") {
            if let Some(decoded) = decode::url_decode(&body, true) {
                layers.push("form");
                body = std::borrow::Cow::Owned(decoded);
            }
        } else if content_type.contains("json")
            || matches!(
                body.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'{' | b'[')
            )
        {
            layers.push("json");
            if memchr::memchr(b'\\', &body).is_some() {
                body = std::borrow::Cow::Owned(decode::json_unescape(&body));
            }
        }
        self.search(&body, &layers, body_offset, place, timing);
    }

    fn search(
        &mut self,
        data: &[u8],
        layers: &[&str],
        offset: usize,
        place: &Place,
        timing: Timing<'_>,
    ) {
        let prefixed: Vec<&str>;
        let layers = if self.inside_tls {
            prefixed = std::iter::once("tls")
                .chain(layers.iter().copied())
                .collect();
            &prefixed[..]
        } else {
            layers
        };
        let mut collector = Collector {
            tally: self.tally,
            place,
            timing,
            capture: self.capture,
        };
        self.searcher.search(data, layers, offset, &mut collector);
    }

    /// Scans one HAR entry's request and response.
    pub fn har_entry(&mut self, entry: &crate::capture::har::Exchange, index: u64) {
        let timing = Timing::Fixed {
            frame: index,
            time_us: entry.time_us,
        };
        let dst = SocketAddr::new(entry.server_ip, entry.port);
        let src: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        for (outbound, parts) in [(true, &entry.request), (false, &entry.response)] {
            let place = Place {
                protocol: "http",
                src,
                dst,
                remote: dst,
                host: entry.host.clone(),
                cleartext: entry.cleartext,
                outbound,
                stream: None,
            };
            if outbound {
                match decode::url_decode(entry.url.as_bytes(), true) {
                    Some(d) => self.search(&d, &["http-uri", "url"], 0, &place, timing),
                    None => self.search(entry.url.as_bytes(), &["http-uri"], 0, &place, timing),
                }
            }
            self.search(parts.head.as_bytes(), &["http-header"], 0, &place, timing);
            if !parts.body.is_empty() {
                let mut layers = vec!["http-body"];
                let ct = parts.content_type.as_str();
                let body = if ct.contains("x-www-form-urlencoded") {
                    decode::url_decode(&parts.body, true).inspect(|_| layers.push("form"))
                } else if ct.contains("json") {
                    layers.push("json");
                    None
                } else {
                    None
                };
                let body = body.unwrap_or_else(|| parts.body.clone());
                self.search(&body, &layers, 0, &place, timing);
            }
        }
        self.stats.frames += 1;
        self.stats.readable_frames += 1;
    }

    pub fn warn(&mut self, message: String) {
        self.tally.warnings.push(message);
    }
}
