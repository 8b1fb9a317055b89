//! Judging clusters as one actor and marking their members.
//!
//! A cluster is scored by the same detectors as an account, on its members' combined summary
//! ([`combined_summary`]): forty accounts each sending 170 diverse prompts a day are one actor
//! sending 6,800, and that actor's volume, breadth and rhythm are what the detectors measure.
//! The result is scaled by how strongly the members are linked:
//!
//! ```text
//! strength = mean over members of min(1, strongest link / (2 × link threshold))
//! risk     = combined risk × (LINK_FLOOR + (1 − LINK_FLOOR) × strength)
//! ```
//!
//! so a cluster held together only by links at the threshold needs a clearer combined case.
//! Members flagged on their own also count: once several of them are (at least three and 5 %
//! of the members), the cluster takes the lowest own risk among that many riskiest members
//! ([`corroboration`]): the actor has been caught through several of its accounts.
//! Members of a flagged cluster are flagged too, carry its id, and get a finding if they had none.

use std::collections::BTreeMap;

use super::Scorer;
use crate::detect::combine::DetectorSuite;
use crate::detect::combine::Scores;
use crate::detect::{round4, Context};
use crate::event::AccountId;
use crate::finding::{
    AccountFinding, ClusterFinding, Evidence, FindingUpdate, Measurement, Severity, Signal,
};
use crate::link::{cluster_label, combined_summary, ClusterChange, ClusterView};

/// Share of the combined risk a cluster keeps when its links are only just at the threshold.
const LINK_FLOOR: f64 = 0.7;
/// Members flagged on their own, at least, before their flags stand for the whole cluster ...
const CORROBORATING_MEMBERS: usize = 3;
/// ... and at least this share of its members.
const CORROBORATING_SHARE: f64 = 0.05;
/// A cluster finding's score must move this much (or its severity, flag or members change) to be
/// re-emitted.
const SCORE_STEP: f64 = 0.05;
/// Name of the signal that explains a cluster's links (and a member's membership).
pub const CLUSTER_SIGNAL: &str = "cluster";

pub(super) fn parse_label(label: &str) -> Option<u64> {
    u64::from_str_radix(label.strip_prefix("cl-")?, 16).ok()
}

fn link_strength(view: &ClusterView<'_>, threshold: f64) -> f64 {
    if view.members.is_empty() {
        return 0.0;
    }
    let threshold = threshold.max(1e-6);
    view.members
        .iter()
        .map(|m| (m.best_link / (2.0 * threshold)).min(1.0))
        .sum::<f64>()
        / view.members.len() as f64
}

/// The risk a cluster's members flagged on their own lend it. The members are linked as one
/// actor; a person flagged by mistake is rare and such mistakes are independent between unrelated
/// people, so once several members (at least [`CORROBORATING_MEMBERS`] and
/// [`CORROBORATING_SHARE`] of them) are flagged each on its own evidence, the actor has been
/// caught several times over, and its other accounts are that actor too, however person-like
/// each looks alone. The value is the lowest own risk among that many riskiest members, or 0
/// while fewer are flagged.
fn corroboration(mut risks: Vec<f64>, flag_threshold: f64) -> f64 {
    let needed =
        CORROBORATING_MEMBERS.max((CORROBORATING_SHARE * risks.len() as f64).ceil() as usize);
    risks.sort_by(|a, b| b.total_cmp(a));
    risks
        .get(needed - 1)
        .copied()
        .filter(|risk| *risk >= flag_threshold)
        .unwrap_or(0.0)
}

impl Scorer {
    pub(super) fn judge_clusters(
        &mut self,
        changes: &[ClusterChange],
        context: &Context<'_>,
        updates: &mut Vec<FindingUpdate>,
    ) {
        for change in changes {
            match *change {
                ClusterChange::Updated { id } => self.judge_cluster(id, context, updates),
                ClusterChange::Retired { id, merged_into } => {
                    self.retire_cluster(id, merged_into, updates)
                }
            }
        }
    }

    fn judge_cluster(&mut self, id: u64, context: &Context<'_>, updates: &mut Vec<FindingUpdate>) {
        let Some(view) = self.linker.cluster(id) else {
            return;
        };
        let label = cluster_label(id);
        let combined = combined_summary(&view, context.at);
        let scores = self.cluster_suite.score(&combined, context);
        let strength = link_strength(&view, self.linker.config().link_threshold);
        let combined_risk = scores.risk * (LINK_FLOOR + (1.0 - LINK_FLOOR) * strength);
        let corroborated = corroboration(
            view.members.iter().map(|m| m.risk).collect(),
            self.config.flag_threshold,
        );
        let risk = round4(combined_risk.max(corroborated));
        let flagged_now = risk >= self.config.flag_threshold;
        let members: Vec<String> = view.members.iter().map(|m| m.account.to_string()).collect();
        let reported = self.clusters.contains_key(&id) || risk >= self.config.report_min_score;
        if reported {
            let links = self.linker.link_evidence(&view);
            let old = self.clusters.get(&id);
            // Compared in place: a copy of the old member list per cluster per tick was a
            // visible share of the scorer.
            let (old_score, old_severity, old_flagged, membership_moved) = old
                .map_or((0.0, None, false, true), |f| {
                    (f.score, Some(f.severity), f.flagged, f.members != members)
                });
            let risen = risk - old_score >= SCORE_STEP
                || old_severity.is_none_or(|s| Severity::from_score(risk) > s);
            let moved = (risk - old_score).abs() >= SCORE_STEP
                || old_severity != Some(Severity::from_score(risk));
            let was_new = old.is_none();
            let refresh = was_new
                || membership_moved
                || (flagged_now && !old_flagged)
                || if self.config.findings_keep_peak {
                    risen
                } else {
                    moved
                };
            let mut signals = None;
            if refresh {
                let mut all = vec![links_signal(
                    &view,
                    &links,
                    strength,
                    &combined,
                    self.config.flag_threshold,
                    corroborated > combined_risk,
                )];
                all.extend(self.cluster_suite.signals(&combined, context, &scores));
                signals = Some(all);
            }
            let finding = self.clusters.entry(id).or_insert_with(|| ClusterFinding {
                cluster_id: label.clone(),
                score: risk,
                severity: Severity::from_score(risk),
                flagged: false,
                members: Vec::new(),
                first_flagged_at: None,
                first_seen: combined.first_seen,
                last_seen: combined.last_seen,
                links: Vec::new(),
                signals: Vec::new(),
            });
            let active = finding.last_seen != combined.last_seen;
            finding.first_seen = combined.first_seen;
            finding.last_seen = combined.last_seen;
            finding.members = members;
            // Members' signals name the cluster's link kinds: when the kinds change, the cluster
            // is written too, so the two never disagree in the store.
            let kinds_moved = !same_kinds(&finding.links, &links);
            finding.links = links;
            if let Some(signals) = signals {
                let keep_peak = self.config.findings_keep_peak && !membership_moved;
                if !keep_peak || risk >= finding.score || was_new {
                    finding.score = risk;
                }
                finding.severity = Severity::from_score(finding.score);
                finding.signals = signals;
            }
            if flagged_now && !finding.flagged {
                finding.flagged = true;
                finding.first_flagged_at = Some(combined.last_seen);
            }
            let changed = old_severity != Some(finding.severity)
                || finding.flagged != old_flagged
                || (finding.score - old_score).abs() >= SCORE_STEP
                || membership_moved
                || kinds_moved;
            if changed {
                updates.push(FindingUpdate::Cluster(finding.clone()));
            } else if active {
                self.active_clusters.insert(id);
            }
        }
        mark_members(
            &mut self.findings,
            &mut self.cluster_suite,
            &view,
            self.clusters.get(&id),
            context,
            updates,
        );
    }

    fn retire_cluster(
        &mut self,
        id: u64,
        merged_into: Option<u64>,
        updates: &mut Vec<FindingUpdate>,
    ) {
        let Some(mut finding) = self.clusters.remove(&id) else {
            return;
        };
        let fate = match merged_into {
            Some(survivor) => format!("merged into {}", cluster_label(survivor)),
            None => "its links fell below the threshold or its members went idle".to_owned(),
        };
        for member in std::mem::take(&mut finding.members) {
            let Ok(account) = crate::event::AccountId::parse(member) else {
                continue;
            };
            if self.linker.cluster_of(&account).is_some() {
                continue;
            }
            if let Some(account_finding) = self.findings.get_mut(&account) {
                if account_finding.cluster_id.as_deref() == Some(finding.cluster_id.as_str()) {
                    account_finding.cluster_id = None;
                    updates.push(FindingUpdate::Account(account_finding.clone()));
                }
            }
        }
        // Nothing left to act on: the survivor (if any) carries the flag and the members.
        finding.flagged = false;
        finding.signals.insert(
            0,
            Signal {
                detector: CLUSTER_SIGNAL.to_owned(),
                score: 0.0,
                evidence: Evidence {
                    summary: format!("cluster retired: {fate}"),
                    measurements: Vec::new(),
                },
            },
        );
        updates.push(FindingUpdate::Cluster(finding));
    }
}

/// Members carry the id of their reported cluster; members of a flagged cluster are flagged and
/// get a finding if they had none.
fn mark_members(
    findings: &mut BTreeMap<AccountId, AccountFinding>,
    suite: &mut DetectorSuite,
    view: &ClusterView<'_>,
    cluster: Option<&ClusterFinding>,
    context: &Context<'_>,
    updates: &mut Vec<FindingUpdate>,
) {
    let label = cluster.map(|c| c.cluster_id.clone());
    let flagged = cluster.filter(|c| c.flagged);
    for member in &view.members {
        let finding = match findings.get_mut(member.account) {
            Some(finding) => finding,
            None => {
                let Some(cluster) = flagged else {
                    continue;
                };
                let scores = suite.score(&member.summary, context);
                let finding = member_finding(&member.summary, cluster, &scores, suite, context);
                findings.insert(member.account.clone(), finding.clone());
                updates.push(FindingUpdate::Account(finding));
                continue;
            }
        };
        let moved = finding.cluster_id != label;
        if moved {
            finding.cluster_id.clone_from(&label);
        }
        let mut changed = moved;
        if let Some(cluster) = flagged {
            changed |= join_flagged(finding, cluster, moved);
        }
        if changed {
            updates.push(FindingUpdate::Account(finding.clone()));
        }
    }
}

/// Marks an existing account finding as a member of a flagged cluster (`moved`: it has just
/// joined this one); true if it changed.
fn join_flagged(finding: &mut AccountFinding, cluster: &ClusterFinding, moved: bool) -> bool {
    let mut changed = false;
    let at = cluster.last_seen;
    if !finding.flagged {
        finding.flagged = true;
        finding.first_flagged_at = Some(at);
        changed = true;
    }
    // When it joined its current flagged cluster: a merge moves it into the survivor.
    if finding.clustered_at.is_none() || moved {
        finding.clustered_at = Some(at);
        changed = true;
    }
    if finding.score < cluster.score {
        finding.score = cluster.score;
        finding.severity = Severity::from_score(cluster.score);
        changed = true;
    }
    let signal = membership_signal(cluster);
    match finding
        .signals
        .iter_mut()
        .find(|s| s.detector == CLUSTER_SIGNAL)
    {
        Some(existing) if *existing == signal => {}
        Some(existing) => {
            *existing = signal;
            changed = true;
        }
        None => {
            finding.signals.insert(0, signal);
            changed = true;
        }
    }
    changed
}

fn member_finding(
    summary: &crate::features::AccountSummary,
    cluster: &ClusterFinding,
    scores: &Scores,
    suite: &crate::detect::combine::DetectorSuite,
    context: &Context<'_>,
) -> AccountFinding {
    let mut signals = vec![membership_signal(cluster)];
    signals.extend(suite.signals(summary, context, scores));
    let score = round4(scores.risk.max(cluster.score));
    AccountFinding {
        account_id: summary.account_id.to_string(),
        score,
        severity: Severity::from_score(score),
        flagged: true,
        cluster_id: Some(cluster.cluster_id.clone()),
        first_flagged_at: Some(cluster.last_seen),
        clustered_at: Some(cluster.last_seen),
        end_user: None,
        first_seen: summary.first_seen,
        last_seen: summary.last_seen,
        events: summary.events,
        signals,
        samples: summary.samples.to_vec(),
        activity: Some(crate::finding::HourlyActivity::ending_at(
            context.at,
            &summary.activity,
        )),
    }
}

fn same_kinds(a: &[crate::finding::LinkEvidence], b: &[crate::finding::LinkEvidence]) -> bool {
    fn kinds(links: &[crate::finding::LinkEvidence]) -> Vec<&str> {
        let mut kinds: Vec<&str> = links.iter().map(|l| l.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds
    }
    kinds(a) == kinds(b)
}

fn membership_signal(cluster: &ClusterFinding) -> Signal {
    let kinds: Vec<&str> = cluster.links.iter().map(|l| l.kind.as_str()).collect();
    Signal {
        detector: CLUSTER_SIGNAL.to_owned(),
        score: cluster.score,
        evidence: Evidence {
            summary: format!(
                "member of flagged cluster {} ({} accounts, score {:.2}) linked by {}",
                cluster.cluster_id,
                cluster.members.len(),
                cluster.score,
                kinds.join(", ")
            ),
            measurements: vec![Measurement {
                name: "cluster_score".to_owned(),
                value: cluster.score,
                threshold: None,
                baseline: None,
                window: None,
            }],
        },
    }
}

fn links_signal(
    view: &ClusterView<'_>,
    links: &[crate::finding::LinkEvidence],
    strength: f64,
    combined: &crate::features::AccountSummary,
    flag_threshold: f64,
    corroborated: bool,
) -> Signal {
    let alone = view
        .members
        .iter()
        .filter(|m| m.risk >= flag_threshold)
        .count();
    let shared: Vec<String> = links
        .iter()
        .map(|l| format!("{} ({} members)", l.kind, l.members_sharing))
        .collect();
    let member = |name: &str, value: f64, window: Option<&str>| Measurement {
        name: name.to_owned(),
        value,
        threshold: None,
        baseline: None,
        window: window.map(str::to_owned),
    };
    Signal {
        detector: CLUSTER_SIGNAL.to_owned(),
        score: round4(strength),
        evidence: Evidence {
            summary: format!(
                "{} accounts judged as one actor ({} requests in the last 24 h together), linked by {}; link strength {:.2}{}",
                view.members.len(),
                combined.events_last_24h,
                if shared.is_empty() { "nothing".to_owned() } else { shared.join(", ") },
                strength,
                if corroborated {
                    format!("; {alone} members flagged on their own, so the actor is flagged through them")
                } else {
                    String::new()
                }
            ),
            measurements: vec![
                member("members", view.members.len() as f64, None),
                member("link_strength", round4(strength), None),
                member("events", combined.events as f64, Some("lifetime")),
                member("events_last_24h", combined.events_last_24h as f64, Some("24h")),
                member("members_flagged_alone", alone as f64, None),
            ],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::corroboration;

    #[test]
    fn members_flagged_on_their_own_flag_their_cluster_only_when_several_and_enough_of_them() {
        // Two of ten members flagged alone: two mistakes can meet in one group; nothing lent.
        let two = [0.9, 0.8, 0.2, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(corroboration(two.to_vec(), 0.7), 0.0);
        // Three of ten: the cluster takes the third riskiest member's risk.
        let three = [0.9, 0.8, 0.75, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(corroboration(three.to_vec(), 0.7), 0.75);
        // In a cluster of 200, three are not 5 %: ten are needed.
        let mut big = vec![0.1; 200];
        big[..3].fill(0.9);
        assert_eq!(corroboration(big.clone(), 0.7), 0.0);
        big[..10].fill(0.9);
        assert_eq!(corroboration(big, 0.7), 0.9);
    }
}
