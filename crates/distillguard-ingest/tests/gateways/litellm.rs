use distillguard_ingest::litellm::{LitellmAccountField, LitellmDecoder};
use distillguard_ingest::{decode_body, RejectReason};

use crate::fixture;

#[test]
fn the_captured_json_array_batch_decodes_into_six_events() {
    let outcome = decode_body(
        &LitellmDecoder::default(),
        &fixture("litellm/generic_api_json_array.json"),
    )
    .unwrap();
    assert_eq!(outcome.records, 6);
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    let events = &outcome.events;

    let plain = &events[0];
    assert_eq!(plain.account_id.as_str(), "litellm_proxy_master_key");
    assert_eq!(
        plain.api_key_id.as_deref(),
        Some("litellm_proxy_master_key")
    );
    assert_eq!(plain.model.as_str(), "gpt-4o");
    assert_eq!(
        plain.request_id.as_deref(),
        Some("chatcmpl-mock1795871407375")
    );
    assert_eq!(plain.timestamp.to_rfc3339(), "2026-11-28T13:10:07.353Z");
    assert_eq!(plain.latency_ms, Some(29));
    assert_eq!(
        plain.prompt.as_deref(),
        Some("What is the capital of Peru?")
    );
    assert_eq!(plain.system_prompt, None);
    assert_eq!(plain.messages, Some(1));
    assert_eq!(plain.status, Some(200));
    assert_eq!(plain.client_ip.unwrap().to_string(), "127.0.0.1");
    assert_eq!(plain.user_agent.as_deref(), Some("OpenAI/Python 1.51.0"));
    assert_eq!(plain.endpoint.as_deref(), Some("/v1/chat/completions"));
    assert_eq!(plain.usage.prompt_tokens, Some(31));
    assert_eq!(plain.usage.completion_tokens, Some(17));
    assert_eq!(plain.usage.reasoning_tokens, Some(0));
    assert_eq!(plain.usage.cached_tokens, Some(0));
    assert_eq!(plain.params.stream, Some(false));
    assert_eq!(
        plain.metadata.get("litellm_call_id").map(String::as_str),
        Some("71dceeff-c43e-4c5e-9d69-ccd3ffcd6120")
    );

    let tutored = &events[1];
    assert_eq!(
        tutored.system_prompt.as_deref(),
        Some("You are an expert tutor. Always show complete step-by-step reasoning.")
    );
    assert_eq!(
        tutored.prompt.as_deref(),
        Some("Explain why the sky is blue. Think step by step.")
    );
    assert_eq!(tutored.messages, Some(2));
    assert_eq!(tutored.end_user.as_deref(), Some("enduser-77"));
    assert_eq!(tutored.params.temperature, Some(0.7));
    assert_eq!(tutored.params.max_tokens, Some(4096));

    let sampled = &events[2];
    assert_eq!(sampled.model.as_str(), "reasoner-1");
    assert_eq!(sampled.params.n, Some(4));
    assert_eq!(sampled.params.logprobs, Some(true));
    assert_eq!(sampled.params.top_logprobs, Some(20));
    assert_eq!(sampled.params.seed, Some(7));
    assert_eq!(sampled.params.temperature, Some(1.0));

    let chat = &events[3];
    assert_eq!(chat.client_ip.unwrap().to_string(), "203.0.113.50");
    assert_eq!(chat.messages, Some(3));
    assert_eq!(
        chat.prompt.as_deref(),
        Some("Tell me a joke about databases.")
    );

    let failed = &events[4];
    assert_eq!(failed.status, Some(400));
    assert_eq!(failed.model.as_str(), "no-such-model");
    assert_eq!(failed.usage.completion_tokens, Some(0));
    assert_eq!(failed.usage.reasoning_tokens, None);

    let parts = &events[5];
    assert_eq!(parts.prompt.as_deref(), Some("Describe this in one line."));
}

#[test]
fn redacted_ndjson_keeps_everything_but_the_content() {
    let outcome = decode_body(
        &LitellmDecoder::default(),
        &fixture("litellm/generic_api_ndjson_redacted.ndjson"),
    )
    .unwrap();
    assert_eq!(outcome.records, 3);
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    for (i, event) in outcome.events.iter().enumerate() {
        assert_eq!(event.prompt, None);
        assert_eq!(event.system_prompt, None);
        assert_eq!(event.messages, Some(1));
        assert_eq!(event.end_user.as_deref(), Some(format!("u{i}").as_str()));
        assert_eq!(event.params.max_tokens, Some(2048));
        assert_eq!(event.usage.prompt_tokens, Some(31));
        assert_eq!(event.usage.completion_tokens, Some(17));
        assert_eq!(event.user_agent.as_deref(), Some("python-httpx/0.27.0"));
        assert_eq!(event.status, Some(200));
        assert_eq!(event.model.as_str(), "gpt-4o");
    }
    assert_eq!(outcome.events[0].timestamp.epoch_ms(), 1_795_871_453_028);
    assert_eq!(outcome.events[0].latency_ms, Some(31));
}

#[test]
fn end_users_can_be_the_account() {
    let decoder = LitellmDecoder {
        account_fields: vec![LitellmAccountField::EndUser],
        ..LitellmDecoder::default()
    };
    let outcome = decode_body(
        &decoder,
        &fixture("litellm/generic_api_ndjson_redacted.ndjson"),
    )
    .unwrap();
    let accounts: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.account_id.as_str())
        .collect();
    assert_eq!(accounts, ["u0", "u1", "u2"]);

    // The array batch has one call with an end user; the others are refused by index.
    let outcome = decode_body(&decoder, &fixture("litellm/generic_api_json_array.json")).unwrap();
    assert_eq!(outcome.events.len(), 1);
    let refused: Vec<usize> = outcome.rejected.iter().map(|r| r.index).collect();
    assert_eq!(refused, [0, 2, 3, 4, 5]);
    assert!(outcome
        .rejected
        .iter()
        .all(|r| r.error.reason == RejectReason::MissingField
            && r.error.field.as_deref() == Some("end_user")));
}

#[test]
fn a_batch_with_a_broken_record_keeps_the_good_ones() {
    let body = br#"[
        {"startTime": 1795871407.1, "model_group": "gpt-4o", "metadata": {"user_api_key_hash": "k1"},
         "some_future_field": {"nested": [1, 2, 3]}},
        {"startTime": "yesterday", "model_group": "gpt-4o", "metadata": {"user_api_key_hash": "k1"}},
        {"startTime": 1795871407.2, "metadata": {"user_api_key_hash": "k2"}},
        {"startTime": 1795871407.3, "model": "openai/gpt-4o", "metadata": {"user_api_key_team_id": "t-1"}}
    ]"#;
    let outcome = decode_body(&LitellmDecoder::default(), body).unwrap();
    assert_eq!(outcome.records, 4);
    let accounts: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.account_id.as_str())
        .collect();
    assert_eq!(accounts, ["k1", "t-1"]);
    let refused: Vec<(usize, Option<&str>)> = outcome
        .rejected
        .iter()
        .map(|r| (r.index, r.error.field.as_deref()))
        .collect();
    assert_eq!(refused, [(1, Some("startTime")), (2, Some("model"))]);
}
