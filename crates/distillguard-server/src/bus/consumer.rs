//! A detector's side of the bus: read the stream from the checkpoint's sequence and apply the
//! events of the partitions this node owns, in stream order.
//!
//! One ordered consumer reads every partition subject and keeps this node's. Stream order is the
//! order JetStream acknowledged the publishes, which is the order ingest answered 202: a node that
//! owns every partition sees exactly the input of the embedded pipeline, so its findings are the
//! same. Progress is the stream sequence of the last message applied; it travels with each batch
//! into the pipeline, so a checkpoint records the sequence its state covers and a restart (even
//! after `kill -9`) resumes right after it. Each owned partition has been applied through that
//! sequence, which is the per-partition position the checkpoint holds.
//!
//! A node that owns part of the partitions still admits the timestamp of every other message to
//! its clock (read from the `Distillguard-Event-Time` header, or the event when a message has
//! none), so every detector ticks at the same stream positions as one node that owns everything:
//! its findings about its accounts are then one node's, but for population and clusters, which
//! only a scorer that sees every detector's reports gets right (`distillguard_core::partitioned`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedError;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::publisher::{decode_event, header_event_time};
use super::watermark::Watermarks;
use super::{partition_of_subject, BusMetrics, Publisher};
use crate::eventlog::LogPosition;
use crate::pipeline::{Consumed, Pipeline};

/// Messages applied as one batch at most (fewer when fewer are ready).
const MAX_BATCH: usize = 512;
/// Wait before recreating a consumer that failed.
const RETRY: Duration = Duration::from_millis(500);
/// Quiet time after which the consumer asks the stream whether it is missing messages.
const STALL_CHECK: Duration = Duration::from_secs(5);

/// Where a node resumes and what it consumes.
pub struct ConsumerPlan {
    /// The stream sequence the checkpoint covers (0: from the start of the stream).
    pub applied_through: u64,
    pub partitions: Vec<u32>,
}

/// Consumes until `stop` turns true or the pipeline stops taking batches.
pub fn spawn(
    publisher: std::sync::Arc<Publisher>,
    pipeline: Pipeline,
    plan: ConsumerPlan,
    metrics: BusMetrics,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let owned: HashSet<u32> = plan.partitions.iter().copied().collect();
        let idle = Duration::from_secs(publisher.settings().idle_partition_secs.max(1));
        let mut state = Progress {
            applied_through: plan.applied_through,
            highest_seen: plan.applied_through,
            watermarks: Watermarks::new(idle),
        };
        tracing::info!(
            from_sequence = state.applied_through + 1,
            partitions = plan.partitions.len(),
            "consuming the event stream"
        );
        loop {
            let outcome = tokio::select! {
                outcome = consume(&publisher, &pipeline, &owned, &metrics, &mut state) => outcome,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            match outcome {
                Ok(()) => return,
                Err(error) => {
                    metrics.consumer_restarts.inc();
                    tracing::warn!(%error, from_sequence = state.applied_through + 1, "event stream consumer failed; recreating it");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    }
                }
            }
        }
    })
}

struct Progress {
    applied_through: u64,
    /// The highest sequence ever delivered: anything at or below it delivered again after a
    /// recreation is a redelivery (counted, and skipped if already applied).
    highest_seen: u64,
    watermarks: Watermarks,
}

/// Reads from `applied_through + 1` until the stream fails or stalls (Err) or the pipeline stops
/// (Ok).
async fn consume(
    publisher: &Publisher,
    pipeline: &Pipeline,
    owned: &HashSet<u32>,
    metrics: &BusMetrics,
    state: &mut Progress,
) -> Result<(), String> {
    publisher.ensure_stream().await.map_err(|e| e.to_string())?;
    let settings = publisher.settings();
    let stream = publisher
        .context()
        .get_stream(&settings.stream)
        .await
        .map_err(|e| e.to_string())?;
    let mut messages =
        super::read_from(&stream, &settings.subject_prefix, state.applied_through + 1)
            .await?
            .ready_chunks(MAX_BATCH);
    loop {
        let chunk = match tokio::time::timeout(STALL_CHECK, messages.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Err("the consumer's message stream ended".into()),
            Err(_) => {
                check_not_stalled(&stream, metrics, state).await?;
                continue;
            }
        };
        let taken = take_chunk(chunk, &settings.subject_prefix, owned, metrics, state);
        if let Some(global) = state.watermarks.global(Instant::now()) {
            metrics.global_watermark.set(global.epoch_ms() / 1000);
        }
        // What was read before a broken message is applied, so the recreated consumer starts
        // right after it and nothing is skipped or applied twice.
        if taken.through > state.applied_through {
            let applied = taken
                .items
                .iter()
                .filter(|item| matches!(item, Consumed::Owned(_)))
                .count() as u64;
            if !pipeline
                .feed_consumed(taken.items, LogPosition(taken.through))
                .await
            {
                return Ok(());
            }
            state.applied_through = taken.through;
            metrics.consumed_events.inc_by(applied);
        }
        if let Some(error) = taken.failure {
            return Err(error);
        }
    }
}

/// One chunk's owned events and others' timestamps, the last sequence read, and the error that
/// cut it short, if any.
struct Taken {
    items: Vec<Consumed>,
    through: u64,
    failure: Option<String>,
}

fn take_chunk(
    chunk: Vec<Result<async_nats::jetstream::Message, OrderedError>>,
    subject_prefix: &str,
    owned: &HashSet<u32>,
    metrics: &BusMetrics,
    state: &mut Progress,
) -> Taken {
    let now = Instant::now();
    let mut taken = Taken {
        items: Vec::with_capacity(chunk.len()),
        through: state.applied_through,
        failure: None,
    };
    for message in chunk {
        match take_message(message, subject_prefix, owned, metrics, state, now) {
            Ok(Some((sequence, item))) => {
                taken.through = sequence;
                taken.items.extend(item);
            }
            Ok(None) => {}
            Err(error) => {
                taken.failure = Some(error);
                break;
            }
        }
    }
    taken
}

/// A message's stream sequence and what this node applies of it: the event when it owns its
/// partition, else its timestamp; None for a redelivery of something already applied.
fn take_message(
    message: Result<async_nats::jetstream::Message, OrderedError>,
    subject_prefix: &str,
    owned: &HashSet<u32>,
    metrics: &BusMetrics,
    state: &mut Progress,
    now: Instant,
) -> Result<Option<(u64, Option<Consumed>)>, String> {
    let message = message.map_err(|e| e.to_string())?;
    let info = message.info().map_err(|e| e.to_string())?;
    let sequence = info.stream_sequence;
    metrics.consumer_pending.set(info.pending as i64);
    if sequence <= state.highest_seen {
        metrics.redeliveries.inc();
    }
    state.highest_seen = state.highest_seen.max(sequence);
    if sequence <= state.applied_through {
        return Ok(None);
    }
    let Some(partition) = partition_of_subject(subject_prefix, &message.subject) else {
        return Ok(Some((sequence, None)));
    };
    if !owned.contains(&partition) {
        let timestamp = match header_event_time(message.headers.as_ref()) {
            Some(timestamp) => timestamp,
            None => match decode_event(&message.payload) {
                Ok(event) => event.timestamp,
                Err(error) => return Ok(Some((sequence, pass_over(metrics, &message, &error)))),
            },
        };
        return Ok(Some((sequence, Some(Consumed::Elsewhere(timestamp)))));
    }
    let event = match decode_event(&message.payload) {
        Ok(event) => event,
        Err(error) => return Ok(Some((sequence, pass_over(metrics, &message, &error)))),
    };
    state.watermarks.observe(partition, event.timestamp, now);
    let label = partition.to_string();
    metrics
        .partition_sequence
        .with_label_values(&[&label])
        .set(sequence as i64);
    metrics
        .partition_watermark
        .with_label_values(&[&label])
        .set(event.timestamp.epoch_ms() / 1000);
    Ok(Some((sequence, Some(Consumed::Owned(Box::new(event))))))
}

/// A message no event decodes from (ingest publishes only what it encoded, so another publisher
/// on our subjects wrote it) is counted, logged with its place (not its payload) and passed over:
/// stopping at it would stall every detector, since each reads every message's time, and its
/// sequence counts as read, so a restart does not meet it again.
fn pass_over(
    metrics: &BusMetrics,
    message: &async_nats::jetstream::Message,
    error: &super::BusError,
) -> Option<Consumed> {
    metrics.undecodable.inc();
    tracing::warn!(subject = %message.subject, %error, "a bus message does not decode to an event; passed over");
    None
}

/// After `STALL_CHECK` without a delivery: fine if the stream holds nothing newer than what was
/// delivered, a stall (Err, so the consumer is recreated) if it does. The ordered pull consumer
/// of async-nats was seen to stop after a restart with messages left (CI, 14 pending for 90 s);
/// it recovers from missed heartbeats, not from pull requests the server stopped answering.
async fn check_not_stalled(
    stream: &async_nats::jetstream::stream::Stream,
    metrics: &BusMetrics,
    state: &Progress,
) -> Result<(), String> {
    let info = stream.get_info().await.map_err(|e| e.to_string())?;
    let last = info.state.last_sequence;
    if last <= state.highest_seen {
        // Caught up: the pending count of the last delivery can be stale (it counts what the
        // server had not yet delivered at that moment), and nothing else would reset it.
        metrics.consumer_pending.set(0);
        return Ok(());
    }
    metrics
        .consumer_pending
        .set(last.saturating_sub(state.highest_seen) as i64);
    Err(format!(
        "no message delivered for {}s while the stream holds sequences {}..={last}",
        STALL_CHECK.as_secs(),
        state.highest_seen + 1
    ))
}
