//! Benign look-alikes of the proxy-pool hydra (issue 12): groups of unrelated or legitimately
//! related people who share infrastructure, a system prompt or a client, and must not be linked
//! into an attack cluster.

use std::net::{IpAddr, Ipv4Addr};

use distillguard_core::event::ApiEvent;
use rand::Rng;

use super::benign::{client_params, created_long_ago, emit_turns};
use super::human::{chat_session, Net};
use super::{adopted_model, payment, Account, Actor, Call, Ctx, Human};
use super::{MODEL_MAIN, MODEL_MINI};
use crate::dist::{chance, lognormal, pick, range_i64, range_u32, SimRng};
use crate::labels::Label;
use crate::net;
use crate::prompts::PromptBook;
use crate::timing::{random_zone, Diurnal, DAY, HOUR};

/// The course assistant's system prompt every student's client sends.
const COURSE_SYSTEM_PROMPT: &str = "You are the teaching assistant for Introduction to Statistics. Help students understand the material; explain step by step and do not just give final answers.";

/// A university class behind the campus NAT: one course system prompt, accounts signed up within
/// two days at the start of term, homework questions asked "step by step" in the evenings.
pub(crate) struct CampusClass {
    rng: SimRng,
    students: Vec<(Account, Human)>,
}

impl CampusClass {
    pub(crate) fn new(mut rng: SimRng, start: i64, size: u32) -> Self {
        // The campus NAT: a few addresses of one /24 (192.0.0.0/24 in the simulator).
        let third = 0u8;
        let nat: Vec<IpAddr> = (0..range_u32(&mut rng, 1, 3))
            .map(|_| IpAddr::V4(Ipv4Addr::new(192, 0, third, rng.gen_range(1..=254))))
            .collect();
        let term = start - range_i64(&mut rng, 7 * DAY, 40 * DAY);
        let tz = random_zone(&mut rng);
        let students = (0..size)
            .map(|_| {
                let created = term + range_i64(&mut rng, 0, 2 * DAY);
                let pay = payment(&mut rng);
                let account = Account::new(&mut rng, created, pay);
                let rate = lognormal(&mut rng, 1.5, 0.4);
                let mut human = Human::home(&mut rng, tz, Diurnal::Evening, rate);
                human.net = Net::Fixed(nat.clone());
                human.ua = net::chat_client(&mut rng);
                (account, human)
            })
            .collect();
        Self { rng, students }
    }
}

impl Actor for CampusClass {
    fn members(&self) -> Vec<(String, Label)> {
        self.students
            .iter()
            .map(|(a, _)| (a.id.to_string(), Label::benign("campus_class")))
            .collect()
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, human) in &mut self.students {
            for start in human.sessions(rng, ctx) {
                let ip = human.session_ip(rng);
                let turns = chat_session(rng, ctx.book, start, homework_opener);
                let mut template = Call::new(start, MODEL_MAIN, String::new(), ip, &human.ua);
                template.system = Some(COURSE_SYSTEM_PROMPT.to_owned());
                emit_turns(out, rng, ctx, account, turns, &template, |_, _| MODEL_MAIN);
            }
        }
    }
}

fn homework_opener(book: &PromptBook, rng: &mut SimRng) -> String {
    let question = book.study_question(rng);
    if chance(rng, 0.6) {
        format!("{question} can you explain step by step?")
    } else {
        question
    }
}

/// People on one mobile carrier: every phone leaves through the carrier's CGNAT, a few dozen
/// public addresses in two /24s that thousands of subscribers share, and gets a new one of them
/// whenever its connection is re-established.
pub(crate) struct CarrierPhones {
    rng: SimRng,
    phones: Vec<(Account, Human, &'static str)>,
    gateways: Vec<IpAddr>,
}

impl CarrierPhones {
    pub(crate) fn new(mut rng: SimRng, start: i64, end: i64, size: u32) -> Self {
        let second = rng.gen_range(64..128);
        let third = rng.gen_range(0..254);
        let gateways = (0..range_u32(&mut rng, 24, 48))
            .map(|i| {
                IpAddr::V4(Ipv4Addr::new(
                    100,
                    second,
                    third + (i % 2) as u8,
                    rng.gen_range(1..=254),
                ))
            })
            .collect();
        let phones = (0..size)
            .map(|_| {
                let created = if chance(&mut rng, 0.04) {
                    start + range_i64(&mut rng, 0, end - start)
                } else {
                    created_long_ago(&mut rng, start)
                };
                let pay = payment(&mut rng);
                let account = Account::new(&mut rng, created, pay);
                let rate = lognormal(&mut rng, 2.0, 0.5);
                let tz = random_zone(&mut rng);
                let mut human = Human::home(&mut rng, tz, Diurnal::Evening, rate);
                human.ua = pick(&mut rng, net::CHAT_CLIENTS).to_string();
                let model = if chance(&mut rng, 0.5) {
                    MODEL_MAIN
                } else {
                    MODEL_MINI
                };
                (account, human, model)
            })
            .collect();
        Self {
            rng,
            phones,
            gateways,
        }
    }
}

impl Actor for CarrierPhones {
    fn members(&self) -> Vec<(String, Label)> {
        self.phones
            .iter()
            .map(|(a, ..)| (a.id.to_string(), Label::benign("carrier_cgnat")))
            .collect()
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, human, model) in &mut self.phones {
            for start in human.sessions(rng, ctx) {
                // A new CGNAT mapping per session, now and then within one.
                let mut ip = *pick(rng, &self.gateways);
                for turn in chat_session(rng, ctx.book, start, PromptBook::casual_opener) {
                    if chance(rng, 0.2) {
                        ip = *pick(rng, &self.gateways);
                    }
                    let mut call = Call::new(turn.at, model, turn.prompt, ip, &human.ua);
                    call.messages = turn.messages;
                    call.history_tokens = turn.history_tokens;
                    call.completion = turn.completion;
                    super::emit(out, rng, account, call, ctx);
                }
            }
        }
    }
}

/// The system prompt the popular SDK's quick start puts in every request.
const SDK_DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// Unrelated developers who all use the popular SDK with its quick-start defaults: the same user
/// agent and the same system prompt, each from their own network, building their own thing.
pub(crate) struct SdkUser {
    rng: SimRng,
    account: Account,
    human: Human,
    adopt_after: Option<i64>,
}

impl SdkUser {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let rate = lognormal(&mut rng, 2.0, 0.5);
        let tz = random_zone(&mut rng);
        let mut human = Human::home(&mut rng, tz, Diurnal::Work, rate);
        human.ua = net::POPULAR_SDK.to_owned();
        let adopt_after = chance(&mut rng, 0.3).then(|| range_i64(&mut rng, HOUR, 30 * HOUR));
        Self {
            rng,
            account,
            human,
            adopt_after,
        }
    }
}

impl Actor for SdkUser {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("sdk_user"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for start in self.human.sessions(rng, ctx) {
            let ip = self.human.session_ip(rng);
            let turns = chat_session(rng, ctx.book, start, PromptBook::work_task);
            let mut template = Call::new(start, MODEL_MAIN, String::new(), ip, &self.human.ua);
            template.system = Some(SDK_DEFAULT_SYSTEM.to_owned());
            template.params = client_params(rng);
            let adopt = self.adopt_after;
            emit_turns(out, rng, ctx, &self.account, turns, &template, |rng, at| {
                adopted_model(ctx, at, adopt, 0.8, rng, MODEL_MAIN)
            });
        }
    }
}
