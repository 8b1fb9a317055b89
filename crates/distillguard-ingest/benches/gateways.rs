//! Gateway decoding throughput (records per second), from the test fixtures replicated into
//! realistic batch bodies: LiteLLM NDJSON, Kong arrays, Envoy NDJSON, one large OTLP export.
//!
//! Run with `cargo bench -p distillguard-ingest --bench gateways -- --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use distillguard_ingest::{
    decode_body, Decoder, EnvoyDecoder, KongDecoder, LitellmDecoder, OtlpDecoder,
};
use serde_json::Value;

fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// NDJSON of `count` records cycling through `records`, each with a distinct id under `id_key`.
fn ndjson(records: &[Value], count: usize, id_key: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..count {
        let mut record = records[i % records.len()].clone();
        record[id_key] = Value::String(format!("req-{i:08}"));
        serde_json::to_writer(&mut body, &record).unwrap();
        body.push(b'\n');
    }
    body
}

fn bench_format(c: &mut Criterion, name: &str, decoder: &dyn Decoder, body: &[u8], events: usize) {
    let mut group = c.benchmark_group("gateways");
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let outcome = decode_body(decoder, body).unwrap();
            assert_eq!(outcome.events.len(), events);
            outcome
        })
    });
    group.finish();
}

fn bench_gateways(c: &mut Criterion) {
    let litellm: Vec<Value> =
        serde_json::from_str(&fixture("litellm/generic_api_json_array.json")).unwrap();
    let litellm_body = ndjson(&litellm, 2_000, "id");
    bench_format(
        c,
        "litellm_ndjson_2k",
        &LitellmDecoder::default(),
        &litellm_body,
        2_000,
    );

    let kong: Vec<Value> = serde_json::from_str(&fixture("kong/http_log_batch.json")).unwrap();
    let kong_records: Vec<Value> = (0..10_000)
        .map(|i| {
            let mut record = kong[i % kong.len()].clone();
            record["request"]["id"] = Value::String(format!("req-{i:08}"));
            record
        })
        .collect();
    let kong_body = serde_json::to_vec(&kong_records).unwrap();
    bench_format(
        c,
        "kong_array_10k",
        &KongDecoder::default(),
        &kong_body,
        10_000,
    );

    let envoy: Vec<Value> = fixture("envoy/access_log_fluentbit.ndjson")
        .lines()
        .take(3)
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let envoy_body = ndjson(&envoy, 10_000, "x-request-id");
    bench_format(
        c,
        "envoy_ndjson_10k",
        &EnvoyDecoder::default(),
        &envoy_body,
        10_000,
    );

    let mut otlp: Value = serde_json::from_str(&fixture("otlp/logs_genai.json")).unwrap();
    let template = otlp["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0].clone();
    let records: Vec<Value> = (0..10_000)
        .map(|i| {
            let mut record = template.clone();
            record["timeUnixNano"] =
                Value::String((1_795_871_407_352_000_000u64 + i * 1_000).to_string());
            record
        })
        .collect();
    otlp["resourceLogs"] = Value::Array(vec![otlp["resourceLogs"][0].clone()]);
    otlp["resourceLogs"][0]["scopeLogs"][0]["logRecords"] = Value::Array(records);
    let otlp_body = serde_json::to_vec(&otlp).unwrap();
    bench_format(
        c,
        "otlp_export_10k",
        &OtlpDecoder::default(),
        &otlp_body,
        10_000,
    );
}

criterion_group!(benches, bench_gateways);
criterion_main!(benches);
