//! Write-path throughput (findings per second) of `upsert_findings` in batches of 500, the
//! writer's default: first sight of new subjects, and re-scores of existing ones.
//!
//! Run with `cargo bench -p distillguard-store --bench upsert -- --warm-up-time 1 --measurement-time 3`.
//! SQLite uses a temp file; PostgreSQL a fresh database on the server in `DATABASE_URL`
//! (without it the PostgreSQL cases are not run, and the bench says so).

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use distillguard_core::finding::{
    AccountFinding, Evidence, FindingUpdate, Measurement, SamplePrompt, Severity, Signal,
};
use distillguard_core::time::EventTime;
use distillguard_store::{Store, StoreOptions};
use sqlx::{Connection, Executor};

const BATCH: usize = 500;

fn update(id: &str, score: f64, last_seen_ms: i64) -> FindingUpdate {
    let signal = |detector: &str, score: f64| Signal {
        detector: detector.into(),
        score,
        evidence: Evidence {
            summary: format!("{detector} scored {score:.2}"),
            measurements: vec![Measurement {
                name: "requests".into(),
                value: score * 2000.0,
                threshold: Some(2000.0),
                baseline: Some(40.0),
                window: Some("24h".into()),
            }],
        },
    };
    FindingUpdate::Account(AccountFinding {
        activity: None,
        account_id: id.into(),
        score,
        severity: Severity::from_score(score),
        flagged: score >= 0.7,
        cluster_id: None,
        first_flagged_at: None,
        clustered_at: None,
        end_user: None,
        first_seen: EventTime::from_epoch_ms(1_000).unwrap(),
        last_seen: EventTime::from_epoch_ms(last_seen_ms).unwrap(),
        events: 1_000,
        signals: vec![signal("volume", score), signal("coverage", score * 0.8)],
        samples: (0..5)
            .map(|i| SamplePrompt {
                text: "x".repeat(300),
                hash: format!("{id}-{i:02}-0123456789abcdef"),
                at: EventTime::from_epoch_ms(1_000 + i).unwrap(),
            })
            .collect(),
    })
}

fn bench_store(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, store: &Store) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut group = c.benchmark_group(format!("upsert/{name}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("new_subjects", |b| {
        b.iter(|| {
            let base = NEXT.fetch_add(1, Ordering::Relaxed);
            let batch: Vec<_> = (0..BATCH)
                .map(|i| update(&format!("n{base}-{i}"), 0.5, 2_000))
                .collect();
            rt.block_on(store.upsert_findings(&batch)).unwrap()
        })
    });
    let tick = AtomicU64::new(3_000);
    group.bench_function("rescore_existing", |b| {
        b.iter(|| {
            let at = tick.fetch_add(1, Ordering::Relaxed) as i64;
            let score = 0.3 + (at % 7) as f64 * 0.1;
            let batch: Vec<_> = (0..BATCH)
                .map(|i| update(&format!("r-{i}"), score, at))
                .collect();
            rt.block_on(store.upsert_findings(&batch)).unwrap()
        })
    });
    group.finish();
}

fn upsert(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(Store::connect_with(
            None,
            dir.path(),
            StoreOptions::default(),
        ))
        .unwrap();
    bench_store(c, "sqlite", &rt, &sqlite);

    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL not set: PostgreSQL write throughput not measured");
        return;
    };
    let name = format!("dg_bench_{}", std::process::id());
    rt.block_on(async {
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
    });
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let postgres = rt
        .block_on(Store::connect(Some(&format!("{base}/{name}")), dir.path()))
        .unwrap();
    bench_store(c, "postgres", &rt, &postgres);
    rt.block_on(async {
        postgres.close().await;
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        admin
            .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    });
}

criterion_group!(benches, upsert);
criterion_main!(benches);
