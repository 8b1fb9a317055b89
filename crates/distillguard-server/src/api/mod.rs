//! The HTTP API. [`router`] is the table of contents: every route the service answers.

mod decisions;
mod ingest;
mod ops;
pub mod review;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use distillguard_ingest::{EnvoyDecoder, KongDecoder, LitellmDecoder};
use distillguard_store::{FindingWriter, Store};
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub auth: Authenticator,
    pub pipeline: Pipeline,
    pub metrics: Metrics,
    /// Findings, review state and checkpoints (PostgreSQL, or SQLite in the data dir).
    pub store: Store,
    /// Moves the pipeline's findings into the store off the hot path.
    pub writer: Arc<FindingWriter>,
    /// How checkpoints have been going, for `/readyz`.
    pub checkpoints: Arc<crate::checkpoint::CheckpointHealth>,
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    Router::new()
        // Operations: unauthenticated, for probes and scrapers.
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        // Ingest (role `ingest`).
        .route("/v1/events", post(ingest::canonical))
        .route(
            "/v1/ingest/litellm",
            post(ingest::gateway::<LitellmDecoder>),
        )
        .route("/v1/ingest/kong", post(ingest::gateway::<KongDecoder>))
        .route("/v1/ingest/envoy", post(ingest::gateway::<EnvoyDecoder>))
        .route("/v1/logs", post(ingest::otlp))
        // Review (role `analyst`; `admin` passes too) and `/openapi.json`.
        .merge(review::routes())
        // Decisions for gateways (role `enforcer`; `analyst` and `admin` may read them too).
        .route("/v1/decisions", get(decisions::list))
        // Bodies are limited after decompression by the handlers themselves.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_http_metrics,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                tracing::info_span!("http", method = %request.method(), route)
            }),
        )
        .with_state(state)
}

/// Counts requests by route template (never the raw path: ids would explode the label set).
async fn record_http_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .http_requests
        .with_label_values(&[&route, &method, &status])
        .inc();
    state
        .metrics
        .http_request_duration
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    response
}
