//! Re-runs of a bounded prompt set across models: what an evaluation lab does.
//!
//! A lab runs one fixed question set — a benchmark in a chain-of-thought harness — against one
//! model after another. Its first pass is, per account, a templated reasoning harvest: broad
//! questions, a fixed "think step by step" frame, long answers, at volume; the engine flags it.
//! The next pass tells them apart: a harvester keeps bringing new prompts (new prompts are what
//! it harvests), a lab asks the same ones again of another model, so its distinct prompts stop
//! growing while its requests keep growing. A flagged account whose traffic has become such a
//! re-run, and whose current risk is below the threshold, is cleared ([`bounded_rerun`]).
//!
//! Gaming it costs the harvester: re-asking its whole set of another model pays for every
//! prompt twice for nothing new, and any new prompts raise the distinct ratio (and the risk)
//! again. The flag stood while it harvested.
//!
//! A lab also re-runs a set on the **same** model: after a model update, to check its harness,
//! or to measure run-to-run variance. Asked again greedily (temperature 0), a model gives the
//! same answers, so such a repeat brings a harvester nothing either; repeats at a higher
//! temperature are how a distribution harvest samples several answers per prompt, and are not
//! cleared on one model.

use super::DetectorConfig;
use crate::features::AccountSummary;

/// Distinct prompts over prompts at or below which the set has been asked twice on average
/// (0.5, plus the distinct counter's few-percent error: HyperLogLog p = 10).
pub const RERUN_MAX_DISTINCT_RATIO: f64 = 0.55;
/// Models, each asked at least half as many requests as the set has distinct prompts (most of a
/// pass), for the repetition to be a re-run across models rather than one model asked again.
pub const RERUN_MIN_MODELS: usize = 2;
/// Share of requests at temperature 0 for a re-run on one model to count: greedy answers asked
/// again are the answers already given (a harness may leave a few requests at its default).
pub const RERUN_GREEDY_SHARE: f64 = 0.9;

/// When the account re-runs a bounded prompt set across models: the evidence, for analysts.
pub fn bounded_rerun(account: &AccountSummary, config: &DetectorConfig) -> Option<String> {
    let ratio = account.distinct_ratio();
    if account.prompts < 2 * config.min_prompts || ratio > RERUN_MAX_DISTINCT_RATIO {
        return None;
    }
    let pass = account.distinct_prompts.div_ceil(2);
    let models = account.models.iter().filter(|m| m.events >= pass).count();
    let greedy = account.share(account.temperature_zero, account.events) >= RERUN_GREEDY_SHARE;
    let asked = 1.0 / ratio.max(f64::EPSILON);
    if models >= RERUN_MIN_MODELS {
        Some(format!(
            "cleared as a re-run of a bounded prompt set: {} distinct prompts asked {asked:.1} times each on average, {models} models each asked at least {pass}",
            account.distinct_prompts,
        ))
    } else if greedy && models == 1 {
        Some(format!(
            "cleared as a re-run of a bounded prompt set on one model at temperature 0: {} distinct prompts asked {asked:.1} times each on average",
            account.distinct_prompts,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::event::ModelName;

    /// `passes` passes over a set of `questions` chain-of-thought questions, pass `p` on model
    /// `models[p % models.len()]`.
    fn passes(questions: usize, passes: usize, models: &[&str]) -> Vec<crate::event::ApiEvent> {
        let mut events = Vec::new();
        for p in 0..passes {
            for q in 0..questions {
                let t = ((p * questions + q) * 2_000) as i64;
                let mut e = event(
                    t,
                    &format!("{} Let's think step by step.", diverse_prompt(q)),
                );
                e.model = ModelName::parse(models[p % models.len()]).unwrap();
                events.push(e);
            }
        }
        events
    }

    #[test]
    fn a_question_set_re_run_on_a_second_model_is_a_bounded_rerun() {
        let account = summarise(&passes(300, 2, &["model-a", "model-b"]));
        let evidence = bounded_rerun(&account, &DetectorConfig::default()).expect("re-run");
        assert!(evidence.contains("2 models"), "{evidence}");
    }

    fn final_finding(events: &[crate::event::ApiEvent]) -> crate::finding::AccountFinding {
        let mut engine = crate::engine::Engine::new(crate::engine::EngineConfig::default(), 1);
        for e in events {
            engine.process(e);
        }
        engine.finish();
        engine.report().accounts.remove(0)
    }

    #[test]
    fn a_lab_flagged_in_its_first_pass_is_cleared_by_its_re_run_on_another_model() {
        let first = final_finding(&passes(600, 1, &["model-a"]));
        assert!(
            first.flagged,
            "the first pass alone is a templated reasoning harvest"
        );
        let lab = final_finding(&passes(600, 2, &["model-a", "model-b"]));
        assert!(!lab.flagged, "{lab:?}");
        assert!(lab.first_flagged_at.is_some());
        assert!(lab.signals[0]
            .evidence
            .summary
            .starts_with("cleared as a re-run"));
    }

    #[test]
    fn a_first_pass_is_not_a_rerun() {
        let account = summarise(&passes(300, 1, &["model-a"]));
        assert!(bounded_rerun(&account, &DetectorConfig::default()).is_none());
    }

    #[test]
    fn a_harvest_that_keeps_bringing_new_prompts_to_two_models_is_not_a_rerun() {
        // Same volume and models as a two-pass lab, but every prompt new.
        let account = summarise(&passes(600, 1, &["model-a"]));
        let mut events = passes(600, 1, &["model-a"]);
        for (i, e) in events.iter_mut().enumerate().skip(300) {
            e.model = ModelName::parse("model-b").unwrap();
            e.prompt = Some(diverse_prompt(10_000 + i));
        }
        assert!(bounded_rerun(&account, &DetectorConfig::default()).is_none());
        assert!(bounded_rerun(&summarise(&events), &DetectorConfig::default()).is_none());
    }

    #[test]
    fn one_model_asked_the_same_questions_again_is_not_a_rerun_across_models() {
        let account = summarise(&passes(300, 2, &["model-a"]));
        assert!(bounded_rerun(&account, &DetectorConfig::default()).is_none());
    }

    #[test]
    fn a_set_re_run_greedily_on_the_same_model_is_a_rerun_and_sampled_again_is_not() {
        let at = |temperature: f64| {
            let mut events = passes(300, 2, &["model-a"]);
            for e in &mut events {
                e.params.temperature = Some(temperature);
            }
            summarise(&events)
        };
        let evidence = bounded_rerun(&at(0.0), &DetectorConfig::default()).expect("re-run");
        assert!(evidence.contains("temperature 0"), "{evidence}");
        // Several samples of every prompt at temperature 1: a distribution harvest.
        assert!(bounded_rerun(&at(1.0), &DetectorConfig::default()).is_none());
        // A first pass at temperature 0 is still a first pass.
        let mut first = passes(300, 1, &["model-a"]);
        for e in &mut first {
            e.params.temperature = Some(0.0);
        }
        assert!(bounded_rerun(&summarise(&first), &DetectorConfig::default()).is_none());
    }

    #[test]
    fn a_lab_re_running_its_set_greedily_on_the_same_model_the_next_day_is_cleared() {
        let mut events = passes(600, 2, &["model-a"]);
        for (i, e) in events.iter_mut().enumerate() {
            e.params.temperature = Some(0.0);
            if i >= 600 {
                e.timestamp = e.timestamp.plus_ms(24 * 3_600_000);
            }
        }
        let lab = final_finding(&events);
        assert!(lab.first_flagged_at.is_some() && !lab.flagged, "{lab:?}");
    }
}
