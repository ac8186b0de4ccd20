//! The access ledger's hashes: an RFC 6962 (Certificate Transparency) Merkle tree over the
//! entries, so one entry's inclusion in a signed tree head is proven with log2(n) hashes, and a
//! hash chain over the same entries, so the first changed entry can be named.

use crate::digest_sha256;

/// Hashes of one proof at most; a tree this deep holds 2^64 entries.
pub const PROOF_HASHES_MAX: usize = 64;

/// `SHA-256(0x00 || data)`: the hash of one entry (RFC 6962 §2.1).
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(1 + data.len());
    buf.push(0);
    buf.extend_from_slice(data);
    digest_sha256(&buf)
}

/// `SHA-256(0x01 || left || right)`: an inner node.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    digest_sha256(&buf)
}

/// The next link of the hash chain: `SHA-256(0x02 || previous || leaf)`. The chain starts
/// from 32 zero bytes.
pub fn chain_hash(previous: &[u8; 32], leaf: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 65];
    buf[0] = 2;
    buf[1..33].copy_from_slice(previous);
    buf[33..].copy_from_slice(leaf);
    digest_sha256(&buf)
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The Merkle tree hash of `leaves` (RFC 6962 MTH); the empty tree is `SHA-256("")`.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => digest_sha256(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 PATH), or `None` when
/// `index` is outside the tree.
pub fn inclusion_proof(index: usize, leaves: &[[u8; 32]]) -> Option<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaves.len(), index);
    // Walk down from the root, collecting siblings, then reverse to leaf-to-root order.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            path.push(merkle_root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(merkle_root(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// A whole tree built bottom-up once, for many proofs: pairing nodes level by level and
/// promoting an unpaired last node unchanged gives exactly RFC 6962's tree, in O(n) hashes
/// for the tree and O(log n) per proof.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    pub fn new(leaves: Vec<[u8; 32]>) -> MerkleTree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            // Invariant: the loop condition guarantees a last level.
            let below = levels.last().expect("a level");
            let above: Vec<[u8; 32]> = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        MerkleTree { levels }
    }

    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    pub fn root(&self) -> [u8; 32] {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => digest_sha256(b""),
        }
    }

    /// The audit path of leaf `index`, or `None` outside the tree.
    pub fn proof(&self, index: usize) -> Option<Vec<[u8; 32]>> {
        if index >= self.size() {
            return None;
        }
        let mut path = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// Adds a leaf to a tree's frontier: the roots of its perfect subtrees, `frontier[h]` holding
/// the subtree of 2^h leaves when there is one. Amortised O(1) hashes per leaf, so a log can
/// sign a new root without reading its leaves again.
pub fn frontier_push(frontier: &mut Vec<Option<[u8; 32]>>, leaf: [u8; 32]) {
    let mut carry = leaf;
    let mut height = 0;
    loop {
        if height == frontier.len() {
            frontier.push(None);
        }
        match frontier[height].take() {
            Some(left) => {
                carry = node_hash(&left, &carry);
                height += 1;
            }
            None => {
                frontier[height] = Some(carry);
                return;
            }
        }
    }
}

/// The RFC 6962 root of the tree whose frontier this is: the perfect subtrees from the largest
/// (leftmost) to the smallest, folded from the right.
pub fn frontier_root(frontier: &[Option<[u8; 32]>]) -> [u8; 32] {
    let mut root: Option<[u8; 32]> = None;
    for subtree in frontier.iter().flatten() {
        root = Some(match root {
            None => *subtree,
            Some(right) => node_hash(subtree, &right),
        });
    }
    root.unwrap_or_else(|| digest_sha256(b""))
}

/// Checks that `leaf` is entry `index` of the tree of `size` entries whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8; 32],
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    if index >= size || proof.len() > PROOF_HASHES_MAX {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_leaf_of_every_size_proves_and_no_other_does() {
        for size in 1..=33 {
            let tree = leaves(size);
            let root = merkle_root(&tree);
            for index in 0..size {
                let proof = inclusion_proof(index, &tree).unwrap();
                assert!(
                    verify_inclusion(index as u64, size as u64, &tree[index], &proof, &root),
                    "size {size} index {index}"
                );
                let wrong = leaf_hash(b"not in the tree");
                assert!(!verify_inclusion(
                    index as u64,
                    size as u64,
                    &wrong,
                    &proof,
                    &root
                ));
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(!verify_inclusion(
                        other as u64,
                        size as u64,
                        &tree[index],
                        &proof,
                        &root
                    ));
                }
            }
            assert!(inclusion_proof(size, &tree).is_none());
        }
    }

    #[test]
    fn the_built_tree_and_the_frontier_agree_with_the_definition() {
        let mut frontier = Vec::new();
        for size in 0..=70 {
            let all = leaves(size);
            let tree = MerkleTree::new(all.clone());
            assert_eq!(tree.root(), merkle_root(&all), "size {size}");
            assert_eq!(frontier_root(&frontier), merkle_root(&all), "size {size}");
            for index in 0..size {
                assert_eq!(
                    tree.proof(index),
                    inclusion_proof(index, &all),
                    "size {size} index {index}"
                );
            }
            assert!(tree.proof(size).is_none());
            frontier_push(&mut frontier, leaf_hash(&size.to_be_bytes()));
        }
    }

    #[test]
    fn known_answer_for_two_leaves() {
        let tree = [leaf_hash(b"a"), leaf_hash(b"b")];
        assert_eq!(merkle_root(&tree), node_hash(&tree[0], &tree[1]));
        assert_eq!(
            crate::hex(&merkle_root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chain_depends_on_order() {
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let zero = [0; 32];
        assert_ne!(
            chain_hash(&chain_hash(&zero, &a), &b),
            chain_hash(&chain_hash(&zero, &b), &a)
        );
    }
}
