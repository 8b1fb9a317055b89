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

mod workers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use distillguard_core::engine::{shard_for, EngineCheckpoint, EngineConfig, ShardCheckpoint};
use distillguard_core::event::ApiEvent;
use distillguard_core::finding::{FindingUpdate, Report};
use distillguard_ingest::Deduplicator;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Where findings go once the scorer has produced them (the store writer, or nothing in replay).
pub trait FindingSink: Send + 'static {
    fn deliver(&mut self, updates: Vec<FindingUpdate>);
}

/// A sink that drops findings; replay reads the scorer's final report instead.
pub struct DiscardSink;

impl FindingSink for DiscardSink {
    fn deliver(&mut self, _updates: Vec<FindingUpdate>) {}
}

/// Pipeline sizing.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub engine: EngineConfig,
    pub shards: usize,
    /// Events that may wait in the queue.
    pub queue_capacity: usize,
    pub dedup_window_ms: i64,
    pub dedup_capacity: usize,
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
}

/// What happened to a submitted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Receipt {
    pub accepted: usize,
    pub duplicates: usize,
}

pub(crate) enum Command {
    Batch {
        events: Vec<ApiEvent>,
        _permit: OwnedSemaphorePermit,
    },
    /// Close the input, score everything, answer with the report.
    Finish(mpsc::Sender<Report>),
    /// Snapshot the whole engine after everything queued so far.
    Checkpoint(mpsc::Sender<EngineCheckpoint>),
    Stop,
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
    commands: mpsc::Sender<Command>,
    dedup: Mutex<Deduplicator>,
    accepting: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    metrics: Metrics,
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
        checkpoint: Option<EngineCheckpoint>,
    ) -> Self {
        let capacity = config.queue_capacity.max(1);
        metrics.queue_capacity.set(capacity as i64);
        let gate = Arc::new(Gate::default());
        let (commands, threads) =
            workers::spawn(&config, metrics.clone(), sink, gate.clone(), checkpoint);
        Self {
            inner: Arc::new(Inner {
                gate,
                permits: Arc::new(Semaphore::new(capacity)),
                capacity,
                commands,
                dedup: Mutex::new(Deduplicator::new(
                    config.dedup_window_ms,
                    config.dedup_capacity,
                )),
                accepting: AtomicBool::new(true),
                threads: Mutex::new(threads),
                metrics,
            }),
        }
    }

    /// Takes a whole batch or none of it, without waiting.
    pub fn try_submit(&self, events: Vec<ApiEvent>) -> Result<Receipt, SubmitError> {
        self.offer(events).map_err(|refused| refused.error)
    }

    /// Submits a batch, waiting for queue space (replay: a file never gets a 429).
    pub async fn submit(&self, events: Vec<ApiEvent>) -> Result<Receipt, SubmitError> {
        let mut pending = events;
        let mut duplicates = 0;
        loop {
            match self.offer(pending) {
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

    fn offer(&self, events: Vec<ApiEvent>) -> Result<Receipt, Refused> {
        if !self.inner.accepting.load(Ordering::Acquire) {
            return Err(Refused::new(SubmitError::ShuttingDown, events, 0));
        }
        // The dedup lock spans the capacity check so two concurrent retries of the same request
        // cannot both get in, and a refused batch leaves no request id remembered.
        let mut dedup = self.inner.dedup.lock().expect("dedup lock poisoned");
        let fresh = filter_duplicates(&dedup, events);
        let permit = match self.take_permits(fresh.events.len()) {
            Ok(permit) => permit,
            Err(error) => return Err(Refused::new(error, fresh.events, fresh.duplicates)),
        };
        for event in &fresh.events {
            if let Some(id) = &event.request_id {
                dedup.remember(id, event.timestamp);
            }
        }
        drop(dedup);
        let receipt = Receipt {
            accepted: fresh.events.len(),
            duplicates: fresh.duplicates,
        };
        if let Some(permit) = permit {
            self.send(Command::Batch {
                events: fresh.events,
                _permit: permit,
            })
            .map_err(|error| Refused::new(error, Vec::new(), 0))?;
        }
        Ok(receipt)
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

    fn send(&self, command: Command) -> Result<(), SubmitError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| SubmitError::ShuttingDown)
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

    /// Snapshots the engine after everything already queued. Blocks until every worker answered.
    pub fn checkpoint_blocking(&self) -> Option<EngineCheckpoint> {
        let (reply, answer) = mpsc::channel();
        self.send(Command::Checkpoint(reply)).ok()?;
        answer.recv().ok()
    }

    /// Refuses new batches (503) while queued ones still drain; used before the last checkpoint.
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::Release);
    }

    /// Stops taking input, lets queued events drain through the workers, and joins them.
    pub fn shutdown_blocking(&self) {
        self.inner.accepting.store(false, Ordering::Release);
        self.resume();
        let _ = self.inner.commands.send(Command::Stop);
        let threads = std::mem::take(&mut *self.inner.threads.lock().expect("threads lock"));
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

struct Fresh {
    events: Vec<ApiEvent>,
    duplicates: usize,
}

fn filter_duplicates(dedup: &Deduplicator, events: Vec<ApiEvent>) -> Fresh {
    // Decide first, borrowing the ids, so the check under the dedup lock allocates nothing.
    let mut seen_in_batch = std::collections::HashSet::new();
    let keep: Vec<bool> = events
        .iter()
        .map(|event| match &event.request_id {
            None => true,
            Some(id) => {
                !dedup.is_duplicate(id, event.timestamp) && seen_in_batch.insert(id.as_str())
            }
        })
        .collect();
    let duplicates = keep.iter().filter(|kept| !**kept).count();
    let events = events
        .into_iter()
        .zip(keep)
        .filter_map(|(event, kept)| kept.then_some(event))
        .collect();
    Fresh { events, duplicates }
}
