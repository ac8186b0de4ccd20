//! The scanner's integration tests: captures written by the tests themselves, plus real traffic
//! recorded on loopback (tests/fixtures).

mod attribution;
mod captures;
mod encodings;
mod fixtures;
mod h2;
mod limits;
mod protocols;
mod reassembly;
mod reports;
mod robustness;
mod support;
mod tls;
