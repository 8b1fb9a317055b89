//! Allowlist, stats and the OpenAPI document.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use distillguard_core::time::EventTime;
use distillguard_store::{AllowlistEntry, Subject, SubjectKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::params;
use super::subjects::{actor, ListReply};
use super::{api_error, OPENAPI_JSON};
use crate::api::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// `GET /openapi.json`: public, like the probes; it documents, it does not reveal data.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

/// `GET /v1/allowlist?include_expired=true`.
pub async fn list_allowlist(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ListReply<AllowlistEntry>>, ApiError> {
    caller.require(Role::Analyst)?;
    let mut include_expired = false;
    for (key, value) in params::checked_pairs(query.as_deref())? {
        match (key.as_str(), value.as_str()) {
            ("include_expired", "true") => include_expired = true,
            ("include_expired", "false") => include_expired = false,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {key}: only include_expired=true|false is accepted"
                )))
            }
        }
    }
    let items = state
        .store
        .list_allowlist(include_expired)
        .await
        .map_err(api_error)?;
    Ok(Json(ListReply { items, next: None }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistBody {
    pub kind: SubjectKind,
    pub id: String,
    pub reason: String,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/allowlist`: replaces the subject's live entry if it has one.
pub async fn add_allowlist(
    caller: Caller,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<AllowlistEntry>), ApiError> {
    caller.require(Role::Analyst)?;
    let body: AllowlistBody = params::body(&body)?;
    let subject = Subject::new(body.kind, body.id).map_err(api_error)?;
    let entry = state
        .store
        .add_allowlist(&subject, &body.reason, body.expires_at, &actor(&caller)?)
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// `DELETE /v1/allowlist/{entry}`: returns the removed entry.
pub async fn remove_allowlist(
    caller: Caller,
    State(state): State<AppState>,
    Path(entry): Path<String>,
) -> Result<Json<AllowlistEntry>, ApiError> {
    caller.require(Role::Analyst)?;
    let entry = params::path_text("entry", entry)?;
    let id: i64 = entry
        .parse()
        .map_err(|_| ApiError::NotFound(format!("allowlist entry {entry}")))?;
    let removed = state
        .store
        .remove_allowlist(id, &actor(&caller)?)
        .await
        .map_err(api_error)?;
    Ok(Json(removed))
}

/// `GET /v1/stats`: counts by status and severity, stored watermarks and the live pipeline's.
pub async fn stats(caller: Caller, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Analyst)?;
    let stats = state.store.stats().await.map_err(api_error)?;
    let detection_secs = state.metrics.detection_watermark.get();
    let detection = (detection_secs > 0)
        .then(|| EventTime::from_epoch_ms(detection_secs.saturating_mul(1000)).ok())
        .flatten();
    Ok(Json(json!({
        "accounts": stats.accounts,
        "clusters": stats.clusters,
        "watermarks": {
            "detection": detection,
            "stored": stats.watermarks,
        },
    })))
}
