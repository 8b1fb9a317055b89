//! Small sampling helpers on top of a seeded ChaCha stream.
//!
//! Everything random in the simulator goes through a [`SimRng`] derived from the scenario seed
//! and a stream number, so the output is a pure function of the seed and the flags.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) type SimRng = ChaCha8Rng;

/// SplitMix64 finaliser: spreads a seed and a stream number over the whole seed space.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// An independent generator for one actor (or one concern) of the scenario.
pub(crate) fn stream(seed: u64, stream: u64) -> SimRng {
    ChaCha8Rng::seed_from_u64(mix(seed ^ mix(stream.wrapping_add(0x5157_0000))))
}

pub(crate) fn chance(rng: &mut SimRng, p: f64) -> bool {
    rng.gen::<f64>() < p
}

pub(crate) fn uniform(rng: &mut SimRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.gen::<f64>()
}

pub(crate) fn normal(rng: &mut SimRng) -> f64 {
    // Box-Muller; one value per call keeps the stream position easy to reason about.
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal with the given median; `sigma` is the spread of the underlying normal.
pub(crate) fn lognormal(rng: &mut SimRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

pub(crate) fn poisson(rng: &mut SimRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 40.0 {
        return (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u32;
    }
    let limit = (-lambda).exp();
    let mut product: f64 = rng.gen();
    let mut count = 0;
    while product > limit {
        product *= rng.gen::<f64>();
        count += 1;
    }
    count
}

/// Exponential inter-arrival gap in milliseconds for a rate given per millisecond.
pub(crate) fn exp_gap(rng: &mut SimRng, rate_per_ms: f64) -> f64 {
    let u: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    -u.ln() / rate_per_ms.max(1e-12)
}

pub(crate) fn pick<'a, T>(rng: &mut SimRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

pub(crate) fn weighted_index(rng: &mut SimRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut target = rng.gen::<f64>() * total;
    for (index, weight) in weights.iter().enumerate() {
        if target < *weight {
            return index;
        }
        target -= weight;
    }
    weights.len() - 1
}

pub(crate) fn hex(rng: &mut SimRng, chars: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..chars)
        .map(|_| DIGITS[rng.gen_range(0..16)] as char)
        .collect()
}

pub(crate) fn range_u32(rng: &mut SimRng, lo: u32, hi_inclusive: u32) -> u32 {
    rng.gen_range(lo..=hi_inclusive)
}

pub(crate) fn range_i64(rng: &mut SimRng, lo: i64, hi_exclusive: i64) -> i64 {
    if hi_exclusive <= lo {
        return lo;
    }
    rng.gen_range(lo..hi_exclusive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_with_the_same_seed_and_number_repeat_and_others_differ() {
        let a: Vec<u64> = (0..4).map(|_| stream(7, 1).gen()).collect();
        let mut first = stream(7, 1);
        let mut again = stream(7, 1);
        let mut other = stream(7, 2);
        let x: u64 = first.gen();
        assert_eq!(x, again.gen::<u64>());
        assert_ne!(x, other.gen::<u64>());
        assert_eq!(a[0], x);
    }

    #[test]
    fn poisson_mean_is_close_to_lambda_for_small_and_large_rates() {
        let mut rng = stream(1, 1);
        for lambda in [2.5, 120.0] {
            let n = 4_000;
            let mean: f64 = (0..n)
                .map(|_| f64::from(poisson(&mut rng, lambda)))
                .sum::<f64>()
                / f64::from(n);
            assert!((mean - lambda).abs() < lambda * 0.05, "{lambda}: {mean}");
        }
    }

    #[test]
    fn weighted_index_never_picks_a_zero_weight() {
        let mut rng = stream(3, 3);
        for _ in 0..1_000 {
            assert_ne!(weighted_index(&mut rng, &[1.0, 0.0, 2.0]), 1);
        }
    }
}
