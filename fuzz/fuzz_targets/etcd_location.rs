//! The etcd directory's location (`--directory etcd://[USER@]HOST:PORT,.../PREFIX`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_cloud::directory::etcd::{ETCD_ENDPOINTS_MAX, EtcdLocation};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(location) = EtcdLocation::parse(text) {
        assert!(!location.endpoints.is_empty());
        assert!(location.endpoints.len() <= ETCD_ENDPOINTS_MAX);
        assert!(location.prefix.starts_with('/') && location.prefix.len() > 1);
        assert!(!location.prefix.ends_with('/'));
    }
});
