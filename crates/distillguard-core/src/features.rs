//! Per-account state, updated per event, and the summary a shard hands to the scorer at a tick.
//!
//! Budget: at most 4 KiB per account at steady state, evidence samples aside (measured by the
//! `state_size` bench and `steady_state_account_stays_within_the_memory_budget` below). Nothing
//! here grows with the number of events: every collection is a fixed array or a capped list.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::EngineConfig;
use crate::event::{AccountId, ApiEvent, ModelName};
use crate::finding::SamplePrompt;
use crate::sketch::{fast_hash, DistinctCounter, FrequentItems, LinearCounter};
use crate::text::{demands_reasoning, prompt_features, FrameWords, PromptFeatures, SIGNATURE_BINS};
use crate::time::EventTime;

const HOURS: usize = 24;
/// Prompts remembered for exact and edited re-send detection.
const RECENT_PROMPTS: usize = 8;
/// Models tracked per account; a fifth replaces the least recently used.
const MODEL_SLOTS: usize = 4;
/// Completed days of "longest quiet gap" kept.
const QUIET_DAYS: usize = 7;
/// Inter-arrival gaps longer than this are breaks between sessions, not timing within one.
const SESSION_GAP_MS: i64 = 30 * EventTime::MINUTE;
/// Half-life of the per-model recent traffic counters.
pub const MODEL_HALF_LIFE_MS: f64 = 3.0 * EventTime::HOUR as f64;
/// Subject words per vocabulary window: bounded so that the distinct counter never saturates
/// and a long-lived account is judged on its recent language, not its lifetime.
const VOCABULARY_WINDOW_WORDS: u64 = 4_000;
/// How much Herdan's C falls per e-fold of text length (see `Vocabulary::current`).
const RICHNESS_DRIFT_PER_E_FOLD: f64 = 0.05;
/// Below this many subject words richness is not measured.
pub const MIN_VOCABULARY_WORDS: u64 = 60;

/// How many different subject words an account uses for how many it sends (topic spread).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Vocabulary {
    words: u64,
    distinct: LinearCounter<32>,
    previous: Option<f64>,
}

impl Vocabulary {
    fn insert(&mut self, word: u32) {
        if self.words >= VOCABULARY_WINDOW_WORDS {
            self.previous = self.current();
            self.words = 0;
            self.distinct = LinearCounter::default();
        }
        self.words += 1;
        self.distinct.insert(crate::sketch::mix64(u64::from(word)));
    }

    /// Herdan's C of the current window, length-corrected to a full window: C drifts down as a
    /// text grows (by about 0.05 per e-fold of words, in the simulator's rich and narrow sources
    /// alike), so a young window is compared as if it had reached `VOCABULARY_WINDOW_WORDS`.
    fn current(&self) -> Option<f64> {
        if self.words < MIN_VOCABULARY_WORDS {
            return None;
        }
        let words = self.words as f64;
        let distinct = self.distinct.estimate().max(1.0);
        let drift = RICHNESS_DRIFT_PER_E_FOLD * (VOCABULARY_WINDOW_WORDS as f64 / words).ln();
        Some(distinct.ln() / words.ln() - drift)
    }

    /// The current window once it is a quarter full, the previous full window before that.
    fn richness(&self) -> Option<f64> {
        match (self.current(), self.previous) {
            (Some(c), _)
                if self.words >= VOCABULARY_WINDOW_WORDS / 4 || self.previous.is_none() =>
            {
                Some(c)
            }
            (_, Some(p)) => Some(p),
            (c, None) => c,
        }
    }
}

/// Estimated bigram Jaccard at which a prompt counts as an edited re-send of a recent one.
const EDIT_SIMILARITY: f64 = 0.8;
/// One skeleton end covering this share of prompts makes the account "templated" ...
const TEMPLATE_SHARE: f64 = 0.5;
/// ... once it has sent this many prompts.
const TEMPLATE_MIN_PROMPTS: u64 = 10;
/// `max_tokens` at or above this counts as a request for a long output.
pub const LARGE_MAX_TOKENS: u32 = 4_096;
/// Characters of the user agent kept for analysts and the linker.
const USER_AGENT_CHARS: usize = 120;

/// Events and completion tokens per event-time hour over the last 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct HourRing {
    hours: [i64; HOURS],
    events: [u32; HOURS],
    completion_tokens: [u32; HOURS],
}

impl HourRing {
    fn add(&mut self, hour: i64, completion_tokens: u32) {
        let slot = hour.rem_euclid(HOURS as i64) as usize;
        if self.hours[slot] != hour {
            // An older (or, for a late event, newer) hour: only replace an older one.
            if self.hours[slot] > hour && self.events[slot] > 0 {
                return;
            }
            self.hours[slot] = hour;
            self.events[slot] = 0;
            self.completion_tokens[slot] = 0;
        }
        self.events[slot] = self.events[slot].saturating_add(1);
        self.completion_tokens[slot] =
            self.completion_tokens[slot].saturating_add(completion_tokens);
    }

    /// Events per hour for the 24 hours ending with `hour` (oldest first).
    fn vector(&self, hour: i64) -> [u32; HOURS] {
        let mut out = [0; HOURS];
        for (i, h) in ((hour - HOURS as i64 + 1)..=hour).enumerate() {
            let slot = h.rem_euclid(HOURS as i64) as usize;
            if self.hours[slot] == h {
                out[i] = self.events[slot];
            }
        }
        out
    }

    fn sum(&self, from_hour: i64, to_hour: i64) -> (u64, u64) {
        let mut events = 0u64;
        let mut tokens = 0u64;
        for slot in 0..HOURS {
            let h = self.hours[slot];
            if h >= from_hour && h <= to_hour {
                events += u64::from(self.events[slot]);
                tokens += u64::from(self.completion_tokens[slot]);
            }
        }
        (events, tokens)
    }
}

/// Longest gap between consecutive events per UTC day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct QuietGaps {
    day: i64,
    longest_today_ms: i64,
    /// Longest gap of each recently completed day, in minutes (oldest first).
    completed: Vec<u16>,
}

impl QuietGaps {
    fn observe(&mut self, previous: EventTime, now: EventTime, first_day: i64) {
        let day = now.day_index();
        let gap = (now.epoch_ms() - previous.epoch_ms()).max(0);
        if day > self.day {
            // Close the day of the previous event (a partial first day says nothing) and count
            // wholly silent days in between as a 24-hour gap.
            let end_of_day = (self.day + 1) * EventTime::DAY;
            let closing = self.longest_today_ms.max(end_of_day - previous.epoch_ms());
            if self.day > first_day {
                self.push(closing);
            }
            for _ in (self.day + 1)..day.min(self.day + 1 + QUIET_DAYS as i64) {
                self.push(EventTime::DAY);
            }
            self.day = day;
            self.longest_today_ms = now.epoch_ms() - day * EventTime::DAY;
        }
        self.longest_today_ms = self.longest_today_ms.max(gap.min(EventTime::DAY));
    }

    fn push(&mut self, gap_ms: i64) {
        if self.completed.len() == QUIET_DAYS {
            self.completed.remove(0);
        }
        self.completed
            .push((gap_ms / EventTime::MINUTE).clamp(0, u16::MAX as i64) as u16);
    }

    /// Median over completed days of the longest quiet gap, in hours.
    fn median_hours(&self) -> Option<f64> {
        if self.completed.is_empty() {
            return None;
        }
        let mut days = self.completed.clone();
        days.sort_unstable();
        Some(f64::from(days[days.len() / 2]) / 60.0)
    }
}

/// Welford running mean and variance of within-session inter-arrival gaps (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct GapStats {
    count: u64,
    mean: f64,
    m2: f64,
}

impl GapStats {
    fn observe(&mut self, gap_ms: i64) {
        if !(0..=SESSION_GAP_MS).contains(&gap_ms) {
            return;
        }
        let x = gap_ms as f64 / 1_000.0;
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Coefficient of variation (0 = a metronome, about 1 = random arrivals).
    fn cv(&self) -> Option<f64> {
        if self.count < 2 || self.mean <= 0.0 {
            return None;
        }
        let variance = self.m2 / (self.count - 1) as f64;
        Some(variance.sqrt() / self.mean)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RecentPrompt {
    fingerprint: u64,
    signature: [u16; SIGNATURE_BINS],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ModelSlot {
    model: ModelName,
    first_used: EventTime,
    events: u64,
    recent: f64,
    recent_at: i64,
}

impl ModelSlot {
    fn decayed(&self, at_ms: i64) -> f64 {
        let elapsed = (at_ms - self.recent_at).max(0) as f64;
        self.recent * (-elapsed / MODEL_HALF_LIFE_MS).exp2()
    }
}

/// Evidence samples shared between the account state and its summaries: a summary is made for
/// every changed account at every tick, and copying five 300-character prompts each time would
/// cost more than the scoring. Copy-on-write on the rare sample update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedSamples(Arc<Vec<SamplePrompt>>);

impl std::ops::Deref for SharedSamples {
    type Target = [SamplePrompt];

    fn deref(&self) -> &[SamplePrompt] {
        &self.0
    }
}

impl SharedSamples {
    pub fn to_vec(&self) -> Vec<SamplePrompt> {
        self.0.as_ref().clone()
    }
}

impl Serialize for SharedSamples {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedSamples {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self(Arc::new(Vec::deserialize(deserializer)?)))
    }
}

/// Everything kept about one account between events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountState {
    first_seen: EventTime,
    last_seen: EventTime,
    events: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    reasoning_tokens: u64,
    completion_known: u64,
    hourly: HourRing,
    hour_of_day: [u32; HOURS],
    gaps: GapStats,
    quiet: QuietGaps,
    prompts: u64,
    distinct_prompts: DistinctCounter,
    vocabulary: Vocabulary,
    frame: FrameWords,
    prefixes: FrequentItems<u64, 6>,
    suffixes: FrequentItems<u64, 6>,
    recent: Vec<RecentPrompt>,
    recent_next: u8,
    exact_repeats: u64,
    near_repeats: u64,
    turns_known: u64,
    single_turn: u64,
    reasoning_prompts: u64,
    reasoning_system: u64,
    system_cache: Option<(u64, bool)>,
    system_prompts: FrequentItems<u64, 3>,
    logprobs: u64,
    multi_sample: u64,
    large_max_tokens: u64,
    temperature_zero: u64,
    models: Vec<ModelSlot>,
    ips: FrequentItems<IpAddr, 4>,
    ip_distinct: LinearCounter<4>,
    user_agents: FrequentItems<u64, 3>,
    user_agent_distinct: LinearCounter<1>,
    user_agent: Option<Box<str>>,
    end_users: LinearCounter<4>,
    end_user_events: u64,
    payment_fingerprint: Option<Box<str>>,
    account_created_at: Option<EventTime>,
    /// Fingerprints of the prompts in `samples`, in the same order.
    sample_fingerprints: Vec<u64>,
    samples: SharedSamples,
    /// Population histogram bucket per metric this account currently sits in (see `population`).
    pub(crate) population_buckets: [u8; crate::population::METRICS],
    /// Changed since the last tick (and queued in the shard's dirty list).
    pub(crate) dirty: bool,
}

impl AccountState {
    pub fn new(at: EventTime) -> Self {
        Self {
            first_seen: at,
            last_seen: at,
            events: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            reasoning_tokens: 0,
            completion_known: 0,
            hourly: HourRing::default(),
            hour_of_day: [0; HOURS],
            gaps: GapStats::default(),
            quiet: QuietGaps {
                day: at.day_index(),
                longest_today_ms: 0,
                completed: Vec::new(),
            },
            prompts: 0,
            distinct_prompts: DistinctCounter::new(),
            vocabulary: Vocabulary::default(),
            frame: FrameWords::default(),
            prefixes: FrequentItems::default(),
            suffixes: FrequentItems::default(),
            recent: Vec::new(),
            recent_next: 0,
            exact_repeats: 0,
            near_repeats: 0,
            turns_known: 0,
            single_turn: 0,
            reasoning_prompts: 0,
            reasoning_system: 0,
            system_cache: None,
            system_prompts: FrequentItems::default(),
            logprobs: 0,
            multi_sample: 0,
            large_max_tokens: 0,
            temperature_zero: 0,
            models: Vec::new(),
            ips: FrequentItems::default(),
            ip_distinct: LinearCounter::default(),
            user_agents: FrequentItems::default(),
            user_agent_distinct: LinearCounter::default(),
            user_agent: None,
            end_users: LinearCounter::default(),
            end_user_events: 0,
            payment_fingerprint: None,
            account_created_at: None,
            sample_fingerprints: Vec::new(),
            samples: SharedSamples::default(),
            population_buckets: [crate::population::NO_BUCKET; crate::population::METRICS],
            dirty: false,
        }
    }

    pub fn last_seen(&self) -> EventTime {
        self.last_seen
    }

    pub fn observe(&mut self, event: &ApiEvent, config: &EngineConfig) {
        let at = event.timestamp;
        if self.events > 0 && at > self.last_seen {
            let gap = at.epoch_ms() - self.last_seen.epoch_ms();
            self.gaps.observe(gap);
            self.quiet
                .observe(self.last_seen, at, self.first_seen.day_index());
        }
        self.events += 1;
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);

        let usage = &event.usage;
        self.prompt_tokens += u64::from(usage.prompt_tokens.unwrap_or(0));
        let completion = usage.completion_tokens.unwrap_or(0);
        if usage.completion_tokens.is_some() {
            self.completion_known += 1;
        }
        self.completion_tokens += u64::from(completion);
        self.reasoning_tokens += u64::from(usage.reasoning_tokens.unwrap_or(0));
        self.hourly.add(at.epoch_ms() / EventTime::HOUR, completion);
        self.hour_of_day[at.hour_of_day() as usize] += 1;

        let params = &event.params;
        if params.logprobs == Some(true) || params.top_logprobs.is_some_and(|k| k > 0) {
            self.logprobs += 1;
        }
        if params.n.is_some_and(|n| n > 1) {
            self.multi_sample += 1;
        }
        if params.max_tokens.is_some_and(|m| m >= LARGE_MAX_TOKENS) {
            self.large_max_tokens += 1;
        }
        if params.temperature.is_some_and(|t| t == 0.0) {
            self.temperature_zero += 1;
        }

        if let Some(messages) = event.messages {
            self.turns_known += 1;
            let system = u32::from(event.system_prompt.is_some());
            if messages <= 1 + system {
                self.single_turn += 1;
            }
        }
        if let Some(system) = &event.system_prompt {
            let hash = fast_hash(system.as_bytes());
            let reasoning = match self.system_cache {
                Some((cached, reasoning)) if cached == hash => reasoning,
                _ => {
                    let reasoning = demands_reasoning(system);
                    self.system_cache = Some((hash, reasoning));
                    reasoning
                }
            };
            self.system_prompts.insert(hash);
            if reasoning {
                self.reasoning_system += 1;
            }
        }
        if let Some(prompt) = &event.prompt {
            self.observe_prompt(prompt, at, config);
        }
        self.observe_model(&event.model, at);
        self.observe_origin(event);
    }

    fn observe_prompt(&mut self, prompt: &str, at: EventTime, config: &EngineConfig) {
        let features = prompt_features(prompt);
        if features.words == 0 {
            return;
        }
        self.prompts += 1;
        self.distinct_prompts.insert(features.fingerprint);
        self.prefixes.insert(features.prefix_key);
        self.suffixes.insert(features.suffix_key);
        for word in &features.content[..features.content_len as usize] {
            if !self.frame.is_frame(*word) {
                self.vocabulary.insert(*word);
            }
        }
        self.frame.observe(&features);
        let templated = self.prompts >= TEMPLATE_MIN_PROMPTS
            && (self.prefixes.top1_share() >= TEMPLATE_SHARE
                || self.suffixes.top1_share() >= TEMPLATE_SHARE);
        if features.reasoning {
            self.reasoning_prompts += 1;
        }
        self.observe_resend(&features, templated);
        self.consider_sample(prompt, features.fingerprint, at, config);
    }

    /// Exact re-sends and edited re-sends among the last few prompts: what humans and developers
    /// do (retry, tweak, ask again) and dataset harvesters do not.
    ///
    /// In templated traffic every prompt looks like an edit of the previous one (same frame, new
    /// fill), so near-duplicates only count while the account has no dominant template.
    fn observe_resend(&mut self, features: &PromptFeatures, templated: bool) {
        let mut exact = false;
        let mut near = false;
        for recent in &self.recent {
            if recent.fingerprint == features.fingerprint {
                exact = true;
                break;
            }
            if !templated
                && PromptFeatures::similarity(&recent.signature, &features.signature)
                    >= EDIT_SIMILARITY
            {
                near = true;
            }
        }
        if exact {
            self.exact_repeats += 1;
        } else if near {
            self.near_repeats += 1;
        }
        let entry = RecentPrompt {
            fingerprint: features.fingerprint,
            signature: features.signature,
        };
        if self.recent.len() < RECENT_PROMPTS {
            if self.recent.capacity() == 0 {
                self.recent.reserve_exact(RECENT_PROMPTS);
            }
            self.recent.push(entry);
        } else {
            self.recent[self.recent_next as usize] = entry;
        }
        self.recent_next = ((self.recent_next as usize + 1) % RECENT_PROMPTS) as u8;
    }

    /// Keeps the first `k` distinct prompts, then one at every power-of-two prompt count,
    /// replacing the oldest: samples spread over the account's life, weighted to the recent
    /// past, for O(k + log n) truncations and SHA-256 digests per account instead of one per
    /// prompt.
    fn consider_sample(
        &mut self,
        prompt: &str,
        fingerprint: u64,
        at: EventTime,
        config: &EngineConfig,
    ) {
        let keep = config.sample_prompts;
        if keep == 0 {
            return;
        }
        let due = self.sample_fingerprints.len() < keep || self.prompts.is_power_of_two();
        if !due || self.sample_fingerprints.contains(&fingerprint) {
            return;
        }
        let samples = Arc::make_mut(&mut self.samples.0);
        if samples.len() >= keep {
            // Samples are kept oldest first.
            samples.remove(0);
            self.sample_fingerprints.remove(0);
        }
        samples.push(SamplePrompt {
            text: prompt.chars().take(config.sample_prompt_chars).collect(),
            hash: hex_sha256(prompt),
            at,
        });
        self.sample_fingerprints.push(fingerprint);
    }

    fn observe_model(&mut self, model: &ModelName, at: EventTime) {
        let at_ms = at.epoch_ms();
        let slot = match self.models.iter().position(|m| m.model == *model) {
            Some(slot) => slot,
            None => {
                let fresh = ModelSlot {
                    model: model.clone(),
                    first_used: at,
                    events: 0,
                    recent: 0.0,
                    recent_at: at_ms,
                };
                if self.models.len() < MODEL_SLOTS {
                    self.models.push(fresh);
                    self.models.len() - 1
                } else {
                    let quietest = self
                        .models
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.decayed(at_ms).total_cmp(&b.1.decayed(at_ms)))
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    self.models[quietest] = fresh;
                    quietest
                }
            }
        };
        let entry = &mut self.models[slot];
        entry.events += 1;
        entry.first_used = entry.first_used.min(at);
        entry.recent = entry.decayed(at_ms) + 1.0;
        entry.recent_at = entry.recent_at.max(at_ms);
    }

    fn observe_origin(&mut self, event: &ApiEvent) {
        if let Some(ip) = event.client_ip {
            self.ips.insert(ip);
            self.ip_distinct
                .insert(fast_hash(ip.to_string().as_bytes()));
        }
        if let Some(agent) = &event.user_agent {
            let hash = fast_hash(agent.as_bytes());
            self.user_agents.insert(hash);
            self.user_agent_distinct.insert(hash);
            if self.user_agent.is_none() {
                self.user_agent = Some(agent.chars().take(USER_AGENT_CHARS).collect());
            }
        }
        if let Some(end_user) = &event.end_user {
            self.end_user_events += 1;
            self.end_users.insert(fast_hash(end_user.as_bytes()));
        }
        if let Some(payment) = &event.payment_fingerprint {
            if self.payment_fingerprint.as_deref() != Some(payment.as_str()) {
                self.payment_fingerprint = Some(payment.as_str().into());
            }
        }
        if event.account_created_at.is_some() {
            self.account_created_at = event.account_created_at;
        }
    }

    /// The account as the detectors see it at tick `at`.
    pub fn summary(&mut self, account_id: &AccountId, at: EventTime) -> AccountSummary {
        let hour = (at.epoch_ms() - 1).max(0) / EventTime::HOUR;
        let (events_last_hour, completion_last_hour) = self.hourly.sum(hour - 1, hour);
        let (events_last_24h, completion_tokens_last_24h) = self.hourly.sum(hour - 23, hour);
        let activity = self.hourly.vector(hour);
        let at_ms = at.epoch_ms();
        let models = self
            .models
            .iter()
            .map(|m| ModelUse {
                model: m.model.clone(),
                first_used: m.first_used,
                events: m.events,
                recent_weight: m.decayed(at_ms),
            })
            .collect();
        AccountSummary {
            account_id: account_id.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            events: self.events,
            events_last_24h,
            events_last_hour,
            completion_tokens: self.completion_tokens,
            completion_tokens_last_24h,
            completion_tokens_last_hour: completion_last_hour,
            prompt_tokens: self.prompt_tokens,
            reasoning_tokens: self.reasoning_tokens,
            completion_known: self.completion_known,
            activity,
            hour_of_day: self.hour_of_day,
            quiet_gap_median_hours: self.quiet.median_hours(),
            quiet_days: self.quiet.completed.len() as u32,
            gap_cv: self.gaps.cv(),
            gaps: self.gaps.count,
            prompts: self.prompts,
            distinct_prompts: self.distinct_prompts.estimate().round() as u64,
            vocabulary_richness: self.vocabulary.richness(),
            subject_words: self.vocabulary.words,
            skeleton_prefixes: self.prefixes.top().into_iter().take(3).collect(),
            skeleton_suffixes: self.suffixes.top().into_iter().take(3).collect(),
            exact_repeats: self.exact_repeats,
            near_repeats: self.near_repeats,
            turns_known: self.turns_known,
            single_turn: self.single_turn,
            reasoning_prompts: self.reasoning_prompts,
            reasoning_system: self.reasoning_system,
            system_prompts: self
                .system_prompts
                .top()
                .into_iter()
                .map(|(h, _)| h)
                .collect(),
            logprobs: self.logprobs,
            multi_sample: self.multi_sample,
            large_max_tokens: self.large_max_tokens,
            temperature_zero: self.temperature_zero,
            models,
            client_ips: self.ips.top().into_iter().map(|(ip, _)| ip).collect(),
            distinct_ips: self.ip_distinct.estimate().round() as u64,
            user_agents: self.user_agents.top().into_iter().map(|(h, _)| h).collect(),
            distinct_user_agents: self.user_agent_distinct.estimate().round() as u64,
            user_agent: self.user_agent.as_deref().map(str::to_owned),
            end_user_events: self.end_user_events,
            distinct_end_users: self.end_users.estimate().round() as u64,
            payment_fingerprint: self.payment_fingerprint.as_deref().map(str::to_owned),
            account_created_at: self.account_created_at,
            samples: self.samples.clone(),
        }
    }

    /// Heap bytes held outside the struct itself, evidence samples excluded.
    pub fn heap_bytes_without_samples(&self) -> usize {
        let recent = self.recent.capacity() * std::mem::size_of::<RecentPrompt>();
        let models = self.models.capacity() * std::mem::size_of::<ModelSlot>()
            + self
                .models
                .iter()
                .map(|m| m.model.as_str().len())
                .sum::<usize>();
        let quiet = self.quiet.completed.capacity() * 2 + self.sample_fingerprints.capacity() * 8;
        let strings = self.user_agent.as_ref().map_or(0, |s| s.len())
            + self.payment_fingerprint.as_ref().map_or(0, |s| s.len());
        let frequent = self.prefixes.heap_bytes()
            + self.suffixes.heap_bytes()
            + self.system_prompts.heap_bytes()
            + self.ips.heap_bytes()
            + self.user_agents.heap_bytes();
        self.distinct_prompts.heap_bytes() + recent + models + quiet + strings + frequent
    }
}

/// SHA-256 of the full prompt, hex: the sample hash analysts use to find the prompt elsewhere.
pub fn hex_sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// One model an account used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelUse {
    pub model: ModelName,
    pub first_used: EventTime,
    pub events: u64,
    /// Requests with a 3-hour half-life, as of the tick.
    pub recent_weight: f64,
}

/// What a shard tells the scorer about one changed account at a tick: the detector inputs, plus
/// the per-account values the cluster linker (issue 5) joins on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountSummary {
    pub account_id: AccountId,
    pub first_seen: EventTime,
    pub last_seen: EventTime,
    pub events: u64,
    pub events_last_24h: u64,
    /// The current and previous event-time hour.
    pub events_last_hour: u64,
    pub completion_tokens: u64,
    pub completion_tokens_last_24h: u64,
    pub completion_tokens_last_hour: u64,
    pub prompt_tokens: u64,
    pub reasoning_tokens: u64,
    /// Events that reported completion tokens.
    pub completion_known: u64,
    /// Events per hour over the last 24 event-time hours, oldest first (linker: lockstep).
    pub activity: [u32; 24],
    /// Lifetime events per UTC hour of day.
    pub hour_of_day: [u32; 24],
    pub quiet_gap_median_hours: Option<f64>,
    pub quiet_days: u32,
    pub gap_cv: Option<f64>,
    pub gaps: u64,
    pub prompts: u64,
    pub distinct_prompts: u64,
    /// Herdan's C (log distinct / log total) of the subject words of the current (or, while it
    /// is young, the previous) vocabulary window, corrected to the length of a full window;
    /// `None` below `MIN_VOCABULARY_WORDS` words.
    pub vocabulary_richness: Option<f64>,
    pub subject_words: u64,
    /// Most frequent skeleton keys (linker: shared templates) with lower-bound counts.
    pub skeleton_prefixes: Vec<(u64, u32)>,
    pub skeleton_suffixes: Vec<(u64, u32)>,
    pub exact_repeats: u64,
    pub near_repeats: u64,
    pub turns_known: u64,
    pub single_turn: u64,
    pub reasoning_prompts: u64,
    pub reasoning_system: u64,
    /// Hashes of the most used system prompts (linker: shared system prompts).
    pub system_prompts: Vec<u64>,
    pub logprobs: u64,
    pub multi_sample: u64,
    pub large_max_tokens: u64,
    pub temperature_zero: u64,
    pub models: Vec<ModelUse>,
    /// Most used client IPs (linker: shared IPs and /24s).
    pub client_ips: Vec<IpAddr>,
    pub distinct_ips: u64,
    /// Hashes of the most used user agents, and the first one seen, truncated.
    pub user_agents: Vec<u64>,
    pub distinct_user_agents: u64,
    pub user_agent: Option<String>,
    pub end_user_events: u64,
    pub distinct_end_users: u64,
    pub payment_fingerprint: Option<String>,
    pub account_created_at: Option<EventTime>,
    pub samples: SharedSamples,
}

impl AccountSummary {
    pub fn share(&self, part: u64, whole: u64) -> f64 {
        if whole == 0 {
            0.0
        } else {
            (part as f64 / whole as f64).min(1.0)
        }
    }

    /// Share of prompts whose normalised text is new to the account (HLL estimate, capped at 1).
    pub fn distinct_ratio(&self) -> f64 {
        self.share(self.distinct_prompts, self.prompts)
    }

    pub fn resend_ratio(&self) -> f64 {
        self.share(self.exact_repeats + self.near_repeats, self.prompts)
    }

    pub fn single_turn_share(&self) -> Option<f64> {
        (self.turns_known > 0).then(|| self.share(self.single_turn, self.turns_known))
    }

    pub fn mean_completion_tokens(&self) -> f64 {
        if self.completion_known == 0 {
            0.0
        } else {
            self.completion_tokens as f64 / self.completion_known as f64
        }
    }

    /// Share of the top-3 skeleton keys at the better-covered end (prefix or suffix).
    pub fn skeleton_share(&self) -> f64 {
        let covered = |keys: &[(u64, u32)]| keys.iter().map(|(_, c)| u64::from(*c)).sum::<u64>();
        self.share(
            covered(&self.skeleton_prefixes).max(covered(&self.skeleton_suffixes)),
            self.prompts,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{diverse_prompt, event, BASE};

    #[test]
    fn steady_state_account_stays_within_the_memory_budget() {
        let config = EngineConfig::default();
        let mut state = AccountState::new(EventTime::from_epoch_ms(BASE).unwrap());
        for i in 0..20_000i64 {
            let mut e = event(i * 30_000, &diverse_prompt(i as usize));
            e.system_prompt = Some(format!("You are assistant number {}", i % 3));
            e.client_ip = Some(format!("203.0.113.{}", i % 50).parse().unwrap());
            e.user_agent = Some(format!("sdk/{}", i % 4));
            e.end_user = Some(format!("user-{}", i % 300));
            e.payment_fingerprint = Some("card-1".into());
            if i % 1_000 == 0 {
                e.model = ModelName::parse(format!("model-{}", i / 1_000)).unwrap();
            }
            state.observe(&e, &config);
        }
        let bytes = std::mem::size_of::<AccountState>() + state.heap_bytes_without_samples();
        eprintln!(
            "account state: {} struct + {} heap = {bytes} bytes",
            std::mem::size_of::<AccountState>(),
            state.heap_bytes_without_samples()
        );
        assert!(bytes <= 4_096, "{bytes} bytes per account");
    }

    #[test]
    fn sample_prompts_are_bounded_spread_over_time_and_carry_sha256_of_the_full_text() {
        let config = EngineConfig {
            sample_prompts: 3,
            sample_prompt_chars: 10,
            ..EngineConfig::default()
        };
        let mut state = AccountState::new(EventTime::from_epoch_ms(BASE).unwrap());
        for i in 0..500 {
            state.observe(&event(i * 1_000, &diverse_prompt(i as usize)), &config);
        }
        let summary = state.summary(
            &AccountId::parse("acct").unwrap(),
            EventTime::from_epoch_ms(BASE + 600_000).unwrap(),
        );
        assert_eq!(summary.samples.len(), 3);
        // Prompts 128, 256 and 512 are not all there (500 prompts): 64, 128, 256.
        let at: Vec<i64> = summary
            .samples
            .iter()
            .map(|s| s.at.epoch_ms() - BASE)
            .collect();
        assert_eq!(at, [63_000, 127_000, 255_000]);
        let full: Vec<String> = (0..500).map(diverse_prompt).collect();
        for sample in summary.samples.iter() {
            assert_eq!(sample.text.chars().count(), 10);
            let source = full.iter().find(|p| hex_sha256(p) == sample.hash).unwrap();
            assert!(source.starts_with(&sample.text));
        }
        let none = EngineConfig {
            sample_prompts: 0,
            ..EngineConfig::default()
        };
        let mut private = AccountState::new(EventTime::from_epoch_ms(BASE).unwrap());
        private.observe(&event(0, "secret"), &none);
        assert!(private.samples.is_empty());
    }

    #[test]
    fn sha256_is_the_standard_digest() {
        assert_eq!(
            hex_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn quiet_gaps_are_measured_per_completed_day() {
        let config = EngineConfig::default();
        let day0 = (BASE / EventTime::DAY + 1) * EventTime::DAY - BASE;
        let mut state = AccountState::new(EventTime::from_epoch_ms(BASE + day0).unwrap());
        // Four days: active 09:00-21:00 every 10 minutes (12 h nightly gap).
        for day in 0..4 {
            for slot in 0..72 {
                let t = day0
                    + day * EventTime::DAY
                    + 9 * EventTime::HOUR
                    + slot * 10 * EventTime::MINUTE;
                state.observe(&event(t, "hello there"), &config);
            }
        }
        let at = EventTime::from_epoch_ms(BASE + day0 + 4 * EventTime::DAY).unwrap();
        let summary = state.summary(&AccountId::parse("acct").unwrap(), at);
        assert_eq!(summary.quiet_days, 2);
        let hours = summary.quiet_gap_median_hours.unwrap();
        assert!((11.0..=13.0).contains(&hours), "{hours}");
        assert_eq!(summary.activity.iter().filter(|c| **c > 0).count(), 12);
    }

    #[test]
    fn hourly_windows_drop_old_hours() {
        let config = EngineConfig::default();
        let mut state = AccountState::new(EventTime::from_epoch_ms(BASE).unwrap());
        for i in 0..100 {
            state.observe(&event(i * 1_000, "x y"), &config);
        }
        state.observe(&event(30 * EventTime::HOUR, "x y"), &config);
        let summary = state.summary(
            &AccountId::parse("acct").unwrap(),
            EventTime::from_epoch_ms(BASE + 30 * EventTime::HOUR + 1).unwrap(),
        );
        assert_eq!(summary.events, 101);
        assert_eq!(summary.events_last_24h, 1);
        assert_eq!(summary.events_last_hour, 1);
    }

    #[test]
    fn a_checkpointed_account_state_continues_identically() {
        let config = EngineConfig::default();
        let mut state = AccountState::new(EventTime::from_epoch_ms(BASE).unwrap());
        for i in 0..300 {
            state.observe(&event(i * 5_000, &diverse_prompt(i as usize)), &config);
        }
        let mut restored: AccountState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        for i in 300..600 {
            let e = event(i * 5_000, &diverse_prompt(i as usize % 350));
            state.observe(&e, &config);
            restored.observe(&e, &config);
        }
        let id = AccountId::parse("acct").unwrap();
        let at = EventTime::from_epoch_ms(BASE + 3_000_001).unwrap();
        assert_eq!(state.summary(&id, at), restored.summary(&id, at));
    }
}
