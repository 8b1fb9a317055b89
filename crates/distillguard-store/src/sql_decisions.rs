//! Decisions in the database: reconciling a finding's decisions with the policy, and reading the
//! current set or the change stream. See [`crate::decisions`] for the rule and the migration
//! `0008_decisions_webhooks.sql` for why a counter row orders the stream.

use crate::decisions::{Decision, DecisionChanges};
use crate::error::StoreError;
use crate::rows::{subject, wall};

/// Columns every decision read selects.
pub(crate) const DECISION_COLUMNS: &str = "decision_id, scope, value, action, origin, reason, \
     severity, finding_kind, finding_subject, created_at_ms, expires_at_ms, deleted_at_ms, seq";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DecisionRow {
    pub decision_id: i64,
    pub scope: String,
    pub value: String,
    pub action: String,
    pub origin: String,
    pub reason: String,
    pub severity: String,
    pub finding_kind: String,
    pub finding_subject: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub deleted_at_ms: Option<i64>,
    pub seq: i64,
}

impl DecisionRow {
    fn live_at(&self, now_ms: i64) -> bool {
        self.deleted_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| e > now_ms)
    }

    pub(crate) fn into_decision(self) -> Result<Decision, StoreError> {
        Ok(Decision {
            id: self.decision_id,
            scope: self.scope.parse()?,
            value: self.value,
            action: self.action.parse()?,
            origin: self.origin.parse()?,
            reason: self.reason,
            severity: crate::model::parse_severity(&self.severity)?,
            finding: subject(&self.finding_kind, self.finding_subject)?,
            created_at: wall(self.created_at_ms),
            expires_at: self.expires_at_ms.map(wall),
        })
    }
}

/// Sorts rows read after a cursor into a page of changes.
pub(crate) fn changes_page(
    mut rows: Vec<DecisionRow>,
    since: i64,
    limit: usize,
    now_ms: i64,
) -> Result<DecisionChanges, StoreError> {
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let mut changes = DecisionChanges {
        cursor: rows.last().map_or(since, |row| row.seq),
        has_more,
        ..DecisionChanges::default()
    };
    for row in rows {
        if row.live_at(now_ms) {
            changes.new.push(row.into_decision()?);
        } else {
            changes.deleted.push(row.into_decision()?);
        }
    }
    Ok(changes)
}

/// The stored state of a finding that the policy looks at.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FactsRow {
    pub status: String,
    pub close_reason: Option<String>,
    pub engine_flagged: bool,
    pub severity: String,
    pub detectors: sqlx::types::Json<Vec<String>>,
}

/// Generates the decision methods for one backend.
macro_rules! impl_decisions {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Brings the decisions of `subject`'s finding in line with the policy, inside the
            /// caller's transaction.
            pub(crate) async fn reconcile_decisions(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                subject: &$crate::model::Subject,
                now: i64,
            ) -> Result<(), $crate::error::StoreError> {
                use $crate::decisions::FindingFacts;
                use $crate::model::SubjectKind;
                let facts: Option<$crate::sql_decisions::FactsRow> = sqlx::query_as(
                    "SELECT status, close_reason, engine_flagged, severity, detectors FROM finding \
                     WHERE subject_kind = $1 AND subject_id = $2",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .fetch_optional(&mut **tx)
                .await?;
                let wanted = match &facts {
                    None => None,
                    Some(row) => {
                        let allowlisted = self.is_allowlisted(tx, subject, now).await?;
                        self.options.decisions.wanted(&FindingFacts {
                            status: row.status.parse()?,
                            close_reason: row
                                .close_reason
                                .as_deref()
                                .map(str::parse)
                                .transpose()?,
                            engine_flagged: row.engine_flagged,
                            severity: $crate::model::parse_severity(&row.severity)?,
                            detectors: &row.detectors.0,
                            allowlisted,
                        })
                    }
                };
                // Who the decision applies to: the account, or each member of the cluster that
                // is not allowlisted on its own.
                let targets: Vec<String> = match (&wanted, subject.kind) {
                    (None, _) => Vec::new(),
                    (Some(_), SubjectKind::Account) => vec![subject.id.clone()],
                    (Some(_), SubjectKind::Cluster) => sqlx::query_scalar(
                        "SELECT m.account_id FROM cluster_member m WHERE m.cluster_id = $1 \
                         AND NOT EXISTS (SELECT 1 FROM allowlist a WHERE a.subject_kind = 'account' \
                         AND a.subject_id = m.account_id AND a.removed_at_ms IS NULL \
                         AND (a.expires_at_ms IS NULL OR a.expires_at_ms > $2)) \
                         ORDER BY m.account_id",
                    )
                    .bind(&subject.id)
                    .bind(now)
                    .fetch_all(&mut **tx)
                    .await?,
                };
                let live: Vec<$crate::sql_decisions::DecisionRow> = sqlx::query_as(&format!(
                    "SELECT {} FROM decision WHERE finding_kind = $1 AND finding_subject = $2 \
                     AND deleted_at_ms IS NULL ORDER BY decision_id",
                    $crate::sql_decisions::DECISION_COLUMNS
                ))
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .fetch_all(&mut **tx)
                .await?;
                let scope = self.options.decisions.scope.as_str();
                let mut covered = std::collections::HashSet::new();
                for row in &live {
                    let keep = wanted.as_ref().is_some_and(|w| {
                        w.action.as_str() == row.action
                            && w.origin.as_str() == row.origin
                            && row.scope == scope
                            && row.expires_at_ms.is_none_or(|e| e > now)
                            && targets.contains(&row.value)
                    });
                    if keep {
                        covered.insert(row.value.as_str());
                        continue;
                    }
                    let seq = self.next_decision_seq(tx).await?;
                    sqlx::query("UPDATE decision SET deleted_at_ms = $2, seq = $3 WHERE decision_id = $1")
                        .bind(row.decision_id)
                        .bind(now)
                        .bind(seq)
                        .execute(&mut **tx)
                        .await?;
                }
                let (Some(wanted), Some(facts)) = (wanted, facts) else {
                    return Ok(());
                };
                let expires = wanted.ttl.map(|ttl| {
                    now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
                });
                for value in targets.iter().filter(|v| !covered.contains(v.as_str())) {
                    let seq = self.next_decision_seq(tx).await?;
                    sqlx::query(
                        "INSERT INTO decision (scope, value, action, origin, reason, severity, \
                         finding_kind, finding_subject, created_at_ms, expires_at_ms, seq) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(scope)
                    .bind(value)
                    .bind(wanted.action.as_str())
                    .bind(wanted.origin.as_str())
                    .bind(&wanted.reason)
                    .bind(&facts.severity)
                    .bind(subject.kind.as_str())
                    .bind(&subject.id)
                    .bind(now)
                    .bind(expires)
                    .bind(seq)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            /// Reconciles an account and every cluster it belongs to (allowlisting an account
            /// takes it out of its cluster's decisions too).
            pub(crate) async fn reconcile_with_clusters(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                subject: &$crate::model::Subject,
                now: i64,
            ) -> Result<(), $crate::error::StoreError> {
                self.reconcile_decisions(tx, subject, now).await?;
                if subject.kind != $crate::model::SubjectKind::Account {
                    return Ok(());
                }
                let clusters: Vec<String> = sqlx::query_scalar(
                    "SELECT cluster_id FROM cluster_member WHERE account_id = $1 ORDER BY cluster_id",
                )
                .bind(&subject.id)
                .fetch_all(&mut **tx)
                .await?;
                for cluster in clusters {
                    let cluster = $crate::model::Subject {
                        kind: $crate::model::SubjectKind::Cluster,
                        id: cluster,
                    };
                    self.reconcile_decisions(tx, &cluster, now).await?;
                }
                Ok(())
            }

            /// The next position in the change stream. Updating the counter row takes its lock
            /// until commit, so positions become visible in order.
            async fn next_decision_seq(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
            ) -> Result<i64, $crate::error::StoreError> {
                Ok(sqlx::query_scalar(
                    "UPDATE decision_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq",
                )
                .fetch_one(&mut **tx)
                .await?)
            }

            /// Every decision in force, and the cursor to follow changes from.
            pub async fn current_decisions(
                &self,
            ) -> Result<$crate::decisions::DecisionChanges, $crate::error::StoreError> {
                let now = self.now_ms();
                // The cursor is read first: a change landing between the two reads shows up
                // again after it, and applying a decision twice is harmless.
                let cursor: i64 = sqlx::query_scalar("SELECT seq FROM decision_seq WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?;
                let rows: Vec<$crate::sql_decisions::DecisionRow> = sqlx::query_as(&format!(
                    "SELECT {} FROM decision WHERE deleted_at_ms IS NULL \
                     AND (expires_at_ms IS NULL OR expires_at_ms > $1) ORDER BY decision_id",
                    $crate::sql_decisions::DECISION_COLUMNS
                ))
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                Ok($crate::decisions::DecisionChanges {
                    new: rows
                        .into_iter()
                        .map($crate::sql_decisions::DecisionRow::into_decision)
                        .collect::<Result<_, _>>()?,
                    deleted: Vec::new(),
                    cursor,
                    has_more: false,
                })
            }

            /// Decisions created or deleted after `since`, oldest change first, at most `limit`.
            pub async fn decision_changes(
                &self,
                since: i64,
                limit: u32,
            ) -> Result<$crate::decisions::DecisionChanges, $crate::error::StoreError> {
                let limit = limit.clamp(1, 10_000);
                let rows: Vec<$crate::sql_decisions::DecisionRow> = sqlx::query_as(&format!(
                    "SELECT {} FROM decision WHERE seq > $1 ORDER BY seq LIMIT $2",
                    $crate::sql_decisions::DECISION_COLUMNS
                ))
                .bind(since)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
                $crate::sql_decisions::changes_page(rows, since, limit as usize, self.now_ms())
            }
        }
    };
}
pub(crate) use impl_decisions;
