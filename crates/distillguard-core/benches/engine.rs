//! Engine throughput on one core with realistic events (procedurally generated, ~200-byte
//! median prompts, 5,000 accounts, scoring ticks every 5 minutes of event time).
//!
//! `cargo bench -p distillguard-core --bench engine -- --warm-up-time 1 --measurement-time 3`

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use distillguard_core::engine::{Engine, EngineConfig};
use distillguard_core::time::EventTime;

const EVENTS: usize = 200_000;

fn engine_throughput(c: &mut Criterion) {
    // ~50 ms apart: 200k events span ~3 hours of event time, so ~36 scoring ticks run.
    let events = common::events(7, 5_000, EVENTS, 50);
    eprintln!(
        "median prompt {} bytes over {} events",
        common::median_prompt_bytes(&events),
        events.len()
    );
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function("process_200k_events_1_shard", |b| {
        b.iter_batched(
            || Engine::new(EngineConfig::default(), 1),
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
    group.bench_function("observe_only_200k_events_no_ticks", |b| {
        b.iter_batched(
            || {
                Engine::new(
                    EngineConfig {
                        tick_ms: 1_000 * EventTime::DAY,
                        ..EngineConfig::default()
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
