//! The decoders: JSON escapes, URL and form encoding, base64, and every content coding, bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::finding::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::json_unescape(data);
    let _ = decode::url_decode(data, true);
    let _ = decode::base64_decode(data);
    for coding in ["gzip", "deflate", "br", "zstd", "unknown"] {
        let (out, _) = decode::decompress(coding, data);
        assert!(out.len() <= decode::DECODED_BYTES_MAX);
    }
    let _ = decode::evidence(data, data.len() / 2, data.len(), &[(0, data.len())]);
});
