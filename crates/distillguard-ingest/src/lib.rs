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
    /// The timestamp is further ahead of the receiver's wall clock than the allowed skew.
    FutureTimestamp,
    /// The timestamp is older than the receiver accepts (`max_event_age`).
    TooOld,
    /// The timestamp is behind the detection watermark: too late to count in its window.
    Late,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::FutureTimestamp,
        RejectReason::TooOld,
        RejectReason::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::TooOld => "too_old",
            RejectReason::Late => "late",
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
    /// For each event, the index and NDJSON line of the record it came from.
    pub origins: Vec<(usize, Option<usize>)>,
    pub rejected: Vec<Rejected>,
}

/// Frames a (decompressed) body and decodes every record, keeping the good ones.
///
/// NDJSON lines go to the decoder unchecked: its typed parse is the only parse of a good line.
/// A line the decoder refuses is then checked as JSON, so a malformed line gets the same error
/// (and a body of nothing but malformed lines the same [`FrameError`]) as [`frame`] gives.
pub fn decode_body(decoder: &dyn Decoder, body: &[u8]) -> Result<DecodeOutcome, FrameError> {
    let framed = frame::frame_lazily(body)?;
    let records = framed.records;
    let mut outcome = DecodeOutcome {
        events: Vec::with_capacity(records.len()),
        origins: Vec::with_capacity(records.len()),
        ..DecodeOutcome::default()
    };
    let mut errors = Vec::new();
    let mut any_json = false;
    for record in &records {
        let (tally, is_json) =
            decode_record(decoder, &record.json, &mut outcome.events, &mut errors);
        any_json |= is_json;
        outcome.records += tally.records;
        outcome.ignored += tally.ignored;
        let origin = (record.index, record.line);
        outcome.origins.resize(outcome.events.len(), origin);
        outcome
            .rejected
            .extend(errors.drain(..).map(|error| Rejected {
                index: record.index,
                line: record.line,
                error,
            }));
    }
    if framed.ndjson && !any_json {
        let first_error = outcome
            .rejected
            .first()
            .map(|r| r.error.message.clone())
            .unwrap_or_default();
        return Err(FrameError::Unframeable(first_error));
    }
    Ok(outcome)
}

/// Decodes one record into `out` and `errors` (left empty by the caller); says whether the
/// record was JSON at all.
fn decode_record(
    decoder: &dyn Decoder,
    json: &frame::LazyJson<'_>,
    out: &mut Vec<ApiEvent>,
    errors: &mut Vec<RecordError>,
) -> (Tally, bool) {
    let one = Tally {
        records: 1,
        ignored: 0,
    };
    let text = match json {
        frame::LazyJson::Unchecked(line) => match std::str::from_utf8(line) {
            Ok(text) => {
                let events_before = out.len();
                let tally = decoder.decode_all(text, out, errors);
                if errors.is_empty() {
                    return (tally, true);
                }
                match json.check() {
                    Ok(_) => return (tally, true),
                    Err(message) => {
                        out.truncate(events_before);
                        errors.clear();
                        errors.push(RecordError::malformed(message));
                        return (one, false);
                    }
                }
            }
            Err(_) => json.check(),
        },
        frame::LazyJson::Checked(checked) => checked.clone(),
    };
    match text {
        Ok(json) => (decoder.decode_all(json.get(), out, errors), true),
        Err(message) => {
            errors.push(RecordError::malformed(message));
            (one, false)
        }
    }
}
