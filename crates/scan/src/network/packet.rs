//! Link, network and transport headers, borrowed from the frame.
//!
//! Hand-written rather than through etherparse because we need three things at once on every
//! frame of a gigabyte capture: no allocation, the raw IPv4 fragment fields for our own
//! reassembler, and tolerance of frames cut short by a snap length (the payload is whatever was
//! captured). Every slice is taken with `get`, so a malformed frame is `None`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A pcap/pcapng link type; unknown ones are kept as the plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The tcpdump.org name of a link type the scanner cannot read, for the warning that says
    /// so (`LINKTYPE_IEEE802_11_RADIOTAP` is written `IEEE802_11_RADIOTAP`).
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NULL",
            1 => "ETHERNET",
            6 => "IEEE802_5",
            8 => "SLIP",
            9 => "PPP",
            10 => "FDDI",
            50 => "PPP_HDLC",
            51 => "PPP_ETHER",
            101 => "RAW",
            104 => "C_HDLC",
            105 => "IEEE802_11",
            108 => "LOOP",
            113 => "LINUX_SLL",
            119 => "IEEE802_11_PRISM",
            127 => "IEEE802_11_RADIOTAP",
            163 => "IEEE802_11_AVS",
            187 => "BLUETOOTH_HCI_H4",
            192 => "PPI",
            195 => "IEEE802_15_4_WITHFCS",
            201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
            204 => "PPP_PPPD",
            220 => "USB_LINUX_MMAPPED",
            228 => "IPV4",
            229 => "IPV6",
            239 => "NFLOG",
            249 => "USBPCAP",
            258 => "PKTAP",
            276 => "LINUX_SLL2",
            _ => return None,
        })
    }
}

impl std::fmt::Display for LinkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Most stacked 802.1Q tags we walk through.
pub const VLAN_TAGS_MAX: usize = 4;
/// Most tunnel headers (IP-in-IP, GRE) we unwrap around one packet.
pub const TUNNEL_DEPTH_MAX: usize = 4;
/// Most IPv6 extension headers we walk through before giving up on a packet.
pub const IPV6_EXTENSIONS_MAX: usize = 8;

pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_GRE: u8 = 47;
/// GRE carrying Ethernet frames (transparent Ethernet bridging: NVGRE, Linux `gretap`).
const ETHERTYPE_TEB: u16 = 0x6558;
pub const PROTO_UDP: u8 = 17;

/// An IP packet, or an IPv4 or IPv6 fragment of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub payload: &'a [u8],
    pub fragment: Option<Fragment>,
}

/// The fragment fields of a packet that is one piece of a larger datagram: from the IPv4
/// header, or from an IPv6 fragment extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// The IPv4 identification (16 bits) or the IPv6 one (32 bits).
    pub id: u32,
    /// Where this piece goes in the datagram's payload, in bytes.
    pub offset: usize,
    pub more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub flags: u8,
    pub payload: &'a [u8],
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Walks the 802.1Q and 802.1ad tags that follow an EtherType field: `ethertype` is the
/// field's value, `rest` what comes after it. Each tag is a TCI and the next EtherType.
fn skip_vlan_tags(mut ethertype: u16, rest: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 0_usize;
    for _ in 0..VLAN_TAGS_MAX {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        ethertype = be16(rest, at.checked_add(2)?)?;
        at = at.checked_add(4)?;
    }
    Some((ethertype, rest.get(at..)?))
}

/// Strips the link layer: the ethertype of what follows and its bytes.
pub fn parse_link(link: LinkType, frame: &[u8]) -> Option<(u16, &[u8])> {
    match link {
        LinkType::ETHERNET => skip_vlan_tags(be16(frame, 12)?, frame.get(14..)?),
        LinkType::RAW | LinkType(12) | LinkType(14) => {
            let version = frame.first()? >> 4;
            let ethertype = match version {
                4 => ETHERTYPE_IPV4,
                6 => ETHERTYPE_IPV6,
                _ => return None,
            };
            Some((ethertype, frame))
        }
        LinkType::IPV4 => Some((ETHERTYPE_IPV4, frame)),
        LinkType::IPV6 => Some((ETHERTYPE_IPV6, frame)),
        // Linux cooked captures keep an 802.1Q tag in the packet when the driver did not strip
        // it (tcpdump -i any on a VLAN's parent interface).
        LinkType::LINUX_SLL => skip_vlan_tags(be16(frame, 14)?, frame.get(16..)?),
        LinkType::LINUX_SLL2 => skip_vlan_tags(be16(frame, 0)?, frame.get(20..)?),
        LinkType::NULL | LinkType::LOOP => {
            // BSD loopback: a 4-byte address family, in host order for NULL, network order for
            // LOOP. Look at the IP version instead of guessing the writer's byte order.
            let payload = frame.get(4..)?;
            parse_link(LinkType::RAW, payload)
        }
        LinkType(_) => None,
    }
}

/// When an IP packet's payload is itself a tunnelled packet (IPv4 or IPv6 in IP, GRE version 0
/// carrying IP or Ethernet): the inner packet's ethertype and bytes.
pub fn parse_tunnel(protocol: u8, payload: &[u8]) -> Option<(u16, &[u8])> {
    match protocol {
        PROTO_IPIP => Some((ETHERTYPE_IPV4, payload)),
        PROTO_IPV6 => Some((ETHERTYPE_IPV6, payload)),
        PROTO_GRE => {
            let flags = be16(payload, 0)?;
            // Version 1 is PPTP's enhanced GRE, which carries PPP, and source routing
            // (RFC 1701's R bit) is obsolete: neither is read.
            if flags & 0x0007 != 0 || flags & 0x4000 != 0 {
                return None;
            }
            let ethertype = be16(payload, 2)?;
            let mut at = 4_usize;
            // Checksum present: checksum and reserved; key present; sequence number present.
            for bit in [0x8000, 0x2000, 0x1000] {
                if flags & bit != 0 {
                    at = at.checked_add(4)?;
                }
            }
            let inner = payload.get(at..)?;
            if ethertype == ETHERTYPE_TEB {
                return parse_link(LinkType::ETHERNET, inner);
            }
            skip_vlan_tags(ethertype, inner)
        }
        _ => None,
    }
}

/// Parses an IPv4 or IPv6 header.
pub fn parse_ip(ethertype: u16, data: &[u8]) -> Option<IpPacket<'_>> {
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(data),
        ETHERTYPE_IPV6 => parse_ipv6(data),
        _ => None,
    }
}

fn parse_ipv4(data: &[u8]) -> Option<IpPacket<'_>> {
    let first = *data.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 {
        return None;
    }
    let total_len = usize::from(be16(data, 2)?);
    let id = be16(data, 4)?;
    let flags_offset = be16(data, 6)?;
    let protocol = *data.get(9)?;
    let src = Ipv4Addr::from(be32(data, 12)?);
    let dst = Ipv4Addr::from(be32(data, 16)?);
    // Ethernet pads short frames; a snap length cuts long ones. Trust the header for the first,
    // keep what was captured for the second.
    let end = total_len.clamp(header_len, data.len().max(header_len));
    let payload = data.get(header_len..end.min(data.len()))?;
    let more = flags_offset & 0x2000 != 0;
    let offset = usize::from(flags_offset & 0x1fff) * 8;
    let fragment = (more || offset != 0).then_some(Fragment {
        id: u32::from(id),
        offset,
        more,
    });
    Some(IpPacket {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        protocol,
        payload,
        fragment,
    })
}

fn parse_ipv6(data: &[u8]) -> Option<IpPacket<'_>> {
    if data.first()? >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(be16(data, 4)?);
    let mut next = *data.get(6)?;
    let src: [u8; 16] = data.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = data.get(24..40)?.try_into().ok()?;
    let end = 40_usize.checked_add(payload_len)?.min(data.len());
    let mut at = 40;
    let mut fragment = None;
    for _ in 0..IPV6_EXTENSIONS_MAX {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-byte units after the first 8.
            0 | 43 | 60 => {
                let len = (usize::from(*data.get(at + 1)?) + 1) * 8;
                next = *data.get(at)?;
                at = at.checked_add(len)?;
            }
            // Fragment header: what follows is one piece of the fragmentable part, which may
            // itself begin with extension headers; those are walked after reassembly
            // ([`skip_ipv6_extensions`]), so stop here.
            44 => {
                let field = be16(data, at + 2)?;
                let id = be32(data, at + 4)?;
                next = *data.get(at)?;
                at = at.checked_add(8)?;
                fragment = Some(Fragment {
                    id,
                    offset: usize::from(field & 0xfff8),
                    more: field & 1 != 0,
                });
                break;
            }
            _ => break,
        }
    }
    Some(IpPacket {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        protocol: next,
        payload: data.get(at..end.max(at))?,
        fragment,
    })
}

/// Walks the IPv6 extension headers at the start of a reassembled fragmentable part: the
/// transport protocol and its bytes. `None` when a header is cut short or there are more than
/// [`IPV6_EXTENSIONS_MAX`], or when a fragment header appears again (a fragment inside a
/// fragment is not something a sender does).
pub fn skip_ipv6_extensions(mut next: u8, data: &[u8]) -> Option<(u8, &[u8])> {
    let mut at = 0_usize;
    for _ in 0..IPV6_EXTENSIONS_MAX {
        match next {
            0 | 43 | 60 => {
                let len = (usize::from(*data.get(at.checked_add(1)?)?) + 1) * 8;
                next = *data.get(at)?;
                at = at.checked_add(len)?;
            }
            44 => return None,
            _ => return Some((next, data.get(at..)?)),
        }
    }
    None
}

pub fn parse_tcp(data: &[u8]) -> Option<TcpSegment<'_>> {
    let src_port = be16(data, 0)?;
    let dst_port = be16(data, 2)?;
    let seq = be32(data, 4)?;
    let offset = usize::from(*data.get(12)? >> 4) * 4;
    let flags = *data.get(13)?;
    if offset < 20 {
        return None;
    }
    Some(TcpSegment {
        src_port,
        dst_port,
        seq,
        flags,
        payload: data.get(offset..)?,
    })
}

pub fn parse_udp(data: &[u8]) -> Option<UdpDatagram<'_>> {
    let src_port = be16(data, 0)?;
    let dst_port = be16(data, 2)?;
    let len = usize::from(be16(data, 4)?);
    let end = len.clamp(8, data.len().max(8)).min(data.len());
    Some(UdpDatagram {
        src_port,
        dst_port,
        payload: data.get(8..end.max(8))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tags_max_is_the_deepest_stack_walked() {
        let mut frame = vec![0_u8; 12];
        for _ in 0..=VLAN_TAGS_MAX {
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        frame.extend_from_slice(&[0x08, 0x00]);
        let (ethertype, _) = parse_link(LinkType::ETHERNET, &frame).unwrap();
        assert_eq!(ethertype, ETHERTYPE_VLAN, "the fifth tag is not unwrapped");
    }

    #[test]
    fn ipv6_fragment_header_fields_and_extensions_after_reassembly() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        p.extend_from_slice(&[0; 32]);
        // Fragment header: next = destination options, offset 2 (x8 bytes), more, id 0xdeadbeef.
        p.extend_from_slice(&[60, 0, 0, 17, 0xde, 0xad, 0xbe, 0xef]);
        p.extend_from_slice(&[1; 8]);
        let ip = parse_ip(ETHERTYPE_IPV6, &p).unwrap();
        assert_eq!(ip.protocol, 60);
        assert_eq!(
            ip.fragment,
            Some(Fragment {
                id: 0xdead_beef,
                offset: 16,
                more: true,
            })
        );
        assert_eq!(ip.payload, &[1; 8]);
        // Destination options (8 bytes) then UDP.
        let whole = [17, 0, 0, 0, 0, 0, 0, 0, 9, 9];
        assert_eq!(skip_ipv6_extensions(60, &whole), Some((17, &[9_u8, 9][..])));
        assert_eq!(skip_ipv6_extensions(60, &whole[..4]), None);
        assert_eq!(skip_ipv6_extensions(44, &whole), None);
        let deep = [60, 0, 0, 0, 0, 0, 0, 0].repeat(IPV6_EXTENSIONS_MAX + 1);
        assert_eq!(skip_ipv6_extensions(60, &deep), None);
    }

    #[test]
    fn truncated_headers_are_none() {
        assert_eq!(parse_ip(ETHERTYPE_IPV4, &[0x45, 0, 0]), None);
        assert_eq!(parse_ip(ETHERTYPE_IPV6, &[0x60; 20]), None);
        assert_eq!(parse_tcp(&[0; 10]), None);
        assert_eq!(parse_udp(&[0; 7]), None);
        assert_eq!(parse_link(LinkType::LINUX_SLL2, &[0; 5]), None);
    }
}
