//! The detector suite: small types behind one trait, each turning an account summary into a
//! score in [0,1] with evidence (measured value, baseline or threshold, window).
//!
//! Scores are computed for every changed account at every tick, so [`Detector::score`] is cheap
//! and allocation-free; [`Detector::evidence`] builds the analyst text only for accounts that get
//! a finding. How the scores combine into one risk is in [`combine`]; the reasoning behind every
//! number is in `docs/detectors.md`.

pub mod automation;
pub mod combine;
pub mod coverage;
pub mod distribution;
pub mod elicitation;
pub mod fresh;
pub mod pivot;
pub mod rerun;
pub mod sessions;
pub(crate) mod sitting;
pub mod templating;
#[cfg(test)]
mod traps;
pub mod volume;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::features::AccountSummary;
use crate::finding::{Evidence, Measurement};
use crate::population::PopulationView;
use crate::time::EventTime;

/// Tunable detector settings (defaults documented in `docs/detectors.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectorConfig {
    /// Population percentile the volume detector compares with ...
    pub volume_percentile: f64,
    /// ... times this multiplier (a busy ordinary account is not an outlier).
    pub volume_multiplier: f64,
    /// Below this many accounts the population says nothing and only the floors apply.
    pub min_population: u64,
    /// Floors under the population baseline, so a quiet population does not make a modest
    /// account look huge: requests in the last hour, in 24 hours, completion tokens in 24 hours.
    pub min_requests_last_hour: f64,
    pub min_requests_24h: f64,
    pub min_completion_tokens_24h: f64,
    pub min_completion_tokens_last_hour: f64,
    /// Prompts needed before the text-based detectors speak with full confidence.
    pub min_prompts: u64,
    /// A model first seen this long after the engine started is "newly released".
    pub model_warmup_ms: i64,
    /// ... and counts as new for this long after it first appeared.
    pub new_model_window_ms: i64,
    /// Score at or above which a detector counts as "fired" in the metrics.
    pub fire_threshold: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            volume_percentile: 0.9,
            volume_multiplier: 1.0,
            min_population: 30,
            min_requests_last_hour: 120.0,
            min_requests_24h: 1_000.0,
            min_completion_tokens_24h: 400_000.0,
            min_completion_tokens_last_hour: 40_000.0,
            min_prompts: 16,
            model_warmup_ms: 6 * EventTime::HOUR,
            new_model_window_ms: 7 * EventTime::DAY,
            fire_threshold: 0.5,
        }
    }
}

/// Models seen by the whole population, with when each first appeared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRegistry {
    /// Earliest event time the engine saw anything (a model seen then was not "released" then).
    pub stream_start: Option<EventTime>,
    pub first_seen: BTreeMap<String, EventTime>,
    /// Names not remembered because the registry held `MAX_MODELS` already (names come from
    /// clients: a flood of made-up names must not grow memory, and the names already known keep
    /// their first-seen times).
    #[serde(default)]
    pub ignored: u64,
}

/// Cap on distinct model names remembered; more are ignored (names come from clients).
const MAX_MODELS: usize = 4_096;

impl ModelRegistry {
    pub fn observe(&mut self, summary: &AccountSummary) {
        self.stream_start = Some(
            self.stream_start
                .map_or(summary.first_seen, |s| s.min(summary.first_seen)),
        );
        for model in &summary.models {
            let full = self.first_seen.len() >= MAX_MODELS;
            match self.first_seen.get_mut(model.model.as_str()) {
                Some(first) => *first = (*first).min(model.first_used),
                None if !full => {
                    self.first_seen
                        .insert(model.model.as_str().to_owned(), model.first_used);
                }
                None => self.ignored += 1,
            }
        }
    }

    /// When the model first appeared, if it appeared after the warm-up (a release we watched).
    pub fn released_at(&self, model: &str, config: &DetectorConfig) -> Option<EventTime> {
        let start = self.stream_start?;
        let first = *self.first_seen.get(model)?;
        (first.epoch_ms() >= start.epoch_ms() + config.model_warmup_ms).then_some(first)
    }
}

/// Everything a detector may compare an account with.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub at: EventTime,
    pub population: &'a PopulationView,
    pub models: &'a ModelRegistry,
    pub config: &'a DetectorConfig,
}

/// How the combination ([`combine`]) uses a detector's score. A detector declares its role, so
/// adding one is its file plus one line in [`suite`]; nothing else names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// Breadth of what the account asks (the harvest's spread over subjects): the risk's first
    /// factor is the strongest breadth score.
    Breadth,
    /// Pressure to extract at scale (volume, elicitation, automation...): joins the noisy-OR
    /// with this weight.
    Pressure { weight: f64 },
    /// Something worth harvesting besides long answer text (token distributions, several
    /// samples): the output-yield factor is the larger of the completion-size yield and the
    /// strongest of these.
    Yield,
}

/// One detector. Implementations are stateless: all state lives in the account summary and the
/// population, so checkpoints only need those.
pub trait Detector: Send + Sync {
    fn name(&self) -> &'static str;
    fn role(&self) -> Role;
    /// Score in [0,1]; cheap, called for every changed account at every tick.
    fn score(&self, account: &AccountSummary, context: &Context<'_>) -> f64;
    /// The evidence behind `score`, for analysts.
    fn evidence(&self, account: &AccountSummary, context: &Context<'_>, score: f64) -> Evidence;
    /// A breadth detector's answer to "is a habit of people measured here?": on enough requests
    /// to judge, one of its factors is at zero because of something people (or an app on one
    /// subject) do and a harvest does not — re-asking, following up, staying on a subject. Only
    /// breadth detectors answer; the others, and a new breadth detector until it says, never
    /// clear anyone (see [`breadth_cleared`]).
    fn clears(&self, _account: &AccountSummary, _config: &DetectorConfig) -> bool {
        false
    }
}

/// Every breadth detector is held at zero by a measured habit of people: the subject looks like
/// a person (or an app on one subject) and could not be flagged as it is, whatever its pressure
/// (the risk is at most the square root of the breadth). A shared account uses it to hand an end
/// user's own state on to the next heavy end user (`features::end_users`).
pub fn breadth_cleared(account: &AccountSummary, config: &DetectorConfig) -> bool {
    static SUITE: std::sync::LazyLock<Vec<Box<dyn Detector>>> = std::sync::LazyLock::new(suite);
    SUITE
        .iter()
        .filter(|d| d.role() == Role::Breadth)
        .all(|d| d.clears(account, config))
}

/// Linear ramp: 0 at or below `low`, 1 at or above `high`.
pub fn ramp(value: f64, low: f64, high: f64) -> f64 {
    if value.is_nan() {
        return 0.0;
    }
    if high <= low {
        return if value >= high { 1.0 } else { 0.0 };
    }
    ((value - low) / (high - low)).clamp(0.0, 1.0)
}

/// Probability that at least one of several independent indicators is right.
pub fn noisy_or(parts: &[f64]) -> f64 {
    1.0 - parts
        .iter()
        .map(|p| 1.0 - p.clamp(0.0, 1.0))
        .product::<f64>()
}

pub(crate) fn measurement(
    name: &str,
    value: f64,
    threshold: Option<f64>,
    baseline: Option<f64>,
    window: &str,
) -> Measurement {
    Measurement {
        name: name.to_owned(),
        value: round4(value),
        threshold: threshold.map(round4),
        baseline: baseline.map(round4),
        window: Some(window.to_owned()),
    }
}

/// Evidence numbers are for reading: four decimals are plenty and keep reports stable.
pub(crate) fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Confidence in text ratios: none below a handful of prompts, full at `min_prompts`.
pub(crate) fn prompt_confidence(account: &AccountSummary, config: &DetectorConfig) -> f64 {
    ramp(
        account.prompts as f64,
        (config.min_prompts / 4) as f64,
        config.min_prompts as f64,
    )
}

/// The built-in suite, in the order signals are listed: the registration of every detector.
pub fn suite() -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(volume::Volume),
        Box::new(automation::Automation),
        Box::new(coverage::Coverage),
        Box::new(templating::Templating),
        Box::new(elicitation::Elicitation),
        Box::new(pivot::ModelPivot),
        Box::new(sessions::SessionCoverage),
        Box::new(distribution::DistributionHarvest),
        Box::new(fresh::FreshStart),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Hand-built accounts for the detector tests: run events through the real per-account state.
    use super::*;
    use crate::engine::EngineConfig;
    use crate::event::{AccountId, ApiEvent, ModelName};
    use crate::features::AccountState;
    use crate::population::PopulationView;

    pub const BASE: i64 = 1_764_000_000_000;

    pub fn event(ms: i64, prompt: &str) -> ApiEvent {
        let mut e = ApiEvent::new(
            EventTime::from_epoch_ms(BASE + ms).unwrap(),
            AccountId::parse("acct").unwrap(),
            ModelName::parse("model-a").unwrap(),
        );
        e.prompt = Some(prompt.to_owned());
        e.messages = Some(1);
        e.usage.prompt_tokens = Some(40);
        e.usage.completion_tokens = Some(300);
        e
    }

    pub fn summarise(events: &[ApiEvent]) -> AccountSummary {
        let config = EngineConfig::default();
        let mut state = AccountState::new(events[0].timestamp);
        for e in events {
            state.observe(e, &config);
        }
        let at = events.iter().map(|e| e.timestamp).max().unwrap().plus_ms(1);
        state.summary(&events[0].account_id, at)
    }

    /// A population of `n` ordinary accounts with the given daily requests and tokens.
    pub fn population(n: u64, requests_day: u64, tokens_day: u64) -> PopulationView {
        use crate::population::*;
        let mut p = Population::default();
        let mut d = PopulationDelta::default();
        for i in 0..n {
            let jitter = 1 + i % 3;
            d.record(
                REQUESTS_HOUR,
                NO_BUCKET,
                bucket_of(requests_day * jitter / 12),
            );
            d.record(REQUESTS_DAY, NO_BUCKET, bucket_of(requests_day * jitter));
            d.record(TOKENS_DAY, NO_BUCKET, bucket_of(tokens_day * jitter));
            d.record(TOKENS_HOUR, NO_BUCKET, bucket_of(tokens_day * jitter / 12));
        }
        p.apply(&d);
        p.view(0.99)
    }

    pub fn context<'a>(
        population: &'a PopulationView,
        models: &'a ModelRegistry,
        config: &'a DetectorConfig,
        at_ms: i64,
    ) -> Context<'a> {
        Context {
            at: EventTime::from_epoch_ms(BASE + at_ms).unwrap(),
            population,
            models,
            config,
        }
    }

    /// A pseudo-word unique to `k` (at least six letters), for vocabulary that never repeats.
    pub fn word(k: usize) -> String {
        const SYLLABLES: [&str; 16] = [
            "ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vi", "zo", "ba", "de", "fu", "gi",
            "ho", "ju",
        ];
        let mut out = String::from("qu");
        let mut k = k + 4_096;
        while k > 0 {
            out.push_str(SYLLABLES[k % 16]);
            k /= 16;
        }
        out
    }

    /// Distinct prompts on ever-new subjects (no content word shared between any two).
    pub fn diverse_prompt(i: usize) -> String {
        format!("How do {} and {} fit?", word(2 * i), word(2 * i + 1))
    }
}
