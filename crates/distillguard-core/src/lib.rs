//! Pure core of distillguard.
//!
//! Design: everything here is a deterministic function of its input order. No clocks, no threads,
//! no I/O: the server and the offline replay drive the same [`engine::Engine`] pieces, so replaying
//! a week of logs in a minute gives the same findings as living through it.
//!
//! - [`event`]: the canonical event every decoder produces, built from checked newtypes.
//! - [`finding`]: what the engine tells the outside world (scores, severities, evidence).
//! - [`engine`]: event-time clock, account shards and the population-level scorer.
//! - [`link`]: links between accounts and the clusters they form.
//! - [`partitioned`]: detectors owning part of the partitions, scored together by one scorer.
//! - [`features`]: per-account state updated per event, and the summary scored at ticks.
//! - [`detect`]: the detector suite and how its scores combine (`docs/detectors.md`).
//! - [`sketch`], [`text`], [`population`]: the bounded building blocks.

pub mod detect;
pub mod engine;
pub mod event;
pub mod features;
pub mod finding;
pub mod link;
pub mod partitioned;
pub mod population;
pub mod scorer;
pub mod shard;
pub mod sketch;
pub mod text;
pub mod time;
