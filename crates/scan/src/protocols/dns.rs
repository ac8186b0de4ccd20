//! DNS messages: the names asked for (searched for identifiers) and the addresses answered (for
//! attribution of later flows to a host name).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::{Name, Packet, rdata::RData};

/// Most names taken from one message.
pub const DNS_NAMES_MAX: usize = 256;

/// What one DNS message says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsMessage {
    /// Every name in the questions and the answers.
    pub names: Vec<String>,
    /// Address → the name that was asked for (CNAME chains lead back to the question).
    pub answers: Vec<(IpAddr, String)>,
}

/// Parses a DNS message; `None` when it is not one.
pub fn parse(data: &[u8]) -> Option<DnsMessage> {
    let packet = Packet::parse(data).ok()?;
    let mut message = DnsMessage::default();
    let asked = packet.questions.first().map(|q| name_text(&q.qname));
    for question in packet.questions.iter().take(DNS_NAMES_MAX) {
        message.names.push(name_text(&question.qname));
    }
    for record in packet.answers.iter().take(DNS_NAMES_MAX) {
        let name = name_text(&record.name);
        let host = asked.clone().unwrap_or_else(|| name.clone());
        match &record.rdata {
            RData::A(a) => message
                .answers
                .push((IpAddr::V4(Ipv4Addr::from(a.address)), host)),
            RData::AAAA(aaaa) => message
                .answers
                .push((IpAddr::V6(Ipv6Addr::from(aaaa.address)), host)),
            RData::CNAME(cname) => message.names.push(name_text(&cname.0)),
            _ => {}
        }
        if !message.names.contains(&name) && message.names.len() < DNS_NAMES_MAX {
            message.names.push(name);
        }
    }
    Some(message)
}

/// A name as text, as simple-dns displays it (labels joined by dots, a dot or backslash inside a
/// label escaped, bytes that are not UTF-8 replaced) without formatting it a character at a time:
/// every phone's connection starts with a lookup, so this is on the reader's path for each flow.
fn name_text(name: &Name<'_>) -> String {
    // Sized once: pushing label by label grew it several times per name.
    let bytes = name.get_labels().iter().map(|l| l.len() + 1).sum();
    let mut text = String::with_capacity(bytes);
    for (i, label) in name.get_labels().iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        let bytes: &[u8] = label.as_ref();
        match std::str::from_utf8(bytes) {
            Ok(plain) if !plain.contains(['.', '\\']) => text.push_str(plain),
            _ => {
                use std::fmt::Write;
                let _ = write!(text, "{label}");
            }
        }
    }
    text
}

/// DNS over TCP: messages prefixed by a two-byte length.
pub fn parse_tcp_stream(mut data: &[u8]) -> Vec<DnsMessage> {
    let mut messages = Vec::new();
    while let [high, low, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        let Some(body) = rest.get(..len) else { break };
        if let Some(message) = parse(body) {
            messages.push(message);
        }
        data = &rest[len..];
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_simple_dns_displays_them() {
        let labels: [&[u8]; 6] = [
            b"api",
            b"phone-7",
            b"a.b",
            b"back\\slash",
            b"\xff\xfeok",
            "\u{00e9}t\u{00e9}".as_bytes(),
        ];
        for pair in labels.windows(2) {
            let name = Name::new_with_labels(&[
                simple_dns::Label::new(pair[0]).unwrap(),
                simple_dns::Label::new(pair[1]).unwrap(),
            ]);
            assert_eq!(name_text(&name), name.to_string(), "{pair:?}");
        }
        assert_eq!(name_text(&Name::new_with_labels(&[])), "");
    }

    #[test]
    fn dns_names_max_bounds_the_names_taken_from_one_message() {
        let count = DNS_NAMES_MAX + 5;
        let mut m = vec![0x12, 0x34, 0x01, 0x00];
        m.extend_from_slice(&u16::try_from(count).unwrap().to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        for i in 0..count {
            let label = format!("n{i}");
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
            m.extend_from_slice(&[7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 1, 0, 1]);
        }
        let message = parse(&m).unwrap();
        assert_eq!(message.names.len(), DNS_NAMES_MAX);
        assert_eq!(message.names[0], "n0.example");
    }
}
