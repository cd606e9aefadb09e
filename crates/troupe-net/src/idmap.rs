//! Hash maps keyed by ids: node ids (random 64-bit numbers), actor serials and request numbers.
//!
//! The standard map's SipHash resists collision attacks on keys an attacker picks. These maps are
//! looked up on every message sent and received (the sender's peer, the receiver's exported
//! actor, a reply's request), where SipHash was ~6% of all samples of `bench remote` tell64.
//! Their keys are either random (node ids), or chosen by this node (serials, request numbers);
//! a peer can send any serial, but a lookup of a missing key inserts nothing. A multiplicative
//! hash of the 64-bit key is enough.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A new, empty [`IdMap`].
pub(crate) fn id_map<K, V>() -> IdMap<K, V> {
    HashMap::with_hasher(BuildHasherDefault::default())
}

/// Fibonacci hashing of 64-bit keys (other input is folded in 8 bytes at a time).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let mixed = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // The product's high half depends on every bit of the key, its low half only on the key's
        // low bits; the table indexes with the low bits, so fold the high half down.
        self.0 = mixed ^ (mixed >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_and_random_keys_spread_over_buckets() {
        for keys in [
            (0..4096u64).collect::<Vec<_>>(),
            (0..4096u64).map(|i| i << 32).collect(),
            (0..4096u64).map(|i| i * 64).collect(),
        ] {
            let mut buckets = [0u32; 64];
            for key in keys {
                let mut h = IdHasher::default();
                h.write_u64(key);
                buckets[(h.finish() % 64) as usize] += 1;
            }
            // 64 per bucket on average; a bad hash piles keys into a few.
            assert!(buckets.iter().all(|&b| (32..=96).contains(&b)), "{buckets:?}");
        }
    }

    #[test]
    fn a_map_works() {
        let mut map: IdMap<u64, u64> = id_map();
        for i in 0..10_000 {
            map.insert(i * 7, i);
        }
        assert!((0..10_000).all(|i| map.get(&(i * 7)) == Some(&i)));
        assert_eq!(map.get(&3), None);
    }
}
