//! Application protocols read from reassembled streams and datagrams.

pub mod dns;
pub mod grpc;
pub mod h2;
pub mod hpack;
pub mod http;
pub mod protobuf;
pub mod websocket;
