//! OTLP/HTTP logs (`POST /v1/logs`) and traces (`POST /v1/traces`), JSON or protobuf, read with
//! the GenAI semantic conventions.
//!
//! One export request carries many log records or spans; each is one model call when it carries
//! GenAI attributes (`gen_ai.request.model`, `gen_ai.usage.*`, ...). The encodings share one
//! mapping onto [`ApiEvent`] ([`OtlpDecoder::genai_event`]) over attribute [`Level`]s, so a
//! record means the same whether it arrived as JSON or protobuf:
//! - [`json`]: JSON log exports, read leniently record by record, so a bad log record is named by
//!   its path (`resourceLogs[0].scopeLogs[0].logRecords[3].timeUnixNano`) and the others kept;
//! - [`proto`]: protobuf exports (logs and traces) decoded with the `prost` types generated from
//!   the official `.proto` files (`opentelemetry-proto`), and JSON trace exports read into the same
//!   types through their proto3-JSON mapping. A body that is not a valid message is refused whole
//!   (it is one message); a record whose attributes do not make an event is refused by its path.
//!
//! Records that are not model calls are counted as received and `ignored`, never rejected: a
//! service exports its HTTP and database spans next to its GenAI ones, and the per-message log
//! events of the older conventions (`gen_ai.user.message`, ...) describe a call whose span or
//! `gen_ai.client.inference.operation.details` event is the record we count.

mod json;
pub mod proto;

use distillguard_core::event::ApiEvent;
use distillguard_core::time::EventTime;
use serde::{Deserialize, Serialize};

use crate::fields::{self, EpochUnit, Scalar};
use crate::{DecodeOutcome, Decoder, FrameError, RecordError, Source, Tally};

pub use proto::{export_response, Encoding, Signal};

/// Decodes OTLP log and trace export requests. Configured under `[sources.otlp]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpDecoder {
    /// Attributes holding the account; the first one set wins.
    #[serde(deserialize_with = "fields::non_empty")]
    pub account_attributes: Vec<String>,
    /// Attribute holding the prompt text. Unset, the prompt is the last user message of the
    /// GenAI content attributes when the instrumentation captured content (`gen_ai.input.messages`,
    /// or the older `gen_ai.prompt`); most instrumentations capture none unless asked to.
    pub prompt_attribute: Option<String>,
}

impl Default for OtlpDecoder {
    fn default() -> Self {
        Self {
            account_attributes: vec!["enduser.id".to_string(), "user.id".to_string()],
            prompt_attribute: None,
        }
    }
}

impl Decoder for OtlpDecoder {
    fn source(&self) -> Source {
        Source::Otlp
    }

    /// Appends the good events and returns the first error; [`Decoder::decode_all`] reports all.
    fn decode(&self, json: &str, out: &mut Vec<ApiEvent>) -> Result<(), RecordError> {
        let mut errors = Vec::new();
        self.decode_all(json, out, &mut errors);
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn decode_all(
        &self,
        json: &str,
        out: &mut Vec<ApiEvent>,
        errors: &mut Vec<RecordError>,
    ) -> Tally {
        json::decode_logs(self, json, out, errors)
    }
}

impl OtlpDecoder {
    /// Decodes one (decompressed) export request body of `signal` in `encoding`.
    ///
    /// `records` counts log records or spans, not requests.
    pub fn decode_export(
        &self,
        signal: Signal,
        encoding: Encoding,
        body: &[u8],
    ) -> Result<DecodeOutcome, FrameError> {
        match (signal, encoding) {
            // JSON logs keep the lenient reader (and its framing: an array of requests works too).
            (Signal::Logs, Encoding::Json) => crate::decode_body(self, body),
            _ => proto::decode(self, signal, encoding, body),
        }
    }

    /// The event of one model call described by `levels` (the record's own attributes first, then
    /// its resource's), at `time`. `path` names the record in errors.
    fn genai_event(
        &self,
        levels: &[&dyn Level],
        time: EventTime,
        path: &dyn Fn() -> String,
    ) -> Result<ApiEvent, RecordError> {
        let attrs = Levels(levels);
        let mut account = None;
        for key in &self.account_attributes {
            if let Some((text, level)) = attrs.read(key, fields::owned_text)? {
                account = Some(fields::account(&text, &level.path(key))?);
                break;
            }
        }
        let account_id = account.ok_or_else(|| {
            let named: Vec<String> = self
                .account_attributes
                .iter()
                .map(|key| format!("{}.attributes[\"{key}\"]", path()))
                .collect();
            fields::no_account(&named)
        })?;

        let mut model = None;
        for key in MODEL_KEYS {
            if let Some((text, level)) = attrs.read(key, fields::owned_text)? {
                model = Some(fields::model(&text, &level.path(key))?);
                break;
            }
        }
        let model = model.ok_or_else(|| {
            RecordError::missing(&format!("{}.attributes[\"gen_ai.request.model\"]", path()))
        })?;

        let mut event = ApiEvent::new(time, account_id, model);
        event.request_id = attrs.value("gen_ai.response.id", fields::owned_text)?;
        event.client_ip = attrs.value("client.address", fields::client_ip)?;
        event.user_agent = attrs.value("user_agent.original", fields::compact_text)?;
        event.status = attrs.value("http.response.status_code", fields::status)?;
        event.endpoint = attrs.first(&["url.path", "http.route"], fields::compact_text)?;
        event.usage.prompt_tokens = attrs.first(
            &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
            fields::uint32,
        )?;
        event.usage.completion_tokens = attrs.first(
            &[
                "gen_ai.usage.output_tokens",
                "gen_ai.usage.completion_tokens",
            ],
            fields::uint32,
        )?;
        event.usage.cached_tokens =
            attrs.value("gen_ai.usage.cache_read.input_tokens", fields::uint32)?;
        event.params.temperature = attrs.value("gen_ai.request.temperature", fields::float)?;
        event.params.top_p = attrs.value("gen_ai.request.top_p", fields::float)?;
        event.params.max_tokens = attrs.value("gen_ai.request.max_tokens", fields::uint32)?;
        event.params.n = attrs.value("gen_ai.request.choice.count", fields::uint32)?;
        event.params.seed = attrs.value("gen_ai.request.seed", fields::int)?;
        event.prompt = match &self.prompt_attribute {
            Some(key) => attrs.value(key, fields::owned_text)?,
            None => prompt_from_messages(&attrs)?,
        };
        Ok(event)
    }
}

/// Where the model of a call is found, in order.
const MODEL_KEYS: [&str; 2] = ["gen_ai.request.model", "gen_ai.response.model"];

/// Operations of the GenAI conventions that are not one model call (an agent run wraps the chat
/// spans that are; a tool call is the application's own work).
const NOT_MODEL_CALLS: [&str; 4] = [
    "invoke_agent",
    "create_agent",
    "execute_tool",
    "invoke_workflow",
];

/// Per-message log events of the GenAI conventions up to v1.36: content of a call counted elsewhere.
const MESSAGE_EVENTS: [&str; 6] = [
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
    "gen_ai.evaluation.result",
];

/// Whether a span is one model call: it names a model or a GenAI operation that is a call.
fn is_model_call(attrs: &dyn Level) -> Result<bool, RecordError> {
    if let Some(operation) = attrs.find("gen_ai.operation.name")? {
        if let Scalar::Str(name) = &operation {
            if NOT_MODEL_CALLS.contains(&name.as_ref()) {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    for key in MODEL_KEYS {
        if attrs.find(key)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a log record is a per-message content event rather than a call.
fn is_message_event(event_name: Option<&str>, attrs: &dyn Level) -> Result<bool, RecordError> {
    let name = match event_name.filter(|n| !n.is_empty()) {
        Some(name) => Some(name.to_string()),
        // SDKs before `LogRecord.event_name` existed put it in the `event.name` attribute.
        None => match attrs.find("event.name")? {
            Some(Scalar::Str(name)) => Some(name.into_owned()),
            _ => None,
        },
    };
    Ok(name.is_some_and(|name| MESSAGE_EVENTS.contains(&name.as_str())))
}

/// The first non-zero of the record's time and its observed time (`0` means unset in OTLP).
fn record_time(
    candidates: [(Option<&Scalar<'_>>, &str); 2],
    path: &dyn Fn() -> String,
) -> Result<EventTime, RecordError> {
    for (value, key) in candidates {
        let read = fields::uint64(value)
            .map_err(|message| RecordError::invalid(&format!("{}.{key}", path()), message))?;
        if let Some(ns) = read.filter(|ns| *ns > 0) {
            if let Some(time) = fields::epoch(Some(&Scalar::UInt(ns)), EpochUnit::Nanos)
                .map_err(|message| RecordError::invalid(&format!("{}.{key}", path()), message))?
            {
                return Ok(time);
            }
        }
    }
    Err(RecordError::missing(&format!(
        "{}.{}",
        path(),
        candidates[0].1
    )))
}

/// The last user message's text in the GenAI content attributes, when captured.
fn prompt_from_messages(attrs: &Levels<'_>) -> Result<Option<String>, RecordError> {
    for key in ["gen_ai.input.messages", "gen_ai.prompt"] {
        if let Some(text) = attrs.value(key, fields::owned_text)? {
            return Ok(last_user_text(&text).or(Some(text).filter(|_| key == "gen_ai.prompt")));
        }
    }
    Ok(None)
}

/// The text of the last `user` message of a JSON message list, in either the v1.37 shape
/// (`[{"role": "user", "parts": [{"type": "text", "content": "..."}]}]`) or the OpenAI shape
/// (`[{"role": "user", "content": "..."}]`).
pub fn last_user_text(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Message {
        role: Option<String>,
        #[serde(default)]
        parts: Vec<Part>,
        content: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: Option<String>,
        content: Option<serde_json::Value>,
        text: Option<String>,
    }
    let messages: Vec<Message> = serde_json::from_str(json).ok()?;
    let user = messages
        .iter()
        .rev()
        .find(|m| m.role.as_deref() == Some("user"))?;
    let mut texts: Vec<String> = Vec::new();
    for part in &user.parts {
        if part.kind.as_deref().is_some_and(|k| k != "text") {
            continue;
        }
        match (&part.content, &part.text) {
            (Some(serde_json::Value::String(s)), _) | (None, Some(s)) => texts.push(s.clone()),
            _ => {}
        }
    }
    match &user.content {
        Some(serde_json::Value::String(s)) => texts.push(s.clone()),
        // OpenAI's content parts: [{"type": "text", "text": "..."}].
        Some(serde_json::Value::Array(items)) => texts.extend(
            items
                .iter()
                .filter_map(|item| item.get("text")?.as_str().map(str::to_string)),
        ),
        _ => {}
    }
    Some(texts.join("\n")).filter(|t| !t.is_empty())
}

/// One level of attributes (a record's own, or its resource's) and how to name one in an error.
pub(crate) trait Level {
    /// The value set for `key` at this level, if any (a compound value reads as an error).
    fn find(&self, key: &str) -> Result<Option<Scalar<'_>>, RecordError>;
    /// The path of `key` at this level, for errors.
    fn path(&self, key: &str) -> String;
}

/// A record's attribute levels, nearest first.
struct Levels<'l>(&'l [&'l dyn Level]);

impl<'l> Levels<'l> {
    /// Reads `key` with `read` at the nearest level that sets it, with that level (for naming it).
    fn read<T>(
        &self,
        key: &str,
        read: impl Fn(Option<&Scalar<'_>>) -> Result<Option<T>, String>,
    ) -> Result<Option<(T, &'l dyn Level)>, RecordError> {
        for level in self.0 {
            let Some(value) = level.find(key)? else {
                continue;
            };
            match read(Some(&value)) {
                Ok(Some(parsed)) => return Ok(Some((parsed, *level))),
                Ok(None) => continue,
                Err(message) => return Err(RecordError::invalid(&level.path(key), message)),
            }
        }
        Ok(None)
    }

    fn value<T>(
        &self,
        key: &str,
        read: impl Fn(Option<&Scalar<'_>>) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, RecordError> {
        Ok(self.read(key, read)?.map(|(value, _)| value))
    }

    /// The first of `keys` that is set (current convention first, then older names).
    fn first<T>(
        &self,
        keys: &[&str],
        read: impl Fn(Option<&Scalar<'_>>) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, RecordError> {
        for key in keys {
            if let Some(value) = self.value(key, &read)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_user_message_is_read_in_both_message_shapes() {
        let v137 = r#"[{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
            {"role": "user", "parts": [{"type": "text", "content": "Derive it."},
                {"type": "uri", "uri": "https://example.com/a.png"}]}]"#;
        assert_eq!(last_user_text(v137).as_deref(), Some("Derive it."));
        let openai = r#"[{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]}]"#;
        assert_eq!(last_user_text(openai).as_deref(), Some("second"));
        assert_eq!(
            last_user_text(r#"[{"role": "assistant", "content": "x"}]"#),
            None
        );
        assert_eq!(last_user_text("not json"), None);
    }
}
