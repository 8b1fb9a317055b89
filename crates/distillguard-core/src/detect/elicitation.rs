//! Elicitation: the request is built to extract more than an answer — a reasoning trace, token
//! probabilities, several samples, or very long outputs.
//!
//! Components (shares over the account's requests), combined by noisy-OR:
//! - reasoning demands in the prompt or system prompt ("step by step", "chain of thought",
//!   "explain your reasoning", ...): 0.2 → 0, 0.6 → 0.95;
//! - `logprobs` / `top_logprobs`: 0.3 → 0, 0.8 → 0.6 (classifiers use logprobs too), up to 0.9
//!   as the alternatives asked for widen from 5 to 15 per position (a distribution, not a
//!   label's confidence: see `distribution`);
//! - `n` > 1: 0.3 → 0, 0.8 → 0.6;
//! - long outputs: mean completion tokens 600 → 0, 1,500 → 0.5;
//! - `max_tokens` ≥ 4,096: 0.5 → 0, 0.9 → 0.3.
//!
//! Scaled by a request-count confidence (3 → 0, 12 → 1).
//!
//! Reasoning demands are left out while the account is a person studying: its whole history one
//! sitting of under four hours with a follow-up in it, or sittings on separate evenings with a
//! follow-up per sitting and no more than two evenings' questions a day (`sitting`).

use super::{measurement, noisy_or, ramp, Context, Detector, Role};
use crate::features::{AccountSummary, LARGE_MAX_TOKENS};
use crate::finding::Evidence;

pub struct Elicitation;

struct Parts {
    reasoning: f64,
    studying: bool,
    logprobs: f64,
    multi: f64,
    mean_completion: f64,
    large_max: f64,
    components: [f64; 5],
    confidence: f64,
}

fn parts(a: &AccountSummary) -> Parts {
    let reasoning = a.share(a.reasoning_prompts.max(a.reasoning_system), a.events);
    let logprobs = a.share(a.logprobs, a.events);
    let multi = a.share(a.multi_sample, a.events);
    let mean_completion = a.mean_completion_tokens();
    let large_max = a.share(a.large_max_tokens, a.events);
    let studying = super::sitting::studying(a);
    Parts {
        reasoning,
        studying,
        logprobs,
        multi,
        mean_completion,
        large_max,
        components: [
            if studying {
                0.0
            } else {
                0.95 * ramp(reasoning, 0.2, 0.6)
            },
            (0.6 + 0.3 * super::distribution::width_factor(a)) * ramp(logprobs, 0.3, 0.8),
            0.6 * ramp(multi, 0.3, 0.8),
            0.5 * ramp(mean_completion, 600.0, 1_500.0),
            0.3 * ramp(large_max, 0.5, 0.9),
        ],
        confidence: ramp(a.events as f64, 3.0, 12.0),
    }
}

impl Detector for Elicitation {
    fn name(&self) -> &'static str {
        "elicitation"
    }

    fn role(&self) -> Role {
        Role::Pressure { weight: 1.0 }
    }

    fn score(&self, account: &AccountSummary, _context: &Context<'_>) -> f64 {
        let p = parts(account);
        p.confidence * noisy_or(&p.components)
    }

    fn evidence(&self, account: &AccountSummary, _context: &Context<'_>, score: f64) -> Evidence {
        let p = parts(account);
        let mut reasons = Vec::new();
        if p.components[0] > 0.0 {
            reasons.push(format!(
                "{:.0}% of requests demand step-by-step or complete reasoning",
                p.reasoning * 100.0
            ));
        }
        if p.studying && ramp(p.reasoning, 0.2, 0.6) > 0.0 {
            let span_minutes =
                (account.last_seen.epoch_ms() - account.first_seen.epoch_ms()) / 60_000;
            let sittings = super::sitting::sittings(account);
            let how = if sittings <= 1 {
                format!("one sitting of {span_minutes} minutes")
            } else {
                format!(
                    "{sittings} sittings over {:.1} days, {} requests in 24h",
                    span_minutes as f64 / 1_440.0,
                    account.events_last_24h
                )
            };
            reasons.push(format!(
                "{:.0}% of requests demand step-by-step reasoning, not counted: {how} with {} follow-ups",
                p.reasoning * 100.0,
                super::sitting::follow_ups(account)
            ));
        }
        if p.components[1] > 0.0 {
            reasons.push(format!("{:.0}% ask for logprobs", p.logprobs * 100.0));
        }
        if p.components[2] > 0.0 {
            reasons.push(format!("{:.0}% ask for n>1 samples", p.multi * 100.0));
        }
        if p.components[3] > 0.0 {
            reasons.push(format!("mean {:.0} completion tokens", p.mean_completion));
        }
        if p.components[4] > 0.0 {
            reasons.push(format!(
                "{:.0}% set max_tokens >= {LARGE_MAX_TOKENS}",
                p.large_max * 100.0
            ));
        }
        if reasons.is_empty() {
            reasons.push("no reasoning demands or extraction parameters".to_owned());
        }
        Evidence {
            summary: format!("{}; score {score:.2}", reasons.join("; ")),
            measurements: vec![
                measurement(
                    "reasoning_demand_share",
                    p.reasoning,
                    Some(0.6),
                    None,
                    "lifetime",
                ),
                measurement("logprobs_share", p.logprobs, Some(0.8), None, "lifetime"),
                measurement("n_gt_1_share", p.multi, Some(0.8), None, "lifetime"),
                measurement(
                    "mean_completion_tokens",
                    p.mean_completion,
                    Some(1_500.0),
                    None,
                    "lifetime",
                ),
                measurement(
                    "large_max_tokens_share",
                    p.large_max,
                    Some(0.9),
                    None,
                    "lifetime",
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};
    use crate::event::ApiEvent;

    fn score(events: &[ApiEvent]) -> f64 {
        let account = summarise(events);
        let population = population(100, 100, 10_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        Elicitation.score(&account, &context(&population, &models, &config, 0))
    }

    #[test]
    fn reasoning_demands_in_most_prompts_score_high() {
        let events: Vec<_> = (0..100)
            .map(|i| {
                event(
                    i * 60_000,
                    &format!(
                        "{} Think step by step and show your work.",
                        diverse_prompt(i as usize)
                    ),
                )
            })
            .collect();
        assert!(score(&events) > 0.9);
    }

    #[test]
    fn a_reasoning_system_prompt_counts_for_every_request() {
        let events: Vec<_> = (0..100)
            .map(|i| {
                let mut e = event(i * 60_000, &diverse_prompt(i as usize));
                e.system_prompt = Some("You are an expert analyst. Support every answer with complete and transparent reasoning.".into());
                e.messages = Some(2);
                e
            })
            .collect();
        assert!(score(&events) > 0.9);
    }

    #[test]
    fn logprobs_with_several_samples_and_long_outputs_score_high() {
        let events: Vec<_> = (0..100)
            .map(|i| {
                let mut e = event(i * 60_000, &diverse_prompt(i as usize));
                e.params.logprobs = Some(true);
                e.params.top_logprobs = Some(5);
                e.params.n = Some(4);
                e.usage.completion_tokens = Some(2_000);
                e
            })
            .collect();
        let s = score(&events);
        assert!(s > 0.85, "{s}");
    }

    #[test]
    fn a_classifier_reading_logprobs_of_one_token_answers_stays_below_flag_level() {
        let events: Vec<_> = (0..100)
            .map(|i| {
                let mut e = event(i * 60_000, &diverse_prompt(i as usize));
                e.params.logprobs = Some(true);
                e.params.max_tokens = Some(1);
                e.params.temperature = Some(0.0);
                e.usage.completion_tokens = Some(1);
                e
            })
            .collect();
        let s = score(&events);
        assert!(s <= 0.6, "{s}");
    }

    #[test]
    fn a_students_step_by_step_evening_with_a_follow_up_does_not_count_its_demands() {
        // Thirty questions three minutes apart, every one asking for steps, one follow-up.
        let mut evening: Vec<_> = (0..30)
            .map(|i| {
                event(
                    i * 180_000,
                    &format!("explain step by step: {}", diverse_prompt(i as usize)),
                )
            })
            .collect();
        assert!(score(&evening) > 0.9, "{}", score(&evening));
        evening[7].prompt = Some("i don't get step 2".into());
        evening[7].messages = Some(3);
        assert_eq!(score(&evening), 0.0);
        // A question the next evening: still a student's evenings of study.
        let mut next = evening.clone();
        next.push(event(
            24 * 3_600_000,
            "explain step by step: how do tides work?",
        ));
        assert_eq!(score(&next), 0.0);
        // A hundred the next day, more than a person asks in an evening: demands count again.
        next.extend((30..130).map(|i| {
            event(
                24 * 3_600_000 + (i - 29) * 60_000,
                &format!("explain step by step: {}", diverse_prompt(i as usize)),
            )
        }));
        assert!(score(&next) > 0.9, "{}", score(&next));
    }

    #[test]
    fn plain_chat_scores_nothing() {
        let events: Vec<_> = (0..100)
            .map(|i| event(i * 60_000, &diverse_prompt(i as usize)))
            .collect();
        assert_eq!(score(&events), 0.0);
    }
}
