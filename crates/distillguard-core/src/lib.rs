//! Pure core of distillguard.
//!
//! Design: everything here is a deterministic function of its input order. No clocks, no threads,
//! no I/O: the server and the offline replay drive the same [`engine::Engine`] pieces, so replaying
//! a week of logs in a minute gives the same findings as living through it.
//!
//! - [`event`]: the canonical event every decoder produces, built from checked newtypes.
//! - [`finding`]: what the engine tells the outside world (scores, severities, evidence).
//! - [`engine`]: event-time clock, account shards and the population-level scorer.

pub mod engine;
pub mod event;
pub mod finding;
pub mod time;
