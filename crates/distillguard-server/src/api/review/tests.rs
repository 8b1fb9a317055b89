//! HTTP tests of the review API against real SQLite and PostgreSQL stores: every body runs on
//! both (PostgreSQL through `#[sqlx::test]`, which needs `DATABASE_URL`).

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use distillguard_core::finding::{
    AccountFinding, ClusterFinding, Evidence, FindingUpdate, LinkEvidence, Severity, Signal,
};
use distillguard_core::time::EventTime;
use distillguard_store::{PgStore, SqliteStore, Store, StoreOptions};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{routes, OPENAPI_JSON};
use crate::api::AppState;
use crate::auth::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pipeline::{DiscardSink, Pipeline};

const ANALYST: &str = "analyst-token-for-tests";
const ADMIN: &str = "admin-token-for-tests";
const INGEST: &str = "ingest-token-for-tests";

struct Api {
    app: Router,
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl Api {
    fn new(store: Store, dir: Option<tempfile::TempDir>) -> Self {
        let settings = Settings {
            auth_tokens: vec![
                format!("analyst:{ANALYST}"),
                format!("admin:{ADMIN}"),
                format!("ingest:{INGEST}"),
            ],
            ..Settings::default()
        };
        let metrics = Metrics::new();
        let pipeline = Pipeline::start(
            crate::app::pipeline_config(&settings),
            metrics.clone(),
            Box::new(DiscardSink),
        );
        let state = AppState {
            auth: Authenticator::new(settings.token_specs().unwrap()),
            settings: std::sync::Arc::new(settings),
            pipeline,
            metrics,
            writer: std::sync::Arc::new(distillguard_store::FindingWriter::spawn(
                store.clone(),
                distillguard_store::WriterConfig::default(),
            )),
            store: store.clone(),
            checkpoints: Default::default(),
            console: Default::default(),
            draining: Default::default(),
        };
        Self {
            app: routes().with_state(state),
            store,
            _dir: dir,
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in(dir.path(), StoreOptions::default())
            .await
            .unwrap();
        Self::new(Store::Sqlite(store), Some(dir))
    }

    async fn postgres(pool: sqlx::PgPool) -> Self {
        let store = PgStore::from_pool(pool, StoreOptions::default())
            .await
            .unwrap();
        Self::new(Store::Postgres(store), None)
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 10 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, Some(ANALYST), None).await
    }

    async fn send(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(method, uri, Some(ANALYST), Some(body)).await
    }

    async fn findings(&self, updates: &[FindingUpdate]) {
        self.store.upsert_findings(updates).await.unwrap();
    }
}

fn at(ms: i64) -> EventTime {
    EventTime::from_epoch_ms(ms).unwrap()
}

fn signal(detector: &str, score: f64) -> Signal {
    Signal {
        detector: detector.into(),
        score,
        evidence: Evidence {
            summary: format!("{detector} at {score}"),
            measurements: vec![],
        },
    }
}

fn acct(id: &str, score: f64, last_seen_ms: i64) -> FindingUpdate {
    FindingUpdate::Account(AccountFinding {
        activity: None,
        account_id: id.into(),
        score,
        severity: Severity::from_score(score),
        flagged: score >= 0.7,
        cluster_id: None,
        first_flagged_at: None,
        clustered_at: None,
        end_user: None,
        first_seen: at(1_000),
        last_seen: at(last_seen_ms),
        events: 10,
        signals: vec![signal("volume", score), signal("coverage", score - 0.4)],
        samples: vec![],
    })
}

fn cluster(id: &str, members: &[&str]) -> FindingUpdate {
    FindingUpdate::Cluster(ClusterFinding {
        cluster_id: id.into(),
        score: 0.9,
        severity: Severity::Critical,
        flagged: true,
        members: members.iter().map(|m| m.to_string()).collect(),
        first_flagged_at: None,
        first_seen: at(1_000),
        last_seen: at(2_000),
        links: vec![LinkEvidence {
            kind: "payment_fingerprint".into(),
            members_sharing: members.len(),
            weight: 1.0,
            examples: vec![],
        }],
        signals: vec![signal("hydra", 0.9)],
    })
}

/// Every review route with a concrete path, for the auth sweep and the OpenAPI check.
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/v1/accounts", "/v1/accounts"),
    (
        "POST",
        "/v1/accounts/bulk-review",
        "/v1/accounts/bulk-review",
    ),
    ("GET", "/v1/accounts/a1", "/v1/accounts/{id}"),
    (
        "PATCH",
        "/v1/accounts/a1/review",
        "/v1/accounts/{id}/review",
    ),
    ("GET", "/v1/accounts/a1/notes", "/v1/accounts/{id}/notes"),
    ("POST", "/v1/accounts/a1/notes", "/v1/accounts/{id}/notes"),
    ("GET", "/v1/accounts/a1/audit", "/v1/accounts/{id}/audit"),
    ("GET", "/v1/clusters", "/v1/clusters"),
    (
        "POST",
        "/v1/clusters/bulk-review",
        "/v1/clusters/bulk-review",
    ),
    ("GET", "/v1/clusters/c1", "/v1/clusters/{id}"),
    (
        "PATCH",
        "/v1/clusters/c1/review",
        "/v1/clusters/{id}/review",
    ),
    ("GET", "/v1/clusters/c1/notes", "/v1/clusters/{id}/notes"),
    ("POST", "/v1/clusters/c1/notes", "/v1/clusters/{id}/notes"),
    ("GET", "/v1/clusters/c1/audit", "/v1/clusters/{id}/audit"),
    ("GET", "/v1/allowlist", "/v1/allowlist"),
    ("POST", "/v1/allowlist", "/v1/allowlist"),
    ("DELETE", "/v1/allowlist/1", "/v1/allowlist/{entry}"),
    ("GET", "/v1/stats", "/v1/stats"),
];

async fn every_route_needs_a_token_with_the_analyst_or_admin_role(api: Api) {
    api.findings(&[acct("a1", 0.9, 2_000), cluster("c1", &["a1"])])
        .await;
    for (method, uri, _) in ROUTES {
        let method: Method = method.parse().unwrap();
        let (status, body) = api.call(method.clone(), uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = api
            .call(method.clone(), uri, Some("wrong-token-xyz"), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        let (status, body) = api.call(method.clone(), uri, Some(INGEST), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    for token in [ANALYST, ADMIN] {
        let (status, _) = api
            .call(Method::GET, "/v1/accounts/a1", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = api
        .call(
            Method::PATCH,
            "/v1/accounts/a1/review",
            Some(ADMIN),
            Some(json!({"status": "investigating", "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "admin may write");
    let (status, body) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK, "the API description is public");
    assert_eq!(body["openapi"], "3.1.0");
}

async fn lists_filter_and_page_without_duplicates_or_gaps_while_findings_arrive(api: Api) {
    let initial: Vec<_> = (0..12)
        .map(|i| acct(&format!("a{i:02}"), 0.3 + i as f64 * 0.05, 2_000 + i * 10))
        .collect();
    api.findings(&initial).await;
    let mut seen = Vec::new();
    let mut uri = "/v1/accounts?limit=5".to_string();
    for round in 0.. {
        let (status, page) = api.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["subject"]["id"].as_str().unwrap().to_string()),
        );
        api.findings(&[
            acct(&format!("late-hi-{round}"), 0.99, 9_000),
            acct(&format!("late-lo-{round}"), 0.01, 9_000),
        ])
        .await;
        match page["next"].as_str() {
            Some(next) => uri = next.to_string(),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates in {seen:?}");
    assert!(
        (0..12).all(|i| unique.contains(&format!("a{i:02}"))),
        "gap in {seen:?}"
    );

    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["subject"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, page) = api.get("/v1/accounts?min_score=0.8&flagged=true&severity=high,critical&since=1970-01-01T00:00:02.100Z&until=1970-01-01T00:00:02.200Z").await;
    assert_eq!(ids(&page), vec!["a11", "a10"]);
    let (_, page) = api
        .get("/v1/accounts?detector=coverage&sort=created&limit=2")
        .await;
    assert_eq!(
        ids(&page),
        vec!["late-hi-0", "late-hi-1"],
        "coverage (score - 0.4) fires from 0.9"
    );
    api.send(
        Method::PATCH,
        "/v1/accounts/a03/review",
        json!({"status": "investigating", "version": 1, "assignee": "ana"}),
    )
    .await;
    let (_, page) = api
        .get("/v1/accounts?status=investigating&assignee=ana")
        .await;
    assert_eq!(ids(&page), vec!["a03"]);

    let (status, body) = api.get("/v1/accounts?colour=red").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (_, first) = api.get("/v1/accounts?limit=1").await;
    let cursor = first["next"]
        .as_str()
        .unwrap()
        .rsplit("cursor=")
        .next()
        .unwrap()
        .to_string();
    let (status, _) = api
        .get(&format!("/v1/clusters?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a cursor is bound to its query"
    );
}

async fn details_show_evidence_and_unknown_ids_are_404(api: Api) {
    api.findings(&[
        acct("m1", 0.9, 2_000),
        acct("m2", 0.4, 2_000),
        cluster("c1", &["m1", "m2"]),
    ])
    .await;
    let (status, account) = api.get("/v1/accounts/m1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["summary"]["severity"], "critical");
    assert_eq!(account["summary"]["review"]["status"], "open");
    assert_eq!(
        account["signals"][0]["evidence"]["summary"],
        "volume at 0.9"
    );
    assert_eq!(account["cluster"]["subject"]["id"], "c1");
    assert_eq!(account["summary"]["last_seen"], "1970-01-01T00:00:02.000Z");
    let (status, cluster) = api.get("/v1/clusters/c1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cluster["members"].as_array().unwrap().len(), 2);
    assert_eq!(cluster["metrics"]["flagged_members"], 1);
    assert_eq!(cluster["links"][0]["kind"], "payment_fingerprint");
    for uri in [
        "/v1/accounts/nope",
        "/v1/clusters/nope",
        "/v1/accounts/nope/notes",
        "/v1/accounts/nope/audit",
    ] {
        let (status, body) = api.get(uri).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{uri}"
        );
    }
}

async fn triage_answers_409_when_stale_and_422_when_invalid_and_audits_every_change(api: Api) {
    api.findings(&[acct("a1", 0.9, 2_000)]).await;
    let (status, review) = api
        .send(
            Method::PATCH,
            "/v1/accounts/a1/review",
            json!({"status": "investigating", "version": 1, "assignee": "ana"}),
        )
        .await;
    assert_eq!(
        (status, review["version"].as_i64()),
        (StatusCode::OK, Some(2))
    );
    let (status, body) = api
        .send(
            Method::PATCH,
            "/v1/accounts/a1/review",
            json!({"status": "dismissed", "version": 1, "close_reason": "false_positive"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (status, body) = api
        .send(
            Method::PATCH,
            "/v1/accounts/a1/review",
            json!({"status": "confirmed", "version": 2, "close_reason": "false_positive"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unprocessable"))
    );
    let (status, _) = api
        .send(
            Method::PATCH,
            "/v1/accounts/a1/review",
            json!({"status": "shelved", "version": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .call(Method::PATCH, "/v1/accounts/a1/review", Some(ANALYST), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty body is not JSON");
    let (status, _) = api
        .send(
            Method::PATCH,
            "/v1/accounts/ghost/review",
            json!({"status": "investigating", "version": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, review) = api.send(Method::PATCH, "/v1/accounts/a1/review", json!({"status": "confirmed", "version": 2, "close_reason": "true_positive", "assignee": null})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (review["status"].as_str(), review["assignee"].clone()),
        (Some("confirmed"), Value::Null)
    );
    let (status, _) = api
        .send(
            Method::PATCH,
            "/v1/accounts/a1/review",
            json!({"status": "dismissed", "version": 3, "close_reason": "other"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a verdict changes only through open"
    );

    let (status, _) = api
        .send(
            Method::POST,
            "/v1/accounts/a1/notes",
            json!({"body": "card shared with a7"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .send(Method::POST, "/v1/accounts/a1/notes", json!({"body": ""}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, notes) = api.get("/v1/accounts/a1/notes").await;
    assert_eq!(notes["items"][0]["body"], "card shared with a7");
    let (status, entry) = api
        .send(
            Method::POST,
            "/v1/allowlist",
            json!({"kind": "account", "id": "a1", "reason": "red team"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/allowlist/{}", entry["id"]),
            Some(ANALYST),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, trail) = api.get("/v1/accounts/a1/audit").await;
    let trail = trail["items"].as_array().unwrap();
    let actions: Vec<&str> = trail
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "finding.flagged",
            "review.status_changed",
            "review.status_changed",
            "note.added",
            "allowlist.added",
            "allowlist.removed"
        ],
        "one entry per change, none for refused requests"
    );
    assert!(trail[1..]
        .iter()
        .all(|e| e["actor"].as_str().unwrap().starts_with("analyst-")));
    assert!(
        trail.iter().all(|e| !e.to_string().contains(ANALYST)),
        "tokens never reach the trail"
    );
    assert_eq!(trail[2]["before"]["status"], "investigating");
    assert_eq!(trail[2]["after"]["close_reason"], "true_positive");
    let (_, page) = api.get("/v1/accounts/a1/audit?limit=4").await;
    let (_, rest) = api.get(page["next"].as_str().unwrap()).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
}

async fn bulk_review_reports_each_id(api: Api) {
    api.findings(&[acct("a", 0.9, 2_000), acct("b", 0.9, 2_000)])
        .await;
    let (status, reply) = api
        .send(Method::POST, "/v1/accounts/bulk-review", json!({"ids": ["a", "ghost"], "items": [{"id": "b", "version": 7}], "status": "dismissed", "close_reason": "duplicate"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[0]["review"]["status"], "dismissed");
    assert_eq!(
        (results[1]["ok"].as_bool(), results[1]["status"].as_u64()),
        (Some(false), Some(404))
    );
    assert_eq!(results[2]["status"], 409);
    // An item's error reads as the same error of a single review would (one mapping).
    assert_eq!(results[2]["error"]["code"], "conflict");
    assert!(
        results[2]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the finding changed since you read it")),
        "{}",
        results[2]
    );
    let (status, _) = api
        .send(
            Method::POST,
            "/v1/accounts/bulk-review",
            json!({"ids": [], "status": "open"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn an_allowlisted_account_is_not_flagged_and_says_why(api: Api) {
    api.findings(&[acct("partner", 0.95, 2_000)]).await;
    let (status, entry) = api.send(Method::POST, "/v1/allowlist", json!({"kind": "account", "id": "partner", "reason": "eval partner", "expires_at": "2999-01-01T00:00:00Z"})).await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let (_, account) = api.get("/v1/accounts/partner").await;
    assert_eq!(account["summary"]["flagged"], false);
    assert_eq!(account["summary"]["engine_flagged"], true);
    assert_eq!(account["summary"]["allowlisted"]["reason"], "eval partner");
    let (_, flagged) = api.get("/v1/accounts?flagged=true").await;
    assert!(flagged["items"].as_array().unwrap().is_empty());
    let (_, list) = api.get("/v1/allowlist").await;
    assert_eq!(list["items"][0]["expires_at"], "2999-01-01T00:00:00Z");
    let (status, _) = api.send(Method::POST, "/v1/allowlist", json!({"kind": "account", "id": "x", "reason": "old", "expires_at": "2000-01-01T00:00:00Z"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "already expired");
    let uri = format!("/v1/allowlist/{}", entry["id"]);
    assert_eq!(
        api.call(Method::DELETE, &uri, Some(ANALYST), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.call(Method::DELETE, &uri, Some(ANALYST), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(Method::DELETE, "/v1/allowlist/abc", Some(ANALYST), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

async fn stats_count_findings_and_show_watermarks(api: Api) {
    api.findings(&[
        acct("a", 0.95, 2_000),
        acct("b", 0.2, 2_000),
        cluster("c", &["a"]),
    ])
    .await;
    api.store.set_watermark("ingest", at(5_000)).await.unwrap();
    let (status, stats) = api.get("/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["accounts"]["total"], 2);
    assert_eq!(stats["accounts"]["flagged"], 1);
    assert_eq!(stats["accounts"]["by_status"]["open"], 2);
    assert_eq!(stats["accounts"]["by_severity"]["critical"], 1);
    assert_eq!(stats["clusters"]["total"], 1);
    assert_eq!(stats["watermarks"]["stored"][0]["name"], "ingest");
    assert_eq!(
        stats["watermarks"]["stored"][0]["at"],
        "1970-01-01T00:00:05.000Z"
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    for (method, _, template) in ROUTES {
        let operation = &doc["paths"][*template][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} missing from docs/openapi.json"
        );
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {template} documents 401"
        );
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Api::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    super::$name(super::Api::postgres(pool).await).await;
                }
            )*
        }
    };
}

on_both_backends! {
    every_route_needs_a_token_with_the_analyst_or_admin_role,
    lists_filter_and_page_without_duplicates_or_gaps_while_findings_arrive,
    details_show_evidence_and_unknown_ids_are_404,
    triage_answers_409_when_stale_and_422_when_invalid_and_audits_every_change,
    bulk_review_reports_each_id,
    an_allowlisted_account_is_not_flagged_and_says_why,
    stats_count_findings_and_show_watermarks,
}
