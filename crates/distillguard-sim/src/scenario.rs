//! Scenario flags, the archetype mix they imply, and the day-by-day generation loop.

use std::collections::{BTreeMap, HashMap};

use distillguard_core::event::ApiEvent;
use distillguard_core::time::EventTime;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::actors::attack::{
    BulkHarvest, Hydra, LowAndSlow, Pivot, ReasoningHarvest, ResellerHidden,
};
use crate::actors::benign::{Casual, Developer, Enterprise, Reseller};
use crate::actors::burner::{BurnerAccounts, BurnerPlan, Hackathon, TrialDeveloper};
use crate::actors::harvest::{
    AgenticHarvest, CodingAgent, EvalLab, LogprobHarvest, MultilingualChat, MultilingualHarvest,
    PowerStudent,
};
use crate::actors::pool::{PoolPlan, ProxyPoolHydra};
use crate::actors::services::{BatchJob, BenchmarkRunner, ProductionApp};
use crate::actors::traps::{CampusClass, CarrierPhones, SdkUser};
use crate::actors::{Actor, Ctx};
use crate::dist::{chance, range_u32, stream, SimRng};
use crate::labels::Labels;
use crate::prompts::PromptBook;
use crate::timing::{DAY, HOUR, MAX_TZ_AHEAD_MS};
use crate::SimError;

/// Everything that determines the output. Same values, same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    /// Start of the first simulated UTC day.
    pub start: EventTime,
    pub days: u32,
    /// Target number of accounts (the labels list those that sent at least one request).
    pub accounts: u32,
    /// Multiplies every actor's request rate.
    pub volume: f64,
    /// When the new model (`atlas-4`) is released, from `start`; default 10 h for a one-day run,
    /// 30 h otherwise.
    pub release_after_ms: Option<i64>,
    /// Share of events logged a little late (gateway buffering), and by how much at most.
    pub disorder_fraction: f64,
    pub disorder_ms: i64,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            seed: 1,
            // A Monday, so weekday and weekend behaviour both appear in a week-long run.
            start: EventTime::from_epoch_ms(1_793_577_600_000).unwrap_or_default(),
            days: 1,
            accounts: 2_000,
            volume: 1.0,
            release_after_ms: None,
            disorder_fraction: 0.02,
            disorder_ms: 60_000,
        }
    }
}

impl Scenario {
    pub fn validate(&self) -> Result<(), SimError> {
        if self.days == 0 || self.days > 60 {
            return Err(SimError::Scenario("days must be 1..=60".into()));
        }
        if self.accounts < 50 || self.accounts > 1_000_000 {
            return Err(SimError::Scenario("accounts must be 50..=1000000".into()));
        }
        if !(self.volume > 0.0 && self.volume <= 100.0) {
            return Err(SimError::Scenario("volume must be in (0, 100]".into()));
        }
        if !(0.0..=1.0).contains(&self.disorder_fraction)
            || !(0..=10 * 60_000).contains(&self.disorder_ms)
        {
            return Err(SimError::Scenario(
                "disorder must be a fraction in [0,1] and at most 10 minutes".into(),
            ));
        }
        Ok(())
    }

    pub fn end_ms(&self) -> i64 {
        self.start.epoch_ms() + i64::from(self.days) * DAY
    }

    pub fn release_at_ms(&self) -> i64 {
        let default = if self.days >= 2 { 30 * HOUR } else { 10 * HOUR };
        self.start.epoch_ms() + self.release_after_ms.unwrap_or(default)
    }
}

/// What a campaign did, from the events actually written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSummary {
    pub archetype: String,
    pub accounts: usize,
    pub events: u64,
    pub first_event: Option<EventTime>,
    pub last_event: Option<EventTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulationSummary {
    pub events: u64,
    pub labels: Labels,
    pub campaigns: BTreeMap<String, CampaignSummary>,
    pub release_at: EventTime,
}

fn build_actors(scenario: &Scenario) -> Vec<Box<dyn Actor>> {
    let n = scenario.accounts;
    let seed = scenario.seed;
    let start = scenario.start.epoch_ms();
    let end = scenario.end_ms();
    let mut plan_rng = stream(seed, 0);
    let mut next_stream = 1u64;
    let mut rng = || -> SimRng {
        next_stream += 1;
        stream(seed, next_stream)
    };
    let mut actors: Vec<Box<dyn Actor>> = Vec::new();
    let mut used = 0u32;

    // Attack campaigns first: their sizes are fixed by the scenario, benign fills the rest.
    let thousands = (n / 1_000).max(1);
    for i in 0..thousands {
        let size = 1 + (i % 2);
        actors.push(Box::new(BulkHarvest::new(
            rng(),
            format!("bulk-{}", i + 1),
            start,
            end,
            size,
        )));
        used += size;
        let hydra_size = if n >= 300 {
            (n / 50).clamp(30, 60)
        } else {
            (n / 10).max(5)
        };
        actors.push(Box::new(Hydra::new(
            rng(),
            format!("hydra-{}", i + 1),
            start,
            end,
            hydra_size,
            i % 2 == 1,
        )));
        used += hydra_size;
    }
    let low = (n / 200).clamp(3, 25);
    actors.push(Box::new(LowAndSlow::new(
        rng(),
        "lowslow-1".into(),
        start,
        low,
    )));
    used += low;
    let reasoning = (n / 800).max(2);
    actors.push(Box::new(ReasoningHarvest::new(
        rng(),
        "reasoning-1".into(),
        start,
        end,
        reasoning,
    )));
    used += reasoning;
    let pivot = (n / 250).clamp(4, 16);
    actors.push(Box::new(Pivot::new(rng(), "pivot-1".into(), start, pivot)));
    used += pivot;
    for i in 0..(n / 2_000).max(1) {
        actors.push(Box::new(ResellerHidden::new(
            rng(),
            format!("reseller-hidden-{}", i + 1),
            start,
            end,
        )));
        used += 1;
    }

    let remaining = n.saturating_sub(used);
    let share = |fraction: f64| ((f64::from(remaining) * fraction) as u32).max(1);
    for _ in 0..(n / 400).max(1) {
        actors.push(Box::new(Reseller::new(rng(), start)));
        used += 1;
    }
    for _ in 0..share(0.03) {
        actors.push(Box::new(ProductionApp::new(rng(), start)));
        used += 1;
    }
    for _ in 0..share(0.02) {
        actors.push(Box::new(BatchJob::new(rng(), start)));
        used += 1;
    }
    let release = scenario.release_at_ms();
    for _ in 0..share(0.015) {
        actors.push(Box::new(BenchmarkRunner::new(rng(), start, end, release)));
        used += 1;
    }
    let mut enterprise = share(0.12);
    while enterprise >= 4 {
        let size = range_u32(&mut plan_rng, 4, 40).min(enterprise);
        actors.push(Box::new(Enterprise::new(rng(), start, size)));
        enterprise -= size;
        used += size;
    }
    for _ in 0..share(0.18) {
        actors.push(Box::new(Developer::new(rng(), start)));
        used += 1;
    }
    used += proxy_pool_and_look_alikes(scenario, &mut actors, used);
    used += harvests_and_look_alikes(scenario, remaining, &mut actors);
    used += burners_and_look_alikes(scenario, remaining, &mut actors);
    while used < n {
        actors.push(Box::new(Casual::new(rng(), start, end)));
        used += 1;
    }
    actors
}

/// The proxy-pool hydra and its benign look-alikes (campus class, carrier CGNAT, popular-SDK
/// users), on random streams of their own so that every other actor draws what it drew before
/// they existed. Returns the accounts added.
fn proxy_pool_and_look_alikes(
    scenario: &Scenario,
    actors: &mut Vec<Box<dyn Actor>>,
    used: u32,
) -> u32 {
    let n = scenario.accounts;
    let start = scenario.start.epoch_ms();
    let end = scenario.end_ms();
    let own = |k: u64| stream(scenario.seed, 1 << 40 | k);
    let size = (n / 10).clamp(5, 250);
    let plan = PoolPlan {
        accounts: size,
        pool: (size * 10).max(200),
        daily: 25.0,
        chat_share: 0.3,
        signup_days: 35,
    };
    actors.push(Box::new(ProxyPoolHydra::new(
        own(0),
        "proxy-pool-1".into(),
        start,
        &plan,
    )));
    let mut added = size;
    let remaining = n.saturating_sub(used + added);
    let mut plan_rng = own(1);
    for class in 0..(n / 1_000).max(1) {
        let students = range_u32(&mut plan_rng, 30, 60).min(remaining / 10 + 3);
        actors.push(Box::new(CampusClass::new(
            own(10 + u64::from(class)),
            start,
            students,
        )));
        added += students;
    }
    let phones = (remaining / 12).max(3);
    actors.push(Box::new(CarrierPhones::new(own(2), start, end, phones)));
    added += phones;
    for k in 0..(remaining / 20).max(1) {
        actors.push(Box::new(SdkUser::new(own(1_000 + u64::from(k)), start)));
        added += 1;
    }
    added
}

/// Issue 13's archetypes, on random streams of their own so that every earlier actor keeps its
/// stream (and its traffic) for the same seed. Returns the accounts they hold.
fn harvests_and_look_alikes(
    scenario: &Scenario,
    remaining: u32,
    actors: &mut Vec<Box<dyn Actor>>,
) -> u32 {
    let (n, start) = (scenario.accounts, scenario.start.epoch_ms());
    let mut next = 1u64 << 32;
    let mut rng = || -> SimRng {
        next += 1;
        stream(scenario.seed, next)
    };
    let mut used = 0;
    let logprob = (n / 700).clamp(3, 12);
    actors.push(Box::new(LogprobHarvest::new(
        rng(),
        "logprob-1".into(),
        start,
        logprob,
    )));
    let agentic = (n / 500).clamp(4, 16);
    actors.push(Box::new(AgenticHarvest::new(
        rng(),
        "agentic-1".into(),
        start,
        agentic,
    )));
    let multilingual = (n / 250).clamp(8, 24);
    actors.push(Box::new(MultilingualHarvest::new(
        rng(),
        "multilingual-1".into(),
        start,
        multilingual,
    )));
    used += logprob + agentic + multilingual;
    let share = |fraction: f64| ((f64::from(remaining) * fraction) as u32).max(2);
    // Evaluation labs are few among API customers; one per ~330 accounts, at least one.
    for _ in 0..((f64::from(remaining) * 0.003) as u32).max(1) {
        actors.push(Box::new(EvalLab::new(rng(), start)));
        used += 1;
    }
    for _ in 0..share(0.02) {
        actors.push(Box::new(PowerStudent::new(rng(), start)));
        used += 1;
    }
    for _ in 0..share(0.02) {
        actors.push(Box::new(CodingAgent::new(rng(), start)));
        used += 1;
    }
    for _ in 0..share(0.04) {
        actors.push(Box::new(MultilingualChat::new(rng(), start)));
        used += 1;
    }
    used
}

/// The burner-account operator and its look-alikes (a hackathon, developers on a trial), on
/// random streams of their own so that every other actor draws what it drew before they
/// existed. Returns the accounts they hold (every burner the operator will create in the run).
fn burners_and_look_alikes(
    scenario: &Scenario,
    remaining: u32,
    actors: &mut Vec<Box<dyn Actor>>,
) -> u32 {
    let (n, start, end) = (
        scenario.accounts,
        scenario.start.epoch_ms(),
        scenario.end_ms(),
    );
    let own = |k: u64| stream(scenario.seed, 2 << 40 | k);
    let slots = (n / 1_000 + 1).clamp(2, 8);
    let burners = BurnerAccounts::new(
        own(0),
        "burner-1".into(),
        start,
        end,
        &BurnerPlan::public(slots),
    );
    let mut used = burners.accounts();
    actors.push(Box::new(burners));
    let mut plan_rng = own(1);
    for event in 0..(n / 1_000).max(1) {
        let hackers = range_u32(&mut plan_rng, 20, 60).min(remaining / 10 + 3);
        actors.push(Box::new(Hackathon::new(
            own(10 + u64::from(event)),
            start,
            hackers,
        )));
        used += hackers;
    }
    for k in 0..((f64::from(remaining) * 0.01) as u32).max(2) {
        actors.push(Box::new(TrialDeveloper::new(
            own(1_000 + u64::from(k)),
            start,
            end,
        )));
        used += 1;
    }
    used
}

/// Generates the scenario and hands every event to `sink`, ordered by log position: timestamp
/// order except for a bounded share logged up to `disorder_ms` late.
pub fn simulate<E>(
    scenario: &Scenario,
    book: &PromptBook,
    mut sink: impl FnMut(&ApiEvent) -> Result<(), E>,
) -> Result<SimulationSummary, E>
where
    E: From<SimError>,
{
    scenario.validate()?;
    let mut actors = build_actors(scenario);
    let start = scenario.start.epoch_ms();
    let end = scenario.end_ms();
    let release_at = scenario.release_at_ms();
    let mut disorder = stream(scenario.seed, u64::MAX);
    let mut pending: Vec<(i64, ApiEvent)> = Vec::new();
    let mut buffer = Vec::new();
    let mut counts: HashMap<String, (u64, i64, i64)> = HashMap::new();
    let mut total = 0u64;
    let mut flush = |pending: &mut Vec<(i64, ApiEvent)>, below: i64| -> Result<(), E> {
        pending.sort_by_key(|(key, event)| (*key, event.timestamp));
        let cut = pending.partition_point(|(key, _)| *key < below);
        for (_, event) in pending.drain(..cut) {
            let ts = event.timestamp.epoch_ms();
            let entry = counts
                .entry(event.account_id.to_string())
                .or_insert((0, ts, ts));
            entry.0 += 1;
            entry.1 = entry.1.min(ts);
            entry.2 = entry.2.max(ts);
            total += 1;
            sink(&event)?;
        }
        Ok(())
    };
    // One extra local day: people east of UTC start their last local day before the run ends.
    for day in 0..=i64::from(scenario.days) {
        let ctx = Ctx {
            book,
            day_start: start + day * DAY,
            sim_start: start,
            sim_end: end,
            release_at,
            volume: scenario.volume,
        };
        for actor in &mut actors {
            actor.day(&ctx, &mut buffer);
            for event in buffer.drain(..) {
                let ts = event.timestamp.epoch_ms();
                let key = if chance(&mut disorder, scenario.disorder_fraction) {
                    ts + disorder.gen_range(0..scenario.disorder_ms.max(1))
                } else {
                    ts
                };
                pending.push((key, event));
            }
        }
        // Nothing generated for a later day can be earlier than its start minus the largest
        // time-zone lead, so everything before that is final.
        flush(&mut pending, ctx.day_start + DAY - MAX_TZ_AHEAD_MS)?;
    }
    flush(&mut pending, i64::MAX)?;

    let mut labels = Labels::new();
    let mut campaigns: BTreeMap<String, CampaignSummary> = BTreeMap::new();
    for actor in &actors {
        for (account, label) in actor.members() {
            let Some(&(events, first, last)) = counts.get(&account) else {
                continue;
            };
            if let Some(campaign) = &label.campaign {
                let summary = campaigns
                    .entry(campaign.clone())
                    .or_insert(CampaignSummary {
                        archetype: label.archetype.clone(),
                        accounts: 0,
                        events: 0,
                        first_event: None,
                        last_event: None,
                    });
                summary.accounts += 1;
                summary.events += events;
                let (first, last) = (
                    EventTime::from_epoch_ms(first).ok(),
                    EventTime::from_epoch_ms(last).ok(),
                );
                summary.first_event = match (summary.first_event, first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                summary.last_event = summary.last_event.max(last);
            }
            labels.insert(account, label);
        }
    }
    Ok(SimulationSummary {
        events: total,
        labels,
        campaigns,
        release_at: EventTime::from_epoch_ms(release_at).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
