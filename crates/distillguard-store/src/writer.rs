//! Moves engine updates into the store off the hot path.
//!
//! `submit` never waits on the database: updates go into a bounded buffer that a background task
//! drains in batches. While the database is down the task retries with exponential backoff and
//! the buffer holds the updates. The buffer coalesces by subject: an update carries the engine's
//! whole current view of its subject, so a newer update replaces an older pending one without
//! losing anything, and the buffer's size is bounded by the number of *distinct* subjects that
//! changed during an outage rather than by its length. Only when more distinct subjects than
//! `capacity` are pending is an update dropped (counted in `dropped_total`).
//!
//! A permanent error (one the database will give again however long we wait) is not retried: the
//! writer writes the failed batch one update at a time, and each update that still fails goes to
//! the dead-letter table (`dead_lettered_total`), so one bad finding never blocks the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use distillguard_core::finding::FindingUpdate;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::model::SubjectKind;
use crate::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Distinct subjects the buffer holds before it starts dropping new ones.
    pub capacity: usize,
    /// Updates per transaction.
    pub batch_size: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            batch_size: 500,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Counters for metrics and `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Subjects waiting to be written.
    pub buffered: usize,
    pub written_total: u64,
    /// Failed batch attempts (each is retried).
    pub failures_total: u64,
    /// Updates refused because the buffer was full.
    pub dropped_total: u64,
    /// Updates the store refused for good, moved to the dead-letter table.
    pub dead_lettered_total: u64,
    /// NUL characters replaced in stored text.
    pub sanitized_total: u64,
    /// The last attempt failed: the database is down or refusing writes.
    pub degraded: bool,
    pub last_error: Option<String>,
}

/// One batch attempt, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub ok: bool,
    pub updates: usize,
    pub duration: Duration,
}

/// Called after every batch attempt (from the writer task; keep it cheap).
pub type BatchObserver = Arc<dyn Fn(BatchReport) + Send + Sync>;

/// What a shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub written_total: u64,
    /// Subjects still buffered when the deadline passed.
    pub abandoned: usize,
}

type Key = (SubjectKind, String);

fn key_of(update: &FindingUpdate) -> Key {
    match update {
        FindingUpdate::Account(a) => (SubjectKind::Account, a.account_id.clone()),
        FindingUpdate::Cluster(c) => (SubjectKind::Cluster, c.cluster_id.clone()),
    }
}

/// Insertion-ordered, coalescing buffer.
#[derive(Default)]
struct Buffer {
    next_seq: u64,
    order: BTreeMap<u64, Key>,
    entries: HashMap<Key, (u64, FindingUpdate)>,
}

impl Buffer {
    /// Returns false when the update was dropped for lack of room.
    fn push(&mut self, update: FindingUpdate, capacity: usize) -> bool {
        let key = key_of(&update);
        if let Some(entry) = self.entries.get_mut(&key) {
            // Keep the queue position so a busy subject is not starved by newer ones.
            entry.1 = update;
            return true;
        }
        if self.entries.len() >= capacity {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (seq, update));
        true
    }

    fn take(&mut self, n: usize) -> Vec<(u64, FindingUpdate)> {
        let mut batch = Vec::with_capacity(n.min(self.entries.len()));
        while batch.len() < n {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&key) {
                batch.push(entry);
            }
        }
        batch
    }

    /// Puts a failed batch back at its old position, unless a newer update arrived meanwhile.
    fn restore(&mut self, batch: Vec<(u64, FindingUpdate)>) {
        for (seq, update) in batch {
            let key = key_of(&update);
            if self.entries.contains_key(&key) {
                continue;
            }
            self.order.insert(seq, key.clone());
            self.entries.insert(key, (seq, update));
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

struct Shared {
    config: WriterConfig,
    buffer: Mutex<Buffer>,
    wake: Notify,
    written: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    dead_lettered: AtomicU64,
    sanitized: AtomicU64,
    degraded: std::sync::atomic::AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Set by `shutdown`: drain until empty or until this instant.
    drain_until: Mutex<Option<Instant>>,
    observer: Option<BatchObserver>,
    /// Lowest queue position in the batch being written (`u64::MAX` when none); set and cleared
    /// under the buffer lock, so that [`FindingWriter::flushed`] never misses a batch in flight.
    in_flight: AtomicU64,
    /// Notified after every batch attempt.
    progress: Notify,
}

impl Shared {
    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // A panic while holding the lock cannot leave the buffer half-updated in a way that
        // matters (each push/take is complete or not started), so recover from poisoning.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn drain_until(&self) -> Option<Instant> {
        *self
            .drain_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Background writer of finding updates. Create it inside a tokio runtime.
pub struct FindingWriter {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl FindingWriter {
    pub fn spawn(store: Store, config: WriterConfig) -> Self {
        Self::spawn_observed(store, config, None)
    }

    /// Like [`FindingWriter::spawn`], reporting every batch attempt to `observer`.
    pub fn spawn_observed(
        store: Store,
        config: WriterConfig,
        observer: Option<BatchObserver>,
    ) -> Self {
        let shared = Arc::new(Shared {
            config,
            buffer: Mutex::new(Buffer::default()),
            wake: Notify::new(),
            written: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            sanitized: AtomicU64::new(0),
            degraded: Default::default(),
            last_error: Mutex::new(None),
            drain_until: Mutex::new(None),
            observer,
            in_flight: AtomicU64::new(u64::MAX),
            progress: Notify::new(),
        });
        let task = tokio::spawn(run(store, Arc::clone(&shared)));
        Self {
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    /// Buffers updates without waiting; returns how many were accepted (the rest were dropped
    /// because the buffer is full).
    pub fn submit(&self, updates: impl IntoIterator<Item = FindingUpdate>) -> usize {
        let capacity = self.shared.config.capacity;
        let (accepted, dropped) = {
            let mut buffer = self.shared.buffer();
            updates.into_iter().fold((0, 0), |(ok, lost), update| {
                if buffer.push(update, capacity) {
                    (ok + 1, lost)
                } else {
                    (ok, lost + 1)
                }
            })
        };
        if dropped > 0 {
            self.shared.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(dropped, "finding buffer full, updates dropped");
        }
        if accepted > 0 {
            self.shared.wake.notify_one();
        }
        accepted
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            buffered: self.shared.buffer().len(),
            written_total: self.shared.written.load(Ordering::Relaxed),
            failures_total: self.shared.failures.load(Ordering::Relaxed),
            dropped_total: self.shared.dropped.load(Ordering::Relaxed),
            dead_lettered_total: self.shared.dead_lettered.load(Ordering::Relaxed),
            sanitized_total: self.shared.sanitized.load(Ordering::Relaxed),
            degraded: self.shared.degraded.load(Ordering::Relaxed),
            last_error: self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Returns once every update submitted before the call has been written (or dropped for lack
    /// of room). A checkpoint waits for this, so that the findings behind the state it saves are
    /// in the store before it: a restart then never misses an update emitted before its cut (a
    /// retired cluster, say), and replays the ones after it. Waits as long as the store is down.
    pub async fn flushed(&self) {
        let target = self.shared.buffer().next_seq;
        loop {
            let progressed = self.shared.progress.notified();
            {
                let buffer = self.shared.buffer();
                let queued = buffer
                    .order
                    .first_key_value()
                    .map_or(u64::MAX, |(seq, _)| *seq);
                let writing = self.shared.in_flight.load(Ordering::Acquire);
                if queued >= target && writing >= target {
                    return;
                }
            }
            // Also wakes periodically in case a notification raced with the check above.
            let _ = tokio::time::timeout(Duration::from_millis(100), progressed).await;
        }
    }

    /// Writes everything buffered (retrying as usual) and stops, giving up after `deadline`.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        *self
            .shared
            .drain_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + deadline);
        self.shared.wake.notify_one();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(%error, "finding writer task failed");
            }
        }
        ShutdownReport {
            written_total: self.shared.written.load(Ordering::Relaxed),
            abandoned: self.shared.buffer().len(),
        }
    }
}

async fn run(store: Store, shared: Arc<Shared>) {
    let mut backoff = shared.config.initial_backoff;
    loop {
        let drain_until = shared.drain_until();
        if drain_until.is_some_and(|until| Instant::now() >= until) {
            let abandoned = shared.buffer().len();
            if abandoned > 0 {
                tracing::error!(
                    abandoned,
                    "shutdown deadline passed with findings unwritten"
                );
            }
            return;
        }
        let batch = {
            let mut buffer = shared.buffer();
            let batch = buffer.take(shared.config.batch_size.max(1));
            let lowest = batch.iter().map(|(seq, _)| *seq).min().unwrap_or(u64::MAX);
            shared.in_flight.store(lowest, Ordering::Release);
            batch
        };
        if batch.is_empty() {
            if drain_until.is_some() {
                return;
            }
            shared.wake.notified().await;
            continue;
        }
        let updates: Vec<FindingUpdate> = batch.iter().map(|(_, u)| u.clone()).collect();
        let started = Instant::now();
        let mut result = write_batch(&store, &shared, &updates).await;
        if let Err(error) = &result {
            if !error.is_transient() {
                tracing::warn!(%error, updates = updates.len(), "a batch of findings failed for good; writing its updates one at a time");
                result = isolate(&store, &shared, &updates).await;
            }
        }
        if let Some(observer) = &shared.observer {
            observer(BatchReport {
                ok: result.is_ok(),
                updates: updates.len(),
                duration: started.elapsed(),
            });
        }
        match result {
            Ok(()) => {
                shared.in_flight.store(u64::MAX, Ordering::Release);
                shared.progress.notify_waiters();
                if shared.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("finding writer recovered");
                }
                backoff = shared.config.initial_backoff;
            }
            Err(error) => {
                {
                    let mut buffer = shared.buffer();
                    buffer.restore(batch);
                    shared.in_flight.store(u64::MAX, Ordering::Release);
                }
                shared.progress.notify_waiters();
                shared.failures.fetch_add(1, Ordering::Relaxed);
                shared.degraded.store(true, Ordering::Relaxed);
                *shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                tracing::warn!(%error, transient = error.is_transient(), ?backoff, "writing findings failed, will retry");
                let mut pause = backoff;
                if let Some(until) = shared.drain_until() {
                    pause = pause.min(until.saturating_duration_since(Instant::now()));
                }
                // A shutdown request cuts the pause short.
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shared.wake.notified() => {}
                }
                backoff = (backoff * 2).min(shared.config.max_backoff);
            }
        }
    }
}

/// Writes one batch in one transaction, dead-lettering the updates the store refused as invalid.
async fn write_batch(
    store: &Store,
    shared: &Shared,
    updates: &[FindingUpdate],
) -> Result<(), StoreError> {
    let outcome = store.upsert_findings(updates).await?;
    shared
        .sanitized
        .fetch_add(outcome.sanitized, Ordering::Relaxed);
    shared
        .written
        .fetch_add(updates.len() as u64 - outcome.invalid, Ordering::Relaxed);
    for refused in &outcome.refused {
        if let Some(update) = updates.get(refused.index) {
            dead_letter(store, shared, update, &refused.error).await?;
        }
    }
    Ok(())
}

/// After a permanent batch failure: each update alone, so only the ones that fail by themselves
/// are dead-lettered. A transient error stops the pass (the whole batch is retried later; updates
/// already written are skipped then as stale, and a dead letter may repeat).
async fn isolate(
    store: &Store,
    shared: &Shared,
    updates: &[FindingUpdate],
) -> Result<(), StoreError> {
    for update in updates {
        match write_batch(store, shared, std::slice::from_ref(update)).await {
            Ok(()) => {}
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => dead_letter(store, shared, update, &error.to_string()).await?,
        }
    }
    Ok(())
}

async fn dead_letter(
    store: &Store,
    shared: &Shared,
    update: &FindingUpdate,
    error: &str,
) -> Result<(), StoreError> {
    let (kind, id) = key_of(update);
    // The payload is escaped JSON text, so a failure here is the database's, not the update's:
    // the batch is retried with backoff rather than anything dropped.
    store.dead_letter(update, error).await?;
    shared.dead_lettered.fetch_add(1, Ordering::Relaxed);
    tracing::error!(subject_kind = kind.as_str(), subject_id = %id.escape_debug(), error, "finding update refused for good; moved to the dead-letter table");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::finding::{AccountFinding, Severity};
    use distillguard_core::time::EventTime;

    fn update(id: &str, score: f64) -> FindingUpdate {
        FindingUpdate::Account(AccountFinding {
            activity: None,
            account_id: id.into(),
            score,
            severity: Severity::from_score(score),
            flagged: false,
            cluster_id: None,
            first_flagged_at: None,
            clustered_at: None,
            end_user: None,
            first_seen: EventTime::default(),
            last_seen: EventTime::default(),
            events: 1,
            signals: vec![],
            samples: vec![],
        })
    }

    fn score_of(update: &FindingUpdate) -> f64 {
        match update {
            FindingUpdate::Account(a) => a.score,
            FindingUpdate::Cluster(c) => c.score,
        }
    }

    #[test]
    fn a_newer_update_replaces_a_pending_one_in_place() {
        let mut buffer = Buffer::default();
        assert!(buffer.push(update("a", 0.1), 10));
        assert!(buffer.push(update("b", 0.2), 10));
        assert!(buffer.push(update("a", 0.9), 10));
        let batch = buffer.take(10);
        assert_eq!(batch.len(), 2);
        assert_eq!(key_of(&batch[0].1).1, "a");
        assert_eq!(score_of(&batch[0].1), 0.9);
    }

    #[test]
    fn a_full_buffer_refuses_new_subjects_but_still_updates_known_ones() {
        let mut buffer = Buffer::default();
        assert!(buffer.push(update("a", 0.1), 1));
        assert!(!buffer.push(update("b", 0.1), 1));
        assert!(buffer.push(update("a", 0.3), 1));
        assert_eq!(buffer.len(), 1);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_unless_superseded() {
        let mut buffer = Buffer::default();
        buffer.push(update("a", 0.1), 10);
        buffer.push(update("b", 0.1), 10);
        let batch = buffer.take(1);
        buffer.push(update("c", 0.1), 10);
        buffer.restore(batch);
        let order: Vec<String> = buffer
            .take(10)
            .into_iter()
            .map(|(_, u)| key_of(&u).1)
            .collect();
        assert_eq!(order, vec!["a", "b", "c"]);

        buffer.push(update("a", 0.1), 10);
        let batch = buffer.take(1);
        buffer.push(update("a", 0.8), 10);
        buffer.restore(batch);
        let kept = buffer.take(10);
        assert_eq!(kept.len(), 1);
        assert_eq!(score_of(&kept[0].1), 0.8);
    }
}
