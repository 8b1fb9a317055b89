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

use std::collections::{BTreeMap, HashMap};

use crate::event::{AccountId, ApiEvent};
use crate::finding::{
    AccountFinding, Evidence, FindingUpdate, Measurement, Report, Severity, Signal,
};
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
}

/// Picks the shard an account lives on. FNV-1a: stable across runs and platforms.
pub fn shard_for(account: &AccountId, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in account.as_str().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

/// Per-account running state kept by a shard.
#[derive(Debug, Clone)]
struct AccountState {
    first_seen: EventTime,
    last_seen: EventTime,
    events: u64,
    completion_tokens: u64,
    /// Events per event-time hour over the last day, as (hour index, count).
    hourly: Vec<(i64, u32)>,
    samples: Vec<crate::finding::SamplePrompt>,
    /// Changed since the last tick (and queued in the shard's dirty list).
    dirty: bool,
}

impl AccountState {
    fn new(at: EventTime) -> Self {
        Self {
            dirty: false,
            first_seen: at,
            last_seen: at,
            events: 0,
            completion_tokens: 0,
            hourly: Vec::new(),
            samples: Vec::new(),
        }
    }

    fn observe(&mut self, event: &ApiEvent, config: &EngineConfig) {
        self.events += 1;
        self.last_seen = self.last_seen.max(event.timestamp);
        self.completion_tokens += u64::from(event.usage.completion_tokens.unwrap_or(0));
        let hour = event.timestamp.epoch_ms() / EventTime::HOUR;
        match self.hourly.last_mut() {
            Some((h, count)) if *h == hour => *count += 1,
            _ => self.hourly.push((hour, 1)),
        }
        self.hourly.retain(|(h, _)| *h > hour - 24);
        if self.samples.len() < config.sample_prompts {
            if let Some(prompt) = &event.prompt {
                self.samples.push(crate::finding::SamplePrompt {
                    text: prompt.chars().take(config.sample_prompt_chars).collect(),
                    hash: format!("{:016x}", fnv1a(prompt.as_bytes())),
                    at: event.timestamp,
                });
            }
        }
    }

    fn summary(&self, account_id: &AccountId, at: EventTime) -> AccountSummary {
        let cutoff = at.epoch_ms() / EventTime::HOUR - 24;
        AccountSummary {
            account_id: account_id.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            events: self.events,
            events_last_24h: self
                .hourly
                .iter()
                .filter(|(h, _)| *h > cutoff)
                .map(|(_, c)| u64::from(*c))
                .sum(),
            completion_tokens: self.completion_tokens,
            samples: self.samples.clone(),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What a shard tells the scorer about one changed account at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSummary {
    pub account_id: AccountId,
    pub first_seen: EventTime,
    pub last_seen: EventTime,
    pub events: u64,
    pub events_last_24h: u64,
    pub completion_tokens: u64,
    pub samples: Vec<crate::finding::SamplePrompt>,
}

/// A shard's answer to a tick.
#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    pub summaries: Vec<AccountSummary>,
    pub evicted: u64,
    pub tracked: usize,
}

/// Per-account state for the accounts routed to one shard.
#[derive(Debug)]
pub struct Shard {
    config: EngineConfig,
    max_accounts: usize,
    accounts: HashMap<AccountId, AccountState>,
    dirty: Vec<AccountId>,
}

impl Shard {
    pub fn new(config: EngineConfig, shard_count: usize) -> Self {
        let max_accounts = (config.max_tracked_accounts / shard_count.max(1)).max(1);
        Self {
            config,
            max_accounts,
            accounts: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    pub fn observe(&mut self, event: &ApiEvent) {
        let state = match self.accounts.get_mut(&event.account_id) {
            Some(state) => state,
            None => self
                .accounts
                .entry(event.account_id.clone())
                .or_insert_with(|| AccountState::new(event.timestamp)),
        };
        if !state.dirty {
            state.dirty = true;
            self.dirty.push(event.account_id.clone());
        }
        state.observe(event, &self.config);
    }

    /// Reports accounts that changed since the last tick and evicts idle ones.
    pub fn tick(&mut self, at: EventTime) -> ShardReport {
        let dirty = std::mem::take(&mut self.dirty);
        let summaries = dirty
            .iter()
            .filter_map(|id| {
                let state = self.accounts.get_mut(id)?;
                state.dirty = false;
                Some(state.summary(id, at))
            })
            .collect();
        let evicted = self.evict(at);
        ShardReport {
            summaries,
            evicted,
            tracked: self.accounts.len(),
        }
    }

    fn evict(&mut self, at: EventTime) -> u64 {
        let before = self.accounts.len();
        let idle_before = at.plus_ms(-self.config.idle_eviction_ms);
        self.accounts.retain(|_, s| s.last_seen >= idle_before);
        if self.accounts.len() > self.max_accounts {
            let mut by_age: Vec<(EventTime, AccountId)> = self
                .accounts
                .iter()
                .map(|(id, s)| (s.last_seen, id.clone()))
                .collect();
            by_age.sort();
            let excess = self.accounts.len() - self.max_accounts;
            for (_, id) in by_age.into_iter().take(excess) {
                self.accounts.remove(&id);
            }
        }
        (before - self.accounts.len()) as u64
    }

    pub fn tracked(&self) -> usize {
        self.accounts.len()
    }
}

/// Scores changed accounts once every shard has reported for a tick.
#[derive(Debug)]
pub struct Scorer {
    config: EngineConfig,
    pending: Vec<AccountSummary>,
    findings: BTreeMap<AccountId, AccountFinding>,
    tracked_by_shard: Vec<usize>,
    evicted_total: u64,
}

/// Requests in 24 hours at which the volume signal saturates.
/// (Placeholder population baseline until the detector suite replaces it.)
const VOLUME_SATURATION_PER_DAY: f64 = 2_000.0;

impl Scorer {
    pub fn new(config: EngineConfig, shard_count: usize) -> Self {
        Self {
            config,
            pending: Vec::new(),
            findings: BTreeMap::new(),
            tracked_by_shard: vec![0; shard_count.max(1)],
            evicted_total: 0,
        }
    }

    /// Takes one shard's report for the current tick.
    pub fn absorb(&mut self, shard: usize, report: ShardReport) {
        self.evicted_total += report.evicted;
        if let Some(slot) = self.tracked_by_shard.get_mut(shard) {
            *slot = report.tracked;
        }
        self.pending.extend(report.summaries);
    }

    /// Scores everything absorbed since the last tick and returns the findings that changed.
    pub fn finish_tick(&mut self, at: EventTime) -> Vec<FindingUpdate> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        let mut updates = Vec::new();
        for summary in pending {
            if let Some(update) = self.score_account(&summary, at) {
                updates.push(FindingUpdate::Account(update));
            }
        }
        updates
    }

    fn score_account(
        &mut self,
        summary: &AccountSummary,
        _at: EventTime,
    ) -> Option<AccountFinding> {
        let per_day = summary.events_last_24h as f64;
        let score = (per_day / VOLUME_SATURATION_PER_DAY).min(1.0);
        if score < 0.05 && !self.findings.contains_key(&summary.account_id) {
            return None;
        }
        let signal = Signal {
            detector: "volume".to_string(),
            score,
            evidence: Evidence {
                summary: format!("{per_day} requests in the last 24h"),
                measurements: vec![Measurement {
                    name: "requests".to_string(),
                    value: per_day,
                    threshold: Some(VOLUME_SATURATION_PER_DAY),
                    baseline: None,
                    window: Some("24h".to_string()),
                }],
            },
        };
        let flagged_now = score >= self.config.flag_threshold;
        let previous = self.findings.get(&summary.account_id);
        let was_flagged = previous.is_some_and(|f| f.flagged);
        let first_flagged_at = match previous.and_then(|f| f.first_flagged_at) {
            Some(at) => Some(at),
            None if flagged_now => Some(summary.last_seen),
            None => None,
        };
        let finding = AccountFinding {
            account_id: summary.account_id.to_string(),
            score,
            severity: Severity::from_score(score),
            flagged: flagged_now || was_flagged,
            cluster_id: None,
            first_flagged_at,
            first_seen: summary.first_seen,
            last_seen: summary.last_seen,
            events: summary.events,
            signals: vec![signal],
            samples: summary.samples.clone(),
        };
        let changed = previous.is_none_or(|old| {
            old.severity != finding.severity
                || old.flagged != finding.flagged
                || (old.score - finding.score).abs() >= 0.05
        });
        self.findings
            .insert(summary.account_id.clone(), finding.clone());
        changed.then_some(finding)
    }

    pub fn tracked_accounts(&self) -> usize {
        self.tracked_by_shard.iter().sum()
    }

    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    pub fn findings(&self) -> impl Iterator<Item = &AccountFinding> {
        self.findings.values()
    }
}

/// Counters the server exports as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub late_events: u64,
    pub tracked_accounts: usize,
    pub evicted_accounts: u64,
    pub watermark: Option<EventTime>,
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
        }
    }

    pub fn report(&self) -> Report {
        Report {
            events: self.events,
            late_events: self.late_events,
            accounts: self.scorer.findings().cloned().collect(),
            clusters: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ModelName;

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

    #[test]
    fn the_number_of_shards_does_not_change_the_findings() {
        let base = 1_764_000_000_000;
        let events: Vec<ApiEvent> = (0..30_000)
            .map(|i| event(&format!("acct-{}", i % 7), base + i * 1_000))
            .collect();
        let run = |shards| {
            let mut engine = Engine::new(EngineConfig::default(), shards);
            let mut updates = Vec::new();
            for e in &events {
                engine.process(e);
                updates.extend(engine.take_updates());
            }
            engine.finish();
            updates.extend(engine.take_updates());
            (updates, engine.report())
        };
        let (one_updates, one_report) = run(1);
        let (eight_updates, eight_report) = run(8);
        assert!(one_report.accounts.iter().any(|a| a.flagged));
        assert_eq!(one_updates, eight_updates);
        assert_eq!(one_report, eight_report);
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
