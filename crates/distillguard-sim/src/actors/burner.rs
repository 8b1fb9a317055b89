//! Burner accounts (a hydra in time) and their benign look-alikes.
//!
//! A burner operator does not spread one harvest over many accounts at once; it keeps a few
//! accounts running and replaces each one as it is banned or runs out of trial credit. Every
//! account is brand new, has its own card, harvests hard for a few hours and is abandoned; the
//! next one picks up the task list where the last stopped. Per account there is little history to
//! judge, and whatever is caught after an account's short life was answered anyway.
//!
//! Its look-alikes are brand-new accounts that are intensive from their first hour too: a
//! hackathon (dozens of people signing up the same day and building prototypes for a day and a
//! half behind the venue's NAT) and a developer trying the API for an hour after signing up.

use std::net::IpAddr;

use distillguard_core::event::{ApiEvent, Params};
use rand::Rng;

use super::benign::{client_params, emit_turns};
use super::human::{dev_burst, Turn};
use super::{campaign_members, emit, payment, Account, Actor, Call, Ctx, Human};
use super::{MODEL_MAIN, MODEL_MINI, MODEL_REASONING};
use crate::dist::{chance, exp_gap, lognormal, pick, range_i64, range_u32, uniform, SimRng};
use crate::labels::Label;
use crate::net;
use crate::prompts::{PromptBook, TaskFeed};
use crate::timing::{random_zone, Diurnal, DAY, HOUR, MINUTE};

/// Parameters of the burner archetype (`docs/simulator.md`, "Burner accounts").
pub(crate) struct BurnerPlan {
    /// Accounts the operator keeps running at once.
    pub slots: u32,
    /// Median requests an account sends before it is abandoned (16M exchanges over 24k accounts
    /// in the public report: about 670).
    pub life_requests: f64,
    pub min_requests: f64,
    pub max_requests: f64,
    /// How long an account harvests, uniform between these.
    pub life_ms: (i64, i64),
    /// From one account's last request to its replacement's first.
    pub replace_ms: (i64, i64),
    /// From sign-up to the first request.
    pub signup_ms: (i64, i64),
    /// Share of tasks wrapped in a reasoning elicitation.
    pub elicit_share: f64,
}

impl BurnerPlan {
    pub(crate) fn public(slots: u32) -> Self {
        Self {
            slots,
            life_requests: 670.0,
            min_requests: 250.0,
            max_requests: 2_000.0,
            life_ms: (HOUR, 6 * HOUR),
            replace_ms: (10 * MINUTE, 90 * MINUTE),
            signup_ms: (5 * MINUTE, 60 * MINUTE),
            elicit_share: 0.35,
        }
    }
}

/// One burner: its account and the life the operator gets out of it.
struct Burner {
    account: Account,
    ips: Vec<IpAddr>,
    ua: String,
    system: Option<&'static str>,
    first: i64,
    last: i64,
    requests: u32,
}

pub(crate) struct BurnerAccounts {
    rng: SimRng,
    campaign: String,
    burners: Vec<Burner>,
    feed: TaskFeed,
    elicit_share: f64,
}

impl BurnerAccounts {
    pub(crate) fn new(
        mut rng: SimRng,
        campaign: String,
        start: i64,
        end: i64,
        plan: &BurnerPlan,
    ) -> Self {
        let begin = start + range_i64(&mut rng, 0, 6 * HOUR);
        let mut burners = Vec::new();
        for _ in 0..plan.slots {
            // Slots start staggered: the operator brings accounts up one after another.
            let mut at = begin + range_i64(&mut rng, 0, HOUR);
            while at < end {
                let burner = Self::burner(&mut rng, at, plan);
                at = burner.last + range_i64(&mut rng, plan.replace_ms.0, plan.replace_ms.1);
                burners.push(burner);
            }
        }
        burners.sort_by_key(|b| b.first);
        let feed = TaskFeed::new(&mut rng);
        Self {
            rng,
            campaign,
            burners,
            feed,
            elicit_share: plan.elicit_share,
        }
    }

    /// Accounts the operator creates over the run.
    pub(crate) fn accounts(&self) -> u32 {
        self.burners.len() as u32
    }

    fn burner(rng: &mut SimRng, first: i64, plan: &BurnerPlan) -> Burner {
        let created = first - range_i64(rng, plan.signup_ms.0, plan.signup_ms.1);
        let pay = payment(rng);
        let account = Account::new(rng, created, pay);
        // Each account its own exit: a proxy/VPN exit or a cloud address of a random provider.
        let ips = if chance(rng, 0.5) {
            (0..range_u32(rng, 1, 3))
                .map(|_| net::proxy_exit(rng))
                .collect()
        } else {
            let provider = rng.gen_range(0..net::PROVIDERS);
            (0..range_u32(rng, 1, 3))
                .map(|_| net::datacenter_v4(rng, provider))
                .collect()
        };
        let ua = match rng.gen_range(0..4) {
            0 | 1 => net::sdk_agent(rng),
            2 => pick(rng, net::HTTP_LIBRARIES).to_string(),
            _ => net::custom_agent(rng),
        };
        let system = chance(rng, 0.4).then_some("You are a helpful assistant.");
        let requests = lognormal(rng, plan.life_requests, 0.5)
            .clamp(plan.min_requests, plan.max_requests) as u32;
        let last = first + range_i64(rng, plan.life_ms.0, plan.life_ms.1);
        Burner {
            account,
            ips,
            ua,
            system,
            first,
            last,
            requests,
        }
    }
}

impl Actor for BurnerAccounts {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.burners.iter().map(|b| &b.account);
        campaign_members(accounts, "burner_accounts", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        let today = ctx.day_start..ctx.day_start + DAY;
        // A life starting today is written whole (at most six hours spill into tomorrow).
        for burner in self.burners.iter().filter(|b| today.contains(&b.first)) {
            let count = (f64::from(burner.requests) * ctx.volume).round().max(1.0) as usize;
            let mut times: Vec<i64> = (0..count)
                .map(|_| rng.gen_range(burner.first..=burner.last))
                .collect();
            times.sort_unstable();
            for at in times {
                let task = ctx.book.attack_task(rng, &mut self.feed);
                let prompt = if chance(rng, self.elicit_share) {
                    ctx.book.elicit(rng, &task)
                } else {
                    task
                };
                let model = if chance(rng, 0.15) {
                    MODEL_REASONING
                } else {
                    MODEL_MAIN
                };
                let mut call = Call::new(at, model, prompt, *pick(rng, &burner.ips), &burner.ua);
                call.system = burner.system.map(str::to_string);
                call.completion = lognormal(rng, 600.0, 0.5) as u32;
                call.reasoning = lognormal(rng, 800.0, 0.6) as u32;
                call.error_rate = 0.02;
                call.params = Params {
                    temperature: *pick(rng, &[Some(0.7), Some(1.0), None]),
                    max_tokens: *pick(rng, &[Some(4_096), None]),
                    stream: Some(false),
                    ..Params::default()
                };
                emit(out, rng, &burner.account, call, ctx);
            }
        }
    }
}

/// What a hackathon team's prototype tells the model; each participant builds one.
const PROTOTYPE_SYSTEM_PROMPTS: &[&str] = &[
    "You are StudyBuddy, a friendly tutor for high-school students. Keep answers short and encouraging.",
    "You are ChefMate. Suggest recipes from the ingredients the user lists, with a shopping list.",
    "You are TripPal, a travel planner. Reply with a day-by-day itinerary in JSON.",
    "You are an assistant that turns meeting notes into action items with owners and dates.",
    "You are CodeCoach. Review the user's code and point out bugs, briefly.",
    "You are a customer-support bot for a bike shop. Be concise and polite.",
    "You are WellnessBot. Give gentle, practical advice and suggest seeing a professional when needed.",
    "You are a writing assistant that rewrites text in plain English.",
];

/// What each prototype feeds its system prompt: the inputs its demo users type.
fn prototype_input(book: &PromptBook, rng: &mut SimRng, kind: usize) -> String {
    match kind {
        0 => book.study_question(rng),
        3 | 7 => book.work_task(rng),
        4 => book.dev_task(rng),
        _ => book.casual_opener(rng),
    }
}

/// One hackathon participant.
struct Hacker {
    account: Account,
    ua: String,
    prototype: usize,
    /// Asleep (or at the venue's talks) from this time for `sleep_ms`.
    sleep_at: i64,
    sleep_ms: i64,
    leave_at: i64,
    /// When the next session at the venue starts.
    next_session: i64,
    /// Keeps building after the event, now and then.
    stays: bool,
    /// The prototype's recent test inputs, re-run after each code change.
    inputs: Vec<String>,
}

/// Dozens of people who sign up the same day for a hackathon, build prototypes on the API for a
/// day and a half from the venue's NAT, and mostly vanish afterwards.
pub(crate) struct Hackathon {
    rng: SimRng,
    nat: Vec<IpAddr>,
    hackers: Vec<Hacker>,
}

impl Hackathon {
    pub(crate) fn new(mut rng: SimRng, start: i64, size: u32) -> Self {
        let nat: Vec<IpAddr> = (0..range_u32(&mut rng, 1, 2))
            .map(|_| net::enterprise_nat(&mut rng))
            .collect();
        let begin = start + range_i64(&mut rng, 2 * HOUR, 12 * HOUR);
        let hackers = (0..size)
            .map(|_| {
                let created = begin - range_i64(&mut rng, 0, 12 * HOUR);
                let pay = payment(&mut rng);
                let account = Account::new(&mut rng, created, pay);
                let ua = if chance(&mut rng, 0.6) {
                    net::sdk_agent(&mut rng)
                } else {
                    pick(&mut rng, net::HTTP_LIBRARIES).to_string()
                };
                Hacker {
                    account,
                    ua,
                    prototype: rng.gen_range(0..PROTOTYPE_SYSTEM_PROMPTS.len()),
                    sleep_at: begin + range_i64(&mut rng, 12 * HOUR, 20 * HOUR),
                    sleep_ms: range_i64(&mut rng, 0, 6 * HOUR),
                    leave_at: begin + range_i64(&mut rng, 24 * HOUR, 36 * HOUR),
                    // People get going within the first 45 minutes, not on the opening bell.
                    next_session: begin + range_i64(&mut rng, 0, 45 * MINUTE),
                    stays: chance(&mut rng, 0.25),
                    inputs: Vec::new(),
                }
            })
            .collect();
        Self { rng, nat, hackers }
    }

    /// Session starts today: every 20–60 minutes while at the venue and awake; afterwards, for
    /// those who keep building, one session on a third of the days.
    fn sessions(rng: &mut SimRng, hacker: &mut Hacker, ctx: &Ctx) -> Vec<i64> {
        let (day, day_end) = (ctx.day_start, ctx.day_start + DAY);
        let mut starts = Vec::new();
        // One chain of sessions across the UTC days the event spans.
        while hacker.next_session < hacker.leave_at.min(day_end) {
            let at = hacker.next_session;
            let asleep = (hacker.sleep_at..hacker.sleep_at + hacker.sleep_ms).contains(&at);
            if !asleep {
                starts.push(at);
            }
            hacker.next_session += range_i64(rng, 20 * MINUTE, 60 * MINUTE);
        }
        if hacker.stays && day_end > hacker.leave_at + DAY / 2 && chance(rng, 0.33) {
            starts.push(day + range_i64(rng, 0, DAY));
        }
        starts
    }
}

impl Actor for Hackathon {
    fn members(&self) -> Vec<(String, Label)> {
        self.hackers
            .iter()
            .map(|h| (h.account.id.to_string(), Label::benign("hackathon")))
            .collect()
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for hacker in &mut self.hackers {
            for start in Self::sessions(rng, hacker, ctx) {
                let at_venue = start < hacker.leave_at;
                let ip = if at_venue && !chance(rng, 0.15) {
                    *pick(rng, &self.nat)
                } else {
                    // A phone hotspot at the venue, or home afterwards.
                    net::residential_v4(rng)
                };
                let mut template = Call::new(start, MODEL_MAIN, String::new(), ip, &hacker.ua);
                template.params = client_params(rng);
                if chance(rng, 0.6) {
                    let turns = dev_burst(rng, ctx.book, start);
                    emit_turns(out, rng, ctx, &hacker.account, turns, &template, |_, _| {
                        MODEL_MAIN
                    });
                    continue;
                }
                // A prototype run: the demo inputs, half of them re-runs after a code change.
                let mut turns = Vec::new();
                let mut at = start;
                for _ in 0..range_u32(rng, 5, 40) {
                    let prompt = if !hacker.inputs.is_empty() && chance(rng, 0.5) {
                        pick(rng, &hacker.inputs).clone()
                    } else {
                        let input = prototype_input(ctx.book, rng, hacker.prototype);
                        if hacker.inputs.len() >= 6 {
                            let i = rng.gen_range(0..hacker.inputs.len());
                            hacker.inputs[i] = input.clone();
                        } else {
                            hacker.inputs.push(input.clone());
                        }
                        input
                    };
                    turns.push(Turn {
                        at,
                        prompt,
                        messages: 1,
                        history_tokens: 0,
                        completion: lognormal(rng, 250.0, 0.6) as u32,
                    });
                    at += lognormal(rng, 20_000.0, 0.8).clamp(1_000.0, 300_000.0) as i64;
                }
                template.system = Some(PROTOTYPE_SYSTEM_PROMPTS[hacker.prototype].to_string());
                emit_turns(out, rng, ctx, &hacker.account, turns, &template, |_, _| {
                    MODEL_MINI
                });
            }
        }
    }
}

/// A developer who signs up, tries the API intensively for about an hour, and rarely returns.
pub(crate) struct TrialDeveloper {
    rng: SimRng,
    account: Account,
    human: Human,
    trial_at: i64,
}

impl TrialDeveloper {
    pub(crate) fn new(mut rng: SimRng, start: i64, end: i64) -> Self {
        let created = start + range_i64(&mut rng, -DAY, (end - start - 2 * HOUR).max(HOUR));
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let tz = random_zone(&mut rng);
        let profile = *pick(&mut rng, &[Diurnal::Work, Diurnal::Late]);
        let mut human = Human::home(&mut rng, tz, profile, 0.0);
        human.ua = if chance(&mut rng, 0.6) {
            net::sdk_agent(&mut rng)
        } else {
            pick(&mut rng, net::HTTP_LIBRARIES).to_string()
        };
        let trial_at = created + range_i64(&mut rng, 2 * MINUTE, 40 * MINUTE);
        Self {
            rng,
            account,
            human,
            trial_at,
        }
    }

    /// The first hour: quick-start calls, a few of their own tasks worked over, and questions
    /// to see what the model knows.
    fn trial(rng: &mut SimRng, book: &PromptBook, trial_at: i64) -> Vec<Turn> {
        let budget = lognormal(rng, 60.0, 0.5).clamp(20.0, 200.0) as usize;
        let hour_end = trial_at + HOUR;
        let mut turns = Vec::new();
        let mut at = trial_at;
        while turns.len() < budget && at < hour_end {
            if chance(rng, 0.35) {
                let prompt = if chance(rng, 0.5) {
                    book.casual_opener(rng)
                } else {
                    book.study_question(rng)
                };
                turns.push(Turn {
                    at,
                    prompt,
                    messages: 1,
                    history_tokens: 0,
                    completion: lognormal(rng, 350.0, 0.6) as u32,
                });
                at += exp_gap(rng, 1.0 / 40_000.0) as i64;
            } else {
                let burst = dev_burst(rng, book, at);
                at = burst.last().map_or(at, |t| t.at) + exp_gap(rng, 1.0 / 60_000.0) as i64;
                turns.extend(burst.into_iter().filter(|t| t.at < hour_end));
            }
        }
        turns.truncate(budget);
        turns
    }
}

impl Actor for TrialDeveloper {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(
            self.account.id.to_string(),
            Label::benign("trial_developer"),
        )]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        let mut turns = Vec::new();
        if (ctx.day_start..ctx.day_start + DAY).contains(&self.trial_at) {
            turns = Self::trial(rng, ctx.book, self.trial_at);
        } else if ctx.day_start > self.trial_at && chance(rng, 0.1) {
            // Comes back now and then for a short look.
            let at = ctx.day_start + range_i64(rng, 0, DAY);
            turns = dev_burst(rng, ctx.book, at);
        }
        if turns.is_empty() {
            return;
        }
        let ip = self.human.session_ip(rng);
        let mut template = Call::new(self.trial_at, MODEL_MAIN, String::new(), ip, &self.human.ua);
        template.params = Params {
            temperature: *pick(rng, &[None, Some(0.7), Some(0.2)]),
            ..client_params(rng)
        };
        let quick = uniform(rng, 0.0, 1.0) < 0.3;
        emit_turns(out, rng, ctx, &self.account, turns, &template, |_, _| {
            if quick {
                MODEL_MINI
            } else {
                MODEL_MAIN
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::stream;

    #[test]
    fn a_burner_operator_replaces_each_account_with_a_fresh_one_on_its_own_card() {
        let start = 0;
        let end = 3 * DAY;
        let actor = BurnerAccounts::new(
            stream(4, 4),
            "burner-1".into(),
            start,
            end,
            &BurnerPlan::public(3),
        );
        assert!(actor.burners.len() >= 30, "{}", actor.burners.len());
        for b in &actor.burners {
            let age = b.first - b.account.created_at;
            assert!(
                (5 * MINUTE..=60 * MINUTE).contains(&age),
                "sign-up {age} ms"
            );
            assert!((HOUR..=6 * HOUR).contains(&(b.last - b.first)));
            assert!((250..=2_000).contains(&b.requests));
        }
        let mut cards: Vec<&str> = actor
            .burners
            .iter()
            .map(|b| b.account.payment.as_str())
            .collect();
        cards.sort_unstable();
        cards.dedup();
        assert_eq!(cards.len(), actor.burners.len());
    }
}
