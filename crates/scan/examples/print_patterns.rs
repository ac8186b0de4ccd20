//! Prints every byte pattern a profile expands to, one per line (printable ones only), so that
//! bench/scan.sh can give tshark and ngrep the same encoded identifier strings.
//!
//! Usage: print_patterns PROFILE.toml

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: print_patterns PROFILE.toml");
    let text = std::fs::read_to_string(&path).expect("reading the profile");
    let profile = sovereign_scan::Profile::from_toml(&text, &path).expect("a valid profile");
    let (_, needles) = sovereign_scan::finding::needle::expand(&profile);
    let mut patterns: Vec<String> = needles
        .into_iter()
        .filter_map(|n| String::from_utf8(n.pattern).ok())
        .filter(|p| p.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .collect();
    patterns.sort();
    patterns.dedup();
    for p in patterns {
        println!("{p}");
    }
}
