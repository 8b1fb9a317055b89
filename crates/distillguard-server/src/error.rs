//! The one place where failures become HTTP responses.
//!
//! Clients get a stable `code` and a message written for them; internal errors are logged once,
//! here, with their cause chain, and the client only learns that something went wrong.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::Role;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body cannot be framed at all.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or an unknown one.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403: a valid token without the needed role.
    #[error("this action needs the {0} role")]
    Forbidden(Role),
    /// 404
    #[error("{0} not found")]
    NotFound(String),
    /// 409: optimistic concurrency conflict.
    #[error("{0}")]
    Conflict(String),
    /// 413: over the size limit (after decompression).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the message names what the route accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but not allowed (e.g. an invalid status transition).
    #[error("{0}")]
    Unprocessable(String),
    /// 429: the ingest queue is full; nothing from the request was accepted.
    #[error("the ingest queue is full; nothing from this request was accepted, retry later")]
    QueueFull { retry_after_secs: u64 },
    /// 503: shutting down or not ready; nothing from the request was accepted.
    #[error(
        "the service cannot handle this request right now (shutting down or its database is unreachable); nothing was changed, retry later"
    )]
    Unavailable { retry_after_secs: u64 },
    /// 500: never shown to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(error) => {
                tracing::error!(error.cause_chain = ?error, "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if let ApiError::QueueFull { retry_after_secs }
        | ApiError::Unavailable { retry_after_secs } = self
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&retry_after_secs.to_string())
                    .unwrap_or(HeaderValue::from_static("1")),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
