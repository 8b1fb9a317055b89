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
    /// Consumes the profiles stream that detectors with `linker = true` publish, and scores,
    /// links and writes findings for all of them; it still answers ingest by publishing.
    Linker,
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
            Self::Linker => "linker",
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
    /// Partitions this node consumes: `all`, ranges and numbers like `0-31,40`, or `share:I/N`,
    /// the I-th (from 0) of N equal shares (what a StatefulSet's pod index gives).
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
    /// Detectors (`role = "detector"`) hand each tick's shard reports to the linker role through
    /// the profiles stream instead of scoring them: findings and clusters then come from the one
    /// linker, equal to one node's.
    pub linker: bool,
    /// JetStream stream of the detectors' tick reports (created if missing).
    pub profiles_stream: String,
    /// Tick reports are published on `<profiles_subject_prefix>.<tick, Unix ms>`.
    pub profiles_subject_prefix: String,
    /// A tick report larger than this travels in several messages (NATS refuses payloads over
    /// its `max_payload`, 1 MiB by default).
    pub profile_part_bytes: usize,
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
            linker: false,
            profiles_stream: "DISTILLGUARD_PROFILES".into(),
            profiles_subject_prefix: "distillguard.profiles".into(),
            profile_part_bytes: 768 * 1024,
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

    /// The store key of this node's checkpoint, or None when it keeps none (an ingest-only node
    /// has no detector state). A node that owns every partition keeps the single-node key
    /// `engine`, so an existing checkpoint still loads; one that owns part of them keys it by its
    /// partition set: several detectors sharing one database each restore their own state, and a
    /// node given other partitions starts afresh rather than from state of accounts it no longer
    /// owns (`docs/operations.md`, "Rebalancing").
    pub fn checkpoint_key(&self) -> Result<Option<String>, ConfigError> {
        const ENGINE: &str = "engine";
        if !self.is_jetstream() {
            return Ok(Some(ENGINE.to_owned()));
        }
        if !self.role.consumes() {
            return Ok(None);
        }
        let owned = self.owned_partitions()?;
        Ok(Some(source_key(&owned, self.partition_count)))
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
        if !valid_token(&self.profiles_subject_prefix) {
            return Err(ConfigError::Invalid(format!(
                "bus.profiles_subject_prefix {:?} must be a NATS subject without wildcards",
                self.profiles_subject_prefix
            )));
        }
        if !valid_token(&self.profiles_stream) || self.profiles_stream.contains('.') {
            return Err(ConfigError::Invalid(format!(
                "bus.profiles_stream {:?} must be a name without spaces, dots or wildcards",
                self.profiles_stream
            )));
        }
        if self.linker && self.role != NodeRole::Detector && self.is_jetstream() {
            return Err(ConfigError::Invalid(format!(
                "bus.linker = true is for detector nodes (role = \"detector\"), not role = {:?}: \
                 a node of role \"all\" scores its own reports, and the linker is role = \"linker\"",
                self.role.as_str()
            )));
        }
        if self.profile_part_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "bus.profile_part_bytes must be at least 1024".into(),
            ));
        }
        self.owned_partitions()?;
        Ok(())
    }

    /// Whether this node publishes its ticks' reports for the linker instead of scoring them.
    pub fn hands_ticks_to_linker(&self) -> bool {
        self.is_jetstream() && self.linker && self.role == NodeRole::Detector
    }
}

/// The checkpoint key of a detector owning `sorted` (ascending) of `partition_count`
/// partitions, which also names it in its tick reports' message ids: `engine` for all of them,
/// `engine:partitions=<ranges>/<partition_count>` otherwise.
pub(crate) fn source_key(sorted: &[u32], partition_count: u32) -> String {
    if sorted.len() == partition_count as usize {
        return "engine".to_owned();
    }
    format!("engine:partitions={}/{partition_count}", ranges(sorted))
}

/// `0-3,7`: sorted partitions as ranges, the canonical form of a partition set.
pub(crate) fn ranges(sorted: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut last = first;
        while i + 1 < sorted.len() && sorted[i + 1] == last + 1 {
            i += 1;
            last = sorted[i];
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        i += 1;
    }
    parts.join(",")
}

/// `share:I/N`: the I-th of N contiguous shares of `0..count`, as even as integer division
/// allows, so N pods numbered 0..N cover every partition once.
fn parse_share(spec: &str, count: u32) -> Option<Vec<u32>> {
    let (index, shares) = spec.split_once('/')?;
    let (index, shares) = (
        index.trim().parse::<u32>().ok()?,
        shares.trim().parse::<u32>().ok()?,
    );
    if shares == 0 || shares > count || index >= shares {
        return None;
    }
    let bound = |i: u32| (u64::from(i) * u64::from(count) / u64::from(shares)) as u32;
    Some((bound(index)..bound(index + 1)).collect())
}

fn parse_partitions(text: &str, count: u32) -> Result<Vec<u32>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("all") {
        return Ok((0..count).collect());
    }
    let invalid = || {
        format!(
            "bus.partitions {text:?}: use `all`, ranges below {count} like `0-31,40`, or \
             `share:I/N` with I < N <= {count}"
        )
    };
    if let Some(share) = text.strip_prefix("share:") {
        return parse_share(share, count).ok_or_else(invalid);
    }
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
    fn shares_cover_every_partition_once() {
        let mut covered = Vec::new();
        for index in 0..3 {
            covered.extend(parse_partitions(&format!("share:{index}/3"), 64).unwrap());
        }
        assert_eq!(covered, (0..64).collect::<Vec<_>>());
        assert_eq!(
            parse_partitions("share:1/2", 64).unwrap(),
            (32..64).collect::<Vec<_>>()
        );
        assert!(parse_partitions("share:2/2", 64).is_err());
        assert!(parse_partitions("share:0/0", 64).is_err());
        assert!(parse_partitions("share:0/9", 8).is_err());
    }

    #[test]
    fn a_detector_owning_part_of_the_partitions_keys_its_checkpoint_by_them() {
        let mut settings = BusSettings {
            kind: BusKind::Jetstream,
            role: NodeRole::Detector,
            partition_count: 8,
            partitions: "4,0-2".into(),
            ..BusSettings::default()
        };
        assert_eq!(
            settings.checkpoint_key().unwrap().as_deref(),
            Some("engine:partitions=0-2,4/8")
        );
        settings.partitions = "all".into();
        assert_eq!(
            settings.checkpoint_key().unwrap().as_deref(),
            Some("engine")
        );
        settings.role = NodeRole::Ingest;
        assert_eq!(settings.checkpoint_key().unwrap(), None);
        assert_eq!(
            BusSettings::default().checkpoint_key().unwrap().as_deref(),
            Some("engine")
        );
    }

    #[test]
    fn only_detectors_hand_their_ticks_to_the_linker_and_the_linker_keeps_no_engine_checkpoint() {
        let mut settings = BusSettings {
            kind: BusKind::Jetstream,
            role: NodeRole::Detector,
            linker: true,
            ..BusSettings::default()
        };
        settings.validate().unwrap();
        assert!(settings.hands_ticks_to_linker());
        settings.role = NodeRole::All;
        assert!(settings.validate().is_err());
        settings.role = NodeRole::Linker;
        assert!(settings.validate().is_err());
        settings.linker = false;
        settings.validate().unwrap();
        assert!(!settings.hands_ticks_to_linker());
        assert_eq!(settings.checkpoint_key().unwrap(), None);
    }

    #[test]
    fn the_default_is_embedded_and_valid() {
        let settings = BusSettings::default();
        assert_eq!(settings.kind, BusKind::Embedded);
        settings.validate().unwrap();
    }
}
