//! The review workflow's rules, kept pure so they are tested without a database.
//!
//! ```text
//!   open ──► investigating ──► confirmed | dismissed
//!    │  ◄──        │                 │
//!    └────────────────────────► confirmed | dismissed
//!   confirmed | dismissed ──► open   (explicit reopen, or the reopen rule for dismissed)
//! ```
//!
//! Triage may skip `investigating`: an obvious case is closed straight from `open`. A closed
//! finding changes its verdict only through `open`, so the audit trail shows the reopening.
//! Staying in `open` or `investigating` is allowed only to change the assignee.

use crate::error::StoreError;
use crate::model::{AssigneeChange, CloseReason, ReviewStatus, TransitionRequest};

/// Checks a review change against the workflow; `from` is the current status.
pub fn check_transition(from: ReviewStatus, request: &TransitionRequest) -> Result<(), StoreError> {
    use ReviewStatus::*;
    let to = request.to;
    let allowed = match (from, to) {
        (Open, Investigating | Confirmed | Dismissed) => true,
        (Investigating, Open | Confirmed | Dismissed) => true,
        (Confirmed | Dismissed, Open) => true,
        (Open, Open) | (Investigating, Investigating) => request.assignee != AssigneeChange::Keep,
        _ => false,
    };
    if !allowed {
        return Err(StoreError::InvalidTransition { from, to });
    }
    match (to, request.close_reason) {
        (Confirmed | Dismissed, None) => Err(StoreError::InvalidInput(format!(
            "closing as {to} needs a close_reason"
        ))),
        (Open | Investigating, Some(_)) => Err(StoreError::InvalidInput(format!(
            "a close_reason is only given when closing, not when moving to {to}"
        ))),
        (Confirmed, Some(CloseReason::FalsePositive | CloseReason::BenignPositive))
        | (Dismissed, Some(CloseReason::TruePositive)) => Err(StoreError::InvalidInput(format!(
            "close_reason {} contradicts status {to}",
            request
                .close_reason
                .map(CloseReason::as_str)
                .unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

/// When a dismissed subject has become clearly worse than when it was dismissed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReopenRule {
    /// Score rise, relative to the score at dismissal, that reopens.
    pub score_delta: f64,
}

impl Default for ReopenRule {
    fn default() -> Self {
        Self { score_delta: 0.15 }
    }
}

/// What the reopen rule looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReopenInput {
    pub status: ReviewStatus,
    pub closed_score: Option<f64>,
    pub closed_severity_rank: Option<i32>,
    pub score: f64,
    pub severity_rank: i32,
    /// An allowlisted subject is known and accepted: it does not come back to the queue.
    pub allowlisted: bool,
}

impl ReopenRule {
    pub fn should_reopen(&self, input: &ReopenInput) -> bool {
        if input.status != ReviewStatus::Dismissed || input.allowlisted {
            return false;
        }
        // Tolerance so that 0.5 + 0.15 reopens at a score of 0.65 despite binary rounding.
        const EPSILON: f64 = 1e-9;
        let score_rose = input
            .closed_score
            .is_some_and(|closed| input.score + EPSILON >= closed + self.score_delta);
        let severity_rose = input
            .closed_severity_rank
            .is_some_and(|closed| input.severity_rank > closed);
        score_rose || severity_rose
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(to: ReviewStatus, reason: Option<CloseReason>) -> TransitionRequest {
        TransitionRequest {
            to,
            expected_version: 1,
            close_reason: reason,
            assignee: AssigneeChange::Keep,
        }
    }

    #[test]
    fn triage_may_close_straight_from_open() {
        let dismiss = request(ReviewStatus::Dismissed, Some(CloseReason::FalsePositive));
        assert!(check_transition(ReviewStatus::Open, &dismiss).is_ok());
        let confirm = request(ReviewStatus::Confirmed, Some(CloseReason::TruePositive));
        assert!(check_transition(ReviewStatus::Investigating, &confirm).is_ok());
    }

    #[test]
    fn a_verdict_changes_only_through_reopening() {
        let confirm = request(ReviewStatus::Confirmed, Some(CloseReason::TruePositive));
        assert!(matches!(
            check_transition(ReviewStatus::Dismissed, &confirm),
            Err(StoreError::InvalidTransition { .. })
        ));
        let investigate = request(ReviewStatus::Investigating, None);
        assert!(matches!(
            check_transition(ReviewStatus::Confirmed, &investigate),
            Err(StoreError::InvalidTransition { .. })
        ));
        assert!(
            check_transition(ReviewStatus::Confirmed, &request(ReviewStatus::Open, None)).is_ok()
        );
    }

    #[test]
    fn staying_put_is_only_a_reassignment() {
        let same = request(ReviewStatus::Investigating, None);
        assert!(check_transition(ReviewStatus::Investigating, &same).is_err());
        let reassign = TransitionRequest {
            assignee: AssigneeChange::Set("ana".into()),
            ..same
        };
        assert!(check_transition(ReviewStatus::Investigating, &reassign).is_ok());
        let closed_again = TransitionRequest {
            assignee: AssigneeChange::Set("ana".into()),
            ..request(ReviewStatus::Dismissed, Some(CloseReason::Other))
        };
        assert!(check_transition(ReviewStatus::Dismissed, &closed_again).is_err());
    }

    #[test]
    fn closing_needs_a_reason_that_fits_the_verdict() {
        assert!(matches!(
            check_transition(ReviewStatus::Open, &request(ReviewStatus::Dismissed, None)),
            Err(StoreError::InvalidInput(_))
        ));
        let contradiction = request(ReviewStatus::Dismissed, Some(CloseReason::TruePositive));
        assert!(check_transition(ReviewStatus::Open, &contradiction).is_err());
        let stray = request(ReviewStatus::Investigating, Some(CloseReason::Duplicate));
        assert!(check_transition(ReviewStatus::Open, &stray).is_err());
        let duplicate = request(ReviewStatus::Confirmed, Some(CloseReason::Duplicate));
        assert!(check_transition(ReviewStatus::Open, &duplicate).is_ok());
    }

    fn dismissed_at(score: f64, rank: i32) -> ReopenInput {
        ReopenInput {
            status: ReviewStatus::Dismissed,
            closed_score: Some(score),
            closed_severity_rank: Some(rank),
            score,
            severity_rank: rank,
            allowlisted: false,
        }
    }

    #[test]
    fn a_dismissed_subject_reopens_when_its_score_rises_by_the_delta() {
        let rule = ReopenRule::default();
        let barely = ReopenInput {
            score: 0.64,
            ..dismissed_at(0.5, 1)
        };
        assert!(!rule.should_reopen(&barely));
        let enough = ReopenInput {
            score: 0.65,
            ..dismissed_at(0.5, 1)
        };
        assert!(rule.should_reopen(&enough));
    }

    #[test]
    fn a_severity_rise_reopens_even_with_a_small_score_change() {
        let rule = ReopenRule { score_delta: 0.5 };
        let input = ReopenInput {
            score: 0.76,
            severity_rank: 2,
            ..dismissed_at(0.74, 1)
        };
        assert!(rule.should_reopen(&input));
    }

    #[test]
    fn confirmed_or_allowlisted_subjects_do_not_reopen() {
        let rule = ReopenRule::default();
        let worse = ReopenInput {
            score: 0.99,
            severity_rank: 3,
            ..dismissed_at(0.2, 0)
        };
        assert!(!rule.should_reopen(&ReopenInput {
            status: ReviewStatus::Confirmed,
            ..worse
        }));
        assert!(!rule.should_reopen(&ReopenInput {
            allowlisted: true,
            ..worse
        }));
        assert!(rule.should_reopen(&worse));
    }
}
