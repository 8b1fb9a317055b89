//! Distillation campaigns. Each one is built to stay under the obvious per-account signal it is
//! named after, except bulk harvest, which is the easy baseline.

use std::net::IpAddr;

use distillguard_core::event::{ApiEvent, Params};
use rand::Rng;

use super::benign::Reseller;
use super::human::Net;
use super::{campaign_members, emit, payment, Account, Actor, Call, Ctx, Human};
use super::{MODEL_MAIN, MODEL_NEW, MODEL_REASONING};
use crate::dist::{chance, hex, lognormal, pick, poisson, range_i64, range_u32, uniform, SimRng};
use crate::labels::Label;
use crate::net;
use crate::prompts::{PromptBook, TaskFeed, ATTACK_SYSTEM_PROMPTS};
use crate::timing::{random_zone, Diurnal, DAY, HOUR, MINUTE};

/// What a hydra that only wants answers tells the model.
const NEUTRAL_SYSTEM_PROMPT: &str =
    "You are a helpful assistant. Answer accurately, completely and in a well-structured way.";

/// Agent-trace harvesting dresses up as a coding agent.
const PIVOT_SYSTEM_PROMPT: &str = "You are an expert software engineering agent. Use the available tools to inspect and change the repository, and report each tool call and its result.";

/// Request times of a script that runs round the clock: Poisson arrivals at a daily rate, with
/// hour-to-hour throughput wobble, starting no earlier than `begin`.
pub(crate) fn scripted_times(rng: &mut SimRng, day_start: i64, begin: i64, daily: f64) -> Vec<i64> {
    let mut times = Vec::new();
    for hour in 0..24 {
        let hour_start = day_start + hour * HOUR;
        if hour_start + HOUR <= begin {
            continue;
        }
        let wobble = lognormal(rng, 1.0, 0.15);
        let count = poisson(rng, daily / 24.0 * wobble);
        times.extend(
            (0..count)
                .map(|_| hour_start + rng.gen_range(0..HOUR))
                .filter(|t| *t >= begin),
        );
    }
    times.sort_unstable();
    times
}

fn harvest_prompt(
    rng: &mut SimRng,
    book: &PromptBook,
    feed: &mut TaskFeed,
    elicit_share: f64,
) -> String {
    let task = book.attack_task(rng, feed);
    let roll: f64 = rng.gen();
    if roll < elicit_share {
        book.elicit(rng, &task)
    } else if roll < elicit_share + 0.08 {
        book.rubric(rng, &task)
    } else {
        task
    }
}

fn campaign_begin(rng: &mut SimRng, start: i64, end: i64, latest_share: f64) -> i64 {
    start + range_i64(rng, 0, (((end - start) as f64) * latest_share) as i64 + 1)
}

/// One or two accounts pulling answers as fast as their rate limit allows, from a few cloud IPs.
pub(crate) struct BulkHarvest {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Vec<IpAddr>, f64)>,
    feed: TaskFeed,
    ua: String,
    system: Option<String>,
    begin: i64,
}

impl BulkHarvest {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, end: i64, size: u32) -> Self {
        let accounts = (0..size)
            .map(|_| {
                let created = start - range_i64(&mut rng, 3 * DAY, 60 * DAY);
                let pay = payment(&mut rng);
                let account = Account::new(&mut rng, created, pay);
                let provider = rng.gen_range(0..net::PROVIDERS);
                let ips = (0..range_u32(&mut rng, 1, 3))
                    .map(|_| net::datacenter_v4(&mut rng, provider))
                    .collect();
                let daily = lognormal(&mut rng, 9_000.0, 0.4).clamp(4_000.0, 25_000.0);
                (account, ips, daily)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        let ua = if chance(&mut rng, 0.5) {
            "python-httpx/0.27.2".to_string()
        } else {
            net::POPULAR_SDK.to_string()
        };
        let system = chance(&mut rng, 0.5).then(|| "You are a helpful assistant.".to_string());
        let begin = campaign_begin(&mut rng, start, end, 0.25);
        Self {
            rng,
            campaign,
            accounts,
            feed,
            ua,
            system,
            begin,
        }
    }
}

impl Actor for BulkHarvest {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.accounts.iter().map(|(a, ..)| a);
        campaign_members(accounts, "bulk_harvest", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, ips, daily) in &self.accounts {
            for at in scripted_times(rng, ctx.day_start, self.begin, daily * ctx.volume) {
                let prompt = harvest_prompt(rng, ctx.book, &mut self.feed, 0.3);
                let mut call = Call::new(at, MODEL_MAIN, prompt, *pick(rng, ips), &self.ua);
                call.system = self.system.clone();
                call.completion = lognormal(rng, 600.0, 0.5) as u32;
                call.error_rate = 0.03;
                call.params = Params {
                    temperature: Some(0.7),
                    max_tokens: Some(4_096),
                    stream: Some(false),
                    ..Params::default()
                };
                emit(out, rng, account, call, ctx);
            }
        }
    }
}

/// Many accounts created in a burst, sharing proxies, cards, SDK and system prompt, each under
/// per-account thresholds, fed round-robin from one sharded task list, round the clock. A
/// "plain" hydra wants answers, not reasoning: a neutral system prompt and little elicitation,
/// so only its breadth, rhythm and shared infrastructure give it away.
pub(crate) struct Hydra {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Vec<IpAddr>, f64)>,
    feed: TaskFeed,
    system: String,
    elicit_share: f64,
    daily: f64,
    begin: i64,
    next: usize,
}

impl Hydra {
    pub(crate) fn new(
        mut rng: SimRng,
        campaign: String,
        start: i64,
        end: i64,
        size: u32,
        plain: bool,
    ) -> Self {
        let burst = start - range_i64(&mut rng, DAY, 10 * DAY);
        let cards: Vec<String> = (0..range_u32(&mut rng, 3, 5))
            .map(|_| payment(&mut rng))
            .collect();
        let provider = rng.gen_range(0..net::PROVIDERS);
        let mut pool: Vec<IpAddr> = (0..range_u32(&mut rng, 8, 16))
            .map(|_| net::proxy_exit(&mut rng))
            .collect();
        pool.extend((0..range_u32(&mut rng, 2, 4)).map(|_| net::datacenter_v4(&mut rng, provider)));
        let accounts = (0..size as usize)
            .map(|i| {
                let created = burst + range_i64(&mut rng, 0, 30 * MINUTE);
                let account = Account::new(&mut rng, created, cards[i % cards.len()].clone());
                let ips = (0..range_u32(&mut rng, 2, 4))
                    .map(|_| *pick(&mut rng, &pool))
                    .collect();
                let temperature = *pick(&mut rng, &[0.7, 0.8, 1.0]);
                (account, ips, temperature)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        let (system, elicit_share) = if plain {
            (NEUTRAL_SYSTEM_PROMPT.to_string(), 0.1)
        } else {
            (pick(&mut rng, ATTACK_SYSTEM_PROMPTS).to_string(), 0.7)
        };
        let daily = f64::from(size) * lognormal(&mut rng, 170.0, 0.25).clamp(80.0, 350.0);
        let begin = campaign_begin(&mut rng, start, end, 0.2);
        Self {
            rng,
            campaign,
            accounts,
            feed,
            system,
            elicit_share,
            daily,
            begin,
            next: 0,
        }
    }
}

impl Actor for Hydra {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.accounts.iter().map(|(a, ..)| a);
        campaign_members(accounts, "hydra_cluster", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for at in scripted_times(rng, ctx.day_start, self.begin, self.daily * ctx.volume) {
            // Round-robin: shard k of the task list goes to account k mod n, evenly.
            let (account, ips, temperature) = &self.accounts[self.next % self.accounts.len()];
            self.next += 1;
            let prompt = harvest_prompt(rng, ctx.book, &mut self.feed, self.elicit_share);
            let mut call = Call::new(at, MODEL_MAIN, prompt, *pick(rng, ips), net::POPULAR_SDK);
            call.system = Some(self.system.clone());
            call.completion = lognormal(rng, 700.0, 0.4) as u32;
            call.params = Params {
                temperature: Some(*temperature),
                max_tokens: Some(4_096),
                stream: Some(false),
                ..Params::default()
            };
            emit(out, rng, account, call, ctx);
        }
    }
}

/// Accounts that look like people (residential proxies, browsers, daily rhythm, modest volume)
/// but send only single-turn, never-repeated, reasoning-eliciting tasks.
pub(crate) struct LowAndSlow {
    rng: SimRng,
    campaign: String,
    members: Vec<(Account, Human, Option<String>)>,
    feed: TaskFeed,
}

impl LowAndSlow {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, size: u32) -> Self {
        let members = (0..size)
            .map(|_| {
                let created = start - range_i64(&mut rng, 5 * DAY, 120 * DAY);
                let pay = payment(&mut rng);
                let account = Account::new(&mut rng, created, pay);
                let tz = random_zone(&mut rng);
                let profile = *pick(&mut rng, &[Diurnal::Evening, Diurnal::Work, Diurnal::Late]);
                let rate = uniform(&mut rng, 3.0, 5.0);
                let mut human = Human::home(&mut rng, tz, profile, rate);
                // A rotating residential proxy: a fresh home address for every session.
                human.net = Net::Home {
                    v4: net::residential_v4(&mut rng),
                    v6: None,
                    mobile_share: 1.0,
                };
                human.ua = net::chat_client(&mut rng);
                let system = chance(&mut rng, 0.3)
                    .then(|| pick(&mut rng, ATTACK_SYSTEM_PROMPTS).to_string());
                (account, human, system)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        Self {
            rng,
            campaign,
            members,
            feed,
        }
    }
}

impl Actor for LowAndSlow {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.members.iter().map(|(a, ..)| a);
        campaign_members(accounts, "low_and_slow", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, human, system) in &mut self.members {
            for start in human.sessions(rng, ctx) {
                let ip = human.session_ip(rng);
                let mut at = start;
                for _ in 0..range_u32(rng, 4, 14) {
                    let prompt = harvest_prompt(rng, ctx.book, &mut self.feed, 0.6);
                    let model = if chance(rng, 0.3) {
                        MODEL_REASONING
                    } else {
                        MODEL_MAIN
                    };
                    let mut call = Call::new(at, model, prompt, ip, &human.ua);
                    call.system = system.clone();
                    call.completion = lognormal(rng, 900.0, 0.4) as u32;
                    call.reasoning = lognormal(rng, 1_500.0, 0.5) as u32;
                    call.params = Params {
                        temperature: *pick(rng, &[None, Some(1.0)]),
                        max_tokens: *pick(rng, &[None, Some(4_096), Some(8_192)]),
                        stream: Some(true),
                        ..Params::default()
                    };
                    emit(out, rng, account, call, ctx);
                    at += lognormal(rng, 80_000.0, 0.5).clamp(15_000.0, 900_000.0) as i64;
                }
            }
        }
    }
}

/// Harvesting reasoning and distributions: logprobs with top alternatives, several samples per
/// prompt, long outputs on the reasoning model.
pub(crate) struct ReasoningHarvest {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, IpAddr, f64)>,
    feed: TaskFeed,
    begin: i64,
}

impl ReasoningHarvest {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, end: i64, size: u32) -> Self {
        let provider = rng.gen_range(0..net::PROVIDERS);
        let accounts = (0..size)
            .map(|_| {
                let created = start - range_i64(&mut rng, 2 * DAY, 90 * DAY);
                let pay = payment(&mut rng);
                let account = Account::new(&mut rng, created, pay);
                let daily = lognormal(&mut rng, 1_100.0, 0.4).clamp(300.0, 4_000.0);
                (account, net::datacenter_v4(&mut rng, provider), daily)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        let begin = campaign_begin(&mut rng, start, end, 0.3);
        Self {
            rng,
            campaign,
            accounts,
            feed,
            begin,
        }
    }
}

impl Actor for ReasoningHarvest {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.accounts.iter().map(|(a, ..)| a);
        campaign_members(accounts, "reasoning_harvest", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, ip, daily) in &self.accounts {
            for at in scripted_times(rng, ctx.day_start, self.begin, daily * ctx.volume) {
                let prompt = harvest_prompt(rng, ctx.book, &mut self.feed, 0.6);
                let model = if chance(rng, 0.8) {
                    MODEL_REASONING
                } else {
                    MODEL_MAIN
                };
                let mut call = Call::new(at, model, prompt, *ip, net::POPULAR_SDK);
                call.completion = lognormal(rng, 1_200.0, 0.4) as u32;
                call.reasoning = lognormal(rng, 2_500.0, 0.5) as u32;
                call.params = Params {
                    temperature: Some(1.0),
                    max_tokens: Some(*pick(rng, &[8_192, 16_000])),
                    n: Some(range_u32(rng, 2, 8)),
                    logprobs: Some(true),
                    top_logprobs: Some(*pick(rng, &[5, 10, 20])),
                    stream: Some(false),
                    ..Params::default()
                };
                emit(out, rng, account, call, ctx);
            }
        }
    }
}

/// A campaign that moves most of its traffic to a newly released model within hours.
pub(crate) struct Pivot {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Vec<IpAddr>, f64)>,
    feed: TaskFeed,
    system: String,
    lag: i64,
    ramp: i64,
}

impl Pivot {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, size: u32) -> Self {
        let cards: Vec<String> = (0..2).map(|_| payment(&mut rng)).collect();
        let providers = [
            rng.gen_range(0..net::PROVIDERS),
            rng.gen_range(0..net::PROVIDERS),
        ];
        let accounts = (0..size as usize)
            .map(|i| {
                let created = start - range_i64(&mut rng, 3 * DAY, 45 * DAY);
                let account = Account::new(&mut rng, created, cards[i % 2].clone());
                let provider = providers[i % 2];
                let ips = (0..range_u32(&mut rng, 1, 3))
                    .map(|_| net::datacenter_v4(&mut rng, provider))
                    .collect();
                let daily = lognormal(&mut rng, 420.0, 0.3).clamp(150.0, 900.0);
                (account, ips, daily)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        let system = PIVOT_SYSTEM_PROMPT.to_string();
        let lag = range_i64(&mut rng, 30 * MINUTE, 4 * HOUR);
        let ramp = range_i64(&mut rng, HOUR, 3 * HOUR);
        Self {
            rng,
            campaign,
            accounts,
            feed,
            system,
            lag,
            ramp,
        }
    }

    fn new_model_share(&self, ctx: &Ctx, at: i64) -> f64 {
        let moved = at - ctx.release_at - self.lag;
        if moved <= 0 {
            0.0
        } else {
            0.85 * (moved as f64 / self.ramp as f64).min(1.0)
        }
    }
}

impl Actor for Pivot {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.accounts.iter().map(|(a, ..)| a);
        campaign_members(accounts, "pivot", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let mut calls = Vec::new();
        for (index, (_, ips, daily)) in self.accounts.iter().enumerate() {
            for at in scripted_times(
                &mut self.rng,
                ctx.day_start,
                ctx.sim_start,
                *daily * ctx.volume,
            ) {
                let share = self.new_model_share(ctx, at);
                // After the move the campaign also speeds up: the new model is what it came for.
                if share == 0.0 || chance(&mut self.rng, 1.0 / 1.4) {
                    calls.push((index, at, share, *pick(&mut self.rng, ips)));
                }
                if share > 0.0 && chance(&mut self.rng, 0.4) {
                    calls.push((
                        index,
                        at + self.rng.gen_range(0..MINUTE),
                        share,
                        *pick(&mut self.rng, ips),
                    ));
                }
            }
        }
        let rng = &mut self.rng;
        for (index, at, share, ip) in calls {
            let model = if chance(rng, share) {
                MODEL_NEW
            } else {
                MODEL_MAIN
            };
            let task = ctx.book.agentic_task(rng, &mut self.feed);
            let prompt = if chance(rng, 0.3) {
                ctx.book.elicit(rng, &task)
            } else {
                task
            };
            let mut call = Call::new(at, model, prompt, ip, net::POPULAR_SDK);
            call.system = Some(self.system.clone());
            call.completion = lognormal(rng, 900.0, 0.4) as u32;
            call.reasoning = lognormal(rng, 1_200.0, 0.5) as u32;
            call.params = Params {
                temperature: Some(0.6),
                max_tokens: Some(8_192),
                stream: Some(false),
                ..Params::default()
            };
            emit(out, rng, &self.accounts[index].0, call, ctx);
        }
    }
}

/// A reseller whose legitimate end users hide one or a few end users harvesting at scale.
pub(crate) struct ResellerHidden {
    reseller: Reseller,
    campaign: String,
    harvesters: Vec<(String, f64)>,
    feed: TaskFeed,
    begin: i64,
}

impl ResellerHidden {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, end: i64) -> Self {
        let harvesters = (0..range_u32(&mut rng, 1, 3))
            .map(|_| {
                (
                    format!("eu_{}", hex(&mut rng, 10)),
                    lognormal(&mut rng, 700.0, 0.4).clamp(250.0, 2_500.0),
                )
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        let begin = campaign_begin(&mut rng, start, end, 0.3);
        let reseller = Reseller::new(rng, start);
        Self {
            reseller,
            campaign,
            harvesters,
            feed,
            begin,
        }
    }
}

impl Actor for ResellerHidden {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(
            self.reseller.account.id.to_string(),
            Label::attack("reseller_hidden", &self.campaign)
                .with_end_users(self.harvesters.iter().map(|(user, _)| user.clone())),
        )]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        self.reseller.legitimate_day(ctx, out);
        let reseller = &mut self.reseller;
        let rng = &mut reseller.rng;
        for (end_user, daily) in &self.harvesters {
            for at in scripted_times(rng, ctx.day_start, self.begin, daily * ctx.volume) {
                let prompt = harvest_prompt(rng, ctx.book, &mut self.feed, 0.75);
                let model = if chance(rng, 0.4) {
                    MODEL_REASONING
                } else {
                    MODEL_MAIN
                };
                let mut call =
                    Call::new(at, model, prompt, *pick(rng, &reseller.ips), &reseller.ua);
                call.end_user = Some(end_user.clone());
                call.completion = lognormal(rng, 800.0, 0.4) as u32;
                call.reasoning = lognormal(rng, 1_500.0, 0.5) as u32;
                call.params = Params {
                    temperature: Some(0.7),
                    max_tokens: Some(4_096),
                    stream: Some(true),
                    ..Params::default()
                };
                emit(out, rng, &reseller.account, call, ctx);
            }
        }
    }
}
