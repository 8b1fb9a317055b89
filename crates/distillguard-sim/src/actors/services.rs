//! Benign services: software calling the API on behalf of a business. High volume, templates,
//! datacenter addresses, night-time bursts, logprobs, new-model benchmarks: every one of them
//! looks like an attack on some axis.

use std::net::IpAddr;

use distillguard_core::event::{ApiEvent, Params};
use rand::Rng;

use super::benign::created_long_ago;
use super::{adopted_model, emit, payment, Account, Actor, Call, Ctx};
use super::{MODEL_MAIN, MODEL_MINI, MODEL_NEW, MODEL_REASONING};
use crate::dist::{
    chance, exp_gap, lognormal, pick, poisson, range_i64, range_u32, uniform, SimRng,
};
use crate::labels::Label;
use crate::net;
use crate::prompts::{BatchKind, PromptBook};
use crate::timing::{is_weekend, local_hour, random_zone, Diurnal, DAY, HOUR, MINUTE};
use crate::words::{BRANDS, CITIES_SQL, PLACES, SUPPORT_INTENTS};

#[derive(Debug, Clone, Copy)]
enum AppKind {
    Support,
    ReviewSummary,
    MathTutor,
    SqlHelper,
    Itinerary,
    /// A homework helper: broad school topics with a chain-of-thought system prompt, the benign
    /// twin of a reasoning harvest (told apart by its many end users and multi-turn chats).
    StudyHelper,
}

/// A product built on the API: one template, narrow topics, many end users, a few datacenter
/// IPs, round the clock with its users' daily rhythm.
pub(crate) struct ProductionApp {
    rng: SimRng,
    account: Account,
    kind: AppKind,
    brand: &'static str,
    system: Option<String>,
    ips: Vec<IpAddr>,
    ua: String,
    tz: i32,
    daily: f64,
    users: u32,
    model: &'static str,
    params: Params,
    switch_after: Option<i64>,
}

impl ProductionApp {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let kind = *pick(
            &mut rng,
            &[
                AppKind::Support,
                AppKind::Support,
                AppKind::ReviewSummary,
                AppKind::MathTutor,
                AppKind::SqlHelper,
                AppKind::Itinerary,
                AppKind::StudyHelper,
            ],
        );
        let brand = *pick(&mut rng, BRANDS);
        let system = match kind {
            AppKind::Support => Some(format!("You are the virtual assistant for {brand}. Answer only questions about {brand} accounts, billing and service. Be concise and friendly. If you are unsure, offer to connect the customer to a human agent.")),
            AppKind::ReviewSummary => None,
            AppKind::MathTutor => Some("You are a patient math tutor for middle-school students. Explain step by step, show your reasoning for every step, and check the student's understanding.".to_string()),
            AppKind::SqlHelper => Some("Translate the user's question into a single PostgreSQL query for the schema orders(id, customer_id, total, created_at, city), customers(id, name, signup_date). Return SQL only.".to_string()),
            AppKind::Itinerary => Some("You are TripMate, a travel planning assistant. Produce day-by-day itineraries with times, neighbourhoods and budget notes.".to_string()),
            AppKind::StudyHelper => Some(format!("You are {brand} StudyBuddy, a tutor for high-school and college students. Think step by step and show your complete reasoning before giving the final answer, so the student can follow every step.")),
        };
        let provider = rng.gen_range(0..net::PROVIDERS);
        let ips = (0..range_u32(&mut rng, 2, 6))
            .map(|_| net::datacenter_v4(&mut rng, provider))
            .collect();
        let ua = if chance(&mut rng, 0.6) {
            net::sdk_agent(&mut rng)
        } else {
            net::custom_agent(&mut rng)
        };
        let tz = random_zone(&mut rng);
        let daily = lognormal(&mut rng, 1_800.0, 0.8).clamp(200.0, 20_000.0);
        let users = (daily * uniform(&mut rng, 0.3, 3.0)) as u32 + 20;
        let model = if chance(&mut rng, 0.6) {
            MODEL_MINI
        } else {
            MODEL_MAIN
        };
        let params = Params {
            temperature: Some(*pick(&mut rng, &[0.0, 0.2, 0.3, 0.5, 0.7])),
            max_tokens: Some(*pick(&mut rng, &[150, 256, 512, 800, 1_024])),
            stream: Some(matches!(kind, AppKind::Support | AppKind::MathTutor)),
            logprobs: (matches!(kind, AppKind::ReviewSummary) && chance(&mut rng, 0.5))
                .then_some(true),
            top_logprobs: None,
            ..Params::default()
        };
        let switch_after =
            chance(&mut rng, 0.15).then(|| range_i64(&mut rng, 12 * HOUR, 60 * HOUR));
        let mut app = Self {
            rng,
            account,
            kind,
            brand,
            system,
            ips,
            ua,
            tz,
            daily,
            users,
            model,
            params,
            switch_after,
        };
        if app.params.logprobs.is_some() {
            app.params.top_logprobs = Some(3);
        }
        app
    }

    fn prompt(&mut self, book: &PromptBook) -> (String, u32, u32) {
        let rng = &mut self.rng;
        match self.kind {
            AppKind::Support => {
                let intent = pick(rng, SUPPORT_INTENTS);
                let text = match rng.gen_range(0..4) {
                    0 => intent.to_string(),
                    1 => format!("hi, {intent}?"),
                    2 => format!("{intent} pls"),
                    _ => format!(
                        "I need help: {intent}. account ending {:04}",
                        rng.gen_range(0..10_000)
                    ),
                };
                let turns = 1 + 2 * poisson(rng, 0.6).min(3);
                (text, turns, lognormal(rng, 90.0, 0.5) as u32)
            }
            AppKind::ReviewSummary => {
                let doc = self.book_review();
                (format!("Summarize this customer review in one sentence and label its sentiment (positive/negative/mixed):\n\n{doc}"), 1, lognormal(&mut self.rng, 35.0, 0.3) as u32)
            }
            AppKind::MathTutor => {
                let (a, b, c) = (
                    rng.gen_range(2..20),
                    rng.gen_range(1..50),
                    rng.gen_range(1..200),
                );
                let text = match rng.gen_range(0..3) {
                    0 => format!("how do i solve {a}x + {b} = {c}"),
                    1 => format!("what is {a}% of {c}"),
                    _ => format!("simplify {b}/{c}"),
                };
                (
                    text,
                    1 + 2 * poisson(rng, 0.5).min(2),
                    lognormal(rng, 260.0, 0.4) as u32,
                )
            }
            AppKind::SqlHelper => {
                let text = format!(
                    "{} in {} over the last {} days",
                    pick(
                        rng,
                        &[
                            "total sales",
                            "number of new customers",
                            "average order value",
                            "top 10 customers by spend"
                        ]
                    ),
                    pick(rng, CITIES_SQL),
                    pick(rng, &[7, 14, 30, 90])
                );
                (text, 1, lognormal(rng, 70.0, 0.3) as u32)
            }
            AppKind::StudyHelper => {
                let text = book.study_question(rng);
                (
                    text,
                    1 + 2 * poisson(rng, 0.9).min(4),
                    lognormal(rng, 480.0, 0.5) as u32,
                )
            }
            AppKind::Itinerary => {
                let text = format!(
                    "{} days in {} for {}, interests: {}",
                    rng.gen_range(2..8),
                    pick(rng, PLACES),
                    pick(
                        rng,
                        &[
                            "a couple",
                            "a family with kids",
                            "a solo traveller",
                            "friends"
                        ]
                    ),
                    pick(rng, &["food", "museums", "hiking", "nightlife", "beaches"])
                );
                (text, 1, lognormal(rng, 650.0, 0.3) as u32)
            }
        }
    }

    fn book_review(&mut self) -> String {
        let rng = &mut self.rng;
        format!(
            "{} {} {}",
            pick(rng, crate::words::PRODUCTS),
            pick(rng, crate::words::REVIEW_BITS),
            pick(rng, crate::words::REVIEW_BITS)
        )
    }
}

impl Actor for ProductionApp {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("production_app"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let weekend = if is_weekend(ctx.day_start) { 0.8 } else { 1.0 };
        let per_hour =
            self.daily * ctx.volume * weekend * lognormal(&mut self.rng, 1.0, 0.15) / 24.0;
        for hour in 0..24 {
            let hour_start = ctx.day_start + hour * HOUR;
            // The app's users sleep too, but the app as a whole never stops.
            let level = 0.35 + 0.65 * Diurnal::Evening.level(local_hour(hour_start, self.tz));
            let count = poisson(&mut self.rng, per_hour * level);
            let mut times: Vec<i64> = (0..count)
                .map(|_| hour_start + self.rng.gen_range(0..HOUR))
                .collect();
            times.sort_unstable();
            for at in times {
                let (prompt, messages, completion) = self.prompt(ctx.book);
                let rng = &mut self.rng;
                let ip = *pick(rng, &self.ips);
                let model = adopted_model(ctx, at, self.switch_after, 1.0, rng, self.model);
                let mut call = Call::new(at, model, prompt, ip, &self.ua);
                call.system = self.system.clone();
                call.messages = messages;
                call.history_tokens = (messages - 1) * 60;
                call.completion = completion.max(1);
                call.params = self.params.clone();
                let user = (f64::from(self.users) * rng.gen::<f64>().powi(2)) as u32;
                call.end_user = Some(format!(
                    "{}-user-{user}",
                    self.brand.split(' ').next().unwrap_or("app").to_lowercase()
                ));
                emit(out, rng, &self.account, call, ctx);
            }
        }
    }
}

/// Templated classification / extraction over the customer's own documents, in large
/// scheduled bursts, often at night.
pub(crate) struct BatchJob {
    rng: SimRng,
    account: Account,
    kind: BatchKind,
    hour: i64,
    items: f64,
    per_second: f64,
    ips: Vec<IpAddr>,
    ua: String,
    run_probability: f64,
}

impl BatchJob {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let kind = *pick(
            &mut rng,
            &[BatchKind::Sentiment, BatchKind::Invoice, BatchKind::Routing],
        );
        let provider = rng.gen_range(0..net::PROVIDERS);
        let ips = (0..range_u32(&mut rng, 1, 2))
            .map(|_| net::datacenter_v4(&mut rng, provider))
            .collect();
        let ua = if chance(&mut rng, 0.5) {
            net::sdk_agent(&mut rng)
        } else {
            pick(&mut rng, net::HTTP_LIBRARIES).to_string()
        };
        Self {
            kind,
            hour: *pick(&mut rng, &[0, 1, 2, 2, 3, 4, 6, 13, 22]),
            items: lognormal(&mut rng, 1_200.0, 0.7).clamp(100.0, 8_000.0),
            per_second: uniform(&mut rng, 2.0, 12.0),
            ips,
            ua,
            run_probability: uniform(&mut rng, 0.5, 1.0),
            rng,
            account,
        }
    }
}

impl Actor for BatchJob {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("batch_job"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        let weekday_factor = if is_weekend(ctx.day_start) { 0.4 } else { 1.0 };
        if !chance(rng, self.run_probability * weekday_factor) {
            return;
        }
        let count = (self.items * ctx.volume * lognormal(rng, 1.0, 0.3)) as u32;
        let mut at = (ctx.day_start + self.hour * HOUR + rng.gen_range(0..10 * MINUTE)) as f64;
        let ip = *pick(rng, &self.ips);
        for _ in 0..count {
            at += exp_gap(rng, self.per_second / 1_000.0);
            let doc = ctx.book.customer_document(rng, self.kind);
            let (prompt, max_tokens, completion) = match self.kind {
                BatchKind::Sentiment => (format!("Classify the sentiment of the following review as positive, negative or neutral. Reply with one word.\n\nReview: {doc}"), 5, 1),
                BatchKind::Invoice => (format!("Extract invoice_number, date, vendor and total from the document below. Reply with JSON only.\n\n{doc}"), 150, lognormal(rng, 60.0, 0.2) as u32),
                BatchKind::Routing => (format!("Route this support ticket to one of: billing, technical, shipping, account. Reply with the category only.\n\n{doc}"), 5, 2),
            };
            let mut call = Call::new(at as i64, MODEL_MINI, prompt, ip, &self.ua);
            call.completion = completion;
            call.error_rate = 0.01;
            call.params = Params {
                temperature: Some(0.0),
                max_tokens: Some(max_tokens),
                stream: Some(false),
                ..Params::default()
            };
            emit(out, rng, &self.account, call, ctx);
        }
    }
}

/// An evaluation harness: a fixed question set sent in a templated burst at temperature 0, and
/// the same set re-run later (often against a newly released model).
pub(crate) struct BenchmarkRunner {
    rng: SimRng,
    account: Account,
    size: u32,
    questions: Vec<String>,
    runs: Vec<(i64, &'static str)>,
    per_second: f64,
    ip: IpAddr,
    ua: String,
    params: Params,
}

impl BenchmarkRunner {
    pub(crate) fn new(mut rng: SimRng, start: i64, end: i64, release_at: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let span = (end - start).max(HOUR);
        let first = start + range_i64(&mut rng, 0, span * 8 / 10);
        let mut runs = vec![(
            first,
            *pick(&mut rng, &[MODEL_MAIN, MODEL_MINI, MODEL_REASONING]),
        )];
        if chance(&mut rng, 0.6) {
            let again = if release_at < end && chance(&mut rng, 0.6) {
                (
                    release_at + range_i64(&mut rng, 30 * MINUTE, 6 * HOUR),
                    MODEL_NEW,
                )
            } else {
                (first + range_i64(&mut rng, 2 * HOUR, 20 * HOUR), runs[0].1)
            };
            runs.push(again);
        }
        let provider = rng.gen_range(0..net::PROVIDERS);
        let logprobs = chance(&mut rng, 0.4);
        Self {
            size: range_u32(&mut rng, 150, 1_500),
            questions: Vec::new(),
            runs,
            per_second: uniform(&mut rng, 1.5, 8.0),
            ip: net::datacenter_v4(&mut rng, provider),
            ua: pick(&mut rng, net::EVAL_AGENTS).to_string(),
            params: Params {
                temperature: Some(0.0),
                max_tokens: Some(*pick(&mut rng, &[1, 5, 16])),
                logprobs: logprobs.then_some(true),
                top_logprobs: logprobs.then_some(5),
                seed: chance(&mut rng, 0.5).then_some(1_234),
                stream: Some(false),
                ..Params::default()
            },
            rng,
            account,
        }
    }
}

impl Actor for BenchmarkRunner {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(
            self.account.id.to_string(),
            Label::benign("benchmark_runner"),
        )]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let day_runs: Vec<(i64, &'static str)> = self
            .runs
            .iter()
            .copied()
            .filter(|(at, _)| (ctx.day_start..ctx.day_start + DAY).contains(at))
            .collect();
        for (start, model) in day_runs {
            if self.questions.is_empty() {
                self.questions = (0..self.size)
                    .map(|_| ctx.book.benchmark_question(&mut self.rng))
                    .collect();
            }
            let mut at = start as f64;
            for question in &self.questions {
                at += exp_gap(&mut self.rng, self.per_second / 1_000.0);
                let mut call = Call::new(at as i64, model, question.clone(), self.ip, &self.ua);
                call.completion = 1;
                call.params = self.params.clone();
                call.reasoning = if model == MODEL_REASONING { 300 } else { 0 };
                emit(out, &mut self.rng, &self.account, call, ctx);
            }
        }
    }
}
