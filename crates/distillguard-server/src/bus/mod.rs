//! The event bus: where accepted events live between ingest and the detectors.
//!
//! `[bus] kind = "embedded"` (the default) keeps everything in one process: ingest appends to the
//! event log in the data directory and the same process detects. `kind = "jetstream"` puts a NATS
//! JetStream stream in between:
//!
//! ```text
//! HTTP ─► Publisher ─► stream DISTILLGUARD_EVENTS ─► consumer (owned partitions) ─► pipeline
//!         (202 after     subjects distillguard.events.<p>   ordered, from the checkpoint's
//!          every ack)    p = fnv1a(account) mod N            stream sequence + 1
//! ```
//!
//! Accepted means persisted: ingest answers 202 only once JetStream acknowledged every event of the
//! request, each published with a message id (the `request_id`, else a digest of the event) so the
//! stream's duplicate window drops a client's retry. A node's role says whether it consumes:
//! `all` (ingest and detect, one node), `ingest` (publish only), `detector`, or `linker` (scores
//! the tick reports that detectors with `linker = true` publish to the profiles stream,
//! [`profiles`], [`linker`]).
//! `docs/architecture.md` ("Scale-out on JetStream") has the whole design.

pub mod consumer;
pub mod linker;
mod metrics;
pub mod profiles;
pub mod publisher;
mod settings;
pub mod watermark;

pub use metrics::BusMetrics;
pub use publisher::{PublishReceipt, Publisher};
pub(crate) use settings::{ranges, source_key};
pub use settings::{BusKind, BusSettings, NodeRole};

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream;
use distillguard_core::event::AccountId;

/// Why the bus could not take or give back events. Ingest maps every variant to 503.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS is unreachable at {url}")]
    Unreachable { url: String },
    #[error("JetStream did not acknowledge the publish: {0}")]
    Publish(String),
    #[error("the JetStream stream {stream} is not usable: {reason}")]
    Stream { stream: String, reason: String },
    #[error("an event could not be encoded for the bus: {0}")]
    Encode(String),
}

/// The configuration of one of our streams (events or tick reports): subjects `<prefix>.*`, file
/// storage, and the replicas, duplicate window and retention of `[bus]`.
fn stream_config(
    settings: &BusSettings,
    name: &str,
    description: String,
    prefix: &str,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        description: Some(description),
        subjects: vec![format!("{prefix}.*")],
        storage: stream::StorageType::File,
        num_replicas: settings.replicas.max(1),
        duplicate_window: Duration::from_secs(settings.duplicate_window_secs.max(1)),
        max_age: Duration::from_secs(settings.max_age_secs),
        ..Default::default()
    }
}

/// The messages of subjects `<prefix>.*` in stream order through an ordered consumer, from
/// sequence `start` (0 and 1 both mean the beginning).
async fn read_from(
    stream: &async_nats::jetstream::stream::Stream,
    prefix: &str,
    start: u64,
) -> Result<Ordered, String> {
    let deliver_policy = match start {
        0 | 1 => DeliverPolicy::All,
        start_sequence => DeliverPolicy::ByStartSequence { start_sequence },
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("{prefix}.*"),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// The partition of an account: FNV-1a over its id, so every node and every version agrees (a
/// seeded or platform-dependent hash would scatter an account over partitions after a restart).
pub fn partition_for(account: &AccountId, partition_count: u32) -> u32 {
    distillguard_core::partitioned::partition_for(account, partition_count)
}

/// `<prefix>.<partition>`.
pub fn subject(prefix: &str, partition: u32) -> String {
    format!("{prefix}.{partition}")
}

/// The partition a subject names, if it is one of ours.
pub fn partition_of_subject(prefix: &str, subject: &str) -> Option<u32> {
    subject
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .parse()
        .ok()
}

/// The pipeline for `[bus] kind = "jetstream"`: ingest publishes, and a node whose role consumes
/// resumes its partitions from the sequence the checkpoint covers. Returns the consumer's stop
/// switch (set before the final checkpoint).
pub async fn start_pipeline(
    settings: &crate::Settings,
    metrics: &crate::metrics::Metrics,
    sink: Box<dyn crate::pipeline::FindingSink>,
    restored: Option<crate::checkpoint::format::Snapshot>,
) -> anyhow::Result<(crate::pipeline::Pipeline, tokio::sync::watch::Sender<bool>)> {
    use anyhow::Context;
    let bus = &settings.bus;
    let publisher = std::sync::Arc::new(
        Publisher::connect(bus.clone(), metrics.bus.clone())
            .await
            .context("cannot set up the NATS connection")?,
    );
    if let Err(error) = publisher.ensure_stream().await {
        // A stream configured differently is a mistake to stop on; NATS down is not (ingest
        // answers 503 and the consumer retries until it is back).
        if matches!(error, BusError::Stream { .. }) {
            return Err(error).context("the event stream cannot be used");
        }
        tracing::warn!(%error, "NATS not reachable yet: ingest answers 503 until it is");
    }
    let restored = restored.map(|mut snapshot| {
        crate::app::forget_poisoned_clock(settings, &mut snapshot.engine.clock);
        snapshot
    });
    let applied_through = restored
        .as_ref()
        .and_then(|s| s.log_position)
        .map_or(0, |p| p.0);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let hand_off = if bus.hands_ticks_to_linker() {
        Some(profile_publisher(
            settings,
            &publisher,
            metrics,
            stopped.clone(),
        )?)
    } else {
        None
    };
    let pipeline = crate::pipeline::Pipeline::start_bus(
        crate::app::pipeline_config(settings),
        metrics.clone(),
        sink,
        restored,
        publisher.clone(),
        hand_off,
    );
    tracing::info!(
        role = bus.role.as_str(),
        stream = %bus.stream,
        partition_count = bus.partition_count,
        "event bus: JetStream"
    );
    if bus.role.consumes() {
        let plan = consumer::ConsumerPlan {
            applied_through,
            partitions: bus.owned_partitions()?,
        };
        consumer::spawn(
            publisher,
            pipeline.clone(),
            plan,
            metrics.bus.clone(),
            stopped,
        );
    }
    Ok((pipeline, stop))
}

/// The hand-off of a detector with `linker = true`: its ticks go to the profiles stream.
fn profile_publisher(
    settings: &crate::Settings,
    publisher: &Publisher,
    metrics: &crate::metrics::Metrics,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Box<dyn crate::pipeline::TickHandOff>> {
    let bus = &settings.bus;
    let key = bus
        .checkpoint_key()?
        .ok_or_else(|| anyhow::anyhow!("a detector keeps a checkpoint key"))?;
    tracing::info!(stream = %bus.profiles_stream, key, "ticks handed to the linker role");
    Ok(Box::new(profiles::ProfilePublisher {
        runtime: tokio::runtime::Handle::current(),
        context: publisher.context().clone(),
        settings: bus.clone(),
        key,
        partitions: bus.owned_partitions()?,
        metrics: metrics.bus.clone(),
        stopping,
        stream_ready: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_partition_is_stable_and_within_the_count() {
        let account = AccountId::parse("acct-42").unwrap();
        let first = partition_for(&account, 64);
        assert!(first < 64);
        assert_eq!(partition_for(&account, 64), first);
        // Pinned: a change of hash would move every account to another partition.
        assert_eq!(
            partition_for(&AccountId::parse("a").unwrap(), 64),
            (0xaf63_dc4c_8601_ec8c_u64 % 64) as u32
        );
    }

    #[test]
    fn accounts_spread_over_partitions() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..2_000 {
            seen.insert(partition_for(
                &AccountId::parse(format!("u{i}")).unwrap(),
                64,
            ));
        }
        assert_eq!(seen.len(), 64);
    }

    #[test]
    fn subjects_round_trip_to_their_partition() {
        let name = subject("distillguard.events", 17);
        assert_eq!(name, "distillguard.events.17");
        assert_eq!(partition_of_subject("distillguard.events", &name), Some(17));
        assert_eq!(
            partition_of_subject("distillguard.events", "other.17"),
            None
        );
        assert_eq!(
            partition_of_subject("distillguard.events", "distillguard.eventsx.1"),
            None
        );
    }
}
