//! Small, bounded, serialisable sketches used by the per-account state.
//!
//! Every hash here is our own stable function (not `ahash`, whose output depends on the CPU's AES
//! support and the crate version), so a checkpoint written on one machine restores on another and
//! replays give the same numbers everywhere.

pub mod bitmap;
pub mod bottomk;
pub mod hash;
pub mod hll;
pub mod lsh;
pub mod topk;

pub use bitmap::LinearCounter;
pub use bottomk::BottomK;
pub use hash::{combine, fast_hash, fnv1a, mix64, stable_hash, Fnv};
pub use hll::DistinctCounter;
pub use topk::FrequentItems;
