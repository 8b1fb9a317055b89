//! A hydra run through a rotating residential proxy pool (issue 12): hundreds of accounts that
//! share no account-level value. Each has its own card, its own sign-up date (spread over more
//! than a month), its own client, and behaves like a person (sessions in its local day, gaps,
//! 30% ordinary chat); every request leaves from an address drawn from the reseller's pool of
//! thousands of residential IPs. What ties the accounts together is only that they draw on the
//! same pool: each account meets others on addresses almost nobody else uses, and on the same
//! corpus: an item is now and then asked again by another account with another augmentation
//! suffix (several samples of one item without `n > 1` in any account), and the operator's
//! augmentation suffixes close half its harvest prompts.

use std::collections::VecDeque;
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
use rand::Rng;

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

/// Augmentation suffixes harvesters append to corpus items for diverse answers; a campaign uses
/// four of them.
const AUGMENTATIONS: &[&str] = &[
    "Answer in a different style than usual.",
    "Give a concise version first, then a detailed one.",
    "Include one worked example.",
    "Write it for a high-school student.",
    "Use a formal academic tone throughout.",
    "End with a short summary of the key points.",
    "Explain it as you would to an expert.",
    "Respond with clearly numbered steps.",
];
/// Augmentation suffixes one campaign rotates over.
const CAMPAIGN_AUGMENTATIONS: usize = 4;
/// Share of harvest prompts closed by an augmentation suffix.
const AUGMENT_SHARE: f64 = 0.5;
/// Share of harvest items queued to be asked again by another account (and share of harvest
/// requests that ask a queued item, while one is queued).
const REASK_SHARE: f64 = 0.25;
/// Items waiting to be asked again, at most.
const REASK_QUEUE: usize = 512;

pub(crate) struct ProxyPoolHydra {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Human)>,
    pool: Vec<IpAddr>,
    feed: TaskFeed,
    chat_share: f64,
    begin: i64,
    augmentations: Vec<&'static str>,
    /// Items to be asked again, with the account that asked them first.
    reasks: VecDeque<(usize, String)>,
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
        let mut augmentations = AUGMENTATIONS.to_vec();
        for i in 0..CAMPAIGN_AUGMENTATIONS {
            let j = rng.gen_range(i..augmentations.len());
            augmentations.swap(i, j);
        }
        augmentations.truncate(CAMPAIGN_AUGMENTATIONS);
        Self {
            rng,
            campaign,
            accounts,
            pool,
            feed,
            chat_share: plan.chat_share,
            begin,
            augmentations,
            reasks: VecDeque::new(),
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
        for (index, (account, human)) in self.accounts.iter_mut().enumerate() {
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
                    let queued = self.reasks.front().is_some_and(|(by, _)| *by != index);
                    let task = if queued && chance(rng, REASK_SHARE) {
                        self.reasks
                            .pop_front()
                            .map(|(_, task)| task)
                            .unwrap_or_default()
                    } else {
                        let task = ctx.book.attack_task(rng, &mut self.feed);
                        if self.reasks.len() < REASK_QUEUE && chance(rng, REASK_SHARE) {
                            self.reasks.push_back((index, task.clone()));
                        }
                        task
                    };
                    let mut prompt = if chance(rng, 0.4) {
                        ctx.book.elicit(rng, &task)
                    } else {
                        task
                    };
                    if chance(rng, AUGMENT_SHARE) {
                        prompt.push(' ');
                        prompt.push_str(pick::<&str>(rng, &self.augmentations));
                    }
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
