//! Issue 13: the harvests that hide from per-account signals, and the users they resemble.
//!
//! Attacks: a logprob harvest (tiny outputs, the widest `top_logprobs`), an agentic harvest
//! (agent sessions, each opening an unrelated task) and a multilingual harvest (reasoning
//! coercion in eight languages). Look-alikes: an eval lab (fixed chain-of-thought question sets
//! re-run across models, long outputs), a power student (step-by-step homework bursts a few
//! evenings a week), a coding agent (long agent sessions in one repository all day) and people
//! chatting in those eight languages. Each is built from the behaviour public reports describe
//! (`docs/simulator.md`), not from what the detectors measure.

use std::net::IpAddr;

use distillguard_core::event::{ApiEvent, Params};
use rand::Rng;

use super::attack::scripted_times;
use super::benign::created_long_ago;
use super::human::AGENT_SYSTEM_PROMPT;
use super::{campaign_members, emit, payment, Account, Actor, Call, Ctx, Human};
use super::{MODEL_MAIN, MODEL_MINI, MODEL_NEW, MODEL_REASONING};
use crate::dist::{chance, exp_gap, lognormal, pick, range_i64, range_u32, uniform, SimRng};
use crate::labels::Label;
use crate::net;
use crate::prompts::{PromptBook, TaskFeed};
use crate::timing::{random_zone, Diurnal, DAY, HOUR, MINUTE};

fn new_account(rng: &mut SimRng, start: i64) -> Account {
    let created = start - range_i64(rng, 3 * DAY, 90 * DAY);
    let pay = payment(rng);
    Account::new(rng, created, pay)
}

fn cloud_ips(rng: &mut SimRng) -> Vec<IpAddr> {
    let provider = rng.gen_range(0..net::PROVIDERS);
    (0..range_u32(rng, 1, 3))
        .map(|_| net::datacenter_v4(rng, provider))
        .collect()
}

/// Logit harvest as the published attacks on production models run it (Carlini et al.,
/// Finlayson et al.): broad single-turn inputs, `max_tokens` of one to five, the widest
/// `top_logprobs` the API allows (20), temperature 0, a few thousand requests a day per account.
pub(crate) struct LogprobHarvest {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Vec<IpAddr>, f64, Params)>,
    feed: TaskFeed,
    ua: String,
}

impl LogprobHarvest {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, size: u32) -> Self {
        let accounts = (0..size)
            .map(|i| {
                let account = new_account(&mut rng, start);
                let ips = cloud_ips(&mut rng);
                let daily = lognormal(&mut rng, 2_500.0, 0.4).clamp(800.0, 8_000.0);
                // One account in three samples twenty one-token answers instead.
                let params = if i % 3 == 2 {
                    Params {
                        n: Some(20),
                        max_tokens: Some(1),
                        temperature: Some(1.0),
                        ..Params::default()
                    }
                } else {
                    Params {
                        logprobs: Some(true),
                        top_logprobs: Some(20),
                        max_tokens: Some(range_u32(&mut rng, 1, 5)),
                        temperature: Some(0.0),
                        ..Params::default()
                    }
                };
                (account, ips, daily, params)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        let ua = pick(&mut rng, &["python-httpx/0.27.2", net::POPULAR_SDK]).to_string();
        Self {
            rng,
            campaign,
            accounts,
            feed,
            ua,
        }
    }
}

impl Actor for LogprobHarvest {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.accounts.iter().map(|(a, ..)| a);
        campaign_members(accounts, "logprob_harvest", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, ips, daily, params) in &self.accounts {
            for at in scripted_times(rng, ctx.day_start, ctx.sim_start, daily * ctx.volume) {
                let prompt = ctx.book.attack_task(rng, &mut self.feed);
                let model = *pick(rng, &[MODEL_MAIN, MODEL_MAIN, MODEL_MINI]);
                let mut call = Call::new(at, model, prompt, *pick(rng, ips), &self.ua);
                call.completion = range_u32(rng, 1, 5);
                call.params = params.clone();
                emit(out, rng, account, call, ctx);
            }
        }
    }
}

/// Agent-trace harvesting: round the clock, each session opens an unrelated task (a generic
/// agent goal or a task from the campaign's list), then runs 6 to 60 tool rounds seconds apart.
/// Half the accounts' gateways log the task again with every round (tool results travel as
/// `tool` messages), half the tool output's first line.
pub(crate) struct AgenticHarvest {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Vec<IpAddr>, f64, bool)>,
    feed: TaskFeed,
}

impl AgenticHarvest {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, size: u32) -> Self {
        let accounts = (0..size)
            .map(|i| {
                let account = new_account(&mut rng, start);
                let ips = cloud_ips(&mut rng);
                let sessions = lognormal(&mut rng, 60.0, 0.3).clamp(25.0, 150.0);
                (account, ips, sessions, i % 2 == 0)
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        Self {
            rng,
            campaign,
            accounts,
            feed,
        }
    }
}

impl Actor for AgenticHarvest {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.accounts.iter().map(|(a, ..)| a);
        campaign_members(accounts, "agentic_harvest", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, ips, sessions, resend_task) in &self.accounts {
            for start in scripted_times(rng, ctx.day_start, ctx.sim_start, sessions * ctx.volume) {
                let task = ctx.book.agentic_task(rng, &mut self.feed);
                let rounds = lognormal(rng, 18.0, 0.5).clamp(6.0, 60.0) as u32;
                let ip = *pick(rng, ips);
                let mut at = start;
                for round in 0..=rounds {
                    let prompt = if round == 0 || *resend_task {
                        task.clone()
                    } else {
                        tool_line(rng, round)
                    };
                    let mut call = Call::new(at, MODEL_MAIN, prompt, ip, net::POPULAR_SDK);
                    call.system = Some(AGENT_SYSTEM_PROMPT.to_string());
                    call.messages = 1 + 2 * round;
                    call.history_tokens = 2_000 + 900 * round;
                    call.completion = lognormal(rng, 350.0, 0.6).clamp(20.0, 3_000.0) as u32;
                    call.params = Params {
                        temperature: Some(0.2),
                        max_tokens: Some(8_192),
                        ..Params::default()
                    };
                    emit(out, rng, account, call, ctx);
                    at += (f64::from(call_gap(rng))) as i64;
                }
            }
        }
    }
}

/// Generation plus the tool run before the next round, in milliseconds.
fn call_gap(rng: &mut SimRng) -> u32 {
    (lognormal(rng, 6_000.0, 0.6).clamp(800.0, 90_000.0)) as u32
}

/// The first line of a tool's output, as some gateways log it for the turn that returns it.
fn tool_line(rng: &mut SimRng, round: u32) -> String {
    match rng.gen_range(0..4) {
        0 => format!(
            "Tool result (shell): exit code {}",
            pick(rng, &[0, 0, 1, 2])
        ),
        1 => format!("Tool result (read_file): {} lines", rng.gen_range(10..900)),
        2 => format!(
            "Tool result (run_tests): {} passed, {} failed",
            rng.gen_range(1..300),
            round % 4
        ),
        _ => "Tool result (apply_patch): ok".to_string(),
    }
}

/// Languages of the multilingual archetypes, with real step-by-step and show-your-reasoning
/// phrasings and a way to write an open-ended subject in that language's script.
const LANGUAGES: &[(&str, &[&str])] = &[
    (
        "zh",
        &[
            "请一步一步地解释：",
            "请逐步推理并展示你的推理过程：",
            "写出完整的思维链：",
        ],
    ),
    (
        "ja",
        &[
            "ステップバイステップで説明してください：",
            "思考過程を順を追って示してください：",
        ],
    ),
    (
        "ko",
        &[
            "단계별로 설명해 주세요: ",
            "추론 과정을 차근차근 보여 주세요: ",
        ],
    ),
    (
        "ru",
        &[
            "Объясни шаг за шагом: ",
            "Покажи ход рассуждений: ",
            "Рассуждай пошагово: ",
        ],
    ),
    (
        "es",
        &[
            "Explica paso a paso: ",
            "Muestra tu razonamiento completo: ",
        ],
    ),
    (
        "fr",
        &[
            "Explique étape par étape : ",
            "Détaille ton raisonnement : ",
        ],
    ),
    (
        "de",
        &[
            "Erkläre Schritt für Schritt: ",
            "Zeige deinen Gedankengang: ",
        ],
    ),
    (
        "pt",
        &[
            "Explique passo a passo: ",
            "Mostre seu raciocínio completo: ",
        ],
    ),
];

/// Common Chinese characters (also used in Japanese) for open-ended subjects.
const HAN: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质";
const HANGUL_FIRST: u32 = 0xAC00;

fn subject_in(rng: &mut SimRng, book: &PromptBook, feed: &mut TaskFeed, language: &str) -> String {
    match language {
        "zh" | "ja" => {
            let han: Vec<char> = HAN.chars().collect();
            (0..range_u32(rng, 8, 16))
                .map(|_| *pick(rng, &han))
                .collect()
        }
        "ko" => (0..range_u32(rng, 3, 6))
            .map(|_| {
                (0..range_u32(rng, 2, 4))
                    .filter_map(|_| char::from_u32(HANGUL_FIRST + rng.gen_range(0..2_000)))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" "),
        "ru" => cyrillic(&book.attack_task(rng, feed)),
        _ => book.attack_task(rng, feed),
    }
}

/// Latin letters carried to Cyrillic, so a subject keeps its open vocabulary in that script.
fn cyrillic(text: &str) -> String {
    const MAP: [&str; 26] = [
        "а", "б", "ц", "д", "е", "ф", "г", "х", "и", "й", "к", "л", "м", "н", "о", "п", "ку", "р",
        "с", "т", "у", "в", "в", "кс", "ы", "з",
    ];
    text.chars()
        .map(|c| {
            let lower = c.to_ascii_lowercase();
            if lower.is_ascii_lowercase() {
                MAP[(lower as u8 - b'a') as usize].to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Reasoning-trace coercion mostly in languages other than English (GTIG, Feb 2026): several
/// accounts, each in one language, single-turn, round the clock at a moderate rate, every
/// prompt demanding the reasoning, long outputs.
pub(crate) struct MultilingualHarvest {
    rng: SimRng,
    campaign: String,
    accounts: Vec<(Account, Vec<IpAddr>, f64, usize)>,
    feed: TaskFeed,
}

impl MultilingualHarvest {
    pub(crate) fn new(mut rng: SimRng, campaign: String, start: i64, size: u32) -> Self {
        let first = rng.gen_range(0..LANGUAGES.len());
        let accounts = (0..size as usize)
            .map(|i| {
                let account = new_account(&mut rng, start);
                let ips = cloud_ips(&mut rng);
                let daily = lognormal(&mut rng, 500.0, 0.3).clamp(200.0, 1_200.0);
                (account, ips, daily, (first + i) % LANGUAGES.len())
            })
            .collect();
        let feed = TaskFeed::new(&mut rng);
        Self {
            rng,
            campaign,
            accounts,
            feed,
        }
    }
}

impl Actor for MultilingualHarvest {
    fn members(&self) -> Vec<(String, Label)> {
        let accounts = self.accounts.iter().map(|(a, ..)| a);
        campaign_members(accounts, "multilingual_harvest", &self.campaign)
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        for (account, ips, daily, language) in &self.accounts {
            let (code, frames) = LANGUAGES[*language];
            for at in scripted_times(rng, ctx.day_start, ctx.sim_start, daily * ctx.volume) {
                let subject = subject_in(rng, ctx.book, &mut self.feed, code);
                let prompt = format!("{}{subject}", pick(rng, frames));
                let model = if chance(rng, 0.3) {
                    MODEL_REASONING
                } else {
                    MODEL_MAIN
                };
                let mut call = Call::new(at, model, prompt, *pick(rng, ips), net::POPULAR_SDK);
                call.completion = lognormal(rng, 900.0, 0.4) as u32;
                call.reasoning = lognormal(rng, 1_200.0, 0.5) as u32;
                call.params = Params {
                    temperature: Some(0.7),
                    max_tokens: Some(8_192),
                    ..Params::default()
                };
                emit(out, rng, account, call, ctx);
            }
        }
    }
}

/// People chatting in one of the eight languages: evening sessions, follow-ups, regenerations,
/// and now and then a step-by-step question.
pub(crate) struct MultilingualChat {
    rng: SimRng,
    account: Account,
    human: Human,
    language: usize,
    feed: TaskFeed,
}

impl MultilingualChat {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let tz = random_zone(&mut rng);
        let rate = lognormal(&mut rng, 1.6, 0.5);
        let human = Human::home(&mut rng, tz, Diurnal::Evening, rate);
        let language = rng.gen_range(0..LANGUAGES.len());
        let feed = TaskFeed::new(&mut rng);
        Self {
            rng,
            account,
            human,
            language,
            feed,
        }
    }
}

impl Actor for MultilingualChat {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(
            self.account.id.to_string(),
            Label::benign("multilingual_chat"),
        )]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        let (code, frames) = LANGUAGES[self.language];
        for start in self.human.sessions(rng, ctx) {
            let ip = self.human.session_ip(rng);
            let mut at = start;
            for _ in 0..(1 + crate::dist::poisson(rng, 0.7)).min(4) {
                let subject = subject_in(rng, ctx.book, &mut self.feed, code);
                let opener = if chance(rng, 0.15) {
                    format!("{}{subject}", pick(rng, frames))
                } else {
                    subject
                };
                let length = (1 + crate::dist::poisson(rng, 1.4)).min(8);
                let mut prompt = opener.clone();
                for turn in 0..length {
                    let mut call = Call::new(at, MODEL_MAIN, prompt.clone(), ip, &self.human.ua);
                    call.messages = 1 + 2 * turn;
                    call.completion = lognormal(rng, 250.0, 0.7).clamp(5.0, 2_000.0) as u32;
                    emit(out, rng, &self.account, call.clone(), ctx);
                    if chance(rng, 0.08) {
                        // Regenerate.
                        call.at += lognormal(rng, 12_000.0, 0.5) as i64;
                        emit(out, rng, &self.account, call, ctx);
                    }
                    at += lognormal(rng, 75_000.0, 0.8).clamp(4_000.0, 1_800_000.0) as i64;
                    prompt = follow_up_in(rng, code, &opener);
                }
                at += lognormal(rng, 5.0 * MINUTE as f64, 0.8) as i64;
            }
        }
    }
}

/// A short follow-up in the chat's language, quoting a bit of the opener.
fn follow_up_in(rng: &mut SimRng, language: &str, opener: &str) -> String {
    let quote: String = opener
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let ask = match language {
        "zh" => *pick(rng, &["能再详细一点吗？", "为什么？", "举个例子"]),
        "ja" => *pick(
            rng,
            &[
                "もう少し詳しく教えてください",
                "なぜですか？",
                "例を挙げてください",
            ],
        ),
        "ko" => *pick(
            rng,
            &["좀 더 자세히 설명해 주세요", "왜요?", "예를 들어 주세요"],
        ),
        "ru" => *pick(rng, &["А подробнее?", "Почему?", "Приведи пример"]),
        "es" => *pick(
            rng,
            &["¿Puedes dar más detalles?", "¿Por qué?", "Dame un ejemplo"],
        ),
        "fr" => *pick(
            rng,
            &["Tu peux détailler ?", "Pourquoi ?", "Donne un exemple"],
        ),
        "de" => *pick(
            rng,
            &[
                "Kannst du das genauer erklären?",
                "Warum?",
                "Gib ein Beispiel",
            ],
        ),
        _ => *pick(rng, &["Pode detalhar mais?", "Por quê?", "Dê um exemplo"]),
    };
    format!("{ask} ({quote})")
}

/// An evaluation lab: a fixed question set (200–800 questions) in a chain-of-thought harness
/// ("think step by step"), run against one model after another, a few runs a day, long
/// reasoning outputs, from the lab's cluster.
pub(crate) struct EvalLab {
    rng: SimRng,
    account: Account,
    questions: Vec<String>,
    runs_per_day: u32,
    per_second: f64,
    ip: IpAddr,
}

const COT_SUFFIXES: &[&str] = &[
    "\nLet's think step by step.",
    "\nThink step by step, then give the final answer after 'Answer:'.",
];

impl EvalLab {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let provider = rng.gen_range(0..net::PROVIDERS);
        Self {
            questions: Vec::new(),
            runs_per_day: range_u32(&mut rng, 1, 4),
            per_second: uniform(&mut rng, 0.5, 3.0),
            ip: net::datacenter_v4(&mut rng, provider),
            rng,
            account,
        }
    }
}

impl Actor for EvalLab {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("eval_lab"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        if self.questions.is_empty() {
            let suffix = *pick(rng, COT_SUFFIXES);
            self.questions = (0..range_u32(rng, 200, 800))
                .map(|_| format!("{}{suffix}", ctx.book.benchmark_question(rng)))
                .collect();
        }
        for _ in 0..self.runs_per_day {
            let model = *pick(rng, &[MODEL_MAIN, MODEL_MINI, MODEL_REASONING, MODEL_NEW]);
            let model = if model == MODEL_NEW && ctx.day_start + DAY < ctx.release_at {
                MODEL_MAIN
            } else {
                model
            };
            let mut at = (ctx.day_start + range_i64(rng, 0, 20 * HOUR)) as f64;
            for question in &self.questions {
                at += exp_gap(rng, self.per_second / 1_000.0);
                let mut call = Call::new(
                    at as i64,
                    model,
                    question.clone(),
                    self.ip,
                    net::EVAL_AGENTS[0],
                );
                call.completion = lognormal(rng, 700.0, 0.5) as u32;
                call.reasoning = lognormal(rng, 1_500.0, 0.5) as u32;
                call.params = Params {
                    temperature: Some(0.0),
                    max_tokens: Some(4_096),
                    seed: Some(1_234),
                    ..Params::default()
                };
                emit(out, rng, &self.account, call, ctx);
            }
        }
    }
}

/// A student working through homework: two to four evenings a week, an evening's burst of 20–40
/// unrelated step-by-step questions, sometimes a follow-up ("I don't get step 2") or the same
/// question asked again. Students differ in how often they question an answer, and some evenings
/// have a break in them (dinner, a walk): each student draws their own habits.
pub(crate) struct PowerStudent {
    rng: SimRng,
    account: Account,
    human: Human,
    evenings: f64,
    /// Share of questions that follow up on the previous answer: 3–25 % (some students rarely
    /// question an answer, some do every few questions).
    follow_up: f64,
    /// Share of questions asked again verbatim (a lost answer, a page reload): 2–8 %.
    re_ask: f64,
}

/// Share of evenings with one break of 35–60 minutes partway through.
const STUDENT_BREAK_SHARE: f64 = 0.3;

const STUDENT_STEPWISE: &[&str] = &[
    "explain step by step: ",
    "can you solve this step by step? ",
    "walk me through this: ",
    "show your work: ",
    "",
];

const STUDENT_FOLLOW_UPS: &[&str] = &[
    "i don't get step 2",
    "why did you divide there?",
    "can you check my answer, i got something else",
    "ok and the next one?",
];

impl PowerStudent {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let tz = random_zone(&mut rng);
        let human = Human::home(&mut rng, tz, Diurnal::Evening, 1.0);
        Self {
            evenings: uniform(&mut rng, 2.0, 4.0) / 7.0,
            follow_up: uniform(&mut rng, 0.03, 0.25),
            re_ask: uniform(&mut rng, 0.02, 0.08),
            rng,
            account,
            human,
        }
    }
}

impl Actor for PowerStudent {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("power_student"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let rng = &mut self.rng;
        if !chance(rng, self.evenings) {
            return;
        }
        let Some(start) = self.human.sessions(rng, ctx).into_iter().next() else {
            return;
        };
        let ip = self.human.session_ip(rng);
        let model = if chance(rng, 0.4) {
            MODEL_REASONING
        } else {
            MODEL_MAIN
        };
        let mut at = start;
        let mut previous = String::new();
        let questions = range_u32(rng, 20, 40);
        let break_after = chance(rng, STUDENT_BREAK_SHARE)
            .then(|| (questions as f64 * uniform(rng, 0.3, 0.6)) as u32);
        for i in 0..questions {
            if break_after == Some(i) {
                at += range_i64(rng, 35 * MINUTE, 60 * MINUTE);
            }
            let (prompt, messages) = if !previous.is_empty() && chance(rng, self.follow_up) {
                (pick(rng, STUDENT_FOLLOW_UPS).to_string(), 3)
            } else if !previous.is_empty() && chance(rng, self.re_ask) {
                (previous.clone(), 1)
            } else {
                let question = ctx.book.study_question(rng);
                previous = format!("{}{question}", pick(rng, STUDENT_STEPWISE));
                (previous.clone(), 1)
            };
            let mut call = Call::new(at, model, prompt, ip, &self.human.ua);
            call.messages = messages;
            call.completion = lognormal(rng, 600.0, 0.5) as u32;
            call.reasoning = lognormal(rng, 900.0, 0.6) as u32;
            emit(out, rng, &self.account, call, ctx);
            at += lognormal(rng, 150_000.0, 0.6).clamp(20_000.0, 1_200_000.0) as i64;
        }
    }
}

/// A developer running a coding agent all working day in one repository: tasks drawn from that
/// repository's modules and the developer's stack, each worked for 10–120 tool rounds.
pub(crate) struct CodingAgent {
    rng: SimRng,
    account: Account,
    human: Human,
    repo: Repo,
    resend_task: bool,
}

struct Repo {
    name: String,
    modules: Vec<&'static str>,
    stack: &'static str,
}

const MODULES: &[&str] = &[
    "auth",
    "billing",
    "invoices",
    "scheduler",
    "parser",
    "exporter",
    "webhooks",
    "search",
    "notifications",
    "cache",
    "migrations",
    "admin",
    "reports",
    "uploads",
    "sessions",
    "metrics",
];
const STACKS: &[&str] = &[
    "Django",
    "Rails",
    "Express",
    "Spring Boot",
    "FastAPI",
    "Axum",
    "Next.js",
];
const CODING_VERBS: &[&str] = &[
    "Fix the failing tests in",
    "Add pagination to",
    "Refactor the error handling in",
    "Write unit tests for",
    "Add structured logging to",
    "Speed up the slow queries in",
    "Document the public functions in",
    "Remove the deprecated calls from",
];

impl CodingAgent {
    pub(crate) fn new(mut rng: SimRng, start: i64) -> Self {
        let created = created_long_ago(&mut rng, start);
        let pay = payment(&mut rng);
        let account = Account::new(&mut rng, created, pay);
        let tz = random_zone(&mut rng);
        let human = Human::home(&mut rng, tz, Diurnal::Work, 1.0);
        let mut modules: Vec<&'static str> = MODULES.to_vec();
        modules.retain(|_| chance(&mut rng, 0.6));
        if modules.is_empty() {
            modules.push("core");
        }
        let repo = Repo {
            name: format!(
                "{}-{}",
                pick(&mut rng, &["acme", "orbit", "nimbus", "ledger"]),
                pick(&mut rng, &["api", "web", "platform", "service"])
            ),
            modules,
            stack: STACKS[rng.gen_range(0..STACKS.len())],
        };
        Self {
            resend_task: chance(&mut rng, 0.5),
            rng,
            account,
            human,
            repo,
        }
    }

    fn task(&self, rng: &mut SimRng) -> String {
        let module = pick(rng, &self.repo.modules);
        let verb = pick(rng, CODING_VERBS);
        match rng.gen_range(0..3) {
            0 => format!(
                "{verb} the {module} module of {} ({})",
                self.repo.name, self.repo.stack
            ),
            1 => format!("{verb} {module}/ in {}", self.repo.name),
            _ => format!(
                "{verb} the {module} {} handlers; keep the existing {} conventions",
                self.repo.name, self.repo.stack
            ),
        }
    }
}

impl Actor for CodingAgent {
    fn members(&self) -> Vec<(String, Label)> {
        vec![(self.account.id.to_string(), Label::benign("coding_agent"))]
    }

    fn day(&mut self, ctx: &Ctx, out: &mut Vec<ApiEvent>) {
        let mut rng = self.rng.clone();
        if crate::timing::is_weekend(ctx.day_start) && chance(&mut rng, 0.7) {
            self.rng = rng;
            return;
        }
        let day_begin = crate::timing::local_day_start(ctx.day_start, self.human.tz) + 9 * HOUR;
        let ip = self.human.session_ip(&mut rng);
        let mut at = day_begin + range_i64(&mut rng, 0, HOUR);
        let end = day_begin + range_i64(&mut rng, 8 * HOUR, 11 * HOUR);
        while at < end {
            let task = self.task(&mut rng);
            let rounds = lognormal(&mut rng, 35.0, 0.6).clamp(10.0, 120.0) as u32;
            for round in 0..=rounds {
                let prompt = if round == 0 || self.resend_task {
                    task.clone()
                } else {
                    tool_line(&mut rng, round)
                };
                let mut call = Call::new(at, MODEL_MAIN, prompt, ip, &self.human.ua);
                call.system = Some(AGENT_SYSTEM_PROMPT.to_string());
                call.messages = 1 + 2 * round;
                call.history_tokens = 3_000 + 800 * round.min(100);
                call.completion = lognormal(&mut rng, 250.0, 0.7).clamp(10.0, 3_000.0) as u32;
                emit(out, &mut rng, &self.account, call, ctx);
                at += i64::from(call_gap(&mut rng));
            }
            // Reading the diff, a coffee, the next task.
            at += lognormal(&mut rng, 6.0 * MINUTE as f64, 0.8) as i64;
        }
        self.rng = rng;
    }
}
