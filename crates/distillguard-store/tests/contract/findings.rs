//! Write path, reads, pagination, stats and checkpoints.

use std::collections::BTreeSet;

use distillguard_core::finding::{FindingUpdate, Severity};
use distillguard_store::*;

use crate::support::*;

fn ids(page: &Page<FindingSummary>) -> Vec<String> {
    page.items.iter().map(|s| s.subject.id.clone()).collect()
}

async fn all_accounts(store: &Store, filter: &ListFilter) -> Vec<String> {
    let page = store
        .list_accounts(
            filter,
            &PageRequest {
                limit: 500,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ids(&page)
}

pub async fn a_fresh_store_is_ready_and_empty(h: Harness) {
    h.store.ping().await.unwrap();
    let stats = h.store.stats().await.unwrap();
    assert_eq!(stats.accounts.total, 0);
    assert!(stats.watermarks.is_empty());
}

pub async fn applying_the_same_batch_twice_gives_the_same_state(h: Harness) {
    let batch = vec![
        acct("a1", 0.8, 5_000),
        acct("a2", 0.3, 5_000),
        cluster("c1", 0.9, &["a1", "a2"], 5_000),
    ];
    let first = h.store.upsert_findings(&batch).await.unwrap();
    assert_eq!(first.written, 3);
    let a1 = h.store.get_account("a1").await.unwrap();
    let c1 = h.store.get_cluster("c1").await.unwrap();
    let trail = h
        .store
        .list_audit(&Subject::account("a1").unwrap(), None, 100)
        .await
        .unwrap();

    h.store.upsert_findings(&batch).await.unwrap();
    assert_eq!(h.store.get_account("a1").await.unwrap(), a1);
    assert_eq!(h.store.get_cluster("c1").await.unwrap(), c1);
    assert_eq!(
        h.store
            .list_audit(&Subject::account("a1").unwrap(), None, 100)
            .await
            .unwrap(),
        trail
    );
    assert_eq!(h.store.stats().await.unwrap().accounts.total, 2);
}

pub async fn one_finding_per_subject_follows_the_latest_score(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.4, 5_000)])
        .await
        .unwrap();
    h.store
        .upsert_findings(&[acct("a1", 0.95, 9_000)])
        .await
        .unwrap();
    let a1 = h.store.get_account("a1").await.unwrap();
    assert_eq!(a1.summary.score, 0.95);
    assert_eq!(a1.summary.severity, Severity::Critical);
    assert_eq!(a1.summary.last_seen, at(9_000));
    assert_eq!(a1.summary.first_flagged_at, Some(at(9_000)));
    assert_eq!(h.store.stats().await.unwrap().accounts.total, 1);
    let trail = h
        .store
        .list_audit(&Subject::account("a1").unwrap(), None, 100)
        .await
        .unwrap();
    assert_eq!(
        trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        vec!["finding.flagged"]
    );
    assert_eq!(trail[0].actor, "system");
}

pub async fn a_flag_the_engine_withdraws_is_audited_and_sent_to_webhooks(h: Harness) {
    let store = h
        .store_with(|options| options.webhook_endpoints = vec!["soc".into()])
        .await;
    store
        .upsert_findings(&[acct("a1", 0.95, 5_000), acct("steady", 0.95, 5_000)])
        .await
        .unwrap();
    // A bounded re-run clears a1; steady is re-scored, still flagged.
    store
        .upsert_findings(&[acct("a1", 0.3, 9_000), acct("steady", 0.96, 9_000)])
        .await
        .unwrap();

    let trail = |id: &'static str| {
        let store = store.clone();
        async move {
            let subject = Subject::account(id).unwrap();
            let entries = store.list_audit(&subject, None, 100).await.unwrap();
            entries.into_iter().map(|e| e.action).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        trail("a1").await,
        vec!["finding.flagged", "finding.unflagged"]
    );
    assert_eq!(trail("steady").await, vec!["finding.flagged"]);
    let sent: Vec<(String, String)> = store
        .due_webhooks(100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            (
                d.event_type,
                body["data"]["subject"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("finding.flagged".to_string(), "a1".to_string()),
            ("finding.flagged".to_string(), "steady".to_string()),
            ("finding.unflagged".to_string(), "a1".to_string()),
        ]
    );
    assert!(!store.get_account("a1").await.unwrap().summary.flagged);
}

pub async fn an_update_older_than_the_stored_one_is_ignored(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.9, 9_000)])
        .await
        .unwrap();
    let outcome = h
        .store
        .upsert_findings(&[acct("a1", 0.1, 4_000)])
        .await
        .unwrap();
    assert_eq!((outcome.written, outcome.stale), (0, 1));
    assert_eq!(h.store.get_account("a1").await.unwrap().summary.score, 0.9);
}

pub async fn an_invalid_update_is_refused_without_failing_the_batch(h: Harness) {
    let outcome = h
        .store
        .upsert_findings(&[acct("bad", f64::NAN, 1_000), acct("ok", 0.2, 1_000)])
        .await
        .unwrap();
    assert_eq!((outcome.written, outcome.invalid), (1, 1));
    assert!(matches!(
        h.store.get_account("bad").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn prompts_are_kept_only_when_configured(h: Harness) {
    h.store
        .upsert_findings(&[acct("hashed", 0.8, 5_000)])
        .await
        .unwrap();
    let sample = &h.store.get_account("hashed").await.unwrap().samples[0];
    assert_eq!(
        (sample.hash.as_str(), sample.text.as_deref()),
        ("hash-hashed", None)
    );

    let keeping = h.store_with(|o| o.keep_prompts = true).await;
    keeping
        .upsert_findings(&[acct("kept", 0.8, 5_000)])
        .await
        .unwrap();
    let sample = &keeping.get_account("kept").await.unwrap().samples[0];
    assert_eq!(sample.text.as_deref(), Some("secret prompt of kept"));
}

pub async fn hourly_activity_is_kept_with_the_account(h: Harness) {
    let activity = distillguard_core::finding::HourlyActivity {
        until: at(3_600_000 * 30),
        events: (0..24).collect(),
    };
    let mut busy = account("busy", 0.8, 5_000);
    busy.activity = Some(activity.clone());
    h.store
        .upsert_findings(&[FindingUpdate::Account(busy), acct("older", 0.8, 5_000)])
        .await
        .unwrap();

    assert_eq!(
        h.store.get_account("busy").await.unwrap().activity,
        Some(activity)
    );
    assert_eq!(h.store.get_account("older").await.unwrap().activity, None);
}

pub async fn account_and_cluster_details_carry_their_evidence(h: Harness) {
    h.store
        .upsert_findings(&[
            acct("m1", 0.9, 5_000),
            acct("m2", 0.5, 5_000),
            cluster("c1", 0.85, &["m1", "m2", "m3"], 6_000),
        ])
        .await
        .unwrap();
    let account = h.store.get_account("m1").await.unwrap();
    assert_eq!(account.events, 100);
    assert_eq!(account.signals.len(), 2);
    assert_eq!(
        account.signals[0].evidence.measurements[0]
            .window
            .as_deref(),
        Some("24h")
    );
    assert_eq!(account.summary.detectors, vec!["coverage", "volume"]);
    assert_eq!(
        account.cluster.as_ref().map(|c| c.subject.id.as_str()),
        Some("c1")
    );

    let c1 = h.store.get_cluster("c1").await.unwrap();
    assert_eq!(
        c1.members
            .iter()
            .map(|m| m.account_id.as_str())
            .collect::<Vec<_>>(),
        vec!["m1", "m2", "m3"]
    );
    assert_eq!(c1.members[2].score, None, "m3 has no finding of its own");
    assert_eq!(c1.metrics.members, 3);
    assert_eq!(c1.metrics.flagged_members, 1);
    assert_eq!(c1.metrics.max_member_score, Some(0.9));
    assert!((c1.metrics.mean_member_score.unwrap() - 0.7).abs() < 1e-9);
    assert_eq!(c1.metrics.total_events, 200);
    assert_eq!(c1.links[0].kind, "payment_fingerprint");
    assert_eq!(c1.summary.member_count, Some(3));
    assert_eq!(c1.signals[0].detector, "hydra");

    assert!(matches!(
        h.store.get_account("nobody").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        h.store.get_cluster("m1").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn list_filters_narrow_the_result(h: Harness) {
    h.store
        .upsert_findings(&[
            acct("low", 0.2, 2_000),
            acct("mid", 0.6, 4_000),
            acct("high", 0.8, 6_000),
            acct("crit", 0.95, 8_000),
        ])
        .await
        .unwrap();
    let analyst = Actor::parse("ana").unwrap();
    let investigate = TransitionRequest {
        to: ReviewStatus::Investigating,
        expected_version: 1,
        close_reason: None,
        assignee: AssigneeChange::Set("ana".into()),
    };
    h.store
        .transition(&Subject::account("crit").unwrap(), &investigate, &analyst)
        .await
        .unwrap();

    let by = async |f: ListFilter| all_accounts(&h.store, &f).await;
    assert_eq!(
        by(ListFilter::default()).await,
        vec!["crit", "high", "mid", "low"]
    );
    assert_eq!(
        by(ListFilter {
            status: vec![ReviewStatus::Investigating],
            ..Default::default()
        })
        .await,
        vec!["crit"]
    );
    assert_eq!(
        by(ListFilter {
            severity: vec![Severity::High, Severity::Medium],
            ..Default::default()
        })
        .await,
        vec!["high", "mid"]
    );
    assert_eq!(
        by(ListFilter {
            min_score: Some(0.6),
            ..Default::default()
        })
        .await,
        vec!["crit", "high", "mid"]
    );
    // "volume" fires at 0.5; "coverage" (score - 0.4) only for crit.
    assert_eq!(
        by(ListFilter {
            detector: Some("coverage".into()),
            ..Default::default()
        })
        .await,
        vec!["crit"]
    );
    assert_eq!(
        by(ListFilter {
            flagged: Some(true),
            ..Default::default()
        })
        .await,
        vec!["crit", "high"]
    );
    assert_eq!(
        by(ListFilter {
            flagged: Some(false),
            ..Default::default()
        })
        .await,
        vec!["mid", "low"]
    );
    assert_eq!(
        by(ListFilter {
            since: Some(at(4_000)),
            until: Some(at(8_000)),
            ..Default::default()
        })
        .await,
        vec!["high", "mid"]
    );
    assert_eq!(
        by(ListFilter {
            assignee: Some("ana".into()),
            ..Default::default()
        })
        .await,
        vec!["crit"]
    );
    assert!(all_accounts(
        &h.store,
        &ListFilter {
            assignee: Some("bob".into()),
            ..Default::default()
        }
    )
    .await
    .is_empty());
    let backwards = ListFilter {
        since: Some(at(9_000)),
        until: Some(at(1_000)),
        ..Default::default()
    };
    // `since` after `until` is an empty interval, like any other filter that matches nothing.
    assert!(h
        .store
        .list_accounts(&backwards, &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

/// Pages through `sort` while new findings (above and below the cursor) keep arriving.
async fn walk_while_findings_arrive(h: &Harness, sort: SortKey) {
    let initial: Vec<_> = (0..25)
        .map(|i| {
            acct(
                &format!("a{i:02}"),
                0.5 + (i % 5) as f64 * 0.05,
                10_000 + (i % 7) * 100,
            )
        })
        .collect();
    h.store.upsert_findings(&initial).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    let mut round = 0;
    loop {
        let page = h
            .store
            .list_accounts(
                &ListFilter::default(),
                &PageRequest {
                    sort,
                    limit: 4,
                    after: after.clone(),
                },
            )
            .await
            .unwrap();
        seen.extend(ids(&page));
        // New subjects with the highest and lowest keys land on both sides of the cursor.
        h.store
            .upsert_findings(&[
                acct(&format!("new-hi-{round}"), 0.99, 99_000),
                acct(&format!("new-lo-{round}"), 0.01, 1_000),
            ])
            .await
            .unwrap();
        round += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "no duplicates ({sort:?}): {seen:?}"
    );
    for i in 0..25 {
        assert!(
            unique.contains(&format!("a{i:02}")),
            "a{i:02} missing under {sort:?}"
        );
    }
}

pub async fn pages_have_no_duplicates_or_gaps_while_new_findings_arrive_by_score(h: Harness) {
    walk_while_findings_arrive(&h, SortKey::Score).await;
}

pub async fn pages_have_no_duplicates_or_gaps_while_new_findings_arrive_by_last_seen(h: Harness) {
    walk_while_findings_arrive(&h, SortKey::LastSeen).await;
}

pub async fn pages_have_no_duplicates_or_gaps_while_new_findings_arrive_by_creation(h: Harness) {
    walk_while_findings_arrive(&h, SortKey::Created).await;
}

pub async fn a_cursor_is_refused_for_another_query(h: Harness) {
    h.store
        .upsert_findings(
            &(0..3)
                .map(|i| acct(&format!("a{i}"), 0.5, 1_000))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let first = h
        .store
        .list_accounts(
            &ListFilter::default(),
            &PageRequest {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let next = first.next.expect("more pages");
    let other = ListFilter {
        min_score: Some(0.1),
        ..Default::default()
    };
    let result = h
        .store
        .list_accounts(
            &other,
            &PageRequest {
                limit: 1,
                after: Some(next),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(result, Err(StoreError::InvalidCursor)));
    let garbage = PageRequest {
        after: Some("%%%".into()),
        ..Default::default()
    };
    assert!(matches!(
        h.store
            .list_accounts(&ListFilter::default(), &garbage)
            .await,
        Err(StoreError::InvalidCursor)
    ));
}

pub async fn stats_count_by_status_and_severity_and_show_watermarks(h: Harness) {
    h.store
        .upsert_findings(&[
            acct("a", 0.95, 1_000),
            acct("b", 0.8, 1_000),
            acct("c", 0.1, 1_000),
            cluster("k", 0.9, &["a"], 1_000),
        ])
        .await
        .unwrap();
    let dismiss = TransitionRequest {
        to: ReviewStatus::Dismissed,
        expected_version: 1,
        close_reason: Some(CloseReason::FalsePositive),
        assignee: AssigneeChange::Keep,
    };
    h.store
        .transition(
            &Subject::account("b").unwrap(),
            &dismiss,
            &Actor::parse("ana").unwrap(),
        )
        .await
        .unwrap();
    h.store.set_watermark("ingest", at(77_000)).await.unwrap();
    h.store
        .save_checkpoint("shard-0", b"state", Some(at(70_000)))
        .await
        .unwrap();

    let stats = h.store.stats().await.unwrap();
    assert_eq!(stats.accounts.total, 3);
    assert_eq!(stats.accounts.flagged, 2);
    assert_eq!(stats.accounts.by_status.get("open"), Some(&2));
    assert_eq!(stats.accounts.by_status.get("dismissed"), Some(&1));
    assert_eq!(stats.accounts.by_severity.get("critical"), Some(&1));
    assert_eq!(stats.accounts.by_severity.get("low"), Some(&1));
    assert_eq!(stats.clusters.total, 1);
    let marks: Vec<_> = stats
        .watermarks
        .iter()
        .map(|w| (w.name.as_str(), w.at))
        .collect();
    assert_eq!(
        marks,
        vec![("checkpoint:shard-0", at(70_000)), ("ingest", at(77_000))]
    );
}

pub async fn checkpoints_round_trip_and_are_replaced(h: Harness) {
    assert_eq!(h.store.load_checkpoint("linker").await.unwrap(), None);
    let bytes: Vec<u8> = (0..=255).collect();
    h.store
        .save_checkpoint("linker", &bytes, Some(at(5_000)))
        .await
        .unwrap();
    let saved = h.store.load_checkpoint("linker").await.unwrap().unwrap();
    assert_eq!((saved.data, saved.watermark), (bytes, Some(at(5_000))));
    h.store
        .save_checkpoint("linker", b"v2", None)
        .await
        .unwrap();
    let saved = h.store.load_checkpoint("linker").await.unwrap().unwrap();
    assert_eq!((saved.data.as_slice(), saved.watermark), (&b"v2"[..], None));
}

/// PostgreSQL text and jsonb cannot hold NUL; gateway logs can. Every text field of a finding
/// gets one, and the finding is stored on both backends with U+FFFD in its place, noted.
pub async fn nul_characters_in_every_text_field_are_replaced_and_noted(h: Harness) {
    let store = h.store_with(|o| o.keep_prompts = true).await;
    let mut account = account("acct\0nul", 0.8, 5_000);
    account.cluster_id = Some("cl\0x".into());
    account.samples[0].text = "prompt\0text".into();
    account.samples[0].hash = "hash\0".into();
    account.signals[0].detector = "volume".into();
    account.signals[0].evidence.summary = "user agent curl\0/8".into();
    account.signals[0].evidence.measurements[0].name = "n\0".into();
    account.signals[0].evidence.measurements[0].window = Some("24h\0".into());
    let mut cluster = cluster("cl\0x", 0.9, &["acct\0nul", "b\0"], 5_000);
    if let distillguard_core::finding::FindingUpdate::Cluster(c) = &mut cluster {
        c.links[0].kind = "user_agent\0".into();
        c.links[0].examples = vec!["curl\0/8".into()];
    }
    let outcome = store
        .upsert_findings(&[
            distillguard_core::finding::FindingUpdate::Account(account),
            cluster,
        ])
        .await
        .unwrap();
    assert_eq!((outcome.written, outcome.invalid), (2, 0));
    assert_eq!(outcome.sanitized, 7 + 5);

    let stored = store.get_account("acct\u{FFFD}nul").await.unwrap();
    assert_eq!(
        stored.samples[0].text.as_deref(),
        Some("prompt\u{FFFD}text")
    );
    assert_eq!(
        stored.signals[0].evidence.summary,
        "user agent curl\u{FFFD}/8"
    );
    let note = stored
        .signals
        .iter()
        .find(|s| s.detector == "store")
        .expect("the replacement is noted in the evidence");
    assert!(
        note.evidence.summary.contains("NUL"),
        "{}",
        note.evidence.summary
    );
    assert_eq!(note.score, 0.0);
    assert_eq!(
        stored.summary.detectors,
        vec!["volume"],
        "the note never counts as fired"
    );

    let cluster = store.get_cluster("cl\u{FFFD}x").await.unwrap();
    assert!(cluster.members.iter().any(|m| m.account_id == "b\u{FFFD}"));
    assert_eq!(cluster.links[0].examples, vec!["curl\u{FFFD}/8"]);
    assert!(cluster.signals.iter().any(|s| s.detector == "store"));
}

/// Review input with NUL is refused as invalid input, never sent to the database.
pub async fn review_input_with_nul_is_invalid(h: Harness) {
    h.store
        .upsert_findings(&[acct("a", 0.8, 1_000)])
        .await
        .unwrap();
    assert!(matches!(
        Subject::account("a\0"),
        Err(StoreError::InvalidInput(_))
    ));
    let subject = Subject::account("a").unwrap();
    let analyst = Actor::parse("ana").unwrap();
    assert!(matches!(
        h.store.add_note(&subject, "note\0", &analyst).await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        h.store
            .add_allowlist(&subject, "why\0", None, &analyst)
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        Actor::parse("ana\0"),
        Err(StoreError::InvalidInput(_))
    ));
    let filter = ListFilter {
        detector: Some("vol\0".into()),
        ..Default::default()
    };
    assert!(matches!(
        h.store
            .list_accounts(&filter, &PageRequest::default())
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        h.store.get_account("a\0").await,
        Err(StoreError::InvalidInput(_))
    ));
}

/// Issue 19: a cluster's summary comes from its own members. When a split leaves the cluster
/// without its earliest account, its `first_seen` moves later with it; an account's only ever
/// moves earlier.
pub async fn a_cluster_first_seen_follows_its_current_members(h: Harness) {
    let mut early = cluster("c1", 0.85, &["m1", "m2", "m3"], 6_000);
    let mut split = cluster("c1", 0.85, &["m2", "m3"], 7_000);
    if let (FindingUpdate::Cluster(a), FindingUpdate::Cluster(b)) = (&mut early, &mut split) {
        a.first_seen = at(1_000);
        b.first_seen = at(3_000);
    }
    h.store.upsert_findings(&[early]).await.unwrap();
    h.store.upsert_findings(&[split]).await.unwrap();
    let c1 = h.store.get_cluster("c1").await.unwrap();
    assert_eq!(c1.summary.first_seen, at(3_000));

    h.store
        .upsert_findings(&[acct("m9", 0.9, 5_000)])
        .await
        .unwrap();
    let mut later = acct("m9", 0.9, 6_000);
    if let FindingUpdate::Account(a) = &mut later {
        a.first_seen = at(4_000);
    }
    h.store.upsert_findings(&[later]).await.unwrap();
    let m9 = h.store.get_account("m9").await.unwrap();
    assert!(m9.summary.first_seen < at(4_000));
}
