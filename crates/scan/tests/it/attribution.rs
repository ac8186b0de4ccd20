//! Host and country of each finding, and whether it crossed the home border.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::synth;

use crate::support::*;

#[test]
fn country_from_the_database_and_cross_border() {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.country.as_deref(), Some("CN"));
    assert!(f.cross_border);
    assert_eq!(f.severity, sovereign_scan::Severity::Critical);
    assert_eq!(f.dst_ip, "223.5.5.5");
    assert!(report.ip_country_database.contains("iptoasn-country-mmdb"));

    let report = scan(&exchange_pcap(SERVER_IN, &request, OK));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.country.as_deref(), Some("IN"));
    assert!(!f.cross_border);
    assert_eq!(f.severity, sovereign_scan::Severity::High);
}

#[test]
fn private_addresses_have_no_country_and_cross_no_border() {
    let request = post("t.example", "text/plain", "", b"imei=356938035643809");
    let report = scan(&exchange_pcap("192.168.1.10:80", &request, OK));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.country, None);
    assert!(!f.cross_border);
}

#[test]
fn host_from_the_http_host_header() {
    let request = post(
        "Account.Example.CN",
        "text/plain",
        "",
        b"imei=356938035643809",
    );
    let report = scan(&exchange_pcap(SERVER_CN, &request, OK));
    assert_eq!(
        find(&report, K::Imei)[0].host.as_deref(),
        Some("account.example.cn")
    );
}

/// A DNS answer for `name` → `address`, from the resolver to the client.
pub fn dns_answer(name: &str, address: [u8; 4]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    m.extend_from_slice(&address);
    m
}

#[test]
fn host_from_an_earlier_dns_answer() {
    let answer = synth::ip(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        17,
        &synth::udp(53, 33333, &dns_answer("raw.example.cn", [223, 5, 5, 5])),
    );
    // Not HTTP, so no Host header: only the DNS answer names the server.
    let packets: Vec<Vec<u8>> = std::iter::once(answer)
        .chain(synth::tcp_conversation(
            addr(CLIENT),
            addr("223.5.5.5:9000"),
            b"\x00\x01binary imsi 404450123456789",
            b"",
            100,
        ))
        .collect();
    let report = scan(&synth::pcap(&packets));
    let f = &find(&report, K::Imsi)[0];
    assert_eq!(f.host.as_deref(), Some("raw.example.cn"));
    assert_eq!(f.protocol, "tcp");
    assert_eq!(f.chain, ["tcp", "plain"]);
}

/// A TLS 1.2 ClientHello record asking for `name`.
pub fn client_hello(name: &str) -> Vec<u8> {
    let mut sni = Vec::new();
    let entry_len = 3 + name.len();
    sni.extend_from_slice(&((entry_len) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[test]
fn host_from_tls_sni() {
    assert_eq!(
        sovereign_scan::tls::hello::client_hello_sni(&client_hello("Secure.Example.CN")).as_deref(),
        Some("secure.example.cn")
    );
    // A client that sends its IMEI in the clear right after the ClientHello bytes.
    let mut data = client_hello("secure.example.cn");
    data.extend_from_slice(b"imei=356938035643809");
    let packets = synth::tcp_conversation(addr(CLIENT), addr("223.5.5.5:443"), &data, b"", 1400);
    let report = scan(&synth::pcap(&packets));
    let f = &find(&report, K::Imei)[0];
    assert_eq!(f.host.as_deref(), Some("secure.example.cn"));
    assert_eq!(f.protocol, "tls");
    assert!(!f.cleartext);
}

#[test]
fn sni_of_a_client_hello_split_over_records_and_segments() {
    // The handshake message of one record, cut into records of 20 bytes, sent in TCP segments
    // of 7 bytes that arrive out of order.
    let record = client_hello("split.example.cn");
    let mut data = Vec::new();
    for piece in record[5..].chunks(20) {
        data.extend_from_slice(&[0x16, 3, 1]);
        data.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        data.extend_from_slice(piece);
    }
    data.extend_from_slice(&[0x17, 3, 3, 0, 20]);
    data.extend_from_slice(b"imei=356938035643809");
    let mut packets = synth::tcp_conversation(addr(CLIENT), addr("223.5.5.5:443"), &data, b"", 7);
    // Swap the data segments pairwise (the handshake stays first).
    for i in (3..packets.len() - 3).step_by(2) {
        packets.swap(i, i + 1);
    }
    let report = scan(&synth::pcap(&packets));
    // Application data without keys is not searched (ciphertext), but the flow is listed with
    // the name its hello asked for.
    assert!(find(&report, K::Imei).is_empty());
    let [flow] = report.tls_flows.as_slice() else {
        panic!("one TLS flow: {:?}", report.tls_flows);
    };
    assert_eq!(flow.sni.as_deref(), Some("split.example.cn"));
    assert!(!flow.decrypted);
}

fn sites() -> sovereign_scan::Sites {
    sovereign_scan::Sites::from_toml(
        r#"
[[site]]
address = "127.0.0.1:8445"
name = "in-mumbai"
country = "IN"

[[site]]
address = "127.0.0.1"
name = "lab-singapore"
country = "SG"

[[site]]
address = "[::1]:8446"
name = "v6-lab"
country = "DE"
"#,
        "sites.toml",
    )
    .unwrap()
}

/// One capture with a request to each server; the first has a Host header, the others none.
fn capture_to(servers: &[&str]) -> Vec<u8> {
    let mut packets = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let request = if i == 0 {
            post("api.lab.test", "text/plain", "", b"imei=356938035643809")
        } else {
            b"POST /x HTTP/1.0\r\nContent-Length: 20\r\n\r\nimei=356938035643809".to_vec()
        };
        let client = if server.starts_with('[') {
            format!("[::1]:{}", 40000 + i)
        } else {
            format!("10.0.0.2:{}", 40000 + i)
        };
        packets.extend(synth::tcp_conversation(
            addr(&client),
            addr(server),
            &request,
            OK,
            1400,
        ));
    }
    synth::pcap(&packets)
}

#[test]
fn sites_place_what_the_database_cannot() {
    let capture = capture_to(&[
        "127.0.0.1:8445",
        "127.0.0.1:9000",
        "[::1]:8446",
        "127.0.0.2:8445",
        "223.5.5.5:80",
    ]);
    let report = scanner()
        .with_sites(sites())
        .scan_bytes("lab.pcap", &capture)
        .unwrap();
    let by_dst = |dst: &str| {
        report
            .findings
            .iter()
            .find(|f| f.identifier == K::Imei && f.dst == dst)
            .unwrap_or_else(|| panic!("no finding to {dst}: {report:#?}"))
    };
    // IP:PORT first: the site's country instead of none, home country so no border.
    let f = by_dst("127.0.0.1:8445");
    assert_eq!(f.site.as_deref(), Some("in-mumbai"));
    assert_eq!(f.country.as_deref(), Some("IN"));
    assert!(!f.cross_border);
    assert_eq!(f.host.as_deref(), Some("api.lab.test"), "Host still wins");
    // Then the IP alone; without Host, SNI or DNS the host is the site's name.
    let f = by_dst("127.0.0.1:9000");
    assert_eq!(f.site.as_deref(), Some("lab-singapore"));
    assert_eq!(f.country.as_deref(), Some("SG"));
    assert!(f.cross_border);
    assert_eq!(f.host.as_deref(), Some("lab-singapore"));
    let f = by_dst("[::1]:8446");
    assert_eq!(f.site.as_deref(), Some("v6-lab"));
    assert!(f.cross_border);
    // No site: what the database says (nothing for loopback, CN for the public address).
    let f = by_dst("127.0.0.2:8445");
    assert_eq!((f.site.as_deref(), f.country.as_deref()), (None, None));
    assert!(!f.cross_border);
    let f = by_dst("223.5.5.5:80");
    assert_eq!(
        (f.site.as_deref(), f.country.as_deref()),
        (None, Some("CN"))
    );

    // Without sites, loopback has no country.
    let report = scan(&capture);
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.site.is_none() && (f.country.is_none() || f.dst == "223.5.5.5:80"))
    );
}

#[test]
fn sites_show_in_json_table_and_html() {
    use sovereign_scan::run::{Inputs, OutputFormat, Request, execute, read_sites};
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("lab.pcap");
    std::fs::write(&capture, capture_to(&["127.0.0.1:8445", "10.9.9.9:80"])).unwrap();
    let sites_path = dir.path().join("sites.toml");
    std::fs::write(
        &sites_path,
        "[[site]]\naddress = \"127.0.0.1:8445\"\nname = \"in-mumbai\"\ncountry = \"IN\"\n",
    )
    .unwrap();
    let render = |format| {
        let request = Request {
            profile: fixture("profile.toml"),
            policy: None,
            sites: read_sites(&sites_path).unwrap(),
            inputs: Inputs::Scan(vec![capture.clone()]),
            format,
            keylogs: Vec::new(),
            threads: None,
        };
        execute(&request, &mut sovereign_scan::progress::NoProgress)
            .unwrap()
            .rendered
    };
    let json: serde_json::Value = serde_json::from_str(&render(OutputFormat::Json)).unwrap();
    let findings = json["findings"].as_array().unwrap();
    let site_of = |dst: &str| {
        findings
            .iter()
            .find(|f| f["dst"] == dst && f["identifier"] == "imei")
            .map(|f| f["site"].clone())
    };
    assert_eq!(
        site_of("127.0.0.1:8445"),
        Some(serde_json::json!("in-mumbai"))
    );
    assert_eq!(site_of("10.9.9.9:80"), Some(serde_json::Value::Null));
    let table = render(OutputFormat::Table);
    assert!(table.contains("SITE"), "{table}");
    assert!(table.contains("in-mumbai"), "{table}");
    let html = render(OutputFormat::Html);
    assert!(html.contains("site in-mumbai"), "{html}");

    std::fs::write(
        &sites_path,
        "[[site]]\naddress = \"127.0.0.1:8445\"\nname = \"x\"\ncountry = \"IN\"\nregion = \"y\"\n",
    )
    .unwrap();
    let err = read_sites(&sites_path).unwrap_err().to_string();
    assert!(
        err.contains("region") && err.contains("sites.toml"),
        "{err}"
    );
}
