//! What a shard hands the scorer for one account at a tick.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{AccountId, ModelName};
use crate::finding::SamplePrompt;
use crate::time::EventTime;

/// Evidence samples shared between the account state and its summaries: a summary is made for
/// every changed account at every tick, and copying five 300-character prompts each time would
/// cost more than the scoring. Copy-on-write on the rare sample update.
#[derive(Debug, Clone, Default)]
pub struct SharedSamples(pub(super) Option<Arc<Vec<SamplePrompt>>>);

/// No samples is no allocation: an account with samples turned off (or no prompt yet) holds a
/// null pointer rather than a shared empty list (40 bytes per account at a million accounts).
impl PartialEq for SharedSamples {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::ops::Deref for SharedSamples {
    type Target = [SamplePrompt];

    fn deref(&self) -> &[SamplePrompt] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl SharedSamples {
    pub fn new(samples: Vec<SamplePrompt>) -> Self {
        Self((!samples.is_empty()).then(|| Arc::new(samples)))
    }

    pub fn to_vec(&self) -> Vec<SamplePrompt> {
        (**self).to_vec()
    }
}

impl Serialize for SharedSamples {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedSamples {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::new(Vec::deserialize(deserializer)?))
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
/// the per-account values the cluster linker joins on.
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
    /// Requests logged out of order within a sitting (at most 30 minutes before the latest).
    #[serde(default)]
    pub late_in_sitting: u64,
    pub prompts: u64,
    pub distinct_prompts: u64,
    /// Herdan's C (log distinct / log total) of the subject words of the current (or, while it
    /// is young, the previous) vocabulary window, corrected to the length of a full window;
    /// `None` below `MIN_VOCABULARY_WORDS` words.
    pub vocabulary_richness: Option<f64>,
    pub subject_words: u64,
    /// Distinct subject words while there are too few for a richness (linker: the richness of a
    /// cluster of young accounts is measured over their union).
    #[serde(default)]
    pub young_vocabulary: Option<Box<super::VocabularyCounter>>,
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
    /// Requests asking for two or more alternatives per position (`top_logprobs`, `n`), and
    /// the alternatives they asked for in all.
    #[serde(default)]
    pub distribution_requests: u64,
    #[serde(default)]
    pub distribution_alternatives: u64,
    /// Session openers that repeat a recent opener.
    #[serde(default)]
    pub opener_repeats: u64,
    /// Later turns that re-send the task of a recent session opener (agent loops).
    #[serde(default)]
    pub task_resends: u64,
    /// Later turns four or more rounds into their session.
    #[serde(default)]
    pub deep_turns: u64,
    pub models: Vec<ModelUse>,
    /// Most used client IPs (linker: shared IPs and /24s).
    pub client_ips: Vec<IpAddr>,
    pub distinct_ips: u64,
    /// Bottom-k samples of the link keys of every client IP and every /24 (IPv6 /48) the account
    /// used, ascending (linker: shared proxy-pool addresses; see `sketch::bottomk`).
    #[serde(default)]
    pub ip_sample: Vec<u64>,
    #[serde(default)]
    pub subnet_sample: Vec<u64>,
    /// Bottom-k sample of the LSH band keys of the account's prompts, ascending (linker:
    /// near-duplicate prompts across accounts; see `sketch::lsh`).
    #[serde(default)]
    pub content_sample: Vec<u64>,
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

    /// Mean alternatives per position asked for by the requests that asked for two or more
    /// (`top_logprobs` or `n`); 0 when none did.
    pub fn mean_alternatives(&self) -> f64 {
        if self.distribution_requests == 0 {
            0.0
        } else {
            self.distribution_alternatives as f64 / self.distribution_requests as f64
        }
    }

    /// Later turns (message count above one user turn after an optional system prompt).
    pub fn continuations(&self) -> u64 {
        self.turns_known.saturating_sub(self.single_turn)
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
