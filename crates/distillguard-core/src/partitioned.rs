//! Detectors that each own part of the partitions, and one scorer that judges their reports
//! together, so that several detector nodes find exactly what one node finds.
//!
//! - Every detector admits every event of the stream to its clock ([`DetectorNode::advance`] for the
//!   events it does not own), so all of them tick at the same stream positions as one node would.
//! - At each tick a detector hands on its shards' reports as one [`TickReport`] (the changed
//!   accounts' summaries, population deltas, evicted ids) instead of scoring them.
//! - The scoring node gathers a tick's reports in a [`TickAssembler`] until they cover every
//!   partition, and [`score_tick`] absorbs them in partition order into one [`Scorer`]: the same
//!   population, scores, links, clusters and member flags as one node, because a shard report
//!   only depends on its accounts' events and the tick, and the scorer sorts what it absorbs.
//!
//! [`DetectorNode::advance`]: crate::engine::DetectorNode::advance

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Scorer, ShardReport, Tick};
use crate::event::AccountId;
use crate::finding::FindingUpdate;
use crate::time::EventTime;

/// The version of [`TickReport`] this build writes. A reader takes any version whose fields it
/// knows; fields added later must default.
pub const TICK_REPORT_VERSION: u32 = 1;

fn first_version() -> u32 {
    1
}

/// The partition of an account: FNV-1a over its id modulo the partition count, so every node
/// and every version agrees.
pub fn partition_for(account: &AccountId, partition_count: u32) -> u32 {
    let hash = crate::sketch::fnv1a(account.as_str().as_bytes());
    (hash % u64::from(partition_count.max(1))) as u32
}

/// One detector's reports of one tick, naming the partitions they cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickReport {
    #[serde(default = "first_version")]
    pub version: u32,
    /// The partitions the detector owns, ascending.
    pub partitions: Vec<u32>,
    pub partition_count: u32,
    pub at: EventTime,
    /// The detector's shards' reports, in shard order.
    #[serde(default)]
    pub shards: Vec<ShardReport>,
}

impl TickReport {
    pub fn new(partitions: &[u32], partition_count: u32, tick: Tick) -> Self {
        let mut partitions = partitions.to_vec();
        partitions.sort_unstable();
        partitions.dedup();
        Self {
            version: TICK_REPORT_VERSION,
            partitions,
            partition_count,
            at: tick.at,
            shards: tick.reports,
        }
    }
}

/// Why a report cannot be scored with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("a report for {got} partitions reached a scorer of {expected}")]
    PartitionCount { expected: u32, got: u32 },
    #[error("partition {partition} is outside 0..{partition_count}")]
    UnknownPartition {
        partition: u32,
        partition_count: u32,
    },
    #[error("two detectors reported partition {partition} for the tick at {at}")]
    Overlap { partition: u32, at: EventTime },
    #[error("the tick at {at} completed while the earlier tick at {earlier} still misses reports")]
    OutOfOrder { at: EventTime, earlier: EventTime },
}

/// What [`TickAssembler::add`] did with a report.
#[derive(Debug, PartialEq)]
pub enum Assembled {
    /// Kept; the tick still misses other partitions' reports.
    Waiting,
    /// A report already taken (a detector that restarted and published it again), dropped.
    Repeated,
    /// Every partition has reported for this tick: its reports in partition order.
    Complete(CompleteTick),
}

/// A tick whose reports cover every partition.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteTick {
    pub at: EventTime,
    pub reports: Vec<TickReport>,
}

/// Gathers detectors' reports until a tick is covered. Serialisable, so that a scoring node's
/// checkpoint holds the ticks it has not scored yet and the last one it has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TickAssembler {
    partition_count: u32,
    #[serde(default)]
    last_scored: Option<EventTime>,
    #[serde(default)]
    pending: BTreeMap<EventTime, Vec<TickReport>>,
}

impl TickAssembler {
    pub fn new(partition_count: u32) -> Self {
        Self {
            partition_count: partition_count.max(1),
            last_scored: None,
            pending: BTreeMap::new(),
        }
    }

    /// The newest tick handed out complete.
    pub fn last_scored(&self) -> Option<EventTime> {
        self.last_scored
    }

    /// Ticks waiting for reports.
    pub fn pending_ticks(&self) -> usize {
        self.pending.len()
    }

    pub fn add(&mut self, report: TickReport) -> Result<Assembled, AssembleError> {
        self.check(&report)?;
        if self.last_scored.is_some_and(|last| report.at <= last) {
            return Ok(Assembled::Repeated);
        }
        let at = report.at;
        let reports = self.pending.entry(at).or_default();
        if reports.iter().any(|r| r.partitions == report.partitions) {
            return Ok(Assembled::Repeated);
        }
        for taken in reports.iter() {
            if let Some(partition) = taken
                .partitions
                .iter()
                .find(|p| report.partitions.contains(p))
            {
                return Err(AssembleError::Overlap {
                    partition: *partition,
                    at,
                });
            }
        }
        reports.push(report);
        let covered: usize = reports.iter().map(|r| r.partitions.len()).sum();
        if covered < self.partition_count as usize {
            return Ok(Assembled::Waiting);
        }
        // With one clock every detector ticks at the same positions and publishes its ticks in
        // order, so an earlier tick is always complete first; anything else is misconfiguration.
        if let Some(earlier) = self.pending.keys().next().filter(|first| **first < at) {
            return Err(AssembleError::OutOfOrder {
                at,
                earlier: *earlier,
            });
        }
        let mut reports = self.pending.remove(&at).unwrap_or_default();
        reports.sort_by_key(|r| r.partitions.first().copied());
        self.last_scored = Some(at);
        Ok(Assembled::Complete(CompleteTick { at, reports }))
    }

    fn check(&self, report: &TickReport) -> Result<(), AssembleError> {
        if report.partition_count != self.partition_count {
            return Err(AssembleError::PartitionCount {
                expected: self.partition_count,
                got: report.partition_count,
            });
        }
        match report
            .partitions
            .iter()
            .find(|p| **p >= self.partition_count)
        {
            Some(partition) => Err(AssembleError::UnknownPartition {
                partition: *partition,
                partition_count: self.partition_count,
            }),
            None => Ok(()),
        }
    }
}

/// Scores a complete tick: every detector's shard reports, in partition order, into one scorer
/// (shards numbered one detector after the other).
pub fn score_tick(scorer: &mut Scorer, tick: CompleteTick) -> Vec<FindingUpdate> {
    let mut slot = 0;
    for report in tick.reports {
        for shard in report.shards {
            scorer.absorb(slot, shard);
            slot += 1;
        }
    }
    scorer.finish_tick(tick.at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::{DetectorNode, Engine, EngineConfig};
    use crate::event::ApiEvent;
    use crate::finding::Report;

    /// The events through one engine of `shards` shards.
    pub(crate) fn one_node(
        events: &[ApiEvent],
        config: &EngineConfig,
        shards: usize,
    ) -> (Vec<FindingUpdate>, Report) {
        let mut engine = Engine::new(config.clone(), shards);
        let mut updates = Vec::new();
        for e in events {
            engine.process(e);
            updates.extend(engine.take_updates());
        }
        engine.finish();
        updates.extend(engine.take_updates());
        (updates, engine.report())
    }

    /// The events through one detector per partition set (each seeing every timestamp), their
    /// reports serialised as they would cross the network, and one scorer.
    pub(crate) fn split(
        events: &[ApiEvent],
        config: &EngineConfig,
        sets: &[Vec<u32>],
        partition_count: u32,
    ) -> (Vec<FindingUpdate>, Report) {
        let mut detectors: Vec<DetectorNode> =
            sets.iter().map(|_| DetectorNode::new(config, 2)).collect();
        let mut assembler = TickAssembler::new(partition_count);
        let mut scorer = Scorer::new(config.clone(), 1);
        let mut updates = Vec::new();
        let mut hand_on = |set: &[u32], tick: Option<Tick>, updates: &mut Vec<FindingUpdate>| {
            let Some(tick) = tick else { return };
            let wire = serde_json::to_vec(&TickReport::new(set, partition_count, tick)).unwrap();
            let report: TickReport = serde_json::from_slice(&wire).unwrap();
            if let Assembled::Complete(tick) = assembler.add(report).unwrap() {
                updates.extend(score_tick(&mut scorer, tick));
            }
        };
        for e in events {
            let owner = partition_for(&e.account_id, partition_count);
            for (detector, set) in detectors.iter_mut().zip(sets) {
                let tick = if set.contains(&owner) {
                    detector.process(e).1
                } else {
                    detector.advance(e.timestamp)
                };
                hand_on(set, tick, &mut updates);
            }
        }
        for (detector, set) in detectors.iter_mut().zip(sets) {
            let tick = detector.finish();
            hand_on(set, tick, &mut updates);
        }
        let report = Report {
            events: detectors.iter().map(DetectorNode::events).sum(),
            late_events: detectors.iter().map(DetectorNode::late_events).sum(),
            ahead_events: detectors.iter().map(DetectorNode::ahead_events).sum(),
            accounts: scorer.findings().cloned().collect(),
            clusters: scorer.cluster_findings().cloned().collect(),
        };
        (updates, report)
    }

    #[test]
    fn detectors_splitting_the_partitions_and_one_scorer_find_what_one_engine_finds() {
        let events = crate::engine::tests::mixed_traffic(10);
        let config = EngineConfig::default();
        let (one_updates, one_report) = one_node(&events, &config, 3);
        for sets in [
            vec![(0..8).collect::<Vec<u32>>()],
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]],
            vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]],
        ] {
            let (updates, report) = split(&events, &config, &sets, 8);
            assert!(report.accounts.iter().any(|a| a.flagged));
            assert_eq!(updates, one_updates, "{sets:?}");
            assert_eq!(report, one_report, "{sets:?}");
        }
    }

    fn report(partitions: &[u32], at: i64) -> TickReport {
        TickReport {
            version: TICK_REPORT_VERSION,
            partitions: partitions.to_vec(),
            partition_count: 4,
            at: EventTime::from_epoch_ms(at).unwrap(),
            shards: vec![ShardReport::default()],
        }
    }

    #[test]
    fn a_tick_completes_once_its_reports_cover_every_partition_in_partition_order() {
        let mut assembler = TickAssembler::new(4);
        assert_eq!(
            assembler.add(report(&[2, 3], 1_000)),
            Ok(Assembled::Waiting)
        );
        assert_eq!(
            assembler.add(report(&[2, 3], 1_000)),
            Ok(Assembled::Repeated)
        );
        let Ok(Assembled::Complete(tick)) = assembler.add(report(&[0, 1], 1_000)) else {
            panic!("the tick is covered");
        };
        let firsts: Vec<u32> = tick.reports.iter().map(|r| r.partitions[0]).collect();
        assert_eq!(firsts, [0, 2]);
        assert_eq!(
            assembler.add(report(&[0, 1], 1_000)),
            Ok(Assembled::Repeated),
            "a tick already scored is a repeat after a detector's restart"
        );
        assert_eq!(assembler.pending_ticks(), 0);
    }

    #[test]
    fn overlapping_partition_sets_and_other_partition_counts_are_refused() {
        let mut assembler = TickAssembler::new(4);
        assembler.add(report(&[0, 1], 1_000)).unwrap();
        assert!(matches!(
            assembler.add(report(&[1, 2], 1_000)),
            Err(AssembleError::Overlap { partition: 1, .. })
        ));
        let mut other = report(&[2, 3], 1_000);
        other.partition_count = 8;
        assert!(matches!(
            assembler.add(other),
            Err(AssembleError::PartitionCount { .. })
        ));
        assert!(matches!(
            assembler.add(report(&[4], 1_000)),
            Err(AssembleError::UnknownPartition { partition: 4, .. })
        ));
    }

    #[test]
    fn a_later_tick_cannot_complete_before_an_earlier_one() {
        let mut assembler = TickAssembler::new(4);
        assembler.add(report(&[0, 1], 1_000)).unwrap();
        assert!(matches!(
            assembler.add(report(&[0, 1, 2, 3], 2_000)),
            Err(AssembleError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn a_report_without_the_fields_added_later_still_reads() {
        let old = r#"{"partitions":[0],"partition_count":1,"at":1764000000000}"#;
        let report: TickReport = serde_json::from_str(old).unwrap();
        assert_eq!(report.version, 1);
        assert!(report.shards.is_empty());
    }
}
