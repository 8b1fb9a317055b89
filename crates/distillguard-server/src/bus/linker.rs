//! `role = "linker"`: read the profiles stream, join the detectors' tick reports, score them on
//! the linker thread ([`crate::pipeline::linker`]) and write findings and clusters through the
//! store writer, the one writer of findings when detectors run with `linker = true`.
//!
//! Its checkpoint (store key [`LINKER_KEY`]) holds the scorer, the assembler's waiting ticks and
//! the profiles stream sequence to resume from; it is committed once the findings emitted before
//! it are written, as the detectors' are, so a restart (even after `kill -9`) reads the stream
//! from that sequence and re-emits what came after the cut (upserts are idempotent).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use distillguard_store::{CheckpointManifest, FindingWriter, Store};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::profiles::{self, Joiner};
use super::{BusMetrics, Publisher};
use crate::metrics::Metrics;
use crate::pipeline::linker::{LinkerSnapshot, LinkerThread};
use crate::pipeline::FindingSink;

/// The store key of the linker's checkpoint.
pub const LINKER_KEY: &str = "linker";
/// The `format_version` of the linker's checkpoint manifests: chunks are consecutive slices of
/// one MessagePack [`LinkerSnapshot`].
const LINKER_FORMAT: u16 = 1;
const CHUNK_BYTES: usize = 4 * 1024 * 1024;
const RETRY: Duration = Duration::from_millis(500);
const STALL_CHECK: Duration = Duration::from_secs(5);
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running linker: its consumer, its thread and its periodic checkpoint.
pub struct LinkerRole {
    thread: LinkerThread,
    joined: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    consumer: JoinHandle<()>,
    periodic: JoinHandle<()>,
    store: Store,
    writer: Arc<FindingWriter>,
}

/// Restores the linker's checkpoint and starts consuming the profiles stream after it.
pub async fn start(
    settings: &crate::Settings,
    metrics: &Metrics,
    store: &Store,
    writer: &Arc<FindingWriter>,
    sink: Box<dyn FindingSink>,
) -> anyhow::Result<LinkerRole> {
    let restored = load(store).await?;
    let publisher = Publisher::connect(settings.bus.clone(), metrics.bus.clone())
        .await
        .context("cannot set up the NATS connection")?;
    let resume_from = restored.as_ref().map_or(1, |s| s.resume_from.max(1));
    let (thread, joined) = LinkerThread::start(
        settings.engine.engine_config(),
        settings.bus.partition_count,
        restored,
        sink,
        metrics.clone(),
    );
    let (stop, stopped) = watch::channel(false);
    tracing::info!(
        stream = %settings.bus.profiles_stream,
        from_sequence = resume_from,
        "linker: consuming the profiles stream"
    );
    let consumer = tokio::spawn(consume_until_stopped(
        publisher,
        thread.clone(),
        resume_from,
        metrics.bus.clone(),
        stopped.clone(),
    ));
    let periodic = tokio::spawn(save_periodically(
        store.clone(),
        thread.clone(),
        Arc::clone(writer),
        Duration::from_secs(settings.store.checkpoint_interval_secs.max(1)),
        stopped,
    ));
    Ok(LinkerRole {
        thread,
        joined: Some(joined),
        stop,
        consumer,
        periodic,
        store: store.clone(),
        writer: Arc::clone(writer),
    })
}

impl LinkerRole {
    /// Stops consuming, saves the final checkpoint behind every report read, and stops the
    /// thread. Call before the store writer shuts down.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.consumer).await;
        let _ = (&mut self.periodic).await;
        match tokio::time::timeout(
            FINAL_CHECKPOINT_TIMEOUT,
            save(&self.store, &self.thread, &self.writer),
        )
        .await
        {
            Ok(Ok(bytes)) => tracing::info!(bytes, key = LINKER_KEY, "final checkpoint saved"),
            Ok(Err(error)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "final linker checkpoint not saved"
                )
            }
            Err(_) => tracing::error!("final linker checkpoint not saved in time"),
        }
        let Self { thread, joined, .. } = self;
        drop(thread);
        if let Some(joined) = joined {
            let _ = tokio::task::spawn_blocking(move || joined.join()).await;
        }
    }
}

/// The linker's last committed checkpoint, if any; an unreadable one is logged and skipped.
pub async fn load(store: &Store) -> anyhow::Result<Option<LinkerSnapshot>> {
    let Some(manifest) = store
        .latest_checkpoint(LINKER_KEY)
        .await
        .context("cannot read the linker checkpoint")?
    else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(manifest.total_bytes as usize);
    for seq in 0..manifest.chunk_count {
        let chunk = store
            .checkpoint_chunk(LINKER_KEY, manifest.generation, seq)
            .await?
            .with_context(|| format!("linker checkpoint chunk {seq} is missing"))?;
        bytes.extend_from_slice(&chunk);
    }
    let decoded = tokio::task::spawn_blocking(move || LinkerSnapshot::decode(&bytes))
        .await
        .context("linker checkpoint decoding panicked")?;
    match decoded {
        Ok(snapshot) => {
            tracing::info!(
                generation = manifest.generation,
                resume_from = snapshot.resume_from,
                "resuming the linker from its checkpoint"
            );
            Ok(Some(snapshot))
        }
        Err(error) => {
            tracing::error!(%error, "linker checkpoint unreadable; starting with empty state");
            Ok(None)
        }
    }
}

/// Takes a checkpoint through the linker thread and commits it once the findings before it are
/// written. Returns the bytes written.
pub async fn save(
    store: &Store,
    thread: &LinkerThread,
    writer: &FindingWriter,
) -> anyhow::Result<u64> {
    let snapshot = thread
        .checkpoint()
        .await
        .map_err(anyhow::Error::msg)
        .context("the linker could not be checkpointed")?;
    writer.flushed().await;
    let generation = store
        .begin_checkpoint(LINKER_KEY)
        .await
        .context("cannot start a linker checkpoint")?;
    let mut chunk_count = 0u64;
    for chunk in snapshot.bytes.chunks(CHUNK_BYTES) {
        if let Err(error) = store
            .put_checkpoint_chunk(LINKER_KEY, generation, chunk_count, chunk)
            .await
        {
            let _ = store.abandon_checkpoint(LINKER_KEY, generation).await;
            return Err(error).context("cannot write a linker checkpoint chunk");
        }
        chunk_count += 1;
    }
    let manifest = CheckpointManifest {
        key: LINKER_KEY.to_owned(),
        generation,
        format_version: LINKER_FORMAT,
        chunk_count,
        total_bytes: snapshot.bytes.len() as u64,
        log_position: Some(snapshot.resume_from.saturating_sub(1)),
        watermark: snapshot.last_scored,
        meta: Vec::new(),
        saved_at: chrono::Utc::now(),
    };
    store
        .commit_checkpoint(&manifest)
        .await
        .context("cannot commit the linker checkpoint")?;
    Ok(snapshot.bytes.len() as u64)
}

async fn save_periodically(
    store: Store,
    thread: LinkerThread,
    writer: Arc<FindingWriter>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        if let Err(error) = save(&store, &thread, &writer).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "periodic linker checkpoint failed; will retry"
            );
        }
    }
}

/// Where the consumer is: the next sequence to read and the reports being joined.
struct Progress {
    next: u64,
    joiner: Joiner,
}

async fn consume_until_stopped(
    publisher: Publisher,
    thread: LinkerThread,
    resume_from: u64,
    metrics: BusMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut progress = Progress {
        next: resume_from,
        joiner: Joiner::default(),
    };
    loop {
        let outcome = tokio::select! {
            outcome = consume(&publisher, &thread, &metrics, &mut progress) => outcome,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match outcome {
            Ok(()) => return,
            Err(error) => {
                metrics.consumer_restarts.inc();
                tracing::warn!(%error, "profiles stream consumer failed; recreating it");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
        }
    }
}

/// Reads the profiles stream from the oldest part not yet handed on; Ok once the linker thread
/// is gone, Err when the consumer fails or stalls.
async fn consume(
    publisher: &Publisher,
    thread: &LinkerThread,
    metrics: &BusMetrics,
    progress: &mut Progress,
) -> Result<(), String> {
    let settings = publisher.settings();
    let stream = profiles::ensure_stream(publisher.context(), settings)
        .await
        .map_err(|e| e.to_string())?;
    // Parts of a report still being joined are read again: the joiner keeps the first copy.
    let start = progress.joiner.resume_from(progress.next);
    let mut messages = super::read_from(&stream, &settings.profiles_subject_prefix, start).await?;
    loop {
        let message = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
            Ok(Some(message)) => message.map_err(|e| e.to_string())?,
            Ok(None) => return Err("the profiles consumer's message stream ended".into()),
            Err(_) => {
                let info = stream.get_info().await.map_err(|e| e.to_string())?;
                let last = info.state.last_sequence;
                metrics
                    .linker_pending_messages
                    .set(last.saturating_sub(progress.next.saturating_sub(1)) as i64);
                if last >= progress.next {
                    return Err(format!(
                        "no profiles message delivered for {}s while the stream holds {}..={last}",
                        STALL_CHECK.as_secs(),
                        progress.next
                    ));
                }
                continue;
            }
        };
        let info = message.info().map_err(|e| e.to_string())?;
        let sequence = info.stream_sequence;
        metrics.linker_pending_messages.set(info.pending as i64);
        metrics.linker_sequence.set(sequence as i64);
        progress.next = progress.next.max(sequence + 1);
        let Some(bytes) = join_part(&message, sequence, metrics, &mut progress.joiner) else {
            continue;
        };
        let resume_from = progress.joiner.resume_from(sequence + 1);
        if !thread.report(bytes, resume_from).await {
            return Ok(());
        }
    }
}

/// Adds one message to the joiner; the whole report once its last part is in. A message without
/// a report id (not published by a detector) is counted and passed over.
fn join_part(
    message: &async_nats::jetstream::Message,
    sequence: u64,
    metrics: &BusMetrics,
    joiner: &mut Joiner,
) -> Option<Vec<u8>> {
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned());
    let Some((report, part, parts)) = id.as_deref().and_then(profiles::parse_message_id) else {
        metrics.linker_refused.inc();
        tracing::warn!(subject = %message.subject, "a profiles message without a report id; passed over");
        return None;
    };
    let joined = joiner.add(report, part, parts, &message.payload, sequence);
    for (report, had, needed) in joiner.take_given_up() {
        tracing::warn!(
            report,
            parts_read = had,
            parts = needed,
            "linker: a tick report missing parts given up; its detector published a later tick, \
             so the rest (aged out of the profiles stream) cannot arrive"
        );
    }
    joined
}
