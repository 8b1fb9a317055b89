//! Checkpoints through a real store: chunked and restored, and the JSON ones of earlier versions.

use std::io::Read;
use std::sync::Arc;

use distillguard_core::event::{AccountId, ApiEvent};
use distillguard_core::finding::Report;
use distillguard_server::checkpoint::{self, format::Snapshot};
use distillguard_server::metrics::Metrics;
use distillguard_server::pipeline::{DiscardSink, Pipeline, PipelineConfig};
use distillguard_store::{FindingWriter, Store, WriterConfig};
use serde_json::Value;

use crate::helpers::*;

fn config(shards: usize, chunk_bytes: usize) -> PipelineConfig {
    let mut settings = test_settings();
    settings.engine.shards = shards;
    PipelineConfig {
        checkpoint_chunk_bytes: chunk_bytes,
        ..distillguard_server::app::pipeline_config(&settings)
    }
}

async fn finish(pipeline: Pipeline) -> Report {
    tokio::task::spawn_blocking(move || pipeline.finish_blocking())
        .await
        .unwrap()
        .unwrap()
}

/// A simulated day plus `extra` accounts that each send a few requests: a checkpoint of many
/// accounts whose findings still matter.
fn traffic(extra: usize) -> Vec<ApiEvent> {
    let mut events = simulated_day();
    let start = events[0].timestamp;
    for i in 0..extra {
        let mut event = events[i % 1000].clone();
        event.account_id = AccountId::parse(format!("crowd-{i:06}")).unwrap();
        event.request_id = Some(format!("crowd-{i}"));
        event.timestamp = start.plus_ms((i as i64 * 997) % (20 * 3_600_000));
        events.push(event);
    }
    events.sort_by_key(|e| e.timestamp);
    events
}

async fn many_accounts_round_trip(store: Store) {
    let events = traffic(30_000);
    let (first, rest) = events.split_at(events.len() * 3 / 4);
    let writer = FindingWriter::spawn(store.clone(), WriterConfig::default());

    let unbroken = Pipeline::start(config(2, 0), Metrics::new(), Box::new(DiscardSink));
    unbroken.submit(events.clone()).await.unwrap();
    let expected = finish(unbroken).await;

    // Small chunks, so the checkpoint is many of them.
    let before = Pipeline::start(config(2, 64 * 1024), Metrics::new(), Box::new(DiscardSink));
    before.submit(first.to_vec()).await.unwrap();
    let bytes = checkpoint::save(&store, &before, &writer).await.unwrap();
    let taken = before.clone();
    tokio::task::spawn_blocking(move || taken.shutdown_blocking())
        .await
        .unwrap();
    let manifest = store
        .latest_checkpoint(checkpoint::ENGINE_KEY)
        .await
        .unwrap()
        .unwrap();
    assert!(manifest.chunk_count > 50, "{manifest:?}");
    assert_eq!(manifest.total_bytes, bytes);

    let restored = checkpoint::load(&store).await.unwrap().unwrap();
    let tracked: usize = restored
        .engine
        .shards
        .iter()
        .map(|s| s.accounts.len())
        .sum();
    assert!(tracked > 30_000, "{tracked} accounts restored");
    let after = Pipeline::start_from(
        config(3, 64 * 1024),
        Metrics::new(),
        Box::new(DiscardSink),
        Some(restored),
    );
    after.submit(rest.to_vec()).await.unwrap();
    let resumed = finish(after).await;

    assert!(expected.accounts.iter().filter(|a| a.flagged).count() >= 3);
    assert_eq!(resumed, expected);
    // A second checkpoint replaces the first: one generation is kept.
    let again = Pipeline::start(config(1, 64 * 1024), Metrics::new(), Box::new(DiscardSink));
    checkpoint::save(&store, &again, &writer).await.unwrap();
    let newer = store
        .latest_checkpoint(checkpoint::ENGINE_KEY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newer.generation, manifest.generation + 1);
    assert!(store
        .checkpoint_chunk(checkpoint::ENGINE_KEY, manifest.generation, 0)
        .await
        .unwrap()
        .is_none());
    tokio::task::spawn_blocking(move || again.shutdown_blocking())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_checkpoint_of_many_accounts_is_written_in_chunks_and_restored_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(None, dir.path()).await.unwrap();
    many_accounts_round_trip(store).await;
}

#[tokio::test]
async fn a_checkpoint_of_many_accounts_is_written_in_chunks_and_restored_on_postgres() {
    let db = PgDatabase::create("chunks").await;
    let store = Store::connect(Some(&db.url()), std::path::Path::new("."))
        .await
        .unwrap();
    many_accounts_round_trip(store.clone()).await;
    store.close().await;
    db.drop().await;
}

fn fixture() -> (Vec<u8>, Value) {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(
        &include_bytes!("../fixtures/checkpoint-json-6b9c5fa.json.gz")[..],
    )
    .read_to_end(&mut json)
    .unwrap();
    let expected = serde_json::from_str(include_str!(
        "../fixtures/checkpoint-json-6b9c5fa.expected.json"
    ))
    .unwrap();
    (json, expected)
}

/// Written by main at 6b9c5fa (format 1, JSON). Fields added since carry serde defaults; this
/// test is what shows they do.
#[tokio::test]
async fn a_json_checkpoint_of_an_earlier_version_restores_and_is_replaced_by_the_chunked_format() {
    let (json, expected) = fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(None, dir.path()).await.unwrap();
    store
        .save_checkpoint(checkpoint::ENGINE_KEY, &json, None)
        .await
        .unwrap();

    let snapshot: Snapshot = checkpoint::load(&store).await.unwrap().unwrap();
    let tracked: usize = snapshot
        .engine
        .shards
        .iter()
        .map(|s| s.accounts.len())
        .sum();
    assert_eq!(
        tracked as u64,
        expected["tracked_accounts"].as_u64().unwrap()
    );
    assert_eq!(snapshot.engine.events, expected["events"].as_u64().unwrap());
    assert_eq!(snapshot.log_position, None);
    let wanted: Vec<String> = expected["flagged_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(flagged(&snapshot), wanted);
    let wanted_clusters: Vec<(String, bool, usize)> = expected["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_owned(),
                c[1].as_bool().unwrap(),
                c[2].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(clusters(&snapshot), wanted_clusters);

    // It goes on from there, and its next checkpoint is chunked and replaces the JSON one.
    let from_json = Pipeline::start_from(
        config(2, 64 * 1024),
        Metrics::new(),
        Box::new(DiscardSink),
        Some(snapshot.clone()),
    );
    let writer = Arc::new(FindingWriter::spawn(store.clone(), WriterConfig::default()));
    checkpoint::save(&store, &from_json, &writer).await.unwrap();
    assert!(
        store
            .load_checkpoint(checkpoint::ENGINE_KEY)
            .await
            .unwrap()
            .is_none(),
        "the JSON checkpoint is gone once a chunked one is committed"
    );
    let converted = checkpoint::load(&store).await.unwrap().unwrap();
    assert_eq!(flagged(&converted), wanted);
    assert_eq!(clusters(&converted), wanted_clusters);

    // Both continue alike: the same tail of traffic gives the same report.
    let tail = later_traffic(&snapshot);
    let from_chunks = Pipeline::start_from(
        config(3, 64 * 1024),
        Metrics::new(),
        Box::new(DiscardSink),
        Some(converted),
    );
    from_json.submit(tail.clone()).await.unwrap();
    from_chunks.submit(tail).await.unwrap();
    let (a, b) = (finish(from_json).await, finish(from_chunks).await);
    assert!(a.accounts.iter().filter(|f| f.flagged).count() >= wanted.len());
    assert_eq!(a, b);
}

fn flagged(snapshot: &Snapshot) -> Vec<String> {
    let mut ids: Vec<String> = snapshot
        .engine
        .scorer
        .findings
        .iter()
        .filter(|a| a.flagged)
        .map(|a| a.account_id.clone())
        .collect();
    ids.sort();
    ids
}

fn clusters(snapshot: &Snapshot) -> Vec<(String, bool, usize)> {
    let mut clusters: Vec<(String, bool, usize)> = snapshot
        .engine
        .scorer
        .clusters
        .iter()
        .map(|c| (c.cluster_id.clone(), c.flagged, c.members.len()))
        .collect();
    clusters.sort();
    clusters
}

/// An hour of the simulated day's traffic moved to just after the checkpoint's clock.
fn later_traffic(snapshot: &Snapshot) -> Vec<ApiEvent> {
    let after = snapshot.engine.clock.max_seen.unwrap();
    let day = simulated_day();
    let first = day[0].timestamp;
    day.into_iter()
        .filter(|e| e.timestamp.epoch_ms() - first.epoch_ms() < 3_600_000)
        .map(|mut e| {
            e.timestamp = after.plus_ms(1 + e.timestamp.epoch_ms() - first.epoch_ms());
            e
        })
        .collect()
}
