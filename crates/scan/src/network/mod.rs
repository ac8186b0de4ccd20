//! Frames to IP: link layers, IPv4/IPv6, TCP and UDP headers, and IP fragment reassembly.

pub mod ipfrag;
pub mod packet;
