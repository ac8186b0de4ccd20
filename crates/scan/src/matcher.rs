//! One automaton for every pattern of every identifier, plus the markers of nested blobs.
//!
//! We measured daachorse's double-array Aho-Corasick against the `aho-corasick` crate on
//! hex-heavy HTTP bodies (see `bench/scan.sh` and the `matcher` example); daachorse scanned
//! several times faster with thousands of patterns, so it is the matcher here.

use daachorse::DoubleArrayAhoCorasick;

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

/// The base64 starts of gzip (`1f 8b 08`), zstd (`28 b5 2f fd`) and zlib (`78 9c`, `78 da`)
/// data: a blob that starts like this is decoded and searched again.
const COMPRESSED_BASE64_MARKERS: [&[u8]; 10] = [
    b"H4sI", b"KLUv/", b"eJw", b"eJx", b"eJy", b"eJz", b"eNo", b"eNp", b"eNq", b"eNr",
];

pub struct Matcher {
    automaton: DoubleArrayAhoCorasick<u32>,
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
        for marker in COMPRESSED_BASE64_MARKERS {
            by_pattern
                .entry(marker)
                .or_default()
                .push(Hit::CompressedBase64);
        }
        let mut patterns = Vec::with_capacity(by_pattern.len());
        let mut hits = Vec::with_capacity(by_pattern.len());
        for (index, (pattern, hit)) in by_pattern.into_iter().enumerate() {
            // The index fits: NEEDLES_MAX plus the markers is far below u32::MAX.
            patterns.push((pattern, u32::try_from(index).unwrap_or(u32::MAX)));
            hits.push(hit);
        }
        let automaton = DoubleArrayAhoCorasick::with_values(patterns)
            .map_err(|e| ScanError::Matcher(e.to_string()))?;
        Ok(Matcher { automaton, hits })
    }

    pub fn hits(&self, entry: u32) -> &[Hit] {
        self.hits.get(entry as usize).map_or(&[], Vec::as_slice)
    }

    /// Every match in `haystack`, overlapping ones included, appended to `out` in order of end.
    pub fn find_all(&self, haystack: &[u8], out: &mut Vec<Match>) {
        for m in self.automaton.find_overlapping_iter(haystack) {
            out.push(Match {
                start: m.start(),
                end: m.end(),
                entry: m.value(),
            });
        }
    }
}
