//! Table-driven: every encoding the issue lists, each planted in an HTTP body and found.

use base64::Engine as _;
use md5::Digest as _;
use sovereign_model::IdentifierKind as K;

use crate::support::*;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}
fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}
fn hexl(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}
fn hexu(data: &[u8]) -> String {
    hexl(data).to_uppercase()
}

const IMEI: &str = "356938035643809";

#[test]
fn every_encoding_is_found_with_its_name() {
    let table: Vec<(K, String, &str)> = vec![
        (K::Imei, IMEI.into(), "plain"),
        (K::Imei, "35693803564380".into(), "imei14"),
        (K::Imei, hexl(IMEI.as_bytes()), "hex"),
        (K::Imei, hexu(IMEI.as_bytes()), "hex"),
        (K::Serial, hexu(b"R58M12ABCDE"), "hex-upper"),
        (K::Imei, b64(IMEI.as_bytes()), "base64"),
        (K::Imei, b64(format!("a{IMEI}").as_bytes()), "base64"),
        (K::Imei, b64(format!("ab{IMEI}").as_bytes()), "base64"),
        (
            K::Imei,
            b64(IMEI.as_bytes()).trim_end_matches('=').into(),
            "base64",
        ),
        (K::Imei, hexl(&md5::Md5::digest(IMEI)), "md5"),
        (K::Imei, hexu(&sha1::Sha1::digest(IMEI)), "sha1"),
        (K::Imei, hexl(&sha2::Sha256::digest(IMEI)), "sha256"),
        // ASCII digits never encode to "+" or "/", so base64url is base64 here.
        (K::Imsi, b64url(b"\xfb\xff?404450123456789"), "base64"),
        (K::Sms, b64url(b"meet me at the station at nine"), "base64"),
        (K::WifiMac, "00:1a:2b:3c:4d:5e".into(), "mac-colon"),
        (K::WifiMac, "00-1A-2B-3C-4D-5E".into(), "mac-dash-upper"),
        (K::WifiMac, "001A2B3C4D5E".into(), "mac-bare-upper"),
        (
            K::WifiMac,
            hexl(&sha1::Sha1::digest("001a2b3c4d5e")),
            "sha1(mac-bare)",
        ),
        (
            K::WifiMac,
            hexl(&md5::Md5::digest("00:1A:2B:3C:4D:5E")),
            "md5(mac-colon-upper)",
        ),
        (K::Phone, "+919876543210".into(), "e164"),
        (K::Phone, "tel=919876543210;".into(), "e164-no-plus"),
        (K::Phone, "098765 43210".into(), "national"),
        (K::Phone, "098765-43210".into(), "national-dash"),
        (K::Phone, "n=9876543210;".into(), "national-number"),
        (K::Phone, "+91 98765 43210".into(), "international"),
        (K::Phone, "%2B919876543210".into(), "url(e164)"),
        (
            K::Phone,
            hexl(&sha2::Sha256::digest("+919876543210")),
            "sha256(e164)",
        ),
        (K::Email, "asha.rao%40example.in".into(), "url"),
        (K::Email, "ASHA.RAO@EXAMPLE.IN".into(), "uppercase"),
        (K::Sms, "meet+me+at+the+station+at+nine".into(), "form"),
        (K::Sms, "MEET ME AT THE STATION AT NINE".into(), "uppercase"),
        (K::Carrier, "vodafone in".into(), "lowercase"),
        (
            K::AdvertisingId,
            "38400000-8cf0-11bd-b23e-10b96e40000d".into(),
            "plain",
        ),
        (
            K::AdvertisingId,
            "384000008CF011BDB23E10B96E40000D".into(),
            "uppercase(no-dashes)",
        ),
        (K::AndroidId, "9774D56D682E549C".into(), "uppercase"),
        (K::Iccid, "8991000900123456789".into(), "plain"),
        (K::Serial, "r58m12abcde".into(), "lowercase"),
        (K::Location, "lat=12.9716&".into(), "lat-decimal-4-rounded"),
        (K::Location, "lon=77.59456&".into(), "lon-decimal-5"),
        (K::Location, "lat=12.971599&".into(), "lat-decimal-5"),
        (K::Contact, "Ravi Kumar".into(), "plain"),
        (K::Contact, "+919812345678".into(), "e164"),
    ];
    let mut failures = Vec::new();
    for (kind, payload, encoding) in &table {
        let body = format!(" {payload} ");
        let request = post("t.example", "text/plain", "", body.as_bytes());
        let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
        let found = find(&report, *kind)
            .iter()
            .any(|f| f.encoding == *encoding && f.chain == ["http-body", *encoding]);
        if !found {
            failures.push(format!(
                "{kind} as {encoding} in {payload:?}; found:\n{}",
                describe(&report)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn json_escapes_are_undone() {
    let body = br#"{"email":"asha.rao\u0040example.in","u":"http:\/\/x"}"#;
    let request = post("t.example", "application/json", "", body);
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let f = find(&report, K::Email);
    assert_eq!(f.len(), 1, "{}", describe(&report));
    assert_eq!(f[0].chain, ["http-body", "json", "plain"]);
}

#[test]
fn form_bodies_and_query_strings_are_decoded() {
    let body = b"a=1&carrier=Vodafone+IN&mail=asha.rao%40example.in";
    let request = post("t.example", "application/x-www-form-urlencoded", "", body);
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert_eq!(
        find(&report, K::Carrier)[0].chain,
        ["http-body", "form", "plain"]
    );
    assert_eq!(
        find(&report, K::Email)[0].chain,
        ["http-body", "form", "plain"]
    );

    let request = b"GET /r?e=asha.rao%40example.in HTTP/1.1\r\nHost: t.example\r\n\r\n";
    let report = scan(&exchange_pcap(SERVER_CN, request, OK));
    assert_eq!(
        find(&report, K::Email)[0].chain,
        ["http-uri", "url", "plain"]
    );
}

#[test]
fn nested_blobs_carry_their_decode_chain() {
    // The issue's example: a deflated JSON body holding a base64 identifier.
    let json = format!(r#"{{"d":"{}"}}"#, b64(b"imsi=404450123456789"));
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, json.as_bytes()).unwrap();
    let request = post(
        "t.example",
        "application/json",
        "Content-Encoding: deflate\r\n",
        &z.finish().unwrap(),
    );
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let f = find(&report, K::Imsi);
    assert_eq!(f.len(), 1, "{}", describe(&report));
    assert_eq!(f[0].chain, ["http-body", "deflate", "json", "base64"]);

    // base64 of gzip of JSON, inside a JSON body: decoded and searched again.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, br#"{"imei":"356938035643809"}"#).unwrap();
    let body = format!(r#"{{"payload":"{}"}}"#, b64(&gz.finish().unwrap()));
    let request = post("t.example", "application/json", "", body.as_bytes());
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let f = find(&report, K::Imei);
    assert_eq!(f.len(), 1, "{}", describe(&report));
    assert_eq!(f[0].chain, ["http-body", "json", "base64", "gzip", "plain"]);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, data).unwrap();
    gz.finish().unwrap()
}

#[test]
fn base64_inside_base64_is_decoded_with_every_layer_in_the_chain() {
    use sovereign_scan::finding::needle::percent_encode;
    const FORM: &str = "application/x-www-form-urlencoded";
    let imei = format!("imei={IMEI}");
    let twice = b64(b64(imei.as_bytes()).as_bytes());
    let field = |value: &str| {
        let mut body = b"a=1&d=".to_vec();
        body.extend_from_slice(&percent_encode(value.as_bytes(), true));
        body.extend_from_slice(b"&z=2");
        body
    };
    /// What, content type, content-encoding header, body, expected chain of the IMEI.
    type Row<'a> = (&'a str, &'a str, &'a str, Vec<u8>, Vec<&'a str>);
    let table: Vec<Row<'_>> = vec![
        (
            "form field of base64 of base64",
            FORM,
            "",
            field(&twice),
            vec!["http-body", "form", "base64", "base64"],
        ),
        (
            "the same form in a gzip body",
            FORM,
            "Content-Encoding: gzip\r\n",
            gzip(&field(&twice)),
            vec!["http-body", "gzip", "form", "base64", "base64"],
        ),
        (
            "form field of base64 of gzip holding base64",
            FORM,
            "",
            field(&b64(&gzip(
                format!("x={}", b64(imei.as_bytes())).as_bytes(),
            ))),
            vec!["http-body", "form", "base64", "gzip", "base64"],
        ),
        (
            "form field of base64 of gzip holding base64 of base64",
            FORM,
            "",
            field(&b64(&gzip(twice.as_bytes()))),
            vec!["http-body", "form", "base64", "gzip", "base64", "base64"],
        ),
        (
            "json value of base64 of base64, after other text",
            "application/json",
            "",
            format!(r#"{{"note":"hello","d":"{twice}"}}"#).into_bytes(),
            vec!["http-body", "json", "base64", "base64"],
        ),
        (
            "base64url of base64, in a path segment after other base64 characters",
            "text/plain",
            "",
            format!(
                "/v1/ab/{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b64(imei.as_bytes()))
            )
            .into_bytes(),
            vec!["http-body", "base64", "base64"],
        ),
    ];
    for (what, content_type, extra, body, chain) in table {
        let request = post("t.example", content_type, extra, &body);
        let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
        let f = find(&report, K::Imei);
        assert_eq!(f.len(), 1, "{what}: {}", describe(&report));
        assert_eq!(f[0].chain, chain, "{what}");
        assert_eq!(f[0].encoding, "base64", "{what}");
        assert!(report.warnings.is_empty(), "{what}: {:?}", report.warnings);
    }
}

#[test]
fn base64_nested_deeper_than_decode_depth_max_warns() {
    use sovereign_scan::finding::decode::DECODE_DEPTH_MAX;
    // base64 › gzip › base64 › gzip takes the four layers; the base64 of base64 inside is one
    // more: a warning says so, and nothing is made up.
    assert_eq!(DECODE_DEPTH_MAX, 4);
    let twice = b64(b64(format!("imei={IMEI}").as_bytes()).as_bytes());
    let blob = b64(&gzip(b64(&gzip(twice.as_bytes())).as_bytes()));
    let request = post("t.example", "text/plain", "", blob.as_bytes());
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert!(find(&report, K::Imei).is_empty(), "{}", describe(&report));
    assert!(
        report.warnings.iter().any(|w| w.contains(
            "base64 data under http-body/base64/gzip/base64/gzip is nested deeper than 4 layers"
        )),
        "{:?}",
        report.warnings
    );
}

#[test]
fn decode_depth_max_stops_nesting() {
    use sovereign_scan::finding::decode::DECODE_DEPTH_MAX;
    // gzip inside base64 inside gzip ... deeper than the limit: not found, and no panic.
    let mut data = b"imei 356938035643809".to_vec();
    for _ in 0..=DECODE_DEPTH_MAX {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        data = b64(&gz.finish().unwrap()).into_bytes();
    }
    let request = post("t.example", "text/plain", "", &data);
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert!(find(&report, K::Imei).is_empty(), "{}", describe(&report));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("gzip data under") && w.contains("nested deeper than")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_number_is_one_finding_not_one_per_format() {
    let request = post("t.example", "text/plain", "", b"+919876543210");
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let f = find(&report, K::Phone);
    assert_eq!(f.len(), 1, "{}", describe(&report));
    assert_eq!(f[0].encoding, "e164");
}

#[test]
fn evidence_masks_the_identifier() {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809&x=1");
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let f = find(&report, K::Imei);
    assert_eq!(f[0].evidence, "imei=35***********09&x=1");
}

#[test]
fn base64url_is_named_when_it_differs_from_base64() {
    let profile = sovereign_scan::Profile::from_toml(
        "[device]\nhome_country = \"IN\"\n[[sms]]\ntext = \"where are you??? call me\"\n",
        "p",
    )
    .unwrap();
    let scanner = sovereign_scan::Scanner::new(profile, sovereign_scan::Policy::builtin()).unwrap();
    for (encoded, name) in [
        (b64url(b"where are you??? call me"), "base64url"),
        (b64(b"where are you??? call me"), "base64"),
    ] {
        assert!(encoded.contains(['_', '/']));
        let request = post("t.example", "text/plain", "", encoded.as_bytes());
        let report = scanner
            .scan_bytes("t.pcap", &exchange_pcap(SERVER_CN, &request, OK))
            .unwrap();
        assert!(
            find(&report, K::Sms).iter().any(|f| f.encoding == name),
            "{name}: {}",
            describe(&report)
        );
    }
}
