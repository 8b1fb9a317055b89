//! OpenAI-style chat requests, as LiteLLM logs them (`messages`, `model_parameters`) and as Kong
//! logs the request payload: the prompt, the system prompt and the sampling parameters.

use std::borrow::Cow;
use std::fmt;

use distillguard_core::event::{ApiEvent, Params};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::fields::{self, read_in, Obj, Scalar};
use crate::RecordError;

/// What LiteLLM writes instead of message content when `turn_off_message_logging` is on.
pub const REDACTED: &str = "redacted-by-litellm";

/// An OpenAI-style request body, or LiteLLM's `model_parameters` (same keys, no messages).
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct ChatRequest<'a> {
    pub messages: Option<Messages<'a>>,
    /// Legacy completions.
    pub prompt: Option<Messages<'a>>,
    pub model: Option<Scalar<'a>>,
    pub temperature: Option<Scalar<'a>>,
    pub top_p: Option<Scalar<'a>>,
    pub max_tokens: Option<Scalar<'a>>,
    pub max_completion_tokens: Option<Scalar<'a>>,
    pub n: Option<Scalar<'a>>,
    pub logprobs: Option<Scalar<'a>>,
    pub top_logprobs: Option<Scalar<'a>>,
    pub seed: Option<Scalar<'a>>,
    pub stream: Option<Scalar<'a>>,
    pub user: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Message<'a> {
    role: Option<Scalar<'a>>,
    content: Option<Content<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Part<'a> {
    text: Option<Scalar<'a>>,
}

/// `messages`: a chat list, or a plain prompt string for text completions.
pub enum Messages<'a> {
    Chat(Vec<Obj<Message<'a>>>),
    Prompt(Cow<'a, str>),
    Wrong(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Messages<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(TextOrList::<Obj<Message<'a>>>::default())? {
            TextOr::Text(text) => Ok(Messages::Prompt(text)),
            TextOr::List(items) => Ok(Messages::Chat(items)),
            TextOr::Wrong(kind) => Ok(Messages::Wrong(kind)),
        }
    }
}

/// Message `content`: a string, or a list of parts whose `text`s are kept.
pub enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<Obj<Part<'a>>>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(TextOrList::<Obj<Part<'a>>>::default())? {
            TextOr::Text(text) => Ok(Content::Text(text)),
            TextOr::List(items) => Ok(Content::Parts(items)),
            TextOr::Wrong(_) => Ok(Content::Other),
        }
    }
}

enum TextOr<'a, T> {
    Text(Cow<'a, str>),
    List(Vec<T>),
    Wrong(&'static str),
}

struct TextOrList<T>(std::marker::PhantomData<T>);

impl<T> Default for TextOrList<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for TextOrList<T> {
    type Value = TextOr<'de, T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(TextOr::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(TextOr::Text(Cow::Owned(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(TextOr::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(TextOr::Wrong("an object"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(TextOr::Wrong("null"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(TextOr::Wrong("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(TextOr::Wrong("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(TextOr::Wrong("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(TextOr::Wrong("a number"))
    }
}

/// Content text, unless LiteLLM redacted it.
pub fn content_text(content: &Content<'_>) -> Option<String> {
    let text = match content {
        Content::Text(text) => text.to_string(),
        Content::Parts(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|part| match part {
                    Obj::Ok(Part {
                        text: Some(Scalar::Str(text)),
                    }) => Some(text.as_ref()),
                    _ => None,
                })
                .collect();
            texts.join("\n")
        }
        Content::Other => return None,
    };
    if text.trim().is_empty() || text == REDACTED {
        None
    } else {
        Some(text)
    }
}

/// Sets `messages`, `prompt` (the last user turn) and `system_prompt` (the first system turn).
/// Redacted content counts as a message but gives no text.
pub fn fill_messages(
    messages: &Messages<'_>,
    path: &str,
    event: &mut ApiEvent,
) -> Result<(), RecordError> {
    match messages {
        Messages::Wrong(kind) => {
            return Err(RecordError::invalid(
                path,
                format!("expected an array or a string, got {kind}"),
            ))
        }
        Messages::Prompt(text) => {
            event.messages = Some(1);
            event.prompt = content_text(&Content::Text(Cow::Borrowed(text)));
        }
        Messages::Chat(messages) => {
            event.messages = Some(u32::try_from(messages.len()).unwrap_or(u32::MAX));
            let mut last_user = None;
            for (i, message) in messages.iter().enumerate() {
                let message = message.get(|| format!("{path}[{i}]"))?;
                let role = fields::text(message.role.as_ref()).map_err(|message| {
                    RecordError::invalid(&format!("{path}[{i}].role"), message)
                })?;
                match role.as_deref() {
                    Some("system") | Some("developer") if event.system_prompt.is_none() => {
                        event.system_prompt = message.content.as_ref().and_then(content_text);
                    }
                    Some("user") => last_user = Some(message),
                    _ => {}
                }
            }
            event.prompt = last_user
                .and_then(|m| m.content.as_ref())
                .and_then(content_text);
        }
    }
    Ok(())
}

/// The sampling parameters; `path` names the object in errors.
pub fn params(p: &ChatRequest<'_>, path: &str) -> Result<Params, RecordError> {
    let mut params = Params {
        temperature: read_in(p.temperature.as_ref(), path, "temperature", fields::float)?,
        top_p: read_in(p.top_p.as_ref(), path, "top_p", fields::float)?,
        max_tokens: read_in(p.max_tokens.as_ref(), path, "max_tokens", fields::uint32)?,
        n: read_in(p.n.as_ref(), path, "n", fields::uint32)?,
        logprobs: None,
        top_logprobs: read_in(
            p.top_logprobs.as_ref(),
            path,
            "top_logprobs",
            fields::uint32,
        )?,
        seed: read_in(p.seed.as_ref(), path, "seed", fields::int)?,
        stream: read_in(p.stream.as_ref(), path, "stream", fields::boolean)?,
    };
    if params.max_tokens.is_none() {
        params.max_tokens = read_in(
            p.max_completion_tokens.as_ref(),
            path,
            "max_completion_tokens",
            fields::uint32,
        )?;
    }
    // Chat completions send `logprobs: true`; legacy completions send the number of
    // alternatives, which is what `top_logprobs` means for chat.
    match p.logprobs.as_ref() {
        Some(Scalar::Int(_) | Scalar::UInt(_)) => {
            let count = read_in(p.logprobs.as_ref(), path, "logprobs", fields::uint32)?;
            params.logprobs = count.map(|n| n > 0);
            params.top_logprobs = params.top_logprobs.or(count.filter(|n| *n > 0));
        }
        other => {
            params.logprobs = read_in(other, path, "logprobs", fields::boolean)?;
        }
    }
    Ok(params)
}
