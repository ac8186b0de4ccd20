//! TLS ClientHello server name extraction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::tls::hello;

fuzz_target!(|data: &[u8]| {
    if let Some(name) = hello::client_hello_sni(data) {
        assert!(name.len() <= hello::SERVER_NAME_BYTES_MAX);
    }
});
