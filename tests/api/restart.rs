//! Restarts keep detector state: windows, baselines and open findings survive a stop.

use serde_json::Value;

use crate::helpers::*;

/// The account's review record, once the pipeline has had time to score it.
async fn flagged(app: &TestApp, account: &str) -> bool {
    let mut last = false;
    for _ in 0..80 {
        let response = app
            .client
            .get(app.url(&format!("/v1/accounts/{account}")))
            .bearer_auth(ANALYST_TOKEN)
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            let body: Value = response.json().await.unwrap();
            last = body["summary"]["flagged"] == Value::Bool(true);
            if last {
                return true;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    last
}

/// An unrelated request an hour later: it moves the watermark past the campaign, so the
/// campaign's last window is scored.
fn later_event(after_ms: i64) -> Value {
    event("someone-else", after_ms + 3_600_000, "clock-tick")
}

/// A harvest is judged systematic only when it persists across several hours of the day (a
/// single sitting is not), so the campaign's requests are spread 25 minutes apart.
fn spread_over_hours(mut events: Vec<Value>) -> Vec<Value> {
    for (i, event) in events.iter_mut().enumerate() {
        event["timestamp"] = Value::from(T0 + i as i64 * 25 * 60_000);
    }
    events
}

#[tokio::test]
async fn a_campaign_split_across_a_restart_is_still_flagged() {
    // Arrange: 16 harvesting requests; 8 alone are not enough to flag the account.
    let campaign = spread_over_hours(harvester_events("split-harvester", T0, 16));
    let (first_half, second_half) = campaign.split_at(8);
    let last_ms = second_half.last().unwrap()["timestamp"].as_i64().unwrap();
    let settings = test_settings();

    // Act: half, stop, start on the same data directory, the rest.
    let app = spawn_app_with(settings.clone()).await;
    post_accepted(&app, first_half).await;
    assert!(
        !flagged(&app, "split-harvester").await,
        "half a campaign is not flagged"
    );
    app.stop().await;

    let app = spawn_app_with(settings).await;
    post_accepted(&app, second_half).await;
    post_accepted(&app, &[later_event(last_ms)]).await;

    // Assert
    assert!(
        flagged(&app, "split-harvester").await,
        "the whole campaign is flagged"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_the_first_half_the_second_half_alone_is_not_flagged() {
    // The control for the test above: what made the difference was the restored state.
    let campaign = spread_over_hours(harvester_events("split-harvester", T0, 16));
    let (_, second_half) = campaign.split_at(8);
    let last_ms = second_half.last().unwrap()["timestamp"].as_i64().unwrap();
    let app = spawn_app().await;
    post_accepted(&app, second_half).await;
    post_accepted(&app, &[later_event(last_ms)]).await;
    assert!(!flagged(&app, "split-harvester").await);
    app.stop().await;
}

fn pipeline_config(shards: usize) -> distillguard_server::pipeline::PipelineConfig {
    let mut settings = test_settings();
    settings.engine.shards = shards;
    distillguard_server::app::pipeline_config(&settings)
}

#[tokio::test]
async fn resuming_from_a_checkpoint_on_more_shards_gives_the_findings_of_an_unbroken_run() {
    use distillguard_server::metrics::Metrics;
    use distillguard_server::pipeline::{DiscardSink, Pipeline};

    let events = simulated_day();
    let (first, rest) = events.split_at(events.len() / 2);

    let unbroken = Pipeline::start(pipeline_config(2), Metrics::new(), Box::new(DiscardSink));
    unbroken.submit(events.clone()).await.unwrap();
    let expected = tokio::task::spawn_blocking(move || unbroken.finish_blocking())
        .await
        .unwrap()
        .unwrap();

    let before = Pipeline::start(pipeline_config(2), Metrics::new(), Box::new(DiscardSink));
    before.submit(first.to_vec()).await.unwrap();
    let checkpoint = tokio::task::spawn_blocking(move || {
        let checkpoint = before.checkpoint_blocking();
        before.shutdown_blocking();
        checkpoint
    })
    .await
    .unwrap()
    .unwrap();
    // `checkpoint_blocking` has been through the chunked binary format, as the store keeps it.
    let after = Pipeline::start_from(
        pipeline_config(3),
        Metrics::new(),
        Box::new(DiscardSink),
        Some(checkpoint),
    );
    after.submit(rest.to_vec()).await.unwrap();
    let resumed = tokio::task::spawn_blocking(move || after.finish_blocking())
        .await
        .unwrap()
        .unwrap();

    assert!(expected.accounts.iter().filter(|a| a.flagged).count() >= 3);
    assert_eq!(resumed, expected);
}
