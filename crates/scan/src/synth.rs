//! Writing synthetic captures: the tests, the fuzz seeds and the benchmark generator build their
//! traffic with these. Checksums are left zero; the scanner does not verify them.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use crate::network::packet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, LinkType, TCP_FIN, TCP_SYN};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// A pcap file writer (microsecond timestamps, little endian).
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// # Errors
    /// When writing the header fails.
    pub fn new(mut out: W, link: LinkType) -> io::Result<PcapWriter<W>> {
        out.write_all(&0xa1b2_c3d4_u32.to_le_bytes())?;
        out.write_all(&2_u16.to_le_bytes())?;
        out.write_all(&4_u16.to_le_bytes())?;
        out.write_all(&0_i32.to_le_bytes())?;
        out.write_all(&0_u32.to_le_bytes())?;
        out.write_all(&262_144_u32.to_le_bytes())?;
        out.write_all(&link.0.to_le_bytes())?;
        Ok(PcapWriter { out })
    }

    /// # Errors
    /// When writing fails.
    pub fn frame(&mut self, time_us: i64, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.out.write_all(
            &u32::try_from(time_us / 1_000_000)
                .unwrap_or(0)
                .to_le_bytes(),
        )?;
        self.out.write_all(
            &u32::try_from(time_us % 1_000_000)
                .unwrap_or(0)
                .to_le_bytes(),
        )?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(data)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A pcapng writer: one section, any number of interfaces, enhanced packet blocks.
pub struct PcapngWriter<W: Write> {
    out: W,
    interfaces: u32,
}

impl<W: Write> PcapngWriter<W> {
    /// # Errors
    /// When writing the section header fails.
    pub fn new(mut out: W) -> io::Result<PcapngWriter<W>> {
        let mut body = Vec::new();
        body.extend_from_slice(&0x1a2b_3c4d_u32.to_le_bytes());
        body.extend_from_slice(&1_u16.to_le_bytes());
        body.extend_from_slice(&0_u16.to_le_bytes());
        body.extend_from_slice(&(-1_i64).to_le_bytes());
        block(&mut out, 0x0a0d_0d0a, &body)?;
        Ok(PcapngWriter { out, interfaces: 0 })
    }

    /// Declares an interface; returns its id.
    ///
    /// # Errors
    /// When writing fails.
    pub fn interface(&mut self, link: LinkType) -> io::Result<u32> {
        let mut body = Vec::new();
        body.extend_from_slice(&u16::try_from(link.0).unwrap_or(0).to_le_bytes());
        body.extend_from_slice(&0_u16.to_le_bytes());
        body.extend_from_slice(&262_144_u32.to_le_bytes());
        block(&mut self.out, 1, &body)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    /// A Decryption Secrets Block (pcapng block type 0x0000000A) of secrets type `kind`, e.g.
    /// [`SECRETS_TYPE_TLS_KEY_LOG`](crate::capture::SECRETS_TYPE_TLS_KEY_LOG) with key log text.
    ///
    /// # Errors
    /// When writing fails.
    pub fn decryption_secrets(&mut self, kind: u32, secrets: &[u8]) -> io::Result<()> {
        let len = u32::try_from(secrets.len()).unwrap_or(u32::MAX);
        let mut body = Vec::with_capacity(8 + secrets.len() + 3);
        body.extend_from_slice(&kind.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(secrets);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        block(&mut self.out, 0x0000_000a, &body)
    }

    /// # Errors
    /// When writing fails.
    pub fn packet(&mut self, interface: u32, time_us: i64, data: &[u8]) -> io::Result<()> {
        let ts = u64::try_from(time_us).unwrap_or(0);
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut body = Vec::with_capacity(20 + data.len() + 3);
        body.extend_from_slice(&interface.to_le_bytes());
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        block(&mut self.out, 6, &body)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn block(out: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len() + 12).unwrap_or(u32::MAX);
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&len.to_le_bytes())
}

/// An IPv4 or IPv6 packet around a transport payload.
pub fn ip(src: IpAddr, dst: IpAddr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
            let mut p = vec![0x45, 0];
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(payload);
            p
        }
        _ => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&len.to_be_bytes());
            p.push(protocol);
            p.push(64);
            p.extend_from_slice(&to6(src).octets());
            p.extend_from_slice(&to6(dst).octets());
            p.extend_from_slice(payload);
            p
        }
    }
}

/// Splits an IPv4 packet into fragments carrying at most `payload_bytes` (a multiple of 8) each.
pub fn ipv4_fragments(packet: &[u8], payload_bytes: usize) -> Vec<Vec<u8>> {
    let header = &packet[..20];
    let payload = &packet[20..];
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < payload.len() {
        let end = (offset + payload_bytes).min(payload.len());
        let mut p = header.to_vec();
        let total = u16::try_from(20 + end - offset).unwrap_or(u16::MAX);
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let more = if end < payload.len() { 0x2000 } else { 0 };
        let field = u16::try_from(offset / 8).unwrap_or(0) | more;
        p[6..8].copy_from_slice(&field.to_be_bytes());
        p.extend_from_slice(&payload[offset..end]);
        out.push(p);
        offset = end;
    }
    out
}

/// Splits an IPv6 packet (a bare 40-byte header, no extension headers) into fragments
/// carrying at most `payload_bytes` (a multiple of 8) each, with fragment extension headers
/// of identification `id`.
pub fn ipv6_fragments(packet: &[u8], payload_bytes: usize, id: u32) -> Vec<Vec<u8>> {
    let header = &packet[..40];
    let next = header[6];
    let payload = &packet[40..];
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < payload.len() {
        let end = (offset + payload_bytes).min(payload.len());
        let mut p = header.to_vec();
        p[6] = 44;
        let len = u16::try_from(8 + end - offset).unwrap_or(u16::MAX);
        p[4..6].copy_from_slice(&len.to_be_bytes());
        let more = u16::from(end < payload.len());
        let field = (u16::try_from(offset).unwrap_or(0) & 0xfff8) | more;
        p.extend_from_slice(&[next, 0]);
        p.extend_from_slice(&field.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&payload[offset..end]);
        out.push(p);
        offset = end;
    }
    out
}

pub fn tcp(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&src_port.to_be_bytes());
    t.extend_from_slice(&dst_port.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap_or(0).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// Wraps an IP packet in a link-layer header of `link` (Ethernet, raw, SLL, SLL2), with
/// `vlan` tags (outermost first) on the link types that carry an EtherType: with two or more,
/// the outer one is an 802.1ad service tag (QinQ), the others 802.1Q.
pub fn frame(link: LinkType, vlan: &[u16], packet: &[u8]) -> Vec<u8> {
    let ethertype = if packet.first().is_some_and(|b| b >> 4 == 6) {
        ETHERTYPE_IPV6
    } else {
        ETHERTYPE_IPV4
    };
    // The EtherType field of the link header, then after the header each tag's TCI and the
    // type of what follows it.
    let tpid = |i: usize| {
        if i == 0 && vlan.len() > 1 {
            0x88a8_u16
        } else {
            0x8100
        }
    };
    let first = if vlan.is_empty() { ethertype } else { tpid(0) };
    let mut tags = Vec::with_capacity(vlan.len() * 4);
    for (i, tci) in vlan.iter().enumerate() {
        tags.extend_from_slice(&tci.to_be_bytes());
        let next = if i + 1 < vlan.len() {
            tpid(i + 1)
        } else {
            ethertype
        };
        tags.extend_from_slice(&next.to_be_bytes());
    }
    let mut f = Vec::with_capacity(packet.len() + 24 + tags.len());
    match link {
        LinkType::ETHERNET => {
            f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&first.to_be_bytes());
            f.extend_from_slice(&tags);
        }
        LinkType::LINUX_SLL => {
            f.extend_from_slice(&[0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(&first.to_be_bytes());
            f.extend_from_slice(&tags);
        }
        LinkType::LINUX_SLL2 => {
            f.extend_from_slice(&first.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(&tags);
        }
        _ => {}
    }
    f.extend_from_slice(packet);
    f
}

/// A GRE (version 0) header with a key, around a packet of `ethertype` (0x0800 IPv4, 0x86dd
/// IPv6, 0x6558 an Ethernet frame).
pub fn gre(ethertype: u16, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![0x20, 0x00];
    g.extend_from_slice(&ethertype.to_be_bytes());
    g.extend_from_slice(&0x0000_0001_u32.to_be_bytes());
    g.extend_from_slice(inner);
    g
}

/// A whole TCP connection as IP packets: handshake, the client's bytes in `segment_bytes`
/// pieces, the server's answer, and both FINs.
pub fn tcp_conversation(
    client: SocketAddr,
    server: SocketAddr,
    request: &[u8],
    response: &[u8],
    segment_bytes: usize,
) -> Vec<Vec<u8>> {
    let (c, s) = (client.ip(), server.ip());
    let (cp, sp) = (client.port(), server.port());
    let (mut cseq, mut sseq) = (1000_u32, 5000_u32);
    let mut packets = vec![
        ip(c, s, 6, &tcp(cp, sp, cseq, 0, TCP_SYN, &[])),
        ip(
            s,
            c,
            6,
            &tcp(sp, cp, sseq, cseq + 1, TCP_SYN | TCP_ACK, &[]),
        ),
    ];
    cseq += 1;
    sseq += 1;
    packets.push(ip(c, s, 6, &tcp(cp, sp, cseq, sseq, TCP_ACK, &[])));
    for piece in request.chunks(segment_bytes.max(1)) {
        packets.push(ip(
            c,
            s,
            6,
            &tcp(cp, sp, cseq, sseq, TCP_ACK | TCP_PSH, piece),
        ));
        cseq = cseq.wrapping_add(piece.len() as u32);
    }
    for piece in response.chunks(segment_bytes.max(1)) {
        packets.push(ip(
            s,
            c,
            6,
            &tcp(sp, cp, sseq, cseq, TCP_ACK | TCP_PSH, piece),
        ));
        sseq = sseq.wrapping_add(piece.len() as u32);
    }
    packets.push(ip(
        c,
        s,
        6,
        &tcp(cp, sp, cseq, sseq, TCP_FIN | TCP_ACK, &[]),
    ));
    packets.push(ip(
        s,
        c,
        6,
        &tcp(sp, cp, sseq, cseq + 1, TCP_FIN | TCP_ACK, &[]),
    ));
    packets
}

/// A pcap (Ethernet) holding `packets`, one millisecond apart.
pub fn pcap(packets: &[Vec<u8>]) -> Vec<u8> {
    let Ok(mut w) = PcapWriter::new(Vec::new(), LinkType::ETHERNET) else {
        return Vec::new();
    };
    for (i, p) in packets.iter().enumerate() {
        // Writing to a Vec cannot fail.
        let _ = w.frame(
            1_411_632_000_000_000 + i as i64 * 1000,
            &frame(LinkType::ETHERNET, &[], p),
        );
    }
    w.into_inner()
}
