//! `POST /v1/events`: framing, per-record errors, limits, duplicates, backpressure.

use serde_json::{json, Value};

use crate::helpers::*;

async fn reply(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON reply"))
}

#[tokio::test]
async fn a_single_json_object_is_accepted() {
    let app = spawn_app().await;
    let (status, body) = reply(
        app.post_events(event("a", T0, "r1").to_string(), "application/json")
            .await,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected_count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_json_array_is_accepted_record_by_record() {
    let app = spawn_app().await;
    let batch = json!([
        event("a", T0, "r1"),
        event("b", T0 + 1, "r2"),
        event("c", T0 + 2, "r3")
    ]);
    let (status, body) = reply(app.post_events(batch.to_string(), "application/json").await).await;
    assert_eq!(status, 202);
    assert_eq!(body["received"], 3);
    assert_eq!(body["accepted"], 3);
    app.stop().await;
}

#[tokio::test]
async fn ndjson_is_accepted_and_counted_in_metrics() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..5)
        .map(|i| event("a", T0 + i, &format!("r{i}")))
        .collect();
    let (status, body) = reply(
        app.post_events(ndjson(&events), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 5);
    assert_eq!(
        app.metric("distillguard_events_received_total{source=\"canonical\"}")
            .await,
        5.0
    );
    assert_eq!(
        app.metric("distillguard_events_accepted_total{source=\"canonical\"}")
            .await,
        5.0
    );
    app.stop().await;
}

#[tokio::test]
async fn ndjson_labelled_as_json_is_recognised_by_its_content() {
    let app = spawn_app().await;
    let events = [event("a", T0, "r1"), event("a", T0 + 1, "r2")];
    let (status, body) = reply(app.post_events(ndjson(&events), "application/json").await).await;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 2);
    app.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_inflated() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..3)
        .map(|i| event("a", T0 + i, &format!("r{i}")))
        .collect();
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(ndjson(&events).as_bytes()))
        .send()
        .await
        .unwrap();
    let (status, body) = reply(response).await;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 3);
    app.stop().await;
}

#[tokio::test]
async fn a_mixed_batch_keeps_good_records_and_reports_bad_ones_by_index_and_field() {
    let app = spawn_app().await;
    let body = [
        event("a", T0, "r1").to_string(),
        json!({"timestamp": T0, "model": "gpt-4o"}).to_string(),
        json!({"timestamp": "not a time", "account_id": "a", "model": "m"}).to_string(),
        "{broken".to_string(),
        event("b", T0, "r5").to_string(),
    ]
    .join("\n");
    let (status, reply) = reply(app.post_events(body, "application/x-ndjson").await).await;
    assert_eq!(status, 202);
    assert_eq!(reply["received"], 5);
    assert_eq!(reply["accepted"], 2);
    assert_eq!(reply["rejected_count"], 3);
    let rejected = reply["rejected"].as_array().unwrap();
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["line"], 2);
    assert_eq!(rejected[0]["field"], "account_id");
    assert_eq!(rejected[0]["reason"], "missing_field");
    assert_eq!(rejected[1]["field"], "timestamp");
    assert_eq!(rejected[1]["reason"], "invalid_field");
    assert_eq!(rejected[2]["line"], 4);
    assert_eq!(rejected[2]["reason"], "malformed_json");
    assert_eq!(
        app.metric(
            "distillguard_events_rejected_total{reason=\"missing_field\",source=\"canonical\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_cannot_be_framed_is_400() {
    let app = spawn_app().await;
    let (status, body) = reply(
        app.post_events("this is not json at all", "application/json")
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, _) = reply(app.post_events("", "application/json").await).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn bodies_over_the_size_limit_are_413() {
    let mut settings = test_settings();
    settings.ingest.max_body_bytes = 4 * 1024;
    let app = spawn_app_with(settings).await;
    let events: Vec<Value> = (0..100)
        .map(|i| event("a", T0 + i, &format!("r{i}")))
        .collect();
    let (status, body) = reply(
        app.post_events(ndjson(&events), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");
    app.stop().await;
}

#[tokio::test]
async fn a_gzip_bomb_is_413_without_inflating_it_all() {
    let mut settings = test_settings();
    settings.ingest.max_body_bytes = 1024 * 1024;
    let app = spawn_app_with(settings).await;
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    assert!(
        bomb.len() < 1024 * 1024,
        "the bomb itself fits under the limit"
    );
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    app.stop().await;
}

#[tokio::test]
async fn other_media_types_are_415() {
    let app = spawn_app().await;
    let (status, body) = reply(
        app.post_events(event("a", T0, "r1").to_string(), "text/html")
            .await,
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    app.stop().await;
}

#[tokio::test]
async fn a_retried_request_id_is_acknowledged_but_counted_once() {
    let app = spawn_app().await;
    let events = [event("a", T0, "same-id")];
    let (_, first) = reply(
        app.post_events(ndjson(&events), "application/x-ndjson")
            .await,
    )
    .await;
    let (status, second) = reply(
        app.post_events(ndjson(&events), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(first["accepted"], 1);
    assert_eq!(status, 202);
    assert_eq!(second["accepted"], 0);
    assert_eq!(second["duplicates"], 1);
    assert_eq!(
        app.metric("distillguard_events_accepted_total{source=\"canonical\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("distillguard_events_duplicate_total{source=\"canonical\"}")
            .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_accepts_nothing_from_that_request() {
    let mut settings = test_settings();
    settings.ingest.queue_capacity = 5;
    let app = spawn_app_with(settings).await;
    app.pipeline.pause();
    let first: Vec<Value> = (0..5)
        .map(|i| event("a", T0 + i, &format!("r{i}")))
        .collect();
    let (status, _) = reply(
        app.post_events(ndjson(&first), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(status, 202, "the first batch fills the queue exactly");

    let second: Vec<Value> = (5..7)
        .map(|i| event("a", T0 + i, &format!("r{i}")))
        .collect();
    let response = app
        .post_events(ndjson(&second), "application/x-ndjson")
        .await;
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        app.metric("distillguard_backpressure_rejections_total{source=\"canonical\"}")
            .await,
        1.0
    );
    assert_eq!(app.metric("distillguard_queue_depth").await, 5.0);

    app.pipeline.resume();
    let mut drained = false;
    for _ in 0..200 {
        if app.metric("distillguard_queue_depth").await == 0.0 {
            drained = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(drained, "the queue drains once the pipeline resumes");
    // The retry is not mistaken for a duplicate: nothing of the refused request was remembered.
    let (status, retry) = reply(
        app.post_events(ndjson(&second), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(retry["accepted"], 2);
    assert_eq!(retry["duplicates"], 0);
    assert_eq!(
        app.metric("distillguard_events_accepted_total{source=\"canonical\"}")
            .await,
        7.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_larger_than_the_whole_queue_is_413_not_an_endless_429() {
    let mut settings = test_settings();
    settings.ingest.queue_capacity = 3;
    let app = spawn_app_with(settings).await;
    let events: Vec<Value> = (0..4)
        .map(|i| event("a", T0 + i, &format!("r{i}")))
        .collect();
    let (status, _) = reply(
        app.post_events(ndjson(&events), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(status, 413);
    app.stop().await;
}

#[tokio::test]
async fn records_dated_ahead_of_the_wall_clock_or_behind_the_watermark_are_refused_and_reported() {
    let app = spawn_app().await;
    let warmup: Vec<Value> = (0..5)
        .map(|i| event(&format!("w{i}"), T0 + 3_600_000 + i, &format!("w{i}")))
        .collect();
    let (status, _) = reply(
        app.post_events(ndjson(&warmup), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(status, 202);
    for _ in 0..200 {
        if app
            .metric("distillguard_detection_watermark_timestamp_seconds")
            .await
            > 0.0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let tomorrow = chrono_now_ms() + 86_400_000;
    let batch = vec![
        event("a", tomorrow, "future"),
        event("a", T0, "late"),
        event("a", T0 + 3_600_000 + 10, "fine"),
    ];
    let (status, body) = reply(
        app.post_events(ndjson(&batch), "application/x-ndjson")
            .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["late"], 1, "{body}");
    assert_eq!(body["rejected_count"], 2, "{body}");
    assert_eq!(body["rejected"][0]["index"], 0);
    assert_eq!(body["rejected"][0]["reason"], "future_timestamp");
    assert_eq!(body["rejected"][0]["field"], "timestamp");
    assert_eq!(body["rejected"][1]["index"], 1);
    assert_eq!(body["rejected"][1]["reason"], "late");
    assert_eq!(
        app.metric(
            "distillguard_events_rejected_total{reason=\"future_timestamp\",source=\"canonical\"}"
        )
        .await,
        1.0
    );
    app.stop().await;
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
