//! Spawning the app and building requests.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use distillguard_server::{Application, Settings};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use tokio::sync::oneshot;

pub const INGEST_TOKEN: &str = "ingest-token-for-tests";
pub const ANALYST_TOKEN: &str = "analyst-token-for-tests";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const ENFORCER_TOKEN: &str = "enforcer-token-for-tests";

/// A PostgreSQL database that exists for one test.
pub struct PgDatabase {
    pub admin_url: String,
    pub name: String,
}

impl PgDatabase {
    pub async fn create(label: &str) -> Self {
        let admin_url = std::env::var("DATABASE_URL").expect(
            "DATABASE_URL must be set for the PostgreSQL tests (postgres://postgres@127.0.0.1:5432/test)",
        );
        let name = format!("dg_{label}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        admin
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        Self { admin_url, name }
    }

    pub fn url(&self) -> String {
        let (base, _) = self
            .admin_url
            .rsplit_once('/')
            .expect("a database in the URL");
        format!("{base}/{}", self.name)
    }

    /// [`test_settings`] on this database.
    pub fn settings(&self) -> Settings {
        Settings {
            database_url: Some(distillguard_server::config::Secret::new(self.url())),
            ..test_settings()
        }
    }

    pub async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        admin
            .execute(format!("DROP DATABASE {} WITH (FORCE)", self.name).as_str())
            .await
            .unwrap();
    }
}

/// A running app; dropping it stops the server.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub pipeline: distillguard_server::pipeline::Pipeline,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Posts a body to `/v1/events` as the ingest role.
    pub async fn post_events(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request failed")
    }

    /// The value of one metric series from `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
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

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task panicked")
                .expect("server failed");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Settings for tests: a free loopback port, tokens for every role, a private data dir.
pub fn test_settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth_tokens: vec![
            format!("ingest:{INGEST_TOKEN}"),
            format!("analyst:{ANALYST_TOKEN}"),
            format!("admin:{ADMIN_TOKEN}"),
            format!("enforcer:{ENFORCER_TOKEN}"),
        ],
        data_dir: std::env::temp_dir().join(format!(
            "distillguard-test-{}-{}",
            std::process::id(),
            unique()
        )),
        ..Settings::default()
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("app builds");
    let address = app.local_addr();
    let pipeline = app.state().pipeline.clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| format!("{e:#}"))
    });
    TestApp {
        address,
        client: reqwest::Client::new(),
        pipeline,
        shutdown: Some(shutdown),
        task: Some(task),
    }
}

/// A valid canonical event for `account` at `epoch_ms`.
pub fn event(account: &str, epoch_ms: i64, request_id: &str) -> Value {
    json!({
        "timestamp": epoch_ms,
        "account_id": account,
        "model": "gpt-4o",
        "request_id": request_id,
        "client_ip": "203.0.113.9",
        "user_agent": "OpenAI/Python 1.54.0",
        "prompt": varied_prompt(request_id),
        "params": {"temperature": 0.7, "max_tokens": 512},
        "usage": {"prompt_tokens": 20, "completion_tokens": 300},
        "status": 200
    })
}

/// A prompt on subjects unique to `seed`: the detectors judge harvesting partly by how broad a
/// stream's subject vocabulary is, so test traffic must not repeat one fixed sentence.
pub fn varied_prompt(seed: &str) -> String {
    let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "Explain how {} relates to {} and {}, step by step.",
        subject_word(h & 0xff_ffff),
        subject_word((h >> 24) & 0xff_ffff),
        subject_word(h >> 48)
    )
}

/// A letters-only word of at least five letters, unique to `n`.
pub fn subject_word(n: u64) -> String {
    let mut n = n + 26 * 26 * 26;
    let mut word = String::from("zu");
    while n > 0 {
        word.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    word
}

pub fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub const T0: i64 = 1_764_334_800_000; // 2025-11-28T13:00:00Z

/// The simulator's bulk harvester for one day (seed 11, 100-account scenario): realistic prompts,
/// timing and parameters, flagged on its own within minutes of event time.
pub fn simulated_harvester() -> Vec<distillguard_core::event::ApiEvent> {
    let (mut events, labels) = simulated_day_with_labels();
    let harvester = labels
        .iter()
        .find(|(_, label)| label.archetype == "bulk_harvest")
        .map(|(account, _)| account.clone())
        .expect("the scenario has a bulk harvester");
    events.retain(|e| e.account_id.as_str() == harvester);
    events
}

/// The same simulated day and the accounts of its hydra campaign: ten accounts created in one
/// burst, paying with a few shared cards through a shared proxy pool, that split one harvesting
/// job evenly, so that none stands out alone.
pub fn simulated_hydra_day() -> (Vec<distillguard_core::event::ApiEvent>, Vec<String>) {
    let (events, labels) = simulated_day_with_labels();
    let hydra: Vec<String> = labels
        .iter()
        .filter(|(_, label)| label.archetype == "hydra_cluster")
        .map(|(account, _)| account.clone())
        .collect();
    assert!(hydra.len() >= 5, "the scenario has a hydra campaign");
    (events, hydra)
}

/// The same simulated day, the reseller account that hides one harvesting end user among its
/// customers, and that end user's name.
pub fn simulated_reseller_hidden_day() -> (Vec<distillguard_core::event::ApiEvent>, String, String)
{
    let (events, labels) = simulated_day_with_labels();
    let (account, label) = labels
        .iter()
        .find(|(_, label)| label.archetype == "reseller_hidden")
        .expect("the scenario has a reseller hiding a harvester");
    let end_user = label
        .end_users
        .first()
        .expect("the label names the end user");
    (events, account.clone(), end_user.clone())
}

/// One simulated day of a 100-account population (seed 11), in log order.
pub fn simulated_day() -> Vec<distillguard_core::event::ApiEvent> {
    simulated_day_with_labels().0
}

fn simulated_day_with_labels() -> (
    Vec<distillguard_core::event::ApiEvent>,
    distillguard_sim::Labels,
) {
    use distillguard_sim::{simulate, PromptBook, Scenario, SimError};
    let scenario = Scenario {
        seed: 11,
        accounts: 100,
        days: 1,
        ..Scenario::default()
    };
    let mut events = Vec::new();
    let summary = simulate(&scenario, &PromptBook::builtin(), |event| {
        events.push(event.clone());
        Ok::<(), SimError>(())
    })
    .expect("the scenario simulates");
    (events, summary.labels)
}

/// `count` of the simulated harvester's requests as canonical JSON, renamed to `account`,
/// shifted to start at `start_ms`, with request ids unique to this call.
pub fn harvester_events(account: &str, start_ms: i64, count: usize) -> Vec<Value> {
    let events = simulated_harvester();
    let first = events[0].timestamp.epoch_ms();
    events
        .iter()
        .take(count)
        .enumerate()
        .map(|(i, e)| {
            let mut json = serde_json::to_value(e).expect("events serialise");
            json["account_id"] = Value::from(account);
            json["timestamp"] = Value::from(start_ms + e.timestamp.epoch_ms() - first);
            json["request_id"] = Value::from(format!("{account}-{start_ms}-{i}"));
            json
        })
        .collect()
}

/// Lines per request: a few MB each, well under the body limit.
const CHUNK_LINES: usize = 4_000;

/// Posts the events as one NDJSON request and asserts it was accepted (202).
pub async fn post_accepted(app: &TestApp, events: &[Value]) {
    let response = app
        .post_events(ndjson(events), "application/x-ndjson")
        .await;
    assert_eq!(response.status().as_u16(), 202);
}

pub async fn analyst_get(app: &TestApp, path: &str) -> (u16, Value) {
    get(app, path, ANALYST_TOKEN).await
}

/// Posts the events in log order and waits until the pipeline has scored all of them.
pub async fn ingest_and_drain(app: &TestApp, events: &[distillguard_core::event::ApiEvent]) {
    for chunk in events.chunks(CHUNK_LINES) {
        let lines: Vec<Value> = chunk
            .iter()
            .map(|e| serde_json::to_value(e).expect("events serialise"))
            .collect();
        let response = app
            .post_events(ndjson(&lines), "application/x-ndjson")
            .await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
    drain(app).await;
}

/// Closes the pipeline's input and waits until it has scored everything queued (a final tick).
pub async fn drain(app: &TestApp) {
    let pipeline = app.pipeline.clone();
    tokio::task::spawn_blocking(move || pipeline.finish_blocking())
        .await
        .unwrap()
        .expect("the pipeline scores everything queued");
}

/// Reads `path` until `ready` holds (the store writes findings shortly after they are scored).
/// Gives up after [`PATIENCE`]: a loaded CI machine runs the suite's tests two at a time.
pub async fn wait_for(app: &TestApp, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        let (status, body) = analyst_get(app, path).await;
        if status == 200 && ready(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never got ready; last answer: {last}");
}

/// How long the wait helpers poll before failing the test.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .request(method, app.url(path))
        .bearer_auth(ANALYST_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// How many requests [`ingest_busy_account`] sends.
pub const BUSY_ACCOUNT_EVENTS: usize = 300;

/// An hour or so of the simulator's bulk harvester under the name `account`: it gets flagged.
pub async fn ingest_busy_account(app: &TestApp, account: &str, start_ms: i64) {
    let events = harvester_events(account, start_ms, BUSY_ACCOUNT_EVENTS);
    let response = app
        .post_events(ndjson(&events), "application/x-ndjson")
        .await;
    assert_eq!(
        response.status().as_u16(),
        202,
        "{:?}",
        response.text().await
    );
}

/// The account's first finding, as soon as the review API serves one (an early tick's score).
pub async fn wait_for_account(app: &TestApp, account: &str) -> Value {
    wait_for(app, &format!("/v1/accounts/{account}"), |_| true).await
}
