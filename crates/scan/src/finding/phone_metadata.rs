//! A phonenumber database of only the calling codes a number can have.
//!
//! phonenumber's own database ([`phonenumber::metadata::DATABASE`]) checks the syntax of every
//! regular expression of every territory when first used: 0.12 s, most of a small scan. build.rs
//! writes phonenumber's metadata split by calling code; [`database_for`] builds a database of
//! the few codes a number can start with. Parsing and formatting with it give what the whole
//! database gives (a test compares them): a number can only be of a code among its first digits
//! (right after a `+`, else after any international call prefix) or of the home country's.

use phonenumber::metadata::{Database, loader};

include!(concat!(env!("OUT_DIR"), "/phone_metadata.rs"));

/// Digits skipped at most before a calling code: an international call prefix (`00`, `011`,
/// `0011`, `810`…) or a carrier selection code in front of it.
const CALL_PREFIX_DIGITS_MAX: usize = 5;

/// The database for parsing `value` with `home_country` (an ISO 3166 id) as the default, or `None`
/// when it cannot be built (then use the whole one).
pub fn database_for(value: &str, home_country: &str) -> Option<Database> {
    let digits: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).collect();
    let mut codes: Vec<u16> = Vec::new();
    if let Ok(at) = CODE_OF.binary_search_by(|(id, _)| (*id).cmp(home_country)) {
        codes.push(CODE_OF[at].1);
    }
    // After a `+` the code comes first; otherwise it may follow a call prefix.
    let skips = if value.trim_start().starts_with('+') {
        0
    } else {
        CALL_PREFIX_DIGITS_MAX
    };
    for skip in 0..=skips.min(digits.len()) {
        let mut code = 0_u16;
        // Calling codes have one to three digits.
        for &d in digits[skip..].iter().take(3) {
            code = code * 10 + u16::from(d - b'0');
            codes.push(code);
        }
    }
    codes.sort_unstable();
    codes.dedup();
    codes.retain(|code| BY_CODE.binary_search_by_key(code, |(c, _)| *c).is_ok());
    // A profile's numbers and contacts mostly share a code: build each set's database once
    // (a clone shares its territories).
    static BUILT: std::sync::Mutex<Vec<(Vec<u16>, Database)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, database)) = built.iter().find(|(c, _)| *c == codes) {
        return Some(database.clone());
    }
    let mut territories: Vec<loader::Metadata> = Vec::new();
    for code in &codes {
        if let Ok(at) = BY_CODE.binary_search_by_key(code, |(c, _)| *c) {
            territories.extend(serde_json::from_str::<Vec<loader::Metadata>>(BY_CODE[at].1).ok()?);
        }
    }
    let database = Database::from(territories).ok()?;
    built.push((codes, database.clone()));
    Some(database)
}
