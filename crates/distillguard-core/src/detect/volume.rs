//! Volume: requests and completion tokens against the population (robust percentiles).
//!
//! Four windows, each compared with a high percentile (p90, times a configurable multiplier,
//! 1 by default) of all tracked accounts, floored by a fixed minimum so that a small or quiet
//! population does not make a modest account look big (below 30 accounts only the floor
//! applies): requests and completion tokens in the current and previous hour (catch a bulk
//! campaign within its first hour), requests and completion tokens in 24 hours. Completion
//! tokens are the harvested text itself. The score rises on a log scale: at the baseline it is 1/3, at 4× it is 1.

use super::{measurement, ramp, Context, Detector, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;
use crate::population::{REQUESTS_DAY, REQUESTS_HOUR, TOKENS_DAY, TOKENS_HOUR};

pub struct Volume;

/// One window's comparison.
struct Window {
    name: &'static str,
    window: &'static str,
    value: f64,
    baseline: f64,
    median: f64,
}

impl Window {
    fn score(&self) -> f64 {
        if self.value <= 0.0 {
            return 0.0;
        }
        ramp((self.value / self.baseline).log2(), -1.0, 2.0)
    }
}

fn windows(account: &AccountSummary, context: &Context<'_>) -> [Window; 4] {
    let p = context.population;
    let c = context.config;
    let high = |metric: usize| {
        if p.accounts[metric] >= c.min_population {
            p.high[metric] * c.volume_multiplier
        } else {
            0.0
        }
    };
    [
        Window {
            name: "requests",
            window: "1h",
            value: account.events_last_hour as f64,
            baseline: high(REQUESTS_HOUR).max(c.min_requests_last_hour),
            median: p.median[REQUESTS_HOUR],
        },
        Window {
            name: "requests",
            window: "24h",
            value: account.events_last_24h as f64,
            baseline: high(REQUESTS_DAY).max(c.min_requests_24h),
            median: p.median[REQUESTS_DAY],
        },
        Window {
            name: "completion_tokens",
            window: "1h",
            value: account.completion_tokens_last_hour as f64,
            baseline: high(TOKENS_HOUR).max(c.min_completion_tokens_last_hour),
            median: p.median[TOKENS_HOUR],
        },
        Window {
            name: "completion_tokens",
            window: "24h",
            value: account.completion_tokens_last_24h as f64,
            baseline: high(TOKENS_DAY).max(c.min_completion_tokens_24h),
            median: p.median[TOKENS_DAY],
        },
    ]
}

impl Detector for Volume {
    fn name(&self) -> &'static str {
        "volume"
    }

    fn role(&self) -> Role {
        Role::Pressure { weight: 1.0 }
    }

    fn score(&self, account: &AccountSummary, context: &Context<'_>) -> f64 {
        windows(account, context)
            .iter()
            .map(Window::score)
            .fold(0.0, f64::max)
    }

    fn evidence(&self, account: &AccountSummary, context: &Context<'_>, score: f64) -> Evidence {
        let windows = windows(account, context);
        let top = windows
            .iter()
            .max_by(|a, b| a.score().total_cmp(&b.score()))
            .expect("four windows");
        Evidence {
            summary: format!(
                "{:.0} {} in {} vs baseline {:.0} ({}× p{:.0} of {} accounts, or the floor; median {:.0}); score {:.2}",
                top.value,
                top.name.replace('_', " "),
                top.window,
                top.baseline,
                context.config.volume_multiplier,
                context.population.percentile * 100.0,
                context.population.accounts[REQUESTS_DAY],
                top.median,
                score
            ),
            measurements: windows
                .iter()
                .map(|w| {
                    measurement(w.name, w.value, Some(w.baseline), Some(w.median), w.window)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};
    use crate::time::EventTime;

    fn burst(requests: usize) -> AccountSummary {
        let events: Vec<_> = (0..requests)
            .map(|i| event(i as i64 * 1_000, &diverse_prompt(i)))
            .collect();
        summarise(&events)
    }

    #[test]
    fn a_bulk_hour_far_above_the_population_scores_high_with_evidence() {
        let population = population(1_000, 100, 30_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let account = burst(3_000);
        let ctx = context(&population, &models, &config, 3_000 * 1_000);
        let score = Volume.score(&account, &ctx);
        assert!(score > 0.95, "{score}");
        let evidence = Volume.evidence(&account, &ctx, score);
        assert_eq!(evidence.measurements.len(), 4);
        assert_eq!(evidence.measurements[0].value, 3_000.0);
        assert!(
            evidence.summary.contains(" in 1h vs baseline"),
            "{}",
            evidence.summary
        );
        assert_eq!(evidence.measurements[2].value, 900_000.0);
    }

    #[test]
    fn an_ordinary_account_scores_low() {
        let population = population(1_000, 100, 30_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let account = burst(60);
        let ctx = context(&population, &models, &config, EventTime::HOUR);
        assert!(Volume.score(&account, &ctx) < 0.1);
    }

    #[test]
    fn the_baseline_moves_with_the_population_not_a_fixed_number() {
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let account = burst(2_000);
        let quiet = population(1_000, 50, 10_000);
        let busy = population(1_000, 20_000, 6_000_000);
        let at = 2_000 * 1_000;
        let in_quiet = Volume.score(&account, &context(&quiet, &models, &config, at));
        let in_busy = Volume.score(&account, &context(&busy, &models, &config, at));
        assert!(in_quiet > 0.9, "{in_quiet}");
        assert!(in_busy < 0.3, "{in_busy}");
    }
}
