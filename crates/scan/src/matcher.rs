//! One pass over the traffic for every pattern of every identifier, plus the markers of nested
//! blobs.
//!
//! We measured the automata first (`cargo run --release --example matcher_bench`): with the
//! ~450 patterns of a full profile, daachorse's double-array Aho-Corasick ran at 90-570 MiB/s
//! on this project's 2-core machine, aho-corasick's DFA at 230-470 MiB/s and its default at
//! 100-280 MiB/s, hex-heavy bodies being the slowest for all; this filter at 2.8-3.5 GiB/s. Real traffic almost never contains
//! a pattern, so a filter does better. Every pattern of at least [`SAMPLED_BYTES_MIN`] bytes is
//! registered under its four-byte grams at offsets 0 to [`STRIDE`] - 1, hashed into a bitmap
//! that fits in L1 cache; we then look only at every [`STRIDE`]th position of the haystack (an
//! occurrence always covers exactly one of them at one of those offsets): one load, one
//! multiply and one bit test per four bytes. Positions that hit the bitmap are compared with
//! the patterns of their bucket. The few shorter patterns, and the markers of compressed
//! base64 blobs, are found with `memchr::memmem`, whose SIMD search runs at memory speed.

use crate::ScanError;
use crate::needle::{NEEDLES_MAX, Needle};

/// What a pattern stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// An identifier written in one encoding.
    Identifier { target: usize, encoding: String },
    /// The start of a base64 blob of compressed data, worth decoding and searching again.
    CompressedBase64,
}

/// Where a pattern matched, and what it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    /// Index into [`Matcher::hits`].
    pub entry: u32,
}

/// Bytes of the grams the filter hashes.
pub const ANCHOR_BYTES: usize = 4;
/// Distance between the haystack positions the filter looks at.
pub const STRIDE: usize = 4;
/// Patterns this long or longer go through the sampled filter; shorter ones through memmem.
pub const SAMPLED_BYTES_MIN: usize = STRIDE + ANCHOR_BYTES - 1;
/// Bits of the gram hash: the bitmap is 2^17 bits, 16 KiB.
const HASH_BITS: u32 = 17;
const BITMAP_WORDS: usize = (1 << HASH_BITS) / 64;
const _: () = assert!(crate::needle::NEEDLE_BYTES_MIN >= 2);

/// The base64 starts of gzip (`1f 8b 08`) and zstd (`28 b5 2f fd`) data, and the first two
/// characters of zlib's (`78 9c` → `eJ`, `78 da` → `eN`, checked further in
/// [`Matcher::find_all`]): a blob that starts like this is decoded and searched again.
const COMPRESSED_BASE64_MARKERS: [&[u8]; 4] = [b"H4sI", b"KLUv", b"eJ", b"eN"];

fn anchor_hash(anchor: u32) -> usize {
    (anchor.wrapping_mul(0x9e37_79b1) >> (32 - HASH_BITS)) as usize
}

/// One pattern registered under the gram at `offset` in it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    gram: u32,
    id: u32,
    offset: u32,
}

pub struct Matcher {
    /// Bit `anchor_hash(g)` is set when some entry's gram is `g`. A fixed-size array, so that
    /// indexing it with a hash of [`HASH_BITS`] bits needs no bounds check.
    bitmap: Box<[u64; BITMAP_WORDS]>,
    /// Entries by gram hash: `entries[bucket_start[h]..bucket_start[h + 1]]`.
    bucket_start: Vec<u32>,
    entries: Vec<Entry>,
    /// Patterns shorter than [`SAMPLED_BYTES_MIN`], found with memmem, and marker finders.
    short: Vec<(memchr::memmem::Finder<'static>, u32)>,
    markers: Vec<(memchr::memmem::Finder<'static>, u32)>,
    patterns: Vec<Vec<u8>>,
    /// For each distinct pattern, every hit it stands for.
    hits: Vec<Vec<Hit>>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("patterns", &self.hits.len())
            .finish()
    }
}

impl Matcher {
    /// # Errors
    /// When there are more than [`NEEDLES_MAX`] patterns or the automaton cannot be built.
    pub fn new(needles: &[Needle]) -> Result<Matcher, ScanError> {
        if needles.len() > NEEDLES_MAX {
            return Err(ScanError::Matcher(format!(
                "{} patterns, at most {NEEDLES_MAX} allowed",
                needles.len()
            )));
        }
        let mut by_pattern: std::collections::BTreeMap<&[u8], Vec<Hit>> = Default::default();
        for needle in needles {
            by_pattern
                .entry(&needle.pattern)
                .or_default()
                .push(Hit::Identifier {
                    target: needle.target,
                    encoding: needle.encoding.clone(),
                });
        }
        let mut patterns = Vec::with_capacity(by_pattern.len() + 4);
        let mut hits = Vec::with_capacity(by_pattern.len() + 4);
        for (pattern, hit) in by_pattern {
            patterns.push(pattern.to_vec());
            hits.push(hit);
        }
        let mut markers = Vec::new();
        for marker in COMPRESSED_BASE64_MARKERS {
            let id = u32::try_from(patterns.len()).unwrap_or(u32::MAX);
            markers.push((memchr::memmem::Finder::new(marker).into_owned(), id));
            patterns.push(marker.to_vec());
            hits.push(vec![Hit::CompressedBase64]);
        }
        let mut entries = Vec::new();
        let mut short = Vec::new();
        for (id, pattern) in patterns.iter().enumerate() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            if hits[id as usize] == [Hit::CompressedBase64] {
                continue;
            }
            if pattern.len() < SAMPLED_BYTES_MIN {
                short.push((memchr::memmem::Finder::new(pattern).into_owned(), id));
                continue;
            }
            for offset in 0..STRIDE {
                let g = &pattern[offset..offset + ANCHOR_BYTES];
                entries.push(Entry {
                    gram: u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
                    id,
                    offset: offset as u32,
                });
            }
        }
        let buckets = 1_usize << HASH_BITS;
        let mut bitmap = Box::new([0_u64; BITMAP_WORDS]);
        let mut bucket_start = vec![0_u32; buckets + 1];
        entries.sort_by_key(|e| anchor_hash(e.gram));
        for e in &entries {
            let h = anchor_hash(e.gram);
            bitmap[h / 64] |= 1 << (h % 64);
            bucket_start[h + 1] += 1;
        }
        for h in 0..buckets {
            bucket_start[h + 1] += bucket_start[h];
        }
        Ok(Matcher {
            bitmap,
            bucket_start,
            entries,
            short,
            markers,
            patterns,
            hits,
        })
    }

    pub fn hits(&self, entry: u32) -> &[Hit] {
        self.hits.get(entry as usize).map_or(&[], Vec::as_slice)
    }

    /// Every match in `haystack`, overlapping ones included, appended to `out` in no
    /// particular order.
    pub fn find_all(&self, haystack: &[u8], out: &mut Vec<Match>) {
        const _: () = assert!(STRIDE == ANCHOR_BYTES);
        for (index, g) in haystack.chunks_exact(STRIDE).enumerate() {
            let gram = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
            let h = anchor_hash(gram);
            if self.bitmap[h / 64] & (1 << (h % 64)) != 0 {
                self.verify(haystack, index * STRIDE, gram, h, out);
            }
        }
        for (finder, id) in &self.short {
            let len = self.patterns[*id as usize].len();
            // find_iter skips overlapping occurrences ("aaaa" twice in "aaaaa"); step by one.
            let mut from = 0;
            while let Some(found) = haystack.get(from..).and_then(|h| finder.find(h)) {
                let start = from + found;
                out.push(Match {
                    start,
                    end: start + len,
                    entry: *id,
                });
                from = start + 1;
            }
        }
        for (finder, id) in &self.markers {
            for start in finder.find_iter(haystack) {
                let third = haystack.get(start + 2).copied();
                let zlib = match &haystack[start..start + 2] {
                    b"eJ" => matches!(third, Some(b'w'..=b'z')),
                    b"eN" => matches!(third, Some(b'o'..=b'r')),
                    _ => true,
                };
                if zlib {
                    out.push(Match {
                        start,
                        end: start + self.patterns[*id as usize].len(),
                        entry: *id,
                    });
                }
            }
        }
    }

    #[cold]
    fn verify(&self, haystack: &[u8], at: usize, gram: u32, h: usize, out: &mut Vec<Match>) {
        let entries =
            &self.entries[self.bucket_start[h] as usize..self.bucket_start[h + 1] as usize];
        for e in entries {
            let offset = e.offset as usize;
            if e.gram != gram || offset > at {
                continue;
            }
            let start = at - offset;
            let pattern = &self.patterns[e.id as usize];
            if haystack[start..].starts_with(pattern) {
                out.push(Match {
                    start,
                    end: start + pattern.len(),
                    entry: e.id,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every occurrence of every pattern, by brute force.
    fn naive(patterns: &[Vec<u8>], haystack: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for p in patterns {
            for start in 0..haystack.len() {
                if haystack[start..].starts_with(p) {
                    out.push((start, start + p.len()));
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn finds_exactly_what_brute_force_finds() {
        let mut seed = 0x1234_5678_9abc_def1_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..50 {
            // Small alphabets make overlaps and repeats likely; lengths straddle the stride.
            let alphabet = if round % 2 == 0 { 3 } else { 16 };
            let patterns: Vec<Vec<u8>> = (0..20)
                .map(|_| {
                    let len = crate::needle::NEEDLE_BYTES_MIN + (next() % 12) as usize;
                    (0..len).map(|_| b'a' + (next() % alphabet) as u8).collect()
                })
                .collect();
            let needles: Vec<Needle> = patterns
                .iter()
                .enumerate()
                .map(|(i, p)| Needle {
                    pattern: p.clone(),
                    target: i,
                    encoding: "plain".into(),
                })
                .collect();
            let matcher = Matcher::new(&needles).unwrap();
            let haystack: Vec<u8> = (0..2000)
                .map(|_| b'a' + (next() % alphabet) as u8)
                .collect();
            let mut found = Vec::new();
            matcher.find_all(&haystack, &mut found);
            let mut found: Vec<(usize, usize)> = found
                .iter()
                .filter(|m| !matches!(matcher.hits(m.entry), [Hit::CompressedBase64]))
                .map(|m| (m.start, m.end))
                .collect();
            found.sort_unstable();
            let mut unique = patterns.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(found, naive(&unique, &haystack), "round {round}");
        }
    }
}
