//! Measures candidate matchers on the profile's patterns over realistic HTTP bodies (HTML, JSON,
//! hex-heavy token lists, binary): the figures behind the choice in `matcher.rs`.
//!
//! Usage: matcher_bench PROFILE.toml

use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: matcher_bench PROFILE.toml");
    let text = std::fs::read_to_string(&path).expect("reading the profile");
    let profile = sovereign_scan::Profile::from_toml(&text, &path).expect("a valid profile");
    let (_, needles) = sovereign_scan::finding::needle::expand(&profile);
    let ours = sovereign_scan::finding::matcher::Matcher::new(&needles).expect("builds");
    let mut patterns: Vec<Vec<u8>> = needles.into_iter().map(|n| n.pattern).collect();
    patterns.sort();
    patterns.dedup();
    println!("{} patterns", patterns.len());

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut html = Vec::new();
    while html.len() < 1 << 20 {
        html.extend_from_slice(b"<div class=\"item\"><a href=\"/article/2014/09/25/story\">Phone makers promise privacy</a><p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p></div>\n");
    }
    let mut hex = Vec::new();
    while hex.len() < 1 << 20 {
        for _ in 0..32 {
            hex.extend_from_slice(format!("{:02x}", next() as u8).as_bytes());
        }
        hex.extend_from_slice(b"\",\"");
    }
    let binary: Vec<u8> = (0..1 << 20).map(|_| next() as u8).collect();
    let rounds = 64;

    let daachorse = daachorse::DoubleArrayAhoCorasick::<u32>::new(&patterns).expect("builds");
    let ac_dfa = aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&patterns)
        .expect("builds");
    let ac_default = aho_corasick::AhoCorasick::new(&patterns).expect("builds");
    for (name, data) in [("html", &html), ("hex", &hex), ("binary", &binary)] {
        let time = |label: &str, f: &dyn Fn(&[u8]) -> usize| {
            let start = Instant::now();
            let mut n = 0;
            for _ in 0..rounds {
                n += f(data);
            }
            let s = start.elapsed().as_secs_f64();
            let mibs = (data.len() * rounds) as f64 / s / (1 << 20) as f64;
            println!("{name:<7} {label:<32} {mibs:>8.0} MiB/s ({n} matches)");
        };
        time("sovereign anchor filter", &|d| {
            let mut out = Vec::new();
            ours.find_all(d, &mut out);
            out.len()
        });
        time("daachorse overlapping", &|d| {
            daachorse.find_overlapping_iter(d).count()
        });
        time("daachorse find_iter", &|d| daachorse.find_iter(d).count());
        time("aho-corasick dfa overlapping", &|d| {
            ac_dfa.find_overlapping_iter(d).count()
        });
        time("aho-corasick dfa find_iter", &|d| {
            ac_dfa.find_iter(d).count()
        });
        time("aho-corasick default find_iter", &|d| {
            ac_default.find_iter(d).count()
        });
    }
}
