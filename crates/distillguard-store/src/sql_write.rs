//! The write path: engine updates become findings, in one transaction per batch.
//!
//! Rules that make a batch safe to retry and to replay:
//! - an update older (by `last_seen`) than the stored finding is skipped as stale;
//! - `first_seen` and `first_flagged_at` only move earlier, except a cluster's `first_seen`,
//!   which is its current members' earliest (a split or an idle member leaving moves it later:
//!   a cluster never shows the first event of an account it no longer holds);
//! - audit entries are written on edges (first flagged, reopened), never per re-score, so the
//!   same update applied twice leaves the same state and the same trail.

/// Generates `upsert_findings` for one backend.
///
/// A batch costs a handful of statements per [`CHUNK`] rows, not several per update: one
/// locking read of the stored rows, one multi-row upsert per table, and per-row statements only
/// for rare events (cluster membership, reopening).
macro_rules! impl_write {
    ($store:ty, $db:ty) => {
        impl $store {
            pub async fn upsert_findings(
                &self,
                updates: &[distillguard_core::finding::FindingUpdate],
            ) -> Result<$crate::model::UpsertOutcome, $crate::error::StoreError> {
                let now = self.now_ms();
                let mut outcome = $crate::model::UpsertOutcome::default();
                let mut prepared = Vec::with_capacity(updates.len());
                for (index, update) in updates.iter().enumerate() {
                    match $crate::prepare::prepare(
                        update,
                        self.options.keep_prompts,
                        self.options.fired_min_score,
                    ) {
                        Ok(p) => {
                            outcome.sanitized += p.sanitized;
                            prepared.push(p);
                        }
                        Err(error) => {
                            outcome.invalid += 1;
                            outcome.refused.push($crate::model::Refused {
                                index,
                                error: error.to_string(),
                            });
                        }
                    }
                }
                let (prepared, superseded) = $crate::prepare::latest_per_subject(prepared);
                outcome.stale += superseded;
                let mut tx = self.begin_write().await?;
                for chunk in prepared.chunks($crate::prepare::CHUNK) {
                    self.write_chunk(&mut tx, chunk, now, &mut outcome).await?;
                }
                tx.commit().await?;
                Ok(outcome)
            }

            /// Keeps an update the store refused for good. The payload is JSON text, where
            /// serde escapes every control character, so this insert cannot fail the same way.
            pub async fn dead_letter(
                &self,
                update: &distillguard_core::finding::FindingUpdate,
                error: &str,
            ) -> Result<(), $crate::error::StoreError> {
                let (kind, id) = $crate::prepare::dead_letter_key(update);
                let payload = serde_json::to_string(update)
                    .map_err(|e| $crate::error::StoreError::corrupt(e.to_string()))?;
                let clean = |text: &str| text.replace('\0', "\\u0000");
                sqlx::query(
                    "INSERT INTO dead_letter (subject_kind, subject_id, error, payload, at_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(kind.as_str())
                .bind(clean(&id))
                .bind(clean(error))
                .bind(payload)
                .bind(self.now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            /// The most recent dead letters, newest first.
            pub async fn dead_letters(
                &self,
                limit: u32,
            ) -> Result<Vec<$crate::model::DeadLetter>, $crate::error::StoreError> {
                let rows: Vec<(i64, String, String, String, String, i64)> = sqlx::query_as(
                    "SELECT dead_letter_id, subject_kind, subject_id, error, payload, at_ms \
                     FROM dead_letter ORDER BY dead_letter_id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, subject_kind, subject_id, error, payload, at_ms)| {
                        Ok($crate::model::DeadLetter {
                            id,
                            subject_kind,
                            subject_id,
                            error,
                            payload,
                            at: chrono::DateTime::from_timestamp_millis(at_ms).ok_or_else(
                                || $crate::error::StoreError::corrupt("dead letter time"),
                            )?,
                        })
                    })
                    .collect()
            }

            async fn stored_rows(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                kind: $crate::model::SubjectKind,
                ids: &[&str],
            ) -> Result<Vec<$crate::rows::ExistingRow>, $crate::error::StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT finding_id, subject_id, last_seen_ms, engine_flagged, detectors, status, \
                     close_reason, closed_score, closed_severity_rank, version FROM finding \
                     WHERE subject_kind = ",
                );
                qb.push_bind(kind.as_str()).push(" AND subject_id IN (");
                let mut list = qb.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                qb.push(") ORDER BY subject_id").push(Self::FOR_UPDATE);
                Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
            }

            /// One chunk in the caller's transaction: the stored rows under lock, then the
            /// fresh updates' profiles, findings and what they change beside them.
            async fn write_chunk(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                chunk: &[$crate::prepare::Prepared],
                now: i64,
                outcome: &mut $crate::model::UpsertOutcome,
            ) -> Result<(), $crate::error::StoreError> {
                use $crate::changes::{key, ENGINE_ACTIONS};
                use $crate::prepare::Profile;

                let existing = self.existing_rows(tx, chunk).await?;
                let fresh: Vec<&$crate::prepare::Prepared> = chunk
                    .iter()
                    .filter(|p| {
                        existing
                            .get(&key(p))
                            .is_none_or(|row| p.last_seen_ms >= row.last_seen_ms)
                    })
                    .collect();
                outcome.stale += (chunk.len() - fresh.len()) as u64;
                if fresh.is_empty() {
                    return Ok(());
                }
                self.write_accounts(tx, &fresh, now).await?;
                for p in &fresh {
                    if let Profile::Cluster { links, members } = &p.profile {
                        self.write_cluster(tx, p, links, members, now).await?;
                    }
                }
                let ids = self.write_findings(tx, &fresh, now).await?;
                outcome.written += ids.len() as u64;

                let acts_on_flags = self.options.decisions.acts_on_flags();
                let mut changes = $crate::changes::plan(&fresh, &existing, &ids, acts_on_flags);
                for (p, row) in std::mem::take(&mut changes.dismissed) {
                    if let Some(audit) = self.maybe_reopen(tx, p, row, now).await? {
                        outcome.reopened += 1;
                        changes.audits.push(audit);
                    }
                }
                self.write_detector_rows(tx, &changes.cleared, &changes.detector_rows).await?;
                self.write_audits(tx, &changes.audits, now).await?;
                for subject in changes.decide {
                    self.reconcile_decisions(tx, subject, now).await?;
                }
                for audit in changes.audits.iter().filter(|a| ENGINE_ACTIONS.contains(&a.action)) {
                    let mut data = audit.after.clone().unwrap_or_default();
                    data["subject"] = serde_json::json!(audit.subject);
                    self.enqueue_webhook(tx, audit.action, data, now).await?;
                }
                Ok(())
            }

            /// The stored rows of the chunk's subjects, locked for the transaction.
            async fn existing_rows(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                chunk: &[$crate::prepare::Prepared],
            ) -> Result<
                std::collections::HashMap<$crate::changes::Key, $crate::rows::ExistingRow>,
                $crate::error::StoreError,
            > {
                use $crate::model::SubjectKind;
                let mut existing = std::collections::HashMap::new();
                for kind in [SubjectKind::Account, SubjectKind::Cluster] {
                    let ids: Vec<&str> = chunk
                        .iter()
                        .filter(|p| p.subject.kind == kind)
                        .map(|p| p.subject.id.as_str())
                        .collect();
                    for row in self.stored_rows(tx, kind, &ids).await? {
                        existing.insert((kind, row.subject_id.clone()), row);
                    }
                }
                Ok(existing)
            }

            /// The account profiles (counts, samples, activity) of the fresh account updates.
            async fn write_accounts(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                fresh: &[&$crate::prepare::Prepared],
                now: i64,
            ) -> Result<(), $crate::error::StoreError> {
                use sqlx::types::Json;
                use $crate::prepare::Profile;
                let accounts: Vec<_> = fresh
                    .iter()
                    .filter_map(|p| match &p.profile {
                        Profile::Account {
                            cluster_id,
                            events,
                            samples,
                            activity,
                            end_user,
                        } => Some((p, cluster_id, events, samples, activity, end_user)),
                        Profile::Cluster { .. } => None,
                    })
                    .collect();
                if accounts.is_empty() {
                    return Ok(());
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO account (account_id, cluster_id, events, first_seen_ms, \
                     last_seen_ms, samples, activity, end_user, updated_at_ms) ",
                );
                qb.push_values(&accounts, |mut row, (p, cluster_id, events, samples, activity, end_user)| {
                    row.push_bind(p.subject.id.as_str())
                        .push_bind(cluster_id.as_deref())
                        .push_bind(**events)
                        .push_bind(p.first_seen_ms)
                        .push_bind(p.last_seen_ms)
                        .push_bind(Json(*samples))
                        .push_bind(activity.as_ref().map(Json))
                        .push_bind(end_user.as_deref())
                        .push_bind(now);
                });
                qb.push(format!(
                    " ON CONFLICT (account_id) DO UPDATE SET cluster_id = excluded.cluster_id, \
                     events = excluded.events, \
                     first_seen_ms = {least}(account.first_seen_ms, excluded.first_seen_ms), \
                     last_seen_ms = excluded.last_seen_ms, samples = excluded.samples, \
                     activity = excluded.activity, end_user = excluded.end_user, \
                     updated_at_ms = excluded.updated_at_ms",
                    least = Self::LEAST
                ));
                qb.build().execute(&mut **tx).await?;
                Ok(())
            }

            /// Upserts the findings; the ids of those written (an older update than the stored
            /// one is skipped by the WHERE clause, which also covers a row another writer
            /// inserted after the locked read).
            async fn write_findings(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                fresh: &[&$crate::prepare::Prepared],
                now: i64,
            ) -> Result<
                std::collections::HashMap<$crate::changes::Key, i64>,
                $crate::error::StoreError,
            > {
                use sqlx::types::Json;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO finding (subject_kind, subject_id, score, severity, severity_rank, \
                     engine_flagged, detectors, evidence, first_seen_ms, last_seen_ms, \
                     first_flagged_at_ms, created_at_ms, updated_at_ms) ",
                );
                qb.push_values(fresh, |mut row, p| {
                    row.push_bind(p.subject.kind.as_str())
                        .push_bind(p.subject.id.as_str())
                        .push_bind(p.score)
                        .push_bind(p.severity.as_str())
                        .push_bind($crate::prepare::severity_rank(p.severity))
                        .push_bind(p.engine_flagged)
                        .push_bind(Json(&p.detectors))
                        .push_bind(Json(&p.signals))
                        .push_bind(p.first_seen_ms)
                        .push_bind(p.last_seen_ms)
                        .push_bind(p.first_flagged_at_ms)
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.push(format!(
                    " ON CONFLICT (subject_kind, subject_id) DO UPDATE SET score = excluded.score, \
                     severity = excluded.severity, severity_rank = excluded.severity_rank, \
                     engine_flagged = excluded.engine_flagged, detectors = excluded.detectors, \
                     evidence = excluded.evidence, \
                     first_seen_ms = CASE WHEN finding.subject_kind = 'cluster' \
                     THEN excluded.first_seen_ms \
                     ELSE {least}(finding.first_seen_ms, excluded.first_seen_ms) END, \
                     last_seen_ms = excluded.last_seen_ms, \
                     first_flagged_at_ms = COALESCE({least}(finding.first_flagged_at_ms, \
                     excluded.first_flagged_at_ms), finding.first_flagged_at_ms, \
                     excluded.first_flagged_at_ms) \
                     WHERE excluded.last_seen_ms >= finding.last_seen_ms \
                     RETURNING finding_id, subject_kind, subject_id",
                    least = Self::LEAST
                ));
                let written: Vec<(i64, String, String)> =
                    qb.build_query_as().fetch_all(&mut **tx).await?;
                written
                    .into_iter()
                    .map(|(finding_id, kind, id)| Ok(((kind.parse()?, id), finding_id)))
                    .collect()
            }

            /// Replaces the detector index rows of findings whose fired detectors changed.
            async fn write_detector_rows(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                cleared: &[i64],
                rows: &[(i64, &str)],
            ) -> Result<(), $crate::error::StoreError> {
                if !cleared.is_empty() {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM finding_detector WHERE finding_id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for id in cleared {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    qb.build().execute(&mut **tx).await?;
                }
                for rows in rows.chunks($crate::prepare::CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO finding_detector (finding_id, detector) ",
                    );
                    qb.push_values(rows, |mut row, (id, detector)| {
                        row.push_bind(*id).push_bind(*detector);
                    });
                    qb.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// The system's audit entries of this chunk.
            async fn write_audits(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                audits: &[$crate::prepare::PendingAudit],
                now: i64,
            ) -> Result<(), $crate::error::StoreError> {
                use sqlx::types::Json;
                for entries in audits.chunks($crate::prepare::CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_log (subject_kind, subject_id, actor, at_ms, action, \
                         before, after) ",
                    );
                    qb.push_values(entries, |mut row, audit| {
                        row.push_bind(audit.subject.kind.as_str())
                            .push_bind(audit.subject.id.as_str())
                            .push_bind("system")
                            .push_bind(now)
                            .push_bind(audit.action)
                            .push_bind(audit.before.as_ref().map(Json))
                            .push_bind(audit.after.as_ref().map(Json));
                    });
                    qb.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            async fn write_cluster(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                p: &$crate::prepare::Prepared,
                links: &[distillguard_core::finding::LinkEvidence],
                members: &std::collections::BTreeSet<String>,
                now: i64,
            ) -> Result<(), $crate::error::StoreError> {
                let id = p.subject.id.as_str();
                sqlx::query(
                    "INSERT INTO cluster (cluster_id, links, member_count, first_seen_ms, \
                     last_seen_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (cluster_id) DO UPDATE SET links = excluded.links, \
                     member_count = excluded.member_count, \
                     first_seen_ms = excluded.first_seen_ms, \
                     last_seen_ms = excluded.last_seen_ms, updated_at_ms = excluded.updated_at_ms",
                )
                .bind(id)
                .bind(sqlx::types::Json(links))
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
                let members: Vec<&String> = members.iter().collect();
                for rows in members.chunks($crate::prepare::CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO cluster_member (cluster_id, account_id) ",
                    );
                    qb.push_values(rows, |mut row, member| {
                        row.push_bind(id).push_bind(member.as_str());
                    });
                    qb.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Applies the reopen rule to a dismissed subject that was just re-scored.
            async fn maybe_reopen(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                p: &$crate::prepare::Prepared,
                row: &$crate::rows::ExistingRow,
                now: i64,
            ) -> Result<Option<$crate::prepare::PendingAudit>, $crate::error::StoreError> {
                let allowlisted = self.is_allowlisted(tx, &p.subject, now).await?;
                let rank = $crate::prepare::severity_rank(p.severity);
                let reopen = self.options.reopen.should_reopen(&$crate::review::ReopenInput {
                    status: row.status.parse()?,
                    closed_score: row.closed_score,
                    closed_severity_rank: row.closed_severity_rank,
                    score: p.score,
                    severity_rank: rank,
                    allowlisted,
                });
                if !reopen {
                    return Ok(None);
                }
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
                Ok(Some($crate::prepare::PendingAudit {
                    subject: p.subject.clone(),
                    action: "review.reopened",
                    before: Some(before),
                    after: Some(after),
                }))
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
