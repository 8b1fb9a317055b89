//! The triage reads: lists with filters and keyset pages, one subject in detail, stats.

use distillguard_core::finding::Severity;

use crate::error::StoreError;
use crate::model::{ClusterMember, ClusterMetrics, ListFilter, PageRequest, MAX_PAGE_SIZE};
use crate::rows::MemberRow;

/// Selects a `SummaryRow`. The allowlist join is bound to "now" (the placeholder is pushed by
/// the caller) and matches at most one row thanks to the `allowlist_one_live_entry` index.
pub(crate) const SUMMARY_HEAD: &str = "SELECT f.finding_id, f.subject_kind, f.subject_id, \
    f.score, f.severity, f.engine_flagged, f.detectors, f.first_seen_ms, f.last_seen_ms, \
    f.first_flagged_at_ms, f.status, f.assignee, f.close_reason, f.version, f.updated_at_ms, \
    al.allowlist_id AS allow_id, al.reason AS allow_reason, al.expires_at_ms AS allow_expires_ms, \
    al.created_by AS allow_by, al.created_at_ms AS allow_at_ms, \
    ac.cluster_id AS cluster_id, cl.member_count AS member_count \
    FROM finding f \
    LEFT JOIN account ac ON f.subject_kind = 'account' AND ac.account_id = f.subject_id \
    LEFT JOIN cluster cl ON f.subject_kind = 'cluster' AND cl.cluster_id = f.subject_id \
    LEFT JOIN allowlist al ON al.subject_kind = f.subject_kind AND al.subject_id = f.subject_id \
    AND al.removed_at_ms IS NULL AND (al.expires_at_ms IS NULL OR al.expires_at_ms > ";

pub(crate) fn page_size(request: &PageRequest) -> i64 {
    match request.limit {
        0 => 50,
        n => i64::from(n.min(MAX_PAGE_SIZE)),
    }
}

pub(crate) fn check_filter(filter: &ListFilter) -> Result<(), StoreError> {
    if let Some(min) = filter.min_score {
        if !min.is_finite() {
            return Err(StoreError::InvalidInput(
                "min_score must be a number".into(),
            ));
        }
    }
    // `since` after `until` is an empty interval: it matches nothing, like any other filter.
    for (name, value) in [
        ("detector", &filter.detector),
        ("assignee", &filter.assignee),
    ] {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(StoreError::InvalidInput(format!(
                "{name} contains a NUL character"
            )));
        }
    }
    Ok(())
}

/// Members sorted by score (highest first, members without a finding last) and their figures.
pub(crate) fn members_and_metrics(
    rows: Vec<MemberRow>,
) -> Result<(Vec<ClusterMember>, ClusterMetrics), StoreError> {
    let mut members = rows
        .into_iter()
        .map(|row| {
            Ok(ClusterMember {
                severity: row
                    .severity
                    .as_deref()
                    .map(crate::model::parse_severity)
                    .transpose()?,
                flagged: row.engine_flagged.unwrap_or(false) && row.allow_id.is_none(),
                account_id: row.account_id,
                score: row.score,
                events: row.events,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    members.sort_by(|a, b| {
        b.score
            .unwrap_or(-1.0)
            .total_cmp(&a.score.unwrap_or(-1.0))
            .then_with(|| a.account_id.cmp(&b.account_id))
    });
    let scores: Vec<f64> = members.iter().filter_map(|m| m.score).collect();
    let metrics = ClusterMetrics {
        members: members.len() as i64,
        flagged_members: members.iter().filter(|m| m.flagged).count() as i64,
        max_member_score: scores.iter().copied().reduce(f64::max),
        mean_member_score: (!scores.is_empty())
            .then(|| scores.iter().sum::<f64>() / scores.len() as f64),
        total_events: members.iter().filter_map(|m| m.events).sum(),
    };
    Ok((members, metrics))
}

pub(crate) fn severity_names(severities: &[Severity]) -> Vec<&'static str> {
    severities.iter().map(|s| s.as_str()).collect()
}

/// Generates the read methods for one backend.
macro_rules! impl_read {
    ($store:ty, $db:ty) => {
        impl $store {
            /// One page of accounts or clusters.
            pub async fn list(
                &self,
                kind: $crate::model::SubjectKind,
                filter: &$crate::model::ListFilter,
                page: &$crate::model::PageRequest,
            ) -> Result<$crate::model::Page<$crate::model::FindingSummary>, $crate::error::StoreError>
            {
                use $crate::cursor::{self, Position};
                use $crate::model::SortKey;
                $crate::sql_read::check_filter(filter)?;
                let fingerprint = cursor::fingerprint(kind, filter, page.sort);
                let after = page
                    .after
                    .as_deref()
                    .map(|c| cursor::decode(c, page.sort, fingerprint))
                    .transpose()?;
                let limit = $crate::sql_read::page_size(page);

                let mut qb = sqlx::QueryBuilder::<$db>::new($crate::sql_read::SUMMARY_HEAD);
                qb.push_bind(self.now_ms());
                qb.push(") WHERE f.subject_kind = ");
                qb.push_bind(kind.as_str());
                if !filter.status.is_empty() {
                    qb.push(" AND f.status IN (");
                    let mut list = qb.separated(", ");
                    for status in &filter.status {
                        list.push_bind(status.as_str());
                    }
                    qb.push(")");
                }
                if !filter.severity.is_empty() {
                    qb.push(" AND f.severity IN (");
                    let mut list = qb.separated(", ");
                    for severity in $crate::sql_read::severity_names(&filter.severity) {
                        list.push_bind(severity);
                    }
                    qb.push(")");
                }
                if let Some(min) = filter.min_score {
                    qb.push(" AND f.score >= ").push_bind(min);
                }
                if let Some(detector) = &filter.detector {
                    qb.push(
                        " AND EXISTS (SELECT 1 FROM finding_detector d \
                         WHERE d.finding_id = f.finding_id AND d.detector = ",
                    )
                    .push_bind(detector.clone())
                    .push(")");
                }
                match filter.flagged {
                    Some(true) => {
                        qb.push(" AND f.engine_flagged = ")
                            .push_bind(true)
                            .push(" AND al.allowlist_id IS NULL");
                    }
                    Some(false) => {
                        qb.push(" AND (f.engine_flagged = ")
                            .push_bind(false)
                            .push(" OR al.allowlist_id IS NOT NULL)");
                    }
                    None => {}
                }
                if let Some(since) = filter.since {
                    qb.push(" AND f.last_seen_ms >= ").push_bind(since.epoch_ms());
                }
                if let Some(until) = filter.until {
                    qb.push(" AND f.last_seen_ms < ").push_bind(until.epoch_ms());
                }
                if let Some(assignee) = &filter.assignee {
                    qb.push(" AND f.assignee = ").push_bind(assignee.clone());
                }
                match after {
                    Some(Position::Score { score, id }) => {
                        qb.push(" AND (f.score < ")
                            .push_bind(score)
                            .push(" OR (f.score = ")
                            .push_bind(score)
                            .push(" AND f.finding_id < ")
                            .push_bind(id)
                            .push("))");
                    }
                    Some(Position::LastSeen { last_seen_ms, id }) => {
                        qb.push(" AND (f.last_seen_ms < ")
                            .push_bind(last_seen_ms)
                            .push(" OR (f.last_seen_ms = ")
                            .push_bind(last_seen_ms)
                            .push(" AND f.finding_id < ")
                            .push_bind(id)
                            .push("))");
                    }
                    Some(Position::Created { id }) => {
                        qb.push(" AND f.finding_id > ").push_bind(id);
                    }
                    None => {}
                }
                qb.push(match page.sort {
                    SortKey::Score => " ORDER BY f.score DESC, f.finding_id DESC",
                    SortKey::LastSeen => " ORDER BY f.last_seen_ms DESC, f.finding_id DESC",
                    SortKey::Created => " ORDER BY f.finding_id ASC",
                });
                // One extra row tells whether a next page exists without a COUNT.
                qb.push(" LIMIT ").push_bind(limit + 1);
                let mut rows: Vec<$crate::rows::SummaryRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                let has_more = rows.len() as i64 > limit;
                rows.truncate(limit as usize);
                let next = match (has_more, rows.last()) {
                    (true, Some(last)) => Some(cursor::encode(
                        match page.sort {
                            SortKey::Score => Position::Score { score: last.score, id: last.finding_id },
                            SortKey::LastSeen => Position::LastSeen {
                                last_seen_ms: last.last_seen_ms,
                                id: last.finding_id,
                            },
                            SortKey::Created => Position::Created { id: last.finding_id },
                        },
                        fingerprint,
                    )),
                    _ => None,
                };
                let items = rows
                    .into_iter()
                    .map($crate::rows::SummaryRow::into_summary)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok($crate::model::Page { items, next })
            }

            async fn summary(
                &self,
                subject: &$crate::model::Subject,
            ) -> Result<Option<$crate::model::FindingSummary>, $crate::error::StoreError> {
                let row: Option<$crate::rows::SummaryRow> = sqlx::query_as(&format!(
                    "{}$1) WHERE f.subject_kind = $2 AND f.subject_id = $3",
                    $crate::sql_read::SUMMARY_HEAD
                ))
                .bind(self.now_ms())
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .fetch_optional(&self.pool)
                .await?;
                row.map($crate::rows::SummaryRow::into_summary).transpose()
            }

            async fn evidence(
                &self,
                subject: &$crate::model::Subject,
            ) -> Result<Vec<distillguard_core::finding::Signal>, $crate::error::StoreError> {
                let evidence: sqlx::types::Json<Vec<distillguard_core::finding::Signal>> =
                    sqlx::query_scalar(
                        "SELECT evidence FROM finding WHERE subject_kind = $1 AND subject_id = $2",
                    )
                    .bind(subject.kind.as_str())
                    .bind(&subject.id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(evidence.0)
            }

            /// One account: profile, evidence, samples, its cluster and review state.
            pub async fn get_account(
                &self,
                id: &str,
            ) -> Result<$crate::model::AccountDetail, $crate::error::StoreError> {
                use sqlx::types::Json;
                let subject = $crate::model::Subject::account(id)?;
                // The profile is read before the finding: the writer commits both in one
                // transaction, so a reader that sees the new `events` also sees the `last_seen`
                // and evidence written with them (never a current count beside a stale summary).
                type Profile = (
                    i64,
                    Json<Vec<$crate::model::StoredSample>>,
                    Option<Json<distillguard_core::finding::HourlyActivity>>,
                    Option<String>,
                );
                let profile: Option<Profile> = sqlx::query_as(
                    "SELECT events, samples, activity, end_user FROM account WHERE account_id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                let summary = self
                    .summary(&subject)
                    .await?
                    .ok_or_else(|| $crate::error::StoreError::NotFound(subject.to_string()))?;
                let signals = self.evidence(&subject).await?;
                let (events, samples, activity, end_user) = profile
                    .map(|(e, s, a, u)| (e, s.0, a.map(|a| a.0), u))
                    .unwrap_or_default();
                let cluster_id = match &summary.cluster_id {
                    Some(cluster) => Some(cluster.clone()),
                    None => sqlx::query_scalar(
                        "SELECT cluster_id FROM cluster_member WHERE account_id = $1 \
                         ORDER BY cluster_id LIMIT 1",
                    )
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?,
                };
                let cluster = match cluster_id {
                    Some(cluster) => self.summary(&$crate::model::Subject::cluster(cluster)?).await?,
                    None => None,
                };
                Ok($crate::model::AccountDetail {
                    summary,
                    events,
                    signals,
                    samples,
                    activity,
                    end_user,
                    cluster,
                })
            }

            /// One cluster: members, links, combined metrics, evidence and review state.
            pub async fn get_cluster(
                &self,
                id: &str,
            ) -> Result<$crate::model::ClusterDetail, $crate::error::StoreError> {
                use sqlx::types::Json;
                let subject = $crate::model::Subject::cluster(id)?;
                let summary = self
                    .summary(&subject)
                    .await?
                    .ok_or_else(|| $crate::error::StoreError::NotFound(subject.to_string()))?;
                let signals = self.evidence(&subject).await?;
                let links: Option<Json<Vec<distillguard_core::finding::LinkEvidence>>> =
                    sqlx::query_scalar("SELECT links FROM cluster WHERE cluster_id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                let rows: Vec<$crate::rows::MemberRow> = sqlx::query_as(
                    "SELECT m.account_id, f.score, f.severity, f.engine_flagged, \
                     al.allowlist_id AS allow_id, ac.events \
                     FROM cluster_member m \
                     LEFT JOIN finding f ON f.subject_kind = 'account' AND f.subject_id = m.account_id \
                     LEFT JOIN account ac ON ac.account_id = m.account_id \
                     LEFT JOIN allowlist al ON al.subject_kind = 'account' \
                     AND al.subject_id = m.account_id AND al.removed_at_ms IS NULL \
                     AND (al.expires_at_ms IS NULL OR al.expires_at_ms > $2) \
                     WHERE m.cluster_id = $1",
                )
                .bind(id)
                .bind(self.now_ms())
                .fetch_all(&self.pool)
                .await?;
                let (members, metrics) = $crate::sql_read::members_and_metrics(rows)?;
                Ok($crate::model::ClusterDetail {
                    summary,
                    members,
                    links: links.map(|l| l.0).unwrap_or_default(),
                    metrics,
                    signals,
                })
            }

            /// Counts by status and severity per subject kind, and every stored watermark.
            pub async fn stats(&self) -> Result<$crate::model::Stats, $crate::error::StoreError> {
                let rows: Vec<($crate::rows::CountRow, String)> = {
                    let raw: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
                        "SELECT f.subject_kind, f.status, f.severity, CAST(COUNT(*) AS BIGINT), \
                         CAST(SUM(CASE WHEN f.engine_flagged AND al.allowlist_id IS NULL \
                         THEN 1 ELSE 0 END) AS BIGINT) \
                         FROM finding f LEFT JOIN allowlist al ON al.subject_kind = f.subject_kind \
                         AND al.subject_id = f.subject_id AND al.removed_at_ms IS NULL \
                         AND (al.expires_at_ms IS NULL OR al.expires_at_ms > $1) \
                         GROUP BY f.subject_kind, f.status, f.severity",
                    )
                    .bind(self.now_ms())
                    .fetch_all(&self.pool)
                    .await?;
                    raw.into_iter()
                        .map(|(kind, status, severity, total, flagged)| {
                            ($crate::rows::CountRow { status, severity, total, flagged }, kind)
                        })
                        .collect()
                };
                let mut stats = $crate::model::Stats {
                    accounts: Default::default(),
                    clusters: Default::default(),
                    watermarks: Vec::new(),
                };
                for (row, kind) in rows {
                    let counts = match kind.parse::<$crate::model::SubjectKind>()? {
                        $crate::model::SubjectKind::Account => &mut stats.accounts,
                        $crate::model::SubjectKind::Cluster => &mut stats.clusters,
                    };
                    counts.total += row.total;
                    counts.flagged += row.flagged;
                    *counts.by_status.entry(row.status).or_default() += row.total;
                    *counts.by_severity.entry(row.severity).or_default() += row.total;
                }
                let marks: Vec<$crate::rows::WatermarkRow> = sqlx::query_as(
                    "SELECT name, at_ms, updated_at_ms FROM watermark \
                     UNION ALL SELECT 'checkpoint:' || checkpoint_key, watermark_ms, saved_at_ms \
                     FROM checkpoint WHERE watermark_ms IS NOT NULL \
                     UNION ALL SELECT 'checkpoint:' || checkpoint_key, watermark_ms, saved_at_ms \
                     FROM checkpoint_manifest WHERE watermark_ms IS NOT NULL ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                for mark in marks {
                    stats.watermarks.push($crate::model::Watermark {
                        at: $crate::rows::event_time(mark.at_ms)?,
                        updated_at: $crate::rows::wall(mark.updated_at_ms),
                        name: mark.name,
                    });
                }
                Ok(stats)
            }
        }
    };
}
pub(crate) use impl_read;
