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
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            queue_capacity: 262_144,
            dedup_window_secs: 600,
            dedup_capacity: 1_000_000,
            retry_after_secs: 1,
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
    pub idle_eviction_secs: u64,
    pub max_tracked_accounts: usize,
    pub flag_threshold: f64,
    pub sample_prompts: usize,
    pub sample_prompt_chars: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        let core = distillguard_core::engine::EngineConfig::default();
        Self {
            shards: 2,
            tick_secs: (core.tick_ms / 1000) as u64,
            allowed_lateness_secs: (core.allowed_lateness_ms / 1000) as u64,
            idle_eviction_secs: (core.idle_eviction_ms / 1000) as u64,
            max_tracked_accounts: core.max_tracked_accounts,
            flag_threshold: core.flag_threshold,
            sample_prompts: core.sample_prompts,
            sample_prompt_chars: core.sample_prompt_chars,
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
            idle_eviction_ms: self.idle_eviction_secs as i64 * 1000,
            max_tracked_accounts: self.max_tracked_accounts,
            flag_threshold: self.flag_threshold,
            sample_prompts: self.sample_prompts,
            sample_prompt_chars: self.sample_prompt_chars,
            ..distillguard_core::engine::EngineConfig::default()
        }
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
    pub sources: SourceSettings,
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
            sources: SourceSettings::default(),
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
