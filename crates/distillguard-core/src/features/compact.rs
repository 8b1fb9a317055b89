//! Compact forms of the per-account lists: boxed slices of exactly their length (no capacity
//! word, no spare room), frequent-item entries of 12 bytes instead of 16, and samples without a
//! count the list already holds. At a million accounts most of these lists hold one to a few
//! items, so the word per list and the padding per entry are a sizeable share of an account
//! (`docs/evaluation.md`, "Memory per account, second round").
//!
//! Each form counts exactly as the sketch it stands for (`crate::sketch`: `FrequentItems`,
//! `BottomK`, `DistinctCounter`) and is written to checkpoints in that sketch's layout, so older
//! checkpoints load and go on identically, and older versions read newer ones.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sketch::DistinctCounter;

/// Appends to a boxed slice: one reallocation to the new length (a capped list grows to its
/// cap by one item at a time, as `sketch::reserve_one` grows lists of up to eight items).
#[inline]
pub(super) fn push<T>(list: &mut Box<[T]>, item: T) {
    insert(list, list.len(), item);
}

/// Inserts into a boxed slice at `at`, one reallocation.
#[inline]
pub(super) fn insert<T>(list: &mut Box<[T]>, at: usize, item: T) {
    let mut items = std::mem::take(list).into_vec();
    items.reserve_exact(1);
    items.insert(at, item);
    *list = items.into_boxed_slice();
}

/// Removes the item at `at` of a boxed slice, one reallocation.
pub(super) fn remove<T>(list: &mut Box<[T]>, at: usize) -> T {
    let mut items = std::mem::take(list).into_vec();
    let item = items.remove(at);
    *list = items.into_boxed_slice();
    item
}

/// An entry of a frequent-item list: a key and its (lower-bound) count, 0 for a free slot.
pub(super) trait Entry: Copy {
    type Key: Copy + Eq + Ord;
    fn new(key: Self::Key, count: u32) -> Self;
    fn key(&self) -> Self::Key;
    fn count(&self) -> u32;
    fn set_count(&mut self, count: u32);
}

/// A 64-bit key and its count in 12 bytes (`(u64, u32)` takes 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key64([u32; 3]);

impl Entry for Key64 {
    type Key = u64;
    #[inline]
    fn new(key: u64, count: u32) -> Self {
        Key64([key as u32, (key >> 32) as u32, count])
    }
    #[inline]
    fn key(&self) -> u64 {
        u64::from(self.0[0]) | u64::from(self.0[1]) << 32
    }
    #[inline]
    fn count(&self) -> u32 {
        self.0[2]
    }
    #[inline]
    fn set_count(&mut self, count: u32) {
        self.0[2] = count;
    }
}

impl Entry for (IpAddr, u32) {
    type Key = IpAddr;
    #[inline]
    fn new(key: IpAddr, count: u32) -> Self {
        (key, count)
    }
    #[inline]
    fn key(&self) -> IpAddr {
        self.0
    }
    #[inline]
    fn count(&self) -> u32 {
        self.1
    }
    #[inline]
    fn set_count(&mut self, count: u32) {
        self.1 = count;
    }
}

/// Misra–Gries frequent items with `N` counters, as `sketch::FrequentItems<K, N>` counts them,
/// in a boxed slice of at most `N` slots. A key whose count falls to zero leaves its slot free
/// (count 0) instead of being removed, and the next new key takes the first free slot: the live
/// keys and their counts are those of `FrequentItems` after every insert (its list holds exactly
/// the keys with a nonzero count), without a reallocation per event once the slots exist. Only
/// their order in the list differs, which nothing reads (`top` sorts by count, then key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frequent<E: Entry, const N: usize> {
    slots: Box<[E]>,
    total: u64,
}

impl<E: Entry, const N: usize> Default for Frequent<E, N> {
    fn default() -> Self {
        Self {
            slots: Box::default(),
            total: 0,
        }
    }
}

impl<E: Entry, const N: usize> Frequent<E, N> {
    #[inline]
    pub(super) fn insert(&mut self, key: E::Key) {
        self.total += 1;
        let mut free = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.key() == key {
                // A free slot of this key counts it from one, as a new entry would.
                slot.set_count(slot.count() + 1);
                return;
            }
            if free.is_none() && slot.count() == 0 {
                free = Some(i);
            }
        }
        match free {
            Some(i) => self.slots[i] = E::new(key, 1),
            None if self.slots.len() < N => push(&mut self.slots, E::new(key, 1)),
            None => {
                for slot in self.slots.iter_mut() {
                    slot.set_count(slot.count() - 1);
                }
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = (E::Key, u32)> + '_ {
        self.slots
            .iter()
            .filter(|e| e.count() > 0)
            .map(|e| (e.key(), e.count()))
    }

    /// Keys by descending (lower-bound) count; ties by key (`FrequentItems::top`).
    pub(super) fn top(&self) -> Vec<(E::Key, u32)> {
        // Allocated to the slots' number, as `FrequentItems::top` clones its exact list.
        let mut items = Vec::with_capacity(self.slots.len());
        items.extend(self.live());
        items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        items
    }

    /// Share of the stream covered by the most frequent key (`FrequentItems::top1_share`).
    pub(super) fn top1_share(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let top = self.slots.iter().map(Entry::count).max().unwrap_or(0);
        f64::from(top) / self.total as f64
    }

    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[E]>(&self.slots)
    }
}

/// The layout of `sketch::FrequentItems`: the live entries and the total.
#[derive(Serialize, Deserialize)]
struct FrequentWire<K> {
    items: Vec<(K, u32)>,
    total: u64,
}

impl<E: Entry, const N: usize> Serialize for Frequent<E, N>
where
    E::Key: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FrequentWire {
            items: self.live().collect(),
            total: self.total,
        }
        .serialize(serializer)
    }
}

impl<'de, E: Entry, const N: usize> Deserialize<'de> for Frequent<E, N>
where
    E::Key: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = FrequentWire::<E::Key>::deserialize(deserializer)?;
        if wire.items.len() > N {
            return Err(serde::de::Error::custom(
                "more frequent items than counters",
            ));
        }
        Ok(Self {
            slots: wire
                .items
                .into_iter()
                .filter(|(_, c)| *c > 0)
                .map(|(k, c)| E::new(k, c))
                .collect(),
            total: wire.total,
        })
    }
}

/// Bottom-k sample of distinct hashes, as `sketch::BottomK<K>` keeps it, in a boxed slice. The
/// sketch's count of values offered while not full always equals the sample's length (it counts
/// each value the sample took while it had room, and a full sample only swaps values), so it is
/// not kept: it is written as the length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Sample<const K: usize> {
    /// Ascending, distinct, at most `K`.
    hashes: Box<[u64]>,
}

impl<const K: usize> Sample<K> {
    /// Offers a value's hash (`BottomK::insert`).
    #[inline]
    pub(super) fn insert(&mut self, hash: u64) {
        let len = self.hashes.len();
        if len == K && hash >= self.hashes[K - 1] {
            return;
        }
        if let Err(at) = self.hashes.binary_search(&hash) {
            if len == K {
                // Full: drop the largest, shift the rest up, no reallocation.
                self.hashes.copy_within(at..K - 1, at + 1);
                self.hashes[at] = hash;
            } else {
                insert(&mut self.hashes, at, hash);
            }
        }
    }

    pub(super) fn values(&self) -> &[u64] {
        &self.hashes
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.hashes.len() * 8
    }
}

#[derive(Serialize, Deserialize)]
struct SampleWire {
    hashes: Vec<u64>,
    seen: u32,
}

impl<const K: usize> Serialize for Sample<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SampleWire {
            hashes: self.hashes.to_vec(),
            seen: self.hashes.len() as u32,
        }
        .serialize(serializer)
    }
}

impl<'de, const K: usize> Deserialize<'de> for Sample<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SampleWire::deserialize(deserializer)?;
        if wire.hashes.len() > K || wire.hashes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(serde::de::Error::custom(
                "a bottom-k sample is not ascending or too long",
            ));
        }
        Ok(Self {
            hashes: wire.hashes.into_boxed_slice(),
        })
    }
}

/// Exact values of the distinct-prompt counter kept before it switches to registers (as
/// `sketch::DistinctCounter`).
const SPARSE_PROMPTS: usize = 128;

/// The distinct-prompt counter: `sketch::DistinctCounter`'s exact sorted values in a boxed
/// slice while they are few, the counter itself (boxed) once it has switched to registers. The
/// same values, so the same counter and estimate; written as the counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Prompts {
    Sparse(Box<[u32]>),
    Dense(Box<DistinctCounter>),
}

impl Default for Prompts {
    fn default() -> Self {
        Prompts::Sparse(Box::default())
    }
}

impl Prompts {
    /// Adds a value; whether the counter changed (`DistinctCounter::insert`).
    #[inline]
    pub(super) fn insert(&mut self, hash: u64) -> bool {
        match self {
            Prompts::Sparse(values) => {
                let value = (hash >> 32) as u32;
                let Err(at) = values.binary_search(&value) else {
                    return false;
                };
                if values.len() < SPARSE_PROMPTS {
                    insert(values, at, value);
                } else {
                    let mut counter = self.to_counter();
                    counter.insert(hash);
                    *self = Prompts::Dense(Box::new(counter));
                }
                true
            }
            Prompts::Dense(counter) => counter.insert(hash),
        }
    }

    pub(super) fn estimate(&self) -> f64 {
        match self {
            Prompts::Sparse(values) => values.len() as f64,
            Prompts::Dense(counter) => counter.estimate(),
        }
    }

    fn to_counter(&self) -> DistinctCounter {
        match self {
            Prompts::Sparse(values) => DistinctCounter::Sparse(values.to_vec()),
            Prompts::Dense(counter) => (**counter).clone(),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Prompts::Sparse(values) => values.len() * 4,
            Prompts::Dense(counter) => {
                std::mem::size_of::<DistinctCounter>() + counter.heap_bytes()
            }
        }
    }
}

impl Serialize for Prompts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Prompts::Sparse(values) => {
                serializer.serialize_newtype_variant("DistinctCounter", 0, "Sparse", values)
            }
            Prompts::Dense(counter) => counter.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Prompts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match DistinctCounter::deserialize(deserializer)? {
            DistinctCounter::Sparse(values) if values.len() <= SPARSE_PROMPTS => {
                Prompts::Sparse(values.into_boxed_slice())
            }
            counter => Prompts::Dense(Box::new(counter)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::{mix64, BottomK, FrequentItems};

    #[test]
    fn frequent_items_in_slots_keep_the_keys_and_counts_of_the_sketch() {
        let mut slots = Frequent::<Key64, 4>::default();
        let mut sketch = FrequentItems::<u64, 4>::default();
        let mut rng = 3u64;
        for i in 0..20_000u64 {
            rng = mix64(rng);
            // Phases: a few heavy keys, then unique keys, then heavy again.
            let key = if (i / 2_000) % 2 == 0 { rng % 7 } else { rng };
            slots.insert(key);
            sketch.insert(key);
            assert_eq!(slots.top(), sketch.top(), "{i}");
            assert_eq!(slots.top1_share().to_bits(), sketch.top1_share().to_bits());
            assert!(slots.slots.len() <= 4);
        }
        let json = serde_json::to_value(&slots).unwrap();
        let read: FrequentItems<u64, 4> = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read.top(), sketch.top());
        assert_eq!(read.total(), sketch.total());
        let back: Frequent<Key64, 4> = serde_json::from_value(json).unwrap();
        assert_eq!(back.top(), slots.top());
    }

    #[test]
    fn a_boxed_sample_keeps_the_values_of_the_bottom_k_sketch_and_writes_its_layout() {
        let mut sample = Sample::<12>::default();
        let mut sketch = BottomK::<12>::default();
        for i in 0..3_000u64 {
            let hash = mix64(i % 900);
            sample.insert(hash);
            sketch.insert(hash);
            assert_eq!(sample.values(), sketch.values(), "{i}");
            assert_eq!(
                serde_json::to_string(&sample).unwrap(),
                serde_json::to_string(&sketch).unwrap()
            );
        }
        let read: Sample<12> =
            serde_json::from_str(&serde_json::to_string(&sketch).unwrap()).unwrap();
        assert_eq!(read, sample);
    }

    #[test]
    fn the_boxed_prompt_counter_counts_and_writes_as_the_distinct_counter() {
        let mut prompts = Prompts::default();
        let mut counter = DistinctCounter::new();
        for i in 0..2_000u64 {
            let hash = mix64(i % 1_500);
            assert_eq!(prompts.insert(hash), counter.insert(hash), "{i}");
            assert_eq!(prompts.estimate().to_bits(), counter.estimate().to_bits());
            let json = serde_json::to_string(&prompts).unwrap();
            if i % 97 == 0 || i == 128 || i == 129 {
                assert_eq!(json, serde_json::to_string(&counter).unwrap());
                let bytes = rmp_serde::to_vec_named(&prompts).unwrap();
                assert_eq!(bytes, rmp_serde::to_vec_named(&counter).unwrap());
                let read: Prompts = rmp_serde::from_slice(&bytes).unwrap();
                assert_eq!(read, prompts);
            }
        }
        assert!(matches!(prompts, Prompts::Dense(_)));
    }
}
