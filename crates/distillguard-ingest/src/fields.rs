//! Lenient field readers shared by the gateway decoders.
//!
//! Gateways disagree about types: Envoy sends every value as a string, OTLP sends 64-bit integers
//! as strings, LiteLLM sends seconds as floats. So leaves are read as a [`Scalar`] that never fails
//! to deserialize, and nested objects and lists as [`Obj`] / [`List`], which record a wrong shape
//! instead of failing. A typed parse of a gateway record therefore only fails on malformed JSON,
//! and every type problem is reported afterwards by the decoder with the field's own name, in a
//! single pass over the text.

use std::borrow::Cow;

use compact_str::CompactString;
use std::fmt;
use std::marker::PhantomData;

use distillguard_core::event::{parse_client_ip, AccountId, ModelName};
use distillguard_core::time::EventTime;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::RecordError;

/// One JSON leaf as it arrived; arrays and objects are skipped and remembered only by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// JSON `null` inside a list (fields that are null read as absent, via `Option`).
    Null,
    /// An array or an object where a single value was expected.
    Compound(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound("an object"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Null => "null",
            Scalar::Compound(kind) => kind,
        }
    }

    /// Text that stands for "no value" in access logs: empty, or Envoy's `-`.
    fn is_blank_text(&self) -> bool {
        matches!(self, Scalar::Null)
            || matches!(self, Scalar::Str(s) if s.trim().is_empty() || s.as_ref() == "-")
    }
}

/// An object field, or the kind of value that arrived instead.
#[derive(Debug)]
pub enum Obj<T> {
    Ok(T),
    Wrong(&'static str),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor::<T, false>(PhantomData))
    }
}

/// A list field, or the kind of value that arrived instead.
#[derive(Debug)]
pub enum List<T> {
    Ok(Vec<T>),
    Wrong(&'static str),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(ShapeVisitor::<Vec<T>, true>(PhantomData))? {
            Obj::Ok(items) => Ok(List::Ok(items)),
            Obj::Wrong(kind) => Ok(List::Wrong(kind)),
        }
    }
}

impl<T> List<T> {
    /// The items, or an error naming `field` when the value was not a list.
    pub fn items(&self, field: impl FnOnce() -> String) -> Result<&[T], RecordError> {
        match self {
            List::Ok(items) => Ok(items),
            List::Wrong(kind) => Err(RecordError::invalid(
                &field(),
                format!("expected an array, got {kind}"),
            )),
        }
    }
}

impl<T> Obj<T> {
    /// The object, or an error naming `field` when the value was not an object.
    pub fn get(&self, field: impl FnOnce() -> String) -> Result<&T, RecordError> {
        match self {
            Obj::Ok(inner) => Ok(inner),
            Obj::Wrong(kind) => Err(RecordError::invalid(
                &field(),
                format!("expected an object, got {kind}"),
            )),
        }
    }
}

/// Accepts a map (`SEQ = false`) or a sequence (`SEQ = true`) for `T`; anything else is drained
/// and reported by kind.
struct ShapeVisitor<T, const SEQ: bool>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const SEQ: bool> Visitor<'de> for ShapeVisitor<T, SEQ> {
    type Value = Obj<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if SEQ { "an array" } else { "an object" })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj::Wrong("null"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Obj::Wrong("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Obj::Wrong("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Obj::Wrong("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Obj::Wrong("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Obj::Wrong("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if SEQ {
            return T::deserialize(SeqAccessDeserializer::new(seq)).map(Obj::Ok);
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Obj::Wrong("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if !SEQ {
            return T::deserialize(MapAccessDeserializer::new(map)).map(Obj::Ok);
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Obj::Wrong("an object"))
    }
}

/// An object's entries in document order, keys borrowed when possible: for maps whose keys are
/// data (headers, Kong's `ai.<plugin>` namespaces).
#[derive(Debug)]
pub struct Pairs<'a, V>(pub Vec<(Cow<'a, str>, V)>);

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Pairs<'a, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<'a, V>(PhantomData<(&'a (), V)>);
        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<'a, V> {
            type Value = Pairs<'a, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some((key, value)) = map.next_entry::<Scalar<'a>, V>()? {
                    if let Scalar::Str(key) = key {
                        pairs.push((key, value));
                    }
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor(PhantomData))
    }
}

impl<V> Pairs<'_, V> {
    /// The value of the first key equal to `name`, ignoring ASCII case.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// Parses a whole record, which must be a JSON object (derived structs would also accept an array).
pub fn parse_record<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, RecordError> {
    match serde_json::from_str::<Obj<T>>(json) {
        Ok(Obj::Ok(record)) => Ok(record),
        Ok(Obj::Wrong(kind)) => Err(RecordError::malformed(format!(
            "record is not a JSON object, got {kind}"
        ))),
        Err(e) => Err(RecordError::malformed(e.to_string())),
    }
}

fn wrong(expected: &str, got: &Scalar<'_>) -> String {
    format!("expected {expected}, got {}", got.kind())
}

/// Text, if present and not blank. Numbers are accepted and written out (ids are sometimes numeric).
pub fn text<'s>(value: Option<&'s Scalar<'_>>) -> Result<Option<Cow<'s, str>>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.is_blank_text() => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(Cow::Borrowed(s.as_ref()))),
        Some(Scalar::Int(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(Scalar::UInt(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(other) => Err(wrong("a string", other)),
    }
}

/// Like [`text`], as an owned `String` for the event.
pub fn owned_text(value: Option<&Scalar<'_>>) -> Result<Option<String>, String> {
    text(value).map(|t| t.map(Cow::into_owned))
}

/// Like [`text`], inline up to 24 bytes (the event's short identifying fields).
pub fn compact_text(value: Option<&Scalar<'_>>) -> Result<Option<CompactString>, String> {
    text(value).map(|t| t.map(CompactString::from))
}

/// A float from a JSON number or numeric text.
pub fn float(value: Option<&Scalar<'_>>) -> Result<Option<f64>, String> {
    let parsed = match value {
        None => return Ok(None),
        Some(v) if v.is_blank_text() => return Ok(None),
        Some(Scalar::Int(n)) => *n as f64,
        Some(Scalar::UInt(n)) => *n as f64,
        Some(Scalar::Float(f)) => *f,
        Some(Scalar::Str(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("expected a number, got {s:?}"))?,
        Some(other) => return Err(wrong("a number", other)),
    };
    if parsed.is_finite() {
        Ok(Some(parsed))
    } else {
        Err("expected a finite number".to_string())
    }
}

/// A non-negative integer from a JSON number (integral floats too) or numeric text.
pub fn uint(value: Option<&Scalar<'_>>, max: u64) -> Result<Option<u64>, String> {
    let parsed = match value {
        None => return Ok(None),
        Some(v) if v.is_blank_text() => return Ok(None),
        Some(Scalar::UInt(n)) => *n,
        Some(Scalar::Int(n)) => u64::try_from(*n).map_err(|_| negative(*n))?,
        Some(Scalar::Float(f)) => integral(*f)?,
        Some(Scalar::Str(s)) => {
            let s = s.trim();
            match s.parse::<u64>() {
                Ok(n) => n,
                Err(_) => match s.parse::<f64>() {
                    Ok(f) => integral(f)?,
                    Err(_) => return Err(format!("expected a non-negative integer, got {s:?}")),
                },
            }
        }
        Some(other) => return Err(wrong("a non-negative integer", other)),
    };
    if parsed > max {
        return Err(format!("{parsed} is larger than {max}"));
    }
    Ok(Some(parsed))
}

fn negative(n: i64) -> String {
    format!("expected a non-negative integer, got {n}")
}

fn integral(f: f64) -> Result<u64, String> {
    if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 {
        Ok(f as u64)
    } else {
        Err(format!("expected a non-negative integer, got {f}"))
    }
}

pub fn uint32(value: Option<&Scalar<'_>>) -> Result<Option<u32>, String> {
    uint(value, u32::MAX as u64).map(|n| n.map(|n| n as u32))
}

pub fn uint64(value: Option<&Scalar<'_>>) -> Result<Option<u64>, String> {
    uint(value, u64::MAX)
}

/// An HTTP status code, 100..=599.
pub fn status(value: Option<&Scalar<'_>>) -> Result<Option<u16>, String> {
    match uint(value, 599)? {
        Some(code) if code < 100 => Err(format!("{code} is not an HTTP status code")),
        other => Ok(other.map(|c| c as u16)),
    }
}

/// A signed integer (seeds).
pub fn int(value: Option<&Scalar<'_>>) -> Result<Option<i64>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.is_blank_text() => Ok(None),
        Some(Scalar::Int(n)) => Ok(Some(*n)),
        Some(Scalar::UInt(n)) => i64::try_from(*n)
            .map(Some)
            .map_err(|_| format!("{n} is out of range")),
        Some(Scalar::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Some(*f as i64)),
        Some(Scalar::Str(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("expected an integer, got {s:?}")),
        Some(other) => Err(wrong("an integer", other)),
    }
}

/// A boolean, also from the text `true`/`false`.
pub fn boolean(value: Option<&Scalar<'_>>) -> Result<Option<bool>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.is_blank_text() => Ok(None),
        Some(Scalar::Bool(b)) => Ok(Some(*b)),
        Some(Scalar::Str(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Scalar::Str(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(wrong("a boolean", other)),
    }
}

/// The first address of an `X-Forwarded-For`-style list (the original client).
pub fn client_ip(value: Option<&Scalar<'_>>) -> Result<Option<std::net::IpAddr>, String> {
    let Some(list) = text(value)? else {
        return Ok(None);
    };
    let first = list.split(',').next().unwrap_or_default().trim();
    if first.is_empty() {
        return Ok(None);
    }
    parse_client_ip(first)
        .map(Some)
        .map_err(|e| format!("{e}: {:?}", truncate(first)))
}

/// An event time from an epoch number (or numeric text) in `unit`; fractions of a millisecond
/// are rounded.
pub fn epoch(value: Option<&Scalar<'_>>, unit: EpochUnit) -> Result<Option<EventTime>, String> {
    let ms = match (value, unit) {
        (None, _) => return Ok(None),
        (Some(v), _) if v.is_blank_text() => return Ok(None),
        // Nanoseconds do not fit an f64 exactly: keep them integral.
        (Some(v), EpochUnit::Nanos) => match uint64(Some(v))? {
            Some(ns) => (ns / 1_000_000) as i64,
            None => return Ok(None),
        },
        (Some(v), unit) => {
            let Some(f) = float(Some(v))? else {
                return Ok(None);
            };
            let ms = match unit {
                EpochUnit::Seconds => f * 1000.0,
                _ => f,
            };
            if !(0.0..9.0e15).contains(&ms) {
                return Err(format!("epoch time out of range: {f}"));
            }
            ms.round() as i64
        }
    };
    EventTime::from_epoch_ms(ms)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The unit of an epoch timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Nanos,
}

/// An RFC 3339 timestamp.
pub fn rfc3339(value: Option<&Scalar<'_>>) -> Result<Option<EventTime>, String> {
    match text(value)? {
        None => Ok(None),
        Some(t) => EventTime::parse_rfc3339(&t)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

pub fn account(text: &str, field: &str) -> Result<AccountId, RecordError> {
    AccountId::parse(text).map_err(|e| RecordError::invalid(field, e.to_string()))
}

pub fn model(text: &str, field: &str) -> Result<ModelName, RecordError> {
    ModelName::parse(text).map_err(|e| RecordError::invalid(field, e.to_string()))
}

/// The error for a record in which none of the configured account fields is set.
pub fn no_account(fields: &[String]) -> RecordError {
    RecordError {
        reason: crate::RejectReason::MissingField,
        field: fields.first().cloned(),
        message: format!(
            "none of the configured account fields is set ({})",
            fields.join(", ")
        ),
    }
}

/// Serde helper for configured fallback chains: an empty chain is a configuration error, not a
/// silent "reject every record".
pub fn non_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(deserializer)?;
    if items.is_empty() {
        return Err(de::Error::custom("must name at least one field"));
    }
    Ok(items)
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Shorthand: reads `value` with `read`, naming `field` on error.
pub fn read<'v, T>(
    value: Option<&'v Scalar<'_>>,
    field: &str,
    read: impl FnOnce(Option<&'v Scalar<'_>>) -> Result<Option<T>, String>,
) -> Result<Option<T>, RecordError> {
    read(value).map_err(|message| RecordError::invalid(field, message))
}

/// Like [`read`] for `path.name`, building the field name only on error.
pub fn read_in<'v, T>(
    value: Option<&'v Scalar<'_>>,
    path: &str,
    name: &str,
    read: impl FnOnce(Option<&'v Scalar<'_>>) -> Result<Option<T>, String>,
) -> Result<Option<T>, RecordError> {
    read(value).map_err(|message| RecordError::invalid(&format!("{path}.{name}"), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(json: &str) -> Scalar<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn numbers_arrive_as_numbers_or_as_text() {
        assert_eq!(uint32(Some(&scalar("31"))), Ok(Some(31)));
        assert_eq!(uint32(Some(&scalar("\"31\""))), Ok(Some(31)));
        assert_eq!(uint32(Some(&scalar("31.0"))), Ok(Some(31)));
        assert_eq!(float(Some(&scalar("\"0.7\""))), Ok(Some(0.7)));
        assert_eq!(int(Some(&scalar("\"-7\""))), Ok(Some(-7)));
        assert_eq!(boolean(Some(&scalar("\"true\""))), Ok(Some(true)));
    }

    #[test]
    fn blank_text_and_envoys_dash_mean_absent() {
        assert_eq!(uint32(Some(&scalar("\"-\""))), Ok(None));
        assert_eq!(owned_text(Some(&scalar("\"  \""))), Ok(None));
        assert_eq!(client_ip(Some(&scalar("\"\""))), Ok(None));
    }

    #[test]
    fn wrong_values_are_explained() {
        assert_eq!(
            uint32(Some(&scalar("-1"))).unwrap_err(),
            "expected a non-negative integer, got -1"
        );
        assert_eq!(
            uint32(Some(&scalar("4294967296"))).unwrap_err(),
            "4294967296 is larger than 4294967295"
        );
        assert_eq!(
            float(Some(&scalar("[1]"))).unwrap_err(),
            "expected a number, got an array"
        );
        assert!(status(Some(&scalar("\"42\""))).is_err());
        assert!(text(Some(&scalar("{\"a\":1}"))).is_err());
    }

    #[test]
    fn forwarded_for_lists_yield_the_original_client() {
        let ip = client_ip(Some(&scalar("\"203.0.113.9, 10.0.0.2\""))).unwrap();
        assert_eq!(ip.unwrap().to_string(), "203.0.113.9");
        assert!(client_ip(Some(&scalar("\"unknown, 10.0.0.2\""))).is_err());
    }

    #[test]
    fn epochs_in_every_unit_become_milliseconds() {
        let secs = epoch(Some(&scalar("1795871407.352644")), EpochUnit::Seconds).unwrap();
        assert_eq!(secs.unwrap().epoch_ms(), 1_795_871_407_353);
        let nanos = epoch(Some(&scalar("\"1795871407352644000\"")), EpochUnit::Nanos).unwrap();
        assert_eq!(nanos.unwrap().epoch_ms(), 1_795_871_407_352);
        let millis = epoch(Some(&scalar("1795871407352")), EpochUnit::Millis).unwrap();
        assert_eq!(millis.unwrap().epoch_ms(), 1_795_871_407_352);
        assert!(epoch(Some(&scalar("-5")), EpochUnit::Seconds).is_err());
    }

    #[test]
    fn shapes_record_what_arrived_instead_of_failing() {
        use serde::Deserialize;
        #[derive(Deserialize)]
        struct Outer<'a> {
            inner: Option<Obj<Inner>>,
            #[serde(borrow)]
            list: Option<List<Scalar<'a>>>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[allow(dead_code)]
            a: Option<u8>,
        }
        let outer: Outer =
            serde_json::from_str(r#"{"inner":[1,{"x":2}],"list":{"a":[1]}}"#).unwrap();
        assert!(matches!(outer.inner, Some(Obj::Wrong("an array"))));
        assert!(matches!(outer.list, Some(List::Wrong("an object"))));
        let outer: Outer =
            serde_json::from_str(r#"{"inner":{"a":1},"list":[1,"x",null]}"#).unwrap();
        assert!(matches!(outer.inner, Some(Obj::Ok(_))));
        assert!(
            matches!(outer.list, Some(List::Ok(ref v)) if v.len() == 3 && v[2] == Scalar::Null)
        );
    }
}
