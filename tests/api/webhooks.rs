//! Webhooks end to end: a real HTTP receiver on a local port that verifies every signature the
//! way `docs/integrations.md` tells receivers to, and fails its first answers to prove retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use distillguard_server::config::{Secret, WebhookEndpoint, WebhookSettings};
use distillguard_server::Settings;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

const SECRET: &str = "whsec-test-secret-0123456789";

#[derive(Default)]
struct Received {
    /// Every attempt: (signature valid, event id, event type).
    attempts: Vec<(bool, String, String)>,
    /// Answers still to fail with 503 before the receiver accepts.
    fail_next: usize,
}

/// The receiver's check, as documented: recompute HMAC-SHA256 over "<t>.<body>", compare in
/// constant time, refuse timestamps more than five minutes away.
fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp.filter(|t| (now - t).abs() <= 300) else {
        return false;
    };
    signatures.iter().any(|signature| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    })
}

async fn receive(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = headers
        .get("distillguard-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let valid = verify(SECRET, header, &body, chrono_now());
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut received = received.lock().unwrap();
    received.attempts.push((
        valid,
        event["id"].as_str().unwrap_or_default().to_string(),
        event["type"].as_str().unwrap_or_default().to_string(),
    ));
    if received.fail_next > 0 {
        received.fail_next -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if valid {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn start_receiver(fail_first: usize) -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received {
        fail_next: fail_first,
        ..Received::default()
    }));
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn with_webhook(settings: Settings, url: &str, secret: &str, max_attempts: u32) -> Settings {
    Settings {
        webhooks: WebhookSettings {
            endpoints: vec![WebhookEndpoint {
                name: "soc".into(),
                url: url.into(),
                secret: Secret::new(secret),
            }],
            max_attempts,
            initial_backoff_ms: 50,
            poll_interval_ms: 20,
            ..WebhookSettings::default()
        },
        ..settings
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn signed_events_survive_a_failing_receiver(settings: Settings) {
    let (url, received) = start_receiver(3).await;
    let app = spawn_app_with(with_webhook(settings, &url, SECRET, 10)).await;
    ingest_busy_account(&app, "harvester", T0).await;
    let account = wait_for_account(&app, "harvester").await;
    let version = account["summary"]["review"]["version"].as_i64().unwrap();
    let confirm =
        json!({"status": "confirmed", "version": version, "close_reason": "true_positive"});
    let (status, _) = send(
        &app,
        reqwest::Method::PATCH,
        "/v1/accounts/harvester/review",
        confirm,
    )
    .await;
    assert_eq!(status, 200);

    let accepted = |r: &Received| {
        r.attempts
            .iter()
            .skip(3)
            .filter(|(valid, _, _)| *valid)
            .map(|(_, _, kind)| kind.clone())
            .collect::<Vec<_>>()
    };
    wait_until("both events delivered", || {
        let r = received.lock().unwrap();
        accepted(&r).len() == 2
    })
    .await;
    let r = std::mem::take(&mut *received.lock().unwrap());
    assert!(
        r.attempts.iter().all(|(valid, _, _)| *valid),
        "every attempt carries a valid signature"
    );
    // The three refused attempts were retried: five attempts in all, the first one of the
    // flagged event, and each event accepted once.
    assert_eq!(r.attempts.len(), 5, "{:?}", r.attempts);
    assert_eq!(r.attempts[0].2, "finding.flagged");
    let first_id = r.attempts[0].1.clone();
    assert!(
        r.attempts
            .iter()
            .filter(|(_, id, _)| *id == first_id)
            .count()
            >= 2
    );
    let mut kinds = accepted(&r);
    kinds.sort();
    assert_eq!(kinds, vec!["finding.confirmed", "finding.flagged"]);
    assert_eq!(
        app.metric("distillguard_webhook_deliveries_total{endpoint=\"soc\",outcome=\"failed\"}")
            .await,
        3.0
    );
    assert_eq!(
        app.metric("distillguard_webhook_deliveries_total{endpoint=\"soc\",outcome=\"delivered\"}")
            .await,
        2.0
    );
    app.stop().await;
}

#[tokio::test]
async fn signed_events_survive_a_failing_receiver_on_sqlite() {
    signed_events_survive_a_failing_receiver(test_settings()).await;
}

#[tokio::test]
async fn signed_events_survive_a_failing_receiver_on_postgres() {
    let database = PgDatabase::create("webhooks_e2e").await;
    signed_events_survive_a_failing_receiver(database.settings()).await;
    database.drop().await;
}

#[tokio::test]
async fn a_receiver_that_never_accepts_gets_the_event_dead_lettered() {
    // The receiver checks with another secret: every attempt is refused with 401.
    let (url, received) = start_receiver(0).await;
    let app = spawn_app_with(with_webhook(
        test_settings(),
        &url,
        "a-different-secret-0123456789",
        3,
    ))
    .await;
    ingest_busy_account(&app, "harvester", T0).await;
    wait_for_account(&app, "harvester").await;
    wait_until("three attempts", || {
        received.lock().unwrap().attempts.len() >= 3
    })
    .await;
    let dead = "distillguard_webhook_deliveries_total{endpoint=\"soc\",outcome=\"dead_lettered\"}";
    for _ in 0..100 {
        if app.metric(dead).await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.metric(dead).await, 1.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received.lock().unwrap().attempts.len(),
        3,
        "no attempt after the last one"
    );
    assert!(received
        .lock()
        .unwrap()
        .attempts
        .iter()
        .all(|(valid, _, _)| !valid));
    let (status, _) = get(&app, "/v1/stats", ANALYST_TOKEN).await;
    assert_eq!(status, 200);

    // The operator finds it in the dead-letter API and sends it again: three more attempts.
    let path = "/v1/webhooks/dead-letters";
    assert_eq!(get(&app, path, ANALYST_TOKEN).await.0, 403, "admins only");
    let (status, letters) = get(&app, path, ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{letters}");
    let letter = &letters["items"][0];
    assert_eq!(letters["items"].as_array().unwrap().len(), 1, "{letters}");
    assert_eq!(
        (
            &letter["endpoint"],
            &letter["event_type"],
            &letter["attempts"]
        ),
        (&json!("soc"), &json!("finding.flagged"), &json!(3))
    );
    assert!(
        letter["last_error"].as_str().unwrap().contains("401"),
        "{letter}"
    );
    let retry = |body: Value| {
        app.client
            .post(app.url("/v1/webhooks/dead-letters/retry"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let event_id = letter["event_id"].clone();
    let response = retry(json!({"event_id": event_id, "endpoint": "soc"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(get(&app, path, ADMIN_TOKEN).await.1["items"], json!([]));
    wait_until("three more attempts", || {
        received.lock().unwrap().attempts.len() >= 6
    })
    .await;
    for _ in 0..100 {
        if app.metric(dead).await >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.metric(dead).await, 2.0, "dead-lettered again");
    let again = retry(json!({"event_id": event_id, "endpoint": "elsewhere"}))
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
    app.stop().await;
}

#[tokio::test]
async fn the_delivery_client_speaks_tls() {
    // A TLS handshake against a plain listener that closes at once: the error is the
    // connection's, not "scheme is not http" (a client built without TLS refuses https URLs).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let client = distillguard_server::webhooks::http_client(&WebhookSettings::default()).unwrap();
    let error = client
        .post(format!("https://127.0.0.1:{port}/hooks"))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    let chain = format!("{error:?}");
    assert!(!error.is_builder(), "{chain}");
    assert!(!chain.contains("scheme is not http"), "{chain}");
}
