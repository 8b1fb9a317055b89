//! Prompt text for every archetype: from JSONL corpora when given, otherwise procedural
//! (topics x templates x fills), always deterministic for a given generator state.

use std::collections::HashSet;

use rand::Rng;
use serde::Deserialize;

use crate::dist::{chance, mix, pick, range_u32, SimRng};
use crate::words::*;
use crate::SimError;

/// Prompts loaded from a `{"prompt": ...}` JSONL file (the format of the samples in `corpora/`).
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    prompts: Vec<String>,
}

impl Corpus {
    /// Parses JSONL; blank lines are skipped, a line without a usable `prompt` is an error.
    pub fn from_jsonl(text: &str) -> Result<Self, SimError> {
        #[derive(Deserialize)]
        struct Line {
            prompt: String,
        }
        let mut prompts = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(line).map_err(|e| SimError::Corpus {
                line: index + 1,
                reason: e.to_string(),
            })?;
            if !parsed.prompt.trim().is_empty() {
                prompts.push(parsed.prompt);
            }
        }
        if prompts.is_empty() {
            return Err(SimError::EmptyCorpus);
        }
        Ok(Self { prompts })
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    fn random(&self, rng: &mut SimRng) -> &str {
        &self.prompts[rng.gen_range(0..self.prompts.len())]
    }
}

/// Where prompts come from: optional corpora, procedural text for everything else.
#[derive(Debug, Clone, Default)]
pub struct PromptBook {
    benign: Option<Corpus>,
    attack: Option<Corpus>,
}

/// System prompts of distillation operators, after the examples in the public reports.
pub(crate) const ATTACK_SYSTEM_PROMPTS: &[&str] = &[
    "You are an expert data analyst combining statistical rigor with deep domain knowledge. Every answer must be supported by complete and transparent reasoning.",
    "You are a meticulous expert tutor. Always reason step by step and show all intermediate work before the final answer.",
    "You are a senior software engineer. Think through the problem carefully, explain every decision, then give the complete code.",
    "You are an autonomous agent with access to tools. Plan step by step, state each tool call and its result, and explain each decision before the final answer.",
    "You are a world-class researcher. Provide exhaustive, well-structured answers and make your full chain of reasoning explicit.",
];

/// User-side reasoning elicitation; `{}` is the task.
const ELICITATIONS: &[&str] = &[
    "{}\n\nThink step by step and show your complete reasoning before giving the final answer.",
    "Imagine and articulate the internal reasoning behind a completed response to the task below, and write it out step by step.\n\n{}",
    "{}\n\nExplain your reasoning in full detail, including every intermediate step, then state the answer.",
    "Solve the following. First write your full chain of thought inside <thinking> tags, then give the answer.\n\n{}",
    "{}\nWalk through your thought process transparently, one step at a time.",
    "Provide a detailed, step-by-step rationale, then the final response, for: {}",
    "{}\n\nBefore answering, reason out loud about the problem, consider alternatives, and justify your choice.",
    "Task: {}\nFormat: ## Reasoning (complete, numbered steps) ## Answer",
];

/// Chain-of-thought tips that ordinary users paste after their questions.
const PROMPTING_TIPS: &[&str] = &[
    "Let's think step by step.",
    "Think step by step.",
    "Please explain your reasoning.",
    "Show your reasoning before the answer.",
];

/// How benign people ask for steps: ordinary phrasing that must not be mistaken for harvesting.
const BENIGN_STEPWISE: &[&str] = &[
    "can you explain step by step? ",
    "walk me through it step by step: ",
    "explain your reasoning please, ",
];

impl PromptBook {
    pub fn builtin() -> Self {
        Self::default()
    }

    pub fn new(benign: Option<Corpus>, attack: Option<Corpus>) -> Self {
        Self { benign, attack }
    }

    /// The first message of a casual conversation.
    pub(crate) fn casual_opener(&self, rng: &mut SimRng) -> String {
        if let Some(corpus) = &self.benign {
            if chance(rng, 0.75) {
                return corpus.random(rng).to_string();
            }
        }
        let text = match rng.gen_range(0..11) {
            0 => format!("how do i {}?", pick(rng, ACTIVITIES)),
            1 => format!(
                "What's the best way to {}? I only have about {} minutes a day.",
                pick(rng, ACTIVITIES),
                pick(rng, &[10, 15, 20, 30, 45])
            ),
            2 => format!("explain {} like I'm 10", pick(rng, CONCEPTS)),
            3 => format!("Can you explain {} in simple terms?", pick(rng, CONCEPTS)),
            4 => format!("Help me write {}.", pick(rng, DOCS)),
            5 => format!("write {}, keep it short and warm", pick(rng, DOCS)),
            6 => format!(
                "Plan a {}-day trip to {} on a budget.",
                range_u32(rng, 2, 7),
                pick(rng, PLACES)
            ),
            7 => format!("what can I cook with {}?", pick(rng, INGREDIENTS)),
            8 => {
                let (a, b) = pick(rng, PAIRS);
                format!("What's the difference between {a} and {b}?")
            }
            9 => format!("is it normal that {}?", pick(rng, WORRIES)),
            _ => format!(
                "{}how does {} actually work",
                pick(rng, BENIGN_STEPWISE),
                pick(rng, CONCEPTS)
            ),
        };
        let text = if chance(rng, 0.45) {
            format!("{text}{}", pick(rng, CONTEXTS))
        } else {
            text
        };
        // Prompting tips travel: some people end every question with one.
        if chance(rng, 0.08) {
            format!("{text} {}", pick(rng, PROMPTING_TIPS))
        } else {
            text
        }
    }

    /// A student's question to a homework helper: the same breadth of subjects as a harvest.
    pub(crate) fn study_question(&self, rng: &mut SimRng) -> String {
        if let Some(corpus) = &self.benign {
            if chance(rng, 0.5) {
                return corpus.random(rng).to_string();
            }
        }
        match rng.gen_range(0..5) {
            0 => format!(
                "can you help me understand {}? exam is {}",
                pick(rng, SUBJECTS),
                pick(rng, &["tomorrow", "on friday", "next week", "in 2 hours"])
            ),
            1 => format!(
                "{} homework: why does {} matter for {}?",
                pick(rng, BENCH_SUBJECTS),
                pick(rng, SUBJECTS),
                pick(rng, SUBJECTS)
            ),
            2 => format!(
                "a train leaves at {}:00 going {} km/h, another at {}:30 going {} km/h. when does the second catch up",
                rng.gen_range(6..12),
                rng.gen_range(40..90),
                rng.gen_range(6..12),
                rng.gen_range(90..140)
            ),
            3 => format!("summarise {} for my essay intro", pick(rng, SUBJECTS)),
            _ => format!("explain {} simply", pick(rng, CONCEPTS)),
        }
    }

    pub(crate) fn follow_up(&self, rng: &mut SimRng) -> String {
        pick(rng, FOLLOW_UPS).to_string()
    }

    /// An edited re-send of a prompt: the user adds a detail and asks again.
    pub(crate) fn edit(&self, rng: &mut SimRng, prompt: &str) -> String {
        format!("{}{}", prompt.trim_end(), pick(rng, EDITS))
    }

    pub(crate) fn dev_task(&self, rng: &mut SimRng) -> String {
        match rng.gen_range(0..10) {
            0..=3 => format!(
                "Write a {} function that {}.",
                pick(rng, LANGS),
                pick(rng, CODE_TASKS)
            ),
            4 => format!(
                "Why does this {} code throw `{}`?\n\n```\nresult = handler(payload)[\"items\"][{}]\n```",
                pick(rng, LANGS),
                pick(rng, ERRORS),
                rng.gen_range(0..4)
            ),
            5 => format!(
                "Convert this to {}:\n\nfor i in range(len(xs)):\n    if xs[i] % {} == 0:\n        out.append(xs[i])",
                pick(rng, LANGS),
                rng.gen_range(2..7)
            ),
            6 => format!(
                "Generate a JSON schema for a {} with fields {}.",
                pick(rng, &["user", "order", "invoice", "shipment", "sensor reading"]),
                pick(rng, &["id, name, created_at", "id, total, items[], status", "id, lat, lon, ts"])
            ),
            7 => pick(rng, &["test", "hello", "Say 'pong'", "ping", "Reply with OK"]).to_string(),
            8 => format!(
                "Explain what this SQL does:\nSELECT city, COUNT(*) FROM orders WHERE total > {} GROUP BY city HAVING COUNT(*) > {};",
                rng.gen_range(10..500),
                rng.gen_range(2..50)
            ),
            _ => format!("Write a regex that matches {}.", pick(rng, &["UK postcodes", "semantic version strings", "hex colour codes", "IPv4 addresses", "dates like 2024-01-31"])),
        }
    }

    /// The same developer prompt re-sent with a small change.
    pub(crate) fn dev_variant(&self, rng: &mut SimRng, base: &str) -> String {
        if chance(rng, 0.3) {
            return base.to_string();
        }
        format!("{}{}", base.trim_end(), pick(rng, CODE_VARIANTS))
    }

    pub(crate) fn work_task(&self, rng: &mut SimRng) -> String {
        if let Some(corpus) = &self.benign {
            if chance(rng, 0.35) {
                return corpus.random(rng).to_string();
            }
        }
        if chance(rng, 0.2) {
            return self.dev_task(rng);
        }
        format!("{}:\n\n{}", pick(rng, WORK_TASKS), pick(rng, WORK_SNIPPETS))
    }

    /// One benchmark question; the runner keeps the set and re-sends it.
    pub(crate) fn benchmark_question(&self, rng: &mut SimRng) -> String {
        let stem = match &self.benign {
            Some(corpus) if chance(rng, 0.6) => corpus.random(rng).to_string(),
            _ => format!(
                "Which statement about {} in {} is correct?",
                pick(rng, SUBJECTS),
                pick(rng, BENCH_SUBJECTS)
            ),
        };
        let options: Vec<String> = (0..4)
            .map(|_| {
                format!(
                    "It {} {}",
                    pick(
                        rng,
                        &[
                            "explains",
                            "contradicts",
                            "depends on",
                            "precedes",
                            "is unrelated to"
                        ]
                    ),
                    pick(rng, SUBJECTS)
                )
            })
            .collect();
        format!(
            "The following is a multiple choice question. Answer with the letter only.\n\nQuestion: {stem}\nA) {}\nB) {}\nC) {}\nD) {}\nAnswer:",
            options[0], options[1], options[2], options[3]
        )
    }

    /// A customer document for batch jobs (classification, extraction).
    pub(crate) fn customer_document(&self, rng: &mut SimRng, kind: BatchKind) -> String {
        match kind {
            BatchKind::Sentiment => format!(
                "The {} {} and {}. {}",
                pick(rng, PRODUCTS),
                pick(rng, REVIEW_BITS),
                pick(rng, REVIEW_BITS),
                pick(rng, &["", "Rating: 2/5.", "Rating: 5/5.", "Meh."])
            ),
            BatchKind::Invoice => format!(
                "INVOICE #{}-{:05}\nFrom: {}\nDate: 2026-{:02}-{:02}\nItems: {} x {} @ {}.{:02}\nTotal due: {}.{:02} EUR",
                pick(rng, &["INV", "AC", "GX"]),
                rng.gen_range(0..100_000),
                pick(rng, NAMES),
                rng.gen_range(1..13),
                rng.gen_range(1..29),
                rng.gen_range(1..40),
                pick(rng, PRODUCTS),
                rng.gen_range(3..400),
                rng.gen_range(0..100),
                rng.gen_range(10..9_000),
                rng.gen_range(0..100)
            ),
            BatchKind::Routing => format!(
                "Ticket {}: {} (customer since {})",
                rng.gen_range(10_000..99_999),
                pick(rng, TICKET_BITS),
                rng.gen_range(2015..2026)
            ),
        }
    }

    /// The next distillation task. `state` tracks what the campaign already sent so tasks are
    /// never repeated.
    pub(crate) fn attack_task(&self, rng: &mut SimRng, state: &mut TaskFeed) -> String {
        if let Some(corpus) = &self.attack {
            // Walk the corpus in a campaign-specific order; after a full pass the campaign
            // re-asks items with a different framing, as real harvesters do for diversity.
            let index = state.next_index;
            state.next_index += 1;
            let len = corpus.len() as u64;
            let pass = index / len;
            let position = (index % len).wrapping_mul(state.stride) % len;
            let item = &corpus.prompts[((position + state.offset) % len) as usize];
            return match pass {
                0 => item.clone(),
                p => format!("{} (Variant {}: use a different example.)", item, p + 1),
            };
        }
        for _ in 0..16 {
            let text = procedural_task(rng);
            if state.seen.insert(mix(fnv(&text))) {
                return text;
            }
        }
        // The procedural space is large; after 16 collisions make the text unique outright.
        state.next_index += 1;
        format!("{} (case {})", procedural_task(rng), state.next_index)
    }

    pub(crate) fn agentic_task(&self, rng: &mut SimRng, state: &mut TaskFeed) -> String {
        if chance(rng, 0.5) {
            format!(
                "Goal: {}. Environment: repository `{}` with {} files. Produce the full sequence of tool calls (name, arguments, expected output) and the final answer.",
                pick(rng, AGENT_GOALS),
                pick(rng, &["billing-svc", "web-frontend", "etl-jobs", "infra", "ml-pipeline"]),
                rng.gen_range(12..900)
            )
        } else {
            self.attack_task(rng, state)
        }
    }

    pub(crate) fn elicit(&self, rng: &mut SimRng, task: &str) -> String {
        pick(rng, ELICITATIONS).replacen("{}", task, 1)
    }

    /// A reward-model style grading prompt, as reported for one 2025 campaign.
    pub(crate) fn rubric(&self, rng: &mut SimRng, task: &str) -> String {
        format!(
            "Grade the following response on a 1-{} rubric for correctness, completeness and clarity. Justify each criterion, then give the total.\n\nPrompt: {task}\n\nResponse: {}",
            pick(rng, &[5, 10]),
            pick(rng, &["[see previous answer]", "The answer is 42 because of the stated constraints.", "It depends on the assumptions; under the usual ones, yes."])
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchKind {
    Sentiment,
    Invoice,
    Routing,
}

/// What a campaign has already asked, so it never repeats itself.
#[derive(Debug, Clone)]
pub(crate) struct TaskFeed {
    next_index: u64,
    offset: u64,
    stride: u64,
    seen: HashSet<u64>,
}

impl TaskFeed {
    pub(crate) fn new(rng: &mut SimRng) -> Self {
        // An odd stride with a prime modulus behaviour is not guaranteed for arbitrary corpus
        // lengths, so strides are primes far larger than any corpus: coprime to every length.
        const STRIDES: &[u64] = &[7_919, 104_729, 1_299_709, 15_485_863];
        Self {
            next_index: 0,
            offset: rng.gen_range(0..1_000_000),
            stride: *pick(rng, STRIDES),
            seen: HashSet::new(),
        }
    }
}

fn fnv(text: &str) -> u64 {
    distillguard_core::sketch::fnv1a(text.as_bytes())
}

/// Self-instruct style tasks across capabilities: reasoning, maths, code, analysis, writing.
fn procedural_task(rng: &mut SimRng) -> String {
    let subject = pick(rng, SUBJECTS);
    match rng.gen_range(0..14) {
        0 => format!("Write a detailed explanation of {subject} for a {}.", pick(rng, AUDIENCES)),
        1 => format!(
            "Generate {} multiple-choice questions about {subject}, with answers and explanations.",
            range_u32(rng, 3, 12)
        ),
        2 => format!(
            "A tank holds {} litres and drains at {} litres per minute while a pump adds {} litres per minute. How long until it holds {} litres?",
            rng.gen_range(200..5_000),
            rng.gen_range(5..60),
            rng.gen_range(1..40),
            rng.gen_range(10..150)
        ),
        3 => format!(
            "Write a {} program that {}, and explain the design decisions.",
            pick(rng, LANGS),
            pick(rng, CODE_TASKS)
        ),
        4 => format!(
            "Compare {subject} and {} across {} dimensions.",
            pick(rng, SUBJECTS),
            range_u32(rng, 3, 8)
        ),
        5 => format!(
            "Critique this claim about {subject} and identify any logical fallacies: \"{} always leads to {}.\"",
            pick(rng, SUBJECTS),
            pick(rng, SUBJECTS)
        ),
        6 => format!(
            "You are given a dataset of {} {} records. Describe how you would analyse it to find {}.",
            rng.gen_range(1..900) * 1_000,
            pick(rng, &["retail transaction", "hospital admission", "sensor", "clickstream", "loan application"]),
            pick(rng, &["seasonal effects", "fraud", "churn drivers", "anomalies", "causal effects of a price change"])
        ),
        7 => format!(
            "Prove that the sum of the first {} odd numbers is a perfect square, and generalise.",
            rng.gen_range(3..10_000)
        ),
        8 => format!(
            "Rewrite the following text in a {} style: \"{subject} changed how people think about {}.\"",
            pick(rng, STYLES),
            pick(rng, SUBJECTS)
        ),
        9 => format!(
            "What would happen if {subject} had never been discovered? Consider {} consequences.",
            range_u32(rng, 2, 6)
        ),
        10 => format!(
            "Find all integer solutions of {}x + {}y = {} with 0 <= x, y <= {}.",
            rng.gen_range(2..40),
            rng.gen_range(2..40),
            rng.gen_range(50..2_000),
            rng.gen_range(20..200)
        ),
        11 => format!(
            "Design a {}-week curriculum on {subject} for a {}, with learning objectives per week.",
            range_u32(rng, 2, 12),
            pick(rng, AUDIENCES)
        ),
        12 => format!(
            "Given the function f(x) = {}x^3 - {}x^2 + {}x - {}, find its critical points and classify them.",
            rng.gen_range(1..9),
            rng.gen_range(1..20),
            rng.gen_range(1..30),
            rng.gen_range(0..50)
        ),
        _ => format!(
            "Summarise the main debates about {subject} in {} bullet points, citing the strongest argument on each side.",
            range_u32(rng, 3, 9)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::stream;

    #[test]
    fn a_campaign_feed_never_repeats_a_procedural_task() {
        let book = PromptBook::builtin();
        let mut rng = stream(11, 1);
        let mut feed = TaskFeed::new(&mut rng);
        let tasks: Vec<String> = (0..20_000)
            .map(|_| book.attack_task(&mut rng, &mut feed))
            .collect();
        let distinct: HashSet<&String> = tasks.iter().collect();
        assert_eq!(distinct.len(), tasks.len());
    }

    #[test]
    fn corpus_feeds_cover_every_item_once_before_reframing() {
        let text: String = (0..50)
            .map(|i| format!("{{\"prompt\": \"item {i}\"}}\n"))
            .collect();
        let book = PromptBook::new(None, Some(Corpus::from_jsonl(&text).unwrap()));
        let mut rng = stream(2, 2);
        let mut feed = TaskFeed::new(&mut rng);
        let first: HashSet<String> = (0..50)
            .map(|_| book.attack_task(&mut rng, &mut feed))
            .collect();
        assert_eq!(first.len(), 50);
        let again = book.attack_task(&mut rng, &mut feed);
        assert!(again.contains("Variant 2"), "{again}");
    }

    #[test]
    fn corpus_lines_without_a_prompt_are_reported_with_their_line_number() {
        let err = Corpus::from_jsonl("{\"prompt\": \"ok\"}\n{\"text\": 1}\n").unwrap_err();
        assert!(matches!(err, SimError::Corpus { line: 2, .. }), "{err}");
        assert!(matches!(
            Corpus::from_jsonl("\n\n"),
            Err(SimError::EmptyCorpus)
        ));
    }

    #[test]
    fn builtin_casual_prompts_are_varied() {
        let book = PromptBook::builtin();
        let mut rng = stream(4, 4);
        let prompts: HashSet<String> = (0..500).map(|_| book.casual_opener(&mut rng)).collect();
        assert!(prompts.len() > 300, "{}", prompts.len());
    }
}
