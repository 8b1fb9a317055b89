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
    // Log records are counted, not requests.
    assert_eq!(partial["received"], 4);
    assert_eq!(partial["accepted"], 3);
    assert_eq!(
        partial["received"], 4,
        "received counts log records, not export requests: {partial}"
    );
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
        "/v1/traces",
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

/// A canonical event rewritten as the LiteLLM `StandardLoggingPayload` the proxy would log.
fn as_litellm(event: &Value, key_hash: &str) -> Value {
    let start = event["timestamp"].as_i64().unwrap() as f64 / 1000.0;
    let mut messages = vec![];
    if let Some(system) = event["system_prompt"].as_str() {
        messages.push(serde_json::json!({"role": "system", "content": system}));
    }
    messages.push(serde_json::json!({"role": "user", "content": event["prompt"]}));
    serde_json::json!({
        "id": event["request_id"],
        "call_type": "acompletion",
        "startTime": start,
        "endTime": start + 2.5,
        "model": format!("openai/{}", event["model"].as_str().unwrap()),
        "model_group": event["model"],
        "messages": messages,
        "model_parameters": event["params"],
        "prompt_tokens": event["usage"]["prompt_tokens"],
        "completion_tokens": event["usage"]["completion_tokens"],
        "status": "success",
        "end_user": null,
        "requester_ip_address": event["client_ip"],
        "user_agent": event["user_agent"],
        "metadata": {
            "user_api_key_hash": key_hash,
            "user_api_key_team_id": null,
            "user_api_key_org_id": null,
            "user_api_key_user_id": "default_user_id"
        }
    })
}

#[tokio::test]
async fn a_litellm_batch_sent_over_http_shows_up_as_an_account_in_the_review_api() {
    let app = spawn_app().await;
    let key = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b";
    let records: Vec<Value> = harvester_events("ignored", T0, 1_800)
        .iter()
        .map(|event| as_litellm(event, key))
        .collect();
    for chunk in records.chunks(900) {
        let body = chunk.iter().map(|r| format!("{r}\n")).collect::<String>();
        let (status, reply) = post(&app, "/v1/ingest/litellm", body.into_bytes()).await;
        assert_eq!(status, 202, "{reply}");
        assert_eq!(reply["accepted"], 900, "{reply}");
    }
    let mut account = Value::Null;
    for _ in 0..400 {
        let response = app
            .client
            .get(app.url(&format!("/v1/accounts/{key}")))
            .bearer_auth(ANALYST_TOKEN)
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            account = response.json().await.unwrap();
            if account["summary"]["flagged"] == Value::Bool(true) {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        account["summary"]["flagged"],
        Value::Bool(true),
        "{account}"
    );
    assert_eq!(account["summary"]["subject"]["id"], key);
    app.stop().await;
}

/// A protobuf trace export: one GenAI chat span per account, an HTTP span, and a chat span with no
/// account.
fn genai_traces(accounts: &[&str]) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let kv = |key: &str, value: Value| KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    };
    let text = |key: &str, value: &str| kv(key, Value::StringValue(value.to_string()));
    let start = 1_795_871_407_000_000_000u64;
    let chat = |i: usize, account: Option<&str>| Span {
        name: "chat gpt-4o".to_string(),
        start_time_unix_nano: start + i as u64 * 1_000_000_000,
        attributes: [
            vec![
                text("gen_ai.operation.name", "chat"),
                text("gen_ai.request.model", "gpt-4o"),
                text("gen_ai.response.id", &format!("chatcmpl-{i}")),
                kv("gen_ai.usage.input_tokens", Value::IntValue(40)),
            ],
            account.map(|a| text("enduser.id", a)).into_iter().collect(),
        ]
        .concat(),
        ..Span::default()
    };
    let mut spans: Vec<Span> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| chat(i, Some(a)))
        .collect();
    spans.push(Span {
        name: "GET /health".to_string(),
        start_time_unix_nano: start,
        ..Span::default()
    });
    spans.push(chat(99, None));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn otlp_protobuf_traces_answer_in_protobuf_and_count_spans() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/traces"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&genai_traces(&["acct-a", "acct-b", "acct-c"])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let reply = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = reply.partial_success.expect("one span had no account");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("spans[4].attributes"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        app.metric("distillguard_events_received_total{source=\"otlp\"}")
            .await,
        5.0,
        "every span is counted, the HTTP one too"
    );
    assert_eq!(
        app.metric("distillguard_events_accepted_total{source=\"otlp\"}")
            .await,
        3.0
    );
    app.stop().await;
}

/// OTLP/HTTP: a protobuf request's 4xx/5xx reply is a protobuf `google.rpc.Status` with the
/// same message our JSON errors carry; a JSON request keeps the JSON error shape.
#[tokio::test]
async fn otlp_protobuf_errors_answer_a_protobuf_status() {
    use distillguard_server::api::otlp_status::RpcStatus;
    use prost::Message;
    let app = spawn_app().await;
    let cases = [
        ("/v1/logs", "not-a-token", vec![0x0a, 0x00], 401, 16),
        ("/v1/traces", INGEST_TOKEN, vec![0xff, 0xff, 0xff], 400, 3),
        ("/v1/logs", ANALYST_TOKEN, vec![], 403, 7),
    ];
    for (path, token, body, status, code) in cases {
        let response = app
            .client
            .post(app.url(path))
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {token}");
        assert_eq!(response.headers()["content-type"], "application/x-protobuf");
        let reply = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
        assert_eq!(reply.code, code, "{reply:?}");
        assert!(!reply.message.is_empty(), "{reply:?}");
    }
    let (status, json) = post(&app, "/v1/traces", b"[".to_vec()).await;
    assert_eq!(status, 400);
    assert!(json["error"]["message"].is_string(), "{json}");
    app.stop().await;
}

#[tokio::test]
async fn otlp_protobuf_without_rejections_answers_an_empty_response() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use prost::Message;
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/logs"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/x-protobuf")
        .body(ExportLogsServiceRequest::default().encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let reply = ExportLogsServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(reply.partial_success, None);

    // JSON to /v1/traces answers JSON with our counts beside OTLP's.
    let (status, json) = post(&app, "/v1/traces", br#"{"resourceSpans": []}"#.to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(json["received"], 0);

    // A body that is not an export request is a 400; another media type a 415.
    let bad = app
        .client
        .post(app.url("/v1/traces"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let text = app
        .client
        .post(app.url("/v1/logs"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/x-ndjson")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    app.stop().await;
}
