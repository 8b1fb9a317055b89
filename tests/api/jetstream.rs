//! `[bus] kind = "jetstream"` against real NATS: the machine's server at 127.0.0.1:4222 (each test
//! on a stream and subjects of its own), or, for the outage, a private `nats-server` this test
//! starts and stops on a free port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distillguard_core::event::ApiEvent;
use distillguard_core::finding::Report;
use distillguard_server::bus::BusKind;
use distillguard_server::Settings;
use serde_json::Value;

use crate::helpers::*;

const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// A stream (and subject prefix) unique to one test, deleted at the end.
struct TestStream {
    name: String,
    url: String,
}

impl TestStream {
    fn new(label: &str, url: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self {
            name: format!("DGTEST_{label}_{}_{nanos}", std::process::id()),
            url: url.to_owned(),
        }
    }

    fn settings(&self) -> Settings {
        let mut settings = test_settings();
        settings.bus.kind = BusKind::Jetstream;
        settings.bus.url = self.url.clone();
        settings.bus.stream = self.name.clone();
        settings.bus.subject_prefix = format!("dgtest.{}", self.name.to_ascii_lowercase());
        settings.bus.partition_count = 8;
        settings.bus.publish_timeout_ms = 1_000;
        settings.bus.profiles_stream = format!("{}_PROFILES", self.name);
        settings.bus.profiles_subject_prefix =
            format!("dgtest.{}_profiles", self.name.to_ascii_lowercase());
        settings
    }

    async fn delete(self) {
        let client = async_nats::connect(self.url.as_str()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let _ = jetstream.delete_stream(&self.name).await;
        let _ = jetstream
            .delete_stream(format!("{}_PROFILES", self.name))
            .await;
    }
}

/// Posts the events in log order, 2,000 a request, and returns how many were accepted.
async fn post_all(app: &TestApp, events: &[ApiEvent]) -> u64 {
    let mut accepted = 0;
    for chunk in events.chunks(2_000) {
        let lines: Vec<Value> = chunk
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        let response = app
            .post_events(ndjson(&lines), "application/x-ndjson")
            .await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{body}");
        accepted += body["accepted"].as_u64().unwrap();
    }
    accepted
}

/// Waits until the node has applied `count` events from the stream.
async fn wait_consumed(app: &TestApp, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let consumed = app.metric("distillguard_bus_consumed_events_total").await as u64;
        if consumed >= count {
            assert_eq!(consumed, count, "every event applied exactly once");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {consumed} of {count} events were applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn final_report(app: &TestApp) -> Report {
    let pipeline = app.pipeline.clone();
    tokio::task::spawn_blocking(move || pipeline.finish_blocking())
        .await
        .unwrap()
        .expect("the pipeline scores everything it was given")
}

fn flagged_accounts(report: &Report) -> Vec<&str> {
    let mut flagged: Vec<&str> = report
        .accounts
        .iter()
        .filter(|a| a.flagged)
        .map(|a| a.account_id.as_str())
        .collect();
    flagged.sort_unstable();
    flagged
}

#[tokio::test]
async fn a_simulated_day_through_jetstream_finds_exactly_what_the_embedded_pipeline_finds() {
    // Arrange
    let events = simulated_day();
    let embedded = spawn_app().await;
    post_all(&embedded, &events).await;
    let expected = final_report(&embedded).await;
    embedded.stop().await;
    let stream = TestStream::new("equal", SHARED_NATS);

    // Act
    let app = spawn_app_with(stream.settings()).await;
    let accepted = post_all(&app, &events).await;
    wait_consumed(&app, accepted).await;
    let actual = final_report(&app).await;
    app.stop().await;
    stream.delete().await;

    // Assert: same input order, so the same findings, scores included.
    assert_eq!(accepted, events.len() as u64);
    assert!(
        !flagged_accounts(&expected).is_empty(),
        "the day has flagged accounts"
    );
    assert!(
        expected.clusters.iter().any(|c| c.flagged),
        "the day has a flagged cluster"
    );
    assert_eq!(flagged_accounts(&actual), flagged_accounts(&expected));
    assert_eq!(actual.events, expected.events);
    assert_eq!(actual.accounts, expected.accounts);
    assert_eq!(actual.clusters, expected.clusters);
}

#[tokio::test]
async fn a_retried_request_is_counted_once_by_the_streams_duplicate_window() {
    // Arrange: two nodes publishing to one stream, so the local deduplicator cannot help.
    let stream = TestStream::new("dedup", SHARED_NATS);
    let mut settings = stream.settings();
    settings.bus.role = distillguard_server::bus::NodeRole::Ingest;
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(stream.settings()).await;
    let body = ndjson(&harvester_events("retry-acct", T0, 5));

    // Act
    let once = first
        .post_events(body.clone(), "application/x-ndjson")
        .await;
    let again = second.post_events(body, "application/x-ndjson").await;

    // Assert
    assert_eq!(once.status().as_u16(), 202);
    let again_status = again.status().as_u16();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again_status, 202);
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["duplicates"], 5, "{again}");
    wait_consumed(&second, 5).await;
    first.stop().await;
    second.stop().await;
    stream.delete().await;
}

#[tokio::test]
async fn a_message_that_is_not_an_event_is_passed_over_and_the_events_after_it_are_applied() {
    // Arrange: a node consuming a stream into which something other than ingest wrote garbage.
    let stream = TestStream::new("poison", SHARED_NATS);
    let settings = stream.settings();
    let prefix = settings.bus.subject_prefix.clone();
    let app = spawn_app_with(settings).await;
    let before = ndjson(&harvester_events("before-poison", T0, 5));
    let response = app.post_events(before, "application/x-ndjson").await;
    assert_eq!(response.status().as_u16(), 202);
    wait_consumed(&app, 5).await;
    let client = async_nats::connect(SHARED_NATS).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    for partition in [0, 3] {
        jetstream
            .publish(format!("{prefix}.{partition}"), "not an event".into())
            .await
            .unwrap()
            .await
            .expect("JetStream stores the foreign message");
    }

    // Act
    let later = ndjson(&harvester_events("after-poison", T0 + 60_000, 5));
    let response = app.post_events(later, "application/x-ndjson").await;

    // Assert: both foreign messages counted and skipped; what came after them is applied.
    assert_eq!(response.status().as_u16(), 202);
    wait_consumed(&app, 10).await;
    assert_eq!(
        app.metric("distillguard_bus_undecodable_messages_total")
            .await,
        2.0
    );
    app.stop().await;
    stream.delete().await;
}

/// A private NATS server with JetStream, on a free port with its store in a temporary directory.
struct PrivateNats {
    child: Child,
    port: u16,
    store: tempfile::TempDir,
}

impl PrivateNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, store.path());
        Self { child, port, store }
    }

    fn spawn(port: u16, store: &std::path::Path) -> Child {
        let binary = ["/usr/sbin/nats-server", "nats-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("nats-server is installed (.ci/run installs it)");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.child = Self::spawn(self.port, self.store.path());
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `/readyz` answers 200 (the node has connected to NATS).
async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.client.get(app.url("/readyz")).send().await.unwrap();
        if response.status().is_success() {
            return;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts one request until it is answered 202 (503s are retried, as a client would) and returns
/// how many 503s it met.
async fn post_until_accepted(app: &TestApp, events: &[Value]) -> u32 {
    let mut refusals = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app
            .post_events(ndjson(events), "application/x-ndjson")
            .await;
        match response.status().as_u16() {
            202 => return refusals,
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refusals += 1;
            }
            other => panic!("unexpected status {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "never accepted after NATS returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_nats_stopped_ingest_answers_503_and_nothing_is_lost_once_it_returns() {
    // Arrange
    let mut nats = PrivateNats::start();
    let stream = TestStream::new("outage", &nats.url());
    let app = spawn_app_with(stream.settings()).await;
    // The simulated harvester's requests (simulated once: a day takes seconds in a debug build),
    // spread over three accounts, one minute apart, four a request.
    let mut events = harvester_events("outage", T0, 120);
    for (i, event) in events.iter_mut().enumerate() {
        event["account_id"] = Value::from(format!("outage-{}", i % 3));
        event["timestamp"] = Value::from(T0 + i as i64 * 60_000);
    }
    let requests: Vec<Vec<Value>> = events.chunks(4).map(<[Value]>::to_vec).collect();

    wait_ready(&app).await;

    // Act: a third of the traffic, NATS down for the next third, back for the rest.
    for request in &requests[..10] {
        assert_eq!(post_until_accepted(&app, request).await, 0);
    }
    nats.stop();
    let mut refused_while_down = 0;
    for request in &requests[10..20] {
        let response = app
            .post_events(ndjson(request), "application/x-ndjson")
            .await;
        if response.status().as_u16() == 503 {
            refused_while_down += 1;
        }
    }
    let readiness = app.client.get(app.url("/readyz")).send().await.unwrap();
    let ready_while_down = readiness.status().as_u16();
    nats.restart();
    // The client retries what was refused, then sends the rest.
    for request in &requests[10..] {
        post_until_accepted(&app, request).await;
    }

    // Assert
    assert_eq!(
        refused_while_down, 10,
        "every request is refused while NATS is down"
    );
    assert_eq!(ready_while_down, 503, "not ready while NATS is down");
    wait_consumed(&app, 30 * 4).await;
    let report = final_report(&app).await;
    assert_eq!(
        report.events + report.late_events + report.ahead_events,
        120
    );
    app.stop().await;
    stream.delete().await;
}

/// Waits until the nodes together have applied `count` events from the stream.
async fn wait_consumed_by_all(apps: &[&TestApp], count: u64) {
    let mut last_total = 0;
    let mut last_progress = Instant::now();
    loop {
        let mut total = 0;
        for app in apps {
            total += app.metric("distillguard_bus_consumed_events_total").await as u64;
        }
        if total >= count {
            assert_eq!(total, count, "every event applied exactly once");
            return;
        }
        if total > last_total {
            (last_total, last_progress) = (total, Instant::now());
        }
        assert!(
            last_progress.elapsed() < Duration::from_secs(120),
            "stuck at {total} of {count} events applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a detector owning `settings`' partitions finds in the stream `events`: its own events
/// applied, and every other event's timestamp moving its clock, so that it ticks where one node
/// would (the single-threaded engine, fed as the consumer feeds the pipeline).
fn detector_report(settings: &Settings, events: &[ApiEvent]) -> Report {
    use distillguard_core::engine::Engine;
    let owned = settings.bus.owned_partitions().unwrap();
    let config = distillguard_server::app::pipeline_config(settings);
    let mut engine = Engine::new(config.engine, config.shards);
    for event in events {
        let partition = distillguard_server::bus::partition_for(
            &event.account_id,
            settings.bus.partition_count,
        );
        if owned.contains(&partition) {
            engine.process(event);
        } else {
            engine.process_elsewhere(event.timestamp);
        }
    }
    engine.finish();
    engine.report()
}

#[tokio::test]
async fn two_detectors_sharing_one_database_each_restore_their_own_state() {
    // Arrange: an ingest node and two detectors splitting the partitions, on one database.
    use distillguard_server::bus::NodeRole;
    let events = simulated_day();
    let db = PgDatabase::create("bus_split").await;
    let stream = TestStream::new("split", SHARED_NATS);
    let node = |role: NodeRole, partitions: &str| {
        let mut settings = stream.settings();
        settings.database_url = db.settings().database_url;
        settings.bus.role = role;
        settings.bus.partitions = partitions.into();
        settings
    };
    let (low, high) = (
        node(NodeRole::Detector, "0-3"),
        node(NodeRole::Detector, "share:1/2"),
    );
    let front = spawn_app_with(node(NodeRole::Ingest, "all")).await;
    let (first, second) = (
        spawn_app_with(low.clone()).await,
        spawn_app_with(high.clone()).await,
    );

    // Act: the day through the ingest node; both detectors stop (their final checkpoints) and
    // start again on the same database.
    let accepted = post_all(&front, &events).await;
    wait_consumed_by_all(&[&first, &second], accepted).await;
    front.stop().await;
    first.stop().await;
    second.stop().await;
    let (first, second) = (
        spawn_app_with(low.clone()).await,
        spawn_app_with(high.clone()).await,
    );
    let restored = [final_report(&first).await, final_report(&second).await];
    first.stop().await;
    second.stop().await;
    let store = distillguard_store::Store::connect(Some(&db.url()), std::path::Path::new("."))
        .await
        .unwrap();
    let mut keys = Vec::new();
    for settings in [&low, &high] {
        let key = settings.bus.checkpoint_key().unwrap().unwrap();
        keys.push((key.clone(), store.latest_checkpoint(&key).await.unwrap()));
    }
    let single_node = store.latest_checkpoint("engine").await.unwrap();
    store.close().await;
    stream.delete().await;
    db.drop().await;

    // Assert: each restored node holds exactly its share of the day, judged on one clock for
    // the whole stream.
    assert_eq!(accepted, events.len() as u64);
    for (settings, actual) in [&low, &high].into_iter().zip(&restored) {
        let expected = detector_report(settings, &events);
        assert!(!expected.accounts.is_empty(), "each share has findings");
        assert_eq!(actual.events, expected.events);
        assert_eq!(actual.accounts, expected.accounts);
        assert_eq!(actual.clusters, expected.clusters);
    }
    assert_ne!(keys[0].0, keys[1].0, "each detector has its own key");
    assert!(
        keys.iter().all(|(_, manifest)| manifest.is_some()),
        "{keys:?}"
    );
    assert!(single_node.is_none(), "the ingest node keeps no checkpoint");
}

/// What the store holds about one subject, as an analyst sees it.
type StoredFinding = (
    String,
    u64,
    distillguard_core::finding::Severity,
    bool,
    Option<String>,
    Option<i64>,
    String,
);

/// Every finding in the database (accounts and clusters), by subject; scores as bits, so that
/// equal means bit-equal.
async fn stored_findings(url: &str) -> Vec<StoredFinding> {
    use distillguard_store::{ListFilter, PageRequest, SortKey, SubjectKind};
    let store = distillguard_store::Store::connect(Some(url), std::path::Path::new("."))
        .await
        .unwrap();
    let mut rows = Vec::new();
    for kind in [SubjectKind::Account, SubjectKind::Cluster] {
        let mut after = None;
        loop {
            let page = store
                .list(
                    kind,
                    &ListFilter::default(),
                    &PageRequest {
                        sort: SortKey::Created,
                        limit: 500,
                        after,
                    },
                )
                .await
                .unwrap();
            for f in page.items {
                rows.push((
                    format!("{}:{}", kind.as_str(), f.subject.id),
                    f.score.to_bits(),
                    f.severity,
                    f.flagged,
                    f.cluster_id,
                    f.member_count,
                    f.last_seen.to_rfc3339(),
                ));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    store.close().await;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// The simulated day through one node (role `all`) over JetStream: its stored findings once the
/// last tick is scored.
async fn one_node_findings(events: &[ApiEvent], label: &str) -> Vec<StoredFinding> {
    let db = PgDatabase::create(label).await;
    let stream = TestStream::new(label, SHARED_NATS);
    let mut settings = stream.settings();
    settings.database_url = db.settings().database_url;
    let app = spawn_app_with(settings).await;
    let accepted = post_all(&app, events).await;
    wait_consumed(&app, accepted).await;
    final_report(&app).await;
    app.stop().await;
    stream.delete().await;
    let findings = stored_findings(&db.url()).await;
    db.drop().await;
    findings
}

/// An ingest node, three detectors handing their ticks to a linker, and the linker, on one
/// database.
struct LinkedCluster {
    front: Settings,
    detectors: Vec<Settings>,
    linker: Settings,
}

impl LinkedCluster {
    fn new(stream: &TestStream, db: &PgDatabase) -> Self {
        use distillguard_server::bus::NodeRole;
        let node = |role: NodeRole, partitions: &str| {
            let mut settings = stream.settings();
            settings.database_url = db.settings().database_url;
            settings.bus.role = role;
            settings.bus.partitions = partitions.into();
            settings.bus.linker = role == NodeRole::Detector;
            // Small parts, so that reports travel in several messages and interleave.
            settings.bus.profile_part_bytes = 16 * 1024;
            settings
        };
        Self {
            front: node(NodeRole::Ingest, "all"),
            detectors: (0..3)
                .map(|i| node(NodeRole::Detector, &format!("share:{i}/3")))
                .collect(),
            linker: node(NodeRole::Linker, "all"),
        }
    }
}

/// Waits until the linker has read every message of the profiles stream and holds no tick
/// waiting for reports.
async fn wait_linker_caught_up(linker: &TestApp, settings: &Settings) {
    let client = async_nats::connect(SHARED_NATS).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut stream = jetstream
            .get_stream(&settings.bus.profiles_stream)
            .await
            .unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let read = linker.metric("distillguard_linker_stream_sequence").await as u64;
        let pending = linker.metric("distillguard_linker_pending_ticks").await;
        if last > 0 && read == last && pending == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the linker read {read} of {last} profiles messages, {pending} ticks pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every detector closes its last tick (and so publishes it) and reports nothing itself.
async fn finish_detectors(detectors: &[TestApp]) {
    for detector in detectors {
        let report = final_report(detector).await;
        assert!(
            report.accounts.is_empty(),
            "a detector handing on its ticks scores nothing"
        );
        assert!(
            detector
                .metric("distillguard_bus_profile_reports_published_total")
                .await
                > 0.0
        );
    }
}

async fn start_all(settings: &[Settings]) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for settings in settings {
        apps.push(spawn_app_with(settings.clone()).await);
    }
    apps
}

async fn stop_all(apps: Vec<TestApp>) {
    for app in apps {
        app.stop().await;
    }
}

/// Stops a linked cluster's nodes (the linker first), deletes its stream and returns the
/// findings its database holds, dropping the database.
async fn stop_linked(
    linker: TestApp,
    detectors: Vec<TestApp>,
    front: TestApp,
    stream: TestStream,
    db: PgDatabase,
) -> Vec<StoredFinding> {
    linker.stop().await;
    stop_all(detectors).await;
    front.stop().await;
    stream.delete().await;
    let stored = stored_findings(&db.url()).await;
    db.drop().await;
    stored
}

/// The tick reports each detector published to the profiles stream.
async fn reports_published(detectors: &[TestApp]) -> Vec<f64> {
    let mut published = Vec::new();
    for detector in detectors {
        published.push(
            detector
                .metric("distillguard_bus_profile_reports_published_total")
                .await,
        );
    }
    published
}

/// The partition share (of three) an account's partition falls in.
fn detector_of(account: &str, settings: &[Settings]) -> usize {
    let account = distillguard_core::event::AccountId::parse(account).unwrap();
    let partition = distillguard_server::bus::partition_for(&account, 8);
    settings
        .iter()
        .position(|s| s.bus.owned_partitions().unwrap().contains(&partition))
        .unwrap()
}

#[tokio::test]
async fn three_detectors_and_a_linker_store_exactly_the_findings_of_one_node() {
    // Arrange
    let events = simulated_day();
    let expected = one_node_findings(&events, "linkone").await;
    let db = PgDatabase::create("linked").await;
    let stream = TestStream::new("linked", SHARED_NATS);
    let cluster = LinkedCluster::new(&stream, &db);
    let front = spawn_app_with(cluster.front.clone()).await;
    let detectors = start_all(&cluster.detectors).await;
    let linker = spawn_app_with(cluster.linker.clone()).await;

    // Act
    let accepted = post_all(&front, &events).await;
    let refs: Vec<&TestApp> = detectors.iter().collect();
    wait_consumed_by_all(&refs, accepted).await;
    finish_detectors(&detectors).await;
    wait_linker_caught_up(&linker, &cluster.linker).await;
    let parts = linker.metric("distillguard_linker_reports_total").await;
    let actual = stop_linked(linker, detectors, front, stream, db).await;

    // Assert: a flagged cluster has members on several detectors, and the store holds the same
    // findings, scores to the bit, as one node's.
    assert!(parts > 0.0);
    let spread = expected
        .iter()
        .filter(|f| f.0.starts_with("account:") && f.3)
        .filter_map(|f| {
            Some((
                f.4.clone()?,
                detector_of(&f.0["account:".len()..], &cluster.detectors),
            ))
        })
        .fold(
            std::collections::BTreeMap::<String, std::collections::BTreeSet<usize>>::new(),
            |mut m, (c, d)| {
                m.entry(c).or_default().insert(d);
                m
            },
        );
    assert!(
        spread.values().any(|detectors| detectors.len() > 1),
        "a flagged cluster spans detectors: {spread:?}"
    );
    assert!(expected.iter().any(|f| f.0.starts_with("cluster:") && f.3));
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn a_linker_restarted_mid_day_stores_exactly_the_findings_of_one_node() {
    // Arrange
    let events = simulated_day();
    let expected = one_node_findings(&events, "relinkone").await;
    let db = PgDatabase::create("relinked").await;
    let stream = TestStream::new("relinked", SHARED_NATS);
    let cluster = LinkedCluster::new(&stream, &db);
    let front = spawn_app_with(cluster.front.clone()).await;
    let detectors = start_all(&cluster.detectors).await;
    let linker = spawn_app_with(cluster.linker.clone()).await;
    let (morning, afternoon) = events.split_at(events.len() / 2);

    // Act: the linker stops after the morning and misses the first part of the afternoon's
    // reports, then starts again from its checkpoint.
    let mut accepted = post_all(&front, morning).await;
    let refs: Vec<&TestApp> = detectors.iter().collect();
    wait_consumed_by_all(&refs, accepted).await;
    let read_before = linker.metric("distillguard_linker_reports_total").await;
    linker.stop().await;
    let (early, late) = afternoon.split_at(afternoon.len() / 2);
    accepted += post_all(&front, early).await;
    wait_consumed_by_all(&refs, accepted).await;
    let linker = spawn_app_with(cluster.linker.clone()).await;
    accepted += post_all(&front, late).await;
    wait_consumed_by_all(&refs, accepted).await;
    finish_detectors(&detectors).await;
    wait_linker_caught_up(&linker, &cluster.linker).await;
    let read_after = linker.metric("distillguard_linker_reports_total").await;
    let published: f64 = reports_published(&detectors).await.iter().sum();
    let actual = stop_linked(linker, detectors, front, stream, db).await;

    // Assert: the restarted linker resumed from its checkpoint (it did not read the morning's
    // reports again), and the store holds one node's findings.
    assert_eq!(accepted, events.len() as u64);
    assert!(read_before > 0.0, "the first linker read reports");
    assert!(
        read_after < published,
        "the restarted linker read {read_after} of {published} reports: it started over"
    );
    assert!(expected.iter().any(|f| f.0.starts_with("cluster:") && f.3));
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
}

/// Deletes, as `max_age` would, the first part of a report of several parts from the middle of
/// the profiles stream; returns its message id.
async fn delete_a_report_part(settings: &Settings) -> String {
    let client = async_nats::connect(SHARED_NATS).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream
        .get_stream(&settings.bus.profiles_stream)
        .await
        .unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    for sequence in last / 2..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let Some((_, part)) = id.rsplit_once(':') else {
            continue;
        };
        if part.starts_with("1/") && part != "1/1" {
            assert!(stream.delete_message(sequence).await.unwrap());
            return id;
        }
    }
    panic!("no report of several parts in the second half of the profiles stream");
}

#[tokio::test]
async fn a_report_part_lost_from_the_profiles_stream_holds_nothing_back_and_is_counted() {
    // Arrange: three detectors publish a day's reports; one part of one report is deleted
    // before the linker reads it (a linker down longer than the stream's max_age).
    let events = simulated_day();
    let db = PgDatabase::create("linklost").await;
    let stream = TestStream::new("linklost", SHARED_NATS);
    let cluster = LinkedCluster::new(&stream, &db);
    let front = spawn_app_with(cluster.front.clone()).await;
    let detectors = start_all(&cluster.detectors).await;
    let accepted = post_all(&front, &events).await;
    let refs: Vec<&TestApp> = detectors.iter().collect();
    wait_consumed_by_all(&refs, accepted).await;
    finish_detectors(&detectors).await;
    let published = reports_published(&detectors).await;
    let lost = delete_a_report_part(&cluster.linker).await;

    // Act
    let linker = spawn_app_with(cluster.linker.clone()).await;
    wait_linker_caught_up(&linker, &cluster.linker).await;
    let scored = linker
        .metric("distillguard_linker_ticks_scored_total")
        .await;
    let incomplete = linker
        .metric("distillguard_linker_incomplete_ticks_total")
        .await;
    let refused = linker
        .metric("distillguard_linker_refused_reports_total")
        .await;
    let stored = stop_linked(linker, detectors, front, stream, db).await;

    // Assert: every tick scored (one report a tick from each detector), the one missing a
    // report among them, nothing refused, and the day's flagged cluster still found.
    assert!(
        published.iter().all(|p| *p == published[0]),
        "{published:?}"
    );
    assert_eq!(
        scored, published[0],
        "every tick scored, after {lost} was lost"
    );
    assert_eq!(incomplete, 1.0);
    assert_eq!(refused, 0.0);
    assert!(stored.iter().any(|f| f.0.starts_with("cluster:") && f.3));
}
