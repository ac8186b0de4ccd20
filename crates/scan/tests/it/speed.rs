//! Issue 11, item 7: the cost of a scan grows with its input and its matches, not with their
//! square, and every thread count gives the same report. No timings here: a quadratic path
//! shows as a test that takes minutes instead of a fraction of a second.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::synth;

use crate::support::*;

/// 10^5 sightings of one identifier in one flow: four bodies of 25 000, each giving 50 000
/// raw matches (two patterns of the IMEI overlap at each sighting), under
/// `MATCHES_PER_BUFFER_MAX`. Quadratic in matches per buffer, this took minutes; linear, it
/// takes well under a second in release.
#[test]
fn issue11_a_hundred_thousand_matches_cost_linear_time() {
    const SIGHTINGS_PER_BODY: usize = 25_000;
    const BODIES: usize = 4;
    let body = b"356938035643809 ".repeat(SIGHTINGS_PER_BODY);
    let request = post("t.example", "text/plain", "", &body).repeat(BODIES);
    let capture = synth::pcap(&synth::tcp_conversation(
        addr(CLIENT),
        addr(SERVER_CN),
        &request,
        OK,
        1400,
    ));
    let report = scan(&capture);
    let imei = find(&report, K::Imei);
    assert_eq!(imei.len(), 1, "{}", describe(&report));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(imei[0].count, (BODIES * SIGHTINGS_PER_BODY) as u64);
}
