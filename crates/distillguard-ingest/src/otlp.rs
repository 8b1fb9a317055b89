//! OTLP/HTTP logs, JSON encoding (`POST /v1/logs`), read with the GenAI semantic conventions.
//!
//! One framed record is an `ExportLogsServiceRequest` carrying many log records, so this decoder
//! implements [`Decoder::decode_all`]: each bad log record is reported by its path
//! (`resourceLogs[0].scopeLogs[0].logRecords[3].timeUnixNano`) and the good ones are kept.
//! Attribute values are `AnyValue` objects; 64-bit integers arrive as decimal strings (proto3 JSON)
//! or numbers. Resource attributes apply to every record below them; a record's own attribute wins.

use distillguard_core::event::ApiEvent;
use serde::{Deserialize, Serialize};

use crate::fields::{self, EpochUnit, List, Obj, Scalar};
use crate::{Decoder, RecordError, Source};

/// Decodes OTLP log export requests. Configured under `[sources.otlp]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpDecoder {
    /// Attributes holding the account; the first one set wins.
    #[serde(deserialize_with = "fields::non_empty")]
    pub account_attributes: Vec<String>,
    /// Attribute holding the prompt text, if the instrumentation records it (off by default).
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

    fn decode_all(&self, json: &str, out: &mut Vec<ApiEvent>, errors: &mut Vec<RecordError>) {
        let request: ExportRequest<'_> = match fields::parse_record(json) {
            Ok(request) => request,
            Err(error) => return errors.push(error),
        };
        let Some(resource_logs) = &request.resource_logs else {
            return; // An empty export is valid OTLP.
        };
        let resource_logs = match resource_logs.items(|| "resourceLogs".to_string()) {
            Ok(items) => items,
            Err(error) => return errors.push(error),
        };
        for (r, resource_log) in resource_logs.iter().enumerate() {
            if let Err(error) = self.resource(r, resource_log, out, errors) {
                errors.push(error);
            }
        }
    }
}

impl OtlpDecoder {
    fn resource(
        &self,
        r: usize,
        resource_log: &Obj<ResourceLogs<'_>>,
        out: &mut Vec<ApiEvent>,
        errors: &mut Vec<RecordError>,
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
                    errors.push(error);
                    continue;
                }
            };
            for (l, record) in records.iter().enumerate() {
                let path = || format!("resourceLogs[{r}].scopeLogs[{s}].logRecords[{l}]");
                match self.event(record, &resource_scope, &path) {
                    Ok(event) => out.push(event),
                    Err(error) => errors.push(error),
                }
            }
        }
        Ok(())
    }

    fn event(
        &self,
        record: &Obj<LogRecord<'_>>,
        resource: &Scope<'_, '_>,
        path: &dyn Fn() -> String,
    ) -> Result<ApiEvent, RecordError> {
        let record = record.get(path)?;
        let own = Scope {
            attributes: attributes(&record.attributes, || format!("{}.attributes", path()))?,
            path: Box::new(|key: &str| format!("{}.attributes[\"{key}\"]", path())),
        };
        let attrs = Attributes {
            own: &own,
            resource,
        };

        // "0" means unset in OTLP; fall back to the time the collector saw the record.
        let mut timestamp = None;
        for (value, key) in [
            (&record.time_unix_nano, "timeUnixNano"),
            (&record.observed_time_unix_nano, "observedTimeUnixNano"),
        ] {
            let read = fields::uint64(value.as_ref())
                .map_err(|message| RecordError::invalid(&format!("{}.{key}", path()), message))?;
            if let Some(ns) = read.filter(|ns| *ns > 0) {
                let time = fields::epoch(Some(&Scalar::UInt(ns)), EpochUnit::Nanos).map_err(
                    |message| RecordError::invalid(&format!("{}.{key}", path()), message),
                )?;
                timestamp = time;
                break;
            }
        }
        let timestamp =
            timestamp.ok_or_else(|| RecordError::missing(&format!("{}.timeUnixNano", path())))?;

        let mut account = None;
        for key in &self.account_attributes {
            if let Some((text, scope)) = attrs.read(key, fields::text)? {
                account = Some(fields::account(&text, &(scope.path)(key))?);
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
        for key in ["gen_ai.request.model", "gen_ai.response.model"] {
            if let Some((text, scope)) = attrs.read(key, fields::text)? {
                model = Some(fields::model(&text, &(scope.path)(key))?);
                break;
            }
        }
        let model = model.ok_or_else(|| {
            RecordError::missing(&format!("{}.attributes[\"gen_ai.request.model\"]", path()))
        })?;

        let mut event = ApiEvent::new(timestamp, account_id, model);
        event.request_id = attrs.value("gen_ai.response.id", fields::owned_text)?;
        event.client_ip = attrs.value("client.address", fields::client_ip)?;
        event.user_agent = attrs.value("user_agent.original", fields::owned_text)?;
        event.status = attrs.value("http.response.status_code", fields::status)?;
        event.endpoint = attrs.value("url.path", fields::owned_text)?;
        if event.endpoint.is_none() {
            event.endpoint = attrs.value("http.route", fields::owned_text)?;
        }
        event.usage.prompt_tokens = attrs.value("gen_ai.usage.input_tokens", fields::uint32)?;
        if event.usage.prompt_tokens.is_none() {
            event.usage.prompt_tokens =
                attrs.value("gen_ai.usage.prompt_tokens", fields::uint32)?;
        }
        event.usage.completion_tokens =
            attrs.value("gen_ai.usage.output_tokens", fields::uint32)?;
        if event.usage.completion_tokens.is_none() {
            event.usage.completion_tokens =
                attrs.value("gen_ai.usage.completion_tokens", fields::uint32)?;
        }
        event.usage.cached_tokens =
            attrs.value("gen_ai.usage.cache_read.input_tokens", fields::uint32)?;
        event.params.temperature = attrs.value("gen_ai.request.temperature", fields::float)?;
        event.params.top_p = attrs.value("gen_ai.request.top_p", fields::float)?;
        event.params.max_tokens = attrs.value("gen_ai.request.max_tokens", fields::uint32)?;
        event.params.n = attrs.value("gen_ai.request.choice.count", fields::uint32)?;
        event.params.seed = attrs.value("gen_ai.request.seed", fields::int)?;
        if let Some(key) = &self.prompt_attribute {
            event.prompt = attrs.value(key, fields::owned_text)?;
        }
        Ok(event)
    }
}

/// Attributes of one level (resource or record) and how to name one of them in an error.
struct Scope<'s, 'a> {
    attributes: &'s [Obj<KeyValue<'a>>],
    path: Box<dyn Fn(&str) -> String + 's>,
}

impl<'s, 'a> Scope<'s, 'a> {
    /// The last value set for `key` (OTLP forbids duplicates; the last one is as good as any).
    fn find(&self, key: &str) -> Result<Option<&'s Scalar<'a>>, RecordError> {
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
        Ok(found)
    }
}

/// A record's attributes over its resource's.
struct Attributes<'r, 's, 'a> {
    own: &'r Scope<'s, 'a>,
    resource: &'r Scope<'s, 'a>,
}

impl<'s, 'a> Attributes<'_, 's, 'a> {
    /// Reads `key` with `read`, returning the value and the level it came from (for naming it).
    fn read<T>(
        &self,
        key: &str,
        read: impl Fn(Option<&'s Scalar<'a>>) -> Result<Option<T>, String>,
    ) -> Result<Option<(T, &Scope<'s, 'a>)>, RecordError> {
        for scope in [self.own, self.resource] {
            let Some(value) = scope.find(key)? else {
                continue;
            };
            match read(Some(value)) {
                Ok(Some(parsed)) => return Ok(Some((parsed, scope))),
                Ok(None) => continue,
                Err(message) => return Err(RecordError::invalid(&(scope.path)(key), message)),
            }
        }
        Ok(None)
    }

    fn value<T>(
        &self,
        key: &str,
        read: impl Fn(Option<&'s Scalar<'a>>) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, RecordError> {
        Ok(self.read(key, read)?.map(|(value, _)| value))
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
    use crate::RejectReason;

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
