//! Speed at one million accounts with linking on, with the engine run as the service runs it: each
//! shard on its own thread and the scorer (with the linker inside it) on another, a tick's shard
//! reports handed over bounded channels, so the shards go on with the next five minutes of events
//! while the scorer judges the last (`distillguard-server`'s pipeline without HTTP and decoding,
//! which `distillguard bench` and `replay` measure). The scenario is `memory_1m`'s
//! (`common/million.rs`), generated and routed to the shards before the clock starts, so the
//! figures are the engine's alone; the allocator is the one the service ships, uncounted.
//!
//! `cargo bench -p distillguard-core --bench engine_1m`. `MEMORY_ACCOUNTS` and
//! `MEMORY_EVENTS_PER_ACCOUNT` as in `memory_1m` (1,000,000 and 3); `ENGINE_SHARDS` (default 2,
//! the service's `engine.shards`). Not part of CI: it needs a few GB and a minute.

mod common;

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;
use std::time::Instant;

use common::million;
use distillguard_core::engine::{shard_for, EngineConfig, Scorer, Shard, ShardReport};
use distillguard_core::event::ApiEvent;
use distillguard_core::time::EventTime;
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Ticks a shard may run ahead of the scorer (the pipeline's channels are bounded likewise).
const AHEAD: usize = 4;

/// One shard's events of each five minutes, each list followed by a tick at its end.
type Intervals = Vec<(EventTime, Vec<ApiEvent>)>;

/// The scenario's events routed to `shards` shards and cut at the ticks (every 5 minutes of
/// event time, a tick before the first event at or past it, and one after the last event).
fn routed(accounts: usize, per_account: usize, shards: usize) -> (Vec<Intervals>, usize) {
    let mut scenario = million::Scenario::new(accounts, per_account);
    let mut routed: Vec<Intervals> = vec![Vec::new(); shards];
    let mut next_tick = million::Scenario::start_ms() + 5 * EventTime::MINUTE;
    let open = |routed: &mut Vec<Intervals>, at: i64| {
        for intervals in routed.iter_mut() {
            intervals.push((EventTime::from_epoch_ms(at).unwrap(), Vec::new()));
        }
    };
    open(&mut routed, next_tick);
    let (mut chunk, mut events, mut more) = (Vec::new(), 0, true);
    while more {
        more = scenario.fill(&mut chunk, 4_096);
        for event in chunk.drain(..) {
            while event.timestamp.epoch_ms() >= next_tick {
                next_tick += 5 * EventTime::MINUTE;
                open(&mut routed, next_tick);
            }
            let shard = shard_for(&event.account_id, shards);
            routed[shard].last_mut().unwrap().1.push(event);
            events += 1;
        }
    }
    (routed, events)
}

fn run_shard(
    config: EngineConfig,
    count: usize,
    intervals: Intervals,
    out: SyncSender<ShardReport>,
) -> f64 {
    let mut shard = Shard::new(config, count);
    for (at, events) in intervals {
        for event in &events {
            shard.observe(event);
        }
        drop(events);
        if out.send(shard.tick(at)).is_err() {
            break;
        }
    }
    // The process ends next: tearing a million accounts down is not the engine's work.
    std::mem::forget(shard);
    common::thread_cpu_seconds()
}

/// Absorbs each tick's reports in shard order and scores them; returns the ticks scored, the
/// cluster findings and the thread's CPU seconds.
fn run_scorer(
    config: EngineConfig,
    ticks: Vec<EventTime>,
    from: Vec<Receiver<ShardReport>>,
) -> (usize, usize, usize, f64) {
    let mut scorer = Scorer::new(config, from.len());
    let mut scored = 0;
    for at in ticks {
        for (shard, rx) in from.iter().enumerate() {
            let report = rx.recv().expect("every shard reports every tick");
            scorer.absorb(shard, report);
        }
        drop(scorer.finish_tick(at));
        scored += 1;
    }
    let clusters = scorer.cluster_findings().count();
    let flagged = scorer.cluster_findings().filter(|c| c.flagged).count();
    std::mem::forget(scorer);
    (scored, clusters, flagged, common::thread_cpu_seconds())
}

fn main() {
    let accounts = million::env_or("MEMORY_ACCOUNTS", 1_000_000);
    let per_account = million::env_or("MEMORY_EVENTS_PER_ACCOUNT", 3);
    let shards = million::env_or("ENGINE_SHARDS", 2).max(1);
    let config = million::config(true);
    let (routed, events) = routed(accounts, per_account, shards);
    let ticks: Vec<EventTime> = routed[0].iter().map(|(at, _)| *at).collect();

    let cpu_started = common::cpu_seconds();
    let started = Instant::now();
    let mut receivers = Vec::new();
    let mut workers = Vec::new();
    for intervals in routed {
        let (tx, rx) = sync_channel(AHEAD);
        receivers.push(rx);
        let config = config.clone();
        workers.push(thread::spawn(move || {
            run_shard(config, shards, intervals, tx)
        }));
    }
    let scoring = thread::spawn(move || run_scorer(config, ticks, receivers));
    let (scored, clusters, flagged, scorer_cpu) = scoring.join().expect("the scorer finishes");
    let seconds = started.elapsed().as_secs_f64();
    let shard_cpu: Vec<f64> = workers
        .into_iter()
        .map(|w| w.join().expect("a shard finishes"))
        .collect();
    let cpu = common::cpu_seconds() - cpu_started;

    println!(
        "engine_1m: {accounts} accounts, {events} events, {shards} shard threads and a scorer, {scored} ticks in {seconds:.1} s: {:.0} events/s, {:.0} events per CPU-second ({cpu:.1} CPU-s, process)",
        events as f64 / seconds,
        events as f64 / cpu.max(0.01)
    );
    println!(
        "  thread CPU-s: scorer {scorer_cpu:.1}, shards {}; {clusters} cluster findings ({flagged} flagged)",
        shard_cpu
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
