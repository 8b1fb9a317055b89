use distillguard_ingest::kong::{KongAccountField, KongDecoder};
use distillguard_ingest::{decode_body, RejectReason};

use crate::fixture;

#[test]
fn a_batched_http_log_array_decodes_every_record() {
    let outcome = decode_body(
        &KongDecoder::default(),
        &fixture("kong/http_log_batch.json"),
    )
    .unwrap();
    assert_eq!(outcome.records, 3);
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    let [acme, globex, limited] = &outcome.events[..] else {
        panic!("expected three events");
    };

    assert_eq!(
        acme.account_id.as_str(),
        "2b6f0cc9-1e4a-4e0d-9a3b-6d3c2f1e0a9b"
    );
    assert_eq!(
        acme.api_key_id.as_deref(),
        Some("9f1d2c3b-7a6e-4d5c-8b9a-0e1f2a3b4c5d")
    );
    assert_eq!(acme.model.as_str(), "gpt-4o");
    assert_eq!(acme.timestamp.to_rfc3339(), "2026-11-28T13:10:07.352Z");
    assert_eq!(
        acme.request_id.as_deref(),
        Some("4c1f8a0e6b2d3f9a1e7c5b3d9f2a4e6c")
    );
    assert_eq!(acme.client_ip.unwrap().to_string(), "198.51.100.23");
    assert_eq!(acme.user_agent.as_deref(), Some("OpenAI/Python 1.51.0"));
    assert_eq!(
        acme.endpoint.as_deref(),
        Some("/openai/v1/chat/completions")
    );
    assert_eq!(acme.status, Some(200));
    assert_eq!(acme.latency_ms, Some(835));
    assert_eq!(acme.usage.prompt_tokens, Some(48));
    assert_eq!(acme.usage.completion_tokens, Some(1210));
    // From the logged request payload.
    assert_eq!(
        acme.prompt.as_deref(),
        Some("Derive the quadratic formula.")
    );
    assert_eq!(
        acme.system_prompt.as_deref(),
        Some("You are a meticulous teacher. Show every step.")
    );
    assert_eq!(acme.messages, Some(2));
    assert_eq!(acme.params.n, Some(3));
    assert_eq!(acme.params.temperature, Some(0.2));
    assert_eq!(acme.params.logprobs, Some(true));
    assert_eq!(acme.params.top_logprobs, Some(10));
    assert_eq!(acme.params.max_tokens, Some(4096));

    // The documented singular spelling of the token fields.
    assert_eq!(globex.usage.prompt_tokens, Some(120));
    assert_eq!(globex.usage.completion_tokens, Some(640));
    assert_eq!(globex.model.as_str(), "claude-3-5-sonnet");
    assert_eq!(globex.client_ip.unwrap().to_string(), "2001:db8::17");
    assert_eq!(globex.prompt, None);
    assert_eq!(globex.messages, None);

    // Numbers as strings, another AI namespace, the Kong request id header.
    assert_eq!(limited.status, Some(429));
    assert_eq!(limited.latency_ms, Some(101));
    assert_eq!(limited.timestamp.epoch_ms(), 1_795_871_409_000);
    assert_eq!(limited.model.as_str(), "gpt-4o-mini");
    assert_eq!(limited.usage.completion_tokens, Some(0));
    assert_eq!(
        limited.request_id.as_deref(),
        Some("f0e1d2c3b4a59687a1b2c3d4e5f60718")
    );
    assert_eq!(limited.account_id, acme.account_id);
    assert_eq!(limited.api_key_id, None);
}

#[test]
fn the_account_field_is_configurable() {
    let by_custom_id = KongDecoder {
        account_fields: vec![
            KongAccountField::ConsumerCustomId,
            KongAccountField::ConsumerUsername,
        ],
    };
    let outcome = decode_body(&by_custom_id, &fixture("kong/http_log_batch.json")).unwrap();
    let accounts: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.account_id.as_str())
        .collect();
    assert_eq!(accounts, ["cust-1042", "cust-2210", "acme-research"]);
}

#[test]
fn a_single_object_without_consumer_falls_back_to_the_credential() {
    let outcome = decode_body(
        &KongDecoder::default(),
        &fixture("kong/http_log_single.json"),
    )
    .unwrap();
    assert_eq!(outcome.records, 1);
    let event = &outcome.events[0];
    assert_eq!(
        event.account_id.as_str(),
        "3e2d1c0b-9a8f-4e7d-6c5b-4a3f2e1d0c9b"
    );
    assert_eq!(event.usage.completion_tokens, Some(301));

    let by_username = KongDecoder {
        account_fields: vec![KongAccountField::ConsumerUsername],
    };
    let outcome = decode_body(&by_username, &fixture("kong/http_log_single.json")).unwrap();
    assert!(outcome.events.is_empty());
    assert_eq!(outcome.rejected[0].error.reason, RejectReason::MissingField);
    assert_eq!(
        outcome.rejected[0].error.field.as_deref(),
        Some("consumer.username")
    );
}

#[test]
fn ndjson_from_a_log_shipper_reports_bad_lines_by_line_number() {
    let body = concat!(
        r#"{"started_at": 1795871407352, "consumer": {"id": "c-1"}, "ai": {"proxy": {"meta": {"request_model": "gpt-4o"}}}}"#,
        "\n",
        r#"{"started_at": 1795871407353, "consumer": {"id": "c-1"}, "ai": {"proxy": {"meta": {"request_model": "gpt-4o"}, "usage": {"prompt_tokens": -1}}}}"#,
        "\n",
        r#"{"started_at": 1795871407354, "consumer": {"id": "c-2"}, "ai": {"proxy": {"meta": {"request_model": "gpt-4o"}}}, "new_kong_field": {"x": [1]}}"#,
        "\n"
    );
    let outcome = decode_body(&KongDecoder::default(), body.as_bytes()).unwrap();
    assert_eq!(outcome.events.len(), 2);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].line, Some(2));
    assert_eq!(
        outcome.rejected[0].error.field.as_deref(),
        Some("ai.proxy.usage.prompt_tokens")
    );
}
