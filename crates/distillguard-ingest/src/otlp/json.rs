//! OTLP/HTTP JSON log exports, read leniently: each bad log record is reported by its path
//! (`resourceLogs[0].scopeLogs[0].logRecords[3].timeUnixNano`) and the good ones are kept.
//! Attribute values are `AnyValue` objects; 64-bit integers arrive as decimal strings (proto3 JSON)
//! or numbers. Resource attributes apply to every record below them; a record's own attribute wins.

use distillguard_core::event::ApiEvent;
use serde::Deserialize;

use super::{is_message_event, record_time, Level, OtlpDecoder};
use crate::fields::{self, List, Obj, Scalar};
use crate::{RecordError, Tally};

/// Decodes one JSON `ExportLogsServiceRequest`, appending events and per-record errors.
pub(super) fn decode_logs(
    decoder: &OtlpDecoder,
    json: &str,
    out: &mut Vec<ApiEvent>,
    errors: &mut Vec<RecordError>,
) -> Tally {
    let mut tally = Tally::default();
    let request: ExportRequest<'_> = match fields::parse_record(json) {
        Ok(request) => request,
        Err(error) => {
            errors.push(error);
            return Tally {
                records: 1,
                ignored: 0,
            };
        }
    };
    let Some(resource_logs) = &request.resource_logs else {
        return tally; // An empty export is valid OTLP.
    };
    let resource_logs = match resource_logs.items(|| "resourceLogs".to_string()) {
        Ok(items) => items,
        Err(error) => {
            errors.push(error);
            return Tally {
                records: 1,
                ignored: 0,
            };
        }
    };
    for (r, resource_log) in resource_logs.iter().enumerate() {
        if let Err(error) = resource(decoder, r, resource_log, out, errors, &mut tally) {
            errors.push(error);
        }
    }
    tally
}

fn resource(
    decoder: &OtlpDecoder,
    r: usize,
    resource_log: &Obj<ResourceLogs<'_>>,
    out: &mut Vec<ApiEvent>,
    errors: &mut Vec<RecordError>,
    tally: &mut Tally,
) -> Result<(), RecordError> {
    let resource_log = resource_log.get(|| format!("resourceLogs[{r}]"))?;
    let resource_attributes = match &resource_log.resource {
        Some(resource) => {
            let resource = resource.get(|| format!("resourceLogs[{r}].resource"))?;
            attributes(&resource.attributes, || {
                format!("resourceLogs[{r}].resource.attributes")
            })?
        }
        None => &[],
    };
    let resource_scope = Scope {
        attributes: resource_attributes,
        path: Box::new(move |key: &str| {
            format!("resourceLogs[{r}].resource.attributes[\"{key}\"]")
        }),
    };
    let Some(scope_logs) = &resource_log.scope_logs else {
        return Ok(());
    };
    for (s, scope_log) in scope_logs
        .items(|| format!("resourceLogs[{r}].scopeLogs"))?
        .iter()
        .enumerate()
    {
        let prefix = || format!("resourceLogs[{r}].scopeLogs[{s}]");
        let records = match scope_log.get(prefix) {
            Ok(scope_log) => match &scope_log.log_records {
                Some(records) => records.items(|| format!("{}.logRecords", prefix())),
                None => Ok(&[][..]),
            },
            Err(error) => Err(error),
        };
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                tally.records += 1;
                errors.push(error);
                continue;
            }
        };
        for (l, record) in records.iter().enumerate() {
            tally.records += 1;
            let path = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{l}]");
            match event(decoder, record, &resource_scope, &path) {
                Ok(Some(event)) => out.push(event),
                Ok(None) => tally.ignored += 1,
                Err(error) => errors.push(error),
            }
        }
    }
    Ok(())
}

/// The event of one log record, or `None` for a per-message content event.
fn event(
    decoder: &OtlpDecoder,
    record: &Obj<LogRecord<'_>>,
    resource: &Scope<'_, '_>,
    path: &dyn Fn() -> String,
) -> Result<Option<ApiEvent>, RecordError> {
    let record = record.get(path)?;
    let own = Scope {
        attributes: attributes(&record.attributes, || format!("{}.attributes", path()))?,
        path: Box::new(|key: &str| format!("{}.attributes[\"{key}\"]", path())),
    };
    let event_name = fields::text(record.event_name.as_ref()).ok().flatten();
    if is_message_event(event_name.as_deref(), &own)? {
        return Ok(None);
    }
    let time = record_time(
        [
            (record.time_unix_nano.as_ref(), "timeUnixNano"),
            (
                record.observed_time_unix_nano.as_ref(),
                "observedTimeUnixNano",
            ),
        ],
        path,
    )?;
    decoder.genai_event(&[&own, resource], time, path).map(Some)
}

/// Attributes of one level (resource or record) and how to name one of them in an error.
struct Scope<'s, 'a> {
    attributes: &'s [Obj<KeyValue<'a>>],
    path: Box<dyn Fn(&str) -> String + 's>,
}

impl Level for Scope<'_, '_> {
    /// The last value set for `key` (OTLP forbids duplicates; the last one is as good as any).
    fn find(&self, key: &str) -> Result<Option<Scalar<'_>>, RecordError> {
        let mut found = None;
        for kv in self.attributes {
            let Obj::Ok(kv) = kv else { continue };
            if !matches!(&kv.key, Some(Scalar::Str(k)) if k == key) {
                continue;
            }
            found = match &kv.value {
                None => None,
                Some(value) => value
                    .get(|| (self.path)(key))?
                    .scalar()
                    .map_err(|message| RecordError::invalid(&(self.path)(key), message))?,
            };
        }
        Ok(found.cloned())
    }

    fn path(&self, key: &str) -> String {
        (self.path)(key)
    }
}

fn attributes<'s, 'a>(
    list: &'s Option<List<Obj<KeyValue<'a>>>>,
    path: impl FnOnce() -> String,
) -> Result<&'s [Obj<KeyValue<'a>>], RecordError> {
    match list {
        Some(list) => list.items(path),
        None => Ok(&[]),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
struct ExportRequest<'a> {
    resource_logs: Option<List<Obj<ResourceLogs<'a>>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
struct ResourceLogs<'a> {
    resource: Option<Obj<Resource<'a>>>,
    scope_logs: Option<List<Obj<ScopeLogs<'a>>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
struct Resource<'a> {
    attributes: Option<List<Obj<KeyValue<'a>>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
struct ScopeLogs<'a> {
    log_records: Option<List<Obj<LogRecord<'a>>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
struct LogRecord<'a> {
    event_name: Option<Scalar<'a>>,
    time_unix_nano: Option<Scalar<'a>>,
    observed_time_unix_nano: Option<Scalar<'a>>,
    attributes: Option<List<Obj<KeyValue<'a>>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
struct KeyValue<'a> {
    key: Option<Scalar<'a>>,
    value: Option<Obj<AnyValue<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
struct AnyValue<'a> {
    string_value: Option<Scalar<'a>>,
    int_value: Option<Scalar<'a>>,
    double_value: Option<Scalar<'a>>,
    bool_value: Option<Scalar<'a>>,
    array_value: Option<serde::de::IgnoredAny>,
    kvlist_value: Option<serde::de::IgnoredAny>,
    bytes_value: Option<serde::de::IgnoredAny>,
}

impl<'a> AnyValue<'a> {
    /// The single value inside; arrays, maps and bytes are not interpreted.
    fn scalar(&self) -> Result<Option<&Scalar<'a>>, String> {
        let value = self
            .string_value
            .as_ref()
            .or(self.int_value.as_ref())
            .or(self.double_value.as_ref())
            .or(self.bool_value.as_ref());
        if value.is_none()
            && (self.array_value.is_some()
                || self.kvlist_value.is_some()
                || self.bytes_value.is_some())
        {
            return Err("expected a string, int, double or bool value".to_string());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoder, RejectReason};

    fn record(attributes: &str, time: &str) -> String {
        format!(
            r#"{{"resourceLogs": [{{"resource": {{"attributes": [
                {{"key": "service.name", "value": {{"stringValue": "chat-api"}}}}]}},
              "scopeLogs": [{{"logRecords": [{{"timeUnixNano": {time}, "attributes": [{attributes}]}}]}}]}}]}}"#
        )
    }

    fn decode_all(decoder: &OtlpDecoder, json: &str) -> (Vec<ApiEvent>, Vec<RecordError>) {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        decoder.decode_all(json, &mut out, &mut errors);
        (out, errors)
    }

    const GOOD: &str = r#"{"key": "enduser.id", "value": {"stringValue": "acct-1"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}"#;

    #[test]
    fn any_values_of_every_kind_are_read() {
        let attrs = format!(
            r#"{GOOD}, {{"key": "gen_ai.usage.input_tokens", "value": {{"intValue": "31"}}}},
            {{"key": "gen_ai.usage.output_tokens", "value": {{"intValue": 17}}}},
            {{"key": "gen_ai.request.temperature", "value": {{"doubleValue": 0.7}}}},
            {{"key": "gen_ai.request.choice.count", "value": {{"intValue": "4"}}}},
            {{"key": "http.response.status_code", "value": {{"intValue": "200"}}}},
            {{"key": "stream", "value": {{"boolValue": true}}}}"#
        );
        let (events, errors) = decode_all(
            &OtlpDecoder::default(),
            &record(&attrs, "\"1795871407352644000\""),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let event = &events[0];
        assert_eq!(event.account_id.as_str(), "acct-1");
        assert_eq!(event.timestamp.epoch_ms(), 1_795_871_407_352);
        assert_eq!(event.usage.prompt_tokens, Some(31));
        assert_eq!(event.usage.completion_tokens, Some(17));
        assert_eq!(event.params.temperature, Some(0.7));
        assert_eq!(event.params.n, Some(4));
        assert_eq!(event.status, Some(200));
    }

    #[test]
    fn an_unset_time_falls_back_to_the_observed_time() {
        let json = format!(
            r#"{{"resourceLogs": [{{"scopeLogs": [{{"logRecords": [{{"timeUnixNano": "0",
            "observedTimeUnixNano": "1795871407000000000", "attributes": [{GOOD}]}}]}}]}}]}}"#
        );
        let (events, errors) = decode_all(&OtlpDecoder::default(), &json);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events[0].timestamp.epoch_ms(), 1_795_871_407_000);
    }

    #[test]
    fn bad_attributes_are_named_by_path_and_key() {
        let attrs = format!(
            r#"{GOOD}, {{"key": "gen_ai.usage.output_tokens", "value": {{"intValue": "many"}}}}"#
        );
        let (events, errors) = decode_all(
            &OtlpDecoder::default(),
            &record(&attrs, "\"1795871407000000000\""),
        );
        assert!(events.is_empty());
        assert_eq!(
            errors[0].field.as_deref(),
            Some("resourceLogs[0].scopeLogs[0].logRecords[0].attributes[\"gen_ai.usage.output_tokens\"]")
        );
        let (_, errors) = decode_all(&OtlpDecoder::default(), &record(GOOD, "\"soon\""));
        assert_eq!(
            errors[0].field.as_deref(),
            Some("resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano")
        );
        assert_eq!(errors[0].reason, RejectReason::InvalidField);
    }

    #[test]
    fn the_first_error_is_what_decode_returns() {
        let json = record(GOOD, "null");
        let mut out = Vec::new();
        let error = OtlpDecoder::default().decode(&json, &mut out).unwrap_err();
        assert_eq!(error.reason, RejectReason::MissingField);
        assert_eq!(
            error.field.as_deref(),
            Some("resourceLogs[0].scopeLogs[0].logRecords[0].timeUnixNano")
        );
    }

    #[test]
    fn an_empty_export_is_valid_and_a_wrong_shape_is_named() {
        assert_eq!(decode_all(&OtlpDecoder::default(), "{}").1, vec![]);
        let (_, errors) = decode_all(&OtlpDecoder::default(), r#"{"resourceLogs": {"a": 1}}"#);
        assert_eq!(errors[0].field.as_deref(), Some("resourceLogs"));
        let (_, errors) = decode_all(&OtlpDecoder::default(), "[1]");
        assert_eq!(errors[0].reason, RejectReason::MalformedJson);
    }
}
