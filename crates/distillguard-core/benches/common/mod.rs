//! A small procedural traffic generator for the benches: realistic shapes (prompt lengths around
//! 200 bytes, chat users who re-ask, templated apps, harvesters with diverse prompts, parameters,
//! token counts), no files, deterministic for a seed.

#![allow(dead_code)]

pub mod million;

use distillguard_core::event::{AccountId, ApiEvent, ModelName};
use distillguard_core::time::EventTime;

/// xorshift64*: tiny and deterministic; the bench needs shapes, not statistical quality.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Roughly Zipf-distributed index in 0..n (small indices much more likely).
    pub fn zipf(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0) as u64 % n.max(1)
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vi", "zo", "ba", "de", "fu", "gi", "ho", "ju",
    "an", "er", "ix", "on", "ul", "tra", "ste", "pro",
];
const FUNCTION_WORDS: [&str; 16] = [
    "the", "of", "and", "to", "in", "a", "is", "for", "on", "with", "as", "by", "that", "it",
    "from", "what",
];

fn word(index: u64, out: &mut String) {
    let mut k = index + 24;
    while k > 0 {
        out.push_str(SYLLABLES[(k % 24) as usize]);
        k /= 24;
    }
}

/// A sentence of `words` words drawn from a Zipf vocabulary of 20,000 words.
pub fn sentence(rng: &mut Rng, words: usize, out: &mut String) {
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        if rng.below(3) == 0 {
            out.push_str(FUNCTION_WORDS[rng.below(16) as usize]);
        } else {
            word(rng.zipf(20_000), out);
        }
    }
    out.push('.');
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    App,
    Harvester,
}

/// `count` events over `accounts` accounts, one every ~`spacing_ms` of event time.
pub fn events(seed: u64, accounts: usize, count: usize, spacing_ms: i64) -> Vec<ApiEvent> {
    generate(seed, accounts, count, spacing_ms, None)
}

/// [`events`] with the identity fields the linker joins on, and hydra campaigns among the
/// accounts (see [`Campaigns`]), so that linking does real work: every account carries a
/// payment fingerprint and a creation time, three chat users in every hundred accounts share a
/// card (small teams: benign clusters of three), and the campaigns' accounts share everything a
/// campaign cannot hide.
pub fn linked_events(
    seed: u64,
    accounts: usize,
    count: usize,
    spacing_ms: i64,
    campaigns: &Campaigns,
) -> Vec<ApiEvent> {
    generate(seed, accounts, count, spacing_ms, Some(campaigns))
}

/// Hydra campaigns: `campaigns` groups of `members` accounts (`hydra-CCC-MM`), each group with
/// one card, accounts created within minutes of each other, three proxies in its own /24, one
/// client, one system prompt and one prompt template, harvesting with diverse prompts.
pub struct Campaigns {
    pub campaigns: usize,
    pub members: usize,
    /// Share of all events the campaigns send, per mille.
    pub share_permille: u64,
}

impl Default for Campaigns {
    fn default() -> Self {
        Self {
            campaigns: 10,
            members: 8,
            share_permille: 50,
        }
    }
}

/// Start of the generated event time.
pub const START_MS: i64 = 1_764_000_000_000;

/// Card and creation time of an ordinary account: accounts `i` with `i % 100` in 10..13 (chat
/// users in `events`) share a card (a team of three), the others have their own; creation times
/// are spread over two years.
pub fn identity(index: usize, event: &mut ApiEvent) {
    let card = if (10..13).contains(&(index % 100)) {
        format!("card-team-{:06}", index / 100)
    } else {
        format!("card-{index:07}")
    };
    event.payment_fingerprint = Some(card.into());
    let spread = (Rng::new(index as u64 ^ 0xc0ffee).next() % (730 * EventTime::DAY as u64)) as i64;
    event.account_created_at =
        Some(EventTime::from_epoch_ms(START_MS - EventTime::DAY - spread).unwrap());
}

/// The id of campaign `campaign`'s member `member`.
pub fn campaign_account(campaign: usize, member: usize) -> AccountId {
    AccountId::parse(format!("hydra-{campaign:03}-{member:02}")).unwrap()
}

/// One event of a campaign member at `t`.
pub fn campaign_event(rng: &mut Rng, campaign: usize, member: usize, t: i64) -> ApiEvent {
    const TEMPLATES: [(&str, &str); 4] = [
        (
            "Solve the following problem carefully: ",
            " Show every step, then the final answer.",
        ),
        ("Question: ", " Think step by step and justify each claim."),
        (
            "Write a detailed expert answer to: ",
            " Explain your reasoning before answering.",
        ),
        (
            "Task: ",
            " Answer with reasoning first and a one-line conclusion last.",
        ),
    ];
    let mut event = ApiEvent::new(
        EventTime::from_epoch_ms(t).unwrap(),
        campaign_account(campaign, member),
        ModelName::parse("claude-sonnet").unwrap(),
    );
    let (prefix, suffix) = TEMPLATES[campaign % TEMPLATES.len()];
    let mut prompt = String::with_capacity(320);
    prompt.push_str(prefix);
    let words = 22 + rng.below(25) as usize;
    sentence(rng, words, &mut prompt);
    prompt.push_str(suffix);
    event.messages = Some(1);
    event.params.max_tokens = Some(8_192);
    event.params.temperature = Some(0.0);
    if rng.below(2) == 0 {
        event.params.logprobs = Some(true);
        event.params.top_logprobs = Some(5);
    }
    event.system_prompt = Some(format!(
        "You are a world-class expert. Always reason step by step. Ref {campaign}."
    ));
    event.usage.prompt_tokens = Some((prompt.len() / 4) as u32);
    event.usage.completion_tokens = Some(800 + rng.below(1_500) as u32);
    // Three proxies in the campaign's own /24 (100.64.0.0/10 shared address space).
    let (hi, lo) = ((campaign / 256) as u8, (campaign % 256) as u8);
    event.client_ip = Some(std::net::IpAddr::from([
        100,
        64 + hi,
        lo,
        10 + rng.below(3) as u8,
    ]));
    event.user_agent = Some(format!("python-httpx/0.27.{campaign}").into());
    event.payment_fingerprint = Some(format!("card-hydra-{campaign:03}").into());
    // Created in one burst: the campaign's accounts within minutes, in the same 30-minute window.
    let window = 30 * EventTime::MINUTE;
    let burst = START_MS.div_euclid(window) * window - 2 * EventTime::DAY
        + campaign as i64 * 2 * EventTime::HOUR;
    event.account_created_at =
        Some(EventTime::from_epoch_ms(burst + member as i64 * 90_000).unwrap());
    event.prompt = Some(prompt);
    event
}

fn generate(
    seed: u64,
    accounts: usize,
    count: usize,
    spacing_ms: i64,
    campaigns: Option<&Campaigns>,
) -> Vec<ApiEvent> {
    let mut rng = Rng::new(seed);
    // Campaign picks draw from their own generator, so the ordinary traffic is the same
    // sequence with or without campaigns.
    let mut side = Rng::new(seed ^ 0x0048_5944_5241);
    let ids: Vec<AccountId> = (0..accounts)
        .map(|i| AccountId::parse(format!("acct-{i:06}")).unwrap())
        .collect();
    let models = [
        ModelName::parse("gpt-4o").unwrap(),
        ModelName::parse("gpt-4o-mini").unwrap(),
        ModelName::parse("claude-sonnet").unwrap(),
    ];
    let kinds: Vec<Kind> = (0..accounts)
        .map(|i| match i % 20 {
            0 => Kind::Harvester,
            1..=3 => Kind::App,
            _ => Kind::Chat,
        })
        .collect();
    let mut last_prompt: Vec<Option<String>> = vec![None; accounts];
    let mut t = START_MS;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        t += rng.below(2 * spacing_ms as u64 + 1) as i64;
        if let Some(c) = campaigns.filter(|c| c.campaigns * c.members > 0) {
            if side.below(1_000) < c.share_permille {
                let member = side.below((c.campaigns * c.members) as u64) as usize;
                out.push(campaign_event(
                    &mut side,
                    member / c.members,
                    member % c.members,
                    t,
                ));
                continue;
            }
        }
        // Busy accounts are picked more often (Zipf over accounts).
        let a = rng.zipf(accounts as u64) as usize;
        let kind = kinds[a];
        let mut event = ApiEvent::new(
            EventTime::from_epoch_ms(t).unwrap(),
            ids[a].clone(),
            models[a % 3].clone(),
        );
        let mut prompt = String::with_capacity(320);
        match kind {
            Kind::Chat => {
                if let (Some(previous), 0) = (&last_prompt[a], rng.below(4)) {
                    prompt.push_str(previous);
                    prompt.push_str(" please");
                } else {
                    let words = 20 + rng.below(25) as usize;
                    sentence(&mut rng, words, &mut prompt);
                }
                event.messages = Some(1 + 2 * rng.below(3) as u32);
            }
            Kind::App => {
                prompt
                    .push_str("Summarise the following support ticket for the on-call engineer: ");
                let words = 15 + rng.below(20) as usize;
                sentence(&mut rng, words, &mut prompt);
                event.system_prompt =
                    Some("You are a concise support assistant for Acme Corp.".into());
                event.messages = Some(2);
            }
            Kind::Harvester => {
                let words = 22 + rng.below(25) as usize;
                sentence(&mut rng, words, &mut prompt);
                prompt.push_str(" Explain your reasoning step by step.");
                event.messages = Some(1);
                event.params.max_tokens = Some(4_096);
                if rng.below(2) == 0 {
                    event.params.logprobs = Some(true);
                    event.params.top_logprobs = Some(5);
                }
            }
        }
        if matches!(kind, Kind::Chat) {
            last_prompt[a] = Some(prompt.clone());
        }
        event.usage.prompt_tokens = Some((prompt.len() / 4) as u32);
        event.usage.completion_tokens = Some(50 + rng.below(900) as u32);
        event.client_ip = Some(std::net::IpAddr::from([198, 51, 100, (a % 250) as u8]));
        event.user_agent = Some(format!("OpenAI/Python 1.{}.0", a % 40).into());
        event.prompt = Some(prompt);
        if campaigns.is_some() {
            identity(a, &mut event);
        }
        out.push(event);
    }
    out
}

/// Median prompt length in bytes (reported so the bench states what "realistic" meant).
pub fn median_prompt_bytes(events: &[ApiEvent]) -> usize {
    let mut lengths: Vec<usize> = events
        .iter()
        .filter_map(|e| e.prompt.as_ref().map(String::len))
        .collect();
    lengths.sort_unstable();
    lengths.get(lengths.len() / 2).copied().unwrap_or(0)
}

/// User + system CPU seconds of the process so far, from /proc/self/stat (clock ticks of 1/100 s);
/// 0 where unreadable.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the calling thread has run so far, in nanoseconds of resolution (the first field
/// of /proc/thread-self/schedstat); 0 where unreadable. Cheap enough to read around each chunk
/// of work, so a bench can time the engine apart from its own event generation.
pub fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}
