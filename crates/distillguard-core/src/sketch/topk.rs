//! Misra–Gries frequent items with `N` counters: any key seen in more than `1/(N+1)` of the
//! stream is kept, and counts never overestimate (so a "share of traffic" built on them is a
//! lower bound: it cannot invent a template that is not there).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequentItems<K, const N: usize> {
    items: Vec<(K, u32)>,
    total: u64,
}

impl<K, const N: usize> Default for FrequentItems<K, N> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            total: 0,
        }
    }
}

impl<K: Copy + Eq + Ord, const N: usize> FrequentItems<K, N> {
    #[inline]
    pub fn insert(&mut self, key: K) {
        self.total += 1;
        if let Some(slot) = self.items.iter_mut().find(|(k, _)| *k == key) {
            slot.1 += 1;
            return;
        }
        if self.items.len() < N {
            super::reserve_one(&mut self.items, N);
            self.items.push((key, 1));
            return;
        }
        for slot in &mut self.items {
            slot.1 -= 1;
        }
        self.items.retain(|(_, count)| *count > 0);
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Keys by descending (lower-bound) count; ties by key so the order is deterministic.
    pub fn top(&self) -> Vec<(K, u32)> {
        let mut items = self.items.clone();
        items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        items
    }

    /// Share of the stream covered by the most frequent key (a lower bound); no allocation, so
    /// it can run per event.
    pub fn top1_share(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let top = self.items.iter().map(|(_, c)| *c).max().unwrap_or(0);
        f64::from(top) / self.total as f64
    }

    /// Share of the stream covered by the `k` most frequent keys (a lower bound).
    pub fn top_share(&self, k: usize) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let covered: u64 = self.top().iter().take(k).map(|(_, c)| u64::from(*c)).sum();
        covered as f64 / self.total as f64
    }

    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<(K, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dominant_key_survives_a_stream_of_unique_keys() {
        let mut items = FrequentItems::<u64, 4>::default();
        for i in 0..1_000u64 {
            items.insert(7);
            items.insert(1_000 + i);
        }
        let top = items.top();
        assert_eq!(top[0].0, 7);
        assert!(items.top_share(1) > 0.3 && items.top_share(1) <= 0.5);
    }

    #[test]
    fn unique_keys_give_no_dominant_share() {
        let mut items = FrequentItems::<u64, 4>::default();
        for i in 0..1_000u64 {
            items.insert(i);
        }
        assert!(items.top_share(3) < 0.01);
    }
}
