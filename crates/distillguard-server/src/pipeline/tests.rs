use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use distillguard_core::event::{AccountId, ApiEvent, ModelName};
use distillguard_core::time::EventTime;

use super::*;
use crate::eventlog::{decode_batch, LoggedBatch};

/// An event log in memory that can be told to fail its next syncs, as a full disk would.
#[derive(Clone, Default)]
struct MemoryLog {
    records: Arc<Mutex<Vec<Vec<u8>>>>,
    synced: Arc<Mutex<usize>>,
    failing: Arc<AtomicBool>,
}

impl EventLog for MemoryLog {
    fn append(&mut self, record: &[u8]) -> Result<LogPosition, LogError> {
        let mut records = self.records.lock().unwrap();
        records.push(record.to_vec());
        Ok(LogPosition(records.len() as u64))
    }

    fn sync(&mut self) -> Result<(), LogError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(LogError::Io(std::io::Error::other(
                "no space left on device",
            )));
        }
        *self.synced.lock().unwrap() = self.records.lock().unwrap().len();
        Ok(())
    }

    fn discard_unsynced(&mut self) -> Result<(), LogError> {
        let synced = *self.synced.lock().unwrap();
        self.records.lock().unwrap().truncate(synced);
        Ok(())
    }

    fn replay(
        &mut self,
        from: LogPosition,
        each: &mut dyn FnMut(LoggedBatch),
    ) -> Result<ReplayReport, LogError> {
        let records = self.records.lock().unwrap().clone();
        let mut report = ReplayReport::default();
        for (index, record) in records.iter().enumerate().skip(from.0 as usize) {
            let events = decode_batch(record)?;
            report.batches += 1;
            report.events += events.len() as u64;
            each(LoggedBatch {
                end: LogPosition(index as u64 + 1),
                events,
            });
        }
        Ok(report)
    }

    fn truncate_before(&mut self, _before: LogPosition) -> Result<(), LogError> {
        Ok(())
    }

    fn end(&self) -> LogPosition {
        LogPosition(self.records.lock().unwrap().len() as u64)
    }

    fn size_bytes(&self) -> u64 {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.len() as u64)
            .sum()
    }
}

fn config() -> PipelineConfig {
    PipelineConfig {
        engine: EngineConfig::default(),
        shards: 2,
        queue_capacity: 10_000,
        dedup_window_ms: 600_000,
        dedup_capacity: 10_000,
        checkpoint_chunk_bytes: DEFAULT_CHUNK_BYTES,
    }
}

fn batch(prefix: &str, n: usize) -> Vec<ApiEvent> {
    (0..n)
        .map(|i| {
            let mut event = ApiEvent::new(
                EventTime::from_epoch_ms(1_764_000_000_000 + i as i64 * 1_000).unwrap(),
                AccountId::parse(format!("{prefix}-{}", i % 4)).unwrap(),
                ModelName::parse("m").unwrap(),
            );
            event.request_id = Some(format!("{prefix}-req-{i}"));
            event
        })
        .collect()
}

async fn logged(log: &MemoryLog, snapshot: Option<Snapshot>) -> (Pipeline, ReplayReport) {
    Pipeline::start_logged(
        config(),
        Metrics::new(),
        Box::new(DiscardSink),
        snapshot,
        Box::new(log.clone()),
    )
    .await
    .unwrap()
}

async fn finish(pipeline: Pipeline) -> Report {
    tokio::task::spawn_blocking(move || pipeline.finish_blocking())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_batch_the_log_cannot_persist_is_refused_whole_and_its_retry_goes_through_later() {
    let log = MemoryLog::default();
    let (pipeline, _) = logged(&log, None).await;
    pipeline.try_submit(batch("ok", 5)).await.unwrap();

    log.failing.store(true, Ordering::SeqCst);
    let refused = pipeline.try_submit(batch("disk-full", 7)).await;
    assert!(
        matches!(refused, Err(SubmitError::LogUnavailable(_))),
        "{refused:?}"
    );
    assert!(pipeline.log_state().unwrap().failing);
    assert_eq!(
        log.end(),
        LogPosition(1),
        "the refused batch left nothing in the log"
    );

    log.failing.store(false, Ordering::SeqCst);
    let retried = pipeline.try_submit(batch("disk-full", 7)).await.unwrap();
    assert_eq!(
        retried,
        Receipt {
            accepted: 7,
            duplicates: 0
        },
        "the refused ids were forgotten, so the retry is not a duplicate"
    );
    assert!(!pipeline.log_state().unwrap().failing);
    let report = finish(pipeline).await;
    assert_eq!(
        report.events, 12,
        "only what was acknowledged was processed"
    );
}

#[tokio::test]
async fn a_restart_replays_what_the_log_holds_after_the_checkpoint_and_remembers_its_ids() {
    let log = MemoryLog::default();
    let (first, _) = logged(&log, None).await;
    first.try_submit(batch("a", 10)).await.unwrap();
    let taking = first.clone();
    let snapshot = tokio::task::spawn_blocking(move || taking.checkpoint_blocking())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.log_position, Some(LogPosition(1)));
    first.try_submit(batch("b", 6)).await.unwrap();
    // The crash: the first process is gone without a checkpoint of "b".
    let stopping = first.clone();
    tokio::task::spawn_blocking(move || stopping.shutdown_blocking())
        .await
        .unwrap();

    let (second, replayed) = logged(&log, Some(snapshot)).await;
    assert_eq!((replayed.batches, replayed.events), (1, 6));
    let retry = second.try_submit(batch("b", 6)).await.unwrap();
    assert_eq!(retry.duplicates, 6);
    let retry = second.try_submit(batch("a", 10)).await.unwrap();
    assert_eq!(retry.duplicates, 10);
    assert_eq!(finish(second).await.events, 16);
}
