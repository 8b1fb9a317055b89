//! The detection pipeline: a bounded queue in front of sharded detection workers.
//!
//! ```text
//! HTTP / replay ─► try_submit ─► dispatcher ─► shard workers (by account) ─► scorer ─► FindingSink
//!                  (permits)      (clock)         (per-account state)         (population, findings)
//! ```
//!
//! Design: the queue is bounded by semaphore permits counted in events. A batch takes all its
//! permits or none, so a full queue refuses a whole request (429) and a client retry never
//! duplicates anything; permits return once the dispatcher has handed the events to the shards,
//! whose own channels are bounded too. One dispatcher sees every event in arrival order and owns
//! the event-time clock, so watermarks, lateness and ticks do not depend on thread timing: the
//! findings equal those of the single-threaded `Engine` on the same input.

pub mod linker;
mod logged;
mod workers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use distillguard_core::engine::{
    shard_for, EngineCheckpoint, EngineConfig, ShardCheckpoint, ShardReport,
};
use distillguard_core::event::ApiEvent;
use distillguard_core::finding::{FindingUpdate, Report};
use distillguard_core::time::EventTime;
use distillguard_ingest::Deduplicator;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::checkpoint::format::{self, CheckpointMeta, Snapshot};
use crate::eventlog::{encode_events, EventLog, LogError, LogPosition, ReplayReport};
use crate::metrics::Metrics;
use logged::{LogHealth, Staged};

pub use logged::LogState;

/// Where findings go once the scorer has produced them (the store writer, or nothing in replay).
pub trait FindingSink: Send + 'static {
    /// Findings that changed materially (score, severity, flag, cluster) at a tick.
    fn deliver(&mut self, updates: Vec<FindingUpdate>);

    /// Whether the sink keeps findings' activity current ([`FindingSink::deliver_activity`]).
    fn wants_activity(&self) -> bool {
        false
    }

    /// The current view of subjects whose activity (`events`, `last_seen`, current volume)
    /// moved at a tick without a material change: at most one per subject per tick.
    fn deliver_activity(&mut self, _activity: Vec<FindingUpdate>) {}
}

/// Where a detector that does not score hands each tick's shard reports: the linker role scores
/// every detector's together (`[bus] linker = true`).
pub trait TickHandOff: Send + 'static {
    /// A tick's reports in shard order. Returns once they are persisted where the linker reads
    /// them, so that a checkpoint taken after the tick never covers a report the linker may miss;
    /// false if they could not be (the node is stopping): no later checkpoint is then written.
    fn hand_on(&mut self, at: EventTime, reports: Vec<ShardReport>) -> bool;
}

/// A sink that drops findings; replay reads the scorer's final report instead.
pub struct DiscardSink;

impl FindingSink for DiscardSink {
    fn deliver(&mut self, _updates: Vec<FindingUpdate>) {}
}

/// Checkpoint chunks grow to about this many bytes before they are handed on.
pub const DEFAULT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Pipeline sizing.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub engine: EngineConfig,
    pub shards: usize,
    /// Events that may wait in the queue.
    pub queue_capacity: usize,
    pub dedup_window_ms: i64,
    pub dedup_capacity: usize,
    /// Size at which a checkpoint chunk is handed to the store.
    pub checkpoint_chunk_bytes: usize,
}

/// Why a batch was not taken. Nothing of a refused batch was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the ingest queue is full")]
    QueueFull,
    #[error("the batch of {events} events exceeds the queue capacity of {capacity}")]
    BatchTooLarge { events: usize, capacity: usize },
    #[error("the pipeline is shutting down")]
    ShuttingDown,
    /// The event log could not persist the batch (disk full, failed fsync).
    #[error("the event log cannot persist events: {0}")]
    LogUnavailable(String),
}

/// What happened to a submitted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Receipt {
    pub accepted: usize,
    pub duplicates: usize,
}

/// One part of a checkpoint as the pipeline streams it out: chunks, then the manifest.
#[derive(Debug)]
pub enum CheckpointPart {
    Chunk(Vec<u8>),
    Done(CheckpointMeta),
}

/// Where a checkpoint's parts go, and the deduplicator's ids at the cut.
#[derive(Clone)]
pub(crate) struct CheckpointRequest {
    parts: tokio::sync::mpsc::Sender<CheckpointPart>,
    dedup: Arc<Vec<(String, EventTime)>>,
    chunk_bytes: usize,
}

impl CheckpointRequest {
    /// Hands a chunk on, waiting while the store catches up; false if the taker gave up.
    fn emit(&self, part: CheckpointPart) -> bool {
        self.parts.blocking_send(part).is_ok()
    }
}

pub(crate) enum Command {
    Batch {
        events: Vec<ApiEvent>,
        _permit: Option<OwnedSemaphorePermit>,
        /// The event log position after this batch (None without a log).
        position: Option<LogPosition>,
    },
    /// What a detector's consumer read from the stream, in stream order: owned events and the
    /// timestamps of the others' (they move the clock only).
    Consumed {
        items: Vec<Consumed>,
        _permit: Option<OwnedSemaphorePermit>,
        /// The stream sequence of the last message read.
        position: LogPosition,
    },
    /// Close the input, score everything, answer with the report.
    Finish(mpsc::Sender<Report>),
    /// Stream a snapshot of the whole engine after everything queued so far.
    Checkpoint(CheckpointRequest),
    Stop,
}

/// One message of the event stream as a detector applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Consumed {
    /// An event of a partition this node owns: admitted by the clock and applied to its shard.
    /// Boxed: a batch is mostly the others' timestamps when a node owns few partitions.
    Owned(Box<ApiEvent>),
    /// The timestamp of an event another detector owns: admitted by the clock only, so that
    /// every detector ticks at the same stream positions as one node reading everything.
    Elsewhere(EventTime),
}

/// Where batches enter: straight to the dispatcher, or through the event log first.
enum Input {
    Direct(mpsc::Sender<Command>),
    Logged {
        stage: mpsc::Sender<Staged>,
        health: Arc<LogHealth>,
    },
    /// `[bus] kind = "jetstream"`: ingest publishes to the stream; the dispatcher takes what this
    /// node's consumer reads back from it ([`Pipeline::feed_consumed`]).
    Bus {
        commands: mpsc::Sender<Command>,
        publisher: Arc<crate::bus::Publisher>,
    },
}

/// Handle to a running pipeline; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    gate: Arc<Gate>,
    permits: Arc<Semaphore>,
    capacity: usize,
    input: Input,
    dedup: Mutex<Deduplicator>,
    accepting: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    metrics: Metrics,
    chunk_bytes: usize,
}

impl Pipeline {
    /// Starts the dispatcher, `config.shards` shard workers and the scorer on OS threads.
    pub fn start(config: PipelineConfig, metrics: Metrics, sink: Box<dyn FindingSink>) -> Self {
        Self::start_from(config, metrics, sink, None)
    }

    /// Starts from a checkpoint (a restart), with windows, baselines and open findings intact.
    pub fn start_from(
        config: PipelineConfig,
        metrics: Metrics,
        sink: Box<dyn FindingSink>,
        snapshot: Option<Snapshot>,
    ) -> Self {
        let (pipeline, _) = Self::launch(config, metrics, sink, snapshot, None);
        pipeline
    }

    /// Starts from a checkpoint, replays the event log from the position the checkpoint covers
    /// (the events accepted after it), and then appends every accepted batch to the log before
    /// acknowledging it. Returns once the replay has been handed to the detectors.
    pub async fn start_logged(
        config: PipelineConfig,
        metrics: Metrics,
        sink: Box<dyn FindingSink>,
        snapshot: Option<Snapshot>,
        mut log: Box<dyn EventLog>,
    ) -> Result<(Self, ReplayReport), LogError> {
        let from = snapshot
            .as_ref()
            .and_then(|s| s.log_position)
            .unwrap_or_default();
        if log.end() < from {
            tracing::warn!(
                checkpoint = %from,
                log_end = %log.end(),
                "the event log ends before the checkpoint's position (was it deleted?); nothing to replay"
            );
        }
        let (mut pipeline, commands) = Self::launch(config, metrics.clone(), sink, snapshot, None);
        let (batches, mut replayed) = tokio::sync::mpsc::channel(4);
        let reading = tokio::task::spawn_blocking(move || {
            let report = log.replay(from, &mut |batch| {
                let _ = batches.blocking_send(batch);
            });
            (log, report)
        });
        while let Some(batch) = replayed.recv().await {
            pipeline.feed_replayed(&commands, batch).await;
        }
        let (log, report) = reading
            .await
            .map_err(|e| LogError::Failed(format!("the replay thread failed: {e}")))?;
        let report = report?;
        if report.events > 0 {
            tracing::info!(
                events = report.events,
                batches = report.batches,
                from = %from,
                "replayed events accepted after the checkpoint from the event log"
            );
        }
        let health = Arc::new(LogHealth::default());
        let (stage, inbox) = mpsc::channel();
        let thread = logged::spawn(log, commands, inbox, health.clone(), metrics);
        let inner = Arc::get_mut(&mut pipeline.inner).expect("not shared yet");
        inner.input = Input::Logged { stage, health };
        inner
            .threads
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .push(thread);
        Ok((pipeline, report))
    }

    /// Starts from a checkpoint with ingest publishing to JetStream. Nothing reaches the
    /// detectors until a consumer feeds them from the stream, from the sequence
    /// `snapshot.log_position` records ([`crate::bus::consumer`]). With `hand_off`, ticks are
    /// handed on to the linker role instead of scored here.
    pub fn start_bus(
        config: PipelineConfig,
        metrics: Metrics,
        sink: Box<dyn FindingSink>,
        snapshot: Option<Snapshot>,
        publisher: Arc<crate::bus::Publisher>,
        hand_off: Option<Box<dyn TickHandOff>>,
    ) -> Self {
        let (mut pipeline, commands) = Self::launch(config, metrics, sink, snapshot, hand_off);
        let inner = Arc::get_mut(&mut pipeline.inner).expect("not shared yet");
        inner.input = Input::Bus {
            commands,
            publisher,
        };
        pipeline
    }

    fn launch(
        config: PipelineConfig,
        metrics: Metrics,
        sink: Box<dyn FindingSink>,
        snapshot: Option<Snapshot>,
        hand_off: Option<Box<dyn TickHandOff>>,
    ) -> (Self, mpsc::Sender<Command>) {
        let capacity = config.queue_capacity.max(1);
        metrics.queue_capacity.set(capacity as i64);
        let gate = Arc::new(Gate::default());
        let (engine, dedup, position) = match snapshot {
            Some(s) => (Some(s.engine), s.dedup, s.log_position),
            None => (None, Vec::new(), None),
        };
        let dedup = Deduplicator::restore(config.dedup_window_ms, config.dedup_capacity, dedup);
        let (commands, threads) = workers::spawn(
            &config,
            metrics.clone(),
            sink,
            gate.clone(),
            engine,
            position,
            hand_off,
        );
        let pipeline = Self {
            inner: Arc::new(Inner {
                gate,
                permits: Arc::new(Semaphore::new(capacity)),
                capacity,
                input: Input::Direct(commands.clone()),
                dedup: Mutex::new(dedup),
                accepting: AtomicBool::new(true),
                threads: Mutex::new(threads),
                metrics,
                chunk_bytes: config.checkpoint_chunk_bytes.max(64 * 1024),
            }),
        };
        (pipeline, commands)
    }

    /// Hands one replayed batch to the dispatcher (it was accepted once already: no dedup check,
    /// but its ids are remembered again, as they were the first time).
    async fn feed_replayed(
        &self,
        commands: &mpsc::Sender<Command>,
        batch: crate::eventlog::LoggedBatch,
    ) {
        self.inner
            .metrics
            .log_replayed_events
            .inc_by(batch.events.len() as u64);
        self.feed(commands, batch.events, batch.end).await;
    }

    /// Hands what the consumer read from the stream to the dispatcher, waiting for queue space:
    /// the stream holds it, so the consumer slows down instead of refusing. `through` is the
    /// stream sequence of the last message read (a checkpoint after this batch resumes after
    /// it). Each item takes a permit, owned or not, so the queue stays bounded in messages.
    /// False once the pipeline no longer takes batches.
    pub async fn feed_consumed(&self, items: Vec<Consumed>, through: LogPosition) -> bool {
        let Input::Bus { commands, .. } = &self.inner.input else {
            return false;
        };
        if !self.inner.accepting.load(Ordering::Acquire) {
            return false;
        }
        {
            let mut dedup = self.lock_dedup();
            for item in &items {
                if let Consumed::Owned(event) = item {
                    if let Some(id) = &event.request_id {
                        dedup.remember(id, event.timestamp);
                    }
                }
            }
        }
        let _permit = self.wait_permits(items.len()).await;
        let sent = commands.send(Command::Consumed {
            items,
            _permit,
            position: through,
        });
        self.update_depth();
        sent.is_ok()
    }

    /// Waits for `wanted` permits (at most the whole queue); None for none or once closed.
    async fn wait_permits(&self, wanted: usize) -> Option<OwnedSemaphorePermit> {
        let wanted = wanted.min(self.inner.capacity) as u32;
        if wanted == 0 {
            return None;
        }
        self.inner
            .permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .ok()
    }

    /// Remembers the batch's ids, takes its permits (waiting) and sends it on; false if the
    /// dispatcher is gone.
    async fn feed(
        &self,
        commands: &mpsc::Sender<Command>,
        events: Vec<ApiEvent>,
        end: LogPosition,
    ) -> bool {
        let batch = crate::eventlog::LoggedBatch { end, events };
        {
            let mut dedup = self.lock_dedup();
            for event in &batch.events {
                if let Some(id) = &event.request_id {
                    dedup.remember(id, event.timestamp);
                }
            }
        }
        let permit = self.wait_permits(batch.events.len()).await;
        let sent = commands.send(Command::Batch {
            events: batch.events,
            _permit: permit,
            position: Some(batch.end),
        });
        self.update_depth();
        sent.is_ok()
    }

    /// Takes a whole batch or none of it, without waiting for queue space. With an event log,
    /// returns once the batch is durable (or refused).
    pub async fn try_submit(&self, events: Vec<ApiEvent>) -> Result<Receipt, SubmitError> {
        self.offer(events).await.map_err(|refused| refused.error)
    }

    /// Submits a batch, waiting for queue space (replay: a file never gets a 429).
    pub async fn submit(&self, events: Vec<ApiEvent>) -> Result<Receipt, SubmitError> {
        let mut pending = events;
        let mut duplicates = 0;
        loop {
            match self.offer(pending).await {
                Ok(receipt) => {
                    return Ok(Receipt {
                        duplicates: receipt.duplicates + duplicates,
                        ..receipt
                    })
                }
                Err(Refused {
                    error: SubmitError::QueueFull,
                    events,
                    duplicates: skipped,
                }) => {
                    duplicates += skipped;
                    // Wait until a batch's worth of permits is free, then offer again.
                    let wanted = events.len().min(self.inner.capacity) as u32;
                    let permit = self
                        .inner
                        .permits
                        .clone()
                        .acquire_many_owned(wanted)
                        .await
                        .map_err(|_| SubmitError::ShuttingDown)?;
                    drop(permit);
                    pending = events;
                }
                Err(refused) => return Err(refused.error),
            }
        }
    }

    /// The deduplicator; a panic elsewhere while holding it cannot leave it inconsistent (each
    /// call completes or does not start), so a poisoned lock is recovered, not propagated.
    fn lock_dedup(&self) -> MutexGuard<'_, Deduplicator> {
        self.inner
            .dedup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn offer(&self, events: Vec<ApiEvent>) -> Result<Receipt, Refused> {
        if !self.inner.accepting.load(Ordering::Acquire) {
            return Err(Refused::new(SubmitError::ShuttingDown, events, 0));
        }
        if let Input::Bus { publisher, .. } = &self.inner.input {
            return self.offer_bus(publisher, events).await;
        }
        // Encoded before the lock, so that concurrent requests encode in parallel.
        let encoded = match &self.inner.input {
            Input::Logged { .. } => match encode_events(&events) {
                Ok(encoded) => Some(encoded),
                Err(error) => {
                    return Err(Refused::new(
                        SubmitError::LogUnavailable(error.to_string()),
                        Vec::new(),
                        0,
                    ))
                }
            },
            Input::Direct(_) | Input::Bus { .. } => None,
        };
        let (receipt, kept_ids, pending) = {
            // The dedup lock spans the capacity check and the hand-over to the next stage, so two
            // concurrent retries of the same request cannot both get in, a refused batch leaves
            // no request id remembered, and batches reach the log in the order dedup saw them.
            let mut dedup = self.lock_dedup();
            let keep = keep_mask(&dedup, &events);
            let fresh = keep.iter().filter(|k| **k).count();
            let duplicates = events.len() - fresh;
            let permit = match self.take_permits(fresh) {
                Ok(permit) => permit,
                Err(error) => {
                    let kept = select(events, &keep);
                    return Err(Refused::new(error, kept, duplicates));
                }
            };
            let record = encoded.map(|encoded| encoded.batch(&keep));
            let kept = select(events, &keep);
            // Only a logged batch can still be refused once remembered (the log's answer comes
            // later), so only it keeps a copy of its ids to forget them again.
            let undo = matches!(self.inner.input, Input::Logged { .. });
            let kept_ids = remember_kept(&mut dedup, &kept, undo);
            self.export_dedup(&mut dedup);
            let receipt = Receipt {
                accepted: kept.len(),
                duplicates,
            };
            let Some(permit) = permit else {
                return Ok(receipt);
            };
            let pending = match (&self.inner.input, record) {
                (Input::Logged { stage, .. }, Some(record)) => {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    stage
                        .send(Staged::Batch {
                            record,
                            events: kept,
                            permit: Some(permit),
                            reply,
                        })
                        .map_err(|_| Refused::new(SubmitError::ShuttingDown, Vec::new(), 0))?;
                    Some(answer)
                }
                (_, _) => {
                    self.send(Command::Batch {
                        events: kept,
                        _permit: Some(permit),
                        position: None,
                    })
                    .map_err(|error| Refused::new(error, Vec::new(), 0))?;
                    None
                }
            };
            (receipt, kept_ids, pending)
        };
        let Some(answer) = pending else {
            return Ok(receipt);
        };
        let error = match answer.await {
            Ok(Ok(())) => return Ok(receipt),
            Ok(Err(message)) => SubmitError::LogUnavailable(message),
            Err(_) => SubmitError::ShuttingDown,
        };
        // Not accepted after all: its ids must not turn the client's retry into a duplicate.
        let mut dedup = self.lock_dedup();
        for (id, at) in &kept_ids {
            dedup.forget(id, *at);
        }
        Err(Refused::new(error, Vec::new(), 0))
    }

    /// Publishes the batch's new events and answers once JetStream holds them all. The local
    /// deduplicator answers a quick retry on this node; the stream's duplicate window catches the
    /// rest (a retry through another ingest node, or after a restart).
    async fn offer_bus(
        &self,
        publisher: &crate::bus::Publisher,
        events: Vec<ApiEvent>,
    ) -> Result<Receipt, Refused> {
        let (kept, kept_ids, duplicates) = {
            let mut dedup = self.lock_dedup();
            let keep = keep_mask(&dedup, &events);
            let duplicates = keep.iter().filter(|k| !**k).count();
            let kept = select(events, &keep);
            let kept_ids = remember_kept(&mut dedup, &kept, true);
            self.export_dedup(&mut dedup);
            (kept, kept_ids, duplicates)
        };
        match publisher.publish(&kept).await {
            Ok(published) => Ok(Receipt {
                accepted: published.stored,
                duplicates: duplicates + published.duplicates,
            }),
            Err(error) => {
                let mut dedup = self.lock_dedup();
                for (id, at) in &kept_ids {
                    dedup.forget(id, *at);
                }
                Err(Refused::new(
                    SubmitError::LogUnavailable(error.to_string()),
                    Vec::new(),
                    0,
                ))
            }
        }
    }

    fn export_dedup(&self, dedup: &mut Deduplicator) {
        let metrics = &self.inner.metrics;
        metrics
            .state_evictions
            .with_label_values(&["dedup"])
            .inc_by(dedup.take_evicted());
        metrics
            .state_entries
            .with_label_values(&["dedup"])
            .set(dedup.len() as i64);
    }

    fn take_permits(&self, events: usize) -> Result<Option<OwnedSemaphorePermit>, SubmitError> {
        if events == 0 {
            return Ok(None);
        }
        if events > self.inner.capacity {
            return Err(SubmitError::BatchTooLarge {
                events,
                capacity: self.inner.capacity,
            });
        }
        let permit = self
            .inner
            .permits
            .clone()
            .try_acquire_many_owned(events as u32)
            .map_err(|_| SubmitError::QueueFull)?;
        self.update_depth();
        Ok(Some(permit))
    }

    /// Sends a command behind every batch already accepted.
    fn send(&self, command: Command) -> Result<(), SubmitError> {
        match &self.inner.input {
            Input::Direct(commands) => commands
                .send(command)
                .map_err(|_| SubmitError::ShuttingDown),
            Input::Logged { stage, .. } => stage
                .send(Staged::Pass(command))
                .map_err(|_| SubmitError::ShuttingDown),
            Input::Bus { commands, .. } => commands
                .send(command)
                .map_err(|_| SubmitError::ShuttingDown),
        }
    }

    fn update_depth(&self) {
        let depth = self.inner.capacity - self.inner.permits.available_permits();
        self.inner.metrics.queue_depth.set(depth as i64);
    }

    /// Holds queued batches before the detectors until [`Pipeline::resume`]; the queue keeps
    /// its bound, so ingest answers 429 once it fills. Used to quiesce the pipeline.
    pub fn pause(&self) {
        self.inner.gate.set(true);
    }

    pub fn resume(&self) {
        self.inner.gate.set(false);
    }

    /// Events currently waiting.
    pub fn queue_depth(&self) -> usize {
        self.inner.capacity - self.inner.permits.available_permits()
    }

    pub fn queue_capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The event log's state, when there is one.
    pub fn log_state(&self) -> Option<LogState> {
        match &self.inner.input {
            Input::Logged { health, .. } => Some(health.state()),
            Input::Bus { publisher, .. } => Some(LogState {
                failing: !publisher.is_connected(),
                end: LogPosition::default(),
                last_error: (!publisher.is_connected())
                    .then(|| format!("NATS is unreachable at {}", publisher.settings().url)),
            }),
            Input::Direct(_) => None,
        }
    }

    /// Request ids the deduplicator remembers.
    pub fn dedup_entries(&self) -> usize {
        self.lock_dedup().len()
    }

    /// Whether the worker threads are alive and taking input.
    pub fn is_running(&self) -> bool {
        self.inner.accepting.load(Ordering::Acquire)
            && self
                .inner
                .threads
                .lock()
                .map(|threads| threads.iter().all(|t| !t.is_finished()))
                .unwrap_or(false)
    }

    /// Closes the input and returns the final report (replay). Blocks until scored.
    pub fn finish_blocking(&self) -> Option<Report> {
        let (reply, answer) = mpsc::channel();
        self.send(Command::Finish(reply)).ok()?;
        answer.recv().ok()
    }

    /// Starts a checkpoint after everything already accepted: its chunks and then its manifest
    /// arrive on `parts`, streamed from the live state as each worker reaches the cut. The taker
    /// must keep receiving until [`CheckpointPart::Done`] (or drop `parts` to abandon it).
    pub fn checkpoint_into(
        &self,
        parts: tokio::sync::mpsc::Sender<CheckpointPart>,
    ) -> Result<(), SubmitError> {
        // Under the dedup lock: the ids remembered are exactly those of the batches before the cut.
        let dedup = self.lock_dedup();
        let request = CheckpointRequest {
            parts,
            dedup: Arc::new(dedup.entries()),
            chunk_bytes: self.inner.chunk_bytes,
        };
        self.send(Command::Checkpoint(request))
    }

    /// Takes a checkpoint into memory. Blocks until every worker answered (not on the runtime).
    pub fn checkpoint_blocking(&self) -> Option<Snapshot> {
        let (parts, mut received) = tokio::sync::mpsc::channel(16);
        self.checkpoint_into(parts).ok()?;
        let mut chunks = Vec::new();
        while let Some(part) = received.blocking_recv() {
            match part {
                CheckpointPart::Chunk(chunk) => chunks.push(chunk),
                CheckpointPart::Done(meta) => {
                    return format::decode_snapshot(&format::encode_meta(&meta), &chunks).ok()
                }
            }
        }
        None
    }

    /// Deletes event log segments wholly before `position` (a written checkpoint covers them).
    pub fn truncate_log_before(&self, position: LogPosition) {
        if let Input::Logged { stage, .. } = &self.inner.input {
            let _ = stage.send(Staged::Truncate(position));
        }
    }

    /// Refuses new batches (503) while queued ones still drain; used before the last checkpoint.
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::Release);
    }

    /// Stops taking input, lets queued events drain through the workers, and joins them.
    pub fn shutdown_blocking(&self) {
        self.inner.accepting.store(false, Ordering::Release);
        self.resume();
        let _ = self.send(Command::Stop);
        let threads = std::mem::take(
            &mut *self
                .inner
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for thread in threads {
            let _ = thread.join();
        }
        self.update_depth();
    }
}

/// Regroups a checkpoint's accounts when the number of shards changed since it was taken.
fn reshard(mut checkpoint: EngineCheckpoint, shard_count: usize) -> EngineCheckpoint {
    if checkpoint.shards.len() == shard_count {
        return checkpoint;
    }
    let mut shards: Vec<ShardCheckpoint> = (0..shard_count)
        .map(|_| ShardCheckpoint {
            accounts: Vec::new(),
            dirty: Vec::new(),
            shard_count,
        })
        .collect();
    for old in std::mem::take(&mut checkpoint.shards) {
        for (account, state) in old.accounts {
            shards[shard_for(&account, shard_count)]
                .accounts
                .push((account, state));
        }
        for account in old.dirty {
            shards[shard_for(&account, shard_count)].dirty.push(account);
        }
    }
    for shard in &mut shards {
        shard.accounts.sort_by(|a, b| a.0.cmp(&b.0));
    }
    checkpoint.shards = shards;
    checkpoint.scorer.tracked_by_shard = vec![0; shard_count];
    checkpoint
}

/// A pause switch the dispatcher checks before taking each command.
#[derive(Default)]
pub(crate) struct Gate {
    paused: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Gate {
    fn set(&self, paused: bool) {
        *self.paused.lock().expect("gate lock poisoned") = paused;
        self.changed.notify_all();
    }

    pub(crate) fn wait_while_paused(&self) {
        let mut paused = self.paused.lock().expect("gate lock poisoned");
        while *paused {
            paused = self.changed.wait(paused).expect("gate lock poisoned");
        }
    }
}

/// A batch handed back untouched, with why.
struct Refused {
    error: SubmitError,
    events: Vec<ApiEvent>,
    duplicates: usize,
}

impl Refused {
    fn new(error: SubmitError, events: Vec<ApiEvent>, duplicates: usize) -> Self {
        Self {
            error,
            events,
            duplicates,
        }
    }
}

/// Which events of a batch are new: not remembered by the deduplicator, and the first of their
/// request id in the batch. Decided on borrowed ids, so the check under the lock copies no event.
fn keep_mask(dedup: &Deduplicator, events: &[ApiEvent]) -> Vec<bool> {
    // aHash, not SipHash: this runs per event, and aHash's RandomState is keyed per process
    // too, so client-chosen request ids still cannot force collisions.
    let mut seen_in_batch = std::collections::HashSet::with_capacity_and_hasher(
        events.len(),
        ahash::RandomState::new(),
    );
    events
        .iter()
        .map(|event| match &event.request_id {
            None => true,
            Some(id) => {
                !dedup.is_duplicate(id, event.timestamp) && seen_in_batch.insert(id.as_str())
            }
        })
        .collect()
}

/// Remembers the kept events' request ids, returning them with their event times (what a refused
/// publish or enqueue must forget again).
/// Remembers the kept events' request ids; returns a copy of them to undo with, if `undo`.
fn remember_kept(
    dedup: &mut Deduplicator,
    kept: &[ApiEvent],
    undo: bool,
) -> Vec<(String, EventTime)> {
    let mut kept_ids = Vec::new();
    for event in kept {
        if let Some(id) = &event.request_id {
            dedup.remember(id, event.timestamp);
            if undo {
                kept_ids.push((id.clone(), event.timestamp));
            }
        }
    }
    kept_ids
}

fn select(events: Vec<ApiEvent>, keep: &[bool]) -> Vec<ApiEvent> {
    // Nearly every batch keeps all its events: hand the vector on instead of moving each
    // (several hundred bytes) into a new one.
    if keep.iter().all(|k| *k) {
        return events;
    }
    events
        .into_iter()
        .zip(keep)
        .filter_map(|(event, kept)| kept.then_some(event))
        .collect()
}

#[cfg(test)]
mod tests;
