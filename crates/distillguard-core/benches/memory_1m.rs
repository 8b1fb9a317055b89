//! Memory with one million tracked accounts, measured with a counting allocator: the engine's
//! shard and scorer (with the linker inside it) are fed a few events for each of 1,000,000
//! accounts plus hydra campaigns, scored every 5 minutes of event time, and then dropped one at a
//! time to see what each held. Run with linking on and off, the difference is the linker's share.
//! Evidence samples are off (`sample_prompts: 0`) as in `state_size`. The scenario is shared with
//! `engine_1m` (`common/million.rs`), which measures its speed on the service's threads; this
//! bench also prints the engine's CPU in one thread, apart from its own event generation.
//!
//! `cargo bench -p distillguard-core --bench memory_1m` (both modes; add `-- on` or `-- off` for
//! one). `MEMORY_ACCOUNTS` and `MEMORY_EVENTS_PER_ACCOUNT` override the defaults (1,000,000, 3).
//! Not part of CI: it needs a few GB and about a minute per mode in release.

mod common;

use std::time::Instant;

use common::million;
use distillguard_core::engine::{Scorer, Shard};
use distillguard_core::event::ApiEvent;
use distillguard_core::time::EventTime;
use mimalloc::MiMalloc;
use stats_alloc::StatsAlloc;

/// The allocator the service ships (`distillguard`'s default `mimalloc` feature), counted: the
/// counts are bytes requested, so the memory figures do not depend on the allocator, and the
/// speed figures are the service's, not glibc malloc's.
#[global_allocator]
static GLOBAL: StatsAlloc<MiMalloc> = StatsAlloc::new(MiMalloc);

/// Events generated before the engine is fed them (and timed on them).
const CHUNK: usize = 4_096;

/// Bytes currently held on the heap by the whole process.
fn held() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

/// Peak resident set size of the process, from /proc (kB), if readable.
fn peak_rss_kb() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets the peak RSS counter (Linux: `5` to `/proc/self/clear_refs`); best effort.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Run {
    accounts: usize,
    events: usize,
    ticks: usize,
    seconds: f64,
    cpu_seconds: f64,
    engine_cpu_seconds: f64,
    total: isize,
    shard: isize,
    scorer: isize,
    peak: isize,
    linked: usize,
    cluster_findings: usize,
    flagged_clusters: usize,
    peak_rss_kb: Option<u64>,
}

/// One mode; `first` says whether it is the first run in this process (only then is the peak
/// RSS its own: freed memory stays with the process).
fn run(linking: bool, accounts: usize, per_account: usize, first: bool) -> Run {
    let config = million::config(linking);
    let mut scenario = million::Scenario::new(accounts, per_account);
    reset_peak_rss();
    let base = held();
    let mut peak = 0isize;
    let started = Instant::now();
    let cpu_started = common::cpu_seconds();
    let mut engine_cpu = 0.0;
    let mut shard = Shard::new(config.clone(), 1);
    let mut scorer = Scorer::new(config, 1);
    let mut next_tick = million::Scenario::start_ms() + 5 * EventTime::MINUTE;
    let (mut events, mut ticks) = (0usize, 0usize);
    let tick = |shard: &mut Shard, scorer: &mut Scorer, at: i64, peak: &mut isize| {
        let at = EventTime::from_epoch_ms(at).unwrap();
        let report = shard.tick(at);
        *peak = (*peak).max(held() - base);
        scorer.absorb(0, report);
        let updates = scorer.finish_tick(at);
        *peak = (*peak).max(held() - base);
        drop(updates);
    };
    // Events are generated a chunk at a time and the engine's work on each chunk is timed on its
    // own (thread CPU time), so "engine events per CPU-second" leaves out the bench's generator:
    // in the service that work is the gateway's, and decoding is measured by `replay`.
    let mut chunk: Vec<ApiEvent> = Vec::with_capacity(CHUNK + 1);
    let mut more = true;
    while more {
        more = scenario.fill(&mut chunk, CHUNK);
        let cpu = common::thread_cpu_seconds();
        for event in chunk.drain(..) {
            while event.timestamp.epoch_ms() >= next_tick {
                tick(&mut shard, &mut scorer, next_tick, &mut peak);
                ticks += 1;
                next_tick += 5 * EventTime::MINUTE;
            }
            shard.observe(&event);
            events += 1;
        }
        engine_cpu += common::thread_cpu_seconds() - cpu;
    }
    let cpu = common::thread_cpu_seconds();
    tick(&mut shard, &mut scorer, next_tick, &mut peak);
    engine_cpu += common::thread_cpu_seconds() - cpu;
    ticks += 1;
    drop(chunk);
    let seconds = started.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds() - cpu_started;
    let peak_rss_kb = peak_rss_kb().filter(|_| first);
    let total = held() - base;
    let tracked = shard.tracked();
    breakdown(&shard);
    if linking {
        println!("  linker, bytes per linked account (counts in parentheses: per account):");
        let n = scorer.linked_accounts().max(1);
        for (name, bytes) in scorer.linker_memory() {
            if name.starts_with('(') {
                println!("    {name:<32} {:>7.2}", bytes as f64 / n as f64);
            } else {
                println!("    {name:<32} {:>7}", bytes / n);
            }
        }
    }
    let linked = scorer.linked_accounts();
    let cluster_findings = scorer.cluster_findings().count();
    let flagged_clusters = scorer.cluster_findings().filter(|c| c.flagged).count();
    let before = held();
    drop(scorer);
    let scorer_bytes = before - held();
    let before = held();
    drop(shard);
    let shard_bytes = before - held();
    Run {
        accounts: tracked,
        events,
        ticks,
        seconds,
        cpu_seconds: cpu,
        engine_cpu_seconds: engine_cpu,
        total,
        shard: shard_bytes,
        scorer: scorer_bytes,
        peak,
        linked,
        cluster_findings,
        flagged_clusters,
        peak_rss_kb,
    }
}

/// Mean bytes per part of an ordinary account's state (every 997th account: a prime, so that the sample is not always one of the scenario's 20 account shapes), as
/// `AccountState::memory_breakdown` names them.
fn breakdown(shard: &Shard) {
    let accounts = shard.accounts_sorted();
    let sampled: Vec<_> = accounts
        .iter()
        .filter(|(id, _)| id.as_str().starts_with("acct-"))
        .step_by(997)
        .collect();
    let mut sums: Vec<(&'static str, usize)> = Vec::new();
    for (_, state) in &sampled {
        for (i, (name, bytes)) in state.memory_breakdown().into_iter().enumerate() {
            if i == sums.len() {
                sums.push((name, 0));
            }
            sums[i].1 += bytes;
        }
    }
    let n = sampled.len().max(1);
    let total: usize = sums.iter().map(|(_, b)| b).sum();
    println!(
        "  state of an ordinary account, mean of {n}: {} bytes (inline + heap, map entry and id aside)",
        total / n
    );
    for (name, bytes) in sums {
        println!("    {name:<24} {:>5}", bytes / n);
    }
}

fn report(label: &str, r: &Run) {
    let per = |bytes: isize| bytes / r.accounts.max(1) as isize;
    println!(
        "memory_1m linking {label}: {} accounts, {} events, {} ticks in {:.1} s, {:.1} CPU-s with the generator ({:.0} events/s, {:.0} events per CPU-second)",
        r.accounts,
        r.events,
        r.ticks,
        r.seconds,
        r.cpu_seconds,
        r.events as f64 / r.seconds,
        r.events as f64 / r.cpu_seconds.max(0.01)
    );
    println!(
        "  engine alone: {:.1} CPU-s, {:.0} events per CPU-second (counting mimalloc)",
        r.engine_cpu_seconds,
        r.events as f64 / r.engine_cpu_seconds.max(0.01)
    );
    println!(
        "  held {:.0} MiB = {} bytes/account: shard {:.0} MiB ({} bytes/account), scorer {:.0} MiB ({} bytes/account)",
        mib(r.total),
        per(r.total),
        mib(r.shard),
        per(r.shard),
        mib(r.scorer),
        per(r.scorer)
    );
    println!(
        "  peak held at tick boundaries {:.0} MiB; peak RSS {}; linker holds {} accounts; {} cluster findings ({} flagged)",
        mib(r.peak),
        r.peak_rss_kb
            .map_or("n/a (second mode in this process; run it alone for its RSS)".to_owned(), |kb| {
                format!("{:.0} MiB", kb as f64 / 1024.0)
            }),
        r.linked,
        r.cluster_findings,
        r.flagged_clusters
    );
}

fn main() {
    let accounts = million::env_or("MEMORY_ACCOUNTS", 1_000_000);
    let per_account = million::env_or("MEMORY_EVENTS_PER_ACCOUNT", 3).max(1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = |mode: &str| args.iter().any(|a| a == mode);
    let (on, off) = match (only("on"), only("off")) {
        (false, false) => (true, true),
        modes => modes,
    };
    // Linking on first: its peak RSS is then measured in a fresh process.
    let with = on.then(|| run(true, accounts, per_account, true));
    if let Some(r) = &with {
        report("on", r);
    }
    let without = off.then(|| run(false, accounts, per_account, !on));
    if let Some(r) = &without {
        report("off", r);
    }
    if let (Some(with), Some(without)) = (&with, &without) {
        let linker = with.scorer - without.scorer;
        println!(
            "memory_1m: the linker's share ≈ {:.0} MiB = {} bytes/account ({:.0} % of the total with linking on)",
            mib(linker),
            linker / with.accounts.max(1) as isize,
            100.0 * linker as f64 / with.total.max(1) as f64
        );
    }
}
