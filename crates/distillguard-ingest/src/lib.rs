//! Ingest decoders: from request bodies to canonical [`ApiEvent`]s, one record at a time.
//!
//! Design: framing ([`frame`]) and decoding ([`Decoder`]) are separate, so every log format gets
//! the same handling of objects, arrays, NDJSON and gzip, and the same per-record errors. A bad
//! record is reported by index and field; the good records of the same body are kept. Nothing
//! here does I/O beyond reading the bytes it is handed.

pub mod canonical;
pub mod chat;
pub mod dedup;
pub mod envoy;
pub mod fields;
pub mod frame;
pub mod kong;
pub mod litellm;
pub mod otlp;

pub use canonical::CanonicalDecoder;
pub use dedup::Deduplicator;

pub use envoy::EnvoyDecoder;
pub use frame::{decompress, frame, FrameError, RawRecord};
pub use kong::KongDecoder;
pub use otlp::{Encoding, OtlpDecoder, Signal};

pub use litellm::LitellmDecoder;

use distillguard_core::event::ApiEvent;

/// Where a batch came from; the bounded `source` label of ingest metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Canonical,
    Litellm,
    Kong,
    Envoy,
    Otlp,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Canonical,
        Source::Litellm,
        Source::Kong,
        Source::Envoy,
        Source::Otlp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Canonical => "canonical",
            Source::Litellm => "litellm",
            Source::Kong => "kong",
            Source::Envoy => "envoy",
            Source::Otlp => "otlp",
        }
    }
}

/// The bounded `reason` label of rejected records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The record is not valid JSON, or not a JSON object.
    MalformedJson,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong type or an unparsable value.
    InvalidField,
}

impl RejectReason {
    pub const ALL: [RejectReason; 3] = [
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::InvalidField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
        }
    }
}

/// Why one record was refused: what the client sees in the reply, by record index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}: {message}", field.as_deref().unwrap_or("record"))]
pub struct RecordError {
    pub reason: RejectReason,
    /// The offending field, dotted for nested ones (`params.temperature`).
    pub field: Option<String>,
    pub message: String,
}

impl RecordError {
    pub fn missing(field: &str) -> Self {
        Self {
            reason: RejectReason::MissingField,
            field: Some(field.to_string()),
            message: "required field is missing".to_string(),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            reason: RejectReason::InvalidField,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            reason: RejectReason::MalformedJson,
            field: None,
            message: message.into(),
        }
    }
}

/// A record error located in the body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    /// 0-based position of the record in the body (array element or non-empty NDJSON line).
    pub index: usize,
    /// 1-based line number for NDJSON bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(flatten)]
    pub error: RecordError,
}

/// Turns one framed JSON record into canonical events (OTLP records may carry several).
pub trait Decoder: Send + Sync {
    fn source(&self) -> Source;
    /// Decodes one record's JSON text, appending the events it carries to `out`.
    fn decode(&self, json: &str, out: &mut Vec<ApiEvent>) -> Result<(), RecordError>;

    /// Like [`Decoder::decode`], for records that carry many events (an OTLP export request):
    /// every bad event gets its own error in `errors` and the good ones still go to `out`.
    /// Returns how many records the text held. The default reports the record as a whole.
    fn decode_all(
        &self,
        json: &str,
        out: &mut Vec<ApiEvent>,
        errors: &mut Vec<RecordError>,
    ) -> Tally {
        if let Err(error) = self.decode(json, out) {
            errors.push(error);
        }
        Tally {
            records: 1,
            ignored: 0,
        }
    }
}

/// What a decoded text held, for the reply's counts: an OTLP export request holds many records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Records (log records or spans for OTLP), each either an event, a rejection or ignored.
    pub records: usize,
    /// Records that are not model calls (an OTLP HTTP span, a per-message GenAI log event).
    pub ignored: usize,
}

/// The events and errors of one body.
#[derive(Debug, Default)]
pub struct DecodeOutcome {
    /// Records found: body records, or the log records and spans of OTLP export requests.
    pub records: usize,
    /// Records that are not model calls, neither accepted nor rejected.
    pub ignored: usize,
    pub events: Vec<ApiEvent>,
    pub rejected: Vec<Rejected>,
}

/// Frames a (decompressed) body and decodes every record, keeping the good ones.
pub fn decode_body(decoder: &dyn Decoder, body: &[u8]) -> Result<DecodeOutcome, FrameError> {
    let records = frame(body)?;
    let mut outcome = DecodeOutcome {
        events: Vec::with_capacity(records.len()),
        ..DecodeOutcome::default()
    };
    let mut errors = Vec::new();
    for record in &records {
        let tally = match record.json {
            Ok(json) => decoder.decode_all(json.get(), &mut outcome.events, &mut errors),
            Err(ref message) => {
                errors.push(RecordError::malformed(message.clone()));
                Tally {
                    records: 1,
                    ignored: 0,
                }
            }
        };
        outcome.records += tally.records;
        outcome.ignored += tally.ignored;
        outcome
            .rejected
            .extend(errors.drain(..).map(|error| Rejected {
                index: record.index,
                line: record.line,
                error,
            }));
    }
    Ok(outcome)
}
