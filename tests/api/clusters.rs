//! Hydra clusters end to end: a simulated day with a hydra campaign in over HTTP, the cluster it
//! forms out of the review API, with its links, its members and the members' findings, on SQLite
//! and on PostgreSQL (the cluster tables are written by backend-specific SQL).

use std::collections::BTreeSet;
use std::time::Duration;

use distillguard_server::config::Secret;
use distillguard_server::Settings;
use serde_json::Value;

use crate::helpers::*;

/// Hydra day → linked accounts → one flagged cluster → its members flagged with it.
async fn a_hydra_campaign_is_served_as_one_flagged_cluster(settings: Settings) {
    // Arrange: a day of 100 accounts, ten of them one hydra campaign.
    let (events, hydra) = simulated_hydra_day();
    let app = spawn_app_with(settings).await;

    // Act
    ingest_and_drain(&app, &events).await;
    let first = wait_for(&app, &format!("/v1/accounts/{}", hydra[0]), |a| {
        a["summary"]["cluster_id"].is_string()
    })
    .await;
    let cluster_id = first["summary"]["cluster_id"].as_str().unwrap().to_owned();
    let cluster = wait_for(&app, &format!("/v1/clusters/{cluster_id}"), |c| {
        c["summary"]["flagged"] == true
            && c["members"].as_array().map(Vec::len) >= Some(hydra.len())
    })
    .await;

    // Assert: the list shows the cluster as flagged, with every hydra account in it.
    let (status, list) = analyst_get(&app, "/v1/clusters?flagged=true&limit=500").await;
    assert_eq!(status, 200);
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["subject"]["id"] == cluster_id.as_str())
        .unwrap_or_else(|| panic!("{cluster_id} is not in the flagged list: {list}"));
    assert_eq!(listed["subject"]["kind"], "cluster");
    assert!(cluster_id.starts_with("cl-"), "{cluster_id}");
    assert_eq!(listed["flagged"], true);
    assert!(listed["score"].as_f64().unwrap() >= 0.7, "{listed}");
    assert!(listed["member_count"].as_u64().unwrap() >= hydra.len() as u64);
    assert!(listed["first_flagged_at"].is_string());

    // The detail names the members and the evidence that links them.
    let members: BTreeSet<&str> = cluster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["account_id"].as_str().unwrap())
        .collect();
    for account in &hydra {
        assert!(members.contains(account.as_str()), "{account} is missing");
    }
    assert_eq!(
        cluster["metrics"]["members"].as_u64(),
        Some(members.len() as u64)
    );
    assert!(cluster["metrics"]["flagged_members"].as_u64() >= Some(hydra.len() as u64));
    let links = cluster["links"].as_array().unwrap();
    let kinds: BTreeSet<&str> = links.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains("payment_fingerprint"), "{kinds:?}");
    assert!(
        kinds.len() >= 3,
        "one shared card is not a campaign: {kinds:?}"
    );
    for link in links {
        let sharing = link["members_sharing"].as_u64().unwrap();
        assert!((2..=members.len() as u64).contains(&sharing), "{link}");
        assert!(link["weight"].as_f64().unwrap() > 0.0, "{link}");
        assert!(
            link["examples"].as_array().is_some_and(|e| !e.is_empty()),
            "{link}"
        );
    }
    let signals = cluster["signals"].as_array().unwrap();
    assert_eq!(signals[0]["detector"], "cluster", "the link summary leads");
    assert!(signals[0]["evidence"]["summary"]
        .as_str()
        .unwrap()
        .contains("judged as one actor"));

    // Each member is flagged as part of it, whatever its own traffic says.
    for account in &hydra {
        let member = wait_for(&app, &format!("/v1/accounts/{account}"), |a| {
            a["summary"]["cluster_id"] == cluster_id.as_str() && a["summary"]["flagged"] == true
        })
        .await;
        assert_eq!(member["summary"]["flagged"], true, "{account}");
        assert_eq!(member["cluster"]["subject"]["id"], cluster_id.as_str());
        let signal = member["signals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["detector"] == "cluster")
            .unwrap_or_else(|| panic!("{account} has no cluster signal"));
        assert!(signal["evidence"]["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("member of flagged cluster {cluster_id}")));
    }

    // Operators see the linker and the flagged cluster without any id in a label.
    assert!(app.metric("distillguard_linked_accounts").await >= hydra.len() as f64);
    assert!(app.metric("distillguard_clusters{state=\"flagged\"}").await >= 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_hydra_campaign_is_served_as_one_flagged_cluster_on_sqlite() {
    a_hydra_campaign_is_served_as_one_flagged_cluster(test_settings()).await;
}

#[tokio::test]
async fn a_hydra_campaign_is_served_as_one_flagged_cluster_on_postgres() {
    let database = PgDatabase::create("clusters_e2e").await;
    let settings = Settings {
        database_url: Some(Secret::new(database.url())),
        ..test_settings()
    };
    a_hydra_campaign_is_served_as_one_flagged_cluster(settings).await;
    database.drop().await;
}

#[tokio::test]
async fn with_linking_off_no_cluster_forms_and_no_account_is_linked() {
    // Arrange
    let (events, hydra) = simulated_hydra_day();
    let mut settings = test_settings();
    settings.engine.linking.enabled = false;
    let app = spawn_app_with(settings).await;

    // Act
    ingest_and_drain(&app, &events).await;

    // Assert: findings arrive (the harvesters of the day), but no cluster and no link.
    let mut accounts = Value::Null;
    for _ in 0..200 {
        let (_, list) = analyst_get(&app, "/v1/accounts?flagged=true").await;
        if list["items"].as_array().is_some_and(|i| !i.is_empty()) {
            accounts = list;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let items = accounts["items"]
        .as_array()
        .expect("flagged accounts arrive");
    assert!(
        items.iter().all(|a| a["cluster_id"].is_null()),
        "{accounts}"
    );
    let (status, clusters) = analyst_get(&app, "/v1/clusters").await;
    assert_eq!(status, 200);
    assert_eq!(clusters["items"], Value::Array(vec![]));
    let (_, member) = analyst_get(&app, &format!("/v1/accounts/{}", hydra[0])).await;
    assert!(member["summary"]["cluster_id"].is_null());
    assert_eq!(app.metric("distillguard_linked_accounts").await, 0.0);
    assert_eq!(
        app.metric("distillguard_clusters{state=\"flagged\"}").await,
        0.0
    );
    app.stop().await;
}

/// The day as a canonical NDJSON file, as `distillguard replay` reads it.
fn write_ndjson(events: &[distillguard_core::event::ApiEvent]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for event in events {
        serde_json::to_writer(&mut file, event).unwrap();
        file.write_all(b"\n").unwrap();
    }
    file.flush().unwrap();
    file
}

#[tokio::test]
async fn detectors_splitting_the_partitions_find_with_one_linker_exactly_what_one_node_finds() {
    // Arrange: the hydra day, replayed by one node and split over three detectors.
    use distillguard_server::replay::{replay_path, replay_split_path, SplitPlan};
    let (events, hydra) = simulated_hydra_day();
    let file = write_ndjson(&events);
    let settings = test_settings();
    let split = |linker| SplitPlan {
        detectors: 3,
        linker,
    };

    // Act
    let one = replay_path(file.path(), &settings).await.unwrap().report;
    let linked = replay_split_path(file.path(), &settings, split(true))
        .await
        .unwrap()
        .report;
    let alone = replay_split_path(file.path(), &settings, split(false))
        .await
        .unwrap()
        .report;

    // Assert: the hydra's members live on several detectors; scored together they form the
    // same clusters with the same scores as on one node; scored apart they do not.
    let shares: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            let mut bus = settings.bus.clone();
            bus.partitions = format!("share:{i}/3");
            bus.owned_partitions().unwrap()
        })
        .collect();
    let owners: BTreeSet<usize> = hydra
        .iter()
        .map(|a| {
            let id = distillguard_core::event::AccountId::parse(a.clone()).unwrap();
            let partition =
                distillguard_server::bus::partition_for(&id, settings.bus.partition_count);
            shares.iter().position(|s| s.contains(&partition)).unwrap()
        })
        .collect();
    assert!(owners.len() > 1, "the hydra spans detectors: {owners:?}");
    assert!(one.clusters.iter().any(|c| c.flagged));
    assert_eq!(linked, one);
    assert_eq!(alone.events, one.events);
    assert_ne!(alone.clusters, one.clusters);
}
