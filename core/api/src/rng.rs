//! Seeded randomness. Every random draw in pulse comes from a generator derived from the trial
//! seed and a purpose label, so that runs are reproducible and independent streams (data split,
//! weight init, dropout, negative sampling) do not shift when one of them draws more numbers.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator type used throughout pulse.
pub type Rng = ChaCha8Rng;

/// A generator for `purpose` under `seed` (FNV-1a of the label mixed into the seed).
pub fn derive(seed: u64, purpose: &str) -> Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in purpose.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

#[cfg(test)]
mod tests {
    use rand::Rng as _;

    #[test]
    fn same_seed_same_stream_and_labels_differ() {
        let a: u64 = super::derive(7, "init").random();
        let b: u64 = super::derive(7, "init").random();
        let c: u64 = super::derive(7, "dropout").random();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
