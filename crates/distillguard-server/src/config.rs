//! Typed configuration: defaults, then a TOML file, then `DISTILLGUARD_*` variables and flags.
//!
//! Every setting and its default is listed in `docs/configuration.md`; keep the two in step.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{Role, TokenSpec};

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid auth token entry #{index}: {reason}")]
    Token { index: usize, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// A value that must never be printed (database URLs carry passwords).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Ingest limits and backpressure.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest accepted body after decompression, in bytes.
    pub max_body_bytes: usize,
    /// Events that may wait between HTTP and the detection workers.
    pub queue_capacity: usize,
    /// Seconds (event time) within which a repeated `request_id` is a duplicate.
    pub dedup_window_secs: u64,
    /// Request ids remembered at most.
    pub dedup_capacity: usize,
    /// `Retry-After` seconds sent with 429/503.
    pub retry_after_secs: u64,
    /// Records dated further than this ahead of the wall clock are refused (`future_timestamp`).
    pub max_future_skew_secs: u64,
    /// Records older than this (wall clock) are refused (`too_old`); 0 accepts any age (replays
    /// of old logs).
    pub max_event_age_secs: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            queue_capacity: 262_144,
            dedup_window_secs: 600,
            dedup_capacity: 1_000_000,
            retry_after_secs: 1,
            max_future_skew_secs: 300,
            max_event_age_secs: 0,
        }
    }
}

/// Detection engine settings (event time).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Detection worker threads; accounts are sharded across them.
    pub shards: usize,
    pub tick_secs: u64,
    pub allowed_lateness_secs: u64,
    /// An event further ahead of the event-time clock than this is refused (not applied) unless
    /// `clock_corroboration` events in a row agree that time moved on.
    pub max_clock_jump_secs: u64,
    /// Events that must agree before the event-time clock starts or jumps ahead.
    pub clock_corroboration: usize,
    pub idle_eviction_secs: u64,
    pub max_tracked_accounts: usize,
    pub flag_threshold: f64,
    pub sample_prompts: usize,
    pub sample_prompt_chars: usize,
    /// Account linking and clusters (`[engine.linking]`).
    pub linking: LinkingSettings,
}

impl Default for EngineSettings {
    fn default() -> Self {
        let core = distillguard_core::engine::EngineConfig::default();
        Self {
            shards: 2,
            tick_secs: (core.tick_ms / 1000) as u64,
            allowed_lateness_secs: (core.allowed_lateness_ms / 1000) as u64,
            max_clock_jump_secs: (core.max_clock_jump_ms / 1000) as u64,
            clock_corroboration: core.clock_corroboration,
            idle_eviction_secs: (core.idle_eviction_ms / 1000) as u64,
            max_tracked_accounts: core.max_tracked_accounts,
            flag_threshold: core.flag_threshold,
            sample_prompts: core.sample_prompts,
            sample_prompt_chars: core.sample_prompt_chars,
            linking: LinkingSettings::default(),
        }
    }
}

impl EngineSettings {
    // The core grows detector settings of its own; those keep their core defaults.
    #[allow(clippy::needless_update)]
    pub fn engine_config(&self) -> distillguard_core::engine::EngineConfig {
        distillguard_core::engine::EngineConfig {
            tick_ms: self.tick_secs as i64 * 1000,
            allowed_lateness_ms: self.allowed_lateness_secs as i64 * 1000,
            max_clock_jump_ms: i64::try_from(self.max_clock_jump_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            clock_corroboration: self.clock_corroboration.max(1),
            idle_eviction_ms: self.idle_eviction_secs as i64 * 1000,
            max_tracked_accounts: self.max_tracked_accounts,
            flag_threshold: self.flag_threshold,
            sample_prompts: self.sample_prompts,
            sample_prompt_chars: self.sample_prompt_chars,
            linking: self.linking.link_config(),
            ..distillguard_core::engine::EngineConfig::default()
        }
    }
}

/// Account linking and clusters (`docs/detectors.md`, "Clusters"), event time. Per-kind link
/// weights keep their core defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LinkingSettings {
    /// Link accounts and judge their clusters as one actor; off scores accounts alone.
    pub enabled: bool,
    /// Sum of per-kind link weights at or above which two accounts are linked.
    pub link_threshold: f64,
    /// A shared value held by at most this many accounts links with its full weight.
    pub rare_up_to: u32,
    /// A shared value held by more accounts than this links nothing (NATs, cloud egress, SDKs).
    pub max_accounts_per_value: u32,
    /// A shared value whose rarity weight falls below this adds nothing to a link.
    pub min_value_weight: f64,
    /// Links kept per account (the strongest).
    pub max_links_per_account: usize,
    /// Accounts created within the same window of this many seconds share a creation bucket.
    pub creation_window_secs: u64,
    /// Cosine similarity of two accounts' last-24-hour activity at which they move in lockstep.
    pub lockstep_similarity: f64,
    /// Active hours (of 24) both accounts need before lockstep is judged.
    pub lockstep_min_active_hours: u32,
    /// Smallest group of linked accounts reported as a cluster.
    pub min_cluster_size: usize,
    /// Distinct shared rare addresses (subnets) add up to at most this many times one's weight.
    pub max_values_counted: f64,
    /// An account hops networks (a rotating proxy) from this many distinct /24s ...
    pub pool_min_networks: u32,
    /// ... with a new one at least every this many requests on average.
    pub pool_requests_per_network: f64,
    /// Addresses tie a network-hopping account to one that does not hop only from this many
    /// shared distinct rare exact addresses; fewer are a coincidence of residential ranges.
    pub hopper_min_shared_addresses: u32,
    /// Two hopping accounts are one proxy pool's from this many shared distinct rare addresses.
    pub pool_min_shared_addresses: u32,
}

impl Default for LinkingSettings {
    fn default() -> Self {
        let core = distillguard_core::engine::LinkConfig::default();
        Self {
            enabled: core.enabled,
            link_threshold: core.link_threshold,
            rare_up_to: core.rare_up_to,
            max_accounts_per_value: core.max_accounts_per_value,
            min_value_weight: core.min_value_weight,
            max_links_per_account: core.max_links_per_account,
            creation_window_secs: (core.creation_window_ms / 1000) as u64,
            lockstep_similarity: core.lockstep_similarity,
            lockstep_min_active_hours: core.lockstep_min_active_hours,
            min_cluster_size: core.min_cluster_size,
            max_values_counted: core.max_values_counted,
            pool_min_networks: core.pool_min_networks,
            pool_requests_per_network: core.pool_requests_per_network,
            hopper_min_shared_addresses: core.hopper_min_shared_addresses,
            pool_min_shared_addresses: core.pool_min_shared_addresses,
        }
    }
}

impl LinkingSettings {
    pub fn link_config(&self) -> distillguard_core::engine::LinkConfig {
        distillguard_core::engine::LinkConfig {
            enabled: self.enabled,
            link_threshold: self.link_threshold,
            rare_up_to: self.rare_up_to,
            max_accounts_per_value: self.max_accounts_per_value,
            min_value_weight: self.min_value_weight,
            max_links_per_account: self.max_links_per_account,
            creation_window_ms: i64::try_from(self.creation_window_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            lockstep_similarity: self.lockstep_similarity,
            lockstep_min_active_hours: self.lockstep_min_active_hours,
            min_cluster_size: self.min_cluster_size,
            max_values_counted: self.max_values_counted,
            pool_min_networks: self.pool_min_networks,
            pool_requests_per_network: self.pool_requests_per_network,
            hopper_min_shared_addresses: self.hopper_min_shared_addresses,
            pool_min_shared_addresses: self.pool_min_shared_addresses,
            ..distillguard_core::engine::LinkConfig::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        if !(self.link_threshold.is_finite() && self.link_threshold > 0.0) {
            return invalid("engine.linking.link_threshold must be a number above 0");
        }
        if !(0.0..=1.0).contains(&self.lockstep_similarity) {
            return invalid("engine.linking.lockstep_similarity must be within [0, 1]");
        }
        if self.lockstep_min_active_hours > 24 {
            return invalid("engine.linking.lockstep_min_active_hours must be at most 24");
        }
        if self.rare_up_to == 0 || self.max_accounts_per_value < self.rare_up_to.max(2) {
            return invalid(
                "engine.linking needs 1 <= rare_up_to <= max_accounts_per_value and max_accounts_per_value >= 2",
            );
        }
        if self.max_links_per_account == 0 {
            return invalid("engine.linking.max_links_per_account must be at least 1");
        }
        if self.creation_window_secs == 0 || self.creation_window_secs > 365 * 24 * 3600 {
            return invalid("engine.linking.creation_window_secs must be within 1..=31536000");
        }
        if self.min_cluster_size < 2 {
            return invalid("engine.linking.min_cluster_size must be at least 2");
        }
        if !(self.max_values_counted.is_finite() && self.max_values_counted >= 1.0) {
            return invalid("engine.linking.max_values_counted must be a number of at least 1");
        }
        if !(self.pool_requests_per_network.is_finite() && self.pool_requests_per_network >= 1.0) {
            return invalid("engine.linking.pool_requests_per_network must be at least 1");
        }
        if self.pool_min_shared_addresses == 0 || self.hopper_min_shared_addresses == 0 {
            return invalid(
                "engine.linking.pool_min_shared_addresses and hopper_min_shared_addresses must be at least 1",
            );
        }
        Ok(())
    }
}

/// Persistence of findings and review state.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Persist the text of sample prompts; off keeps only their hashes and times.
    pub keep_prompts: bool,
    /// A dismissed subject reopens when its score rises this much above its score at dismissal
    /// (or its severity rises).
    pub reopen_score_delta: f64,
    /// Database connections in the pool.
    pub max_connections: u32,
    /// Seconds between detector checkpoints (one is also taken at shutdown).
    pub checkpoint_interval_secs: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            keep_prompts: false,
            reopen_score_delta: 0.15,
            max_connections: 10,
            checkpoint_interval_secs: 60,
        }
    }
}

impl StoreSettings {
    pub fn store_options(&self) -> distillguard_store::StoreOptions {
        distillguard_store::StoreOptions {
            keep_prompts: self.keep_prompts,
            reopen: distillguard_store::ReopenRule {
                score_delta: self.reopen_score_delta,
            },
            max_connections: self.max_connections.max(1),
            ..distillguard_store::StoreOptions::default()
        }
    }
}

/// Decisions for gateways (`GET /v1/decisions`, `docs/integrations.md`, "Acting on findings").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionSettings {
    /// What an account id is at the gateway: `account`, `api_key` or `end_user` (match how the
    /// sources pick the account, e.g. LiteLLM `account_fields = ["end_user"]`).
    pub scope: distillguard_store::DecisionScope,
    /// What a confirmed finding asks the gateway to do: `block`, `throttle` or `review`.
    pub confirmed_action: distillguard_store::DecisionAction,
    /// Lifetime of a decision from a confirmed finding; 0 keeps it until the finding is reopened
    /// or the subject allowlisted.
    pub confirmed_ttl_secs: u64,
    /// Acting on flags nobody has reviewed yet (`[decisions.flagged]`); off by default.
    pub flagged: FlaggedDecisionSettings,
}

/// Decisions from unreviewed flags.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlaggedDecisionSettings {
    pub enabled: bool,
    /// Flags at or above this severity get a decision: `low`, `medium`, `high` or `critical`.
    pub min_severity: distillguard_core::finding::Severity,
    pub action: distillguard_store::DecisionAction,
    /// Lifetime of each decision; a re-score of a still-flagged subject renews it. 0: no expiry.
    pub ttl_secs: u64,
}

impl Default for DecisionSettings {
    fn default() -> Self {
        Self {
            scope: distillguard_store::DecisionScope::Account,
            confirmed_action: distillguard_store::DecisionAction::Block,
            confirmed_ttl_secs: 0,
            flagged: FlaggedDecisionSettings::default(),
        }
    }
}

impl Default for FlaggedDecisionSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            min_severity: distillguard_core::finding::Severity::High,
            action: distillguard_store::DecisionAction::Throttle,
            ttl_secs: 24 * 3600,
        }
    }
}

impl DecisionSettings {
    pub fn policy(&self) -> distillguard_store::DecisionPolicy {
        let ttl = |secs: u64| (secs > 0).then(|| std::time::Duration::from_secs(secs));
        distillguard_store::DecisionPolicy {
            scope: self.scope,
            confirmed_action: self.confirmed_action,
            confirmed_ttl: ttl(self.confirmed_ttl_secs),
            flagged: self
                .flagged
                .enabled
                .then(|| distillguard_store::FlaggedPolicy {
                    min_severity: self.flagged.min_severity,
                    action: self.flagged.action,
                    ttl: ttl(self.flagged.ttl_secs),
                }),
        }
    }
}

/// Webhooks on finding.flagged, finding.unflagged, finding.confirmed and finding.dismissed (`docs/integrations.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to send events; none: no events are recorded.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Attempts per event and endpoint before it moves to the dead-letter table.
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub initial_backoff_ms: u64,
    pub max_backoff_secs: u64,
    /// How often the outbox is checked for due deliveries.
    pub poll_interval_ms: u64,
    /// Per attempt.
    pub timeout_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            max_attempts: 10,
            initial_backoff_ms: 1_000,
            max_backoff_secs: 3_600,
            poll_interval_ms: 1_000,
            timeout_secs: 10,
        }
    }
}

/// One receiver of webhook events.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Stable name: deliveries are tracked per name, so renaming re-targets nothing pending.
    pub name: String,
    pub url: String,
    /// Shared secret for the HMAC-SHA256 signature.
    pub secret: Secret,
}

/// The event log of accepted events in `<data_dir>/wal/` (`docs/operations.md`, "Durability").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Append accepted events to the log before answering 202 and replay it after a crash; off,
    /// a crash loses what was accepted since the last checkpoint.
    pub enabled: bool,
    /// `always` (fsync before every 202, one fsync per group of concurrent requests), `interval`
    /// or `none`.
    pub fsync: crate::eventlog::FsyncPolicy,
    /// With `fsync = "interval"`: the longest a write stays unsynced.
    pub fsync_interval_ms: u64,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        let options = crate::eventlog::wal::WalOptions::default();
        Self {
            enabled: true,
            fsync: options.fsync,
            fsync_interval_ms: options.fsync_interval.as_millis() as u64,
            segment_bytes: options.segment_bytes,
        }
    }
}

impl LogSettings {
    pub fn wal_options(&self) -> crate::eventlog::wal::WalOptions {
        crate::eventlog::wal::WalOptions {
            fsync: self.fsync,
            fsync_interval: std::time::Duration::from_millis(self.fsync_interval_ms.max(1)),
            segment_bytes: self.segment_bytes.max(1024 * 1024),
        }
    }
}

/// Per-gateway decoding options (`docs/integrations.md`), e.g. which field is the account.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    pub litellm: distillguard_ingest::LitellmDecoder,
    pub kong: distillguard_ingest::KongDecoder,
    pub envoy: distillguard_ingest::EnvoyDecoder,
    pub otlp: distillguard_ingest::OtlpDecoder,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `postgres://…` for PostgreSQL; unset means SQLite in `data_dir`.
    pub database_url: Option<Secret>,
    pub data_dir: PathBuf,
    /// `role:token` or `role:sha256:HEX` entries; empty means auth is off (loopback only).
    pub auth_tokens: Vec<String>,
    /// Grace period for in-flight requests and draining at shutdown.
    pub shutdown_grace_secs: u64,
    pub ingest: IngestSettings,
    pub engine: EngineSettings,
    pub store: StoreSettings,
    pub log: LogSettings,
    pub sources: SourceSettings,
    pub decisions: DecisionSettings,
    pub webhooks: WebhookSettings,
    /// Where accepted events go before the detectors (`embedded` or `jetstream`).
    pub bus: crate::bus::BusSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            data_dir: PathBuf::from("./data"),
            auth_tokens: Vec::new(),
            shutdown_grace_secs: 30,
            ingest: IngestSettings::default(),
            engine: EngineSettings::default(),
            store: StoreSettings::default(),
            log: LogSettings::default(),
            sources: SourceSettings::default(),
            decisions: DecisionSettings::default(),
            webhooks: WebhookSettings::default(),
            bus: crate::bus::BusSettings::default(),
        }
    }
}

impl Settings {
    /// Defaults overlaid with a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// How the store is opened: `[store]` plus the decision policy.
    pub fn store_options(&self) -> distillguard_store::StoreOptions {
        distillguard_store::StoreOptions {
            decisions: self.decisions.policy(),
            webhook_endpoints: self
                .webhooks
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect(),
            ..self.store.store_options()
        }
    }

    /// Parses the token entries (they may arrive as plaintext; only their hashes are kept).
    pub fn token_specs(&self) -> Result<Vec<TokenSpec>, ConfigError> {
        self.auth_tokens
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                TokenSpec::parse(entry).map_err(|reason| ConfigError::Token { index, reason })
            })
            .collect()
    }

    /// Refuses settings that would be unsafe or useless, before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tokens = self.token_specs()?;
        if tokens.is_empty() && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {} with authentication off: configure DISTILLGUARD_AUTH_TOKENS \
                 (e.g. ingest:<secret>,analyst:<secret>) or listen on 127.0.0.1",
                self.listen
            )));
        }
        if self.engine.shards == 0 {
            return Err(ConfigError::Invalid(
                "engine.shards must be at least 1".into(),
            ));
        }
        if self.ingest.queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "ingest.queue_capacity must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.store.reopen_score_delta) {
            return Err(ConfigError::Invalid(
                "store.reopen_score_delta must be within [0, 1]".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.engine.flag_threshold) {
            return Err(ConfigError::Invalid(
                "engine.flag_threshold must be within [0, 1]".into(),
            ));
        }
        self.engine.linking.validate()?;
        self.bus.validate()?;
        let mut names = std::collections::HashSet::new();
        for endpoint in &self.webhooks.endpoints {
            if endpoint.name.trim().is_empty() || !names.insert(endpoint.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "webhooks.endpoints: names must be non-empty and unique ({:?})",
                    endpoint.name
                )));
            }
            if !(endpoint.url.starts_with("http://") || endpoint.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "webhooks.endpoints {:?}: url must be http:// or https://",
                    endpoint.name
                )));
            }
            if endpoint.secret.expose().len() < 16 {
                return Err(ConfigError::Invalid(format!(
                    "webhooks.endpoints {:?}: secret must be at least 16 characters",
                    endpoint.name
                )));
            }
        }
        Ok(())
    }

    /// True when some role has a token.
    pub fn auth_enabled(&self) -> bool {
        !self.auth_tokens.is_empty()
    }

    /// Roles that have at least one token, for the startup log line.
    pub fn configured_roles(&self) -> Vec<Role> {
        let mut roles: Vec<Role> = self
            .token_specs()
            .unwrap_or_default()
            .iter()
            .map(|t| t.role)
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_with_auth_off() {
        let settings = Settings::default();
        assert!(settings.listen.ip().is_loopback());
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn a_public_address_without_tokens_is_refused_at_start() {
        let settings = Settings {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..Settings::default()
        };
        let message = settings.validate().unwrap_err().to_string();
        assert!(message.contains("DISTILLGUARD_AUTH_TOKENS"), "{message}");
    }

    #[test]
    fn a_public_address_with_tokens_is_allowed() {
        let settings = Settings {
            listen: "0.0.0.0:8080".parse().unwrap(),
            auth_tokens: vec!["ingest:s3cret-value".into()],
            ..Settings::default()
        };
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn a_toml_file_overrides_defaults_and_keeps_the_rest() {
        let text = r#"
            listen = "127.0.0.1:9999"
            [ingest]
            queue_capacity = 10
            [engine]
            shards = 4
        "#;
        let settings: Settings = toml::from_str(text).unwrap();
        assert_eq!(settings.listen.port(), 9999);
        assert_eq!(settings.ingest.queue_capacity, 10);
        assert_eq!(settings.ingest.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(settings.engine.shards, 4);
    }

    #[test]
    fn decisions_act_on_confirmed_findings_only_until_flags_are_turned_on() {
        let policy = Settings::default().store_options().decisions;
        assert_eq!(policy, distillguard_store::DecisionPolicy::default());
        let text = r#"
            [decisions]
            scope = "end_user"
            confirmed_ttl_secs = 3600
            [decisions.flagged]
            enabled = true
            min_severity = "critical"
            action = "review"
        "#;
        let settings: Settings = toml::from_str(text).unwrap();
        let policy = settings.store_options().decisions;
        assert_eq!(policy.scope, distillguard_store::DecisionScope::EndUser);
        assert_eq!(
            policy.confirmed_ttl,
            Some(std::time::Duration::from_secs(3600))
        );
        let flagged = policy.flagged.unwrap();
        assert_eq!(
            flagged.min_severity,
            distillguard_core::finding::Severity::Critical
        );
        assert_eq!(flagged.action, distillguard_store::DecisionAction::Review);
        assert_eq!(flagged.ttl, Some(std::time::Duration::from_secs(86_400)));
        assert!(toml::from_str::<Settings>("[decisions]\nscope = \"ip\"").is_err());
    }

    #[test]
    fn gateway_sources_are_configured_in_their_own_tables() {
        let text = r#"
            [sources.litellm]
            account_fields = ["team_id", "api_key_hash"]
            [sources.envoy]
            account_keys = ["x-tenant"]
        "#;
        let settings: Settings = toml::from_str(text).unwrap();
        assert_eq!(
            settings.sources.envoy.account_keys,
            vec!["x-tenant".to_string()]
        );
        assert_eq!(settings.sources.litellm.account_fields.len(), 2);
    }

    #[test]
    fn linking_defaults_are_the_cores_and_the_file_overrides_them() {
        let core = distillguard_core::engine::LinkConfig::default();
        assert_eq!(Settings::default().engine.engine_config().linking, core);

        let text = r#"
            [engine.linking]
            enabled = false
            link_threshold = 1.5
            max_accounts_per_value = 50
            min_cluster_size = 5
            creation_window_secs = 600
            lockstep_similarity = 0.95
        "#;
        let settings: Settings = toml::from_str(text).unwrap();
        assert!(settings.validate().is_ok());
        let linking = settings.engine.engine_config().linking;
        assert!(!linking.enabled);
        assert_eq!(linking.link_threshold, 1.5);
        assert_eq!(linking.max_accounts_per_value, 50);
        assert_eq!(linking.min_cluster_size, 5);
        assert_eq!(linking.creation_window_ms, 600_000);
        assert_eq!(linking.lockstep_similarity, 0.95);
        assert_eq!(
            linking.rare_up_to, core.rare_up_to,
            "unset keys keep defaults"
        );
        assert_eq!(linking.weights, core.weights);
    }

    /// The documented file (`docs/configuration.md`, "File keys") is valid and states the defaults.
    #[test]
    fn the_documented_file_keys_parse_and_are_the_defaults() {
        let doc = include_str!("../../../docs/configuration.md");
        let block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block in docs/configuration.md");
        let documented: Settings = toml::from_str(block).expect("the documented keys parse");
        let defaults = Settings::default();
        assert_eq!(documented.engine, defaults.engine);
        assert_eq!(documented.ingest, defaults.ingest);
        assert_eq!(documented.store, defaults.store);
        assert_eq!(documented.log, defaults.log);
        assert_eq!(documented.listen, defaults.listen);
        assert_eq!(documented.shutdown_grace_secs, defaults.shutdown_grace_secs);
    }

    #[test]
    fn nonsensical_linking_settings_are_refused_at_start() {
        for text in [
            "[engine.linking]\nlink_threshold = 0.0",
            "[engine.linking]\nlockstep_similarity = 1.5",
            "[engine.linking]\nmin_cluster_size = 1",
            "[engine.linking]\ncreation_window_secs = 0",
            "[engine.linking]\nmax_accounts_per_value = 5",
        ] {
            let settings: Settings = toml::from_str(text).unwrap();
            let message = settings.validate().unwrap_err().to_string();
            assert!(message.contains("engine.linking"), "{text}: {message}");
        }
        assert!(toml::from_str::<Settings>("[engine.linking]\nthreshold = 1.0").is_err());
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors_not_silently_ignored() {
        assert!(toml::from_str::<Settings>("lisen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn database_urls_never_print() {
        let settings = Settings {
            database_url: Some(Secret::new("postgres://u:hunter2@db/x")),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
