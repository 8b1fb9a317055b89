//! Templating: most prompts share a few skeletons while their fills are all distinct — the
//! signature of systematic dataset generation ("Explain {topic} step by step", × 10,000 topics).
//!
//! Skeleton keys are the first five and last three words of each prompt with digits masked
//! (`text.rs`); an account's top three keys at either end are tracked with Misra–Gries counters,
//! which never overcount. Score = template share (0.5 → 0, 0.85 → 1) × fill distinctness
//! (distinct ratio 0.75 → 0, 0.9 → 1) × prompt-count confidence.
//!
//! Production apps, batch jobs and benchmark runners are templated too: on its own this detector
//! never flags (see `combine`); it strengthens the case when coverage is also wide.

use super::{measurement, prompt_confidence, ramp, Context, Detector, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;

pub struct Templating;

fn factors(account: &AccountSummary, context: &Context<'_>) -> (f64, f64, f64) {
    let share = account.skeleton_share();
    let distinct = account.distinct_ratio();
    let score = prompt_confidence(account, context.config)
        * ramp(share, 0.5, 0.85)
        * ramp(distinct, 0.75, 0.9);
    (share, distinct, score)
}

impl Detector for Templating {
    fn name(&self) -> &'static str {
        "templating"
    }

    fn role(&self) -> Role {
        Role::Pressure { weight: 0.5 }
    }

    fn score(&self, account: &AccountSummary, context: &Context<'_>) -> f64 {
        factors(account, context).2
    }

    fn evidence(&self, account: &AccountSummary, context: &Context<'_>, score: f64) -> Evidence {
        let (share, distinct, _) = factors(account, context);
        let prefix = account.skeleton_prefixes.first().map_or(0, |(_, c)| *c);
        let suffix = account.skeleton_suffixes.first().map_or(0, |(_, c)| *c);
        let end = if prefix >= suffix {
            "opening"
        } else {
            "closing"
        };
        Evidence {
            summary: format!(
                "{:.0}% of {} prompts share one of 3 {} skeletons, {:.0}% of fills distinct; score {score:.2}",
                share * 100.0,
                account.prompts,
                end,
                distinct * 100.0
            ),
            measurements: vec![
                measurement("top3_skeleton_share", share, Some(0.85), None, "lifetime"),
                measurement("distinct_prompt_ratio", distinct, Some(0.9), None, "lifetime"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};

    fn score(prompts: impl Iterator<Item = String>) -> f64 {
        let events: Vec<_> = prompts
            .enumerate()
            .map(|(i, p)| event(i as i64 * 10_000, &p))
            .collect();
        let account = summarise(&events);
        let population = population(100, 100, 10_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        Templating.score(&account, &context(&population, &models, &config, 0))
    }

    #[test]
    fn one_template_with_distinct_fills_is_templated_at_either_end() {
        let leading =
            score((0..400).map(|i| format!("Explain {} to a child, step by step", word(i))));
        assert!(leading > 0.9, "{leading}");
        let trailing = score(
            (0..400).map(|i| format!("Write a quiz about {} and {}", word(i), word(i + 7_000))),
        );
        assert!(trailing > 0.9, "{trailing}");
    }

    #[test]
    fn free_form_questions_are_not_templated() {
        let s = score((0..400).map(diverse_prompt_free_form));
        assert!(s < 0.1, "{s}");
    }

    #[test]
    fn the_same_templated_prompt_re_run_is_not_systematic_generation() {
        // A benchmark re-running 50 questions eight times.
        let s =
            score((0..400).map(|i| format!("Question: {}? Answer with one letter.", word(i % 50))));
        assert!(s < 0.05, "{s}");
    }

    fn diverse_prompt_free_form(i: usize) -> String {
        let openers = [
            "why", "how", "can", "is", "what", "when", "who", "should", "does", "where",
        ];
        let closers = [
            "today",
            "now",
            "really",
            "at all",
            "in practice",
            "for me",
            "exactly",
        ];
        format!(
            "{} {} {} {} {}",
            openers[i % 10],
            word(i),
            word(i + 9_000),
            word(i + 18_000),
            closers[(i / 10) % 7]
        )
    }
}
