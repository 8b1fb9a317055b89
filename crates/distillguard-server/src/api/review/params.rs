//! Query strings and JSON bodies, parsed into store types at the boundary.
//!
//! Axum's own `Query`/`Json` rejections answer in plain text; parsing here keeps every error in
//! the service's JSON error shape, and refuses unknown parameters so a typo is not a silent no-op.

use axum::body::Bytes;
use distillguard_core::finding::Severity;
use distillguard_core::time::EventTime;
use distillguard_store::{ListFilter, PageRequest, ReviewStatus, SortKey};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Decoded `key=value` pairs of a query string. A parameter with an empty value is absent, as a
/// form's blank field means "no filter" (`?assignee=&cursor=` lists the first page, unfiltered).
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        q.split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                (decode(key), decode(value))
            })
            .filter(|(_, value)| !value.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Percent-decoding with `+` as space, as browsers encode forms.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn bad(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("query parameter {name}: {why}"))
}

/// A bound on event time. Any RFC 3339 time is a valid bound: one before 1970 or after 2200 (the
/// times events may carry) selects what the nearest possible event time would.
fn time(name: &str, value: &str) -> Result<EventTime, ApiError> {
    let parsed = chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|e| bad(name, format!("not an RFC 3339 timestamp: {e}")))?;
    let ms = parsed
        .timestamp_millis()
        .clamp(0, EventTime::LATEST.epoch_ms());
    EventTime::from_epoch_ms(ms).map_err(|e| bad(name, e))
}

/// Comma-separated or repeated values.
fn list<T>(name: &str, value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, ApiError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| parse(v).ok_or_else(|| bad(name, format!("unknown value {v:?}"))))
        .collect()
}

fn severity(text: &str) -> Option<Severity> {
    Severity::ALL.into_iter().find(|s| s.as_str() == text)
}

/// A list request: filters and page.
pub fn list_request(raw: Option<&str>) -> Result<(ListFilter, PageRequest), ApiError> {
    let mut filter = ListFilter::default();
    let mut page = PageRequest::default();
    for (key, value) in pairs(raw) {
        match key.as_str() {
            "status" => filter
                .status
                .extend(list(&key, &value, |v| v.parse::<ReviewStatus>().ok())?),
            "severity" => filter.severity.extend(list(&key, &value, severity)?),
            "min_score" => {
                let min: f64 = value.parse().map_err(|_| bad(&key, "not a number"))?;
                if !(0.0..=1.0).contains(&min) {
                    return Err(bad(&key, "must be between 0 and 1"));
                }
                filter.min_score = Some(min);
            }
            "detector" => filter.detector = Some(value),
            "flagged" => {
                filter.flagged = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(&key, "true or false")),
                })
            }
            "since" => filter.since = Some(time(&key, &value)?),
            "until" => filter.until = Some(time(&key, &value)?),
            "assignee" => filter.assignee = Some(value),
            "sort" => {
                page.sort = value
                    .parse::<SortKey>()
                    .map_err(|_| bad(&key, "score, last_seen or created"))?
            }
            "limit" => page.limit = limit(&key, &value)?,
            "cursor" => page.after = Some(value),
            _ => return Err(bad(&key, "unknown parameter")),
        }
    }
    Ok((filter, page))
}

pub fn limit(name: &str, value: &str) -> Result<u32, ApiError> {
    match value.parse::<u32>() {
        Ok(n) if (1..=distillguard_store::MAX_PAGE_SIZE).contains(&n) => Ok(n),
        _ => Err(bad(
            name,
            format!("1 to {}", distillguard_store::MAX_PAGE_SIZE),
        )),
    }
}

/// The `next` link: the same query with the new cursor.
pub fn next_link(path: &str, raw: Option<&str>, cursor: &str) -> String {
    let mut parts: Vec<String> = pairs(raw)
        .into_iter()
        .filter(|(key, _)| key != "cursor")
        .map(|(key, value)| format!("{}={}", encode(&key), encode(&value)))
        .collect();
    parts.push(format!("cursor={}", encode(cursor)));
    format!("{path}?{}", parts.join("&"))
}

/// A JSON body: malformed JSON is 400, well-formed but wrong values are 422.
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => {
            ApiError::Unprocessable(format!("invalid body: {error}"))
        }
        _ => ApiError::BadRequest(format!("body is not JSON: {error}")),
    })
}

/// Largest magnitude of a version number in a body: JSON's safe integers (2^53 - 1), which every
/// JSON parser reads exactly, also when written with a fraction (`7.0`).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A JSON integer within [`MAX_SAFE_INTEGER`], also written as an integral number (`7.0`), as
/// JSON Schema counts integers.
pub fn int64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    use serde::Deserialize;
    let number = serde_json::Number::deserialize(deserializer)?;
    let limit = MAX_SAFE_INTEGER as f64;
    let value = match (number.as_i64(), number.as_f64()) {
        (Some(n), _) => Some(n).filter(|n| n.abs() <= MAX_SAFE_INTEGER),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() <= limit => Some(f as i64),
        _ => None,
    };
    value.ok_or_else(|| {
        D::Error::custom(format!(
            "expected an integer of at most {MAX_SAFE_INTEGER} in magnitude, got {number}"
        ))
    })
}

/// Like [`int64`], for an optional field.
pub fn optional_int64<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    int64(deserializer).map(Some)
}

/// `"assignee": null` clears, a string sets, absence keeps.
pub fn double_option<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    use serde::Deserialize;
    Option::<String>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_accept_lists_and_repeats_and_refuse_unknown_parameters() {
        let (filter, page) = list_request(Some(
            "status=open,investigating&severity=high&severity=critical&min_score=0.7&flagged=true\
             &since=2026-01-01T00:00:00Z&sort=last_seen&limit=20&assignee=ana%20b&cursor=abc",
        ))
        .unwrap();
        assert_eq!(
            filter.status,
            vec![ReviewStatus::Open, ReviewStatus::Investigating]
        );
        assert_eq!(filter.severity, vec![Severity::High, Severity::Critical]);
        assert_eq!(filter.min_score, Some(0.7));
        assert_eq!(filter.flagged, Some(true));
        assert_eq!(filter.assignee.as_deref(), Some("ana b"));
        assert_eq!(
            (page.sort, page.limit, page.after.as_deref()),
            (SortKey::LastSeen, 20, Some("abc"))
        );
        assert!(list_request(Some("stauts=open")).is_err());
        assert!(list_request(Some("status=closed")).is_err());
        assert!(list_request(Some("limit=0")).is_err());
        assert!(list_request(Some("since=yesterday")).is_err());
        let (filter, _) = list_request(Some(
            "since=0018-01-01T00:00:00Z&until=8936-10-21T20:27:16Z",
        ))
        .unwrap();
        assert_eq!(filter.since, Some(EventTime::from_epoch_ms(0).unwrap()));
        assert_eq!(filter.until, Some(EventTime::LATEST));
    }

    #[test]
    fn integral_numbers_are_integers() {
        #[derive(serde::Deserialize)]
        struct V {
            #[serde(deserialize_with = "int64")]
            v: i64,
        }
        let read = |json: &str| serde_json::from_str::<V>(json).map(|v| v.v);
        assert_eq!(read(r#"{"v": 7}"#).unwrap(), 7);
        assert_eq!(read(r#"{"v": -7.0}"#).unwrap(), -7);
        assert!(read(r#"{"v": 7.5}"#).is_err());
        assert!(read(r#"{"v": 1e19}"#).is_err());
        assert!(read(r#"{"v": -9223372036854775809}"#).is_err());
        assert_eq!(
            read(r#"{"v": 9007199254740991}"#).unwrap(),
            MAX_SAFE_INTEGER
        );
        assert!(read(r#"{"v": 9007199254740992}"#).is_err());
        assert!(read(r#"{"v": "7"}"#).is_err());
    }

    #[test]
    fn blank_parameters_are_absent() {
        let (filter, page) =
            list_request(Some("status=&severity=&assignee=&cursor=&limit=&flagged=")).unwrap();
        assert_eq!(filter, ListFilter::default());
        assert_eq!(page, PageRequest::default());
    }

    #[test]
    fn the_next_link_keeps_the_query_and_replaces_the_cursor() {
        let link = next_link(
            "/v1/accounts",
            Some("status=open&cursor=old&assignee=a%2Fb"),
            "new",
        );
        assert_eq!(link, "/v1/accounts?status=open&assignee=a%2Fb&cursor=new");
    }

    #[test]
    fn percent_decoding_survives_truncated_escapes() {
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("a%zz"), "a%zz");
        assert_eq!(decode("a+b%21"), "a b!");
    }
}
