use distillguard_ingest::envoy::EnvoyDecoder;
use distillguard_ingest::{decode_body, RejectReason};

use crate::fixture;

#[test]
fn fluent_bit_json_lines_decode_with_string_values() {
    let outcome = decode_body(
        &EnvoyDecoder::default(),
        &fixture("envoy/access_log_fluentbit.ndjson"),
    )
    .unwrap();
    assert_eq!(outcome.records, 4);
    assert_eq!(outcome.events.len(), 3);
    let [ok, limited, gone] = &outcome.events[..] else {
        panic!("expected three events");
    };

    assert_eq!(ok.account_id.as_str(), "tenant-acme");
    assert_eq!(ok.model.as_str(), "gpt-4o");
    assert_eq!(ok.timestamp.to_rfc3339(), "2026-11-28T13:10:07.352Z");
    assert_eq!(
        ok.request_id.as_deref(),
        Some("6a0f2a4e-9c1b-4e57-b8f3-1d2c3b4a5e6f")
    );
    assert_eq!(ok.client_ip.unwrap().to_string(), "203.0.113.41");
    assert_eq!(ok.user_agent.as_deref(), Some("OpenAI/Python 1.51.0"));
    assert_eq!(ok.endpoint.as_deref(), Some("/v1/chat/completions"));
    assert_eq!(ok.status, Some(200));
    assert_eq!(ok.latency_ms, Some(845));
    assert_eq!(ok.usage.prompt_tokens, Some(48));
    assert_eq!(ok.usage.completion_tokens, Some(1210));
    assert_eq!(ok.prompt, None);

    assert_eq!(limited.status, Some(429));
    assert_eq!(limited.client_ip.unwrap().to_string(), "2001:db8::17");
    assert_eq!(limited.endpoint.as_deref(), Some("/v1/chat/completions"));
    assert_eq!(limited.usage.completion_tokens, Some(0));

    // Client went away: no status, no tokens, IP from the downstream address.
    assert_eq!(gone.status, None);
    assert_eq!(gone.usage.prompt_tokens, None);
    assert_eq!(gone.client_ip.unwrap().to_string(), "198.51.100.61");
    assert_eq!(gone.latency_ms, Some(20001));

    let rejected = &outcome.rejected[0];
    assert_eq!((rejected.index, rejected.line), (3, Some(4)));
    assert_eq!(rejected.error.reason, RejectReason::MissingField);
    assert_eq!(rejected.error.field.as_deref(), Some("x-user-id"));
}

#[test]
fn a_vector_array_decodes_every_element() {
    let outcome = decode_body(
        &EnvoyDecoder::default(),
        &fixture("envoy/access_log_vector.json"),
    )
    .unwrap();
    assert_eq!(outcome.records, 2);
    assert!(outcome.rejected.is_empty());
    assert!(outcome
        .events
        .iter()
        .all(|e| e.account_id.as_str() == "tenant-initech"
            && e.usage.completion_tokens == Some(2048)));
    assert_eq!(
        outcome.events[1].timestamp.epoch_ms() - outcome.events[0].timestamp.epoch_ms(),
        250
    );
}
