//! Ingest's side of the bus: publish a request's events and wait for every acknowledgement.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::Publish};
use distillguard_core::event::ApiEvent;
use distillguard_core::time::EventTime;
use futures_util::future::join_all;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{partition_for, subject, BusError, BusMetrics, BusSettings};

/// What JetStream did with a request's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishReceipt {
    /// Stored as new.
    pub stored: usize,
    /// Dropped by the stream's duplicate window (a retry of a message id it holds).
    pub duplicates: usize,
}

/// A connection to NATS and the stream; shared by every ingest request.
pub struct Publisher {
    client: async_nats::Client,
    context: jetstream::Context,
    settings: BusSettings,
    metrics: BusMetrics,
    stream: OnceCell<()>,
}

impl Publisher {
    /// Connects in the background: the service starts while NATS is down, and ingest answers
    /// 503 until it is reachable.
    pub async fn connect(settings: BusSettings, metrics: BusMetrics) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("distillguard")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(settings.url.as_str())
            .await
            .map_err(|_| BusError::Unreachable {
                url: settings.url.clone(),
            })?;
        // Give the first connection a moment, so a start with NATS up does not log it as down.
        let deadline = Instant::now() + Duration::from_secs(2);
        while client.connection_state() != async_nats::connection::State::Connected
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut context = jetstream::new(client.clone());
        context.set_timeout(settings.publish_timeout());
        Ok(Self {
            client,
            context,
            settings,
            metrics,
            stream: OnceCell::new(),
        })
    }

    pub fn settings(&self) -> &BusSettings {
        &self.settings
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn unreachable(&self) -> BusError {
        BusError::Unreachable {
            url: self.settings.url.clone(),
        }
    }

    /// Creates the stream if it is missing and checks its partition count; once per process.
    pub async fn ensure_stream(&self) -> Result<(), BusError> {
        if !self.is_connected() {
            return Err(self.unreachable());
        }
        self.stream
            .get_or_try_init(|| ensure_stream(&self.context, &self.settings))
            .await
            .map(|_| ())
    }

    /// Publishes `events` and returns once JetStream acknowledged them all, or an error (then the
    /// caller answers 503 and counts nothing; whatever was stored is dropped as a duplicate when
    /// the client retries, since message ids are stable).
    pub async fn publish(&self, events: &[ApiEvent]) -> Result<PublishReceipt, BusError> {
        let started = Instant::now();
        let outcome = self.publish_all(events).await;
        match &outcome {
            Ok(receipt) => {
                self.metrics
                    .publish_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.published_events.inc_by(receipt.stored as u64);
            }
            Err(error) => {
                self.metrics.publish_failures.inc();
                tracing::warn!(%error, events = events.len(), "publish to JetStream failed: 503");
            }
        }
        outcome
    }

    async fn publish_all(&self, events: &[ApiEvent]) -> Result<PublishReceipt, BusError> {
        if events.is_empty() {
            return Ok(PublishReceipt::default());
        }
        self.ensure_stream().await?;
        let prefix = &self.settings.subject_prefix;
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let (payload, id) = encode_event(event)?;
            let partition = partition_for(&event.account_id, self.settings.partition_count);
            let message = Publish::build()
                .payload(payload.into())
                .message_id(id)
                .header(EVENT_TIME_HEADER, event.timestamp.epoch_ms().to_string());
            let ack = self
                .context
                .send_publish(subject(prefix, partition), message)
                .await
                .map_err(|e| BusError::Publish(e.to_string()))?;
            acks.push(ack.into_future());
        }
        let acked = tokio::time::timeout(self.settings.publish_timeout(), join_all(acks))
            .await
            .map_err(|_| BusError::Publish("timed out waiting for acknowledgements".into()))?;
        let mut receipt = PublishReceipt::default();
        for ack in acked {
            let ack = ack.map_err(|e| BusError::Publish(e.to_string()))?;
            if ack.duplicate {
                receipt.duplicates += 1;
            } else {
                receipt.stored += 1;
            }
        }
        Ok(receipt)
    }
}

/// The header carrying each event's timestamp (Unix ms), so that a detector reads the time of
/// events it does not own without decoding them: every detector's clock then sees every event.
pub const EVENT_TIME_HEADER: &str = "Distillguard-Event-Time";

/// The event time a message's header gives, if it has a readable one (messages published before
/// the header existed have none: the reader decodes the event instead).
pub fn header_event_time(headers: Option<&async_nats::HeaderMap>) -> Option<EventTime> {
    let value = headers?.get(EVENT_TIME_HEADER)?;
    EventTime::from_epoch_ms(value.as_str().parse().ok()?).ok()
}

/// One event as MessagePack with named fields (the event log's encoding), and its message id:
/// the `request_id`, or else a digest of the encoded event, so that a retried request without ids
/// is still recognised by the duplicate window.
pub fn encode_event(event: &ApiEvent) -> Result<(Vec<u8>, String), BusError> {
    let mut bytes = Vec::with_capacity(256);
    event
        .serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map())
        .map_err(|e| BusError::Encode(e.to_string()))?;
    let id = match &event.request_id {
        Some(id) => format!("r:{id}"),
        None => format!("d:{}", hex::encode(&Sha256::digest(&bytes)[..16])),
    };
    Ok((bytes, id))
}

/// Reads one event written by [`encode_event`].
pub fn decode_event(payload: &[u8]) -> Result<ApiEvent, BusError> {
    rmp_serde::from_slice(payload).map_err(|e| BusError::Encode(e.to_string()))
}

/// The description a stream is created with; it records the partition count so that a node
/// configured with another count refuses to start rather than hash accounts elsewhere.
fn description(settings: &BusSettings) -> String {
    format!(
        "distillguard events; partitions={}",
        settings.partition_count
    )
}

async fn ensure_stream(
    context: &jetstream::Context,
    settings: &BusSettings,
) -> Result<(), BusError> {
    let failed = |reason: String| BusError::Stream {
        stream: settings.stream.clone(),
        reason,
    };
    let config = super::stream_config(
        settings,
        &settings.stream,
        description(settings),
        &settings.subject_prefix,
    );
    let mut stream = context
        .get_or_create_stream(config)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let info = stream.info().await.map_err(|e| failed(e.to_string()))?;
    let expected = description(settings);
    if info.config.description.as_deref() != Some(expected.as_str()) {
        return Err(failed(format!(
            "it was created as {:?} but this node expects {expected:?}: bus.partition_count must \
             match the stream's",
            info.config.description
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::event::{AccountId, ModelName};

    fn event(request_id: Option<&str>) -> ApiEvent {
        let mut event = ApiEvent::new(
            EventTime::from_epoch_ms(1_764_000_000_000).unwrap(),
            AccountId::parse("acct").unwrap(),
            ModelName::parse("m").unwrap(),
        );
        event.request_id = request_id.map(str::to_owned);
        event.prompt = Some("hello".into());
        event
    }

    #[test]
    fn an_event_reads_back_equal_and_its_id_is_its_request_id() {
        let original = event(Some("req-1"));
        let (bytes, id) = encode_event(&original).unwrap();
        assert_eq!(id, "r:req-1");
        assert_eq!(decode_event(&bytes).unwrap(), original);
    }

    #[test]
    fn an_event_time_header_reads_back_and_a_missing_or_bad_one_is_none() {
        let mut headers = async_nats::HeaderMap::new();
        assert_eq!(header_event_time(None), None);
        assert_eq!(header_event_time(Some(&headers)), None);
        headers.insert(EVENT_TIME_HEADER, "soon");
        assert_eq!(header_event_time(Some(&headers)), None);
        headers.insert(EVENT_TIME_HEADER, "1764000000000");
        assert_eq!(
            header_event_time(Some(&headers)),
            Some(EventTime::from_epoch_ms(1_764_000_000_000).unwrap())
        );
    }

    #[test]
    fn an_event_without_request_id_gets_the_same_id_on_every_retry() {
        let (_, first) = encode_event(&event(None)).unwrap();
        let (_, again) = encode_event(&event(None)).unwrap();
        assert_eq!(first, again);
        assert!(first.starts_with("d:"));
        let mut other = event(None);
        other.prompt = Some("bye".into());
        assert_ne!(encode_event(&other).unwrap().1, first);
    }
}
