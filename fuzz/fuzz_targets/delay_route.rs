//! The delay proxy's routes (`listen=... target=... rtt_ms=... [rate_mbit=...]`, one a line).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sovereign_bench::delay_proxy::{CHUNK_BYTES_MAX, ROUTES_MAX, RTT_MS_MAX, Route};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let check = |route: &Route| {
        assert!(route.rtt <= Duration::from_millis(RTT_MS_MAX));
        if let Some(rate) = route.rate_bytes_per_s {
            // The proxy turns each chunk's size into the time it takes on the wire.
            assert!(Duration::try_from_secs_f64(CHUNK_BYTES_MAX as f64 / rate).is_ok());
        }
    };
    if let Ok(route) = Route::parse(text) {
        check(&route);
    }
    if let Ok(routes) = Route::parse_file(text) {
        assert!(!routes.is_empty() && routes.len() <= ROUTES_MAX);
        routes.iter().for_each(check);
    }
});
