//! DNS messages over UDP and TCP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::protocols::dns;

fuzz_target!(|data: &[u8]| {
    if let Some(message) = dns::parse(data) {
        assert!(message.names.len() <= 2 * dns::DNS_NAMES_MAX);
    }
    let _ = dns::parse_tcp_stream(data);
});
