//! QUIC (RFC 9000, 9001; v2 RFC 9369; draft-29) and HTTP/3 (RFC 9114) with QPACK (RFC 9204),
//! read from UDP datagrams.
//!
//! - [`packet`]: versions, long and short headers, Initial keys from the connection ID, keys
//!   from TLS 1.3 secrets, header protection and packet protection, key updates;
//! - [`frame`]: the frames of a decrypted packet;
//! - [`conn`]: one connection: its IDs, keys per packet number space, the hellos from the
//!   Initial CRYPTO data, and its streams reassembled;
//! - [`h3`], [`qpack`]: HTTP/3 frames and header compression (its Huffman code is HPACK's,
//!   `protocols::hpack::huffman_decode`).
//!
//! The engine (`engine/quic_flows.rs`) feeds datagrams in and searches what comes out.

pub mod conn;
pub mod frame;
pub mod h3;
pub mod packet;
pub mod qpack;
pub mod synth;

/// A QUIC connection as the report lists it, beside TLS ones, before attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicSummary {
    pub client: std::net::SocketAddr,
    pub server: std::net::SocketAddr,
    pub sni: Option<String>,
    pub host: Option<String>,
    /// `QUIC v1`, `QUIC v2`, `QUIC draft-29`, ...
    pub version: &'static str,
    pub cipher_suite: Option<u16>,
    /// The protocols the ClientHello offered (`h3`, ...).
    pub alpn: Vec<String>,
    pub visibility: crate::tls::decrypt::Visibility,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub first_time_us: i64,
    pub capture: usize,
}
