//! Automation: regular timing, no sleep gap, round-the-clock activity, machine speed.
//!
//! - no sleep: over the last 24 event-time hours the longest run of silent hours is under
//!   2 hours (people sleep; bots don't) — only once the account has been seen for 20+ hours;
//! - sleepless days: the median over completed days of the longest gap between two requests is
//!   under 2 hours (3+ h is a real circadian signal, 8+ h is nearly conclusive);
//! - round the clock: 20+ of the last 24 hours active;
//! - regular timing: inter-arrival gaps within sessions have a coefficient of variation under 0.3
//!   (a timer; human and random traffic sit near or above 1);
//! - machine speed: 300+ requests in the last hour or two, beyond what a person types.
//!
//! Production apps, batch jobs and resellers score high here by design: automation is context for
//! the other detectors, never enough to flag alone (see `combine`).

use super::{measurement, noisy_or, ramp, Context, Detector, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;
use crate::time::EventTime;

pub struct Automation;

struct Parts {
    observed_hours: f64,
    longest_silent_hours: f64,
    active_hours: f64,
    quiet_median: Option<f64>,
    cv: Option<f64>,
    no_sleep: f64,
    sleepless: f64,
    regular: f64,
    speed: f64,
}

fn parts(account: &AccountSummary) -> Parts {
    let observed_hours = (account.last_seen.epoch_ms() - account.first_seen.epoch_ms()) as f64
        / EventTime::HOUR as f64;
    let mut longest = 0usize;
    let mut run = 0usize;
    for count in account.activity {
        if count == 0 {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let active_hours = account.activity.iter().filter(|c| **c > 0).count() as f64;
    let full_day = ramp(observed_hours, 16.0, 20.0);
    let no_sleep =
        full_day * (1.0 - ramp(longest as f64, 1.0, 3.0)) * ramp(active_hours, 18.0, 22.0);
    let quiet_median = account.quiet_gap_median_hours;
    let sleepless = quiet_median.map_or(0.0, |h| 1.0 - ramp(h, 2.0, 5.0));
    let cv = account.gap_cv;
    let regular = match cv {
        Some(cv) if account.gaps >= 50 => 1.0 - ramp(cv, 0.3, 0.6),
        _ => 0.0,
    };
    let speed = ramp(account.events_last_hour as f64, 300.0, 1_200.0);
    Parts {
        observed_hours,
        longest_silent_hours: longest as f64,
        active_hours,
        quiet_median,
        cv,
        no_sleep,
        sleepless,
        regular,
        speed,
    }
}

impl Detector for Automation {
    fn name(&self) -> &'static str {
        "automation"
    }

    fn role(&self) -> Role {
        Role::Pressure { weight: 0.5 }
    }

    fn score(&self, account: &AccountSummary, _context: &Context<'_>) -> f64 {
        let p = parts(account);
        noisy_or(&[p.no_sleep, p.sleepless, 0.8 * p.regular, 0.8 * p.speed])
    }

    fn evidence(&self, account: &AccountSummary, _context: &Context<'_>, score: f64) -> Evidence {
        let p = parts(account);
        let mut reasons = Vec::new();
        if p.no_sleep > 0.0 {
            reasons.push(format!(
                "active {:.0} of the last 24 hours, longest silence {:.0}h",
                p.active_hours, p.longest_silent_hours
            ));
        }
        if let Some(h) = p.quiet_median.filter(|_| p.sleepless > 0.0) {
            reasons.push(format!("median longest daily gap {h:.1}h"));
        }
        if let Some(cv) = p.cv.filter(|_| p.regular > 0.0) {
            reasons.push(format!("inter-arrival variation {cv:.2} (timer-like)"));
        }
        if p.speed > 0.0 {
            reasons.push(format!(
                "{} requests in the last hour",
                account.events_last_hour
            ));
        }
        if reasons.is_empty() {
            reasons.push(format!(
                "human-like timing over {:.0}h observed",
                p.observed_hours
            ));
        }
        let mut measurements = vec![
            measurement("active_hours", p.active_hours, Some(20.0), None, "24h"),
            measurement(
                "longest_silence_hours",
                p.longest_silent_hours,
                Some(2.0),
                None,
                "24h",
            ),
            measurement(
                "requests",
                account.events_last_hour as f64,
                Some(300.0),
                None,
                "1h",
            ),
        ];
        if let Some(h) = p.quiet_median {
            measurements.push(measurement(
                "median_daily_longest_gap_hours",
                h,
                Some(2.0),
                None,
                "7d",
            ));
        }
        if let Some(cv) = p.cv {
            measurements.push(measurement(
                "inter_arrival_cv",
                cv,
                Some(0.3),
                None,
                "lifetime",
            ));
        }
        Evidence {
            summary: format!("{}; score {score:.2}", reasons.join("; ")),
            measurements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};

    fn score_of(events: &[crate::event::ApiEvent]) -> f64 {
        let account = summarise(events);
        let population = population(100, 100, 10_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let at = events.last().unwrap().timestamp.epoch_ms() - BASE + 1;
        Automation.score(&account, &context(&population, &models, &config, at))
    }

    #[test]
    fn a_bot_running_three_days_without_a_break_is_automated() {
        // One request every 90 s, jittered by a few seconds, for 72 hours.
        let events: Vec<_> = (0..2_880)
            .map(|i| {
                event(
                    i * 90_000 + (i * 7919 % 5) * 1_000,
                    &diverse_prompt(i as usize),
                )
            })
            .collect();
        let score = score_of(&events);
        assert!(score > 0.9, "{score}");
    }

    #[test]
    fn a_person_who_sleeps_eight_hours_is_not() {
        // Irregular bursts between 08:00 and 23:00 UTC for three days.
        let mut events = Vec::new();
        let day_start = EventTime::from_epoch_ms(BASE).unwrap().day_index() * EventTime::DAY - BASE;
        for day in 1..4 {
            for i in 0..40i64 {
                let r = crate::sketch::mix64((day * 1_000 + i) as u64);
                let minute = 8 * 60 + (r % (15 * 60)) as i64;
                events.push((
                    day_start + day * EventTime::DAY + minute * EventTime::MINUTE,
                    i,
                ));
            }
        }
        events.sort();
        let events: Vec<_> = events
            .into_iter()
            .enumerate()
            .map(|(k, (t, _))| event(t, &diverse_prompt(k)))
            .collect();
        let score = score_of(&events);
        assert!(score < 0.2, "{score}");
    }

    #[test]
    fn a_metronome_is_regular_even_within_a_few_hours() {
        let events: Vec<_> = (0..200)
            .map(|i| event(i * 20_000, &diverse_prompt(i as usize)))
            .collect();
        let score = score_of(&events);
        assert!(score > 0.7, "{score}");
    }
}
