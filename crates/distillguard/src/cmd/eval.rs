//! `distillguard eval`: replays labelled traffic and scores the findings against the labels
//! (see `docs/evaluation.md`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use distillguard_core::finding::Report;
use distillguard_core::time::EventTime;
use distillguard_sim::eval::{check, evaluate, render, Thresholds};
use distillguard_sim::Labels;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

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

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let labels: Labels = serde_json::from_reader(BufReader::new(
        File::open(&args.labels).with_context(|| format!("opening {}", args.labels.display()))?,
    ))
    .with_context(|| format!("parsing {}", args.labels.display()))?;
    let report: Report = match &args.report {
        Some(path) => serde_json::from_reader(BufReader::new(File::open(path)?))
            .with_context(|| format!("parsing report {}", path.display()))?,
        None => interim_replay::replay(&args.traffic)?,
    };
    if let Some(path) = &args.write_report {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), &report)?;
    }
    let firsts = first_events(&args.traffic)?;
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

/// TEMPORARY, to be replaced by `distillguard_server::replay::replay_path` once it is on main:
/// decodes canonical NDJSON and drives the core engine exactly as `replay` will, so the
/// evaluation can run before the server crate exists.
mod interim_replay {
    use std::collections::BTreeMap;
    use std::path::Path;

    use anyhow::Context;
    use distillguard_core::engine::{Engine, EngineConfig};
    use distillguard_core::event::{
        parse_client_ip, AccountId, ApiEvent, ModelName, Params, Usage,
    };
    use distillguard_core::finding::Report;
    use distillguard_core::time::EventTime;
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct WireParams {
        temperature: Option<f64>,
        top_p: Option<f64>,
        max_tokens: Option<u32>,
        n: Option<u32>,
        logprobs: Option<bool>,
        top_logprobs: Option<u32>,
        seed: Option<i64>,
        stream: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct WireUsage {
        prompt_tokens: Option<u32>,
        completion_tokens: Option<u32>,
        reasoning_tokens: Option<u32>,
        cached_tokens: Option<u32>,
    }

    #[derive(Deserialize)]
    struct Wire {
        timestamp: EventTime,
        account_id: String,
        model: String,
        request_id: Option<String>,
        api_key_id: Option<String>,
        end_user: Option<String>,
        client_ip: Option<String>,
        user_agent: Option<String>,
        endpoint: Option<String>,
        prompt: Option<String>,
        system_prompt: Option<String>,
        messages: Option<u32>,
        #[serde(default)]
        params: WireParams,
        #[serde(default)]
        usage: WireUsage,
        status: Option<u16>,
        latency_ms: Option<u64>,
        payment_fingerprint: Option<String>,
        account_created_at: Option<EventTime>,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    }

    fn to_event(wire: Wire) -> anyhow::Result<ApiEvent> {
        let mut event = ApiEvent::new(
            wire.timestamp,
            AccountId::parse(wire.account_id)?,
            ModelName::parse(wire.model)?,
        );
        event.request_id = wire.request_id;
        event.api_key_id = wire.api_key_id;
        event.end_user = wire.end_user;
        event.client_ip = wire
            .client_ip
            .as_deref()
            .and_then(|ip| parse_client_ip(ip).ok());
        event.user_agent = wire.user_agent;
        event.endpoint = wire.endpoint;
        event.prompt = wire.prompt;
        event.system_prompt = wire.system_prompt;
        event.messages = wire.messages;
        let p = wire.params;
        event.params = Params {
            temperature: p.temperature,
            top_p: p.top_p,
            max_tokens: p.max_tokens,
            n: p.n,
            logprobs: p.logprobs,
            top_logprobs: p.top_logprobs,
            seed: p.seed,
            stream: p.stream,
        };
        let u = wire.usage;
        event.usage = Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            reasoning_tokens: u.reasoning_tokens,
            cached_tokens: u.cached_tokens,
        };
        event.status = wire.status;
        event.latency_ms = wire.latency_ms;
        event.payment_fingerprint = wire.payment_fingerprint;
        event.account_created_at = wire.account_created_at;
        event.metadata = wire.metadata;
        Ok(event)
    }

    pub(super) fn replay(path: &Path) -> anyhow::Result<Report> {
        let mut engine = Engine::new(EngineConfig::default(), 1);
        let mut reader = super::open_maybe_gzip(path)?;
        let mut line = String::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 {
                break;
            }
            number += 1;
            if line.trim().is_empty() {
                continue;
            }
            let wire: Wire = serde_json::from_str(&line)
                .with_context(|| format!("{}:{number}", path.display()))?;
            engine
                .process(&to_event(wire).with_context(|| format!("{}:{number}", path.display()))?);
            engine.take_updates();
        }
        engine.finish();
        Ok(engine.report())
    }
}
