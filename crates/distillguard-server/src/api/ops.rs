//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::metrics::Metrics;

/// Alive: the process answers HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the store before calling it unreachable.
const STORE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Ready: the pipeline is running. A store outage is reported as `degraded` with 200, not 503:
/// ingestion keeps working (findings buffer in the writer), so traffic must keep flowing here.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let pipeline_ok = state.pipeline.is_running();
    let writer = state.writer.stats();
    let reachable = matches!(
        tokio::time::timeout(STORE_PING_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    let store_ok = reachable && !writer.degraded;
    // A failing log refuses every batch (503): not ready. Failing checkpoints leave ingest
    // working but make the log (and the replay after a crash) grow: degraded, and said why.
    let log = state.pipeline.log_state();
    let log_ok = log.as_ref().is_none_or(|l| !l.failing);
    let checkpoints = state.checkpoints.state();
    let checkpoint_ok = checkpoints.consecutive_failures == 0;
    let ready = pipeline_ok && log_ok;
    let body = json!({
        "status": if ready && store_ok && checkpoint_ok { "ready" } else { "degraded" },
        "checks": {
            "pipeline": if pipeline_ok { "ok" } else { "stopped" },
            "store": if store_ok { "ok" } else { "degraded" },
            "event_log": match &log {
                None => "off",
                Some(l) if l.failing => "failing",
                Some(_) => "ok",
            },
            "checkpoint": if checkpoint_ok { "ok" } else { "failing" },
        },
        "event_log": log.as_ref().map(|l| json!({
            "position": l.end.0,
            "last_error": l.last_error,
        })),
        "checkpoint": {
            "consecutive_failures": checkpoints.consecutive_failures,
            "last_error": checkpoints.last_error,
            "last_success": checkpoints.last_success,
            "bytes": checkpoints.last_bytes,
        },
        "queue": {
            "depth": state.pipeline.queue_depth(),
            "capacity": state.pipeline.queue_capacity(),
        },
        "store": {
            "backend": state.store.backend_name(),
            "reachable": reachable,
            "buffered_findings": writer.buffered,
            "failed_writes": writer.failures_total,
            "dropped_findings": writer.dropped_total,
            "dead_lettered_findings": writer.dead_lettered_total,
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Lag is "now minus the watermark", so it must be computed at scrape time: a stalled
    // pipeline's lag keeps growing even though no event updates it.
    let watermark = state.metrics.detection_watermark.get();
    if watermark > 0 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        state
            .metrics
            .detection_lag
            .set((now - watermark as f64).max(0.0));
    }
    state
        .metrics
        .queue_depth
        .set(state.pipeline.queue_depth() as i64);
    let writer = state.writer.stats();
    state.metrics.store_buffer_depth.set(writer.buffered as i64);
    Metrics::catch_up(
        &state.metrics.store_dead_lettered,
        writer.dead_lettered_total,
    );
    Metrics::catch_up(&state.metrics.store_nul_replaced, writer.sanitized_total);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
