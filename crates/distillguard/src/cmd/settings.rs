//! Flags and `DISTILLGUARD_*` variables shared by the subcommands that build a pipeline.
//!
//! Precedence: flag, then environment variable, then config file, then the built-in default.
//! `docs/configuration.md` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;

use distillguard_server::config::{LogFormat, Secret};
use distillguard_server::Settings;

#[derive(clap::Args, Debug, Clone)]
pub struct SettingsArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "DISTILLGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "DISTILLGUARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// PostgreSQL URL (postgres://…); unset uses SQLite in the data directory.
    #[arg(long, env = "DISTILLGUARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for the embedded database and other state.
    #[arg(long, env = "DISTILLGUARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated `role:token` or `role:sha256:HEX` entries (roles: ingest, analyst, admin).
    #[arg(
        long,
        env = "DISTILLGUARD_AUTH_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub auth_tokens: Option<Vec<String>>,
    /// Detection worker threads (accounts are sharded across them).
    #[arg(long, env = "DISTILLGUARD_SHARDS")]
    pub shards: Option<usize>,
    /// Events that may wait between HTTP and the detectors before ingest answers 429.
    #[arg(long, env = "DISTILLGUARD_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Largest accepted request body after decompression, in bytes.
    #[arg(long, env = "DISTILLGUARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Risk score at or above which a subject is flagged, in [0, 1].
    #[arg(long, env = "DISTILLGUARD_FLAG_THRESHOLD")]
    pub flag_threshold: Option<f64>,
    /// Link accounts into clusters judged as one actor (false scores accounts alone).
    #[arg(long, env = "DISTILLGUARD_LINKING")]
    pub linking: Option<bool>,
    /// Sum of link weights at or above which two accounts are linked.
    #[arg(long, env = "DISTILLGUARD_LINK_THRESHOLD")]
    pub link_threshold: Option<f64>,
    /// Smallest group of linked accounts reported as a cluster.
    #[arg(long, env = "DISTILLGUARD_MIN_CLUSTER_SIZE")]
    pub min_cluster_size: Option<usize>,
    /// Sample prompts kept per account as evidence (0 keeps none).
    #[arg(long, env = "DISTILLGUARD_SAMPLE_PROMPTS")]
    pub sample_prompts: Option<usize>,
    /// Persist the text of sample prompts (off: only hashes are stored).
    #[arg(long, env = "DISTILLGUARD_KEEP_PROMPTS")]
    pub keep_prompts: Option<bool>,
    /// Event log fsync policy: `always` (before every 202), `interval` or `none`.
    #[arg(long, env = "DISTILLGUARD_FSYNC")]
    pub fsync: Option<distillguard_server::eventlog::FsyncPolicy>,
    /// Event bus: `embedded` (in-process, the default) or `jetstream` (NATS JetStream).
    #[arg(long, env = "DISTILLGUARD_BUS", value_enum)]
    pub bus: Option<distillguard_server::bus::BusKind>,
    /// With the JetStream bus: `all` (ingest and detect), `ingest`, `detector` or `linker`.
    #[arg(long, env = "DISTILLGUARD_ROLE", value_enum)]
    pub role: Option<distillguard_server::bus::NodeRole>,
    /// NATS server URL for the JetStream bus.
    #[arg(long, env = "DISTILLGUARD_NATS_URL")]
    pub nats_url: Option<String>,
    /// JetStream stream name for the bus.
    #[arg(long, env = "DISTILLGUARD_BUS_STREAM")]
    pub bus_stream: Option<String>,
    /// Partitions this node consumes: `all` or ranges like `0-31,40`.
    #[arg(long, env = "DISTILLGUARD_BUS_PARTITIONS")]
    pub bus_partitions: Option<String>,
    /// Detectors hand their ticks to the linker role instead of scoring (`[bus] linker`).
    #[arg(long, env = "DISTILLGUARD_BUS_LINKER")]
    pub bus_linker: Option<bool>,
    /// Log filter (tracing syntax, e.g. `info,distillguard_server=debug`).
    #[arg(long, env = "DISTILLGUARD_LOG", default_value = "info")]
    pub log: String,
    /// Log format.
    #[arg(long, env = "DISTILLGUARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl SettingsArgs {
    /// Defaults, overlaid with the file, overlaid with environment and flags.
    pub fn load(&self) -> anyhow::Result<Settings> {
        let mut settings = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        if let Some(listen) = self.listen {
            settings.listen = listen;
        }
        if let Some(url) = &self.database_url {
            settings.database_url = Some(Secret::new(url.clone()));
        }
        if let Some(dir) = &self.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(tokens) = &self.auth_tokens {
            settings.auth_tokens = tokens
                .iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
        }
        if let Some(shards) = self.shards {
            settings.engine.shards = shards;
        }
        if let Some(capacity) = self.queue_capacity {
            settings.ingest.queue_capacity = capacity;
        }
        if let Some(bytes) = self.max_body_bytes {
            settings.ingest.max_body_bytes = bytes;
        }
        if let Some(threshold) = self.flag_threshold {
            settings.engine.flag_threshold = threshold;
        }
        if let Some(enabled) = self.linking {
            settings.engine.linking.enabled = enabled;
        }
        if let Some(threshold) = self.link_threshold {
            settings.engine.linking.link_threshold = threshold;
        }
        if let Some(size) = self.min_cluster_size {
            settings.engine.linking.min_cluster_size = size;
        }
        if let Some(samples) = self.sample_prompts {
            settings.engine.sample_prompts = samples;
        }
        if let Some(keep) = self.keep_prompts {
            settings.store.keep_prompts = keep;
        }
        if let Some(fsync) = self.fsync {
            settings.log.fsync = fsync;
        }
        if let Some(kind) = self.bus {
            settings.bus.kind = kind;
        }
        if let Some(role) = self.role {
            settings.bus.role = role;
        }
        if let Some(url) = &self.nats_url {
            settings.bus.url = url.clone();
        }
        if let Some(stream) = &self.bus_stream {
            settings.bus.stream = stream.clone();
        }
        if let Some(partitions) = &self.bus_partitions {
            settings.bus.partitions = partitions.clone();
        }
        if let Some(linker) = self.bus_linker {
            settings.bus.linker = linker;
        }
        settings.validate()?;
        Ok(settings)
    }
}
