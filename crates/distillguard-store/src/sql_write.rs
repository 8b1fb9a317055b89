//! The write path: engine updates become findings, in one transaction per batch.
//!
//! Rules that make a batch safe to retry and to replay:
//! - an update older (by `last_seen`) than the stored finding is skipped as stale;
//! - `first_seen` and `first_flagged_at` only move earlier;
//! - audit entries are written on edges (first flagged, reopened), never per re-score, so the
//!   same update applied twice leaves the same state and the same trail.

use std::collections::BTreeSet;

use distillguard_core::finding::{FindingUpdate, LinkEvidence, Severity, Signal};
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
}

impl Prepared {
    /// The summary written into audit entries.
    pub fn audit_view(&self) -> serde_json::Value {
        json!({
            "score": self.score,
            "severity": self.severity,
            "flagged": self.engine_flagged,
            "detectors": self.detectors,
            "last_seen": self.last_seen_ms,
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

/// Checks one update and strips prompt text unless prompts are kept.
pub(crate) fn prepare(
    update: &FindingUpdate,
    keep_prompts: bool,
    fired_min_score: f64,
) -> Result<Prepared, StoreError> {
    match update {
        FindingUpdate::Account(a) => {
            if let Some(cluster) = &a.cluster_id {
                check_name("cluster id", cluster)?;
            }
            let samples = a
                .samples
                .iter()
                .map(|s| StoredSample {
                    hash: s.hash.clone(),
                    at: s.at,
                    text: keep_prompts.then(|| s.text.clone()),
                })
                .collect();
            Ok(Prepared {
                subject: Subject::new(SubjectKind::Account, a.account_id.clone())?,
                score: checked_score(a.score)?,
                severity: a.severity,
                engine_flagged: a.flagged,
                detectors: fired(&a.signals, fired_min_score),
                signals: a.signals.clone(),
                first_seen_ms: a.first_seen.epoch_ms(),
                last_seen_ms: a.last_seen.epoch_ms(),
                first_flagged_at_ms: a.first_flagged_at.map(|t| t.epoch_ms()),
                profile: Profile::Account {
                    cluster_id: a.cluster_id.clone(),
                    events: i64::try_from(a.events).unwrap_or(i64::MAX),
                    samples,
                },
            })
        }
        FindingUpdate::Cluster(c) => {
            for member in &c.members {
                check_name("member account id", member)?;
            }
            Ok(Prepared {
                subject: Subject::new(SubjectKind::Cluster, c.cluster_id.clone())?,
                score: checked_score(c.score)?,
                severity: c.severity,
                engine_flagged: c.flagged,
                detectors: fired(&c.signals, fired_min_score),
                signals: c.signals.clone(),
                first_seen_ms: c.first_seen.epoch_ms(),
                last_seen_ms: c.last_seen.epoch_ms(),
                first_flagged_at_ms: c.first_flagged_at.map(|t| t.epoch_ms()),
                profile: Profile::Cluster {
                    links: c.links.clone(),
                    members: c.members.iter().cloned().collect(),
                },
            })
        }
    }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// Merges a stored finding's sticky fields with an update.
pub(crate) fn merged_times(
    stored_first_seen: i64,
    stored_first_flagged: Option<i64>,
    update: &Prepared,
) -> (i64, Option<i64>) {
    (
        stored_first_seen.min(update.first_seen_ms),
        earliest(stored_first_flagged, update.first_flagged_at_ms),
    )
}

/// Generates `upsert_findings` for one backend.
macro_rules! impl_write {
    ($store:ty, $db:ty) => {
        impl $store {
            pub async fn upsert_findings(
                &self,
                updates: &[distillguard_core::finding::FindingUpdate],
            ) -> Result<$crate::model::UpsertOutcome, $crate::error::StoreError> {
                let now = self.now_ms();
                let mut outcome = $crate::model::UpsertOutcome::default();
                let mut tx = self.begin_write().await?;
                for update in updates {
                    let prepared = match $crate::sql_write::prepare(
                        update,
                        self.options.keep_prompts,
                        self.options.fired_min_score,
                    ) {
                        Ok(prepared) => prepared,
                        Err(error) => {
                            tracing::warn!(%error, "finding update refused");
                            outcome.invalid += 1;
                            continue;
                        }
                    };
                    self.apply_update(&mut tx, &prepared, now, &mut outcome).await?;
                }
                tx.commit().await?;
                Ok(outcome)
            }

            async fn apply_update(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                p: &$crate::sql_write::Prepared,
                now: i64,
                outcome: &mut $crate::model::UpsertOutcome,
            ) -> Result<(), $crate::error::StoreError> {
                use sqlx::types::Json;
                let kind = p.subject.kind.as_str();
                let id = p.subject.id.as_str();
                let existing: Option<$crate::rows::ExistingRow> = sqlx::query_as(&format!(
                    "SELECT finding_id, last_seen_ms, first_seen_ms, first_flagged_at_ms, \
                     engine_flagged, detectors, status, close_reason, closed_score, \
                     closed_severity_rank, version \
                     FROM finding WHERE subject_kind = $1 AND subject_id = $2{}",
                    Self::FOR_UPDATE
                ))
                .bind(kind)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
                if existing.as_ref().is_some_and(|row| p.last_seen_ms < row.last_seen_ms) {
                    outcome.stale += 1;
                    return Ok(());
                }

                match &p.profile {
                    $crate::sql_write::Profile::Account { cluster_id, events, samples } => {
                        sqlx::query(
                            "INSERT INTO account (account_id, cluster_id, events, first_seen_ms, \
                             last_seen_ms, samples, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (account_id) DO UPDATE SET cluster_id = excluded.cluster_id, \
                             events = excluded.events, \
                             first_seen_ms = LEAST_OR_MIN(account.first_seen_ms, excluded.first_seen_ms), \
                             last_seen_ms = excluded.last_seen_ms, samples = excluded.samples, \
                             updated_at_ms = excluded.updated_at_ms"
                                .replace("LEAST_OR_MIN", Self::LEAST)
                                .as_str(),
                        )
                        .bind(id)
                        .bind(cluster_id.as_deref())
                        .bind(*events)
                        .bind(p.first_seen_ms)
                        .bind(p.last_seen_ms)
                        .bind(Json(samples))
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    }
                    $crate::sql_write::Profile::Cluster { links, members } => {
                        sqlx::query(
                            "INSERT INTO cluster (cluster_id, links, member_count, first_seen_ms, \
                             last_seen_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                             ON CONFLICT (cluster_id) DO UPDATE SET links = excluded.links, \
                             member_count = excluded.member_count, \
                             first_seen_ms = LEAST_OR_MIN(cluster.first_seen_ms, excluded.first_seen_ms), \
                             last_seen_ms = excluded.last_seen_ms, updated_at_ms = excluded.updated_at_ms"
                                .replace("LEAST_OR_MIN", Self::LEAST)
                                .as_str(),
                        )
                        .bind(id)
                        .bind(Json(links))
                        .bind(members.len() as i64)
                        .bind(p.first_seen_ms)
                        .bind(p.last_seen_ms)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                        sqlx::query("DELETE FROM cluster_member WHERE cluster_id = $1")
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                        for member in members {
                            sqlx::query(
                                "INSERT INTO cluster_member (cluster_id, account_id) VALUES ($1, $2)",
                            )
                            .bind(id)
                            .bind(member)
                            .execute(&mut **tx)
                            .await?;
                        }
                    }
                }

                let rank = $crate::sql_write::severity_rank(p.severity);
                let evidence = Json(&p.signals);
                let detectors = Json(&p.detectors);
                let Some(row) = existing else {
                    let finding_id: i64 = sqlx::query_scalar(
                        "INSERT INTO finding (subject_kind, subject_id, score, severity, \
                         severity_rank, engine_flagged, detectors, evidence, first_seen_ms, \
                         last_seen_ms, first_flagged_at_ms, created_at_ms, updated_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
                         RETURNING finding_id",
                    )
                    .bind(kind)
                    .bind(id)
                    .bind(p.score)
                    .bind(p.severity.as_str())
                    .bind(rank)
                    .bind(p.engine_flagged)
                    .bind(detectors)
                    .bind(evidence)
                    .bind(p.first_seen_ms)
                    .bind(p.last_seen_ms)
                    .bind(p.first_flagged_at_ms)
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?;
                    self.replace_detectors(tx, finding_id, &p.detectors).await?;
                    if p.engine_flagged {
                        self.audit(tx, &p.subject, "system", now, "finding.flagged", None, Some(p.audit_view()))
                            .await?;
                    }
                    outcome.written += 1;
                    return Ok(());
                };

                let (first_seen_ms, first_flagged_at_ms) =
                    $crate::sql_write::merged_times(row.first_seen_ms, row.first_flagged_at_ms, p);
                let status: $crate::model::ReviewStatus = row.status.parse()?;
                let allowlisted = self.is_allowlisted(tx, &p.subject, now).await?;
                let reopen = self.options.reopen.should_reopen(&$crate::review::ReopenInput {
                    status,
                    closed_score: row.closed_score,
                    closed_severity_rank: row.closed_severity_rank,
                    score: p.score,
                    severity_rank: rank,
                    allowlisted,
                });
                sqlx::query(
                    "UPDATE finding SET score = $2, severity = $3, severity_rank = $4, \
                     engine_flagged = $5, detectors = $6, evidence = $7, first_seen_ms = $8, \
                     last_seen_ms = $9, first_flagged_at_ms = $10 WHERE finding_id = $1",
                )
                .bind(row.finding_id)
                .bind(p.score)
                .bind(p.severity.as_str())
                .bind(rank)
                .bind(p.engine_flagged)
                .bind(detectors)
                .bind(evidence)
                .bind(first_seen_ms)
                .bind(p.last_seen_ms)
                .bind(first_flagged_at_ms)
                .execute(&mut **tx)
                .await?;
                if row.detectors.0 != p.detectors {
                    self.replace_detectors(tx, row.finding_id, &p.detectors).await?;
                }
                if p.engine_flagged && !row.engine_flagged {
                    self.audit(tx, &p.subject, "system", now, "finding.flagged", None, Some(p.audit_view()))
                        .await?;
                }
                if reopen {
                    sqlx::query(
                        "UPDATE finding SET status = 'open', close_reason = NULL, closed_score = NULL, \
                         closed_severity_rank = NULL, version = version + 1, updated_at_ms = $2 \
                         WHERE finding_id = $1",
                    )
                    .bind(row.finding_id)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                    let before = serde_json::json!({
                        "status": row.status,
                        "close_reason": row.close_reason,
                        "version": row.version,
                        "score": row.closed_score,
                    });
                    let mut after = p.audit_view();
                    after["status"] = "open".into();
                    after["version"] = (row.version + 1).into();
                    self.audit(tx, &p.subject, "system", now, "review.reopened", Some(before), Some(after))
                        .await?;
                    outcome.reopened += 1;
                }
                outcome.written += 1;
                Ok(())
            }

            async fn replace_detectors(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                finding_id: i64,
                detectors: &[String],
            ) -> Result<(), $crate::error::StoreError> {
                sqlx::query("DELETE FROM finding_detector WHERE finding_id = $1")
                    .bind(finding_id)
                    .execute(&mut **tx)
                    .await?;
                for detector in detectors {
                    sqlx::query("INSERT INTO finding_detector (finding_id, detector) VALUES ($1, $2)")
                        .bind(finding_id)
                        .bind(detector)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            async fn is_allowlisted(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                subject: &$crate::model::Subject,
                now: i64,
            ) -> Result<bool, $crate::error::StoreError> {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT allowlist_id FROM allowlist WHERE subject_kind = $1 AND subject_id = $2 \
                     AND removed_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > $3)",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .bind(now)
                .fetch_optional(&mut **tx)
                .await?;
                Ok(found.is_some())
            }

            #[allow(clippy::too_many_arguments)]
            async fn audit(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                subject: &$crate::model::Subject,
                actor: &str,
                at_ms: i64,
                action: &str,
                before: Option<serde_json::Value>,
                after: Option<serde_json::Value>,
            ) -> Result<(), $crate::error::StoreError> {
                sqlx::query(
                    "INSERT INTO audit_log (subject_kind, subject_id, actor, at_ms, action, before, after) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .bind(actor)
                .bind(at_ms)
                .bind(action)
                .bind(before.map(sqlx::types::Json))
                .bind(after.map(sqlx::types::Json))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_write;

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::finding::{AccountFinding, SamplePrompt};
    use distillguard_core::time::EventTime;

    fn account(score: f64) -> FindingUpdate {
        FindingUpdate::Account(AccountFinding {
            account_id: "acct-1".into(),
            score,
            severity: Severity::from_score(score),
            flagged: score >= 0.7,
            cluster_id: None,
            first_flagged_at: None,
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
    fn a_non_finite_score_is_refused() {
        assert!(prepare(&account(f64::NAN), false, 0.5).is_err());
        assert!(prepare(&account(1.5), false, 0.5).is_err());
    }

    #[test]
    fn sticky_times_only_move_earlier() {
        let p = prepare(&account(0.8), false, 0.5).unwrap();
        assert_eq!(merged_times(500, Some(700), &p), (500, Some(700)));
        assert_eq!(merged_times(5_000, None, &p), (1_000, None));
    }
}
