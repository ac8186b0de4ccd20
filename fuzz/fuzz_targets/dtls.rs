//! DTLS records, hellos and decryption of a UDP flow. The input carries a master secret, then
//! datagrams, each a direction-and-length word (bit 15: from the server; bits 0-14: length)
//! and its bytes. Any input: no panic, and never more plaintext than the datagram held.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_scan::tls::dtls::{DtlsFlow, records, starts_like_dtls};
use sovereign_scan::tls::keylog::{KeyLog, Secrets};

fn secrets(master: &[u8]) -> Secrets {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let text = format!("CLIENT_RANDOM {} {}\n", hex(&[0; 32]), hex(master));
    let mut keys = KeyLog::default();
    keys.add_text(&text, "fuzz")
        .expect("well-formed key log text parses");
    keys.get(&[0; 32])
        .expect("the session was just added")
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((master, mut rest)) = data.split_at_checked(48) else {
        return;
    };
    let secrets = secrets(master);
    let mut flow = DtlsFlow::default();
    let mut time = 0;
    while let [hi, lo, tail @ ..] = rest {
        let word = u16::from_be_bytes([*hi, *lo]);
        let len = usize::from(word & 0x7fff).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let _ = starts_like_dtls(datagram);
        let _ = records(datagram).count();
        time += 1;
        // Every key lookup answers, whatever the client random, so decryption is reached.
        let plaintext = flow.datagram(word & 0x8000 == 0, datagram, time, &|_| {
            Some(secrets.clone())
        });
        assert!(plaintext.len() <= datagram.len());
    }
    let _ = (
        flow.visibility(),
        flow.version(),
        flow.cipher_suite(),
        flow.bytes(),
    );
    let _ = flow.take_warnings();
});
