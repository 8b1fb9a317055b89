//! OTLP/HTTP failures in the request's encoding. The specification: "The response body for all
//! HTTP 4xx and HTTP 5xx responses MUST be a Protobuf-encoded Status message that describes the
//! problem" when the request was binary protobuf, and "The server MUST use the same Content-Type
//! in the response as it received in the request". JSON requests keep our JSON error shape, which
//! carries the same `message`.
//!
//! This runs outside the JSON-shape middleware, so it sees every error of the OTLP routes in its
//! final form (401 from authentication, 400/413/415/429/503 from the handler, 414/431 from the
//! limits) and re-encodes it; the HTTP status stays as it is, since that is what drives an OTLP
//! client's retries.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prost::Message;

/// The routes this applies to.
const OTLP_PATHS: [&str; 2] = ["/v1/logs", "/v1/traces"];
const PROTOBUF: &str = "application/x-protobuf";
/// Our error bodies are small; anything past this is cut from the message.
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// `google.rpc.Status` (google/rpc/status.proto). `details` (field 3, `repeated Any`) is left
/// out: we send none, and an empty repeated field is not encoded at all.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The `google.rpc.Code` closest to an HTTP status, as gRPC-HTTP gateways map them. The
/// specification lets a server omit it and tells clients not to act on it; it is there for
/// people reading the reply.
fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::URI_TOO_LONG
        | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => 3, // INVALID_ARGUMENT
        StatusCode::UNAUTHORIZED => 16,        // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,            // PERMISSION_DENIED
        StatusCode::NOT_FOUND => 5,            // NOT_FOUND
        StatusCode::TOO_MANY_REQUESTS => 8,    // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        s if s.is_server_error() => 13,        // INTERNAL
        _ => 2,                                // UNKNOWN
    }
}

fn is_protobuf_otlp(request: &Request) -> bool {
    OTLP_PATHS.contains(&request.uri().path())
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| super::ingest::media_type_essence(v) == PROTOBUF)
}

/// The human-readable message of one of our error bodies (`{"error": {"message": ...}}`), or
/// the body's text when it is not one.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// Middleware: a protobuf OTLP request's 4xx/5xx reply becomes a protobuf `Status`.
pub async fn protobuf_errors(request: Request, next: Next) -> Response {
    let protobuf = is_protobuf_otlp(&request);
    let response = next.run(request).await;
    let status = response.status();
    if !protobuf || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_ERROR_BYTES)
        .await
        .unwrap_or_default();
    let reply = RpcStatus {
        code: grpc_code(status),
        message: error_message(&body),
    };
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(reply.encode_to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_gives_its_message_and_anything_else_its_text() {
        let ours = br#"{"error": {"code": "unauthorized", "message": "missing bearer token"}}"#;
        assert_eq!(error_message(ours), "missing bearer token");
        assert_eq!(error_message(b" plain words \n"), "plain words");
    }

    #[test]
    fn the_status_decodes_as_google_rpc_status_field_numbers() {
        let bytes = RpcStatus {
            code: grpc_code(StatusCode::UNAUTHORIZED),
            message: "no".into(),
        }
        .encode_to_vec();
        // field 1 varint 16, field 2 length-delimited "no"
        assert_eq!(bytes, vec![0x08, 16, 0x12, 2, b'n', b'o']);
    }

    #[test]
    fn retryable_statuses_map_to_retryable_codes() {
        assert_eq!(grpc_code(StatusCode::TOO_MANY_REQUESTS), 8);
        assert_eq!(grpc_code(StatusCode::SERVICE_UNAVAILABLE), 14);
        assert_eq!(grpc_code(StatusCode::BAD_REQUEST), 3);
    }
}
