//! Review workflow, notes, audit trail, allowlist and the reopen rule.

use distillguard_store::*;

use crate::support::*;

fn ana() -> Actor {
    Actor::parse("ana").unwrap()
}

fn to(status: ReviewStatus, version: i64, reason: Option<CloseReason>) -> TransitionRequest {
    TransitionRequest {
        to: status,
        expected_version: version,
        close_reason: reason,
        assignee: AssigneeChange::Keep,
    }
}

fn actions(trail: &[AuditEntry]) -> Vec<&str> {
    trail.iter().map(|e| e.action.as_str()).collect()
}

pub async fn triage_moves_a_finding_through_the_workflow_with_an_audit_entry_per_step(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.9, 5_000)])
        .await
        .unwrap();
    let subject = Subject::account("a1").unwrap();
    let claim = TransitionRequest {
        assignee: AssigneeChange::Set("ana".into()),
        ..to(ReviewStatus::Investigating, 1, None)
    };
    let state = h.store.transition(&subject, &claim, &ana()).await.unwrap();
    assert_eq!(
        (state.status, state.assignee.as_deref(), state.version),
        (ReviewStatus::Investigating, Some("ana"), 2)
    );
    h.advance(60_000);
    let state = h
        .store
        .transition(
            &subject,
            &to(ReviewStatus::Confirmed, 2, Some(CloseReason::TruePositive)),
            &ana(),
        )
        .await
        .unwrap();
    assert_eq!(
        (state.status, state.close_reason, state.version),
        (ReviewStatus::Confirmed, Some(CloseReason::TruePositive), 3)
    );
    assert_eq!(state.updated_at, h.now());

    let review = h.store.get_account("a1").await.unwrap().summary.review;
    assert_eq!(review, state);
    let trail = h.store.list_audit(&subject, None, 100).await.unwrap();
    assert_eq!(
        actions(&trail),
        vec![
            "finding.flagged",
            "review.status_changed",
            "review.status_changed"
        ]
    );
    let last = trail.last().unwrap();
    assert_eq!(last.actor, "ana");
    assert_eq!(last.at, h.now());
    assert_eq!(last.before.as_ref().unwrap()["status"], "investigating");
    assert_eq!(last.after.as_ref().unwrap()["status"], "confirmed");
    assert_eq!(
        last.after.as_ref().unwrap()["close_reason"],
        "true_positive"
    );
    assert_eq!(last.after.as_ref().unwrap()["version"], 3);
    // Paging the trail.
    let rest = h
        .store
        .list_audit(&subject, Some(trail[0].id), 1)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, trail[1].id);
}

pub async fn a_stale_version_is_a_conflict_and_changes_nothing(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.9, 5_000)])
        .await
        .unwrap();
    let subject = Subject::account("a1").unwrap();
    h.store
        .transition(&subject, &to(ReviewStatus::Investigating, 1, None), &ana())
        .await
        .unwrap();
    let stale = h
        .store
        .transition(
            &subject,
            &to(ReviewStatus::Dismissed, 1, Some(CloseReason::Other)),
            &ana(),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::VersionConflict { current: 2 })),
        "{stale:?}"
    );
    let review = h.store.get_account("a1").await.unwrap().summary.review;
    assert_eq!(
        (review.status, review.version),
        (ReviewStatus::Investigating, 2)
    );
    assert_eq!(
        h.store.list_audit(&subject, None, 100).await.unwrap().len(),
        2
    );
}

pub async fn an_invalid_transition_is_refused_and_changes_nothing(h: Harness) {
    h.store
        .upsert_findings(&[cluster("c1", 0.9, &["x"], 5_000)])
        .await
        .unwrap();
    let subject = Subject::cluster("c1").unwrap();
    h.store
        .transition(
            &subject,
            &to(
                ReviewStatus::Dismissed,
                1,
                Some(CloseReason::BenignPositive),
            ),
            &ana(),
        )
        .await
        .unwrap();
    let flip = h
        .store
        .transition(
            &subject,
            &to(ReviewStatus::Confirmed, 2, Some(CloseReason::TruePositive)),
            &ana(),
        )
        .await;
    assert!(matches!(
        flip,
        Err(StoreError::InvalidTransition {
            from: ReviewStatus::Dismissed,
            to: ReviewStatus::Confirmed
        })
    ));
    let reasonless = h
        .store
        .transition(
            &subject,
            &to(ReviewStatus::Open, 2, Some(CloseReason::Other)),
            &ana(),
        )
        .await;
    assert!(matches!(reasonless, Err(StoreError::InvalidInput(_))));
    assert_eq!(
        h.store
            .get_cluster("c1")
            .await
            .unwrap()
            .summary
            .review
            .version,
        2
    );
    // An explicit reopen is allowed and clears the verdict.
    let reopened = h
        .store
        .transition(&subject, &to(ReviewStatus::Open, 2, None), &ana())
        .await
        .unwrap();
    assert_eq!(
        (reopened.status, reopened.close_reason),
        (ReviewStatus::Open, None)
    );
}

pub async fn unknown_subjects_are_not_found(h: Harness) {
    let ghost = Subject::account("ghost").unwrap();
    assert!(matches!(
        h.store
            .transition(&ghost, &to(ReviewStatus::Investigating, 1, None), &ana())
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        h.store.add_note(&ghost, "hello", &ana()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        h.store.list_notes(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        h.store.list_audit(&ghost, None, 10).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        h.store.remove_allowlist(424242, &ana()).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn a_bulk_change_reports_each_item(h: Harness) {
    h.store
        .upsert_findings(&[
            acct("a", 0.9, 1_000),
            acct("b", 0.9, 1_000),
            acct("c", 0.9, 1_000),
        ])
        .await
        .unwrap();
    h.store
        .transition(
            &Subject::account("c").unwrap(),
            &to(ReviewStatus::Investigating, 1, None),
            &ana(),
        )
        .await
        .unwrap();
    let items = vec![
        BulkItem {
            id: "a".into(),
            expected_version: None,
        },
        BulkItem {
            id: "b".into(),
            expected_version: Some(1),
        },
        BulkItem {
            id: "c".into(),
            expected_version: Some(1),
        },
        BulkItem {
            id: "zz".into(),
            expected_version: None,
        },
    ];
    let outcomes = h
        .store
        .bulk_transition(
            SubjectKind::Account,
            &items,
            &to(ReviewStatus::Dismissed, 0, Some(CloseReason::Duplicate)),
            &ana(),
        )
        .await
        .unwrap();
    assert!(matches!(
        outcomes[0].result,
        Ok(ReviewState {
            status: ReviewStatus::Dismissed,
            version: 2,
            ..
        })
    ));
    assert!(outcomes[1].result.is_ok());
    assert!(matches!(
        outcomes[2].result,
        Err(StoreError::VersionConflict { current: 2 })
    ));
    assert!(matches!(outcomes[3].result, Err(StoreError::NotFound(_))));
    let dismissed = ListFilter {
        status: vec![ReviewStatus::Dismissed],
        ..Default::default()
    };
    assert_eq!(
        h.store
            .list_accounts(&dismissed, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert!(matches!(
        h.store
            .bulk_transition(
                SubjectKind::Account,
                &[],
                &to(ReviewStatus::Open, 0, None),
                &ana()
            )
            .await,
        Err(StoreError::InvalidInput(_))
    ));
}

pub async fn notes_are_kept_in_order_and_audited(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.9, 5_000)])
        .await
        .unwrap();
    let subject = Subject::account("a1").unwrap();
    h.store
        .add_note(&subject, "same card as acct-9", &ana())
        .await
        .unwrap();
    h.store
        .add_note(&subject, "asked billing", &Actor::parse("bob").unwrap())
        .await
        .unwrap();
    let notes = h.store.list_notes(&subject).await.unwrap();
    assert_eq!(
        notes
            .iter()
            .map(|n| (n.author.as_str(), n.body.as_str()))
            .collect::<Vec<_>>(),
        vec![("ana", "same card as acct-9"), ("bob", "asked billing")]
    );
    let trail = h.store.list_audit(&subject, None, 100).await.unwrap();
    assert_eq!(
        actions(&trail),
        vec!["finding.flagged", "note.added", "note.added"]
    );
    assert!(matches!(
        h.store.add_note(&subject, "   ", &ana()).await,
        Err(StoreError::InvalidInput(_))
    ));
}

pub async fn an_allowlisted_subject_is_scored_but_not_flagged_and_says_why(h: Harness) {
    h.store
        .upsert_findings(&[acct("partner", 0.95, 5_000)])
        .await
        .unwrap();
    let subject = Subject::account("partner").unwrap();
    let entry = h
        .store
        .add_allowlist(
            &subject,
            "contracted eval partner",
            Some(h.now() + chrono::Duration::days(30)),
            &ana(),
        )
        .await
        .unwrap();
    // Still scored: a later update is stored, but the subject stays unflagged.
    h.store
        .upsert_findings(&[acct("partner", 0.99, 9_000)])
        .await
        .unwrap();
    let summary = h.store.get_account("partner").await.unwrap().summary;
    assert_eq!(
        (summary.score, summary.flagged, summary.engine_flagged),
        (0.99, false, true)
    );
    assert_eq!(
        summary.allowlisted.as_ref().map(|a| a.reason.as_str()),
        Some("contracted eval partner")
    );
    let flagged = ListFilter {
        flagged: Some(true),
        ..Default::default()
    };
    assert!(h
        .store
        .list_accounts(&flagged, &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(h.store.stats().await.unwrap().accounts.flagged, 0);
    assert_eq!(
        h.store.list_allowlist(false).await.unwrap(),
        vec![entry.clone()]
    );

    h.store.remove_allowlist(entry.id, &ana()).await.unwrap();
    assert!(
        h.store
            .get_account("partner")
            .await
            .unwrap()
            .summary
            .flagged
    );
    assert!(h.store.list_allowlist(true).await.unwrap().is_empty());
    let trail = h.store.list_audit(&subject, None, 100).await.unwrap();
    assert_eq!(
        actions(&trail),
        vec!["finding.flagged", "allowlist.added", "allowlist.removed"]
    );
}

pub async fn an_expired_allowlist_entry_no_longer_applies(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.9, 5_000)])
        .await
        .unwrap();
    let subject = Subject::account("a1").unwrap();
    h.store
        .add_allowlist(
            &subject,
            "trial",
            Some(h.now() + chrono::Duration::hours(1)),
            &ana(),
        )
        .await
        .unwrap();
    assert!(!h.store.get_account("a1").await.unwrap().summary.flagged);
    h.advance(2 * 3_600_000);
    let summary = h.store.get_account("a1").await.unwrap().summary;
    assert!(summary.flagged);
    assert_eq!(summary.allowlisted, None);
    assert!(h.store.list_allowlist(false).await.unwrap().is_empty());
    assert_eq!(h.store.list_allowlist(true).await.unwrap().len(), 1);
    let past = h
        .store
        .add_allowlist(
            &subject,
            "late",
            Some(h.now() - chrono::Duration::hours(1)),
            &ana(),
        )
        .await;
    assert!(matches!(past, Err(StoreError::InvalidInput(_))));
    // Allowlisting again replaces the old entry, and subjects without findings can be allowlisted.
    h.store
        .add_allowlist(&subject, "renewed", None, &ana())
        .await
        .unwrap();
    h.store
        .add_allowlist(
            &Subject::cluster("future").unwrap(),
            "known lab",
            None,
            &ana(),
        )
        .await
        .unwrap();
    let live = h.store.list_allowlist(true).await.unwrap();
    assert_eq!(
        live.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
        vec!["renewed", "known lab"]
    );
}

pub async fn a_dismissed_subject_that_gets_clearly_worse_reopens(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.55, 1_000), acct("a2", 0.55, 1_000)])
        .await
        .unwrap();
    for id in ["a1", "a2"] {
        h.store
            .transition(
                &Subject::account(id).unwrap(),
                &to(
                    ReviewStatus::Dismissed,
                    1,
                    Some(CloseReason::BenignPositive),
                ),
                &ana(),
            )
            .await
            .unwrap();
    }
    // A small rise within the band does not reopen.
    let outcome = h
        .store
        .upsert_findings(&[acct("a1", 0.6, 2_000)])
        .await
        .unwrap();
    assert_eq!(outcome.reopened, 0);
    assert_eq!(
        h.store
            .get_account("a1")
            .await
            .unwrap()
            .summary
            .review
            .status,
        ReviewStatus::Dismissed
    );
    // +0.15 over the score at dismissal reopens (0.55 -> 0.70 also crosses into high severity
    // for a2, which reopens by severity with a smaller delta configured away).
    let outcome = h
        .store
        .upsert_findings(&[acct("a1", 0.70, 3_000)])
        .await
        .unwrap();
    assert_eq!(outcome.reopened, 1);
    let review = h.store.get_account("a1").await.unwrap().summary.review;
    assert_eq!(
        (review.status, review.close_reason, review.version),
        (ReviewStatus::Open, None, 3)
    );
    let trail = h
        .store
        .list_audit(&Subject::account("a1").unwrap(), None, 100)
        .await
        .unwrap();
    let reopen = trail.last().unwrap();
    assert_eq!(
        (reopen.action.as_str(), reopen.actor.as_str()),
        ("review.reopened", "system")
    );
    assert_eq!(reopen.before.as_ref().unwrap()["status"], "dismissed");
    assert_eq!(reopen.after.as_ref().unwrap()["status"], "open");
    // Idempotent: the same update again does not reopen twice.
    assert_eq!(
        h.store
            .upsert_findings(&[acct("a1", 0.70, 3_000)])
            .await
            .unwrap()
            .reopened,
        0
    );

    let strict = h
        .store_with(|o| o.reopen = ReopenRule { score_delta: 0.9 })
        .await;
    assert_eq!(
        strict
            .upsert_findings(&[acct("a2", 0.6, 2_000)])
            .await
            .unwrap()
            .reopened,
        0
    );
    assert_eq!(
        strict
            .upsert_findings(&[acct("a2", 0.76, 3_000)])
            .await
            .unwrap()
            .reopened,
        1,
        "medium -> high"
    );
}

pub async fn confirmed_subjects_do_not_reopen(h: Harness) {
    h.store
        .upsert_findings(&[acct("a1", 0.5, 1_000)])
        .await
        .unwrap();
    h.store
        .transition(
            &Subject::account("a1").unwrap(),
            &to(ReviewStatus::Confirmed, 1, Some(CloseReason::TruePositive)),
            &ana(),
        )
        .await
        .unwrap();
    assert_eq!(
        h.store
            .upsert_findings(&[acct("a1", 0.99, 2_000)])
            .await
            .unwrap()
            .reopened,
        0
    );
    assert_eq!(
        h.store
            .get_account("a1")
            .await
            .unwrap()
            .summary
            .review
            .status,
        ReviewStatus::Confirmed
    );
}
