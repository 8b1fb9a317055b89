//! `Store::connect` picks the backend from the URL and SQLite needs no setup.

use distillguard_core::finding::{AccountFinding, FindingUpdate, Severity};
use distillguard_core::time::EventTime;
use distillguard_store::{Store, StoreError, SQLITE_FILE};
use sqlx::{Connection, Executor};

fn update(id: &str) -> FindingUpdate {
    FindingUpdate::Account(AccountFinding {
        activity: None,
        account_id: id.into(),
        score: 0.9,
        severity: Severity::Critical,
        flagged: true,
        cluster_id: None,
        first_flagged_at: None,
        clustered_at: None,
        end_user: None,
        first_seen: EventTime::from_epoch_ms(1_000).unwrap(),
        last_seen: EventTime::from_epoch_ms(2_000).unwrap(),
        events: 3,
        signals: vec![],
        samples: vec![],
    })
}

#[tokio::test]
async fn without_a_url_findings_survive_a_restart_in_a_sqlite_file_in_the_data_dir() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("not-yet-created");
    let store = Store::connect(None, &data_dir).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    store.upsert_findings(&[update("kept")]).await.unwrap();
    store.close().await;
    assert!(data_dir.join(SQLITE_FILE).exists());

    let reopened = Store::connect(None, &data_dir).await.unwrap();
    assert_eq!(
        reopened.get_account("kept").await.unwrap().summary.score,
        0.9
    );
}

#[tokio::test]
async fn a_sqlite_url_is_honoured() {
    let root = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", root.path().join("elsewhere.db").display());
    let store = Store::connect(Some(&url), root.path()).await.unwrap();
    store.ping().await.unwrap();
    assert!(root.path().join("elsewhere.db").exists());
    assert!(!root.path().join(SQLITE_FILE).exists());
}

#[tokio::test]
async fn an_unknown_scheme_is_refused_without_echoing_the_credentials() {
    let root = tempfile::tempdir().unwrap();
    let error = Store::connect(Some("mysql://admin:hunter2@db/x"), root.path())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::InvalidInput(_)));
    assert!(!error.to_string().contains("hunter2"));
}

#[tokio::test]
async fn a_postgres_url_selects_postgres_and_migrates_it() {
    let admin_url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must be set (postgres://postgres@127.0.0.1:5432/test)");
    let name = format!("dg_store_connect_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a database in DATABASE_URL");
    let url = format!("{base}/{name}");

    let store = Store::connect(Some(&url), std::path::Path::new("/nonexistent"))
        .await
        .unwrap();
    assert_eq!(store.backend_name(), "postgres");
    store.upsert_findings(&[update("pg")]).await.unwrap();
    assert_eq!(store.get_account("pg").await.unwrap().summary.score, 0.9);
    store.close().await;
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}
