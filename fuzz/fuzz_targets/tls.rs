//! TLS ClientHello server name extraction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::tls::hello;

fuzz_target!(|data: &[u8]| {
    if let Some(name) = tls::client_hello_sni(data) {
        assert!(name.len() <= tls::SERVER_NAME_BYTES_MAX);
    }
});
