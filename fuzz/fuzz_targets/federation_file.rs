//! The federation file (`serve --federation`): TOML naming every site's URL, key and CA.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_cloud::sites::{FEDERATION_SITES_MAX, FederationFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = FederationFile::parse(text) {
        assert!(file.sites.len() <= FEDERATION_SITES_MAX);
        for peer in file.sites.values() {
            assert!(peer.url.starts_with("https://"));
        }
    }
});
