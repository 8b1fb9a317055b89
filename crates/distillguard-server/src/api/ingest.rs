//! Ingest endpoints: every log format shares framing, limits, auth, dedup and backpressure.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Json;
use distillguard_ingest::otlp;
use distillguard_ingest::{
    decode_body, decompress, CanonicalDecoder, DecodeOutcome, Decoder, Encoding, EnvoyDecoder,
    FrameError, KongDecoder, LitellmDecoder, OtlpDecoder, Rejected, Signal,
};
use serde::Serialize;

use super::AppState;
use crate::auth::{Caller, Role};
use crate::config::SourceSettings;
use crate::error::ApiError;
use crate::pipeline::SubmitError;

/// Rejected records listed in a reply at most; the count is always exact.
const MAX_LISTED_REJECTIONS: usize = 1_000;
/// Bodies larger than this are decoded off the async runtime.
const INLINE_DECODE_BYTES: usize = 128 * 1024;

/// The reply to an ingest request.
#[derive(Debug, Serialize)]
pub struct IngestReply {
    /// Records found in the body (for OTLP: log records or spans).
    pub received: usize,
    /// Events queued for detection.
    pub accepted: usize,
    /// Events acknowledged but skipped as retries of a recent `request_id`.
    pub duplicates: usize,
    /// Records refused because detection has moved past their time (also in `rejected`, reason
    /// `late`): they were not applied. Resend such history with a larger `allowed_lateness` or
    /// through `distillguard replay`.
    pub late: usize,
    pub rejected_count: usize,
    /// Records that are not model calls (OTLP spans and log events without GenAI attributes).
    pub ignored: usize,
    /// The first rejected records, each with its index, field and reason.
    pub rejected: Vec<Rejected>,
    /// OTLP's own partial-success report (`/v1/logs` and `/v1/traces` only).
    #[serde(rename = "partialSuccess", skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<PartialSuccess>,
}

/// OTLP `ExportLogsPartialSuccess` or `ExportTracePartialSuccess` in JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialSuccess {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_log_records: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_spans: Option<usize>,
    pub error_message: String,
}

/// A gateway decoder configured in `[sources.*]`.
pub trait ConfiguredSource: Decoder + Clone + 'static {
    fn configured(sources: &SourceSettings) -> &Self;
}

impl ConfiguredSource for LitellmDecoder {
    fn configured(sources: &SourceSettings) -> &Self {
        &sources.litellm
    }
}

impl ConfiguredSource for KongDecoder {
    fn configured(sources: &SourceSettings) -> &Self {
        &sources.kong
    }
}

impl ConfiguredSource for EnvoyDecoder {
    fn configured(sources: &SourceSettings) -> &Self {
        &sources.envoy
    }
}

impl ConfiguredSource for OtlpDecoder {
    fn configured(sources: &SourceSettings) -> &Self {
        &sources.otlp
    }
}

/// `POST /v1/ingest/{litellm,kong,envoy}`: a gateway's own log format, decoded as configured.
pub async fn gateway<D: ConfiguredSource>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let decoder = D::configured(&state.settings.sources).clone();
    ingest(state, caller, headers, body, decoder).await
}

/// `POST /v1/logs`: OTLP/HTTP logs, JSON or protobuf.
pub async fn otlp_logs(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    otlp(state, caller, headers, body, Signal::Logs).await
}

/// `POST /v1/traces`: OTLP/HTTP traces, JSON or protobuf; GenAI spans become events.
pub async fn otlp_traces(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    otlp(state, caller, headers, body, Signal::Traces).await
}

/// OTLP clients expect `200` with an `Export*ServiceResponse` in the request's encoding; a partial
/// acceptance is reported in `partialSuccess` as the specification asks. JSON replies carry our own
/// counts beside it (OTLP clients ignore unknown fields).
async fn otlp(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Result<Response, ApiError> {
    caller.require(Role::Ingest)?;
    let encoding = otlp_encoding(&headers)?;
    let decoder = OtlpDecoder::configured(&state.settings.sources).clone();
    let decode = move |plain: &[u8]| decoder.decode_export(signal, encoding, plain);
    let mut reply = ingest_with(&state, &headers, body, "otlp", decode).await?;
    let rejected = reply.rejected_count;
    let error_message = reply
        .rejected
        .first()
        .map(|r| r.error.to_string())
        .unwrap_or_default();
    if encoding == Encoding::Protobuf {
        let bytes = otlp::export_response(signal, rejected, error_message);
        let content_type = [(header::CONTENT_TYPE, "application/x-protobuf")];
        return Ok((StatusCode::OK, content_type, bytes).into_response());
    }
    if rejected > 0 {
        let logs = signal == Signal::Logs;
        reply.partial_success = Some(PartialSuccess {
            rejected_log_records: logs.then_some(rejected),
            rejected_spans: (!logs).then_some(rejected),
            error_message,
        });
    }
    Ok((StatusCode::OK, Json(reply)).into_response())
}

/// The encoding an OTLP request declares; no `Content-Type` reads as JSON (curl's habit).
fn otlp_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Encoding::Json);
    };
    let text = value.to_str().unwrap_or_default();
    Encoding::from_media_type(&media_type_essence(text)).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "unsupported media type {text:?}; OTLP/HTTP accepts application/x-protobuf or application/json"
        ))
    })
}

/// `POST /v1/events`: canonical events.
pub async fn canonical(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    ingest(state, caller, headers, body, CanonicalDecoder).await
}

/// The shared ingest path for every framed decoder.
pub async fn ingest<D: Decoder + Clone + 'static>(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    decoder: D,
) -> Result<(StatusCode, Json<IngestReply>), ApiError> {
    caller.require(Role::Ingest)?;
    check_media_type(&headers)?;
    let source = decoder.source().as_str();
    let decode = move |plain: &[u8]| decode_body(&decoder, plain);
    let reply = ingest_with(&state, &headers, body, source, decode).await?;
    Ok((StatusCode::ACCEPTED, Json(reply)))
}

/// Reads, decompresses and decodes a body with `decode`, then queues its events: limits, metrics
/// and backpressure are the same for every format.
async fn ingest_with<F>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    source: &'static str,
    decode: F,
) -> Result<IngestReply, ApiError>
where
    F: FnOnce(&[u8]) -> Result<DecodeOutcome, FrameError> + Send + 'static,
{
    let gzip = content_is_gzip(headers)?;
    let limit = state.settings.ingest.max_body_bytes;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!("the body exceeds the limit of {limit} bytes"))
    })?;
    let started = Instant::now();
    let decode = move || -> Result<_, FrameError> {
        let plain = decompress(&raw, gzip, limit)?;
        let outcome = decode(&plain)?;
        Ok((plain.len(), outcome))
    };
    let decoded = if raw_len_hint(headers) > INLINE_DECODE_BYTES || gzip {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
    } else {
        decode()
    };
    let (bytes, mut outcome) = decoded.map_err(|error| match error {
        FrameError::TooLarge { .. } => ApiError::PayloadTooLarge(error.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    })?;
    let late = screen_times(state, &mut outcome);
    let metrics = &state.metrics;
    metrics
        .decode_duration
        .with_label_values(&[source])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .ingest_bytes
        .with_label_values(&[source])
        .inc_by(bytes as u64);
    metrics
        .events_received
        .with_label_values(&[source])
        .inc_by(outcome.records as u64);
    for rejected in &outcome.rejected {
        metrics
            .events_rejected
            .with_label_values(&[source, rejected.error.reason.as_str()])
            .inc();
    }
    let retry_after_secs = state.settings.ingest.retry_after_secs;
    let receipt = state
        .pipeline
        .try_submit(outcome.events)
        .await
        .map_err(|error| {
            metrics
                .backpressure_rejections
                .with_label_values(&[source])
                .inc();
            match error {
                SubmitError::QueueFull => ApiError::QueueFull { retry_after_secs },
                SubmitError::ShuttingDown => ApiError::Unavailable { retry_after_secs },
                // Nothing of the batch was accepted (the log undid it); a retry may succeed once the
                // disk has room again. The cause is in the service's log and in `/readyz`.
                SubmitError::LogUnavailable(_) => ApiError::Unavailable { retry_after_secs },
                SubmitError::BatchTooLarge { .. } => ApiError::PayloadTooLarge(format!(
                    "{error}; split the body into smaller batches"
                )),
            }
        })?;
    metrics
        .events_accepted
        .with_label_values(&[source])
        .inc_by(receipt.accepted as u64);
    metrics
        .events_duplicate
        .with_label_values(&[source])
        .inc_by(receipt.duplicates as u64);
    let rejected_count = outcome.rejected.len();
    let mut rejected = outcome.rejected;
    rejected.sort_by_key(|r| r.index);
    rejected.truncate(MAX_LISTED_REJECTIONS);
    Ok(IngestReply {
        received: outcome.records,
        accepted: receipt.accepted,
        duplicates: receipt.duplicates,
        late,
        rejected_count,
        ignored: outcome.ignored,
        rejected,
        partial_success: None,
    })
}

/// Refuses, record by record, timestamps the engine must not see: further ahead of the wall clock
/// than the allowed skew (a clock set to 2199 would otherwise hold the event-time clock back for
/// good), older than `max_event_age`, or behind the detection watermark (late: they would be
/// counted and dropped, so the sender is told now instead of getting a silent 202). Returns how
/// many were late. The rest of the batch goes on.
fn screen_times(state: &AppState, outcome: &mut distillguard_ingest::DecodeOutcome) -> usize {
    use distillguard_ingest::{RecordError, RejectReason};
    let settings = &state.settings.ingest;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let skew_ms = i64::try_from(settings.max_future_skew_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let newest = now_ms.saturating_add(skew_ms);
    let oldest = (settings.max_event_age_secs > 0).then(|| {
        now_ms.saturating_sub(
            i64::try_from(settings.max_event_age_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        )
    });
    // The watermark only grows; the published one is at most a second behind (whole seconds).
    let watermark_ms = match state.metrics.detection_watermark.get() {
        0 => None,
        seconds => Some(seconds.saturating_mul(1000)),
    };
    let mut late = 0;
    let events = std::mem::take(&mut outcome.events);
    let mut origins = std::mem::take(&mut outcome.origins);
    // Decoders that do not locate their events (OTLP protobuf) number them in order.
    for position in origins.len()..events.len() {
        origins.push((position, None));
    }
    for (event, (index, line)) in events.into_iter().zip(origins) {
        let at = event.timestamp.epoch_ms();
        let refusal = if at > newest {
            Some((
                RejectReason::FutureTimestamp,
                format!(
                    "{} is more than {} s ahead of this server's clock",
                    event.timestamp, settings.max_future_skew_secs
                ),
            ))
        } else if oldest.is_some_and(|oldest| at < oldest) {
            Some((
                RejectReason::TooOld,
                format!(
                    "{} is older than the {} s this server accepts",
                    event.timestamp, settings.max_event_age_secs
                ),
            ))
        } else if watermark_ms.is_some_and(|watermark| at < watermark) {
            late += 1;
            Some((
                RejectReason::Late,
                format!(
                    "{} is behind the detection watermark; the event was not applied",
                    event.timestamp
                ),
            ))
        } else {
            None
        };
        match refusal {
            // Counted in `events_rejected` by reason with the decoder's refusals.
            Some((reason, message)) => {
                outcome.rejected.push(distillguard_ingest::Rejected {
                    index,
                    line,
                    error: RecordError {
                        reason,
                        field: Some("timestamp".to_string()),
                        message,
                    },
                });
            }
            None => {
                outcome.events.push(event);
                outcome.origins.push((index, line));
            }
        }
    }
    late
}

fn raw_len_hint(headers: &HeaderMap) -> usize {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Media types log shippers use for JSON and NDJSON bodies.
const ACCEPTED_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/jsonlines",
    "text/plain",
    // What `curl -d` sends when no type is given: treated like no type at all (the body is
    // framed as JSON or NDJSON either way), so the first curl a user types works.
    "application/x-www-form-urlencoded",
];

fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    if ACCEPTED_MEDIA_TYPES.contains(&media_type_essence(text).as_str()) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "unsupported media type {text:?}; send application/json or application/x-ndjson"
        )))
    }
}

/// A media type without its parameters, in lower case.
pub(super) fn media_type_essence(text: &str) -> String {
    text.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn content_is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    match value
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "gzip" | "x-gzip" => Ok(true),
        "" | "identity" => Ok(false),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported content-encoding {other:?}; send gzip or no encoding"
        ))),
    }
}
