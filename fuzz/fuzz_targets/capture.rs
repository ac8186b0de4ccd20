//! Whole captures: pcap, pcapng and HAR readers, link/IP/TCP/UDP parsing, fragments,
//! reassembly, protocols, decoders. Any input: a report or an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sovereign_scan::{Policy, Profile, Scanner};

const PROFILE: &str = r#"
[device]
home_country = "IN"
[identifiers]
imei = "356938035643809"
phone = "+919876543210"
wifi_mac = "00:1A:2B:3C:4D:5E"
email = "asha.rao@example.in"
[location]
lat = 12.9716
lon = 77.5946
"#;

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| {
        let profile = Profile::from_toml(PROFILE, "fuzz").expect("the fuzz profile parses");
        Scanner::new(profile, Policy::builtin()).expect("the fuzz scanner builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = scanner().scan_bytes("fuzz", data);
});
