//! Black-box faults of state, against the real binary: `kill -9` mid-campaign, retries across a
//! restart, and a flood of distinct accounts. Each runs on SQLite and PostgreSQL where the store
//! matters (PostgreSQL from `DATABASE_URL`, as `scripts/test` sets it).
//!
//! These live beside the binary (not in `tests/` at the root) because only a package's own
//! integration tests are handed the path of its freshly built binary (`CARGO_BIN_EXE_*`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Executor, Row};

const BIN: &str = env!("CARGO_BIN_EXE_distillguard");

/// Where the findings live for one test: a SQLite data directory or a fresh PostgreSQL database.
enum Backend {
    Sqlite,
    Postgres { admin_url: String, name: String },
}

impl Backend {
    async fn postgres(label: &str) -> Self {
        let admin_url = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL must be set for the PostgreSQL tests (scripts/test sets it)");
        let name = format!("dg_faults_{label}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        Self::Postgres { admin_url, name }
    }

    fn url(&self) -> Option<String> {
        match self {
            Self::Sqlite => None,
            Self::Postgres { admin_url, name } => {
                let (base, _) = admin_url.rsplit_once('/').unwrap();
                Some(format!("{base}/{name}"))
            }
        }
    }

    async fn drop(self) {
        if let Self::Postgres { admin_url, name } = self {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            admin
                .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
                .await
                .unwrap();
        }
    }
}

/// One `distillguard serve` process.
struct Service {
    child: Child,
    base: String,
    client: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Service {
    async fn start(data_dir: &Path, backend: &Backend, config: &str) -> Self {
        let config_path = data_dir.join("test-config.toml");
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("DISTILLGUARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("DISTILLGUARD_DATA_DIR", data_dir)
            .env("DISTILLGUARD_CONFIG", &config_path)
            .env("DISTILLGUARD_LOG", "warn")
            .env_remove("DISTILLGUARD_DATABASE_URL")
            .env_remove("DISTILLGUARD_AUTH_TOKENS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = backend.url() {
            command.env("DISTILLGUARD_DATABASE_URL", url);
        }
        let child = command.spawn().expect("the binary starts");
        let service = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(response) = service.client.get(service.url("/readyz")).send().await {
                if response.status().is_success() {
                    return service;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Posts NDJSON; returns the reply, asserting 202.
    async fn post(&self, lines: &[String]) -> Value {
        let response = self
            .client
            .post(self.url("/v1/events"))
            .header("content-type", "application/x-ndjson")
            .body(lines.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        response.json().await.unwrap()
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse::<f64>().ok())?
            })
            .unwrap_or(0.0)
    }

    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    }

    /// `kill -9`: no shutdown, no final checkpoint.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait: drains, checkpoints and exits.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the service exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the service did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A test that fails midway leaves no service behind (holding its ports, streams and stderr).
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated day with hydra, harvesters and benign traffic, in chunks of canonical NDJSON.
fn campaign(dir: &Path) -> Vec<Vec<String>> {
    let out = dir.join("traffic.ndjson");
    let status = Command::new(BIN)
        .args([
            "simulate",
            "--days",
            "1",
            "--accounts",
            "150",
            "--seed",
            "5",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--labels")
        .arg(dir.join("labels.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(out).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.chunks(1_500).map(<[String]>::to_vec).collect()
}

/// Checkpoints every second, so a crash falls between checkpoints with events after the last one.
const FAST_CHECKPOINTS: &str = "[store]\ncheckpoint_interval_secs = 1\n";

/// Every finding and cluster membership in the store, as comparable lines.
async fn stored_findings(data_dir: &Path, backend: &Backend) -> Vec<String> {
    let findings = "SELECT subject_kind, subject_id, score, severity, engine_flagged, \
                    first_flagged_at_ms, first_seen_ms, last_seen_ms FROM finding \
                    ORDER BY subject_kind, subject_id";
    let members = "SELECT cluster_id, account_id FROM cluster_member ORDER BY 1, 2";
    let mut out = Vec::new();
    macro_rules! collect {
        ($conn:expr) => {{
            for row in sqlx::query(findings).fetch_all(&mut $conn).await.unwrap() {
                out.push(format!(
                    "{} {} {:.4} {} {} {:?} {} {}",
                    row.get::<String, _>(0),
                    row.get::<String, _>(1),
                    row.get::<f64, _>(2),
                    row.get::<String, _>(3),
                    row.get::<bool, _>(4),
                    row.get::<Option<i64>, _>(5),
                    row.get::<i64, _>(6),
                    row.get::<i64, _>(7),
                ));
            }
            for row in sqlx::query(members).fetch_all(&mut $conn).await.unwrap() {
                out.push(format!(
                    "member {} {}",
                    row.get::<String, _>(0),
                    row.get::<String, _>(1)
                ));
            }
        }};
    }
    match backend.url() {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            collect!(conn);
        }
        None => {
            let url = format!("sqlite://{}", data_dir.join("distillguard.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            collect!(conn);
        }
    }
    out
}

/// Events the engine has taken in (applied or counted late), from the last checkpoint's manifest.
async fn processed_events(data_dir: &Path, backend: &Backend) -> u64 {
    let query = "SELECT meta FROM checkpoint_manifest ORDER BY generation DESC LIMIT 1";
    let meta: Vec<u8> = match backend.url() {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(query)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        None => {
            let url = format!("sqlite://{}", data_dir.join("distillguard.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(query)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    };
    let meta = distillguard_server::checkpoint::format::decode_meta(&meta).unwrap();
    meta.events + meta.late_events
}

fn accepted(reply: &Value) -> u64 {
    reply["accepted"].as_u64().unwrap()
}

/// Posts `chunks`, returning how many events were acknowledged.
async fn post_all(service: &Service, chunks: &[Vec<String>]) -> u64 {
    let mut acked = 0;
    for chunk in chunks {
        acked += accepted(&service.post(chunk).await);
    }
    acked
}

struct Outcome {
    findings: Vec<String>,
    acknowledged: u64,
    processed: u64,
}

impl Outcome {
    fn lost(&self) -> u64 {
        self.acknowledged.saturating_sub(self.processed)
    }
}

async fn unbroken(dir: &Path, backend: &Backend, chunks: &[Vec<String>]) -> Outcome {
    let service = Service::start(dir, backend, FAST_CHECKPOINTS).await;
    let acknowledged = post_all(&service, chunks).await;
    service.stop();
    Outcome {
        findings: stored_findings(dir, backend).await,
        acknowledged,
        processed: processed_events(dir, backend).await,
    }
}

/// Two thirds of the campaign, a checkpoint, more events, `kill -9`, a restart, the rest.
async fn crashed(dir: &Path, backend: &Backend, chunks: &[Vec<String>], config: &str) -> Outcome {
    let cut = chunks.len() * 2 / 3;
    let service = Service::start(dir, backend, config).await;
    let mut acknowledged = post_all(&service, &chunks[..cut]).await;
    // Let a checkpoint happen, then acknowledge more that only the event log holds.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    acknowledged += post_all(&service, &chunks[cut..cut + 3]).await;
    service.kill();
    let service = Service::start(dir, backend, config).await;
    acknowledged += post_all(&service, &chunks[cut + 3..]).await;
    service.stop();
    Outcome {
        findings: stored_findings(dir, backend).await,
        acknowledged,
        processed: processed_events(dir, backend).await,
    }
}

async fn kill_nine_mid_campaign(label: &str, postgres: bool) {
    let root = tempfile::tempdir().unwrap();
    let chunks = campaign(root.path());
    let backend = |run: &'static str| {
        let label = format!("{label}_{run}");
        async move {
            if postgres {
                Backend::postgres(&label).await
            } else {
                Backend::Sqlite
            }
        }
    };

    let (db_a, db_b, db_c) = (backend("a").await, backend("b").await, backend("c").await);
    let expected = unbroken(&root.path().join("a"), &db_a, &chunks).await;
    let with_log = crashed(&root.path().join("b"), &db_b, &chunks, FAST_CHECKPOINTS).await;
    let without_log = crashed(
        &root.path().join("c"),
        &db_c,
        &chunks,
        &format!("{FAST_CHECKPOINTS}[log]\nenabled = false\n"),
    )
    .await;
    eprintln!(
        "kill -9 ({label}): acknowledged {}, lost with the event log {}, without it {}",
        with_log.acknowledged,
        with_log.lost(),
        without_log.lost()
    );

    let flagged = expected
        .findings
        .iter()
        .filter(|l| l.contains(" true "))
        .count();
    assert!(flagged > 10, "the campaign flags accounts: {flagged}");
    assert!(expected.findings.iter().any(|l| l.starts_with("member ")));
    assert_eq!(expected.lost(), 0);
    assert_eq!(
        with_log.lost(),
        0,
        "nothing acknowledged is lost with the event log"
    );
    assert_eq!(with_log.findings, expected.findings);
    // The control: without the log, the events acknowledged after the checkpoint are gone.
    assert!(without_log.lost() > 0);
    for db in [db_a, db_b, db_c] {
        db.drop().await;
    }
}

#[tokio::test]
async fn kill_nine_mid_campaign_loses_nothing_and_ends_with_the_unbroken_findings_on_sqlite() {
    kill_nine_mid_campaign("sqlite", false).await;
}

#[tokio::test]
async fn kill_nine_mid_campaign_loses_nothing_and_ends_with_the_unbroken_findings_on_postgres() {
    kill_nine_mid_campaign("pg", true).await;
}

fn retry_batch(prefix: &str, start_ms: i64) -> Vec<String> {
    (0..20)
        .map(|i| {
            json!({
                "timestamp": start_ms + i * 1_000,
                "account_id": format!("{prefix}-acct-{}", i % 3),
                "model": "m",
                "request_id": format!("{prefix}-req-{i}"),
                "prompt": format!("question {i}"),
            })
            .to_string()
        })
        .collect()
}

async fn retries_across_restarts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_793_000_000_000;
    let service = Service::start(dir.path(), &backend, FAST_CHECKPOINTS).await;
    let first = retry_batch("graceful", t0);
    assert_eq!(accepted(&service.post(&first).await), 20);
    service.stop();

    let service = Service::start(dir.path(), &backend, FAST_CHECKPOINTS).await;
    let reply = service.post(&first).await;
    assert_eq!(
        (reply["accepted"].clone(), reply["duplicates"].clone()),
        (json!(0), json!(20))
    );
    let second = retry_batch("crash", t0 + 60_000);
    assert_eq!(accepted(&service.post(&second).await), 20);
    service.kill();

    let service = Service::start(dir.path(), &backend, FAST_CHECKPOINTS).await;
    let reply = service.post(&second).await;
    assert_eq!(
        (reply["accepted"].clone(), reply["duplicates"].clone()),
        (json!(0), json!(20))
    );
    assert_eq!(
        service
            .metric("distillguard_events_duplicate_total{source=\"canonical\"}")
            .await,
        20.0
    );
    service.stop();
    backend.drop().await;
}

#[tokio::test]
async fn a_retry_after_a_restart_or_a_crash_is_counted_as_a_duplicate_on_sqlite() {
    retries_across_restarts(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_retry_after_a_restart_or_a_crash_is_counted_as_a_duplicate_on_postgres() {
    retries_across_restarts(Backend::postgres("retry").await).await;
}

fn flood_batch(from: usize, count: usize, start_ms: i64) -> Vec<String> {
    (from..from + count)
        .map(|i| {
            json!({
                "timestamp": start_ms + i as i64 * 20,
                "account_id": format!("flood-{i:08}"),
                "model": format!("model-{}", i % 9_000),
                "request_id": format!("flood-req-{i}"),
                "prompt": format!("tell me about topic {i}"),
                "client_ip": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            })
            .to_string()
        })
        .collect()
}

/// A flood of distinct account ids against small caps: every map stays at its cap, and memory
/// stops growing once the caps are reached.
#[tokio::test]
async fn a_flood_of_distinct_accounts_keeps_every_map_at_its_cap_and_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[engine]\nmax_tracked_accounts = 2000\n[ingest]\ndedup_capacity = 5000\n";
    let service = Service::start(dir.path(), &Backend::Sqlite, config).await;
    let t0 = 1_793_000_000_000;
    let batch = 5_000;
    let mut rss = BTreeMap::new();
    for round in 0..40 {
        service.post(&flood_batch(round * batch, batch, t0)).await;
        if round == 19 || round == 39 {
            rss.insert(round, service.rss_bytes());
        }
    }
    let entries = |map: &str| format!("distillguard_state_entries{{map=\"{map}\"}}");
    // Exported right after a tick, when the caps have just been applied.
    let cap = 2_000.0;
    assert!(service.metric("distillguard_tracked_accounts").await <= cap);
    assert!(service.metric(&entries("linker")).await <= cap);
    assert!(service.metric(&entries("findings")).await <= cap);
    assert!(service.metric(&entries("dedup")).await <= 5_000.0);
    assert!(service.metric(&entries("models")).await <= 4_096.0);
    assert!(service.metric("distillguard_evicted_accounts_total").await > 150_000.0);
    assert!(
        service
            .metric("distillguard_state_evictions_total{map=\"dedup\"}")
            .await
            > 150_000.0
    );
    assert!(
        service
            .metric("distillguard_state_evictions_total{map=\"models\"}")
            .await
            > 0.0
    );
    // 100,000 more distinct accounts after the caps were reached: memory stays put (without
    // caps the same flood adds hundreds of MB: several KB per account in four maps).
    let growth = rss[&39].saturating_sub(rss[&19]);
    eprintln!("flood RSS: {:?} (growth {} MiB)", rss, growth >> 20);
    assert!(growth < 48 << 20, "RSS grew by {} MiB", growth >> 20);
    service.stop();
}

/// `[bus] kind = "jetstream"` (issue 15) on the machine's NATS, on a stream of its own that
/// expires by itself: the node ingests and detects (`role = "all"`), checkpointing every second.
fn jetstream_config(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let stream = format!("DGFAULTS_{label}_{}_{nanos}", std::process::id());
    format!(
        "{FAST_CHECKPOINTS}[bus]\nkind = \"jetstream\"\nurl = \"nats://127.0.0.1:4222\"\n\
         stream = \"{stream}\"\nsubject_prefix = \"dgfaults.{}\"\nmax_age_secs = 3600\n",
        stream.to_ascii_lowercase()
    )
}

/// Waits until the node has read everything in the stream: nothing pending, and no more applied
/// over a few polls (the events posted last may still be in flight to the consumer).
async fn wait_consumed(service: &Service) {
    // A stall, not a slow machine, fails the test: the clock restarts whenever more is applied
    // (beside the other fault tests a debug build can need minutes for the whole campaign).
    let mut progress_at = Instant::now();
    let mut last = -1.0;
    let mut stable = 0;
    while stable < 3 {
        let consumed = service
            .metric("distillguard_bus_consumed_events_total")
            .await;
        let pending = service
            .metric("distillguard_bus_consumer_pending_messages")
            .await;
        stable = if pending == 0.0 && consumed == last {
            stable + 1
        } else {
            0
        };
        if consumed != last {
            progress_at = Instant::now();
        }
        last = consumed;
        assert!(
            progress_at.elapsed() < Duration::from_secs(90),
            "the detector stopped consuming: {consumed} applied, {pending} pending"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The JetStream node: two thirds of the campaign, a checkpoint, more, `kill -9`, a restart
/// (which resumes from the checkpoint's stream sequence), the rest.
async fn crashed_on_jetstream(dir: &Path, chunks: &[Vec<String>], config: &str) -> Outcome {
    let backend = Backend::Sqlite;
    let cut = chunks.len() * 2 / 3;
    let service = Service::start(dir, &backend, config).await;
    let mut acknowledged = post_all(&service, &chunks[..cut]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    acknowledged += post_all(&service, &chunks[cut..cut + 3]).await;
    service.kill();
    let service = Service::start(dir, &backend, config).await;
    acknowledged += post_all(&service, &chunks[cut + 3..]).await;
    wait_consumed(&service).await;
    service.stop();
    Outcome {
        findings: stored_findings(dir, &backend).await,
        acknowledged,
        processed: processed_events(dir, &backend).await,
    }
}

#[tokio::test]
async fn kill_nine_of_a_jetstream_node_loses_nothing_and_ends_with_the_embedded_findings() {
    let root = tempfile::tempdir().unwrap();
    let chunks = campaign(root.path());
    let expected = unbroken(&root.path().join("embedded"), &Backend::Sqlite, &chunks).await;

    let crashed = crashed_on_jetstream(
        &root.path().join("jetstream"),
        &chunks,
        &jetstream_config("kill"),
    )
    .await;

    eprintln!(
        "kill -9 (jetstream): acknowledged {}, processed {}",
        crashed.acknowledged, crashed.processed
    );
    assert!(expected.findings.iter().any(|l| l.contains(" true ")));
    assert_eq!(crashed.acknowledged, expected.acknowledged);
    assert_eq!(crashed.lost(), 0, "nothing acknowledged is lost");
    assert_eq!(
        crashed.processed, expected.processed,
        "nothing applied twice"
    );
    assert_eq!(crashed.findings, expected.findings);
}

/// Two detectors handing their ticks to a linker (`[bus] linker = true`, issue 15) on the
/// machine's NATS, on streams of their own that expire by themselves, all three on one
/// PostgreSQL database. Small report parts, so that reports travel in several messages.
fn linked_configs(label: &str) -> [String; 3] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let stream = format!("DGFAULTS_{label}_{}_{nanos}", std::process::id());
    let lower = stream.to_ascii_lowercase();
    let base = format!(
        "{FAST_CHECKPOINTS}[bus]\nkind = \"jetstream\"\nurl = \"nats://127.0.0.1:4222\"\n\
         stream = \"{stream}\"\nsubject_prefix = \"dgfaults.{lower}\"\nmax_age_secs = 3600\n\
         profiles_stream = \"{stream}_PROFILES\"\nprofiles_subject_prefix = \"dgfaults.{lower}_profiles\"\n\
         profile_part_bytes = 16384\n"
    );
    [
        format!("{base}role = \"detector\"\npartitions = \"share:0/2\"\nlinker = true\n"),
        format!("{base}role = \"detector\"\npartitions = \"share:1/2\"\nlinker = true\n"),
        format!("{base}role = \"linker\"\n"),
    ]
}

/// Waits until the linker has read every report in the profiles stream and holds no tick: its
/// stream sequence unchanged over a few polls with nothing pending.
async fn wait_linked(linker: &Service) {
    let mut progress_at = Instant::now();
    let mut last = -1.0;
    let mut stable = 0;
    while stable < 5 {
        let read = linker.metric("distillguard_linker_stream_sequence").await;
        let messages = linker.metric("distillguard_linker_pending_messages").await;
        let ticks = linker.metric("distillguard_linker_pending_ticks").await;
        stable = if read == last && messages == 0.0 && ticks == 0.0 {
            stable + 1
        } else {
            0
        };
        if read != last {
            progress_at = Instant::now();
        }
        last = read;
        assert!(
            progress_at.elapsed() < Duration::from_secs(90),
            "the linker stopped reading at {read}: {messages} messages, {ticks} ticks pending"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the detectors together have applied `acknowledged` events (each event reaches
/// the one detector owning its partition), and no more; `before` were applied by processes
/// since stopped (their final checkpoints cover them).
async fn wait_applied(detectors: &[Service], before: u64, acknowledged: u64) {
    let mut progress_at = Instant::now();
    let mut last = 0;
    loop {
        let mut applied = before;
        for detector in detectors {
            applied += detector
                .metric("distillguard_bus_consumed_events_total")
                .await as u64;
        }
        if applied >= acknowledged {
            assert_eq!(applied, acknowledged, "every event applied exactly once");
            return;
        }
        if applied != last {
            (last, progress_at) = (applied, Instant::now());
        }
        assert!(
            progress_at.elapsed() < Duration::from_secs(90),
            "the detectors stopped at {applied} of {acknowledged} events applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a metric until it exceeds `above`.
async fn wait_metric_above(service: &Service, series: &str, above: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let value = service.metric(series).await;
        if value > above {
            return value;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The profiles stream sequence the linker's last committed checkpoint resumes after.
async fn linker_checkpoint_position(backend: &Backend) -> Option<i64> {
    let mut conn = sqlx::PgConnection::connect(&backend.url().unwrap())
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT log_position FROM checkpoint_manifest WHERE checkpoint_key = 'linker' \
         ORDER BY generation DESC LIMIT 1",
    )
    .fetch_optional(&mut conn)
    .await
    .unwrap()
    .flatten()
}

/// What happens to the linked run mid-campaign.
#[derive(Clone, Copy, PartialEq)]
enum LinkedFault {
    /// `kill -9` of the linker while the detectors keep publishing, then a restart.
    KillLinker,
    /// A detector stopped (SIGTERM) and started again while the linker runs.
    RestartDetector,
    /// `kill -9` of a detector mid-campaign while the linker runs, then a restart (it replays
    /// from its checkpoint and publishes the ticks after it again).
    KillDetector,
}

struct LinkedOutcome {
    findings: Vec<String>,
    acknowledged: u64,
    /// The linker's stream sequence when the fault hit, and its checkpoint's position then.
    read_at_fault: f64,
    checkpoint_at_fault: Option<i64>,
    incomplete_ticks: f64,
}

/// Two detectors and a linker through the campaign (posted to detector 0, which also ingests):
/// two thirds, a linker checkpoint, three more chunks scored, the fault, the rest.
async fn linked_run(dir: &Path, chunks: &[Vec<String>], fault: LinkedFault) -> LinkedOutcome {
    let backend = Backend::postgres(match fault {
        LinkedFault::KillLinker => "linkkill",
        LinkedFault::RestartDetector => "linkdet",
        LinkedFault::KillDetector => "linkdetkill",
    })
    .await;
    let configs = linked_configs("linked");
    let (backend_ref, configs_ref) = (&backend, &configs);
    let start = |i: usize| {
        let node_dir = dir.join(format!("node{i}"));
        async move { Service::start(&node_dir, backend_ref, &configs_ref[i]).await }
    };
    let mut detectors = vec![start(0).await, start(1).await];
    let mut linker = start(2).await;
    let cut = chunks.len() * 2 / 3;
    let mut acknowledged = post_all(&detectors[0], &chunks[..cut]).await;
    wait_metric_above(&linker, "distillguard_linker_ticks_scored_total", 0.0).await;
    // A linker checkpoint (every second), then reports it scores after it.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(linker_checkpoint_position(&backend).await.is_some());
    let scored = linker
        .metric("distillguard_linker_ticks_scored_total")
        .await;
    acknowledged += post_all(&detectors[0], &chunks[cut..cut + 3]).await;
    wait_metric_above(&linker, "distillguard_linker_ticks_scored_total", scored).await;
    let read_at_fault = linker.metric("distillguard_linker_stream_sequence").await;
    // Events applied by detector processes since stopped; None once one was killed (its restart
    // applies again what came after its checkpoint).
    let mut applied_before = Some(0);
    let checkpoint_at_fault = match fault {
        LinkedFault::KillLinker => {
            linker.kill();
            let checkpoint = linker_checkpoint_position(&backend).await;
            // The detectors go on publishing while the linker is down.
            acknowledged += post_all(&detectors[0], &chunks[cut + 3..cut + 5]).await;
            linker = start(2).await;
            checkpoint
        }
        LinkedFault::RestartDetector => {
            wait_applied(&detectors, 0, acknowledged).await;
            let detector = detectors.pop().unwrap();
            applied_before = Some(
                detector
                    .metric("distillguard_bus_consumed_events_total")
                    .await as u64,
            );
            detector.stop();
            // Detector 1's partitions wait in the stream meanwhile, and so every tick after.
            acknowledged += post_all(&detectors[0], &chunks[cut + 3..cut + 5]).await;
            detectors.push(start(1).await);
            linker_checkpoint_position(&backend).await
        }
        LinkedFault::KillDetector => {
            // Detector 1 dies while it applies and publishes the last three chunks.
            detectors.pop().unwrap().kill();
            applied_before = None;
            acknowledged += post_all(&detectors[0], &chunks[cut + 3..cut + 5]).await;
            detectors.push(start(1).await);
            linker_checkpoint_position(&backend).await
        }
    };
    acknowledged += post_all(&detectors[0], &chunks[cut + 5..]).await;

    // The detectors apply everything and stop (their last open tick stays unpublished, as one
    // node's stays unscored at a stop); the linker reads every report and stops.
    match applied_before {
        Some(before) => wait_applied(&detectors, before, acknowledged).await,
        None => {
            for detector in &detectors {
                wait_consumed(detector).await;
            }
        }
    }
    for detector in detectors {
        detector.stop();
    }
    wait_linked(&linker).await;
    let incomplete_ticks = linker
        .metric("distillguard_linker_incomplete_ticks_total")
        .await;
    linker.stop();
    let findings = stored_findings(dir, &backend).await;
    backend.drop().await;
    LinkedOutcome {
        findings,
        acknowledged,
        read_at_fault,
        checkpoint_at_fault,
        incomplete_ticks,
    }
}

/// Runs the campaign unbroken on one node and through two detectors and a linker with `fault`,
/// prints what the fault did (`what`), and checks what every linked fault must keep: every
/// acknowledged event, no tick given up, and the unbroken run's findings.
async fn linked_fault_keeps_the_unbroken_findings(fault: LinkedFault, what: &str) -> LinkedOutcome {
    let root = tempfile::tempdir().unwrap();
    let chunks = campaign(root.path());
    let expected = unbroken(&root.path().join("embedded"), &Backend::Sqlite, &chunks).await;
    let linked = linked_run(&root.path().join("linked"), &chunks, fault).await;
    eprintln!(
        "{what}: acknowledged {}, linker had read {} profiles messages, its checkpoint covered \
         {:?}; {} findings lines",
        linked.acknowledged,
        linked.read_at_fault,
        linked.checkpoint_at_fault,
        linked.findings.len()
    );
    assert!(expected.findings.iter().any(|l| l.contains(" true ")));
    assert!(expected.findings.iter().any(|l| l.starts_with("member ")));
    assert_eq!(linked.acknowledged, expected.acknowledged);
    assert_eq!(linked.incomplete_ticks, 0.0, "no report was lost");
    assert_eq!(linked.findings, expected.findings);
    linked
}

#[tokio::test]
async fn kill_nine_of_the_linker_mid_campaign_ends_with_the_unbroken_findings() {
    let linked =
        linked_fault_keeps_the_unbroken_findings(LinkedFault::KillLinker, "kill -9 (linker)").await;
    let restored_from = linked.checkpoint_at_fault.expect("a linker checkpoint");
    assert!(restored_from > 0, "the restart resumed from a checkpoint");
}

#[tokio::test]
async fn a_detector_restarted_while_the_linker_runs_ends_with_the_unbroken_findings() {
    linked_fault_keeps_the_unbroken_findings(
        LinkedFault::RestartDetector,
        "detector restart under a linker",
    )
    .await;
}

#[tokio::test]
async fn kill_nine_of_a_detector_under_the_linker_ends_with_the_unbroken_findings() {
    linked_fault_keeps_the_unbroken_findings(
        LinkedFault::KillDetector,
        "kill -9 (detector under a linker)",
    )
    .await;
}
