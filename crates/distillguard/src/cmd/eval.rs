//! `distillguard eval`: replays labelled traffic and scores the findings against the labels
//! (see `docs/evaluation.md`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use distillguard_core::finding::Report;
use distillguard_core::time::EventTime;
use distillguard_server::{replay, telemetry};
use distillguard_sim::eval::{check, evaluate, render, FlagDelay, Thresholds, Traffic};
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
    /// campaign start times and the requests that leaked).
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
    /// Highest acceptable share of campaign requests answered before detection.
    #[arg(long)]
    pub max_leaked: Option<f64>,
    /// `ARCHETYPE=SHARE`: highest acceptable share of an attack archetype's requests answered
    /// before detection. Repeatable.
    #[arg(long = "archetype-leaked", value_parser = parse_archetype_rate)]
    pub archetype_leaked: Vec<(String, f64)>,
    /// Attack archetype whose every campaign must be found as one flagged cluster holding 90% of
    /// its accounts, with `--cluster-min-purity`, within `--cluster-max-hours` of its first
    /// event; also fails if any benign account is in a flagged attack cluster. Repeatable.
    #[arg(long = "cluster-archetype")]
    pub cluster_archetypes: Vec<String>,
    #[arg(long, default_value_t = 0.95)]
    pub cluster_min_purity: f64,
    #[arg(long, default_value_t = 6.0)]
    pub cluster_max_hours: f64,
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

/// Reads what the evaluation needs from the traffic itself: every account's first event
/// (campaign start times) and the times of the campaigns' requests (what leaked), so any traffic
/// file with labels can be evaluated, simulated or not.
fn read_traffic(path: &Path, labels: &Labels) -> anyhow::Result<Traffic> {
    #[derive(Deserialize)]
    struct Head<'a> {
        timestamp: EventTime,
        #[serde(borrow)]
        account_id: std::borrow::Cow<'a, str>,
        #[serde(default, borrow)]
        end_user: Option<std::borrow::Cow<'a, str>>,
    }
    let mut traffic = Traffic::default();
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
        // Lines the replay rejects are skipped here as well; they are no campaign's requests.
        let Ok(head) = serde_json::from_str::<Head>(&line) else {
            continue;
        };
        traffic.observe(
            labels,
            &head.account_id,
            head.end_user.as_deref(),
            head.timestamp,
        );
    }
    if number == 0 {
        bail!("{} is empty", path.display());
    }
    Ok(traffic)
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
    let path = args.traffic.clone();
    let (traffic, labels) = tokio::task::spawn_blocking(move || {
        read_traffic(&path, &labels).map(|traffic| (traffic, labels))
    })
    .await??;
    let engine = args.settings.load()?.engine;
    let delay = FlagDelay {
        tick_ms: engine.tick_secs as i64 * 1000,
        allowed_lateness_ms: engine.allowed_lateness_secs as i64 * 1000,
    };
    let evaluation = evaluate(&report, &labels, &traffic, delay);
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
            max_leaked: args.max_leaked,
            archetype_leaked: args.archetype_leaked.clone(),
            cluster_archetypes: args.cluster_archetypes.clone(),
            cluster_min_purity: args.cluster_min_purity,
            cluster_max_time_ms: (args.cluster_max_hours * 3_600_000.0) as i64,
        },
    );
    if !failures.is_empty() {
        bail!("evaluation below thresholds:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use distillguard_sim::labels::Label;
    use flate2::write::GzEncoder;

    use super::*;

    #[test]
    fn first_events_and_campaign_requests_come_from_plain_or_gzipped_traffic() {
        let text = concat!(
            "{\"timestamp\":\"2026-11-02T00:05:00Z\",\"account_id\":\"a\",\"model\":\"m\"}\n",
            "\n",
            "{\"timestamp\":\"2026-11-02T00:01:00Z\",\"account_id\":\"a\",\"model\":\"m\"}\n",
            "{\"timestamp\":1793577900000,\"account_id\":\"b\",\"model\":\"m\"}\n",
            "{\"timestamp\":1793577900000,\"account_id\":\"r\",\"end_user\":\"u1\",\"model\":\"m\"}\n",
            "{\"timestamp\":1793577960000,\"account_id\":\"r\",\"end_user\":\"bad\",\"model\":\"m\"}\n",
            "not json\n",
        );
        let mut labels = Labels::new();
        labels.insert("a".into(), Label::attack("bulk_harvest", "bulk-1"));
        labels.insert("b".into(), Label::benign("casual_chat"));
        labels.insert(
            "r".into(),
            Label::attack("reseller_hidden", "r-1").with_end_users(["bad".to_string()]),
        );
        let dir = std::env::temp_dir();
        let plain = dir.join(format!("dg-eval-{}.ndjson", std::process::id()));
        let gzipped = dir.join(format!("dg-eval-{}.ndjson.gz", std::process::id()));
        std::fs::write(&plain, text).unwrap();
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        std::fs::write(&gzipped, encoder.finish().unwrap()).unwrap();
        for path in [&plain, &gzipped] {
            let traffic = read_traffic(path, &labels).unwrap();
            let firsts = &traffic.first_events;
            assert_eq!(firsts["a"].to_rfc3339(), "2026-11-02T00:01:00.000Z");
            assert_eq!(firsts["b"].to_rfc3339(), "2026-11-02T00:05:00.000Z");
            assert_eq!(firsts.len(), 3);
            // Both of the attack account's requests; only the labelled end user's in the
            // reseller's account; none of the benign account's.
            assert_eq!(traffic.campaign_requests["a"].len(), 2);
            assert_eq!(traffic.campaign_requests["r"], vec![1_793_577_960_000]);
            assert!(!traffic.campaign_requests.contains_key("b"));
        }
        std::fs::remove_file(plain).unwrap();
        std::fs::remove_file(gzipped).unwrap();
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        eval: EvalArgs,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simulated_traffic_replays_end_to_end_and_thresholds_decide_the_exit() {
        use clap::Parser;
        let dir = std::env::temp_dir().join(format!("dg-eval-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (traffic, labels, report) = (
            dir.join("t.ndjson.gz"),
            dir.join("l.json"),
            dir.join("r.json"),
        );
        let simulate = crate::cmd::simulate::SimulateArgs {
            out: traffic.clone(),
            labels: labels.clone(),
            gzip: false,
            seed: 5,
            days: 1,
            accounts: 100,
            volume: 0.2,
            start: "2026-11-02T00:00:00Z".into(),
            release_after_hours: None,
            disorder_fraction: 0.02,
            disorder_secs: 60,
            benign_corpus: None,
            attack_corpus: None,
        };
        tokio::task::spawn_blocking(move || crate::cmd::simulate::run(simulate))
            .await
            .unwrap()
            .unwrap();
        let base = [
            "eval",
            "--traffic",
            traffic.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--log",
            "off",
        ];
        let mut passing: Vec<&str> = base.to_vec();
        passing.extend(["--write-report", report.to_str().unwrap()]);
        run(Cli::try_parse_from(passing).unwrap().eval)
            .await
            .unwrap();
        let written: Report = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert!(written.events > 1_000, "{}", written.events);

        let mut failing: Vec<&str> = base.to_vec();
        failing.extend(["--min-recall", "0.999", "--max-fpr", "0"]);
        let err = run(Cli::try_parse_from(failing).unwrap().eval)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("below thresholds"), "{err}");

        // A saved report is evaluated without replaying.
        let mut reused: Vec<&str> = base.to_vec();
        reused.extend(["--report", report.to_str().unwrap(), "--json"]);
        run(Cli::try_parse_from(reused).unwrap().eval)
            .await
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn archetype_rates_parse_as_name_equals_fraction() {
        assert_eq!(
            parse_archetype_rate("hydra_cluster=0.9"),
            Ok(("hydra_cluster".into(), 0.9))
        );
        assert!(parse_archetype_rate("hydra_cluster").is_err());
        assert!(parse_archetype_rate("x=1.5").is_err());
        assert!(parse_archetype_rate("x=abc").is_err());
    }
}
