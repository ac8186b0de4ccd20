//! Every way an identifier may be written on the wire, as byte patterns for the matcher.
//!
//! We expand each identifier into its encodings up front (plain, case variants, URL and form
//! encoding, hex, base64 and base64url at the three alignments, MD5/SHA-1/SHA-256 hex) so that one
//! pass of one automaton over the traffic finds all of them. Layers that wrap whole bodies
//! (compression, JSON escapes, URL-encoded forms) are undone by [`crate::finding::decode`] instead.

use base64::Engine as _;
use md5::Digest as _;
use sovereign_model::IdentifierKind;

use crate::profile::Profile;

/// Shortest plain pattern we search: shorter values match by chance everywhere.
pub const NEEDLE_BYTES_MIN: usize = 4;
/// Shortest base64 core we search; shorter cores of short values match by chance.
pub const BASE64_CORE_BYTES_MIN: usize = 6;
/// Most patterns one profile may expand to, so that the automaton stays small and in cache.
pub const NEEDLES_MAX: usize = 200_000;
/// Shortest core of a twice-base64-encoded value we search: shorter ones would go through a
/// memmem pass of their own instead of the sampled filter.
pub const NESTED_BASE64_CORE_BYTES_MIN: usize = 8;
const _: () = assert!(NESTED_BASE64_CORE_BYTES_MIN >= crate::finding::matcher::SAMPLED_BYTES_MIN);

/// One thing we look for: an identifier of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: IdentifierKind,
    /// The value as the profile gives it; only ever shown masked.
    pub value: String,
}

/// One byte pattern and what finding it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle {
    pub pattern: Vec<u8>,
    /// Index into the target list.
    pub target: usize,
    /// How the value is written, e.g. `plain`, `base64`, `sha256(e164)`.
    pub encoding: String,
    pub role: Role,
}

/// What finding a pattern means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The identifier itself, written in `encoding`.
    Identifier,
    /// The identifier base64-encoded, then base64-encoded again: not a finding by itself, but
    /// the sign of a base64 blob worth decoding and searching again (where the single base64
    /// encoding is then found, with both layers in its decode chain). `skip` is how many
    /// characters into its 4-character base64 group the pattern starts, to find the blob's
    /// group boundaries.
    Base64Wrapper { skip: u8 },
}

/// Expands a profile into its targets and the patterns that find them.
pub fn expand(profile: &Profile) -> (Vec<Target>, Vec<Needle>) {
    let mut targets = Vec::new();
    let mut needles = Vec::new();
    let home = profile.device.home_country.as_str().to_owned();
    let ids = &profile.identifiers;
    let simple = [
        (IdentifierKind::Imei, &ids.imei),
        (IdentifierKind::Imsi, &ids.imsi),
        (IdentifierKind::Iccid, &ids.iccid),
        (IdentifierKind::Carrier, &ids.carrier),
        (IdentifierKind::AndroidId, &ids.android_id),
        (IdentifierKind::AdvertisingId, &ids.advertising_id),
        (IdentifierKind::Serial, &ids.serial),
        (IdentifierKind::Email, &ids.email),
    ];
    let mut add = |kind: IdentifierKind, value: &str, forms: Vec<(String, String)>| {
        let target = targets.len();
        targets.push(Target {
            kind,
            value: value.to_owned(),
        });
        for (index, (form, text)) in forms.iter().enumerate() {
            encode_form(target, form, text, kind, &mut needles);
            // Twice base64: only the value as the profile gives it (the first form), which keeps
            // the filter's bitmap sparse; every other form would multiply its patterns by nine.
            if index == 0 && kind != IdentifierKind::Location {
                encode_nested_base64(target, form, text, &mut needles);
            }
        }
    };
    for (kind, value) in simple {
        if let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            add(kind, value, value_forms(kind, value));
        }
    }
    if let Some(phone) = ids
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        add(IdentifierKind::Phone, phone, phone_forms(phone, &home));
    }
    if let Some(mac) = ids
        .wifi_mac
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        add(IdentifierKind::WifiMac, mac, mac_forms(mac));
    }
    if let Some(location) = profile.location {
        let lat = format!("{:.6}", location.lat);
        add(
            IdentifierKind::Location,
            &lat,
            coordinate_forms("lat", location.lat),
        );
        let lon = format!("{:.6}", location.lon);
        add(
            IdentifierKind::Location,
            &lon,
            coordinate_forms("lon", location.lon),
        );
    }
    for contact in &profile.contacts {
        if let Some(name) = contact
            .name
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            add(
                IdentifierKind::Contact,
                name,
                vec![("value".into(), name.into())],
            );
        }
        if let Some(phone) = contact
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            add(IdentifierKind::Contact, phone, phone_forms(phone, &home));
        }
    }
    for sms in &profile.sms {
        let text = sms.text.trim();
        if !text.is_empty() {
            add(
                IdentifierKind::Sms,
                text,
                vec![("value".into(), text.into())],
            );
        }
    }
    // One label per pattern and target: the shortest, which names the simplest way to write it
    // ("hex" for digits, where upper and lower case are the same bytes).
    needles.sort_by(|a, b| {
        (&a.pattern, a.target, a.encoding.len()).cmp(&(&b.pattern, b.target, b.encoding.len()))
    });
    needles.dedup_by(|a, b| a.pattern == b.pattern && a.target == b.target);
    (targets, needles)
}

fn value_forms(kind: IdentifierKind, value: &str) -> Vec<(String, String)> {
    let mut forms = vec![("value".to_owned(), value.to_owned())];
    // Numbers written with separators in the profile ("35-209900-176148-1") are sent bare.
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let numeric = matches!(
        kind,
        IdentifierKind::Imei | IdentifierKind::Imsi | IdentifierKind::Iccid
    );
    if numeric && digits != value && digits.len() >= NEEDLE_BYTES_MIN {
        forms.push(("digits".into(), digits.clone()));
    }
    let value = if numeric { digits.as_str() } else { value };
    match kind {
        // An IMEI is often sent without its Luhn check digit (the 14-digit form).
        IdentifierKind::Imei if value.len() == 15 => {
            forms.push(("imei14".into(), value[..14].to_owned()));
        }
        // UUID-shaped IDs are also sent without their dashes.
        IdentifierKind::AdvertisingId | IdentifierKind::AndroidId if value.contains('-') => {
            forms.push(("no-dashes".into(), value.replace('-', "")));
        }
        IdentifierKind::Email => {
            let lower = value.to_ascii_lowercase();
            if lower != value {
                forms.push(("lowercase".into(), lower));
            }
        }
        _ => {}
    }
    forms
}

/// A MAC with `:`, with `-`, and bare, each in either case.
fn mac_forms(value: &str) -> Vec<(String, String)> {
    let hex: String = value.chars().filter(char::is_ascii_hexdigit).collect();
    if hex.len() != 12 {
        return vec![("value".into(), value.to_owned())];
    }
    let pairs: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    let mut forms = Vec::new();
    for (name, sep) in [("colon", ":"), ("dash", "-"), ("bare", "")] {
        let joined = pairs.join(sep);
        forms.push((format!("mac-{name}"), joined.to_ascii_lowercase()));
        forms.push((format!("mac-{name}-upper"), joined.to_ascii_uppercase()));
    }
    forms
}

/// E.164 with and without `+`, the international format, and the national format as the home
/// country writes it, with its separators and without.
pub fn phone_forms(value: &str, home_country: &str) -> Vec<(String, String)> {
    // The codes this number can have, not the whole world's (see phone_metadata); the whole
    // database (built on first use) only when that fails, as for text that is not a number.
    let small = super::phone_metadata::database_for(value, home_country);
    small
        .and_then(|small| phone_forms_with(&small, value, home_country))
        .or_else(|| phone_forms_with(&phonenumber::metadata::DATABASE, value, home_country))
        .unwrap_or_else(|| not_a_number(value))
}

fn not_a_number(value: &str) -> Vec<(String, String)> {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    let mut forms = vec![
        ("value".into(), value.to_owned()),
        ("digits".into(), digits),
    ];
    dedup_forms(&mut forms);
    forms
}

fn dedup_forms(forms: &mut Vec<(String, String)>) {
    let mut seen = std::collections::HashSet::new();
    forms.retain(|(_, text)| text.len() >= NEEDLE_BYTES_MIN && seen.insert(text.clone()));
}

/// A number in `mode` (E.164, international or national), formatted with `database` the way
/// phonenumber 0.3's `Formatter` does (formatter.rs: the first format whose leading digits and
/// pattern fit, the national prefix rule through `$NP`/`$FG`/`$CC`, the extension), because that
/// `Formatter` builds the whole default database before it looks at the one it is given
/// (`self.database.unwrap_or(&DATABASE)`), which is the 0.12 s [`phone_metadata`] saves. A test
/// compares every result with phonenumber's own. `None` when the number's code has no metadata.
///
/// [`phone_metadata`]: super::phone_metadata
fn format_number(
    database: &phonenumber::metadata::Database,
    number: &phonenumber::PhoneNumber,
    mode: phonenumber::Mode,
) -> Option<String> {
    use phonenumber::Mode;
    use phonenumber::metadata::{Format, Metadata};
    let code = number.country().code();
    let meta = database.by_code(&code)?.into_iter().next()?;
    let national = number.national().to_string();
    let formats = if meta.international_formats().is_empty() || mode == Mode::National {
        meta.formats()
    } else {
        meta.international_formats()
    };
    // As phonenumber: a format without leading digits is taken without trying its pattern.
    let chosen = formats.iter().find(|format| {
        let leading = format.leading_digits();
        leading.is_empty()
            || leading
                .last()
                .and_then(|l| l.find(&national))
                .is_some_and(|m| m.start() == 0)
                && format
                    .pattern()
                    .find(&national)
                    .is_some_and(|m| m.start() == 0 && m.end() == national.len())
    });
    let replace = |format: &Format, meta: &Metadata, rule: Option<&str>, carrier: Option<&str>| {
        let first_group = regex_first_group();
        let template: std::borrow::Cow<'_, str> = match rule {
            Some(rule) => {
                let first = first_group
                    .captures(format.format())
                    .and_then(|c| c.get(1))
                    .map_or("", |m| m.as_str());
                let rule = rule
                    .replace("$NP", meta.national_prefix().unwrap_or(""))
                    .replace("$FG", &format!("${first}"))
                    .replace("$CC", carrier.unwrap_or(""));
                std::borrow::Cow::Owned(first_group.replace(format.format(), &*rule).into_owned())
            }
            None => std::borrow::Cow::Borrowed(format.format()),
        };
        format.pattern().replace(&national, &*template).into_owned()
    };
    let extension = |text: &mut String| {
        if let Some(ext) = number.extension() {
            text.push_str(meta.preferred_extension_prefix().unwrap_or(" ext. "));
            text.push_str(ext.as_ref());
        }
    };
    Some(match mode {
        Mode::E164 => format!("+{code}{national}"),
        Mode::International => {
            let mut text = format!("+{code} ");
            text.push_str(
                &chosen.map_or_else(|| national.clone(), |f| replace(f, meta, None, None)),
            );
            extension(&mut text);
            text
        }
        Mode::National => {
            let mut text = match chosen {
                Some(f) => match (number.carrier(), f.domestic_carrier()) {
                    (Some(carrier), Some(rule)) => {
                        replace(f, meta, Some(rule), Some(carrier.as_ref()))
                    }
                    _ => replace(f, meta, f.national_prefix(), None),
                },
                None => national.clone(),
            };
            extension(&mut text);
            text
        }
        Mode::Rfc3966 => return None,
    })
}

/// `(\$\d)`: the first `$n` of a format, which a national prefix rule's `$FG` stands for.
fn regex_first_group() -> &'static regex::Regex {
    static FIRST_GROUP: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    // Invariant: a constant, valid pattern.
    FIRST_GROUP.get_or_init(|| regex::Regex::new(r"(\$\d)").expect("valid pattern"))
}

/// [`phone_forms`] with `database`; `None` when it does not parse `value` as a number.
fn phone_forms_with(
    database: &phonenumber::metadata::Database,
    value: &str,
    home_country: &str,
) -> Option<Vec<(String, String)>> {
    let mut forms: Vec<(String, String)> = Vec::new();
    let home = home_country.parse::<phonenumber::country::Id>().ok();
    match phonenumber::parse_with(database, home, value) {
        Ok(number) => {
            let e164 = format_number(database, &number, phonenumber::Mode::E164)?;
            forms.push(("e164".into(), e164.clone()));
            forms.push((
                "e164-no-plus".into(),
                e164.trim_start_matches('+').to_owned(),
            ));
            let international = format_number(database, &number, phonenumber::Mode::International)?;
            forms.push(("international".into(), international.clone()));
            forms.push(("international-dash".into(), international.replace(' ', "-")));
            let national = format_number(database, &number, phonenumber::Mode::National)?;
            forms.push(("national".into(), national.clone()));
            let groups: Vec<&str> = national
                .split(|c: char| !c.is_ascii_digit())
                .filter(|g| !g.is_empty())
                .collect();
            for (name, sep) in [("dash", "-"), ("dot", "."), ("space", " "), ("digits", "")] {
                forms.push((format!("national-{name}"), groups.join(sep)));
            }
            // Without the trunk prefix ("0" in India or Britain), as apps often send it.
            let significant = number.national().value().to_string();
            forms.push(("national-number".into(), significant.clone()));
            // The same grouping without the trunk prefix ("98765 43210" for "098765 43210"),
            // as people write their number for someone in their own country, and the first
            // group in parentheses ("(098765) 43210", "(030) 1234567"), with spaces, dashes or
            // dots between the rest.
            let digits: String = groups.concat();
            let trunk = digits.len().saturating_sub(significant.len());
            let mut bare: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            if trunk > 0 && digits.ends_with(&significant) {
                let mut left = trunk;
                for group in &mut bare {
                    let cut = left.min(group.len());
                    group.replace_range(..cut, "");
                    left -= cut;
                    if left == 0 {
                        break;
                    }
                }
                bare.retain(|g| !g.is_empty());
            }
            let grouped: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            for (prefix, parts) in [("national-bare", &bare), ("national", &grouped)] {
                for (name, sep) in [("space", " "), ("dash", "-"), ("dot", ".")] {
                    forms.push((format!("{prefix}-{name}"), parts.join(sep)));
                    if let Some((first, rest)) = parts.split_first()
                        && !rest.is_empty()
                    {
                        forms.push((
                            format!("{prefix}-parens-{name}"),
                            format!("({first}) {}", rest.join(sep)),
                        ));
                        forms.push((
                            format!("{prefix}-parens-tight-{name}"),
                            format!("({first}){}", rest.join(sep)),
                        ));
                    }
                }
            }
        }
        Err(_) => return None,
    }
    dedup_forms(&mut forms);
    Some(forms)
}

/// A coordinate to 4 and 5 decimals, truncated and rounded: anything written with 4 decimals or
/// more starts with one of these.
fn coordinate_forms(axis: &str, value: f64) -> Vec<(String, String)> {
    let mut forms = Vec::new();
    for decimals in [4_i32, 5] {
        let scale = 10_f64.powi(decimals);
        let truncated = (value * scale).trunc() / scale;
        forms.push((
            format!("{axis}-decimal-{decimals}"),
            format!("{truncated:.prec$}", prec = decimals as usize),
        ));
        forms.push((
            format!("{axis}-decimal-{decimals}-rounded"),
            format!("{value:.prec$}", prec = decimals as usize),
        ));
    }
    forms.sort();
    forms.dedup_by(|a, b| a.1 == b.1);
    forms
}

fn label(form: &str, encoding: &str) -> String {
    match (form, encoding) {
        ("value", encoding) => encoding.to_owned(),
        (form, "plain") => form.to_owned(),
        (form, encoding) => format!("{encoding}({form})"),
    }
}

fn encode_form(target: usize, form: &str, text: &str, kind: IdentifierKind, out: &mut Vec<Needle>) {
    let mut push = |pattern: Vec<u8>, encoding: &str| {
        if pattern.len() >= NEEDLE_BYTES_MIN {
            out.push(Needle {
                pattern,
                target,
                encoding: label(form, encoding),
                role: Role::Identifier,
            });
        }
    };
    let bytes = text.as_bytes();
    push(bytes.to_vec(), "plain");
    if kind == IdentifierKind::Location {
        // Coordinates are numbers: the other encodings of "31.2304" would match too often.
        return;
    }
    let lower = text.to_lowercase();
    if lower != text {
        push(lower.into_bytes(), "lowercase");
    }
    let upper = text.to_uppercase();
    if upper != text {
        push(upper.into_bytes(), "uppercase");
    }
    let url = percent_encode(bytes, false);
    if url != bytes {
        push(url, "url");
    }
    let form_encoded = percent_encode(bytes, true);
    if form_encoded != bytes && form_encoded != percent_encode(bytes, false) {
        push(form_encoded, "form");
    }
    push(hex(bytes, false), "hex");
    push(hex(bytes, true), "hex-upper");
    for (name, engine) in [
        ("base64", &base64::engine::general_purpose::STANDARD_NO_PAD),
        (
            "base64url",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ] {
        for alignment in 0..3 {
            let core = base64_core(engine, bytes, alignment);
            if core.len() >= BASE64_CORE_BYTES_MIN {
                push(core, name);
            }
        }
    }
    let digests: [(&str, Vec<u8>); 3] = [
        ("md5", md5::Md5::digest(bytes).to_vec()),
        ("sha1", sha1::Sha1::digest(bytes).to_vec()),
        ("sha256", sha2::Sha256::digest(bytes).to_vec()),
    ];
    for (name, digest) in digests {
        push(hex(&digest, false), name);
        push(hex(&digest, true), name);
    }
}

/// The patterns of `text` base64-encoded twice (standard or URL alphabet, any alignment, each
/// time): the core of the base64 of every base64 core of `text`.
fn encode_nested_base64(target: usize, form: &str, text: &str, out: &mut Vec<Needle>) {
    let engines = [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut inner = std::collections::BTreeSet::new();
    for engine in engines {
        for alignment in 0..3 {
            let core = base64_core(engine, text.as_bytes(), alignment);
            if core.len() >= BASE64_CORE_BYTES_MIN {
                inner.insert(core);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for core in inner {
        for engine in engines {
            for (alignment, &skip) in BASE64_CORE_SKIP.iter().enumerate() {
                let outer = base64_core(engine, &core, alignment);
                if outer.len() >= NESTED_BASE64_CORE_BYTES_MIN && seen.insert(outer.clone()) {
                    out.push(Needle {
                        pattern: outer,
                        target,
                        encoding: label(form, "base64(base64)"),
                        role: Role::Base64Wrapper { skip },
                    });
                }
            }
        }
    }
}

/// Characters at the start of `base64(prefix ++ value)` that depend on the prefix, by the
/// prefix's length: the core starts this far into its 4-character group.
const BASE64_CORE_SKIP: [u8; 3] = [0, 2, 3];

/// The part of `base64(prefix ++ value)` that does not depend on what surrounds the value, where
/// `prefix` is `alignment` bytes: the value sits at that offset modulo 3 in the encoded data.
/// Padding and the following bytes only change characters outside this core, so the core matches
/// padded and unpadded encodings alike.
pub fn base64_core(
    engine: &base64::engine::GeneralPurpose,
    value: &[u8],
    alignment: usize,
) -> Vec<u8> {
    assert!(alignment < 3);
    let mut data = vec![0_u8; alignment];
    data.extend_from_slice(value);
    let encoded = engine.encode(&data).into_bytes();
    // Characters fully determined by the prefix or straddling it.
    let skip = usize::from(BASE64_CORE_SKIP[alignment]);
    // Characters whose six bits all lie inside `data`.
    let end = (data.len() * 8) / 6;
    if end <= skip {
        return Vec::new();
    }
    encoded[skip..end].to_vec()
}

pub fn hex(bytes: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    out
}

/// Percent-encoding of everything but RFC 3986's unreserved characters; in `form` mode a space is
/// `+` as in `application/x-www-form-urlencoded`.
pub fn percent_encode(bytes: &[u8], form: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' if form => out.push(b'+'),
            _ => {
                out.push(b'%');
                out.extend_from_slice(&hex(&[b], true));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_core_is_found_whatever_surrounds_the_value() {
        let value = b"356938035643809";
        for prefix in [&b""[..], b"x", b"xy", b"xyz", b"{\"imei\":\""] {
            for suffix in [&b""[..], b"!", b"\"}", b"and more"] {
                let mut data = prefix.to_vec();
                data.extend_from_slice(value);
                data.extend_from_slice(suffix);
                let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
                let core = base64_core(
                    &base64::engine::general_purpose::STANDARD_NO_PAD,
                    value,
                    prefix.len() % 3,
                );
                assert!(
                    encoded.contains(std::str::from_utf8(&core).unwrap()),
                    "{prefix:?} {suffix:?}"
                );
            }
        }
    }

    /// Territories' example numbers, written as a person or an app would (E.164 and national; for
    /// some, behind the international call prefixes of Germany and the US), give the same
    /// forms from the small database as from phonenumber's whole one.
    #[test]
    fn phone_forms_from_the_codes_a_number_can_have_equal_those_from_the_whole_database() {
        let full = &*phonenumber::metadata::DATABASE;
        let mut checked = 0;
        // A quarter of the territories, whose order is the database's: checking all of them took
        // half a minute in a debug build (every check builds and runs regular expressions).
        for (n, meta) in full.iter().enumerate().filter(|(n, _)| n % 4 == 0) {
            let d = meta.descriptors();
            let code = meta.country_code();
            let Some(example) = d.mobile().or(d.fixed_line()).and_then(|x| x.example()) else {
                continue;
            };
            let id = meta.id();
            let mut cases = vec![(format!("+{code} {example}"), id), (example.to_owned(), id)];
            // Behind other countries' international call prefixes, for fewer still.
            if n % 20 == 0 {
                cases.push((format!("+{code}{example}"), "IN"));
                cases.push((format!("00{code}{example}"), "DE"));
                cases.push((format!("011 {code} {example}"), "US"));
            }
            for (value, home) in cases {
                let small = super::super::phone_metadata::database_for(&value, home)
                    .expect("small database");
                assert_eq!(
                    phone_forms_with(&small, &value, home),
                    phone_forms_with(full, &value, home),
                    "{value} at home in {home}"
                );
                // Our formatting is phonenumber's.
                let home_id = home.parse::<phonenumber::country::Id>().ok();
                if let Ok(number) = phonenumber::parse_with(full, home_id, &value) {
                    for mode in [
                        phonenumber::Mode::E164,
                        phonenumber::Mode::International,
                        phonenumber::Mode::National,
                    ] {
                        let theirs = number.format_with(full).mode(mode).to_string();
                        assert_eq!(
                            format_number(&small, &number, mode).as_deref(),
                            Some(theirs.as_str()),
                            "{value} at home in {home}, {mode:?}"
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 120, "{checked}");
        for (value, home) in [
            ("not a number", "IN"),
            ("", "XX"),
            ("+", "IN"),
            ("+999 1234", "ZZ"),
        ] {
            assert_eq!(
                super::super::phone_metadata::database_for(value, home)
                    .and_then(|small| phone_forms_with(&small, value, home)),
                phone_forms_with(full, value, home),
                "{value:?} at home in {home}"
            );
        }
    }

    #[test]
    fn phone_forms_follow_the_home_country() {
        let forms = |v, c| -> Vec<String> { phone_forms(v, c).into_iter().map(|f| f.1).collect() };
        let india = forms("+919876543210", "IN");
        for expected in [
            "+919876543210",
            "919876543210",
            "098765 43210",
            "9876543210",
            // Issue 11: the national grouping without the trunk prefix, and with parentheses.
            "98765 43210",
            "98765-43210",
            "(098765) 43210",
        ] {
            assert!(
                india.iter().any(|f| f == expected),
                "{expected} in {india:?}"
            );
        }
        let us = forms("2015550123", "US");
        for expected in [
            "+12015550123",
            "(201) 555-0123",
            "201-555-0123",
            "201.555.0123",
            "201 555 0123",
            "(201) 555 0123",
            "(201)555-0123",
        ] {
            assert!(us.iter().any(|f| f == expected), "{expected} in {us:?}");
        }
        // A British mobile, a German landline: the grouping is the number's country's.
        let uk = forms("+447911123456", "IN");
        for expected in ["07911 123456", "7911 123456", "(07911) 123456"] {
            assert!(uk.iter().any(|f| f == expected), "{expected} in {uk:?}");
        }
    }

    #[test]
    fn numbers_with_separators_are_also_searched_bare() {
        let forms = value_forms(IdentifierKind::Imei, "35-693803-564380-9");
        let texts: Vec<&str> = forms.iter().map(|f| f.1.as_str()).collect();
        assert!(texts.contains(&"356938035643809"), "{texts:?}");
        assert!(texts.contains(&"35693803564380"), "{texts:?}");
    }
}
