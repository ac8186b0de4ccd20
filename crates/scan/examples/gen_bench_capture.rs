//! Writes a large pcap of realistic HTTP/1.1 traffic with planted identifiers, for bench/scan.sh.
//!
//! Usage: gen_bench_capture OUT.pcap [BYTES]   (default 1 GiB)
//!
//! Phones (10.x) talk to a few dozen servers: page and API GETs, JSON POSTs, gzip-compressed
//! JSON and HTML responses, hex-heavy token lists, and binary images; one request in 50 carries
//! an identifier of bench/scan-profile.toml (plain, URL-encoded, base64 in JSON, SHA-256 in a
//! header, gzip-compressed form). Segments are 1448 bytes, as on Ethernet with timestamps.

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine as _;
use sha2::Digest as _;
use sovereign_scan::network::packet::LinkType;
use sovereign_scan::synth::{self, PcapWriter};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

fn response(content_type: &str, encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 25 Sep 2014 08:12:03 GMT\r\nContent-Type: {content_type}\r\nCache-Control: max-age=600\r\n{}Content-Length: {}\r\n\r\n",
        encoding.map(|e| format!("Content-Encoding: {e}\r\n")).unwrap_or_default(),
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "bench/out/http.pcap".into());
    let target: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1 << 30);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Bodies, built once and reused.
    let mut html = String::from("<!DOCTYPE html><html><head><title>News</title></head><body>");
    while html.len() < 60_000 {
        html.push_str("<div class=\"item\"><a href=\"/article/2014/09/25/story\">Phone makers promise privacy</a><p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore.</p></div>\n");
    }
    let mut tokens = String::from("{\"tokens\":[");
    while tokens.len() < 40_000 {
        let h: String = (0..32)
            .map(|_| format!("{:02x}", rng.next() as u8))
            .collect();
        tokens.push_str(&format!("\"{h}\","));
    }
    tokens.push_str("\"end\"]}");
    let mut json = String::from("{\"items\":[");
    while json.len() < 20_000 {
        json.push_str("{\"id\":12345,\"title\":\"Weather in Mumbai\",\"temp\":31.5,\"tags\":[\"rain\",\"monsoon\"],\"url\":\"https://cdn.example.com/img/12345.jpg\"},");
    }
    json.push_str("{}]}");
    let image: Vec<u8> = (0..50_000).map(|_| rng.next() as u8).collect();
    let responses = [
        response("text/html", None, html.as_bytes()),
        response("text/html", Some("gzip"), &gzip(html.as_bytes())),
        response("application/json", None, tokens.as_bytes()),
        response("application/json", Some("gzip"), &gzip(json.as_bytes())),
        response("application/json", None, json.as_bytes()),
        response("image/jpeg", None, &image),
    ];

    // Requests: ordinary ones, and ones with planted identifiers.
    let plain = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Dalvik/2.1.0 (Linux; U; Android 4.4.4)\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n").into_bytes()
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"{\"imsi\":\"404450123456789\"}");
    let mac_hash: String = sha2::Sha256::digest(b"001a2b3c4d5e")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let planted: Vec<Vec<u8>> = vec![
        plain(
            "/register?imei=356938035643809&carrier=Vodafone%20IN",
            "account.example.cn",
        ),
        plain(
            "/bind?phone=%2B919876543210&email=asha.rao%40example.in",
            "push.example.cn",
        ),
        {
            let body = format!("{{\"blob\":\"{b64}\",\"lat\":12.9716,\"lon\":77.5946}}");
            let mut r = format!("POST /sync HTTP/1.1\r\nHost: sync.example.cn\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(body.as_bytes());
            r
        },
        format!("GET /ping HTTP/1.1\r\nHost: stats.example.cn\r\nX-Device: {mac_hash}\r\n\r\n")
            .into_bytes(),
        {
            let body = gzip(b"iccid=8991000900123456789&sn=R58M12ABCDE");
            let mut r = format!("POST /report HTTP/1.1\r\nHost: log.example.cn\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(&body);
            r
        },
    ];
    let ordinary: Vec<Vec<u8>> = [
        "/",
        "/news/today",
        "/api/v2/feed?page=2&lang=en",
        "/static/app.js",
        "/img/12345.jpg",
        "/api/v1/weather?city=Mumbai",
    ]
    .iter()
    .map(|p| plain(p, "www.example.com"))
    .collect();
    let servers: Vec<IpAddr> = [
        [223, 5, 5, 5],
        [8, 8, 4, 4],
        [103, 21, 124, 1],
        [151, 101, 1, 69],
        [104, 16, 0, 1],
    ]
    .into_iter()
    .map(|o| IpAddr::V4(Ipv4Addr::from(o)))
    .collect();

    let file = std::fs::File::create(&path)?;
    let mut w = PcapWriter::new(BufWriter::with_capacity(1 << 20, file), LinkType::ETHERNET)?;
    let mut written: u64 = 24;
    let mut time_us: i64 = 1_411_632_000_000_000;
    let mut conversations: u64 = 0;
    while written < target {
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                (rng.below(4)) as u8,
                2 + rng.below(200) as u8,
            )),
            32_768 + rng.below(28_000) as u16,
        );
        let server = SocketAddr::new(servers[rng.below(servers.len())], 80);
        let request = if rng.below(50) == 0 {
            &planted[rng.below(planted.len())]
        } else {
            &ordinary[rng.below(ordinary.len())]
        };
        let response = &responses[rng.below(responses.len())];
        for packet in synth::tcp_conversation(client, server, request, response, 1448) {
            let frame = synth::frame(LinkType::ETHERNET, &[], &packet);
            time_us += 50;
            w.frame(time_us, &frame)?;
            written += 16 + frame.len() as u64;
        }
        conversations += 1;
    }
    w.into_inner().flush()?;
    eprintln!("{path}: {written} bytes, {conversations} tcp connections");
    Ok(())
}
