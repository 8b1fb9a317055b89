//! Decisions for gateways: derived from review verdicts (and, when enabled, unreviewed flags),
//! followed through a change stream of `new` and `deleted` entries.

use std::time::Duration;

use distillguard_core::finding::Severity;
use distillguard_store::*;

use crate::support::*;

fn ana() -> Actor {
    Actor::parse("ana").unwrap()
}

async fn close(h: &Harness, subject: &Subject, status: ReviewStatus, reason: CloseReason) {
    let version = match subject.kind {
        SubjectKind::Account => h.store.get_account(&subject.id).await.unwrap().summary,
        SubjectKind::Cluster => h.store.get_cluster(&subject.id).await.unwrap().summary,
    }
    .review
    .version;
    let request = TransitionRequest {
        to: status,
        expected_version: version,
        close_reason: Some(reason),
        assignee: AssigneeChange::Keep,
    };
    h.store.transition(subject, &request, &ana()).await.unwrap();
}

async fn reopen(h: &Harness, subject: &Subject) {
    let version = h
        .store
        .get_account(&subject.id)
        .await
        .unwrap()
        .summary
        .review
        .version;
    let request = TransitionRequest {
        to: ReviewStatus::Open,
        expected_version: version,
        close_reason: None,
        assignee: AssigneeChange::Keep,
    };
    h.store.transition(subject, &request, &ana()).await.unwrap();
}

fn values(decisions: &[Decision]) -> Vec<&str> {
    decisions.iter().map(|d| d.value.as_str()).collect()
}

pub async fn a_confirmed_account_is_blocked_until_it_is_reopened(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.9, 5_000), acct("a2", 0.95, 5_000)])
        .await
        .unwrap();
    let start = h.store.current_decisions().await.unwrap();
    assert!(
        start.new.is_empty(),
        "flags alone decide nothing by default"
    );

    let a1 = Subject::account("a1").unwrap();
    close(&h, &a1, ReviewStatus::Confirmed, CloseReason::TruePositive).await;
    let changes = h.store.decision_changes(start.cursor, 100).await.unwrap();
    assert_eq!(values(&changes.new), vec!["a1"]);
    assert!(changes.deleted.is_empty());
    let decision = &changes.new[0];
    assert_eq!(
        (decision.scope, decision.action, decision.origin),
        (
            DecisionScope::Account,
            DecisionAction::Block,
            DecisionOrigin::Confirmed
        )
    );
    assert_eq!(decision.finding, a1);
    assert_eq!(decision.expires_at, None);
    assert!(decision.reason.contains("true_positive"));
    assert_eq!(decision.created_at, h.now());

    // Nothing new: the cursor stays where it was.
    let idle = h.store.decision_changes(changes.cursor, 100).await.unwrap();
    assert!(idle.new.is_empty() && idle.deleted.is_empty());
    assert_eq!(idle.cursor, changes.cursor);
    // Re-scoring a confirmed account does not churn its decision.
    h.store
        .upsert_findings(&[acct("a1", 0.97, 6_000)])
        .await
        .unwrap();
    let idle = h.store.decision_changes(changes.cursor, 100).await.unwrap();
    assert!(idle.new.is_empty() && idle.deleted.is_empty());

    reopen(&h, &a1).await;
    let after = h.store.decision_changes(changes.cursor, 100).await.unwrap();
    assert!(after.new.is_empty());
    assert_eq!(after.deleted.len(), 1);
    assert_eq!(after.deleted[0].id, decision.id);
    assert!(h.store.current_decisions().await.unwrap().new.is_empty());
}

pub async fn a_confirmed_cluster_decides_on_each_member_but_allowlisted_ones(h: Harness) {
    h.store
        .upsert_findings(&[cluster("c1", 0.9, &["m1", "m2", "m3"], 5_000)])
        .await
        .unwrap();
    h.store
        .add_allowlist(
            &Subject::account("m2").unwrap(),
            "our own eval lab",
            None,
            &ana(),
        )
        .await
        .unwrap();
    let c1 = Subject::cluster("c1").unwrap();
    close(&h, &c1, ReviewStatus::Confirmed, CloseReason::TruePositive).await;
    let current = h.store.current_decisions().await.unwrap();
    assert_eq!(values(&current.new), vec!["m1", "m3"]);
    assert!(current.new.iter().all(|d| d.finding == c1));

    // A new member joins the confirmed network: it is blocked too; one that left is released.
    h.store
        .upsert_findings(&[cluster("c1", 0.9, &["m1", "m2", "m4"], 6_000)])
        .await
        .unwrap();
    let changes = h.store.decision_changes(current.cursor, 100).await.unwrap();
    assert_eq!(values(&changes.new), vec!["m4"]);
    assert_eq!(values(&changes.deleted), vec!["m3"]);

    // Allowlisting a member takes it out; removing the entry puts it back.
    let entry = h
        .store
        .add_allowlist(&Subject::account("m1").unwrap(), "partner", None, &ana())
        .await
        .unwrap();
    let changes = h.store.decision_changes(changes.cursor, 100).await.unwrap();
    assert_eq!(values(&changes.deleted), vec!["m1"]);
    h.store.remove_allowlist(entry.id, &ana()).await.unwrap();
    let changes = h.store.decision_changes(changes.cursor, 100).await.unwrap();
    assert_eq!(values(&changes.new), vec!["m1"]);
    // Allowlisting the cluster releases every member.
    h.store
        .add_allowlist(&c1, "known partner network", None, &ana())
        .await
        .unwrap();
    let changes = h.store.decision_changes(changes.cursor, 100).await.unwrap();
    // In stream order: m4's decision is older than m1's re-created one.
    assert_eq!(values(&changes.deleted), vec!["m4", "m1"]);
    assert!(h.store.current_decisions().await.unwrap().new.is_empty());
}

pub async fn unreviewed_flags_decide_only_when_enabled_and_severe_enough(h: Harness) {
    let store = h
        .store_with(|options| {
            options.decisions = DecisionPolicy {
                scope: DecisionScope::EndUser,
                flagged: Some(FlaggedPolicy {
                    min_severity: Severity::High,
                    action: DecisionAction::Throttle,
                    ttl: Some(Duration::from_secs(3600)),
                }),
                ..DecisionPolicy::default()
            }
        })
        .await;
    // 0.8 is high, 0.72 is flagged but medium, 0.3 is not flagged.
    store
        .upsert_findings(&[
            acct("u-high", 0.8, 5_000),
            acct("u-medium", 0.72, 5_000),
            acct("u-low", 0.3, 5_000),
        ])
        .await
        .unwrap();
    let current = store.current_decisions().await.unwrap();
    assert_eq!(values(&current.new), vec!["u-high"]);
    let decision = &current.new[0];
    assert_eq!(
        (decision.scope, decision.action, decision.origin),
        (
            DecisionScope::EndUser,
            DecisionAction::Throttle,
            DecisionOrigin::Flagged
        )
    );
    assert_eq!(
        decision.expires_at,
        Some(h.now() + chrono::Duration::hours(1))
    );

    // The flag clears on a re-score: the decision is deleted.
    store
        .upsert_findings(&[acct("u-high", 0.2, 6_000)])
        .await
        .unwrap();
    let changes = store.decision_changes(current.cursor, 100).await.unwrap();
    assert_eq!(values(&changes.deleted), vec!["u-high"]);

    // Confirming replaces the throttle with a block; dismissing removes everything.
    store
        .upsert_findings(&[acct("u-high", 0.85, 7_000)])
        .await
        .unwrap();
    let subject = Subject::account("u-high").unwrap();
    let version = store
        .get_account("u-high")
        .await
        .unwrap()
        .summary
        .review
        .version;
    let confirm = TransitionRequest {
        to: ReviewStatus::Confirmed,
        expected_version: version,
        close_reason: Some(CloseReason::TruePositive),
        assignee: AssigneeChange::Keep,
    };
    store.transition(&subject, &confirm, &ana()).await.unwrap();
    let now = store.current_decisions().await.unwrap();
    assert_eq!(now.new.len(), 1);
    assert_eq!(now.new[0].action, DecisionAction::Block);
    assert_eq!(now.new[0].origin, DecisionOrigin::Confirmed);

    // An expired throttle drops out of the current set without any write.
    store
        .upsert_findings(&[acct("u-other", 0.95, 7_000)])
        .await
        .unwrap();
    assert_eq!(store.current_decisions().await.unwrap().new.len(), 2);
    h.advance(3_600_001);
    assert_eq!(
        values(&store.current_decisions().await.unwrap().new),
        vec!["u-high"]
    );
}

pub async fn dismissing_deletes_the_decision_and_the_stream_pages_in_order(h: Harness) {
    let ids: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
    let updates: Vec<_> = ids.iter().map(|id| acct(id, 0.9, 5_000)).collect();
    h.store.upsert_findings(&updates).await.unwrap();
    for id in &ids {
        let subject = Subject::account(id.clone()).unwrap();
        close(
            &h,
            &subject,
            ReviewStatus::Confirmed,
            CloseReason::TruePositive,
        )
        .await;
    }
    let p0 = Subject::account("p0").unwrap();
    reopen(&h, &p0).await;
    close(&h, &p0, ReviewStatus::Dismissed, CloseReason::FalsePositive).await;

    // Two per page: p1 p2 | p3 p4 | p0 deleted (its row moved to the end of the stream).
    let mut cursor = 0;
    let mut pages = Vec::new();
    loop {
        let page = h.store.decision_changes(cursor, 2).await.unwrap();
        pages.push((values(&page.new).join(","), values(&page.deleted).join(",")));
        cursor = page.cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![
            ("p1,p2".to_string(), String::new()),
            ("p3,p4".to_string(), String::new()),
            (String::new(), "p0".to_string()),
        ]
    );
    assert_eq!(cursor, h.store.current_decisions().await.unwrap().cursor);
}
