//! Every error leaves in the JSON error shape, whoever produced it: unknown routes, methods,
//! extractor rejections, the request-target and header limits.

use serde_json::Value;

use crate::helpers::*;

/// Status, and the error body parsed as the JSON error shape (panics when it is not).
async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content-type {content_type:?}, body {text:?}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned();
    assert!(!message.is_empty(), "{status}: empty message");
    (status, code, message)
}

#[tokio::test]
async fn errors_no_handler_wrote_come_in_the_json_error_shape() {
    let app = spawn_app().await;
    let client = &app.client;

    let (status, code, message) = error_of(
        client
            .get(app.url("/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert!(message.contains("/v1/nothing-here"), "{message}");

    let response = client.delete(app.url("/healthz")).send().await.unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (405, "method_not_allowed"),
        "{message}"
    );
    assert!(message.contains("DELETE"), "{message}");

    let long = format!("/v1/accounts?assignee={}", "a".repeat(20_000));
    let (status, code, _) = error_of(
        client
            .get(app.url(&long))
            .bearer_auth(ANALYST_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (414, "uri_too_long"));

    let (status, code, _) = error_of(
        client
            .get(app.url("/healthz"))
            .header("x-padding", "p".repeat(80 * 1024))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (431, "headers_too_large"));

    let (status, code, message) = error_of(
        client
            .get(app.url("/v1/accounts/%ff"))
            .bearer_auth(ANALYST_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "bad_request"), "{message}");

    let (status, code, message) = error_of(
        client
            .post(app.url("/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", "br")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    assert_eq!(
        message, "unsupported content-encoding \"br\"; send gzip or no encoding",
        "the message names the encoding once, plainly"
    );
    app.stop().await;
}

/// `curl -d '{...}'` sends `application/x-www-form-urlencoded`: taken like a missing type, so
/// the first command a user types works (docs/api.md says so).
#[tokio::test]
async fn a_body_posted_the_way_curl_dash_d_posts_it_is_accepted() {
    let app = spawn_app().await;
    let body = event("curl-user", T0, "curl-1").to_string();
    let response = app
        .post_events(body.clone(), "application/x-www-form-urlencoded")
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        (reply["received"].as_u64(), reply["accepted"].as_u64()),
        (Some(1), Some(1))
    );

    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(INGEST_TOKEN)
        .body(event("curl-user", T0 + 1, "curl-2").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "no Content-Type at all");
    app.stop().await;
}
