//! Duplicate suppression for gateway retries, keyed by `request_id`, windowed on event time.
//!
//! A retried log record carries the same request id and timestamp, so event time (not arrival
//! time) decides whether two records are one request: replay and live ingest agree.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ahash::RandomState;

use distillguard_core::time::EventTime;

/// Remembers recent request ids; bounded by a window and a capacity.
#[derive(Debug)]
pub struct Deduplicator {
    window_ms: i64,
    capacity: usize,
    /// One allocation per id, shared by the map and the queue. Hashed with aHash (SipHash was
    /// a visible share of ingest), seeded per process since clients choose the ids; the
    /// map is never iterated, so the seed cannot change any output.
    seen: HashMap<Arc<str>, EventTime, RandomState>,
    order: VecDeque<(EventTime, Arc<str>)>,
    newest: Option<EventTime>,
    /// Ids forgotten inside their window because the capacity was reached, not yet taken.
    evicted: u64,
}

impl Deduplicator {
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self {
            window_ms: window_ms.max(0),
            capacity: capacity.max(1),
            seen: HashMap::default(),
            order: VecDeque::new(),
            newest: None,
            evicted: 0,
        }
    }

    /// Whether this request id was already seen within the window around `at`.
    pub fn is_duplicate(&self, request_id: &str, at: EventTime) -> bool {
        self.seen
            .get(request_id)
            .is_some_and(|seen| (seen.epoch_ms() - at.epoch_ms()).abs() <= self.window_ms)
    }

    /// Records a request id as processed.
    pub fn remember(&mut self, request_id: &str, at: EventTime) {
        if self.window_ms == 0 {
            return;
        }
        self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
        // An id seen again (outside the window, or at another time) gets a fresh queue entry:
        // its old entry is now stale and is skipped when it expires, so the id itself expires
        // from its new time instead of staying in `seen` for good.
        match self.seen.get_mut(request_id) {
            Some(seen) if *seen == at => {}
            Some(seen) => {
                *seen = at;
                let key = self.seen.get_key_value(request_id).map(|(k, _)| k.clone());
                self.order.extend(key.map(|key| (at, key)));
            }
            None => {
                let key: Arc<str> = Arc::from(request_id);
                self.seen.insert(key.clone(), at);
                self.order.push_back((at, key));
            }
        }
        self.expire();
    }

    /// Forgets an id remembered at `at` whose batch was then not accepted after all (the
    /// write-ahead log refused it), so that the client's retry is processed, not dropped.
    pub fn forget(&mut self, request_id: &str, at: EventTime) {
        if self.seen.get(request_id) == Some(&at) {
            self.seen.remove(request_id);
        }
    }

    /// The remembered ids with their times, oldest first: what a checkpoint keeps, so that a
    /// retry arriving after a restart is still recognised. [`Deduplicator::restore`] reads it.
    pub fn entries(&self) -> Vec<(String, EventTime)> {
        self.order
            .iter()
            .filter(|(at, id)| self.seen.get(&**id) == Some(at))
            .map(|(at, id)| (id.to_string(), *at))
            .collect()
    }

    /// A deduplicator that remembers `entries` (from [`Deduplicator::entries`]) in order.
    pub fn restore(window_ms: i64, capacity: usize, entries: Vec<(String, EventTime)>) -> Self {
        let mut dedup = Self::new(window_ms, capacity);
        for (id, at) in entries {
            dedup.remember(&id, at);
        }
        dedup
    }

    /// Ids dropped within their window because the capacity was reached, since the last call:
    /// a retry of one of those is no longer recognised.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// Queue entries, live and stale; bounded by the capacity.
    pub fn queued(&self) -> usize {
        self.order.len()
    }

    fn expire(&mut self) {
        let horizon = self.newest.map(|n| n.plus_ms(-self.window_ms));
        while let Some((at, key)) = self.order.front() {
            let too_old = horizon.is_some_and(|h| *at < h);
            if !too_old && self.order.len() <= self.capacity {
                break;
            }
            if self.seen.get(&**key) == Some(at) {
                self.seen.remove(&**key);
                if !too_old {
                    self.evicted += 1;
                }
            }
            self.order.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> EventTime {
        EventTime::from_epoch_ms(ms).unwrap()
    }

    #[test]
    fn a_retry_within_the_window_is_a_duplicate() {
        let mut dedup = Deduplicator::new(60_000, 100);
        assert!(!dedup.is_duplicate("r1", at(1_000)));
        dedup.remember("r1", at(1_000));
        assert!(dedup.is_duplicate("r1", at(1_000)));
        assert!(!dedup.is_duplicate("r2", at(1_000)));
    }

    #[test]
    fn ids_older_than_the_window_are_forgotten() {
        let mut dedup = Deduplicator::new(60_000, 100);
        dedup.remember("r1", at(1_000));
        dedup.remember("r2", at(200_000));
        assert!(!dedup.is_duplicate("r1", at(1_000)));
        assert_eq!(dedup.len(), 1);
    }

    #[test]
    fn an_id_seen_again_after_the_window_expires_from_its_new_time() {
        let mut dedup = Deduplicator::new(60_000, 100);
        dedup.remember("r1", at(1_000));
        dedup.remember("r1", at(500_000));
        // The first entry expires; the id stays remembered from its second time ...
        dedup.remember("r2", at(530_000));
        assert!(dedup.is_duplicate("r1", at(500_000)));
        // ... and expires once that is out of the window, leaving nothing behind.
        dedup.remember("r3", at(900_000));
        assert!(!dedup.is_duplicate("r1", at(500_000)));
        assert_eq!(dedup.len(), 1);
        assert_eq!(dedup.queued(), 1);
    }

    #[test]
    fn a_restored_deduplicator_recognises_the_same_retries() {
        let mut dedup = Deduplicator::new(60_000, 100);
        for i in 0..50 {
            dedup.remember(&format!("r{i}"), at(1_000 + i * 1_000));
        }
        dedup.remember("r3", at(90_000));
        let restored = Deduplicator::restore(60_000, 100, dedup.entries());
        assert_eq!(restored.entries(), dedup.entries());
        for i in 0..50 {
            let id = format!("r{i}");
            let t = at(1_000 + i * 1_000);
            assert_eq!(
                restored.is_duplicate(&id, t),
                dedup.is_duplicate(&id, t),
                "{id}"
            );
        }
        assert!(restored.is_duplicate("r3", at(90_000)));
    }

    #[test]
    fn a_forgotten_id_is_no_longer_a_duplicate() {
        let mut dedup = Deduplicator::new(60_000, 100);
        dedup.remember("r1", at(1_000));
        dedup.forget("r1", at(1_000));
        assert!(!dedup.is_duplicate("r1", at(1_000)));
        assert!(dedup.entries().is_empty());
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let mut dedup = Deduplicator::new(i64::MAX / 2, 10);
        for i in 0..1_000 {
            dedup.remember(&format!("r{i}"), at(1_000));
        }
        assert!(dedup.len() <= 10);
        assert!(dedup.is_duplicate("r999", at(1_000)));
    }
}
