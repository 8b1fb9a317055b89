//! The canonical event: one model-API request as every decoder delivers it to the engine.
//!
//! Fields are documented in `docs/event-format.md`. The constructors here are the only way to
//! build the checked values, so the engine never sees an empty account id or a bad IP.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::EventTime;

/// Longest accepted account id, in bytes.
pub const MAX_ACCOUNT_ID_BYTES: usize = 256;
/// Longest accepted model name, in bytes.
pub const MAX_MODEL_BYTES: usize = 256;

/// Why a field value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("must not be empty")]
    Empty,
    #[error("longer than {max} bytes ({len})")]
    TooLong { max: usize, len: usize },
    #[error("not an IPv4 or IPv6 address")]
    NotAnIp,
}

fn checked_text(text: &str, max: usize) -> Result<(), FieldError> {
    if text.trim().is_empty() {
        return Err(FieldError::Empty);
    }
    if text.len() > max {
        return Err(FieldError::TooLong {
            max,
            len: text.len(),
        });
    }
    Ok(())
}

macro_rules! bounded_text_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        ///
        /// Held inline up to 24 bytes (`CompactString`): ids and model names are short, and one
        /// is decoded per event and cloned into every tick's summary and finding, so a heap
        /// string cost an allocation each time.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(CompactString);

        impl $name {
            pub fn parse(text: impl Into<CompactString>) -> Result<Self, FieldError> {
                let text = text.into();
                checked_text(&text, $max)?;
                Ok(Self(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Checkpoints read values back through the same checks as the decoders.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = CompactString::deserialize(deserializer)?;
                Self::parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}

bounded_text_newtype!(
    /// The customer account the request is billed to: the unit the per-account detectors judge.
    AccountId,
    MAX_ACCOUNT_ID_BYTES
);
bounded_text_newtype!(
    /// The model the request asked for, as the gateway names it (`gpt-4o`, `openai/gpt-4o`).
    ModelName,
    MAX_MODEL_BYTES
);

/// Parses a client IP, tolerating the `[v6]` and `v4:port` spellings gateways emit.
pub fn parse_client_ip(text: &str) -> Result<IpAddr, FieldError> {
    let trimmed = text.trim();
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Ok(socket) = trimmed.parse::<std::net::SocketAddr>() {
        return Ok(socket.ip());
    }
    let unbracketed = trimmed.trim_start_matches('[').trim_end_matches(']');
    unbracketed
        .parse::<IpAddr>()
        .map_err(|_| FieldError::NotAnIp)
}

/// Sampling and output parameters of the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

impl Params {
    pub fn is_empty(&self) -> bool {
        *self == Params::default()
    }
}

/// Token counts reported for the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
}

impl Usage {
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// One model-API request. Serialises to the canonical JSON format (`docs/event-format.md`).
///
/// `Deserialize` reads back what `Serialize` wrote (the write-ahead log keeps accepted events in
/// MessagePack); client input goes through the canonical decoder instead. A field added later
/// must be an `Option` or carry `#[serde(default)]`, so that events logged before it still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiEvent {
    pub timestamp: EventTime,
    pub account_id: AccountId,
    pub model: ModelName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_user: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<CompactString>,
    /// The user content of the request (the last user turn, or all user parts joined).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Number of messages in the request (1 for a single-turn call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<u32>,
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
    #[serde(default, skip_serializing_if = "Usage::is_empty")]
    pub usage: Usage,
    /// HTTP status of the model call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_fingerprint: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_created_at: Option<EventTime>,
    /// Kept and passed through, never interpreted by the detectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl ApiEvent {
    /// An event with only the required fields set; decoders and tests fill in the rest.
    pub fn new(timestamp: EventTime, account_id: AccountId, model: ModelName) -> Self {
        Self {
            timestamp,
            account_id,
            model,
            request_id: None,
            api_key_id: None,
            end_user: None,
            client_ip: None,
            user_agent: None,
            endpoint: None,
            prompt: None,
            system_prompt: None,
            messages: None,
            params: Params::default(),
            usage: Usage::default(),
            status: None,
            latency_ms: None,
            payment_fingerprint: None,
            account_created_at: None,
            metadata: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_must_be_non_empty_and_at_most_256_bytes() {
        assert_eq!(AccountId::parse(""), Err(FieldError::Empty));
        assert_eq!(AccountId::parse("   "), Err(FieldError::Empty));
        assert!(AccountId::parse("a".repeat(256)).is_ok());
        assert_eq!(
            AccountId::parse("a".repeat(257)),
            Err(FieldError::TooLong { max: 256, len: 257 })
        );
    }

    #[test]
    fn client_ips_accept_gateway_spellings() {
        assert_eq!(
            parse_client_ip("203.0.113.5").unwrap().to_string(),
            "203.0.113.5"
        );
        assert_eq!(
            parse_client_ip("203.0.113.5:443").unwrap().to_string(),
            "203.0.113.5"
        );
        assert_eq!(
            parse_client_ip("[2001:db8::1]").unwrap().to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_client_ip("2001:db8::1").unwrap().to_string(),
            "2001:db8::1"
        );
        assert_eq!(parse_client_ip("not-an-ip"), Err(FieldError::NotAnIp));
    }

    #[test]
    fn minimal_event_serialises_to_the_required_fields_only() {
        let event = ApiEvent::new(
            EventTime::from_epoch_ms(0).unwrap(),
            AccountId::parse("acct-1").unwrap(),
            ModelName::parse("gpt-4o").unwrap(),
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"timestamp": "1970-01-01T00:00:00.000Z", "account_id": "acct-1", "model": "gpt-4o"})
        );
    }
}
