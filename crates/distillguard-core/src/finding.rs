//! What the engine reports: scored subjects with evidence an analyst can read.

use serde::{Deserialize, Serialize};

use crate::event::AccountId;
use crate::time::EventTime;

/// Coarse urgency derived from the score; alerts and the review queue sort on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Maps a risk score in [0,1] to a severity band.
    pub fn from_score(score: f64) -> Self {
        match score {
            s if s >= 0.9 => Severity::Critical,
            s if s >= 0.75 => Severity::High,
            s if s >= 0.5 => Severity::Medium,
            _ => Severity::Low,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
}

/// One measured quantity behind a signal, with what it was compared to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// The event-time window the value covers, e.g. `24h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// Human-readable explanation of a detector's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Evidence {
    pub summary: String,
    #[serde(default)]
    pub measurements: Vec<Measurement>,
}

/// One detector's opinion about a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub detector: String,
    pub score: f64,
    pub evidence: Evidence,
}

/// A prompt kept as evidence: truncated text and the hash of the full prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplePrompt {
    pub text: String,
    pub hash: String,
    pub at: EventTime,
}

/// Events per event-time hour over the 24 hours before `until` (oldest first), as of the
/// finding's last update: the activity an analyst sees beside the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourlyActivity {
    /// The end of the last hour counted (an hour boundary).
    pub until: EventTime,
    pub events: Vec<u32>,
}

impl HourlyActivity {
    /// The window a summary taken at tick `at` covers: the 24 hours up to the one holding `at`.
    pub fn ending_at(at: EventTime, events: &[u32]) -> Self {
        let hour = (at.epoch_ms() - 1).max(0) / EventTime::HOUR;
        Self {
            until: at.plus_ms((hour + 1) * EventTime::HOUR - at.epoch_ms()),
            events: events.to_vec(),
        }
    }
}

/// The engine's current view of one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountFinding {
    pub account_id: String,
    pub score: f64,
    pub severity: Severity,
    pub flagged: bool,
    pub cluster_id: Option<String>,
    /// Event time of the event that first made this account flagged.
    pub first_flagged_at: Option<EventTime>,
    /// Event time at which the account joined its current flagged cluster (a merge into another
    /// cluster moves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustered_at: Option<EventTime>,
    /// The end user of this (shared) account whose own traffic the score and signals judge, when
    /// that end user scored above the account as a whole (a harvest hidden behind a reseller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    pub first_seen: EventTime,
    pub last_seen: EventTime,
    pub events: u64,
    pub signals: Vec<Signal>,
    #[serde(default)]
    pub samples: Vec<SamplePrompt>,
    /// Requests per hour before the last update (`None` in findings written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<HourlyActivity>,
}

/// Shared evidence between the members of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEvidence {
    pub kind: String,
    pub members_sharing: usize,
    pub weight: f64,
    #[serde(default)]
    pub examples: Vec<String>,
}

/// The engine's current view of a cluster of linked accounts judged as one actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterFinding {
    pub cluster_id: String,
    pub score: f64,
    pub severity: Severity,
    pub flagged: bool,
    pub members: Vec<String>,
    pub first_flagged_at: Option<EventTime>,
    pub first_seen: EventTime,
    pub last_seen: EventTime,
    pub links: Vec<LinkEvidence>,
    pub signals: Vec<Signal>,
}

/// A finding that changed at an event-time tick; the store upserts it by subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FindingUpdate {
    Account(AccountFinding),
    Cluster(ClusterFinding),
}

impl FindingUpdate {
    pub fn severity(&self) -> Severity {
        match self {
            FindingUpdate::Account(a) => a.severity,
            FindingUpdate::Cluster(c) => c.severity,
        }
    }

    pub fn flagged(&self) -> bool {
        match self {
            FindingUpdate::Account(a) => a.flagged,
            FindingUpdate::Cluster(c) => c.flagged,
        }
    }
}

/// The replay report (`docs/report-format.md`): every account and cluster with a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Report {
    pub events: u64,
    pub late_events: u64,
    /// Events refused as too far ahead of the event-time clock (see `Clock`).
    #[serde(default)]
    pub ahead_events: u64,
    pub accounts: Vec<AccountFinding>,
    pub clusters: Vec<ClusterFinding>,
}

impl Report {
    pub fn account(&self, id: &AccountId) -> Option<&AccountFinding> {
        self.accounts.iter().find(|a| a.account_id == id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_bands_follow_the_score() {
        assert_eq!(Severity::from_score(0.1), Severity::Low);
        assert_eq!(Severity::from_score(0.5), Severity::Medium);
        assert_eq!(Severity::from_score(0.8), Severity::High);
        assert_eq!(Severity::from_score(0.95), Severity::Critical);
    }
}
