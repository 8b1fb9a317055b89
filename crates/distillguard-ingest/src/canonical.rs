//! The canonical format (`docs/event-format.md`): our own JSON shape of [`ApiEvent`].
//!
//! Decoding takes a fast typed path; only when that fails does it re-read the record as a generic
//! value to name the offending field, so good records pay nothing for good error messages.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;
use distillguard_core::event::{parse_client_ip, AccountId, ApiEvent, ModelName, Params, Usage};
use distillguard_core::time::EventTime;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::{Decoder, RecordError, Source};

/// Decodes canonical records.
#[derive(Debug, Default, Clone, Copy)]
pub struct CanonicalDecoder;

impl Decoder for CanonicalDecoder {
    fn source(&self) -> Source {
        Source::Canonical
    }

    fn decode(&self, json: &str, out: &mut Vec<ApiEvent>) -> Result<(), RecordError> {
        match serde_json::from_str::<WireEvent<'_>>(json) {
            Ok(wire) => out.push(wire.into_event()?),
            Err(_) => return Err(diagnose(json)),
        }
        Ok(())
    }
}

/// A timestamp as sent: RFC 3339 text or integer epoch milliseconds.
#[derive(Debug)]
pub enum WireTime<'a> {
    Millis(i64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for WireTime<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = WireTime<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer epoch milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireTime::Millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(WireTime::Millis)
                    .map_err(|_| E::custom("epoch milliseconds out of range"))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(TimeVisitor)
    }
}

impl WireTime<'_> {
    pub fn parse(&self, field: &str) -> Result<EventTime, RecordError> {
        match self {
            WireTime::Millis(ms) => EventTime::from_epoch_ms(*ms),
            WireTime::Text(text) => EventTime::parse_rfc3339(text),
        }
        .map_err(|e| RecordError::invalid(field, e.to_string()))
    }
}

#[derive(Debug, Deserialize, Default)]
struct WireUsage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    reasoning_tokens: Option<u32>,
    cached_tokens: Option<u32>,
}

/// The canonical record as it arrives; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    timestamp: Option<WireTime<'a>>,
    #[serde(borrow)]
    account_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    request_id: Option<String>,
    api_key_id: Option<CompactString>,
    end_user: Option<CompactString>,
    #[serde(borrow)]
    client_ip: Option<Cow<'a, str>>,
    user_agent: Option<CompactString>,
    endpoint: Option<CompactString>,
    prompt: Option<String>,
    system_prompt: Option<String>,
    messages: Option<u32>,
    params: Option<WireParamsLenient>,
    usage: Option<WireUsage>,
    status: Option<u16>,
    latency_ms: Option<u64>,
    payment_fingerprint: Option<CompactString>,
    #[serde(borrow)]
    account_created_at: Option<WireTime<'a>>,
    metadata: Option<BTreeMap<String, String>>,
}

/// `params` with unknown keys tolerated (providers add sampling knobs all the time).
#[derive(Debug, Deserialize, Default)]
struct WireParamsLenient {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    n: Option<u32>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    seed: Option<i64>,
    stream: Option<bool>,
}

impl WireEvent<'_> {
    fn into_event(self) -> Result<ApiEvent, RecordError> {
        let timestamp = self
            .timestamp
            .ok_or_else(|| RecordError::missing("timestamp"))?
            .parse("timestamp")?;
        let account_id = AccountId::parse(
            self.account_id
                .ok_or_else(|| RecordError::missing("account_id"))?,
        )
        .map_err(|e| RecordError::invalid("account_id", e.to_string()))?;
        let model = ModelName::parse(self.model.ok_or_else(|| RecordError::missing("model"))?)
            .map_err(|e| RecordError::invalid("model", e.to_string()))?;
        let client_ip = self
            .client_ip
            .map(|ip| parse_client_ip(&ip))
            .transpose()
            .map_err(|e| RecordError::invalid("client_ip", e.to_string()))?;
        let account_created_at = self
            .account_created_at
            .map(|t| t.parse("account_created_at"))
            .transpose()?;
        let params = self.params.unwrap_or_default();
        let usage = self.usage.unwrap_or_default();
        let mut event = ApiEvent::new(timestamp, account_id, model);
        event.request_id = self.request_id;
        event.api_key_id = self.api_key_id;
        event.end_user = self.end_user;
        event.client_ip = client_ip;
        event.user_agent = self.user_agent;
        event.endpoint = self.endpoint;
        event.prompt = self.prompt;
        event.system_prompt = self.system_prompt;
        event.messages = self.messages;
        event.params = Params {
            temperature: params.temperature,
            top_p: params.top_p,
            max_tokens: params.max_tokens,
            n: params.n,
            logprobs: params.logprobs,
            top_logprobs: params.top_logprobs,
            seed: params.seed,
            stream: params.stream,
        };
        event.usage = Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            cached_tokens: usage.cached_tokens,
        };
        event.status = self.status;
        event.latency_ms = self.latency_ms;
        event.payment_fingerprint = self.payment_fingerprint;
        event.account_created_at = account_created_at;
        event.metadata = self.metadata.unwrap_or_default();
        Ok(event)
    }
}

/// Which field broke the typed parse: re-reads the record generically and checks each field.
fn diagnose(json: &str) -> RecordError {
    let value: Value = match serde_json::from_str(json) {
        Ok(value) => value,
        Err(e) => return RecordError::malformed(e.to_string()),
    };
    let Value::Object(map) = value else {
        return RecordError::malformed("record is not a JSON object");
    };
    for (field, check) in FIELD_CHECKS {
        if let Some(value) = map.get(*field) {
            if !value.is_null() {
                if let Err(message) = check(value) {
                    return RecordError::invalid(field, message);
                }
            }
        }
    }
    for (group, checks) in [("params", PARAM_CHECKS), ("usage", USAGE_CHECKS)] {
        if let Some(Value::Object(inner)) = map.get(group) {
            for (field, check) in checks {
                if let Some(value) = inner.get(*field).filter(|v| !v.is_null()) {
                    if let Err(message) = check(value) {
                        return RecordError::invalid(&format!("{group}.{field}"), message);
                    }
                }
            }
        }
    }
    RecordError::malformed("record does not match the canonical event format")
}

type Check = fn(&Value) -> Result<(), String>;

fn expect<T: for<'de> Deserialize<'de>>(value: &Value, what: &str) -> Result<(), String> {
    T::deserialize(value)
        .map(|_| ())
        .map_err(|_| format!("expected {what}, got {}", kind_of(value)))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string(v: &Value) -> Result<(), String> {
    expect::<String>(v, "a string")
}
fn time(v: &Value) -> Result<(), String> {
    let parsed = match v {
        Value::String(text) => EventTime::parse_rfc3339(text).map_err(|e| e.to_string()),
        Value::Number(n) => match n.as_i64() {
            Some(ms) => EventTime::from_epoch_ms(ms).map_err(|e| e.to_string()),
            None => Err("expected integer epoch milliseconds".to_string()),
        },
        other => Err(format!(
            "expected an RFC 3339 string or integer epoch milliseconds, got {}",
            kind_of(other)
        )),
    };
    parsed.map(|_| ())
}
fn uint32(v: &Value) -> Result<(), String> {
    expect::<u32>(v, "a non-negative integer")
}
fn uint64(v: &Value) -> Result<(), String> {
    expect::<u64>(v, "a non-negative integer")
}
fn status(v: &Value) -> Result<(), String> {
    expect::<u16>(v, "an HTTP status code")
}
fn float(v: &Value) -> Result<(), String> {
    expect::<f64>(v, "a number")
}
fn boolean(v: &Value) -> Result<(), String> {
    expect::<bool>(v, "a boolean")
}
fn int64(v: &Value) -> Result<(), String> {
    expect::<i64>(v, "an integer")
}
fn object(v: &Value) -> Result<(), String> {
    expect::<serde_json::Map<String, Value>>(v, "an object")
}
fn string_map(v: &Value) -> Result<(), String> {
    expect::<BTreeMap<String, String>>(v, "an object of string values")
}

const FIELD_CHECKS: &[(&str, Check)] = &[
    ("timestamp", time),
    ("account_id", string),
    ("model", string),
    ("request_id", string),
    ("api_key_id", string),
    ("end_user", string),
    ("client_ip", string),
    ("user_agent", string),
    ("endpoint", string),
    ("prompt", string),
    ("system_prompt", string),
    ("messages", uint32),
    ("params", object),
    ("usage", object),
    ("status", status),
    ("latency_ms", uint64),
    ("payment_fingerprint", string),
    ("account_created_at", time),
    ("metadata", string_map),
];

const PARAM_CHECKS: &[(&str, Check)] = &[
    ("temperature", float),
    ("top_p", float),
    ("max_tokens", uint32),
    ("n", uint32),
    ("logprobs", boolean),
    ("top_logprobs", uint32),
    ("seed", int64),
    ("stream", boolean),
];

const USAGE_CHECKS: &[(&str, Check)] = &[
    ("prompt_tokens", uint32),
    ("completion_tokens", uint32),
    ("reasoning_tokens", uint32),
    ("cached_tokens", uint32),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_body, RejectReason};

    fn decode_one(json: &str) -> Result<ApiEvent, RecordError> {
        let mut out = Vec::new();
        CanonicalDecoder.decode(json, &mut out)?;
        Ok(out.remove(0))
    }

    #[test]
    fn a_full_record_decodes_every_field() {
        let event = decode_one(
            r#"{"timestamp":"2026-11-28T13:00:00Z","account_id":"acct-1","model":"gpt-4o",
            "request_id":"r-1","api_key_id":"k-1","end_user":"u-1","client_ip":"203.0.113.7",
            "user_agent":"OpenAI/Python 1.54.0","endpoint":"/v1/chat/completions",
            "prompt":"Explain TCP","system_prompt":"Think step by step","messages":3,
            "params":{"temperature":0.2,"top_p":0.9,"max_tokens":4096,"n":4,"logprobs":true,
            "top_logprobs":20,"seed":7,"stream":false,"frequency_penalty":0.1},
            "usage":{"prompt_tokens":12,"completion_tokens":900,"reasoning_tokens":300,"cached_tokens":0},
            "status":200,"latency_ms":1234,"payment_fingerprint":"card-9",
            "account_created_at":1764000000000,"metadata":{"team":"red"},"unknown_field":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(event.account_id.as_str(), "acct-1");
        assert_eq!(event.timestamp.to_rfc3339(), "2026-11-28T13:00:00.000Z");
        assert_eq!(event.client_ip.unwrap().to_string(), "203.0.113.7");
        assert_eq!(event.params.n, Some(4));
        assert_eq!(event.params.top_logprobs, Some(20));
        assert_eq!(event.usage.completion_tokens, Some(900));
        assert_eq!(event.messages, Some(3));
        assert_eq!(
            event.account_created_at.unwrap().epoch_ms(),
            1_764_000_000_000
        );
        assert_eq!(event.metadata.get("team").map(String::as_str), Some("red"));
    }

    #[test]
    fn canonical_serialisation_round_trips() {
        let original = decode_one(
            r#"{"timestamp":1764334800000,"account_id":"a","model":"m","client_ip":"2001:db8::1",
            "params":{"logprobs":true},"usage":{"completion_tokens":5},"metadata":{"k":"v"}}"#,
        )
        .unwrap();
        let json = serde_json::to_string(&original).unwrap();
        assert_eq!(decode_one(&json).unwrap(), original);
    }

    #[test]
    fn missing_required_fields_are_named() {
        let error = decode_one(r#"{"timestamp":1764334800000,"model":"m"}"#).unwrap_err();
        assert_eq!(error.reason, RejectReason::MissingField);
        assert_eq!(error.field.as_deref(), Some("account_id"));
        let error = decode_one(r#"{"account_id":"a","model":"m","timestamp":null}"#).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("timestamp"));
    }

    #[test]
    fn wrong_types_and_bad_values_are_named() {
        let cases = [
            (
                r#"{"timestamp":"yesterday","account_id":"a","model":"m"}"#,
                "timestamp",
            ),
            (
                r#"{"timestamp":1764334800000,"account_id":5,"model":"m"}"#,
                "account_id",
            ),
            (
                r#"{"timestamp":1764334800000,"account_id":"","model":"m"}"#,
                "account_id",
            ),
            (
                r#"{"timestamp":1764334800000,"account_id":"a","model":"m","client_ip":"10.0.0.300"}"#,
                "client_ip",
            ),
            (
                r#"{"timestamp":1764334800000,"account_id":"a","model":"m","params":{"temperature":"hot"}}"#,
                "params.temperature",
            ),
            (
                r#"{"timestamp":1764334800000,"account_id":"a","model":"m","usage":{"completion_tokens":-1}}"#,
                "usage.completion_tokens",
            ),
            (
                r#"{"timestamp":1764334800000,"account_id":"a","model":"m","status":"ok"}"#,
                "status",
            ),
        ];
        for (json, field) in cases {
            let error = decode_one(json).unwrap_err();
            assert_eq!(error.reason, RejectReason::InvalidField, "{json}");
            assert_eq!(error.field.as_deref(), Some(field), "{json}");
        }
    }

    #[test]
    fn a_mixed_batch_keeps_good_records_and_reports_bad_ones_by_index() {
        let body = concat!(
            r#"{"timestamp":1764334800000,"account_id":"a","model":"m"}"#,
            "\n",
            r#"{"timestamp":1764334800000,"model":"m"}"#,
            "\n",
            r#"not json"#,
            "\n",
            r#"[1]"#,
            "\n",
            r#"{"timestamp":1764334800001,"account_id":"b","model":"m"}"#,
            "\n",
        );
        let outcome = decode_body(&CanonicalDecoder, body.as_bytes()).unwrap();
        assert_eq!(outcome.records, 5);
        assert_eq!(outcome.events.len(), 2);
        let located: Vec<(usize, RejectReason)> = outcome
            .rejected
            .iter()
            .map(|r| (r.index, r.error.reason))
            .collect();
        assert_eq!(
            located,
            vec![
                (1, RejectReason::MissingField),
                (2, RejectReason::MalformedJson),
                (3, RejectReason::MalformedJson)
            ]
        );
    }

    #[test]
    fn a_malformed_line_gets_the_framing_error_and_only_malformed_lines_cannot_be_framed() {
        let bad = "{\"timestamp\":";
        let only_bad = format!("{bad}\n{bad}");
        let framing_error = crate::frame(only_bad.as_bytes()).unwrap_err();
        let body = format!(
            "{bad}\n{}\n",
            r#"{"timestamp":1,"account_id":"a","model":"m"}"#
        );
        let outcome = decode_body(&CanonicalDecoder, body.as_bytes()).unwrap();
        let expected = serde_json::from_str::<&serde_json::value::RawValue>(bad).unwrap_err();
        assert_eq!(outcome.rejected[0].error.message, expected.to_string());
        assert_eq!(outcome.rejected[0].line, Some(1));
        assert_eq!(
            decode_body(&CanonicalDecoder, only_bad.as_bytes()).unwrap_err(),
            framing_error
        );
    }
}
