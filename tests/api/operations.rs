//! Health, readiness, metrics, and the path from ingest to a finding.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_ready_while_the_pipeline_runs_and_503_once_it_stopped() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["pipeline"], "ok");

    let pipeline = app.pipeline.clone();
    tokio::task::spawn_blocking(move || pipeline.shutdown_blocking())
        .await
        .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let events = ndjson(&[event("a", T0, "r1")]);
    let response = app.post_events(events, "application/x-ndjson").await;
    assert_eq!(
        response.status().as_u16(),
        503,
        "a stopped pipeline takes nothing"
    );
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_build_info_and_route_templates() {
    let app = spawn_app().await;
    app.client.get(app.url("/healthz")).send().await.unwrap();
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE distillguard_events_received_total counter"));
    assert!(text.contains("distillguard_build_info{version="));
    assert!(text.contains("distillguard_queue_capacity 262144"));
    assert!(text.contains(
        "distillguard_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
    ));
    app.stop().await;
}

#[tokio::test]
async fn a_harvesting_account_posted_over_http_becomes_a_flagged_finding() {
    let app = spawn_app().await;
    // The simulator's bulk harvester: diverse, never-repeated prompts around the clock.
    let events = harvester_events("harvester", T0, 1_000);
    for chunk in events.chunks(1_000) {
        let response = app.post_events(ndjson(chunk), "application/x-ndjson").await;
        assert_eq!(response.status().as_u16(), 202);
    }
    let mut flagged = 0.0;
    for _ in 0..200 {
        flagged = 0.0;
        for severity in ["low", "medium", "high", "critical"] {
            flagged += app
                .metric(&format!(
                    "distillguard_findings_total{{severity=\"{severity}\",subject=\"account\"}}"
                ))
                .await;
        }
        if flagged > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(flagged >= 1.0, "the harvester was flagged");
    assert!(app.metric("distillguard_tracked_accounts").await >= 1.0);
    assert!(
        app.metric("distillguard_detection_watermark_timestamp_seconds")
            .await
            > 1.7e9
    );
    app.stop().await;
}
