//! A small procedural traffic generator for the benches: realistic shapes (prompt lengths around
//! 200 bytes, chat users who re-ask, templated apps, harvesters with diverse prompts, parameters,
//! token counts), no files, deterministic for a seed.

#![allow(dead_code)]

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
    let mut rng = Rng::new(seed);
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
    let mut t = 1_764_000_000_000i64;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        t += rng.below(2 * spacing_ms as u64 + 1) as i64;
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
        event.user_agent = Some(format!("OpenAI/Python 1.{}.0", a % 40));
        event.prompt = Some(prompt);
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
