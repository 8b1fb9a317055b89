//! The decisions feed end to end: a gateway's `enforcer` token follows `GET /v1/decisions` while
//! analysts confirm and dismiss, on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use distillguard_server::Settings;
use serde_json::{json, Value};

use crate::helpers::*;

async fn close(app: &TestApp, account: &str, status: &str, reason: &str) {
    let (_, body) = get(app, &format!("/v1/accounts/{account}"), ANALYST_TOKEN).await;
    let version = body["summary"]["review"]["version"].as_i64().unwrap();
    let path = format!("/v1/accounts/{account}/review");
    let mut changes = Vec::new();
    if body["summary"]["review"]["status"] != "open" {
        changes.push(json!({"status": "open"}));
    }
    changes.push(json!({"status": status, "close_reason": reason}));
    for (version, mut change) in (version..).zip(changes) {
        change["version"] = version.into();
        let (code, reply) = send(app, reqwest::Method::PATCH, &path, change).await;
        assert_eq!(code, 200, "{reply}");
    }
}

fn values(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| d["value"].as_str().unwrap())
        .collect()
}

async fn a_bouncer_follows_confirmations_and_dismissals(settings: Settings) {
    let app = spawn_app_with(settings).await;
    ingest_busy_account(&app, "harvester", T0).await;
    wait_for_account(&app, "harvester").await;

    let (status, start) = get(&app, "/v1/decisions", ENFORCER_TOKEN).await;
    assert_eq!(status, 200, "{start}");
    assert_eq!(
        start["new"],
        json!([]),
        "an unreviewed flag decides nothing"
    );
    let cursor = start["cursor"].as_str().unwrap().to_string();

    // The bouncer waits on the stream; the analyst confirms meanwhile.
    let poll = {
        let client = app.client.clone();
        let url = app.url(&format!(
            "/v1/decisions?since={cursor}&stream=true&timeout=20"
        ));
        tokio::spawn(async move {
            let started = Instant::now();
            let reply: Value = client
                .get(url)
                .bearer_auth(ENFORCER_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    close(&app, "harvester", "confirmed", "true_positive").await;
    let (changes, waited) = poll.await.unwrap();
    assert!(
        waited < Duration::from_secs(15),
        "the long poll answered on the change"
    );
    assert_eq!(values(&changes["new"]), vec!["harvester"], "{changes}");
    let decision = &changes["new"][0];
    assert_eq!(decision["scope"], "account");
    assert_eq!(decision["action"], "block");
    assert_eq!(decision["origin"], "confirmed");
    assert_eq!(decision["finding"]["url"], "/v1/accounts/harvester");
    assert!(decision["expires_at"].is_null());
    let cursor = changes["cursor"].as_str().unwrap().to_string();

    // Without `stream`, an empty page answers at once with the same cursor.
    let (_, idle) = get(
        &app,
        &format!("/v1/decisions?since={cursor}"),
        ENFORCER_TOKEN,
    )
    .await;
    assert_eq!(
        (idle["new"].clone(), idle["cursor"].as_str()),
        (json!([]), Some(cursor.as_str()))
    );

    close(&app, "harvester", "dismissed", "false_positive").await;
    let (_, changes) = get(
        &app,
        &format!("/v1/decisions?since={cursor}"),
        ENFORCER_TOKEN,
    )
    .await;
    assert_eq!(values(&changes["deleted"]), vec!["harvester"]);
    assert_eq!(changes["deleted"][0]["id"], decision["id"]);
    let (_, current) = get(&app, "/v1/decisions?startup=true", ANALYST_TOKEN).await;
    assert_eq!(current["new"], json!([]));

    // The enforcer reads decisions and nothing else; other roles cannot pose as one.
    for path in [
        "/v1/accounts",
        "/v1/accounts/harvester",
        "/v1/allowlist",
        "/v1/stats",
    ] {
        let (status, _) = get(&app, path, ENFORCER_TOKEN).await;
        assert_eq!(status, 403, "{path}");
    }
    let status = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(ENFORCER_TOKEN)
        .header("content-type", "application/json")
        .body(event("x", T0, "r-x").to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
    let (status, _) = get(&app, "/v1/decisions", INGEST_TOKEN).await;
    assert_eq!(status, 403);
    let (status, _) = get(&app, "/v1/decisions", "not-a-token-at-all").await;
    assert_eq!(status, 401);
    let (status, error) = get(&app, "/v1/decisions?since=soon", ENFORCER_TOKEN).await;
    assert_eq!(status, 400);
    assert!(error.to_string().contains("since"), "{error}");
    app.stop().await;
}

#[tokio::test]
async fn a_bouncer_follows_confirmations_and_dismissals_on_sqlite() {
    a_bouncer_follows_confirmations_and_dismissals(test_settings()).await;
}

#[tokio::test]
async fn a_bouncer_follows_confirmations_and_dismissals_on_postgres() {
    let database = PgDatabase::create("decisions_e2e").await;
    a_bouncer_follows_confirmations_and_dismissals(database.settings()).await;
    database.drop().await;
}

async fn unreviewed_flags_decide_when_the_operator_turns_it_on(settings: Settings) {
    let mut settings = settings;
    settings.decisions.scope = distillguard_store::DecisionScope::EndUser;
    settings.decisions.flagged.enabled = true;
    settings.decisions.flagged.min_severity = distillguard_core::finding::Severity::Low;
    let app = spawn_app_with(settings).await;
    ingest_busy_account(&app, "reseller-user-7", T0).await;
    wait_for_account(&app, "reseller-user-7").await;
    let mut current = Value::Null;
    for _ in 0..100 {
        current = get(&app, "/v1/decisions", ENFORCER_TOKEN).await.1;
        if !current["new"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        values(&current["new"]),
        vec!["reseller-user-7"],
        "{current}"
    );
    let decision = &current["new"][0];
    assert_eq!(
        (&decision["scope"], &decision["action"], &decision["origin"]),
        (&json!("end_user"), &json!("throttle"), &json!("flagged"))
    );
    assert!(decision["expires_at"].is_string(), "flag decisions expire");

    // Allowlisting removes it: the stream reports it deleted.
    let cursor = current["cursor"].as_str().unwrap();
    let entry = json!({"kind": "account", "id": "reseller-user-7", "reason": "our eval lab"});
    let (status, _) = send(&app, reqwest::Method::POST, "/v1/allowlist", entry).await;
    assert_eq!(status, 201);
    let (_, changes) = get(
        &app,
        &format!("/v1/decisions?since={cursor}"),
        ENFORCER_TOKEN,
    )
    .await;
    assert_eq!(values(&changes["deleted"]), vec!["reseller-user-7"]);
    app.stop().await;
}

#[tokio::test]
async fn unreviewed_flags_decide_when_the_operator_turns_it_on_on_sqlite() {
    unreviewed_flags_decide_when_the_operator_turns_it_on(test_settings()).await;
}

#[tokio::test]
async fn unreviewed_flags_decide_when_the_operator_turns_it_on_on_postgres() {
    let database = PgDatabase::create("decisions_flags").await;
    unreviewed_flags_decide_when_the_operator_turns_it_on(database.settings()).await;
    database.drop().await;
}

#[tokio::test]
async fn a_shutdown_answers_open_long_polls_instead_of_waiting_for_them() {
    let app = spawn_app().await;
    let (_, start) = get(&app, "/v1/decisions", ENFORCER_TOKEN).await;
    let cursor = start["cursor"].as_str().unwrap().to_string();
    let poll = app
        .client
        .get(app.url(&format!(
            "/v1/decisions?since={cursor}&stream=true&timeout=60"
        )))
        .bearer_auth(ENFORCER_TOKEN)
        .send();
    let poll = tokio::spawn(poll);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "the drain waited {:?} for a 60 s long poll",
        stopping.elapsed()
    );
    let reply = poll.await.unwrap().unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let page: Value = reply.json().await.unwrap();
    assert_eq!(page["new"], json!([]));
    assert_eq!(page["cursor"].as_str(), Some(cursor.as_str()));
}
