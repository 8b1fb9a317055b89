//! distillguard's service layer: HTTP ingestion, the threaded detection pipeline, the review API,
//! metrics and the offline replay, all driving the pure core in `distillguard-core`.
//!
//! Design: [`app::Application`] binds its listener itself (port 0 in tests) and owns every task;
//! [`pipeline::Pipeline`] is the only way events reach the detectors, for `serve` and for
//! [`replay`] alike, so offline evaluation measures exactly what production runs.

pub mod api;
pub mod app;
pub mod auth;
pub mod bus;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod eventlog;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod telemetry;
pub mod webhooks;

pub use app::Application;
pub use config::Settings;
