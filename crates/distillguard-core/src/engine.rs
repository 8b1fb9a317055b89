//! The detection engine, split so that the server can run it across threads and the offline
//! replay in one, with the same result.
//!
//! - [`Clock`] turns event timestamps into a watermark and event-time ticks. One clock sees every
//!   event in arrival order (the dispatcher), so lateness never depends on thread timing.
//! - [`Shard`] keeps per-account state. An account always lives on the same shard, and its events
//!   arrive in order. On a tick it reports the accounts that changed.
//! - [`Scorer`] receives every shard's report for a tick and, once all have arrived, scores the
//!   changed accounts against the whole population. It sorts its input by account id, so the
//!   number of shards does not change the outcome.
//! - [`DetectorNode`] is clock and shards without the scorer: what a detector node that owns
//!   part of the partitions runs (`crate::partitioned` scores several of them together).
//! - [`Engine`] is the single-threaded composition used by `replay`, `eval` and the tests.
//!
//! Every piece checkpoints to a serde value ([`ClockCheckpoint`], [`ShardCheckpoint`],
//! [`ScorerCheckpoint`], [`EngineCheckpoint`]); a restored engine fed the rest of a stream gives
//! the same findings as one that never stopped.

use serde::{Deserialize, Serialize};

pub use crate::detect::combine::DetectorCount;
pub use crate::detect::DetectorConfig;
use crate::event::ApiEvent;
pub use crate::features::AccountSummary;
use crate::finding::{FindingUpdate, Report};
pub use crate::link::{
    LinkConfig, Linker, LinkerCheckpoint, LinkerHead, NodeRecord, PostingRecord,
};
pub use crate::scorer::{Scorer, ScorerCheckpoint};
pub use crate::shard::{shard_for, Shard, ShardCheckpoint, ShardReport};
use crate::time::EventTime;

/// Engine settings; defaults are documented in `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Event-time interval between scoring passes.
    pub tick_ms: i64,
    /// How far behind the newest event an event may arrive and still be counted in its window.
    pub allowed_lateness_ms: i64,
    /// An event further than this ahead of the clock is refused (not applied) unless
    /// `clock_corroboration` such events in a row agree that time moved on.
    pub max_clock_jump_ms: i64,
    /// Events that must agree before the clock starts or jumps ahead.
    pub clock_corroboration: usize,
    /// Events before this (Unix ms) are refused as late: no model API log is that old, and one
    /// such event must not pin the stream's start.
    pub earliest_event_ms: i64,
    /// Accounts with no event for this long (event time) are forgotten.
    pub idle_eviction_ms: i64,
    /// Upper bound on accounts held in memory across all shards.
    pub max_tracked_accounts: usize,
    /// Risk score at or above which a subject is flagged.
    pub flag_threshold: f64,
    /// Sample prompts kept per account as evidence (0 keeps none).
    pub sample_prompts: usize,
    /// Characters kept of each sample prompt.
    pub sample_prompt_chars: usize,
    /// Risk below which an account gets no finding at all (keeps the findings map small).
    pub report_min_score: f64,
    /// Findings keep the score and evidence of their worst moment (true) or follow the latest
    /// scoring (false, for tuning: the report then shows where every account ended).
    pub findings_keep_peak: bool,
    /// Detector settings (`docs/detectors.md`).
    pub detectors: DetectorConfig,
    /// Account linking and clusters (`docs/detectors.md`, "Clusters").
    pub linking: LinkConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            tick_ms: 5 * EventTime::MINUTE,
            allowed_lateness_ms: 5 * EventTime::MINUTE,
            max_clock_jump_ms: 6 * EventTime::HOUR,
            clock_corroboration: 3,
            // 2015-01-01T00:00:00Z
            earliest_event_ms: 1_420_070_400_000,
            idle_eviction_ms: 7 * EventTime::DAY,
            max_tracked_accounts: 1_000_000,
            flag_threshold: 0.7,
            sample_prompts: 5,
            sample_prompt_chars: 300,
            report_min_score: 0.3,
            findings_keep_peak: true,
            detectors: DetectorConfig::default(),
            linking: LinkConfig::default(),
        }
    }
}

/// Whether the clock let an event in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    /// Older than the watermark: counted, reported, not applied to any window.
    Late,
    /// Further ahead of the clock than `max_clock_jump_ms` and not (yet) corroborated by other
    /// events: counted, not applied. One such event (a clock set to 2199) cannot move time.
    Ahead,
}

/// Event-time clock. The frontier is the newest plausible event time; the watermark is the
/// frontier minus the allowed lateness.
///
/// No single event can move it far: an event more than `max_clock_jump_ms` ahead of the
/// frontier is refused as [`Admission::Ahead`] and kept only as evidence; the frontier jumps
/// forward once `clock_corroboration` such events in a row (no accepted event between them)
/// agree within `max_clock_jump_ms` (a real gap in traffic), to the earliest of them. Before the first frontier exists, the first
/// `clock_corroboration` events are taken and the frontier starts at their median, so a wrong
/// first event cannot pin it either. Everything is a pure function of the arrival order.
#[derive(Debug, Clone)]
pub struct Clock {
    tick_ms: i64,
    allowed_lateness_ms: i64,
    max_jump_ms: i64,
    corroboration: usize,
    earliest_ms: i64,
    max_seen: Option<EventTime>,
    last_tick: Option<EventTime>,
    /// Events taken before the frontier existed (at most `corroboration`).
    bootstrap: Vec<EventTime>,
    /// The most recent events refused as ahead (at most `corroboration`).
    suspects: Vec<EventTime>,
    /// Newest accepted event time, for the final tick.
    newest_accepted: Option<EventTime>,
    ahead_events: u64,
}

impl Clock {
    pub fn new(config: &EngineConfig) -> Self {
        Self {
            tick_ms: config.tick_ms.max(1),
            allowed_lateness_ms: config.allowed_lateness_ms.max(0),
            max_jump_ms: config.max_clock_jump_ms.max(1),
            corroboration: config.clock_corroboration.max(1),
            earliest_ms: config.earliest_event_ms,
            max_seen: None,
            last_tick: None,
            bootstrap: Vec::new(),
            suspects: Vec::new(),
            newest_accepted: None,
            ahead_events: 0,
        }
    }

    pub fn watermark(&self) -> Option<EventTime> {
        self.max_seen.map(|t| t.plus_ms(-self.allowed_lateness_ms))
    }

    /// Admits an event and, when the watermark crossed a tick boundary, returns that tick.
    ///
    /// A jump over many boundaries yields only the newest one: empty ticks change nothing.
    pub fn admit(&mut self, timestamp: EventTime) -> (Admission, Option<EventTime>) {
        if timestamp.epoch_ms() < self.earliest_ms {
            return (Admission::Late, None);
        }
        let Some(frontier) = self.max_seen else {
            return self.bootstrap(timestamp);
        };
        if timestamp < frontier.plus_ms(-self.allowed_lateness_ms) {
            return (Admission::Late, None);
        }
        if timestamp.epoch_ms() > frontier.epoch_ms().saturating_add(self.max_jump_ms) {
            self.suspects.push(timestamp);
            if self.suspects.len() > self.corroboration {
                self.suspects.remove(0);
            }
            let earliest = self.suspects.iter().min().copied();
            let latest = self.suspects.iter().max().copied();
            // Corroboration: enough suspects in a row that agree on the time.
            let corroborated = self.suspects.len() >= self.corroboration
                && match (earliest, latest) {
                    (Some(a), Some(b)) => b.epoch_ms() - a.epoch_ms() <= self.max_jump_ms,
                    _ => false,
                };
            match earliest {
                Some(earliest) if corroborated => {
                    // A real gap: enough recent events agree that time moved on.
                    self.suspects.clear();
                    self.max_seen = Some(earliest);
                }
                _ => {
                    self.ahead_events += 1;
                    return (Admission::Ahead, None);
                }
            }
            if timestamp.epoch_ms() > earliest.map_or(0, EventTime::epoch_ms) + self.max_jump_ms {
                self.ahead_events += 1;
                return (Admission::Ahead, self.due_tick());
            }
        }
        self.accept(timestamp);
        (Admission::Accepted, self.due_tick())
    }

    /// Admits the timestamp of an event another detector owns and returns the tick it closes:
    /// the same decision as [`Clock::admit`], so detectors that each own part of a stream and
    /// see all of its timestamps tick at the same positions as one node. Counted nowhere (the
    /// owner counts the event as ahead or late).
    pub fn advance(&mut self, timestamp: EventTime) -> Option<EventTime> {
        let ahead = self.ahead_events;
        let (_, tick) = self.admit(timestamp);
        self.ahead_events = ahead;
        tick
    }

    fn accept(&mut self, timestamp: EventTime) {
        // Suspects must come in a row: an accepted event in between shows time did not jump.
        self.suspects.clear();
        if self.max_seen.is_none_or(|seen| timestamp > seen) {
            self.max_seen = Some(timestamp);
        }
        if self.newest_accepted.is_none_or(|seen| timestamp > seen) {
            self.newest_accepted = Some(timestamp);
        }
    }

    /// Until `corroboration` events have arrived there is no frontier: they are all taken, and
    /// the frontier starts at their median.
    fn bootstrap(&mut self, timestamp: EventTime) -> (Admission, Option<EventTime>) {
        self.bootstrap.push(timestamp);
        if self.bootstrap.len() < self.corroboration {
            return (Admission::Accepted, None);
        }
        let mut seen = std::mem::take(&mut self.bootstrap);
        seen.sort_unstable();
        let median = seen[(seen.len() - 1) / 2];
        self.max_seen = Some(median);
        let plausible = median.plus_ms(self.max_jump_ms);
        self.newest_accepted = seen.iter().copied().filter(|t| *t <= plausible).max();
        (Admission::Accepted, self.due_tick())
    }

    fn due_tick(&mut self) -> Option<EventTime> {
        let watermark = self.watermark()?.epoch_ms();
        let boundary =
            EventTime::from_epoch_ms(watermark - watermark.rem_euclid(self.tick_ms)).ok()?;
        if self.last_tick.is_some_and(|last| boundary <= last) {
            return None;
        }
        self.last_tick = Some(boundary);
        Some(boundary)
    }

    /// The tick that closes the input: everything accepted so far is scored.
    pub fn final_tick(&mut self) -> Option<EventTime> {
        let newest = match (self.newest_accepted, self.bootstrap.iter().max()) {
            (Some(a), Some(b)) => a.max(*b),
            (a, b) => a.or(b.copied())?,
        };
        let end = newest.plus_ms(1);
        if self.last_tick.is_some_and(|last| last >= end) {
            return None;
        }
        self.last_tick = Some(end);
        Some(end)
    }

    /// The newest plausible event time (the watermark plus the allowed lateness).
    pub fn max_seen(&self) -> Option<EventTime> {
        self.max_seen
    }

    pub fn last_tick(&self) -> Option<EventTime> {
        self.last_tick
    }

    /// Events refused as too far ahead of the clock.
    pub fn ahead_events(&self) -> u64 {
        self.ahead_events
    }

    /// Forgets a frontier later than `limit` (a checkpoint written before this clock was
    /// robust can hold one set by a single far-future event); the clock starts over.
    pub fn forget_if_after(&mut self, limit: EventTime) -> bool {
        if self.max_seen.is_some_and(|seen| seen > limit) {
            self.max_seen = None;
            self.newest_accepted = None;
            self.last_tick = None;
            self.suspects.clear();
            return true;
        }
        false
    }

    pub fn checkpoint(&self) -> ClockCheckpoint {
        ClockCheckpoint {
            max_seen: self.max_seen,
            last_tick: self.last_tick,
            bootstrap: self.bootstrap.clone(),
            suspects: self.suspects.clone(),
            newest_accepted: self.newest_accepted,
            ahead_events: self.ahead_events,
        }
    }

    /// A clock continuing from a checkpoint (the settings come from `config`).
    pub fn restored(config: &EngineConfig, checkpoint: &ClockCheckpoint) -> Self {
        let mut clock = Clock::new(config);
        clock.max_seen = checkpoint.max_seen;
        clock.last_tick = checkpoint.last_tick;
        clock.bootstrap = checkpoint.bootstrap.clone();
        clock.suspects = checkpoint.suspects.clone();
        // Checkpoints from before `newest_accepted` existed: the frontier was the newest event.
        clock.newest_accepted = checkpoint.newest_accepted.or(checkpoint.max_seen);
        clock.ahead_events = checkpoint.ahead_events;
        clock
    }
}

/// The clock's state, serialisable for restarts. Fields after `last_tick` default, so
/// checkpoints written before them restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockCheckpoint {
    pub max_seen: Option<EventTime>,
    pub last_tick: Option<EventTime>,
    #[serde(default)]
    pub bootstrap: Vec<EventTime>,
    #[serde(default)]
    pub suspects: Vec<EventTime>,
    #[serde(default)]
    pub newest_accepted: Option<EventTime>,
    #[serde(default)]
    pub ahead_events: u64,
}

/// Counters the server exports as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub late_events: u64,
    /// Events refused as too far ahead of the event-time clock.
    pub ahead_events: u64,
    pub tracked_accounts: usize,
    pub evicted_accounts: u64,
    pub watermark: Option<EventTime>,
    /// Accounts the linker holds (bounded by the account cap, like detector state).
    pub linked_accounts: usize,
    /// Account findings the scorer holds (only for accounts in detector state).
    pub findings: usize,
}

/// The whole engine's state, serialisable for restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineCheckpoint {
    pub clock: ClockCheckpoint,
    pub shards: Vec<ShardCheckpoint>,
    pub scorer: ScorerCheckpoint,
    pub events: u64,
    pub late_events: u64,
}

/// The reports of every shard of one detector at one tick, in shard order.
#[derive(Debug, Clone)]
pub struct Tick {
    pub at: EventTime,
    pub reports: Vec<ShardReport>,
}

/// Clock and shards without the scorer: what a detector node runs. It admits every event of the
/// stream to its clock, so it ticks exactly where one node reading the whole stream ticks, but
/// keeps state only for the events it is given to own ([`DetectorNode::process`]); the others only
/// move its clock ([`DetectorNode::advance`]). Its ticks are then the owned share of one node's.
#[derive(Debug)]
pub struct DetectorNode {
    clock: Clock,
    shards: Vec<Shard>,
    events: u64,
    late_events: u64,
}

impl DetectorNode {
    pub fn new(config: &EngineConfig, shard_count: usize) -> Self {
        let shard_count = shard_count.max(1);
        Self {
            clock: Clock::new(config),
            shards: (0..shard_count)
                .map(|_| Shard::new(config.clone(), shard_count))
                .collect(),
            events: 0,
            late_events: 0,
        }
    }

    /// Admits an owned event; a tick it closes is taken before the event is applied, exactly as
    /// the threaded pipeline does (the tick message is queued ahead of the event).
    pub fn process(&mut self, event: &ApiEvent) -> (Admission, Option<Tick>) {
        let (admission, at) = self.clock.admit(event.timestamp);
        if admission == Admission::Late {
            self.late_events += 1;
            return (admission, None);
        }
        // A refused event can still close windows when it corroborated a jump.
        let tick = at.map(|at| self.tick(at));
        if admission == Admission::Accepted {
            self.events += 1;
            let shard = shard_for(&event.account_id, self.shards.len());
            self.shards[shard].observe(event);
        }
        (admission, tick)
    }

    /// Moves the clock with the timestamp of an event another detector owns: decided as
    /// [`Clock::admit`] would, counted nowhere.
    pub fn advance(&mut self, timestamp: EventTime) -> Option<Tick> {
        let at = self.clock.advance(timestamp)?;
        Some(self.tick(at))
    }

    /// Closes the input: reports everything still pending.
    pub fn finish(&mut self) -> Option<Tick> {
        let at = self.clock.final_tick()?;
        Some(self.tick(at))
    }

    fn tick(&mut self, at: EventTime) -> Tick {
        Tick {
            at,
            reports: self.shards.iter_mut().map(|shard| shard.tick(at)).collect(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Owned events applied.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Owned events refused as late.
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Owned events refused as too far ahead.
    pub fn ahead_events(&self) -> u64 {
        self.clock.ahead_events()
    }
}

/// Single-threaded composition of clock, shards and scorer, used by replay and tests.
#[derive(Debug)]
pub struct Engine {
    detector: DetectorNode,
    scorer: Scorer,
    updates: Vec<FindingUpdate>,
}

impl Engine {
    pub fn new(config: EngineConfig, shard_count: usize) -> Self {
        let detector = DetectorNode::new(&config, shard_count);
        Self {
            scorer: Scorer::new(config, detector.shard_count()),
            detector,
            updates: Vec::new(),
        }
    }

    pub fn process(&mut self, event: &ApiEvent) -> Admission {
        let (admission, tick) = self.detector.process(event);
        if let Some(tick) = tick {
            self.score(tick);
        }
        admission
    }

    /// An event of the stream that another detector owns: it moves this engine's clock (and so
    /// its ticks) as it would on one node, and nothing else. An engine fed its owned events with
    /// [`Engine::process`] and the rest with this judges its accounts exactly as a detector node
    /// that owns their partitions does.
    pub fn process_elsewhere(&mut self, timestamp: EventTime) {
        if let Some(tick) = self.detector.advance(timestamp) {
            self.score(tick);
        }
    }

    /// Closes the input: scores everything still pending.
    pub fn finish(&mut self) {
        if let Some(tick) = self.detector.finish() {
            self.score(tick);
        }
    }

    fn score(&mut self, tick: Tick) {
        for (index, report) in tick.reports.into_iter().enumerate() {
            self.scorer.absorb(index, report);
        }
        self.updates.extend(self.scorer.finish_tick(tick.at));
    }

    pub fn take_updates(&mut self) -> Vec<FindingUpdate> {
        std::mem::take(&mut self.updates)
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            events: self.detector.events,
            late_events: self.detector.late_events,
            ahead_events: self.detector.clock.ahead_events(),
            tracked_accounts: self.detector.shards.iter().map(Shard::tracked).sum(),
            evicted_accounts: self.scorer.evicted_total(),
            watermark: self.detector.clock.watermark(),
            linked_accounts: self.scorer.linked_accounts(),
            findings: self.scorer.finding_count(),
        }
    }

    /// Evaluations and fires per detector.
    pub fn detector_counts(&self) -> Vec<DetectorCount> {
        self.scorer.detector_counts()
    }

    /// Snapshot of the whole engine. Updates not yet taken with [`Engine::take_updates`] are not
    /// part of it: take them first.
    pub fn checkpoint(&self) -> EngineCheckpoint {
        EngineCheckpoint {
            clock: self.detector.clock.checkpoint(),
            shards: self.detector.shards.iter().map(Shard::checkpoint).collect(),
            scorer: self.scorer.checkpoint(),
            events: self.detector.events,
            late_events: self.detector.late_events,
        }
    }

    /// An engine continuing from a checkpoint, with the checkpoint's number of shards.
    pub fn restore(config: EngineConfig, checkpoint: EngineCheckpoint) -> Self {
        let shards: Vec<Shard> = checkpoint
            .shards
            .into_iter()
            .map(|s| Shard::restore(config.clone(), s))
            .collect();
        Self {
            detector: DetectorNode {
                clock: Clock::restored(&config, &checkpoint.clock),
                shards,
                events: checkpoint.events,
                late_events: checkpoint.late_events,
            },
            scorer: Scorer::restore(config, checkpoint.scorer),
            updates: Vec::new(),
        }
    }

    pub fn report(&self) -> Report {
        Report {
            events: self.detector.events,
            late_events: self.detector.late_events,
            ahead_events: self.detector.clock.ahead_events(),
            accounts: self.scorer.findings().cloned().collect(),
            clusters: self.scorer.cluster_findings().cloned().collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{AccountId, ModelName};

    fn event(account: &str, ms: i64) -> ApiEvent {
        ApiEvent::new(
            EventTime::from_epoch_ms(ms).unwrap(),
            AccountId::parse(account).unwrap(),
            ModelName::parse("m").unwrap(),
        )
    }

    #[test]
    fn events_older_than_the_watermark_are_counted_as_late_not_applied() {
        let mut engine = Engine::new(EngineConfig::default(), 2);
        let base = 1_764_000_000_000;
        // The clock starts once `clock_corroboration` (3) events agree.
        for account in ["a", "b", "c"] {
            engine.process(&event(account, base + EventTime::HOUR));
        }
        assert_eq!(engine.process(&event("a", base)), Admission::Late);
        assert_eq!(
            engine.process(&event("a", base + EventTime::HOUR - EventTime::MINUTE)),
            Admission::Accepted
        );
        engine.finish();
        assert_eq!(engine.stats().late_events, 1);
        assert_eq!(engine.report().late_events, 1);
        assert_eq!(engine.stats().events, 4);
    }

    const BASE: i64 = 1_764_000_000_000;

    fn at(ms: i64) -> EventTime {
        EventTime::from_epoch_ms(ms).unwrap()
    }

    /// A clock fed one event a minute from `from` for `minutes`.
    fn steady(clock: &mut Clock, from: i64, minutes: i64) {
        for i in 0..minutes {
            clock.admit(at(from + i * EventTime::MINUTE));
        }
    }

    #[test]
    fn one_far_future_event_moves_neither_the_watermark_nor_later_lateness() {
        let mut clock = Clock::new(&EngineConfig::default());
        steady(&mut clock, BASE, 60);
        let before = clock.watermark();
        let year_2199 = 7_258_118_400_000;
        assert_eq!(clock.admit(at(year_2199)).0, Admission::Ahead);
        assert_eq!(
            clock.admit(at(BASE + EventTime::DAY)).0,
            Admission::Ahead,
            "a day ahead is refused too"
        );
        assert_eq!(clock.watermark(), before);
        assert_eq!(
            clock.admit(at(BASE + 60 * EventTime::MINUTE)).0,
            Admission::Accepted
        );
        assert_eq!(clock.ahead_events(), 2);
        assert!(clock.final_tick().unwrap() < at(BASE + 2 * EventTime::HOUR));
    }

    #[test]
    fn a_real_gap_in_traffic_moves_the_clock_once_events_in_a_row_agree() {
        let mut clock = Clock::new(&EngineConfig::default());
        steady(&mut clock, BASE, 60);
        let morning = BASE + 10 * EventTime::HOUR;
        assert_eq!(clock.admit(at(morning)).0, Admission::Ahead);
        assert_eq!(clock.admit(at(morning + 1_000)).0, Admission::Ahead);
        let (admission, tick) = clock.admit(at(morning + 2_000));
        assert_eq!(
            admission,
            Admission::Accepted,
            "the third agrees: time moved on"
        );
        assert!(tick.is_some());
        assert_eq!(clock.max_seen(), Some(at(morning + 2_000)));
        assert_eq!(clock.admit(at(morning + 3_000)).0, Admission::Accepted);
    }

    #[test]
    fn far_future_events_scattered_among_normal_traffic_never_corroborate() {
        let mut clock = Clock::new(&EngineConfig::default());
        for i in 0..300 {
            let t = BASE + i * 10_000;
            clock.admit(at(t));
            if i % 50 == 25 {
                assert_eq!(clock.admit(at(t + 30 * EventTime::DAY)).0, Admission::Ahead);
            }
        }
        assert_eq!(clock.max_seen(), Some(at(BASE + 299 * 10_000)));
        // Suspects in a row that disagree with each other do not move it either.
        for days in [40, 80, 120] {
            assert_eq!(
                clock.admit(at(BASE + days * EventTime::DAY)).0,
                Admission::Ahead
            );
        }
        assert_eq!(clock.max_seen(), Some(at(BASE + 299 * 10_000)));
    }

    #[test]
    fn a_wrong_first_event_does_not_pin_the_clock_and_ancient_events_are_late() {
        let mut clock = Clock::new(&EngineConfig::default());
        let year_2199 = 7_258_118_400_000;
        clock.admit(at(year_2199));
        clock.admit(at(BASE));
        clock.admit(at(BASE + 1_000));
        assert_eq!(
            clock.max_seen(),
            Some(at(BASE + 1_000)),
            "the median of the first three"
        );
        assert_eq!(clock.admit(at(BASE + 2_000)).0, Admission::Accepted);
        assert_eq!(
            clock.admit(at(0)).0,
            Admission::Late,
            "1970 is never plausible"
        );
        let mut fresh = Clock::new(&EngineConfig::default());
        assert_eq!(fresh.admit(at(1_000)).0, Admission::Late);
    }

    #[test]
    fn a_restored_clock_decides_like_the_one_that_never_stopped() {
        let config = EngineConfig::default();
        let mut unbroken = Clock::new(&config);
        steady(&mut unbroken, BASE, 30);
        let far = BASE + 9 * EventTime::HOUR;
        unbroken.admit(at(far));
        unbroken.admit(at(far + 1));
        let mut restored = Clock::restored(&config, &unbroken.checkpoint());
        assert_eq!(restored.admit(at(far + 2)), unbroken.admit(at(far + 2)));
        assert_eq!(restored.checkpoint(), unbroken.checkpoint());
        // A checkpoint from before the robust clock: only the first two fields.
        let old: ClockCheckpoint =
            serde_json::from_str(&format!(r#"{{"max_seen":{BASE},"last_tick":null}}"#)).unwrap();
        assert_eq!(
            Clock::restored(&config, &old).final_tick(),
            Some(at(BASE + 1))
        );
    }

    #[test]
    fn a_poisoned_frontier_from_an_old_checkpoint_can_be_forgotten() {
        let config = EngineConfig::default();
        let mut clock = Clock::restored(
            &config,
            &ClockCheckpoint {
                max_seen: Some(at(7_258_118_400_000)),
                last_tick: None,
                bootstrap: vec![],
                suspects: vec![],
                newest_accepted: None,
                ahead_events: 0,
            },
        );
        assert!(clock.forget_if_after(at(BASE)));
        steady(&mut clock, BASE, 10);
        assert_eq!(clock.max_seen(), Some(at(BASE + 9 * EventTime::MINUTE)));
    }

    /// Mixed traffic over `hours`: two harvesters (diverse one-shot prompts, one of them from
    /// the start at bulk rate), chat users who re-ask and follow up, and a templated app.
    pub(crate) fn mixed_traffic(hours: i64) -> Vec<ApiEvent> {
        use crate::detect::testing::{diverse_prompt, word};
        let base = 1_764_000_000_000;
        let mut events = Vec::new();
        let mut t = 0i64;
        let mut i = 0usize;
        while t < hours * EventTime::HOUR {
            let (account, prompt, messages) = match i % 10 {
                0..=2 => ("harvest-bulk", diverse_prompt(i), 1),
                3 if t > hours * EventTime::HOUR / 2 => (
                    "harvest-late",
                    format!("{} Think step by step.", diverse_prompt(i + 1_000_000)),
                    1,
                ),
                4..=6 => (
                    "app",
                    format!("Summarise ticket {}: the {} broke", i, word(i % 7)),
                    1,
                ),
                _ => {
                    let user = format!("chat-{}", i % 5);
                    let prompt = format!("{} again", diverse_prompt(i / 40));
                    let turns = if i.is_multiple_of(3) { 1 } else { 4 };
                    events.push(chat_event(&user, base + t, &prompt, turns));
                    t += 1_500 + (i as i64 * 7_919) % 2_000;
                    i += 1;
                    continue;
                }
            };
            events.push(chat_event(account, base + t, &prompt, messages));
            t += 1_500 + (i as i64 * 7_919) % 2_000;
            i += 1;
        }
        events
    }

    fn chat_event(account: &str, ms: i64, prompt: &str, messages: u32) -> ApiEvent {
        let mut e = event(account, ms);
        e.prompt = Some(prompt.to_owned());
        e.messages = Some(messages);
        e.usage.prompt_tokens = Some(30);
        e.usage.completion_tokens = Some(250);
        e
    }

    fn run(events: &[ApiEvent], shards: usize) -> (Vec<FindingUpdate>, Report) {
        crate::partitioned::tests::one_node(events, &EngineConfig::default(), shards)
    }

    #[test]
    fn the_number_of_shards_does_not_change_the_findings() {
        let events = mixed_traffic(10);
        let (one_updates, one_report) = run(&events, 1);
        let (eight_updates, eight_report) = run(&events, 8);
        let flagged: Vec<&str> = one_report
            .accounts
            .iter()
            .filter(|a| a.flagged)
            .map(|a| a.account_id.as_str())
            .collect();
        assert_eq!(flagged, ["harvest-bulk", "harvest-late"]);
        assert_eq!(one_updates, eight_updates);
        assert_eq!(one_report, eight_report);
    }

    #[test]
    fn a_restored_engine_gives_the_same_findings_as_one_that_never_stopped() {
        let events = mixed_traffic(10);
        let (updates, report) = run(&events, 3);
        let config = EngineConfig::default();
        let mut engine = Engine::new(config.clone(), 3);
        let mut restored_updates = Vec::new();
        let cut = events.len() * 2 / 3;
        for e in &events[..cut] {
            engine.process(e);
            restored_updates.extend(engine.take_updates());
        }
        let json = serde_json::to_string(&engine.checkpoint()).unwrap();
        drop(engine);
        let checkpoint: EngineCheckpoint = serde_json::from_str(&json).unwrap();
        let mut engine = Engine::restore(config, checkpoint);
        for e in &events[cut..] {
            engine.process(e);
            restored_updates.extend(engine.take_updates());
        }
        engine.finish();
        restored_updates.extend(engine.take_updates());
        assert!(report.accounts.iter().any(|a| a.flagged));
        assert_eq!(restored_updates, updates);
        assert_eq!(engine.report(), report);
    }

    #[test]
    fn detector_counts_cover_every_detector_and_count_fires() {
        let events = mixed_traffic(4);
        let mut engine = Engine::new(EngineConfig::default(), 2);
        for e in &events {
            engine.process(e);
        }
        engine.finish();
        let counts = engine.detector_counts();
        let names: Vec<&str> = counts.iter().map(|c| c.detector).collect();
        assert_eq!(
            names,
            [
                "volume",
                "automation",
                "coverage",
                "templating",
                "elicitation",
                "model_pivot",
                "session_coverage",
                "distribution_harvest",
                "fresh_start"
            ]
        );
        assert!(counts
            .iter()
            .all(|c| c.evaluations > 0 && c.fires <= c.evaluations));
        assert!(
            counts
                .iter()
                .find(|c| c.detector == "coverage")
                .unwrap()
                .fires
                > 0
        );
    }

    #[test]
    fn a_flagged_finding_carries_evidence_and_hashed_samples() {
        let events = mixed_traffic(3);
        let (updates, report) = run(&events, 1);
        let bulk = report
            .accounts
            .iter()
            .find(|a| a.account_id == "harvest-bulk")
            .unwrap();
        assert!(bulk.flagged);
        assert!(bulk.score >= EngineConfig::default().flag_threshold);
        assert!(bulk.first_flagged_at.unwrap() <= bulk.first_seen.plus_ms(EventTime::HOUR));
        assert_eq!(bulk.signals[0].detector, "combined");
        assert_eq!(bulk.signals.len(), 10);
        assert!(bulk.signals.iter().all(|s| !s.evidence.summary.is_empty()));
        assert_eq!(bulk.samples.len(), 5);
        for sample in &bulk.samples {
            assert_eq!(sample.hash.len(), 64);
            assert!(sample.text.chars().count() <= 300);
        }
        // One open finding per subject: its updates only ever raise the score.
        let scores: Vec<f64> = updates
            .iter()
            .filter_map(|u| match u {
                FindingUpdate::Account(a) if a.account_id == "harvest-bulk" => Some(a.score),
                _ => None,
            })
            .collect();
        assert!(scores.windows(2).all(|w| w[1] >= w[0]));
        assert!(scores.len() < 10, "{scores:?}");
    }

    #[test]
    fn above_the_account_cap_the_least_recently_seen_are_evicted_and_counted() {
        let config = EngineConfig {
            max_tracked_accounts: 3,
            ..EngineConfig::default()
        };
        let mut shard = Shard::new(config, 1);
        let base = 1_764_000_000_000;
        for (i, name) in ["e", "a", "d", "b", "c"].iter().enumerate() {
            shard.observe(&event(name, base + i as i64 * 1_000));
        }
        let report = shard.tick(EventTime::from_epoch_ms(base + 10_000).unwrap());
        assert_eq!(report.summaries.len(), 5);
        assert_eq!((report.evicted, report.tracked), (2, 3));
        let kept: Vec<AccountId> = shard
            .checkpoint()
            .accounts
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let names: Vec<&str> = kept.iter().map(AccountId::as_str).collect();
        assert_eq!(names, ["b", "c", "d"]);
    }

    #[test]
    fn a_finding_is_forgotten_with_its_account_so_findings_stay_within_the_account_cap() {
        let config = EngineConfig {
            idle_eviction_ms: 2 * EventTime::HOUR,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, 2);
        let events = mixed_traffic(3);
        for e in &events {
            engine.process(e);
        }
        let last = events.last().unwrap().timestamp.epoch_ms();
        engine.process(&event("a", last + EventTime::MINUTE));
        let findings = engine.stats().findings;
        assert!(
            engine
                .report()
                .accounts
                .iter()
                .any(|a| a.account_id == "harvest-bulk"),
            "the harvester has a finding while it is tracked"
        );
        // Everyone but "late" goes idle past the eviction age.
        engine.process(&event("late", last + 5 * EventTime::HOUR));
        engine.process(&event(
            "late",
            last + 5 * EventTime::HOUR + 10 * EventTime::MINUTE,
        ));
        assert!(findings > 0);
        assert_eq!(engine.stats().findings, 0);
        assert!(engine.report().accounts.is_empty());
    }

    #[test]
    fn a_flood_of_new_accounts_within_the_hour_keeps_the_linker_at_the_account_cap() {
        let config = EngineConfig {
            max_tracked_accounts: 50,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, 2);
        let base = 1_764_000_000_000;
        // 2,000 accounts in 40 minutes of event time: eight ticks, less than an hour.
        for i in 0..2_000i64 {
            engine.process(&event(&format!("flood-{i}"), base + i * 1_200));
        }
        engine.process(&event("last", base + 2_000 * 1_200 + 6 * EventTime::MINUTE));
        let stats = engine.stats();
        // The cap applies at each tick; "last" arrived after the last one.
        assert!(stats.tracked_accounts <= 51, "{stats:?}");
        assert!(stats.linked_accounts <= 50, "{stats:?}");
    }

    #[test]
    fn idle_accounts_are_evicted_by_event_time() {
        let config = EngineConfig {
            idle_eviction_ms: EventTime::HOUR,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, 1);
        let base = 1_764_000_000_000;
        engine.process(&event("old", base));
        engine.process(&event("new", base + 3 * EventTime::HOUR));
        engine.process(&event(
            "new",
            base + 3 * EventTime::HOUR + 10 * EventTime::MINUTE,
        ));
        assert_eq!(engine.stats().tracked_accounts, 1);
        assert_eq!(engine.stats().evicted_accounts, 1);
    }
}
