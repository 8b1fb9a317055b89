//! Every Prometheus series the service exports, in one place (reference: `docs/operations.md`).
//!
//! Labels are bounded by construction: sources, reasons, detectors, subjects, severities, cluster
//! states, routes and statuses come from fixed sets. Never an account or cluster id.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Handles to the service's metrics; cheap to clone (every field is reference-counted).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Records framed from request bodies, by source (`canonical`, `litellm`, ...).
    pub events_received: IntCounterVec,
    /// Records that passed validation and entered the pipeline, by source.
    pub events_accepted: IntCounterVec,
    /// Records refused, by source and reason (`invalid_field`, `missing_field`, `malformed_json`).
    pub events_rejected: IntCounterVec,
    /// Records acknowledged but not re-processed because their `request_id` was seen recently.
    pub events_duplicate: IntCounterVec,
    /// Request body bytes after decompression, by source.
    pub ingest_bytes: IntCounterVec,
    /// Time to decode one request body into events, by source.
    pub decode_duration: HistogramVec,
    /// Events waiting between HTTP and the detection workers.
    pub queue_depth: IntGauge,
    /// Capacity of that queue.
    pub queue_capacity: IntGauge,
    /// Requests refused with 429/503 because the queue was full, by source.
    pub backpressure_rejections: IntCounterVec,
    /// Accounts currently held in detector state.
    pub tracked_accounts: IntGauge,
    /// Accounts dropped from detector state (idle or over the cap).
    pub evicted_accounts: IntCounter,
    /// Events older than the watermark minus allowed lateness.
    pub late_events: IntCounter,
    /// Events too far ahead of the event-time clock, refused until corroborated.
    pub ahead_events: IntCounter,
    /// Detector evaluations at scoring ticks, by detector.
    pub detector_evaluations: IntCounterVec,
    /// Detector evaluations that produced a non-zero signal, by detector.
    pub detector_fires: IntCounterVec,
    /// Accounts the linker holds (values they share are what links them into clusters).
    pub linked_accounts: IntGauge,
    /// Live clusters with a finding, by `state` (`flagged`, `unflagged`).
    pub clusters: IntGaugeVec,
    /// Open (flagged, not yet closed) findings, by subject kind and severity.
    pub open_findings: IntGaugeVec,
    /// Findings that became flagged or rose in severity, by subject kind and severity.
    pub new_findings: IntCounterVec,
    /// Event-time watermark of the detection pipeline, as Unix seconds.
    pub detection_watermark: IntGauge,
    /// Wall-clock now minus the event-time watermark, in seconds.
    pub detection_lag: prometheus::Gauge,
    /// Batches written to the store, by outcome (`ok`, `error`).
    pub store_writes: IntCounterVec,
    /// Time to write one batch of findings.
    pub store_write_duration: Histogram,
    /// Findings waiting to be written to the store.
    pub store_buffer_depth: IntGauge,
    /// Finding updates the store refused for good, moved to the `dead_letter` table.
    pub store_dead_lettered: IntCounter,
    /// NUL characters replaced by U+FFFD in text written to the store.
    pub store_nul_replaced: IntCounter,
    /// Review actions by target status.
    pub review_actions: IntCounterVec,
    /// Webhook delivery attempts, by endpoint and outcome (`delivered`, `failed`, `dead_lettered`).
    pub webhook_deliveries: IntCounterVec,
    /// HTTP requests by route template, method and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request duration by route template and method.
    pub http_request_duration: HistogramVec,
    /// Bytes appended to the event log (records with their framing).
    pub log_appended_bytes: IntCounter,
    /// Time to make one group of appends durable (one fsync under `fsync = "always"`).
    pub log_sync_duration: Histogram,
    /// Appends or syncs of the event log that failed; their requests were answered 503.
    pub log_failures: IntCounter,
    /// Bytes the event log holds on disk (segments not yet covered by a checkpoint).
    pub log_bytes: IntGauge,
    /// Events replayed from the event log at start (accepted before a crash, after the checkpoint).
    pub log_replayed_events: IntCounter,
    /// Time to take and write one checkpoint.
    pub checkpoint_duration: Histogram,
    /// Size of the last checkpoint written, in bytes.
    pub checkpoint_bytes: IntGauge,
    /// Checkpoints that failed (the previous one stays; the event log keeps growing meanwhile).
    pub checkpoint_failures: IntCounter,
    /// When the last checkpoint was written, Unix seconds.
    pub checkpoint_last_success: IntGauge,
    /// Entries dropped from an in-memory map at its cap, by `map`.
    pub state_evictions: IntCounterVec,
    /// Entries held by each capped in-memory map, by `map`.
    pub state_entries: IntGaugeVec,
    /// The JetStream bus's series (`[bus] kind = "jetstream"`).
    pub bus: crate::bus::BusMetrics,
}

/// Values of the `map` label of `distillguard_state_evictions_total` and
/// `distillguard_state_entries`: every in-memory map that grows with clients' input.
pub const STATE_MAPS: [&str; 5] = ["findings", "flagged", "linker", "models", "dedup"];

/// Values of the `state` label of `distillguard_clusters`.
pub const CLUSTER_STATES: [&str; 2] = ["flagged", "unflagged"];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

/// Buckets from 100 µs to 10 s: decode and store batches span that range.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let store_write_duration = Histogram::with_opts(
            HistogramOpts::new(
                "distillguard_store_write_duration_seconds",
                "Time to write one batch of findings to the store.",
            )
            .buckets(latency_buckets()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_write_duration.clone()))
            .expect("unique metric");
        let detection_lag = prometheus::Gauge::new(
            "distillguard_detection_lag_seconds",
            "Wall-clock time minus the detection pipeline's event-time watermark.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(detection_lag.clone()))
            .expect("unique metric");
        let evicted_accounts = IntCounter::new(
            "distillguard_evicted_accounts_total",
            "Accounts dropped from detector state because they were idle or over the cap.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(evicted_accounts.clone()))
            .expect("unique metric");
        let late_events = IntCounter::new(
            "distillguard_late_events_total",
            "Events older than the watermark minus the allowed lateness; counted, not applied.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(late_events.clone()))
            .expect("unique metric");
        let open_findings = IntGaugeVec::new(
            Opts::new(
                "distillguard_open_findings",
                "Flagged findings not yet confirmed or dismissed, by subject kind and severity.",
            ),
            &["subject", "severity"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(open_findings.clone()))
            .expect("unique metric");
        let clusters = IntGaugeVec::new(
            Opts::new(
                "distillguard_clusters",
                "Live clusters of linked accounts with a finding, by state (flagged, unflagged).",
            ),
            &["state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(clusters.clone()))
            .expect("unique metric");
        for state in CLUSTER_STATES {
            clusters.with_label_values(&[state]).set(0);
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "distillguard_build_info",
                "Always 1; labels carry the build version.",
            ),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");

        Self {
            events_received: counter_vec(
                r,
                "distillguard_events_received_total",
                "Records framed from request bodies.",
                &["source"],
            ),
            events_accepted: counter_vec(
                r,
                "distillguard_events_accepted_total",
                "Records that passed validation and entered the pipeline.",
                &["source"],
            ),
            events_rejected: counter_vec(
                r,
                "distillguard_events_rejected_total",
                "Records refused, by reason.",
                &["source", "reason"],
            ),
            events_duplicate: counter_vec(
                r,
                "distillguard_events_duplicate_total",
                "Records acknowledged but skipped as retries of a recent request_id.",
                &["source"],
            ),
            ingest_bytes: counter_vec(
                r,
                "distillguard_ingest_bytes_total",
                "Request body bytes after decompression.",
                &["source"],
            ),
            decode_duration: histogram_vec(
                r,
                "distillguard_decode_duration_seconds",
                "Time to decode one request body.",
                &["source"],
                latency_buckets(),
            ),
            queue_depth: gauge(
                r,
                "distillguard_queue_depth",
                "Events waiting between HTTP and the detection workers.",
            ),
            queue_capacity: gauge(
                r,
                "distillguard_queue_capacity",
                "Capacity of the ingest queue, in events.",
            ),
            backpressure_rejections: counter_vec(
                r,
                "distillguard_backpressure_rejections_total",
                "Requests refused with 429/503 because the ingest queue was full.",
                &["source"],
            ),
            tracked_accounts: gauge(
                r,
                "distillguard_tracked_accounts",
                "Accounts currently held in detector state.",
            ),
            evicted_accounts,
            late_events,
            ahead_events: counter(
                r,
                "distillguard_ahead_events_total",
                "Events further ahead of the event-time clock than max_clock_jump, not applied.",
            ),
            linked_accounts: gauge(
                r,
                "distillguard_linked_accounts",
                "Accounts the linker holds for account linking and clusters.",
            ),
            clusters,
            detector_evaluations: counter_vec(
                r,
                "distillguard_detector_evaluations_total",
                "Detector evaluations at scoring ticks.",
                &["detector"],
            ),
            detector_fires: counter_vec(
                r,
                "distillguard_detector_fires_total",
                "Detector evaluations whose score reached 0.5 (the fire threshold).",
                &["detector"],
            ),
            open_findings,
            new_findings: counter_vec(
                r,
                "distillguard_findings_total",
                "Findings that became flagged or rose in severity.",
                &["subject", "severity"],
            ),
            detection_watermark: gauge(
                r,
                "distillguard_detection_watermark_timestamp_seconds",
                "Event-time watermark of the detection pipeline, Unix seconds.",
            ),
            detection_lag,
            store_writes: counter_vec(
                r,
                "distillguard_store_writes_total",
                "Batches written to the store, by outcome.",
                &["outcome"],
            ),
            store_write_duration,
            store_buffer_depth: gauge(
                r,
                "distillguard_store_buffer_depth",
                "Findings waiting to be written to the store.",
            ),
            store_dead_lettered: counter(
                r,
                "distillguard_store_dead_lettered_total",
                "Finding updates the store refused for good, moved to the dead_letter table.",
            ),
            store_nul_replaced: counter(
                r,
                "distillguard_store_nul_replaced_total",
                "NUL characters replaced by U+FFFD in text written to the store.",
            ),
            review_actions: counter_vec(
                r,
                "distillguard_review_actions_total",
                "Review actions, by target status.",
                &["status"],
            ),
            webhook_deliveries: counter_vec(
                r,
                "distillguard_webhook_deliveries_total",
                "Webhook delivery attempts, by endpoint and outcome (delivered, failed, dead_lettered).",
                &["endpoint", "outcome"],
            ),
            http_requests: counter_vec(
                r,
                "distillguard_http_requests_total",
                "HTTP requests by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_request_duration: histogram_vec(
                r,
                "distillguard_http_request_duration_seconds",
                "HTTP request duration by route template and method.",
                &["route", "method"],
                latency_buckets(),
            ),
            log_appended_bytes: counter(
                r,
                "distillguard_log_appended_bytes_total",
                "Bytes appended to the event log.",
            ),
            log_sync_duration: histogram(
                r,
                "distillguard_log_sync_duration_seconds",
                "Time to make one group of event-log appends durable.",
                latency_buckets(),
            ),
            log_failures: counter(
                r,
                "distillguard_log_failures_total",
                "Event-log appends or syncs that failed; their requests were answered 503.",
            ),
            log_bytes: gauge(
                r,
                "distillguard_log_bytes",
                "Bytes the event log holds on disk.",
            ),
            log_replayed_events: counter(
                r,
                "distillguard_log_replayed_events_total",
                "Events replayed from the event log at start.",
            ),
            checkpoint_duration: histogram(
                r,
                "distillguard_checkpoint_duration_seconds",
                "Time to take and write one checkpoint.",
                vec![
                    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ],
            ),
            checkpoint_bytes: gauge(
                r,
                "distillguard_checkpoint_bytes",
                "Size of the last checkpoint written, in bytes.",
            ),
            checkpoint_failures: counter(
                r,
                "distillguard_checkpoint_failures_total",
                "Checkpoints that failed to be taken or written.",
            ),
            checkpoint_last_success: gauge(
                r,
                "distillguard_checkpoint_last_success_timestamp_seconds",
                "When the last checkpoint was written, Unix seconds.",
            ),
            state_evictions: counter_vec(
                r,
                "distillguard_state_evictions_total",
                "Entries dropped from an in-memory map at its cap, by map.",
                &["map"],
            ),
            state_entries: gauge_vec(
                r,
                "distillguard_state_entries",
                "Entries held by each capped in-memory map, by map.",
                &["map"],
            ),
            bus: crate::bus::BusMetrics::register(&registry),
            registry,
        }
    }

    /// Brings a counter up to a cumulative total kept elsewhere (the writer's own counters).
    pub fn catch_up(counter: &IntCounter, total: u64) {
        let seen = counter.get();
        if total > seen {
            counter.inc_by(total - seen);
        }
    }

    /// The Prometheus text exposition of every registered series.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(buffer).expect("prometheus text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
