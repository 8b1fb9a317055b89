//! Actors: one benign customer or one attack campaign, each owning its accounts and its own
//! random stream, asked for one UTC day of traffic at a time.

pub(crate) mod attack;
pub(crate) mod benign;
pub(crate) mod burner;
pub(crate) mod harvest;
mod human;
pub(crate) mod pool;
pub(crate) mod services;
pub(crate) mod traps;

use std::net::IpAddr;

use distillguard_core::event::{AccountId, ApiEvent, ModelName, Params, Usage};
use distillguard_core::time::EventTime;

use crate::dist::{chance, hex, lognormal, pick, SimRng};
use crate::labels::Label;
use crate::prompts::PromptBook;

pub(crate) use human::{Human, Turn};

pub(crate) const MODEL_MAIN: &str = "atlas-3";
pub(crate) const MODEL_MINI: &str = "atlas-3-mini";
pub(crate) const MODEL_REASONING: &str = "atlas-3-reasoning";
/// Released mid-run (see `Scenario::release_after_ms`).
pub(crate) const MODEL_NEW: &str = "atlas-4";

pub(crate) const ENDPOINT: &str = "/v1/chat/completions";

/// What every actor sees for the day it is asked to produce.
pub(crate) struct Ctx<'a> {
    pub book: &'a PromptBook,
    pub day_start: i64,
    pub sim_start: i64,
    pub sim_end: i64,
    pub release_at: i64,
    pub volume: f64,
}

pub(crate) trait Actor {
    /// The accounts this actor bills to, with their ground-truth labels.
    fn members(&self) -> Vec<(String, Label)>;
    /// Appends this actor's events for the UTC day starting at `ctx.day_start`. Events may spill
    /// up to `MAX_TZ_AHEAD_MS` before it or into the next day, never further.
    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>);
}

/// A billed customer account.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub id: AccountId,
    pub created_at: i64,
    pub payment: String,
    pub keys: Vec<String>,
}

impl Account {
    pub(crate) fn new(rng: &mut SimRng, created_at: i64, payment: String) -> Self {
        let id = AccountId::parse(format!("acct_{}", hex(rng, 12)))
            .expect("`acct_` plus 12 hex digits is a valid account id");
        let keys = (0..if chance(rng, 0.3) { 2 } else { 1 })
            .map(|_| format!("key_{}", hex(rng, 10)))
            .collect();
        Self {
            id,
            created_at,
            payment,
            keys,
        }
    }
}

/// The accounts of one campaign, each under the campaign's attack label.
pub(crate) fn campaign_members<'a>(
    accounts: impl IntoIterator<Item = &'a Account>,
    archetype: &str,
    campaign: &str,
) -> Vec<(String, Label)> {
    accounts
        .into_iter()
        .map(|a| (a.id.to_string(), Label::attack(archetype, campaign)))
        .collect()
}

pub(crate) fn payment(rng: &mut SimRng) -> String {
    format!("pm_{}", hex(rng, 16))
}

/// One request before it becomes an event.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub at: i64,
    pub model: &'static str,
    pub prompt: String,
    pub system: Option<String>,
    pub messages: u32,
    /// Tokens of earlier turns re-sent with this request.
    pub history_tokens: u32,
    pub params: Params,
    /// Completion tokens per choice the model would write if not capped.
    pub completion: u32,
    pub reasoning: u32,
    pub end_user: Option<String>,
    pub ip: IpAddr,
    pub ua: String,
    pub key: usize,
    /// Probability that the call fails (rate limit, server error, bad request).
    pub error_rate: f64,
}

impl Call {
    pub(crate) fn new(at: i64, model: &'static str, prompt: String, ip: IpAddr, ua: &str) -> Self {
        Self {
            at,
            model,
            prompt,
            system: None,
            messages: 1,
            history_tokens: 0,
            params: Params::default(),
            completion: 200,
            reasoning: 0,
            end_user: None,
            ip,
            ua: ua.to_string(),
            key: 0,
            error_rate: 0.003,
        }
    }
}

fn tokens_of(text: &str) -> u32 {
    (text.len() as u32).div_ceil(4).max(1)
}

/// Turns a call into the canonical event, dropping calls outside the run or before the account
/// existed.
pub(crate) fn emit(
    out: &mut Vec<ApiEvent>,
    rng: &mut SimRng,
    account: &Account,
    call: Call,
    ctx: &Ctx,
) {
    if call.at < ctx.sim_start || call.at >= ctx.sim_end || call.at < account.created_at {
        return;
    }
    let (Ok(timestamp), Ok(model)) = (
        EventTime::from_epoch_ms(call.at),
        ModelName::parse(call.model),
    ) else {
        return;
    };
    let mut event = ApiEvent::new(timestamp, account.id.clone(), model);
    event.request_id = Some(format!("chatcmpl-{}", hex(rng, 24)));
    event.api_key_id = Some(account.keys[call.key % account.keys.len()].as_str().into());
    event.end_user = call.end_user.map(Into::into);
    event.client_ip = Some(call.ip);
    event.user_agent = Some(call.ua.into());
    event.endpoint = Some(ENDPOINT.into());
    let system_tokens = call.system.as_deref().map_or(0, tokens_of);
    let prompt_tokens =
        tokens_of(&call.prompt) + system_tokens + call.history_tokens + 4 * call.messages;
    let status = if chance(rng, call.error_rate) {
        *pick(rng, &[429, 429, 429, 500, 503, 400])
    } else {
        200
    };
    let choices = call.params.n.unwrap_or(1).max(1);
    let cap = call.params.max_tokens.unwrap_or(u32::MAX);
    let (completion, reasoning) = if status == 200 {
        let reasoning = if call.model == MODEL_REASONING || call.model == MODEL_NEW {
            call.reasoning
        } else {
            0
        };
        (
            call.completion.clamp(1, cap.max(1)) * choices,
            reasoning * choices,
        )
    } else {
        (0, 0)
    };
    event.usage = Usage {
        prompt_tokens: Some(prompt_tokens),
        completion_tokens: Some(completion),
        reasoning_tokens: (reasoning > 0).then_some(reasoning),
        cached_tokens: (call.history_tokens >= 1_024).then_some(call.history_tokens / 128 * 128),
    };
    let per_token_ms = if call.model == MODEL_MINI { 6.0 } else { 14.0 };
    let latency = if status == 200 {
        lognormal(rng, 350.0, 0.4)
            + per_token_ms * f64::from(completion / choices + reasoning / choices)
    } else {
        lognormal(rng, 80.0, 0.5)
    };
    event.latency_ms = Some(latency.round() as u64);
    event.status = Some(status);
    event.payment_fingerprint = Some(account.payment.as_str().into());
    event.account_created_at = EventTime::from_epoch_ms(account.created_at).ok();
    event.prompt = Some(call.prompt);
    event.system_prompt = call.system;
    event.messages = Some(call.messages + u32::from(event.system_prompt.is_some()));
    event.params = call.params;
    out.push(event);
}

/// Model choice for a benign caller that may adopt the new model some time after release.
pub(crate) fn adopted_model(
    ctx: &Ctx,
    at: i64,
    adopt_after: Option<i64>,
    share: f64,
    rng: &mut SimRng,
    default: &'static str,
) -> &'static str {
    match adopt_after {
        Some(delay) if at >= ctx.release_at + delay && chance(rng, share) => MODEL_NEW,
        _ => default,
    }
}
