//! Linear counting over a fixed bitmap: a tiny distinct counter for low-cardinality features
//! (topic buckets, end users, client IPs) where an HLL would be too big per account.

use serde::{Deserialize, Serialize};

/// `WORDS` × 64 bits. Accurate while the distinct count stays below about `bits × ln(bits)`;
/// beyond that it saturates at that value, which the detectors treat as "very many".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearCounter<const WORDS: usize> {
    #[serde(with = "words")]
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for LinearCounter<WORDS> {
    fn default() -> Self {
        Self { bits: [0; WORDS] }
    }
}

impl<const WORDS: usize> LinearCounter<WORDS> {
    const BITS: usize = WORDS * 64;

    #[inline]
    pub fn insert(&mut self, hash: u64) {
        self.set_bit(Self::bit_of(hash));
    }

    /// The bit a hash sets.
    #[inline]
    pub fn bit_of(hash: u64) -> usize {
        (hash % Self::BITS as u64) as usize
    }

    /// Sets one bit (below `WORDS` × 64).
    #[inline]
    pub fn set_bit(&mut self, bit: usize) {
        self.bits[bit / 64] |= 1 << (bit % 64);
    }

    /// Adds another counter's items (the estimate becomes that of the union).
    pub fn union(&mut self, other: &Self) {
        for (mine, theirs) in self.bits.iter_mut().zip(&other.bits) {
            *mine |= theirs;
        }
    }

    /// Positions of the set bits, ascending: a sparse form for a counter holding few items.
    pub fn set_bits(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, word)| {
            let mut rest = *word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    i * 64 + bit
                })
            })
        })
    }

    /// The counter with exactly these bits set; `None` if one is out of range.
    pub fn from_set_bits(bits: impl IntoIterator<Item = usize>) -> Option<Self> {
        let mut counter = Self::default();
        for bit in bits {
            if bit >= Self::BITS {
                return None;
            }
            counter.bits[bit / 64] |= 1 << (bit % 64);
        }
        Some(counter)
    }

    pub fn estimate(&self) -> f64 {
        Self::estimate_of(self.bits.iter().map(|w| w.count_ones()).sum())
    }

    /// The estimate of a counter with `set` bits set (a sparse form counts its bits itself).
    pub fn estimate_of(set: u32) -> f64 {
        let m = Self::BITS as f64;
        let zeros = (Self::BITS as u32 - set).max(1) as f64;
        m * (m / zeros).ln()
    }
}

/// serde only derives arrays up to 32 elements; a Vec form keeps every size serialisable.
mod words {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, const W: usize>(
        bits: &[u64; W],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        bits.as_slice().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const W: usize>(
        deserializer: D,
    ) -> Result<[u64; W], D::Error> {
        let words = Vec::<u64>::deserialize(deserializer)?;
        words
            .try_into()
            .map_err(|_| serde::de::Error::custom("bitmap has the wrong number of words"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::hash::mix64;

    #[test]
    fn linear_counting_is_close_to_exact_below_saturation() {
        let mut counter = LinearCounter::<32>::default();
        for i in 0..1_000u64 {
            counter.insert(mix64(i));
            counter.insert(mix64(i));
        }
        let estimate = counter.estimate();
        assert!((estimate - 1_000.0).abs() < 80.0, "{estimate}");
    }

    #[test]
    fn an_empty_counter_counts_nothing_and_a_full_one_saturates() {
        let mut counter = LinearCounter::<1>::default();
        assert_eq!(counter.estimate(), 0.0);
        for i in 0..100_000u64 {
            counter.insert(mix64(i));
        }
        assert!(counter.estimate() > 64.0 * 4.0);
    }

    #[test]
    fn a_counter_rebuilt_from_its_set_bits_is_the_same_counter() {
        let mut counter = LinearCounter::<4>::default();
        for i in 0..40u64 {
            counter.insert(mix64(i));
        }
        let bits: Vec<usize> = counter.set_bits().collect();
        assert!(bits.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LinearCounter::<4>::from_set_bits(bits), Some(counter));
        assert_eq!(LinearCounter::<4>::from_set_bits([256]), None);
    }
}
