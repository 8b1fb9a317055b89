//! Format 1: the whole engine as one JSON value in the `checkpoint` table, as versions before the
//! chunked format wrote it. Read once on upgrade; the first new checkpoint deletes it.

use anyhow::Context;
use distillguard_core::engine::EngineCheckpoint;
use distillguard_store::Store;

use super::format::Snapshot;
use super::ENGINE_KEY;

pub(super) async fn load(store: &Store) -> anyhow::Result<Option<Snapshot>> {
    let Some(saved) = store
        .load_checkpoint(ENGINE_KEY)
        .await
        .context("cannot read the detector checkpoint")?
    else {
        return Ok(None);
    };
    let data = saved.data;
    let parsed = tokio::task::spawn_blocking(move || decode(&data))
        .await
        .context("checkpoint decoding panicked")?;
    match parsed {
        Ok(snapshot) => {
            tracing::info!(
                watermark = ?saved.watermark,
                saved_at = %saved.saved_at,
                "resuming detection from a JSON checkpoint of an earlier version"
            );
            Ok(Some(snapshot))
        }
        Err(error) => {
            tracing::error!(%error, "detector checkpoint unreadable; starting with empty state");
            Ok(None)
        }
    }
}

/// A format-1 checkpoint as a snapshot: no deduplicator ids and no event log position (there
/// was no log), so nothing is replayed.
pub fn decode(data: &[u8]) -> Result<Snapshot, serde_json::Error> {
    let engine: EngineCheckpoint = serde_json::from_slice(data)?;
    Ok(Snapshot {
        engine,
        dedup: Vec::new(),
        log_position: None,
    })
}
