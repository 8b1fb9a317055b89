//! The linker role's scoring thread: joined tick reports in, findings and clusters out.
//!
//! ```text
//! profiles consumer ─► LinkerThread ─► TickAssembler ─► score_tick (one Scorer) ─► FindingSink
//!  (joined reports,     one OS thread:    until every        population, scores,       the store
//!   stream order)       scoring is CPU    partition has      links, clusters, flags    writer
//!                       work              reported a tick,
//!                                         or gave it up
//! ```
//!
//! Reports and checkpoint requests share one queue, so a checkpoint is a cut after exactly the
//! reports handed in before it, and it records the stream sequence to resume from after them.

use std::thread::JoinHandle;

use distillguard_core::engine::{EngineConfig, Scorer, ScorerCheckpoint};
use distillguard_core::partitioned::{score_tick, Assembled, ReadyTick, TickAssembler};
use distillguard_core::time::EventTime;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::workers::TickOutput;
use super::FindingSink;
use crate::bus::{ranges, source_key};
use crate::metrics::Metrics;

/// Version of [`LinkerSnapshot`] this build writes; fields added later must default.
pub const LINKER_SNAPSHOT_VERSION: u32 = 1;

/// Reports that may wait for the linker thread before the consumer waits (the stream holds the
/// rest).
const QUEUE_REPORTS: usize = 16;

/// What a linker restarts from: the scorer, the ticks still waiting for reports, and the
/// profiles stream sequence to read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkerSnapshot {
    pub version: u32,
    /// The first profiles stream sequence not covered (1: from the start).
    pub resume_from: u64,
    pub assembler: TickAssembler,
    pub scorer: ScorerCheckpoint,
}

impl LinkerSnapshot {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        self.serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map())
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// A checkpoint of the linker, encoded on its thread.
#[derive(Debug)]
pub struct EncodedSnapshot {
    pub bytes: Vec<u8>,
    pub resume_from: u64,
    pub last_scored: Option<EventTime>,
}

enum LinkerMsg {
    /// A joined tick report's MessagePack bytes, and where a restart resumes once it is handled.
    Report {
        bytes: Vec<u8>,
        resume_from: u64,
    },
    Checkpoint(oneshot::Sender<Result<EncodedSnapshot, String>>),
}

/// Handle to the linker's thread. Dropping every handle stops it once its queue is drained.
#[derive(Clone)]
pub struct LinkerThread {
    inbox: mpsc::Sender<LinkerMsg>,
}

impl LinkerThread {
    /// Starts the thread from a snapshot (a restart) or empty. `resume_from` of an empty linker
    /// is 1.
    pub fn start(
        config: EngineConfig,
        partition_count: u32,
        restored: Option<LinkerSnapshot>,
        sink: Box<dyn FindingSink>,
        metrics: Metrics,
    ) -> (Self, JoinHandle<()>) {
        let state = match restored {
            Some(snapshot) => State {
                scorer: Scorer::restore(config, snapshot.scorer),
                assembler: snapshot.assembler,
                resume_from: snapshot.resume_from.max(1),
            },
            None => State {
                scorer: Scorer::new(config, 1),
                assembler: TickAssembler::new(partition_count),
                resume_from: 1,
            },
        };
        let (inbox, received) = mpsc::channel(QUEUE_REPORTS);
        let thread = std::thread::Builder::new()
            .name("dg-linker".into())
            .spawn(move || run(state, received, sink, metrics))
            .expect("the OS refused to start the linker thread");
        (Self { inbox }, thread)
    }

    /// Hands a joined report on, waiting for queue space; false once the thread is gone.
    pub async fn report(&self, bytes: Vec<u8>, resume_from: u64) -> bool {
        self.inbox
            .send(LinkerMsg::Report { bytes, resume_from })
            .await
            .is_ok()
    }

    /// A checkpoint after every report handed in so far.
    pub async fn checkpoint(&self) -> Result<EncodedSnapshot, String> {
        let (reply, answer) = oneshot::channel();
        self.inbox
            .send(LinkerMsg::Checkpoint(reply))
            .await
            .map_err(|_| "the linker thread stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the linker thread stopped".to_owned())?
    }
}

struct State {
    scorer: Scorer,
    assembler: TickAssembler,
    resume_from: u64,
}

/// Logs a tick given up incomplete, once (the assembler hands each tick out once): which
/// partitions never reported it and the detectors (their checkpoint keys, as in the message ids)
/// whose later reports showed that they never will.
fn say_given_up(tick: &ReadyTick, partition_count: u32) {
    let sources: Vec<String> = tick
        .missing_sources
        .iter()
        .map(|set| source_key(set, partition_count))
        .collect();
    tracing::warn!(
        tick = %tick.at.to_rfc3339(),
        missing_partitions = %ranges(&tick.missing),
        missing_sources = %sources.join(" "),
        reports = tick.reports.len(),
        "linker: tick scored without the missing partitions' reports; their detectors reported a \
         later tick, so these reports (aged out of the profiles stream, or never published) \
         cannot arrive any more"
    );
}

fn run(
    mut state: State,
    mut inbox: mpsc::Receiver<LinkerMsg>,
    mut sink: Box<dyn FindingSink>,
    metrics: Metrics,
) {
    let mut output = TickOutput::starting_from(&state.scorer, &metrics);
    let bus = metrics.bus.clone();
    while let Some(message) = inbox.blocking_recv() {
        match message {
            LinkerMsg::Report { bytes, resume_from } => {
                bus.linker_reports.inc();
                state.resume_from = resume_from;
                let report = match crate::bus::profiles::decode_report(&bytes) {
                    Ok(report) => report,
                    Err(error) => {
                        bus.linker_refused.inc();
                        tracing::error!(%error, "a tick report does not decode; passed over");
                        continue;
                    }
                };
                match state.assembler.add(report) {
                    Ok(Assembled::Ready(ticks)) => {
                        for tick in ticks {
                            let at = tick.at;
                            if !tick.is_complete() {
                                say_given_up(&tick, state.assembler.partition_count());
                                bus.linker_incomplete_ticks.inc();
                            }
                            let updates = score_tick(&mut state.scorer, tick);
                            output.deliver(&mut state.scorer, updates, sink.as_mut(), &metrics);
                            bus.linker_ticks_scored.inc();
                            bus.linker_last_tick.set(at.epoch_ms() / 1000);
                        }
                    }
                    Ok(Assembled::Waiting | Assembled::Repeated) => {}
                    Err(error) => {
                        // Misconfiguration (partition sets that overlap, another partition
                        // count): nothing this linker can score; said loudly and counted.
                        bus.linker_refused.inc();
                        tracing::error!(%error, "tick report refused by the linker");
                    }
                }
                bus.linker_pending_ticks
                    .set(state.assembler.pending_ticks() as i64);
            }
            LinkerMsg::Checkpoint(reply) => {
                let snapshot = LinkerSnapshot {
                    version: LINKER_SNAPSHOT_VERSION,
                    resume_from: state.resume_from,
                    assembler: state.assembler.clone(),
                    scorer: state.scorer.checkpoint(),
                };
                let encoded = snapshot.encode().map(|bytes| EncodedSnapshot {
                    bytes,
                    resume_from: state.resume_from,
                    last_scored: state.assembler.last_scored(),
                });
                let _ = reply.send(encoded);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use distillguard_core::engine::ShardReport;
    use distillguard_core::partitioned::{TickReport, TICK_REPORT_VERSION};

    use super::*;
    use crate::pipeline::DiscardSink;

    fn encoded(partitions: &[u32], at: i64) -> Vec<u8> {
        crate::bus::profiles::encode_report(&TickReport {
            version: TICK_REPORT_VERSION,
            partitions: partitions.to_vec(),
            partition_count: 4,
            at: EventTime::from_epoch_ms(at).unwrap(),
            shards: vec![ShardReport::default()],
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_linker_thread_scores_a_tick_given_up_incomplete_and_counts_it() {
        let metrics = Metrics::new();
        let (thread, joined) = LinkerThread::start(
            EngineConfig::default(),
            4,
            None,
            Box::new(DiscardSink),
            metrics.clone(),
        );
        // Partitions 2-3's report of the tick at 1,000 never arrives.
        assert!(thread.report(encoded(&[0, 1], 1_000), 2).await);
        assert!(thread.report(encoded(&[0, 1], 2_000), 3).await);
        let waiting = thread.checkpoint().await.unwrap();
        assert_eq!(
            waiting.last_scored, None,
            "nothing proves the report lost yet"
        );
        assert_eq!(metrics.bus.linker_pending_ticks.get(), 2);
        assert!(thread.report(encoded(&[2, 3], 2_000), 4).await);

        let snapshot = thread.checkpoint().await.unwrap();

        assert_eq!(snapshot.last_scored.map(EventTime::epoch_ms), Some(2_000));
        assert_eq!(snapshot.resume_from, 4);
        assert_eq!(metrics.bus.linker_ticks_scored.get(), 2);
        assert_eq!(metrics.bus.linker_incomplete_ticks.get(), 1);
        assert_eq!(metrics.bus.linker_pending_ticks.get(), 0);
        assert_eq!(metrics.bus.linker_refused.get(), 0);
        let restored = LinkerSnapshot::decode(&snapshot.bytes).unwrap();
        assert_eq!(restored.assembler.pending_ticks(), 0);
        drop(thread);
        joined.join().unwrap();
    }
}
