//! Bottom-k sample of distinct values: the `K` smallest stable hashes seen.
//!
//! Two accounts' samples are *consistent*: a value both used is in both samples whenever its hash
//! is below both accounts' `K`-th smallest, so the values two samples share are a uniform sample
//! of the values the two accounts share (Broder's bottom-k / MinHash argument). That is what lets
//! the linker count shared proxy IPs across accounts that each used hundreds, while holding only
//! `K` numbers per account. The `K`-th smallest hash also estimates the number of distinct values:
//! `(K − 1) / (hash_K / 2^64)`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BottomK<const K: usize> {
    /// Ascending, distinct, at most `K`.
    hashes: Vec<u64>,
    /// Distinct values offered while the sample was not yet full (exact below `K`).
    seen: u32,
}

impl<const K: usize> BottomK<K> {
    /// Offers a value's hash; true if the sample changed.
    #[inline]
    pub fn insert(&mut self, hash: u64) -> bool {
        if self.hashes.len() == K && hash >= self.hashes[K - 1] {
            return false;
        }
        match self.hashes.binary_search(&hash) {
            Ok(_) => false,
            Err(at) => {
                if self.hashes.len() == K {
                    self.hashes.pop();
                } else {
                    self.seen += 1;
                    super::reserve_one(&mut self.hashes, K);
                }
                self.hashes.insert(at, hash);
                true
            }
        }
    }

    /// The sample, ascending.
    pub fn values(&self) -> &[u64] {
        &self.hashes
    }

    /// Estimated number of distinct values offered (exact while fewer than `K`).
    pub fn estimate(&self) -> f64 {
        estimate::<K>(&self.hashes)
    }

    pub fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * std::mem::size_of::<u64>()
    }
}

/// The distinct-count estimate of an ascending bottom-`k` sample (exact below `k` values).
pub fn estimate<const K: usize>(sample: &[u64]) -> f64 {
    match sample.len() {
        n if n < K || K < 2 => n as f64,
        _ => {
            let kth = sample[K - 1] as f64 / u64::MAX as f64;
            if kth <= 0.0 {
                K as f64
            } else {
                ((K - 1) as f64 / kth).max(K as f64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::mix64;

    #[test]
    fn keeps_the_smallest_distinct_hashes_in_order() {
        let mut sample = BottomK::<3>::default();
        for h in [50, 10, 40, 10, 30, 20, 60] {
            sample.insert(h);
        }
        assert_eq!(sample.values(), &[10, 20, 30]);
    }

    #[test]
    fn estimates_are_exact_below_k_and_close_above() {
        let mut sample = BottomK::<32>::default();
        for v in 0..20u64 {
            sample.insert(mix64(v));
            sample.insert(mix64(v));
        }
        assert_eq!(sample.estimate(), 20.0);
        for v in 20..5_000u64 {
            sample.insert(mix64(v));
        }
        let e = sample.estimate();
        assert!((2_500.0..10_000.0).contains(&e), "estimate {e}");
    }

    #[test]
    fn two_samples_share_the_low_hashes_of_the_values_both_saw() {
        let (mut a, mut b) = (BottomK::<16>::default(), BottomK::<16>::default());
        // Both used values 0..100; each also used 100 values of its own.
        for v in 0..100u64 {
            a.insert(mix64(v));
            b.insert(mix64(v));
            a.insert(mix64(1_000 + v));
            b.insert(mix64(2_000 + v));
        }
        let shared = a.values().iter().filter(|h| b.values().contains(h)).count();
        // Half of each account's values are shared, so about half its sample is.
        assert!((3..=14).contains(&shared), "shared {shared}");
    }
}
