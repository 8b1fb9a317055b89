//! Webhook deliveries that ran out of attempts (role `admin`): list them, and send one again
//! once the receiver is fixed.
//!
//! - `GET /v1/webhooks/dead-letters?limit=`: newest first;
//! - `POST /v1/webhooks/dead-letters/retry` with `{"event_id": 12, "endpoint": "soc"}`: back into
//!   the outbox with a fresh count of attempts, delivered by the worker like a new event.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use distillguard_store::WebhookDeadLetter;
use serde::{Deserialize, Serialize};

use super::review::{api_error, params};
use super::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1_000;

#[derive(Debug, Serialize)]
pub struct DeadLettersReply {
    pub items: Vec<WebhookDeadLetter>,
}

fn limit(raw: Option<&str>) -> Result<u32, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in params::checked_pairs(raw)? {
        if key != "limit" {
            return Err(ApiError::BadRequest(format!(
                "query parameter {key}: unknown; use limit"
            )));
        }
        limit = value
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "query parameter limit: expected an integer from 1 to {MAX_LIMIT}"
                ))
            })?;
    }
    Ok(limit)
}

/// `GET /v1/webhooks/dead-letters`.
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeadLettersReply>, ApiError> {
    caller.require(Role::Admin)?;
    let limit = limit(query.as_deref())?;
    let items = state
        .store
        .webhook_dead_letters(limit)
        .await
        .map_err(api_error)?;
    Ok(Json(DeadLettersReply { items }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    #[serde(deserialize_with = "params::int64")]
    pub event_id: i64,
    pub endpoint: String,
}

#[derive(Debug, Serialize)]
pub struct RetryReply {
    pub event_id: i64,
    pub endpoint: String,
    pub status: &'static str,
}

/// `POST /v1/webhooks/dead-letters/retry`: `202` once queued; `404` when that delivery is not
/// dead-lettered; `409` when it is but its endpoint is no longer configured (it would fail again).
pub async fn retry(
    caller: Caller,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RetryReply>), ApiError> {
    caller.require(Role::Admin)?;
    let body: RetryBody = params::body(&body)?;
    let configured = state
        .settings
        .webhooks
        .endpoints
        .iter()
        .any(|e| e.name == body.endpoint);
    let not_found = || {
        ApiError::NotFound(format!(
            "dead-lettered delivery of event {} to {:?}",
            body.event_id, body.endpoint
        ))
    };
    if !configured {
        // Rare (an endpoint removed from the configuration): look before refusing.
        let exists = state
            .store
            .webhook_dead_letters(MAX_LIMIT)
            .await
            .map_err(api_error)?
            .iter()
            .any(|d| d.event_id == body.event_id && d.endpoint == body.endpoint);
        if !exists {
            return Err(not_found());
        }
        return Err(ApiError::Conflict(format!(
            "no webhook endpoint named {:?} is configured; add it to [[webhooks.endpoints]] first",
            body.endpoint
        )));
    }
    let queued = state
        .store
        .retry_webhook_dead_letter(body.event_id, &body.endpoint)
        .await
        .map_err(api_error)?;
    if !queued {
        return Err(not_found());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryReply {
            event_id: body.event_id,
            endpoint: body.endpoint,
            status: "queued",
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_defaults_and_is_bounded_and_nothing_else_is_accepted() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("limit=&")).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("limit=5")).unwrap(), 5);
        assert!(limit(Some("limit=0")).is_err());
        assert!(limit(Some("limit=1001")).is_err());
        assert!(limit(Some("since=3")).is_err());
    }
}
