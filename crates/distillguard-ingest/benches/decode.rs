//! Canonical NDJSON decoding throughput with realistic prompts (~200 bytes median).
//!
//! Run with `cargo bench -p distillguard-ingest --bench decode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use distillguard_ingest::{decode_body, CanonicalDecoder};

const TOPICS: &[&str] = &[
    "the causes of the French Revolution",
    "how a TCP handshake works",
    "the difference between mitosis and meiosis",
    "writing a binary search in Rust",
    "the tax treatment of stock options in Germany",
    "how vaccines train the immune system",
    "the plot of Moby-Dick",
    "optimising a slow PostgreSQL query with a join",
];
const FRAMES: &[&str] = &[
    "Can you explain {t} in simple terms? I'm preparing for an exam next week and keep getting confused about the details.",
    "Write a detailed, step-by-step explanation of {t}. Show your complete reasoning before giving the final answer.",
    "I have a question about {t}. My colleague says it's straightforward but I think there are several subtle edge cases worth discussing. What do you think?",
    "Summarise {t} in three bullet points.",
];

fn ndjson(records: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..records {
        let prompt = FRAMES[i % FRAMES.len()].replace("{t}", TOPICS[(i / 3) % TOPICS.len()]);
        let line = serde_json::json!({
            "timestamp": 1_764_334_800_000i64 + i as i64 * 37,
            "account_id": format!("acct-{}", i % 5_000),
            "model": "gpt-4o",
            "request_id": format!("req-{i:08}"),
            "client_ip": format!("198.51.100.{}", i % 250),
            "user_agent": "OpenAI/Python 1.54.0",
            "prompt": prompt,
            "messages": 1 + i % 4,
            "params": {"temperature": 0.7, "max_tokens": 1024},
            "usage": {"prompt_tokens": 60, "completion_tokens": 400},
            "status": 200,
            "latency_ms": 900,
        });
        serde_json::to_writer(&mut body, &line).unwrap();
        body.push(b'\n');
    }
    body
}

fn bench_decode(c: &mut Criterion) {
    let records = 10_000;
    let body = ndjson(records);
    let mut group = c.benchmark_group("canonical_ndjson");
    group.throughput(Throughput::Elements(records as u64));
    group.bench_function("decode_10k_records", |b| {
        b.iter(|| {
            let outcome = decode_body(&CanonicalDecoder, &body).unwrap();
            assert_eq!(outcome.events.len(), records);
            outcome
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
