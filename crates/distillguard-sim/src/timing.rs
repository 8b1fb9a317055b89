//! When things happen: diurnal curves in local time, time zones, weekdays, sessions.

use distillguard_core::time::EventTime;
use rand::Rng;

use crate::dist::{weighted_index, SimRng};

pub(crate) const MINUTE: i64 = EventTime::MINUTE;
pub(crate) const HOUR: i64 = EventTime::HOUR;
pub(crate) const DAY: i64 = EventTime::DAY;

/// The largest positive UTC offset any simulated human has; the writer keeps that much of the
/// previous day open so late-local-day events are never emitted out of order.
pub(crate) const MAX_TZ_AHEAD_MS: i64 = 10 * HOUR;

/// Relative activity per local hour 0..24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Diurnal {
    /// Leisure use: some at lunch, most in the evening, almost nothing at 2-6 am.
    Evening,
    /// Office hours with a lunch dip; weekends mostly quiet.
    Work,
    /// Late-working developers: afternoon to past midnight.
    Late,
}

impl Diurnal {
    pub(crate) fn weights(self) -> &'static [f64; 24] {
        match self {
            Diurnal::Evening => &[
                0.6, 0.3, 0.1, 0.05, 0.05, 0.1, 0.3, 0.8, 1.2, 1.3, 1.3, 1.4, 1.8, 1.6, 1.3, 1.3,
                1.4, 1.7, 2.0, 2.4, 2.6, 2.5, 2.0, 1.2,
            ],
            Diurnal::Work => &[
                0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.2, 0.8, 2.0, 3.0, 3.2, 3.0, 1.6, 2.4, 3.0,
                3.0, 2.6, 1.8, 0.8, 0.4, 0.3, 0.3, 0.15, 0.05,
            ],
            Diurnal::Late => &[
                1.0, 0.6, 0.3, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 1.0, 1.6, 2.0, 1.6, 2.0, 2.4, 2.6,
                2.6, 2.4, 2.0, 1.8, 2.0, 2.2, 2.0, 1.6,
            ],
        }
    }

    /// Relative volume at a local hour, normalised so the daily mean is 1.
    pub(crate) fn level(self, local_hour: usize) -> f64 {
        let weights = self.weights();
        let mean: f64 = weights.iter().sum::<f64>() / 24.0;
        weights[local_hour % 24] / mean
    }
}

/// UTC offsets in minutes, weighted roughly by API usage.
const ZONES: &[(i32, f64)] = &[
    (-8 * 60, 0.18),
    (-7 * 60, 0.04),
    (-6 * 60, 0.06),
    (-5 * 60, 0.16),
    (-3 * 60, 0.04),
    (0, 0.08),
    (60, 0.14),
    (2 * 60, 0.05),
    (5 * 60 + 30, 0.09),
    (8 * 60, 0.07),
    (9 * 60, 0.06),
    (10 * 60, 0.03),
];

pub(crate) fn random_zone(rng: &mut SimRng) -> i32 {
    let weights: Vec<f64> = ZONES.iter().map(|(_, w)| *w).collect();
    ZONES[weighted_index(rng, &weights)].0
}

/// Monday = 0 .. Sunday = 6 for a UTC day start (1970-01-01 was a Thursday).
pub(crate) fn weekday(day_start_ms: i64) -> u32 {
    ((day_start_ms.div_euclid(DAY) + 3).rem_euclid(7)) as u32
}

pub(crate) fn is_weekend(day_start_ms: i64) -> bool {
    weekday(day_start_ms) >= 5
}

/// Start of the local calendar day (in UTC ms) that shares its date with the UTC day.
pub(crate) fn local_day_start(utc_day_start: i64, tz_minutes: i32) -> i64 {
    utc_day_start - i64::from(tz_minutes) * MINUTE
}

/// Local hour (0..24) of a UTC instant.
pub(crate) fn local_hour(at_ms: i64, tz_minutes: i32) -> usize {
    ((at_ms + i64::from(tz_minutes) * MINUTE).rem_euclid(DAY) / HOUR) as usize
}

/// Draws session start times for one local day: hours from the diurnal curve, uniform minutes.
pub(crate) fn session_starts(
    rng: &mut SimRng,
    utc_day_start: i64,
    tz_minutes: i32,
    profile: Diurnal,
    count: u32,
) -> Vec<i64> {
    let base = local_day_start(utc_day_start, tz_minutes);
    let mut starts: Vec<i64> = (0..count)
        .map(|_| {
            let hour = weighted_index(rng, profile.weights()) as i64;
            base + hour * HOUR + rng.gen_range(0..HOUR)
        })
        .collect();
    starts.sort_unstable();
    starts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::stream;

    #[test]
    fn weekdays_follow_the_calendar() {
        // 2026-11-02 is a Monday, 2026-11-07 a Saturday.
        let monday = EventTime::parse_rfc3339("2026-11-02T00:00:00Z")
            .unwrap()
            .epoch_ms();
        assert_eq!(weekday(monday), 0);
        assert!(!is_weekend(monday));
        assert!(is_weekend(monday + 5 * DAY));
    }

    #[test]
    fn evening_users_are_quiet_at_four_in_the_morning_local_time() {
        let mut rng = stream(5, 5);
        let day = EventTime::parse_rfc3339("2026-11-02T00:00:00Z")
            .unwrap()
            .epoch_ms();
        let tz = 9 * 60;
        let starts = session_starts(&mut rng, day, tz, Diurnal::Evening, 5_000);
        let night = starts
            .iter()
            .filter(|s| (2..6).contains(&local_hour(**s, tz)))
            .count();
        let evening = starts
            .iter()
            .filter(|s| (18..22).contains(&local_hour(**s, tz)))
            .count();
        assert!(night * 20 < evening, "night {night} evening {evening}");
    }
}
