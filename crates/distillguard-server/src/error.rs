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

impl ApiError {
    /// Status, stable code and the message a client may read: an internal error is logged here,
    /// once, and the client only learns that something went wrong. Whole responses and the items
    /// of a bulk reply both go through this.
    pub fn client_parts(&self) -> (StatusCode, &'static str, String) {
        let (status, code) = self.status_and_code();
        let message = match self {
            ApiError::Internal(error) => {
                tracing::error!(error.cause_chain = ?error, "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        (status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.client_parts();
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

/// The fallback route: `404` naming what was asked for.
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "route {method} {}; the routes are listed in /openapi.json",
        uri.path()
    ))
}

/// Longest request target answered normally; longer is `414` (nginx's default line buffer).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total of request header names and values answered normally; larger is `431`.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Plain-text error bodies longer than this are cut (axum's rejections are one line).
const MAX_PLAIN_ERROR_BYTES: usize = 4 * 1024;

/// The stable `code` of an error status that no handler produced itself.
fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

fn error_response(status: StatusCode, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code_for_status(status), "message": message}})),
    )
        .into_response()
}

/// Gives every error the JSON shape, including the ones no handler wrote: an unknown route
/// (404), a method the route does not take (405), an extractor's rejection (a path that is not
/// UTF-8 once percent-decoded, like `%ff`), and the request-target and header limits (414, 431),
/// checked here below hyper's own (which answer with an empty body and are only reached past
/// 64 KiB of target or 400 KiB or 100 fields of headers).
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target_len > MAX_URI_BYTES {
        return error_response(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request target is {target_len} bytes, over the limit of {MAX_URI_BYTES}; send filters in fewer or shorter parameters"
            ),
        );
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request headers total {header_bytes} bytes, over the limit of {MAX_HEADER_BYTES}"
            ),
        );
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    // A handler that chose its body (JSON, the console's HTML page, an OTLP protobuf reply)
    // keeps it; only empty or plain-text bodies (axum's and hyper's own) are rewritten.
    let written_by_handler = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || written_by_handler {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if allowed.is_empty() {
                format!("{path} does not take {method}; its methods are listed in /openapi.json")
            } else {
                format!("{path} does not take {method}; allowed: {allowed}")
            }
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
        _ => text,
    };
    let mut converted = error_response(status, message);
    // Keep what the client needs to act on (Allow, Retry-After, WWW-Authenticate).
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            converted.headers_mut().insert(name, value.clone());
        }
    }
    converted
}
