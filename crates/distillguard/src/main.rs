//! `distillguard`: catches distillation abuse in model-API logs.
//!
//! Run with `cargo run --release -- serve`; `--help` on any subcommand lists its settings.

mod cmd;

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
        }
    })
}
