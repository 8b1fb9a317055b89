//! Heavy end users of a shared account as sub-subjects (issue 13, point 1).
//!
//! A reseller, a proxy or an app passes its own customers' requests through one account and
//! names them in `end_user`; one customer harvesting at scale then hides among the others'
//! ordinary traffic (the "proxy/reseller: multiple downstream customers mixed in one account"
//! signal of the research notes). Per-account signals see the mixture. So each account with
//! several end users keeps a space-saving heavy-hitters sketch of `CANDIDATES` end users (the
//! rest is the "other" bucket), and the end users that are heavy hitters get an account state of
//! their own, on which the same detectors run.
//!
//! Bounded: the sketch is allocated only once an account has shown two end users (80 bytes), and
//! at most `HEAVY` end users get a sub-state, each as bounded as an account's.

use serde::{Deserialize, Serialize};

use super::AccountState;
use crate::engine::EngineConfig;
use crate::event::{AccountId, ApiEvent};
use crate::sketch::fast_hash;
use crate::time::EventTime;

/// End users the space-saving sketch tracks: every end user with more than a fifth of the
/// account's end-user traffic is among them (the sketch's guarantee), the rest is "other".
pub const CANDIDATES: usize = 5;
/// End users judged on their own at most (each costs an account state).
pub const HEAVY: usize = 2;
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

/// The sketch and the heavy end users of one shared account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndUsers {
    candidates: [Candidate; CANDIDATES],
    /// A boxed slice, not a `Vec`: promotions are rare and the header is 8 bytes smaller.
    heavy: Box<[HeavyEndUser]>,
    /// End-user events the sketch counted (the "other" bucket is these less the heavy end users'
    /// own events).
    total: u32,
}

/// The summary of one heavy end user at a tick, beside its account's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndUserSummary {
    pub end_user: String,
    pub summary: super::AccountSummary,
}

fn key_of(end_user: &str) -> u32 {
    // The low half of a 64-bit hash; a collision between two of one account's end users only
    // merges their counts.
    (fast_hash(end_user.as_bytes()) as u32).max(1)
}

impl EndUsers {
    /// Counts the event's end user and feeds a heavy end user's own state.
    pub fn observe(&mut self, event: &ApiEvent, end_user: &str, config: &EngineConfig) {
        let key = key_of(end_user);
        self.total = self.total.saturating_add(1);
        let slot = self.count(key);
        if let Some(heavy) = self.heavy.iter_mut().find(|h| h.key == key) {
            heavy.state.observe(event, config);
            return;
        }
        let candidate = self.candidates[slot];
        if u64::from(candidate.guaranteed()) >= config.detectors.min_prompts {
            self.promote(&candidate, end_user, event.timestamp);
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
    /// the text detectors to start speaking) a state of its own, in a free slot or in the place
    /// of the lightest holder if it counts less than half the candidate's guaranteed count (the
    /// margin keeps two end users of similar weight from trading a state back and forth).
    fn promote(&mut self, candidate: &Candidate, end_user: &str, at: EventTime) {
        let fresh = HeavyEndUser {
            key: candidate.key,
            name: end_user.chars().take(NAME_CHARS).collect(),
            state: Box::new(AccountState::new(at)),
        };
        if self.heavy.len() < HEAVY {
            let mut heavy = std::mem::take(&mut self.heavy).into_vec();
            heavy.push(fresh);
            self.heavy = heavy.into_boxed_slice();
            return;
        }
        let lightest = (0..self.heavy.len()).min_by_key(|&i| self.count_of(self.heavy[i].key));
        if let Some(i) = lightest {
            if u64::from(self.count_of(self.heavy[i].key)) * 2 < u64::from(candidate.guaranteed()) {
                self.heavy[i] = fresh;
            }
        }
    }

    /// Summaries of the heavy end users: whenever their account changed, they are judged beside
    /// it (at most `HEAVY` summaries).
    pub fn summaries(&mut self, account_id: &AccountId, at: EventTime) -> Vec<EndUserSummary> {
        self.heavy
            .iter_mut()
            .filter(|h| h.state.events > 0)
            .map(|h| EndUserSummary {
                end_user: h.name.to_string(),
                summary: h.state.summary(account_id, at),
            })
            .collect()
    }

    /// Events in the "other" bucket (end users not judged on their own).
    pub fn other_events(&self) -> u64 {
        let own: u64 = self.heavy.iter().map(|h| h.state.events).sum();
        u64::from(self.total).saturating_sub(own)
    }

    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
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
mod tests {
    use super::*;
    use crate::detect::testing::{diverse_prompt, event, BASE};
    use crate::engine::Engine;

    fn state_after(events: &[ApiEvent]) -> AccountState {
        let config = EngineConfig::default();
        let mut state = AccountState::new(events[0].timestamp);
        for e in events {
            state.observe(e, &config);
        }
        state
    }

    fn by(end_user: &str, ms: i64, prompt: &str, messages: u32) -> ApiEvent {
        let mut e = event(ms, prompt);
        e.end_user = Some(end_user.to_owned());
        e.messages = Some(messages);
        e
    }

    /// A reseller's day: five people chatting (re-asking, following up), and, when `harvester`
    /// is set, one end user sending a never-repeated one-shot question every 20 seconds.
    fn reseller(hours: i64, harvester: bool) -> Vec<ApiEvent> {
        let mut events = Vec::new();
        let mut i = 0usize;
        let mut t = 0i64;
        while t < hours * EventTime::HOUR {
            let person = format!("person-{}", i % 5);
            let prompt = format!("{} again", diverse_prompt(i / 40));
            events.push(by(
                &person,
                t,
                &prompt,
                if i.is_multiple_of(3) { 1 } else { 4 },
            ));
            if harvester {
                for k in 0..3 {
                    let at = t + k * 20_000;
                    events.push(by(
                        "eu-bad",
                        at + 7,
                        &diverse_prompt(1_000_000 + 3 * i + k as usize),
                        1,
                    ));
                }
            }
            t += 60_000;
            i += 1;
        }
        events
    }

    #[test]
    fn an_account_with_one_end_user_keeps_no_end_user_state() {
        let events: Vec<_> = (0..500)
            .map(|i| by("only", i * 10_000, &diverse_prompt(i as usize), 1))
            .collect();
        let state = state_after(&events);
        assert!(state.end_user_subjects.is_none());
    }

    #[test]
    fn many_end_users_of_equal_weight_get_a_sketch_but_no_state_of_their_own() {
        let events: Vec<_> = (0..3_000)
            .map(|i| {
                by(
                    &format!("u{}", i % 300),
                    i * 10_000,
                    &diverse_prompt(i as usize),
                    1,
                )
            })
            .collect();
        let mut state = state_after(&events);
        let subjects = state.end_user_subjects.as_ref().expect("several end users");
        assert!(subjects.heavy.is_empty());
        assert_eq!(subjects.other_events(), u64::from(subjects.total));
        assert!(state
            .end_user_summaries(&events[0].account_id, events[0].timestamp)
            .is_empty());
    }

    #[test]
    fn the_end_user_sending_most_of_a_shared_accounts_traffic_is_judged_on_its_own() {
        let events = reseller(2, true);
        let mut state = state_after(&events);
        let at = EventTime::from_epoch_ms(BASE + 3 * EventTime::HOUR).unwrap();
        let summaries = state.end_user_summaries(&events[0].account_id, at);
        let names: Vec<&str> = summaries.iter().map(|s| s.end_user.as_str()).collect();
        // The people churn through the sketch's five slots; the harvester holds its slot.
        assert_eq!(names, ["eu-bad"]);
        // Only the harvester's own requests since it became heavy, and none of the people's.
        let own = &summaries[0].summary;
        assert!(own.events > 300 && own.events <= 360, "{}", own.events);
        assert_eq!(own.single_turn, own.events);
        let subjects = state.end_user_subjects.as_ref().unwrap();
        assert!(subjects.heap_bytes() < 2 * 4_352 + 256);
    }

    #[test]
    fn a_much_heavier_end_user_takes_the_state_of_the_lightest_holder() {
        let config = EngineConfig::default();
        let mut subjects = EndUsers::default();
        let mut t = 0;
        for (name, count) in [("a", 100), ("b", 100), ("c", 400), ("d", 400), ("e", 2_000)] {
            for i in 0..count {
                subjects.observe(&by(name, t, &diverse_prompt(i), 1), name, &config);
                t += 1_000;
            }
        }
        let heavy: Vec<&str> = subjects.heavy.iter().map(|h| h.name.as_ref()).collect();
        assert_eq!(heavy.len(), HEAVY);
        assert!(heavy.contains(&"e"), "{heavy:?}");
    }

    fn run(events: &[ApiEvent]) -> crate::finding::Report {
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|e| e.timestamp);
        let mut engine = Engine::new(EngineConfig::default(), 2);
        for e in &sorted {
            engine.process(e);
        }
        engine.finish();
        engine.report()
    }

    #[test]
    fn a_harvesting_end_user_flags_its_shared_account_and_is_named_in_the_finding() {
        let report = run(&reseller(6, true));
        let finding = &report.accounts[0];
        assert!(finding.flagged, "{finding:?}");
        assert_eq!(finding.end_user.as_deref(), Some("eu-bad"));
        assert!(finding.signals[0]
            .evidence
            .summary
            .starts_with("end user eu-bad"));
    }

    #[test]
    fn a_shared_account_of_people_chatting_is_not_flagged_through_its_end_users() {
        let report = run(&reseller(6, false));
        assert!(report
            .accounts
            .iter()
            .all(|a| !a.flagged && a.end_user.is_none()));
    }
}
