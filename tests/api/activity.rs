//! A finding's activity stays current: `events`, `last_seen` and the volume evidence follow the
//! account at every tick, although its score (kept at its worst moment) no longer moves, and the
//! `since` filter uses the current `last_seen`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

/// The analyst's `200` reply to `path` (this file's reads all expect one).
async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = analyst_get(app, path).await;
    assert_eq!(status, 200, "{path}");
    body
}

fn rfc3339(epoch_ms: i64) -> String {
    distillguard_core::time::EventTime::from_epoch_ms(epoch_ms)
        .unwrap()
        .to_rfc3339()
}

/// Polls the account until `done` holds, returning the last body either way.
async fn account_until(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut body = Value::Null;
    for _ in 0..300 {
        let response = app
            .client
            .get(app.url(&format!("/v1/accounts/{id}")))
            .bearer_auth(ANALYST_TOKEN)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            body = response.json().await.unwrap();
            if done(&body) {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    body
}

fn requests_24h(account: &Value) -> Option<f64> {
    account["signals"]
        .as_array()?
        .iter()
        .find(|s| s["detector"] == "volume")?["evidence"]["measurements"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == "requests" && m["window"] == "24h")?["value"]
        .as_f64()
}

#[tokio::test]
async fn events_last_seen_and_volume_evidence_follow_the_account_after_it_is_flagged() {
    let app = spawn_app().await;
    let burst = harvester_events("steady", T0, 300);
    let burst_end = burst
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .max()
        .unwrap();
    app.post_events(ndjson(&burst), "application/x-ndjson")
        .await;
    // The burst may be scored over several ticks (flagged part-way, its score rising after), so
    // the check below is that the score never falls, not that it stays where it was flagged.
    let flagged = account_until(&app, "steady", |a| a["summary"]["flagged"] == true).await;
    assert_eq!(flagged["summary"]["flagged"], true, "{flagged}");
    let score = flagged["summary"]["score"].as_f64().unwrap();

    // Four more hours of a slow trickle: 24 requests, one every 10 minutes. Nothing about the
    // judgement changes (the score keeps its peak), only the account's activity.
    let trickle_start = burst_end + 2 * 3_600_000;
    let mut trickle = harvester_events("steady", trickle_start, 24);
    for (i, event) in trickle.iter_mut().enumerate() {
        event["timestamp"] = Value::from(trickle_start + i as i64 * 600_000);
        event["request_id"] = Value::from(format!("trickle-{i}"));
    }
    let last = trickle_start + 23 * 600_000;
    // Another account an hour later moves the watermark past the trickle's last tick.
    let clock = event("clock", last + 3_600_000, "clock-1");
    trickle.push(clock);
    let response = app
        .post_events(ndjson(&trickle), "application/x-ndjson")
        .await;
    assert_eq!(response.status().as_u16(), 202);

    let current = account_until(&app, "steady", |a| a["events"] == 324).await;
    assert_eq!(current["events"], 324, "events stay current: {current}");
    assert_eq!(
        current["summary"]["last_seen"],
        rfc3339(last),
        "last_seen is the trickle's last request"
    );
    assert!(
        current["summary"]["score"].as_f64().unwrap() >= score,
        "the score keeps the finding's worst moment: {} after {score}",
        current["summary"]["score"]
    );
    let day = requests_24h(&current).expect("volume evidence has a 24h request count");
    assert_eq!(day, 324.0, "the volume evidence counts the trickle too");

    // `since` filters on the current last_seen: the account is active after the burst.
    let since = rfc3339(trickle_start);
    let list = get(&app, &format!("/v1/accounts?since={since}")).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["subject"]["id"].as_str())
        .collect();
    assert!(ids.contains(&"steady"), "since={since} gave {ids:?}");
    let until = rfc3339(burst_end + 3_600_000);
    let list = get(&app, &format!("/v1/accounts?until={until}")).await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["subject"]["id"] != "steady"),
        "until={until} keeps out an account seen after it"
    );
    app.stop().await;
}
