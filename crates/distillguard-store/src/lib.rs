//! Persistence for distillguard: findings, review state, notes, audit log, allowlist and
//! detector checkpoints, in PostgreSQL (production) or SQLite (the zero-setup default).
//!
//! [`Store`] is the one interface; [`Store::connect`] picks the backend from the URL. Schema
//! migrations live in `migrations/{postgres,sqlite}` at the repository root, are embedded in
//! the binary and run at connect. [`FindingWriter`] moves engine updates into the store off the
//! hot path, buffering and retrying through database outages.
//!
//! See the crate README for the schema, the review workflow and the write-path rules.

mod backend;
mod changes;
mod cursor;
pub mod decisions;
mod error;
pub mod model;
mod prepare;
pub mod review;
mod rows;
mod sql_decisions;
mod sql_read;
mod sql_review;
mod sql_webhooks;
mod sql_write;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use distillguard_core::finding::FindingUpdate;
use distillguard_core::time::EventTime;

pub use backend::{PgStore, SqliteStore, SQLITE_FILE};
pub use decisions::{
    Decision, DecisionAction, DecisionChanges, DecisionOrigin, DecisionPolicy, DecisionScope,
    FlaggedPolicy,
};
pub use error::StoreError;
pub use model::*;
pub use review::ReopenRule;
pub use writer::{
    BatchObserver, BatchReport, FindingWriter, ShutdownReport, WriterConfig, WriterStats,
};

/// The wall clock used for analyst actions and allowlist expiry (never for detection).
pub type WallClock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How the store behaves; the defaults suit production.
#[derive(Clone)]
pub struct StoreOptions {
    /// Persist prompt sample text; off by default, so only hashes and times are kept.
    pub keep_prompts: bool,
    /// When a dismissed subject reopens.
    pub reopen: ReopenRule,
    /// A detector "fired" for a finding when its signal score reaches this.
    pub fired_min_score: f64,
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before the store reports unavailable.
    pub acquire_timeout: Duration,
    /// How long SQLite waits for another writer's lock before failing.
    pub sqlite_busy_timeout: Duration,
    /// Which decisions findings produce for gateways.
    pub decisions: DecisionPolicy,
    /// Names of the webhook endpoints; each event gets one delivery per name (none: no events).
    pub webhook_endpoints: Vec<String>,
    pub clock: WallClock,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            keep_prompts: false,
            reopen: ReopenRule::default(),
            fired_min_score: 0.5,
            max_connections: 10,
            acquire_timeout: backend::DEFAULT_ACQUIRE_TIMEOUT,
            sqlite_busy_timeout: Duration::from_secs(5),
            decisions: DecisionPolicy::default(),
            webhook_endpoints: Vec::new(),
            clock: Arc::new(Utc::now),
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("keep_prompts", &self.keep_prompts)
            .field("reopen", &self.reopen)
            .field("fired_min_score", &self.fired_min_score)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sqlite_busy_timeout", &self.sqlite_busy_timeout)
            .field("decisions", &self.decisions)
            .field("webhook_endpoints", &self.webhook_endpoints)
            .finish_non_exhaustive()
    }
}

/// The store, whichever database is behind it. Cloning is cheap (a pool handle).
#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Postgres($store) => $call,
            Store::Sqlite($store) => $call,
        }
    };
}

impl Store {
    /// PostgreSQL for a `postgres://` or `postgresql://` URL; SQLite for a `sqlite:` URL or, with
    /// no URL, the file [`SQLITE_FILE`] in `data_dir` (created with the directory if missing).
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Store, StoreError> {
        Self::connect_with(database_url, data_dir, StoreOptions::default()).await
    }

    pub async fn connect_with(
        database_url: Option<&str>,
        data_dir: &Path,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Store::Postgres(PgStore::connect(url, options).await?))
            }
            Some(url) if url.starts_with("sqlite:") => {
                Ok(Store::Sqlite(SqliteStore::connect(url, options).await?))
            }
            // Only the scheme is echoed: the rest of a URL may carry a password.
            Some(url) => Err(StoreError::InvalidInput(format!(
                "unsupported database URL scheme {:?}: use postgres:// or sqlite://",
                url.split(':').next().unwrap_or_default()
            ))),
            None => Ok(Store::Sqlite(
                SqliteStore::open_in(data_dir, options).await?,
            )),
        }
    }

    /// `postgres` or `sqlite`, for logs and `/readyz`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Applies a batch of engine updates in one transaction (see `sql_write` for the rules).
    pub async fn upsert_findings(
        &self,
        updates: &[FindingUpdate],
    ) -> Result<UpsertOutcome, StoreError> {
        dispatch!(self, s => s.upsert_findings(updates).await)
    }

    /// Keeps an update the store refused for good (table `dead_letter`), with why.
    pub async fn dead_letter(&self, update: &FindingUpdate, error: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.dead_letter(update, error).await)
    }

    /// The most recent dead-lettered updates, newest first.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        dispatch!(self, s => s.dead_letters(limit).await)
    }

    pub async fn list(
        &self,
        kind: SubjectKind,
        filter: &ListFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingSummary>, StoreError> {
        dispatch!(self, s => s.list(kind, filter, page).await)
    }

    pub async fn list_accounts(
        &self,
        filter: &ListFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingSummary>, StoreError> {
        self.list(SubjectKind::Account, filter, page).await
    }

    pub async fn list_clusters(
        &self,
        filter: &ListFilter,
        page: &PageRequest,
    ) -> Result<Page<FindingSummary>, StoreError> {
        self.list(SubjectKind::Cluster, filter, page).await
    }

    pub async fn get_account(&self, id: &str) -> Result<AccountDetail, StoreError> {
        dispatch!(self, s => s.get_account(id).await)
    }

    pub async fn get_cluster(&self, id: &str) -> Result<ClusterDetail, StoreError> {
        dispatch!(self, s => s.get_cluster(id).await)
    }

    /// Moves one subject through the review workflow; 409/422 semantics in [`StoreError`].
    pub async fn transition(
        &self,
        subject: &Subject,
        request: &TransitionRequest,
        actor: &Actor,
    ) -> Result<ReviewState, StoreError> {
        dispatch!(self, s => s.transition(subject, request, actor).await)
    }

    /// Applies `request.to` (and reason, assignee) to each id; `request.expected_version` is
    /// ignored in favour of each item's own.
    pub async fn bulk_transition(
        &self,
        kind: SubjectKind,
        items: &[BulkItem],
        request: &TransitionRequest,
        actor: &Actor,
    ) -> Result<Vec<BulkOutcome>, StoreError> {
        dispatch!(self, s => s.bulk_transition(kind, items, request, actor).await)
    }

    pub async fn add_note(
        &self,
        subject: &Subject,
        body: &str,
        author: &Actor,
    ) -> Result<Note, StoreError> {
        dispatch!(self, s => s.add_note(subject, body, author).await)
    }

    pub async fn list_notes(&self, subject: &Subject) -> Result<Vec<Note>, StoreError> {
        dispatch!(self, s => s.list_notes(subject).await)
    }

    pub async fn list_audit(
        &self,
        subject: &Subject,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        dispatch!(self, s => s.list_audit(subject, after_id, limit).await)
    }

    pub async fn add_allowlist(
        &self,
        subject: &Subject,
        reason: &str,
        expires_at: Option<DateTime<Utc>>,
        actor: &Actor,
    ) -> Result<AllowlistEntry, StoreError> {
        dispatch!(self, s => s.add_allowlist(subject, reason, expires_at, actor).await)
    }

    pub async fn list_allowlist(
        &self,
        include_expired: bool,
    ) -> Result<Vec<AllowlistEntry>, StoreError> {
        dispatch!(self, s => s.list_allowlist(include_expired).await)
    }

    pub async fn remove_allowlist(
        &self,
        id: i64,
        actor: &Actor,
    ) -> Result<AllowlistEntry, StoreError> {
        dispatch!(self, s => s.remove_allowlist(id, actor).await)
    }

    /// Every decision in force, and the cursor to follow changes from (`GET /v1/decisions`).
    pub async fn current_decisions(&self) -> Result<DecisionChanges, StoreError> {
        dispatch!(self, s => s.current_decisions().await)
    }

    /// Decisions created, deleted or expired after the cursor `since`, at most `limit`.
    pub async fn decision_changes(
        &self,
        since: i64,
        limit: u32,
    ) -> Result<DecisionChanges, StoreError> {
        dispatch!(self, s => s.decision_changes(since, limit).await)
    }

    /// Webhook deliveries due now (see `docs/integrations.md`, "Webhooks").
    pub async fn due_webhooks(&self, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError> {
        dispatch!(self, s => s.due_webhooks(limit).await)
    }

    pub async fn webhook_delivered(&self, event_id: i64, endpoint: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.webhook_delivered(event_id, endpoint).await)
    }

    /// A failed attempt: retried at `retry_at`, or dead-lettered when it is `None`.
    pub async fn webhook_failed(
        &self,
        event_id: i64,
        endpoint: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.webhook_failed(event_id, endpoint, error, retry_at).await)
    }

    pub async fn webhook_dead_letters(
        &self,
        limit: u32,
    ) -> Result<Vec<WebhookDeadLetter>, StoreError> {
        dispatch!(self, s => s.webhook_dead_letters(limit).await)
    }

    /// Back into the outbox with fresh attempts; `false` when there is no such dead letter.
    pub async fn retry_webhook_dead_letter(
        &self,
        event_id: i64,
        endpoint: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.retry_webhook_dead_letter(event_id, endpoint).await)
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        dispatch!(self, s => s.stats().await)
    }

    pub async fn save_checkpoint(
        &self,
        key: &str,
        data: &[u8],
        watermark: Option<EventTime>,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.save_checkpoint(key, data, watermark).await)
    }

    pub async fn load_checkpoint(&self, key: &str) -> Result<Option<Checkpoint>, StoreError> {
        dispatch!(self, s => s.load_checkpoint(key).await)
    }

    /// Starts a chunked checkpoint under `key`: returns its generation number.
    pub async fn begin_checkpoint(&self, key: &str) -> Result<i64, StoreError> {
        dispatch!(self, s => s.begin_checkpoint(key).await)
    }

    pub async fn put_checkpoint_chunk(
        &self,
        key: &str,
        generation: i64,
        seq: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_checkpoint_chunk(key, generation, seq, data).await)
    }

    /// Writes the manifest (the generation becomes the one restored) and deletes older ones.
    pub async fn commit_checkpoint(&self, manifest: &CheckpointManifest) -> Result<(), StoreError> {
        dispatch!(self, s => s.commit_checkpoint(manifest).await)
    }

    pub async fn abandon_checkpoint(&self, key: &str, generation: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.abandon_checkpoint(key, generation).await)
    }

    pub async fn latest_checkpoint(
        &self,
        key: &str,
    ) -> Result<Option<CheckpointManifest>, StoreError> {
        dispatch!(self, s => s.latest_checkpoint(key).await)
    }

    pub async fn checkpoint_chunk(
        &self,
        key: &str,
        generation: i64,
        seq: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self, s => s.checkpoint_chunk(key, generation, seq).await)
    }

    pub async fn set_watermark(&self, name: &str, at: EventTime) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_watermark(name, at).await)
    }
}
