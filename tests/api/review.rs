//! The review API end to end: events in over HTTP, findings out of the review API, on SQLite (the
//! zero-setup default) and on PostgreSQL (a fresh database per test; needs `DATABASE_URL`).
//! Exhaustive status-code and filter cases run in-process on both backends in
//! `crates/distillguard-server/src/api/review/tests.rs`; these prove the wiring.

use std::time::Duration;

use distillguard_server::config::Secret;
use distillguard_server::Settings;
use serde_json::{json, Value};
use sqlx::{Connection, Executor};

use crate::helpers::*;

/// Ingest → finding → triage → audit, through the running service.
async fn analysts_triage_what_the_pipeline_found(settings: Settings) {
    let app = spawn_app_with(settings).await;
    ingest_busy_account(&app, "harvester", T0).await;
    let account = wait_for_account(&app, "harvester").await;
    assert!(account["summary"]["score"].as_f64().unwrap() > 0.0);
    assert_eq!(account["summary"]["review"]["status"], "open");
    assert!(account["signals"].as_array().is_some_and(|s| !s.is_empty()));
    for sample in account["samples"].as_array().unwrap() {
        assert!(
            sample.get("text").is_none(),
            "prompts are not persisted by default"
        );
    }

    let (status, _) = get(&app, "/v1/accounts", INGEST_TOKEN).await;
    assert_eq!(status, 403, "ingest tokens cannot read findings");
    let (status, list) = get(&app, "/v1/accounts?sort=last_seen&limit=10", ANALYST_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["subject"]["id"], "harvester");

    let version = account["summary"]["review"]["version"].as_i64().unwrap();
    let path = "/v1/accounts/harvester/review";
    let claim = json!({"status": "investigating", "version": version, "assignee": "ana"});
    let (status, review) = send(&app, reqwest::Method::PATCH, path, claim.clone()).await;
    assert_eq!(status, 200, "{review}");
    let (status, _) = send(&app, reqwest::Method::PATCH, path, claim).await;
    assert_eq!(status, 409, "the same version twice is stale");
    let bad =
        json!({"status": "confirmed", "version": version + 1, "close_reason": "benign_positive"});
    let (status, _) = send(&app, reqwest::Method::PATCH, path, bad).await;
    assert_eq!(status, 422);
    // Only the applied change counts: the stale and the contradictory attempts do not.
    let actions =
        |status: &str| format!("distillguard_review_actions_total{{status=\"{status}\"}}");
    assert_eq!(app.metric(&actions("investigating")).await, 1.0);
    assert_eq!(app.metric(&actions("confirmed")).await, 0.0);
    let note = json!({"body": "same payment fingerprint as the March campaign"});
    let (status, _) = send(
        &app,
        reqwest::Method::POST,
        "/v1/accounts/harvester/notes",
        note,
    )
    .await;
    assert_eq!(status, 201);

    let (status, trail) = get(&app, "/v1/accounts/harvester/audit", ANALYST_TOKEN).await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| !a.starts_with("finding."))
        .collect();
    assert_eq!(actions, vec!["review.status_changed", "note.added"]);

    let (status, stats) = get(&app, "/v1/stats", ANALYST_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(stats["accounts"]["by_status"]["investigating"], 1);
    assert!(stats["watermarks"]["detection"].is_string());
    let (status, doc) = get(&app, "/openapi.json", "").await;
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));

    let readyz: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readyz["checks"]["store"], "ok");
    assert!(
        app.metric("distillguard_store_writes_total{outcome=\"ok\"}")
            .await
            >= 1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn analysts_triage_what_the_pipeline_found_on_sqlite() {
    analysts_triage_what_the_pipeline_found(test_settings()).await;
}

#[tokio::test]
async fn analysts_triage_what_the_pipeline_found_on_postgres() {
    let database = PgDatabase::create("review_e2e").await;
    analysts_triage_what_the_pipeline_found(database.settings()).await;
    database.drop().await;
}

#[tokio::test]
async fn serve_without_a_database_keeps_findings_and_review_state_across_restarts() {
    let settings = test_settings();
    assert!(settings.database_url.is_none());
    let app = spawn_app_with(settings.clone()).await;
    ingest_busy_account(&app, "persistent", T0).await;
    // Dismiss the final score: a dismissal of an earlier tick's score would rightly reopen when the
    // last tick (at the latest on shutdown) scores the remaining events higher.
    drain(&app).await;
    let account = wait_for(&app, "/v1/accounts/persistent", |a| {
        a["events"] == BUSY_ACCOUNT_EVENTS
    })
    .await;
    let version = account["summary"]["review"]["version"].as_i64().unwrap();
    let dismiss =
        json!({"status": "dismissed", "version": version, "close_reason": "benign_positive"});
    let (status, _) = send(
        &app,
        reqwest::Method::PATCH,
        "/v1/accounts/persistent/review",
        dismiss,
    )
    .await;
    assert_eq!(status, 200);
    app.stop().await;
    assert!(settings.data_dir.join("distillguard.db").exists());

    let app = spawn_app_with(settings).await;
    let (status, account) = get(&app, "/v1/accounts/persistent", ANALYST_TOKEN).await;
    assert_eq!(status, 200, "the finding survived the restart");
    assert_eq!(account["summary"]["review"]["status"], "dismissed");
    app.stop().await;
}

/// Refuses new connections to `database` and ends the live ones; `false` lets them back in.
async fn set_outage(database: &PgDatabase, down: bool) {
    let mut admin = sqlx::PgConnection::connect(&database.admin_url)
        .await
        .unwrap();
    let allow = if down { "false" } else { "true" };
    admin
        .execute(format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow}", database.name).as_str())
        .await
        .unwrap();
    if down {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&database.name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_database_outage_delays_findings_but_loses_none_and_ingestion_keeps_working() {
    let database = PgDatabase::create("review_outage").await;
    let settings = Settings {
        database_url: Some(Secret::new(database.url())),
        ..test_settings()
    };
    let app = spawn_app_with(settings).await;
    ingest_busy_account(&app, "before", T0).await;
    wait_for_account(&app, "before").await;

    set_outage(&database, true).await;
    // Ingestion is not blocked by the database.
    ingest_busy_account(&app, "during", T0 + 30 * 60_000).await;
    let mut degraded = Value::Null;
    for _ in 0..200 {
        let (status, body) = readyz(&app).await;
        assert_eq!(
            status, 200,
            "a store outage must not take the service out of rotation"
        );
        if body["status"] == "degraded" && body["store"]["buffered_findings"].as_u64() > Some(0) {
            degraded = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        degraded["checks"]["store"], "degraded",
        "readyz never reported the outage"
    );
    let (status, _) = get(&app, "/v1/accounts/during", ANALYST_TOKEN).await;
    assert_eq!(status, 503, "reads say the store is unavailable");

    set_outage(&database, false).await;
    let account = wait_for_account(&app, "during").await;
    assert!(account["summary"]["score"].as_f64().unwrap() > 0.0);
    for _ in 0..200 {
        if readyz(&app).await.1["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = readyz(&app).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"]["dropped_findings"], 0);
    assert!(
        app.metric("distillguard_store_writes_total{outcome=\"error\"}")
            .await
            >= 1.0
    );
    app.stop().await;
    database.drop().await;
}
