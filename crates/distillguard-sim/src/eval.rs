//! Evaluation maths: a replay [`Report`] against ground-truth [`Labels`].
//!
//! An account counts as detected when the report flags it, or when it is a member of a flagged
//! cluster. Time-to-detect is event time: the moment the account (or its cluster) was first
//! flagged minus the first event of its campaign, as seen in the traffic. `leaked` is the share
//! of a campaign's requests answered before the flag on the account that sent them could reach a
//! gateway: a catch after the harvest got what it came for is not a catch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use distillguard_core::finding::Report;
use distillguard_core::time::EventTime;
use serde::{Deserialize, Serialize};

use crate::labels::{Labels, Verdict, ATTACK_ARCHETYPES, BENIGN_ARCHETYPES};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overall {
    pub accounts: u64,
    pub attack_accounts: u64,
    pub benign_accounts: u64,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub false_positive_rate: f64,
    /// Campaign requests in the traffic (of attack accounts, or of their labelled end users).
    #[serde(default)]
    pub attack_requests: u64,
    /// Share of those answered before the flag on their sender could reach a gateway.
    #[serde(default)]
    pub leaked: Option<f64>,
}

/// One line of the per-archetype table. `rate` is recall for attack archetypes and the
/// false-positive rate for benign ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchetypeRow {
    pub archetype: String,
    pub label: Verdict,
    pub accounts: u64,
    pub flagged: u64,
    pub rate: f64,
    /// Share of the report's flagged accounts that belong to this archetype.
    pub share_of_flagged: f64,
    pub ttd_median_ms: Option<i64>,
    pub ttd_p90_ms: Option<i64>,
    /// Attack archetypes: share of their requests answered before detection.
    #[serde(default)]
    pub leaked: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignRow {
    pub campaign: String,
    pub archetype: String,
    pub accounts: u64,
    pub flagged: u64,
    pub detected: bool,
    pub first_event: Option<EventTime>,
    pub first_flagged_at: Option<EventTime>,
    pub time_to_detect_ms: Option<i64>,
    /// Clusters of the report holding at least one member.
    pub clusters: u64,
    /// Share of the campaign's accounts inside its largest cluster.
    pub largest_cluster_share: Option<f64>,
    /// Share of that cluster's members that belong to the campaign.
    pub largest_cluster_purity: Option<f64>,
    /// Event time from the campaign's first event until [`CLUSTER_SHARE`] of its accounts were
    /// members of that cluster while it was flagged (from the accounts' `clustered_at`); `None`
    /// when the cluster is not flagged or never held that share.
    #[serde(default)]
    pub time_to_cluster_ms: Option<i64>,
    /// The campaign's requests in the traffic.
    #[serde(default)]
    pub requests: u64,
    /// Share of them answered before the flag on their sender could reach a gateway.
    #[serde(default)]
    pub leaked: Option<f64>,
    /// Per account, from its own first request: when it was detected (alone or through its
    /// cluster), and when it joined the flagged cluster it ends in (see [`OwnTimes`]).
    #[serde(default)]
    pub own_detect: OwnTimes,
    #[serde(default)]
    pub own_cluster: OwnTimes,
}

/// Window of the issue-12 goal, measured per account from its own first request.
pub const OWN_WINDOW_MS: i64 = 12 * 3_600_000;

/// Times measured per account from the account's own first request (an account that has sent
/// nothing cannot be caught, so a campaign whose accounts start over days is judged account by
/// account): median and p90 (nearest rank) over the accounts that got there, and the share of
/// all the campaign's accounts that got there within [`OWN_WINDOW_MS`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnTimes {
    pub accounts: u64,
    pub reached: u64,
    pub median_ms: Option<i64>,
    pub p90_ms: Option<i64>,
    pub within_window: Option<f64>,
}

impl OwnTimes {
    fn from(accounts: u64, mut times: Vec<i64>) -> Self {
        times.sort_unstable();
        let within = times.iter().filter(|t| **t <= OWN_WINDOW_MS).count() as u64;
        Self {
            accounts,
            reached: times.len() as u64,
            median_ms: percentile(&times, 50.0),
            p90_ms: percentile(&times, 90.0),
            within_window: (accounts > 0).then(|| ratio(within, accounts)),
        }
    }
}

/// Share of a campaign's accounts its cluster must hold for the campaign to count as found as
/// one cluster.
pub const CLUSTER_SHARE: f64 = 0.9;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    pub clusters: u64,
    pub flagged_clusters: u64,
    /// Member-weighted purity of flagged clusters: members in the cluster's majority group
    /// (a campaign, or "benign") over all members.
    pub flagged_purity: Option<f64>,
    /// Flagged clusters whose majority is benign accounts.
    pub benign_majority_flagged: u64,
    /// Benign accounts inside flagged clusters whose majority is an attack campaign.
    #[serde(default)]
    pub benign_in_attack_clusters: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub events: u64,
    pub late_events: u64,
    pub overall: Overall,
    pub archetypes: Vec<ArchetypeRow>,
    pub campaigns: Vec<CampaignRow>,
    pub clusters: ClusterStats,
    /// Accounts in the report that the labels do not know (counted nowhere else).
    pub unlabelled_accounts: u64,
}

/// When a flag can first act on a request. The engine scores at the end of each tick of event
/// time, once the watermark (the newest event minus the allowed lateness) has passed it, so a
/// flag on an account whose flagging event was at `t` is out at the end of `t`'s tick plus the
/// allowed lateness; every request before that was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagDelay {
    pub tick_ms: i64,
    pub allowed_lateness_ms: i64,
}

impl FlagDelay {
    /// Event time (epoch ms) from which a flag decided on an event at `flagged` acts.
    pub fn acts_from(&self, flagged: EventTime) -> i64 {
        let tick = self.tick_ms.max(1);
        (flagged.epoch_ms().div_euclid(tick) + 1) * tick + self.allowed_lateness_ms.max(0)
    }
}

/// What the evaluation reads from the traffic itself, so that any labelled traffic file can be
/// evaluated, simulated or not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    /// First event of every account (a campaign starts at the earliest of its accounts).
    pub first_events: HashMap<String, EventTime>,
    /// Event times (epoch ms) of every campaign request, per attack account.
    pub campaign_requests: HashMap<String, Vec<i64>>,
}

impl Traffic {
    /// Takes one event of the traffic in; `end_user` matters for accounts whose label names the
    /// attacking end users (a harvester hidden in a reseller's account).
    pub fn observe(
        &mut self,
        labels: &Labels,
        account: &str,
        end_user: Option<&str>,
        at: EventTime,
    ) {
        match self.first_events.get_mut(account) {
            Some(first) => *first = (*first).min(at),
            None => {
                self.first_events.insert(account.to_string(), at);
            }
        }
        let Some(label) = labels.get(account).filter(|l| l.is_attack()) else {
            return;
        };
        if !label.end_users.is_empty()
            && !end_user.is_some_and(|u| label.end_users.iter().any(|e| e == u))
        {
            return;
        }
        match self.campaign_requests.get_mut(account) {
            Some(times) => times.push(at.epoch_ms()),
            None => {
                self.campaign_requests
                    .insert(account.to_string(), vec![at.epoch_ms()]);
            }
        }
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Compares a report with the labels and the traffic it came from.
pub fn evaluate(
    report: &Report,
    labels: &Labels,
    traffic: &Traffic,
    delay: FlagDelay,
) -> Evaluation {
    let detected = detections(report);
    let unlabelled_accounts = detected
        .keys()
        .filter(|id| !labels.contains_key(**id))
        .count() as u64;
    let starts = campaign_starts(labels, &traffic.first_events);
    let leaks = leaks(labels, &detected, traffic, delay);
    let (overall, archetypes, mut campaigns) = account_tables(labels, &detected, &starts, &leaks);
    let clusters = cluster_stats(report, labels, &mut campaigns);
    own_times(
        report,
        labels,
        &detected,
        &traffic.first_events,
        &mut campaigns,
    );
    Evaluation {
        events: report.events,
        late_events: report.late_events,
        overall,
        archetypes,
        campaigns,
        clusters,
        unlabelled_accounts,
    }
}

/// When and whether each account was detected, directly or through a flagged cluster.
fn detections(report: &Report) -> HashMap<&str, Option<EventTime>> {
    let mut flagged_at: HashMap<&str, Option<EventTime>> = HashMap::new();
    for account in report.accounts.iter().filter(|a| a.flagged) {
        flagged_at.insert(account.account_id.as_str(), account.first_flagged_at);
    }
    // A member's own finding says when it was flagged (through the cluster or alone); the
    // cluster's time stands in only when the report has no finding for the member. A cluster's
    // `first_flagged_at` is not used otherwise: its id may have been flagged while it held other
    // accounts (it survives merges and splits).
    for cluster in report.clusters.iter().filter(|c| c.flagged) {
        for member in &cluster.members {
            flagged_at
                .entry(member.as_str())
                .or_insert(cluster.first_flagged_at);
        }
    }
    flagged_at
}

fn campaign_starts<'a>(
    labels: &'a Labels,
    first_events: &HashMap<String, EventTime>,
) -> HashMap<&'a str, EventTime> {
    let mut starts: HashMap<&str, EventTime> = HashMap::new();
    for (id, label) in labels {
        if let (Some(campaign), Some(first)) = (&label.campaign, first_events.get(id)) {
            let slot = starts.entry(campaign.as_str()).or_insert(*first);
            *slot = (*slot).min(*first);
        }
    }
    starts
}

/// Per attack account: (campaign requests, requests answered before its flag acted). An account
/// never detected, or detected at no known time, leaked every request.
fn leaks<'a>(
    labels: &'a Labels,
    detected: &HashMap<&str, Option<EventTime>>,
    traffic: &Traffic,
    delay: FlagDelay,
) -> HashMap<&'a str, (u64, u64)> {
    let mut out = HashMap::new();
    for id in labels
        .iter()
        .filter(|(_, l)| l.is_attack())
        .map(|(id, _)| id)
    {
        let times = traffic
            .campaign_requests
            .get(id)
            .map_or(&[][..], Vec::as_slice);
        let acts_from = detected
            .get(id.as_str())
            .copied()
            .flatten()
            .map(|at| delay.acts_from(at));
        let leaked = match acts_from {
            Some(from) => times.iter().filter(|t| **t < from).count(),
            None => times.len(),
        };
        out.insert(id.as_str(), (times.len() as u64, leaked as u64));
    }
    out
}

type ArchetypeTally = (Verdict, u64, u64, Vec<i64>, (u64, u64));

/// Confusion counts, the per-archetype rows and the campaigns' account columns.
fn account_tables(
    labels: &Labels,
    detected: &HashMap<&str, Option<EventTime>>,
    starts: &HashMap<&str, EventTime>,
    leaks: &HashMap<&str, (u64, u64)>,
) -> (Overall, Vec<ArchetypeRow>, Vec<CampaignRow>) {
    let mut overall = Overall {
        accounts: labels.len() as u64,
        attack_accounts: 0,
        benign_accounts: 0,
        true_positives: 0,
        false_positives: 0,
        false_negatives: 0,
        true_negatives: 0,
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
        false_positive_rate: 0.0,
        attack_requests: 0,
        leaked: None,
    };
    let mut leaked_total = (0u64, 0u64);
    let mut rows: BTreeMap<&str, ArchetypeTally> = BTreeMap::new();
    let mut campaigns: BTreeMap<&str, (CampaignRow, u64)> = BTreeMap::new();
    for (id, label) in labels {
        let when = detected.get(id.as_str());
        let flagged = when.is_some();
        let row =
            rows.entry(label.archetype.as_str())
                .or_insert((label.label, 0, 0, Vec::new(), (0, 0)));
        row.1 += 1;
        row.2 += u64::from(flagged);
        match (label.label, flagged) {
            (Verdict::Attack, true) => overall.true_positives += 1,
            (Verdict::Attack, false) => overall.false_negatives += 1,
            (Verdict::Benign, true) => overall.false_positives += 1,
            (Verdict::Benign, false) => overall.true_negatives += 1,
        }
        let Some(campaign) = &label.campaign else {
            continue;
        };
        let (requests, leaked) = leaks.get(id.as_str()).copied().unwrap_or_default();
        row.4 .0 += requests;
        row.4 .1 += leaked;
        leaked_total.0 += requests;
        leaked_total.1 += leaked;
        let start = starts.get(campaign.as_str()).copied();
        let when = when.copied().flatten();
        if let (Some(start), Some(when)) = (start, when) {
            row.3.push((when.epoch_ms() - start.epoch_ms()).max(0));
        }
        let (entry, entry_leaked) = campaigns
            .entry(campaign.as_str())
            .or_insert_with(|| (new_campaign_row(campaign, &label.archetype, start), 0));
        entry.accounts += 1;
        entry.flagged += u64::from(flagged);
        entry.detected |= flagged;
        entry.requests += requests;
        *entry_leaked += leaked;
        entry.first_flagged_at = match (entry.first_flagged_at, when) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    finish_overall(&mut overall, leaked_total);
    let archetypes = archetype_rows(rows, overall.true_positives + overall.false_positives);
    let campaigns = campaigns
        .into_values()
        .map(|(mut row, leaked)| {
            row.leaked = (row.requests > 0).then(|| ratio(leaked, row.requests));
            row.time_to_detect_ms = match (row.first_event, row.first_flagged_at) {
                (Some(start), Some(flag)) => Some((flag.epoch_ms() - start.epoch_ms()).max(0)),
                _ => None,
            };
            row
        })
        .collect();
    (overall, archetypes, campaigns)
}

fn new_campaign_row(campaign: &str, archetype: &str, start: Option<EventTime>) -> CampaignRow {
    CampaignRow {
        campaign: campaign.to_string(),
        archetype: archetype.to_string(),
        accounts: 0,
        flagged: 0,
        detected: false,
        first_event: start,
        first_flagged_at: None,
        time_to_detect_ms: None,
        clusters: 0,
        largest_cluster_share: None,
        largest_cluster_purity: None,
        time_to_cluster_ms: None,
        requests: 0,
        leaked: None,
        own_detect: OwnTimes::default(),
        own_cluster: OwnTimes::default(),
    }
}

/// Per campaign, the per-account times from each account's own first request: to its detection
/// (its flag, alone or through its cluster, as `leaked` counts it), and to its joining the
/// flagged cluster it is in at the end (its `clustered_at`, which a merge resets to the merge
/// time, so that column is an upper bound).
fn own_times(
    report: &Report,
    labels: &Labels,
    detected: &HashMap<&str, Option<EventTime>>,
    first_events: &HashMap<String, EventTime>,
    campaigns: &mut [CampaignRow],
) {
    let clustered_at: HashMap<&str, EventTime> = report
        .accounts
        .iter()
        .filter_map(|a| Some((a.account_id.as_str(), a.clustered_at?)))
        .collect();
    // Per campaign: (accounts that sent a request, detection times, cluster times).
    let mut per: HashMap<&str, (u64, Vec<i64>, Vec<i64>)> = HashMap::new();
    for (id, label) in labels {
        let (Some(campaign), Some(first)) = (&label.campaign, first_events.get(id)) else {
            continue;
        };
        let entry = per.entry(campaign.as_str()).or_default();
        entry.0 += 1;
        let since = |t: EventTime| (t.epoch_ms() - first.epoch_ms()).max(0);
        if let Some(Some(at)) = detected.get(id.as_str()) {
            entry.1.push(since(*at));
        }
        if let Some(at) = clustered_at.get(id.as_str()) {
            entry.2.push(since(*at));
        }
    }
    for row in campaigns {
        if let Some((accounts, detect, cluster)) = per.remove(row.campaign.as_str()) {
            row.own_detect = OwnTimes::from(accounts, detect);
            row.own_cluster = OwnTimes::from(accounts, cluster);
        }
    }
}

fn finish_overall(overall: &mut Overall, (requests, leaked): (u64, u64)) {
    overall.attack_accounts = overall.true_positives + overall.false_negatives;
    overall.benign_accounts = overall.false_positives + overall.true_negatives;
    overall.precision = ratio(
        overall.true_positives,
        overall.true_positives + overall.false_positives,
    );
    overall.recall = ratio(overall.true_positives, overall.attack_accounts);
    overall.f1 = if overall.precision + overall.recall > 0.0 {
        2.0 * overall.precision * overall.recall / (overall.precision + overall.recall)
    } else {
        0.0
    };
    overall.false_positive_rate = ratio(overall.false_positives, overall.benign_accounts);
    overall.attack_requests = requests;
    overall.leaked = (requests > 0).then(|| ratio(leaked, requests));
}

fn archetype_rows(rows: BTreeMap<&str, ArchetypeTally>, flagged_total: u64) -> Vec<ArchetypeRow> {
    let order: Vec<&str> = BENIGN_ARCHETYPES
        .iter()
        .chain(ATTACK_ARCHETYPES)
        .copied()
        .collect();
    let mut archetypes: Vec<ArchetypeRow> = rows
        .into_iter()
        .map(
            |(archetype, (label, accounts, flagged, mut ttd, (requests, leaked)))| {
                ttd.sort_unstable();
                ArchetypeRow {
                    archetype: archetype.to_string(),
                    label,
                    accounts,
                    flagged,
                    rate: ratio(flagged, accounts),
                    share_of_flagged: ratio(flagged, flagged_total),
                    ttd_median_ms: percentile(&ttd, 50.0),
                    ttd_p90_ms: percentile(&ttd, 90.0),
                    leaked: (requests > 0).then(|| ratio(leaked, requests)),
                }
            },
        )
        .collect();
    archetypes.sort_by_key(|r| {
        (
            order
                .iter()
                .position(|a| *a == r.archetype)
                .unwrap_or(usize::MAX),
            r.archetype.clone(),
        )
    });
    archetypes
}

/// Purity of the flagged clusters, and each campaign's cluster columns.
fn cluster_stats(report: &Report, labels: &Labels, campaigns: &mut [CampaignRow]) -> ClusterStats {
    // Clusters: group each member by campaign, or "benign" when it is benign or unknown.
    let group_of = |member: &str| -> String {
        match labels.get(member) {
            Some(l) => l.campaign.clone().unwrap_or_else(|| "benign".to_string()),
            None => "benign".to_string(),
        }
    };
    let mut clusters = ClusterStats {
        clusters: report.clusters.len() as u64,
        flagged_clusters: 0,
        flagged_purity: None,
        benign_majority_flagged: 0,
        benign_in_attack_clusters: 0,
    };
    let (mut majority_members, mut all_members) = (0u64, 0u64);
    // Per campaign: (members inside, cluster size, cluster index) for every cluster holding some.
    let mut per_campaign: HashMap<String, Vec<(u64, u64, usize)>> = HashMap::new();
    for (index, cluster) in report.clusters.iter().enumerate() {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let members: BTreeSet<&str> = cluster.members.iter().map(String::as_str).collect();
        for member in &members {
            *counts.entry(group_of(member)).or_default() += 1;
        }
        for (group, count) in &counts {
            per_campaign.entry(group.clone()).or_default().push((
                *count,
                members.len() as u64,
                index,
            ));
        }
        if cluster.flagged {
            clusters.flagged_clusters += 1;
            let (majority, count) = counts
                .iter()
                .max_by_key(|(g, c)| (**c, std::cmp::Reverse((*g).clone())))
                .map(|(g, c)| (g.clone(), *c))
                .unwrap_or_default();
            majority_members += count;
            all_members += members.len() as u64;
            if majority == "benign" {
                clusters.benign_majority_flagged += 1;
            } else {
                clusters.benign_in_attack_clusters += counts.get("benign").copied().unwrap_or(0);
            }
        }
    }
    if all_members > 0 {
        clusters.flagged_purity = Some(ratio(majority_members, all_members));
    }
    let clustered_at: HashMap<&str, EventTime> = report
        .accounts
        .iter()
        .filter_map(|a| Some((a.account_id.as_str(), a.clustered_at?)))
        .collect();
    for row in campaigns {
        let Some(found) = per_campaign.get(&row.campaign) else {
            continue;
        };
        row.clusters = found.len() as u64;
        let Some((inside, size, index)) = found
            .iter()
            .max_by_key(|(inside, size, _)| (*inside, std::cmp::Reverse(*size)))
        else {
            continue;
        };
        row.largest_cluster_share = Some(ratio(*inside, row.accounts));
        row.largest_cluster_purity = Some(ratio(*inside, *size));
        let cluster = &report.clusters[*index];
        let mut joined: Vec<i64> = cluster
            .members
            .iter()
            .filter(|m| group_of(m) == row.campaign)
            .filter_map(|m| clustered_at.get(m.as_str()).map(|t| t.epoch_ms()))
            .collect();
        joined.sort_unstable();
        let needed = (CLUSTER_SHARE * row.accounts as f64).ceil() as usize;
        if let (true, Some(start), Some(reached)) = (
            cluster.flagged,
            row.first_event,
            needed.checked_sub(1).and_then(|i| joined.get(i)),
        ) {
            row.time_to_cluster_ms = Some((reached - start.epoch_ms()).max(0));
        }
    }
    clusters
}

/// Quality gates for CI: each set bound that is not met becomes one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub min_recall: Option<f64>,
    pub min_precision: Option<f64>,
    pub min_f1: Option<f64>,
    pub max_fpr: Option<f64>,
    /// Share of campaigns with at least one flagged account.
    pub min_campaigns_detected: Option<f64>,
    /// Per-archetype floor on the row's rate (recall for attacks); ceiling for benign rows.
    pub archetype_rates: Vec<(String, f64)>,
    /// Ceiling on the overall share of campaign requests answered before detection.
    pub max_leaked: Option<f64>,
    /// Per attack archetype: ceiling on the share of its requests answered before detection.
    pub archetype_leaked: Vec<(String, f64)>,
    /// Attack archetypes whose every campaign must be found as one flagged cluster holding
    /// [`CLUSTER_SHARE`] of its accounts, with purity `cluster_min_purity`, within
    /// `cluster_max_time_ms`; naming any also requires no benign account in an attack cluster.
    pub cluster_archetypes: Vec<String>,
    pub cluster_min_purity: f64,
    pub cluster_max_time_ms: i64,
}

pub fn check(evaluation: &Evaluation, thresholds: &Thresholds) -> Vec<String> {
    let mut failures = Vec::new();
    let o = &evaluation.overall;
    let mut floor = |name: &str, value: f64, bound: Option<f64>| {
        if let Some(bound) = bound {
            if value < bound {
                failures.push(format!("{name} {value:.3} is below {bound:.3}"));
            }
        }
    };
    floor("recall", o.recall, thresholds.min_recall);
    floor("precision", o.precision, thresholds.min_precision);
    floor("f1", o.f1, thresholds.min_f1);
    let detected = evaluation.campaigns.iter().filter(|c| c.detected).count() as u64;
    floor(
        "campaigns detected",
        ratio(detected, evaluation.campaigns.len() as u64),
        thresholds.min_campaigns_detected,
    );
    if let Some(bound) = thresholds.max_fpr {
        if o.false_positive_rate > bound {
            failures.push(format!(
                "false-positive rate {:.4} is above {bound:.4}",
                o.false_positive_rate
            ));
        }
    }
    for (archetype, bound) in &thresholds.archetype_rates {
        match evaluation
            .archetypes
            .iter()
            .find(|r| &r.archetype == archetype)
        {
            None => failures.push(format!("archetype {archetype} is not in the labels")),
            Some(row) if row.label == Verdict::Attack && row.rate < *bound => failures.push(
                format!("{archetype} recall {:.3} is below {bound:.3}", row.rate),
            ),
            Some(row) if row.label == Verdict::Benign && row.rate > *bound => {
                failures.push(format!(
                    "{archetype} false-positive rate {:.4} is above {bound:.4}",
                    row.rate
                ))
            }
            Some(_) => {}
        }
    }
    if let (Some(bound), Some(leaked)) = (thresholds.max_leaked, o.leaked) {
        if leaked > bound {
            failures.push(format!("leaked {leaked:.3} is above {bound:.3}"));
        }
    }
    for (archetype, bound) in &thresholds.archetype_leaked {
        match evaluation
            .archetypes
            .iter()
            .find(|r| &r.archetype == archetype)
        {
            None => failures.push(format!("archetype {archetype} is not in the labels")),
            Some(row) => {
                // An archetype that sent no request leaked nothing.
                let leaked = row.leaked.unwrap_or(0.0);
                if leaked > *bound {
                    failures.push(format!(
                        "{archetype} leaked {leaked:.3} is above {bound:.3}"
                    ));
                }
            }
        }
    }
    for archetype in &thresholds.cluster_archetypes {
        let campaigns: Vec<&CampaignRow> = evaluation
            .campaigns
            .iter()
            .filter(|c| &c.archetype == archetype)
            .collect();
        if campaigns.is_empty() {
            failures.push(format!("no {archetype} campaign in the labels"));
        }
        for c in campaigns {
            let found = c.largest_cluster_share.unwrap_or(0.0) >= CLUSTER_SHARE
                && c.largest_cluster_purity.unwrap_or(0.0) >= thresholds.cluster_min_purity;
            match c.time_to_cluster_ms {
                Some(ms) if found && ms <= thresholds.cluster_max_time_ms => {}
                _ => failures.push(format!(
                    "{} was not found as one flagged cluster (share {}, purity {}, time {}; need {CLUSTER_SHARE}, {}, {})",
                    c.campaign,
                    opt_ratio(c.largest_cluster_share),
                    opt_ratio(c.largest_cluster_purity),
                    opt_duration(c.time_to_cluster_ms),
                    thresholds.cluster_min_purity,
                    human_duration(thresholds.cluster_max_time_ms)
                )),
            }
        }
    }
    if !thresholds.cluster_archetypes.is_empty()
        && evaluation.clusters.benign_in_attack_clusters > 0
    {
        failures.push(format!(
            "{} benign accounts are in flagged attack clusters",
            evaluation.clusters.benign_in_attack_clusters
        ));
    }
    failures
}

/// `1h05m`, `12m30s`, `40s`.
pub fn human_duration(ms: i64) -> String {
    let seconds = ms / 1_000;
    let (h, m, s) = (seconds / 3_600, (seconds % 3_600) / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

fn opt_duration(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), human_duration)
}

fn opt_ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// Leaked shares are small numbers that matter: three decimals.
fn opt_share(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// The Markdown tables `eval` prints (and `docs/evaluation.md` quotes).
pub fn render(evaluation: &Evaluation) -> String {
    let mut out = String::new();
    let o = &evaluation.overall;
    out.push_str(&format!(
        "events {}  late {}  accounts {} ({} attack, {} benign)\n\n",
        evaluation.events, evaluation.late_events, o.accounts, o.attack_accounts, o.benign_accounts
    ));
    out.push_str("| archetype | label | accounts | flagged | recall / FPR | leaked | share of flagged | TTD median | TTD p90 |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &evaluation.archetypes {
        let (label, rate) = match row.label {
            Verdict::Attack => ("attack", format!("recall {:.2}", row.rate)),
            Verdict::Benign => ("benign", format!("FPR {:.4}", row.rate)),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.3} | {} | {} |\n",
            row.archetype,
            label,
            row.accounts,
            row.flagged,
            rate,
            opt_share(row.leaked),
            row.share_of_flagged,
            opt_duration(row.ttd_median_ms),
            opt_duration(row.ttd_p90_ms)
        ));
    }
    out.push_str(&format!(
        "\noverall: precision {:.3}  recall {:.3}  F1 {:.3}  FPR {:.4}  leaked {} of {} campaign requests  (TP {} FP {} FN {} TN {})\n\n",
        o.precision, o.recall, o.f1, o.false_positive_rate, opt_share(o.leaked), o.attack_requests, o.true_positives, o.false_positives, o.false_negatives, o.true_negatives
    ));
    out.push_str("| campaign | archetype | accounts | flagged | detected | requests | leaked | time to detect | clusters | largest cluster share | its purity | time to 90% in one flagged cluster |\n");
    out.push_str("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in &evaluation.campaigns {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.campaign,
            c.archetype,
            c.accounts,
            c.flagged,
            if c.detected { "yes" } else { "no" },
            c.requests,
            opt_share(c.leaked),
            opt_duration(c.time_to_detect_ms),
            c.clusters,
            opt_ratio(c.largest_cluster_share),
            opt_ratio(c.largest_cluster_purity),
            opt_duration(c.time_to_cluster_ms)
        ));
    }
    out.push_str(&own_times_table(&evaluation.campaigns));
    let k = &evaluation.clusters;
    out.push_str(&format!(
        "\nclusters: {} ({} flagged), flagged purity {}, flagged with benign majority {}, benign accounts in flagged attack clusters {}\n",
        k.clusters,
        k.flagged_clusters,
        opt_ratio(k.flagged_purity),
        k.benign_majority_flagged,
        k.benign_in_attack_clusters
    ));
    if evaluation.unlabelled_accounts > 0 {
        out.push_str(&format!(
            "warning: {} flagged accounts are not in the labels\n",
            evaluation.unlabelled_accounts
        ));
    }
    out
}

/// Per-account times from each account's own first request, for campaigns with a cluster.
fn own_times_table(campaigns: &[CampaignRow]) -> String {
    let shown: Vec<&CampaignRow> = campaigns.iter().filter(|c| c.clusters > 0).collect();
    if shown.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nper account, from its own first request:\n\n| campaign | accounts | detected median | p90 | within 12 h | in its flagged cluster median | p90 | within 12 h |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in shown {
        let (d, k) = (&c.own_detect, &c.own_cluster);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.campaign,
            d.accounts,
            opt_duration(d.median_ms),
            opt_duration(d.p90_ms),
            opt_ratio(d.within_window),
            opt_duration(k.median_ms),
            opt_duration(k.p90_ms),
            opt_ratio(k.within_window)
        ));
    }
    out
}

#[cfg(test)]
mod tests;
