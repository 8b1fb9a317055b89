//! Checkpoint size and speed at scale, and the serialisation formats compared.
//!
//! ```text
//! cargo bench -p distillguard-server --bench checkpoint -- [--accounts N] [--database-url URL]
//!                                                         [--formats]
//! ```
//!
//! Feeds N accounts (4 requests each, varied prompts, over a day of event time) through the real
//! pipeline, then writes a checkpoint to the store (SQLite in a temporary directory, or the given
//! PostgreSQL database), and restores it: time, bytes, chunks, and the process's resident memory
//! before and at its peak during the checkpoint. `--formats` also encodes the same state as JSON
//! (format 1), MessagePack with named fields (format 2) and CBOR, and decodes each back.
//! Run by hand (1M accounts needs about 10 GB); figures in `docs/evaluation.md`.

use std::time::Instant;

use distillguard_core::engine::{EngineCheckpoint, EngineConfig};
use distillguard_core::event::{AccountId, ApiEvent, ModelName};
use distillguard_core::time::EventTime;
use distillguard_server::checkpoint::{self, format};
use distillguard_server::metrics::Metrics;
use distillguard_server::pipeline::{DiscardSink, Pipeline, PipelineConfig, DEFAULT_CHUNK_BYTES};
use distillguard_store::{FindingWriter, Store, WriterConfig};

const WORDS: [&str; 24] = [
    "orbital", "lattice", "enzyme", "tariff", "sonnet", "glacier", "protocol", "mortgage",
    "neuron", "harvest", "quantum", "ledger", "voltage", "pigment", "syntax", "monsoon",
    "catalyst", "verdict", "isotope", "cadence", "fresco", "turbine", "dialect", "mantle",
];

fn events(accounts: usize) -> Vec<ApiEvent> {
    let start = 1_793_000_000_000i64;
    let day = 86_400_000i64;
    let mut events = Vec::with_capacity(accounts * 4);
    for i in 0..accounts {
        for k in 0..4 {
            let at = start + ((i as i64 * 7_919 + k * 3_600_000) % day);
            let mut event = ApiEvent::new(
                EventTime::from_epoch_ms(at).unwrap(),
                AccountId::parse(format!("acct-{i:08}")).unwrap(),
                ModelName::parse(if k % 2 == 0 { "gpt-4o" } else { "gpt-4o-mini" }).unwrap(),
            );
            let (a, b) = (
                WORDS[(i + k as usize) % 24],
                WORDS[(i / 24 + k as usize * 5) % 24],
            );
            event.prompt = Some(format!(
                "Explain how {a} relates to {b} for case {i}-{k}, with an example and a short summary."
            ));
            event.request_id = Some(format!("r-{i}-{k}"));
            event.user_agent = Some(format!("client/{}.{}", i % 7, k).into());
            event.client_ip = Some(
                format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
                    .parse()
                    .unwrap(),
            );
            event.usage.prompt_tokens = Some(40);
            event.usage.completion_tokens = Some(300);
            events.push(event);
        }
    }
    events.sort_by_key(|e| e.timestamp);
    events
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let accounts: usize = value("--accounts").map_or(100_000, |v| v.parse().unwrap());
    let database_url = value("--database-url");
    let formats = args.iter().any(|a| a == "--formats");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(accounts, database_url, formats));
}

async fn run(accounts: usize, database_url: Option<String>, formats: bool) {
    let config = PipelineConfig {
        engine: EngineConfig {
            max_tracked_accounts: accounts.max(1_000_000),
            ..EngineConfig::default()
        },
        shards: 2,
        queue_capacity: 262_144,
        dedup_window_ms: 600_000,
        dedup_capacity: 1_000_000,
        checkpoint_chunk_bytes: DEFAULT_CHUNK_BYTES,
    };
    let traffic = events(accounts);
    let pipeline = Pipeline::start(config.clone(), Metrics::new(), Box::new(DiscardSink));
    let fed = Instant::now();
    for batch in traffic.chunks(10_000) {
        pipeline.submit(batch.to_vec()).await.unwrap();
    }
    let count = traffic.len();
    drop(traffic);
    // A checkpoint is a cut behind everything queued: taking one waits for the feed to drain.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(database_url.as_deref(), dir.path())
        .await
        .unwrap();
    let writer = FindingWriter::spawn(store.clone(), WriterConfig::default());
    let warm = checkpoint::save(&store, &pipeline, &writer).await.unwrap();
    println!(
        "accounts {accounts}: fed {count} events in {:.1} s; first checkpoint {:.0} MiB",
        fed.elapsed().as_secs_f64(),
        warm as f64 / 1048576.0
    );
    let rss_before = status_kb("VmRSS:");
    // Reset the peak (VmHWM) so that it shows the checkpoint alone.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let bytes = checkpoint::save(&store, &pipeline, &writer).await.unwrap();
    let write_secs = started.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:");
    let manifest = store
        .latest_checkpoint(checkpoint::ENGINE_KEY)
        .await
        .unwrap()
        .unwrap();
    println!(
        "checkpoint: {:.1} s, {:.0} MiB in {} chunks ({:.0} bytes per account); RSS {:.0} MiB before, peak {:.0} MiB during (+{:.1}%)",
        write_secs,
        bytes as f64 / 1048576.0,
        manifest.chunk_count,
        bytes as f64 / accounts as f64,
        mib(rss_before),
        mib(peak),
        100.0 * (peak as f64 - rss_before as f64) / rss_before as f64
    );
    let keep = pipeline.clone();
    tokio::task::spawn_blocking(move || keep.shutdown_blocking())
        .await
        .unwrap();
    drop(pipeline);

    let started = Instant::now();
    let snapshot = checkpoint::load(&store).await.unwrap().unwrap();
    let loaded = started.elapsed().as_secs_f64();
    let tracked: usize = snapshot
        .engine
        .shards
        .iter()
        .map(|s| s.accounts.len())
        .sum();
    // The format comparison needs its own copy; the restore timing does not include it.
    let kept = formats.then(|| snapshot.clone());
    let started_restore = Instant::now();
    let restored = Pipeline::start_from(
        config.clone(),
        Metrics::new(),
        Box::new(DiscardSink),
        Some(snapshot),
    );
    let into_state = started_restore.elapsed().as_secs_f64();
    println!(
        "restore: {:.1} s ({loaded:.1} s reading and decoding, {into_state:.1} s into the shards and scorer), {tracked} accounts",
        loaded + into_state,
    );
    tokio::task::spawn_blocking(move || restored.shutdown_blocking())
        .await
        .unwrap();
    if let Some(snapshot) = kept {
        compare_formats(&snapshot);
    }
    store.close().await;
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

/// The same state in the three self-describing formats considered.
fn compare_formats(snapshot: &format::Snapshot) {
    let engine: &EngineCheckpoint = &snapshot.engine;
    let (json, json_enc) = timed(|| serde_json::to_vec(engine).unwrap());
    let (_, json_dec) = timed(|| serde_json::from_slice::<EngineCheckpoint>(&json).unwrap());
    let ((meta, chunks), mp_enc) = timed(|| format::encode_snapshot(snapshot, DEFAULT_CHUNK_BYTES));
    let (_, mp_dec) = timed(|| format::decode_snapshot(&meta, &chunks).unwrap());
    let mp_bytes: usize = chunks.iter().map(Vec::len).sum::<usize>() + meta.len();
    let (cbor, cbor_enc) = timed(|| {
        let mut out = Vec::new();
        ciborium::into_writer(engine, &mut out).unwrap();
        out
    });
    let (_, cbor_dec) = timed(|| ciborium::from_reader::<EngineCheckpoint, _>(&cbor[..]).unwrap());
    println!("format                       bytes      encode s  decode s");
    for (name, bytes, enc, dec) in [
        ("JSON (format 1)", json.len(), json_enc, json_dec),
        ("MessagePack, named (fmt 2)", mp_bytes, mp_enc, mp_dec),
        ("CBOR (ciborium)", cbor.len(), cbor_enc, cbor_dec),
    ] {
        println!(
            "{name:<28} {:>9.1} MiB {enc:>8.2} {dec:>9.2}",
            bytes as f64 / 1048576.0
        );
    }
}
