//! The scanner's integration tests: captures written by the tests themselves, plus real traffic
//! recorded on loopback (tests/fixtures).

mod attribution;
mod bench_captures;
mod captures;
mod encodings;
mod fixtures;
mod h2;
mod inputs;
mod limits;
mod protocols;
mod quic;
mod reassembly;
mod reports;
mod robustness;
mod speed;
mod support;
mod tls;
mod tls_legacy;
mod tls_suites;
mod websocket;
