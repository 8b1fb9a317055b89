//! The running service: listener, router, pipeline, and their orderly shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use distillguard_core::finding::FindingUpdate;
use distillguard_store::{BatchObserver, FindingWriter, Store, WriterConfig};
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::checkpoint;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::{FindingSink, Pipeline, PipelineConfig};

/// A built service, bound to its address but not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Stops the JetStream consumer before the final checkpoint (`[bus] kind = "jetstream"`).
    bus_stop: Option<tokio::sync::watch::Sender<bool>>,
    /// `role = "linker"`: the profiles stream's consumer and scorer.
    linker: Option<crate::bus::linker::LinkerRole>,
}

/// How long a checkpoint may take at shutdown before the service stops without it.
const FINAL_CHECKPOINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts over (`distillguard serve --reset`): deletes what this service keeps in its data
/// directory (the embedded SQLite store with findings, review history and checkpoints, and the
/// event log) and returns the paths removed. Anything else in the directory is left alone.
/// Refused with an external database, whose data is the operator's to drop.
pub fn reset_data_dir(settings: &Settings) -> anyhow::Result<Vec<std::path::PathBuf>> {
    if settings.database_url.is_some() {
        anyhow::bail!(
            "--reset clears the embedded SQLite store in the data directory, but database_url is \
             set: drop and recreate that database yourself (its checkpoints hold the watermark), \
             then start without --reset"
        );
    }
    let dir = &settings.data_dir;
    let mut removed = Vec::new();
    let store = distillguard_store::SQLITE_FILE;
    for name in [
        store.to_owned(),
        format!("{store}-wal"),
        format!("{store}-shm"),
    ] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            removed.push(path);
        }
    }
    let log = dir.join(crate::eventlog::wal::DIR);
    if log.exists() {
        std::fs::remove_dir_all(&log)
            .with_context(|| format!("cannot remove {}", log.display()))?;
        removed.push(log);
    }
    Ok(removed)
}

/// Selects ring as the process's TLS provider (webhook deliveries, NATS over TLS). Two providers
/// are compiled in (async-nats's TLS stack brings aws-lc-rs), and without a chosen default rustls
/// panics the first time a library builds a config without naming one. Idempotent.
pub fn install_tls_provider() {
    let _already_chosen = rustls::crypto::ring::default_provider().install_default();
}

impl Application {
    /// Validates settings, starts the pipeline and binds the listener (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        install_tls_provider();
        settings.validate()?;
        let tokens = settings.token_specs()?;
        let metrics = Metrics::new();
        initialise_label_sets(&metrics);
        let store = Store::connect_with(
            settings.database_url.as_ref().map(|url| url.expose()),
            &settings.data_dir,
            settings.store_options(),
        )
        .await
        .context("cannot open the store")?;
        tracing::info!(backend = store.backend_name(), "store ready");
        let writer = Arc::new(FindingWriter::spawn_observed(
            store.clone(),
            WriterConfig::default(),
            Some(store_write_observer(&metrics)),
        ));
        // Findings emitted before the checkpoint's cut were written before it was committed, and
        // the replay of the event log emits those after it again: nothing to re-submit here.
        let restored = match settings.bus.checkpoint_key()? {
            Some(key) => checkpoint::load_key(&store, &key).await?,
            None => None,
        };
        if let Some(newest) = restored.as_ref().and_then(|r| r.engine.clock.max_seen) {
            tracing::info!(
                data_dir = %settings.data_dir.display(),
                newest_event = %newest.to_rfc3339(),
                late_so_far = restored.as_ref().map_or(0, |r| r.engine.late_events),
                "resuming from a checkpoint: events older than the newest event seen minus the \
                 allowed lateness will be counted late and not scored; `serve --reset` starts over"
            );
        }
        let (pipeline, bus_stop) = if settings.bus.is_jetstream() {
            let (pipeline, stop) =
                crate::bus::start_pipeline(&settings, &metrics, bus_sink(&writer), restored)
                    .await?;
            (pipeline, Some(stop))
        } else {
            (
                start_pipeline(&settings, &metrics, &writer, restored).await?,
                None,
            )
        };
        let linker = if settings.bus.is_jetstream()
            && settings.bus.role == crate::bus::NodeRole::Linker
        {
            Some(
                crate::bus::linker::start(&settings, &metrics, &store, &writer, bus_sink(&writer))
                    .await?,
            )
        } else {
            None
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        if tokens.is_empty() {
            tracing::warn!(listen = %settings.listen, "authentication is off: listening on loopback only");
        } else {
            let roles: Vec<&str> = settings
                .configured_roles()
                .iter()
                .map(|r| r.as_str())
                .collect();
            tracing::info!(?roles, "bearer-token authentication on");
        }
        let state = AppState {
            settings: Arc::new(settings),
            auth: Authenticator::new(tokens),
            pipeline,
            metrics,
            store,
            writer,
            checkpoints: Arc::default(),
            console: Default::default(),
            draining: Default::default(),
        };
        Ok(Self {
            listener,
            state,
            bus_stop,
            linker,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and the pipeline.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = self.local_addr();
        tracing::info!(%address, "distillguard listening");
        let router = api::router(self.state.clone());
        let (stop_checkpoints, stopped) = tokio::sync::watch::channel(false);
        // None on an ingest-only node: it holds no detector state, and an empty checkpoint
        // under a detector's key in a shared database would overwrite that detector's.
        let checkpoint_key = self.state.settings.bus.checkpoint_key()?;
        let periodic = checkpoint_key.clone().map(|key| {
            checkpoint::spawn_periodic(
                checkpoint::Periodic {
                    store: self.state.store.clone(),
                    key,
                    pipeline: self.state.pipeline.clone(),
                    writer: Arc::clone(&self.state.writer),
                    metrics: self.state.metrics.clone(),
                    health: Arc::clone(&self.state.checkpoints),
                    interval: std::time::Duration::from_secs(
                        self.state.settings.store.checkpoint_interval_secs.max(1),
                    ),
                },
                stopped,
            )
        });
        let webhooks = crate::webhooks::spawn(
            self.state.store.clone(),
            self.state.settings.webhooks.clone(),
            self.state.metrics.clone(),
            stop_checkpoints.subscribe(),
        );
        let draining = self.state.draining.clone();
        let shutdown = async move {
            shutdown.await;
            draining.start();
        };
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        let _ = stop_checkpoints.send(true);
        if let Some(periodic) = periodic {
            let _ = periodic.await;
        }
        if let Some(webhooks) = webhooks {
            let _ = webhooks.await;
        }
        if let Some(stop) = &self.bus_stop {
            let _ = stop.send(true);
        }
        if let Some(linker) = self.linker {
            linker.shutdown().await;
        }
        tracing::info!("draining the detection pipeline");
        let state = &self.state;
        // Nothing new gets in; queued batches drain into the final checkpoint, which is committed
        // once the findings before it are written. With the event log nothing is lost if this
        // times out (the next start replays), without it the events since the last one are.
        state.pipeline.stop_accepting();
        if let Some(key) = &checkpoint_key {
            final_checkpoint(state, key).await;
        }
        let pipeline = state.pipeline.clone();
        tokio::task::spawn_blocking(move || pipeline.shutdown_blocking())
            .await
            .context("pipeline shutdown panicked")?;
        let grace = std::time::Duration::from_secs(state.settings.shutdown_grace_secs);
        let report = state.writer.shutdown(grace).await;
        if report.abandoned > 0 {
            tracing::error!(
                abandoned = report.abandoned,
                "findings not written before exit"
            );
        }
        self.state.store.close().await;
        tracing::info!(findings_written = report.written_total, "stopped");
        Ok(())
    }
}

/// The checkpoint at shutdown, behind every queued batch; logged, never fatal.
async fn final_checkpoint(state: &AppState, key: &str) {
    let last = tokio::time::timeout(
        FINAL_CHECKPOINT_TIMEOUT,
        checkpoint::save_observed(
            &state.store,
            key,
            &state.pipeline,
            &state.writer,
            &state.metrics,
            &state.checkpoints,
        ),
    )
    .await;
    match last {
        Ok(Ok(bytes)) => tracing::info!(bytes, key, "final checkpoint saved"),
        Ok(Err(error)) => {
            tracing::error!(error = format!("{error:#}"), "final checkpoint not saved")
        }
        Err(_) => tracing::error!("final checkpoint not saved in time"),
    }
}

pub fn pipeline_config(settings: &Settings) -> PipelineConfig {
    PipelineConfig {
        engine: settings.engine.engine_config(),
        shards: settings.engine.shards,
        queue_capacity: settings.ingest.queue_capacity,
        dedup_window_ms: settings.ingest.dedup_window_secs as i64 * 1000,
        dedup_capacity: settings.ingest.dedup_capacity,
        checkpoint_chunk_bytes: crate::pipeline::DEFAULT_CHUNK_BYTES,
    }
}

/// A checkpoint written before the clock was robust may hold a frontier set by one far-future
/// event; kept, it would make every real event late. Such a clock starts over.
pub(crate) fn forget_poisoned_clock(
    settings: &Settings,
    clock: &mut distillguard_core::engine::ClockCheckpoint,
) {
    use distillguard_core::engine::Clock;
    let skew_ms = i64::try_from(settings.ingest.max_future_skew_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let limit_ms = chrono::Utc::now()
        .timestamp_millis()
        .saturating_add(skew_ms);
    let Ok(limit) = distillguard_core::time::EventTime::from_epoch_ms(limit_ms) else {
        return;
    };
    let mut restored = Clock::restored(&settings.engine.engine_config(), clock);
    if restored.forget_if_after(limit) {
        tracing::warn!(
            frontier = ?clock.max_seen,
            "the checkpoint's event-time clock is ahead of the wall clock; starting it over"
        );
        *clock = restored.checkpoint();
    }
}

/// The pipeline, resumed from the checkpoint and, with the event log on, from the events the log
/// holds after it.
async fn start_pipeline(
    settings: &Settings,
    metrics: &Metrics,
    writer: &Arc<FindingWriter>,
    restored: Option<checkpoint::format::Snapshot>,
) -> anyhow::Result<Pipeline> {
    let sink = Box::new(StoreSink {
        writer: Arc::clone(writer),
    });
    let config = pipeline_config(settings);
    let restored = restored.map(|mut snapshot| {
        forget_poisoned_clock(settings, &mut snapshot.engine.clock);
        snapshot
    });
    if !settings.log.enabled {
        tracing::warn!(
            "event log off: a crash loses the events accepted since the last checkpoint"
        );
        return Ok(Pipeline::start_from(
            config,
            metrics.clone(),
            sink,
            restored,
        ));
    }
    let dir = settings.data_dir.join(crate::eventlog::wal::DIR);
    let options = settings.log.wal_options();
    let (log, torn) =
        tokio::task::spawn_blocking(move || crate::eventlog::wal::SegmentLog::open(&dir, options))
            .await
            .context("opening the event log panicked")?
            .context("cannot open the event log")?;
    let (pipeline, replayed) =
        Pipeline::start_logged(config, metrics.clone(), sink, restored, Box::new(log))
            .await
            .context("cannot replay the event log")?;
    tracing::info!(
        fsync = settings.log.fsync.as_str(),
        replayed_events = replayed.events,
        torn_bytes = torn + replayed.torn_bytes,
        "event log ready"
    );
    Ok(pipeline)
}

/// The store sink for a pipeline fed from the bus.
fn bus_sink(writer: &Arc<FindingWriter>) -> Box<dyn FindingSink> {
    Box::new(StoreSink {
        writer: Arc::clone(writer),
    })
}

/// Zero-valued series exist from the start, so `rate()` and absent-based alerts work at once.
fn initialise_label_sets(metrics: &Metrics) {
    for source in distillguard_ingest::Source::ALL {
        let source = source.as_str();
        metrics.events_received.with_label_values(&[source]);
        metrics.events_accepted.with_label_values(&[source]);
        metrics.events_duplicate.with_label_values(&[source]);
        metrics.ingest_bytes.with_label_values(&[source]);
        metrics.backpressure_rejections.with_label_values(&[source]);
        for reason in distillguard_ingest::RejectReason::ALL {
            metrics
                .events_rejected
                .with_label_values(&[source, reason.as_str()]);
        }
    }
    for subject in ["account", "cluster"] {
        for severity in distillguard_core::finding::Severity::ALL {
            metrics
                .new_findings
                .with_label_values(&[subject, severity.as_str()]);
            metrics
                .open_findings
                .with_label_values(&[subject, severity.as_str()]);
        }
    }
    for outcome in ["ok", "error"] {
        metrics.store_writes.with_label_values(&[outcome]);
    }
    for status in distillguard_store::ReviewStatus::ALL {
        metrics.review_actions.with_label_values(&[status.as_str()]);
    }
    for map in crate::metrics::STATE_MAPS {
        metrics.state_evictions.with_label_values(&[map]);
        metrics.state_entries.with_label_values(&[map]);
    }
}

/// Feeds the store writer's metrics.
fn store_write_observer(metrics: &Metrics) -> BatchObserver {
    let metrics = metrics.clone();
    Arc::new(move |batch| {
        let outcome = if batch.ok { "ok" } else { "error" };
        metrics.store_writes.with_label_values(&[outcome]).inc();
        metrics
            .store_write_duration
            .observe(batch.duration.as_secs_f64());
    })
}

/// Logs flagged findings and hands every update to the store writer, which never blocks.
struct StoreSink {
    writer: Arc<FindingWriter>,
}

impl FindingSink for StoreSink {
    fn deliver(&mut self, updates: Vec<FindingUpdate>) {
        log_flagged(&updates);
        self.writer.submit(updates);
    }

    fn wants_activity(&self) -> bool {
        true
    }

    /// Nothing to log: the subject's judgement did not change, only its current figures.
    fn deliver_activity(&mut self, activity: Vec<FindingUpdate>) {
        self.writer.submit(activity);
    }
}

fn log_flagged(updates: &[FindingUpdate]) {
    for update in updates.iter().filter(|u| u.flagged()) {
        match update {
            FindingUpdate::Account(a) => tracing::info!(
                subject = "account",
                severity = a.severity.as_str(),
                score = a.score,
                "finding flagged"
            ),
            FindingUpdate::Cluster(c) => tracing::info!(
                subject = "cluster",
                cluster_id = %c.cluster_id,
                severity = c.severity.as_str(),
                score = c.score,
                "finding flagged"
            ),
        }
    }
}
