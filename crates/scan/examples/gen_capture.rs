//! Writes a benchmark capture of one shape, for bench/scan.sh.
//!
//! Usage: gen_capture KIND OUT.pcap BYTES
//!
//! Kinds: `phone` (many short connections shaped like a phone's traffic, see
//! `sovereign_scan::phone_traffic`), `matches` (HTTP POSTs whose bodies are dense with one
//! identifier: the many-matches case, linear only if the matcher's bookkeeping is), `h2`
//! (HTTP/2 inside TLS 1.3, see gen/h2.rs) and `quic` (QUIC v1 with HTTP/3, see gen/quic.rs); for
//! these two the key log is written beside the capture, to `OUT.pcap.keys`. The long
//! keep-alive flows are gen_bench_capture's.

use std::io::{BufWriter, Write};

use sovereign_scan::synth::{self, PcapWriter};

#[path = "gen/h2.rs"]
mod h2;
#[path = "gen/quic.rs"]
mod quic;

/// Writes a capture of `kind` and its key log to `OUT.keys`.
fn with_keys(kind: &str, out: &str, file: impl Write, bytes: u64) -> std::io::Result<()> {
    let keylog = match kind {
        "h2" => h2::write(file, bytes, 7)?,
        _ => quic::write(file, bytes, 7)?,
    };
    std::fs::write(format!("{out}.keys"), keylog)
}

fn matches(out: impl Write, bytes: u64) -> std::io::Result<()> {
    let mut w = PcapWriter::new(out, sovereign_scan::network::packet::LinkType::ETHERNET)?;
    let body = b"356938035643809 ".repeat(4096);
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: t.example\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (mut written, mut time_us, mut port) = (24_u64, 1_700_000_000_000_000_i64, 20000_u16);
    while written < bytes {
        port = if port >= 65000 { 20000 } else { port + 1 };
        let client = format!("10.0.0.2:{port}").parse().expect("an address");
        let server = "223.5.5.5:80".parse().expect("an address");
        for packet in synth::tcp_conversation(client, server, &request, ok, 1448) {
            let frame = synth::frame(
                sovereign_scan::network::packet::LinkType::ETHERNET,
                &[],
                &packet,
            );
            time_us += 20;
            written += 16 + frame.len() as u64;
            w.frame(time_us, &frame)?;
        }
    }
    w.into_inner().flush()
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, out, bytes] = args.as_slice() else {
        eprintln!("usage: gen_capture phone|matches|h2|quic OUT.pcap BYTES");
        return std::process::ExitCode::from(2);
    };
    let Ok(bytes) = bytes.parse::<u64>() else {
        eprintln!("gen_capture: BYTES is a number, not {bytes:?}");
        return std::process::ExitCode::from(2);
    };
    let file = match std::fs::File::create(out) {
        Ok(file) => BufWriter::with_capacity(1 << 20, file),
        Err(e) => {
            eprintln!("gen_capture: {out}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match kind.as_str() {
        "phone" => sovereign_scan::phone_traffic::write(file, bytes, 11).map(|_| ()),
        "matches" => matches(file, bytes),
        "h2" | "quic" => with_keys(kind, out, file, bytes),
        other => {
            eprintln!("gen_capture: unknown kind {other:?} (phone, matches, h2, quic)");
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_capture: {out}: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
