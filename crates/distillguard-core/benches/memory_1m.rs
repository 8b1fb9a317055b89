//! Memory with one million tracked accounts, measured with a counting allocator: the engine's
//! shard and scorer (with the linker inside it) are fed a few events for each of 1,000,000
//! accounts plus hydra campaigns, scored every 5 minutes of event time, and then dropped one at a
//! time to see what each held. Run with linking on and off, the difference is the linker's share.
//! Evidence samples are off (`sample_prompts: 0`) as in `state_size`.
//!
//! `cargo bench -p distillguard-core --bench memory_1m` (both modes; add `-- on` or `-- off` for
//! one). `MEMORY_ACCOUNTS` and `MEMORY_EVENTS_PER_ACCOUNT` override the defaults (1,000,000, 3).
//! Not part of CI: it needs a few GB and about a minute per mode in release.

mod common;

use std::alloc::System;
use std::net::IpAddr;
use std::time::Instant;

use common::Rng;
use distillguard_core::engine::{EngineConfig, LinkConfig, Scorer, Shard};
use distillguard_core::event::{AccountId, ApiEvent, ModelName};
use distillguard_core::time::EventTime;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Hydra campaigns (of `common::Campaigns::default().members` accounts each) among the accounts.
const CAMPAIGNS: usize = 100;
/// Share of events the campaigns send, per mille.
const CAMPAIGN_SHARE_PERMILLE: u64 = 10;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Bytes currently held on the heap by the whole process.
fn held() -> isize {
    let stats = INSTRUMENTED_SYSTEM.stats();
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

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// An ordinary account's event: chat, app or harvester shapes as in `common::events`, its own
/// client address in 10.0.0.0/8 (so a /24 holds ~15 accounts at a million), one of 40 SDK
/// versions, and its card and creation time from `common::identity`.
fn account_event(rng: &mut Rng, index: usize, t: i64, models: &[ModelName; 3]) -> ApiEvent {
    let mut event = ApiEvent::new(
        EventTime::from_epoch_ms(t).unwrap(),
        AccountId::parse(format!("acct-{index:07}")).unwrap(),
        models[index % 3].clone(),
    );
    let mut prompt = String::with_capacity(320);
    match index % 20 {
        0 => {
            let words = 22 + rng.below(25) as usize;
            common::sentence(rng, words, &mut prompt);
            prompt.push_str(" Explain your reasoning step by step.");
            event.messages = Some(1);
            event.params.max_tokens = Some(4_096);
        }
        1..=3 => {
            prompt.push_str("Summarise the following support ticket for the on-call engineer: ");
            let words = 15 + rng.below(20) as usize;
            common::sentence(rng, words, &mut prompt);
            event.system_prompt = Some("You are a concise support assistant for Acme Corp.".into());
            event.messages = Some(2);
        }
        _ => {
            let words = 20 + rng.below(25) as usize;
            common::sentence(rng, words, &mut prompt);
            event.messages = Some(1 + 2 * rng.below(3) as u32);
        }
    }
    event.usage.prompt_tokens = Some((prompt.len() / 4) as u32);
    event.usage.completion_tokens = Some(50 + rng.below(900) as u32);
    let h = Rng::new(index as u64 ^ 0x1f_5eed).next();
    event.client_ip = Some(IpAddr::from([
        10,
        (h >> 8) as u8,
        (h >> 16) as u8,
        (h >> 24) as u8,
    ]));
    event.user_agent = Some(format!("OpenAI/Python 1.{}.0", index % 40).into());
    event.prompt = Some(prompt);
    common::identity(index, &mut event);
    event
}

struct Run {
    accounts: usize,
    events: usize,
    ticks: usize,
    seconds: f64,
    cpu_seconds: f64,
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
    let config = EngineConfig {
        sample_prompts: 0,
        linking: LinkConfig {
            enabled: linking,
            ..LinkConfig::default()
        },
        ..EngineConfig::default()
    };
    let members = common::Campaigns::default().members;
    let hydras = CAMPAIGNS * members;
    let ordinary = accounts - hydras;
    let models = [
        ModelName::parse("gpt-4o").unwrap(),
        ModelName::parse("gpt-4o-mini").unwrap(),
        ModelName::parse("claude-sonnet").unwrap(),
    ];
    // Each pass visits every ordinary account once, in a scrambled order; passes are 8 hours of
    // event time apart in total, so the run spans per_account × 8 hours.
    let mut stride = 7_919;
    while gcd(stride, ordinary) != 1 {
        stride += 1;
    }
    let spacing = (8 * EventTime::HOUR / ordinary as i64).max(1);
    let mut rng = Rng::new(2_024);
    let mut side = Rng::new(4_048);

    reset_peak_rss();
    let base = held();
    let mut peak = 0isize;
    let started = Instant::now();
    let cpu_started = common::cpu_seconds();
    let mut shard = Shard::new(config.clone(), 1);
    let mut scorer = Scorer::new(config, 1);
    let mut t = common::START_MS;
    let mut next_tick = t + 5 * EventTime::MINUTE;
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
    for pass in 0..per_account {
        for j in 0..ordinary {
            t += spacing;
            while t >= next_tick {
                tick(&mut shard, &mut scorer, next_tick, &mut peak);
                ticks += 1;
                next_tick += 5 * EventTime::MINUTE;
            }
            let index = (j * stride + pass * 13) % ordinary;
            shard.observe(&account_event(&mut rng, index, t, &models));
            events += 1;
            if side.below(1_000) < CAMPAIGN_SHARE_PERMILLE {
                let member = side.below(hydras as u64) as usize;
                let event =
                    common::campaign_event(&mut side, member / members, member % members, t);
                shard.observe(&event);
                events += 1;
            }
        }
    }
    tick(&mut shard, &mut scorer, next_tick, &mut peak);
    ticks += 1;
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

/// Mean bytes per part of an ordinary account's state (every 1,000th account), as
/// `AccountState::memory_breakdown` names them.
fn breakdown(shard: &Shard) {
    let accounts = shard.accounts_sorted();
    let sampled: Vec<_> = accounts
        .iter()
        .filter(|(id, _)| id.as_str().starts_with("acct-"))
        .step_by(1_000)
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
        "memory_1m linking {label}: {} accounts, {} events, {} ticks in {:.1} s, {:.1} CPU-s ({:.0} events/s, {:.0} events per CPU-second, with the counting allocator)",
        r.accounts,
        r.events,
        r.ticks,
        r.seconds,
        r.cpu_seconds,
        r.events as f64 / r.seconds,
        r.events as f64 / r.cpu_seconds.max(0.01)
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
    let accounts = env_or("MEMORY_ACCOUNTS", 1_000_000);
    let per_account = env_or("MEMORY_EVENTS_PER_ACCOUNT", 3).max(1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = |mode: &str| args.iter().any(|a| a == mode);
    let (on, off) = match (only("on"), only("off")) {
        (false, false) => (true, true),
        modes => modes,
    };
    assert!(
        accounts > CAMPAIGNS * common::Campaigns::default().members,
        "too few accounts"
    );
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
