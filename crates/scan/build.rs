//! Splits phonenumber's metadata by country calling code into `$OUT_DIR/phone_metadata.rs`.
//!
//! `phonenumber::parse` builds its whole database on first use, checking the syntax of every
//! regular expression of every territory: 0.12 s, more than scanning a 100 MB capture, paid by
//! every scan whose profile has a phone number. The scanner needs the few calling codes its
//! numbers can have, so it builds a database of just those from the tables written here
//! (`finding::phone_metadata`). The tables are read back from phonenumber's own database through
//! its public accessors, which return every field as it was loaded (regular expressions by their
//! source text), and written as phonenumber's own loader types in JSON: the database a scan
//! builds from them is field for field the one phonenumber builds, for those codes.

use std::fmt::Write;

use phonenumber::metadata::{DATABASE, Descriptor, Format, Metadata, loader};

fn descriptor(d: &Descriptor) -> loader::Descriptor {
    loader::Descriptor {
        national_number: Some(d.national_number().as_str().to_owned()),
        possible_length: d.possible_length().to_vec(),
        possible_local_length: d.possible_local_length().to_vec(),
        example: d.example().map(str::to_owned),
    }
}

fn format(f: &Format) -> loader::Format {
    loader::Format {
        pattern: Some(f.pattern().as_str().to_owned()),
        format: Some(f.format().to_owned()),
        leading_digits: f
            .leading_digits()
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        national_prefix_formatting_rule: f.national_prefix().map(str::to_owned),
        national_prefix_optional_when_formatting: f.is_national_prefix_optional(),
        domestic_carrier: f.domestic_carrier().map(str::to_owned),
    }
}

fn metadata(m: &Metadata) -> loader::Metadata {
    let d = m.descriptors();
    let opt = |x: Option<&Descriptor>| x.map(descriptor);
    loader::Metadata {
        general: Some(descriptor(d.general())),
        fixed_line: opt(d.fixed_line()),
        mobile: opt(d.mobile()),
        toll_free: opt(d.toll_free()),
        premium_rate: opt(d.premium_rate()),
        shared_cost: opt(d.shared_cost()),
        personal_number: opt(d.personal_number()),
        voip: opt(d.voip()),
        pager: opt(d.pager()),
        uan: opt(d.uan()),
        emergency: opt(d.emergency()),
        voicemail: opt(d.voicemail()),
        short_code: opt(d.short_code()),
        standard_rate: opt(d.standard_rate()),
        carrier: opt(d.carrier()),
        no_international: opt(d.no_international()),
        id: Some(m.id().to_owned()),
        country_code: Some(m.country_code()),
        international_prefix: m.international_prefix().map(|r| r.as_str().to_owned()),
        preferred_international_prefix: m.preferred_international_prefix().map(str::to_owned),
        national_prefix: m.national_prefix().map(str::to_owned),
        preferred_extension_prefix: m.preferred_extension_prefix().map(str::to_owned),
        national_prefix_for_parsing: m
            .national_prefix_for_parsing()
            .map(|r| r.as_str().to_owned()),
        national_prefix_transform_rule: m.national_prefix_transform_rule().map(str::to_owned),
        formats: m.formats().iter().map(format).collect(),
        international_formats: m.international_formats().iter().map(format).collect(),
        main_country_for_code: m.is_main_country_for_code(),
        leading_digits: m.leading_digits().map(|r| r.as_str().to_owned()),
        mobile_number_portable: m.is_mobile_number_portable(),
        defaults: Default::default(),
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let mut codes: Vec<u16> = DATABASE.iter().map(Metadata::country_code).collect();
    codes.sort_unstable();
    codes.dedup();
    let mut ids: Vec<(String, u16)> = DATABASE
        .iter()
        .map(|m| (m.id().to_owned(), m.country_code()))
        .collect();
    ids.sort();
    let mut out = String::from(
        "/// Each calling code's territories, in phonenumber's order (its main country first), as\n\
         /// `Vec<phonenumber::metadata::loader::Metadata>` in JSON.\n\
         pub(crate) static BY_CODE: &[(u16, &str)] = &[\n",
    );
    for code in codes {
        // `by_code` keeps the order the database was loaded in, which parsing depends on when
        // several territories share a code.
        let territories: Vec<loader::Metadata> = DATABASE
            .by_code(&code)
            .unwrap_or_default()
            .into_iter()
            .map(metadata)
            .collect();
        let json = serde_json::to_string(&territories).expect("metadata serialises");
        writeln!(out, "    ({code}, {json:?}),").expect("write to a String");
    }
    out.push_str("];\n\n/// Territory id → its calling code, sorted by id.\npub(crate) static CODE_OF: &[(&str, u16)] = &[\n");
    for (id, code) in ids {
        writeln!(out, "    ({id:?}, {code}),").expect("write to a String");
    }
    out.push_str("];\n");
    let path = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("phone_metadata.rs");
    std::fs::write(path, out).expect("write phone_metadata.rs");
}
