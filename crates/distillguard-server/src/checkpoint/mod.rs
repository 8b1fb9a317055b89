//! Detector state across restarts: the engine's checkpoint in the store.
//!
//! A checkpoint is a consistent cut of clock, shards, scorer and deduplicator taken through the
//! pipeline (every worker writes its part after the same prefix of the input), streamed to the
//! store in chunks as each worker reaches the cut ([`format`]), and made visible by its manifest,
//! written last. It records the event log position it covers: on start the service restores it
//! and replays the log from there, so the state equals that of a run that never stopped.
//!
//! The manifest is written only after the findings emitted before the cut are in the store
//! ([`FindingWriter::flushed`]): findings after the cut are emitted again by the replay, so none
//! is missed (before this, a retirement emitted just before a crash could leave a cluster flagged
//! next to the one that absorbed it).

pub mod format;
pub mod legacy;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use distillguard_store::{CheckpointManifest, FindingWriter, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::pipeline::{CheckpointPart, Pipeline};
use format::{Reader, Snapshot};

/// The store key of the engine's checkpoint.
pub const ENGINE_KEY: &str = "engine";

/// Chunks that may wait for the store while a checkpoint is written (with 4 MiB chunks, 64 MiB):
/// the memory a checkpoint costs beyond the live state. When the store is slower, the workers
/// wait for it (ingest backs up and answers 429 meanwhile).
const CHUNKS_IN_FLIGHT: usize = 16;

/// How checkpoints have been going, for `/readyz`.
#[derive(Debug, Default)]
pub struct CheckpointHealth {
    state: Mutex<CheckpointState>,
}

/// A copy of [`CheckpointHealth`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointState {
    /// Checkpoints failed in a row since the last success.
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub last_success: Option<chrono::DateTime<chrono::Utc>>,
    pub last_bytes: u64,
}

impl CheckpointHealth {
    pub fn state(&self) -> CheckpointState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, outcome: &anyhow::Result<u64>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(bytes) => {
                state.consecutive_failures = 0;
                state.last_error = None;
                state.last_success = Some(chrono::Utc::now());
                state.last_bytes = *bytes;
            }
            Err(error) => {
                state.consecutive_failures += 1;
                state.last_error = Some(format!("{error:#}"));
            }
        }
    }
}

/// Loads the last checkpoint under [`ENGINE_KEY`] (a single node's).
pub async fn load(store: &Store) -> anyhow::Result<Option<Snapshot>> {
    load_key(store, ENGINE_KEY).await
}

/// Loads the last checkpoint under `key`: the newest committed generation, or (for
/// [`ENGINE_KEY`]) a single JSON checkpoint written by an older version. One that cannot be read
/// is logged and skipped rather than keeping the service from starting.
pub async fn load_key(store: &Store, key: &str) -> anyhow::Result<Option<Snapshot>> {
    let started = Instant::now();
    let Some(manifest) = store
        .latest_checkpoint(key)
        .await
        .context("cannot read the detector checkpoint")?
    else {
        if key == ENGINE_KEY {
            return legacy::load(store).await;
        }
        return Ok(None);
    };
    match read_generation(store, &manifest).await {
        Ok(snapshot) => {
            tracing::info!(
                generation = manifest.generation,
                watermark = ?manifest.watermark,
                saved_at = %manifest.saved_at,
                bytes = manifest.total_bytes,
                chunks = manifest.chunk_count,
                log_position = ?manifest.log_position,
                key,
                seconds = started.elapsed().as_secs_f64(),
                "resuming detection from checkpoint"
            );
            Ok(Some(snapshot))
        }
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "detector checkpoint unreadable; starting with empty state"
            );
            Ok(None)
        }
    }
}

async fn read_generation(store: &Store, manifest: &CheckpointManifest) -> anyhow::Result<Snapshot> {
    let mut reader = Reader::new(format::decode_meta(&manifest.meta)?);
    for seq in 0..manifest.chunk_count {
        let chunk = store
            .checkpoint_chunk(&manifest.key, manifest.generation, seq)
            .await?
            .with_context(|| format!("chunk {seq} of {} is missing", manifest.chunk_count))?;
        // Decoded on a blocking thread: a chunk of accounts takes milliseconds to decode.
        reader = tokio::task::spawn_blocking(move || reader.add(&chunk).map(|()| reader))
            .await
            .context("checkpoint decoding panicked")??;
    }
    Ok(reader.finish()?)
}

/// [`save_key`] under [`ENGINE_KEY`] (a single node's checkpoint).
pub async fn save(
    store: &Store,
    pipeline: &Pipeline,
    writer: &FindingWriter,
) -> anyhow::Result<u64> {
    save_key(store, ENGINE_KEY, pipeline, writer).await
}

/// Takes a checkpoint through the pipeline and writes it to the store under `key`, chunk by
/// chunk. Returns the bytes written. The event log before the checkpoint's position is deleted
/// once it is committed.
pub async fn save_key(
    store: &Store,
    key: &str,
    pipeline: &Pipeline,
    writer: &FindingWriter,
) -> anyhow::Result<u64> {
    let generation = store
        .begin_checkpoint(key)
        .await
        .context("cannot start a checkpoint")?;
    let (parts, mut received) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    pipeline
        .checkpoint_into(parts)
        .context("the pipeline stopped before it could be checkpointed")?;
    let mut seq = 0u64;
    let mut bytes = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    let mut meta = None;
    while let Some(part) = received.recv().await {
        match part {
            CheckpointPart::Chunk(chunk) => {
                if failure.is_some() {
                    // Keep draining so the workers are never left waiting on a full channel.
                    continue;
                }
                bytes += chunk.len() as u64;
                if let Err(error) = store
                    .put_checkpoint_chunk(key, generation, seq, &chunk)
                    .await
                {
                    failure =
                        Some(anyhow::Error::new(error).context("cannot write a checkpoint chunk"));
                }
                seq += 1;
            }
            CheckpointPart::Done(done) => {
                meta = Some(done);
                break;
            }
        }
    }
    let outcome = match (failure, meta) {
        (Some(error), _) => Err(error),
        (None, None) => Err(anyhow::anyhow!(
            "the pipeline stopped while being checkpointed"
        )),
        (None, Some(meta)) => {
            writer.flushed().await;
            let manifest = CheckpointManifest {
                key: key.to_owned(),
                generation,
                format_version: format::FORMAT_VERSION,
                chunk_count: seq,
                total_bytes: bytes,
                log_position: meta.log_position.map(|p| p.0),
                watermark: meta.clock.max_seen,
                meta: format::encode_meta(&meta),
                saved_at: chrono::Utc::now(),
            };
            store
                .commit_checkpoint(&manifest)
                .await
                .context("cannot commit the checkpoint")
                .map(|()| meta.log_position)
        }
    };
    match outcome {
        Ok(position) => {
            if let Some(position) = position {
                pipeline.truncate_log_before(position);
            }
            tracing::debug!(bytes, chunks = seq, generation, "detector checkpoint saved");
            Ok(bytes)
        }
        Err(error) => {
            if let Err(cleanup) = store.abandon_checkpoint(key, generation).await {
                tracing::debug!(%cleanup, "could not delete the chunks of a failed checkpoint");
            }
            Err(error)
        }
    }
}

/// [`save_key`], timed and recorded in metrics and in the health `/readyz` reports.
pub async fn save_observed(
    store: &Store,
    key: &str,
    pipeline: &Pipeline,
    writer: &FindingWriter,
    metrics: &Metrics,
    health: &CheckpointHealth,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    let outcome = save_key(store, key, pipeline, writer).await;
    metrics
        .checkpoint_duration
        .observe(started.elapsed().as_secs_f64());
    match &outcome {
        Ok(bytes) => {
            metrics.checkpoint_bytes.set(*bytes as i64);
            metrics
                .checkpoint_last_success
                .set(chrono::Utc::now().timestamp());
        }
        Err(_) => metrics.checkpoint_failures.inc(),
    }
    health.record(&outcome);
    outcome
}

/// What the periodic task needs.
pub struct Periodic {
    pub store: Store,
    /// The checkpoint's key ([`crate::bus::BusSettings::checkpoint_key`]).
    pub key: String,
    pub pipeline: Pipeline,
    pub writer: Arc<FindingWriter>,
    pub metrics: Metrics,
    pub health: Arc<CheckpointHealth>,
    pub interval: Duration,
}

/// Checkpoints start at least this many times their own last duration apart: while the shards
/// write their part they wait for the store, so a large state checkpointed back to back would hold
/// ingest back most of the time. At most a fifth of the time goes to checkpoints.
const DUTY_FACTOR: u32 = 5;

fn warn_failed<T>(outcome: anyhow::Result<T>) {
    if let Err(error) = outcome {
        tracing::warn!(
            error = format!("{error:#}"),
            "periodic checkpoint failed; will retry"
        );
    }
}

/// Saves a checkpoint every `interval` (or [`DUTY_FACTOR`] times the last one's duration, if
/// longer) until `stop` changes.
pub fn spawn_periodic(periodic: Periodic, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = tokio::time::Instant::now() + periodic.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
            }
            let started = tokio::time::Instant::now();
            let saving = save_observed(
                &periodic.store,
                &periodic.key,
                &periodic.pipeline,
                &periodic.writer,
                &periodic.metrics,
                &periodic.health,
            );
            // A save under way when shutdown starts is finished, not dropped: a dropped save's
            // statements still run on their connections, and one landing after the final
            // checkpoint began took its generation's chunk slot ("conflict: unique", the final
            // checkpoint lost). The pipeline still runs here, so the save completes.
            tokio::pin!(saving);
            let stopping = tokio::select! {
                outcome = &mut saving => {
                    warn_failed(outcome);
                    false
                }
                _ = stop.changed() => true,
            };
            if stopping {
                warn_failed(saving.await);
                return;
            }
            next = started + periodic.interval.max(started.elapsed() * DUTY_FACTOR);
        }
    })
}
