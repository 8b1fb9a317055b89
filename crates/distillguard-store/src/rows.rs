//! Row shapes shared by both backends, and their conversion into the public model.
//!
//! `#[derive(FromRow)]` is generic over the database, so one struct serves PostgreSQL and SQLite;
//! only column types both decode (i64, f64, bool, text, JSON) are used.

use chrono::{DateTime, Utc};
use distillguard_core::time::EventTime;
use sqlx::types::Json;

use crate::error::StoreError;
use crate::model::{
    parse_severity, AllowlistEntry, AuditEntry, CloseReason, FindingSummary, Note, ReviewState,
    Subject, SubjectKind,
};

pub(crate) fn wall(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn event_time(ms: i64) -> Result<EventTime, StoreError> {
    EventTime::from_epoch_ms(ms).map_err(|e| StoreError::corrupt(e.to_string()))
}

pub(crate) fn subject(kind: &str, id: String) -> Result<Subject, StoreError> {
    Ok(Subject {
        kind: kind.parse::<SubjectKind>()?,
        id,
    })
}

/// The columns every list and detail query selects (see `sql_read::SUMMARY_SELECT`).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SummaryRow {
    pub finding_id: i64,
    pub subject_kind: String,
    pub subject_id: String,
    pub score: f64,
    pub severity: String,
    pub engine_flagged: bool,
    pub detectors: Json<Vec<String>>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub first_flagged_at_ms: Option<i64>,
    pub status: String,
    pub assignee: Option<String>,
    pub close_reason: Option<String>,
    pub version: i64,
    pub updated_at_ms: i64,
    pub allow_id: Option<i64>,
    pub allow_reason: Option<String>,
    pub allow_expires_ms: Option<i64>,
    pub allow_by: Option<String>,
    pub allow_at_ms: Option<i64>,
    pub cluster_id: Option<String>,
    pub member_count: Option<i64>,
}

impl SummaryRow {
    pub fn into_summary(self) -> Result<FindingSummary, StoreError> {
        let subject = subject(&self.subject_kind, self.subject_id)?;
        let allowlisted = match (
            self.allow_id,
            self.allow_reason,
            self.allow_by,
            self.allow_at_ms,
        ) {
            (Some(id), Some(reason), Some(created_by), Some(at)) => Some(AllowlistEntry {
                id,
                subject: subject.clone(),
                reason,
                expires_at: self.allow_expires_ms.map(wall),
                created_by,
                created_at: wall(at),
            }),
            _ => None,
        };
        Ok(FindingSummary {
            score: self.score,
            severity: parse_severity(&self.severity)?,
            flagged: self.engine_flagged && allowlisted.is_none(),
            engine_flagged: self.engine_flagged,
            detectors: self.detectors.0,
            first_seen: event_time(self.first_seen_ms)?,
            last_seen: event_time(self.last_seen_ms)?,
            first_flagged_at: self.first_flagged_at_ms.map(event_time).transpose()?,
            review: ReviewState {
                status: self.status.parse()?,
                assignee: self.assignee,
                close_reason: self
                    .close_reason
                    .as_deref()
                    .map(str::parse::<CloseReason>)
                    .transpose()?,
                version: self.version,
                updated_at: wall(self.updated_at_ms),
            },
            allowlisted,
            cluster_id: self.cluster_id,
            member_count: self.member_count,
            subject,
        })
    }
}

/// The review columns a transition reads under lock.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReviewRow {
    pub finding_id: i64,
    pub status: String,
    pub assignee: Option<String>,
    pub close_reason: Option<String>,
    pub version: i64,
    pub score: f64,
    pub severity_rank: i32,
}

/// What the write path needs to know about a stored finding.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ExistingRow {
    pub finding_id: i64,
    pub subject_id: String,
    pub last_seen_ms: i64,
    pub engine_flagged: bool,
    pub detectors: Json<Vec<String>>,
    pub status: String,
    pub close_reason: Option<String>,
    pub closed_score: Option<f64>,
    pub closed_severity_rank: Option<i32>,
    pub version: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NoteRow {
    pub note_id: i64,
    pub subject_kind: String,
    pub subject_id: String,
    pub author: String,
    pub body: String,
    pub created_at_ms: i64,
}

impl NoteRow {
    pub fn into_note(self) -> Result<Note, StoreError> {
        Ok(Note {
            id: self.note_id,
            subject: subject(&self.subject_kind, self.subject_id)?,
            author: self.author,
            body: self.body,
            created_at: wall(self.created_at_ms),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub audit_id: i64,
    pub subject_kind: String,
    pub subject_id: String,
    pub actor: String,
    pub at_ms: i64,
    pub action: String,
    pub before: Option<Json<serde_json::Value>>,
    pub after: Option<Json<serde_json::Value>>,
}

impl AuditRow {
    pub fn into_entry(self) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry {
            id: self.audit_id,
            subject: subject(&self.subject_kind, self.subject_id)?,
            actor: self.actor,
            at: wall(self.at_ms),
            action: self.action,
            before: self.before.map(|j| j.0),
            after: self.after.map(|j| j.0),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AllowlistRow {
    pub allowlist_id: i64,
    pub subject_kind: String,
    pub subject_id: String,
    pub reason: String,
    pub expires_at_ms: Option<i64>,
    pub created_by: String,
    pub created_at_ms: i64,
}

impl AllowlistRow {
    pub fn into_entry(self) -> Result<AllowlistEntry, StoreError> {
        Ok(AllowlistEntry {
            id: self.allowlist_id,
            subject: subject(&self.subject_kind, self.subject_id)?,
            reason: self.reason,
            expires_at: self.expires_at_ms.map(wall),
            created_by: self.created_by,
            created_at: wall(self.created_at_ms),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberRow {
    pub account_id: String,
    pub score: Option<f64>,
    pub severity: Option<String>,
    pub engine_flagged: Option<bool>,
    pub allow_id: Option<i64>,
    pub events: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CountRow {
    pub status: String,
    pub severity: String,
    pub total: i64,
    pub flagged: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    pub checkpoint_key: String,
    pub data: Vec<u8>,
    pub watermark_ms: Option<i64>,
    pub saved_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ManifestRow {
    pub checkpoint_key: String,
    pub generation: i64,
    pub format_version: i32,
    pub chunk_count: i64,
    pub total_bytes: i64,
    pub log_position: Option<i64>,
    pub watermark_ms: Option<i64>,
    pub meta: Vec<u8>,
    pub saved_at_ms: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WatermarkRow {
    pub name: String,
    pub at_ms: i64,
    pub updated_at_ms: i64,
}
