//! WebSocket after an HTTP/1.1 upgrade (issue 11, item 3), on real traffic: the PyPI
//! `websockets` client and server on loopback (tests/fixtures/record-websocket.sh), and on
//! captures the tests write.

use sovereign_model::IdentifierKind as K;
use sovereign_scan::synth;

use crate::support::*;

fn chains(report: &sovereign_scan::Report, kind: K, port: &str) -> Vec<(String, u64, String)> {
    let mut c: Vec<(String, u64, String)> = find(report, kind)
        .iter()
        .filter(|f| f.dst.ends_with(port) || f.src.ends_with(port))
        .filter(|f| f.protocol == "websocket")
        .map(|f| (f.chain.join(">"), f.count, f.direction.clone()))
        .collect();
    c.sort();
    c
}

#[test]
fn websockets_client_and_server_with_and_without_compression() {
    let data = std::fs::read(fixture("websocket.pcap")).unwrap();
    let report = scanner().scan_bytes("websocket.pcap", &data).unwrap();
    assert!(
        report.warnings.iter().all(|w| !w.contains("websocket")),
        "{:?}",
        report.warnings
    );
    // 8771: no compression; 8772: context takeover (the second IMEI message is a back
    // reference into the first, which tshark does not inflate); 8773: no context takeover.
    for (port, deflate) in [(":8771", ""), (":8772", "deflate>"), (":8773", "deflate>")] {
        assert_eq!(
            chains(&report, K::Imei, port),
            [(
                format!("websocket>{deflate}json>plain"),
                2,
                "outbound".into()
            )],
            "{port}: {}",
            describe(&report)
        );
        // Sent in three fragments (continuation frames).
        assert!(
            chains(&report, K::Phone, port)
                .iter()
                .any(|(c, _, _)| c.starts_with(&format!("websocket>{deflate}json>"))),
            "{port}: {}",
            describe(&report)
        );
        // A binary message holding base64 of JSON.
        assert!(
            chains(&report, K::Imsi, port)
                .iter()
                .any(|(c, _, _)| c.starts_with(&format!("websocket>{deflate}"))),
            "{port}: {}",
            describe(&report)
        );
        // A ping's payload (control frames are never compressed).
        assert_eq!(
            chains(&report, K::Serial, port),
            [("websocket>plain".to_owned(), 1, "outbound".into())],
            "{port}"
        );
        // The server's answers carry the location (an inbound finding's destination is the
        // client, so the server's port does not tell them apart: the chain does).
        assert!(
            find(&report, K::Location)
                .iter()
                .any(|f| f.protocol == "websocket"
                    && f.direction == "inbound"
                    && f.chain
                        .join(">")
                        .starts_with(&format!("websocket>{deflate}json"))),
            "{port}: {}",
            describe(&report)
        );
    }
}

fn ws_frame(opcode_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![
        opcode_byte,
        u8::from(mask.is_some()) << 7 | payload.len() as u8,
    ];
    match mask {
        Some(key) => {
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

#[test]
fn frames_are_not_searched_raw_and_no_101_means_no_compression() {
    // A masked client frame hides the IMEI from a raw search; unmasked it is found.
    let mut request = b"GET /s HTTP/1.1\r\nHost: ws.example.cn\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    request.extend(ws_frame(
        0x81,
        b"{\"imei\":\"356938035643809\"}",
        Some([0x55, 0xaa, 1, 2]),
    ));
    let response =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let mut with_reply = response.to_vec();
    with_reply.extend(ws_frame(0x82, b"iccid 8991000900123456789", None));
    let report = scan(&exchange_pcap(SERVER_CN, &request, &with_reply));
    let imei = find(&report, K::Imei);
    assert_eq!(imei.len(), 1, "{}", describe(&report));
    assert_eq!(imei[0].chain, ["websocket", "json", "plain"]);
    assert_eq!(imei[0].protocol, "websocket");
    assert_eq!(imei[0].host.as_deref(), Some("ws.example.cn"));
    assert!(imei[0].cleartext);
    assert_eq!(find(&report, K::Iccid)[0].direction, "inbound");

    // The server's side was not captured: the client's frames are still read.
    let packets = synth::tcp_conversation(addr(CLIENT), addr(SERVER_CN), &request, b"", 1400);
    let report = scan(&synth::pcap(&packets));
    assert_eq!(
        find(&report, K::Imei)[0].chain,
        ["websocket", "json", "plain"]
    );
}
