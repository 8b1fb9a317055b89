//! Event time: milliseconds since the Unix epoch, taken from the data, never from a clock.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in event time, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime(i64);

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 timestamp: {0}")]
    NotRfc3339(String),
    #[error("epoch milliseconds out of range: {0}")]
    OutOfRange(i64),
}

/// Timestamps outside 1970..=2200 are almost certainly unit mistakes (seconds vs micros).
const MAX_EPOCH_MS: i64 = 7_258_118_400_000; // 2200-01-01

impl EventTime {
    pub const MINUTE: i64 = 60_000;
    pub const HOUR: i64 = 3_600_000;
    pub const DAY: i64 = 86_400_000;

    /// The latest event time there can be (2200-01-01).
    pub const LATEST: EventTime = EventTime(MAX_EPOCH_MS);

    /// Builds an event time from epoch milliseconds, refusing values outside 1970..2200.
    pub fn from_epoch_ms(ms: i64) -> Result<Self, TimeError> {
        if (0..=MAX_EPOCH_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(TimeError::OutOfRange(ms))
        }
    }

    /// Parses an RFC 3339 timestamp such as `2026-11-28T13:00:00Z` or `...+02:00`.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        let parsed = DateTime::parse_from_rfc3339(text)
            .map_err(|_| TimeError::NotRfc3339(truncate_for_error(text)))?;
        Self::from_epoch_ms(parsed.timestamp_millis())
            .map_err(|_| TimeError::NotRfc3339(truncate_for_error(text)))
    }

    pub fn epoch_ms(self) -> i64 {
        self.0
    }

    /// Shifts by a signed number of milliseconds, saturating at the epoch.
    pub fn plus_ms(self, delta: i64) -> Self {
        Self(self.0.saturating_add(delta).max(0))
    }

    /// RFC 3339 in UTC with millisecond precision, the form every report and API uses.
    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default()
    }

    /// Hour of the day in UTC, 0..24.
    pub fn hour_of_day(self) -> u8 {
        ((self.0 / Self::HOUR) % 24) as u8
    }

    /// Days since the epoch.
    pub fn day_index(self) -> i64 {
        self.0 / Self::DAY
    }
}

fn truncate_for_error(text: &str) -> String {
    text.chars().take(64).collect()
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for EventTime {
    /// RFC 3339 in human-readable formats (JSON reports, the canonical event format); epoch
    /// milliseconds in binary ones (checkpoints, the write-ahead log), where a timestamp then costs
    /// 9 bytes instead of 26 and needs no parsing.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_rfc3339())
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for EventTime {
    /// Accepts what [`Serialize`] writes (RFC 3339) and integer epoch milliseconds.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            let ms = i64::deserialize(deserializer)?;
            return EventTime::from_epoch_ms(ms).map_err(serde::de::Error::custom);
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(i64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Ms(ms) => EventTime::from_epoch_ms(ms).map_err(serde::de::Error::custom),
            Raw::Text(text) => EventTime::parse_rfc3339(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offset_is_normalised_to_utc() {
        let t = EventTime::parse_rfc3339("2026-11-28T15:00:00.250+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T13:00:00.250Z");
    }

    #[test]
    fn epoch_seconds_mistaken_for_millis_still_parse_but_microseconds_are_refused() {
        assert!(EventTime::from_epoch_ms(1_764_000_000).is_ok());
        assert_eq!(
            EventTime::from_epoch_ms(1_764_000_000_000_000),
            Err(TimeError::OutOfRange(1_764_000_000_000_000))
        );
    }

    #[test]
    fn garbage_is_not_a_timestamp() {
        assert!(EventTime::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn serde_round_trips_through_rfc3339() {
        let t = EventTime::from_epoch_ms(1_764_334_800_123).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<EventTime>(&json).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<EventTime>("1764334800123").unwrap(),
            t
        );
    }
}
