//! `GET /v1/decisions`: what gateways should do about whom, in the manner of CrowdSec's bouncer
//! stream.
//!
//! - no `since` (or `startup=true`): every decision in force, as `new`, with a `cursor`;
//! - `since=<cursor>`: decisions created (`new`) and deleted or expired (`deleted`) after it;
//! - `stream=true`: with nothing new yet, wait up to `timeout` seconds for a change (long poll).
//!
//! Unlike CrowdSec the cursor is held by the client, not the server, so any number of bouncers
//! and replicas follow the same stream without registering. Readable by `enforcer`, `analyst`
//! and `admin`.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use distillguard_core::finding::Severity;
use distillguard_store::{
    Decision, DecisionAction, DecisionChanges, DecisionOrigin, DecisionScope, SubjectKind,
};
use serde::Serialize;

use super::review::{api_error, params};
use super::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// Longest a long poll may wait, and what it waits when `timeout` is not given.
const MAX_WAIT_SECS: u64 = 60;
const DEFAULT_WAIT_SECS: u64 = 30;
/// How often a waiting long poll looks for changes; the query is one index range scan.
const POLL_EVERY: Duration = Duration::from_millis(250);
const DEFAULT_LIMIT: u32 = 1_000;
const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Clone, PartialEq)]
struct DecisionQuery {
    since: Option<i64>,
    stream: bool,
    wait: Duration,
    limit: u32,
}

fn bad(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("query parameter {name}: {why}"))
}

fn boolean(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(name, "expected true or false")),
    }
}

fn number<T>(name: &str, value: &str, range: std::ops::RangeInclusive<T>) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    value
        .parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            bad(
                name,
                format!(
                    "expected an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

impl DecisionQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut query = DecisionQuery {
            since: None,
            stream: false,
            wait: Duration::from_secs(DEFAULT_WAIT_SECS),
            limit: DEFAULT_LIMIT,
        };
        let mut startup = false;
        for (key, value) in params::pairs(raw) {
            match key.as_str() {
                "since" => query.since = Some(number("since", &value, 0..=i64::MAX)?),
                "startup" => startup = boolean("startup", &value)?,
                "stream" => query.stream = boolean("stream", &value)?,
                "timeout" => {
                    query.wait = Duration::from_secs(number("timeout", &value, 1..=MAX_WAIT_SECS)?)
                }
                "limit" => query.limit = number("limit", &value, 1..=MAX_LIMIT)?,
                other => {
                    return Err(bad(
                        other,
                        "unknown; use since, startup, stream, timeout or limit",
                    ))
                }
            }
        }
        if startup {
            query.since = None;
        }
        Ok(query)
    }
}

/// The subject a decision comes from, with the link an analyst opens.
#[derive(Debug, Serialize)]
pub struct FindingLink {
    pub kind: SubjectKind,
    pub id: String,
    pub url: String,
}

/// One decision as sent to gateways.
#[derive(Debug, Serialize)]
pub struct DecisionView {
    pub id: i64,
    pub scope: DecisionScope,
    pub value: String,
    pub action: DecisionAction,
    pub origin: DecisionOrigin,
    pub reason: String,
    pub severity: Severity,
    pub finding: FindingLink,
    pub created_at: DateTime<Utc>,
    /// When the gateway stops applying it on its own; null: until deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<Decision> for DecisionView {
    fn from(decision: Decision) -> Self {
        let path = match decision.finding.kind {
            SubjectKind::Account => "accounts",
            SubjectKind::Cluster => "clusters",
        };
        Self {
            id: decision.id,
            scope: decision.scope,
            value: decision.value,
            action: decision.action,
            origin: decision.origin,
            reason: decision.reason,
            severity: decision.severity,
            finding: FindingLink {
                url: format!("/v1/{path}/{}", params::encode(&decision.finding.id)),
                kind: decision.finding.kind,
                id: decision.finding.id,
            },
            created_at: decision.created_at,
            expires_at: decision.expires_at,
        }
    }
}

/// The reply: decisions to apply, decisions to drop, and where to continue.
#[derive(Debug, Serialize)]
pub struct DecisionsReply {
    pub new: Vec<DecisionView>,
    pub deleted: Vec<DecisionView>,
    /// Opaque; pass it back as `since`.
    pub cursor: String,
    /// More changes wait beyond `limit`: ask again at once.
    pub has_more: bool,
}

impl From<DecisionChanges> for DecisionsReply {
    fn from(changes: DecisionChanges) -> Self {
        Self {
            new: changes.new.into_iter().map(Into::into).collect(),
            deleted: changes.deleted.into_iter().map(Into::into).collect(),
            cursor: changes.cursor.to_string(),
            has_more: changes.has_more,
        }
    }
}

/// `GET /v1/decisions`.
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DecisionsReply>, ApiError> {
    caller
        .require(Role::Enforcer)
        .or_else(|_| caller.require(Role::Analyst))?;
    let query = DecisionQuery::parse(raw.as_deref())?;
    let Some(since) = query.since else {
        let current = state.store.current_decisions().await.map_err(api_error)?;
        return Ok(Json(current.into()));
    };
    let deadline = tokio::time::Instant::now() + query.wait;
    let mut draining = state.draining.subscribe();
    loop {
        let changes = state
            .store
            .decision_changes(since, query.limit)
            .await
            .map_err(api_error)?;
        let empty = changes.new.is_empty() && changes.deleted.is_empty();
        let now = tokio::time::Instant::now();
        if !empty || !query.stream || now >= deadline || *draining.borrow() {
            return Ok(Json(changes.into()));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY.min(deadline - now)) => {}
            _ = draining.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cursor_or_startup_asks_for_the_current_set() {
        assert_eq!(DecisionQuery::parse(None).unwrap().since, None);
        let startup = DecisionQuery::parse(Some("since=12&startup=true")).unwrap();
        assert_eq!(startup.since, None);
        let follow = DecisionQuery::parse(Some("since=12&stream=true&timeout=5")).unwrap();
        assert_eq!(
            follow,
            DecisionQuery {
                since: Some(12),
                stream: true,
                wait: Duration::from_secs(5),
                limit: DEFAULT_LIMIT,
            }
        );
    }

    #[test]
    fn bad_or_unknown_parameters_are_refused_by_name() {
        for (query, name) in [
            ("since=abc", "since"),
            ("since=-1", "since"),
            ("timeout=0", "timeout"),
            ("timeout=61", "timeout"),
            ("stream=yes", "stream"),
            ("limit=0", "limit"),
            ("scope=ip", "scope"),
        ] {
            let message = DecisionQuery::parse(Some(query)).unwrap_err().to_string();
            assert!(message.contains(name), "{query}: {message}");
        }
    }
}
