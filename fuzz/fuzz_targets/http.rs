//! HTTP/1.x message parsing, de-chunking and resynchronisation on arbitrary streams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::protocols::http;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match http::parse(&data[at..]) {
            Some(message) => {
                assert!(message.len <= data.len() - at);
                at += message.len.max(1);
            }
            None => at = http::resync(data, at + 1).unwrap_or(data.len()),
        }
    }
    let (body, consumed, _) = http::dechunk(data);
    assert!(consumed <= data.len());
    assert!(body.len() <= data.len());
});
