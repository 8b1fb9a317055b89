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
}

/// Event-time clock: watermark = newest timestamp seen minus the allowed lateness.
#[derive(Debug, Clone)]
pub struct Clock {
    tick_ms: i64,
    allowed_lateness_ms: i64,
    max_seen: Option<EventTime>,
    last_tick: Option<EventTime>,
}

impl Clock {
    pub fn new(config: &EngineConfig) -> Self {
        Self {
            tick_ms: config.tick_ms.max(1),
            allowed_lateness_ms: config.allowed_lateness_ms.max(0),
            max_seen: None,
            last_tick: None,
        }
    }

    pub fn watermark(&self) -> Option<EventTime> {
        self.max_seen.map(|t| t.plus_ms(-self.allowed_lateness_ms))
    }

    /// Admits an event and, when the watermark crossed a tick boundary, returns that tick.
    ///
    /// A jump over many boundaries yields only the newest one: empty ticks change nothing.
    pub fn admit(&mut self, timestamp: EventTime) -> (Admission, Option<EventTime>) {
        if let Some(watermark) = self.watermark() {
            if timestamp < watermark {
                return (Admission::Late, None);
            }
        }
        if self.max_seen.is_none_or(|seen| timestamp > seen) {
            self.max_seen = Some(timestamp);
        }
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

    /// The tick that closes the input: everything seen so far is scored.
    pub fn final_tick(&mut self) -> Option<EventTime> {
        let seen = self.max_seen?;
        let end = seen.plus_ms(1);
        if self.last_tick.is_some_and(|last| last >= end) {
            return None;
        }
        self.last_tick = Some(end);
        Some(end)
    }

    /// Restores a clock from a checkpoint.
    pub fn restore(&mut self, max_seen: Option<EventTime>, last_tick: Option<EventTime>) {
        self.max_seen = max_seen;
        self.last_tick = last_tick;
    }

    pub fn max_seen(&self) -> Option<EventTime> {
        self.max_seen
    }

    pub fn last_tick(&self) -> Option<EventTime> {
        self.last_tick
    }

    pub fn checkpoint(&self) -> ClockCheckpoint {
        ClockCheckpoint {
            max_seen: self.max_seen,
            last_tick: self.last_tick,
        }
    }

    /// A clock continuing from a checkpoint (the settings come from `config`).
    pub fn restored(config: &EngineConfig, checkpoint: &ClockCheckpoint) -> Self {
        let mut clock = Clock::new(config);
        clock.restore(checkpoint.max_seen, checkpoint.last_tick);
        clock
    }
}

/// The clock's state, serialisable for restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockCheckpoint {
    pub max_seen: Option<EventTime>,
    pub last_tick: Option<EventTime>,
}

/// Counters the server exports as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub late_events: u64,
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

/// Single-threaded composition of clock, shards and scorer, used by replay and tests.
#[derive(Debug)]
pub struct Engine {
    clock: Clock,
    shards: Vec<Shard>,
    scorer: Scorer,
    updates: Vec<FindingUpdate>,
    events: u64,
    late_events: u64,
}

impl Engine {
    pub fn new(config: EngineConfig, shard_count: usize) -> Self {
        let shard_count = shard_count.max(1);
        Self {
            clock: Clock::new(&config),
            shards: (0..shard_count)
                .map(|_| Shard::new(config.clone(), shard_count))
                .collect(),
            scorer: Scorer::new(config, shard_count),
            updates: Vec::new(),
            events: 0,
            late_events: 0,
        }
    }

    pub fn process(&mut self, event: &ApiEvent) -> Admission {
        let (admission, tick) = self.clock.admit(event.timestamp);
        if admission == Admission::Late {
            self.late_events += 1;
            return admission;
        }
        self.events += 1;
        // The tick closes the windows up to the watermark before this event is applied, exactly
        // as the threaded pipeline does (the tick message is queued ahead of the event).
        if let Some(at) = tick {
            self.run_tick(at);
        }
        let shard = shard_for(&event.account_id, self.shards.len());
        self.shards[shard].observe(event);
        admission
    }

    /// Closes the input: scores everything still pending.
    pub fn finish(&mut self) {
        if let Some(at) = self.clock.final_tick() {
            self.run_tick(at);
        }
    }

    fn run_tick(&mut self, at: EventTime) {
        for (index, shard) in self.shards.iter_mut().enumerate() {
            self.scorer.absorb(index, shard.tick(at));
        }
        self.updates.extend(self.scorer.finish_tick(at));
    }

    pub fn take_updates(&mut self) -> Vec<FindingUpdate> {
        std::mem::take(&mut self.updates)
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            events: self.events,
            late_events: self.late_events,
            tracked_accounts: self.shards.iter().map(Shard::tracked).sum(),
            evicted_accounts: self.scorer.evicted_total(),
            watermark: self.clock.watermark(),
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
            clock: self.clock.checkpoint(),
            shards: self.shards.iter().map(Shard::checkpoint).collect(),
            scorer: self.scorer.checkpoint(),
            events: self.events,
            late_events: self.late_events,
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
            clock: Clock::restored(&config, &checkpoint.clock),
            scorer: Scorer::restore(config, checkpoint.scorer),
            shards,
            updates: Vec::new(),
            events: checkpoint.events,
            late_events: checkpoint.late_events,
        }
    }

    pub fn report(&self) -> Report {
        Report {
            events: self.events,
            late_events: self.late_events,
            accounts: self.scorer.findings().cloned().collect(),
            clusters: self.scorer.cluster_findings().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
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
        engine.process(&event("a", base + EventTime::HOUR));
        assert_eq!(engine.process(&event("a", base)), Admission::Late);
        assert_eq!(
            engine.process(&event("a", base + EventTime::HOUR - EventTime::MINUTE)),
            Admission::Accepted
        );
        engine.finish();
        assert_eq!(engine.stats().late_events, 1);
        assert_eq!(engine.report().late_events, 1);
        assert_eq!(engine.stats().events, 2);
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
        let mut engine = Engine::new(EngineConfig::default(), shards);
        let mut updates = Vec::new();
        for e in events {
            engine.process(e);
            updates.extend(engine.take_updates());
        }
        engine.finish();
        updates.extend(engine.take_updates());
        (updates, engine.report())
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
                "distribution_harvest"
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
        assert_eq!(bulk.signals.len(), 9);
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
