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

/// Makes room for one more item in a list capped at `limit` items, growing it by a quarter (from
/// one item; a reallocation every few inserts, only until the list is full) instead of reserving
/// the cap at once: at a million accounts most lists hold a few items
/// of their cap (one client address of a 24-address sample), and a reserved cap is memory held
/// for nothing. Contents, and so every estimate read from them, do not depend on the capacity.
#[inline]
pub fn reserve_one<T>(list: &mut Vec<T>, limit: usize) {
    let len = list.len();
    if len == list.capacity() {
        let want = (len + (len / 4).max(1)).min(limit.max(len + 1));
        list.reserve_exact(want - len);
    }
}
