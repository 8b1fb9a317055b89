//! Event time per partition: each partition's watermark is the newest event time it delivered;
//! the global watermark is the minimum over partitions that delivered something recently.
//!
//! Why the minimum: a partition that lags (a node replaying after a restart, a slow shipper
//! feeding some accounts) has not delivered its events up to the others' time yet, so the others'
//! time is not yet a safe point. Why only active partitions: a partition that carries no traffic
//! (few accounts hash to it, or its clients stopped) would otherwise hold the global watermark
//! back for ever. Activity is measured in wall time since the partition's last message, so an idle
//! partition rejoins as soon as it delivers again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use distillguard_core::time::EventTime;

#[derive(Debug, Clone, Copy)]
struct PartitionTime {
    newest: EventTime,
    last_message: Instant,
}

/// Watermarks of the partitions one node consumes.
#[derive(Debug)]
pub struct Watermarks {
    idle_after: Duration,
    partitions: BTreeMap<u32, PartitionTime>,
}

impl Watermarks {
    pub fn new(idle_after: Duration) -> Self {
        Self {
            idle_after,
            partitions: BTreeMap::new(),
        }
    }

    /// A message of `partition` with event time `at` arrived at `now`.
    pub fn observe(&mut self, partition: u32, at: EventTime, now: Instant) {
        let entry = self.partitions.entry(partition).or_insert(PartitionTime {
            newest: at,
            last_message: now,
        });
        entry.newest = entry.newest.max(at);
        entry.last_message = now;
    }

    pub fn partition(&self, partition: u32) -> Option<EventTime> {
        self.partitions.get(&partition).map(|p| p.newest)
    }

    /// The minimum over partitions with a message within `idle_after` of `now`; None when every
    /// partition is idle (nothing to hold back then).
    pub fn global(&self, now: Instant) -> Option<EventTime> {
        self.partitions
            .values()
            .filter(|p| now.saturating_duration_since(p.last_message) <= self.idle_after)
            .map(|p| p.newest)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> EventTime {
        EventTime::from_epoch_ms(1_764_000_000_000 + seconds * 1000).unwrap()
    }

    #[test]
    fn the_global_watermark_is_the_slowest_active_partition() {
        let start = Instant::now();
        let mut marks = Watermarks::new(Duration::from_secs(30));
        marks.observe(0, at(100), start);
        marks.observe(1, at(40), start);
        marks.observe(0, at(90), start);
        assert_eq!(marks.partition(0), Some(at(100)));
        assert_eq!(marks.global(start), Some(at(40)));
    }

    #[test]
    fn an_idle_partition_does_not_stall_the_global_watermark() {
        let start = Instant::now();
        let mut marks = Watermarks::new(Duration::from_secs(30));
        marks.observe(1, at(40), start);
        let later = start + Duration::from_secs(31);
        marks.observe(0, at(500), later);
        assert_eq!(marks.global(later), Some(at(500)));
        // It rejoins, and holds the watermark back again, once it delivers.
        marks.observe(1, at(60), later);
        assert_eq!(marks.global(later), Some(at(60)));
    }

    #[test]
    fn with_every_partition_idle_there_is_no_global_watermark() {
        let start = Instant::now();
        let mut marks = Watermarks::new(Duration::from_secs(1));
        marks.observe(3, at(1), start);
        assert_eq!(marks.global(start + Duration::from_secs(5)), None);
    }
}
