//! Scores changed accounts once every shard has reported for a tick, then links them and judges
//! the clusters they form ([`clusters`]).

mod clusters;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::detect::combine::{DetectorCount, DetectorSuite, Scores, SuiteCounters};
use crate::detect::{Context, ModelRegistry};
use crate::engine::EngineConfig;
use crate::event::AccountId;
use crate::features::{AccountSummary, EndUserSummary};
use crate::finding::{AccountFinding, ClusterFinding, FindingUpdate, HourlyActivity, Severity};
use crate::link::{Linker, LinkerCheckpoint};
use crate::population::Population;
use crate::shard::ShardReport;
use crate::time::EventTime;

/// A finding's score must rise by this much (or change severity or flag) to be re-emitted.
const SCORE_STEP: f64 = 0.05;
/// The detector whose signal is kept current at every tick (with `events` and `last_seen`), while
/// the score and the other signals keep the finding's worst moment.
const CURRENT_SIGNAL: &str = "volume";

/// The scorer's full state, serialisable for restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScorerCheckpoint {
    pub findings: Vec<AccountFinding>,
    pub population: Population,
    pub models: ModelRegistry,
    pub counters: SuiteCounters,
    pub tracked_by_shard: Vec<usize>,
    pub evicted_total: u64,
    pub pending: Vec<AccountSummary>,
    /// Heavy end users' summaries absorbed with `pending` (absent from checkpoints of older versions).
    #[serde(default)]
    pub pending_end_users: Vec<EndUserSummary>,
    /// Absent in checkpoints written before clustering existed.
    #[serde(default)]
    pub linker: Option<LinkerCheckpoint>,
    #[serde(default)]
    pub clusters: Vec<ClusterFinding>,
}

/// What an account finding judges: the account, or one of its heavy end users on its own.
struct Subject<'a> {
    account: &'a AccountSummary,
    judged: &'a AccountSummary,
    end_user: Option<&'a str>,
}

/// Scores changed accounts once every shard has reported for a tick.
#[derive(Debug)]
pub struct Scorer {
    config: EngineConfig,
    pending: Vec<AccountSummary>,
    pending_end_users: Vec<EndUserSummary>,
    findings: BTreeMap<AccountId, AccountFinding>,
    tracked_by_shard: Vec<usize>,
    evicted_total: u64,
    population: Population,
    models: ModelRegistry,
    suite: DetectorSuite,
    linker: Linker,
    /// Findings dropped because their account left detector state, not yet taken by
    /// [`Scorer::take_forgotten`].
    forgotten: Vec<AccountId>,
    /// Clusters and end users are judged with suites of their own so that the per-detector
    /// metrics keep counting accounts.
    cluster_suite: DetectorSuite,
    end_user_suite: DetectorSuite,
    clusters: BTreeMap<u64, ClusterFinding>,
    /// Subjects whose activity (`events`, `last_seen`, current volume) moved at this tick without
    /// a material change, for [`Scorer::take_activity`]. Transient: cleared every tick.
    active_accounts: BTreeSet<AccountId>,
    active_clusters: BTreeSet<u64>,
}

impl Scorer {
    pub fn new(config: EngineConfig, shard_count: usize) -> Self {
        Self {
            pending: Vec::new(),
            pending_end_users: Vec::new(),
            findings: BTreeMap::new(),
            tracked_by_shard: vec![0; shard_count.max(1)],
            evicted_total: 0,
            population: Population::default(),
            models: ModelRegistry::default(),
            suite: DetectorSuite::new(),
            linker: Linker::new(
                config.linking.clone(),
                config.idle_eviction_ms,
                config.max_tracked_accounts,
            ),
            cluster_suite: DetectorSuite::new(),
            end_user_suite: DetectorSuite::new(),
            clusters: BTreeMap::new(),
            forgotten: Vec::new(),
            active_accounts: BTreeSet::new(),
            active_clusters: BTreeSet::new(),
            config,
        }
    }

    /// Takes one shard's report for the current tick.
    pub fn absorb(&mut self, shard: usize, report: ShardReport) {
        self.evicted_total += report.evicted;
        // The findings map follows detector state: an account the shards forgot (idle, or over
        // the account cap) has its finding forgotten too, so the map is bounded by the account
        // cap. The store keeps the finding; if the account comes back it is judged afresh.
        for id in report.evicted_ids {
            if self.findings.remove(&id).is_some() {
                self.forgotten.push(id);
            }
        }
        // A scorer fed by several detectors numbers their shards one after the other.
        if shard >= self.tracked_by_shard.len() {
            self.tracked_by_shard.resize(shard + 1, 0);
        }
        self.tracked_by_shard[shard] = report.tracked;
        self.population.apply(&report.population);
        for summary in &report.summaries {
            self.models.observe(summary);
        }
        // The first report of a tick is taken as it is: copying a tick's summaries into a fresh
        // list faulted in new pages at every tick at a million accounts.
        if self.pending.is_empty() {
            self.pending = report.summaries;
        } else {
            self.pending.extend(report.summaries);
        }
        self.pending_end_users.extend(report.end_users);
    }

    /// Scores everything absorbed since the last tick and returns the findings that changed.
    pub fn finish_tick(&mut self, at: EventTime) -> Vec<FindingUpdate> {
        self.active_accounts.clear();
        self.active_clusters.clear();
        let pending = std::mem::take(&mut self.pending);
        let mut end_users: BTreeMap<AccountId, Vec<EndUserSummary>> = BTreeMap::new();
        for end_user in std::mem::take(&mut self.pending_end_users) {
            end_users
                .entry(end_user.summary.account_id.clone())
                .or_default()
                .push(end_user);
        }
        // Sort positions, not the (large) summaries themselves.
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.sort_by(|a, b| pending[*a].account_id.cmp(&pending[*b].account_id));
        let view = self
            .population
            .view(self.config.detectors.volume_percentile);
        let detector_config = self.config.detectors.clone();
        let models = std::mem::take(&mut self.models);
        let context = Context {
            at,
            population: &view,
            models: &models,
            config: &detector_config,
        };
        let mut updates = Vec::new();
        // Each summary is moved to the linker once scored (it keeps it as the account's profile).
        let mut pending: Vec<Option<AccountSummary>> = pending.into_iter().map(Some).collect();
        for i in order {
            let summary = pending[i].take().expect("each position is visited once");
            let heavy = end_users.remove(&summary.account_id).unwrap_or_default();
            let (update, risk) = self.score_account(&summary, &heavy, &context);
            if let Some(update) = update {
                updates.push(FindingUpdate::Account(update));
            }
            self.linker.observe(summary, at, risk);
        }
        let changes = self.linker.finish_tick(at);
        self.judge_clusters(&changes, &context, &mut updates);
        self.models = models;
        updates
    }

    /// The account's finding if it changed, and its risk: the higher of the account's own and
    /// that of its riskiest heavy end user, whose traffic then stands as the account's evidence.
    fn score_account(
        &mut self,
        summary: &AccountSummary,
        end_users: &[EndUserSummary],
        context: &Context<'_>,
    ) -> (Option<AccountFinding>, f64) {
        let mut scores = self.suite.score(summary, context);
        let mut subject = Subject {
            account: summary,
            judged: summary,
            end_user: None,
        };
        for end_user in end_users {
            let own = self.end_user_suite.score(&end_user.summary, context);
            if own.risk > scores.risk {
                scores = own;
                subject.judged = &end_user.summary;
                subject.end_user = Some(&end_user.end_user);
            }
        }
        (self.update_account(&subject, context, &scores), scores.risk)
    }

    /// The signals of a finding about `subject`, naming the end user they judge.
    fn signals(
        suite: &DetectorSuite,
        subject: &Subject<'_>,
        context: &Context<'_>,
        scores: &Scores,
    ) -> Vec<crate::finding::Signal> {
        let mut signals = suite.signals(subject.judged, context, scores);
        if let (Some(end_user), Some(combined)) = (subject.end_user, signals.first_mut()) {
            combined.evidence.summary = format!(
                "end user {end_user} judged on its own {} of the account's {} requests: {}",
                subject.judged.events, subject.account.events, combined.evidence.summary
            );
        }
        signals
    }

    fn update_account(
        &mut self,
        subject: &Subject<'_>,
        context: &Context<'_>,
        scores: &Scores,
    ) -> Option<AccountFinding> {
        let summary = subject.account;
        let flagged_now = scores.risk >= self.config.flag_threshold;
        let Some(finding) = self.findings.get_mut(&summary.account_id) else {
            if scores.risk < self.config.report_min_score {
                return None;
            }
            let score = crate::detect::round4(scores.risk);
            let finding = AccountFinding {
                account_id: summary.account_id.to_string(),
                score,
                severity: Severity::from_score(score),
                flagged: flagged_now,
                cluster_id: None,
                first_flagged_at: flagged_now.then_some(summary.last_seen),
                clustered_at: None,
                end_user: subject.end_user.map(str::to_owned),
                first_seen: summary.first_seen,
                last_seen: summary.last_seen,
                events: summary.events,
                signals: Self::signals(&self.suite, subject, context, scores),
                samples: subject.judged.samples.to_vec(),
                activity: Some(HourlyActivity::ending_at(context.at, &summary.activity)),
            };
            self.findings
                .insert(summary.account_id.clone(), finding.clone());
            return Some(finding);
        };
        // Updated in place: an open finding is touched at every tick its account changes, and
        // rebuilding its evidence each time would cost more than scoring.
        let (old_score, old_severity, old_flagged) =
            (finding.score, finding.severity, finding.flagged);
        let active = finding.last_seen != summary.last_seen || finding.events != summary.events;
        finding.first_seen = summary.first_seen;
        finding.last_seen = summary.last_seen;
        finding.events = summary.events;
        finding.activity = Some(HourlyActivity::ending_at(context.at, &summary.activity));
        // By default the finding keeps its worst moment: score, severity and evidence only ever
        // rise, so an analyst sees why it was opened even if the account has since gone quiet.
        // Evidence is rebuilt only on a material change (the same rule that emits an update):
        // formatting it for every small rise would cost more than the scoring.
        let risen = scores.risk - old_score >= SCORE_STEP
            || Severity::from_score(scores.risk) > old_severity;
        let moved = (scores.risk - old_score).abs() >= SCORE_STEP
            || Severity::from_score(scores.risk) != old_severity;
        let newly_flagged = flagged_now && !finding.flagged;
        let refresh = newly_flagged
            || if self.config.findings_keep_peak {
                risen
            } else {
                moved
            };
        if refresh {
            finding.score = crate::detect::round4(scores.risk);
            finding.severity = Severity::from_score(finding.score);
            finding.signals = Self::signals(&self.suite, subject, context, scores);
            finding.samples = subject.judged.samples.to_vec();
            finding.end_user = subject.end_user.map(str::to_owned);
        }
        if flagged_now && !finding.flagged {
            finding.flagged = true;
            finding.first_flagged_at = Some(summary.last_seen);
        }
        // The one way down from a flag: the account's traffic has become a re-run of a bounded
        // prompt set across models (an evaluation lab's second pass; see `detect::rerun`).
        // `first_flagged_at` stays, as the record that it was flagged.
        if finding.flagged && !flagged_now {
            if let Some(note) = crate::detect::rerun::bounded_rerun(subject.judged, context.config)
            {
                finding.flagged = false;
                finding.score = crate::detect::round4(scores.risk);
                finding.severity = Severity::from_score(finding.score);
                finding.signals = Self::signals(&self.suite, subject, context, scores);
                if let Some(combined) = finding.signals.first_mut() {
                    combined.evidence.summary = format!("{note}; {}", combined.evidence.summary);
                }
            }
        }
        let changed = finding.severity != old_severity
            || finding.flagged != old_flagged
            || finding.score - old_score >= SCORE_STEP;
        if changed {
            return Some(finding.clone());
        }
        if active {
            if !refresh {
                self.suite.refresh_signal(
                    CURRENT_SIGNAL,
                    &mut finding.signals,
                    subject.judged,
                    context,
                    scores,
                );
            }
            self.active_accounts.insert(summary.account_id.clone());
        }
        None
    }

    /// The current view of every subject whose activity moved at the last tick but that
    /// `finish_tick` did not return (`emitted`): at most one update per subject per tick, so
    /// that `events`, `last_seen` and the volume evidence a reviewer reads stay current without
    /// a write per event. Empties the set either way; pass `wanted = false` when nothing reads
    /// the findings (replay), so nothing is cloned.
    pub fn take_activity(&mut self, emitted: &[FindingUpdate], wanted: bool) -> Vec<FindingUpdate> {
        let accounts = std::mem::take(&mut self.active_accounts);
        let clusters = std::mem::take(&mut self.active_clusters);
        if !wanted {
            return Vec::new();
        }
        let mut seen_accounts = BTreeSet::new();
        let mut seen_clusters = BTreeSet::new();
        for update in emitted {
            match update {
                FindingUpdate::Account(a) => seen_accounts.insert(a.account_id.as_str()),
                FindingUpdate::Cluster(c) => seen_clusters.insert(c.cluster_id.as_str()),
            };
        }
        let accounts = accounts
            .iter()
            .filter_map(|id| self.findings.get(id))
            .filter(|f| !seen_accounts.contains(f.account_id.as_str()))
            .map(|f| FindingUpdate::Account(f.clone()));
        let clusters = clusters
            .iter()
            .filter_map(|id| self.clusters.get(id))
            .filter(|c| !seen_clusters.contains(c.cluster_id.as_str()))
            .map(|c| FindingUpdate::Cluster(c.clone()));
        accounts.chain(clusters).collect()
    }

    /// Accounts whose findings were forgotten since the last call (they left detector state).
    pub fn take_forgotten(&mut self) -> Vec<AccountId> {
        std::mem::take(&mut self.forgotten)
    }

    /// Account findings held in memory.
    pub fn finding_count(&self) -> usize {
        self.findings.len()
    }

    /// Distinct model names remembered, and names ignored because the registry was full.
    pub fn model_names(&self) -> (usize, u64) {
        (self.models.first_seen.len(), self.models.ignored)
    }

    pub fn tracked_accounts(&self) -> usize {
        self.tracked_by_shard.iter().sum()
    }

    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    pub fn findings(&self) -> impl Iterator<Item = &AccountFinding> {
        self.findings.values()
    }

    /// Open findings of live clusters, by cluster id.
    pub fn cluster_findings(&self) -> impl Iterator<Item = &ClusterFinding> {
        self.clusters.values()
    }

    /// The linker's memory by part (`Linker::memory_breakdown`).
    pub fn linker_memory(&self) -> Vec<(&'static str, usize)> {
        self.linker.memory_breakdown()
    }

    /// Accounts the linker holds.
    pub fn linked_accounts(&self) -> usize {
        self.linker.tracked()
    }

    /// Evaluations and fires per detector (bounded label set: the detector names).
    pub fn detector_counts(&self) -> Vec<DetectorCount> {
        self.suite.counts()
    }

    /// The linker, for a checkpoint streamed in parts ([`Linker::checkpoint_head`]).
    pub fn linker(&self) -> &Linker {
        &self.linker
    }

    /// Everything but the findings and the linker, which a streamed checkpoint writes in chunks
    /// of their own from [`Scorer::findings`] and [`Scorer::linker`] (no copy of either).
    pub fn checkpoint_head(&self) -> ScorerCheckpoint {
        ScorerCheckpoint {
            findings: Vec::new(),
            population: self.population.clone(),
            models: self.models.clone(),
            counters: self.suite.counters(),
            tracked_by_shard: self.tracked_by_shard.clone(),
            evicted_total: self.evicted_total,
            pending: self.pending.clone(),
            pending_end_users: self.pending_end_users.clone(),
            linker: None,
            clusters: self.clusters.values().cloned().collect(),
        }
    }

    pub fn checkpoint(&self) -> ScorerCheckpoint {
        ScorerCheckpoint {
            findings: self.findings.values().cloned().collect(),
            linker: Some(self.linker.checkpoint()),
            ..self.checkpoint_head()
        }
    }

    pub fn restore(config: EngineConfig, checkpoint: ScorerCheckpoint) -> Self {
        let mut scorer = Scorer::new(config, checkpoint.tracked_by_shard.len());
        scorer.findings = checkpoint
            .findings
            .into_iter()
            .filter_map(|f| Some((AccountId::parse(f.account_id.clone()).ok()?, f)))
            .collect();
        scorer.population = checkpoint.population;
        scorer.models = checkpoint.models;
        scorer.suite.restore_counters(&checkpoint.counters);
        scorer.tracked_by_shard = checkpoint.tracked_by_shard;
        scorer.evicted_total = checkpoint.evicted_total;
        scorer.pending = checkpoint.pending;
        scorer.pending_end_users = checkpoint.pending_end_users;
        if let Some(linker) = checkpoint.linker {
            scorer.linker = Linker::restore(
                scorer.config.linking.clone(),
                scorer.config.idle_eviction_ms,
                scorer.config.max_tracked_accounts,
                linker,
            );
        }
        scorer.clusters = checkpoint
            .clusters
            .into_iter()
            .filter_map(|c| Some((clusters::parse_label(&c.cluster_id)?, c)))
            .collect();
        scorer
    }
}
