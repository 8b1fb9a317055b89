//! Heavy end users of a shared account as sub-subjects.
//!
//! A reseller, a proxy or an app passes its own customers' requests through one account and
//! names them in `end_user`; one customer harvesting at scale then hides among the others'
//! ordinary traffic (the "proxy/reseller: multiple downstream customers mixed in one account"
//! signal of the research notes). Per-account signals see the mixture. So each account with
//! several end users keeps a space-saving heavy-hitters sketch of `CANDIDATES` end users (the
//! rest is the "other" bucket), and the end users that are heavy hitters get an account state of
//! their own, on which the same detectors run.
//!
//! The states are lent, not owned: a reseller's ordinary heavy customers are heavy hitters too,
//! often before a harvester starts. An end user whose own requests show a habit of people
//! ([`crate::detect::breadth_cleared`]: it re-asks, follows up or stays on a subject, on enough
//! requests to judge) hands its state on to the next heavy candidate and is not judged again for
//! `COOLDOWN_MS` of event time; one that does not look like a person keeps its state, and one
//! that went quiet before it could be judged yields it to a candidate that is sending. So the
//! states rotate through the heavy hitters until they rest on the end users that stay broad.
//!
//! Bounded: the sketch is allocated only once an account has shown two end users, at most
//! `HEAVY` end users get a sub-state, each as bounded as an account's, and at most `CLEARED`
//! cleared end users are remembered.

use serde::{Deserialize, Deserializer, Serialize};

use super::AccountState;
use crate::engine::EngineConfig;
use crate::event::{AccountId, ApiEvent};
use crate::sketch::fast_hash;
use crate::time::EventTime;

/// End users the space-saving sketch tracks: every end user that opens more than a 32nd of the
/// account's conversations is among them (the sketch's guarantee), the rest is "other". A
/// reseller serves hundreds to thousands of customers, and one harvesting customer among them
/// need not send an eighth of the traffic to take what it came for; 32 counters cost 384 bytes,
/// and only accounts that name several end users pay them.
pub const CANDIDATES: usize = 32;
/// End users judged on their own at once (each costs an account state).
pub const HEAVY: usize = 2;
/// Event time a cleared end user waits before it may be judged again: a person's habits hold
/// for the day; the next day it is judged afresh (an end user that starts harvesting later, or
/// warmed up as a person, is caught then).
const COOLDOWN_MS: i64 = EventTime::DAY;
/// Cleared end users remembered at once: as many as the sketch can hold as heavy hitters.
const CLEARED: usize = CANDIDATES;
/// A holder quiet this long has ended its sitting (the break that ends a person's session).
const SESSION_GAP_MS: i64 = 30 * EventTime::MINUTE;
/// Characters of an end user's name kept for the finding.
const NAME_CHARS: usize = 64;

/// One space-saving counter: a 32-bit fingerprint of the end user, its count, and the count it
/// inherited when it took the slot (so `count - error` is a guaranteed lower bound).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Candidate {
    key: u32,
    count: u32,
    error: u32,
}

impl Candidate {
    fn guaranteed(&self) -> u32 {
        self.count - self.error
    }
}

/// An end user judged on its own: its name (truncated) and its own account state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeavyEndUser {
    key: u32,
    pub name: Box<str>,
    pub state: Box<AccountState>,
}

/// An end user that handed its state on, and the event time until which it is not judged again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Cleared {
    key: u32,
    until_ms: i64,
}

/// The end users cleared recently (at most `CLEARED`), behind one thin pointer: most shared
/// accounts never clear one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct ClearedList(Vec<Cleared>);

/// The sketch and the heavy end users of one shared account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndUsers {
    /// Any width is read back (a checkpoint of a narrower or wider sketch keeps its heaviest).
    #[serde(deserialize_with = "candidates_of_any_width")]
    candidates: [Candidate; CANDIDATES],
    /// A boxed slice, not a `Vec`: promotions are rare and the header is 8 bytes smaller.
    heavy: Box<[HeavyEndUser]>,
    /// End-user events the sketch counted (the "other" bucket is these less the heavy end users'
    /// own events).
    total: u32,
    /// States given out (a rotation that thrashed would show here).
    #[serde(default)]
    promotions: u32,
    #[serde(default)]
    cleared: Option<Box<ClearedList>>,
}

/// The summary of one heavy end user at a tick, beside its account's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndUserSummary {
    pub end_user: String,
    pub summary: super::AccountSummary,
}

/// Reads a sketch of any width into this one's: in its order with empty slots after (the order
/// decides ties, so a restored sketch goes on as the live one would), or, when it was wider, its
/// heaviest counters.
fn candidates_of_any_width<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<[Candidate; CANDIDATES], D::Error> {
    let mut read = Vec::<Candidate>::deserialize(deserializer)?;
    if read.len() > CANDIDATES {
        read.sort_by_key(|c| std::cmp::Reverse(c.count));
    }
    let mut candidates = [Candidate::default(); CANDIDATES];
    for (slot, candidate) in candidates.iter_mut().zip(read) {
        *slot = candidate;
    }
    Ok(candidates)
}

fn key_of(end_user: &str) -> u32 {
    // The low half of a 64-bit hash; a collision between two of one account's end users only
    // merges their counts.
    (fast_hash(end_user.as_bytes()) as u32).max(1)
}

impl EndUsers {
    /// Counts the event's end user and feeds a heavy end user's own state.
    ///
    /// The sketch counts the conversations an end user opens, not its requests: a harvester
    /// opens a new one with every request, while a person's follow-ups stay in theirs, so a
    /// harvester that sends a small share of a reseller's requests is a larger share of its
    /// openers. The state of a heavy end user sees all of its requests.
    pub fn observe(&mut self, event: &ApiEvent, end_user: &str, config: &EngineConfig) {
        let key = key_of(end_user);
        self.total = self.total.saturating_add(1);
        let opener = super::Turn::of(event) != super::Turn::Continuation;
        let slot = opener.then(|| self.count(key));
        if let Some(heavy) = self.heavy.iter_mut().find(|h| h.key == key) {
            heavy.state.observe(event, config);
            return;
        }
        let Some(slot) = slot else {
            return;
        };
        let candidate = self.candidates[slot];
        if u64::from(candidate.guaranteed()) >= config.detectors.min_prompts
            && !self.cooling(key, event.timestamp)
        {
            self.promote(&candidate, end_user, event.timestamp, config);
            if let Some(heavy) = self.heavy.iter_mut().find(|h| h.key == key) {
                heavy.state.observe(event, config);
            }
        }
    }

    /// Space-saving update; returns the slot now holding `key`.
    fn count(&mut self, key: u32) -> usize {
        if let Some(i) = self.candidates.iter().position(|c| c.key == key) {
            self.candidates[i].count = self.candidates[i].count.saturating_add(1);
            return i;
        }
        let (i, min) = self
            .candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.count)
            .map(|(i, c)| (i, c.count))
            .unwrap_or((0, 0));
        self.candidates[i] = Candidate {
            key,
            count: min.saturating_add(1),
            error: min,
        };
        i
    }

    /// The sketch's count for `key` (0 once it has left the sketch).
    fn count_of(&self, key: u32) -> u32 {
        self.candidates
            .iter()
            .find(|c| c.key == key)
            .map_or(0, |c| c.count)
    }

    /// Gives `candidate` (a heavy hitter: at least `min_prompts` requests for certain, enough for
    /// the text detectors to start speaking) a state of its own: a free one, else the state of a
    /// holder that stopped before it could be judged (see [`Self::yielding`]), else the lightest
    /// holder's if it counts less than half the candidate's guaranteed count (the margin keeps
    /// two end users of similar weight from trading a state back and forth).
    fn promote(
        &mut self,
        candidate: &Candidate,
        end_user: &str,
        at: EventTime,
        config: &EngineConfig,
    ) {
        let replaced = if self.heavy.len() < HEAVY {
            None
        } else {
            // Checked before a state is built: a heavy candidate waiting for one asks at each of
            // its requests.
            let Some(i) = self
                .yielding(at, config)
                .or_else(|| self.lighter_than_half(candidate))
            else {
                return;
            };
            Some(i)
        };
        let fresh = HeavyEndUser {
            key: candidate.key,
            name: end_user.chars().take(NAME_CHARS).collect(),
            state: Box::new(AccountState::new(at)),
        };
        match replaced {
            Some(i) => self.heavy[i] = fresh,
            None => {
                let mut heavy = std::mem::take(&mut self.heavy).into_vec();
                heavy.push(fresh);
                self.heavy = heavy.into_boxed_slice();
            }
        }
        self.promotions = self.promotions.saturating_add(1);
    }

    /// The holder quiet the longest among those quiet for a sitting's break (`SESSION_GAP_MS`)
    /// with fewer requests than it takes to judge one (twice `min_prompts`, the breadth
    /// detectors' full confidence even in a first sitting): a person whose session ended before
    /// its habits could show would otherwise keep the state for hours while a heavy candidate
    /// sends. A holder judged on enough requests and not cleared keeps its state however quiet.
    fn yielding(&self, at: EventTime, config: &EngineConfig) -> Option<usize> {
        let quiet_since = at.plus_ms(-SESSION_GAP_MS);
        (0..self.heavy.len())
            .filter(|&i| {
                let state = &self.heavy[i].state;
                state.last_seen() <= quiet_since && state.events < 2 * config.detectors.min_prompts
            })
            .min_by_key(|&i| self.heavy[i].state.last_seen())
    }

    /// The lightest holder, if its sketch count is under half the candidate's guaranteed count.
    fn lighter_than_half(&self, candidate: &Candidate) -> Option<usize> {
        (0..self.heavy.len())
            .min_by_key(|&i| self.count_of(self.heavy[i].key))
            .filter(|&i| {
                u64::from(self.count_of(self.heavy[i].key)) * 2 < u64::from(candidate.guaranteed())
            })
    }

    /// The end user was cleared less than `COOLDOWN_MS` before `at`.
    fn cooling(&self, key: u32, at: EventTime) -> bool {
        self.cleared.as_ref().is_some_and(|list| {
            list.0
                .iter()
                .any(|c| c.key == key && c.until_ms > at.epoch_ms())
        })
    }

    /// Takes the state of an end user that looks like a person and remembers it as cleared
    /// (forgetting the expired, then the one cleared longest ago when `CLEARED` are remembered).
    fn clear(&mut self, key: u32, at: EventTime) {
        let mut heavy = std::mem::take(&mut self.heavy).into_vec();
        heavy.retain(|h| h.key != key);
        self.heavy = heavy.into_boxed_slice();
        let cleared = &mut self.cleared.get_or_insert_with(Box::default).0;
        cleared.retain(|c| c.key != key && c.until_ms > at.epoch_ms());
        if cleared.len() >= CLEARED {
            if let Some(oldest) = (0..cleared.len()).min_by_key(|&i| cleared[i].until_ms) {
                cleared.remove(oldest);
            }
        }
        cleared.push(Cleared {
            key,
            until_ms: at.epoch_ms().saturating_add(COOLDOWN_MS),
        });
    }

    /// Summaries of the heavy end users: whenever their account changed, they are judged beside
    /// it (at most `HEAVY` summaries). An end user whose summary shows a habit of people is
    /// judged this once more, then hands its state on.
    pub fn summaries(
        &mut self,
        account_id: &AccountId,
        at: EventTime,
        config: &EngineConfig,
    ) -> Vec<EndUserSummary> {
        let mut summaries = Vec::new();
        let mut people = Vec::new();
        for heavy in self.heavy.iter_mut().filter(|h| h.state.events > 0) {
            let summary = heavy.state.summary(account_id, at);
            if crate::detect::breadth_cleared(&summary, &config.detectors) {
                people.push(heavy.key);
            }
            summaries.push(EndUserSummary {
                end_user: heavy.name.to_string(),
                summary,
            });
        }
        for key in people {
            self.clear(key, at);
        }
        summaries
    }

    /// Events in the "other" bucket (end users not judged on their own).
    pub fn other_events(&self) -> u64 {
        let own: u64 = self.heavy.iter().map(|h| h.state.events).sum();
        u64::from(self.total).saturating_sub(own)
    }

    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.cleared.as_ref().map_or(0, |list| {
                std::mem::size_of::<ClearedList>()
                    + list.0.capacity() * std::mem::size_of::<Cleared>()
            })
            + self
                .heavy
                .iter()
                .map(|h| {
                    std::mem::size_of::<HeavyEndUser>()
                        + h.name.len()
                        + std::mem::size_of::<AccountState>()
                        + h.state.heap_bytes_without_samples()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests;
