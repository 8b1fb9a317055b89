//! The running service: listener, router, pipeline, and their orderly shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use distillguard_core::finding::FindingUpdate;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::{FindingSink, Pipeline, PipelineConfig};

/// A built service, bound to its address but not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Validates settings, starts the pipeline and binds the listener (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let tokens = settings.token_specs()?;
        let metrics = Metrics::new();
        initialise_label_sets(&metrics);
        let pipeline = Pipeline::start(
            pipeline_config(&settings),
            metrics.clone(),
            Box::new(LogSink),
        );
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
        };
        Ok(Self { listener, state })
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
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        tracing::info!("draining the detection pipeline");
        let pipeline = self.state.pipeline.clone();
        tokio::task::spawn_blocking(move || pipeline.shutdown_blocking())
            .await
            .context("pipeline shutdown panicked")?;
        tracing::info!("stopped");
        Ok(())
    }
}

pub fn pipeline_config(settings: &Settings) -> PipelineConfig {
    PipelineConfig {
        engine: settings.engine.engine_config(),
        shards: settings.engine.shards,
        queue_capacity: settings.ingest.queue_capacity,
        dedup_window_ms: settings.ingest.dedup_window_secs as i64 * 1000,
        dedup_capacity: settings.ingest.dedup_capacity,
    }
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
}

/// Logs flagged findings; the store writer replaces it once persistence is configured.
struct LogSink;

impl FindingSink for LogSink {
    fn deliver(&mut self, updates: Vec<FindingUpdate>) {
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
}
