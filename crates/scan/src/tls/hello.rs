//! The server name a TLS client asks for in its ClientHello.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_message_handshake,
};

/// Longest server name we keep (DNS names are at most 253 bytes).
pub const SERVER_NAME_BYTES_MAX: usize = 255;
/// Largest ClientHello we put back together from its records (real ones, post-quantum key
/// shares included, are a few KiB).
pub const CLIENT_HELLO_BYTES_MAX: usize = 64 << 10;
/// Most TLS records one ClientHello may be split into.
pub const CLIENT_HELLO_RECORDS_MAX: usize = 64;

const RECORD_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// The SNI host name of the ClientHello at the start of `data` (a reassembled client-to-server
/// stream), if there is one. The ClientHello may be split over several handshake records, as
/// well as over TCP segments (which reassembly has already joined).
pub fn client_hello_sni(data: &[u8]) -> Option<String> {
    let hello = client_hello_bytes(data)?;
    let (_, message) = parse_tls_message_handshake(&hello).ok()?;
    let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = message else {
        return None;
    };
    let (_, extensions) = parse_tls_extensions(hello.ext?).ok()?;
    for extension in extensions {
        let TlsExtension::SNI(names) = extension else {
            continue;
        };
        for (kind, name) in names {
            if kind == SNIType::HostName && name.len() <= SERVER_NAME_BYTES_MAX {
                return std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
            }
        }
    }
    None
}

/// The ClientHello handshake message (header included) gathered from the handshake records at
/// the start of `data`; `None` when the records are not handshake records, are cut short before
/// the message ends, or cross [`CLIENT_HELLO_BYTES_MAX`] or [`CLIENT_HELLO_RECORDS_MAX`].
fn client_hello_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let mut hello: Vec<u8> = Vec::new();
    let mut at = 0_usize;
    for _ in 0..CLIENT_HELLO_RECORDS_MAX {
        let header = data.get(at..at.checked_add(5)?)?;
        if header[0] != RECORD_HANDSHAKE || header[1] != 3 {
            return None;
        }
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let start = at + 5;
        let fragment = data.get(start..start.checked_add(length)?)?;
        hello.extend_from_slice(fragment);
        at = start + length;
        if let [kind, a, b, c, ..] = hello[..] {
            if kind != HANDSHAKE_CLIENT_HELLO {
                return None;
            }
            let total = 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
            if total > CLIENT_HELLO_BYTES_MAX {
                return None;
            }
            if hello.len() >= total {
                hello.truncate(total);
                return Some(hello);
            }
        }
    }
    None
}

/// Whether `data` starts like a TLS handshake record.
pub fn looks_like_tls(data: &[u8]) -> bool {
    matches!(data, [0x16, 0x03, 0..=4, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello handshake message (no record header) asking for `name`.
    fn hello(name: &str, padding: usize) -> Vec<u8> {
        let mut sni = Vec::new();
        sni.extend_from_slice(&((3 + name.len()) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name.as_bytes());
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni);
        // A padding extension (21), as browsers add, to make the hello as large as we like.
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&(padding as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0, padding));
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        hs
    }

    /// `message` cut into handshake records of at most `size` bytes each.
    fn records(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in message.chunks(size) {
            out.extend_from_slice(&[0x16, 3, 1]);
            out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            out.extend_from_slice(piece);
        }
        out
    }

    #[test]
    fn sni_of_a_client_hello_in_one_or_many_records() {
        let message = hello("Split.Example.CN", 60);
        // One record; records of 3 and 50 bytes (the handshake header itself split); then
        // application data that must not be taken for part of the hello.
        assert!(message.len().div_ceil(3) <= CLIENT_HELLO_RECORDS_MAX);
        for size in [message.len(), 3, 50] {
            let mut data = records(&message, size);
            data.extend_from_slice(&[0x17, 3, 3, 0, 2, 9, 9]);
            assert_eq!(
                client_hello_sni(&data).as_deref(),
                Some("split.example.cn"),
                "records of {size} bytes"
            );
        }
    }

    #[test]
    fn cut_or_foreign_records_give_no_name() {
        let message = hello("a.example", 0);
        let data = records(&message, 40);
        assert_eq!(client_hello_sni(&data[..data.len() - 1]), None);
        let mut server_hello = message.clone();
        server_hello[0] = 2;
        assert_eq!(client_hello_sni(&records(&server_hello, 40)), None);
        let mut alert = records(&message, 40);
        alert[0] = 0x15;
        assert_eq!(client_hello_sni(&alert), None);
    }

    #[test]
    fn client_hello_records_max_and_bytes_max_are_enforced() {
        let message = hello("a.example", 200);
        // Split into one record more than allowed: not gathered; into exactly as many: found.
        let size = message.len() / CLIENT_HELLO_RECORDS_MAX;
        assert!(message.len().div_ceil(size) > CLIENT_HELLO_RECORDS_MAX);
        assert_eq!(client_hello_sni(&records(&message, size)), None);
        let size = message.len().div_ceil(CLIENT_HELLO_RECORDS_MAX);
        assert_eq!(
            client_hello_sni(&records(&message, size)).as_deref(),
            Some("a.example")
        );
        // A handshake header announcing one byte more than CLIENT_HELLO_BYTES_MAX.
        let mut big = vec![HANDSHAKE_CLIENT_HELLO];
        big.extend_from_slice(&((CLIENT_HELLO_BYTES_MAX - 3) as u32).to_be_bytes()[1..]);
        big.resize(CLIENT_HELLO_BYTES_MAX + 1, 0);
        assert_eq!(client_hello_bytes(&records(&big, 16384)), None);
        let fits = hello("a.example", 60_000);
        assert!(fits.len() <= CLIENT_HELLO_BYTES_MAX);
        assert_eq!(
            client_hello_sni(&records(&fits, 16384)).as_deref(),
            Some("a.example")
        );
    }
}
