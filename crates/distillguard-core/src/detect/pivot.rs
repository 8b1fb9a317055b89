//! Model pivot: most of an account's traffic moves to a newly appearing model within hours.
//!
//! A model is "newly appearing" when the population first saw it at least `model_warmup_ms`
//! after the engine started (so a replay's first day does not make every model new) and no more
//! than `new_model_window_ms` ago. For each such model the account uses:
//! - recent share: its share of the account's requests with a 3-hour half-life (0.4 → 0, 0.7 → 1);
//! - history: requests the account sent to other models before (20 → 0, 100 → 1), so a new
//!   account that starts on the new model is not a "pivot";
//! - speed: the account adopted it within 24 hours of its appearance (full weight) or later
//!   (half weight).
//!
//! Benign apps upgrade models too: on its own this detector never flags (see `combine`).

use super::{measurement, ramp, Context, Detector, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;
use crate::time::EventTime;

pub struct ModelPivot;

struct Pivot<'a> {
    model: &'a str,
    share: f64,
    history: u64,
    lag_hours: f64,
    score: f64,
}

fn best<'a>(account: &'a AccountSummary, context: &Context<'_>) -> Option<Pivot<'a>> {
    let total: f64 = account.models.iter().map(|m| m.recent_weight).sum();
    if total <= 0.0 {
        return None;
    }
    let mut best: Option<Pivot<'a>> = None;
    for m in &account.models {
        let Some(released) = context.models.released_at(m.model.as_str(), context.config) else {
            continue;
        };
        if context.at.epoch_ms() - released.epoch_ms() > context.config.new_model_window_ms {
            continue;
        }
        let share = m.recent_weight / total;
        let history = account.events.saturating_sub(m.events);
        let lag_hours =
            (m.first_used.epoch_ms() - released.epoch_ms()).max(0) as f64 / EventTime::HOUR as f64;
        let speed = if lag_hours <= 24.0 { 1.0 } else { 0.5 };
        let score = ramp(share, 0.4, 0.7) * ramp(history as f64, 20.0, 100.0) * speed;
        if best.as_ref().is_none_or(|b| score > b.score) {
            best = Some(Pivot {
                model: m.model.as_str(),
                share,
                history,
                lag_hours,
                score,
            });
        }
    }
    best
}

impl Detector for ModelPivot {
    fn name(&self) -> &'static str {
        "model_pivot"
    }

    fn role(&self) -> Role {
        Role::Pressure { weight: 1.0 }
    }

    fn score(&self, account: &AccountSummary, context: &Context<'_>) -> f64 {
        best(account, context).map_or(0.0, |p| p.score)
    }

    fn evidence(&self, account: &AccountSummary, context: &Context<'_>, score: f64) -> Evidence {
        match best(account, context) {
            Some(p) => Evidence {
                summary: format!(
                    "{:.0}% of recent traffic on newly appeared model {} (adopted {:.1}h after it appeared, {} earlier requests elsewhere); score {score:.2}",
                    p.share * 100.0,
                    p.model,
                    p.lag_hours,
                    p.history
                ),
                measurements: vec![
                    measurement("new_model_recent_share", p.share, Some(0.7), None, "3h half-life"),
                    measurement("adoption_lag_hours", p.lag_hours, Some(24.0), None, "since model appeared"),
                    measurement("requests_on_other_models", p.history as f64, Some(100.0), None, "lifetime"),
                ],
            },
            None => Evidence {
                summary: format!("no newly appeared model among {} used", account.models.len()),
                measurements: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};
    use crate::event::ModelName;

    const DAY: i64 = EventTime::DAY;

    fn registry(new_model_at: i64) -> ModelRegistry {
        let mut r = ModelRegistry {
            stream_start: Some(EventTime::from_epoch_ms(BASE).unwrap()),
            ..ModelRegistry::default()
        };
        r.first_seen
            .insert("model-a".into(), EventTime::from_epoch_ms(BASE).unwrap());
        r.first_seen.insert(
            "model-new".into(),
            EventTime::from_epoch_ms(BASE + new_model_at).unwrap(),
        );
        r
    }

    fn account(switch_at: i64, end: i64) -> crate::features::AccountSummary {
        let events: Vec<_> = (0..((end) / 120_000))
            .map(|i| {
                let t = i * 120_000;
                let mut e = event(t, &diverse_prompt(i as usize));
                if t >= switch_at && i % 5 != 0 {
                    e.model = ModelName::parse("model-new").unwrap();
                }
                e
            })
            .collect();
        summarise(&events)
    }

    #[test]
    fn moving_most_traffic_to_a_new_model_within_hours_is_a_pivot() {
        let release = 2 * DAY;
        let a = account(
            release + 3 * EventTime::HOUR,
            release + 12 * EventTime::HOUR,
        );
        let models = registry(release);
        let (population, config) = (population(100, 100, 1_000), DetectorConfig::default());
        let ctx = context(
            &population,
            &models,
            &config,
            release + 12 * EventTime::HOUR,
        );
        let s = ModelPivot.score(&a, &ctx);
        assert!(s > 0.9, "{s}");
        assert!(ModelPivot
            .evidence(&a, &ctx, s)
            .summary
            .contains("model-new"));
    }

    #[test]
    fn models_present_when_the_engine_started_are_not_new() {
        let a = account(3 * EventTime::HOUR, 12 * EventTime::HOUR);
        let models = registry(EventTime::HOUR);
        let (population, config) = (population(100, 100, 1_000), DetectorConfig::default());
        let ctx = context(&population, &models, &config, 12 * EventTime::HOUR);
        assert_eq!(ModelPivot.score(&a, &ctx), 0.0);
    }

    #[test]
    fn trying_a_new_model_now_and_then_is_not_a_pivot() {
        let release = 2 * DAY;
        let events: Vec<_> = (0..400)
            .map(|i| {
                let t = release - DAY + i * 240_000;
                let mut e = event(t, &diverse_prompt(i as usize));
                if t >= release && i % 6 == 0 {
                    e.model = ModelName::parse("model-new").unwrap();
                }
                e
            })
            .collect();
        let a = summarise(&events);
        let models = registry(release);
        let (population, config) = (population(100, 100, 1_000), DetectorConfig::default());
        let ctx = context(&population, &models, &config, release + DAY);
        assert_eq!(ModelPivot.score(&a, &ctx), 0.0);
    }
}
