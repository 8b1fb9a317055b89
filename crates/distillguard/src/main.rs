//! TEMPORARY main (branch `sim`): only wires the subcommands this branch owns so they can be run
//! before the lead's main.rs lands. The lead's version replaces this file at merge.

mod cmd {
    pub mod bench;
    pub mod eval;
    pub mod simulate;
}

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "distillguard",
    version,
    about = "Distillation-abuse detection for model APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write labelled synthetic traffic.
    Simulate(cmd::simulate::SimulateArgs),
    /// Replay labelled traffic and score the findings.
    Eval(cmd::eval::EvalArgs),
    /// Load-test a running server over HTTP.
    Bench(cmd::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Bench(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(cmd::bench::run(args)),
    }
}
