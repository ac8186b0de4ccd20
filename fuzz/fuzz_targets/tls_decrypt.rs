//! TLS record layer, hellos and decryption: two streams cut into runs, with secrets for every
//! session, so that the hellos are parsed, keys derived and every record tried. Any input: no
//! panic, and never more plaintext than the records held.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sovereign_scan::keylog::{KeyLog, Secrets};
use sovereign_scan::reassembly::{Mark, Run};
use sovereign_scan::tls_decrypt::TlsFlow;

/// Secrets of every kind and size, used whatever client random the input's hello carries.
/// (TLS 1.3 secrets of SHA-256 size, of SHA-384 size); both carry a TLS 1.2 master secret.
fn secrets() -> &'static (Secrets, Secrets) {
    static SECRETS: OnceLock<(Secrets, Secrets)> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let make = |len: usize| {
            let random = "00".repeat(32);
            let secret = "5a".repeat(len);
            let mut text = format!("CLIENT_RANDOM {random} {}\n", "a5".repeat(48));
            for label in [
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0",
            ] {
                text.push_str(&format!("{label} {random} {secret}\n"));
            }
            let mut keys = KeyLog::default();
            keys.add_text(&text, "fuzz").expect("the fuzz key log parses");
            keys.get(&[0; 32]).expect("the fuzz session exists").clone()
        };
        (make(32), make(48))
    })
}

fn runs(data: &[u8], cut: usize, gap: bool) -> Vec<Run> {
    // Two runs (with a gap between them when `gap`) when `cut` falls inside, else one.
    let cut = cut.min(data.len());
    let mut out = vec![Run {
        start: 0,
        data: data[..cut].to_vec(),
    }];
    if cut < data.len() {
        out.push(Run {
            start: cut as u64 + u64::from(gap),
            data: data[cut..].to_vec(),
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [selector, split_hi, split_lo, rest @ ..] = data else {
        return;
    };
    let split = (usize::from(*split_hi) << 8 | usize::from(*split_lo)).min(rest.len());
    let (client, server) = rest.split_at(split);
    let (short, long) = secrets();
    let chosen = if selector & 1 == 0 { short } else { long };
    let gap = selector & 0x80 != 0;
    let cut = usize::from((selector & 0x7e) >> 1) * 256;
    let (to_server, to_client) = (runs(client, cut, gap), runs(server, cut, gap));
    let marks = [Mark {
        offset: 0,
        frame: 1,
        time_us: 0,
    }];
    let mut flow = TlsFlow::new();
    flow.begin(&to_server, &to_client, &|_| Some(chosen.clone()));
    let plaintext = flow.decrypt(true, &to_server, &marks);
    assert!(plaintext.data.len() <= client.len());
    let plaintext = flow.decrypt(false, &to_client, &marks);
    assert!(plaintext.data.len() <= server.len());
    let _ = flow.visibility();
    let _ = flow.take_warnings();
});
