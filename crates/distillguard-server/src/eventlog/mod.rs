//! The event log: accepted events are appended here before ingest answers 202, and a restart
//! replays them from the position its checkpoint covers, so nothing acknowledged is lost.
//!
//! [`EventLog`] is the seam between the pipeline and where the log lives. [`wal::SegmentLog`] keeps
//! it in segment files in the data directory (the embedded default); a distributed log (a
//! JetStream stream, say) implements the same trait: `append` publishes, `sync` waits for the
//! acknowledgements, positions are stream sequences.
//!
//! Positions count batches: a log holding `n` batches ends at position `n`, and a checkpoint
//! taken after the batch ending at `p` replays from `p`.

pub mod wal;

use std::fmt;
use std::str::FromStr;

use distillguard_core::event::ApiEvent;
use serde::{Deserialize, Serialize};

/// A point in the log: the number of batches before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct LogPosition(pub u64);

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why the log could not take or give back events.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("event log record could not be encoded: {0}")]
    Encode(String),
    #[error("event log is corrupt: {0}")]
    Corrupt(String),
    #[error("event log is unavailable after an earlier failure: {0}")]
    Failed(String),
}

/// One batch read back from the log.
#[derive(Debug)]
pub struct LoggedBatch {
    /// The position after this batch.
    pub end: LogPosition,
    pub events: Vec<ApiEvent>,
}

/// What a replay found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub batches: u64,
    pub events: u64,
    /// Bytes at the end of the log that were not a whole, intact record (a write cut short by a
    /// crash: never acknowledged) and were cut off.
    pub torn_bytes: u64,
}

/// An append-only log of accepted event batches.
///
/// Appends are not durable until [`EventLog::sync`] returns: one sync covers every append before
/// it (group commit). A failed append or sync leaves the log as it was after the last successful
/// sync ([`EventLog::discard_unsynced`]), so a batch refused with 503 is never replayed.
pub trait EventLog: Send + 'static {
    /// Appends one batch (already encoded by [`encode_batch`]) and returns the position after it.
    fn append(&mut self, record: &[u8]) -> Result<LogPosition, LogError>;
    /// Makes every append so far durable, as far as the log's policy promises.
    fn sync(&mut self) -> Result<(), LogError>;
    /// Drops appends made since the last successful sync (after a failure).
    fn discard_unsynced(&mut self) -> Result<(), LogError>;
    /// Calls `each` with every batch at or after `from`, in order.
    fn replay(
        &mut self,
        from: LogPosition,
        each: &mut dyn FnMut(LoggedBatch),
    ) -> Result<ReplayReport, LogError>;
    /// Periodic work (the interval policy's fsync); called at least every few milliseconds.
    fn tick(&mut self) -> Result<(), LogError> {
        Ok(())
    }
    /// Deletes what lies wholly before `before` (a checkpoint covers it).
    fn truncate_before(&mut self, before: LogPosition) -> Result<(), LogError>;
    /// The position after the last batch.
    fn end(&self) -> LogPosition;
    /// Bytes the log holds, for metrics.
    fn size_bytes(&self) -> u64;
}

/// When the log forces its writes to stable storage (`[log] fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before every 202 (one fsync covers all the requests waiting at that moment): an OS crash or
    /// power loss loses nothing acknowledged.
    #[default]
    Always,
    /// At most `fsync_interval_ms` after a write; a 202 does not wait for it. An OS crash or power
    /// loss can lose the last interval.
    Interval,
    /// Never: the OS writes back when it likes (typically within 30 s). A process crash still loses
    /// nothing, since every write reached the OS before the 202.
    None,
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "always" => Ok(Self::Always),
            "interval" => Ok(Self::Interval),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown fsync policy {other:?}: use always, interval or none"
            )),
        }
    }
}

impl FsyncPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Interval => "interval",
            Self::None => "none",
        }
    }
}

/// Encodes each event on its own (MessagePack, named fields), so that the caller can do it off
/// any lock and [`encode_batch`] can later keep only the events that were accepted.
pub fn encode_events(events: &[ApiEvent]) -> Result<EncodedEvents, LogError> {
    let mut bytes = Vec::with_capacity(events.len() * 256);
    let mut ends = Vec::with_capacity(events.len());
    for event in events {
        event
            .serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map())
            .map_err(|e| LogError::Encode(e.to_string()))?;
        ends.push(bytes.len());
    }
    Ok(EncodedEvents { bytes, ends })
}

/// Events encoded one by one, see [`encode_events`].
#[derive(Debug, Default)]
pub struct EncodedEvents {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedEvents {
    /// A log record holding the events whose `keep` flag is set, as one MessagePack array.
    pub fn batch(&self, keep: &[bool]) -> Vec<u8> {
        let kept = keep.iter().filter(|k| **k).count();
        let mut record = Vec::with_capacity(self.bytes.len() + 5);
        rmp::encode::write_array_len(&mut record, kept as u32).expect("writing to a Vec");
        let mut start = 0;
        for (end, keep) in self.ends.iter().zip(keep) {
            if *keep {
                record.extend_from_slice(&self.bytes[start..*end]);
            }
            start = *end;
        }
        record
    }
}

/// Encodes a whole batch as one record.
pub fn encode_batch(events: &[ApiEvent]) -> Result<Vec<u8>, LogError> {
    Ok(encode_events(events)?.batch(&vec![true; events.len()]))
}

/// Reads a record written by [`EncodedEvents::batch`].
pub fn decode_batch(record: &[u8]) -> Result<Vec<ApiEvent>, LogError> {
    rmp_serde::from_slice(record).map_err(|e| LogError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::event::{AccountId, ModelName};
    use distillguard_core::time::EventTime;

    pub(crate) fn event(account: &str, ms: i64) -> ApiEvent {
        let mut event = ApiEvent::new(
            EventTime::from_epoch_ms(ms).unwrap(),
            AccountId::parse(account).unwrap(),
            ModelName::parse("m").unwrap(),
        );
        event.prompt = Some(format!("prompt of {account} at {ms}"));
        event.request_id = Some(format!("{account}-{ms}"));
        event.params.temperature = Some(0.5);
        event.usage.completion_tokens = Some(120);
        event.client_ip = Some("10.1.2.3".parse().unwrap());
        event.metadata.insert("k".into(), "v".into());
        event
    }

    #[test]
    fn a_record_keeps_exactly_the_accepted_events_and_reads_back_equal() {
        let events: Vec<ApiEvent> = (0..5)
            .map(|i| event(&format!("a{i}"), 1_764_000_000_000 + i))
            .collect();
        let encoded = encode_events(&events).unwrap();
        let record = encoded.batch(&[true, false, true, false, true]);
        let back = decode_batch(&record).unwrap();
        assert_eq!(
            back,
            vec![events[0].clone(), events[2].clone(), events[4].clone()]
        );
    }

    #[test]
    fn fsync_policies_parse_from_their_names() {
        for policy in [
            FsyncPolicy::Always,
            FsyncPolicy::Interval,
            FsyncPolicy::None,
        ] {
            assert_eq!(policy.as_str().parse::<FsyncPolicy>(), Ok(policy));
        }
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
