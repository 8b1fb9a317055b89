//! The buffered writer: outages delay findings but lose none; shutdown drains.

use std::time::Duration;

use distillguard_store::*;

use crate::support::*;

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

pub async fn a_database_outage_delays_findings_but_loses_none(h: Harness) {
    let config = WriterConfig {
        batch_size: 7,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..Default::default()
    };
    let writer = FindingWriter::spawn(h.store.clone(), config);
    writer.submit((0..10).map(|i| acct(&format!("before-{i}"), 0.8, 1_000)));
    wait_until("the first findings are written", async || {
        writer.stats().written_total == 10
    })
    .await;

    h.begin_outage().await;
    writer.submit((0..40).map(|i| acct(&format!("during-{i}"), 0.8, 2_000)));
    // Re-scores of the same subjects coalesce in the buffer.
    writer.submit((0..40).map(|i| acct(&format!("during-{i}"), 0.9, 3_000)));
    wait_until(
        "the writer holds everything through failed retries",
        async || {
            let stats = writer.stats();
            stats.failures_total >= 2 && stats.buffered == 40 && stats.degraded
        },
    )
    .await;
    assert!(writer.stats().last_error.is_some());
    // Nothing got through: SQLite still reads (WAL), PostgreSQL refuses reads too.
    let read = h.store.get_account("during-0").await;
    assert!(
        matches!(read, Err(StoreError::NotFound(_)))
            || read.as_ref().is_err_and(StoreError::is_transient),
        "{read:?}"
    );

    h.end_outage().await;
    wait_until("the buffer drains", async || {
        writer.stats().buffered == 0 && !writer.stats().degraded
    })
    .await;
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned, 0);
    assert_eq!(writer.stats().dropped_total, 0);

    let all = h
        .store
        .list_accounts(
            &ListFilter::default(),
            &PageRequest {
                limit: 500,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 50);
    let during = h.store.get_account("during-7").await.unwrap();
    assert_eq!(
        (during.summary.score, during.summary.last_seen),
        (0.9, at(3_000))
    );
}

pub async fn shutdown_drains_the_buffer(h: Harness) {
    let observed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&observed);
    let observer: BatchObserver = std::sync::Arc::new(move |batch: BatchReport| {
        assert!(batch.ok && batch.updates <= 3);
        counter.fetch_add(batch.updates, std::sync::atomic::Ordering::SeqCst);
    });
    let config = WriterConfig {
        batch_size: 3,
        ..Default::default()
    };
    let writer = FindingWriter::spawn_observed(h.store.clone(), config, Some(observer));
    writer.submit((0..20).map(|i| acct(&format!("a{i}"), 0.8, 1_000)));
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.written_total, report.abandoned), (20, 0));
    assert_eq!(observed.load(std::sync::atomic::Ordering::SeqCst), 20);
    assert_eq!(h.store.stats().await.unwrap().accounts.total, 20);
}

pub async fn a_full_buffer_drops_and_counts_new_subjects(h: Harness) {
    h.begin_outage().await;
    let writer = FindingWriter::spawn(
        h.store.clone(),
        WriterConfig {
            capacity: 5,
            initial_backoff: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let accepted = writer.submit((0..8).map(|i| acct(&format!("a{i}"), 0.8, 1_000)));
    assert_eq!(accepted, 5);
    assert_eq!(writer.stats().dropped_total, 3);
    h.end_outage().await;
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.written_total, report.abandoned), (5, 0));
}

/// A database trigger that refuses one subject stands for any permanent, per-finding error.
pub async fn a_finding_the_store_refuses_for_good_is_dead_lettered_and_blocks_nothing(h: Harness) {
    h.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON finding WHEN NEW.subject_id = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.subject_id = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON finding FOR EACH ROW EXECUTE FUNCTION poison()",
    )
    .await;
    let writer = FindingWriter::spawn(
        h.store.clone(),
        WriterConfig {
            batch_size: 50,
            initial_backoff: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let mut updates: Vec<_> = (0..30)
        .map(|i| acct(&format!("a{i}"), 0.8, 1_000))
        .collect();
    updates.insert(3, acct("poison", 0.9, 1_000));
    updates.insert(10, acct("nan-score", f64::NAN, 1_000));
    writer.submit(updates);
    let report = writer.shutdown(Duration::from_secs(20)).await;
    assert_eq!(report.abandoned, 0, "nothing is left blocked in the buffer");
    let stats = writer.stats();
    assert_eq!((stats.dead_lettered_total, stats.dropped_total), (2, 0));
    assert_eq!(h.store.stats().await.unwrap().accounts.total, 30);

    let letters = h.store.dead_letters(10).await.unwrap();
    let mut ids: Vec<&str> = letters.iter().map(|l| l.subject_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["nan-score", "poison"]);
    let poison = letters.iter().find(|l| l.subject_id == "poison").unwrap();
    assert_eq!(poison.subject_kind, "account");
    let payload: serde_json::Value = serde_json::from_str(&poison.payload).unwrap();
    assert_eq!(payload["account_id"], "poison", "the whole update is kept");
    let nan = letters
        .iter()
        .find(|l| l.subject_id == "nan-score")
        .unwrap();
    assert!(nan.error.contains("score"), "{}", nan.error);
}
