//! The server name a TLS client asks for in its ClientHello.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_plaintext,
};

/// Longest server name we keep (DNS names are at most 253 bytes).
pub const SERVER_NAME_BYTES_MAX: usize = 255;

/// The SNI host name of the ClientHello at the start of `data`, if there is one.
pub fn client_hello_sni(data: &[u8]) -> Option<String> {
    let (_, record) = parse_tls_plaintext(data).ok()?;
    for message in &record.msg {
        let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = message else {
            continue;
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
    }
    None
}

/// Whether `data` starts like a TLS handshake record.
pub fn looks_like_tls(data: &[u8]) -> bool {
    matches!(data, [0x16, 0x03, 0..=4, ..])
}
