//! Offline replay: historical canonical NDJSON through the same decode and pipeline as `serve`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use distillguard_core::finding::Report;
use distillguard_ingest::{decode_body, CanonicalDecoder, Rejected};
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::{DiscardSink, Pipeline};

/// Lines decoded and submitted together.
const BATCH_LINES: usize = 4_096;
/// Rejected records kept for the summary; the count is always exact.
const KEPT_REJECTIONS: usize = 100;

/// What a replay produced.
#[derive(Debug)]
pub struct ReplayOutcome {
    pub report: Report,
    pub records: u64,
    pub duplicates: u64,
    pub rejected_count: u64,
    /// The first rejected records, with their 1-based line numbers in the input.
    pub rejected: Vec<Rejected>,
}

/// Replays a file (plain or gzip, `-` for standard input).
pub async fn replay_path(path: &Path, settings: &Settings) -> anyhow::Result<ReplayOutcome> {
    let reader: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    replay_reader(reader, settings).await
}

/// Replays any reader of canonical NDJSON (gzip recognised by its magic bytes).
pub async fn replay_reader(
    reader: Box<dyn Read + Send>,
    settings: &Settings,
) -> anyhow::Result<ReplayOutcome> {
    let pipeline = Pipeline::start(
        crate::app::pipeline_config(settings),
        Metrics::new(),
        Box::new(DiscardSink),
    );
    let (batches, mut incoming) = mpsc::channel(4);
    let reading = tokio::task::spawn_blocking(move || read_batches(reader, batches));
    let mut outcome = ReplayOutcome {
        report: Report::default(),
        records: 0,
        duplicates: 0,
        rejected_count: 0,
        rejected: Vec::new(),
    };
    while let Some(batch) = incoming.recv().await {
        let Batch {
            events,
            records,
            rejected,
        } = batch;
        outcome.records += records as u64;
        outcome.rejected_count += rejected.len() as u64;
        let room = KEPT_REJECTIONS.saturating_sub(outcome.rejected.len());
        outcome.rejected.extend(rejected.into_iter().take(room));
        let receipt = pipeline
            .submit(events)
            .await
            .context("the pipeline stopped during replay")?;
        outcome.duplicates += receipt.duplicates as u64;
    }
    reading.await.context("the reader thread panicked")??;
    let finishing = pipeline.clone();
    outcome.report = tokio::task::spawn_blocking(move || finishing.finish_blocking())
        .await
        .context("the pipeline panicked")?
        .context("the pipeline stopped before producing a report")?;
    tokio::task::spawn_blocking(move || pipeline.shutdown_blocking()).await?;
    Ok(outcome)
}

struct Batch {
    events: Vec<distillguard_core::event::ApiEvent>,
    records: usize,
    rejected: Vec<Rejected>,
}

fn read_batches(reader: Box<dyn Read + Send>, batches: mpsc::Sender<Batch>) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut reader: Box<dyn BufRead> = if reader.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Box::new(reader)
    };
    let mut first_line = 1usize;
    let mut capacity = BATCH_LINES * 300;
    loop {
        // Lines are read straight into the chunk: no buffer per line (allocation was a fifth of
        // replay's time).
        let mut chunk = Vec::with_capacity(capacity);
        let mut taken = 0;
        while taken < BATCH_LINES {
            let read = reader
                .read_until(b'\n', &mut chunk)
                .context("cannot read the input")?;
            if read == 0 {
                break;
            }
            // Blank lines keep their place so reported line numbers match the file.
            if chunk.last() != Some(&b'\n') {
                chunk.push(b'\n');
            }
            taken += 1;
        }
        capacity = capacity.max(chunk.len());
        if taken == 0 {
            return Ok(());
        }
        let batch = decode_chunk(&chunk, first_line);
        first_line += taken;
        if batches.blocking_send(batch).is_err() {
            return Ok(());
        }
    }
}

fn decode_chunk(chunk: &[u8], first_line: usize) -> Batch {
    // A chunk of only blank lines cannot be framed; it carries no records either.
    match decode_body(&CanonicalDecoder, chunk) {
        Ok(outcome) => Batch {
            records: outcome.records,
            events: outcome.events,
            rejected: outcome
                .rejected
                .into_iter()
                .map(|mut r| {
                    r.line = Some(r.line.map_or(first_line, |line| line + first_line - 1));
                    r
                })
                .collect(),
        },
        Err(error) => {
            let rejected: Vec<Rejected> = chunk
                .split(|b| *b == b'\n')
                .enumerate()
                .filter(|(_, line)| !line.trim_ascii().is_empty())
                .enumerate()
                .map(|(index, (offset, _))| Rejected {
                    index,
                    line: Some(first_line + offset),
                    error: distillguard_ingest::RecordError::malformed(error.to_string()),
                })
                .collect();
            Batch {
                records: rejected.len(),
                events: Vec::new(),
                rejected,
            }
        }
    }
}
