//! Legitimate customers. Several are deliberately close to attack behaviour on one axis
//! (volume, templates, shared infrastructure, step-by-step prompts, logprobs, night traffic,
//! new-model adoption) so that no single signal separates the classes.

use std::net::IpAddr;

use distillguard_core::event::{ApiEvent, Params};
use rand::Rng;

use super::human::{agent_session, chat_session, dev_burst, Net, AGENT_SYSTEM_PROMPT};
use super::{adopted_model, emit, payment, Account, Actor, Call, Ctx, Human, Turn};
use super::{MODEL_MAIN, MODEL_MINI, MODEL_NEW, MODEL_REASONING};
use crate::dist::{chance, hex, lognormal, pick, range_i64, range_u32, SimRng};
use crate::labels::Label;
use crate::net;
use crate::prompts::PromptBook;
use crate::timing::{random_zone, Diurnal, DAY, HOUR, MINUTE};

pub(crate) fn created_long_ago(rng: &mut SimRng, start: i64) -> i64 {
    start - (lognormal(rng, 200.0, 0.9).clamp(2.0, 1_500.0) * DAY as f64) as i64
}

pub(crate) fn emit_turns(
    out: &mut Vec<ApiEvent>,
    rng: &mut SimRng,
    ctx: &Ctx,
    account: &Account,
    turns: Vec<Turn>,
    template: &Call,
    model: impl Fn(&mut SimRng, i64) -> &'static str,
) {
    for turn in turns {
        let mut call = template.clone();
        call.at = turn.at;
        call.model = model(rng, turn.at);
        call.prompt = turn.prompt;
        call.messages = turn.messages;
        call.history_tokens = turn.history_tokens;
        call.completion = turn.completion;
        call.reasoning = if call.model == MODEL_REASONING || call.model == MODEL_NEW {
            lognormal(rng, 600.0, 0.8) as u32
        } else {
            0
        };
        emit(out, rng, account, call, ctx);
    }
}

pub(crate) fn client_params(rng: &mut SimRng) -> Params {
    Params {
        temperature: *pick(rng, &[None, None, Some(0.7), Some(1.0)]),
        max_tokens: *pick(rng, &[None, None, Some(4_096), Some(2_048)]),
        stream: Some(chance(rng, 0.85)),
        ..Params::default()
    }
}

/// A person chatting through a third-party client: evenings, multi-turn, quiet nights.
pub(crate) struct Casual {
    rng: SimRng,
    account: Account,
    human: Human,
    model: &'static str,
    adopt_after: Option<i64>,
    params: Params,
}

impl Casual {
    pub(crate) fn new(mut rng: SimRng, start: i64, end: i64) -> Self {
        // A few people sign up during the run: brand-new accounts are not suspicious by
        // themselves.
        let created = if chance(&mut rng, 0.04) {
            start + range_i64(&mut rng, 0, end - start)
        } else {
            created_long_ago(&mut rng, start)
        };
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let tz = random_zone(&mut rng);
        let rate = lognormal(&mut rng, 1.6, 0.5);
        let human = Human::home(&mut rng, tz, Diurnal::Evening, rate);
        let model = if chance(&mut rng, 0.6) {
            MODEL_MAIN
        } else {
            MODEL_MINI
        };
        let adopt_after = chance(&mut rng, 0.25).then(|| range_i64(&mut rng, 2 * HOUR, 36 * HOUR));
        let params = client_params(&mut rng);
        Self {
            rng,
            account,
            human,
            model,
            adopt_after,
            params,
        }
    }
}

impl Actor for Casual {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("casual_chat"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for start in self.human.sessions(rng, ctx) {
            let ip = self.human.session_ip(rng);
            let turns = chat_session(rng, ctx.book, start, PromptBook::casual_opener);
            let mut template = Call::new(start, self.model, String::new(), ip, &self.human.ua);
            template.params = self.params.clone();
            let (default, adopt) = (self.model, self.adopt_after);
            emit_turns(out, rng, ctx, &self.account, turns, &template, |rng, at| {
                adopted_model(ctx, at, adopt, 0.9, rng, default)
            });
        }
    }
}

/// A developer trying things: work-hour bursts, near-identical re-sends, pings, varied params,
/// and quick to try a new model. One in six runs a coding agent instead: long tool loops with a
/// growing context, the heavy legitimate user that volume-based rules mistake for an attacker.
pub(crate) struct Developer {
    rng: SimRng,
    account: Account,
    human: Human,
    adopt_after: Option<i64>,
    agent: bool,
}

impl Developer {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = if chance(&mut rng, 0.1) {
            // Some developers sign up during the run.
            start - range_i64(&mut rng, 0, 3 * DAY)
        } else {
            created_long_ago(&mut rng, start)
        };
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let tz = random_zone(&mut rng);
        let profile = if chance(&mut rng, 0.6) {
            Diurnal::Work
        } else {
            Diurnal::Late
        };
        let rate = lognormal(&mut rng, 1.6, 0.5);
        let mut human = Human::home(&mut rng, tz, profile, rate);
        human.weekend_factor = 0.35;
        human.ua = if chance(&mut rng, 0.75) {
            net::sdk_agent(&mut rng)
        } else {
            pick(&mut rng, net::HTTP_LIBRARIES).to_string()
        };
        let adopt_after =
            chance(&mut rng, 0.6).then(|| range_i64(&mut rng, 20 * MINUTE, 10 * HOUR));
        let agent = chance(&mut rng, 1.0 / 6.0);
        if agent {
            human.ua = pick(&mut rng, net::AGENT_CLIENTS).to_string();
            human.sessions_per_day = lognormal(&mut rng, 2.5, 0.5);
        }
        Self {
            rng,
            account,
            human,
            adopt_after,
            agent,
        }
    }
}

impl Actor for Developer {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("developer"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for start in self.human.sessions(rng, ctx) {
            let ip = self.human.session_ip(rng);
            if self.agent {
                let turns = agent_session(rng, ctx.book, start);
                let base = *pick(rng, &[MODEL_MAIN, MODEL_MAIN, MODEL_REASONING]);
                let mut template = Call::new(start, base, String::new(), ip, &self.human.ua);
                template.system = Some(AGENT_SYSTEM_PROMPT.to_string());
                template.params = Params {
                    temperature: *pick(rng, &[None, Some(0.0)]),
                    max_tokens: Some(*pick(rng, &[4_096, 8_192])),
                    stream: Some(true),
                    ..Params::default()
                };
                let adopt = self.adopt_after;
                emit_turns(out, rng, ctx, &self.account, turns, &template, |rng, at| {
                    adopted_model(ctx, at, adopt, 0.8, rng, base)
                });
                continue;
            }
            let turns = dev_burst(rng, ctx.book, start);
            let base = *pick(
                rng,
                &[
                    MODEL_MINI,
                    MODEL_MINI,
                    MODEL_MAIN,
                    MODEL_MAIN,
                    MODEL_REASONING,
                ],
            );
            let mut template = Call::new(start, base, String::new(), ip, &self.human.ua);
            template.error_rate = 0.02;
            template.params = Params {
                temperature: *pick(rng, &[None, Some(0.0), Some(0.2), Some(0.7), Some(1.0)]),
                max_tokens: *pick(rng, &[None, Some(256), Some(512), Some(1_024), Some(2_048)]),
                n: chance(rng, 0.06).then(|| range_u32(rng, 2, 3)),
                seed: chance(rng, 0.1).then_some(42),
                logprobs: chance(rng, 0.04).then_some(true),
                stream: Some(chance(rng, 0.4)),
                ..Params::default()
            };
            let adopt = self.adopt_after;
            emit_turns(out, rng, ctx, &self.account, turns, &template, |rng, at| {
                adopted_model(ctx, at, adopt, 0.7, rng, base)
            });
        }
    }
}

/// A company: many accounts created together, one payment method, a few NAT addresses, the same
/// SDK user agent, maybe a shared internal system prompt, office hours in one time zone.
pub(crate) struct Enterprise {
    rng: SimRng,
    people: Vec<(Account, Human)>,
    system: Option<String>,
}

impl Enterprise {
    pub(crate) fn new(mut rng: SimRng, start: i64, size: u32) -> Self {
        let onboarding = start - range_i64(&mut rng, 10 * DAY, 500 * DAY);
        let pay = payment(&mut rng);
        let tz = random_zone(&mut rng);
        let nat: Vec<IpAddr> = (0..range_u32(&mut rng, 1, 3))
            .map(|_| net::enterprise_nat(&mut rng))
            .collect();
        let ua = if chance(&mut rng, 0.8) {
            net::POPULAR_SDK.to_string()
        } else {
            net::sdk_agent(&mut rng)
        };
        let org = pick(&mut rng, crate::words::NAMES).to_string();
        let system = chance(&mut rng, 0.6).then(|| {
            format!("You are {org}'s internal assistant. Follow company policy, be concise, and never share confidential information outside {org}.")
        });
        let people = (0..size)
            .map(|_| {
                let created = if chance(&mut rng, 0.8) {
                    onboarding + range_i64(&mut rng, 0, 40 * MINUTE)
                } else {
                    onboarding + range_i64(&mut rng, DAY, 9 * DAY)
                };
                let account = Account::new(&mut rng, created, pay.clone());
                let rate = lognormal(&mut rng, 1.8, 0.5);
                let mut human = Human::home(&mut rng, tz, Diurnal::Work, rate);
                human.weekend_factor = 0.08;
                human.net = Net::Fixed(nat.clone());
                human.ua = ua.clone();
                (account, human)
            })
            .collect();
        Self {
            rng,
            people,
            system,
        }
    }
}

impl Actor for Enterprise {
    fn members(&self) -> Vec<(String, Label)> {
        self.people
            .iter()
            .map(|(a, _)| (a.id.to_string(), Label::benign("enterprise")))
            .collect()
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, human) in &mut self.people {
            for start in human.sessions(rng, ctx) {
                let ip = human.session_ip(rng);
                let turns = chat_session(rng, ctx.book, start, PromptBook::work_task);
                let mut template = Call::new(start, MODEL_MAIN, String::new(), ip, &human.ua);
                template.system = self.system.clone();
                template.params = Params {
                    temperature: Some(0.7),
                    stream: Some(true),
                    ..Params::default()
                };
                emit_turns(out, rng, ctx, account, turns, &template, |_, _| MODEL_MAIN);
            }
        }
    }
}

/// One account carrying many human end users (a chat product reselling API access).
pub(crate) struct Reseller {
    pub(crate) rng: SimRng,
    pub(crate) account: Account,
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) ua: String,
    users: Vec<(String, Human, bool)>,
}

impl Reseller {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let provider = rng.gen_range(0..net::PROVIDERS);
        let ips: Vec<IpAddr> = (0..range_u32(&mut rng, 2, 4))
            .map(|_| net::datacenter_v4(&mut rng, provider))
            .collect();
        let ua = net::custom_agent(&mut rng);
        let count = lognormal(&mut rng, 350.0, 0.6).clamp(50.0, 2_500.0) as u32;
        let users = (0..count)
            .map(|_| {
                let id = format!("eu_{}", hex(&mut rng, 10));
                let developer = chance(&mut rng, 0.2);
                let tz = random_zone(&mut rng);
                let profile = if developer {
                    Diurnal::Late
                } else {
                    Diurnal::Evening
                };
                let rate = lognormal(&mut rng, 0.9, 0.6);
                let mut human = Human::home(&mut rng, tz, profile, rate);
                human.net = Net::Fixed(ips.clone());
                human.ua = ua.clone();
                (id, human, developer)
            })
            .collect();
        Self {
            rng,
            account,
            ips,
            ua,
            users,
        }
    }

    pub(crate) fn legitimate_day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (id, human, developer) in &mut self.users {
            for start in human.sessions(rng, ctx) {
                let ip = human.session_ip(rng);
                let turns = if *developer {
                    dev_burst(rng, ctx.book, start)
                } else {
                    chat_session(rng, ctx.book, start, PromptBook::casual_opener)
                };
                let base = *pick(rng, &[MODEL_MAIN, MODEL_MAIN, MODEL_MINI, MODEL_REASONING]);
                let mut template = Call::new(start, base, String::new(), ip, &human.ua);
                template.end_user = Some(id.clone());
                template.params = client_params(rng);
                emit_turns(out, rng, ctx, &self.account, turns, &template, |rng, at| {
                    adopted_model(ctx, at, Some(2 * HOUR), 0.3, rng, base)
                });
            }
        }
    }
}

impl Actor for Reseller {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("reseller"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        self.legitimate_day(ctx, out);
    }
}
