//! TCP stream reassembly, one direction at a time.
//!
//! Segments arrive in any order, repeated and overlapping. We keep the contiguous prefix of the
//! stream in `runs` and hold segments beyond a hole in `pending` until the hole fills. When the
//! hole does not fill (the capture missed a packet), we give up on it once too much waits behind
//! it or when the flow ends: a new run starts after the gap and a gap is counted, so everything
//! after the gap is still scanned.
//!
//! Overlaps keep the bytes that arrived first, like most TCP stacks; a retransmission that
//! disagrees with what we already hold is therefore ignored.

use std::collections::BTreeMap;

/// Most bytes kept for one direction of one flow; what comes after is not scanned and a warning
/// says so.
pub const STREAM_BYTES_MAX: u64 = 64 << 20;
/// Most out-of-order bytes held behind one hole before we skip the hole.
pub const PENDING_BYTES_MAX: usize = 4 << 20;
/// Most out-of-order segments held behind one hole before we skip the hole.
pub const PENDING_SEGMENTS_MAX: usize = 4096;
/// Most contiguous runs (pieces between gaps) kept for one direction.
pub const RUNS_MAX: usize = 1024;
/// Most frame marks kept for one direction; past this, later bytes are attributed to the last one.
pub const MARKS_MAX: usize = 1 << 16;
/// Most stream buffers kept for reuse by [`BufferPool`].
pub const POOLED_BUFFERS_MAX: usize = 256;
/// Largest buffer kept for reuse; larger ones are freed.
pub const POOLED_BUFFER_BYTES_MAX: usize = 256 << 10;

const _: () = assert!(PENDING_BYTES_MAX as u64 <= STREAM_BYTES_MAX);
// A relative sequence number of a kept byte must fit in half the sequence space, so that
// "before the start" and "after the end" stay distinguishable.
const _: () = assert!(STREAM_BYTES_MAX < (1 << 31));

/// A contiguous piece of the stream: the bytes from `start` on, without a hole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub data: Vec<u8>,
}

/// Where in the stream a captured frame's bytes begin, for `first_seen` and `frame` in findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub offset: u64,
    pub frame: u64,
    pub time_us: i64,
}

/// Why bytes were lost from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// A hole that never filled; `bytes` were missing.
    Gap { at: u64, bytes: u64 },
    /// The stream went past [`STREAM_BYTES_MAX`].
    Truncated,
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number of stream offset 0.
    base: Option<u32>,
    /// Offset of the next byte we expect: the end of the last run.
    next: u64,
    runs: Vec<Run>,
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    marks: Vec<Mark>,
    losses: Vec<Loss>,
    truncated: bool,
    /// Bytes now held in `runs` and `pending`.
    held_bytes: usize,
    pub fin: bool,
    /// An empty buffer from an earlier stream, for the first run.
    spare: Vec<u8>,
}

/// Buffers of streams already scanned, handed to new streams: growing a fresh `Vec` packet by
/// packet copied most of every stream a second time (the 1 GiB benchmark spent a tenth of its
/// time in memmove).
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty buffer, with room if one was given back.
    pub fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }

    /// Keeps `buffer` for reuse, unless the pool is full or the buffer is larger than
    /// [`POOLED_BUFFER_BYTES_MAX`].
    pub fn give(&mut self, mut buffer: Vec<u8>) {
        if self.free.len() < POOLED_BUFFERS_MAX && buffer.capacity() <= POOLED_BUFFER_BYTES_MAX {
            buffer.clear();
            self.free.push(buffer);
        }
    }
}

impl Stream {
    /// A stream whose first run is written into `buffer` (cleared first).
    pub fn with_buffer(mut buffer: Vec<u8>) -> Stream {
        buffer.clear();
        Stream {
            spare: buffer,
            ..Stream::default()
        }
    }

    /// Bytes this stream holds in memory right now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Starts the stream at a SYN: the first data byte is `seq + 1`.
    pub fn syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// Adds one segment's payload, sent with sequence number `seq`.
    pub fn segment(&mut self, seq: u32, payload: &[u8], frame: u64, time_us: i64) {
        if payload.is_empty() {
            return;
        }
        // A capture that starts mid-connection has no SYN: the first byte seen is offset 0.
        let base = *self.base.get_or_insert(seq);
        let relative = seq.wrapping_sub(base);
        if relative >= 1 << 31 {
            // Before the start of what we follow (an old retransmission): nothing to add.
            return;
        }
        let start = u64::from(relative);
        let end = start + payload.len() as u64;
        if end <= self.next {
            return; // A retransmission of bytes we hold.
        }
        if self.marks.len() < MARKS_MAX {
            self.marks.push(Mark {
                offset: start.max(self.next),
                frame,
                time_us,
            });
        }
        if start <= self.next {
            let skip = usize::try_from(self.next - start).unwrap_or(usize::MAX);
            self.append(&payload[skip.min(payload.len())..]);
            self.drain_pending();
        } else {
            self.hold(start, payload);
        }
    }

    fn hold(&mut self, start: u64, payload: &[u8]) {
        if start >= STREAM_BYTES_MAX {
            self.truncate();
            return;
        }
        match self.pending.get(&start) {
            Some(held) if held.len() >= payload.len() => return,
            Some(held) => {
                self.pending_bytes -= held.len();
                self.held_bytes -= held.len();
            }
            None => {}
        }
        self.pending_bytes += payload.len();
        self.held_bytes += payload.len();
        self.pending.insert(start, payload.to_vec());
        while self.pending_bytes > PENDING_BYTES_MAX || self.pending.len() > PENDING_SEGMENTS_MAX {
            self.skip_gap();
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let room = STREAM_BYTES_MAX.saturating_sub(self.next);
        let keep = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if keep < bytes.len() {
            self.truncate();
        }
        if keep == 0 {
            return;
        }
        if self.runs.is_empty() {
            self.runs.push(Run {
                start: self.next,
                data: std::mem::take(&mut self.spare),
            });
        }
        // Invariant: `runs` is non-empty here, we pushed one above if it was empty.
        let run = self.runs.last_mut().expect("a run exists");
        run.data.extend_from_slice(&bytes[..keep]);
        self.next += keep as u64;
        self.held_bytes += keep;
    }

    fn truncate(&mut self) {
        if !self.truncated {
            self.truncated = true;
            self.losses.push(Loss::Truncated);
        }
        self.held_bytes -= self.pending_bytes;
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// Moves every pending segment that now touches the end of the stream into it.
    fn drain_pending(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let data = entry.remove();
            self.pending_bytes -= data.len();
            self.held_bytes -= data.len();
            let end = start + data.len() as u64;
            if end > self.next {
                let skip = usize::try_from(self.next - start).unwrap_or(usize::MAX);
                self.append(&data[skip.min(data.len())..]);
            }
        }
    }

    /// Gives up on the hole before the first pending segment: a new run starts there.
    fn skip_gap(&mut self) {
        let Some((&start, _)) = self.pending.first_key_value() else {
            return;
        };
        if self.runs.len() >= RUNS_MAX {
            // Too fragmented to be worth following further.
            self.truncate();
            return;
        }
        self.losses.push(Loss::Gap {
            at: self.next,
            bytes: start - self.next,
        });
        self.next = start;
        self.runs.push(Run {
            start,
            data: Vec::new(),
        });
        self.drain_pending();
    }

    /// Ends the stream: skips the holes left, and hands over what it held, its frame marks and
    /// its losses. The stream can go on receiving after this (its next bytes form a new run).
    pub fn take(&mut self) -> (Vec<Run>, Vec<Mark>, Vec<Loss>) {
        while !self.pending.is_empty() && !self.truncated {
            self.skip_gap();
        }
        self.held_bytes = 0;
        self.pending.clear();
        self.pending_bytes = 0;
        self.marks.sort_by_key(|m| m.offset);
        let runs = std::mem::take(&mut self.runs);
        let runs = runs.into_iter().filter(|r| !r.data.is_empty()).collect();
        // Later bytes start a new run, so a parser resynchronises instead of continuing mid-message.
        (
            runs,
            std::mem::take(&mut self.marks),
            std::mem::take(&mut self.losses),
        )
    }
}

impl Mark {
    /// The mark covering stream `offset`: the last one at or before it.
    pub fn find(marks: &[Mark], offset: u64) -> Option<Mark> {
        let index = marks.partition_point(|m| m.offset <= offset);
        marks
            .get(index.checked_sub(1)?)
            .copied()
            .or(marks.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(stream: &mut Stream) -> (Vec<(u64, Vec<u8>)>, Vec<Loss>) {
        let (runs, _, losses) = stream.take();
        (
            runs.into_iter().map(|r| (r.start, r.data)).collect(),
            losses,
        )
    }

    #[test]
    fn in_order_out_of_order_retransmitted_and_overlapping_segments_make_one_run() {
        let mut s = Stream::default();
        s.syn(999);
        s.segment(1000, b"hello", 1, 0);
        s.segment(1007, b"world", 2, 0); // ahead of a hole
        s.segment(1000, b"hello", 3, 0); // retransmission
        s.segment(1003, b"lo, w", 4, 0); // overlaps both sides, fills the hole
        s.segment(1009, b"rld!", 5, 0); // overlap at the end
        let (runs, losses) = collect(&mut s);
        assert_eq!(runs, vec![(0, b"hello, world!".to_vec())]);
        assert!(losses.is_empty());
    }

    #[test]
    fn a_gap_is_reported_and_the_rest_is_kept() {
        let mut s = Stream::default();
        s.segment(5000, b"abc", 1, 0);
        s.segment(5010, b"xyz", 2, 0);
        let (runs, losses) = collect(&mut s);
        assert_eq!(runs, vec![(0, b"abc".to_vec()), (10, b"xyz".to_vec())]);
        assert_eq!(losses, vec![Loss::Gap { at: 3, bytes: 7 }]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut s = Stream::default();
        s.syn(u32::MAX - 2);
        s.segment(u32::MAX - 1, b"ab", 1, 0);
        s.segment(0, b"cd", 2, 0);
        let (runs, _) = collect(&mut s);
        assert_eq!(runs, vec![(0, b"abcd".to_vec())]);
    }

    #[test]
    fn pending_bytes_max_is_crossed_by_skipping_the_hole() {
        let mut s = Stream::default();
        s.segment(0, b"a", 1, 0);
        let chunk = vec![b'x'; 64 << 10];
        let mut seq = 100_u32;
        let mut sent = 0;
        while sent <= PENDING_BYTES_MAX {
            s.segment(seq, &chunk, 2, 0);
            seq += chunk.len() as u32;
            sent += chunk.len();
        }
        assert!(s.pending_bytes <= PENDING_BYTES_MAX);
        let (runs, losses) = collect(&mut s);
        assert_eq!(losses[0], Loss::Gap { at: 1, bytes: 99 });
        assert_eq!(runs[1].1.len(), sent);
    }

    #[test]
    fn pending_segments_max_is_crossed_by_skipping_the_hole() {
        let mut s = Stream::default();
        s.segment(0, b"a", 1, 0);
        // Every other byte: each segment waits behind its own hole.
        for i in 0..=PENDING_SEGMENTS_MAX as u32 {
            s.segment(10 + 2 * i, b"y", 2, 0);
        }
        let (_, losses) = collect(&mut s);
        assert!(losses.len() > 1);
    }

    #[test]
    fn stream_bytes_max_truncates() {
        let mut s = Stream::default();
        let chunk = vec![b'z'; 1 << 20];
        let mut seq = 0_u32;
        for _ in 0..=(STREAM_BYTES_MAX >> 20) {
            s.segment(seq, &chunk, 1, 0);
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        let (runs, losses) = collect(&mut s);
        assert_eq!(runs[0].1.len() as u64, STREAM_BYTES_MAX);
        assert_eq!(losses, vec![Loss::Truncated]);
    }

    #[test]
    fn runs_max_stops_following_a_shredded_stream() {
        let mut s = Stream::default();
        s.segment(0, b"a", 1, 0);
        // Each segment beyond a hole of its own; skipping holes at the end makes one run each.
        for i in 0..=RUNS_MAX as u32 {
            s.segment(10 + 4 * i, b"b", 2, 0);
        }
        let (runs, _, losses) = s.take();
        assert!(runs.len() <= RUNS_MAX);
        assert_eq!(losses.last(), Some(&Loss::Truncated));
    }

    #[test]
    fn marks_max_bounds_the_frame_marks() {
        let mut s = Stream::default();
        for i in 0..=MARKS_MAX as u32 {
            s.segment(i, b"m", u64::from(i), 0);
        }
        let (runs, marks, _) = s.take();
        assert_eq!(marks.len(), MARKS_MAX);
        assert_eq!(runs[0].data.len(), MARKS_MAX + 1);
    }

    #[test]
    fn pooled_buffers_are_reused_and_bounded() {
        let mut pool = BufferPool::default();
        let mut s = Stream::with_buffer(pool.take());
        s.segment(0, &[b'a'; 5000], 1, 0);
        let (runs, _, _) = s.take();
        for run in runs {
            pool.give(run.data);
        }
        let reused = pool.take();
        assert!(reused.is_empty() && reused.capacity() >= 5000);
        let mut s = Stream::with_buffer(reused);
        s.segment(0, b"xyz", 1, 0);
        assert_eq!(s.take().0[0].data, b"xyz");
        pool.give(Vec::with_capacity(POOLED_BUFFER_BYTES_MAX + 1));
        for _ in 0..=POOLED_BUFFERS_MAX {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.free.len(), POOLED_BUFFERS_MAX);
        assert!(
            pool.free
                .iter()
                .all(|b| b.capacity() <= POOLED_BUFFER_BYTES_MAX)
        );
    }

    #[test]
    fn marks_point_at_the_frame_that_carried_a_byte() {
        let mut s = Stream::default();
        s.segment(0, b"aaaa", 7, 70);
        s.segment(4, b"bbbb", 8, 80);
        let (_, marks, _) = s.take();
        assert_eq!(Mark::find(&marks, 5).map(|m| m.frame), Some(8));
        assert_eq!(Mark::find(&marks, 0).map(|m| m.frame), Some(7));
    }
}
