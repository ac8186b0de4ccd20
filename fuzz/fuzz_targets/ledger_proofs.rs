//! The ledger's Merkle proofs (RFC 9162), which `ledger verify`, the dashboard and any outsider
//! check: for a tree of fuzz-chosen leaves, the proofs the log serves (from stored subtrees)
//! verify, equal the ones computed from the whole tree, and stop verifying when any bit of them
//! or of a root changes; and any bytes offered as a proof, for any sizes, are refused without
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sovereign_crypto::{
    SubtreeSource, consistency_proof_from, inclusion_proof, inclusion_proof_from, leaf_hash,
    merkle_root, verify_consistency, verify_inclusion,
};

/// Subtree hashes straight from the leaves, as the store keeps them.
struct Leaves<'a>(&'a [[u8; 32]]);

impl SubtreeSource for Leaves<'_> {
    type Error = ();
    fn subtree(&mut self, level: u32, index: u64) -> Result<[u8; 32], ()> {
        let start = usize::try_from(index << level).map_err(|_| ())?;
        let end = start.checked_add(1usize << level).ok_or(())?;
        self.0.get(start..end).map(merkle_root).ok_or(())
    }
}

fn flipped(proof: &[[u8; 32]], bit: usize) -> Vec<[u8; 32]> {
    let mut proof = proof.to_vec();
    let hashes = proof.len();
    proof[(bit / 256) % hashes][(bit / 8) % 32] ^= 1 << (bit % 8);
    proof
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, b) in data.iter().skip(at).take(8).enumerate() {
        bytes[i] = *b;
    }
    u64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let n = usize::from(data[0]) % 70 + 1;
    let m = usize::from(data[1]) % n + 1;
    let index = usize::from(data[2]) % n;
    let bit = usize::from(u16::from_le_bytes([data[3], data[4]]));
    let seed = data[5];
    let leaves: Vec<[u8; 32]> = (0..n)
        .map(|i| leaf_hash(&[seed, i as u8, (i >> 8) as u8]))
        .collect();
    let (first_root, root) = (merkle_root(&leaves[..m]), merkle_root(&leaves));
    let mut source = Leaves(&leaves);

    let consistency = consistency_proof_from(&mut source, m as u64, n as u64)
        .expect("the leaves hold every subtree")
        .expect("0 < m <= n");
    assert!(verify_consistency(
        m as u64,
        n as u64,
        &consistency,
        &first_root,
        &root
    ));
    if !consistency.is_empty() {
        let bad = flipped(&consistency, bit);
        assert!(!verify_consistency(m as u64, n as u64, &bad, &first_root, &root));
    }
    let mut bad_root = root;
    bad_root[bit % 32] ^= 1;
    assert!(!verify_consistency(
        m as u64,
        n as u64,
        &consistency,
        &first_root,
        &bad_root
    ));

    let inclusion = inclusion_proof_from(&mut source, index as u64, n as u64)
        .expect("the leaves hold every subtree")
        .expect("index < n");
    assert_eq!(Some(&inclusion), inclusion_proof(index, &leaves).as_ref());
    assert!(verify_inclusion(index as u64, n as u64, &leaves[index], &inclusion, &root));
    if !inclusion.is_empty() {
        let bad = flipped(&inclusion, bit);
        assert!(!verify_inclusion(index as u64, n as u64, &leaves[index], &bad, &root));
    }

    // Anything offered as a proof, for any sizes: an answer, never a panic.
    let offered: Vec<[u8; 32]> = data[6..]
        .chunks_exact(32)
        .map(|c| <[u8; 32]>::try_from(c).unwrap_or([0; 32]))
        .collect();
    let (a, b) = (u64_at(data, 6), u64_at(data, 14));
    let _ = verify_consistency(a, b, &offered, &first_root, &root);
    let _ = verify_consistency(a % 300, b % 300, &offered, &first_root, &root);
    let _ = verify_inclusion(a, b, &leaves[index], &offered, &root);
    let _ = verify_inclusion(a % 300, b % 300, &leaves[index], &offered, &root);
});
