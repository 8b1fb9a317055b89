use distillguard_ingest::otlp::OtlpDecoder;
use distillguard_ingest::{decode_body, Encoding, FrameError, RejectReason, Signal};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::fixture;

#[test]
fn one_export_request_yields_an_event_per_good_log_record() {
    let decoder = OtlpDecoder {
        prompt_attribute: Some("app.prompt".to_string()),
        ..OtlpDecoder::default()
    };
    let outcome = decode_body(&decoder, &fixture("otlp/logs_genai.json")).unwrap();
    // Log records are counted, not export requests.
    assert_eq!(outcome.records, 4);
    assert_eq!(outcome.ignored, 0);
    assert_eq!(outcome.events.len(), 3);
    let [acme, globex, initech] = &outcome.events[..] else {
        panic!("expected three events");
    };

    // The account comes from the resource for every record below it.
    assert_eq!(acme.account_id.as_str(), "tenant-acme");
    assert_eq!(acme.model.as_str(), "gpt-4o");
    assert_eq!(acme.timestamp.to_rfc3339(), "2026-11-28T13:10:07.352Z");
    assert_eq!(acme.request_id.as_deref(), Some("chatcmpl-Ab12Cd34"));
    assert_eq!(acme.params.temperature, Some(0.2));
    assert_eq!(acme.params.max_tokens, Some(4096));
    assert_eq!(acme.params.n, Some(3));
    assert_eq!(acme.params.seed, Some(42));
    assert_eq!(acme.usage.prompt_tokens, Some(48));
    assert_eq!(acme.usage.completion_tokens, Some(1210));
    assert_eq!(acme.client_ip.unwrap().to_string(), "203.0.113.41");
    assert_eq!(acme.user_agent.as_deref(), Some("OpenAI/Python 1.51.0"));
    assert_eq!(acme.status, Some(200));
    assert_eq!(
        acme.prompt.as_deref(),
        Some("Derive the quadratic formula.")
    );

    assert_eq!(globex.account_id.as_str(), "tenant-globex");
    assert_eq!(globex.usage.prompt_tokens, Some(120));
    assert_eq!(globex.params.temperature, Some(1.0));
    assert_eq!(globex.prompt, None);

    assert_eq!(initech.account_id.as_str(), "tenant-initech");
    assert_eq!(initech.timestamp.epoch_ms(), 1_795_871_409_000);
    assert_eq!(initech.usage.prompt_tokens, Some(12));

    assert_eq!(outcome.rejected.len(), 1);
    let rejected = &outcome.rejected[0];
    assert_eq!(rejected.index, 0);
    assert_eq!(rejected.error.reason, RejectReason::InvalidField);
    assert_eq!(
        rejected.error.field.as_deref(),
        Some("resourceLogs[1].scopeLogs[0].logRecords[1].timeUnixNano")
    );
}

#[test]
fn the_account_attribute_is_configurable() {
    let decoder: OtlpDecoder =
        serde_json::from_str(r#"{"account_attributes": ["service.name"]}"#).unwrap();
    let outcome = decode_body(&decoder, &fixture("otlp/logs_genai.json")).unwrap();
    let accounts: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.account_id.as_str())
        .collect();
    assert_eq!(
        accounts,
        ["tenant-gateway-acme", "shared-chat-api", "shared-chat-api"]
    );
}

#[test]
fn records_without_an_account_are_refused_each_by_path() {
    let decoder: OtlpDecoder =
        serde_json::from_str(r#"{"account_attributes": ["tenant.id"]}"#).unwrap();
    let outcome = decode_body(&decoder, &fixture("otlp/logs_genai.json")).unwrap();
    assert!(outcome.events.is_empty());
    let fields: Vec<&str> = outcome
        .rejected
        .iter()
        .map(|r| r.error.field.as_deref().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "resourceLogs[0].scopeLogs[0].logRecords[0].attributes[\"tenant.id\"]",
            "resourceLogs[1].scopeLogs[0].logRecords[0].attributes[\"tenant.id\"]",
            "resourceLogs[1].scopeLogs[0].logRecords[1].timeUnixNano",
            "resourceLogs[1].scopeLogs[0].logRecords[2].attributes[\"tenant.id\"]",
        ]
    );
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.to_string()))
}

fn resource(account: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            text("service.name", "chat-api"),
            text("enduser.id", account),
        ],
        ..Resource::default()
    })
}

const T0: u64 = 1_795_871_407_352_000_000;

/// A chat span as the OpenAI instrumentation records it (conventions v1.37).
fn chat_span(start: u64, attributes: Vec<KeyValue>) -> Span {
    let mut all = vec![
        text("gen_ai.operation.name", "chat"),
        text("gen_ai.provider.name", "openai"),
        text("gen_ai.request.model", "gpt-4o"),
        kv("gen_ai.usage.input_tokens", Value::IntValue(48)),
        kv("gen_ai.usage.output_tokens", Value::IntValue(1210)),
        kv("gen_ai.request.temperature", Value::DoubleValue(0.2)),
    ];
    all.extend(attributes);
    Span {
        name: "chat gpt-4o".to_string(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 2_000_000_000,
        attributes: all,
        ..Span::default()
    }
}

fn traces(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("tenant-acme"),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

#[test]
fn genai_spans_are_events_and_other_spans_are_counted_as_ignored() {
    let http = Span {
        name: "POST /v1/chat/completions".to_string(),
        start_time_unix_nano: T0,
        attributes: vec![text("http.request.method", "POST")],
        ..Span::default()
    };
    let agent = Span {
        name: "invoke_agent planner".to_string(),
        start_time_unix_nano: T0,
        attributes: vec![
            text("gen_ai.operation.name", "invoke_agent"),
            text("gen_ai.request.model", "gpt-4o"),
        ],
        ..Span::default()
    };
    let chat = chat_span(
        T0,
        vec![
            text("gen_ai.response.id", "chatcmpl-1"),
            text(
                "gen_ai.input.messages",
                r#"[{"role": "user", "parts": [{"type": "text", "content": "Derive it."}]}]"#,
            ),
        ],
    );
    let body = traces(vec![http, agent, chat]).encode_to_vec();
    let outcome = OtlpDecoder::default()
        .decode_export(Signal::Traces, Encoding::Protobuf, &body)
        .unwrap();
    assert_eq!(outcome.records, 3);
    assert_eq!(outcome.ignored, 2);
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    let [event] = &outcome.events[..] else {
        panic!("expected one event: {:?}", outcome.events);
    };
    assert_eq!(event.account_id.as_str(), "tenant-acme");
    assert_eq!(event.model.as_str(), "gpt-4o");
    // A span is timed by its start, when the request was made.
    assert_eq!(event.timestamp.to_rfc3339(), "2026-11-28T13:10:07.352Z");
    assert_eq!(event.usage.prompt_tokens, Some(48));
    assert_eq!(event.usage.completion_tokens, Some(1210));
    assert_eq!(event.params.temperature, Some(0.2));
    assert_eq!(event.request_id.as_deref(), Some("chatcmpl-1"));
    assert_eq!(event.prompt.as_deref(), Some("Derive it."));
}

#[test]
fn span_events_carry_the_prompt_in_each_convention() {
    let event = |name: &str, attributes: Vec<KeyValue>| span::Event {
        name: name.to_string(),
        time_unix_nano: T0,
        attributes,
        ..span::Event::default()
    };
    let conventions = [
        event(
            "gen_ai.client.inference.operation.details",
            vec![text(
                "gen_ai.input.messages",
                r#"[{"role": "user", "parts": [{"type": "text", "content": "v1.37"}]}]"#,
            )],
        ),
        event("gen_ai.user.message", vec![text("content", "v1.36")]),
        event(
            "gen_ai.content.prompt",
            vec![text(
                "gen_ai.prompt",
                r#"[{"role": "user", "content": "v1.27"}]"#,
            )],
        ),
    ];
    for (convention, expected) in conventions.into_iter().zip(["v1.37", "v1.36", "v1.27"]) {
        let mut chat = chat_span(T0, vec![]);
        chat.events = vec![event("gen_ai.choice", vec![]), convention];
        let body = traces(vec![chat]).encode_to_vec();
        let outcome = OtlpDecoder::default()
            .decode_export(Signal::Traces, Encoding::Protobuf, &body)
            .unwrap();
        assert_eq!(outcome.events[0].prompt.as_deref(), Some(expected));
    }
}

#[test]
fn a_bad_span_is_refused_by_its_path_and_the_others_kept() {
    let bad = chat_span(T0, vec![text("gen_ai.usage.input_tokens", "many")]);
    let body = traces(vec![chat_span(T0, vec![]), bad]).encode_to_vec();
    let outcome = OtlpDecoder::default()
        .decode_export(Signal::Traces, Encoding::Protobuf, &body)
        .unwrap();
    assert_eq!((outcome.records, outcome.events.len()), (2, 1));
    assert_eq!(
        outcome.rejected[0].error.field.as_deref(),
        Some("resourceSpans[0].scopeSpans[0].spans[1].attributes[\"gen_ai.usage.input_tokens\"]")
    );
}

#[test]
fn json_traces_read_the_same_as_protobuf() {
    let json = format!(
        r#"{{"resourceSpans": [{{"resource": {{"attributes": [
            {{"key": "enduser.id", "value": {{"stringValue": "tenant-acme"}}}}]}},
          "scopeSpans": [{{"spans": [{{"traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174", "name": "chat gpt-4o", "kind": 3,
            "startTimeUnixNano": "{T0}", "endTimeUnixNano": "{T0}",
            "attributes": [{{"key": "gen_ai.request.model", "value": {{"stringValue": "gpt-4o"}}}},
              {{"key": "gen_ai.usage.input_tokens", "value": {{"intValue": "48"}}}}],
            "status": {{}}}}]}}]}}]}}"#
    );
    let outcome = OtlpDecoder::default()
        .decode_export(Signal::Traces, Encoding::Json, json.as_bytes())
        .unwrap();
    assert_eq!(outcome.records, 1);
    assert_eq!(outcome.events[0].usage.prompt_tokens, Some(48));
    assert_eq!(outcome.events[0].timestamp.epoch_ms(), 1_795_871_407_352);
}

#[test]
fn protobuf_logs_read_like_json_logs_and_message_events_are_ignored() {
    let call = LogRecord {
        time_unix_nano: T0,
        event_name: "gen_ai.client.inference.operation.details".to_string(),
        attributes: vec![
            text("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.usage.output_tokens", Value::IntValue(7)),
        ],
        ..LogRecord::default()
    };
    let message = LogRecord {
        time_unix_nano: T0,
        event_name: "gen_ai.user.message".to_string(),
        body: Some(AnyValue {
            value: Some(Value::StringValue("hello".to_string())),
        }),
        ..LogRecord::default()
    };
    // Before `event_name`, SDKs named the event in an attribute.
    let old_message = LogRecord {
        time_unix_nano: T0,
        attributes: vec![text("event.name", "gen_ai.choice")],
        ..LogRecord::default()
    };
    let unset_time = LogRecord {
        attributes: vec![text("gen_ai.request.model", "gpt-4o")],
        ..LogRecord::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("tenant-acme"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![call, message, old_message, unset_time],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let outcome = OtlpDecoder::default()
        .decode_export(Signal::Logs, Encoding::Protobuf, &request.encode_to_vec())
        .unwrap();
    assert_eq!(outcome.records, 4);
    assert_eq!(outcome.ignored, 2);
    assert_eq!(outcome.events.len(), 1);
    assert_eq!(outcome.events[0].usage.completion_tokens, Some(7));
    assert_eq!(outcome.rejected[0].error.reason, RejectReason::MissingField);
    assert_eq!(
        outcome.rejected[0].error.field.as_deref(),
        Some("resourceLogs[0].scopeLogs[0].logRecords[3].timeUnixNano")
    );
}

#[test]
fn a_body_that_is_not_an_export_request_is_refused_whole() {
    let decoder = OtlpDecoder::default();
    for (signal, encoding, body) in [
        (Signal::Logs, Encoding::Protobuf, &b"\xff\xff\xff"[..]),
        (
            Signal::Traces,
            Encoding::Protobuf,
            b"{\"resourceSpans\": []}",
        ),
        (Signal::Traces, Encoding::Json, b"{\"resourceSpans\": "),
    ] {
        let error = decoder.decode_export(signal, encoding, body).unwrap_err();
        assert!(matches!(error, FrameError::BadMessage { .. }), "{error}");
    }
    // JSON of another shape is one rejected record, as JSON logs have it.
    let outcome = decoder
        .decode_export(Signal::Traces, Encoding::Json, b"{\"resourceSpans\": 3}")
        .unwrap();
    assert_eq!((outcome.records, outcome.rejected.len()), (1, 1));
    assert_eq!(
        outcome.rejected[0].error.reason,
        RejectReason::MalformedJson
    );
    // An empty protobuf message is a valid, empty export.
    let outcome = decoder
        .decode_export(Signal::Traces, Encoding::Protobuf, b"")
        .unwrap();
    assert_eq!(outcome.records, 0);
}
