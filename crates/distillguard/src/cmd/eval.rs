//! `distillguard eval`: replays labelled traffic and scores the findings against the labels
//! (see `docs/evaluation.md`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use distillguard_core::finding::Report;
use distillguard_core::time::EventTime;
use distillguard_server::{replay, telemetry};
use distillguard_sim::eval::{check, evaluate, render, Thresholds};
use distillguard_sim::Labels;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use super::settings::SettingsArgs;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Traffic file (canonical NDJSON, gzipped or not).
    #[arg(long)]
    pub traffic: PathBuf,
    /// Labels file written by `simulate`.
    #[arg(long)]
    pub labels: PathBuf,
    /// Evaluate this report instead of replaying the traffic (the traffic is still read for
    /// campaign start times).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write the replay report here.
    #[arg(long)]
    pub write_report: Option<PathBuf>,
    /// Print the evaluation as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub min_recall: Option<f64>,
    #[arg(long)]
    pub min_precision: Option<f64>,
    #[arg(long)]
    pub min_f1: Option<f64>,
    /// Highest acceptable share of benign accounts flagged.
    #[arg(long)]
    pub max_fpr: Option<f64>,
    /// Lowest acceptable share of campaigns with at least one flagged account.
    #[arg(long)]
    pub min_campaigns_detected: Option<f64>,
    /// `ARCHETYPE=RATE`: minimum recall for an attack archetype, maximum FPR for a benign one.
    /// Repeatable.
    #[arg(long = "archetype-rate", value_parser = parse_archetype_rate)]
    pub archetype_rates: Vec<(String, f64)>,
    /// The replay's engine settings, exactly as `distillguard replay` takes them.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

fn parse_archetype_rate(text: &str) -> Result<(String, f64), String> {
    let (name, rate) = text.split_once('=').ok_or("expected ARCHETYPE=RATE")?;
    let rate: f64 = rate.parse().map_err(|_| format!("not a number: {rate}"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err("rate must be within 0..=1".into());
    }
    Ok((name.to_string(), rate))
}

/// Opens a file, decompressing it when it starts with the gzip magic bytes.
pub(crate) fn open_maybe_gzip(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let read = file.read(&mut magic)?;
    let file = File::open(path)?;
    if read == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(file),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}

/// First event time of every account in the traffic. Campaign start times for time-to-detect
/// come from here, so any traffic file with labels can be evaluated, simulated or not.
fn first_events(path: &Path) -> anyhow::Result<HashMap<String, EventTime>> {
    #[derive(Deserialize)]
    struct Head {
        timestamp: EventTime,
        account_id: String,
    }
    let mut firsts: HashMap<String, EventTime> = HashMap::new();
    let mut reader = open_maybe_gzip(path)?;
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        // Lines the replay rejects are skipped here as well; they cannot start a campaign.
        let Ok(head) = serde_json::from_str::<Head>(&line) else {
            continue;
        };
        firsts
            .entry(head.account_id)
            .and_modify(|t| *t = (*t).min(head.timestamp))
            .or_insert(head.timestamp);
    }
    if number == 0 {
        bail!("{} is empty", path.display());
    }
    Ok(firsts)
}

/// Async because the replay runs the server's pipeline.
pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    telemetry::init(&args.settings.log, args.settings.log_format);
    let labels: Labels = serde_json::from_reader(BufReader::new(
        File::open(&args.labels).with_context(|| format!("opening {}", args.labels.display()))?,
    ))
    .with_context(|| format!("parsing {}", args.labels.display()))?;
    let report: Report = match &args.report {
        Some(path) => serde_json::from_reader(BufReader::new(File::open(path)?))
            .with_context(|| format!("parsing report {}", path.display()))?,
        None => {
            // The same decode and pipeline as `distillguard replay`, so the evaluation measures
            // what the service would do.
            let settings = args.settings.load()?;
            let outcome = replay::replay_path(&args.traffic, &settings).await?;
            if outcome.rejected_count > 0 {
                eprintln!(
                    "warning: {} records were rejected by the decoder",
                    outcome.rejected_count
                );
            }
            outcome.report
        }
    };
    if let Some(path) = &args.write_report {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), &report)?;
    }
    let traffic = args.traffic.clone();
    let firsts = tokio::task::spawn_blocking(move || first_events(&traffic)).await??;
    let evaluation = evaluate(&report, &labels, &firsts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
    } else {
        print!("{}", render(&evaluation));
    }
    let failures = check(
        &evaluation,
        &Thresholds {
            min_recall: args.min_recall,
            min_precision: args.min_precision,
            min_f1: args.min_f1,
            max_fpr: args.max_fpr,
            min_campaigns_detected: args.min_campaigns_detected,
            archetype_rates: args.archetype_rates.clone(),
        },
    );
    if !failures.is_empty() {
        bail!("evaluation below thresholds:\n  {}", failures.join("\n  "));
    }
    Ok(())
}
