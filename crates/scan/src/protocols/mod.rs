//! Application protocols read from reassembled streams and datagrams.

pub mod dns;
pub mod http;
pub mod websocket;
