//! `distillguard simulate`: writes labelled synthetic traffic (see `docs/simulator.md`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use distillguard_core::time::EventTime;
use distillguard_sim::{simulate, Corpus, PromptBook, Scenario, SimError};
use flate2::write::GzEncoder;
use flate2::Compression;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Traffic file to write (canonical NDJSON). Gzipped when it ends in `.gz` or with `--gzip`.
    #[arg(long, default_value = "traffic.ndjson")]
    pub out: PathBuf,
    /// Ground-truth labels file to write (JSON object keyed by account id).
    #[arg(long, default_value = "labels.json")]
    pub labels: PathBuf,
    /// Gzip the traffic file whatever its name.
    #[arg(long)]
    pub gzip: bool,
    /// Same seed and flags give byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// Target number of accounts.
    #[arg(long, default_value_t = 2_000)]
    pub accounts: u32,
    /// Multiplies every actor's request rate.
    #[arg(long, default_value_t = 1.0)]
    pub volume: f64,
    /// First simulated UTC day (RFC 3339).
    #[arg(long, default_value = "2026-11-02T00:00:00Z")]
    pub start: String,
    /// Hours after the start at which the new model `atlas-4` appears (default 10 for one day,
    /// 30 for longer runs).
    #[arg(long)]
    pub release_after_hours: Option<f64>,
    /// Share of events logged late, by up to `--disorder-secs`.
    #[arg(long, default_value_t = 0.02)]
    pub disorder_fraction: f64,
    #[arg(long, default_value_t = 60)]
    pub disorder_secs: u32,
    /// JSONL `{"prompt": ...}` file for benign prompts (built-in generator when absent).
    #[arg(long)]
    pub benign_corpus: Option<PathBuf>,
    /// JSONL `{"prompt": ...}` file for distillation prompts (built-in generator when absent).
    #[arg(long)]
    pub attack_corpus: Option<PathBuf>,
}

fn load_corpus(path: &Option<PathBuf>) -> anyhow::Result<Option<Corpus>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(
        Corpus::from_jsonl(&text).with_context(|| format!("parsing {}", path.display()))?,
    ))
}

fn scenario(args: &SimulateArgs) -> anyhow::Result<Scenario> {
    let start = EventTime::parse_rfc3339(&args.start).context("--start")?;
    let scenario = Scenario {
        seed: args.seed,
        start,
        days: args.days,
        accounts: args.accounts,
        volume: args.volume,
        release_after_ms: args
            .release_after_hours
            .map(|h| (h * EventTime::HOUR as f64) as i64),
        disorder_fraction: args.disorder_fraction,
        disorder_ms: i64::from(args.disorder_secs) * 1_000,
    };
    scenario.validate()?;
    Ok(scenario)
}

fn is_gzip(path: &Path, forced: bool) -> bool {
    forced || path.extension().is_some_and(|e| e == "gz")
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let scenario = scenario(&args)?;
    let book = PromptBook::new(
        load_corpus(&args.benign_corpus)?,
        load_corpus(&args.attack_corpus)?,
    );
    let file =
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out: Box<dyn Write> = if is_gzip(&args.out, args.gzip) {
        // GzEncoder writes mtime 0, so compressed output is byte-identical too.
        Box::new(BufWriter::with_capacity(
            1 << 20,
            GzEncoder::new(file, Compression::fast()),
        ))
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, file))
    };
    let summary = simulate(&scenario, &book, |event| -> Result<(), SinkError> {
        serde_json::to_writer(&mut out, event).map_err(|e| SinkError::Io(e.into()))?;
        out.write_all(b"\n").map_err(SinkError::Io)
    })
    .map_err(|e| match e {
        SinkError::Io(io) => {
            anyhow::Error::new(io).context(format!("writing {}", args.out.display()))
        }
        SinkError::Sim(sim) => anyhow::Error::new(sim),
    })?;
    out.flush()?;
    drop(out);
    let labels = File::create(&args.labels)
        .with_context(|| format!("creating {}", args.labels.display()))?;
    let mut labels = BufWriter::new(labels);
    serde_json::to_writer_pretty(&mut labels, &summary.labels)?;
    labels.write_all(b"\n")?;
    labels.flush()?;

    let attack = summary.labels.values().filter(|l| l.is_attack()).count();
    eprintln!(
        "wrote {} events for {} accounts ({} attack) to {}; labels to {}; atlas-4 released at {}",
        summary.events,
        summary.labels.len(),
        attack,
        args.out.display(),
        args.labels.display(),
        summary.release_at
    );
    for (campaign, c) in &summary.campaigns {
        eprintln!(
            "  {campaign:<20} {:<18} accounts {:>3}  events {:>7}  first {}",
            c.archetype,
            c.accounts,
            c.events,
            c.first_event.map(|t| t.to_rfc3339()).unwrap_or_default()
        );
    }
    eprintln!("{}", time_span_note(&scenario));
    Ok(())
}

/// Where the traffic sits in event time, and what that means for a service that has already
/// seen later events: they would all be counted late and nothing would be found.
fn time_span_note(scenario: &Scenario) -> String {
    let end = EventTime::from_epoch_ms(scenario.end_ms()).unwrap_or(scenario.start);
    format!(
        "events span {} to {} (event time). A service that has already seen later events counts \
         these as late and scores none of them: feed them to a fresh data directory \
         (`distillguard serve --reset`), or pick a later --start.",
        scenario.start.to_rfc3339(),
        end.to_rfc3339()
    )
}

#[derive(Debug)]
enum SinkError {
    Io(std::io::Error),
    Sim(SimError),
}

impl From<SimError> for SinkError {
    fn from(e: SimError) -> Self {
        SinkError::Sim(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, name: &str, seed: u64) -> SimulateArgs {
        SimulateArgs {
            out: dir.join(format!("{name}.ndjson.gz")),
            labels: dir.join(format!("{name}.labels.json")),
            gzip: false,
            seed,
            days: 1,
            accounts: 100,
            volume: 0.1,
            start: "2026-11-02T00:00:00Z".into(),
            release_after_hours: None,
            disorder_fraction: 0.02,
            disorder_secs: 60,
            benign_corpus: None,
            attack_corpus: None,
        }
    }

    #[test]
    fn gzipped_files_are_byte_identical_for_the_same_seed() {
        let dir = std::env::temp_dir().join(format!("dg-simulate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        run(args(&dir, "a", 3)).unwrap();
        run(args(&dir, "b", 3)).unwrap();
        run(args(&dir, "c", 4)).unwrap();
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let a = read("a.ndjson.gz");
        assert_eq!(&a[..2], &[0x1f, 0x8b], "a .gz name means gzip");
        assert!(a == read("b.ndjson.gz"));
        assert_eq!(read("a.labels.json"), read("b.labels.json"));
        assert!(a != read("c.ndjson.gz"));
        let labels: distillguard_sim::Labels =
            serde_json::from_slice(&read("a.labels.json")).unwrap();
        assert!(labels.values().any(|l| l.is_attack()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_closing_note_gives_the_event_time_span_and_how_to_start_over() {
        let mut two_days = args(Path::new("."), "never", 1);
        two_days.days = 2;
        let note = time_span_note(&scenario(&two_days).unwrap());
        assert!(
            note.contains("2026-11-02T00:00:00.000Z to 2026-11-04T00:00:00.000Z"),
            "{note}"
        );
        assert!(
            note.contains("late") && note.contains("serve --reset"),
            "{note}"
        );
    }

    #[test]
    fn a_bad_start_or_scenario_is_refused_before_writing() {
        let dir = std::env::temp_dir();
        let mut bad = args(&dir, "never", 1);
        bad.start = "yesterday".into();
        assert!(scenario(&bad).is_err());
        let mut tiny = args(&dir, "never", 1);
        tiny.accounts = 3;
        assert!(scenario(&tiny).is_err());
    }
}
