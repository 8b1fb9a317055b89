//! Distribution harvest: the account takes the model's token distributions, not its text.
//!
//! Logit distillation trains a student on the teacher's probabilities, and the published attacks
//! on production models (Carlini et al. 2024, Finlayson et al. 2024) read them through
//! `logprobs`/`top_logprobs`: a request with `max_tokens` of a few tokens and the widest
//! `top_logprobs` the API allows returns a small distribution per position and almost no text.
//! Such an account has tiny completions, so the text yield of the combination would zero it;
//! this detector is the other kind of yield ([`Role::Yield`]).
//!
//! - distribution share: requests asking for two or more alternatives per position
//!   (`top_logprobs` >= 2 or `n` >= 2) over all requests, 0.3 → 0, 0.8 → 1;
//! - width: mean alternatives those requests ask for, 5 → 0, 15 → 1. A classifier reading a
//!   label's confidence, or a multiple-choice benchmark scoring A–D, needs at most five (the
//!   historic API cap); asking for nearly the whole distribution the API offers (20 today) is
//!   what distillation wants;
//! - one fixed instruction: the share of prompts under the account's top three skeletons
//!   (`templating`), 0.5 → no penalty, 0.8 → 0. A batch classifier, grader or multiple-choice
//!   benchmark wraps every input in the same instruction and reads the distribution over its
//!   few labels; a distribution harvest sends the broad inputs themselves;
//! - confidence in the number of requests (3 → 0, 12 → 1).
//!
//! Breadth is left to the combination, which multiplies by coverage: a benchmark re-running its
//! question set has none.

use super::{measurement, ramp, Context, Detector, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;

pub struct DistributionHarvest;

/// Mean alternatives per position where the width factor starts and saturates.
const WIDTH_LOW: f64 = 5.0;
const WIDTH_HIGH: f64 = 15.0;

struct Parts {
    share: f64,
    width: f64,
    template: f64,
    score: f64,
}

fn parts(a: &AccountSummary) -> Parts {
    let share = a.share(a.distribution_requests, a.events);
    let width = a.mean_alternatives();
    let template = a.skeleton_share();
    Parts {
        share,
        width,
        template,
        score: ramp(a.events as f64, 3.0, 12.0)
            * ramp(share, 0.3, 0.8)
            * ramp(width, WIDTH_LOW, WIDTH_HIGH)
            * (1.0 - ramp(template, 0.5, 0.8)),
    }
}

/// How wide the distributions an account asks for are, 0 to 1 (elicitation's logprob part).
pub(crate) fn width_factor(a: &AccountSummary) -> f64 {
    ramp(a.mean_alternatives(), WIDTH_LOW, WIDTH_HIGH)
}

impl Detector for DistributionHarvest {
    fn name(&self) -> &'static str {
        "distribution_harvest"
    }

    fn role(&self) -> Role {
        Role::Yield
    }

    fn score(&self, account: &AccountSummary, _context: &Context<'_>) -> f64 {
        parts(account).score
    }

    fn evidence(&self, account: &AccountSummary, _context: &Context<'_>, score: f64) -> Evidence {
        let p = parts(account);
        Evidence {
            summary: format!(
                "{:.0}% of requests ask for several alternatives per position, {:.1} on average (top_logprobs or n), mean {:.0} completion tokens, {:.0}% under one of 3 fixed instructions; score {score:.2}",
                p.share * 100.0,
                p.width,
                account.mean_completion_tokens(),
                p.template * 100.0
            ),
            measurements: vec![
                measurement("distribution_share", p.share, Some(0.8), None, "lifetime"),
                measurement("mean_alternatives", p.width, Some(WIDTH_HIGH), None, "lifetime"),
                measurement("top3_skeleton_share", p.template, Some(0.5), None, "lifetime"),
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
        DistributionHarvest.score(&account, &context(&population, &models, &config, 0))
    }

    fn calls(top: Option<u32>, n: Option<u32>, completion: u32) -> Vec<ApiEvent> {
        (0..100)
            .map(|i| {
                let mut e = event(i * 60_000, &diverse_prompt(i as usize));
                e.params.logprobs = top.map(|_| true);
                e.params.top_logprobs = top;
                e.params.n = n;
                e.params.max_tokens = Some(5);
                e.usage.completion_tokens = Some(completion);
                e
            })
            .collect()
    }

    #[test]
    fn the_widest_top_logprobs_on_tiny_outputs_is_a_distribution_harvest() {
        assert_eq!(score(&calls(Some(20), None, 3)), 1.0);
        // Sampling twenty answers of one token each estimates the same distribution.
        assert_eq!(score(&calls(None, Some(20), 20)), 1.0);
    }

    #[test]
    fn a_batch_classifier_asking_for_wide_logprobs_under_one_instruction_is_not() {
        let events: Vec<_> = calls(Some(20), None, 1)
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.prompt = Some(format!(
                    "Classify the sentiment of this review as positive or negative: {}",
                    diverse_prompt(i)
                ));
                e
            })
            .collect();
        assert_eq!(score(&events), 0.0);
    }

    #[test]
    fn a_classifier_or_benchmark_reading_five_alternatives_is_not() {
        assert_eq!(score(&calls(Some(5), None, 1)), 0.0);
        assert_eq!(score(&calls(Some(1), None, 1)), 0.0);
        assert_eq!(score(&calls(None, None, 1)), 0.0);
    }
}
