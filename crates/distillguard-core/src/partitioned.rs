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

use crate::engine::{DetectorNode, EngineConfig, Scorer, ShardReport, Tick};
use crate::event::{AccountId, ApiEvent};
use crate::finding::{FindingUpdate, Report};
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

/// How a [`SplitEngine`]'s detectors are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitScoring {
    /// One scorer absorbs every detector's reports of a tick (the linker role).
    Together,
    /// Each detector scores its own reports, as detector nodes without a linker do.
    PerDetector,
}

/// Several detectors reading one stream, each owning a set of partitions, and their scoring, in
/// one thread: what `replay --detectors` and the tests measure. Every detector sees every
/// event's timestamp (one clock) and applies only its own partitions' events.
#[derive(Debug)]
pub struct SplitEngine {
    partition_count: u32,
    detectors: Vec<(Vec<u32>, DetectorNode)>,
    assembler: TickAssembler,
    /// One scorer ([`SplitScoring::Together`]) or one per detector.
    scorers: Vec<Scorer>,
    updates: Vec<FindingUpdate>,
}

impl SplitEngine {
    /// Detectors owning `sets` (which must cover `0..partition_count` without overlap when
    /// scored together), each with `shards` shards.
    pub fn new(
        config: &EngineConfig,
        sets: Vec<Vec<u32>>,
        partition_count: u32,
        shards: usize,
        scoring: SplitScoring,
    ) -> Self {
        let scorers = match scoring {
            SplitScoring::Together => 1,
            SplitScoring::PerDetector => sets.len(),
        };
        Self {
            partition_count,
            detectors: sets
                .into_iter()
                .map(|set| (set, DetectorNode::new(config, shards)))
                .collect(),
            assembler: TickAssembler::new(partition_count),
            scorers: (0..scorers)
                .map(|_| Scorer::new(config.clone(), shards))
                .collect(),
            updates: Vec::new(),
        }
    }

    pub fn process(&mut self, event: &ApiEvent) -> Result<(), AssembleError> {
        let owner = partition_for(&event.account_id, self.partition_count);
        for index in 0..self.detectors.len() {
            let (set, detector) = &mut self.detectors[index];
            let tick = if set.contains(&owner) {
                detector.process(event).1
            } else {
                detector.advance(event.timestamp)
            };
            self.hand_on(index, tick)?;
        }
        Ok(())
    }

    /// Closes the input: every detector's last tick is scored.
    pub fn finish(&mut self) -> Result<(), AssembleError> {
        for index in 0..self.detectors.len() {
            let tick = self.detectors[index].1.finish();
            self.hand_on(index, tick)?;
        }
        Ok(())
    }

    fn hand_on(&mut self, index: usize, tick: Option<Tick>) -> Result<(), AssembleError> {
        let Some(tick) = tick else { return Ok(()) };
        if self.scorers.len() > 1 {
            let scorer = &mut self.scorers[index];
            for (slot, report) in tick.reports.into_iter().enumerate() {
                scorer.absorb(slot, report);
            }
            self.updates.extend(scorer.finish_tick(tick.at));
            return Ok(());
        }
        let set = &self.detectors[index].0;
        let report = TickReport::new(set, self.partition_count, tick);
        if let Assembled::Complete(tick) = self.assembler.add(report)? {
            self.updates.extend(score_tick(&mut self.scorers[0], tick));
        }
        Ok(())
    }

    pub fn take_updates(&mut self) -> Vec<FindingUpdate> {
        std::mem::take(&mut self.updates)
    }

    /// The findings of every scorer (accounts by id); counts summed over the detectors.
    pub fn report(&self) -> Report {
        let mut accounts: Vec<_> = self
            .scorers
            .iter()
            .flat_map(|s| s.findings().cloned())
            .collect();
        accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        let detectors = || self.detectors.iter().map(|(_, d)| d);
        Report {
            events: detectors().map(DetectorNode::events).sum(),
            late_events: detectors().map(DetectorNode::late_events).sum(),
            ahead_events: detectors().map(DetectorNode::ahead_events).sum(),
            accounts,
            clusters: self
                .scorers
                .iter()
                .flat_map(|s| s.cluster_findings().cloned())
                .collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::Engine;

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

    /// The events through one detector per partition set (each seeing every timestamp),
    /// scored by one scorer.
    pub(crate) fn split(
        events: &[ApiEvent],
        config: &EngineConfig,
        sets: &[Vec<u32>],
        partition_count: u32,
    ) -> (Vec<FindingUpdate>, Report) {
        let mut engine = SplitEngine::new(
            config,
            sets.to_vec(),
            partition_count,
            2,
            SplitScoring::Together,
        );
        let mut updates = Vec::new();
        for e in events {
            engine.process(e).unwrap();
            updates.extend(engine.take_updates());
        }
        engine.finish().unwrap();
        updates.extend(engine.take_updates());
        (updates, engine.report())
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

    #[test]
    fn a_tick_report_reads_back_equal_from_the_wire() {
        let events = crate::engine::tests::mixed_traffic(2);
        let mut detector = DetectorNode::new(&EngineConfig::default(), 2);
        let tick = events
            .iter()
            .find_map(|e| {
                detector
                    .process(e)
                    .1
                    .filter(|t| !t.reports[0].summaries.is_empty())
            })
            .expect("a tick with changed accounts");
        let report = TickReport::new(&[1, 0], 2, tick);
        assert_eq!(report.partitions, [0, 1]);
        // MessagePack with named fields, as the server writes it: floats read back bit-equal
        // (serde_json's default float parsing does not, which would move scores).
        let mut wire = Vec::new();
        report
            .serialize(&mut rmp_serde::Serializer::new(&mut wire).with_struct_map())
            .unwrap();
        assert_eq!(rmp_serde::from_slice::<TickReport>(&wire).unwrap(), report);
    }

    #[test]
    fn detectors_without_a_linker_judge_the_same_events_each_against_its_own_population() {
        let events = crate::engine::tests::mixed_traffic(10);
        let config = EngineConfig::default();
        let sets = vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]];
        let mut alone = SplitEngine::new(&config, sets, 8, 2, SplitScoring::PerDetector);
        for e in &events {
            alone.process(e).unwrap();
        }
        alone.finish().unwrap();
        let (_, one_report) = one_node(&events, &config, 2);
        let report = alone.report();
        assert_eq!(report.events, one_report.events);
        let flagged = |r: &Report| -> Vec<String> {
            let flagged = r.accounts.iter().filter(|a| a.flagged);
            flagged.map(|a| a.account_id.clone()).collect()
        };
        assert_eq!(flagged(&report), ["harvest-bulk", "harvest-late"]);
        assert_eq!(flagged(&report), flagged(&one_report));
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
