//! Kong Gateway: the `http-log` plugin's serializer output with the AI Proxy plugins' `ai.*`
//! analytics (Kong 3.6+).
//!
//! Kong's documentation spells the token counts `prompt_token` / `completion_token` while its code
//! writes `prompt_tokens` / `completion_tokens`; both are read. The AI namespace key varies
//! (`proxy`, `ai-proxy`, a plugin instance name), so the first namespace that names a model is used.

use distillguard_core::event::{AccountId, ApiEvent, ModelName, Usage};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::chat::{self, ChatRequest};
use crate::fields::{self, read, EpochUnit, Obj, Pairs, Scalar};
use crate::{Decoder, RecordError, Source};

/// A Kong field that can identify the account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KongAccountField {
    /// `consumer.id` (the consumer's UUID).
    ConsumerId,
    /// `consumer.username`
    ConsumerUsername,
    /// `consumer.custom_id` (the id of the customer in your own systems).
    ConsumerCustomId,
    /// `authenticated_entity.id` (the credential, e.g. the key-auth key's id).
    AuthenticatedEntityId,
    /// A request header, e.g. `{ header = "x-account-id" }` set by an upstream auth layer.
    Header(String),
}

impl KongAccountField {
    fn path(&self) -> String {
        match self {
            Self::ConsumerId => "consumer.id".to_string(),
            Self::ConsumerUsername => "consumer.username".to_string(),
            Self::ConsumerCustomId => "consumer.custom_id".to_string(),
            Self::AuthenticatedEntityId => "authenticated_entity.id".to_string(),
            Self::Header(name) => format!("request.headers.{}", name.to_ascii_lowercase()),
        }
    }
}

/// Decodes Kong http-log records. Configured under `[sources.kong]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KongDecoder {
    /// The account is the first of these that is set in the record.
    #[serde(deserialize_with = "fields::non_empty")]
    pub account_fields: Vec<KongAccountField>,
}

impl Default for KongDecoder {
    fn default() -> Self {
        Self {
            account_fields: vec![
                KongAccountField::ConsumerId,
                KongAccountField::AuthenticatedEntityId,
            ],
        }
    }
}

impl Decoder for KongDecoder {
    fn source(&self) -> Source {
        Source::Kong
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
    started_at: Option<Scalar<'a>>,
    client_ip: Option<Scalar<'a>>,
    request: Option<Obj<Request<'a>>>,
    response: Option<Obj<Response<'a>>>,
    latencies: Option<Obj<Latencies<'a>>>,
    consumer: Option<Obj<Consumer<'a>>>,
    authenticated_entity: Option<Obj<Entity<'a>>>,
    ai: Option<Obj<Pairs<'a, Obj<AiNamespace<'a>>>>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Request<'a> {
    id: Option<Scalar<'a>>,
    uri: Option<Scalar<'a>>,
    headers: Option<Obj<Pairs<'a, Scalar<'a>>>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Response<'a> {
    status: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Latencies<'a> {
    request: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Consumer<'a> {
    id: Option<Scalar<'a>>,
    username: Option<Scalar<'a>>,
    custom_id: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Entity<'a> {
    id: Option<Scalar<'a>>,
}

/// One `ai.<namespace>` object; `ai.payload` (documented location of the request payload) reads
/// as a namespace with only `request`.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct AiNamespace<'a> {
    usage: Option<Obj<AiUsage<'a>>>,
    meta: Option<Obj<AiMeta<'a>>>,
    payload: Option<Obj<AiPayload<'a>>>,
    request: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct AiUsage<'a> {
    prompt_tokens: Option<Scalar<'a>>,
    prompt_token: Option<Scalar<'a>>,
    completion_tokens: Option<Scalar<'a>>,
    completion_token: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct AiMeta<'a> {
    request_model: Option<Scalar<'a>>,
    response_model: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct AiPayload<'a> {
    request: Option<&'a RawValue>,
    #[serde(rename = "response")]
    _response: Option<IgnoredAny>,
}

/// Header values may be lists when a header was repeated; those are not interpreted.
fn header<'s>(headers: Option<&'s Pairs<'_, Scalar<'_>>>, name: &str) -> Option<&'s Scalar<'s>> {
    headers
        .and_then(|h| h.get(name))
        .filter(|v| !matches!(v, Scalar::Compound(_)))
}

impl KongDecoder {
    fn event(&self, wire: &Wire<'_>) -> Result<ApiEvent, RecordError> {
        let request = match &wire.request {
            Some(obj) => Some(obj.get(|| "request".to_string())?),
            None => None,
        };
        let headers = match request.and_then(|r| r.headers.as_ref()) {
            Some(obj) => Some(obj.get(|| "request.headers".to_string())?),
            None => None,
        };
        let timestamp = read(wire.started_at.as_ref(), "started_at", |v| {
            fields::epoch(v, EpochUnit::Millis)
        })?
        .ok_or_else(|| RecordError::missing("started_at"))?;
        let account_id = self.account(wire, headers)?;
        let ai = match &wire.ai {
            Some(obj) => obj.get(|| "ai".to_string())?,
            None => return Err(RecordError::missing("ai")),
        };
        let (namespace, model) = model_of(ai)?;
        let mut event = ApiEvent::new(timestamp, account_id, model);

        event.request_id = match request.and_then(|r| r.id.as_ref()) {
            Some(id) => read(Some(id), "request.id", fields::owned_text)?,
            None => None,
        };
        for name in ["x-kong-request-id", "x-request-id"] {
            if event.request_id.is_none() {
                event.request_id = read(header(headers, name), name, fields::owned_text)?;
            }
        }
        event.client_ip = read(wire.client_ip.as_ref(), "client_ip", fields::client_ip)?;
        event.user_agent = read(
            header(headers, "user-agent"),
            "request.headers.user-agent",
            fields::compact_text,
        )?;
        event.endpoint = read(
            request.and_then(|r| r.uri.as_ref()),
            "request.uri",
            fields::text,
        )?
        .map(|uri| uri.split('?').next().unwrap_or_default().into());
        event.api_key_id = match &wire.authenticated_entity {
            Some(entity) => read(
                entity
                    .get(|| "authenticated_entity".to_string())?
                    .id
                    .as_ref(),
                "authenticated_entity.id",
                fields::compact_text,
            )?,
            None => None,
        };
        if let Some(Obj::Ok(consumer)) = &wire.consumer {
            if let Ok(Some(username)) = fields::owned_text(consumer.username.as_ref()) {
                event
                    .metadata
                    .insert("kong_consumer_username".to_string(), username);
            }
        }
        event.status = match &wire.response {
            Some(response) => read(
                response.get(|| "response".to_string())?.status.as_ref(),
                "response.status",
                fields::status,
            )?,
            None => None,
        };
        event.latency_ms = match &wire.latencies {
            Some(latencies) => read(
                latencies.get(|| "latencies".to_string())?.request.as_ref(),
                "latencies.request",
                fields::uint64,
            )?,
            None => None,
        };
        event.usage = usage_of(ai, namespace)?;
        fill_from_payload(ai, &mut event);
        Ok(event)
    }

    fn account(
        &self,
        wire: &Wire<'_>,
        headers: Option<&Pairs<'_, Scalar<'_>>>,
    ) -> Result<AccountId, RecordError> {
        let consumer = match &wire.consumer {
            Some(obj) => Some(obj.get(|| "consumer".to_string())?),
            None => None,
        };
        let entity = match &wire.authenticated_entity {
            Some(obj) => Some(obj.get(|| "authenticated_entity".to_string())?),
            None => None,
        };
        for field in &self.account_fields {
            let value = match field {
                KongAccountField::ConsumerId => consumer.and_then(|c| c.id.as_ref()),
                KongAccountField::ConsumerUsername => consumer.and_then(|c| c.username.as_ref()),
                KongAccountField::ConsumerCustomId => consumer.and_then(|c| c.custom_id.as_ref()),
                KongAccountField::AuthenticatedEntityId => entity.and_then(|e| e.id.as_ref()),
                KongAccountField::Header(name) => header(headers, name),
            };
            let text = fields::text(value)
                .map_err(|message| RecordError::invalid(&field.path(), message))?;
            if let Some(text) = text {
                return fields::account(&text, &field.path());
            }
        }
        let paths: Vec<String> = self.account_fields.iter().map(|f| f.path()).collect();
        Err(fields::no_account(&paths))
    }
}

type Namespaces<'a> = Pairs<'a, Obj<AiNamespace<'a>>>;

/// The first namespace that names a model: `meta.request_model`, else `meta.response_model`.
fn model_of<'n, 'a>(ai: &'n Namespaces<'a>) -> Result<(&'n str, ModelName), RecordError> {
    for (name, namespace) in &ai.0 {
        let Obj::Ok(namespace) = namespace else {
            continue;
        };
        let Some(meta) = &namespace.meta else {
            continue;
        };
        let meta = meta.get(|| format!("ai.{name}.meta"))?;
        for (value, key) in [
            (&meta.request_model, "request_model"),
            (&meta.response_model, "response_model"),
        ] {
            let path = || format!("ai.{name}.meta.{key}");
            let text = fields::text(value.as_ref())
                .map_err(|message| RecordError::invalid(&path(), message))?;
            if let Some(text) = text {
                return Ok((name.as_ref(), fields::model(&text, &path())?));
            }
        }
    }
    Err(RecordError::missing("ai.*.meta.request_model"))
}

/// Token counts from the model's namespace, in either spelling.
fn usage_of(ai: &Namespaces<'_>, namespace: &str) -> Result<Usage, RecordError> {
    let mut usage = Usage::default();
    let Some(Obj::Ok(ns)) = ai.get(namespace) else {
        return Ok(usage);
    };
    let Some(obj) = &ns.usage else {
        return Ok(usage);
    };
    let u = obj.get(|| format!("ai.{namespace}.usage"))?;
    let count = |plural: &Option<Scalar<'_>>, singular: &Option<Scalar<'_>>, key: &str| {
        let (value, key) = match plural {
            Some(v) => (Some(v), key.to_string()),
            None => (singular.as_ref(), key.trim_end_matches('s').to_string()),
        };
        fields::uint32(value).map_err(|message| {
            RecordError::invalid(&format!("ai.{namespace}.usage.{key}"), message)
        })
    };
    usage.prompt_tokens = count(&u.prompt_tokens, &u.prompt_token, "prompt_tokens")?;
    usage.completion_tokens = count(
        &u.completion_tokens,
        &u.completion_token,
        "completion_tokens",
    )?;
    Ok(usage)
}

/// Prompt and sampling parameters from the logged request payload (`logging.log_payloads`).
/// The payload is optional enrichment, and Kong may truncate it, so one that cannot be read is
/// ignored rather than costing the event.
fn fill_from_payload(ai: &Namespaces<'_>, event: &mut ApiEvent) {
    let raw = ai.0.iter().find_map(|(_, ns)| match ns {
        Obj::Ok(ns) => ns.request.or(match &ns.payload {
            Some(Obj::Ok(payload)) => payload.request,
            _ => None,
        }),
        Obj::Wrong(_) => None,
    });
    let Some(raw) = raw else {
        return;
    };
    // Usually a JSON document inside a JSON string; sometimes the object itself.
    let text: String = match serde_json::from_str::<String>(raw.get()) {
        Ok(inner) => inner,
        Err(_) => raw.get().to_string(),
    };
    let Ok(request) = serde_json::from_str::<ChatRequest<'_>>(&text) else {
        return;
    };
    let mut enriched = event.clone();
    let messages = request.messages.as_ref().or(request.prompt.as_ref());
    let filled = messages
        .map(|m| chat::fill_messages(m, "ai.payload.request.messages", &mut enriched))
        .unwrap_or(Ok(()))
        .and_then(|()| chat::params(&request, "ai.payload.request"));
    if let Ok(params) = filled {
        enriched.params = params;
        if enriched.end_user.is_none() {
            enriched.end_user = fields::compact_text(request.user.as_ref()).ok().flatten();
        }
        *event = enriched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectReason;

    fn decode(decoder: &KongDecoder, json: &str) -> Result<ApiEvent, RecordError> {
        let mut out = Vec::new();
        decoder.decode(json, &mut out)?;
        Ok(out.remove(0))
    }

    const BASE: &str = r#"{"started_at": 1795871407352, "consumer": {"id": "c-1", "username": "acme"},
        "ai": {"proxy": {"meta": {"request_model": "gpt-4o"}, "usage": {"prompt_tokens": 5}}}}"#;

    #[test]
    fn a_minimal_record_needs_a_start_a_consumer_and_a_model() {
        let event = decode(&KongDecoder::default(), BASE).unwrap();
        assert_eq!(event.account_id.as_str(), "c-1");
        assert_eq!(event.model.as_str(), "gpt-4o");
        assert_eq!(event.timestamp.epoch_ms(), 1_795_871_407_352);
        assert_eq!(event.usage.prompt_tokens, Some(5));
        assert_eq!(
            event
                .metadata
                .get("kong_consumer_username")
                .map(String::as_str),
            Some("acme")
        );
    }

    #[test]
    fn the_account_can_come_from_a_header() {
        let json = r#"{"started_at": 1795871407352, "request": {"headers": {"x-account-id": "acct-7"}},
            "ai": {"proxy": {"meta": {"request_model": "gpt-4o"}}}}"#;
        let decoder: KongDecoder = serde_json::from_str(
            r#"{"account_fields": ["consumer_custom_id", {"header": "X-Account-Id"}]}"#,
        )
        .unwrap();
        assert_eq!(
            decode(&decoder, json).unwrap().account_id.as_str(),
            "acct-7"
        );
        let error = decode(&KongDecoder::default(), json).unwrap_err();
        assert_eq!(error.reason, RejectReason::MissingField);
        assert_eq!(error.field.as_deref(), Some("consumer.id"));
    }

    #[test]
    fn records_without_ai_analytics_are_refused_by_name() {
        let json = r#"{"started_at": 1795871407352, "consumer": {"id": "c-1"}}"#;
        assert_eq!(
            decode(&KongDecoder::default(), json)
                .unwrap_err()
                .field
                .as_deref(),
            Some("ai")
        );
        let json = r#"{"started_at": 1795871407352, "consumer": {"id": "c-1"}, "ai": {"proxy": {"usage": {}}}}"#;
        assert_eq!(
            decode(&KongDecoder::default(), json)
                .unwrap_err()
                .field
                .as_deref(),
            Some("ai.*.meta.request_model")
        );
    }

    #[test]
    fn bad_fields_are_named_with_their_path() {
        let cases = [
            (
                r#"{"consumer": {"id": "c"}, "ai": {"proxy": {"meta": {"request_model": "m"}}}}"#,
                "started_at",
            ),
            (
                r#"{"started_at": "noon", "consumer": {"id": "c"}, "ai": {"proxy": {"meta": {"request_model": "m"}}}}"#,
                "started_at",
            ),
            (
                r#"{"started_at": 1795871407352, "consumer": "c", "ai": {"proxy": {"meta": {"request_model": "m"}}}}"#,
                "consumer",
            ),
            (
                r#"{"started_at": 1795871407352, "consumer": {"id": "c"}, "ai": {"proxy": {"meta": {"request_model": true}}}}"#,
                "ai.proxy.meta.request_model",
            ),
            (
                r#"{"started_at": 1795871407352, "consumer": {"id": "c"}, "ai": {"proxy": {"meta": {"request_model": "m"}, "usage": {"completion_token": "many"}}}}"#,
                "ai.proxy.usage.completion_token",
            ),
            (
                r#"{"started_at": 1795871407352, "consumer": {"id": "c"}, "response": {"status": 9000}, "ai": {"proxy": {"meta": {"request_model": "m"}}}}"#,
                "response.status",
            ),
            (
                r#"{"started_at": 1795871407352, "consumer": {"id": "c"}, "client_ip": "a.b.c.d", "ai": {"proxy": {"meta": {"request_model": "m"}}}}"#,
                "client_ip",
            ),
        ];
        for (json, field) in cases {
            let error = decode(&KongDecoder::default(), json).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(field), "{json}: {error}");
        }
    }

    #[test]
    fn a_truncated_payload_is_ignored_but_the_event_is_kept() {
        let json = r#"{"started_at": 1795871407352, "consumer": {"id": "c-1"},
            "ai": {"payload": {"request": "{\"messages\": [{\"role\": \"user\", \"content\": \"Expl"},
                   "proxy": {"meta": {"request_model": "gpt-4o"}}}}"#;
        let event = decode(&KongDecoder::default(), json).unwrap();
        assert_eq!(event.prompt, None);
        assert_eq!(event.model.as_str(), "gpt-4o");
    }
}
