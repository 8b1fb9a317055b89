//! Test harness: one store per test on a real database, a settable wall clock, update builders,
//! and a way to take the database down and bring it back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use distillguard_core::finding::{
    AccountFinding, ClusterFinding, Evidence, FindingUpdate, LinkEvidence, Measurement,
    SamplePrompt, Severity, Signal,
};
use distillguard_core::time::EventTime;
use distillguard_store::{PgStore, SqliteStore, Store, StoreOptions};
use sqlx::{Connection, Executor};

/// 2026-01-01T00:00:00Z: the wall clock starts here in every test.
pub const T0: i64 = 1_767_225_600_000;

pub enum Backend {
    Sqlite {
        dir: tempfile::TempDir,
        blocker: tokio::sync::Mutex<Option<sqlx::SqliteConnection>>,
    },
    Postgres {
        pool: sqlx::PgPool,
    },
}

pub struct Harness {
    pub backend: Backend,
    pub clock: Arc<AtomicI64>,
    pub store: Store,
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(AtomicI64::new(T0));
        let backend = Backend::Sqlite {
            dir,
            blocker: tokio::sync::Mutex::new(None),
        };
        let store = open(&backend, options(&clock)).await;
        Self {
            backend,
            clock,
            store,
        }
    }

    pub async fn postgres(pool: sqlx::PgPool) -> Self {
        let clock = Arc::new(AtomicI64::new(T0));
        let backend = Backend::Postgres { pool };
        let store = open(&backend, options(&clock)).await;
        Self {
            backend,
            clock,
            store,
        }
    }

    /// Another store on the same database, with other options and the same clock.
    pub async fn store_with(&self, tweak: impl FnOnce(&mut StoreOptions)) -> Store {
        let mut opts = options(&self.clock);
        tweak(&mut opts);
        open(&self.backend, opts).await
    }

    /// Runs raw SQL on the test database (e.g. a trigger that makes one subject fail).
    pub async fn execute(&self, sqlite: &str, postgres: &str) {
        match &self.backend {
            Backend::Sqlite { dir, .. } => {
                let url = format!("sqlite://{}", db_path(dir).display());
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("connect");
                conn.execute(sqlite).await.expect("sqlite statement");
            }
            Backend::Postgres { pool } => {
                pool.execute(postgres).await.expect("postgres statement");
            }
        }
    }

    pub fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.clock.load(Ordering::SeqCst)).unwrap()
    }

    /// Makes every write fail until [`Harness::end_outage`]: SQLite by holding the write lock
    /// from another connection, PostgreSQL by refusing and killing connections to the database.
    pub async fn begin_outage(&self) {
        match &self.backend {
            Backend::Sqlite { dir, blocker } => {
                let url = format!("sqlite://{}", db_path(dir).display());
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("blocker");
                conn.execute("BEGIN EXCLUSIVE")
                    .await
                    .expect("take the write lock");
                *blocker.lock().await = Some(conn);
            }
            Backend::Postgres { pool } => {
                let name = database_name(pool).await;
                let mut admin = admin().await;
                admin
                    .execute(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false").as_str())
                    .await
                    .expect("refuse connections");
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&name)
                .execute(&mut admin)
                .await
                .expect("terminate connections");
                *OUTAGE_DB.lock().unwrap() = Some(name);
            }
        }
    }

    pub async fn end_outage(&self) {
        match &self.backend {
            Backend::Sqlite { blocker, .. } => {
                if let Some(mut conn) = blocker.lock().await.take() {
                    conn.execute("ROLLBACK")
                        .await
                        .expect("release the write lock");
                }
            }
            Backend::Postgres { .. } => {
                let name = OUTAGE_DB.lock().unwrap().take().expect("an outage is on");
                admin()
                    .await
                    .execute(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true").as_str())
                    .await
                    .expect("allow connections");
            }
        }
    }
}

static OUTAGE_DB: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn options(clock: &Arc<AtomicI64>) -> StoreOptions {
    let clock = Arc::clone(clock);
    StoreOptions {
        clock: Arc::new(move || {
            DateTime::from_timestamp_millis(clock.load(Ordering::SeqCst)).unwrap()
        }),
        sqlite_busy_timeout: Duration::from_millis(100),
        acquire_timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    }
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(distillguard_store::SQLITE_FILE)
}

async fn open(backend: &Backend, opts: StoreOptions) -> Store {
    match backend {
        Backend::Sqlite { dir, .. } => Store::Sqlite(
            SqliteStore::open_in(dir.path(), opts)
                .await
                .expect("open sqlite"),
        ),
        Backend::Postgres { pool } => Store::Postgres(
            PgStore::from_pool(pool.clone(), opts)
                .await
                .expect("migrate postgres"),
        ),
    }
}

async fn database_name(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .expect("db name")
}

async fn admin() -> sqlx::PgConnection {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must be set for the PostgreSQL contract tests");
    sqlx::PgConnection::connect(&url)
        .await
        .expect("admin connection")
}

pub fn at(ms: i64) -> EventTime {
    EventTime::from_epoch_ms(ms).unwrap()
}

pub fn signal(detector: &str, score: f64) -> Signal {
    Signal {
        detector: detector.to_string(),
        score,
        evidence: Evidence {
            summary: format!("{detector} scored {score}"),
            measurements: vec![Measurement {
                name: "requests".into(),
                value: score * 1000.0,
                threshold: Some(700.0),
                baseline: None,
                window: Some("24h".into()),
            }],
        },
    }
}

/// An account finding; flagged at 0.7 like the engine's default threshold.
pub fn account(id: &str, score: f64, last_seen_ms: i64) -> AccountFinding {
    AccountFinding {
        activity: None,
        account_id: id.to_string(),
        score,
        severity: Severity::from_score(score),
        flagged: score >= 0.7,
        cluster_id: None,
        first_flagged_at: (score >= 0.7).then(|| at(last_seen_ms)),
        clustered_at: None,
        end_user: None,
        first_seen: at(1_000),
        last_seen: at(last_seen_ms),
        events: 100,
        signals: vec![
            signal("volume", score),
            signal("coverage", (score - 0.4).max(0.0)),
        ],
        samples: vec![SamplePrompt {
            text: format!("secret prompt of {id}"),
            hash: format!("hash-{id}"),
            at: at(1_500),
        }],
    }
}

pub fn acct(id: &str, score: f64, last_seen_ms: i64) -> FindingUpdate {
    FindingUpdate::Account(account(id, score, last_seen_ms))
}

pub fn cluster(id: &str, score: f64, members: &[&str], last_seen_ms: i64) -> FindingUpdate {
    FindingUpdate::Cluster(ClusterFinding {
        cluster_id: id.to_string(),
        score,
        severity: Severity::from_score(score),
        flagged: score >= 0.7,
        members: members.iter().map(|m| m.to_string()).collect(),
        first_flagged_at: None,
        first_seen: at(1_000),
        last_seen: at(last_seen_ms),
        links: vec![LinkEvidence {
            kind: "payment_fingerprint".into(),
            members_sharing: members.len(),
            weight: 0.9,
            examples: vec!["fp-1".into()],
        }],
        signals: vec![signal("hydra", score)],
    })
}
