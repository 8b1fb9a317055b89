//! The HTTP API. [`router`] is the table of contents: every route the service answers.

pub mod console;
mod dead_letters;
mod decisions;
mod ingest;
mod ops;
pub mod otlp_status;
pub mod review;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use console::queue::{bulk, export_csv, export_json, queue};
use console::{assets, login, subject};
use distillguard_ingest::{EnvoyDecoder, KongDecoder, LitellmDecoder};
use distillguard_store::{FindingWriter, Store};
use review::subjects::{Accounts, Clusters};
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
    /// Logged-in browsers of the analyst console.
    pub console: console::Sessions,
    /// Set when graceful shutdown starts: long polls answer at once instead of holding the drain.
    pub draining: Draining,
}

/// Whether the server has begun its graceful shutdown. Open long polls (`GET /v1/decisions?
/// stream=true`, up to 60 s) would otherwise keep it waiting; they answer their empty page and
/// the bouncer reconnects, to another replica or to this one after its restart.
#[derive(Clone)]
pub struct Draining(tokio::sync::watch::Sender<bool>);

impl Default for Draining {
    fn default() -> Self {
        Self(tokio::sync::watch::channel(false).0)
    }
}

impl Draining {
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
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
        .route("/v1/logs", post(ingest::otlp_logs))
        .route("/v1/traces", post(ingest::otlp_traces))
        // Review (role `analyst`; `admin` passes too) and `/openapi.json`.
        .merge(review::routes())
        // Decisions for gateways (role `enforcer`; `analyst` and `admin` may read them too).
        .route("/v1/decisions", get(decisions::list))
        // Webhook deliveries that ran out of attempts (role `admin`).
        .route("/v1/webhooks/dead-letters", get(dead_letters::list))
        .route("/v1/webhooks/dead-letters/retry", post(dead_letters::retry))
        .merge(console_routes())
        .fallback(crate::error::no_route)
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
        // Outermost: every error, whoever wrote it, leaves in the JSON error shape.
        .layer(middleware::from_fn(crate::error::json_errors))
        // Outside that: OTLP clients that sent protobuf get their errors as a protobuf Status.
        .layer(middleware::from_fn(otlp_status::protobuf_errors))
        .with_state(state)
}

/// The analyst console (`docs/console.md`): HTML pages that call the review handlers above with
/// the caller of a session cookie (from an analyst or admin token; the `ingest` role is refused).
/// Every change is a POST carrying the session's CSRF token.
fn console_routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(login::home))
        .route("/ui/login", get(login::login_page).post(login::login))
        .route("/ui/logout", post(login::logout))
        .route("/ui/assets/{name}", get(assets::asset))
        .route("/ui/accounts", get(queue::<Accounts>))
        .route("/ui/accounts/bulk", post(bulk::<Accounts>))
        .route("/ui/accounts/export.csv", get(export_csv::<Accounts>))
        .route("/ui/accounts/export.json", get(export_json::<Accounts>))
        .route("/ui/accounts/{id}", get(subject::show::<Accounts>))
        .route(
            "/ui/accounts/{id}/review",
            post(subject::review::<Accounts>),
        )
        .route(
            "/ui/accounts/{id}/notes",
            post(subject::add_note::<Accounts>),
        )
        .route("/ui/clusters", get(queue::<Clusters>))
        .route("/ui/clusters/bulk", post(bulk::<Clusters>))
        .route("/ui/clusters/export.csv", get(export_csv::<Clusters>))
        .route("/ui/clusters/export.json", get(export_json::<Clusters>))
        .route("/ui/clusters/{id}", get(subject::show::<Clusters>))
        .route(
            "/ui/clusters/{id}/review",
            post(subject::review::<Clusters>),
        )
        .route(
            "/ui/clusters/{id}/notes",
            post(subject::add_note::<Clusters>),
        )
        .route(
            "/ui/allowlist",
            get(login::allowlist).post(login::add_allowlist),
        )
        .route(
            "/ui/allowlist/{entry}/remove",
            post(login::remove_allowlist),
        )
        .layer(middleware::from_fn(console::security_headers))
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
