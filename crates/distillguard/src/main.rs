//! `distillguard`: catches distillation abuse in model-API logs.
//!
//! Run with `cargo run --release -- serve`; `--help` on any subcommand lists its settings.

mod cmd;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "distillguard",
    version,
    about = "Detects distillation abuse of model APIs from gateway logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service: ingest, detection, review API, metrics.
    Serve(cmd::serve::ServeArgs),
    /// Replay canonical NDJSON logs offline through the same pipeline and write a report.
    Replay(cmd::replay::ReplayArgs),
    /// Write labelled synthetic traffic and its ground-truth labels.
    Simulate(cmd::simulate::SimulateArgs),
    /// Replay labelled traffic and score the findings against the labels.
    Eval(Box<cmd::eval::EvalArgs>),
    /// Load-test a running server over HTTP (loopback only).
    Bench(cmd::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dg-runtime")
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Replay(args) => cmd::replay::run(args).await,
            // Pure CPU and file work: run it off the async workers.
            Command::Simulate(args) => {
                tokio::task::spawn_blocking(move || cmd::simulate::run(args)).await?
            }
            Command::Eval(args) => cmd::eval::run(*args).await,
            Command::Bench(args) => cmd::bench::run(args).await,
        }
    })
}
