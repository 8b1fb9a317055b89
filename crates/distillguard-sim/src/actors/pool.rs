//! A hydra run through a rotating residential proxy pool (issue 12): hundreds of accounts that
//! share no account-level value. Each has its own card, its own sign-up date (spread over more
//! than a month), its own client, and behaves like a person (sessions in its local day, gaps,
//! 30% ordinary chat); every request leaves from an address drawn from the reseller's pool of
//! thousands of residential IPs. What ties the accounts together is only that they draw on the
//! same pool: each account meets others on addresses almost nobody else uses.

use std::net::IpAddr;

use distillguard_core::event::{ApiEvent, Params};

use super::human::chat_session;
use super::{emit, payment, Account, Actor, Call, Ctx, Human};
use super::{MODEL_MAIN, MODEL_MINI};
use crate::dist::{chance, lognormal, pick, range_i64, range_u32, uniform, SimRng};
use crate::labels::Label;
use crate::net;
use crate::prompts::{PromptBook, TaskFeed};
use crate::timing::{random_zone, Diurnal, DAY, HOUR};

/// Parameters of the archetype (`docs/simulator.md`, "Proxy-pool hydra").
pub(crate) struct PoolPlan {
    pub accounts: u32,
    /// Residential addresses in the reseller's pool.
    pub pool: u32,
    /// Requests per account per day (median).
    pub daily: f64,
    /// Share of requests that are ordinary chat, not harvest.
    pub chat_share: f64,
    /// Sign-ups spread over this many days before the campaign.
    pub signup_days: i64,
}

pub(crate) struct ProxyPoolHydra {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Human)>,
    pool: Vec<IpAddr>,
    feed: TaskFeed,
    chat_share: f64,
    begin: i64,
}

impl ProxyPoolHydra {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, plan: &PoolPlan) -> Self {
        let pool: Vec<IpAddr> = (0..plan.pool)
            .map(|_| net::residential_v4(&mut rng))
            .collect();
        // The campaign starts within the first hours of the run; accounts signed up over the
        // month before it, one card each.
        let begin = start + range_i64(&mut rng, 0, 6 * HOUR);
        let accounts = (0..plan.accounts)
            .map(|_| {
                let created = begin - range_i64(&mut rng, DAY, (plan.signup_days + 1) * DAY);
                let pay = payment(&mut rng);
                let account = Account::new(&mut rng, created, pay);
                let tz = random_zone(&mut rng);
                let profile = *pick(&mut rng, &[Diurnal::Evening, Diurnal::Work, Diurnal::Late]);
                // Sessions of about six requests: `daily / 6` sessions a day.
                let per_day = lognormal(&mut rng, plan.daily, 0.25) / 6.0;
                let mut human = Human::home(&mut rng, tz, profile, per_day);
                human.ua = if chance(&mut rng, 0.5) {
                    net::chat_client(&mut rng)
                } else {
                    pick(&mut rng, net::SDK_AGENTS).to_string()
                };
                (account, human)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        Self {
            rng,
            campaign,
            accounts,
            pool,
            feed,
            chat_share: plan.chat_share,
            begin,
        }
    }
}

impl Actor for ProxyPoolHydra {
    fn members(&self) -> Vec<(String, Label)> {
        self.accounts
            .iter()
            .map(|(a, _)| {
                (
                    a.id.to_string(),
                    Label::attack("proxy_pool_hydra", &self.campaign),
                )
            })
            .collect()
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, human) in &mut self.accounts {
            for start in human.sessions(rng, ctx) {
                if start < self.begin {
                    continue;
                }
                if chance(rng, self.chat_share) {
                    // Ordinary chat sold to the reseller's other customers, through the same pool.
                    for turn in chat_session(rng, ctx.book, start, PromptBook::casual_opener) {
                        let ip = *pick(rng, &self.pool);
                        let mut call = Call::new(turn.at, MODEL_MINI, turn.prompt, ip, &human.ua);
                        call.messages = turn.messages;
                        call.history_tokens = turn.history_tokens;
                        call.completion = turn.completion;
                        emit(out, rng, account, call, ctx);
                    }
                    continue;
                }
                let mut at = start;
                for _ in 0..range_u32(rng, 3, 9) {
                    let task = ctx.book.attack_task(rng, &mut self.feed);
                    let prompt = if chance(rng, 0.4) {
                        ctx.book.elicit(rng, &task)
                    } else {
                        task
                    };
                    // A rotating proxy: a fresh exit address for every request.
                    let ip = *pick(rng, &self.pool);
                    let mut call = Call::new(at, MODEL_MAIN, prompt, ip, &human.ua);
                    call.completion = lognormal(rng, 650.0, 0.4) as u32;
                    call.params = Params {
                        temperature: *pick(rng, &[None, Some(0.7), Some(1.0)]),
                        max_tokens: *pick(rng, &[None, Some(2_048), Some(4_096)]),
                        stream: Some(chance(rng, 0.7)),
                        ..Params::default()
                    };
                    emit(out, rng, account, call, ctx);
                    at += (uniform(rng, 0.5, 1.5) * lognormal(rng, 90_000.0, 0.6)) as i64;
                }
            }
        }
    }
}
