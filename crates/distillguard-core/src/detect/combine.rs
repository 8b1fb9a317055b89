//! Combining detector scores into one account risk.
//!
//! Distillation is harvesting: breadth (coverage) under pressure (volume, elicitation, a pivot,
//! automation, templating). Every trap in the false-positive list has pressure without breadth —
//! a production app or batch job is big, automated and templated but stays on its subject; a
//! reseller is big but its people re-ask and follow up; a benchmark re-runs the same questions —
//! so the combination requires both. Each detector declares its [`Role`]; the combination reads
//! roles, never names or positions:
//!
//! ```text
//! breadth  = max(Breadth detectors)                       (coverage, session coverage)
//! pressure = noisy_or(weight × Pressure detectors)        (volume 1, elicitation 1, pivot 1,
//!                                                          fresh start 1, automation 0.5,
//!                                                          templating 0.5)
//! yield    = max(ramp(mean completion tokens, 30, 150),   (1 when completions are not reported)
//!                Yield detectors)                         (distribution harvest)
//! risk     = sqrt(breadth × pressure) × yield
//! ```
//!
//! The yield factor encodes what is harvested: answers, or the model's token distributions.
//! Classification, routing and extraction pipelines and benchmark runs get a label, a letter or
//! a short record back — broad prompts, no training text — unless they take the distribution
//! over the whole vocabulary on broad inputs, which is what a logit-distillation harvest does.
//!
//! The geometric mean keeps the score on the detectors' own scale (both at 0.8 → 0.8) while
//! letting a weak side pull it down (coverage 0.2, pressure 1.0 → 0.45). The engine flags at
//! `flag_threshold` (0.7 by default).

use serde::{Deserialize, Serialize};

use super::{suite, Context, Detector, Role};
use crate::features::AccountSummary;
use crate::finding::{Evidence, Measurement, Signal};

/// Evaluation and fire counts for one detector, for the metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorCount {
    pub detector: &'static str,
    pub evaluations: u64,
    pub fires: u64,
}

/// Name of the pseudo-signal that explains the combination in every finding.
pub const COMBINED: &str = "combined";

/// Detector scores for one account at one tick, in suite order.
pub struct Scores {
    pub values: Vec<f64>,
    pub risk: f64,
    /// The strongest breadth score (named coverage in the evidence, as analysts know it).
    pub coverage: f64,
    pub pressure: f64,
    pub output_yield: f64,
}

/// Mean completion tokens below which an account's answers are not worth harvesting, and at
/// which they fully are.
const YIELD_LOW_TOKENS: f64 = 30.0;
const YIELD_FULL_TOKENS: f64 = 150.0;

/// Distillation harvests answers: an account whose answers are a label, a letter or a short
/// extraction (classification and extraction pipelines, benchmark runs) yields nothing to train
/// on, however broad its prompts. Unknown completion sizes do not reduce the risk. Yield
/// detectors (token distributions) can raise it again in `score`.
fn text_yield(account: &AccountSummary) -> f64 {
    if account.completion_known == 0 {
        return 1.0;
    }
    super::ramp(
        account.mean_completion_tokens(),
        YIELD_LOW_TOKENS,
        YIELD_FULL_TOKENS,
    )
}

/// The detectors plus their counters.
pub struct DetectorSuite {
    detectors: Vec<Box<dyn Detector>>,
    evaluations: Vec<u64>,
    fires: Vec<u64>,
}

impl std::fmt::Debug for DetectorSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectorSuite")
            .field("detectors", &self.names())
            .field("evaluations", &self.evaluations)
            .field("fires", &self.fires)
            .finish()
    }
}

/// Counter values carried in checkpoints, by detector name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteCounters {
    pub counts: Vec<(String, u64, u64)>,
}

impl Default for DetectorSuite {
    fn default() -> Self {
        Self::new()
    }
}

impl DetectorSuite {
    pub fn new() -> Self {
        Self::with_detectors(suite())
    }

    /// A suite of the given detectors (tests; the service always runs the built-in [`suite`]).
    pub fn with_detectors(detectors: Vec<Box<dyn Detector>>) -> Self {
        let n = detectors.len();
        Self {
            detectors,
            evaluations: vec![0; n],
            fires: vec![0; n],
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.detectors.iter().map(|d| d.name()).collect()
    }

    /// Scores every detector and the combination, counting evaluations and fires.
    pub fn score(&mut self, account: &AccountSummary, context: &Context<'_>) -> Scores {
        let values: Vec<f64> = self
            .detectors
            .iter()
            .map(|d| d.score(account, context).clamp(0.0, 1.0))
            .collect();
        for (i, v) in values.iter().enumerate() {
            self.evaluations[i] += 1;
            if *v >= context.config.fire_threshold {
                self.fires[i] += 1;
            }
        }
        let mut coverage = 0.0f64;
        let mut untouched = 1.0f64;
        let mut output_yield = text_yield(account);
        for (detector, value) in self.detectors.iter().zip(&values) {
            match detector.role() {
                Role::Breadth => coverage = coverage.max(*value),
                Role::Pressure { weight } => untouched *= 1.0 - (weight * value).clamp(0.0, 1.0),
                Role::Yield => output_yield = output_yield.max(*value),
            }
        }
        let pressure = 1.0 - untouched;
        Scores {
            risk: (coverage * pressure).sqrt() * output_yield,
            output_yield,
            values,
            coverage,
            pressure,
        }
    }

    /// The signals of a finding: the combination first, then every detector with its evidence.
    pub fn signals(
        &self,
        account: &AccountSummary,
        context: &Context<'_>,
        scores: &Scores,
    ) -> Vec<Signal> {
        let mut signals = Vec::with_capacity(self.detectors.len() + 1);
        let strongest = self
            .detectors
            .iter()
            .zip(&scores.values)
            .filter(|(d, _)| matches!(d.role(), Role::Pressure { .. }))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(d, v)| format!("{} {:.2}", d.name(), v))
            .unwrap_or_default();
        signals.push(Signal {
            detector: COMBINED.to_owned(),
            score: super::round4(scores.risk),
            evidence: Evidence {
                summary: format!(
                    "risk = sqrt(coverage {:.2} × pressure {:.2}) × output yield {:.2} = {:.2}; strongest pressure: {}",
                    scores.coverage, scores.pressure, scores.output_yield, scores.risk, strongest
                ),
                measurements: vec![
                    Measurement {
                        name: "coverage".to_owned(),
                        value: super::round4(scores.coverage),
                        threshold: None,
                        baseline: None,
                        window: None,
                    },
                    Measurement {
                        name: "pressure".to_owned(),
                        value: super::round4(scores.pressure),
                        threshold: None,
                        baseline: None,
                        window: None,
                    },
                    Measurement {
                        name: "output_yield".to_owned(),
                        value: super::round4(scores.output_yield),
                        threshold: Some(YIELD_FULL_TOKENS),
                        baseline: None,
                        window: Some(
                            "lifetime mean completion tokens, or a distribution harvest"
                                .to_owned(),
                        ),
                    },
                ],
            },
        });
        for (detector, score) in self.detectors.iter().zip(&scores.values) {
            signals.push(Signal {
                detector: detector.name().to_owned(),
                score: super::round4(*score),
                evidence: detector.evidence(account, context, *score),
            });
        }
        signals
    }

    /// Replaces detector `name`'s signal in `signals` with its score and evidence at this tick
    /// (one detector's evidence, not the whole set: cheap enough for every tick).
    pub fn refresh_signal(
        &self,
        name: &str,
        signals: &mut [Signal],
        account: &AccountSummary,
        context: &Context<'_>,
        scores: &Scores,
    ) {
        let Some((detector, score)) = self
            .detectors
            .iter()
            .zip(&scores.values)
            .find(|(d, _)| d.name() == name)
        else {
            return;
        };
        if let Some(signal) = signals.iter_mut().find(|s| s.detector == name) {
            signal.score = super::round4(*score);
            signal.evidence = detector.evidence(account, context, *score);
        }
    }

    pub fn counts(&self) -> Vec<DetectorCount> {
        self.detectors
            .iter()
            .enumerate()
            .map(|(i, d)| DetectorCount {
                detector: d.name(),
                evaluations: self.evaluations[i],
                fires: self.fires[i],
            })
            .collect()
    }

    pub fn counters(&self) -> SuiteCounters {
        SuiteCounters {
            counts: self
                .counts()
                .into_iter()
                .map(|c| (c.detector.to_owned(), c.evaluations, c.fires))
                .collect(),
        }
    }

    pub fn restore_counters(&mut self, counters: &SuiteCounters) {
        for (name, evaluations, fires) in &counters.counts {
            if let Some(i) = self.detectors.iter().position(|d| d.name() == name) {
                self.evaluations[i] = *evaluations;
                self.fires[i] = *fires;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};
    use crate::event::ApiEvent;

    fn risk_of(events: &[ApiEvent], population_requests_day: u64) -> (f64, DetectorSuite) {
        let account = summarise(events);
        let population = population(
            1_000,
            population_requests_day,
            population_requests_day * 300,
        );
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let at = events.last().unwrap().timestamp.epoch_ms() - BASE + 1;
        let mut suite = DetectorSuite::new();
        let scores = suite.score(&account, &context(&population, &models, &config, at));
        (scores.risk, suite)
    }

    #[test]
    fn a_bulk_harvest_is_flagged_within_its_first_hour() {
        // 1,500 diverse single-turn prompts in 50 minutes.
        let events: Vec<_> = (0..1_500)
            .map(|i| event(i * 2_000, &diverse_prompt(i as usize)))
            .collect();
        let (risk, suite) = risk_of(&events, 80);
        assert!(risk >= 0.7, "{risk}");
        let counts = suite.counts();
        assert_eq!(counts.len(), suite.names().len());
        assert!(counts.iter().all(|c| c.evaluations == 1));
        assert_eq!(
            counts
                .iter()
                .find(|c| c.detector == "volume")
                .unwrap()
                .fires,
            1
        );
    }

    /// A detector that always reports the same score in the given role.
    struct Fixed(&'static str, Role, f64);

    impl Detector for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn role(&self) -> Role {
            self.1
        }
        fn score(&self, _: &AccountSummary, _: &Context<'_>) -> f64 {
            self.2
        }
        fn evidence(&self, _: &AccountSummary, _: &Context<'_>, _: f64) -> Evidence {
            Evidence {
                summary: String::new(),
                measurements: Vec::new(),
            }
        }
    }

    #[test]
    fn the_combination_reads_roles_not_names_or_positions() {
        let events: Vec<_> = (0..40)
            .map(|i| {
                let mut e = event(i * 60_000, &diverse_prompt(i as usize));
                e.usage.completion_tokens = Some(2);
                e
            })
            .collect();
        let account = summarise(&events);
        let population = population(100, 100, 10_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let ctx = context(&population, &models, &config, 3_000_000);
        let score = |detectors: Vec<Box<dyn Detector>>| {
            DetectorSuite::with_detectors(detectors).score(&account, &ctx)
        };
        // Breadth takes the strongest, pressure is a weighted noisy-OR, in any order.
        let s = score(vec![
            Box::new(Fixed("p", Role::Pressure { weight: 0.5 }, 0.8)),
            Box::new(Fixed("b1", Role::Breadth, 0.3)),
            Box::new(Fixed("b2", Role::Breadth, 0.9)),
            Box::new(Fixed("q", Role::Pressure { weight: 1.0 }, 0.5)),
        ]);
        assert_eq!(s.coverage, 0.9);
        assert!(
            (s.pressure - (1.0 - 0.6 * 0.5)).abs() < 1e-9,
            "{}",
            s.pressure
        );
        // Two-token answers yield no text; a yield detector restores what it measures.
        assert_eq!(s.output_yield, 0.0);
        assert_eq!(s.risk, 0.0);
        let s = score(vec![
            Box::new(Fixed("b", Role::Breadth, 1.0)),
            Box::new(Fixed("p", Role::Pressure { weight: 1.0 }, 1.0)),
            Box::new(Fixed("y", Role::Yield, 0.8)),
        ]);
        assert_eq!(s.output_yield, 0.8);
        assert!((s.risk - 0.8).abs() < 1e-9);
    }

    #[test]
    fn a_production_app_of_the_same_volume_is_not() {
        let products = ["router", "modem", "printer", "laptop", "charger"];
        let events: Vec<_> = (0..1_500)
            .map(|i| {
                let p = format!(
                    "Summarise ticket {}: the {} stopped working after update {}",
                    50_000 + i,
                    products[i as usize % 5],
                    i % 13
                );
                event(i * 2_000, &p)
            })
            .collect();
        let (risk, _) = risk_of(&events, 80);
        assert!(risk < 0.3, "{risk}");
    }

    #[test]
    fn low_and_slow_reasoning_harvest_is_flagged_without_volume() {
        // 150 prompts over two days at human pace, each demanding step-by-step reasoning.
        let events: Vec<_> = (0..150)
            .map(|i| {
                event(
                    i * 1_100_000,
                    &format!(
                        "{} Explain your reasoning step by step.",
                        diverse_prompt(i as usize)
                    ),
                )
            })
            .collect();
        let (risk, _) = risk_of(&events, 80);
        assert!(risk >= 0.7, "{risk}");
    }

    #[test]
    fn a_curious_person_asking_for_explanations_who_follows_up_is_not() {
        let events: Vec<_> = (0..150)
            .map(|i| {
                let mut e = event(
                    i * 1_100_000,
                    &format!("{} Explain step by step.", diverse_prompt(i as usize / 2)),
                );
                e.messages = Some(if i % 2 == 0 { 1 } else { 3 });
                e
            })
            .collect();
        let (risk, _) = risk_of(&events, 80);
        assert!(risk < 0.3, "{risk}");
    }
}
