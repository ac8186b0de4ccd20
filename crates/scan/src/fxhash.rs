//! A fast hasher for the maps looked up once per packet (flows by address pair). The standard
//! SipHash resists collision attacks we do not need here (a capture is not a server's input
//! stream, and a flooded bucket costs time, not correctness), and it took 5% of a scan.

use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hashing, as in rustc's FxHasher: one multiplication per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0_u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0_u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher as _;

    #[test]
    fn different_flows_hash_differently() {
        let build = FxBuildHasher::default();
        let a: std::net::SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let b: std::net::SocketAddr = "10.0.0.2:40001".parse().unwrap();
        let c: std::net::SocketAddr = "223.5.5.5:80".parse().unwrap();
        assert_ne!(build.hash_one((a, c)), build.hash_one((b, c)));
        assert_eq!(build.hash_one((a, c)), build.hash_one((a, c)));
    }
}
