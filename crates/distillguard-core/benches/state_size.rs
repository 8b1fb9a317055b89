//! Per-account memory at steady state, measured with a counting allocator: bytes held by a shard
//! (map entry, id, state, sketches) divided by its accounts, with evidence samples turned off.
//! Fails (exit code 1) above the 4 KiB budget.
//!
//! `cargo bench -p distillguard-core --bench state_size`

mod common;

use std::alloc::System;

use distillguard_core::engine::{EngineConfig, Shard};
use distillguard_core::time::EventTime;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BUDGET: isize = 4 * 1024;

fn main() {
    let accounts = 1_000;
    // 400 events per account on average (Zipf: some accounts get thousands, so both sparse and
    // dense HLLs are present), over ~2 days of event time.
    let events = common::events(11, accounts, accounts * 400, 400);
    let config = EngineConfig {
        sample_prompts: 0,
        ..EngineConfig::default()
    };
    let region = Region::new(GLOBAL);
    let mut shard = Shard::new(config, 1);
    let mut next_tick = events[0].timestamp.epoch_ms() + 5 * EventTime::MINUTE;
    for event in &events {
        if event.timestamp.epoch_ms() >= next_tick {
            drop(shard.tick(event.timestamp));
            next_tick += 5 * EventTime::MINUTE;
        }
        shard.observe(event);
    }
    drop(shard.tick(events.last().unwrap().timestamp));
    let change = region.change();
    // The allocator folds reallocations into allocated/deallocated already.
    let held = change.bytes_allocated as isize - change.bytes_deallocated as isize;
    let tracked = shard.tracked() as isize;
    let per_account = held / tracked;
    let mut accounted: Vec<usize> = (0..accounts)
        .filter_map(|i| {
            let id = distillguard_core::event::AccountId::parse(format!("acct-{i:06}")).ok()?;
            shard.account_bytes(&id)
        })
        .collect();
    accounted.sort_unstable();
    println!(
        "state_size: {tracked} accounts, {held} bytes held by the shard (allocator) = {per_account} bytes/account; \
         structural estimate median {} / max {} bytes; budget {BUDGET}",
        accounted[accounted.len() / 2],
        accounted[accounted.len() - 1]
    );
    drop(shard);
    if per_account > BUDGET {
        eprintln!("over the per-account budget");
        std::process::exit(1);
    }
}
