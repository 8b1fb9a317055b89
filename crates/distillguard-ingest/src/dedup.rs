//! Duplicate suppression for gateway retries, keyed by `request_id`, windowed on event time.
//!
//! A retried log record carries the same request id and timestamp, so event time (not arrival
//! time) decides whether two records are one request: replay and live ingest agree.

use std::collections::{HashMap, VecDeque};

use distillguard_core::time::EventTime;

/// Remembers recent request ids; bounded by a window and a capacity.
#[derive(Debug)]
pub struct Deduplicator {
    window_ms: i64,
    capacity: usize,
    seen: HashMap<String, EventTime>,
    order: VecDeque<(EventTime, String)>,
    newest: Option<EventTime>,
}

impl Deduplicator {
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self {
            window_ms: window_ms.max(0),
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            newest: None,
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
        if self.seen.insert(request_id.to_string(), at).is_none() {
            self.order.push_back((at, request_id.to_string()));
        }
        self.expire();
    }

    fn expire(&mut self) {
        let horizon = self.newest.map(|n| n.plus_ms(-self.window_ms));
        while let Some((at, key)) = self.order.front() {
            let too_old = horizon.is_some_and(|h| *at < h);
            if !too_old && self.order.len() <= self.capacity {
                break;
            }
            if self.seen.get(key) == Some(at) {
                self.seen.remove(key);
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
    fn memory_is_bounded_by_the_capacity() {
        let mut dedup = Deduplicator::new(i64::MAX / 2, 10);
        for i in 0..1_000 {
            dedup.remember(&format!("r{i}"), at(1_000));
        }
        assert!(dedup.len() <= 10);
        assert!(dedup.is_duplicate("r999", at(1_000)));
    }
}
