//! The store's vocabulary: what the review API reads and writes.
//!
//! Wall-clock instants (when an analyst acted, when an allowlist entry expires) are
//! `DateTime<Utc>`; detector times are [`EventTime`], taken from the data.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use distillguard_core::finding::{HourlyActivity, LinkEvidence, Severity, Signal};
use distillguard_core::time::EventTime;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Longest accepted subject id, actor name or assignee, in characters (as JSON Schema counts).
pub const MAX_NAME_CHARS: usize = 256;
/// Longest accepted note, allowlist reason or checkpoint key, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Account,
    Cluster,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Account => "account",
            SubjectKind::Cluster => "cluster",
        }
    }
}

impl FromStr for SubjectKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "account" => Ok(SubjectKind::Account),
            "cluster" => Ok(SubjectKind::Cluster),
            other => Err(StoreError::corrupt(format!("subject kind {other:?}"))),
        }
    }
}

/// An account or a cluster, by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    pub kind: SubjectKind,
    pub id: String,
}

impl Subject {
    /// Refuses empty or oversized ids, so they are rejected before reaching SQL.
    pub fn new(kind: SubjectKind, id: impl Into<String>) -> Result<Self, StoreError> {
        let id = id.into();
        check_name("subject id", &id)?;
        Ok(Self { kind, id })
    }

    pub fn account(id: impl Into<String>) -> Result<Self, StoreError> {
        Self::new(SubjectKind::Account, id)
    }

    pub fn cluster(id: impl Into<String>) -> Result<Self, StoreError> {
        Self::new(SubjectKind::Cluster, id)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.id)
    }
}

/// PostgreSQL text cannot hold NUL; refusing it on both backends keeps them answering alike.
fn check_no_nul(what: &str, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(())
}

pub(crate) fn check_name(what: &str, text: &str) -> Result<(), StoreError> {
    check_no_nul(what, text)?;
    if text.trim().is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::InvalidInput(format!(
            "{what} longer than {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_text(what: &str, text: &str) -> Result<(), StoreError> {
    check_no_nul(what, text)?;
    if text.trim().is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(StoreError::InvalidInput(format!(
            "{what} longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

/// Who did something: an analyst's name, or `system` for the service itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    pub fn parse(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        check_name("actor", &name)?;
        Ok(Self(name))
    }

    /// The service itself (reopen rule, finding creation).
    pub fn system() -> Self {
        Self("system".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a finding is in the analysts' workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    Open,
    Investigating,
    Confirmed,
    Dismissed,
}

impl ReviewStatus {
    pub const ALL: [ReviewStatus; 4] = [
        ReviewStatus::Open,
        ReviewStatus::Investigating,
        ReviewStatus::Confirmed,
        ReviewStatus::Dismissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Open => "open",
            ReviewStatus::Investigating => "investigating",
            ReviewStatus::Confirmed => "confirmed",
            ReviewStatus::Dismissed => "dismissed",
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(self, ReviewStatus::Confirmed | ReviewStatus::Dismissed)
    }
}

impl fmt::Display for ReviewStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReviewStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        ReviewStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| StoreError::InvalidInput(format!("unknown status {s:?}")))
    }
}

/// Why a finding was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    TruePositive,
    FalsePositive,
    BenignPositive,
    Duplicate,
    Other,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::TruePositive,
        CloseReason::FalsePositive,
        CloseReason::BenignPositive,
        CloseReason::Duplicate,
        CloseReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TruePositive => "true_positive",
            CloseReason::FalsePositive => "false_positive",
            CloseReason::BenignPositive => "benign_positive",
            CloseReason::Duplicate => "duplicate",
            CloseReason::Other => "other",
        }
    }
}

impl FromStr for CloseReason {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        CloseReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or_else(|| StoreError::InvalidInput(format!("unknown close reason {s:?}")))
    }
}

pub(crate) fn parse_severity(s: &str) -> Result<Severity, StoreError> {
    Severity::ALL
        .into_iter()
        .find(|severity| severity.as_str() == s)
        .ok_or_else(|| StoreError::corrupt(format!("severity {s:?}")))
}

/// The analysts' state of one finding. `version` grows by one with every review change and is
/// what optimistic concurrency compares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewState {
    pub status: ReviewStatus,
    pub assignee: Option<String>,
    pub close_reason: Option<CloseReason>,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// A live allowlist entry as shown on the subject it covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllowlistEntry {
    pub id: i64,
    pub subject: Subject,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// One row of a list: enough to triage without opening the subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingSummary {
    pub subject: Subject,
    pub score: f64,
    pub severity: Severity,
    /// What the engine said, after the allowlist: an allowlisted subject is never flagged.
    pub flagged: bool,
    /// What the engine said before the allowlist was applied.
    pub engine_flagged: bool,
    /// Detectors whose signal reached `StoreOptions::fired_min_score`.
    pub detectors: Vec<String>,
    pub first_seen: EventTime,
    pub last_seen: EventTime,
    pub first_flagged_at: Option<EventTime>,
    pub review: ReviewState,
    /// Why this subject is not flagged although the engine flagged it.
    pub allowlisted: Option<AllowlistEntry>,
    /// Accounts only: the cluster the account belongs to.
    pub cluster_id: Option<String>,
    /// Clusters only: how many accounts it links.
    pub member_count: Option<i64>,
}

/// A kept prompt sample. `text` is present only when the store keeps prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSample {
    pub hash: String,
    pub at: EventTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Everything about one account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountDetail {
    pub summary: FindingSummary,
    pub events: i64,
    /// Each detector's score and evidence.
    pub signals: Vec<Signal>,
    pub samples: Vec<StoredSample>,
    /// Requests per event-time hour before the finding's last update; null for older findings.
    pub activity: Option<HourlyActivity>,
    /// The end user of this shared account whose own traffic the signals judge (a harvest
    /// hidden among a reseller's customers); null when they judge the account as a whole.
    pub end_user: Option<String>,
    pub cluster: Option<FindingSummary>,
}

/// A cluster member with its own finding, when it has one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterMember {
    pub account_id: String,
    pub score: Option<f64>,
    pub severity: Option<Severity>,
    pub flagged: bool,
    pub events: Option<i64>,
}

/// Figures over a cluster's members.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterMetrics {
    pub members: i64,
    pub flagged_members: i64,
    pub max_member_score: Option<f64>,
    pub mean_member_score: Option<f64>,
    pub total_events: i64,
}

/// Everything about one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterDetail {
    pub summary: FindingSummary,
    pub members: Vec<ClusterMember>,
    pub links: Vec<LinkEvidence>,
    pub metrics: ClusterMetrics,
    pub signals: Vec<Signal>,
}

/// List filters; every field narrows the result, `None`/empty means "any".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ListFilter {
    pub status: Vec<ReviewStatus>,
    pub severity: Vec<Severity>,
    pub min_score: Option<f64>,
    pub detector: Option<String>,
    pub flagged: Option<bool>,
    /// Inclusive lower bound on `last_seen`.
    pub since: Option<EventTime>,
    /// Exclusive upper bound on `last_seen`.
    pub until: Option<EventTime>,
    pub assignee: Option<String>,
}

/// List order. `Created` is the only order whose key never changes, so it is the one to use for
/// a complete walk while findings are being re-scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// Highest score first.
    #[default]
    Score,
    /// Most recent activity (event time) first.
    LastSeen,
    /// Oldest finding first.
    Created,
}

impl SortKey {
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Score => "score",
            SortKey::LastSeen => "last_seen",
            SortKey::Created => "created",
        }
    }
}

impl FromStr for SortKey {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        [SortKey::Score, SortKey::LastSeen, SortKey::Created]
            .into_iter()
            .find(|key| key.as_str() == s)
            .ok_or_else(|| StoreError::InvalidInput(format!("unknown sort {s:?}")))
    }
}

/// Largest page the store returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Which page to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRequest {
    pub sort: SortKey,
    /// Clamped to 1..=[`MAX_PAGE_SIZE`]; 0 means 50.
    pub limit: u32,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// One page and the opaque cursor of the next one, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A review change.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRequest {
    pub to: ReviewStatus,
    /// The version the analyst saw; a different current version is a conflict.
    pub expected_version: i64,
    /// Required when closing, refused otherwise.
    pub close_reason: Option<CloseReason>,
    pub assignee: AssigneeChange,
}

/// What a review change does to the assignee.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AssigneeChange {
    #[default]
    Keep,
    Set(String),
    Clear,
}

/// One item of a bulk status change; without a version the current one is taken.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    pub id: String,
    pub expected_version: Option<i64>,
}

/// The outcome of one item of a bulk change.
#[derive(Debug)]
pub struct BulkOutcome {
    pub id: String,
    pub result: Result<ReviewState, StoreError>,
}

/// Largest bulk change accepted in one call.
pub const MAX_BULK_ITEMS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub id: i64,
    pub subject: Subject,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// One entry of a subject's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub subject: Subject,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub action: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Saved detector state and the event time it corresponds to.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub key: String,
    pub data: Vec<u8>,
    pub watermark: Option<EventTime>,
    pub saved_at: DateTime<Utc>,
}

/// The manifest of a committed checkpoint generation (its chunks are numbered `0..chunk_count`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointManifest {
    pub key: String,
    pub generation: i64,
    pub format_version: u16,
    pub chunk_count: u64,
    pub total_bytes: u64,
    pub log_position: Option<u64>,
    pub watermark: Option<EventTime>,
    /// The format's own manifest (opaque to the store).
    pub meta: Vec<u8>,
    pub saved_at: DateTime<Utc>,
}

/// A named event-time watermark (ingest, detection, or a checkpoint's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Watermark {
    pub name: String,
    pub at: EventTime,
    pub updated_at: DateTime<Utc>,
}

/// Finding counts for one subject kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub total: i64,
    pub flagged: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_severity: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub accounts: Counts,
    pub clusters: Counts,
    pub watermarks: Vec<Watermark>,
}

/// What a batch of finding updates did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpsertOutcome {
    pub written: u64,
    /// Older (by `last_seen`) than what is stored: retries and reordering are harmless.
    pub stale: u64,
    /// Refused (non-finite score, bad id); never retried. Their positions in the batch and
    /// why are in `refused`, so the writer can dead-letter them.
    pub invalid: u64,
    pub reopened: u64,
    /// Text values whose NUL characters were replaced by U+FFFD (PostgreSQL text cannot hold
    /// NUL); each such finding also carries a `store` signal saying so.
    pub sanitized: u64,
    #[serde(skip)]
    pub refused: Vec<Refused>,
}

/// One update of a batch the store refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Position in the batch passed to `upsert_findings`.
    pub index: usize,
    pub error: String,
}

/// A finding update the store refused for good, kept for operators instead of blocking the
/// writer (table `dead_letter`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub subject_kind: String,
    pub subject_id: String,
    pub error: String,
    /// The update as JSON text.
    pub payload: String,
    pub at: DateTime<Utc>,
}

/// One pending webhook delivery: an event's exact body and the endpoint (by configured name).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub event_id: i64,
    pub endpoint: String,
    pub event_type: String,
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// A webhook delivery that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDeadLetter {
    pub event_id: i64,
    pub endpoint: String,
    pub event_type: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub failed_at: DateTime<Utc>,
}
