use super::*;
use crate::detect::testing::{diverse_prompt, event, BASE};
use crate::engine::Engine;
use std::collections::HashMap;

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
    e.end_user = Some(end_user.into());
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
        .end_user_summaries(
            &events[0].account_id,
            events[0].timestamp,
            &EngineConfig::default()
        )
        .is_empty());
}

#[test]
fn the_end_user_sending_most_of_a_shared_accounts_traffic_is_judged_on_its_own() {
    let events = reseller(2, true);
    let mut state = state_after(&events);
    let at = EventTime::from_epoch_ms(BASE + 3 * EventTime::HOUR).unwrap();
    let summaries = state.end_user_summaries(&events[0].account_id, at, &EngineConfig::default());
    let names: Vec<&str> = summaries.iter().map(|s| s.end_user.as_str()).collect();
    // The harvester was heavy first; the people, lighter, wait for the other state or are
    // being judged in it (never cleared here: no tick has judged them).
    assert_eq!(names[0], "eu-bad");
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

/// A reseller's customers over `hours`: `people` heavy customers chatting a request a minute
/// each (two of three requests follow up, the questions come back), twenty light customers
/// sharing a request a minute, and, when `harvester` is set, from the second hour one end user
/// sending a never-repeated one-shot question demanding worked steps every 90 seconds: a third
/// of a heavy customer's pace less, so behind every heavy customer.
fn crowded_reseller(hours: i64, people: usize, harvester: bool) -> Vec<ApiEvent> {
    let mut events = Vec::new();
    for minute in 0..hours * 60 {
        let t = minute * 60_000;
        let i = minute as usize;
        for p in 0..people {
            let question = diverse_prompt(10_000 * p + i / 12);
            let messages = if i.is_multiple_of(3) { 1 } else { 4 };
            events.push(by(
                &format!("regular-{p}"),
                t + p as i64,
                &question,
                messages,
            ));
        }
        let light = format!("light-{}", i % 20);
        events.push(by(
            &light,
            t + 500,
            &diverse_prompt(500_000 + i / 4),
            1 + 3 * (i % 2) as u32,
        ));
        if harvester && minute >= 60 && minute % 3 != 0 {
            let mut e = by(
                "eu-bad",
                t + 30_000,
                &format!(
                    "{} Explain your reasoning step by step.",
                    diverse_prompt(1_000_000 + i)
                ),
                1,
            );
            e.usage.completion_tokens = Some(1_200);
            events.push(e);
        }
    }
    events
}

fn promotions_after(events: &[ApiEvent]) -> u32 {
    let mut state = AccountState::new(events[0].timestamp);
    let config = EngineConfig::default();
    let mut tick = events[0].timestamp.epoch_ms() + config.tick_ms;
    for e in events {
        while e.timestamp.epoch_ms() >= tick {
            let at = EventTime::from_epoch_ms(tick).unwrap();
            state.end_user_summaries(&e.account_id, at, &config);
            tick += config.tick_ms;
        }
        state.observe(e, &config);
    }
    state.end_user_subjects.as_ref().map_or(0, |s| s.promotions)
}

#[test]
fn a_harvester_behind_two_ordinary_heavy_customers_still_gets_judged_and_flags() {
    let events = crowded_reseller(8, 2, true);
    let count = |name: &str| {
        events
            .iter()
            .filter(|e| e.end_user.as_deref() == Some(name))
            .count()
    };
    assert!(count("eu-bad") < count("regular-1") && count("eu-bad") > count("light-0"));
    let report = run(&events);
    let finding = &report.accounts[0];
    assert!(finding.flagged, "{finding:?}");
    assert_eq!(finding.end_user.as_deref(), Some("eu-bad"));
}

#[test]
fn ordinary_heavy_customers_alone_never_flag_their_account() {
    let report = run(&crowded_reseller(30, 4, false));
    assert!(
        report.accounts.iter().all(|a| !a.flagged),
        "{:?}",
        report.accounts
    );
}

#[test]
fn states_rotate_through_heavy_people_without_thrashing() {
    // Six heavy customers and twenty light ones, two states, fifty hours: each customer that
    // opens enough conversations to be judged is judged, cleared and judged again the next day,
    // not handed a state every few minutes.
    let (people, hours) = (6, 50);
    let events = crowded_reseller(hours, people, false);
    let promotions = promotions_after(&events);
    let mut openers: HashMap<&str, u64> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| crate::features::Turn::of(e) != crate::features::Turn::Continuation)
    {
        *openers.entry(e.end_user.as_deref().unwrap()).or_default() += 1;
    }
    let min_prompts = EngineConfig::default().detectors.min_prompts;
    let judgeable = openers.values().filter(|&&n| n >= min_prompts).count() as u32;
    let days = (hours / 24 + 1) as u32;
    assert!(promotions >= people as u32, "{promotions} promotions");
    assert!(
        promotions <= judgeable * days,
        "{promotions} promotions for {judgeable} judgeable customers"
    );
}

#[test]
fn an_end_user_that_looks_like_a_person_hands_its_state_on_and_waits_a_day() {
    let config = EngineConfig::default();
    let mut subjects = EndUsers::default();
    let mut t = 0;
    let mut observe = |subjects: &mut EndUsers, name: &str, prompt: &str, messages: u32| {
        subjects.observe(&by(name, t, prompt, messages), name, &config);
        t += 60_000;
    };
    // "chat" follows up on two of three questions; "other" keeps the sketch shared.
    for i in 0..80 {
        observe(
            &mut subjects,
            "chat",
            &diverse_prompt(i / 3),
            if i % 3 == 0 { 1 } else { 4 },
        );
        observe(&mut subjects, "other", &diverse_prompt(9_000 + i), 1);
    }
    let id = AccountId::parse("acct").unwrap();
    let at = EventTime::from_epoch_ms(BASE + t).unwrap();
    let summaries = subjects.summaries(&id, at, &config);
    assert!(summaries.iter().any(|s| s.end_user == "chat"));
    assert!(subjects.heavy.iter().all(|h| h.name.as_ref() != "chat"));
    let key = key_of("chat");
    assert!(subjects.cooling(key, at.plus_ms(COOLDOWN_MS - 1)));
    assert!(!subjects.cooling(key, at.plus_ms(COOLDOWN_MS)));
}

#[test]
fn a_broad_one_shot_end_user_keeps_its_state() {
    let config = EngineConfig::default();
    let mut subjects = EndUsers::default();
    for i in 0..200 {
        let name = if i % 2 == 0 { "broad" } else { "quiet" };
        let e = by(name, i * 30_000, &diverse_prompt(i as usize), 1);
        subjects.observe(&e, name, &config);
    }
    let id = AccountId::parse("acct").unwrap();
    let at = EventTime::from_epoch_ms(BASE + 200 * 30_000).unwrap();
    subjects.summaries(&id, at, &config);
    let held: Vec<&str> = subjects.heavy.iter().map(|h| h.name.as_ref()).collect();
    assert_eq!(held, ["broad", "quiet"]);
    assert!(subjects.cleared.is_none());
}

#[test]
fn a_sketch_written_five_candidates_wide_reads_back_with_its_counts() {
    let old = serde_json::json!({
        "candidates": [
            {"key": 7, "count": 30, "error": 2},
            {"key": 9, "count": 50, "error": 0},
            {"key": 0, "count": 0, "error": 0},
            {"key": 0, "count": 0, "error": 0},
            {"key": 0, "count": 0, "error": 0}
        ],
        "heavy": [],
        "total": 80
    });
    let read: EndUsers = serde_json::from_value(old).unwrap();
    assert_eq!(read.count_of(9), 50);
    assert_eq!(read.count_of(7), 30);
    assert_eq!(read.total, 80);
    assert_eq!(read.promotions, 0);
    assert!(read.cleared.is_none());
    let again: EndUsers = serde_json::from_str(&serde_json::to_string(&read).unwrap()).unwrap();
    assert_eq!(again.candidates, read.candidates);
}

#[test]
fn a_holder_quiet_before_it_could_be_judged_yields_its_state_but_a_judged_broad_one_does_not() {
    let config = EngineConfig::default();
    let mut subjects = EndUsers::default();
    let send = |subjects: &mut EndUsers, name: &str, i: usize, at: i64| {
        subjects.observe(&by(name, at, &diverse_prompt(i), 1), name, &config);
    };
    let holders =
        |s: &EndUsers| -> Vec<String> { s.heavy.iter().map(|h| h.name.to_string()).collect() };
    // "broad" sends 40 one-shot questions, "brief" 20: both get states, then stop.
    let mut t = 0;
    for i in 0..40 {
        send(&mut subjects, "broad", i, t);
        if i < 20 {
            send(&mut subjects, "brief", 100 + i, t + 1);
        }
        t += 10_000;
    }
    assert_eq!(holders(&subjects), ["broad", "brief"]);
    // "late" becomes a heavy hitter at once, but both holders have just sent ...
    for i in 0..20 {
        send(&mut subjects, "late", 200 + i, t);
        t += 10_000;
    }
    assert!(!holders(&subjects).contains(&"late".to_owned()));
    let at = EventTime::from_epoch_ms(BASE + t).unwrap();
    subjects.summaries(&AccountId::parse("acct").unwrap(), at, &config);
    assert_eq!(holders(&subjects), ["broad", "brief"]);
    // ... and half an hour later "brief", quiet and never judged, gives its state up; "broad",
    // quiet too but judged on 40 requests and not cleared, keeps its own.
    t += SESSION_GAP_MS;
    send(&mut subjects, "late", 300, t);
    assert_eq!(holders(&subjects), ["broad", "late"]);
}

/// A reseller with two hundred customers who chat (a third of their requests open a
/// conversation, the rest follow up, and questions come back), four requests a minute between
/// them, and, when `harvester` is set, from the second hour one end user sending a never-repeated
/// one-shot question demanding worked steps every four minutes: about a twentieth of the
/// account's requests, far below the eighth a sketch of eight counters guarantees to find.
fn many_customers_reseller(hours: i64, harvester: bool) -> Vec<ApiEvent> {
    const CUSTOMERS: usize = 200;
    let mut events = Vec::new();
    for minute in 0..hours * 60 {
        let t = minute * 60_000;
        for j in 0..4 {
            let n = minute as usize * 4 + j;
            let (customer, turn) = (n % CUSTOMERS, n / CUSTOMERS);
            events.push(by(
                &format!("customer-{customer}"),
                t + 1_000 * j as i64,
                &format!("{} again", diverse_prompt(1_000 * customer + turn / 6)),
                if (turn + customer) % 3 == 0 { 1 } else { 4 },
            ));
        }
        if harvester && minute >= 60 && minute % 4 == 0 {
            let mut e = by(
                "eu-bad",
                t + 30_000,
                &format!(
                    "{} Explain your reasoning step by step.",
                    diverse_prompt(1_000_000 + minute as usize)
                ),
                1,
            );
            e.usage.completion_tokens = Some(1_200);
            events.push(e);
        }
    }
    events
}

#[test]
fn a_harvester_sending_a_twentieth_of_a_resellers_requests_among_hundreds_of_customers_flags_it() {
    let events = many_customers_reseller(12, true);
    let harvested = events
        .iter()
        .filter(|e| e.end_user.as_deref() == Some("eu-bad"))
        .count();
    assert!(
        harvested * 16 < events.len(),
        "{harvested} of {}",
        events.len()
    );
    let report = run(&events);
    let finding = &report.accounts[0];
    assert!(finding.flagged, "{finding:?}");
    assert_eq!(finding.end_user.as_deref(), Some("eu-bad"));
}

#[test]
fn hundreds_of_chatting_customers_never_flag_their_reseller() {
    let report = run(&many_customers_reseller(30, false));
    assert!(
        report.accounts.iter().all(|a| !a.flagged),
        "{:?}",
        report.accounts
    );
}

#[test]
fn a_customers_follow_ups_do_not_count_toward_a_state_of_its_own() {
    let config = EngineConfig::default();
    let mut subjects = EndUsers::default();
    // One customer follows up in one conversation far past `min_prompts` requests; another
    // opens two conversations: neither has opened enough conversations to be judged alone.
    for i in 0..200 {
        let messages = if i == 0 { 1 } else { 3 + 2 * i as u32 };
        subjects.observe(
            &by("talker", i * 60_000, "and then?", messages),
            "talker",
            &config,
        );
        if i < 2 {
            let e = by("other", i * 60_000 + 1, &diverse_prompt(i as usize), 1);
            subjects.observe(&e, "other", &config);
        }
    }
    assert!(subjects.heavy.is_empty());
    assert_eq!(subjects.total, 202);
}
