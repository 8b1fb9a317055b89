//! The bus's Prometheus series (listed in `docs/operations.md` with the others).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// Handles to the bus's series; cheap to clone.
#[derive(Clone)]
pub struct BusMetrics {
    /// Time from the first publish of a request to JetStream's last acknowledgement.
    pub publish_duration: Histogram,
    /// Events JetStream acknowledged as stored (not duplicates).
    pub published_events: IntCounter,
    /// Requests answered 503 because NATS was unreachable or did not acknowledge in time.
    pub publish_failures: IntCounter,
    /// Events this node applied from the stream.
    pub consumed_events: IntCounter,
    /// Messages delivered again after the consumer was recreated (a reconnect, a gap).
    pub redeliveries: IntCounter,
    /// Messages in the stream this node's consumer has not read yet.
    pub consumer_pending: IntGauge,
    /// Times the consumer was recreated: it failed, or it stalled with messages left to read.
    pub consumer_restarts: IntCounter,
    /// Messages on an event subject that no event decodes from, passed over.
    pub undecodable: IntCounter,
    /// Stream sequence of the last message of each partition this node applied.
    pub partition_sequence: IntGaugeVec,
    /// Event-time watermark of each partition this node consumes, Unix seconds.
    pub partition_watermark: IntGaugeVec,
    /// Minimum of the partition watermarks over partitions active in `idle_partition_secs`.
    pub global_watermark: IntGauge,
    /// Tick reports a detector with `linker = true` published (every part acknowledged).
    pub profile_reports_published: IntCounter,
    /// Their messages (a report larger than `profile_part_bytes` takes several).
    pub profile_parts_published: IntCounter,
    /// Their encoded bytes.
    pub profile_bytes_published: IntCounter,
    /// Attempts to publish a part that JetStream did not acknowledge (retried).
    pub profile_publish_failures: IntCounter,
    /// Time from encoding a tick report to the last part's acknowledgement.
    pub profile_publish_duration: Histogram,
    /// Linker: complete tick reports read from the profiles stream (repeats included).
    pub linker_reports: IntCounter,
    /// Linker: ticks scored (complete, or given up incomplete).
    pub linker_ticks_scored: IntCounter,
    /// Linker: ticks scored without some partitions' reports, which could no longer arrive (the
    /// detectors of those partitions had reported a later tick).
    pub linker_incomplete_ticks: IntCounter,
    /// Linker: reports refused (another partition count, overlapping partition sets) or not
    /// decodable.
    pub linker_refused: IntCounter,
    /// Linker: ticks waiting for some detector's report.
    pub linker_pending_ticks: IntGauge,
    /// Linker: stream sequence of the last profiles message read.
    pub linker_sequence: IntGauge,
    /// Linker: messages in the profiles stream it has not read yet (its lag).
    pub linker_pending_messages: IntGauge,
    /// Linker: event time of the last tick scored, Unix seconds.
    pub linker_last_tick: IntGauge,
}

impl BusMetrics {
    pub(crate) fn register(registry: &Registry) -> Self {
        let register = |metric: Box<dyn prometheus::core::Collector>| {
            registry.register(metric).expect("unique metric");
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric")
        };
        let publish_duration = histogram(
            "distillguard_bus_publish_duration_seconds",
            "Time to publish one ingest request's events and receive every JetStream ack.",
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        );
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let published_events = counter(
            "distillguard_bus_published_events_total",
            "Events JetStream acknowledged as stored.",
        );
        let publish_failures = counter(
            "distillguard_bus_publish_failures_total",
            "Ingest requests answered 503 because JetStream did not acknowledge their events.",
        );
        let consumed_events = counter(
            "distillguard_bus_consumed_events_total",
            "Events this node applied from the stream.",
        );
        let undecodable = counter(
            "distillguard_bus_undecodable_messages_total",
            "Messages on an event subject that no event decodes from; passed over, not applied.",
        );
        let redeliveries = counter(
            "distillguard_bus_redeliveries_total",
            "Messages delivered again after the consumer was recreated.",
        );
        let consumer_restarts = counter(
            "distillguard_bus_consumer_restarts_total",
            "Times this node recreated its stream consumer (an error, or no delivery while the stream held unread messages).",
        );
        let consumer_pending = IntGauge::new(
            "distillguard_bus_consumer_pending_messages",
            "Messages in the stream this node's consumer has not read yet (its lag).",
        )
        .expect("valid metric");
        let partition_sequence = IntGaugeVec::new(
            Opts::new(
                "distillguard_bus_partition_sequence",
                "Stream sequence of the last message applied, by partition.",
            ),
            &["partition"],
        )
        .expect("valid metric");
        let partition_watermark = IntGaugeVec::new(
            Opts::new(
                "distillguard_bus_partition_watermark_timestamp_seconds",
                "Newest event time applied, by partition, Unix seconds.",
            ),
            &["partition"],
        )
        .expect("valid metric");
        let global_watermark = IntGauge::new(
            "distillguard_bus_global_watermark_timestamp_seconds",
            "Minimum partition watermark over the partitions active recently, Unix seconds.",
        )
        .expect("valid metric");
        register(Box::new(publish_duration.clone()));
        register(Box::new(published_events.clone()));
        register(Box::new(publish_failures.clone()));
        register(Box::new(consumed_events.clone()));
        register(Box::new(redeliveries.clone()));
        register(Box::new(consumer_pending.clone()));
        register(Box::new(consumer_restarts.clone()));
        register(Box::new(undecodable.clone()));
        register(Box::new(partition_sequence.clone()));
        register(Box::new(partition_watermark.clone()));
        register(Box::new(global_watermark.clone()));
        let profile_reports_published = counter(
            "distillguard_bus_profile_reports_published_total",
            "Tick reports this detector published to the profiles stream for the linker.",
        );
        let profile_parts_published = counter(
            "distillguard_bus_profile_parts_published_total",
            "Messages of those tick reports (a report over bus.profile_part_bytes takes several).",
        );
        let profile_bytes_published = counter(
            "distillguard_bus_profile_bytes_published_total",
            "Encoded bytes of the tick reports published to the profiles stream.",
        );
        let profile_publish_failures = counter(
            "distillguard_bus_profile_publish_failures_total",
            "Tick report parts JetStream did not acknowledge (retried until it does).",
        );
        let profile_publish_duration = histogram(
            "distillguard_bus_profile_publish_duration_seconds",
            "Time to encode one tick report and receive the ack of its last part.",
            vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        let linker_reports = counter(
            "distillguard_linker_reports_total",
            "Complete tick reports the linker read from the profiles stream (repeats included).",
        );
        let linker_ticks_scored = counter(
            "distillguard_linker_ticks_scored_total",
            "Ticks the linker scored: once every partition had reported, or given up incomplete.",
        );
        let linker_incomplete_ticks = counter(
            "distillguard_linker_incomplete_ticks_total",
            "Ticks the linker scored without some partitions' reports: those detectors had reported a later tick, so the missing reports (aged out of the profiles stream, or never published) could not arrive any more.",
        );
        let linker_refused = counter(
            "distillguard_linker_refused_reports_total",
            "Tick reports the linker refused: undecodable, another partition count, or overlapping partition sets.",
        );
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let linker_pending_ticks = gauge(
            "distillguard_linker_pending_ticks",
            "Ticks the linker holds while some detector has not reported them.",
        );
        let linker_sequence = gauge(
            "distillguard_linker_stream_sequence",
            "Stream sequence of the last profiles message the linker read.",
        );
        let linker_pending_messages = gauge(
            "distillguard_linker_pending_messages",
            "Messages in the profiles stream the linker has not read yet (its lag).",
        );
        let linker_last_tick = gauge(
            "distillguard_linker_last_tick_timestamp_seconds",
            "Event time of the last tick the linker scored, Unix seconds.",
        );
        for metric in [
            &profile_reports_published,
            &profile_parts_published,
            &profile_bytes_published,
            &profile_publish_failures,
            &linker_reports,
            &linker_ticks_scored,
            &linker_incomplete_ticks,
            &linker_refused,
        ] {
            register(Box::new(metric.clone()));
        }
        register(Box::new(profile_publish_duration.clone()));
        for metric in [
            &linker_pending_ticks,
            &linker_sequence,
            &linker_pending_messages,
            &linker_last_tick,
        ] {
            register(Box::new(metric.clone()));
        }
        Self {
            publish_duration,
            published_events,
            publish_failures,
            consumed_events,
            redeliveries,
            consumer_pending,
            consumer_restarts,
            undecodable,
            partition_sequence,
            partition_watermark,
            global_watermark,
            profile_reports_published,
            profile_parts_published,
            profile_bytes_published,
            profile_publish_failures,
            profile_publish_duration,
            linker_reports,
            linker_ticks_scored,
            linker_incomplete_ticks,
            linker_refused,
            linker_pending_ticks,
            linker_sequence,
            linker_pending_messages,
            linker_last_tick,
        }
    }
}
