//! The first sitting: an account whose whole history is one stretch of requests of a person's
//! length — no break of 30 minutes or more, and under four hours from its first request to its
//! latest.
//!
//! A student's homework evening and the first hour of a reasoning harvest at human pace are the
//! same per account by most measures: 20–40 unrelated questions, most demanding step-by-step
//! answers, minutes apart, never a deep conversation. What tells them apart is what the person
//! does with the answers: they follow up on one ("i don't get step 2", "why did you divide
//! there?") or ask a question again; a harvest takes each answer and moves on. Both facts need the
//! sitting judged on its own, so two rules apply only while the account is in its first sitting:
//!
//! - **a follow-up clears the reasoning demands** (`elicitation`): one later turn of a
//!   conversation in the sitting (not an agent loop) leaves the demands for steps out of the
//!   pressure — the person is reading the steps. Everything else still counts (volume,
//!   automation, templating, parameters, long outputs).
//! - **the absence of a follow-up needs more requests** (`coverage`): a person who follows up
//!   once in six requests shows none in 20 requests about 3 % of the time, while
//!   `min_prompts` (16) from a quarter of it lets coverage reach its flagging level at the
//!   eleventh prompt. In a first sitting coverage's prompt-count confidence runs from half of
//!   `min_prompts` to twice it (8 → 32 by default).
//!
//! From its second sitting on the account is judged as usual: a harvest at human pace has to
//! come back, and by then a student's follow-ups and re-asks have had two evenings to show; a
//! sitting that outlasts an evening is not one person's study session. The cost is a delay for a
//! harvest whose first sitting looks like a person's: it is judged on about 20 prompts instead
//! of 11.
//!
//! Sittings come from counters every account has: requests minus the gaps of at most 30 minutes
//! between consecutive requests, and minus the requests logged out of order within a sitting (a
//! gateway that logs on completion puts a quick follow-up after the next question; parallel
//! requests). A request logged more than 30 minutes out of order counts as a sitting of its own,
//! which ends the first-sitting treatment early — the ordinary judgement, never a more lenient
//! one. A cluster's combined summary adds its members' sittings, so a cluster is never in a first
//! sitting.

use super::{prompt_confidence, ramp};
use crate::detect::DetectorConfig;
use crate::features::AccountSummary;
use crate::time::EventTime;

/// Longest first sitting given the benefit of the doubt: an evening of homework or study.
pub(crate) const SITTING_MAX_MS: i64 = 4 * EventTime::HOUR;

/// Sittings so far: requests not preceded by an in-order gap of at most 30 minutes, leaving out
/// requests logged out of order within a sitting.
pub(crate) fn sittings(a: &AccountSummary) -> u64 {
    a.events.saturating_sub(a.gaps + a.late_in_sitting)
}

/// The account's whole history is one sitting of a person's length.
pub(crate) fn first_sitting(a: &AccountSummary) -> bool {
    a.events > 0
        && sittings(a) <= 1
        && a.last_seen.epoch_ms() - a.first_seen.epoch_ms() <= SITTING_MAX_MS
}

/// Follow-ups: later turns of a conversation, leaving out an agent loop re-sending its task and
/// turns four or more rounds deep. Re-sends are not counted here, though coverage counts them as
/// a human habit: a client retrying a failed request re-sends it too, and before its template is
/// learned a templated harvest's prompts look like edits of one another; one of them must not
/// clear a sitting.
pub(crate) fn follow_ups(a: &AccountSummary) -> u64 {
    a.continuations()
        .saturating_sub(a.deep_turns + a.task_resends)
}

/// Someone reading the answers, and no agent loop (no turn four or more rounds deep): a first
/// sitting with a follow-up in it, or evenings of study ([`studying_evenings`]). An agent's tool
/// rounds also come back seconds apart with short repeated outputs; its sessions go deep, a
/// person's study questions do not.
pub(crate) fn studying(a: &AccountSummary) -> bool {
    a.deep_turns == 0 && follow_ups(a) > 0 && (first_evening(a) || studying_evenings(a))
}

/// Sittings a first evening may hold for the follow-up clearance: one break in it (dinner, a
/// walk), or one request logged out of order.
pub(crate) const FIRST_EVENING_SITTINGS: u64 = 2;

/// The account's whole history is one evening of a person's length with at most one break: a
/// student who stops for dinner after a dozen questions has had no more time to follow up than
/// one who did not. Only the follow-up clearance spans the break; coverage's slower confidence
/// stays with the first sitting, so a harvest without follow-ups is judged as before.
pub(crate) fn first_evening(a: &AccountSummary) -> bool {
    a.events > 0
        && sittings(a) <= FIRST_EVENING_SITTINGS
        && a.last_seen.epoch_ms() - a.first_seen.epoch_ms() <= SITTING_MAX_MS
}

/// Spacing of a student's evenings: beyond two sittings (an evening with a break in it, for
/// dinner, or a morning and an evening), one more sitting for every half day of the account's
/// history — two sittings a day on average, every day.
pub(crate) const EVENING_SPACING_MS: i64 = 12 * EventTime::HOUR;

/// Requests in the last 24 hours at most: two evenings of up to 40 questions, when a student
/// studies on consecutive evenings and both fall in one 24-hour window.
pub(crate) const EVENINGS_MAX_REQUESTS_24H: u64 = 80;

/// A student coming back on later evenings: several sittings, at most two a day on average
/// ([`EVENING_SPACING_MS`]) and no more than two evenings' questions in the last 24 hours
/// ([`studying`] adds that the account has followed up on an answer at least once). A harvest at
/// human pace that comes back keeps its volume by sitting several times a day, or by sending more
/// than a person asks in an evening.
///
/// Follow-ups are not required on every evening: students differ, and one who questions one answer
/// in twenty has evenings without a follow-up about a third of the time. Requiring them would not
/// stop an adaptive harvest either (a fake follow-up per sitting costs it one request); what bounds
/// an account given the benefit of the doubt is the spacing and the 24-hour volume, at most 80
/// requests a day. A campaign that wants volume at that pace needs hundreds of accounts, which is
/// the linker's catch.
pub(crate) fn studying_evenings(a: &AccountSummary) -> bool {
    let sittings = sittings(a);
    let span = a.last_seen.epoch_ms() - a.first_seen.epoch_ms();
    sittings >= 2
        && (sittings - 2) as i64 * EVENING_SPACING_MS <= span
        && a.events_last_24h <= EVENINGS_MAX_REQUESTS_24H
}

/// Questions in one evening of homework at most: half of [`EVENINGS_MAX_REQUESTS_24H`].
pub(crate) const EVENING_QUESTIONS: u64 = EVENINGS_MAX_REQUESTS_24H / 2;

/// A first evening ([`first_evening`]: one sitting, or two with a break between them, within
/// four hours) from one known address: a person at home or on one campus network. A student who
/// stops for dinner comes back from the same address; a harvest through a rotating residential
/// proxy (the reseller model of the public reports) shows a new address with every session, so
/// its second session ends this at once. An account whose gateway logs no address never
/// qualifies: the benefit of the doubt needs the address to be seen. Nor does one whose requests
/// name end users (a reseller, an app, or one heavy end user judged on its own): the address is
/// then the platform's server, shared by its users, and says nothing about the person.
pub(crate) fn first_evening_at_home(a: &AccountSummary) -> bool {
    first_evening(a) && a.distinct_ips == 1 && a.end_user_events == 0
}

/// Prompt-count confidence for coverage: as [`prompt_confidence`], except early on, when the
/// absence of follow-ups is weak evidence:
/// - in a first evening from one address ([`first_evening_at_home`]), from half of `min_prompts`
///   to a whole evening's questions ([`EVENING_QUESTIONS`]): a student who questions one answer
///   in thirty asks 40 questions without a follow-up about a third of the time;
/// - in any other first sitting, from half of `min_prompts` to twice it.
pub(crate) fn breadth_confidence(a: &AccountSummary, config: &DetectorConfig) -> f64 {
    match early_prompts(a, config) {
        Some(full) => ramp(
            a.prompts as f64,
            (config.min_prompts / 2) as f64,
            full as f64,
        ),
        None => prompt_confidence(a, config),
    }
}

/// Prompts at which [`breadth_confidence`] is full, for the evidence.
pub(crate) fn full_confidence_prompts(a: &AccountSummary, config: &DetectorConfig) -> u64 {
    early_prompts(a, config).unwrap_or(config.min_prompts)
}

/// Prompts for full confidence while the account is new enough for the slower confidence.
fn early_prompts(a: &AccountSummary, config: &DetectorConfig) -> Option<u64> {
    let twice = config.min_prompts * 2;
    if first_evening_at_home(a) {
        Some(twice.max(EVENING_QUESTIONS))
    } else if first_sitting(a) {
        Some(twice)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::event::ApiEvent;
    use crate::features::DEEP_TURN_MESSAGES;

    const MINUTE: i64 = 60_000;

    #[test]
    fn an_evening_of_questions_minutes_apart_is_one_sitting_and_a_break_starts_another() {
        let evening: Vec<_> = (0..30)
            .map(|i| event(i * 3 * MINUTE, &diverse_prompt(i as usize)))
            .collect();
        let a = summarise(&evening);
        assert_eq!(sittings(&a), 1);
        assert!(first_sitting(&a));
        let mut two = evening.clone();
        two.push(event(30 * 3 * MINUTE + 45 * MINUTE, &diverse_prompt(99)));
        let a = summarise(&two);
        assert_eq!(sittings(&a), 2);
        assert!(!first_sitting(&a));
    }

    #[test]
    fn a_sitting_longer_than_an_evening_is_not_a_first_sitting() {
        // Round the clock, a request every ten minutes: never a break, but five hours long.
        let events: Vec<_> = (0..31)
            .map(|i| event(i * 10 * MINUTE, &diverse_prompt(i as usize)))
            .collect();
        let a = summarise(&events);
        assert_eq!(sittings(&a), 1);
        assert!(!first_sitting(&a));
    }

    #[test]
    fn a_request_logged_out_of_order_stays_in_its_sitting_unless_it_is_a_break_late() {
        let mut events: Vec<_> = (0..10)
            .map(|i| event(i * 2 * MINUTE, &diverse_prompt(i as usize)))
            .collect();
        // A gateway logging on completion: a quick request logged after the next one.
        events.swap(4, 5);
        let a = summarise(&events);
        assert_eq!((sittings(&a), a.late_in_sitting), (1, 1));
        assert!(first_sitting(&a));
        // A request logged 40 minutes after the latest one, from before it: a sitting of its own.
        events.push(event(-20 * MINUTE, &diverse_prompt(77)));
        events.push(event(20 * MINUTE + 40 * MINUTE, &diverse_prompt(78)));
        events.swap(10, 11);
        let a = summarise(&events);
        assert_eq!(sittings(&a), 3);
        assert!(!first_sitting(&a));
    }

    #[test]
    fn follow_ups_count_and_re_sends_and_agent_loops_do_not() {
        let mut events: Vec<_> = (0..12)
            .map(|i| event(i * 2 * MINUTE, &diverse_prompt(i as usize)))
            .collect();
        // The same question again (or a client's retry) and a shared closing phrase.
        events[9].prompt = events[8].prompt.clone();
        for e in &mut events {
            let prompt = e.prompt.take().unwrap();
            e.prompt = Some(format!("{prompt} Think step by step and show your work."));
        }
        let a = summarise(&events);
        assert_eq!(follow_ups(&a), 0);
        assert!(first_sitting(&a) && !studying(&a));
        // "i don't get step 2": a later turn of the conversation.
        events[6].prompt = Some("i don't get step 2".into());
        events[6].messages = Some(3);
        let a = summarise(&events);
        assert_eq!(follow_ups(&a), 1);
        assert!(studying(&a));
        // An agent: a task, then tool rounds deep in the loop that re-send the task.
        let agent: Vec<_> = (0..12)
            .map(|i| {
                let mut e = event(i * 5_000, "Fix the failing tests in the billing module");
                e.messages = Some(1 + 2 * i as u32 + 8 * u32::from(i > 0));
                e
            })
            .collect();
        let agent = summarise(&agent);
        assert_eq!(follow_ups(&agent), 0);
        assert!(first_sitting(&agent) && !studying(&agent));
    }

    /// Sittings of `per_sitting` new questions 3 minutes apart, starting at `starts` (minutes),
    /// each with a follow-up at its fifth request when `follow_up` is set.
    fn sittings_at(starts: &[i64], per_sitting: usize, follow_up: bool) -> Vec<ApiEvent> {
        let mut events = Vec::new();
        for (s, start) in starts.iter().enumerate() {
            for i in 0..per_sitting {
                let k = s * per_sitting + i;
                let mut e = event((start + 3 * i as i64) * MINUTE, &diverse_prompt(k));
                if follow_up && i == 4 {
                    e.prompt = Some("why did you divide there?".into());
                    e.messages = Some(3);
                }
                events.push(e);
            }
        }
        events
    }

    #[test]
    fn a_follow_up_before_a_dinner_break_still_clears_the_evening_and_a_second_break_ends_it() {
        // Twelve questions with a follow-up, dinner, twelve more without one.
        let mut events = sittings_at(&[19 * 60], 12, true);
        events.extend(
            sittings_at(&[19 * 60 + 36 + 45], 12, false)
                .into_iter()
                .map(|mut e| {
                    e.prompt = Some(format!("{} after dinner", e.prompt.unwrap()));
                    e
                }),
        );
        let a = summarise(&events);
        assert_eq!((sittings(&a), follow_ups(&a)), (2, 1));
        assert!(!first_sitting(&a) && first_evening(&a) && studying(&a));
        // Coverage's slower confidence stays with the first sitting.
        let config = DetectorConfig::default();
        assert_eq!(
            breadth_confidence(&a, &config),
            prompt_confidence(&a, &config)
        );
        // A third sitting the same evening is not one person's homework with a break.
        events.push(event(
            (19 * 60 + 36 + 45 + 36 + 40) * MINUTE,
            &diverse_prompt(999),
        ));
        let a = summarise(&events);
        assert!(!first_evening(&a) && !studying(&a));
    }

    #[test]
    fn evenings_of_study_with_a_follow_up_are_studying_and_sittings_all_day_are_not() {
        const DAY: i64 = 24 * 60;
        // Three evenings, the third two days after the second, 30 questions each.
        let evenings = [19 * 60, DAY + 19 * 60, 3 * DAY + 20 * 60];
        let a = summarise(&sittings_at(&evenings, 30, true));
        assert_eq!(sittings(&a), 3);
        assert!(!first_sitting(&a));
        assert!(studying_evenings(&a) && studying(&a));
        // Without follow-ups they are not someone reading the answers.
        assert!(!studying(&summarise(&sittings_at(&evenings, 30, false))));
        // A student who follows up rarely: one follow-up, on the first evening only.
        let mut rare = sittings_at(&evenings, 30, true);
        for k in [30 + 4, 60 + 4] {
            rare[k].prompt = Some(diverse_prompt(k));
            rare[k].messages = Some(1);
        }
        let a = summarise(&rare);
        assert_eq!((sittings(&a), follow_ups(&a)), (3, 1));
        assert!(studying(&a));
        // A dinner break splits every evening in two, five evenings in a row: two sittings a
        // day.
        let split: Vec<i64> = (0..10)
            .map(|k| 19 * 60 + 105 * (k % 2) + DAY * (k / 2))
            .collect();
        assert!(studying(&summarise(&sittings_at(&split, 15, true))));
        // Four sittings a day, three hours apart, a follow-up in each: a harvest keeping its
        // volume at human pace.
        let all_day: Vec<i64> = (0..8)
            .map(|k| 9 * 60 + 180 * (k % 4) + DAY * (k / 4))
            .collect();
        assert!(!studying(&summarise(&sittings_at(&all_day, 10, true))));
        // An evening sitting of 90 questions a day, more than two evenings' worth.
        assert!(!studying(&summarise(&sittings_at(
            &evenings[..2],
            90,
            true
        ))));
    }

    #[test]
    fn an_agent_loop_is_never_studying_however_its_sittings_are_spaced() {
        const DAY: i64 = 24 * 60;
        let mut events = sittings_at(&[19 * 60, DAY + 19 * 60], 20, true);
        events[10].messages = Some(DEEP_TURN_MESSAGES);
        assert!(!studying(&summarise(&events)));
    }

    #[test]
    fn a_first_evening_from_one_address_needs_an_evenings_questions_and_a_new_address_ends_it() {
        let config = DetectorConfig::default();
        let home: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        // Fifteen questions, dinner, twenty-one more: one address all evening, no follow-up.
        let mut events = sittings_at(&[19 * 60], 15, false);
        events.extend(sittings_at(&[19 * 60 + 45 + 50], 21, false));
        for (k, e) in events.iter_mut().enumerate() {
            e.prompt = Some(diverse_prompt(k));
            e.client_ip = Some(home);
        }
        let a = summarise(&events);
        assert_eq!((sittings(&a), a.prompts), (2, 36));
        assert!(first_evening_at_home(&a) && !first_sitting(&a));
        assert_eq!(full_confidence_prompts(&a, &config), EVENING_QUESTIONS);
        let expected = (36.0 - 8.0) / (40.0 - 8.0);
        assert!((breadth_confidence(&a, &config) - expected).abs() < 1e-9);
        // A rotating proxy: the second session comes from a new address, judged as usual.
        let mut rotating = events.clone();
        for e in rotating.iter_mut().skip(15) {
            e.client_ip = Some("198.51.100.23".parse().unwrap());
        }
        let a = summarise(&rotating);
        assert!(!first_evening_at_home(&a));
        assert_eq!(breadth_confidence(&a, &config), 1.0);
        // No address logged: no benefit of the doubt beyond the first sitting.
        let mut unknown = events.clone();
        for e in &mut unknown {
            e.client_ip = None;
        }
        assert_eq!(breadth_confidence(&summarise(&unknown), &config), 1.0);
        // Requests naming end users come from a platform's server: its address is not a home.
        let mut platform = events.clone();
        for e in &mut platform {
            e.end_user = Some("user-17".into());
        }
        assert!(!first_evening_at_home(&summarise(&platform)));
        // The next evening from the same address is judged as usual.
        events.push(event((24 * 60 + 19 * 60) * MINUTE, &diverse_prompt(500)));
        events.last_mut().unwrap().client_ip = Some(home);
        let a = summarise(&events);
        assert!(!first_evening_at_home(&a));
        assert_eq!(breadth_confidence(&a, &config), 1.0);
    }

    #[test]
    fn confidence_in_a_first_sitting_needs_twice_the_prompts() {
        let config = DetectorConfig::default();
        let events: Vec<_> = (0..16)
            .map(|i| event(i * 3 * MINUTE, &diverse_prompt(i as usize)))
            .collect();
        let a = summarise(&events);
        assert_eq!(prompt_confidence(&a, &config), 1.0);
        assert!((breadth_confidence(&a, &config) - 1.0 / 3.0).abs() < 1e-9);
        // The same sixteen prompts over two sittings: the usual confidence.
        let mut later = events.clone();
        for e in later.iter_mut().skip(8) {
            e.timestamp = e.timestamp.plus_ms(2 * 60 * MINUTE);
        }
        assert_eq!(breadth_confidence(&summarise(&later), &config), 1.0);
    }
}
