//! `distillguard bench`: drives a running server over HTTP with NDJSON batches and reports
//! throughput, batch latency and the server's peak memory (see `docs/evaluation.md`).
//!
//! Loopback only, and bounded: it stops at `--duration-secs` or `--max-batches`, whichever
//! comes first. The events are prepared before the clock starts; each pass over them shifts the
//! timestamps forward and renames the request ids, so the server sees new traffic rather than
//! duplicates.
//!
//! Concurrent batches reach the server slightly out of order, so the event time they span must
//! stay well inside the server's allowed lateness or the bench would measure the late-event path.
//! By default the timeline is compressed so that all batches in flight cover at most one minute of
//! event time (`--time-scale` overrides it); the server's late-event counter is reported.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use distillguard_core::time::EventTime;
use distillguard_sim::{simulate, PromptBook, Scenario, SimError};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;
use serde_json::Value;

use super::cpu::{per_cpu_second, CpuTime};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Base URL of the server; must be a loopback address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token for `/v1/events`.
    #[arg(long, env = "DISTILLGUARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// NDJSON traffic to send (gzipped or not); when absent, the first `--events` of the default
    /// simulated scenario (seed 1, 2,000 accounts).
    #[arg(long)]
    pub traffic: Option<PathBuf>,
    /// Events to hold in memory (read from `--traffic` or simulated).
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 20.0)]
    pub duration_secs: f64,
    /// Hard cap on batches sent, whatever the duration.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_batches: u64,
    /// Events per POST.
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: usize,
    /// Gzip each batch (`Content-Encoding: gzip`).
    #[arg(long)]
    pub gzip: bool,
    /// Attempts per batch when the server answers 429/503.
    #[arg(long, default_value_t = 8)]
    pub max_retries: u32,
    /// How often to scrape `/metrics` for `process_resident_memory_bytes`.
    #[arg(long, default_value_t = 500)]
    pub metrics_interval_ms: u64,
    /// Divide the events' time offsets by this factor (1 keeps the original spacing); by default
    /// chosen so the batches in flight span at most one minute of event time.
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give every event sent an account id never seen before (`flood-<pass>-<n>`): a flood of
    /// distinct accounts, to measure memory against the caps (`docs/evaluation.md`).
    #[arg(long)]
    pub distinct_accounts: bool,
}

/// How prepared events map onto the timeline of one pass.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    origin: i64,
    scale: f64,
    /// Event time between the starts of two passes.
    pass_ms: i64,
    /// Moves the whole run past what the server has already seen.
    offset_ms: i64,
}

impl Timeline {
    fn new(events: &[Prepared], in_flight: usize, forced: Option<f64>) -> Self {
        let origin = events.iter().map(|e| e.timestamp_ms).min().unwrap_or(0);
        let last = events.iter().map(|e| e.timestamp_ms).max().unwrap_or(0);
        let span = (last - origin).max(1) as f64;
        let window = span * in_flight as f64 / events.len().saturating_sub(1).max(1) as f64;
        let scale = forced.unwrap_or(window / 60_000.0).max(1.0);
        Self {
            origin,
            scale,
            pass_ms: (span / scale) as i64 + 60_000,
            offset_ms: 0,
        }
    }

    /// Starts the run an hour past the server's watermark, so a second bench against the same
    /// server is not all late events.
    fn after(mut self, watermark_ms: Option<i64>) -> Self {
        if let Some(watermark) = watermark_ms {
            self.offset_ms = (watermark + 3_600_000 - self.origin).max(0);
        }
        self
    }

    fn at(&self, timestamp_ms: i64, pass: u64) -> i64 {
        self.offset_ms
            + self.origin
            + ((timestamp_ms - self.origin) as f64 / self.scale) as i64
            + self.pass_ms * pass as i64
    }
}

/// One prepared event: its time and the rest of its JSON object, without `timestamp` and
/// `request_id`, starting after the opening brace.
struct Prepared {
    timestamp_ms: i64,
    tail: Vec<u8>,
    /// The account id was taken out: each send gets a new one (`--distinct-accounts`).
    flood: bool,
}

fn prepare(value: Value) -> anyhow::Result<Prepared> {
    let Value::Object(mut object) = value else {
        bail!("an event must be a JSON object");
    };
    let timestamp: EventTime = serde_json::from_value(
        object
            .remove("timestamp")
            .context("event without timestamp")?,
    )?;
    object.remove("request_id");
    let rest = serde_json::to_vec(&Value::Object(object))?;
    let tail = if rest.len() > 2 {
        rest[1..].to_vec()
    } else {
        b"}".to_vec()
    };
    Ok(Prepared {
        timestamp_ms: timestamp.epoch_ms(),
        tail,
        flood: false,
    })
}

/// An event whose account id is replaced at every send.
fn prepare_flood(value: Value) -> anyhow::Result<Prepared> {
    let mut value = value;
    if let Value::Object(object) = &mut value {
        object.remove("account_id");
    }
    Ok(Prepared {
        flood: true,
        ..prepare(value)?
    })
}

fn load_events(args: &BenchArgs) -> anyhow::Result<Vec<Prepared>> {
    let prepare = if args.distinct_accounts {
        prepare_flood
    } else {
        prepare
    };
    let mut events = Vec::with_capacity(args.events.min(1 << 20));
    if let Some(path) = &args.traffic {
        let mut reader = super::eval::open_maybe_gzip(path)?;
        let mut line = String::new();
        while events.len() < args.events {
            line.clear();
            if std::io::BufRead::read_line(&mut reader, &mut line)? == 0 {
                break;
            }
            if !line.trim().is_empty() {
                events.push(prepare(serde_json::from_str(&line)?)?);
            }
        }
    } else {
        // The default evaluation scenario (2,000 accounts, one day); the first `--events` of it.
        let scenario = Scenario::default();
        let limit = args.events;
        let _ = simulate(&scenario, &PromptBook::builtin(), |event| {
            if events.len() < limit {
                let value =
                    serde_json::to_value(event).map_err(|e| SimError::Scenario(e.to_string()))?;
                events.push(prepare(value).map_err(|e| SimError::Scenario(e.to_string()))?);
            }
            Ok::<(), SimError>(())
        })?;
    }
    if events.is_empty() {
        bail!("no events to send");
    }
    Ok(events)
}

/// Builds batch `index`: pass `index / batches_per_pass` over the events, shifted in time.
fn build_batch(
    events: &[Prepared],
    timeline: &Timeline,
    batch_size: usize,
    index: u64,
    buffer: &mut Vec<u8>,
) -> usize {
    let per_pass = events.len().div_ceil(batch_size) as u64;
    let pass = index / per_pass;
    let first = ((index % per_pass) as usize) * batch_size;
    buffer.clear();
    let slice = &events[first..(first + batch_size).min(events.len())];
    for (offset, event) in slice.iter().enumerate() {
        let at =
            EventTime::from_epoch_ms(timeline.at(event.timestamp_ms, pass)).unwrap_or_default();
        let _ = write!(
            buffer,
            "{{\"timestamp\":\"{at}\",\"request_id\":\"bench-{pass}-{}\",",
            first + offset
        );
        if event.flood {
            let _ = write!(
                buffer,
                "\"account_id\":\"flood-{pass}-{}\",",
                first + offset
            );
        }
        buffer.extend_from_slice(&event.tail);
        buffer.push(b'\n');
    }
    slice.len()
}

/// Seconds from a `Retry-After` header (delta-seconds form only; dates fall back to backoff).
fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The first sample of an unlabelled series in a Prometheus text exposition.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(name))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .next()
}

fn resident_memory(metrics: &str) -> Option<f64> {
    series(metrics, "process_resident_memory_bytes")
}

async fn scrape(client: &reqwest::Client, url: &reqwest::Url, name: &str) -> Option<f64> {
    let text = client
        .get(url.clone())
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    series(&text, name)
}

async fn server_cpu(client: &reqwest::Client, url: &reqwest::Url) -> Option<f64> {
    scrape(client, url, "process_cpu_seconds_total").await
}

async fn late_events(client: &reqwest::Client, url: &reqwest::Url) -> Option<f64> {
    scrape(client, url, "distillguard_late_events_total").await
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    Some(sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1_000.0)
}

fn require_loopback(url: &reqwest::Url) -> anyhow::Result<()> {
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("bench only targets loopback addresses, not {url}");
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub struct BenchResult {
    pub url: String,
    pub concurrency: usize,
    pub batch_size: usize,
    pub gzip: bool,
    pub elapsed_secs: f64,
    pub batches: u64,
    pub events: u64,
    pub events_per_sec: f64,
    /// Uncompressed NDJSON megabytes (10^6) per second accepted by the server.
    pub mb_per_sec: f64,
    pub wire_mb_per_sec: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// 429/503 answers that were retried.
    pub throttled: u64,
    /// Batches given up after `--max-retries` throttled attempts.
    pub dropped_batches: u64,
    pub errors: u64,
    /// Factor the event timeline was compressed by.
    pub time_scale: f64,
    /// Increase of the server's `distillguard_late_events_total` during the run, when exposed.
    pub server_late_events: Option<f64>,
    pub peak_rss_bytes: Option<f64>,
    pub metrics_scrapes: u64,
    /// The server's CPU time during the run (`process_cpu_seconds_total`, user + system).
    pub server_cpu_seconds: Option<f64>,
    /// This client's CPU time during the run (`getrusage`).
    pub client_cpu_seconds: f64,
    pub events_per_server_cpu_sec: Option<f64>,
}

#[derive(Default)]
struct Tally {
    batches: u64,
    events: u64,
    bytes: u64,
    wire_bytes: u64,
    throttled: u64,
    dropped: u64,
    errors: u64,
    latencies_us: Vec<u64>,
}

struct Shared {
    events: Vec<Prepared>,
    timeline: Timeline,
    next: AtomicU64,
    client: reqwest::Client,
    endpoint: reqwest::Url,
    token: Option<String>,
    batch_size: usize,
    gzip: bool,
    max_retries: u32,
    max_batches: u64,
    deadline: Instant,
}

async fn worker(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let mut buffer = Vec::new();
    while Instant::now() < shared.deadline {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= shared.max_batches {
            break;
        }
        let count = build_batch(
            &shared.events,
            &shared.timeline,
            shared.batch_size,
            index,
            &mut buffer,
        );
        let body = if shared.gzip {
            let mut encoder =
                GzEncoder::new(Vec::with_capacity(buffer.len() / 4), Compression::fast());
            let _ = encoder.write_all(&buffer);
            encoder.finish().unwrap_or_default()
        } else {
            buffer.clone()
        };
        let mut attempt = 0;
        loop {
            let mut request = shared
                .client
                .post(shared.endpoint.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body.clone());
            if shared.gzip {
                request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
            }
            if let Some(token) = &shared.token {
                request = request.bearer_auth(token);
            }
            let started = Instant::now();
            let response = match request.send().await {
                Ok(response) => response,
                Err(_) => {
                    tally.errors += 1;
                    break;
                }
            };
            let status = response.status();
            let wait = retry_after(
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
            );
            let _ = response.bytes().await;
            if status.is_success() {
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                tally.batches += 1;
                tally.events += count as u64;
                tally.bytes += buffer.len() as u64;
                tally.wire_bytes += body.len() as u64;
                break;
            }
            if status.as_u16() == 429 || status.as_u16() == 503 {
                tally.throttled += 1;
                attempt += 1;
                if attempt >= shared.max_retries || Instant::now() >= shared.deadline {
                    tally.dropped += 1;
                    break;
                }
                let backoff = Duration::from_millis(50u64 << attempt.min(6));
                let pause = wait.unwrap_or(backoff).min(Duration::from_secs(5));
                tokio::time::sleep(
                    pause.min(shared.deadline.saturating_duration_since(Instant::now())),
                )
                .await;
                continue;
            }
            tally.errors += 1;
            break;
        }
    }
    tally
}

async fn scrape_memory(
    client: reqwest::Client,
    url: reqwest::Url,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (Option<f64>, u64) {
    let mut peak: Option<f64> = None;
    let mut scrapes = 0;
    loop {
        if let Ok(response) = client.get(url.clone()).send().await {
            if let Ok(text) = response.text().await {
                if let Some(rss) = resident_memory(&text) {
                    scrapes += 1;
                    peak = Some(peak.map_or(rss, |p| p.max(rss)));
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            return (peak, scrapes);
        }
        tokio::time::sleep(every).await;
    }
}

/// Async: the binary runs it on a tokio runtime.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let base = reqwest::Url::parse(&args.url).context("--url")?;
    require_loopback(&base)?;
    if args.batch_size == 0 || args.concurrency == 0 || args.concurrency > 256 {
        bail!("--batch-size must be positive and --concurrency within 1..=256");
    }
    if !(args.duration_secs > 0.0 && args.duration_secs <= 3_600.0) {
        bail!("--duration-secs must be within (0, 3600]");
    }
    let events = load_events(&args)?;
    eprintln!(
        "prepared {} events; sending for {:.0} s with {} workers",
        events.len(),
        args.duration_secs,
        args.concurrency
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let metrics_url = base.join("/metrics")?;
    let late_before = late_events(&client, &metrics_url).await;
    let server_cpu_before = server_cpu(&client, &metrics_url).await;
    let watermark = scrape(
        &client,
        &metrics_url,
        "distillguard_detection_watermark_timestamp_seconds",
    )
    .await;
    let timeline = Timeline::new(&events, args.concurrency * args.batch_size, args.time_scale)
        .after(watermark.filter(|w| *w > 0.0).map(|w| (w * 1_000.0) as i64));
    let started = Instant::now();
    let client_cpu_before = CpuTime::now();
    let shared = Arc::new(Shared {
        events,
        timeline,
        next: AtomicU64::new(0),
        client: client.clone(),
        endpoint: base.join("/v1/events")?,
        token: args.token.clone(),
        batch_size: args.batch_size,
        gzip: args.gzip,
        max_retries: args.max_retries.max(1),
        max_batches: args.max_batches,
        deadline: started + Duration::from_secs_f64(args.duration_secs),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = tokio::spawn(scrape_memory(
        client.clone(),
        metrics_url.clone(),
        Duration::from_millis(args.metrics_interval_ms.max(50)),
        stop.clone(),
    ));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut total = Tally::default();
    for handle in workers {
        let t = handle.await?;
        total.batches += t.batches;
        total.events += t.events;
        total.bytes += t.bytes;
        total.wire_bytes += t.wire_bytes;
        total.throttled += t.throttled;
        total.dropped += t.dropped;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let client_cpu_seconds = CpuTime::now().seconds_since(&client_cpu_before);
    let server_cpu_seconds = server_cpu(&client, &metrics_url)
        .await
        .zip(server_cpu_before)
        .map(|(after, before)| after - before);
    stop.store(true, Ordering::Relaxed);
    let (peak_rss_bytes, metrics_scrapes) = scraper.await?;
    let late_after = late_events(&client, &metrics_url).await;
    total.latencies_us.sort_unstable();
    let result = BenchResult {
        url: args.url.clone(),
        concurrency: args.concurrency,
        batch_size: args.batch_size,
        gzip: args.gzip,
        elapsed_secs: elapsed,
        batches: total.batches,
        events: total.events,
        events_per_sec: total.events as f64 / elapsed,
        mb_per_sec: total.bytes as f64 / 1e6 / elapsed,
        wire_mb_per_sec: total.wire_bytes as f64 / 1e6 / elapsed,
        latency_p50_ms: percentile_ms(&total.latencies_us, 50.0),
        latency_p99_ms: percentile_ms(&total.latencies_us, 99.0),
        throttled: total.throttled,
        dropped_batches: total.dropped,
        errors: total.errors,
        time_scale: timeline.scale,
        server_late_events: late_after.zip(late_before).map(|(a, b)| a - b),
        peak_rss_bytes,
        metrics_scrapes,
        server_cpu_seconds,
        client_cpu_seconds,
        events_per_server_cpu_sec: server_cpu_seconds
            .and_then(|cpu| per_cpu_second(total.events, cpu)),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render(&result));
    }
    if result.batches == 0 {
        bail!(
            "no batch was accepted ({} errors, {} throttled)",
            result.errors,
            result.throttled
        );
    }
    Ok(())
}

fn render(r: &BenchResult) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    format!(
        "target     {}/v1/events  ({} workers, {} events per batch, gzip {})\n\
         sent       {} events in {} batches over {:.1} s\n\
         throughput {:.0} events/s  {:.1} MB/s NDJSON  {:.1} MB/s on the wire\n\
         latency    p50 {}  p99 {}  (per batch, accepted)\n\
         backpressure {} throttled answers retried, {} batches dropped, {} errors\n\
         event time compressed {:.1}x; server counted {} late events\n\
         server     peak RSS {} ({} scrapes of /metrics)\n\
         cpu        server {}, client {:.2} s: {} events per server CPU-second\n",
        r.url.trim_end_matches('/'),
        r.concurrency,
        r.batch_size,
        if r.gzip { "on" } else { "off" },
        r.events,
        r.batches,
        r.elapsed_secs,
        r.events_per_sec,
        r.mb_per_sec,
        r.wire_mb_per_sec,
        ms(r.latency_p50_ms),
        ms(r.latency_p99_ms),
        r.throttled,
        r.dropped_batches,
        r.errors,
        r.time_scale,
        r.server_late_events
            .map_or("an unknown number of".to_string(), |l| format!("{l:.0}")),
        r.peak_rss_bytes.map_or("unknown".to_string(), |b| format!(
            "{:.1} MiB",
            b / 1_048_576.0
        )),
        r.metrics_scrapes,
        r.server_cpu_seconds
            .map_or("unknown".to_string(), |s| format!("{s:.2} s")),
        r.client_cpu_seconds,
        r.events_per_server_cpu_sec
            .map_or("unknown".to_string(), |r| format!("{r:.0}")),
    )
}

#[cfg(test)]
mod tests;
