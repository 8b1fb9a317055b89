//! Per-account state, updated per event, and the summary a shard hands to the scorer at a tick.
//!
//! Budget: at most 4 KiB per account at steady state, evidence samples aside (measured by the
//! `state_size` bench and `steady_state_account_stays_within_the_memory_budget` below). Nothing
//! here grows with the number of events: every collection is a fixed array or a capped list.

mod compact;
mod end_users;
mod summary;
mod windows;

use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::event::{AccountId, ApiEvent, ModelName};
use crate::finding::SamplePrompt;
use crate::sketch::{fast_hash, LinearCounter};
use crate::text::{demands_reasoning, prompt_features, FrameWords, PromptFeatures, SIGNATURE_BINS};
use crate::time::EventTime;

use compact::{Frequent, Key64, Prompts, Sample};
pub use end_users::{EndUserSummary, EndUsers};
pub use summary::{hex_sha256, AccountSummary, ModelUse, SharedSamples};
pub use windows::{herdan, VocabularyCounter, MIN_VOCABULARY_WORDS};
use windows::{GapStats, HourOfDay, HourRing, QuietGaps, Vocabulary, SESSION_GAP_MS};

/// Prompts remembered for exact and edited re-send detection.
const RECENT_PROMPTS: usize = 8;
/// Models tracked per account; a fifth replaces the least recently used.
const MODEL_SLOTS: usize = 4;
/// Half-life of the per-model recent traffic counters.
pub const MODEL_HALF_LIFE_MS: f64 = 3.0 * EventTime::HOUR as f64;
/// Estimated bigram Jaccard at which a prompt counts as an edited re-send of a recent one.
const EDIT_SIMILARITY: f64 = 0.8;
/// One skeleton end covering this share of prompts makes the account "templated" ...
const TEMPLATE_SHARE: f64 = 0.5;
/// ... once it has sent this many prompts.
const TEMPLATE_MIN_PROMPTS: u64 = 10;
/// `max_tokens` at or above this counts as a request for a long output.
pub const LARGE_MAX_TOKENS: u32 = 4_096;
/// Client IPs and subnets sampled per account for the linker (bottom-k over their link keys):
/// enough to count a dozen shared addresses between two accounts of one proxy pool, bounded at
/// 8 bytes each however many addresses the account hops over.
pub const IP_SAMPLE: usize = 24;
pub const SUBNET_SAMPLE: usize = 16;
/// Near-duplicate band keys sampled per account (bottom-k over the LSH band keys of its prompts,
/// `sketch::lsh`): two accounts sending re-asks of the same items keep meeting in their samples,
/// at 8 bytes per key however many prompts they send (issue 12, content coordination).
pub const CONTENT_SAMPLE: usize = 12;
/// Signature bins per LSH band (8 bins as 2 bands of 4).
const LSH_ROWS: usize = 4;
/// Prompts shorter than this many words are not sampled for near-duplicates: short chat
/// ("thanks, can you shorten it?") is the same everywhere.
pub const NEAR_DUPLICATE_MIN_WORDS: u32 = 12;
/// Characters of the user agent kept for analysts and the linker.
const USER_AGENT_CHARS: usize = 120;
/// Session-opening prompts remembered, to recognise a later turn that re-sends a session's task
/// (an agent loop resends the task with each tool result). Sixteen covers as many sessions
/// running side by side in one account.
const RECENT_OPENERS: usize = 16;
/// A later turn with at least this many messages is deep in its session: four or more rounds
/// after the opener, which agent loops (a tool call per round) reach on most tasks and people's
/// chats rarely do.
pub const DEEP_TURN_MESSAGES: u32 = 8;
/// Alternatives per request counted at most (`top_logprobs` or `n`; APIs allow 20 and 128).
const MAX_ALTERNATIVES: u32 = 64;

/// Where a request sits in its conversation, from its message count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The first user turn (after an optional system prompt): it opens a session.
    Opener,
    /// A later turn: a follow-up, or a tool result sent back by an agent.
    Continuation,
    Unknown,
}

impl Turn {
    /// From the message count, counting the system prompt: one user message is an opener.
    fn of(event: &ApiEvent) -> Self {
        match event.messages {
            None => Turn::Unknown,
            Some(messages) if messages <= 1 + u32::from(event.system_prompt.is_some()) => {
                Turn::Opener
            }
            Some(_) => Turn::Continuation,
        }
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

/// An unknown time in a field of epoch milliseconds (event times are never negative).
const NO_TIME: i64 = -1;

/// The system prompts an account sent, kept apart because most accounts send none.
#[derive(Debug, Clone, Default)]
struct SystemPrompts {
    /// The latest system prompt's hash and whether it demands reasoning (the check scans the
    /// text; most accounts resend one system prompt). Not checkpointed: the next system prompt
    /// recomputes it, with the same result.
    cache: Option<(u64, bool)>,
    prompts: Frequent<Key64, 3>,
}

/// A field checkpoints held whose value is no longer kept there: written as absent, and
/// whatever an older checkpoint holds in it is read and dropped.
#[derive(Debug, Clone, Copy, Default)]
struct NotKept;

impl Serialize for NotKept {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_none()
    }
}

impl<'de> Deserialize<'de> for NotKept {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| NotKept)
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
    completion_known: u32,
    hourly: HourRing,
    hour_of_day: HourOfDay,
    gaps: GapStats,
    /// Requests logged at or before the latest one, by at most a sitting's break: out of order
    /// within the sitting (a gateway that logs on completion, parallel requests), not a new one.
    #[serde(default)]
    late_in_sitting: u32,
    quiet: QuietGaps,
    prompts: u64,
    distinct_prompts: Prompts,
    /// The sketch's estimate plus one as of its last change (the estimate is a pass over 1,024
    /// registers; most ticks of a large account do not change the sketch).
    #[serde(skip)]
    distinct_estimate: Option<NonZeroU64>,
    vocabulary: Vocabulary,
    frame: FrameWords,
    prefixes: Frequent<Key64, 6>,
    suffixes: Frequent<Key64, 6>,
    recent: Box<[RecentPrompt]>,
    recent_next: u8,
    exact_repeats: u32,
    near_repeats: u32,
    turns_known: u32,
    single_turn: u32,
    reasoning_prompts: u32,
    reasoning_system: u32,
    /// Where checkpoints held the system-prompt cache, which is now kept with the system prompts
    /// and not written (it is recomputed from the next system prompt).
    #[serde(default)]
    system_cache: NotKept,
    /// Allocated with the first system prompt (most accounts send none: 8 bytes instead of 48);
    /// written as the frequent-item list alone, empty when absent.
    #[serde(rename = "system_prompts", with = "boxed_system")]
    system: Option<Box<SystemPrompts>>,
    logprobs: u32,
    multi_sample: u32,
    large_max_tokens: u32,
    temperature_zero: u32,
    /// Requests asking for several alternatives per position (`top_logprobs` >= 2 or `n` >= 2),
    /// and the sum of those alternatives (capped per request).
    #[serde(default)]
    distribution_requests: u32,
    #[serde(default)]
    distribution_alternatives: u64,
    /// Low 32 bits of the fingerprints of the latest session-opening prompts (ring of
    /// `RECENT_OPENERS`; 32 bits keep a false match among 16 under 1 in 10^8 per opener).
    #[serde(default, deserialize_with = "low_32_bits")]
    recent_openers: Box<[u32]>,
    #[serde(default)]
    openers_next: u8,
    /// Session openers that repeat a recent opener (a re-asked task).
    #[serde(default)]
    opener_repeats: u32,
    /// Later turns that re-send the task of a recent session opener (an agent loop).
    #[serde(default)]
    task_resends: u32,
    /// Later turns with at least `DEEP_TURN_MESSAGES` messages.
    #[serde(default)]
    deep_turns: u32,
    models: Box<[ModelSlot]>,
    ips: Frequent<(IpAddr, u32), 4>,
    ip_distinct: LinearCounter<4>,
    #[serde(default)]
    ip_sample: Sample<IP_SAMPLE>,
    #[serde(default)]
    subnet_sample: Sample<SUBNET_SAMPLE>,
    #[serde(default)]
    content_sample: Sample<CONTENT_SAMPLE>,
    user_agents: Frequent<Key64, 3>,
    user_agent_distinct: LinearCounter<1>,
    user_agent: Option<Box<str>>,
    #[serde(with = "boxed_counter")]
    end_users: Option<Box<LinearCounter<4>>>,
    end_user_events: u32,
    /// Heavy end users judged on their own, once the account has shown two end users.
    #[serde(default)]
    end_user_subjects: Option<Box<EndUsers>>,
    /// The last event's end user set a new bit of `end_users` (transient).
    #[serde(skip)]
    end_user_seen_new: bool,
    payment_fingerprint: Option<Box<str>>,
    /// Epoch milliseconds, `NO_TIME` when unknown (8 bytes instead of 16); written as an
    /// optional time.
    #[serde(with = "optional_time")]
    account_created_at: i64,
    /// Fingerprints of the prompts in `samples`, in the same order.
    sample_fingerprints: Box<[u64]>,
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
            hour_of_day: HourOfDay::default(),
            gaps: GapStats::default(),
            late_in_sitting: 0,
            quiet: QuietGaps::new(at.day_index()),
            prompts: 0,
            distinct_prompts: Prompts::default(),
            distinct_estimate: None,
            vocabulary: Vocabulary::default(),
            frame: FrameWords::default(),
            prefixes: Frequent::default(),
            suffixes: Frequent::default(),
            recent: Box::default(),
            recent_next: 0,
            exact_repeats: 0,
            near_repeats: 0,
            turns_known: 0,
            single_turn: 0,
            reasoning_prompts: 0,
            reasoning_system: 0,
            system_cache: NotKept,
            system: None,
            logprobs: 0,
            multi_sample: 0,
            large_max_tokens: 0,
            temperature_zero: 0,
            distribution_requests: 0,
            distribution_alternatives: 0,
            recent_openers: Box::default(),
            openers_next: 0,
            opener_repeats: 0,
            task_resends: 0,
            deep_turns: 0,
            models: Box::default(),
            ips: Frequent::default(),
            ip_distinct: LinearCounter::default(),
            ip_sample: Sample::default(),
            subnet_sample: Sample::default(),
            content_sample: Sample::default(),
            user_agents: Frequent::default(),
            user_agent_distinct: LinearCounter::default(),
            user_agent: None,
            end_users: None,
            end_user_events: 0,
            end_user_subjects: None,
            end_user_seen_new: false,
            payment_fingerprint: None,
            account_created_at: NO_TIME,
            sample_fingerprints: Box::default(),
            samples: SharedSamples::default(),
            population_buckets: [crate::population::NO_BUCKET; crate::population::METRICS],
            dirty: false,
        }
    }

    pub fn last_seen(&self) -> EventTime {
        self.last_seen
    }

    /// The distinct-prompt estimate, cached until the counter changes.
    fn distinct_prompts(&mut self) -> u64 {
        if let Some(cached) = self.distinct_estimate {
            return cached.get() - 1;
        }
        let estimate = self.distinct_prompts.estimate().round() as u64;
        self.distinct_estimate = NonZeroU64::new(estimate.saturating_add(1));
        estimate
    }

    pub fn observe(&mut self, event: &ApiEvent, config: &EngineConfig) {
        let at = event.timestamp;
        if self.events > 0 && at > self.last_seen {
            let gap = at.epoch_ms() - self.last_seen.epoch_ms();
            self.gaps.observe(gap);
            self.quiet
                .observe(self.last_seen, at, self.first_seen.day_index());
        } else if self.events > 0 && self.last_seen.epoch_ms() - at.epoch_ms() <= SESSION_GAP_MS {
            self.late_in_sitting = self.late_in_sitting.saturating_add(1);
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
        self.hour_of_day.add(at.hour_of_day() as usize);

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
        let alternatives = params.top_logprobs.unwrap_or(0).max(params.n.unwrap_or(1));
        if alternatives >= 2 {
            self.distribution_requests += 1;
            self.distribution_alternatives += u64::from(alternatives.min(MAX_ALTERNATIVES));
        }

        let turn = Turn::of(event);
        match turn {
            Turn::Opener => {
                self.turns_known += 1;
                self.single_turn += 1;
            }
            Turn::Continuation => {
                self.turns_known += 1;
                if event.messages >= Some(DEEP_TURN_MESSAGES) {
                    self.deep_turns += 1;
                }
            }
            Turn::Unknown => {}
        }
        if let Some(system) = &event.system_prompt {
            let hash = fast_hash(system.as_bytes());
            let seen = self.system.get_or_insert_with(Box::default);
            let reasoning = match seen.cache {
                Some((cached, reasoning)) if cached == hash => reasoning,
                _ => {
                    let reasoning = demands_reasoning(system);
                    seen.cache = Some((hash, reasoning));
                    reasoning
                }
            };
            seen.prompts.insert(hash);
            if reasoning {
                self.reasoning_system += 1;
            }
        }
        if let Some(prompt) = &event.prompt {
            self.observe_prompt(prompt, turn, at, config);
        }
        self.observe_model(&event.model, at);
        self.observe_origin(event);
        if let Some(end_user) = &event.end_user {
            self.observe_end_user(event, end_user, config);
        }
    }

    /// Feeds the heavy-end-user sketch, allocated when a second end user shows up (a bit of the
    /// end-user counter set by an earlier event says nothing new; only a new one can).
    fn observe_end_user(&mut self, event: &ApiEvent, end_user: &str, config: &EngineConfig) {
        if self.end_user_subjects.is_none() {
            if !self.end_user_seen_new || end_user_estimate(&self.end_users) < 1.5 {
                return;
            }
            self.end_user_subjects = Some(Box::default());
        }
        if let Some(subjects) = &mut self.end_user_subjects {
            subjects.observe(event, end_user, config);
        }
    }

    fn observe_prompt(&mut self, prompt: &str, turn: Turn, at: EventTime, config: &EngineConfig) {
        let features = prompt_features(prompt);
        if features.words == 0 {
            return;
        }
        self.prompts += 1;
        if self.distinct_prompts.insert(features.fingerprint) {
            self.distinct_estimate = None;
        }
        self.prefixes.insert(features.prefix_key);
        self.suffixes.insert(features.suffix_key);
        if features.words >= NEAR_DUPLICATE_MIN_WORDS {
            for key in crate::sketch::lsh::band_keys(&features.signature, LSH_ROWS) {
                self.content_sample.insert(key);
            }
        }
        // Subjects are what sessions open with: a later turn (a follow-up, a tool result, an
        // agent re-sending its task) says little new about them, so only openers and requests
        // of unknown turn feed the vocabulary (issue 13, agent sessions).
        self.observe_turn(features.fingerprint, turn);
        if turn != Turn::Continuation {
            let mut subject = [0u32; crate::text::MAX_CONTENT_WORDS];
            let mut n = 0;
            for word in &features.content[..features.content_len as usize] {
                if !self.frame.is_frame(*word) {
                    subject[n] = *word;
                    n += 1;
                }
            }
            self.vocabulary.insert_all(&subject[..n]);
            self.frame.observe(&features);
        }
        let templated = self.prompts >= TEMPLATE_MIN_PROMPTS
            && (self.prefixes.top1_share() >= TEMPLATE_SHARE
                || self.suffixes.top1_share() >= TEMPLATE_SHARE);
        if features.reasoning {
            self.reasoning_prompts += 1;
        }
        self.observe_resend(&features, templated);
        self.consider_sample(prompt, features.fingerprint, at, config);
    }

    /// Tracks session openers, re-asked openers and later turns that re-send an opener's task.
    fn observe_turn(&mut self, fingerprint: u64, turn: Turn) {
        let fingerprint = fingerprint as u32;
        let known = self.recent_openers.contains(&fingerprint);
        match turn {
            Turn::Continuation if known => self.task_resends += 1,
            Turn::Opener => {
                if known {
                    self.opener_repeats += 1;
                } else if self.recent_openers.len() < RECENT_OPENERS {
                    compact::push(&mut self.recent_openers, fingerprint);
                } else {
                    self.recent_openers[self.openers_next as usize % RECENT_OPENERS] = fingerprint;
                    self.openers_next = ((self.openers_next as usize + 1) % RECENT_OPENERS) as u8;
                }
            }
            _ => {}
        }
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
            compact::push(&mut self.recent, entry);
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
        let samples = Arc::make_mut(self.samples.0.get_or_insert_with(Default::default));
        if samples.len() >= keep {
            // Samples are kept oldest first.
            samples.remove(0);
            compact::remove(&mut self.sample_fingerprints, 0);
        }
        samples.push(SamplePrompt {
            text: prompt.chars().take(config.sample_prompt_chars).collect(),
            hash: hex_sha256(prompt),
            at,
        });
        compact::push(&mut self.sample_fingerprints, fingerprint);
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
                    compact::push(&mut self.models, fresh);
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
            let [address, subnet] = crate::link::ip_keys(&ip);
            // The address's link key doubles as its hash for the distinct count (no string
            // formatting per event).
            self.ip_distinct.insert(address.value);
            self.ip_sample.insert(address.value);
            self.subnet_sample.insert(subnet.value);
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
            let counter = self.end_users.get_or_insert_with(Box::default);
            let before = (**counter).clone();
            counter.insert(fast_hash(end_user.as_bytes()));
            self.end_user_seen_new = before != **counter;
        }
        if let Some(payment) = &event.payment_fingerprint {
            if self.payment_fingerprint.as_deref() != Some(payment.as_str()) {
                self.payment_fingerprint = Some(payment.as_str().into());
            }
        }
        if let Some(created) = event.account_created_at {
            self.account_created_at = created.epoch_ms();
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
            completion_known: u64::from(self.completion_known),
            activity,
            hour_of_day: self.hour_of_day.counts(),
            quiet_gap_median_hours: self.quiet.median_hours(),
            quiet_days: self.quiet.days() as u32,
            gap_cv: self.gaps.cv(),
            gaps: self.gaps.count,
            late_in_sitting: u64::from(self.late_in_sitting),
            prompts: self.prompts,
            distinct_prompts: self.distinct_prompts(),
            vocabulary_richness: self.vocabulary.richness(),
            subject_words: self.vocabulary.words(),
            young_vocabulary: self.vocabulary.young(),
            skeleton_prefixes: self.prefixes.top().into_iter().take(3).collect(),
            skeleton_suffixes: self.suffixes.top().into_iter().take(3).collect(),
            exact_repeats: u64::from(self.exact_repeats),
            near_repeats: u64::from(self.near_repeats),
            turns_known: u64::from(self.turns_known),
            single_turn: u64::from(self.single_turn),
            reasoning_prompts: u64::from(self.reasoning_prompts),
            reasoning_system: u64::from(self.reasoning_system),
            system_prompts: self.system.as_ref().map_or_else(Vec::new, |system| {
                system.prompts.top().into_iter().map(|(h, _)| h).collect()
            }),
            logprobs: u64::from(self.logprobs),
            multi_sample: u64::from(self.multi_sample),
            large_max_tokens: u64::from(self.large_max_tokens),
            temperature_zero: u64::from(self.temperature_zero),
            distribution_requests: u64::from(self.distribution_requests),
            distribution_alternatives: self.distribution_alternatives,
            opener_repeats: u64::from(self.opener_repeats),
            task_resends: u64::from(self.task_resends),
            deep_turns: u64::from(self.deep_turns),
            models,
            client_ips: self.ips.top().into_iter().map(|(ip, _)| ip).collect(),
            distinct_ips: self.ip_distinct.estimate().round() as u64,
            ip_sample: self.ip_sample.values().to_vec(),
            subnet_sample: self.subnet_sample.values().to_vec(),
            content_sample: self.content_sample.values().to_vec(),
            user_agents: self.user_agents.top().into_iter().map(|(h, _)| h).collect(),
            distinct_user_agents: self.user_agent_distinct.estimate().round() as u64,
            user_agent: self.user_agent.as_deref().map(str::to_owned),
            end_user_events: u64::from(self.end_user_events),
            distinct_end_users: end_user_estimate(&self.end_users).round() as u64,
            payment_fingerprint: self.payment_fingerprint.as_deref().map(str::to_owned),
            account_created_at: (self.account_created_at != NO_TIME)
                .then(|| EventTime::from_epoch_ms(self.account_created_at).ok())
                .flatten(),
            samples: self.samples.clone(),
        }
    }

    /// The heavy end users' own summaries at tick `at` (empty for an account with one end user);
    /// those that look like people hand their states on (`end_users`).
    pub fn end_user_summaries(
        &mut self,
        account_id: &AccountId,
        at: EventTime,
        config: &EngineConfig,
    ) -> Vec<EndUserSummary> {
        self.end_user_subjects
            .as_mut()
            .map_or_else(Vec::new, |subjects| {
                subjects.summaries(account_id, at, config)
            })
    }

    /// Bytes per part of the state, inline (`size_of`) plus heap, evidence samples excluded: the
    /// breakdown the `memory_1m` bench prints, so a change to the state is measured part by part.
    pub fn memory_breakdown(&self) -> Vec<(&'static str, usize)> {
        let mut parts: Vec<_> = self
            .parts()
            .into_iter()
            .map(|(name, inline, heap)| (name, inline + heap))
            .collect();
        let named: usize = parts.iter().map(|(_, b)| b).sum();
        let total = std::mem::size_of::<Self>() + self.heap_bytes_without_samples();
        parts.push(("padding (and unnamed)", total.saturating_sub(named)));
        parts
    }

    /// Heap bytes held outside the struct itself, evidence samples excluded.
    pub fn heap_bytes_without_samples(&self) -> usize {
        self.parts().iter().map(|(_, _, heap)| heap).sum()
    }

    /// Per part: its name, inline bytes (`size_of` of its fields) and heap bytes.
    fn parts(&self) -> [(&'static str, usize, usize); 24] {
        use std::mem::size_of_val as inline;
        let boxed = |list: usize, each: usize| list * each;
        let text = |s: &Option<Box<str>>| s.as_ref().map_or(0, |s| s.len());
        [
            (
                "times and token totals",
                inline(&self.first_seen)
                    + inline(&self.last_seen)
                    + inline(&self.events)
                    + inline(&self.prompt_tokens)
                    + inline(&self.completion_tokens)
                    + inline(&self.reasoning_tokens)
                    + inline(&self.completion_known)
                    + inline(&self.prompts)
                    + inline(&self.account_created_at),
                0,
            ),
            ("hourly", inline(&self.hourly), self.hourly.heap_bytes()),
            (
                "hour_of_day",
                inline(&self.hour_of_day),
                self.hour_of_day.heap_bytes(),
            ),
            (
                "gaps",
                inline(&self.gaps) + inline(&self.late_in_sitting),
                0,
            ),
            ("quiet", inline(&self.quiet), 0),
            (
                "distinct_prompts",
                inline(&self.distinct_prompts) + inline(&self.distinct_estimate),
                self.distinct_prompts.heap_bytes(),
            ),
            (
                "vocabulary",
                inline(&self.vocabulary),
                self.vocabulary.distinct.heap_bytes(),
            ),
            ("frame", inline(&self.frame), self.frame.heap_bytes()),
            (
                "prefixes+suffixes",
                inline(&self.prefixes) + inline(&self.suffixes),
                self.prefixes.heap_bytes() + self.suffixes.heap_bytes(),
            ),
            (
                "recent prompts",
                inline(&self.recent) + inline(&self.recent_next),
                boxed(self.recent.len(), std::mem::size_of::<RecentPrompt>()),
            ),
            (
                "recent openers",
                inline(&self.recent_openers) + inline(&self.openers_next),
                boxed(self.recent_openers.len(), 4),
            ),
            (
                "u32 counters",
                inline(&self.exact_repeats)
                    + inline(&self.near_repeats)
                    + inline(&self.turns_known)
                    + inline(&self.single_turn)
                    + inline(&self.reasoning_prompts)
                    + inline(&self.reasoning_system)
                    + inline(&self.logprobs)
                    + inline(&self.multi_sample)
                    + inline(&self.large_max_tokens)
                    + inline(&self.temperature_zero)
                    + inline(&self.distribution_requests)
                    + inline(&self.distribution_alternatives)
                    + inline(&self.opener_repeats)
                    + inline(&self.task_resends)
                    + inline(&self.deep_turns)
                    + inline(&self.end_user_events),
                0,
            ),
            (
                "system prompts",
                inline(&self.system_cache) + inline(&self.system),
                self.system.as_ref().map_or(0, |system| {
                    std::mem::size_of::<SystemPrompts>() + system.prompts.heap_bytes()
                }),
            ),
            (
                "models",
                inline(&self.models),
                boxed(self.models.len(), std::mem::size_of::<ModelSlot>())
                    + self
                        .models
                        .iter()
                        .map(|m| m.model.as_str().len())
                        .sum::<usize>(),
            ),
            ("ips", inline(&self.ips), self.ips.heap_bytes()),
            ("ip_distinct", inline(&self.ip_distinct), 0),
            (
                "ip_sample",
                inline(&self.ip_sample),
                self.ip_sample.heap_bytes(),
            ),
            (
                "subnet_sample",
                inline(&self.subnet_sample),
                self.subnet_sample.heap_bytes(),
            ),
            (
                "content_sample",
                inline(&self.content_sample),
                self.content_sample.heap_bytes(),
            ),
            (
                "user agents",
                inline(&self.user_agents)
                    + inline(&self.user_agent_distinct)
                    + inline(&self.user_agent),
                self.user_agents.heap_bytes() + text(&self.user_agent),
            ),
            (
                "end users",
                inline(&self.end_users)
                    + inline(&self.end_user_subjects)
                    + inline(&self.end_user_seen_new),
                self.end_users.as_ref().map_or(0, |_| 32)
                    + self
                        .end_user_subjects
                        .as_ref()
                        .map_or(0, |subjects| subjects.heap_bytes()),
            ),
            (
                "payment fingerprint",
                inline(&self.payment_fingerprint),
                text(&self.payment_fingerprint),
            ),
            (
                "samples",
                inline(&self.sample_fingerprints) + inline(&self.samples),
                boxed(self.sample_fingerprints.len(), 8),
            ),
            (
                "population, dirty",
                inline(&self.population_buckets) + inline(&self.dirty),
                0,
            ),
        ]
    }
}

/// The end-user counter's estimate; no counter (no end user named yet) counts nothing.
fn end_user_estimate(counter: &Option<Box<LinearCounter<4>>>) -> f64 {
    counter.as_ref().map_or(0.0, |c| c.estimate())
}

/// The end-user counter is allocated with the first end user (most accounts name none) and
/// written as the counter itself, empty when absent: the form older versions wrote and read.
mod boxed_counter {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::sketch::LinearCounter;

    pub fn serialize<S: Serializer>(
        counter: &Option<Box<LinearCounter<4>>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match counter {
            Some(counter) => counter.serialize(serializer),
            None => LinearCounter::<4>::default().serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Box<LinearCounter<4>>>, D::Error> {
        let counter = LinearCounter::<4>::deserialize(deserializer)?;
        Ok((counter != LinearCounter::default()).then(|| Box::new(counter)))
    }
}

/// Opener fingerprints of checkpoints written when they were 64 bits wide: their low half is
/// what `observe_turn` keeps now.
fn low_32_bits<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Box<[u32]>, D::Error> {
    let wide = Vec::<u64>::deserialize(deserializer)?;
    Ok(wide.into_iter().map(|f| f as u32).collect())
}

/// The system prompts are written as their frequent-item list (the layout older versions wrote
/// and read), empty when the account sent none.
mod boxed_system {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Frequent, Key64, SystemPrompts};

    pub fn serialize<S: Serializer>(
        system: &Option<Box<SystemPrompts>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match system {
            Some(system) => system.prompts.serialize(serializer),
            None => Frequent::<Key64, 3>::default().serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Box<SystemPrompts>>, D::Error> {
        let prompts = Frequent::<Key64, 3>::deserialize(deserializer)?;
        Ok((prompts != Frequent::default()).then(|| {
            Box::new(SystemPrompts {
                cache: None,
                prompts,
            })
        }))
    }
}

/// A time kept as epoch milliseconds with `NO_TIME` for none, written as an optional time.
mod optional_time {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::NO_TIME;
    use crate::time::EventTime;

    pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        let time = (*ms != NO_TIME)
            .then(|| EventTime::from_epoch_ms(*ms).ok())
            .flatten();
        time.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        Ok(Option::<EventTime>::deserialize(deserializer)?.map_or(NO_TIME, EventTime::epoch_ms))
    }
}

#[cfg(test)]
mod tests;
