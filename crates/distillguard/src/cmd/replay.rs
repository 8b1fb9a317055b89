//! `distillguard replay`: historical logs through the live pipeline, as fast as they can go.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use distillguard_server::{replay, telemetry};

use super::cpu::{per_cpu_second, CpuTime};
use super::settings::SettingsArgs;

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Canonical NDJSON file, plain or gzip; `-` reads standard input.
    pub input: PathBuf,
    /// Where to write the JSON report (`docs/report-format.md`); standard output when absent.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Splits the input by partition (`bus.partition_count`) over this many detectors, each
    /// seeing every event's timestamp and applying its share's events, scored by one linker:
    /// what detector nodes `share:I/N` and the linker role find (single-threaded).
    #[arg(long)]
    pub detectors: Option<u32>,
    /// With --detectors: each detector scores its own share, as detectors without a linker do.
    #[arg(long, requires = "detectors")]
    pub no_linker: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    telemetry::init(&args.settings.log, args.settings.log_format);
    let settings = args.settings.load()?;
    let started = Instant::now();
    let cpu_before = CpuTime::now();
    let outcome = match args.detectors {
        Some(detectors) => {
            let plan = replay::SplitPlan {
                detectors,
                linker: !args.no_linker,
            };
            replay::replay_split_path(&args.input, &settings, plan).await?
        }
        None => replay::replay_path(&args.input, &settings).await?,
    };
    let elapsed = started.elapsed();
    let cpu_seconds = CpuTime::now().seconds_since(&cpu_before);
    for rejected in &outcome.rejected {
        eprintln!(
            "line {}: {} ({})",
            rejected.line.unwrap_or(rejected.index + 1),
            rejected.error,
            rejected.error.reason.as_str()
        );
    }
    let flagged = outcome.report.accounts.iter().filter(|a| a.flagged).count();
    eprintln!(
        "replayed {} records in {:.2}s ({:.0} records/s; {:.2} CPU-seconds, {} records per CPU-second): {} events, {} late, {} duplicates, {} rejected; {} accounts with findings, {} flagged",
        outcome.records,
        elapsed.as_secs_f64(),
        outcome.records as f64 / elapsed.as_secs_f64().max(1e-9),
        cpu_seconds,
        per_cpu_second(outcome.records, cpu_seconds).map_or("unknown".to_string(), |r| format!("{r:.0}")),
        outcome.report.events,
        outcome.report.late_events,
        outcome.duplicates,
        outcome.rejected_count,
        outcome.report.accounts.len(),
        flagged,
    );
    if outcome.report.late_events > 0 {
        eprintln!(
            "{} events were late: more than engine.allowed_lateness_secs behind the newest event \
             before them, so they were counted but not scored. Sort the input by timestamp, or \
             raise allowed_lateness_secs in the config file for a shipper that reorders.",
            outcome.report.late_events
        );
    }
    let json = serde_json::to_vec_pretty(&outcome.report)?;
    match &args.report {
        Some(path) => std::fs::write(path, json)
            .with_context(|| format!("cannot write the report to {}", path.display()))?,
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&json)?;
            stdout.write_all(b"\n")?;
        }
    }
    Ok(())
}
