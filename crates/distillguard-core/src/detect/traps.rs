//! End-to-end scenarios through the engine: each benign look-alike of a harvest (a production app,
//! a batch job, a benchmark run, a reseller, a student, a lab) must stay unflagged next to ordinary
//! traffic, and each attack archetype must be flagged.

use crate::detect::testing::{diverse_prompt, word};
use crate::engine::{Engine, EngineConfig};
use crate::event::{AccountId, ApiEvent, ModelName};
use crate::finding::Report;
use crate::time::EventTime;

const BASE: i64 = 1_764_000_000_000;
const HOUR: i64 = EventTime::HOUR;

struct Scenario {
    events: Vec<ApiEvent>,
}

impl Scenario {
    /// Forty people chatting on weekday evenings for `hours`: multi-turn, re-asking, ~300-token
    /// answers. The background every trap is judged against.
    fn with_background(hours: i64) -> Self {
        let mut events = Vec::new();
        for person in 0..40i64 {
            let mut t = person * 97_000;
            let mut k = 0usize;
            while t < hours * HOUR {
                let hour_of_day = (t / HOUR) % 24;
                if (8..23).contains(&hour_of_day) {
                    let mut e = call(
                        &format!("person-{person}"),
                        t,
                        &diverse_prompt(k / 3 + person as usize * 1_000),
                    );
                    e.messages = Some(1 + 2 * (k % 3) as u32);
                    e.usage.completion_tokens = Some(250 + (k as u32 * 37) % 200);
                    events.push(e);
                    k += 1;
                }
                t += 7 * EventTime::MINUTE + (k as i64 * 7_919) % (20 * EventTime::MINUTE);
            }
        }
        Self { events }
    }

    fn add(&mut self, events: impl IntoIterator<Item = ApiEvent>) -> &mut Self {
        self.events.extend(events);
        self
    }

    fn run(&mut self) -> Report {
        self.events.sort_by_key(|e| e.timestamp);
        let mut engine = Engine::new(EngineConfig::default(), 2);
        for e in &self.events {
            engine.process(e);
        }
        engine.finish();
        engine.report()
    }
}

fn call(account: &str, ms: i64, prompt: &str) -> ApiEvent {
    let mut e = ApiEvent::new(
        EventTime::from_epoch_ms(BASE + ms).unwrap(),
        AccountId::parse(account).unwrap(),
        ModelName::parse("main-model").unwrap(),
    );
    e.prompt = Some(prompt.to_owned());
    e.messages = Some(1);
    e.usage.prompt_tokens = Some(60);
    e.usage.completion_tokens = Some(300);
    e
}

/// `count` events spread evenly over `hours` starting at `from_hour`.
fn paced(
    account: &str,
    from_hour: i64,
    hours: i64,
    count: i64,
    prompt: impl Fn(usize) -> String,
) -> Vec<ApiEvent> {
    (0..count)
        .map(|i| {
            call(
                account,
                from_hour * HOUR + i * hours * HOUR / count,
                &prompt(i as usize),
            )
        })
        .collect()
}

fn flagged(report: &Report, account: &str) -> bool {
    report
        .accounts
        .iter()
        .any(|a| a.account_id == account && a.flagged)
}

fn no_trap_flagged(report: &Report) -> Vec<String> {
    report
        .accounts
        .iter()
        .filter(|a| a.flagged && !a.account_id.starts_with("attack"))
        .map(|a| a.account_id.clone())
        .collect()
}

#[test]
fn a_production_app_with_one_template_narrow_topics_and_high_volume_is_not_flagged() {
    let products = ["router", "modem", "printer", "laptop", "charger", "tablet"];
    let issues = ["overheats", "disconnects", "rattles", "flickers", "reboots"];
    let report = Scenario::with_background(30)
        .add(paced("app", 0, 30, 30_000, |i| {
            format!(
                "Answer the customer about order {}: my {} {} since the update",
                10_000 + i,
                products[i % 6],
                issues[(i / 6) % 5]
            )
        }))
        .run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

#[test]
fn a_batch_classification_job_with_short_outputs_is_not_flagged() {
    let report = Scenario::with_background(10)
        .add(
            paced("batch", 2, 1, 8_000, |i| {
                format!(
                    "Classify the sentiment of this review. Reply with one word.\n\n{}",
                    diverse_prompt(i)
                )
            })
            .into_iter()
            .map(|mut e| {
                e.usage.completion_tokens = Some(1);
                e.params.temperature = Some(0.0);
                e.params.max_tokens = Some(5);
                e
            }),
        )
        .run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

#[test]
fn a_benchmark_run_with_logprobs_and_letter_answers_rerun_twice_is_not_flagged() {
    let report = Scenario::with_background(10)
        .add(
            paced("bench", 1, 6, 3_000, |i| {
                format!(
                    "Question: {} Answer with the letter only. A) yes B) no",
                    diverse_prompt(i % 1_000)
                )
            })
            .into_iter()
            .map(|mut e| {
                e.usage.completion_tokens = Some(1);
                e.params.logprobs = Some(true);
                e.params.top_logprobs = Some(5);
                e.params.temperature = Some(0.0);
                e
            }),
        )
        .run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

#[test]
fn a_reseller_carrying_many_people_is_not_flagged() {
    // The background's conversations, all through one account; a third of the people in each
    // of three time zones, so the account is busy round the clock.
    let people = Scenario::with_background(30).events;
    let reseller = people.into_iter().map(|mut e| {
        let person: i64 = e.account_id.as_str()["person-".len()..].parse().unwrap();
        e.end_user = Some(e.account_id.as_str().into());
        e.account_id = AccountId::parse("reseller").unwrap();
        e.timestamp = e.timestamp.plus_ms((person % 3) * 8 * HOUR);
        e
    });
    let report = Scenario::with_background(30).add(reseller).run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

#[test]
fn enterprise_users_behind_one_nat_and_sdk_are_not_flagged() {
    let mut events = Scenario::with_background(20).events;
    for e in &mut events {
        e.client_ip = Some("198.51.100.7".parse().unwrap());
        e.user_agent = Some("corp-sdk/2.1".into());
    }
    let report = Scenario { events }.run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

#[test]
fn a_bulk_harvest_is_flagged_within_an_hour_of_its_first_event() {
    let report = Scenario::with_background(10)
        .add(paced("attack-bulk", 3, 4, 1_600, diverse_prompt))
        .run();
    let finding = report
        .accounts
        .iter()
        .find(|a| a.account_id == "attack-bulk")
        .unwrap();
    assert!(finding.flagged);
    let delay = finding.first_flagged_at.unwrap().epoch_ms() - finding.first_seen.epoch_ms();
    assert!(delay <= HOUR, "{delay} ms");
}

#[test]
fn a_low_and_slow_reasoning_harvest_at_human_pace_is_flagged() {
    let report = Scenario::with_background(40)
        .add(
            paced("attack-slow", 0, 40, 120, |i| {
                format!(
                    "{} Think step by step and show your complete reasoning.",
                    diverse_prompt(50_000 + i)
                )
            })
            .into_iter()
            .map(|mut e| {
                e.usage.completion_tokens = Some(900);
                e
            }),
        )
        .run();
    assert!(flagged(&report, "attack-slow"));
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

/// How students open a question that wants the steps (the last: no frame at all).
const STEP_FRAMES: [&str; 5] = [
    "explain step by step: ",
    "can you solve this step by step? ",
    "walk me through this: ",
    "show your work: ",
    "",
];

/// An evening of 32 homework questions 150 seconds apart from 19:00, most asking for steps; the
/// student follows up on an answer at the `follow_ups` positions and asks one question again at
/// `re_ask`.
fn homework_evening(account: &str, follow_ups: &[usize], re_ask: Option<usize>) -> Vec<ApiEvent> {
    let question = |i: usize| format!("{}{}", STEP_FRAMES[i % 5], diverse_prompt(90_000 + i));
    (0..32usize)
        .map(|i| {
            let mut e = call(account, 19 * HOUR + i as i64 * 150_000, &question(i));
            if follow_ups.contains(&i) {
                e.prompt = Some("i don't get step 2".into());
                e.messages = Some(3);
            } else if re_ask == Some(i) {
                e.prompt = Some(question(i - 1));
            }
            e.usage.completion_tokens = Some(700);
            e
        })
        .collect()
}

#[test]
fn a_students_evening_of_step_by_step_questions_with_a_follow_up_is_not_flagged() {
    // One follow-up in the first dozen questions and nothing else: without it the evening reads
    // as full coverage under reasoning demands. Another student follows up three times and
    // asks one question again. The same evening with neither is a reasoning harvest at human
    // pace, and is flagged on about twenty prompts.
    let report = Scenario::with_background(30)
        .add(homework_evening("student", &[9], None))
        .add(homework_evening("student-2", &[5, 17, 25], Some(12)))
        .add(homework_evening("attack-evening", &[], None))
        .run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
    let harvest = report
        .accounts
        .iter()
        .find(|a| a.account_id == "attack-evening")
        .unwrap();
    assert!(harvest.flagged);
    let delay = harvest.first_flagged_at.unwrap().epoch_ms() - harvest.first_seen.epoch_ms();
    // The 21st prompt is sent at 50 minutes; ticks are 5 minutes apart.
    assert!(delay <= 60 * EventTime::MINUTE, "{delay} ms");
}

#[test]
fn a_student_coming_back_the_next_evening_without_follow_ups_is_judged_as_usual() {
    // Two evenings of questions with no follow-up or re-ask at all: from the second sitting on
    // the ordinary judgement applies (a harvest at human pace has to come back).
    let mut evenings = homework_evening("attack-two-evenings", &[], None);
    evenings.truncate(12);
    let next: Vec<_> = homework_evening("attack-two-evenings", &[], None)
        .into_iter()
        .skip(12)
        .take(12)
        .map(|mut e| {
            e.timestamp = e.timestamp.plus_ms(24 * HOUR);
            e
        })
        .collect();
    evenings.extend(next);
    let report = Scenario::with_background(50).add(evenings).run();
    assert!(flagged(&report, "attack-two-evenings"));
}

/// Sittings of homework questions 150 seconds apart, most asking for steps, each question new:
/// a sitting of `per_sitting` questions starts at every offset of `starts_ms`, with a follow-up
/// ("i don't get step 2", "why did you divide there?", ...) at each position of `follow_ups`
/// within the sitting.
fn study_sittings(
    account: &str,
    starts_ms: &[i64],
    per_sitting: usize,
    follow_ups: &[usize],
) -> Vec<ApiEvent> {
    let asks = [
        "i don't get step 2",
        "why did you divide there?",
        "can you check my answer, i got something else",
        "ok and the next one?",
    ];
    let mut events = Vec::new();
    let mut asked = 0;
    for (s, start) in starts_ms.iter().enumerate() {
        for i in 0..per_sitting {
            let k = s * per_sitting + i;
            let mut e = call(
                account,
                start + i as i64 * 150_000,
                &format!("{}{}", STEP_FRAMES[k % 5], diverse_prompt(70_000 + k)),
            );
            if follow_ups.contains(&i) {
                e.prompt = Some(asks[asked % asks.len()].into());
                e.messages = Some(3);
                asked += 1;
            }
            e.usage.completion_tokens = Some(700);
            events.push(e);
        }
    }
    events
}

#[test]
fn a_student_coming_back_on_later_evenings_with_follow_ups_is_not_flagged_and_a_harvest_sitting_all_day_is(
) {
    // Three evenings (19:00 on days 0, 1 and 3) of 30 questions, three follow-ups each: from the
    // second evening on the ordinary judgement read 90 % single-turn, every question new and
    // broad, 80 % demanding steps, and flagged it. The same questions and follow-ups sent in
    // four sittings a day, three hours apart, are a harvest at human pace keeping its volume;
    // so are evenings of 120 questions a minute apart with the same share of follow-ups.
    let evenings = [19 * HOUR, 43 * HOUR, 91 * HOUR];
    let all_day: Vec<i64> = (0..12)
        .map(|k| (9 + 3 * (k % 4) + 24 * (k / 4)) * HOUR)
        .collect();
    let heavy: Vec<_> = study_sittings("attack-heavy-evenings", &evenings, 120, &[9, 49, 89])
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            let sitting = (i / 120) as i64;
            e.timestamp = EventTime::from_epoch_ms(
                BASE + evenings[sitting as usize] + (i % 120) as i64 * 60_000,
            )
            .unwrap();
            e
        })
        .collect();
    let report = Scenario::with_background(96)
        .add(study_sittings("student", &evenings, 30, &[6, 15, 24]))
        .add(study_sittings("attack-sittings", &all_day, 10, &[4]))
        .add(heavy)
        .run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
    assert!(flagged(&report, "attack-sittings"));
    assert!(flagged(&report, "attack-heavy-evenings"));
}

#[test]
fn a_logprob_and_multi_sample_harvest_is_flagged() {
    let report = Scenario::with_background(10)
        .add(
            paced("attack-logprobs", 1, 6, 600, |i| diverse_prompt(70_000 + i))
                .into_iter()
                .map(|mut e| {
                    e.params.logprobs = Some(true);
                    e.params.top_logprobs = Some(20);
                    e.params.n = Some(4);
                    e.usage.completion_tokens = Some(1_200);
                    e
                }),
        )
        .run();
    assert!(flagged(&report, "attack-logprobs"));
}

/// Logit harvest as public attacks run it: a few tokens per request with the widest
/// `top_logprobs` the API gives, on broad single-turn inputs.
fn logprob_harvest(account: &str, hours: i64, count: i64, offset: usize) -> Vec<ApiEvent> {
    paced(account, 1, hours, count, |i| diverse_prompt(offset + i))
        .into_iter()
        .map(|mut e| {
            e.params.logprobs = Some(true);
            e.params.top_logprobs = Some(20);
            e.params.max_tokens = Some(5);
            e.params.temperature = Some(0.0);
            e.usage.completion_tokens = Some(4);
            e
        })
        .collect()
}

#[test]
fn a_logprob_harvest_with_tiny_outputs_is_flagged_and_its_look_alikes_are_not() {
    let report = Scenario::with_background(12)
        .add(logprob_harvest("attack-logits", 6, 3_000, 120_000))
        // A batch classifier reading 20 alternatives of a one-word label under one instruction.
        .add(
            logprob_harvest("classifier", 6, 3_000, 140_000)
                .into_iter()
                .map(|mut e| {
                    let input = e.prompt.take().unwrap();
                    e.prompt = Some(format!(
                        "Classify the topic of this text. Reply with one word.\n\n{input}"
                    ));
                    e
                }),
        )
        // A benchmark runner: the same 500 multiple-choice questions in the harness's format,
        // re-run against three models. (Without the harness's fixed format its first pass would
        // be a logprob harvest per account: see docs/detectors.md, distribution_harvest.)
        .add(
            logprob_harvest("bench", 6, 1_500, 0)
                .into_iter()
                .enumerate()
                .map(|(i, mut e)| {
                    e.prompt = Some(format!(
                        "Question: {} Answer with the letter only. A) yes B) no C) both D) neither",
                        diverse_prompt(160_000 + i % 500)
                    ));
                    e
                }),
        )
        .run();
    assert!(flagged(&report, "attack-logits"));
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

/// Agent sessions: a task, then `turns` tool rounds re-sending it a few seconds apart.
fn agent_sessions(
    account: &str,
    hours: i64,
    count: usize,
    task: impl Fn(usize) -> String,
) -> Vec<ApiEvent> {
    let mut events = Vec::new();
    for s in 0..count {
        let start = HOUR + s as i64 * hours * HOUR / count as i64;
        let task = task(s);
        for turn in 0..10u32 {
            let mut e = call(account, start + i64::from(turn) * 9_000, &task);
            e.system_prompt = Some("You are an autonomous software agent. Use the tools.".into());
            e.messages = Some(2 + 2 * turn);
            e.usage.completion_tokens = Some(400);
            events.push(e);
        }
    }
    events
}

#[test]
fn agent_sessions_opening_unrelated_tasks_are_flagged_and_a_coding_agent_in_one_repository_is_not()
{
    let modules = [
        "parser", "lexer", "planner", "executor", "catalog", "storage", "network", "auth",
    ];
    let verbs = [
        "Fix the failing test in",
        "Refactor",
        "Add tracing to",
        "Speed up",
        "Document",
    ];
    let report = Scenario::with_background(30)
        .add(agent_sessions("attack-agentic", 24, 600, |s| {
            diverse_prompt(180_000 + s)
        }))
        .add(agent_sessions("coder", 24, 600, |s| {
            format!(
                "{} the {} module in quarkdb ({} tests)",
                verbs[s % 5],
                modules[(s / 5) % 8],
                s % 7
            )
        }))
        .run();
    assert!(flagged(&report, "attack-agentic"));
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

#[test]
fn moving_to_a_newly_released_model_within_hours_is_flagged_and_adopting_it_slowly_is_not() {
    let new_model = ModelName::parse("brand-new-model").unwrap();
    let mut scenario = Scenario::with_background(30);
    // The attacker harvests at a moderate pace, then moves 90 % to the new model at release.
    scenario.add(
        paced("attack-pivot", 0, 30, 900, |i| diverse_prompt(90_000 + i))
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                if e.timestamp.epoch_ms() >= BASE + 12 * HOUR && i % 10 != 0 {
                    e.model = new_model.clone();
                }
                e
            }),
    );
    // A developer who tries the new model now and then.
    scenario.add((0..300).map(|i| {
        let mut e = call(
            "dev",
            i * 6 * EventTime::MINUTE,
            &format!("Fix this {} error", word(i as usize % 40)),
        );
        e.messages = Some(3);
        if i * 6 * EventTime::MINUTE >= 12 * HOUR && i % 5 == 0 {
            e.model = new_model.clone();
        }
        e
    }));
    let report = scenario.run();
    assert!(flagged(&report, "attack-pivot"));
    let pivot = report
        .accounts
        .iter()
        .find(|a| a.account_id == "attack-pivot")
        .unwrap();
    let signal = pivot
        .signals
        .iter()
        .find(|s| s.detector == "model_pivot")
        .unwrap();
    assert!(signal.score > 0.5, "{signal:?}");
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
}

#[test]
fn a_first_evening_from_home_with_a_dinner_break_is_not_flagged_and_the_same_through_a_rotating_proxy_is(
) {
    // Ten questions, dinner, ten more, never a follow-up or a re-ask: at home, the
    // slower confidence of a first evening spans the break (0.60); a new address after dinner (a
    // rotating residential proxy) ends it and the evening is judged as usual (0.98). Before
    // 2026-12-01 the break alone ended it and the student was flagged. Twenty-six such questions
    // from home are flagged too (0.74): without any habit of a person that is the harvest.
    let evening = |account: &str, after_dinner: &str| -> Vec<ApiEvent> {
        let starts = [19 * HOUR, 19 * HOUR + 10 * 150_000 + 50 * EventTime::MINUTE];
        let mut events = study_sittings(account, &starts[..1], 10, &[]);
        events.extend(
            study_sittings(account, &starts[1..], 10, &[])
                .into_iter()
                .enumerate()
                .map(|(i, mut e)| {
                    e.prompt = Some(format!("{} {}", e.prompt.unwrap(), word(90_000 + i)));
                    e
                }),
        );
        for (i, e) in events.iter_mut().enumerate() {
            let ip = if i < 10 { "203.0.113.7" } else { after_dinner };
            e.client_ip = Some(ip.parse().unwrap());
        }
        events
    };
    let report = Scenario::with_background(30)
        .add(evening("student", "203.0.113.7"))
        .add(evening("attack-rotating", "198.51.100.23"))
        .run();
    assert_eq!(no_trap_flagged(&report), Vec::<String>::new());
    assert!(flagged(&report, "attack-rotating"));
}
