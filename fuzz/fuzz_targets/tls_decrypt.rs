//! TLS record layer, hellos and decryption. The input carries the secrets, then the client's
//! and the server's stream: hellos are parsed (SSL 2.0-format ClientHellos and TLS 1.3 draft
//! ServerHellos too), keys derived for whichever suite and version the ServerHello names
//! (AEAD: GCM, ChaCha20, CCM, CCM_8; CBC with its MAC, encrypt-then-MAC, TLS 1.0-1.2 and SSL
//! 3.0) and every record tried, and seeds made from real sessions decrypt all the way. Any
//! input: no panic, and never more plaintext than the records held.
//!
//! Layout: `flags` (bit 0: TLS 1.3 secrets of 48 bytes instead of 32; bit 7: a gap between two
//! runs; bits 1-6: where the second run starts, in 256-byte steps, 0 for one run), the client
//! stream's length (2 bytes, big endian), the 48-byte master secret, the four TLS 1.3 secrets
//! (client handshake, server handshake, client traffic 0, server traffic 0), then the streams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::tls::decrypt::TlsFlow;
use sovereign_scan::tls::keylog::{KeyLog, Secrets};
use sovereign_scan::transport::reassembly::{Mark, Run};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn secrets(master: &[u8], tls13: &[u8], len: usize) -> Secrets {
    let random = hex(&[0; 32]);
    let mut text = format!("CLIENT_RANDOM {random} {}\n", hex(master));
    let labels = [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ];
    for (label, secret) in labels.iter().zip(tls13.chunks_exact(len)) {
        text.push_str(&format!("{label} {random} {}\n", hex(secret)));
    }
    // 0-RTT, for inputs whose ClientHello offers early data: the client handshake secret again.
    let early = hex(&tls13[..len]);
    text.push_str(&format!("CLIENT_EARLY_TRAFFIC_SECRET {random} {early}\n"));
    let mut keys = KeyLog::default();
    keys.add_text(&text, "fuzz")
        .expect("well-formed key log text parses");
    keys.get(&[0; 32])
        .expect("the session was just added")
        .clone()
}

fn runs(data: &[u8], cut: usize, gap: bool) -> Vec<Run> {
    if cut == 0 || cut >= data.len() {
        return vec![Run {
            start: 0,
            data: data.to_vec(),
        }];
    }
    vec![
        Run {
            start: 0,
            data: data[..cut].to_vec(),
        },
        Run {
            start: cut as u64 + u64::from(gap),
            data: data[cut..].to_vec(),
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let [flags, split_hi, split_lo, rest @ ..] = data else {
        return;
    };
    let len = if flags & 1 == 0 { 32 } else { 48 };
    if rest.len() < 48 + 4 * len {
        return;
    }
    let (master, rest) = rest.split_at(48);
    let (tls13, rest) = rest.split_at(4 * len);
    let secrets = secrets(master, tls13, len);
    let split = (usize::from(*split_hi) << 8 | usize::from(*split_lo)).min(rest.len());
    let (client, server) = rest.split_at(split);
    let gap = flags & 0x80 != 0;
    let cut = usize::from((flags & 0x7e) >> 1) * 256;
    let (to_server, to_client) = (runs(client, cut, gap), runs(server, cut, gap));
    let marks = [Mark {
        offset: 0,
        frame: 1,
        time_us: 0,
    }];
    let mut flow = TlsFlow::new();
    flow.begin(&to_server, &to_client, &|_| Some(secrets.clone()));
    let plaintext = flow.decrypt(true, &to_server, &marks);
    assert!(plaintext.data.len() <= client.len());
    let plaintext = flow.decrypt(false, &to_client, &marks);
    assert!(plaintext.data.len() <= server.len());
    let _ = flow.visibility();
    let _ = flow.take_warnings();
});
