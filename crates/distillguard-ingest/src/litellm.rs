//! LiteLLM proxy: the `StandardLoggingPayload` its generic API logger posts
//! (`callback_type: generic_api`, any `log_format`).
//!
//! Shapes taken from real captures (`tests/fixtures/litellm/`): times are epoch seconds as floats,
//! `model` carries the provider prefix while `model_group` is the name the client asked for,
//! content may be `redacted-by-litellm`, and most keys may be null or absent depending on version
//! and setup.

use distillguard_core::event::{ApiEvent, Usage};
use serde::{Deserialize, Serialize};

use crate::chat::{self, ChatRequest, Messages};
use crate::fields::{self, read, EpochUnit, Obj, Scalar};
use crate::{Decoder, RecordError, Source};

/// A LiteLLM field that can identify the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LitellmAccountField {
    /// `metadata.user_api_key_org_id`
    OrgId,
    /// `metadata.user_api_key_team_id`
    TeamId,
    /// `metadata.user_api_key_user_id`
    UserId,
    /// `metadata.user_api_key_hash`: the virtual key (`litellm_proxy_master_key` for the master key).
    ApiKeyHash,
    /// `metadata.user_api_key_alias`
    ApiKeyAlias,
    /// `end_user` (the request's `user`), else `metadata.user_api_key_end_user_id`.
    EndUser,
}

impl LitellmAccountField {
    pub fn path(self) -> &'static str {
        match self {
            Self::OrgId => "metadata.user_api_key_org_id",
            Self::TeamId => "metadata.user_api_key_team_id",
            Self::UserId => "metadata.user_api_key_user_id",
            Self::ApiKeyHash => "metadata.user_api_key_hash",
            Self::ApiKeyAlias => "metadata.user_api_key_alias",
            Self::EndUser => "end_user",
        }
    }
}

/// Which LiteLLM name becomes the event's `model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LitellmModelField {
    /// `model_group`, the name the client asked for (`gpt-4o`); `model` when it is empty.
    #[default]
    ModelGroup,
    /// `model`, the deployment with its provider prefix (`openai/gpt-4o`).
    Model,
}

/// Decodes LiteLLM records. Configured under `[sources.litellm]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LitellmDecoder {
    /// The account is the first of these that is set in the record.
    #[serde(deserialize_with = "fields::non_empty")]
    pub account_fields: Vec<LitellmAccountField>,
    pub model_field: LitellmModelField,
}

impl Default for LitellmDecoder {
    fn default() -> Self {
        Self {
            account_fields: vec![
                LitellmAccountField::OrgId,
                LitellmAccountField::TeamId,
                LitellmAccountField::ApiKeyHash,
            ],
            model_field: LitellmModelField::ModelGroup,
        }
    }
}

impl Decoder for LitellmDecoder {
    fn source(&self) -> Source {
        Source::Litellm
    }

    fn decode(&self, json: &str, out: &mut Vec<ApiEvent>) -> Result<(), RecordError> {
        let wire: Wire<'_> = fields::parse_record(json)?;
        out.push(self.event(&wire)?);
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Wire<'a> {
    id: Option<Scalar<'a>>,
    litellm_call_id: Option<Scalar<'a>>,
    #[serde(rename = "startTime")]
    start_time: Option<Scalar<'a>>,
    #[serde(rename = "endTime")]
    end_time: Option<Scalar<'a>>,
    model: Option<Scalar<'a>>,
    model_group: Option<Scalar<'a>>,
    status: Option<Scalar<'a>>,
    end_user: Option<Scalar<'a>>,
    requester_ip_address: Option<Scalar<'a>>,
    user_agent: Option<Scalar<'a>>,
    prompt_tokens: Option<Scalar<'a>>,
    completion_tokens: Option<Scalar<'a>>,
    messages: Option<Messages<'a>>,
    model_parameters: Option<Obj<ChatRequest<'a>>>,
    metadata: Option<Obj<Metadata<'a>>>,
    response: Option<Obj<Response<'a>>>,
    error_information: Option<Obj<ErrorInformation<'a>>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Metadata<'a> {
    user_api_key_hash: Option<Scalar<'a>>,
    user_api_key_alias: Option<Scalar<'a>>,
    user_api_key_org_id: Option<Scalar<'a>>,
    user_api_key_team_id: Option<Scalar<'a>>,
    user_api_key_user_id: Option<Scalar<'a>>,
    user_api_key_end_user_id: Option<Scalar<'a>>,
    user_api_key_request_route: Option<Scalar<'a>>,
    requester_ip_address: Option<Scalar<'a>>,
    user_agent: Option<Scalar<'a>>,
    usage_object: Option<Obj<UsageObject<'a>>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Response<'a> {
    usage: Option<Obj<UsageObject<'a>>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct UsageObject<'a> {
    completion_tokens_details: Option<Obj<CompletionDetails<'a>>>,
    prompt_tokens_details: Option<Obj<PromptDetails<'a>>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct CompletionDetails<'a> {
    reasoning_tokens: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct PromptDetails<'a> {
    cached_tokens: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct ErrorInformation<'a> {
    error_code: Option<Scalar<'a>>,
}

const NO_METADATA: Metadata<'static> = Metadata {
    user_api_key_hash: None,
    user_api_key_alias: None,
    user_api_key_org_id: None,
    user_api_key_team_id: None,
    user_api_key_user_id: None,
    user_api_key_end_user_id: None,
    user_api_key_request_route: None,
    requester_ip_address: None,
    user_agent: None,
    usage_object: None,
};

impl LitellmDecoder {
    fn event(&self, wire: &Wire<'_>) -> Result<ApiEvent, RecordError> {
        let metadata = match &wire.metadata {
            Some(obj) => obj.get(|| "metadata".to_string())?,
            None => &NO_METADATA,
        };
        let timestamp = read(wire.start_time.as_ref(), "startTime", |v| {
            fields::epoch(v, EpochUnit::Seconds)
        })?
        .ok_or_else(|| RecordError::missing("startTime"))?;
        let end = read(wire.end_time.as_ref(), "endTime", |v| {
            fields::epoch(v, EpochUnit::Seconds)
        })?;

        let account_id = self.account(wire, metadata)?;
        let model = self.model(wire)?;
        let mut event = ApiEvent::new(timestamp, account_id, model);

        event.request_id = read(wire.id.as_ref(), "id", fields::owned_text)?;
        event.api_key_id = read(
            metadata.user_api_key_hash.as_ref(),
            "metadata.user_api_key_hash",
            fields::compact_text,
        )?;
        event.end_user = match read(wire.end_user.as_ref(), "end_user", fields::compact_text)? {
            Some(user) => Some(user),
            None => read(
                metadata.user_api_key_end_user_id.as_ref(),
                "metadata.user_api_key_end_user_id",
                fields::compact_text,
            )?,
        };
        event.client_ip = match read(
            wire.requester_ip_address.as_ref(),
            "requester_ip_address",
            fields::client_ip,
        )? {
            Some(ip) => Some(ip),
            None => read(
                metadata.requester_ip_address.as_ref(),
                "metadata.requester_ip_address",
                fields::client_ip,
            )?,
        };
        event.user_agent = match read(wire.user_agent.as_ref(), "user_agent", fields::compact_text)?
        {
            Some(agent) => Some(agent),
            None => read(
                metadata.user_agent.as_ref(),
                "metadata.user_agent",
                fields::compact_text,
            )?,
        };
        event.endpoint = read(
            metadata.user_api_key_request_route.as_ref(),
            "metadata.user_api_key_request_route",
            fields::compact_text,
        )?;
        if let Some(messages) = &wire.messages {
            chat::fill_messages(messages, "messages", &mut event)?;
        }
        if let Some(params) = &wire.model_parameters {
            let params = params.get(|| "model_parameters".to_string())?;
            event.params = chat::params(params, "model_parameters")?;
            if event.end_user.is_none() {
                event.end_user = read(
                    params.user.as_ref(),
                    "model_parameters.user",
                    fields::compact_text,
                )?;
            }
        }
        event.usage = usage_of(wire, metadata)?;
        event.status = status_of(wire)?;
        event.latency_ms = end
            .filter(|end| *end >= timestamp)
            .map(|end| (end.epoch_ms() - timestamp.epoch_ms()) as u64);
        if let Some(call_id) = read(
            wire.litellm_call_id.as_ref(),
            "litellm_call_id",
            fields::owned_text,
        )? {
            event
                .metadata
                .insert("litellm_call_id".to_string(), call_id);
        }
        Ok(event)
    }

    fn account(
        &self,
        wire: &Wire<'_>,
        metadata: &Metadata<'_>,
    ) -> Result<distillguard_core::event::AccountId, RecordError> {
        for field in &self.account_fields {
            let candidates: &[Option<&Scalar<'_>>] = match field {
                LitellmAccountField::OrgId => &[metadata.user_api_key_org_id.as_ref()],
                LitellmAccountField::TeamId => &[metadata.user_api_key_team_id.as_ref()],
                LitellmAccountField::UserId => &[metadata.user_api_key_user_id.as_ref()],
                LitellmAccountField::ApiKeyHash => &[metadata.user_api_key_hash.as_ref()],
                LitellmAccountField::ApiKeyAlias => &[metadata.user_api_key_alias.as_ref()],
                LitellmAccountField::EndUser => &[
                    wire.end_user.as_ref(),
                    metadata.user_api_key_end_user_id.as_ref(),
                ],
            };
            for value in candidates {
                if let Some(text) = read(*value, field.path(), fields::text)? {
                    return fields::account(&text, field.path());
                }
            }
        }
        let paths: Vec<String> = self
            .account_fields
            .iter()
            .map(|f| f.path().to_string())
            .collect();
        Err(fields::no_account(&paths))
    }

    fn model(&self, wire: &Wire<'_>) -> Result<distillguard_core::event::ModelName, RecordError> {
        let order: [(&Option<Scalar<'_>>, &str); 2] = match self.model_field {
            LitellmModelField::ModelGroup => {
                [(&wire.model_group, "model_group"), (&wire.model, "model")]
            }
            LitellmModelField::Model => {
                [(&wire.model, "model"), (&wire.model_group, "model_group")]
            }
        };
        for (value, field) in order {
            if let Some(name) = read(value.as_ref(), field, fields::text)? {
                return fields::model(&name, field);
            }
        }
        Err(RecordError::missing("model"))
    }
}

fn usage_of(wire: &Wire<'_>, metadata: &Metadata<'_>) -> Result<Usage, RecordError> {
    let mut usage = Usage {
        prompt_tokens: read(wire.prompt_tokens.as_ref(), "prompt_tokens", fields::uint32)?,
        completion_tokens: read(
            wire.completion_tokens.as_ref(),
            "completion_tokens",
            fields::uint32,
        )?,
        reasoning_tokens: None,
        cached_tokens: None,
    };
    let response_usage = match &wire.response {
        Some(Obj::Ok(Response { usage: Some(usage) })) => Some(("response.usage", usage)),
        _ => None,
    };
    let metadata_usage = metadata
        .usage_object
        .as_ref()
        .map(|u| ("metadata.usage_object", u));
    // The response's own usage first; LiteLLM mirrors it in metadata when the response is absent.
    for (path, usage_obj) in [response_usage, metadata_usage].into_iter().flatten() {
        let Obj::Ok(details) = usage_obj else {
            continue;
        };
        if usage.reasoning_tokens.is_none() {
            if let Some(Obj::Ok(d)) = &details.completion_tokens_details {
                usage.reasoning_tokens = read(
                    d.reasoning_tokens.as_ref(),
                    &format!("{path}.completion_tokens_details.reasoning_tokens"),
                    fields::uint32,
                )?;
            }
        }
        if usage.cached_tokens.is_none() {
            if let Some(Obj::Ok(d)) = &details.prompt_tokens_details {
                usage.cached_tokens = read(
                    d.cached_tokens.as_ref(),
                    &format!("{path}.prompt_tokens_details.cached_tokens"),
                    fields::uint32,
                )?;
            }
        }
    }
    Ok(usage)
}

/// `success` is 200; `failure` takes `error_information.error_code` when it is an HTTP status,
/// else 500. Other values (future LiteLLM states) leave the status unknown.
fn status_of(wire: &Wire<'_>) -> Result<Option<u16>, RecordError> {
    let Some(status) = read(wire.status.as_ref(), "status", fields::text)? else {
        return Ok(None);
    };
    match status.as_ref() {
        "success" => Ok(Some(200)),
        "failure" => {
            let code = match &wire.error_information {
                Some(Obj::Ok(info)) => fields::status(info.error_code.as_ref()).ok().flatten(),
                _ => None,
            };
            Ok(Some(code.unwrap_or(500)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectReason;

    const MINIMAL: &str = r#"{"startTime": 1795871407.352644, "model": "openai/gpt-4o",
        "metadata": {"user_api_key_hash": "hash-1"}}"#;

    fn decode(decoder: &LitellmDecoder, json: &str) -> Result<ApiEvent, RecordError> {
        let mut out = Vec::new();
        decoder.decode(json, &mut out)?;
        assert_eq!(out.len(), 1);
        Ok(out.remove(0))
    }

    #[test]
    fn a_minimal_record_needs_only_a_start_time_a_model_and_an_account() {
        let event = decode(&LitellmDecoder::default(), MINIMAL).unwrap();
        assert_eq!(event.account_id.as_str(), "hash-1");
        assert_eq!(event.model.as_str(), "openai/gpt-4o");
        assert_eq!(event.timestamp.epoch_ms(), 1_795_871_407_353);
        assert_eq!(event.prompt, None);
        assert_eq!(event.status, None);
    }

    #[test]
    fn the_account_is_the_first_configured_field_that_is_set() {
        let json = r#"{"startTime": 1795871407, "model": "m", "end_user": "u-9",
            "metadata": {"user_api_key_hash": "h", "user_api_key_team_id": "team-a",
            "user_api_key_org_id": null, "user_api_key_user_id": "user-1"}}"#;
        let default = decode(&LitellmDecoder::default(), json).unwrap();
        assert_eq!(default.account_id.as_str(), "team-a");
        let by_user = LitellmDecoder {
            account_fields: vec![LitellmAccountField::UserId],
            ..LitellmDecoder::default()
        };
        assert_eq!(
            decode(&by_user, json).unwrap().account_id.as_str(),
            "user-1"
        );
        let by_end_user = LitellmDecoder {
            account_fields: vec![LitellmAccountField::EndUser],
            ..LitellmDecoder::default()
        };
        assert_eq!(
            decode(&by_end_user, json).unwrap().account_id.as_str(),
            "u-9"
        );
        let by_org = LitellmDecoder {
            account_fields: vec![LitellmAccountField::OrgId],
            ..LitellmDecoder::default()
        };
        let error = decode(&by_org, json).unwrap_err();
        assert_eq!(error.reason, RejectReason::MissingField);
        assert_eq!(error.field.as_deref(), Some("metadata.user_api_key_org_id"));
    }

    #[test]
    fn the_model_is_the_requested_group_unless_configured_otherwise() {
        let json = r#"{"startTime": 1795871407, "model": "openai/gpt-4o", "model_group": "gpt-4o",
            "metadata": {"user_api_key_hash": "h"}}"#;
        assert_eq!(
            decode(&LitellmDecoder::default(), json)
                .unwrap()
                .model
                .as_str(),
            "gpt-4o"
        );
        let deployed = LitellmDecoder {
            model_field: LitellmModelField::Model,
            ..LitellmDecoder::default()
        };
        assert_eq!(
            decode(&deployed, json).unwrap().model.as_str(),
            "openai/gpt-4o"
        );
    }

    #[test]
    fn numbers_sent_as_text_are_accepted() {
        let json = r#"{"startTime": "1795871407.5", "model": "m", "prompt_tokens": "12",
            "model_parameters": {"temperature": "0.2", "n": "3", "logprobs": "true"},
            "metadata": {"user_api_key_hash": "h"}}"#;
        let event = decode(&LitellmDecoder::default(), json).unwrap();
        assert_eq!(event.timestamp.epoch_ms(), 1_795_871_407_500);
        assert_eq!(event.usage.prompt_tokens, Some(12));
        assert_eq!(event.params.temperature, Some(0.2));
        assert_eq!(event.params.n, Some(3));
        assert_eq!(event.params.logprobs, Some(true));
    }

    #[test]
    fn legacy_integer_logprobs_mean_top_logprobs() {
        let json = r#"{"startTime": 1795871407, "model": "m", "model_parameters": {"logprobs": 5},
            "messages": "Once upon a time", "metadata": {"user_api_key_hash": "h"}}"#;
        let event = decode(&LitellmDecoder::default(), json).unwrap();
        assert_eq!(event.params.logprobs, Some(true));
        assert_eq!(event.params.top_logprobs, Some(5));
        assert_eq!(event.prompt.as_deref(), Some("Once upon a time"));
        assert_eq!(event.messages, Some(1));
    }

    #[test]
    fn bad_fields_are_named_with_their_path() {
        let cases = [
            (
                r#"{"model": "m", "metadata": {"user_api_key_hash": "h"}}"#,
                "startTime",
                RejectReason::MissingField,
            ),
            (
                r#"{"startTime": "soon", "model": "m", "metadata": {"user_api_key_hash": "h"}}"#,
                "startTime",
                RejectReason::InvalidField,
            ),
            (
                r#"{"startTime": 1795871407, "metadata": {"user_api_key_hash": "h"}}"#,
                "model",
                RejectReason::MissingField,
            ),
            (
                r#"{"startTime": 1795871407, "model": "m", "metadata": "h"}"#,
                "metadata",
                RejectReason::InvalidField,
            ),
            (
                r#"{"startTime": 1795871407, "model": "m", "metadata": {"user_api_key_hash": ["h"]}}"#,
                "metadata.user_api_key_hash",
                RejectReason::InvalidField,
            ),
            (
                r#"{"startTime": 1795871407, "model": "m", "metadata": {"user_api_key_hash": "h"}, "prompt_tokens": -3}"#,
                "prompt_tokens",
                RejectReason::InvalidField,
            ),
            (
                r#"{"startTime": 1795871407, "model": "m", "metadata": {"user_api_key_hash": "h"}, "model_parameters": {"temperature": "hot"}}"#,
                "model_parameters.temperature",
                RejectReason::InvalidField,
            ),
            (
                r#"{"startTime": 1795871407, "model": "m", "metadata": {"user_api_key_hash": "h"}, "requester_ip_address": "10.0.0.999"}"#,
                "requester_ip_address",
                RejectReason::InvalidField,
            ),
            (
                r#"{"startTime": 1795871407, "model": "m", "metadata": {"user_api_key_hash": "h"}, "messages": [7]}"#,
                "messages[0]",
                RejectReason::InvalidField,
            ),
            (
                r#"{"startTime": 1795871407, "model": "m", "metadata": {"user_api_key_hash": "h"}, "messages": {"role": "user"}}"#,
                "messages",
                RejectReason::InvalidField,
            ),
        ];
        for (json, field, reason) in cases {
            let error = decode(&LitellmDecoder::default(), json).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{json}: {error}");
            assert_eq!(error.reason, reason, "{json}");
        }
    }

    #[test]
    fn non_objects_and_broken_json_are_malformed() {
        for json in ["[1,2]", "\"text\"", "{\"startTime\": "] {
            let error = decode(&LitellmDecoder::default(), json).unwrap_err();
            assert_eq!(error.reason, RejectReason::MalformedJson, "{json}");
        }
    }

    #[test]
    fn configuration_reads_snake_case_names_and_refuses_an_empty_chain() {
        let config: LitellmDecoder = serde_json::from_str(
            r#"{"account_fields": ["end_user", "api_key_hash"], "model_field": "model"}"#,
        )
        .unwrap();
        assert_eq!(
            config.account_fields,
            vec![
                LitellmAccountField::EndUser,
                LitellmAccountField::ApiKeyHash
            ]
        );
        assert_eq!(config.model_field, LitellmModelField::Model);
        assert_eq!(
            serde_json::from_str::<LitellmDecoder>("{}").unwrap(),
            LitellmDecoder::default()
        );
        assert!(serde_json::from_str::<LitellmDecoder>(r#"{"account_fields": []}"#).is_err());
        assert!(
            serde_json::from_str::<LitellmDecoder>(r#"{"acount_fields": ["org_id"]}"#).is_err()
        );
    }
}
