//! Coverage: many distinct prompts, little repetition, a wide spread of topics, one-shot calls.
//!
//! This is what separates harvesting (every prompt a new question, across every subject, never
//! asked twice, never followed up) from use (people re-ask, edit, follow up; apps and batch jobs
//! stay on their narrow subject). Four factors multiply, so one human habit is enough to clear an
//! account:
//! - distinct ratio: HyperLogLog distinct normalised prompts / prompts (0.8 → 0, 0.93 → 1; the HLL's
//!   3 % error keeps the upper end below 1);
//! - topic spread: vocabulary richness, Herdan's C = ln(distinct subject words) / ln(subject
//!   words) over a window of 4,000 subject words, corrected for length while the window is
//!   young (0.55 → 0, 0.63 → 1). Subject words leave out
//!   function words, task verbs and the account's own frame words (words in half its prompts),
//!   so a template's fixed wording does not count. An app or batch job fills its template from a
//!   vocabulary of a few dozen words and its richness falls as it grows; a harvester keeps
//!   bringing new words. Herdan's C is used because, unlike distinct/total, it stays roughly
//!   level as a text grows;
//! - re-sends: exact or edited repeats among the last 8 prompts (2 % → no penalty, 12 % → 0);
//! - single-turn share among requests with a known message count (0.6 → 0, 0.95 → 1); unknown
//!   message counts count as 0.8 confidence.
//!
//! Scaled by prompt-count confidence (nothing below a quarter of `min_prompts`; in an account's
//! first sitting, from half of `min_prompts` to twice it: see `sitting`).

use super::{measurement, ramp, Context, Detector, DetectorConfig, Role};
use crate::features::AccountSummary;
use crate::finding::Evidence;

pub struct Coverage;

/// Herdan's C of subject words at which the topic factor starts and saturates.
pub(crate) const RICHNESS_LOW: f64 = 0.55;
pub(crate) const RICHNESS_HIGH: f64 = 0.63;

struct Parts {
    confidence: f64,
    distinct: f64,
    topics: f64,
    resend: f64,
    single: Option<f64>,
    distinct_f: f64,
    topics_f: f64,
    resend_f: f64,
    single_f: f64,
}

fn parts(account: &AccountSummary, config: &DetectorConfig) -> Parts {
    let distinct = account.distinct_ratio();
    let topics = account.vocabulary_richness.unwrap_or(0.0);
    let resend = account.resend_ratio();
    let single = account.single_turn_share();
    Parts {
        confidence: super::sitting::breadth_confidence(account, config),
        distinct,
        topics,
        resend,
        single,
        distinct_f: ramp(distinct, 0.8, 0.93),
        topics_f: ramp(topics, RICHNESS_LOW, RICHNESS_HIGH),
        resend_f: 1.0 - ramp(resend, 0.02, 0.12),
        single_f: single.map_or(0.8, |s| ramp(s, 0.6, 0.95)),
    }
}

impl Detector for Coverage {
    fn name(&self) -> &'static str {
        "coverage"
    }

    fn role(&self) -> Role {
        Role::Breadth
    }

    fn score(&self, account: &AccountSummary, context: &Context<'_>) -> f64 {
        let p = parts(account, context.config);
        p.confidence * p.distinct_f * p.topics_f * p.resend_f * p.single_f
    }

    /// At full confidence, one habit measured at its zero: many re-asked prompts, re-sends or
    /// edits, follow-ups, or a narrow measured vocabulary. An unknown turn count or a vocabulary
    /// too small to measure says nothing either way.
    fn clears(&self, account: &AccountSummary, config: &DetectorConfig) -> bool {
        let p = parts(account, config);
        let measured_narrow = account.vocabulary_richness.is_some() && p.topics_f == 0.0;
        let follows_up = p.single.is_some() && p.single_f == 0.0;
        p.confidence >= 1.0
            && (p.distinct_f == 0.0 || p.resend_f == 0.0 || follows_up || measured_narrow)
    }

    fn evidence(&self, account: &AccountSummary, context: &Context<'_>, score: f64) -> Evidence {
        let p = parts(account, context.config);
        let single = p.single.map_or_else(
            || "turns unknown".to_owned(),
            |s| format!("{:.0}% single-turn", s * 100.0),
        );
        Evidence {
            summary: format!(
                "{} prompts: {:.0}% distinct, vocabulary richness {:.2} over {} subject words, {:.1}% re-sent or edited, {}; score {score:.2}",
                account.prompts,
                p.distinct * 100.0,
                p.topics,
                account.subject_words,
                p.resend * 100.0,
                single
            ),
            measurements: vec![
                measurement("distinct_prompt_ratio", p.distinct, Some(0.93), None, "lifetime"),
                measurement("vocabulary_richness", p.topics, Some(RICHNESS_HIGH), None, "latest window of up to 4,000 subject words"),
                measurement("resend_ratio", p.resend, Some(0.02), None, "last 8 prompts, rolling"),
                measurement("single_turn_share", p.single.unwrap_or(f64::NAN).max(0.0), Some(0.95), None, "lifetime"),
                measurement("prompts", account.prompts as f64, Some(super::sitting::full_confidence_prompts(account, context.config) as f64), None, "lifetime"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::*;
    use crate::detect::{DetectorConfig, ModelRegistry};

    fn score(events: &[crate::event::ApiEvent]) -> f64 {
        let account = summarise(events);
        let population = population(100, 100, 10_000);
        let (models, config) = (ModelRegistry::default(), DetectorConfig::default());
        Coverage.score(&account, &context(&population, &models, &config, 0))
    }

    #[test]
    fn diverse_never_repeated_single_turn_prompts_are_full_coverage() {
        let events: Vec<_> = (0..300)
            .map(|i| event(i * 60_000, &diverse_prompt(i as usize)))
            .collect();
        let s = score(&events);
        assert!(s > 0.9, "{s}");
    }

    #[test]
    fn a_production_app_with_one_template_and_a_narrow_subject_is_not() {
        // Customer-support summaries: distinct tickets, but the same few products and words.
        let products = ["router", "modem", "printer", "laptop", "charger"];
        let problems = ["overheats", "disconnects", "rattles", "flickers"];
        let events: Vec<_> = (0..600)
            .map(|i| {
                let prompt = format!(
                    "Summarise ticket {}: customer says the {} {} after update {}",
                    10_000 + i,
                    products[i as usize % 5],
                    problems[i as usize % 4],
                    i % 17
                );
                event(i * 30_000, &prompt)
            })
            .collect();
        let s = score(&events);
        assert!(s < 0.1, "{s}");
    }

    #[test]
    fn a_person_who_edits_and_resends_prompts_is_not() {
        let mut events = Vec::new();
        for i in 0..200usize {
            let topic = diverse_prompt(i / 3);
            // Ask, then re-send with a small edit, then ask again verbatim.
            let prompt = match i % 3 {
                0 => topic.clone(),
                1 => format!("{topic} please"),
                _ => topic.clone(),
            };
            events.push(event(i as i64 * 60_000, &prompt));
        }
        let s = score(&events);
        assert!(s < 0.1, "{s}");
    }

    #[test]
    fn multi_turn_conversations_are_not_harvesting() {
        let events: Vec<_> = (0..300)
            .map(|i| {
                let mut e = event(i * 60_000, &diverse_prompt(i as usize));
                e.messages = Some(if i % 2 == 0 { 1 } else { 5 });
                e
            })
            .collect();
        assert!(score(&events) < 0.05);
    }

    /// A Chinese "prompt" on a subject of its own: `k` picks characters no other `k` shares
    /// in the same order.
    fn chinese_prompt(k: usize) -> String {
        const HAN: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党";
        let han: Vec<char> = HAN.chars().collect();
        let mut x = (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) + 1;
        let subject: String = (0..10)
            .map(|_| {
                x ^= x >> 13;
                x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
                han[(x >> 33) as usize % han.len()]
            })
            .collect();
        format!("请一步一步地解释：{subject}")
    }

    #[test]
    fn a_chinese_harvest_on_ever_new_subjects_is_full_coverage_and_one_template_is_not() {
        let events: Vec<_> = (0..300)
            .map(|i| event(i * 60_000, &chinese_prompt(i as usize)))
            .collect();
        let s = score(&events);
        assert!(s > 0.9, "{s}");
        // A support app asking about the same few products in Chinese.
        let products = ["路由器", "打印机", "笔记本电脑", "充电器"];
        let events: Vec<_> = (0..300)
            .map(|i| {
                let prompt = format!(
                    "订单{}：我的{}坏了，怎么办？",
                    10_000 + i,
                    products[i as usize % 4]
                );
                event(i * 60_000, &prompt)
            })
            .collect();
        let s = score(&events);
        assert!(s < 0.1, "{s}");
    }

    #[test]
    fn a_first_sitting_needs_twice_the_prompts_before_the_absence_of_follow_ups_counts() {
        // Two minutes apart: one sitting. Sixteen never-repeated single-turn prompts of five new
        // words each are full coverage for an account with a break behind it, a third of it in
        // a first sitting; thirty-two are full coverage either way.
        let prompt = |i: usize| {
            let w: Vec<String> = (0..5).map(|k| word(5 * i + k)).collect();
            format!(
                "How do {} and {} fit with {}, {} and {}?",
                w[0], w[1], w[2], w[3], w[4]
            )
        };
        let sitting = |n: i64| -> Vec<_> {
            (0..n)
                .map(|i| event(i * 120_000, &prompt(i as usize)))
                .collect()
        };
        let s = score(&sitting(16));
        assert!((0.2..0.4).contains(&s), "{s}");
        let mut two = sitting(16);
        for e in two.iter_mut().skip(8) {
            e.timestamp = e.timestamp.plus_ms(2 * 3_600_000);
        }
        let s = score(&two);
        assert!(s > 0.9, "{s}");
        let s = score(&sitting(32));
        assert!(s > 0.9, "{s}");
    }

    #[test]
    fn a_handful_of_prompts_is_not_enough_evidence() {
        let events: Vec<_> = (0..10)
            .map(|i| event(i * 60_000, &diverse_prompt(i as usize)))
            .collect();
        assert_eq!(score(&events), 0.0);
    }
}
