//! Engine throughput on one core with realistic events (procedurally generated, ~200-byte
//! median prompts, 5,000 accounts plus ten hydra campaigns of eight accounts that share cards,
//! proxies and a creation burst, scoring ticks every 5 minutes of event time), with account
//! linking on (`engine/linking_on`) and off (`engine/linking_off`) over the same events.
//!
//! `cargo bench -p distillguard-core --bench engine -- --warm-up-time 1 --measurement-time 3`

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use distillguard_core::engine::{Engine, EngineConfig, LinkConfig};
use distillguard_core::event::ApiEvent;
use distillguard_core::time::EventTime;

const EVENTS: usize = 200_000;

fn config(linking: bool) -> EngineConfig {
    EngineConfig {
        linking: LinkConfig {
            enabled: linking,
            ..LinkConfig::default()
        },
        ..EngineConfig::default()
    }
}

fn run(events: &[ApiEvent], linking: bool) -> Engine {
    let mut engine = Engine::new(config(linking), 1);
    for event in events {
        engine.process(event);
    }
    engine.finish();
    engine
}

fn engine_throughput(c: &mut Criterion) {
    // ~50 ms apart: 200k events span ~3 hours of event time, so ~36 scoring ticks run.
    let events = common::linked_events(7, 5_000, EVENTS, 50, &common::Campaigns::default());
    eprintln!(
        "median prompt {} bytes over {} events",
        common::median_prompt_bytes(&events),
        events.len()
    );
    // The linker must do real work: clusters form and the campaigns are reported.
    let report = run(&events, true).report();
    let flagged = report.clusters.iter().filter(|c| c.flagged).count();
    let members: usize = report.clusters.iter().map(|c| c.members.len()).sum();
    eprintln!(
        "linking on: {} clusters reported ({flagged} flagged, {members} members), {} account findings",
        report.clusters.len(),
        report.accounts.len()
    );
    assert!(!report.clusters.is_empty(), "no cluster formed");
    assert!(run(&events, false).report().clusters.is_empty());

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    for (name, linking) in [("linking_on", true), ("linking_off", false)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || Engine::new(config(linking), 1),
                |mut engine| {
                    for event in &events {
                        engine.process(event);
                    }
                    engine.finish();
                    engine.take_updates().len()
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.bench_function("observe_only_200k_events_no_ticks", |b| {
        b.iter_batched(
            || {
                Engine::new(
                    EngineConfig {
                        tick_ms: 1_000 * EventTime::DAY,
                        ..config(true)
                    },
                    1,
                )
            },
            |mut engine| {
                for event in &events {
                    engine.process(event);
                }
                engine.stats().events
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, engine_throughput);
criterion_main!(benches);
