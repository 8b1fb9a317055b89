//! The pipeline's threads: one dispatcher, N shard workers, one scorer.
//!
//! Detection is CPU-bound and must not stall the async runtime, so these are OS threads joined by
//! bounded channels; a slow scorer backs up the shards, a slow shard backs up the dispatcher, and
//! the dispatcher holding queue permits makes HTTP answer 429.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::{self, JoinHandle};

use distillguard_core::engine::{
    shard_for, Admission, Clock, EngineCheckpoint, Scorer, Shard, ShardReport,
};
use distillguard_core::event::{AccountId, ApiEvent};
use distillguard_core::finding::{FindingUpdate, Report, Severity};
use distillguard_core::time::EventTime;

use std::sync::Arc;

use super::{
    CheckpointPart, CheckpointRequest, Command, FindingSink, Gate, PipelineConfig, TickHandOff,
};
use crate::checkpoint::format::{self, CheckpointMeta, FORMAT_VERSION};
use crate::eventlog::LogPosition;
use crate::metrics::Metrics;

/// Messages a shard can hold before the dispatcher waits.
const SHARD_QUEUE_MESSAGES: usize = 64;
/// Reports the scorer can hold before shards wait.
const SCORER_QUEUE_MESSAGES: usize = 1024;

enum ShardMsg {
    Events(Vec<ApiEvent>),
    Tick(EventTime),
    Barrier(BarrierMsg),
    Checkpoint(CheckpointMsg),
    Stop,
}

/// A consistent cut: every shard snapshots after the same prefix of the input.
#[derive(Clone)]
struct CheckpointMsg {
    meta: CheckpointMeta,
    request: CheckpointRequest,
}

#[derive(Clone)]
struct BarrierMsg {
    events: u64,
    late_events: u64,
    ahead_events: u64,
    reply: Sender<Report>,
}

enum ScorerMsg {
    Report {
        shard: usize,
        at: EventTime,
        report: ShardReport,
    },
    Barrier(BarrierMsg),
    /// The shard has written its part of the checkpoint.
    Checkpoint {
        shard: usize,
        request: CheckpointMsg,
    },
    Stop,
}

pub(super) fn spawn(
    config: &PipelineConfig,
    metrics: Metrics,
    sink: Box<dyn FindingSink>,
    gate: Arc<Gate>,
    restore: Option<EngineCheckpoint>,
    position: Option<LogPosition>,
    hand_off: Option<Box<dyn TickHandOff>>,
) -> (Sender<Command>, Vec<JoinHandle<()>>) {
    let shard_count = config.shards.max(1);
    let mut restore = restore.map(|checkpoint| super::reshard(checkpoint, shard_count));
    let mut restored_shards = restore
        .as_mut()
        .map(|c| {
            std::mem::take(&mut c.shards)
                .into_iter()
                .map(Some)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let (commands_tx, commands_rx) = mpsc::channel::<Command>();
    let (scorer_tx, scorer_rx) = mpsc::sync_channel::<ScorerMsg>(SCORER_QUEUE_MESSAGES);
    let mut threads = Vec::with_capacity(shard_count + 2);
    let mut shard_txs = Vec::with_capacity(shard_count);
    for index in 0..shard_count {
        let (tx, rx) = mpsc::sync_channel::<ShardMsg>(SHARD_QUEUE_MESSAGES);
        shard_txs.push(tx);
        let shard = match restored_shards.get_mut(index).and_then(Option::take) {
            Some(state) => Shard::restore(config.engine.clone(), state),
            None => Shard::new(config.engine.clone(), shard_count),
        };
        let scorer_tx = scorer_tx.clone();
        threads.push(spawn_named(format!("dg-shard-{index}"), move || {
            run_shard(index, shard, rx, scorer_tx)
        }));
    }
    drop(scorer_tx);
    let (scorer, clock, events, late_events) = match restore {
        Some(checkpoint) => (
            Scorer::restore(config.engine.clone(), checkpoint.scorer),
            Clock::restored(&config.engine, &checkpoint.clock),
            checkpoint.events,
            checkpoint.late_events,
        ),
        None => (
            Scorer::new(config.engine.clone(), shard_count),
            Clock::new(&config.engine),
            0,
            0,
        ),
    };
    let scorer_metrics = metrics.clone();
    threads.push(spawn_named("dg-scorer".into(), move || {
        run_scorer(
            scorer,
            shard_count,
            scorer_rx,
            sink,
            hand_off,
            scorer_metrics,
        )
    }));
    threads.push(spawn_named("dg-dispatch".into(), move || {
        let mut dispatcher = Dispatcher::new(clock, shard_txs, metrics);
        dispatcher.events = events;
        dispatcher.late_events = late_events;
        dispatcher.position = position;
        dispatcher.run(commands_rx, &gate)
    }));
    (commands_tx, threads)
}

fn spawn_named(name: String, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name)
        .spawn(body)
        .expect("the OS refused to start a pipeline thread")
}

struct Dispatcher {
    clock: Clock,
    shards: Vec<SyncSender<ShardMsg>>,
    buffers: Vec<Vec<ApiEvent>>,
    events: u64,
    late_events: u64,
    /// The event log position after the last batch routed: what a checkpoint now covers.
    position: Option<LogPosition>,
    metrics: Metrics,
    late_warning: LateWarning,
}

/// Says in the log, at most once a minute, that events are being dropped as late and how to
/// start over: a counter alone left users wondering why a day of traffic found nothing.
#[derive(Default)]
struct LateWarning {
    last: Option<std::time::Instant>,
    since_last: u64,
}

impl LateWarning {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    fn note(&mut self, late: u64, total: u64, watermark: Option<EventTime>) {
        self.since_last += late;
        if self.since_last == 0 || self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        tracing::warn!(
            late = self.since_last,
            late_total = total,
            watermark = %watermark.map(EventTime::to_rfc3339).unwrap_or_default(),
            "events older than the watermark minus the allowed lateness were counted late and not \
             scored; if you are sending history older than what this service has already seen, \
             start over with `distillguard serve --reset` (clears the data directory) or send it \
             to a fresh --data-dir; for out-of-order shippers raise engine.allowed_lateness_secs"
        );
        self.last = Some(std::time::Instant::now());
        self.since_last = 0;
    }
}

impl Dispatcher {
    fn new(clock: Clock, shards: Vec<SyncSender<ShardMsg>>, metrics: Metrics) -> Self {
        let buffers = shards.iter().map(|_| Vec::new()).collect();
        Self {
            clock,
            shards,
            buffers,
            events: 0,
            late_events: 0,
            position: None,
            metrics,
            late_warning: LateWarning::default(),
        }
    }

    fn run(mut self, commands: Receiver<Command>, gate: &Gate) {
        while let Ok(command) = commands.recv() {
            gate.wait_while_paused();
            match command {
                Command::Batch {
                    events,
                    _permit,
                    position,
                } => {
                    self.route(events);
                    if position.is_some() {
                        self.position = position;
                    }
                    // `_permit` drops here: the batch has left the queue.
                }
                Command::Consumed {
                    items,
                    _permit,
                    position,
                } => {
                    self.route_consumed(items);
                    self.position = Some(position);
                }
                Command::Finish(reply) => {
                    if let Some(at) = self.clock.final_tick() {
                        self.broadcast_tick(at);
                    }
                    self.broadcast(ShardMsg::Barrier(BarrierMsg {
                        events: self.events,
                        late_events: self.late_events,
                        ahead_events: self.clock.ahead_events(),
                        reply,
                    }));
                }
                Command::Checkpoint(request) => {
                    self.flush();
                    self.broadcast(ShardMsg::Checkpoint(CheckpointMsg {
                        meta: CheckpointMeta {
                            format_version: FORMAT_VERSION,
                            clock: self.clock.checkpoint(),
                            events: self.events,
                            late_events: self.late_events,
                            shard_count: self.shards.len(),
                            log_position: self.position,
                        },
                        request,
                    }));
                }
                Command::Stop => break,
            }
        }
        self.broadcast(ShardMsg::Stop);
    }

    fn route(&mut self, events: Vec<ApiEvent>) {
        let late_before = self.late_events;
        for event in events {
            self.route_one(event);
        }
        self.close_batch(late_before);
    }

    /// A batch read from the event stream: owned events are routed as [`Dispatcher::route`]
    /// does; the others' timestamps only move the clock (and so close ticks where one node that
    /// owns everything would).
    fn route_consumed(&mut self, items: Vec<super::Consumed>) {
        let late_before = self.late_events;
        for item in items {
            match item {
                super::Consumed::Owned(event) => self.route_one(*event),
                super::Consumed::Elsewhere(timestamp) => {
                    if let Some(at) = self.clock.advance(timestamp) {
                        self.broadcast_tick(at);
                    }
                }
            }
        }
        self.close_batch(late_before);
    }

    fn route_one(&mut self, event: ApiEvent) {
        let (admission, tick) = self.clock.admit(event.timestamp);
        if admission == Admission::Late {
            self.late_events += 1;
            self.metrics.late_events.inc();
            return;
        }
        if let Some(at) = tick {
            self.broadcast_tick(at);
        }
        if admission == Admission::Ahead {
            self.metrics.ahead_events.inc();
            return;
        }
        self.events += 1;
        self.buffers[shard_for(&event.account_id, self.shards.len())].push(event);
    }

    fn close_batch(&mut self, late_before: u64) {
        self.flush();
        self.export_watermark();
        self.late_warning.note(
            self.late_events - late_before,
            self.late_events,
            self.clock.watermark(),
        );
    }

    fn export_watermark(&self) {
        if let Some(watermark) = self.clock.watermark() {
            self.metrics
                .detection_watermark
                .set(watermark.epoch_ms() / 1000);
        }
    }

    /// Sends buffered events; must precede any tick so a tick sees exactly the earlier events.
    fn flush(&mut self) {
        for (shard, buffer) in self.shards.iter().zip(self.buffers.iter_mut()) {
            if !buffer.is_empty() {
                let _ = shard.send(ShardMsg::Events(std::mem::take(buffer)));
            }
        }
    }

    fn broadcast_tick(&mut self, at: EventTime) {
        self.flush();
        // Before the tick leaves: no finding of this tick may be visible ahead of its watermark.
        self.export_watermark();
        self.broadcast(ShardMsg::Tick(at));
    }

    fn broadcast(&self, message: ShardMsg) {
        for shard in &self.shards {
            let copy = match &message {
                ShardMsg::Tick(at) => ShardMsg::Tick(*at),
                ShardMsg::Barrier(barrier) => ShardMsg::Barrier(barrier.clone()),
                ShardMsg::Checkpoint(request) => ShardMsg::Checkpoint(request.clone()),
                ShardMsg::Stop => ShardMsg::Stop,
                ShardMsg::Events(_) => unreachable!("events are routed, never broadcast"),
            };
            let _ = shard.send(copy);
        }
    }
}

fn run_shard(
    index: usize,
    mut shard: Shard,
    inbox: Receiver<ShardMsg>,
    scorer: SyncSender<ScorerMsg>,
) {
    while let Ok(message) = inbox.recv() {
        let forward = match message {
            ShardMsg::Events(events) => {
                for event in &events {
                    shard.observe(event);
                }
                continue;
            }
            ShardMsg::Tick(at) => ScorerMsg::Report {
                shard: index,
                at,
                report: shard.tick(at),
            },
            ShardMsg::Barrier(barrier) => ScorerMsg::Barrier(barrier),
            ShardMsg::Checkpoint(request) => {
                // Written from the live state, chunk by chunk: no copy of the shard.
                let limit = request.request.chunk_bytes;
                format::write_shard(&shard, index, limit, &mut |chunk| {
                    request.request.emit(CheckpointPart::Chunk(chunk))
                });
                ScorerMsg::Checkpoint {
                    shard: index,
                    request,
                }
            }
            ShardMsg::Stop => {
                let _ = scorer.send(ScorerMsg::Stop);
                return;
            }
        };
        if scorer.send(forward).is_err() {
            return;
        }
    }
}

/// Collects every shard's report for a tick before scoring it.
struct TickCollector {
    shard_count: usize,
    pending: BTreeMap<EventTime, Vec<(usize, ShardReport)>>,
}

impl TickCollector {
    /// Returns the tick's reports in shard order once all shards have answered.
    fn add(
        &mut self,
        at: EventTime,
        shard: usize,
        report: ShardReport,
    ) -> Option<Vec<(usize, ShardReport)>> {
        let entry = self.pending.entry(at).or_default();
        entry.push((shard, report));
        if entry.len() < self.shard_count {
            return None;
        }
        let mut complete = self.pending.remove(&at)?;
        complete.sort_by_key(|(shard, _)| *shard);
        Some(complete)
    }
}

/// What follows a scored tick: the metrics, the flagged book, and the findings to the sink.
/// Shared by the pipeline's scorer and the linker role's.
pub(super) struct TickOutput {
    flagged: FlaggedBook,
    evicted_seen: u64,
    detector_counts: DetectorCounters,
    caps: CapCounters,
}

impl TickOutput {
    pub(super) fn starting_from(scorer: &Scorer, metrics: &Metrics) -> Self {
        export_link_gauges(scorer, metrics);
        Self {
            flagged: FlaggedBook::default(),
            evicted_seen: scorer.evicted_total(),
            detector_counts: DetectorCounters::starting_from(scorer),
            caps: CapCounters::starting_from(scorer),
        }
    }

    /// Exports the tick's metrics and hands its findings (and activity) to the sink.
    pub(super) fn deliver(
        &mut self,
        scorer: &mut Scorer,
        updates: Vec<FindingUpdate>,
        sink: &mut dyn FindingSink,
        metrics: &Metrics,
    ) {
        let activity = scorer.take_activity(&updates, sink.wants_activity());
        self.detector_counts.export(scorer, metrics);
        metrics
            .tracked_accounts
            .set(scorer.tracked_accounts() as i64);
        export_link_gauges(scorer, metrics);
        let evicted = scorer.evicted_total();
        metrics
            .evicted_accounts
            .inc_by(evicted.saturating_sub(self.evicted_seen));
        self.evicted_seen = evicted;
        if !updates.is_empty() {
            self.flagged.record(&updates, metrics);
            sink.deliver(updates);
        }
        if !activity.is_empty() {
            sink.deliver_activity(activity);
        }
        self.caps.export(scorer, &mut self.flagged, metrics);
    }
}

fn run_scorer(
    mut scorer: Scorer,
    shard_count: usize,
    inbox: Receiver<ScorerMsg>,
    mut sink: Box<dyn FindingSink>,
    mut hand_off: Option<Box<dyn TickHandOff>>,
    metrics: Metrics,
) {
    let mut ticks = TickCollector {
        shard_count,
        pending: BTreeMap::new(),
    };
    let mut barriers = 0usize;
    let mut stops = 0usize;
    let mut checkpoint_parts = vec![false; shard_count];
    let mut output = TickOutput::starting_from(&scorer, &metrics);
    // False once a tick's reports could not be handed on: a checkpoint would then cover a tick
    // the linker never gets, so none is written and the restart replays from the last one.
    let mut handed_on_all = true;
    while let Ok(message) = inbox.recv() {
        match message {
            ScorerMsg::Report { shard, at, report } => {
                let Some(reports) = ticks.add(at, shard, report) else {
                    continue;
                };
                if let Some(hand_off) = hand_off.as_mut() {
                    // Returns once the reports are persisted: a checkpoint queued behind this
                    // tick then covers only ticks the linker can read.
                    let reports = reports.into_iter().map(|(_, r)| r).collect();
                    handed_on_all &= hand_off.hand_on(at, reports);
                    continue;
                }
                for (shard, report) in reports {
                    scorer.absorb(shard, report);
                }
                let updates = scorer.finish_tick(at);
                output.deliver(&mut scorer, updates, sink.as_mut(), &metrics);
            }
            ScorerMsg::Barrier(barrier) => {
                barriers += 1;
                if barriers == shard_count {
                    barriers = 0;
                    let report = Report {
                        events: barrier.events,
                        late_events: barrier.late_events,
                        ahead_events: barrier.ahead_events,
                        accounts: scorer.findings().cloned().collect(),
                        clusters: scorer.cluster_findings().cloned().collect(),
                    };
                    let _ = barrier.reply.send(report);
                }
            }
            ScorerMsg::Checkpoint { shard, request } => {
                checkpoint_parts[shard] = true;
                if checkpoint_parts.iter().all(|done| *done) {
                    checkpoint_parts.fill(false);
                    if !handed_on_all {
                        tracing::error!(
                            "checkpoint not written: a tick's reports were not handed on"
                        );
                        continue;
                    }
                    let CheckpointMsg { meta, request } = request;
                    let complete = format::write_scorer(
                        &scorer,
                        &request.dedup,
                        request.chunk_bytes,
                        &mut |chunk| request.emit(CheckpointPart::Chunk(chunk)),
                    );
                    if complete {
                        request.emit(CheckpointPart::Done(meta));
                    }
                }
            }
            ScorerMsg::Stop => {
                stops += 1;
                if stops == shard_count {
                    return;
                }
            }
        }
    }
}

/// Accounts the linker holds and live clusters by state: bounded labels, never a cluster id.
fn export_link_gauges(scorer: &Scorer, metrics: &Metrics) {
    metrics
        .linked_accounts
        .set(i64::try_from(scorer.linked_accounts()).unwrap_or(i64::MAX));
    let flagged = scorer.cluster_findings().filter(|c| c.flagged).count();
    let unflagged = scorer.cluster_findings().count() - flagged;
    let [flagged_state, unflagged_state] = crate::metrics::CLUSTER_STATES;
    metrics
        .clusters
        .with_label_values(&[flagged_state])
        .set(flagged as i64);
    metrics
        .clusters
        .with_label_values(&[unflagged_state])
        .set(unflagged as i64);
}

/// Turns the scorer's cumulative per-detector counts into counter increments.
#[derive(Default)]
struct DetectorCounters {
    seen: HashMap<&'static str, (u64, u64)>,
}

impl DetectorCounters {
    /// Counts restored from a checkpoint are history, not new evaluations of this process.
    fn starting_from(scorer: &Scorer) -> Self {
        let seen = scorer
            .detector_counts()
            .into_iter()
            .map(|c| (c.detector, (c.evaluations, c.fires)))
            .collect();
        Self { seen }
    }

    fn export(&mut self, scorer: &Scorer, metrics: &Metrics) {
        for count in scorer.detector_counts() {
            let (evaluations, fires) = self.seen.entry(count.detector).or_default();
            metrics
                .detector_evaluations
                .with_label_values(&[count.detector])
                .inc_by(count.evaluations.saturating_sub(*evaluations));
            metrics
                .detector_fires
                .with_label_values(&[count.detector])
                .inc_by(count.fires.saturating_sub(*fires));
            *evaluations = count.evaluations;
            *fires = count.fires;
        }
    }
}

/// Entries and evictions of the scorer's capped maps, as metrics (`distillguard_state_*`).
struct CapCounters {
    linker_evicted: u64,
    models_ignored: u64,
}

impl CapCounters {
    fn starting_from(scorer: &Scorer) -> Self {
        Self {
            linker_evicted: scorer.linker().evicted(),
            models_ignored: scorer.model_names().1,
        }
    }

    /// Exports the maps' sizes and evictions, and drops forgotten findings from the book.
    fn export(&mut self, scorer: &mut Scorer, flagged: &mut FlaggedBook, metrics: &Metrics) {
        let forgotten = scorer.take_forgotten();
        let evictions = |map: &str, n: u64| {
            metrics.state_evictions.with_label_values(&[map]).inc_by(n);
        };
        evictions("findings", forgotten.len() as u64);
        evictions("flagged", flagged.forget(&forgotten, metrics) as u64);
        let linker_evicted = scorer.linker().evicted();
        evictions("linker", linker_evicted.saturating_sub(self.linker_evicted));
        self.linker_evicted = linker_evicted;
        let (models, ignored) = scorer.model_names();
        evictions("models", ignored.saturating_sub(self.models_ignored));
        self.models_ignored = ignored;
        let entries = |map: &str, n: usize| {
            metrics
                .state_entries
                .with_label_values(&[map])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        entries("findings", scorer.finding_count());
        entries("flagged", flagged.severities.len());
        entries("linker", scorer.linked_accounts());
        entries("models", models);
    }
}

/// Tracks which subjects are flagged at what severity, for the findings metrics.
#[derive(Default)]
struct FlaggedBook {
    severities: HashMap<(&'static str, String), Severity>,
}

impl FlaggedBook {
    /// Drops accounts whose findings the scorer forgot (they left detector state), so the book
    /// stays bounded by the account cap; returns how many were flagged.
    fn forget(&mut self, accounts: &[AccountId], metrics: &Metrics) -> usize {
        let mut dropped = 0;
        for account in accounts {
            if let Some(old) = self.severities.remove(&("account", account.to_string())) {
                metrics
                    .open_findings
                    .with_label_values(&["account", old.as_str()])
                    .dec();
                dropped += 1;
            }
        }
        dropped
    }

    fn record(&mut self, updates: &[FindingUpdate], metrics: &Metrics) {
        for update in updates {
            let (kind, id) = match update {
                FindingUpdate::Account(a) => ("account", a.account_id.clone()),
                FindingUpdate::Cluster(c) => ("cluster", c.cluster_id.clone()),
            };
            let key = (kind, id);
            let previous = self.severities.get(&key).copied();
            if !update.flagged() {
                if let Some(old) = self.severities.remove(&key) {
                    metrics
                        .open_findings
                        .with_label_values(&[kind, old.as_str()])
                        .dec();
                }
                continue;
            }
            let severity = update.severity();
            if previous == Some(severity) {
                continue;
            }
            if let Some(old) = previous {
                metrics
                    .open_findings
                    .with_label_values(&[kind, old.as_str()])
                    .dec();
            }
            metrics
                .open_findings
                .with_label_values(&[kind, severity.as_str()])
                .inc();
            if previous.is_none_or(|old| severity > old) {
                metrics
                    .new_findings
                    .with_label_values(&[kind, severity.as_str()])
                    .inc();
            }
            self.severities.insert(key, severity);
        }
    }
}
