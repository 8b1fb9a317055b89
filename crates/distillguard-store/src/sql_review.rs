//! Analyst writes (review transitions, notes, allowlist) and the service's own state
//! (checkpoints, watermarks). Every analyst write commits together with its audit entry.

use serde_json::{json, Value};

use crate::model::{AllowlistEntry, AssigneeChange, CloseReason, ReviewStatus};

pub(crate) fn review_view(
    status: &str,
    assignee: Option<&str>,
    close_reason: Option<&str>,
    version: i64,
) -> Value {
    json!({
        "status": status,
        "assignee": assignee,
        "close_reason": close_reason,
        "version": version,
    })
}

pub(crate) fn allowlist_view(entry: &AllowlistEntry) -> Value {
    json!({
        "id": entry.id,
        "reason": entry.reason,
        "expires_at": entry.expires_at,
        "created_by": entry.created_by,
    })
}

pub(crate) fn next_assignee(current: Option<String>, change: &AssigneeChange) -> Option<String> {
    match change {
        AssigneeChange::Keep => current,
        AssigneeChange::Set(name) => Some(name.clone()),
        AssigneeChange::Clear => None,
    }
}

pub(crate) fn close_reason_text(
    to: ReviewStatus,
    reason: Option<CloseReason>,
) -> Option<&'static str> {
    to.is_closed()
        .then(|| reason.map(CloseReason::as_str))
        .flatten()
}

/// Generates the review, allowlist and checkpoint methods for one backend.
macro_rules! impl_review {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Moves one finding through the workflow (see [`crate::review`]).
            pub async fn transition(
                &self,
                subject: &$crate::model::Subject,
                request: &$crate::model::TransitionRequest,
                actor: &$crate::model::Actor,
            ) -> Result<$crate::model::ReviewState, $crate::error::StoreError> {
                let mut tx = self.begin_write().await?;
                let state = self
                    .transition_in(&mut tx, subject, Some(request.expected_version), request, actor)
                    .await?;
                tx.commit().await?;
                Ok(state)
            }

            /// Applies one change to each id, each in its own transaction, so one stale or
            /// invalid item does not undo the others.
            pub async fn bulk_transition(
                &self,
                kind: $crate::model::SubjectKind,
                items: &[$crate::model::BulkItem],
                request: &$crate::model::TransitionRequest,
                actor: &$crate::model::Actor,
            ) -> Result<Vec<$crate::model::BulkOutcome>, $crate::error::StoreError> {
                if items.is_empty() || items.len() > $crate::model::MAX_BULK_ITEMS {
                    return Err($crate::error::StoreError::InvalidInput(format!(
                        "a bulk change takes 1 to {} ids",
                        $crate::model::MAX_BULK_ITEMS
                    )));
                }
                let mut outcomes = Vec::with_capacity(items.len());
                for item in items {
                    let result = async {
                        let subject = $crate::model::Subject::new(kind, item.id.clone())?;
                        let mut tx = self.begin_write().await?;
                        let state = self
                            .transition_in(&mut tx, &subject, item.expected_version, request, actor)
                            .await?;
                        tx.commit().await?;
                        Ok(state)
                    }
                    .await;
                    outcomes.push($crate::model::BulkOutcome { id: item.id.clone(), result });
                }
                Ok(outcomes)
            }

            async fn transition_in(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                subject: &$crate::model::Subject,
                expected_version: Option<i64>,
                request: &$crate::model::TransitionRequest,
                actor: &$crate::model::Actor,
            ) -> Result<$crate::model::ReviewState, $crate::error::StoreError> {
                use $crate::error::StoreError;
                if let $crate::model::AssigneeChange::Set(name) = &request.assignee {
                    $crate::model::check_name("assignee", name)?;
                }
                let now = self.now_ms();
                let row: $crate::rows::ReviewRow = sqlx::query_as(&format!(
                    "SELECT finding_id, status, assignee, close_reason, version, score, severity_rank \
                     FROM finding WHERE subject_kind = $1 AND subject_id = $2{}",
                    Self::FOR_UPDATE
                ))
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(subject.to_string()))?;
                if expected_version.is_some_and(|v| v != row.version) {
                    return Err(StoreError::VersionConflict { current: row.version });
                }
                let from: $crate::model::ReviewStatus = row.status.parse()?;
                $crate::review::check_transition(from, request)?;
                let to = request.to;
                let assignee = $crate::sql_review::next_assignee(row.assignee.clone(), &request.assignee);
                let close_reason = $crate::sql_review::close_reason_text(to, request.close_reason);
                let (closed_score, closed_rank) = if to.is_closed() {
                    (Some(row.score), Some(row.severity_rank))
                } else {
                    (None, None)
                };
                let updated = sqlx::query(
                    "UPDATE finding SET status = $3, assignee = $4, close_reason = $5, \
                     closed_score = $6, closed_severity_rank = $7, version = version + 1, \
                     updated_at_ms = $8 WHERE finding_id = $1 AND version = $2",
                )
                .bind(row.finding_id)
                .bind(row.version)
                .bind(to.as_str())
                .bind(assignee.as_deref())
                .bind(close_reason)
                .bind(closed_score)
                .bind(closed_rank)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                if updated.rows_affected() != 1 {
                    // Unreachable while the row is locked; kept so a lost race is never silent.
                    return Err(StoreError::VersionConflict { current: row.version + 1 });
                }
                let action = if from == to { "review.assigned" } else { "review.status_changed" };
                let before = $crate::sql_review::review_view(
                    &row.status,
                    row.assignee.as_deref(),
                    row.close_reason.as_deref(),
                    row.version,
                );
                let after = $crate::sql_review::review_view(
                    to.as_str(),
                    assignee.as_deref(),
                    close_reason,
                    row.version + 1,
                );
                self.audit(tx, subject, actor.as_str(), now, action, Some(before), Some(after))
                    .await?;
                self.reconcile_decisions(tx, subject, now).await?;
                Ok($crate::model::ReviewState {
                    status: to,
                    assignee,
                    close_reason: request.close_reason.filter(|_| to.is_closed()),
                    version: row.version + 1,
                    updated_at: $crate::rows::wall(now),
                })
            }

            pub async fn add_note(
                &self,
                subject: &$crate::model::Subject,
                body: &str,
                author: &$crate::model::Actor,
            ) -> Result<$crate::model::Note, $crate::error::StoreError> {
                $crate::model::check_text("note", body)?;
                let now = self.now_ms();
                let mut tx = self.begin_write().await?;
                // A missing subject surfaces as a foreign-key violation, mapped to NotFound.
                let note_id: i64 = sqlx::query_scalar(
                    "INSERT INTO note (subject_kind, subject_id, author, body, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING note_id",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .bind(author.as_str())
                .bind(body)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| match $crate::error::StoreError::from(e) {
                    $crate::error::StoreError::NotFound(_) => {
                        $crate::error::StoreError::NotFound(subject.to_string())
                    }
                    other => other,
                })?;
                let after = serde_json::json!({ "note_id": note_id, "body": body });
                self.audit(&mut tx, subject, author.as_str(), now, "note.added", None, Some(after))
                    .await?;
                tx.commit().await?;
                Ok($crate::model::Note {
                    id: note_id,
                    subject: subject.clone(),
                    author: author.as_str().to_string(),
                    body: body.to_string(),
                    created_at: $crate::rows::wall(now),
                })
            }

            pub async fn list_notes(
                &self,
                subject: &$crate::model::Subject,
            ) -> Result<Vec<$crate::model::Note>, $crate::error::StoreError> {
                self.require_finding(subject).await?;
                let rows: Vec<$crate::rows::NoteRow> = sqlx::query_as(
                    "SELECT note_id, subject_kind, subject_id, author, body, created_at_ms FROM note \
                     WHERE subject_kind = $1 AND subject_id = $2 ORDER BY note_id",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map($crate::rows::NoteRow::into_note).collect()
            }

            /// The subject's audit trail, oldest first, from after `after_id`, at most `limit`.
            pub async fn list_audit(
                &self,
                subject: &$crate::model::Subject,
                after_id: Option<i64>,
                limit: u32,
            ) -> Result<Vec<$crate::model::AuditEntry>, $crate::error::StoreError> {
                let rows: Vec<$crate::rows::AuditRow> = sqlx::query_as(
                    "SELECT audit_id, subject_kind, subject_id, actor, at_ms, action, before, after \
                     FROM audit_log WHERE subject_kind = $1 AND subject_id = $2 AND audit_id > $3 \
                     ORDER BY audit_id LIMIT $4",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .bind(after_id.unwrap_or(0))
                .bind(i64::from(limit.clamp(1, 1_000)))
                .fetch_all(&self.pool)
                .await?;
                if rows.is_empty() && after_id.is_none() {
                    // Nothing recorded at all: a subject nobody knows about.
                    self.require_finding(subject).await?;
                }
                rows.into_iter().map($crate::rows::AuditRow::into_entry).collect()
            }

            async fn require_finding(
                &self,
                subject: &$crate::model::Subject,
            ) -> Result<(), $crate::error::StoreError> {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT finding_id FROM finding WHERE subject_kind = $1 AND subject_id = $2",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .fetch_optional(&self.pool)
                .await?;
                found
                    .map(|_| ())
                    .ok_or_else(|| $crate::error::StoreError::NotFound(subject.to_string()))
            }

            /// Allowlists a subject, replacing its live entry if there is one.
            pub async fn add_allowlist(
                &self,
                subject: &$crate::model::Subject,
                reason: &str,
                expires_at: Option<chrono::DateTime<chrono::Utc>>,
                actor: &$crate::model::Actor,
            ) -> Result<$crate::model::AllowlistEntry, $crate::error::StoreError> {
                $crate::model::check_text("reason", reason)?;
                let now = self.now_ms();
                let expires_ms = expires_at.map(|t| t.timestamp_millis());
                if expires_ms.is_some_and(|e| e <= now) {
                    return Err($crate::error::StoreError::InvalidInput(
                        "expires_at is in the past".into(),
                    ));
                }
                let mut tx = self.begin_write().await?;
                let previous: Option<$crate::rows::AllowlistRow> = sqlx::query_as(&format!(
                    "SELECT allowlist_id, subject_kind, subject_id, reason, expires_at_ms, created_by, \
                     created_at_ms FROM allowlist WHERE subject_kind = $1 AND subject_id = $2 \
                     AND removed_at_ms IS NULL{}",
                    Self::FOR_UPDATE
                ))
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(previous) = &previous {
                    sqlx::query(
                        "UPDATE allowlist SET removed_at_ms = $2, removed_by = $3 WHERE allowlist_id = $1",
                    )
                    .bind(previous.allowlist_id)
                    .bind(now)
                    .bind(actor.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO allowlist (subject_kind, subject_id, reason, expires_at_ms, \
                     created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) RETURNING allowlist_id",
                )
                .bind(subject.kind.as_str())
                .bind(&subject.id)
                .bind(reason)
                .bind(expires_ms)
                .bind(actor.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let entry = $crate::model::AllowlistEntry {
                    id,
                    subject: subject.clone(),
                    reason: reason.to_string(),
                    expires_at: expires_ms.map($crate::rows::wall),
                    created_by: actor.as_str().to_string(),
                    created_at: $crate::rows::wall(now),
                };
                let before = previous
                    .map($crate::rows::AllowlistRow::into_entry)
                    .transpose()?
                    .map(|e| $crate::sql_review::allowlist_view(&e));
                let after = Some($crate::sql_review::allowlist_view(&entry));
                self.audit(&mut tx, subject, actor.as_str(), now, "allowlist.added", before, after)
                    .await?;
                self.reconcile_with_clusters(&mut tx, subject, now).await?;
                tx.commit().await?;
                Ok(entry)
            }

            /// Live entries; expired ones too when asked (they no longer apply).
            pub async fn list_allowlist(
                &self,
                include_expired: bool,
            ) -> Result<Vec<$crate::model::AllowlistEntry>, $crate::error::StoreError> {
                let rows: Vec<$crate::rows::AllowlistRow> = sqlx::query_as(
                    "SELECT allowlist_id, subject_kind, subject_id, reason, expires_at_ms, created_by, \
                     created_at_ms FROM allowlist WHERE removed_at_ms IS NULL \
                     AND ($1 OR expires_at_ms IS NULL OR expires_at_ms > $2) \
                     ORDER BY allowlist_id LIMIT 10000",
                )
                .bind(include_expired)
                .bind(self.now_ms())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map($crate::rows::AllowlistRow::into_entry).collect()
            }

            pub async fn remove_allowlist(
                &self,
                id: i64,
                actor: &$crate::model::Actor,
            ) -> Result<$crate::model::AllowlistEntry, $crate::error::StoreError> {
                let now = self.now_ms();
                let mut tx = self.begin_write().await?;
                let row: $crate::rows::AllowlistRow = sqlx::query_as(
                    "UPDATE allowlist SET removed_at_ms = $2, removed_by = $3 \
                     WHERE allowlist_id = $1 AND removed_at_ms IS NULL \
                     RETURNING allowlist_id, subject_kind, subject_id, reason, expires_at_ms, \
                     created_by, created_at_ms",
                )
                .bind(id)
                .bind(now)
                .bind(actor.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| $crate::error::StoreError::NotFound(format!("allowlist entry {id}")))?;
                let entry = row.into_entry()?;
                let before = Some($crate::sql_review::allowlist_view(&entry));
                self.audit(&mut tx, &entry.subject, actor.as_str(), now, "allowlist.removed", before, None)
                    .await?;
                self.reconcile_with_clusters(&mut tx, &entry.subject, now).await?;
                tx.commit().await?;
                Ok(entry)
            }

            /// Saves detector state under `key`, replacing the previous one.
            pub async fn save_checkpoint(
                &self,
                key: &str,
                data: &[u8],
                watermark: Option<distillguard_core::time::EventTime>,
            ) -> Result<(), $crate::error::StoreError> {
                $crate::model::check_name("checkpoint key", key)?;
                sqlx::query(
                    "INSERT INTO checkpoint (checkpoint_key, data, watermark_ms, saved_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (checkpoint_key) DO UPDATE SET \
                     data = excluded.data, watermark_ms = excluded.watermark_ms, \
                     saved_at_ms = excluded.saved_at_ms",
                )
                .bind(key)
                .bind(data)
                .bind(watermark.map(|w| w.epoch_ms()))
                .bind(self.now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            pub async fn load_checkpoint(
                &self,
                key: &str,
            ) -> Result<Option<$crate::model::Checkpoint>, $crate::error::StoreError> {
                let row: Option<$crate::rows::CheckpointRow> = sqlx::query_as(
                    "SELECT checkpoint_key, data, watermark_ms, saved_at_ms FROM checkpoint \
                     WHERE checkpoint_key = $1",
                )
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| {
                    Ok($crate::model::Checkpoint {
                        key: row.checkpoint_key,
                        data: row.data,
                        watermark: row.watermark_ms.map($crate::rows::event_time).transpose()?,
                        saved_at: $crate::rows::wall(row.saved_at_ms),
                    })
                })
                .transpose()
            }

            /// The next generation number for a checkpoint under `key`; also deletes chunks of
            /// generations that never got a manifest (a checkpoint cut short by a crash).
            pub async fn begin_checkpoint(
                &self,
                key: &str,
            ) -> Result<i64, $crate::error::StoreError> {
                $crate::model::check_name("checkpoint key", key)?;
                let latest: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(generation) FROM checkpoint_manifest WHERE checkpoint_key = $1",
                )
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
                let latest = latest.unwrap_or(0);
                sqlx::query("DELETE FROM checkpoint_chunk WHERE checkpoint_key = $1 AND generation > $2")
                    .bind(key)
                    .bind(latest)
                    .execute(&self.pool)
                    .await?;
                Ok(latest + 1)
            }

            /// Stores one chunk of an uncommitted generation.
            pub async fn put_checkpoint_chunk(
                &self,
                key: &str,
                generation: i64,
                seq: u64,
                data: &[u8],
            ) -> Result<(), $crate::error::StoreError> {
                sqlx::query(
                    "INSERT INTO checkpoint_chunk (checkpoint_key, generation, seq, data) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(key)
                .bind(generation)
                .bind(seq as i64)
                .bind(data)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            /// Makes a generation visible by writing its manifest, and deletes every older one
            /// (and the single-row JSON checkpoint of format 1), in one transaction.
            pub async fn commit_checkpoint(
                &self,
                manifest: &$crate::model::CheckpointManifest,
            ) -> Result<(), $crate::error::StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO checkpoint_manifest (checkpoint_key, generation, format_version, \
                     chunk_count, total_bytes, log_position, watermark_ms, meta, saved_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&manifest.key)
                .bind(manifest.generation)
                .bind(i32::from(manifest.format_version))
                .bind(manifest.chunk_count as i64)
                .bind(manifest.total_bytes as i64)
                .bind(manifest.log_position.map(|p| p as i64))
                .bind(manifest.watermark.map(|w| w.epoch_ms()))
                .bind(&manifest.meta)
                .bind(self.now_ms())
                .execute(&mut *tx)
                .await?;
                for table in ["checkpoint_chunk", "checkpoint_manifest"] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE checkpoint_key = $1 AND generation < $2"
                    ))
                    .bind(&manifest.key)
                    .bind(manifest.generation)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("DELETE FROM checkpoint WHERE checkpoint_key = $1")
                    .bind(&manifest.key)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            /// Deletes the chunks of a generation that will not be committed.
            pub async fn abandon_checkpoint(
                &self,
                key: &str,
                generation: i64,
            ) -> Result<(), $crate::error::StoreError> {
                sqlx::query("DELETE FROM checkpoint_chunk WHERE checkpoint_key = $1 AND generation = $2")
                    .bind(key)
                    .bind(generation)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// The newest committed generation under `key`.
            pub async fn latest_checkpoint(
                &self,
                key: &str,
            ) -> Result<Option<$crate::model::CheckpointManifest>, $crate::error::StoreError> {
                let row: Option<$crate::rows::ManifestRow> = sqlx::query_as(
                    "SELECT checkpoint_key, generation, format_version, chunk_count, total_bytes, \
                     log_position, watermark_ms, meta, saved_at_ms FROM checkpoint_manifest \
                     WHERE checkpoint_key = $1 ORDER BY generation DESC LIMIT 1",
                )
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| {
                    Ok($crate::model::CheckpointManifest {
                        key: row.checkpoint_key,
                        generation: row.generation,
                        format_version: u16::try_from(row.format_version).unwrap_or(u16::MAX),
                        chunk_count: row.chunk_count.max(0) as u64,
                        total_bytes: row.total_bytes.max(0) as u64,
                        log_position: row.log_position.map(|p| p.max(0) as u64),
                        watermark: row.watermark_ms.map($crate::rows::event_time).transpose()?,
                        meta: row.meta,
                        saved_at: $crate::rows::wall(row.saved_at_ms),
                    })
                })
                .transpose()
            }

            /// One chunk of a committed generation.
            pub async fn checkpoint_chunk(
                &self,
                key: &str,
                generation: i64,
                seq: u64,
            ) -> Result<Option<Vec<u8>>, $crate::error::StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT data FROM checkpoint_chunk \
                     WHERE checkpoint_key = $1 AND generation = $2 AND seq = $3",
                )
                .bind(key)
                .bind(generation)
                .bind(seq as i64)
                .fetch_optional(&self.pool)
                .await?)
            }

            /// Records a named event-time watermark (e.g. `ingest`, `detection`) for `stats`.
            pub async fn set_watermark(
                &self,
                name: &str,
                at: distillguard_core::time::EventTime,
            ) -> Result<(), $crate::error::StoreError> {
                $crate::model::check_name("watermark name", name)?;
                sqlx::query(
                    "INSERT INTO watermark (name, at_ms, updated_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET at_ms = excluded.at_ms, \
                     updated_at_ms = excluded.updated_at_ms",
                )
                .bind(name)
                .bind(at.epoch_ms())
                .bind(self.now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_review;
