//! Session coverage: coverage judged on the tasks that open agent sessions.
//!
//! An agent works a task in a loop: the task, then one request per tool round, each sending back
//! the tool's result (and, where the gateway logs the last user message, the task again), seconds
//! apart, for many rounds. Coverage reads that as a person following up and re-asking, and clears
//! it, which hid agent-trace harvesting (Anthropic's reports name agentic reasoning, tool use and
//! coding traces as targets). This detector judges the session openers only:
//!
//! - depth: later turns four or more rounds into their session (8+ messages) over all later
//!   turns, 0.5 → 0, 0.8 → 1. Agent loops make a tool call per round and run many rounds per
//!   task; people's chats mostly end within a few follow-ups (even long chats leave most later
//!   turns shallow);
//! - topic spread of the openers: the account's vocabulary is fed only by openers (and requests
//!   of unknown turn), with coverage's Herdan's C ramp. A developer's sessions stay in one
//!   repository and stack (the same modules, files and tools come back); a harvester's sessions
//!   open unrelated tasks;
//! - re-asked openers: openers repeating one of the last 16, 2 % → no penalty, 12 % → 0 (people
//!   and developers re-run a task; a harvest never asks twice);
//! - confidence in the number of openers (a quarter of `min_prompts` → 0, `min_prompts` → 1)
//!   and in the openers' subject words (150 → 0, 400 → 1): sessions are few and each opener is
//!   short, and the richness of a small sample is always high, so a day of a developer's twenty
//!   tasks must not read as breadth.
//!
//! Later turns that re-send the task of a recent opener are counted for the evidence.

use super::coverage::{RICHNESS_HIGH, RICHNESS_LOW};
use super::{measurement, ramp, Context, Detector, DetectorConfig, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;

pub struct SessionCoverage;

struct Parts {
    agent_share: f64,
    depth: f64,
    topics: f64,
    reasked: f64,
    score: f64,
}

fn parts(a: &AccountSummary, config: &DetectorConfig) -> Parts {
    let openers = a.single_turn;
    let agent_share = a.share(a.task_resends, a.continuations());
    let topics = a.vocabulary_richness.unwrap_or(0.0);
    let reasked = a.share(a.opener_repeats, openers);
    let depth = a.share(a.deep_turns, a.continuations());
    let min = config.min_prompts as f64;
    let score = ramp(openers as f64, min / 4.0, min)
        * ramp(a.subject_words as f64, 150.0, 400.0)
        * ramp(depth, 0.5, 0.8)
        * ramp(topics, RICHNESS_LOW, RICHNESS_HIGH)
        * (1.0 - ramp(reasked, 0.02, 0.12));
    Parts {
        agent_share,
        depth,
        topics,
        reasked,
        score,
    }
}

impl Detector for SessionCoverage {
    fn name(&self) -> &'static str {
        "session_coverage"
    }

    fn role(&self) -> Role {
        Role::Breadth
    }

    fn score(&self, account: &AccountSummary, context: &Context<'_>) -> f64 {
        parts(account, context.config).score
    }

    /// On `min_prompts` requests, one habit measured at its zero: conversations that stay
    /// shallow (no agent loop: none at all among one-shot requests), re-asked session openers,
    /// or a narrow measured vocabulary of openers.
    fn clears(&self, account: &AccountSummary, config: &DetectorConfig) -> bool {
        let p = parts(account, config);
        let measured_narrow = account.vocabulary_richness.is_some()
            && ramp(p.topics, RICHNESS_LOW, RICHNESS_HIGH) == 0.0;
        account.prompts >= config.min_prompts
            && (ramp(p.depth, 0.5, 0.8) == 0.0
                || 1.0 - ramp(p.reasked, 0.02, 0.12) == 0.0
                || measured_narrow)
    }

    fn evidence(&self, account: &AccountSummary, context: &Context<'_>, score: f64) -> Evidence {
        let p = parts(account, context.config);
        Evidence {
            summary: format!(
                "{} sessions opened; {:.0}% of later turns four or more rounds deep, {:.0}% re-send the session's task; openers: vocabulary richness {:.2}, {:.1}% re-asked; score {score:.2}",
                account.single_turn,
                p.depth * 100.0,
                p.agent_share * 100.0,
                p.topics,
                p.reasked * 100.0
            ),
            measurements: vec![
                measurement("deep_turn_share", p.depth, Some(0.8), None, "lifetime"),
                measurement("task_resend_share", p.agent_share, None, None, "lifetime"),
                measurement("opener_vocabulary_richness", p.topics, Some(RICHNESS_HIGH), None, "last 4k subject words"),
                measurement("reasked_opener_share", p.reasked, Some(0.02), None, "last 16 openers, rolling"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};
    use crate::event::ApiEvent;

    fn score(events: &[ApiEvent]) -> (f64, f64) {
        let account = summarise(events);
        let population = population(100, 100, 10_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        let ctx = context(&population, &models, &config, 0);
        (
            SessionCoverage.score(&account, &ctx),
            super::super::coverage::Coverage.score(&account, &ctx),
        )
    }

    /// Agent sessions: each task opened once, then `turns` tool rounds; odd sessions log the
    /// task again with each round (OpenAI tool messages), even ones the tool's output.
    fn sessions(tasks: impl Fn(usize) -> String, count: usize, turns: u32) -> Vec<ApiEvent> {
        let mut events = Vec::new();
        let mut at = 0;
        for s in 0..count {
            let task = tasks(s);
            for turn in 0..=turns {
                let prompt = if turn == 0 || s % 2 == 1 {
                    task.clone()
                } else {
                    format!(
                        "Tool result (run_tests): {} passed, {} failed",
                        40 + turn,
                        turn % 3
                    )
                };
                let mut e = event(at, &prompt);
                e.system_prompt =
                    Some("You are a coding agent with shell and editor tools.".into());
                e.messages = Some(2 + 2 * turn);
                events.push(e);
                at += 4_000;
            }
        }
        events
    }

    #[test]
    fn agent_sessions_that_each_open_an_unrelated_task_are_full_coverage() {
        let events = sessions(diverse_prompt, 250, 12);
        let (sessions, coverage) = score(&events);
        assert!(sessions > 0.9, "{sessions}");
        // Plain coverage sees re-sends and multi-turn requests and is blind to it.
        assert!(coverage < 0.05, "{coverage}");
    }

    #[test]
    fn a_developer_whose_sessions_stay_in_one_repository_is_not() {
        let modules = ["parser", "lexer", "scheduler", "cache", "router", "config"];
        let verbs = [
            "Fix the failing test in",
            "Refactor",
            "Add logging to",
            "Document",
        ];
        let events = sessions(
            |s| {
                format!(
                    "{} the {} module of acme-billing (issue {})",
                    verbs[s % 4],
                    modules[(s / 4) % 6],
                    s
                )
            },
            150,
            12,
        );
        let (sessions, _) = score(&events);
        assert!(sessions < 0.1, "{sessions}");
    }

    #[test]
    fn people_who_follow_up_with_new_questions_are_not_agent_sessions() {
        let events: Vec<_> = (0..300)
            .map(|i| {
                let mut e = event(i * 90_000, &diverse_prompt(i as usize));
                e.messages = Some(if i % 3 == 0 { 1 } else { 3 });
                e
            })
            .collect();
        assert_eq!(score(&events).0, 0.0);
    }

    #[test]
    fn chats_of_a_few_rounds_are_not_agent_sessions_even_logged_like_agents() {
        // Task re-sent or tool-like text on later turns, but four rounds per session: long
        // chats, not an agent's many rounds.
        let events = sessions(diverse_prompt, 150, 4);
        assert_eq!(score(&events).0, 0.0);
    }

    #[test]
    fn breadth_clears_people_who_follow_up_but_not_agents_or_one_shot_harvests() {
        let config = DetectorConfig::default();
        let cleared =
            |events: &[ApiEvent]| crate::detect::breadth_cleared(&summarise(events), &config);
        let people: Vec<_> = (0..60)
            .map(|i| {
                let mut e = event(i * 90_000, &diverse_prompt(i as usize));
                e.messages = Some(if i % 3 == 0 { 1 } else { 3 });
                e
            })
            .collect();
        assert!(cleared(&people));
        // Follow-ups clear plain coverage, but the sessions go deep: an agent harvest.
        assert!(!cleared(&sessions(diverse_prompt, 20, 12)));
        let harvest: Vec<_> = (0..60)
            .map(|i| event(i * 20_000, &diverse_prompt(i as usize)))
            .collect();
        assert!(!cleared(&harvest));
        // Too few requests to judge clears no one.
        assert!(!cleared(&people[..8]));
    }
}
