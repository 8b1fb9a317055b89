//! Detectors that each own part of the partitions, and one scorer that judges their reports
//! together, so that several detector nodes find exactly what one node finds.
//!
//! - Every detector admits every event of the stream to its clock ([`DetectorNode::advance`] for the
//!   events it does not own), so all of them tick at the same stream positions as one node would.
//! - At each tick a detector hands on its shards' reports as one [`TickReport`] (the changed
//!   accounts' summaries, population deltas, evicted ids) instead of scoring them.
//! - The scoring node gathers a tick's reports in a [`TickAssembler`] until they cover every
//!   partition (or until the missing ones can no longer arrive: see [`TickAssembler`]), and [`score_tick`] absorbs them in partition order into one [`Scorer`]: the same
//!   population, scores, links, clusters and member flags as one node, because a shard report
//!   only depends on its accounts' events and the tick, and the scorer sorts what it absorbs.
//!
//! [`DetectorNode::advance`]: crate::engine::DetectorNode::advance

use std::collections::BTreeMap;
use std::ops::Bound;

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
}

/// What [`TickAssembler::add`] did with a report.
#[derive(Debug, PartialEq)]
pub enum Assembled {
    /// Kept; the tick still misses other partitions' reports.
    Waiting,
    /// A report already taken, or of a tick already scored or given up (a detector that
    /// restarted and published it again), dropped.
    Repeated,
    /// Ticks to score now, oldest first: every earlier tick given up incomplete (see
    /// [`TickAssembler`]), then the ones this report completed or let go.
    Ready(Vec<ReadyTick>),
}

/// A tick to score: its reports in partition order. Complete when they cover every partition;
/// otherwise given up, and `missing` names what never arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyTick {
    pub at: EventTime,
    pub reports: Vec<TickReport>,
    /// Partitions no report of this tick covers, ascending; empty when the tick is complete.
    pub missing: Vec<u32>,
    /// The partition sets (the sources, as detectors name themselves) that reported
    /// `missing` partitions for a later tick, which is what proved this tick's reports from them
    /// lost; ascending.
    pub missing_sources: Vec<Vec<u32>>,
}

impl ReadyTick {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Gathers detectors' reports until a tick is covered. Serialisable, so that a scoring node's
/// checkpoint holds the ticks it has not scored yet and the last one it has.
///
/// **Giving up an incomplete tick.** A tick some of whose reports never arrive (a report aged
/// out of the profiles stream before the linker read it, or one a detector could not encode)
/// would otherwise hold every later tick back for ever. Each detector publishes its ticks in
/// order and awaits each acknowledgement before the next, so once a report for a *later* tick
/// has arrived for every partition the earlier tick misses, the earlier tick's missing reports
/// can never come (a detector's re-publication after a restart is of ticks it had already
/// published, and is a repeat). The assembler then hands the tick out with the reports it has,
/// before the later ones, oldest first. The rule reads only the reports and their order (no
/// wall clock), so a linker restarted from a checkpoint and reading the same stream decides the
/// same. Every tick after the oldest pending one is itself pending (ticks go out in order), so the
/// evidence is in `pending` and the checkpoint needs no new field.
///
/// Scored with what it has rather than skipped: the reports that did arrive are exact (their
/// accounts' summaries, population moves and evictions for that tick), and skipping them would
/// lose that tick's evidence of *those* detectors' accounts too (an account is reported again
/// only when it next changes) and their population moves for good. What is lost is only what
/// never arrived: the missing detector's accounts changed in that tick are judged on their
/// previous summary until they change again, and its population moves of that tick are missing
/// from the histograms (a few accounts' buckets, until they are evicted).
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

    pub fn partition_count(&self) -> u32 {
        self.partition_count
    }

    /// The newest tick handed out (complete or given up).
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
        let ready = self.release();
        Ok(if ready.is_empty() {
            Assembled::Waiting
        } else {
            Assembled::Ready(ready)
        })
    }

    /// Hands out, oldest first, every pending tick that is complete or whose missing partitions
    /// have all reported a later tick; stops at the first that must still wait.
    fn release(&mut self) -> Vec<ReadyTick> {
        let mut ready = Vec::new();
        while let Some((&at, reports)) = self.pending.first_key_value() {
            let missing = self.missing(reports);
            let mut missing_sources = Vec::new();
            for partition in &missing {
                let later = self
                    .pending
                    .range((Bound::Excluded(at), Bound::Unbounded))
                    .flat_map(|(_, reports)| reports)
                    .find(|r| r.partitions.contains(partition));
                match later {
                    Some(source) => missing_sources.push(source.partitions.clone()),
                    None => return ready,
                }
            }
            missing_sources.sort_unstable();
            missing_sources.dedup();
            let mut reports = self.pending.remove(&at).unwrap_or_default();
            reports.sort_by_key(|r| r.partitions.first().copied());
            self.last_scored = Some(at);
            ready.push(ReadyTick {
                at,
                reports,
                missing,
                missing_sources,
            });
        }
        ready
    }

    /// The partitions `reports` do not cover, ascending.
    fn missing(&self, reports: &[TickReport]) -> Vec<u32> {
        let mut covered = vec![false; self.partition_count as usize];
        for partition in reports.iter().flat_map(|r| &r.partitions) {
            if let Some(slot) = covered.get_mut(*partition as usize) {
                *slot = true;
            }
        }
        (0..self.partition_count)
            .filter(|p| !covered[*p as usize])
            .collect()
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

/// Scores a tick: every detector's shard reports, in partition order, into one scorer (shards
/// numbered one detector after the other). A tick given up incomplete is scored the same way on
/// the reports it has.
pub fn score_tick(scorer: &mut Scorer, tick: ReadyTick) -> Vec<FindingUpdate> {
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
        if let Assembled::Ready(ticks) = self.assembler.add(report)? {
            for tick in ticks {
                self.updates.extend(score_tick(&mut self.scorers[0], tick));
            }
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
        let Ok(Assembled::Ready(mut ticks)) = assembler.add(report(&[0, 1], 1_000)) else {
            panic!("the tick is covered");
        };
        assert_eq!(ticks.len(), 1);
        let tick = ticks.remove(0);
        assert!(tick.is_complete());
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

    /// The ticks handed out: `(tick ms, complete, missing partitions)`.
    fn ready(assembled: Result<Assembled, AssembleError>) -> Vec<(i64, bool, Vec<u32>)> {
        match assembled {
            Ok(Assembled::Ready(ticks)) => ticks
                .iter()
                .map(|t| (t.at.epoch_ms(), t.is_complete(), t.missing.clone()))
                .collect(),
            other => panic!("expected ticks to score, got {other:?}"),
        }
    }

    #[test]
    fn a_tick_missing_a_detectors_report_is_given_up_once_that_detector_reports_a_later_tick() {
        let mut assembler = TickAssembler::new(4);
        // The report of partitions 2-3 for the tick at 1,000 never arrives.
        assert_eq!(
            assembler.add(report(&[0, 1], 1_000)),
            Ok(Assembled::Waiting)
        );
        assert_eq!(
            assembler.add(report(&[0, 1], 2_000)),
            Ok(Assembled::Waiting),
            "the detector that reported the tick proves nothing about the missing one"
        );
        assert_eq!(assembler.pending_ticks(), 2);
        let Ok(Assembled::Ready(ticks)) = assembler.add(report(&[2, 3], 2_000)) else {
            panic!("partitions 2-3 moved past the tick at 1,000");
        };
        let handed: Vec<_> = ticks
            .iter()
            .map(|t| (t.at.epoch_ms(), t.is_complete()))
            .collect();
        assert_eq!(handed, [(1_000, false), (2_000, true)], "oldest first");
        assert_eq!(ticks[0].missing, [2, 3]);
        assert_eq!(ticks[0].missing_sources, [vec![2, 3]]);
        assert_eq!(ticks[0].reports.len(), 1, "scored with the report it has");
        assert_eq!(ticks[0].reports[0].partitions, [0, 1]);
        assert_eq!(assembler.pending_ticks(), 0);
        assert_eq!(
            assembler.last_scored().map(EventTime::epoch_ms),
            Some(2_000)
        );
        assert_eq!(
            assembler.add(report(&[2, 3], 1_000)),
            Ok(Assembled::Repeated),
            "the missing report published again after a restart comes too late and is dropped"
        );
    }

    #[test]
    fn a_later_tick_with_only_part_of_the_missing_partitions_does_not_give_an_earlier_one_up() {
        let mut assembler = TickAssembler::new(4);
        assembler.add(report(&[0], 1_000)).unwrap();
        assembler.add(report(&[1], 1_000)).unwrap();
        // Partitions 2 and 3 (two detectors) miss the tick at 1,000; only 2 has moved on.
        assert_eq!(assembler.add(report(&[2], 2_000)), Ok(Assembled::Waiting));
        assert_eq!(
            assembler
                .add(report(&[3], 1_000))
                .map(|a| ready(Ok(a)))
                .unwrap(),
            [(1_000, false, vec![2])],
            "3 arrived; 2 is known lost"
        );
        assert_eq!(
            ready(assembler.add(report(&[0, 1, 3], 2_000))),
            [(2_000, true, vec![])]
        );
    }

    #[test]
    fn reports_of_several_ticks_interleaved_across_detectors_still_assemble_in_tick_order() {
        let mut assembler = TickAssembler::new(4);
        // A fast detector (2-3) is a tick ahead of a slow one (0-1): nothing is lost.
        assert_eq!(
            assembler.add(report(&[2, 3], 1_000)),
            Ok(Assembled::Waiting)
        );
        assert_eq!(
            assembler.add(report(&[2, 3], 2_000)),
            Ok(Assembled::Waiting)
        );
        assert_eq!(
            assembler.add(report(&[2, 3], 1_000)),
            Ok(Assembled::Repeated),
            "a repeat of a waiting report"
        );
        assert_eq!(
            ready(assembler.add(report(&[0, 1], 1_000))),
            [(1_000, true, vec![])]
        );
        assert_eq!(
            assembler.add(report(&[0, 1], 1_000)),
            Ok(Assembled::Repeated),
            "a repeat of a scored tick"
        );
        assert_eq!(
            ready(assembler.add(report(&[0, 1], 2_000))),
            [(2_000, true, vec![])]
        );
        assert_eq!(assembler.pending_ticks(), 0);
    }

    #[test]
    fn a_complete_later_tick_gives_up_every_earlier_incomplete_one_in_tick_order() {
        let mut assembler = TickAssembler::new(4);
        // Three detectors (0-1, 2, 3); the one of partition 3 lost its reports of 1,000 and
        // 2,000, the one of partition 2 its report of 2,000.
        assembler.add(report(&[0, 1], 1_000)).unwrap();
        assembler.add(report(&[2], 1_000)).unwrap();
        assembler.add(report(&[0, 1], 2_000)).unwrap();
        assert_eq!(assembler.pending_ticks(), 2);
        assert_eq!(
            assembler.add(report(&[0, 1], 3_000)),
            Ok(Assembled::Waiting)
        );
        assert_eq!(assembler.add(report(&[2], 3_000)), Ok(Assembled::Waiting));
        assert_eq!(
            ready(assembler.add(report(&[3], 3_000))),
            [
                (1_000, false, vec![3]),
                (2_000, false, vec![2, 3]),
                (3_000, true, vec![])
            ]
        );
    }

    /// The assembler as the version before giving up incomplete ticks wrote it in a linker
    /// checkpoint (MessagePack, named fields).
    #[derive(Serialize)]
    struct AssemblerBeforeGivingUp {
        partition_count: u32,
        last_scored: Option<EventTime>,
        pending: BTreeMap<EventTime, Vec<TickReport>>,
    }

    #[test]
    fn an_assembler_checkpointed_before_ticks_could_be_given_up_restores_and_unblocks() {
        let old = AssemblerBeforeGivingUp {
            partition_count: 4,
            last_scored: Some(EventTime::from_epoch_ms(500).unwrap()),
            pending: BTreeMap::from([(
                EventTime::from_epoch_ms(1_000).unwrap(),
                vec![report(&[0, 1], 1_000)],
            )]),
        };
        let mut wire = Vec::new();
        old.serialize(&mut rmp_serde::Serializer::new(&mut wire).with_struct_map())
            .unwrap();
        let mut assembler: TickAssembler = rmp_serde::from_slice(&wire).unwrap();
        assert_eq!(assembler.pending_ticks(), 1);
        assert_eq!(assembler.add(report(&[0, 1], 500)), Ok(Assembled::Repeated));
        assert_eq!(
            assembler.add(report(&[0, 1], 2_000)),
            Ok(Assembled::Waiting)
        );
        assert_eq!(
            ready(assembler.add(report(&[2, 3], 2_000))),
            [(1_000, false, vec![2, 3]), (2_000, true, vec![])]
        );
    }

    #[test]
    fn a_detectors_lost_tick_report_delays_nothing_after_it_and_costs_only_its_own_evidence() {
        let events = crate::engine::tests::mixed_traffic(10);
        let config = EngineConfig::default();
        let sets = [vec![0, 1, 2, 3], vec![4, 5, 6, 7]];
        let (_, one_report) = one_node(&events, &config, 2);
        let run = |lose: Option<usize>| {
            let mut detectors: Vec<_> = sets
                .iter()
                .map(|set| (set.clone(), DetectorNode::new(&config, 1)))
                .collect();
            let mut assembler = TickAssembler::new(8);
            let mut scorer = Scorer::new(config.clone(), 1);
            let (mut ticks, mut given_up, mut published) = (0, Vec::new(), 0usize);
            let mut hand_on = |index: usize, tick: Option<Tick>, assembler: &mut TickAssembler| {
                let Some(tick) = tick else { return };
                if index == 1 {
                    published += 1;
                    // Detector 1's report of its third tick never reaches the scorer.
                    if lose == Some(published) {
                        return;
                    }
                }
                let report = TickReport::new(&sets[index], 8, tick);
                if let Assembled::Ready(ready) = assembler.add(report).unwrap() {
                    for tick in ready {
                        ticks += 1;
                        if !tick.is_complete() {
                            given_up.push((tick.missing.clone(), tick.missing_sources.clone()));
                        }
                        score_tick(&mut scorer, tick);
                    }
                }
            };
            for e in &events {
                let owner = partition_for(&e.account_id, 8);
                for (index, (set, detector)) in detectors.iter_mut().enumerate() {
                    let tick = if set.contains(&owner) {
                        detector.process(e).1
                    } else {
                        detector.advance(e.timestamp)
                    };
                    hand_on(index, tick, &mut assembler);
                }
            }
            for (index, (_, detector)) in detectors.iter_mut().enumerate() {
                hand_on(index, detector.finish(), &mut assembler);
            }
            let mut flagged: Vec<String> = scorer
                .findings()
                .filter(|f| f.flagged)
                .map(|f| f.account_id.clone())
                .collect();
            flagged.sort();
            (ticks, given_up, assembler.pending_ticks(), flagged)
        };
        let (all_ticks, none_given_up, pending, flagged) = run(None);
        assert!(none_given_up.is_empty());
        assert_eq!(pending, 0);
        let one_flagged: Vec<String> = one_report
            .accounts
            .iter()
            .filter(|a| a.flagged)
            .map(|a| a.account_id.clone())
            .collect();
        assert_eq!(flagged, one_flagged);
        let (ticks, given_up, pending, flagged) = run(Some(3));
        assert_eq!(
            ticks, all_ticks,
            "every tick is scored, the incomplete one included"
        );
        assert_eq!(given_up, [(vec![4, 5, 6, 7], vec![vec![4, 5, 6, 7]])]);
        assert_eq!(pending, 0, "nothing waits behind the lost report");
        assert_eq!(
            flagged, one_flagged,
            "an account keeps its evidence: its next report carries its whole state"
        );
    }

    #[test]
    fn a_report_without_the_fields_added_later_still_reads() {
        let old = r#"{"partitions":[0],"partition_count":1,"at":1764000000000}"#;
        let report: TickReport = serde_json::from_str(old).unwrap();
        assert_eq!(report.version, 1);
        assert!(report.shards.is_empty());
    }
}
