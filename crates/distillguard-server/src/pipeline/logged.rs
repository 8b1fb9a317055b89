//! The log stage: one thread between ingest and the dispatcher that appends every accepted batch
//! to the event log and makes it durable before the batch moves on and its request is answered.
//!
//! Group commit: the stage takes every request waiting in its inbox, appends them all, syncs once,
//! then forwards them in order. Under load one fsync covers many concurrent requests; when idle a
//! request waits for its own. A failed append or sync undoes the whole group in the log and
//! answers each of its requests with an error (503), so nothing of it is accepted or replayed.
//! Other commands (checkpoint, finish, stop) pass through in order, after the batches before them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use distillguard_core::event::ApiEvent;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::Command;
use crate::eventlog::{EventLog, LogError, LogPosition};
use crate::metrics::Metrics;

/// How often the stage wakes when idle, for the log's periodic work (interval fsync).
const TICK: Duration = Duration::from_millis(10);
/// Requests taken into one group at most.
const MAX_GROUP: usize = 512;

pub(crate) enum Staged {
    Batch {
        record: Vec<u8>,
        events: Vec<ApiEvent>,
        permit: Option<OwnedSemaphorePermit>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Forwarded to the dispatcher after everything before it.
    Pass(Command),
    /// Delete what a checkpoint covers.
    Truncate(LogPosition),
}

/// The log's health, for `/readyz`.
#[derive(Default)]
pub struct LogHealth {
    failing: AtomicBool,
    end: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`LogHealth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The last append or sync failed: ingest answers 503 until one succeeds.
    pub failing: bool,
    pub end: LogPosition,
    pub last_error: Option<String>,
}

impl LogHealth {
    pub fn state(&self) -> LogState {
        LogState {
            failing: self.failing.load(Ordering::Acquire),
            end: LogPosition(self.end.load(Ordering::Acquire)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn fail(&self, error: &LogError) {
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::error!(%error, "event log failing: ingest answers 503 until it recovers");
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    fn succeed(&self, end: LogPosition) {
        self.end.store(end.0, Ordering::Release);
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::info!("event log recovered");
        }
    }
}

struct Appended {
    events: Vec<ApiEvent>,
    permit: Option<OwnedSemaphorePermit>,
    reply: oneshot::Sender<Result<(), String>>,
    end: LogPosition,
}

struct Stage {
    log: Box<dyn EventLog>,
    dispatcher: Sender<Command>,
    health: Arc<LogHealth>,
    metrics: Metrics,
    appended: Vec<Appended>,
    error: Option<LogError>,
}

pub(crate) fn spawn(
    log: Box<dyn EventLog>,
    dispatcher: Sender<Command>,
    inbox: Receiver<Staged>,
    health: Arc<LogHealth>,
    metrics: Metrics,
) -> JoinHandle<()> {
    health.succeed(log.end());
    metrics.log_bytes.set(log.size_bytes() as i64);
    let stage = Stage {
        log,
        dispatcher,
        health,
        metrics,
        appended: Vec::new(),
        error: None,
    };
    std::thread::Builder::new()
        .name("dg-log".into())
        .spawn(move || stage.run(inbox))
        .expect("the OS refused to start the log thread")
}

impl Stage {
    fn run(mut self, inbox: Receiver<Staged>) {
        loop {
            let first = match inbox.recv_timeout(TICK) {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(error) = self.log.tick() {
                        self.metrics.log_failures.inc();
                        self.health.fail(&error);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match inbox.try_recv() {
                    Ok(item) => group.push(item),
                    Err(_) => break,
                }
            }
            for item in group {
                if !self.take(item) {
                    self.commit();
                    return;
                }
            }
            self.commit();
        }
        self.commit();
    }

    /// Handles one request; false after a stop.
    fn take(&mut self, item: Staged) -> bool {
        match item {
            Staged::Batch {
                record,
                events,
                permit,
                reply,
            } => {
                if self.error.is_some() {
                    let _ = reply.send(Err(self.unavailable()));
                    return true;
                }
                match self.log.append(&record) {
                    Ok(end) => {
                        self.metrics
                            .log_appended_bytes
                            .inc_by(record.len() as u64 + 16);
                        self.appended.push(Appended {
                            events,
                            permit,
                            reply,
                            end,
                        });
                    }
                    Err(error) => {
                        self.error = Some(error);
                        let _ = reply.send(Err(self.unavailable()));
                    }
                }
                true
            }
            Staged::Pass(command) => {
                self.commit();
                let stop = matches!(command, Command::Stop);
                let _ = self.dispatcher.send(command);
                !stop
            }
            Staged::Truncate(before) => {
                self.commit();
                if let Err(error) = self.log.truncate_before(before) {
                    tracing::warn!(%error, "could not delete event log segments a checkpoint covers");
                }
                self.metrics.log_bytes.set(self.log.size_bytes() as i64);
                true
            }
        }
    }

    fn unavailable(&self) -> String {
        self.error
            .as_ref()
            .map_or_else(String::new, ToString::to_string)
    }

    /// Makes the group durable and forwards it, or undoes it and refuses it.
    fn commit(&mut self) {
        if self.appended.is_empty() && self.error.is_none() {
            return;
        }
        if self.error.is_none() {
            let started = Instant::now();
            if let Err(error) = self.log.sync() {
                self.error = Some(error);
            }
            self.metrics
                .log_sync_duration
                .observe(started.elapsed().as_secs_f64());
        }
        let appended = std::mem::take(&mut self.appended);
        match self.error.take() {
            None => {
                for batch in appended {
                    let _ = self.dispatcher.send(Command::Batch {
                        events: batch.events,
                        _permit: batch.permit,
                        position: Some(batch.end),
                    });
                    let _ = batch.reply.send(Ok(()));
                }
                self.health.succeed(self.log.end());
            }
            Some(error) => {
                self.metrics.log_failures.inc();
                self.health.fail(&error);
                if let Err(undo) = self.log.discard_unsynced() {
                    tracing::error!(error = %undo, "could not undo a failed event log write");
                }
                let message = error.to_string();
                for batch in appended {
                    let _ = batch.reply.send(Err(message.clone()));
                }
            }
        }
        self.metrics.log_bytes.set(self.log.size_bytes() as i64);
    }
}
