//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4) computed from stored subtree
//! hashes in O(log n) lookups, so a log serving proofs never rebuilds its tree per request.
//!
//! A log stores the hash of every perfect, aligned subtree once it is complete (the subtree of
//! 2^level leaves starting at leaf `index << level`); those never change as the log grows. Every
//! range RFC 9162's recursion visits splits into at most log2(n) such subtrees, and only one
//! range per proof is not itself perfect, which bounds the lookups by 2·log2(n) + 2.

use crate::merkle::{PROOF_HASHES_MAX, node_hash};

/// Where the hashes of complete perfect subtrees come from (the store, a built tree, a test).
pub trait SubtreeSource {
    type Error;
    /// The hash of the perfect subtree of 2^`level` leaves starting at leaf `index << level`
    /// (level 0: the leaf hash).
    ///
    /// # Errors
    /// When the source cannot answer (a store error, a subtree it does not hold).
    fn subtree(&mut self, level: u32, index: u64) -> Result<[u8; 32], Self::Error>;
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[lo:hi]) for a range RFC 9162's recursion visits (lo a multiple of the range's highest
/// power of two): its perfect pieces from the left, folded from the right. `lo < hi`.
fn range_root<S: SubtreeSource>(source: &mut S, lo: u64, hi: u64) -> Result<[u8; 32], S::Error> {
    let mut pieces = Vec::new();
    let mut start = lo;
    let mut size = hi - lo;
    while size > 0 {
        let level = 63 - size.leading_zeros();
        pieces.push(source.subtree(level, start >> level)?);
        start += 1u64 << level;
        size -= 1u64 << level;
    }
    // Invariant: the range is not empty, so there is a last piece.
    let mut root = pieces.pop().unwrap_or([0u8; 32]);
    while let Some(left) = pieces.pop() {
        root = node_hash(&left, &root);
    }
    Ok(root)
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 PATH), leaf to
/// root; `Ok(None)` when `index` is not below `size`.
///
/// # Errors
/// The source's.
pub fn inclusion_proof_from<S: SubtreeSource>(
    source: &mut S,
    index: u64,
    size: u64,
) -> Result<Option<Vec<[u8; 32]>>, S::Error> {
    if index >= size {
        return Ok(None);
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0u64, size, index);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            path.push(range_root(source, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(range_root(source, lo, lo + k)?);
            lo += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(Some(path))
}

/// The consistency proof between the trees of the first `first` and the first `second` leaves
/// (RFC 9162 §2.1.4.1 PROOF(m, D[n])); `Ok(None)` unless `0 < first <= second`.
///
/// # Errors
/// The source's.
pub fn consistency_proof_from<S: SubtreeSource>(
    source: &mut S,
    first: u64,
    second: u64,
) -> Result<Option<Vec<[u8; 32]>>, S::Error> {
    if first == 0 || first > second {
        return Ok(None);
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled: `outer` collects what each level appends after the
    // inner subproof, so the proof is the innermost part followed by `outer` reversed.
    let (mut lo, mut hi, mut m, mut whole) = (0u64, second, first, true);
    let mut outer = Vec::new();
    let mut proof = Vec::new();
    loop {
        if m == hi - lo {
            if !whole {
                proof.push(range_root(source, lo, hi)?);
            }
            break;
        }
        let k = split(hi - lo);
        if m <= k {
            outer.push(range_root(source, lo + k, hi)?);
            hi = lo + k;
        } else {
            outer.push(range_root(source, lo, lo + k)?);
            lo += k;
            m -= k;
            whole = false;
        }
    }
    proof.extend(outer.into_iter().rev());
    Ok(Some(proof))
}

/// Checks that the tree of `second` leaves with root `second_root` extends the tree of `first`
/// leaves with root `first_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[[u8; 32]],
    first_root: &[u8; 32],
    second_root: &[u8; 32],
) -> bool {
    if first == 0 || first > second || proof.len() > PROOF_HASHES_MAX {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<[u8; 32]> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

/// Every complete perfect subtree a log of `size` leaves holds: `(level, index)` pairs, for a
/// store that fills its table of subtrees after the fact. The subtrees completed by appending
/// leaf `size - 1` are those this returns for `size` and not for `size - 1`.
pub fn completed_by(leaf_index: u64) -> impl Iterator<Item = (u32, u64)> {
    // Leaf i completes the subtree of level l at index (i + 1) / 2^l - 1 whenever 2^l divides
    // i + 1.
    let end = leaf_index + 1;
    (0..64u32)
        .take_while(move |l| end.trailing_zeros() >= *l)
        .map(move |l| (l, (end >> l) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{inclusion_proof, leaf_hash, merkle_root, verify_inclusion};

    /// Subtrees straight from the definition, over a vector of leaves.
    struct Leaves<'a>(&'a [[u8; 32]]);

    impl SubtreeSource for Leaves<'_> {
        type Error = ();
        fn subtree(&mut self, level: u32, index: u64) -> Result<[u8; 32], ()> {
            let lo = (index << level) as usize;
            let hi = lo + (1usize << level);
            if hi > self.0.len() {
                return Err(());
            }
            Ok(merkle_root(&self.0[lo..hi]))
        }
    }

    /// Counts lookups, answering with made-up hashes: enough to count a proof of a huge tree.
    struct Counting(u64);

    impl SubtreeSource for Counting {
        type Error = ();
        fn subtree(&mut self, level: u32, index: u64) -> Result<[u8; 32], ()> {
            self.0 += 1;
            Ok(leaf_hash(
                &[level.to_be_bytes().as_slice(), &index.to_be_bytes()].concat(),
            ))
        }
    }

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn inclusion_from_subtrees_matches_the_definition() {
        let all = leaves(70);
        for size in 1..=70usize {
            for index in 0..size {
                let proof =
                    inclusion_proof_from(&mut Leaves(&all[..size]), index as u64, size as u64)
                        .unwrap()
                        .unwrap();
                assert_eq!(Some(proof.clone()), inclusion_proof(index, &all[..size]));
                assert!(verify_inclusion(
                    index as u64,
                    size as u64,
                    &all[index],
                    &proof,
                    &merkle_root(&all[..size])
                ));
            }
            assert_eq!(
                inclusion_proof_from(&mut Leaves(&all[..size]), size as u64, size as u64),
                Ok(None)
            );
        }
    }

    #[test]
    fn every_pair_of_sizes_is_consistent_and_a_changed_tree_is_not() {
        let all = leaves(40);
        let mut changed = all.clone();
        for first in 1..=40u64 {
            for second in first..=40u64 {
                let source = &mut Leaves(&all[..second as usize]);
                let proof = consistency_proof_from(source, first, second)
                    .unwrap()
                    .unwrap();
                let (r1, r2) = (
                    merkle_root(&all[..first as usize]),
                    merkle_root(&all[..second as usize]),
                );
                assert!(
                    verify_consistency(first, second, &proof, &r1, &r2),
                    "{first} -> {second}"
                );
                // A leaf inside the first tree changed: the old root is no longer extended.
                changed[(first - 1) as usize] = leaf_hash(b"rewritten");
                let forged = merkle_root(&changed[..second as usize]);
                let forged_proof =
                    consistency_proof_from(&mut Leaves(&changed[..second as usize]), first, second)
                        .unwrap()
                        .unwrap();
                assert!(!verify_consistency(
                    first,
                    second,
                    &forged_proof,
                    &r1,
                    &forged
                ));
                if first < second {
                    assert!(!verify_consistency(first, second, &proof, &r1, &forged));
                }
                changed[(first - 1) as usize] = all[(first - 1) as usize];
            }
        }
        assert_eq!(consistency_proof_from(&mut Leaves(&all), 0, 3), Ok(None));
        assert_eq!(consistency_proof_from(&mut Leaves(&all), 4, 3), Ok(None));
        assert!(!verify_consistency(0, 3, &[], &[0; 32], &[0; 32]));
        assert!(!verify_consistency(
            1,
            2,
            &vec![[0u8; 32]; PROOF_HASHES_MAX + 1],
            &[0; 32],
            &[0; 32]
        ));
    }

    #[test]
    fn proofs_take_logarithmically_many_lookups() {
        for size in [2u64, 3, 1000, 1 << 20, (1 << 40) + 12345, u64::MAX / 2] {
            let bound = 2 * u64::from(64 - size.leading_zeros()) + 2;
            for index in [0, 1, size / 2, size - 1] {
                let mut counting = Counting(0);
                inclusion_proof_from(&mut counting, index.min(size - 1), size).unwrap();
                assert!(
                    counting.0 <= bound,
                    "inclusion {index}/{size}: {}",
                    counting.0
                );
                let mut counting = Counting(0);
                consistency_proof_from(&mut counting, index.max(1), size).unwrap();
                assert!(
                    counting.0 <= bound,
                    "consistency {index}/{size}: {}",
                    counting.0
                );
            }
        }
    }

    #[test]
    fn each_leaf_completes_the_subtrees_ending_at_it() {
        assert_eq!(completed_by(0).collect::<Vec<_>>(), vec![(0, 0)]);
        assert_eq!(completed_by(1).collect::<Vec<_>>(), vec![(0, 1), (1, 0)]);
        assert_eq!(completed_by(2).collect::<Vec<_>>(), vec![(0, 2)]);
        assert_eq!(
            completed_by(7).collect::<Vec<_>>(),
            vec![(0, 7), (1, 3), (2, 1), (3, 0)]
        );
    }
}
