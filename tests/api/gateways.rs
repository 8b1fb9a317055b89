//! Gateway formats over HTTP: real-shaped payloads on their own endpoints.

use serde_json::Value;

use crate::helpers::*;

fn fixture(path: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/distillguard-ingest/tests/fixtures");
    std::fs::read(root.join(path)).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

async fn post(app: &TestApp, route: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(route))
        .bearer_auth(INGEST_TOKEN)
        // LiteLLM labels NDJSON as application/json; so do we, as the captured proxy did.
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn litellm_batches_are_accepted_as_captured_from_the_proxy() {
    let app = spawn_app().await;
    let (status, array) = post(
        &app,
        "/v1/ingest/litellm",
        fixture("litellm/generic_api_json_array.json"),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(array["received"], 6);
    assert_eq!(array["accepted"], 6);
    let (status, redacted) = post(
        &app,
        "/v1/ingest/litellm",
        fixture("litellm/generic_api_ndjson_redacted.ndjson"),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        redacted["accepted"], 3,
        "redacted messages still make events"
    );
    assert_eq!(
        app.metric("distillguard_events_accepted_total{source=\"litellm\"}")
            .await,
        9.0
    );
    app.stop().await;
}

#[tokio::test]
async fn litellm_records_missing_every_account_field_are_rejected_by_index() {
    let app = spawn_app().await;
    let mut records: Vec<Value> =
        serde_json::from_slice(&fixture("litellm/generic_api_json_array.json")).unwrap();
    records[1]["metadata"] = Value::Null;
    let (status, reply) = post(
        &app,
        "/v1/ingest/litellm",
        serde_json::to_vec(&records).unwrap(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(reply["accepted"], 5);
    assert_eq!(reply["rejected"][0]["index"], 1);
    assert_eq!(reply["rejected"][0]["reason"], "missing_field");
    app.stop().await;
}

#[tokio::test]
async fn kong_and_envoy_logs_are_accepted_on_their_endpoints() {
    let app = spawn_app().await;
    let (status, kong) = post(&app, "/v1/ingest/kong", fixture("kong/http_log_batch.json")).await;
    assert_eq!(status, 202);
    assert_eq!(kong["accepted"], 3);
    let (status, envoy) = post(
        &app,
        "/v1/ingest/envoy",
        fixture("envoy/access_log_fluentbit.ndjson"),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(envoy["received"], 4);
    assert_eq!(
        app.metric("distillguard_events_accepted_total{source=\"kong\"}")
            .await,
        3.0
    );
    app.stop().await;
}

#[tokio::test]
async fn otlp_logs_answer_200_and_report_partial_success_per_log_record() {
    let app = spawn_app().await;
    // The fixture carries one log record with an unparsable time among four.
    let (status, partial) = post(&app, "/v1/logs", fixture("otlp/logs_genai.json")).await;
    assert_eq!(status, 200);
    assert_eq!(partial["accepted"], 3);
    assert_eq!(partial["partialSuccess"]["rejectedLogRecords"], 1);
    assert_eq!(
        partial["rejected"][0]["field"],
        "resourceLogs[1].scopeLogs[0].logRecords[1].timeUnixNano"
    );

    let mut request: Value = serde_json::from_slice(&fixture("otlp/logs_genai.json")).unwrap();
    request["resourceLogs"][1]["scopeLogs"][0]["logRecords"][1]["timeUnixNano"] =
        Value::from("1795871407352000000");
    let (status, whole) = post(&app, "/v1/logs", serde_json::to_vec(&request).unwrap()).await;
    assert_eq!(status, 200);
    assert!(whole.get("partialSuccess").is_none(), "{whole}");
    // Records already accepted from the first request come back as duplicates, not twice.
    assert_eq!(
        whole["accepted"].as_u64().unwrap() + whole["duplicates"].as_u64().unwrap(),
        4,
        "{whole}"
    );
    assert!(whole["duplicates"].as_u64().unwrap() >= 1, "{whole}");
    app.stop().await;
}

#[tokio::test]
async fn gateway_endpoints_require_the_ingest_role() {
    let app = spawn_app().await;
    for route in [
        "/v1/ingest/litellm",
        "/v1/ingest/kong",
        "/v1/ingest/envoy",
        "/v1/logs",
    ] {
        let response = app
            .client
            .post(app.url(route))
            .bearer_auth(ANALYST_TOKEN)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{route}");
    }
    app.stop().await;
}
