use super::*;

fn events() -> Vec<Prepared> {
    (0..5)
        .map(|i| {
            prepare(serde_json::json!({
                "timestamp": 1_793_577_600_000i64 + i * 1_000,
                "request_id": "orig",
                "account_id": format!("a{i}"),
                "model": "m"
            }))
            .unwrap()
        })
        .collect()
}

#[test]
fn later_passes_shift_time_forward_and_rename_request_ids() {
    let events = events();
    let timeline = Timeline::new(&events, 2, Some(1.0));
    let mut first = Vec::new();
    let mut later = Vec::new();
    assert_eq!(build_batch(&events, &timeline, 2, 0, &mut first), 2);
    // Three batches per pass (2 + 2 + 1); batch 3 is the first of the second pass.
    assert_eq!(build_batch(&events, &timeline, 2, 3, &mut later), 2);
    let parse = |bytes: &[u8]| -> Vec<Value> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    };
    let (a, b) = (parse(&first), parse(&later));
    assert_eq!(a[0]["account_id"], "a0");
    assert_eq!(b[0]["account_id"], "a0");
    assert_ne!(a[0]["request_id"], b[0]["request_id"]);
    assert_ne!(a[0]["request_id"], "orig");
    let t = |v: &Value| {
        EventTime::parse_rfc3339(v["timestamp"].as_str().unwrap())
            .unwrap()
            .epoch_ms()
    };
    assert_eq!(t(&b[0]) - t(&a[0]), 4_000 + 60_000);
    let mut last = Vec::new();
    assert_eq!(build_batch(&events, &timeline, 2, 2, &mut last), 1);
}

#[test]
fn the_default_timeline_keeps_batches_in_flight_within_a_minute() {
    // 1,000 events over a day: 40 in flight would span about 58 minutes uncompressed.
    let events: Vec<Prepared> = (0..1_000)
        .map(|i| Prepared {
            timestamp_ms: 1_793_577_600_000 + i * 86_400,
            tail: b"}".to_vec(),
            flood: false,
        })
        .collect();
    let timeline = Timeline::new(&events, 40, None);
    let window = timeline.at(events[40].timestamp_ms, 0) - timeline.at(events[0].timestamp_ms, 0);
    assert!(window <= 60_000 && window > 50_000, "{window}");
    assert!(timeline.at(events[0].timestamp_ms, 1) > timeline.at(events[999].timestamp_ms, 0));
    assert_eq!(Timeline::new(&events, 40, Some(1.0)).scale, 1.0);
    let later = timeline.after(Some(events[500].timestamp_ms));
    assert_eq!(
        later.at(events[0].timestamp_ms, 0),
        events[500].timestamp_ms + 3_600_000
    );
}

#[test]
fn retry_after_accepts_seconds_and_ignores_dates() {
    assert_eq!(retry_after(Some("2")), Some(Duration::from_secs(2)));
    assert_eq!(retry_after(Some("0.5")), Some(Duration::from_millis(500)));
    assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    assert_eq!(retry_after(None), None);
}

#[test]
fn resident_memory_is_read_from_the_prometheus_text() {
    let text = "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.2345e+07\nprocess_virtual_memory_bytes 9e9\n";
    assert_eq!(resident_memory(text), Some(12_345_000.0));
    assert_eq!(resident_memory("up 1\n"), None);
    assert_eq!(
        series(
            "distillguard_late_events_total 12\n",
            "distillguard_late_events_total"
        ),
        Some(12.0)
    );
}

#[test]
fn only_loopback_targets_are_allowed() {
    for ok in [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:8080",
    ] {
        assert!(
            require_loopback(&reqwest::Url::parse(ok).unwrap()).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "http://10.0.0.1:8080",
        "http://example.com",
        "http://192.168.1.2",
    ] {
        assert!(
            require_loopback(&reqwest::Url::parse(bad).unwrap()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn batch_latency_percentiles_use_the_nearest_rank() {
    let us: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
    assert_eq!(percentile_ms(&us, 50.0), Some(50.0));
    assert_eq!(percentile_ms(&us, 99.0), Some(99.0));
    assert_eq!(percentile_ms(&[], 50.0), None);
}

#[test]
fn with_distinct_accounts_every_event_sent_names_an_account_never_sent_before() {
    let events: Vec<Prepared> = (0..3)
        .map(|i| {
            prepare_flood(serde_json::json!({
                "timestamp": 1_793_577_600_000i64 + i * 1_000,
                "account_id": "same",
                "model": "m",
            }))
            .unwrap()
        })
        .collect();
    let timeline = Timeline::new(&events, 3, None);
    let mut accounts = std::collections::HashSet::new();
    for index in 0..4 {
        let mut buffer = Vec::new();
        build_batch(&events, &timeline, 3, index, &mut buffer);
        for line in String::from_utf8(buffer).unwrap().lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(accounts.insert(value["account_id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(accounts.len(), 12);
}
