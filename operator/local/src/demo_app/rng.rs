//! A tiny deterministic generator: the n-th request of an app started with a
//! given seed always gets the same roll, so a demo run is reproducible.

/// SplitMix64 applied to `seed + index`: a uniform value in [0, 1).
pub fn roll(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // 53 random bits make an exactly representable fraction.
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_seed_same_sequence_and_rate_roughly_holds() {
        let a: Vec<f64> = (0..1000).map(|i| roll(7, i)).collect();
        let b: Vec<f64> = (0..1000).map(|i| roll(7, i)).collect();
        assert_eq!(a, b);
        let c: Vec<f64> = (0..1000).map(|i| roll(8, i)).collect();
        assert_ne!(a, c);
        let below = a.iter().filter(|r| **r < 0.3).count();
        assert!((200..400).contains(&below), "{below}");
    }

    proptest! {
        #[test]
        fn roll_is_in_unit_interval(seed: u64, index: u64) {
            let r = roll(seed, index);
            prop_assert!((0.0..1.0).contains(&r));
        }
    }
}
