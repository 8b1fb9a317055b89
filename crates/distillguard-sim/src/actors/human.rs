//! A person behind a keyboard: time zone, daily rhythm, home network, client, and the shape of
//! their conversations.

use std::net::IpAddr;

use crate::dist::{chance, lognormal, pick, poisson, SimRng};
use crate::net;
use crate::prompts::PromptBook;
use crate::timing::{is_weekend, session_starts, Diurnal, MINUTE};

use super::Ctx;

/// Where a person's requests come from.
#[derive(Debug, Clone)]
pub(crate) enum Net {
    /// A home line: dynamic IPv4 that changes now and then, maybe IPv6, sometimes mobile data.
    Home {
        v4: IpAddr,
        v6: Option<(u16, u16)>,
        mobile_share: f64,
    },
    /// A commercial VPN: a different shared exit every session.
    Vpn,
    /// Fixed egress: an office NAT or a reseller's backend.
    Fixed(Vec<IpAddr>),
}

#[derive(Debug, Clone)]
pub(crate) struct Human {
    pub tz: i32,
    pub profile: Diurnal,
    pub sessions_per_day: f64,
    pub weekend_factor: f64,
    pub net: Net,
    pub ua: String,
}

/// One request of a session, before the archetype adds parameters.
#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub at: i64,
    pub prompt: String,
    pub messages: u32,
    pub history_tokens: u32,
    pub completion: u32,
}

impl Human {
    pub(crate) fn home(rng: &mut SimRng, tz: i32, profile: Diurnal, sessions_per_day: f64) -> Self {
        let net = if chance(rng, 0.06) {
            Net::Vpn
        } else {
            Net::Home {
                v4: net::residential_v4(rng),
                v6: chance(rng, 0.4).then(|| net::household_v6(rng)),
                mobile_share: if chance(rng, 0.5) { 0.15 } else { 0.0 },
            }
        };
        Self {
            tz,
            profile,
            sessions_per_day,
            weekend_factor: 1.0,
            net,
            ua: net::chat_client(rng),
        }
    }

    /// Session start times for the day; also moves the dynamic home address now and then.
    pub(crate) fn sessions(&mut self, rng: &mut SimRng, ctx: &Ctx) -> Vec<i64> {
        if let Net::Home { v4, .. } = &mut self.net {
            if chance(rng, 0.2) {
                *v4 = net::residential_v4(rng);
            }
        }
        let mut rate = self.sessions_per_day * lognormal(rng, 1.0, 0.5);
        if is_weekend(ctx.day_start) {
            rate *= self.weekend_factor;
        }
        let count = poisson(rng, rate);
        session_starts(rng, ctx.day_start, self.tz, self.profile, count)
    }

    pub(crate) fn session_ip(&self, rng: &mut SimRng) -> IpAddr {
        match &self.net {
            Net::Home {
                v4,
                v6,
                mobile_share,
            } => {
                if chance(rng, *mobile_share) {
                    net::residential_v4(rng)
                } else if let (Some(prefix), true) = (v6, chance(rng, 0.5)) {
                    net::residential_v6(rng, *prefix)
                } else {
                    *v4
                }
            }
            Net::Vpn => net::proxy_exit(rng),
            Net::Fixed(ips) => *pick(rng, ips),
        }
    }
}

fn tokens(text: &str) -> u32 {
    (text.len() as u32).div_ceil(4)
}

/// A chat session: a few conversations of several turns, with regenerated and edited prompts.
pub(crate) fn chat_session(
    rng: &mut SimRng,
    book: &PromptBook,
    start: i64,
    opener: fn(&PromptBook, &mut SimRng) -> String,
) -> Vec<Turn> {
    let mut turns = Vec::new();
    let mut at = start;
    let conversations = (1 + poisson(rng, 0.7)).min(4);
    for _ in 0..conversations {
        let mut prompt = opener(book, rng);
        let mut history = 0;
        let mut messages = 1;
        let length = (1 + poisson(rng, 1.4)).min(8);
        for _ in 0..length {
            let completion = lognormal(rng, 220.0, 0.7).clamp(5.0, 2_000.0) as u32;
            turns.push(Turn {
                at,
                prompt: prompt.clone(),
                messages,
                history_tokens: history,
                completion,
            });
            if chance(rng, 0.08) {
                // "Regenerate": the same request again a few seconds later.
                at += lognormal(rng, 12_000.0, 0.5) as i64;
                turns.push(Turn {
                    at,
                    prompt: prompt.clone(),
                    messages,
                    history_tokens: history,
                    completion,
                });
            } else if chance(rng, 0.07) {
                at += lognormal(rng, 35_000.0, 0.5) as i64;
                prompt = book.edit(rng, &prompt);
                turns.push(Turn {
                    at,
                    prompt: prompt.clone(),
                    messages,
                    history_tokens: history,
                    completion,
                });
            }
            history += tokens(&prompt) + completion;
            messages += 2;
            at += lognormal(rng, 75_000.0, 0.8).clamp(4_000.0, 1_800_000.0) as i64;
            prompt = book.follow_up(rng);
        }
        at += lognormal(rng, 5.0 * MINUTE as f64, 0.8) as i64;
    }
    turns
}

/// A developer's burst: one task re-sent with small changes, new tasks, pings, fixes.
pub(crate) fn dev_burst(rng: &mut SimRng, book: &PromptBook, start: i64) -> Vec<Turn> {
    let count = lognormal(rng, 14.0, 0.7).clamp(2.0, 90.0) as u32;
    let mut base = book.dev_task(rng);
    let mut at = start;
    let mut messages = 1;
    let mut history = 0;
    let mut turns = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let roll: f64 = rand::Rng::gen(rng);
        let prompt = if roll < 0.55 {
            messages = 1;
            history = 0;
            book.dev_variant(rng, &base)
        } else if roll < 0.7 {
            messages = 1;
            history = 0;
            base = book.dev_task(rng);
            base.clone()
        } else if roll < 0.85 {
            messages += 2;
            history += 250;
            pick(
                rng,
                &[
                    "that doesn't compile, fix it",
                    "now add error handling",
                    "can you make it faster?",
                    "explain line 3",
                ],
            )
            .to_string()
        } else {
            messages = 1;
            history = 0;
            pick(rng, &["test", "hi", "Say 'pong'"]).to_string()
        };
        let completion = lognormal(rng, 300.0, 0.8).clamp(2.0, 3_000.0) as u32;
        turns.push(Turn {
            at,
            prompt,
            messages,
            history_tokens: history,
            completion,
        });
        at += lognormal(rng, 25_000.0, 0.9).clamp(1_500.0, 900_000.0) as i64;
    }
    turns
}

/// What coding agents send as their system prompt (paraphrased): tools, plans, explanations. It
/// reads much like an operator's "agent trace" harvesting prompt.
pub(crate) const AGENT_SYSTEM_PROMPT: &str = "You are an AI coding agent working in the user's repository. Use the provided tools to read files, run commands and edit code. Think through each step, explain what you are doing, and verify your changes by running the tests.";

/// Context after which an agent compacts its history into a summary.
const AGENT_CONTEXT_LIMIT: u32 = 120_000;

/// A coding-agent session: the user's task, then a long loop of tool results fed back with the
/// whole conversation, seconds apart, until the task is done.
pub(crate) fn agent_session(rng: &mut SimRng, book: &PromptBook, start: i64) -> Vec<Turn> {
    let steps = lognormal(rng, 80.0, 0.8).clamp(5.0, 600.0) as u32;
    let mut at = start;
    let mut messages = 1;
    // Repository map and instructions travel with every request.
    let mut history = rand::Rng::gen_range(rng, 1_500..6_000);
    let mut turns = Vec::with_capacity(steps as usize);
    for step in 0..steps {
        let prompt = if step == 0 {
            book.dev_task(rng)
        } else {
            tool_result(rng)
        };
        let completion = lognormal(rng, 180.0, 0.8).clamp(10.0, 4_000.0) as u32;
        turns.push(Turn {
            at,
            prompt: prompt.clone(),
            messages,
            history_tokens: history,
            completion,
        });
        // Tool output (file contents, logs) enters the context in full; the event's prompt
        // field keeps only its first line.
        let tool_output = lognormal(rng, 700.0, 0.9).min(20_000.0) as u32;
        history += tokens(&prompt) + tool_output + completion;
        messages += 2;
        if history > AGENT_CONTEXT_LIMIT {
            history = 6_000;
            messages = 3;
        }
        // Generation time plus the tool run before the next call.
        at += (f64::from(completion) * 14.0 + lognormal(rng, 2_500.0, 0.8)) as i64;
    }
    turns
}

fn tool_result(rng: &mut SimRng) -> String {
    use rand::Rng;
    match rng.gen_range(0..6) {
        0 => format!(
            "Tool result (run_tests): {} passed, {} failed\nFAILED tests/test_{}.py::test_{} - AssertionError",
            rng.gen_range(3..400),
            rng.gen_range(0..5),
            pick(rng, &["api", "models", "utils", "parser", "billing"]),
            pick(rng, &["roundtrip", "empty_input", "pagination", "retry", "unicode"])
        ),
        1 => format!(
            "Tool result (read_file src/{}.{}): {} lines",
            pick(rng, &["main", "config", "handlers", "db", "cli", "schema"]),
            pick(rng, &["py", "ts", "go", "rs"]),
            rng.gen_range(20..1_200)
        ),
        2 => format!("Tool result (grep \"{}\"): {} matches", pick(rng, &["TODO", "fn parse", "import requests", "class User"]), rng.gen_range(0..60)),
        3 => format!("Tool result (apply_patch): ok, {} lines changed", rng.gen_range(1..120)),
        4 => format!("Tool result (shell `{}`): exit code {}", pick(rng, &["npm run build", "cargo check", "pytest -x", "go vet ./..."]), pick(rng, &[0, 0, 0, 1, 2])),
        _ => pick(rng, &["continue", "yes, go ahead", "looks good, now update the docs", "no, revert that and try another approach"]).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::stream;

    #[test]
    fn chat_sessions_are_multi_turn_and_move_forward_in_time() {
        let mut rng = stream(21, 0);
        let book = PromptBook::builtin();
        let mut multi_turn = 0;
        for _ in 0..50 {
            let turns = chat_session(&mut rng, &book, 1_000_000, PromptBook::casual_opener);
            assert!(turns.windows(2).all(|w| w[0].at <= w[1].at));
            multi_turn += turns.iter().filter(|t| t.messages > 1).count();
        }
        assert!(multi_turn > 20, "{multi_turn}");
    }

    #[test]
    fn agent_sessions_grow_their_context_quickly_and_compact_it() {
        let mut rng = stream(23, 0);
        let book = PromptBook::builtin();
        let turns: Vec<Turn> = (0..20)
            .flat_map(|_| agent_session(&mut rng, &book, 0))
            .collect();
        assert!(turns.iter().any(|t| t.messages > 40));
        assert!(turns
            .iter()
            .all(|t| t.history_tokens <= AGENT_CONTEXT_LIMIT + 10_000));
        assert!(turns.iter().any(|t| t.prompt.starts_with("Tool result")));
    }

    #[test]
    fn developer_bursts_resend_near_identical_prompts() {
        let mut rng = stream(22, 0);
        let book = PromptBook::builtin();
        let turns = dev_burst(&mut rng, &book, 0);
        let turns = if turns.len() < 5 {
            dev_burst(&mut rng, &book, 0)
        } else {
            turns
        };
        let shared_prefix = turns
            .windows(2)
            .filter(|w| w[0].prompt.len() > 12 && w[1].prompt.starts_with(&w[0].prompt[..12]))
            .count();
        assert!(shared_prefix > 0);
    }
}
