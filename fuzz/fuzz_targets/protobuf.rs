//! Protobuf without a schema, and gRPC framing around it. Any input: leaves or `None`, never a
//! panic, and never deeper than PROTOBUF_DEPTH_MAX.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::protocols::{grpc, protobuf};

fuzz_target!(|data: &[u8]| {
    if let Some(leaves) = protobuf::leaves(data) {
        assert!(
            leaves
                .iter()
                .all(|l| l.path.len() <= protobuf::PROTOBUF_DEPTH_MAX)
        );
        assert!(leaves.len() <= protobuf::PROTOBUF_FIELDS_MAX);
    }
    for frame in grpc::messages(data).0 {
        let _ = protobuf::leaves(frame.data);
    }
});
