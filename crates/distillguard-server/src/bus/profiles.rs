//! The profiles stream: detectors with `[bus] linker = true` publish each tick's shard reports
//! (a [`TickReport`]) here instead of scoring them, and the linker role reads them back.
//!
//! ```text
//! detector scorer thread ─► <profiles_subject_prefix>.<tick ms> ─► linker consumer ─► joiner
//!   one TickReport a tick,     MessagePack in parts of at most       ordered, from its
//!   acks awaited before the    profile_part_bytes, message ids        checkpoint's resume
//!   next message is handled    <checkpoint key>:<tick ms>:<i>/<n>     sequence
//! ```
//!
//! A tick's report can exceed NATS's 1 MiB payload limit (thousands of changed accounts at a few
//! KiB each), so its encoding is cut into parts; the message id names the report and the part, so
//! the linker joins parts of several detectors' reports interleaved in the stream, and a detector
//! that replays after a restart publishes the same ids again (dropped by the duplicate window, or
//! later by the linker's assembler as a report it already has).

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::Publish};
use distillguard_core::engine::{ShardReport, Tick};
use distillguard_core::partitioned::TickReport;
use distillguard_core::time::EventTime;
use serde::Serialize;

use super::{BusError, BusMetrics, BusSettings};

/// A tick report as MessagePack with named fields, the event stream's encoding: it reads every
/// `f64` back bit-equal (JSON's default float parsing does not), so scores do not move.
pub fn encode_report(report: &TickReport) -> Result<Vec<u8>, BusError> {
    let mut bytes = Vec::with_capacity(4096);
    report
        .serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map())
        .map_err(|e| BusError::Encode(e.to_string()))?;
    Ok(bytes)
}

pub fn decode_report(bytes: &[u8]) -> Result<TickReport, BusError> {
    rmp_serde::from_slice(bytes).map_err(|e| BusError::Encode(e.to_string()))
}

/// The parts an encoded report travels in: at least one, each at most `part_bytes`.
pub fn split(bytes: &[u8], part_bytes: usize) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(part_bytes.max(1)).collect()
}

/// `<report>:<part>/<parts>`, parts numbered from 1; the report is `<checkpoint key>:<tick ms>`.
pub fn message_id(report: &str, part: usize, parts: usize) -> String {
    format!("{report}:{part}/{parts}")
}

/// The report a message id names and its part: `(report, part, parts)`.
pub fn parse_message_id(id: &str) -> Option<(&str, usize, usize)> {
    let (report, numbers) = id.rsplit_once(':')?;
    let (part, parts) = numbers.split_once('/')?;
    let (part, parts): (usize, usize) = (part.parse().ok()?, parts.parse().ok()?);
    (part >= 1 && part <= parts && !report.is_empty()).then_some((report, part, parts))
}

/// The detector (its checkpoint key) and tick (Unix ms) a report id `<key>:<tick ms>` names.
fn source_and_tick(report: &str) -> Option<(&str, i64)> {
    let (source, tick) = report.rsplit_once(':')?;
    Some((source, tick.parse().ok()?))
}

/// Joins reports' parts as they arrive, interleaved with other detectors' parts.
///
/// A report some of whose parts never arrive (aged out of the stream before the linker read
/// them) is given up once a part of a later tick's report from the same detector arrives: a
/// detector publishes every part of a tick, acknowledged, before the next tick's, so the missing
/// parts can no longer come. Without that the partial report would pin the resume sequence (and
/// its memory) for ever; the linker's assembler then scores that tick without the report
/// (`TickAssembler`, "Giving up an incomplete tick").
#[derive(Debug, Default)]
pub struct Joiner {
    partial: HashMap<String, Partial>,
    /// Reports given up since the last [`Joiner::take_given_up`], with the parts they had.
    given_up: Vec<(String, usize, usize)>,
}

#[derive(Debug)]
struct Partial {
    first_sequence: u64,
    parts: Vec<Option<Vec<u8>>>,
}

impl Joiner {
    /// Takes one part read at stream `sequence`; returns the whole encoded report once every part
    /// is in. A part seen twice (a detector's re-publication) keeps the first copy: the same
    /// report encodes to the same bytes.
    pub fn add(
        &mut self,
        report: &str,
        part: usize,
        parts: usize,
        payload: &[u8],
        sequence: u64,
    ) -> Option<Vec<u8>> {
        if let Some((source, tick)) = source_and_tick(report) {
            let earlier: Vec<String> = self
                .partial
                .keys()
                .filter(|id| source_and_tick(id).is_some_and(|(s, t)| s == source && t < tick))
                .cloned()
                .collect();
            for id in earlier {
                if let Some(partial) = self.partial.remove(&id) {
                    let had = partial.parts.iter().filter(|p| p.is_some()).count();
                    self.given_up.push((id, had, partial.parts.len()));
                }
            }
        }
        if parts == 1 {
            return Some(payload.to_vec());
        }
        let partial = self
            .partial
            .entry(report.to_owned())
            .or_insert_with(|| Partial {
                first_sequence: sequence,
                parts: vec![None; parts],
            });
        if partial.parts.len() != parts {
            // Another cut of the same report (another profile_part_bytes after a restart):
            // start over with this one.
            *partial = Partial {
                first_sequence: sequence,
                parts: vec![None; parts],
            };
        }
        let slot = &mut partial.parts[part - 1];
        if slot.is_none() {
            *slot = Some(payload.to_vec());
        }
        if partial.parts.iter().any(Option::is_none) {
            return None;
        }
        let partial = self.partial.remove(report)?;
        Some(partial.parts.into_iter().flatten().flatten().collect())
    }

    /// Where a restart must read from so that no part of a report still being joined is
    /// missed: the first sequence of the oldest partial report, or `next`.
    pub fn resume_from(&self, next: u64) -> u64 {
        self.partial
            .values()
            .map(|p| p.first_sequence)
            .min()
            .map_or(next, |first| first.min(next))
    }

    /// Reports waiting for parts.
    pub fn partial_reports(&self) -> usize {
        self.partial.len()
    }

    /// The reports given up since the last call: `(report id, parts it had, parts it needed)`.
    pub fn take_given_up(&mut self) -> Vec<(String, usize, usize)> {
        std::mem::take(&mut self.given_up)
    }
}

/// Creates the profiles stream if it is missing.
pub async fn ensure_stream(
    context: &jetstream::Context,
    settings: &BusSettings,
) -> Result<jetstream::stream::Stream, BusError> {
    let config = super::stream_config(
        settings,
        &settings.profiles_stream,
        format!(
            "distillguard tick reports; partitions={}",
            settings.partition_count
        ),
        &settings.profiles_subject_prefix,
    );
    context
        .get_or_create_stream(config)
        .await
        .map_err(|e| BusError::Stream {
            stream: settings.profiles_stream.clone(),
            reason: e.to_string(),
        })
}

/// A detector's hand-off of its ticks to the linker: publishes each tick's report from the
/// scorer thread and returns only once JetStream acknowledged every part, retrying while NATS is
/// unreachable. The scorer thread then handles a checkpoint request queued behind the tick only
/// after the report is in the stream, so a checkpoint never covers a tick the linker may miss.
pub struct ProfilePublisher {
    pub runtime: tokio::runtime::Handle,
    pub context: jetstream::Context,
    pub settings: BusSettings,
    /// This detector's checkpoint key, which names its partition set in message ids.
    pub key: String,
    pub partitions: Vec<u32>,
    pub metrics: BusMetrics,
    /// Set when the node stops: a report NATS does not take by then is given up (and no later
    /// checkpoint is written, so the restart publishes it again).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The stream was found or created, and no publish has failed since: parts go straight out
    /// (one round trip each, not two). A failure clears it, so a stream an operator deleted is
    /// created again on the retry.
    pub stream_ready: AtomicBool,
}

/// Wait between attempts to publish a tick report while NATS does not acknowledge it.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

impl crate::pipeline::TickHandOff for ProfilePublisher {
    fn hand_on(&mut self, at: EventTime, reports: Vec<ShardReport>) -> bool {
        let report = TickReport::new(
            &self.partitions,
            self.settings.partition_count,
            Tick { at, reports },
        );
        let bytes = match encode_report(&report) {
            Ok(bytes) => bytes,
            Err(error) => {
                // Nothing a retry would change; the linker then waits on this tick, which its
                // pending-ticks gauge shows.
                tracing::error!(%error, tick = %at.to_rfc3339(), "tick report not encodable");
                return true;
            }
        };
        let started = std::time::Instant::now();
        let report_id = format!("{}:{}", self.key, at.epoch_ms());
        let subject = format!(
            "{}.{}",
            self.settings.profiles_subject_prefix,
            at.epoch_ms()
        );
        let parts = split(&bytes, self.settings.profile_part_bytes);
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            let id = message_id(&report_id, index + 1, count);
            if !self
                .runtime
                .block_on(self.publish_until_acked(&subject, &id, part))
            {
                return false;
            }
        }
        self.metrics.profile_reports_published.inc();
        self.metrics.profile_parts_published.inc_by(count as u64);
        self.metrics
            .profile_bytes_published
            .inc_by(bytes.len() as u64);
        self.metrics
            .profile_publish_duration
            .observe(started.elapsed().as_secs_f64());
        true
    }
}

impl ProfilePublisher {
    /// True once acknowledged; false if the node is stopping and NATS still does not take it.
    async fn publish_until_acked(&self, subject: &str, id: &str, payload: &[u8]) -> bool {
        loop {
            let Err(error) = self.publish_once(subject, id, payload).await else {
                return true;
            };
            self.metrics.profile_publish_failures.inc();
            if *self.stopping.borrow() {
                tracing::error!(%error, message_id = id, "stopping: tick report not published; the restart publishes it again");
                return false;
            }
            tracing::warn!(%error, message_id = id, "tick report not acknowledged; retrying");
            tokio::time::sleep(PUBLISH_RETRY).await;
        }
    }

    async fn publish_once(&self, subject: &str, id: &str, payload: &[u8]) -> Result<(), BusError> {
        if !self.stream_ready.load(Ordering::Relaxed) {
            ensure_stream(&self.context, &self.settings).await?;
            self.stream_ready.store(true, Ordering::Relaxed);
        }
        let published = self.publish_acked(subject, id, payload).await;
        if published.is_err() {
            self.stream_ready.store(false, Ordering::Relaxed);
        }
        published
    }

    async fn publish_acked(&self, subject: &str, id: &str, payload: &[u8]) -> Result<(), BusError> {
        let message = Publish::build()
            .payload(payload.to_vec().into())
            .message_id(id);
        let ack = self
            .context
            .send_publish(subject.to_owned(), message)
            .await
            .map_err(|e| BusError::Publish(e.to_string()))?;
        tokio::time::timeout(self.settings.publish_timeout(), ack.into_future())
            .await
            .map_err(|_| BusError::Publish("timed out waiting for the acknowledgement".into()))?
            .map_err(|e| BusError::Publish(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_names_its_report_and_part_and_reads_back() {
        let id = message_id("engine:partitions=0-2,4/8:1764000000000", 2, 3);
        assert_eq!(id, "engine:partitions=0-2,4/8:1764000000000:2/3");
        assert_eq!(
            parse_message_id(&id),
            Some(("engine:partitions=0-2,4/8:1764000000000", 2, 3))
        );
        assert_eq!(parse_message_id("r:4/3"), None);
        assert_eq!(parse_message_id("r:0/3"), None);
        assert_eq!(parse_message_id("no-part"), None);
    }

    #[test]
    fn interleaved_parts_of_two_reports_join_into_their_bytes() {
        let (a, b): (Vec<u8>, Vec<u8>) = ((0..250).collect(), (0..=255).rev().collect());
        let (a_parts, b_parts) = (split(&a, 100), split(&b, 100));
        assert_eq!(a_parts.len(), 3);
        let mut joiner = Joiner::default();
        assert_eq!(joiner.add("a", 1, 3, a_parts[0], 10), None);
        assert_eq!(joiner.add("b", 2, 3, b_parts[1], 11), None);
        assert_eq!(joiner.add("a", 1, 3, a_parts[0], 12), None, "a repeat");
        assert_eq!(joiner.add("a", 3, 3, a_parts[2], 13), None);
        assert_eq!(joiner.resume_from(14), 10);
        assert_eq!(joiner.add("a", 2, 3, a_parts[1], 14), Some(a));
        assert_eq!(joiner.resume_from(15), 11);
        joiner.add("b", 1, 3, b_parts[0], 15);
        assert_eq!(joiner.add("b", 3, 3, b_parts[2], 16), Some(b));
        assert_eq!(joiner.resume_from(17), 17);
        assert_eq!(joiner.partial_reports(), 0);
    }

    #[test]
    fn a_report_missing_a_part_is_given_up_when_its_detector_publishes_a_later_tick() {
        let key = "engine:partitions=0-3/8";
        let (t1, t2) = (format!("{key}:1000"), format!("{key}:2000"));
        let other = "engine:partitions=4-7/8:1000";
        let mut joiner = Joiner::default();
        // Part 2 of 3 of the tick at 1,000 aged out of the stream.
        assert_eq!(joiner.add(&t1, 1, 3, b"a", 10), None);
        assert_eq!(joiner.add(other, 1, 2, b"x", 11), None);
        assert_eq!(joiner.add(&t1, 3, 3, b"c", 12), None);
        assert_eq!(joiner.resume_from(13), 10);
        assert!(joiner.take_given_up().is_empty());
        assert_eq!(
            joiner.add(&t1, 1, 3, b"a", 13),
            None,
            "a repeat of its own tick gives nothing up"
        );
        assert_eq!(joiner.add(&t2, 1, 2, b"d", 14), None);
        assert_eq!(joiner.take_given_up(), [(t1.clone(), 2, 3)]);
        assert_eq!(
            joiner.resume_from(15),
            11,
            "the other detector's report still pins its first part"
        );
        assert_eq!(joiner.add(other, 2, 2, b"y", 15), Some(b"xy".to_vec()));
        assert_eq!(joiner.add(&t2, 2, 2, b"e", 16), Some(b"de".to_vec()));
        assert_eq!(joiner.resume_from(17), 17);
        assert!(joiner.take_given_up().is_empty());
    }

    #[test]
    fn a_report_in_one_part_also_gives_up_its_detectors_earlier_partial_report() {
        let mut joiner = Joiner::default();
        assert_eq!(joiner.add("engine:1000", 1, 2, b"a", 1), None);
        assert_eq!(
            joiner.add("engine:2000", 1, 1, b"b", 2),
            Some(b"b".to_vec())
        );
        assert_eq!(joiner.take_given_up().len(), 1);
        assert_eq!(joiner.partial_reports(), 0);
    }

    #[test]
    fn a_tick_report_reads_back_equal_from_its_parts() {
        let report = TickReport::new(
            &[3, 1],
            8,
            Tick {
                at: EventTime::from_epoch_ms(1_764_000_000_000).unwrap(),
                reports: vec![ShardReport::default(), ShardReport::default()],
            },
        );
        let bytes = encode_report(&report).unwrap();
        let mut joiner = Joiner::default();
        let parts = split(&bytes, 7);
        let mut joined = None;
        for (index, part) in parts.iter().enumerate() {
            joined = joiner.add("r", index + 1, parts.len(), part, index as u64 + 1);
        }
        assert_eq!(decode_report(&joined.unwrap()).unwrap(), report);
    }
}
