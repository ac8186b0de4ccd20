//! The etcd directory's keys and values as a site's watch sees them: whatever any site wrote
//! under the prefix, the cache ignores what is malformed and stays within its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_cloud::directory::FORMER_REGIONS_MAX;
use sovereign_cloud::directory::etcd::replay_for_fuzzing;

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    let summary = replay_for_fuzzing(script);
    assert!(summary.former_longest <= FORMER_REGIONS_MAX);
    assert!(summary.placements_most <= sovereign_cloud::domain::Service::ALL.len());
});
