//! The million-account scenario shared by `memory_1m` (state held) and `engine_1m` (speed with
//! the service's threads): ordinary accounts visited a few times each in a scrambled order,
//! passes 8 hours of event time apart, and hydra campaigns sending 1 % of the events.

use std::net::IpAddr;

use distillguard_core::engine::{EngineConfig, LinkConfig};
use distillguard_core::event::{AccountId, ApiEvent, ModelName};
use distillguard_core::time::EventTime;

use super::Rng;

/// Hydra campaigns (of `Campaigns::default().members` accounts each) among the accounts.
pub const CAMPAIGNS: usize = 100;
/// Share of events the campaigns send, per mille.
const CAMPAIGN_SHARE_PERMILLE: u64 = 10;

/// A count from the environment (`1_000_000` or `1000000`), else `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The engine's configuration in the scenario: evidence samples off, as in `state_size`.
pub fn config(linking: bool) -> EngineConfig {
    EngineConfig {
        sample_prompts: 0,
        linking: LinkConfig {
            enabled: linking,
            ..LinkConfig::default()
        },
        ..EngineConfig::default()
    }
}

/// The scenario's events in time order, generated on demand.
pub struct Scenario {
    ordinary: usize,
    per_account: usize,
    hydras: usize,
    members: usize,
    stride: usize,
    spacing: i64,
    models: [ModelName; 3],
    rng: Rng,
    side: Rng,
    pass: usize,
    j: usize,
    t: i64,
}

impl Scenario {
    pub fn new(accounts: usize, per_account: usize) -> Self {
        let members = super::Campaigns::default().members;
        let hydras = CAMPAIGNS * members;
        assert!(accounts > hydras, "too few accounts");
        let ordinary = accounts - hydras;
        // Each pass visits every ordinary account once, in a scrambled order; passes are 8 hours
        // of event time apart in total, so the run spans per_account × 8 hours.
        let mut stride = 7_919;
        while gcd(stride, ordinary) != 1 {
            stride += 1;
        }
        Self {
            ordinary,
            per_account: per_account.max(1),
            hydras,
            members,
            stride,
            spacing: (8 * EventTime::HOUR / ordinary as i64).max(1),
            models: [
                ModelName::parse("gpt-4o").unwrap(),
                ModelName::parse("gpt-4o-mini").unwrap(),
                ModelName::parse("claude-sonnet").unwrap(),
            ],
            rng: Rng::new(2_024),
            side: Rng::new(4_048),
            pass: 0,
            j: 0,
            t: super::START_MS,
        }
    }

    /// The event time the scenario starts at.
    pub fn start_ms() -> i64 {
        super::START_MS
    }

    /// Appends up to `n` more events (one ordinary account's event, sometimes followed by a
    /// campaign member's); false once the scenario is over.
    pub fn fill(&mut self, out: &mut Vec<ApiEvent>, n: usize) -> bool {
        let goal = out.len() + n;
        while out.len() < goal {
            if self.pass == self.per_account {
                return false;
            }
            self.t += self.spacing;
            let index = (self.j * self.stride + self.pass * 13) % self.ordinary;
            out.push(account_event(&mut self.rng, index, self.t, &self.models));
            if self.side.below(1_000) < CAMPAIGN_SHARE_PERMILLE {
                let member = self.side.below(self.hydras as u64) as usize;
                let (campaign, slot) = (member / self.members, member % self.members);
                out.push(super::campaign_event(
                    &mut self.side,
                    campaign,
                    slot,
                    self.t,
                ));
            }
            self.j += 1;
            if self.j == self.ordinary {
                self.j = 0;
                self.pass += 1;
            }
        }
        self.pass < self.per_account
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// An ordinary account's event: chat, app or harvester shapes as in `common::events`, its own
/// client address in 10.0.0.0/8 (so a /24 holds ~15 accounts at a million), one of 40 SDK
/// versions, and its card and creation time from `super::identity`.
fn account_event(rng: &mut Rng, index: usize, t: i64, models: &[ModelName; 3]) -> ApiEvent {
    let mut event = ApiEvent::new(
        EventTime::from_epoch_ms(t).unwrap(),
        AccountId::parse(format!("acct-{index:07}")).unwrap(),
        models[index % 3].clone(),
    );
    let mut prompt = String::with_capacity(320);
    match index % 20 {
        0 => {
            let words = 22 + rng.below(25) as usize;
            super::sentence(rng, words, &mut prompt);
            prompt.push_str(" Explain your reasoning step by step.");
            event.messages = Some(1);
            event.params.max_tokens = Some(4_096);
        }
        1..=3 => {
            prompt.push_str("Summarise the following support ticket for the on-call engineer: ");
            let words = 15 + rng.below(20) as usize;
            super::sentence(rng, words, &mut prompt);
            event.system_prompt = Some("You are a concise support assistant for Acme Corp.".into());
            event.messages = Some(2);
        }
        _ => {
            let words = 20 + rng.below(25) as usize;
            super::sentence(rng, words, &mut prompt);
            event.messages = Some(1 + 2 * rng.below(3) as u32);
        }
    }
    event.usage.prompt_tokens = Some((prompt.len() / 4) as u32);
    event.usage.completion_tokens = Some(50 + rng.below(900) as u32);
    let h = Rng::new(index as u64 ^ 0x1f_5eed).next();
    event.client_ip = Some(IpAddr::from([
        10,
        (h >> 8) as u8,
        (h >> 16) as u8,
        (h >> 24) as u8,
    ]));
    event.user_agent = Some(format!("OpenAI/Python 1.{}.0", index % 40).into());
    event.prompt = Some(prompt);
    super::identity(index, &mut event);
    event
}
