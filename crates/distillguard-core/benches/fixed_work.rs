//! One fixed pass over the bench workload, for `perf stat` (CPU time and instructions are
//! meaningful even on a shared machine where criterion's wall-clock numbers are not).
//!
//! `cargo bench -p distillguard-core --bench fixed_work` (prints events/s of CPU time): the
//! original workload (5 passes), then the engine bench's linked workload with linking on and off
//! (3 passes each).

mod common;

use distillguard_core::engine::{Engine, EngineConfig, LinkConfig};
use distillguard_core::event::ApiEvent;

/// Best CPU time of `passes` passes over `events` with `config`, printed with `label`.
fn best_of(label: &str, events: &[ApiEvent], config: &EngineConfig, passes: usize) {
    let mut best = f64::MAX;
    for _ in 0..passes {
        let start = common::cpu_seconds();
        let wall = std::time::Instant::now();
        let mut engine = Engine::new(config.clone(), 1);
        for event in events {
            engine.process(event);
        }
        engine.finish();
        let updates = engine.take_updates().len();
        let cpu = common::cpu_seconds() - start;
        best = best.min(cpu.max(0.01));
        println!(
            "fixed_work{label}: {} events, {updates} updates, {:.2}s wall, {:.2}s cpu",
            events.len(),
            wall.elapsed().as_secs_f64(),
            cpu
        );
    }
    println!(
        "fixed_work{label}: best {:.0} events/s of CPU time",
        events.len() as f64 / best
    );
}

fn main() {
    let events = common::events(7, 5_000, 200_000, 50);
    best_of("", &events, &EngineConfig::default(), 5);
    // The engine bench's linked workload (identity fields, hydra campaigns), linking on and off.
    let linked = common::linked_events(7, 5_000, 200_000, 50, &common::Campaigns::default());
    for (label, enabled) in [(" linked/linking_on", true), (" linked/linking_off", false)] {
        let config = EngineConfig {
            linking: LinkConfig {
                enabled,
                ..LinkConfig::default()
            },
            ..EngineConfig::default()
        };
        best_of(label, &linked, &config, 3);
    }
}
