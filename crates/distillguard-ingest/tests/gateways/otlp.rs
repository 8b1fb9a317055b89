use distillguard_ingest::otlp::OtlpDecoder;
use distillguard_ingest::{decode_body, RejectReason};

use crate::fixture;

#[test]
fn one_export_request_yields_an_event_per_good_log_record() {
    let decoder = OtlpDecoder {
        prompt_attribute: Some("app.prompt".to_string()),
        ..OtlpDecoder::default()
    };
    let outcome = decode_body(&decoder, &fixture("otlp/logs_genai.json")).unwrap();
    assert_eq!(outcome.records, 1);
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
