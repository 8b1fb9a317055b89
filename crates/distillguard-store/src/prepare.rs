//! Checking engine updates before they are written (the SQL is in `sql_write`): invalid ones
//! are refused, NUL characters are replaced (noted in the evidence), prompt text is dropped
//! unless kept, fired detectors are named, and a batch keeps one update per subject.

use std::collections::BTreeSet;

use distillguard_core::finding::{
    AccountFinding, ClusterFinding, Evidence, FindingUpdate, HourlyActivity, LinkEvidence,
    Measurement, Severity, Signal,
};
use serde_json::json;

use crate::error::StoreError;
use crate::model::{check_name, StoredSample, Subject, SubjectKind};

pub(crate) fn severity_rank(severity: Severity) -> i32 {
    match severity {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
        Severity::Critical => 3,
    }
}

pub(crate) enum Profile {
    Account {
        cluster_id: Option<String>,
        events: i64,
        samples: Vec<StoredSample>,
        activity: Option<HourlyActivity>,
        /// The end user the finding judges, for a shared account.
        end_user: Option<String>,
    },
    Cluster {
        links: Vec<LinkEvidence>,
        members: BTreeSet<String>,
    },
}

/// A checked update, ready for SQL.
pub(crate) struct Prepared {
    pub subject: Subject,
    pub score: f64,
    pub severity: Severity,
    pub engine_flagged: bool,
    pub detectors: Vec<String>,
    pub signals: Vec<Signal>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub first_flagged_at_ms: Option<i64>,
    pub profile: Profile,
    /// NUL characters replaced in this update's text.
    pub sanitized: u64,
}

impl Prepared {
    /// The summary written into audit entries.
    pub fn audit_view(&self) -> serde_json::Value {
        json!({
            "score": self.score,
            "severity": self.severity,
            "flagged": self.engine_flagged,
            "detectors": self.detectors,
            // RFC 3339, like every other timestamp the API and the audit trail show.
            "last_seen": distillguard_core::time::EventTime::from_epoch_ms(self.last_seen_ms)
                .map_or_else(|_| self.last_seen_ms.to_string(), |t| t.to_string()),
        })
    }
}

fn checked_score(score: f64) -> Result<f64, StoreError> {
    if !score.is_finite() || !(0.0..=1.0).contains(&score) {
        return Err(StoreError::InvalidInput(format!(
            "score {score} outside [0,1]"
        )));
    }
    Ok(score)
}

fn fired(signals: &[Signal], fired_min_score: f64) -> Vec<String> {
    let names: BTreeSet<String> = signals
        .iter()
        .filter(|s| s.score >= fired_min_score)
        .map(|s| s.detector.clone())
        .collect();
    names.into_iter().collect()
}

/// What replaces a NUL character in stored text.
pub(crate) const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The detector name of the signal that notes a sanitised finding.
pub(crate) const SANITIZED_SIGNAL: &str = "store";

/// Replaces NUL characters, counting them. PostgreSQL `text` and `jsonb` cannot hold NUL
/// ("unsupported Unicode escape sequence"), and one such value used to fail the writer's whole
/// batch forever; SQLite gets the same text so both backends store the same findings.
#[derive(Default)]
struct Scrub {
    replaced: u64,
}

impl Scrub {
    fn text(&mut self, text: &str) -> String {
        if !text.contains('\0') {
            return text.to_string();
        }
        self.replaced += text.matches('\0').count() as u64;
        text.replace('\0', &NUL_REPLACEMENT.to_string())
    }

    fn opt(&mut self, text: &Option<String>) -> Option<String> {
        text.as_deref().map(|t| self.text(t))
    }

    fn signals(&mut self, signals: &[Signal]) -> Vec<Signal> {
        let mut scrubbed: Vec<Signal> = signals
            .iter()
            .map(|s| Signal {
                detector: self.text(&s.detector),
                score: s.score,
                evidence: Evidence {
                    summary: self.text(&s.evidence.summary),
                    measurements: s
                        .evidence
                        .measurements
                        .iter()
                        .map(|m| Measurement {
                            name: self.text(&m.name),
                            window: self.opt(&m.window),
                            ..m.clone()
                        })
                        .collect(),
                },
            })
            .collect();
        self.note(&mut scrubbed);
        scrubbed
    }

    /// Says in the evidence that stored text differs from what the engine saw. Score 0, so it
    /// never counts as a fired detector.
    fn note(&self, signals: &mut Vec<Signal>) {
        if self.replaced == 0 {
            return;
        }
        signals.push(Signal {
            detector: SANITIZED_SIGNAL.to_string(),
            score: 0.0,
            evidence: Evidence {
                summary: format!(
                    "{} NUL character(s) in this finding's text (ids, evidence, samples) were \
                     replaced by U+FFFD before storing",
                    self.replaced
                ),
                measurements: vec![Measurement {
                    name: "nul_characters_replaced".to_string(),
                    value: self.replaced as f64,
                    threshold: None,
                    baseline: None,
                    window: None,
                }],
            },
        });
    }
}

/// Checks one update, replaces NUL characters and strips prompt text unless prompts are kept.
pub(crate) fn prepare(
    update: &FindingUpdate,
    keep_prompts: bool,
    fired_min_score: f64,
) -> Result<Prepared, StoreError> {
    match update {
        FindingUpdate::Account(a) => prepare_account(a, keep_prompts, fired_min_score),
        FindingUpdate::Cluster(c) => prepare_cluster(c, fired_min_score),
    }
}

fn prepare_account(
    a: &AccountFinding,
    keep_prompts: bool,
    fired_min_score: f64,
) -> Result<Prepared, StoreError> {
    let mut scrub = Scrub::default();
    let account_id = scrub.text(&a.account_id);
    let cluster_id = scrub.opt(&a.cluster_id);
    if let Some(cluster) = &cluster_id {
        check_name("cluster id", cluster)?;
    }
    let samples = a
        .samples
        .iter()
        .map(|s| StoredSample {
            hash: scrub.text(&s.hash),
            at: s.at,
            text: keep_prompts.then(|| scrub.text(&s.text)),
        })
        .collect();
    let signals = scrub.signals(&a.signals);
    Ok(Prepared {
        subject: Subject::new(SubjectKind::Account, account_id)?,
        score: checked_score(a.score)?,
        severity: a.severity,
        engine_flagged: a.flagged,
        detectors: fired(&signals, fired_min_score),
        signals,
        first_seen_ms: a.first_seen.epoch_ms(),
        last_seen_ms: a.last_seen.epoch_ms(),
        first_flagged_at_ms: a.first_flagged_at.map(|t| t.epoch_ms()),
        profile: Profile::Account {
            cluster_id,
            events: i64::try_from(a.events).unwrap_or(i64::MAX),
            samples,
            activity: a.activity.clone(),
            end_user: scrub.opt(&a.end_user),
        },
        sanitized: scrub.replaced,
    })
}

fn prepare_cluster(c: &ClusterFinding, fired_min_score: f64) -> Result<Prepared, StoreError> {
    let mut scrub = Scrub::default();
    let cluster_id = scrub.text(&c.cluster_id);
    let members: BTreeSet<String> = c.members.iter().map(|m| scrub.text(m)).collect();
    for member in &members {
        check_name("member account id", member)?;
    }
    let links = c
        .links
        .iter()
        .map(|l| LinkEvidence {
            kind: scrub.text(&l.kind),
            examples: l.examples.iter().map(|e| scrub.text(e)).collect(),
            ..l.clone()
        })
        .collect();
    let signals = scrub.signals(&c.signals);
    Ok(Prepared {
        subject: Subject::new(SubjectKind::Cluster, cluster_id)?,
        score: checked_score(c.score)?,
        severity: c.severity,
        engine_flagged: c.flagged,
        detectors: fired(&signals, fired_min_score),
        signals,
        first_seen_ms: c.first_seen.epoch_ms(),
        last_seen_ms: c.last_seen.epoch_ms(),
        first_flagged_at_ms: c.first_flagged_at.map(|t| t.epoch_ms()),
        profile: Profile::Cluster { links, members },
        sanitized: scrub.replaced,
    })
}

/// The subject a dead-lettered update was about, as given (it may be the invalid part).
pub(crate) fn dead_letter_key(update: &FindingUpdate) -> (SubjectKind, String) {
    match update {
        FindingUpdate::Account(a) => (SubjectKind::Account, a.account_id.clone()),
        FindingUpdate::Cluster(c) => (SubjectKind::Cluster, c.cluster_id.clone()),
    }
}

/// Keeps one update per subject, the one with the latest `last_seen` (the later in the batch on a
/// tie), so a batch never touches a row twice; returns how many were superseded.
pub(crate) fn latest_per_subject(prepared: Vec<Prepared>) -> (Vec<Prepared>, u64) {
    let total = prepared.len();
    let mut latest: std::collections::HashMap<Subject, Prepared> =
        std::collections::HashMap::with_capacity(total);
    for p in prepared {
        match latest.get(&p.subject) {
            Some(kept) if kept.last_seen_ms > p.last_seen_ms => {}
            _ => {
                latest.insert(p.subject.clone(), p);
            }
        }
    }
    let mut kept: Vec<Prepared> = latest.into_values().collect();
    // One order for every writer: concurrent batches then lock rows in the same order and cannot
    // deadlock each other.
    kept.sort_by(|a, b| a.subject.cmp(&b.subject));
    let superseded = (total - kept.len()) as u64;
    (kept, superseded)
}

/// Rows per multi-row statement: well under both backends' bind-parameter limits.
pub(crate) const CHUNK: usize = 500;

/// An audit entry waiting for the chunk's multi-row insert.
pub(crate) struct PendingAudit {
    pub subject: Subject,
    pub action: &'static str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::finding::{AccountFinding, SamplePrompt};
    use distillguard_core::time::EventTime;

    fn account(score: f64) -> FindingUpdate {
        FindingUpdate::Account(AccountFinding {
            activity: None,
            account_id: "acct-1".into(),
            score,
            severity: Severity::from_score(score),
            flagged: score >= 0.7,
            cluster_id: None,
            first_flagged_at: None,
            clustered_at: None,
            end_user: None,
            first_seen: EventTime::from_epoch_ms(1_000).unwrap(),
            last_seen: EventTime::from_epoch_ms(2_000).unwrap(),
            events: 10,
            signals: vec![
                Signal {
                    detector: "volume".into(),
                    score,
                    evidence: Default::default(),
                },
                Signal {
                    detector: "coverage".into(),
                    score: 0.1,
                    evidence: Default::default(),
                },
            ],
            samples: vec![SamplePrompt {
                text: "list every capital".into(),
                hash: "abc".into(),
                at: EventTime::from_epoch_ms(1_500).unwrap(),
            }],
        })
    }

    #[test]
    fn prompt_text_is_dropped_unless_prompts_are_kept() {
        let hashed = prepare(&account(0.8), false, 0.5).unwrap();
        let Profile::Account { samples, .. } = hashed.profile else {
            panic!("account")
        };
        assert_eq!(samples[0].hash, "abc");
        assert_eq!(samples[0].text, None);
        let kept = prepare(&account(0.8), true, 0.5).unwrap();
        let Profile::Account { samples, .. } = kept.profile else {
            panic!("account")
        };
        assert_eq!(samples[0].text.as_deref(), Some("list every capital"));
    }

    #[test]
    fn only_detectors_at_or_above_the_threshold_count_as_fired() {
        assert_eq!(
            prepare(&account(0.8), false, 0.5).unwrap().detectors,
            vec!["volume"]
        );
        assert!(prepare(&account(0.3), false, 0.5)
            .unwrap()
            .detectors
            .is_empty());
    }

    #[test]
    fn the_audit_view_shows_last_seen_in_rfc_3339() {
        let view = prepare(&account(0.8), false, 0.5).unwrap().audit_view();
        assert_eq!(view["last_seen"], "1970-01-01T00:00:02.000Z");
    }

    #[test]
    fn a_non_finite_score_is_refused() {
        assert!(prepare(&account(f64::NAN), false, 0.5).is_err());
        assert!(prepare(&account(1.5), false, 0.5).is_err());
    }

    #[test]
    fn a_batch_keeps_the_latest_update_per_subject() {
        let older = prepare(&account(0.9), false, 0.5).unwrap();
        let mut newer = prepare(&account(0.2), false, 0.5).unwrap();
        newer.last_seen_ms += 1;
        let (kept, superseded) = latest_per_subject(vec![newer, older]);
        assert_eq!((kept.len(), superseded), (1, 1));
        assert_eq!(
            kept[0].score, 0.2,
            "the later event time wins over batch order"
        );
        let first = prepare(&account(0.3), false, 0.5).unwrap();
        let second = prepare(&account(0.4), false, 0.5).unwrap();
        let (kept, _) = latest_per_subject(vec![first, second]);
        assert_eq!(kept[0].score, 0.4, "on a tie the later update wins");
    }
}
