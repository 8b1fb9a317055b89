//! OTLP exports through the types generated from the official `.proto` files
//! (`opentelemetry-proto`): protobuf logs and traces, and JSON traces (proto3-JSON mapping).
//!
//! A body is one export request: if it does not decode, the whole request is refused (400), as an
//! OTLP receiver must. Once decoded, every log record or span is judged on its own and named by
//! its path in errors, like the lenient JSON log reader does.

use std::borrow::Cow;

use distillguard_core::event::ApiEvent;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde::de::DeserializeOwned;

use super::{
    is_message_event, is_model_call, prompt_from_messages, record_time, Level, Levels, OtlpDecoder,
};
use crate::fields::{self, Scalar};
use crate::{DecodeOutcome, FrameError, RecordError, Rejected};

/// Which OTLP export a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
}

/// How an OTLP body is encoded (OTLP/HTTP allows both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    /// The encoding a media type (without parameters, lower case) names, if OTLP allows it.
    pub fn from_media_type(essence: &str) -> Option<Self> {
        match essence {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }
}

pub(super) fn decode(
    decoder: &OtlpDecoder,
    signal: Signal,
    encoding: Encoding,
    body: &[u8],
) -> Result<DecodeOutcome, FrameError> {
    let mut outcome = DecodeOutcome::default();
    let mut errors = Vec::new();
    let parsed = match signal {
        Signal::Logs => parse(encoding, body, "OTLP ExportLogsServiceRequest")
            .map(|request| logs(decoder, &request, &mut outcome, &mut errors)),
        Signal::Traces => parse(encoding, body, "OTLP ExportTraceServiceRequest")
            .map(|request| traces(decoder, &request, &mut outcome, &mut errors)),
    };
    match parsed {
        Ok(()) => {}
        // Valid JSON of another shape is one bad record, as the lenient JSON log reader has it.
        Err(Unparsed::Shape(message)) => {
            outcome.records += 1;
            errors.push(RecordError::malformed(message));
        }
        Err(Unparsed::Body(error)) => return Err(error),
    }
    // The whole body is one record of the request (index 0); the path locates the log or span.
    outcome.rejected = errors
        .into_iter()
        .map(|error| Rejected {
            index: 0,
            line: None,
            error,
        })
        .collect();
    Ok(outcome)
}

/// The protobuf `Export*ServiceResponse` for a request of `signal` with `rejected` records;
/// `partial_success` is set only when something was rejected, as the specification asks.
pub fn export_response(signal: Signal, rejected: usize, error_message: String) -> Vec<u8> {
    let rejected = i64::try_from(rejected).unwrap_or(i64::MAX);
    let partial = rejected > 0;
    match signal {
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: partial.then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: partial.then_some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message,
            }),
        }
        .encode_to_vec(),
    }
}

/// Why a body did not decode as an export request.
enum Unparsed {
    /// Not a message at all (not protobuf, not JSON, empty JSON): the request is refused.
    Body(FrameError),
    /// JSON, but not of the request's shape.
    Shape(String),
}

fn parse<M: Message + Default + DeserializeOwned>(
    encoding: Encoding,
    body: &[u8],
    message: &'static str,
) -> Result<M, Unparsed> {
    let bad = |error: String| Unparsed::Body(FrameError::BadMessage { message, error });
    match encoding {
        // An empty protobuf body is a valid empty request.
        Encoding::Protobuf => M::decode(body).map_err(|e| bad(e.to_string())),
        Encoding::Json if body.trim_ascii().is_empty() => Err(Unparsed::Body(FrameError::Empty)),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Unparsed::Shape(format!("not an {message}: {e}")),
            _ => bad(e.to_string()),
        }),
    }
}

fn logs(
    decoder: &OtlpDecoder,
    request: &ExportLogsServiceRequest,
    outcome: &mut DecodeOutcome,
    errors: &mut Vec<RecordError>,
) {
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let resource = resource_level(
            resource_logs.resource.as_ref().map(|r| &r.attributes[..]),
            format!("resourceLogs[{r}]"),
        );
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            for (l, record) in scope_logs.log_records.iter().enumerate() {
                let path = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{l}]");
                let result = log_event(decoder, record, &resource, &path);
                settle(result, outcome, errors);
            }
        }
    }
}

fn traces(
    decoder: &OtlpDecoder,
    request: &ExportTraceServiceRequest,
    outcome: &mut DecodeOutcome,
    errors: &mut Vec<RecordError>,
) {
    for (r, resource_spans) in request.resource_spans.iter().enumerate() {
        let resource = resource_level(
            resource_spans.resource.as_ref().map(|r| &r.attributes[..]),
            format!("resourceSpans[{r}]"),
        );
        for (s, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            for (i, span) in scope_spans.spans.iter().enumerate() {
                let path = || format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                let result = span_event(decoder, span, &resource, &path);
                settle(result, outcome, errors);
            }
        }
    }
}

/// Counts one record and files its event, its error, or it as ignored.
fn settle(
    result: Result<Option<ApiEvent>, RecordError>,
    outcome: &mut DecodeOutcome,
    errors: &mut Vec<RecordError>,
) {
    outcome.records += 1;
    match result {
        Ok(Some(event)) => outcome.events.push(event),
        Ok(None) => outcome.ignored += 1,
        Err(error) => errors.push(error),
    }
}

fn log_event(
    decoder: &OtlpDecoder,
    record: &LogRecord,
    resource: &ProtoLevel<'_>,
    path: &dyn Fn() -> String,
) -> Result<Option<ApiEvent>, RecordError> {
    let own = own_level(&record.attributes, path);
    if is_message_event(Some(&record.event_name), &own)? {
        return Ok(None);
    }
    let time = record_time(
        [
            (Some(&Scalar::UInt(record.time_unix_nano)), "timeUnixNano"),
            (
                Some(&Scalar::UInt(record.observed_time_unix_nano)),
                "observedTimeUnixNano",
            ),
        ],
        path,
    )?;
    decoder.genai_event(&[&own, resource], time, path).map(Some)
}

/// The event of a span that is a model call; other spans are `None`. A span is timed by its start
/// (when the request was made), as gateway logs are.
fn span_event(
    decoder: &OtlpDecoder,
    span: &Span,
    resource: &ProtoLevel<'_>,
    path: &dyn Fn() -> String,
) -> Result<Option<ApiEvent>, RecordError> {
    let own = own_level(&span.attributes, path);
    if !is_model_call(&own)? {
        return Ok(None);
    }
    let time = record_time(
        [
            (
                Some(&Scalar::UInt(span.start_time_unix_nano)),
                "startTimeUnixNano",
            ),
            (
                Some(&Scalar::UInt(span.end_time_unix_nano)),
                "endTimeUnixNano",
            ),
        ],
        path,
    )?;
    let mut event = decoder.genai_event(&[&own, resource], time, path)?;
    if event.prompt.is_none() {
        event.prompt = prompt_from_span_events(decoder, span, path)?;
    }
    Ok(Some(event))
}

/// The prompt carried by the span's events, the last one that has it: `gen_ai.input.messages` on
/// `gen_ai.client.inference.operation.details` (v1.37+), `content` on `gen_ai.user.message`, or
/// `gen_ai.prompt` on `gen_ai.content.prompt` (before v1.28); the configured attribute if set.
fn prompt_from_span_events(
    decoder: &OtlpDecoder,
    span: &Span,
    path: &dyn Fn() -> String,
) -> Result<Option<String>, RecordError> {
    let mut prompt = None;
    for (e, span_event) in span.events.iter().enumerate() {
        let level = ProtoLevel {
            attributes: &span_event.attributes,
            path: Box::new(move |key: &str| {
                format!("{}.events[{e}].attributes[\"{key}\"]", path())
            }),
        };
        let levels = Levels(&[&level]);
        let found = match (&decoder.prompt_attribute, span_event.name.as_str()) {
            (Some(key), _) => levels.value(key, fields::owned_text)?,
            (None, "gen_ai.user.message") => levels.value("content", fields::owned_text)?,
            (None, _) => prompt_from_messages(&levels)?,
        };
        if found.is_some() {
            prompt = found;
        }
    }
    Ok(prompt)
}

/// Attributes of one level of a generated message, and how to name one in an error.
struct ProtoLevel<'a> {
    attributes: &'a [KeyValue],
    path: Box<dyn Fn(&str) -> String + 'a>,
}

fn resource_level(attributes: Option<&[KeyValue]>, prefix: String) -> ProtoLevel<'_> {
    ProtoLevel {
        attributes: attributes.unwrap_or_default(),
        path: Box::new(move |key: &str| format!("{prefix}.resource.attributes[\"{key}\"]")),
    }
}

fn own_level<'a>(attributes: &'a [KeyValue], path: &'a dyn Fn() -> String) -> ProtoLevel<'a> {
    ProtoLevel {
        attributes,
        path: Box::new(move |key: &str| format!("{}.attributes[\"{key}\"]", path())),
    }
}

impl Level for ProtoLevel<'_> {
    /// The last value set for `key` (OTLP forbids duplicates; the last one is as good as any).
    fn find(&self, key: &str) -> Result<Option<Scalar<'_>>, RecordError> {
        let Some(kv) = self.attributes.iter().rev().find(|kv| kv.key == key) else {
            return Ok(None);
        };
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            return Ok(None);
        };
        Ok(Some(match value {
            any_value::Value::StringValue(s) => Scalar::Str(Cow::Borrowed(s)),
            any_value::Value::BoolValue(b) => Scalar::Bool(*b),
            any_value::Value::IntValue(i) => Scalar::Int(*i),
            any_value::Value::DoubleValue(f) => Scalar::Float(*f),
            _ => {
                return Err(RecordError::invalid(
                    &(self.path)(key),
                    "expected a string, int, double or bool value",
                ))
            }
        }))
    }

    fn path(&self, key: &str) -> String {
        (self.path)(key)
    }
}
