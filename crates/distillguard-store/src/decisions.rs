//! Decisions: what a gateway should do about a subject, derived from findings.
//!
//! The rule is pure and lives here so it is tested without a database: [`DecisionPolicy::wanted`]
//! says which decision a finding calls for in its current state. `sql_decisions` reconciles the
//! stored decisions of a finding with that answer whenever the finding, its review state or the
//! allowlist changes, creating and deleting rows so that bouncers following the change stream
//! (`GET /v1/decisions?since=`) see `new` and `deleted` entries, as in CrowdSec's bouncer stream.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use distillguard_core::finding::Severity;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::{CloseReason, ReviewStatus, Subject};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::corrupt(format!(
                        concat!(stringify!($name), " {:?}"),
                        other
                    ))),
                }
            }
        }
    };
}

text_enum!(
    /// What a decision's `value` names at the gateway.
    DecisionScope {
        Account => "account",
        ApiKey => "api_key",
        EndUser => "end_user",
    }
);

text_enum!(
    /// What the gateway should do. `review` asks for a softer step the gateway chooses (a
    /// challenge, a lower quota, routing to a human), for subjects not yet confirmed.
    DecisionAction {
        Throttle => "throttle",
        Block => "block",
        Review => "review",
    }
);

text_enum!(
    /// Why the decision exists: an analyst confirmed the finding, or the engine flagged it and
    /// the operator acts on unreviewed flags.
    DecisionOrigin {
        Confirmed => "confirmed",
        Flagged => "flagged",
    }
);

/// Acting on unreviewed flags (off unless the operator turns it on).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlaggedPolicy {
    /// Flags at or above this severity get a decision.
    pub min_severity: Severity,
    pub action: DecisionAction,
    /// How long each such decision lasts; the next re-score of a still-flagged subject renews it.
    pub ttl: Option<Duration>,
}

/// Which decisions findings produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionPolicy {
    /// What distillguard's account ids are at the gateway (set by how the sources are configured:
    /// LiteLLM with `account_fields = ["end_user"]` makes them end users).
    pub scope: DecisionScope,
    /// For confirmed findings.
    pub confirmed_action: DecisionAction,
    /// `None`: until the finding is reopened, or the subject allowlisted.
    pub confirmed_ttl: Option<Duration>,
    /// `None`: unreviewed flags produce no decision.
    pub flagged: Option<FlaggedPolicy>,
}

impl Default for DecisionPolicy {
    fn default() -> Self {
        Self {
            scope: DecisionScope::Account,
            confirmed_action: DecisionAction::Block,
            confirmed_ttl: None,
            flagged: None,
        }
    }
}

/// What [`DecisionPolicy::wanted`] looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingFacts<'a> {
    pub status: ReviewStatus,
    pub close_reason: Option<CloseReason>,
    pub engine_flagged: bool,
    pub severity: Severity,
    pub detectors: &'a [String],
    pub allowlisted: bool,
}

/// The decision a finding calls for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub action: DecisionAction,
    pub origin: DecisionOrigin,
    pub reason: String,
    pub ttl: Option<Duration>,
}

impl DecisionPolicy {
    /// The decision a finding in this state calls for, if any. Allowlisting and dismissal always
    /// win; confirmation needs no flag (an analyst's verdict stands on its own).
    pub fn wanted(&self, facts: &FindingFacts<'_>) -> Option<Wanted> {
        if facts.allowlisted {
            return None;
        }
        let detectors = if facts.detectors.is_empty() {
            String::new()
        } else {
            format!("; detectors: {}", facts.detectors.join(", "))
        };
        match facts.status {
            ReviewStatus::Dismissed => None,
            ReviewStatus::Confirmed => Some(Wanted {
                action: self.confirmed_action,
                origin: DecisionOrigin::Confirmed,
                reason: format!(
                    "confirmed by review ({}){detectors}",
                    facts
                        .close_reason
                        .map_or("no close reason", CloseReason::as_str)
                ),
                ttl: self.confirmed_ttl,
            }),
            ReviewStatus::Open | ReviewStatus::Investigating => {
                let flagged = self.flagged?;
                (facts.engine_flagged && facts.severity >= flagged.min_severity).then(|| Wanted {
                    action: flagged.action,
                    origin: DecisionOrigin::Flagged,
                    reason: format!(
                        "flagged at {} severity, not yet reviewed{detectors}",
                        facts.severity.as_str()
                    ),
                    ttl: flagged.ttl,
                })
            }
        }
    }

    /// Whether any unreviewed flag can produce a decision (the write path skips work otherwise).
    pub fn acts_on_flags(&self) -> bool {
        self.flagged.is_some()
    }
}

/// One decision, as bouncers read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub id: i64,
    pub scope: DecisionScope,
    pub value: String,
    pub action: DecisionAction,
    pub origin: DecisionOrigin,
    pub reason: String,
    pub severity: Severity,
    /// The finding it comes from: the account's own, or its cluster's.
    pub finding: Subject,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A page of the decision stream: what appeared and what went away after a cursor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecisionChanges {
    pub new: Vec<Decision>,
    /// Deleted, or expired: the gateway stops applying these.
    pub deleted: Vec<Decision>,
    /// Pass back as `since` to get what happens next.
    pub cursor: i64,
    /// More changes are waiting beyond this page; ask again at once.
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(status: ReviewStatus, severity: Severity) -> FindingFacts<'static> {
        FindingFacts {
            status,
            close_reason: None,
            engine_flagged: true,
            severity,
            detectors: &[],
            allowlisted: false,
        }
    }

    fn acting_on_high_flags() -> DecisionPolicy {
        DecisionPolicy {
            flagged: Some(FlaggedPolicy {
                min_severity: Severity::High,
                action: DecisionAction::Throttle,
                ttl: Some(Duration::from_secs(3600)),
            }),
            ..DecisionPolicy::default()
        }
    }

    #[test]
    fn a_confirmed_finding_is_blocked_by_default_even_when_no_longer_flagged() {
        let mut confirmed = facts(ReviewStatus::Confirmed, Severity::Low);
        confirmed.engine_flagged = false;
        confirmed.close_reason = Some(CloseReason::TruePositive);
        let wanted = DecisionPolicy::default().wanted(&confirmed).unwrap();
        assert_eq!(wanted.action, DecisionAction::Block);
        assert_eq!(wanted.origin, DecisionOrigin::Confirmed);
        assert!(wanted.reason.contains("true_positive"), "{}", wanted.reason);
        assert_eq!(wanted.ttl, None);
    }

    #[test]
    fn unreviewed_flags_produce_nothing_unless_the_operator_turns_it_on() {
        let open = facts(ReviewStatus::Open, Severity::Critical);
        assert_eq!(DecisionPolicy::default().wanted(&open), None);
        let wanted = acting_on_high_flags().wanted(&open).unwrap();
        assert_eq!(wanted.origin, DecisionOrigin::Flagged);
        assert_eq!(wanted.action, DecisionAction::Throttle);
    }

    #[test]
    fn flags_below_the_configured_severity_or_no_longer_flagged_produce_nothing() {
        let policy = acting_on_high_flags();
        assert_eq!(
            policy.wanted(&facts(ReviewStatus::Investigating, Severity::Medium)),
            None
        );
        let mut cleared = facts(ReviewStatus::Open, Severity::Critical);
        cleared.engine_flagged = false;
        assert_eq!(policy.wanted(&cleared), None);
        assert!(policy
            .wanted(&facts(ReviewStatus::Investigating, Severity::High))
            .is_some());
    }

    #[test]
    fn dismissal_and_allowlisting_remove_every_decision() {
        let policy = acting_on_high_flags();
        assert_eq!(
            policy.wanted(&facts(ReviewStatus::Dismissed, Severity::Critical)),
            None
        );
        let mut allowlisted = facts(ReviewStatus::Confirmed, Severity::Critical);
        allowlisted.allowlisted = true;
        assert_eq!(policy.wanted(&allowlisted), None);
    }

    #[test]
    fn names_round_trip_through_their_stored_text() {
        for scope in [
            DecisionScope::Account,
            DecisionScope::ApiKey,
            DecisionScope::EndUser,
        ] {
            assert_eq!(scope.as_str().parse::<DecisionScope>().unwrap(), scope);
        }
        assert!("ip".parse::<DecisionScope>().is_err());
        assert_eq!(
            "review".parse::<DecisionAction>().unwrap(),
            DecisionAction::Review
        );
    }
}
