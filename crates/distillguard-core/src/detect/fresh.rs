//! Fresh start: an account put to work at a harvest's pace as soon as it was created.
//!
//! Operators who lose accounts to bans or to exhausted trial credit replace each with a new one
//! and carry on (burner accounts: a hydra in time rather than in width). Such an account has
//! hours of history at most, so the detectors that compare a day with the population or wait for
//! a second sitting see it too late: whatever is caught after its short life was answered
//! anyway. What it shows from its first hour is that it did not exist a moment before its first
//! request and that it takes answers faster than anyone reads them, without a pause.
//!
//! Two facts, both from values every account has (no per-account state):
//!
//! - **freshness**: the account's age at its first request (`first_seen − account_created_at`),
//!   1 up to `FRESH_FULL_MS`, 0 from `FRESH_NONE_MS`. Gateways that do not report the creation
//!   time leave it unknown, and the detector silent.
//! - **pace**: completion tokens answered per hour of the account's life so far (at least
//!   `MIN_LIFE_MS`, so one burst is not a pace), from `READING_PACE` (someone reading every
//!   answer at about 250 words a minute) to `HARVEST_PACE` (three times that).
//!
//! It is pressure only. A new sign-up that starts at once is ordinary (a developer trying the
//! API, a hackathon, an app going live); what decides is breadth, as for every pressure: the
//! trial developer re-sends and edits, the hackathon's prototypes re-run their demo inputs, an
//! app stays on its subject. A cluster's combined summary has no creation time (creation is a
//! fact about one account), so the detector never speaks for a cluster.

use super::{measurement, ramp, Context, Detector, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;
use crate::time::EventTime;

pub struct FreshStart;

/// Age at the first request up to which an account counts as created for the job.
pub(crate) const FRESH_FULL_MS: i64 = EventTime::HOUR;
/// Age at the first request from which an account is not fresh at all.
pub(crate) const FRESH_NONE_MS: i64 = EventTime::DAY;
/// Shortest life the pace is measured over: a few minutes of fast requests are a burst.
pub(crate) const MIN_LIFE_MS: i64 = 30 * EventTime::MINUTE;
/// Completion tokens an hour a person reading every answer takes in (≈ 250 words a minute).
pub(crate) const READING_PACE: f64 = 20_000.0;
/// Three times the reading pace: answers taken, not read.
pub(crate) const HARVEST_PACE: f64 = 60_000.0;
/// Requests before the pace counts in full (below a handful it says nothing).
const MIN_REQUESTS: (f64, f64) = (10.0, 30.0);

struct Measured {
    /// Age at the first request, when the creation time is known.
    age_ms: Option<i64>,
    life_ms: i64,
    pace: f64,
}

fn measure(account: &AccountSummary) -> Measured {
    let first = account.first_seen.epoch_ms();
    let life_ms = (account.last_seen.epoch_ms() - first).max(MIN_LIFE_MS);
    let pace = account.completion_tokens as f64 * EventTime::HOUR as f64 / life_ms as f64;
    Measured {
        age_ms: account
            .account_created_at
            .map(|created| (first - created.epoch_ms()).max(0)),
        life_ms,
        pace,
    }
}

fn freshness(age_ms: i64) -> f64 {
    1.0 - ramp(age_ms as f64, FRESH_FULL_MS as f64, FRESH_NONE_MS as f64)
}

impl Detector for FreshStart {
    fn name(&self) -> &'static str {
        "fresh_start"
    }

    fn role(&self) -> Role {
        Role::Pressure { weight: 1.0 }
    }

    fn score(&self, account: &AccountSummary, _context: &Context<'_>) -> f64 {
        let m = measure(account);
        let Some(age_ms) = m.age_ms else {
            return 0.0;
        };
        freshness(age_ms)
            * ramp(m.pace, READING_PACE, HARVEST_PACE)
            * ramp(account.events as f64, MIN_REQUESTS.0, MIN_REQUESTS.1)
    }

    fn evidence(&self, account: &AccountSummary, _context: &Context<'_>, score: f64) -> Evidence {
        let m = measure(account);
        let age = m.age_ms.map_or_else(
            || "creation time unknown".to_owned(),
            |age| {
                format!(
                    "first request {:.0} min after sign-up",
                    age as f64 / 60_000.0
                )
            },
        );
        Evidence {
            summary: format!(
                "{age}; {:.0} completion tokens an hour over its {:.1} h so far (a reader takes in {:.0}); score {score:.2}",
                m.pace,
                m.life_ms as f64 / EventTime::HOUR as f64,
                READING_PACE
            ),
            measurements: vec![
                measurement(
                    "age_at_first_request_hours",
                    m.age_ms.unwrap_or(-1) as f64 / EventTime::HOUR as f64,
                    Some(FRESH_FULL_MS as f64 / EventTime::HOUR as f64),
                    None,
                    "first request",
                ),
                measurement(
                    "completion_tokens_per_hour",
                    m.pace,
                    Some(HARVEST_PACE),
                    Some(READING_PACE),
                    "lifetime",
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::combine::DetectorSuite;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};
    use crate::event::ApiEvent;

    const MINUTE: i64 = EventTime::MINUTE;

    /// `count` requests over about `span_ms` at irregular (Poisson-like) gaps, the account
    /// created `age_ms` before the first.
    fn account(
        age_ms: i64,
        count: usize,
        span_ms: i64,
        completion: u32,
        prompt: impl Fn(usize) -> (String, u32),
    ) -> Vec<ApiEvent> {
        let mean_gap = span_ms as f64 / count as f64;
        let mut at = 0.0;
        (0..count)
            .map(|i| {
                let (text, messages) = prompt(i);
                let mut e = event(at as i64, &text);
                let u = (i as f64 * 0.618_034 + 0.1).fract().max(0.01);
                at += -u.ln() * mean_gap;
                e.messages = Some(messages);
                e.usage.completion_tokens = Some(completion);
                e.account_created_at = Some(EventTime::from_epoch_ms(BASE - age_ms).unwrap());
                e
            })
            .collect()
    }

    fn harvest(i: usize) -> (String, u32) {
        (diverse_prompt(i), 1)
    }

    /// A developer trying the API: one task re-sent with small changes, fixes in a
    /// conversation, pings, and now and then a new task.
    fn trial(i: usize) -> (String, u32) {
        let task = diverse_prompt(i / 12);
        match i % 6 {
            0 => (task, 1),
            1 | 2 => (format!("{task} but in TypeScript"), 1),
            3 => ("that doesn't compile, fix it".to_owned(), 3),
            4 => (format!("{task} with error handling"), 1),
            _ => ("test".to_owned(), 1),
        }
    }

    fn judge(events: &[ApiEvent]) -> (f64, f64) {
        let summary = summarise(events);
        let population = population(1_000, 60, 20_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let at = summary.last_seen.epoch_ms() - BASE + 1;
        let ctx = context(&population, &models, &config, at);
        let fresh = FreshStart.score(&summary, &ctx);
        let risk = DetectorSuite::new().score(&summary, &ctx).risk;
        (fresh, risk)
    }

    #[test]
    fn a_new_account_harvesting_broadly_from_its_first_hour_is_flagged_within_it() {
        // Twenty minutes after sign-up, 70 never-repeated single-turn tasks in an hour with
        // 600-token answers (42,000 tokens): about the hourly volume floors, so volume says
        // little, and no elicitation.
        let events = account(20 * MINUTE, 70, EventTime::HOUR, 600, harvest);
        let (fresh, risk) = judge(&events);
        assert!(fresh > 0.5, "fresh_start {fresh}");
        assert!(risk >= 0.7, "risk {risk}");
    }

    #[test]
    fn the_same_traffic_from_an_established_account_gets_no_fresh_start_pressure() {
        let events = account(30 * EventTime::DAY, 70, EventTime::HOUR, 600, harvest);
        let (fresh, risk) = judge(&events);
        assert_eq!(fresh, 0.0);
        assert!(risk < 0.7, "risk {risk}");
    }

    #[test]
    fn a_gateway_that_does_not_report_creation_times_leaves_it_silent() {
        let mut events = account(20 * MINUTE, 70, EventTime::HOUR, 600, harvest);
        for e in &mut events {
            e.account_created_at = None;
        }
        assert_eq!(judge(&events).0, 0.0);
    }

    #[test]
    fn a_new_account_reading_its_answers_is_not_at_a_harvest_pace() {
        // Broad, single-turn questions right after sign-up, but 25 in an hour: a person reading.
        let events = account(10 * MINUTE, 25, EventTime::HOUR, 600, harvest);
        let (fresh, risk) = judge(&events);
        assert!(fresh < 0.05, "fresh_start {fresh}");
        assert!(risk < 0.7, "risk {risk}");
    }

    #[test]
    fn a_short_burst_right_after_sign_up_is_not_a_pace() {
        // A dozen quick calls in five minutes right after sign-up (a quick-start script, a task
        // re-sent with changes): measured over half an hour, not five minutes.
        let events = account(5 * MINUTE, 14, 5 * MINUTE, 300, harvest);
        assert!(judge(&events).0 < 0.01);
    }

    #[test]
    fn a_hackathon_prototype_re_running_its_demo_inputs_is_not_flagged() {
        // Signed up the morning of the event; its prototype fires 200 demo inputs an hour with
        // long answers, half of them re-runs of the last few after a code change.
        let events = account(3 * EventTime::HOUR, 200, EventTime::HOUR, 500, |i| {
            let input = if i % 2 == 0 {
                i / 2
            } else {
                (i / 2).saturating_sub(i % 5)
            };
            (diverse_prompt(input), 1)
        });
        let (fresh, risk) = judge(&events);
        assert!(fresh > 0.5, "fresh_start {fresh}");
        assert!(risk < 0.7, "risk {risk}");
    }

    #[test]
    fn a_developer_trying_the_api_hard_in_its_first_hour_is_not_flagged() {
        // 240 calls in an hour after sign-up with long code answers: the pace of a harvest, but
        // the same tasks re-sent with changes, fixes in conversation and pings.
        let events = account(10 * MINUTE, 240, EventTime::HOUR, 600, trial);
        let (fresh, risk) = judge(&events);
        assert!(fresh > 0.9, "fresh_start {fresh}");
        assert!(risk < 0.7, "risk {risk}");
    }
}
