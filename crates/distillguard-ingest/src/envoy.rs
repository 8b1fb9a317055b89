//! Envoy AI Gateway: JSON access log lines (`json_format`), shipped by a log shipper.
//!
//! Every value is a string (`"response_code": "200"`), an absent one may be `"-"` or null, and the
//! keys are whatever the operator wrote in the format dictionary. The defaults follow the AI
//! Gateway's example format; the account (and optionally the prompt) come from keys the operator
//! adds, so their names are configuration.

use distillguard_core::event::ApiEvent;
use serde::{Deserialize, Serialize};

use crate::fields::{self, read, Pairs, Scalar};
use crate::{Decoder, RecordError, Source};

/// Decodes Envoy access log records. Configured under `[sources.envoy]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvoyDecoder {
    /// Keys holding the account; the first one set wins. Add one to the access log format,
    /// e.g. `"x-user-id": "%REQ(X-USER-ID)%"`.
    #[serde(deserialize_with = "fields::non_empty")]
    pub account_keys: Vec<String>,
    /// Key holding the prompt text, if the format logs it (off by default).
    pub prompt_key: Option<String>,
}

impl Default for EnvoyDecoder {
    fn default() -> Self {
        Self {
            account_keys: vec!["x-user-id".to_string()],
            prompt_key: None,
        }
    }
}

impl Decoder for EnvoyDecoder {
    fn source(&self) -> Source {
        Source::Envoy
    }

    fn decode(&self, json: &str, out: &mut Vec<ApiEvent>) -> Result<(), RecordError> {
        let record: Pairs<'_, Scalar<'_>> = fields::parse_record(json)?;
        out.push(self.event(&record)?);
        Ok(())
    }
}

impl EnvoyDecoder {
    fn event(&self, record: &Pairs<'_, Scalar<'_>>) -> Result<ApiEvent, RecordError> {
        let get = |key: &str| record.get(key);
        let timestamp = read(get("start_time"), "start_time", fields::rfc3339)?
            .ok_or_else(|| RecordError::missing("start_time"))?;

        let mut account = None;
        for key in &self.account_keys {
            if let Some(text) = read(get(key), key, fields::text)? {
                account = Some(fields::account(&text, key)?);
                break;
            }
        }
        let account_id = account.ok_or_else(|| fields::no_account(&self.account_keys))?;

        let mut model = None;
        for key in ["gen_ai.request.model", "gen_ai.response.model"] {
            if let Some(text) = read(get(key), key, fields::text)? {
                model = Some(fields::model(&text, key)?);
                break;
            }
        }
        let model = model.ok_or_else(|| RecordError::missing("gen_ai.request.model"))?;

        let mut event = ApiEvent::new(timestamp, account_id, model);
        event.request_id = read(get("x-request-id"), "x-request-id", fields::owned_text)?;
        event.client_ip = read(get("x-forwarded-for"), "x-forwarded-for", fields::client_ip)?;
        if event.client_ip.is_none() {
            event.client_ip = read(
                get("downstream_remote_address"),
                "downstream_remote_address",
                fields::client_ip,
            )?;
        }
        event.user_agent = read(get("user-agent"), "user-agent", fields::compact_text)?;
        for key in ["x-envoy-origin-path", "path"] {
            if event.endpoint.is_none() {
                event.endpoint = read(get(key), key, fields::text)?
                    .map(|path| path.split('?').next().unwrap_or_default().into());
            }
        }
        // Envoy logs 0 when no response was sent (the client went away first).
        event.status = match read(get("response_code"), "response_code", |v| {
            fields::uint(v, 599)
        })? {
            None | Some(0) => None,
            Some(_) => read(get("response_code"), "response_code", fields::status)?,
        };
        event.latency_ms = read(get("duration"), "duration", fields::uint64)?;
        event.usage.prompt_tokens = read(
            get("gen_ai.usage.input_tokens"),
            "gen_ai.usage.input_tokens",
            fields::uint32,
        )?;
        event.usage.completion_tokens = read(
            get("gen_ai.usage.output_tokens"),
            "gen_ai.usage.output_tokens",
            fields::uint32,
        )?;
        if let Some(key) = &self.prompt_key {
            event.prompt = read(get(key), key, fields::owned_text)?;
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectReason;

    fn decode(decoder: &EnvoyDecoder, json: &str) -> Result<ApiEvent, RecordError> {
        let mut out = Vec::new();
        decoder.decode(json, &mut out)?;
        Ok(out.remove(0))
    }

    #[test]
    fn string_values_become_typed_fields() {
        let event = decode(
            &EnvoyDecoder::default(),
            r#"{"start_time": "2026-11-28T13:10:07.352Z", "x-user-id": "acct-1",
            "gen_ai.request.model": "gpt-4o", "response_code": "200", "duration": "812",
            "gen_ai.usage.input_tokens": "31", "gen_ai.usage.output_tokens": "17",
            "x-forwarded-for": "203.0.113.9, 10.0.0.2", "user-agent": "-"}"#,
        )
        .unwrap();
        assert_eq!(event.account_id.as_str(), "acct-1");
        assert_eq!(event.status, Some(200));
        assert_eq!(event.latency_ms, Some(812));
        assert_eq!(event.usage.prompt_tokens, Some(31));
        assert_eq!(event.usage.completion_tokens, Some(17));
        assert_eq!(event.client_ip.unwrap().to_string(), "203.0.113.9");
        assert_eq!(event.user_agent, None);
    }

    #[test]
    fn a_zero_response_code_means_no_response() {
        let event = decode(
            &EnvoyDecoder::default(),
            r#"{"start_time": "2026-11-28T13:10:07Z", "x-user-id": "a",
            "gen_ai.request.model": "m", "response_code": "0"}"#,
        )
        .unwrap();
        assert_eq!(event.status, None);
    }

    #[test]
    fn account_and_prompt_keys_are_configurable() {
        let decoder: EnvoyDecoder = serde_json::from_str(
            r#"{"account_keys": ["x-tenant", "x-user-id"], "prompt_key": "prompt"}"#,
        )
        .unwrap();
        let event = decode(
            &decoder,
            r#"{"start_time": "2026-11-28T13:10:07Z", "x-tenant": "-", "x-user-id": "u-1",
            "gen_ai.request.model": "m", "prompt": "Explain TCP"}"#,
        )
        .unwrap();
        assert_eq!(event.account_id.as_str(), "u-1");
        assert_eq!(event.prompt.as_deref(), Some("Explain TCP"));
        let error = decode(
            &decoder,
            r#"{"start_time": "2026-11-28T13:10:07Z", "gen_ai.request.model": "m"}"#,
        )
        .unwrap_err();
        assert_eq!(error.reason, RejectReason::MissingField);
        assert_eq!(error.field.as_deref(), Some("x-tenant"));
        assert!(
            error.message.contains("x-tenant, x-user-id"),
            "{}",
            error.message
        );
    }

    #[test]
    fn bad_values_are_named_by_their_key() {
        let base = r#""start_time": "2026-11-28T13:10:07Z", "x-user-id": "a", "gen_ai.request.model": "m""#;
        let cases = [
            (
                r#"{"x-user-id": "a", "gen_ai.request.model": "m"}"#.to_string(),
                "start_time",
            ),
            (
                r#"{"start_time": "13:10", "x-user-id": "a", "gen_ai.request.model": "m"}"#
                    .to_string(),
                "start_time",
            ),
            (
                r#"{"start_time": "2026-11-28T13:10:07Z", "x-user-id": "a"}"#.to_string(),
                "gen_ai.request.model",
            ),
            (
                format!(r#"{{{base}, "response_code": "OK"}}"#),
                "response_code",
            ),
            (
                format!(r#"{{{base}, "gen_ai.usage.output_tokens": "1.5"}}"#),
                "gen_ai.usage.output_tokens",
            ),
            (
                format!(r#"{{{base}, "x-forwarded-for": "unknown"}}"#),
                "x-forwarded-for",
            ),
            (
                format!(r#"{{{base}, "duration": {{"ms": 5}}}}"#),
                "duration",
            ),
        ];
        for (json, field) in cases {
            let error = decode(&EnvoyDecoder::default(), &json).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{json}: {error}");
        }
    }
}
