//! A cluster judged as one actor: its members' summaries combined, and the evidence its links
//! rest on.

use std::collections::BTreeMap;

use super::clusters::{cluster_label, ClusterView, Member};
use super::features::{ip_keys, subnet_label, FeatureKey};
use super::{LinkKind, Linker};
use crate::event::AccountId;
use crate::features::{herdan, AccountSummary, ModelUse, SharedSamples, VocabularyCounter};
use crate::finding::{LinkEvidence, SamplePrompt};
use crate::time::EventTime;

/// Sample prompts a cluster keeps as evidence, one per member, riskiest members first.
const CLUSTER_SAMPLES: usize = 5;
/// Example values listed per link kind.
const EXAMPLES: usize = 3;

/// The entries of one kind in values sorted by key (kind first).
fn of_kind(values: &[(FeatureKey, usize)], kind: LinkKind) -> &[(FeatureKey, usize)] {
    let start = values.partition_point(|(k, _)| k.kind < kind);
    let end = start + values[start..].partition_point(|(k, _)| k.kind == kind);
    &values[start..end]
}

/// Each value two or more members hold with the number holding it, in key order (kind first):
/// the entries of a tree map of counts, from one sort instead of a tree insert per key. Values
/// one member holds alone are left out: no reader shows them, and most of a cluster's keys are
/// such (each member's own addresses and prompt bands).
fn shared_counts(mut keys: Vec<FeatureKey>) -> Vec<(FeatureKey, usize)> {
    keys.sort_unstable();
    let mut values = Vec::new();
    for run in keys.chunk_by(|a, b| a == b) {
        if run.len() >= 2 {
            values.push((run[0], run.len()));
        }
    }
    values
}

/// A summary's hourly activity re-aligned to end at the hour of `at` (hours it has not seen yet
/// are zero, hours that fell out of the window are dropped).
pub(crate) fn activity_at(activity: &[u32; 24], made_at: EventTime, at: EventTime) -> [f64; 24] {
    let hour = |t: EventTime| (t.epoch_ms() - 1).max(0) / EventTime::HOUR;
    let shift = (hour(at) - hour(made_at)).clamp(0, 24) as usize;
    let mut out = [0.0; 24];
    for (i, value) in activity.iter().enumerate().skip(shift) {
        out[i - shift] = f64::from(*value);
    }
    out
}

/// An hourly vector with its Euclidean norm: relinking compares one account's with dozens of
/// others in a tick, and the norm is taken once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Normed {
    values: [f64; 24],
    norm: f64,
}

impl Normed {
    pub fn new(values: [f64; 24]) -> Self {
        let norm = values.iter().map(|x| x * x).sum::<f64>().sqrt();
        Self { values, norm }
    }
}

/// Cosine similarity, 0 when either vector is zero.
pub(crate) fn cosine_normed(a: &Normed, b: &Normed) -> f64 {
    let dot: f64 = a.values.iter().zip(&b.values).map(|(x, y)| x * y).sum();
    let denominator = a.norm * b.norm;
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Sums per key of the members' top skeleton keys, the three largest first.
fn merged_keys<'a>(lists: impl Iterator<Item = &'a [(u64, u32)]>) -> Vec<(u64, u32)> {
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for list in lists {
        for (key, count) in list {
            *counts.entry(*key).or_default() += count;
        }
    }
    let mut merged: Vec<(u64, u32)> = counts.into_iter().collect();
    merged.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    merged.truncate(3);
    merged
}

/// The cluster as one account: counts add up, activity vectors add up once aligned to `at`,
/// per-account habits (quiet gaps, regularity) are the members' medians, vocabulary richness is
/// their word-weighted mean. Adding distinct prompts treats the members' prompt sets as
/// disjoint, which is what a task list sharded over accounts looks like; members re-asking each
/// other's questions are not seen as repeats (see `docs/detectors.md`).
pub fn combined_summary(cluster: &ClusterView<'_>, at: EventTime) -> AccountSummary {
    let members = &cluster.members;
    let sum = |f: fn(&AccountSummary) -> u64| members.iter().map(|m| f(&m.summary)).sum::<u64>();
    let mut activity = [0u32; 24];
    let mut hour_of_day = [0u32; 24];
    let (mut last_hour, mut tokens_day, mut tokens_hour) = (0u64, 0u64, 0u64);
    for member in members {
        let aligned = activity_at(&member.summary.activity, member.summary_at, at);
        for (slot, value) in activity.iter_mut().zip(aligned) {
            *slot = slot.saturating_add(value as u32);
        }
        for (slot, value) in hour_of_day.iter_mut().zip(member.summary.hour_of_day) {
            *slot = slot.saturating_add(value);
        }
        let age = at.epoch_ms() - member.summary_at.epoch_ms();
        if age < EventTime::DAY {
            tokens_day += member.summary.completion_tokens_last_24h;
        }
        if age < EventTime::HOUR {
            tokens_hour += member.summary.completion_tokens_last_hour;
        }
        last_hour += aligned[22..].iter().sum::<f64>() as u64;
    }
    let (mut richness_sum, mut richness_words) = members
        .iter()
        .filter_map(|m| {
            m.summary
                .vocabulary_richness
                .map(|r| (r * m.summary.subject_words as f64, m.summary.subject_words))
        })
        .fold((0.0, 0u64), |(s, w), (r, n)| (s + r, w + n));
    // Members too young for a richness of their own are measured together, over the union of
    // their words (not assumed disjoint: a shared vocabulary lowers it).
    let mut young = VocabularyCounter::default();
    let mut young_words = 0u64;
    for member in members {
        if let Some(counter) = &member.summary.young_vocabulary {
            young.union(counter);
            young_words += member.summary.subject_words;
        }
    }
    if let Some(c) = herdan(young.estimate(), young_words) {
        richness_sum += c * young_words as f64;
        richness_words += young_words;
    }
    let mut models: BTreeMap<String, ModelUse> = BTreeMap::new();
    for model in members.iter().flat_map(|m| &m.summary.models) {
        models
            .entry(model.model.as_str().to_owned())
            .and_modify(|merged| {
                merged.first_used = merged.first_used.min(model.first_used);
                merged.events += model.events;
                merged.recent_weight += model.recent_weight;
            })
            .or_insert_with(|| model.clone());
    }
    let mut system_prompts: Vec<u64> = members
        .iter()
        .flat_map(|m| m.summary.system_prompts.first().copied())
        .collect();
    system_prompts.sort_unstable();
    system_prompts.dedup();
    system_prompts.truncate(3);
    AccountSummary {
        account_id: AccountId::parse(cluster_label(cluster.id))
            .expect("cluster labels are valid ids"),
        first_seen: members
            .iter()
            .map(|m| m.summary.first_seen)
            .min()
            .unwrap_or(at),
        last_seen: members
            .iter()
            .map(|m| m.summary.last_seen)
            .max()
            .unwrap_or(at),
        events: sum(|s| s.events),
        events_last_24h: activity.iter().map(|v| u64::from(*v)).sum(),
        events_last_hour: last_hour,
        completion_tokens: sum(|s| s.completion_tokens),
        completion_tokens_last_24h: tokens_day,
        completion_tokens_last_hour: tokens_hour,
        prompt_tokens: sum(|s| s.prompt_tokens),
        reasoning_tokens: sum(|s| s.reasoning_tokens),
        completion_known: sum(|s| s.completion_known),
        activity,
        hour_of_day,
        quiet_gap_median_hours: median(
            members
                .iter()
                .filter_map(|m| m.summary.quiet_gap_median_hours)
                .collect(),
        ),
        quiet_days: median(
            members
                .iter()
                .map(|m| f64::from(m.summary.quiet_days))
                .collect(),
        )
        .unwrap_or(0.0) as u32,
        gap_cv: median(members.iter().filter_map(|m| m.summary.gap_cv).collect()),
        gaps: sum(|s| s.gaps),
        late_in_sitting: sum(|s| s.late_in_sitting),
        prompts: sum(|s| s.prompts),
        distinct_prompts: sum(|s| s.distinct_prompts),
        vocabulary_richness: (richness_words > 0).then(|| richness_sum / richness_words as f64),
        subject_words: sum(|s| s.subject_words),
        young_vocabulary: None,
        skeleton_prefixes: merged_keys(
            members
                .iter()
                .map(|m| m.summary.skeleton_prefixes.as_slice()),
        ),
        skeleton_suffixes: merged_keys(
            members
                .iter()
                .map(|m| m.summary.skeleton_suffixes.as_slice()),
        ),
        exact_repeats: sum(|s| s.exact_repeats),
        near_repeats: sum(|s| s.near_repeats),
        turns_known: sum(|s| s.turns_known),
        single_turn: sum(|s| s.single_turn),
        reasoning_prompts: sum(|s| s.reasoning_prompts),
        reasoning_system: sum(|s| s.reasoning_system),
        system_prompts,
        logprobs: sum(|s| s.logprobs),
        multi_sample: sum(|s| s.multi_sample),
        large_max_tokens: sum(|s| s.large_max_tokens),
        temperature_zero: sum(|s| s.temperature_zero),
        distribution_requests: sum(|s| s.distribution_requests),
        distribution_alternatives: sum(|s| s.distribution_alternatives),
        opener_repeats: sum(|s| s.opener_repeats),
        task_resends: sum(|s| s.task_resends),
        deep_turns: sum(|s| s.deep_turns),
        models: models.into_values().collect(),
        client_ips: Vec::new(),
        distinct_ips: sum(|s| s.distinct_ips),
        ip_sample: Vec::new(),
        subnet_sample: Vec::new(),
        content_sample: Vec::new(),
        user_agents: Vec::new(),
        distinct_user_agents: sum(|s| s.distinct_user_agents),
        user_agent: None,
        end_user_events: sum(|s| s.end_user_events),
        distinct_end_users: sum(|s| s.distinct_end_users),
        payment_fingerprint: None,
        // Creation is a fact about one account (the linker joins its members' creation
        // windows); the combined actor has none, so no detector reads a cluster as brand new.
        account_created_at: None,
        samples: SharedSamples::new(cluster_samples(members)),
    }
}

fn cluster_samples(members: &[Member<'_>]) -> Vec<SamplePrompt> {
    let mut by_risk: Vec<&Member<'_>> = members.iter().collect();
    by_risk.sort_by(|a, b| b.risk.total_cmp(&a.risk).then(a.account.cmp(b.account)));
    by_risk
        .into_iter()
        .filter_map(|m| m.summary.samples.first().cloned())
        .take(CLUSTER_SAMPLES)
        .collect()
}

/// A readable value for one feature key, found among the members holding it.
fn example(
    kind: LinkKind,
    key: &FeatureKey,
    members: &[Member<'_>],
    created_window_ms: i64,
) -> Option<String> {
    match kind {
        LinkKind::Payment => members
            .iter()
            .filter_map(|m| m.summary.payment_fingerprint.as_deref())
            .find(|p| crate::sketch::hash::fast_hash(p.as_bytes()) == key.value)
            .map(str::to_owned),
        LinkKind::ClientIp | LinkKind::Subnet => members
            .iter()
            .flat_map(|m| &m.summary.client_ips)
            .find(|ip| ip_keys(ip).contains(key))
            .map(|ip| {
                if kind == LinkKind::Subnet {
                    subnet_label(ip)
                } else {
                    ip.to_string()
                }
            }),
        LinkKind::UserAgent => members
            .iter()
            .find(|m| m.summary.user_agents.first() == Some(&key.value))
            .and_then(|m| m.summary.user_agent.clone()),
        LinkKind::SystemPrompt => Some(format!("system prompt #{:016x}", key.value)),
        LinkKind::Skeleton => Some(format!("prompt skeleton #{:016x}", key.value)),
        LinkKind::Created => EventTime::from_epoch_ms(key.value as i64 * created_window_ms.max(1))
            .ok()
            .map(|t| format!("created in the window starting {t}")),
        LinkKind::NearDuplicate => {
            Some(format!("near-duplicate prompts (band #{:016x})", key.value))
        }
        LinkKind::SharedTail => Some(format!("instruction tail #{:016x}", key.value)),
        LinkKind::Lockstep | LinkKind::ProxyPool | LinkKind::LengthRegime | LinkKind::Behaviour => {
            None
        }
    }
}

impl Linker {
    /// "31 members share 212 sampled addresses; none of them was used by more than 9 other
    /// accounts": how a proxy pool reads to an analyst. Addresses are counted in the members'
    /// bottom-k samples, so the count is a lower bound on the addresses they share.
    fn pool_example(&self, members_sharing: usize, values: &[(FeatureKey, usize)]) -> String {
        let (shared, busiest) = self.shared_values(LinkKind::ClientIp, values);
        format!(
            "{members_sharing} members hop over many networks and share {shared} sampled client addresses; \
             none of those addresses was used by more than {busiest} accounts outside the one holding it"
        )
    }

    /// The same for content: "12 members share 40 sampled near-duplicate prompt bands; none held
    /// by more than 3 accounts outside the one holding it".
    fn content_example(
        &self,
        kind: LinkKind,
        members_sharing: usize,
        values: &[(FeatureKey, usize)],
    ) -> String {
        let (shared, busiest) = self.shared_values(kind, values);
        let what = match kind {
            LinkKind::NearDuplicate => "sampled near-duplicate prompt bands (MinHash LSH)",
            _ => "instruction tails closing their prompts",
        };
        format!(
            "{members_sharing} members share {shared} {what}; none of them was held by more than \
             {busiest} accounts outside the one holding it"
        )
    }

    /// Values of `kind` held by two or more members, and the most other accounts holding any.
    fn shared_values(&self, kind: LinkKind, values: &[(FeatureKey, usize)]) -> (usize, u32) {
        let shared: Vec<&FeatureKey> = of_kind(values, kind)
            .iter()
            .filter(|(_, n)| *n >= 2)
            .map(|(k, _)| k)
            .collect();
        let busiest = shared
            .iter()
            .filter_map(|k| self.posting(k))
            .map(|p| p.holders())
            .max()
            .unwrap_or(0);
        (shared.len(), busiest.saturating_sub(1))
    }

    /// What the cluster's links rest on: per kind, how many members share a value of that kind
    /// with another member, the weight of the most shared value, and example values.
    pub fn link_evidence(&self, cluster: &ClusterView<'_>) -> Vec<LinkEvidence> {
        let Some(state) = self.clusters.get(&cluster.id) else {
            return Vec::new();
        };
        let mut sharing = [0usize; super::features::KINDS];
        let mut keys: Vec<FeatureKey> = Vec::new();
        for member in &state.members {
            let node = self.node(*member);
            let mut mask = 0u16;
            for link in node
                .links
                .iter()
                .filter(|l| self.node(l.other).cluster == Some(cluster.id))
            {
                mask |= link.kinds;
            }
            for kind in LinkKind::ALL {
                if mask & (1 << kind as u16) != 0 {
                    sharing[kind as usize] += 1;
                }
            }
            keys.extend(node.features.iter());
        }
        let values = shared_counts(keys);
        let mut evidence = Vec::new();
        for kind in LinkKind::ALL {
            let members_sharing = sharing[kind as usize];
            if members_sharing == 0 {
                continue;
            }
            // The kind's values shared by two or more members, most shared first.
            let mut shared: Vec<(&FeatureKey, usize)> = of_kind(&values, kind)
                .iter()
                .filter(|(_, n)| *n >= 2)
                .map(|(k, n)| (k, *n))
                .collect();
            shared.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let weight = match (kind, shared.first()) {
                (LinkKind::Lockstep, _) => self.config.weights.lockstep,
                (LinkKind::ProxyPool, _) => self.config.weights.proxy_pool,
                (LinkKind::LengthRegime, _) => self.config.weights.length_regime,
                (LinkKind::Behaviour, _) => self.config.weights.behaviour,
                (_, Some((key, _))) => self
                    .posting(key)
                    .map_or(0.0, |p| self.config.rarity_weight(kind, p.holders())),
                (_, None) => 0.0,
            };
            let examples = if kind == LinkKind::Lockstep {
                vec![format!(
                    "{members_sharing} members active in the same hours of the last day (cosine ≥ {})",
                    self.config.lockstep_similarity
                )]
            } else if kind == LinkKind::ProxyPool {
                vec![self.pool_example(members_sharing, &values)]
            } else if matches!(kind, LinkKind::NearDuplicate | LinkKind::SharedTail) {
                vec![self.content_example(kind, members_sharing, &values)]
            } else if kind == LinkKind::LengthRegime {
                vec![format!(
                    "{members_sharing} members prompt and are answered at the same lengths (means within ×{}), on links that hold without it",
                    self.config.length_ratio
                )]
            } else if kind == LinkKind::Behaviour {
                vec![format!(
                    "{members_sharing} members keep the same hours of the day (cosine ≥ {}) and session shape, on links that hold without it",
                    self.config.behaviour_similarity
                )]
            } else {
                shared
                    .iter()
                    .take(EXAMPLES)
                    .filter_map(|(key, n)| {
                        example(kind, key, &cluster.members, self.config.creation_window_ms)
                            .map(|value| format!("{value} ({n} members)"))
                    })
                    .collect()
            };
            evidence.push(LinkEvidence {
                kind: kind.as_str().to_owned(),
                members_sharing,
                weight: crate::detect::round4(weight),
                examples,
            });
        }
        evidence.sort_by(|a, b| {
            b.members_sharing
                .cmp(&a.members_sharing)
                .then(a.kind.cmp(&b.kind))
        });
        evidence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counts_are_a_tree_maps_counts_without_the_values_one_member_holds() {
        let keys: Vec<FeatureKey> = (0..500u64)
            .map(|i| FeatureKey {
                kind: LinkKind::ALL[(i % 7) as usize * 2 % LinkKind::ALL.len()],
                value: crate::sketch::mix64(i % 97) % 50,
            })
            .collect();
        let mut tree: BTreeMap<FeatureKey, usize> = BTreeMap::new();
        for key in &keys {
            *tree.entry(*key).or_default() += 1;
        }
        assert!(tree.values().any(|n| *n == 1) && tree.values().any(|n| *n >= 2));
        let expected: Vec<(FeatureKey, usize)> =
            tree.into_iter().filter(|(_, n)| *n >= 2).collect();
        assert_eq!(shared_counts(keys), expected);
    }
}
