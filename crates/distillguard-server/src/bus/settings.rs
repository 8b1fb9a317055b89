//! `[bus]` settings (`docs/configuration.md`, "Event bus").

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Where accepted events go before the detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// In-process, with the event log in the data directory: nothing else to run.
    #[default]
    Embedded,
    /// A NATS JetStream stream partitioned by account.
    Jetstream,
}

/// What this node does with the bus (only with `kind = "jetstream"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Publishes what it ingests and consumes its partitions: a whole service on one node.
    #[default]
    All,
    /// Publishes only (no detection here): scale HTTP ingest on its own.
    Ingest,
    /// Consumes its partitions and detects; it still answers ingest by publishing.
    Detector,
}

impl NodeRole {
    /// Whether this node applies events from the stream.
    pub fn consumes(self) -> bool {
        matches!(self, Self::All | Self::Detector)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Ingest => "ingest",
            Self::Detector => "detector",
        }
    }
}

/// `[bus]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BusSettings {
    pub kind: BusKind,
    pub role: NodeRole,
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// JetStream stream name (created if missing).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<partition>`.
    pub subject_prefix: String,
    /// Partitions, fixed when the stream is created (recorded in its description and checked
    /// against this at start): changing it would move accounts between partitions.
    pub partition_count: u32,
    /// Partitions this node consumes: `all`, or ranges and numbers like `0-31,40`.
    pub partitions: String,
    /// JetStream's duplicate window: a retry with the same message id within it is dropped.
    pub duplicate_window_secs: u64,
    /// How long the stream keeps events (0: until deleted). Must exceed the checkpoint interval
    /// by far: a detector restarts from its checkpoint's sequence.
    pub max_age_secs: u64,
    /// Stream replicas (1 for one NATS server; 3 for a cluster).
    pub replicas: usize,
    /// How long ingest waits for JetStream's acknowledgements before answering 503.
    pub publish_timeout_ms: u64,
    /// A partition without messages for this long no longer holds the global watermark back.
    pub idle_partition_secs: u64,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            kind: BusKind::Embedded,
            role: NodeRole::All,
            url: "nats://127.0.0.1:4222".into(),
            stream: "DISTILLGUARD_EVENTS".into(),
            subject_prefix: "distillguard.events".into(),
            partition_count: 64,
            partitions: "all".into(),
            duplicate_window_secs: 120,
            max_age_secs: 7 * 24 * 3600,
            replicas: 1,
            publish_timeout_ms: 5_000,
            idle_partition_secs: 30,
        }
    }
}

impl BusSettings {
    pub fn is_jetstream(&self) -> bool {
        self.kind == BusKind::Jetstream
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms.max(1))
    }

    /// The partitions this node consumes, sorted, each below `partition_count`.
    pub fn owned_partitions(&self) -> Result<Vec<u32>, ConfigError> {
        parse_partitions(&self.partitions, self.partition_count).map_err(ConfigError::Invalid)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.partition_count == 0 || self.partition_count > 4096 {
            return Err(ConfigError::Invalid(
                "bus.partition_count must be within 1..=4096".into(),
            ));
        }
        let valid_token = |s: &str| {
            !s.is_empty()
                && !s.contains([' ', '\t', '*', '>'])
                && !s.starts_with('.')
                && !s.ends_with('.')
        };
        if !valid_token(&self.subject_prefix) {
            return Err(ConfigError::Invalid(format!(
                "bus.subject_prefix {:?} must be a NATS subject without wildcards",
                self.subject_prefix
            )));
        }
        if !valid_token(&self.stream) || self.stream.contains('.') {
            return Err(ConfigError::Invalid(format!(
                "bus.stream {:?} must be a name without spaces, dots or wildcards",
                self.stream
            )));
        }
        self.owned_partitions()?;
        Ok(())
    }
}

fn parse_partitions(text: &str, count: u32) -> Result<Vec<u32>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("all") {
        return Ok((0..count).collect());
    }
    let invalid =
        || format!("bus.partitions {text:?}: use `all` or ranges below {count} like `0-31,40`");
    let mut owned = std::collections::BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
            None => (part.parse::<u32>(), part.parse::<u32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            return Err(invalid());
        };
        if first > last || last >= count {
            return Err(invalid());
        }
        owned.extend(first..=last);
    }
    if owned.is_empty() {
        return Err(invalid());
    }
    Ok(owned.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_from_all_ranges_and_numbers() {
        assert_eq!(parse_partitions("all", 4).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_partitions("0-2, 5,5", 8).unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_partitions("3-1", 8).is_err());
        assert!(parse_partitions("8", 8).is_err());
        assert!(parse_partitions("", 8).is_err());
        assert!(parse_partitions("x", 8).is_err());
    }

    #[test]
    fn the_default_is_embedded_and_valid() {
        let settings = BusSettings::default();
        assert_eq!(settings.kind, BusKind::Embedded);
        settings.validate().unwrap();
    }
}
