//! RFC 6962 / RFC 9162 Merkle tree hashing, written out rather than taken
//! from a crate: the functions are short, and the audit record must hash
//! exactly as a third party's independent implementation does (docs/AUDIT.md
//! gives one in Python).
//!
//! leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right), and
//! the root of the empty tree is SHA-256 of nothing.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf or node hash of the tree.
pub type Hash = [u8; 32];

pub(crate) fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

pub(crate) fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// A tree held in memory with the hash of every perfect, aligned subtree, so
/// that the root of any prefix and any proof cost O(log n) lookups: `kxca
/// audit verify` checks every checkpoint of a store of ~1e5 events in one
/// pass over the leaves.
#[derive(Debug, Clone)]
pub struct Tree {
    /// levels[h][i]: the hash of leaves [i * 2^h, (i + 1) * 2^h).
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over these leaf hashes, in order.
    pub fn new(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while let Some(last) = levels.last() {
            if last.len() < 2 {
                break;
            }
            let next: Vec<Hash> = last
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        Tree { levels }
    }

    /// How many leaves.
    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    /// The leaf hash at `index`, if the tree has it.
    pub fn leaf(&self, index: usize) -> Option<&Hash> {
        self.levels[0].get(index)
    }

    /// MTH(D[start .. start + len]), len >= 1, within the tree.
    fn subtree(&self, start: usize, len: usize) -> Hash {
        if len.is_power_of_two() && start.is_multiple_of(len) {
            let h = len.trailing_zeros() as usize;
            return self.levels[h][start >> h];
        }
        let k = split(len);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, len - k))
    }

    /// The root of the first `n` leaves (n <= size).
    pub fn root(&self, n: usize) -> Hash {
        if n == 0 {
            empty_root()
        } else {
            self.subtree(0, n)
        }
    }

    /// RFC 6962 2.1.1 `PATH(m, D[0:n])`: the inclusion proof of leaf `m` in
    /// the tree of the first `n` leaves.
    pub fn inclusion_proof(&self, m: usize, n: usize) -> Vec<Hash> {
        let mut out = Vec::new();
        self.path(m, 0, n, &mut out);
        out
    }

    fn path(&self, m: usize, start: usize, n: usize, out: &mut Vec<Hash>) {
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.subtree(start, k));
        }
    }

    /// RFC 6962 2.1.2 `PROOF(m, D[0:n])`: that the tree of the first `m`
    /// leaves is a prefix of the tree of the first `n` (0 < m <= n).
    pub fn consistency_proof(&self, m: usize, n: usize) -> Vec<Hash> {
        let mut out = Vec::new();
        if m > 0 && m < n {
            self.subproof(m, 0, n, true, &mut out);
        }
        out
    }

    fn subproof(&self, m: usize, start: usize, n: usize, whole: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !whole {
                out.push(self.subtree(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, whole, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.subtree(start, k));
        }
    }
}

/// RFC 9162 2.1.3.2: verifies that `leaf` is leaf `index` of the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 9162 2.1.4.2: verifies that the tree of `first` leaves with root
/// `first_root` is a prefix of the tree of `second` leaves with root
/// `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        // The empty tree is a prefix of every tree.
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *first_root && sr == *second_root && snode == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from RFC 6962 2.1, recursive over the slice.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn roots_match_the_rfc_definition() {
        let all = leaves(70);
        let tree = Tree::new(all.clone());
        for n in 0..=70 {
            assert_eq!(tree.root(n), mth(&all[..n]), "n = {n}");
        }
    }

    #[test]
    fn known_answer_empty_and_single() {
        // RFC 6962 test vectors (as used by Certificate Transparency).
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn inclusion_and_consistency_proofs_verify_and_detect_changes() {
        let all = leaves(37);
        let tree = Tree::new(all.clone());
        for n in 1..=37 {
            let root = tree.root(n);
            for (m, leaf) in all.iter().enumerate().take(n) {
                let proof = tree.inclusion_proof(m, n);
                assert!(verify_inclusion(m as u64, n as u64, leaf, &proof, &root));
                let other = leaf_hash(b"x");
                assert!(!verify_inclusion(m as u64, n as u64, &other, &proof, &root));
            }
            for m in 1..=n {
                let proof = tree.consistency_proof(m, n);
                assert!(
                    verify_consistency(m as u64, n as u64, &tree.root(m), &root, &proof),
                    "{m} -> {n}"
                );
                if m < n {
                    let mut changed = all.clone();
                    changed[m - 1] = leaf_hash(b"edited");
                    let bad = Tree::new(changed).root(m);
                    assert!(!verify_consistency(m as u64, n as u64, &bad, &root, &proof));
                }
            }
        }
    }
}
