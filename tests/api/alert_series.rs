//! The series the alert rules (`deploy/prometheus/alerts.yml`) read move as they should when a
//! simulated campaign runs through the app.

use distillguard_sim::{simulate, PromptBook, Scenario, SimError};

use crate::helpers::*;

/// A small labelled day of traffic from the simulator, as NDJSON batches.
fn simulated_batches(batch_events: usize) -> (Vec<String>, i64) {
    let scenario = Scenario {
        seed: 11,
        accounts: 100,
        days: 1,
        ..Scenario::default()
    };
    let mut lines = Vec::new();
    simulate(&scenario, &PromptBook::builtin(), |event| {
        lines.push(serde_json::to_string(event).expect("events serialise"));
        Ok::<(), SimError>(())
    })
    .expect("the scenario simulates");
    let batches = lines
        .chunks(batch_events)
        .map(|chunk| chunk.join("\n"))
        .collect();
    (batches, scenario.start.epoch_ms())
}

async fn sum(app: &TestApp, series: &[&str]) -> f64 {
    let mut total = 0.0;
    for s in series {
        total += app.metric(s).await;
    }
    total
}

#[tokio::test]
async fn a_simulated_campaign_moves_every_series_the_alerts_read() {
    let mut settings = test_settings();
    settings.ingest.queue_capacity = 6_000;
    let app = spawn_app_with(settings).await;
    let (batches, start_ms) = simulated_batches(2_000);

    // BackpressureActive: with the detectors paused the queue fills and ingest answers 429.
    app.pipeline.pause();
    let mut refused = 0;
    let mut accepted = 0u64;
    for batch in &batches[..4] {
        let response = app.post_events(batch.clone(), "application/x-ndjson").await;
        if response.status().as_u16() == 429 {
            refused += 1;
        } else {
            let body: serde_json::Value = response.json().await.unwrap();
            accepted += body["accepted"].as_u64().unwrap();
        }
    }
    app.pipeline.resume();
    assert!(refused >= 1, "the paused pipeline pushed back");
    assert!(
        app.metric("distillguard_backpressure_rejections_total{source=\"canonical\"}")
            .await
            >= 1.0
    );

    // The whole campaign, retrying refused batches as a client would; batches already taken come
    // back as duplicates.
    for batch in &batches {
        loop {
            let response = app.post_events(batch.clone(), "application/x-ndjson").await;
            match response.status().as_u16() {
                202 => {
                    let body: serde_json::Value = response.json().await.unwrap();
                    accepted += body["accepted"].as_u64().unwrap();
                    break;
                }
                429 => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert!(
        accepted > 10_000,
        "the simulated day was accepted ({accepted})"
    );

    // IngestRejectRateHigh reads rejected against accepted.
    let broken = "{\"timestamp\":\"nope\",\"account_id\":\"x\",\"model\":\"m\"}\n{\"model\":\"m\"}";
    app.post_events(broken, "application/x-ndjson").await;
    assert_eq!(
        app.metric("distillguard_events_accepted_total{source=\"canonical\"}")
            .await,
        accepted as f64
    );
    assert_eq!(
        sum(
            &app,
            &[
                "distillguard_events_rejected_total{reason=\"invalid_field\",source=\"canonical\"}",
                "distillguard_events_rejected_total{reason=\"missing_field\",source=\"canonical\"}",
            ]
        )
        .await,
        2.0
    );

    // FlaggedAccountsSpike reads new high/critical account findings; the bulk harvester in the
    // scenario must produce at least one. StoreWriteFailures reads the store's write outcomes.
    let flagged_series = [
        "distillguard_findings_total{severity=\"high\",subject=\"account\"}",
        "distillguard_findings_total{severity=\"critical\",subject=\"account\"}",
    ];
    let mut flagged = 0.0;
    let mut stored = 0.0;
    for _ in 0..400 {
        flagged = sum(&app, &flagged_series).await;
        stored = app
            .metric("distillguard_store_writes_total{outcome=\"ok\"}")
            .await;
        if flagged >= 1.0 && stored >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        flagged >= 1.0,
        "high or critical account findings were counted"
    );
    assert!(stored >= 1.0, "findings were written to the store");
    assert_eq!(
        app.metric("distillguard_store_writes_total{outcome=\"error\"}")
            .await,
        0.0
    );

    // DetectionLagHigh reads the watermark and the lag; the simulated day lies in the past, so
    // the watermark sits inside that day and the lag is large.
    let watermark = app
        .metric("distillguard_detection_watermark_timestamp_seconds")
        .await;
    assert!(
        watermark * 1000.0 > start_ms as f64,
        "watermark {watermark}"
    );
    assert!(
        watermark * 1000.0 < (start_ms + 86_400_000) as f64,
        "watermark {watermark}"
    );
    assert!(app.metric("distillguard_detection_lag_seconds").await > 3_600.0);
    assert!(app.metric("distillguard_tracked_accounts").await >= 50.0);
    app.stop().await;
}
