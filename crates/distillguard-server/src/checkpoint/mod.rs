//! Detector state across restarts: the engine's checkpoint in the store.
//!
//! A checkpoint is a consistent cut of clock, shards and scorer taken through the pipeline (every
//! worker snapshots after the same prefix of the input), saved periodically and at shutdown.
//! On start the pipeline resumes from it with its windows, baselines and open findings intact.

use std::time::Duration;

use anyhow::Context;
use distillguard_core::engine::EngineCheckpoint;
use distillguard_core::finding::FindingUpdate;
use distillguard_store::{FindingWriter, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::pipeline::Pipeline;

/// The store key of the engine's checkpoint.
pub const ENGINE_KEY: &str = "engine";

/// Loads the last checkpoint. One that cannot be read (a format change across versions) is
/// logged and skipped rather than keeping the service from starting.
pub async fn load(store: &Store) -> anyhow::Result<Option<EngineCheckpoint>> {
    let Some(saved) = store
        .load_checkpoint(ENGINE_KEY)
        .await
        .context("cannot read the detector checkpoint")?
    else {
        return Ok(None);
    };
    match serde_json::from_slice::<EngineCheckpoint>(&saved.data) {
        Ok(checkpoint) => {
            tracing::info!(
                watermark = ?saved.watermark,
                saved_at = %saved.saved_at,
                bytes = saved.data.len(),
                "resuming detection from checkpoint"
            );
            Ok(Some(checkpoint))
        }
        Err(error) => {
            tracing::error!(%error, "detector checkpoint unreadable; starting with empty state");
            Ok(None)
        }
    }
}

/// Takes a checkpoint through the pipeline and writes it to the store.
pub async fn save(store: &Store, pipeline: &Pipeline) -> anyhow::Result<()> {
    let taking = pipeline.clone();
    let Some(checkpoint) = tokio::task::spawn_blocking(move || taking.checkpoint_blocking())
        .await
        .context("checkpoint task panicked")?
    else {
        anyhow::bail!("the pipeline stopped before it could be checkpointed");
    };
    write(store, &checkpoint).await
}

/// Writes an already taken checkpoint.
pub async fn write(store: &Store, checkpoint: &EngineCheckpoint) -> anyhow::Result<()> {
    let data = serde_json::to_vec(checkpoint).context("cannot serialise the checkpoint")?;
    let watermark = checkpoint.clock.max_seen;
    store
        .save_checkpoint(ENGINE_KEY, &data, watermark)
        .await
        .context("cannot write the detector checkpoint")?;
    tracing::debug!(bytes = data.len(), "detector checkpoint saved");
    Ok(())
}

/// Re-submits the findings a checkpoint holds. Findings emitted just before a crash may not have
/// reached the store; upserts are idempotent, so sending them again closes that gap.
pub fn resubmit_findings(writer: &FindingWriter, checkpoint: &EngineCheckpoint) {
    writer.submit(
        checkpoint
            .scorer
            .findings
            .iter()
            .cloned()
            .map(FindingUpdate::Account),
    );
}

/// Saves a checkpoint every `interval` until `stop` changes.
pub fn spawn_periodic(
    store: Store,
    pipeline: Pipeline,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(error) = save(&store, &pipeline).await {
                        tracing::warn!(error = format!("{error:#}"), "periodic checkpoint failed; will retry");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    })
}
