//! Event-time windows and small running statistics kept per account.

use serde::{Deserialize, Serialize};

use crate::sketch::LinearCounter;
use crate::time::EventTime;

pub(super) const HOURS: usize = 24;
/// Completed days of "longest quiet gap" kept.
const QUIET_DAYS: usize = 7;
/// Inter-arrival gaps longer than this are breaks between sessions, not timing within one.
const SESSION_GAP_MS: i64 = 30 * EventTime::MINUTE;

/// Subject words per vocabulary window: bounded so that the distinct counter never saturates
/// and a long-lived account is judged on its recent language, not its lifetime.
const VOCABULARY_WINDOW_WORDS: u64 = 4_000;
/// How much Herdan's C falls per e-fold of text length (see `Vocabulary::current`).
const RICHNESS_DRIFT_PER_E_FOLD: f64 = 0.05;
/// Below this many subject words richness is not measured.
pub const MIN_VOCABULARY_WORDS: u64 = 60;

/// Distinct subject words of a vocabulary window.
pub type VocabularyCounter = LinearCounter<32>;

/// Herdan's C of `words` subject words of which `distinct` differ, length-corrected to a full
/// window; `None` below [`MIN_VOCABULARY_WORDS`].
pub fn herdan(distinct: f64, words: u64) -> Option<f64> {
    if words < MIN_VOCABULARY_WORDS {
        return None;
    }
    let words = words as f64;
    let distinct = distinct.max(1.0);
    let drift = RICHNESS_DRIFT_PER_E_FOLD * (VOCABULARY_WINDOW_WORDS as f64 / words).ln();
    Some(distinct.ln() / words.ln() - drift)
}

/// How many different subject words an account uses for how many it sends (topic spread).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Vocabulary {
    pub(super) words: u64,
    pub(super) distinct: VocabularyCounter,
    pub(super) previous: Option<f64>,
}

impl Vocabulary {
    pub(super) fn insert(&mut self, word: u32) {
        if self.words >= VOCABULARY_WINDOW_WORDS {
            self.previous = self.current();
            self.words = 0;
            self.distinct = LinearCounter::default();
        }
        self.words += 1;
        self.distinct.insert(crate::sketch::mix64(u64::from(word)));
    }

    /// Herdan's C of the current window, length-corrected to a full window: C drifts down as a
    /// text grows (by about 0.05 per e-fold of words, in the simulator's rich and narrow sources
    /// alike), so a young window is compared as if it had reached `VOCABULARY_WINDOW_WORDS`.
    pub(super) fn current(&self) -> Option<f64> {
        herdan(self.distinct.estimate(), self.words)
    }

    /// The window's distinct-word counter while the account is too young for a richness of its
    /// own: a cluster of young accounts measures its richness over their union.
    pub(super) fn young(&self) -> Option<Box<VocabularyCounter>> {
        (self.previous.is_none() && self.words < MIN_VOCABULARY_WORDS && self.words > 0)
            .then(|| Box::new(self.distinct.clone()))
    }

    /// The current window once it is a quarter full, the previous full window before that.
    pub(super) fn richness(&self) -> Option<f64> {
        match (self.current(), self.previous) {
            (Some(c), _)
                if self.words >= VOCABULARY_WINDOW_WORDS / 4 || self.previous.is_none() =>
            {
                Some(c)
            }
            (_, Some(p)) => Some(p),
            (c, None) => c,
        }
    }
}

/// Events and completion tokens per event-time hour over the last 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HourRing {
    pub(super) hours: [i64; HOURS],
    pub(super) events: [u32; HOURS],
    pub(super) completion_tokens: [u32; HOURS],
}

impl HourRing {
    pub(super) fn add(&mut self, hour: i64, completion_tokens: u32) {
        let slot = hour.rem_euclid(HOURS as i64) as usize;
        if self.hours[slot] != hour {
            // An older (or, for a late event, newer) hour: only replace an older one.
            if self.hours[slot] > hour && self.events[slot] > 0 {
                return;
            }
            self.hours[slot] = hour;
            self.events[slot] = 0;
            self.completion_tokens[slot] = 0;
        }
        self.events[slot] = self.events[slot].saturating_add(1);
        self.completion_tokens[slot] =
            self.completion_tokens[slot].saturating_add(completion_tokens);
    }

    /// Events per hour for the 24 hours ending with `hour` (oldest first).
    pub(super) fn vector(&self, hour: i64) -> [u32; HOURS] {
        let mut out = [0; HOURS];
        for (i, h) in ((hour - HOURS as i64 + 1)..=hour).enumerate() {
            let slot = h.rem_euclid(HOURS as i64) as usize;
            if self.hours[slot] == h {
                out[i] = self.events[slot];
            }
        }
        out
    }

    pub(super) fn sum(&self, from_hour: i64, to_hour: i64) -> (u64, u64) {
        let mut events = 0u64;
        let mut tokens = 0u64;
        for slot in 0..HOURS {
            let h = self.hours[slot];
            if h >= from_hour && h <= to_hour {
                events += u64::from(self.events[slot]);
                tokens += u64::from(self.completion_tokens[slot]);
            }
        }
        (events, tokens)
    }
}

/// Longest gap between consecutive events per UTC day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct QuietGaps {
    pub(super) day: i64,
    pub(super) longest_today_ms: i64,
    /// Longest gap of each recently completed day, in minutes (oldest first).
    pub(super) completed: Vec<u16>,
}

impl QuietGaps {
    pub(super) fn observe(&mut self, previous: EventTime, now: EventTime, first_day: i64) {
        let day = now.day_index();
        let gap = (now.epoch_ms() - previous.epoch_ms()).max(0);
        if day > self.day {
            // Close the day of the previous event (a partial first day says nothing) and count
            // wholly silent days in between as a 24-hour gap.
            let end_of_day = (self.day + 1) * EventTime::DAY;
            let closing = self.longest_today_ms.max(end_of_day - previous.epoch_ms());
            if self.day > first_day {
                self.push(closing);
            }
            for _ in (self.day + 1)..day.min(self.day + 1 + QUIET_DAYS as i64) {
                self.push(EventTime::DAY);
            }
            self.day = day;
            self.longest_today_ms = now.epoch_ms() - day * EventTime::DAY;
        }
        self.longest_today_ms = self.longest_today_ms.max(gap.min(EventTime::DAY));
    }

    pub(super) fn push(&mut self, gap_ms: i64) {
        if self.completed.len() == QUIET_DAYS {
            self.completed.remove(0);
        }
        self.completed
            .push((gap_ms / EventTime::MINUTE).clamp(0, u16::MAX as i64) as u16);
    }

    /// Median over completed days of the longest quiet gap, in hours.
    pub(super) fn median_hours(&self) -> Option<f64> {
        if self.completed.is_empty() {
            return None;
        }
        let mut days = self.completed.clone();
        days.sort_unstable();
        Some(f64::from(days[days.len() / 2]) / 60.0)
    }
}

/// Welford running mean and variance of within-session inter-arrival gaps (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct GapStats {
    pub(super) count: u64,
    pub(super) mean: f64,
    pub(super) m2: f64,
}

impl GapStats {
    pub(super) fn observe(&mut self, gap_ms: i64) {
        if !(0..=SESSION_GAP_MS).contains(&gap_ms) {
            return;
        }
        let x = gap_ms as f64 / 1_000.0;
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Coefficient of variation (0 = a metronome, about 1 = random arrivals).
    pub(super) fn cv(&self) -> Option<f64> {
        if self.count < 2 || self.mean <= 0.0 {
            return None;
        }
        let variance = self.m2 / (self.count - 1) as f64;
        Some(variance.sqrt() / self.mean)
    }
}
