//! Distinct counting of normalised prompt fingerprints with `hyperloglogplus` (HLL++).
//!
//! Precision 10 (1,024 six-bit registers, 820 B dense, standard error about 3.3 %) is chosen for
//! the 4 KiB per-account budget: the detectors compare distinct counts with request counts, where
//! a few per cent do not move a score. Small accounts stay in the sparse representation, which is
//! smaller still and close to exact.
//!
//! Known issue tabac/hyperloglog.rs#19: `merge_sparse` keeps two codes for the same sparse index
//! when their rank differs, so a sparse sketch can count one register twice. The tests below
//! compare estimates with exact counts across the sparse-to-dense switch and after merges of
//! sparse, dense and mixed sketches; the error stays within the HLL bound because such duplicates
//! need two values colliding in a 2^25-slot sparse index. The engine never merges per-account
//! sketches itself; merging is only offered for the linker (issue 5).

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};

use super::hash::StableBuildHasher;

/// Registers = 2^PRECISION.
pub const PRECISION: u8 = 10;

/// Approximate distinct count of 64-bit values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistinctCounter {
    sketch: HyperLogLogPlus<u64, StableBuildHasher>,
}

impl Default for DistinctCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl DistinctCounter {
    pub fn new() -> Self {
        Self {
            sketch: HyperLogLogPlus::new(PRECISION, StableBuildHasher)
                .expect("precision 10 is within the supported 4..=18"),
        }
    }

    #[inline]
    pub fn insert(&mut self, value: u64) {
        self.sketch.insert_any(&value);
    }

    /// Estimated number of distinct values inserted. Needs `&mut` because HLL++ flushes its
    /// sparse buffer first; only called at ticks, never per event.
    pub fn estimate(&mut self) -> f64 {
        self.sketch.count()
    }

    pub fn merge(&mut self, other: &DistinctCounter) {
        // Same precision by construction, so merge cannot fail.
        let _ = self.sketch.merge(&other.sketch);
    }

    /// Heap bytes held, by the layout `hyperloglogplus` documents: dense registers pack five
    /// six-bit registers per `u32`; sparse codes take at most 4 bytes each plus the small
    /// insertion buffer. Used for the memory budget report, checked against the allocator in the
    /// `state_size` bench.
    pub fn dense_bytes() -> usize {
        (1usize << PRECISION).div_ceil(5) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::hash::mix64;

    fn relative_error(estimate: f64, exact: usize) -> f64 {
        (estimate - exact as f64).abs() / exact as f64
    }

    /// Three standard errors of p = 10 (1.04 / 32 = 3.25 %).
    const BOUND: f64 = 0.0975;

    #[test]
    fn estimates_track_exact_counts_across_the_sparse_to_dense_switch() {
        let mut counter = DistinctCounter::new();
        let mut exact = 0usize;
        // Sparse for small counts, dense past ~200 distinct values at p = 10: check every step.
        for checkpoint in [
            1usize, 5, 20, 50, 100, 150, 200, 250, 300, 500, 1_000, 3_000, 20_000,
        ] {
            while exact < checkpoint {
                counter.insert(mix64(exact as u64 + 1));
                // Repeats must not count.
                counter.insert(mix64(exact as u64 + 1));
                exact += 1;
            }
            let estimate = counter.estimate();
            let bound = if exact <= 100 { 0.02 } else { BOUND };
            assert!(
                relative_error(estimate, exact) <= bound,
                "{exact} distinct estimated as {estimate}"
            );
        }
    }

    #[test]
    fn merges_of_sparse_dense_and_mixed_sketches_estimate_the_union() {
        // (size of a, size of b, overlap): sparse+sparse, sparse+dense, dense+dense.
        for (a_size, b_size, overlap) in [(60, 80, 30), (90, 5_000, 40), (4_000, 6_000, 2_000)] {
            let mut a = DistinctCounter::new();
            let mut b = DistinctCounter::new();
            for i in 0..a_size {
                a.insert(mix64(i as u64));
            }
            for i in (a_size - overlap)..(a_size - overlap + b_size) {
                b.insert(mix64(i as u64));
            }
            let union = a_size + b_size - overlap;
            let mut merged = a.clone();
            merged.merge(&b);
            let estimate = merged.estimate();
            assert!(
                relative_error(estimate, union) <= BOUND,
                "union {union} estimated as {estimate} ({a_size}+{b_size}-{overlap})"
            );
            // Merging again is idempotent.
            merged.merge(&b);
            assert!(relative_error(merged.estimate(), union) <= BOUND);
        }
    }

    #[test]
    fn a_checkpointed_sketch_estimates_the_same_and_keeps_counting() {
        let mut counter = DistinctCounter::new();
        for i in 0..150u64 {
            counter.insert(mix64(i));
        }
        let json = serde_json::to_string(&counter).unwrap();
        let mut restored: DistinctCounter = serde_json::from_str(&json).unwrap();
        for i in 150..400u64 {
            counter.insert(mix64(i));
            restored.insert(mix64(i));
        }
        assert_eq!(counter.estimate(), restored.estimate());
    }
}
