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
use crate::finding::needle::{NEEDLES_MAX, Needle, Role};

/// What a pattern stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// An identifier written in one encoding.
    Identifier { target: usize, encoding: String },
    /// The start of a base64 blob of compressed data, worth decoding and searching again.
    CompressedBase64,
    /// An identifier base64-encoded twice, `skip` characters into its base64 group: the blob
    /// around it is worth decoding and searching again.
    Base64Wrapper { skip: u8 },
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
const _: () = assert!(crate::finding::needle::NEEDLE_BYTES_MIN >= 2);

/// The base64 starts of gzip (`1f 8b 08`) and zstd (`28 b5 2f fd`) data, and the first three
/// characters of zlib's (`78 9c` → `eJw`..`eJz`, `78 da` → `eNo`..`eNr`, the third character
/// taking two bits of the next byte): a blob that starts like this is decoded and searched again.
const COMPRESSED_BASE64_MARKERS: [&[u8]; 10] = [
    b"H4sI", b"KLUv", b"eJw", b"eJx", b"eJy", b"eJz", b"eNo", b"eNp", b"eNq", b"eNr",
];

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
    /// Patterns shorter than [`SAMPLED_BYTES_MIN`], found with memmem.
    short: Vec<(memchr::memmem::Finder<'static>, u32)>,
    /// The markers, all found in one pass of a SIMD multi-pattern searcher (aho-corasick's
    /// Teddy), where the CPU has one; else one memmem pass each. Markers are two and a half
    /// characters long and common in text, so they cannot go through the sampled filter, and
    /// a pass each cost a tenth of the scan.
    markers: Markers,
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
            let hit = match needle.role {
                Role::Identifier => Hit::Identifier {
                    target: needle.target,
                    encoding: needle.encoding.clone(),
                },
                Role::Base64Wrapper { skip } => Hit::Base64Wrapper { skip },
            };
            let hits = by_pattern.entry(&needle.pattern).or_default();
            if !hits.contains(&hit) {
                hits.push(hit);
            }
        }
        let mut patterns = Vec::with_capacity(by_pattern.len() + 4);
        let mut hits = Vec::with_capacity(by_pattern.len() + 4);
        for (pattern, hit) in by_pattern {
            patterns.push(pattern.to_vec());
            hits.push(hit);
        }
        let marker_base = u32::try_from(patterns.len()).unwrap_or(u32::MAX);
        for marker in COMPRESSED_BASE64_MARKERS {
            patterns.push(marker.to_vec());
            hits.push(vec![Hit::CompressedBase64]);
        }
        let markers = Markers::new(marker_base);
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
        self.markers.find_all(haystack, out);
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

/// Finds every [`COMPRESSED_BASE64_MARKERS`] occurrence.
#[derive(Debug, Clone)]
struct Markers {
    /// The entry of the first marker; the others follow in order.
    base: u32,
    teddy: Option<aho_corasick::packed::Searcher>,
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl Markers {
    fn new(base: u32) -> Markers {
        let mut builder = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder();
        for marker in COMPRESSED_BASE64_MARKERS {
            builder.add(marker);
        }
        Markers {
            base,
            teddy: builder.build(),
            finders: COMPRESSED_BASE64_MARKERS
                .iter()
                .map(|m| memchr::memmem::Finder::new(m).into_owned())
                .collect(),
        }
    }

    fn find_all(&self, haystack: &[u8], out: &mut Vec<Match>) {
        let push = |out: &mut Vec<Match>, index: usize, start: usize| {
            out.push(Match {
                start,
                end: start + COMPRESSED_BASE64_MARKERS[index].len(),
                entry: self.base + index as u32,
            });
        };
        match &self.teddy {
            // Markers cannot overlap one another (none is a prefix or suffix of another), so
            // non-overlapping leftmost matches are all of them.
            Some(teddy) => {
                for m in teddy.find_iter(haystack) {
                    push(out, m.pattern().as_usize(), m.start());
                }
            }
            None => {
                for (index, finder) in self.finders.iter().enumerate() {
                    for start in finder.find_iter(haystack) {
                        push(out, index, start);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_by_either_searcher() {
        let haystack = b"x H4sIAAAA eJwrzs eJa eNrK KLUv H4sIH4sI eJz";
        let expected = [2, 11, 22, 27, 32, 36, 41];
        let markers = Markers::new(100);
        let mut fallback = markers.clone();
        fallback.teddy = None;
        for m in [markers, fallback] {
            let mut out = Vec::new();
            m.find_all(haystack, &mut out);
            let mut starts: Vec<usize> = out.iter().map(|m| m.start).collect();
            starts.sort_unstable();
            assert_eq!(starts, expected);
            assert!(out.iter().all(|m| (100..110).contains(&m.entry)));
        }
    }

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
                    let len = crate::finding::needle::NEEDLE_BYTES_MIN + (next() % 12) as usize;
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
                    role: Role::Identifier,
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
