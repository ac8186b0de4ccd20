//! `ledger verify` on a ledger someone rewrote: any rows and checkpoints (as read from a
//! store copy an outsider was handed) give a summary or the first fault, never a panic; and a
//! ledger that verifies has as many entries as rows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_cloud::ledger::{LagBounds, verify_sealed};
use sovereign_cloud::store::{CheckpointRow, LedgerRow};

/// Splits the input into fields at 0xff bytes.
fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == 0xff).collect()
}

fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

fn number(field: &[u8]) -> i64 {
    let mut bytes = [0u8; 8];
    for (i, b) in field.iter().take(8).enumerate() {
        bytes[i] = *b;
    }
    i64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let mut rows = Vec::new();
    let mut checkpoints = Vec::new();
    let mut seals = std::collections::BTreeMap::new();
    for record in fields.chunks(11) {
        let field = |i: usize| record.get(i).copied().unwrap_or(&[]);
        match field(0).first().map(|b| b % 3) {
            Some(0) => rows.push(LedgerRow {
                seq: number(field(1)) % 1000,
                at: number(field(2)),
                kind: text(field(3)),
                user_id: text(field(4)),
                request_id: text(field(5)),
                operator: text(field(6)),
                detail: (!field(7).is_empty()).then(|| text(field(7))),
                detail_hash: field(8).to_vec(),
                leaf_hash: field(9).to_vec(),
                chain_hash: field(10).to_vec(),
            }),
            Some(1) => checkpoints.push(CheckpointRow {
                tree_size: number(field(1)),
                root: field(2).to_vec(),
                chain_head: field(3).to_vec(),
                at: number(field(4)),
                public_key: field(5).to_vec(),
                signature: field(6).to_vec(),
            }),
            _ => {
                seals.insert(number(field(1)) % 1000, field(2).to_vec());
            }
        }
    }
    let public_key = [7u8; 32];
    let bounds = LagBounds {
        entries_max: 16,
        secs_max: 60,
        now_ms: Some(1_000_000),
    };
    for bounds in [&bounds, &LagBounds::unbounded()] {
        if let Ok(summary) = verify_sealed("in-mumbai", &public_key, &rows, &checkpoints, &seals, bounds) {
            assert_eq!(summary.entries, rows.len() as i64);
        }
    }
});
