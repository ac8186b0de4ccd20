//! TCP reassembly: segments with arbitrary sequence numbers, lengths and order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::transport::reassembly::{STREAM_BYTES_MAX, Stream};

fuzz_target!(|data: &[u8]| {
    let mut stream = Stream::default();
    let mut rest = data;
    let mut frame = 0;
    // Each segment: 1 byte flags, 4 bytes sequence number, 1 byte length, then the payload.
    while let [flags, a, b, c, d, len, tail @ ..] = rest {
        let seq = u32::from_be_bytes([*a, *b, *c, *d]);
        let len = usize::from(*len).min(tail.len());
        if flags & 1 != 0 {
            stream.syn(seq);
        }
        frame += 1;
        stream.segment(seq, &tail[..len], frame, 0);
        rest = &tail[len..];
    }
    let (runs, marks, _) = stream.take();
    let total: u64 = runs.iter().map(|r| r.data.len() as u64).sum();
    assert!(total <= STREAM_BYTES_MAX);
    for pair in runs.windows(2) {
        assert!(pair[0].start + pair[0].data.len() as u64 <= pair[1].start);
    }
    assert!(marks.windows(2).all(|m| m[0].offset <= m[1].offset));
});
