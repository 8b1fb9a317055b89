//! Offline replay: historical canonical NDJSON through the same decode and pipeline as `serve`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use distillguard_core::finding::Report;
use distillguard_core::partitioned::{SplitEngine, SplitScoring};
use distillguard_ingest::{decode_body, CanonicalDecoder, Deduplicator, Rejected};
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::{DiscardSink, Pipeline};

/// Lines decoded and submitted together.
const BATCH_LINES: usize = 4_096;
/// Rejected records kept for the summary; the count is always exact.
const KEPT_REJECTIONS: usize = 100;

/// What a replay produced.
#[derive(Debug, Default)]
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
    let mut outcome = ReplayOutcome::default();
    while let Some(batch) = incoming.recv().await {
        let events = outcome.note(batch);
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

impl ReplayOutcome {
    /// Counts a batch's records and keeps its first rejections; returns its events.
    fn note(&mut self, batch: Batch) -> Vec<distillguard_core::event::ApiEvent> {
        self.records += batch.records as u64;
        self.rejected_count += batch.rejected.len() as u64;
        let room = KEPT_REJECTIONS.saturating_sub(self.rejected.len());
        self.rejected.extend(batch.rejected.into_iter().take(room));
        batch.events
    }
}

/// `replay --detectors N`: the input as N detector nodes owning `share:I/N` of the partitions
/// would apply it (each sees every event's timestamp and applies its own partitions' events),
/// scored by one linker or, without it, each detector on its own. Single-threaded, through the
/// core's [`SplitEngine`], which composes the same clock, shards and scorer as the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct SplitPlan {
    pub detectors: u32,
    pub linker: bool,
}

/// Replays a file as [`SplitPlan`] says.
pub async fn replay_split_path(
    path: &Path,
    settings: &Settings,
    plan: SplitPlan,
) -> anyhow::Result<ReplayOutcome> {
    let reader: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    let mut engine = split_engine(settings, plan)?;
    let config = crate::app::pipeline_config(settings);
    let mut dedup = Deduplicator::new(config.dedup_window_ms, config.dedup_capacity);
    let (batches, mut incoming) = mpsc::channel(4);
    let reading = tokio::task::spawn_blocking(move || read_batches(reader, batches));
    let mut outcome = ReplayOutcome::default();
    while let Some(batch) = incoming.recv().await {
        for event in outcome.note(batch) {
            // As the pipeline's deduplicator: a request id seen within the window counts once.
            if let Some(id) = &event.request_id {
                if dedup.is_duplicate(id, event.timestamp) {
                    outcome.duplicates += 1;
                    continue;
                }
                dedup.remember(id, event.timestamp);
            }
            engine.process(&event)?;
            engine.take_updates();
        }
    }
    reading.await.context("the reader thread panicked")??;
    engine.finish()?;
    outcome.report = engine.report();
    Ok(outcome)
}

fn split_engine(settings: &Settings, plan: SplitPlan) -> anyhow::Result<SplitEngine> {
    let detectors = plan.detectors.max(1);
    let mut sets = Vec::new();
    for index in 0..detectors {
        let mut bus = settings.bus.clone();
        bus.partitions = format!("share:{index}/{detectors}");
        sets.push(bus.owned_partitions()?);
    }
    let config = crate::app::pipeline_config(settings);
    let scoring = if plan.linker {
        SplitScoring::Together
    } else {
        SplitScoring::PerDetector
    };
    Ok(SplitEngine::new(
        &config.engine,
        sets,
        settings.bus.partition_count,
        config.shards,
        scoring,
    ))
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
