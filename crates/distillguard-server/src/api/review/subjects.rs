//! Accounts and clusters: lists, details, triage, notes and audit trails.
//!
//! Handlers shared by both kinds are generic over a marker type, so each route names its kind
//! once (`list::<Accounts>`) and the code is written once.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use distillguard_store::{
    AccountDetail, Actor, AssigneeChange, AuditEntry, BulkItem, CloseReason, ClusterDetail,
    FindingSummary, Note, ReviewState, ReviewStatus, Subject, SubjectKind, TransitionRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api_error;
use super::params::{self, double_option};
use crate::api::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

pub trait Kind: Send + Sync + 'static {
    const KIND: SubjectKind;
    /// The collection path, for `next` links.
    const PATH: &'static str;
}

pub struct Accounts;
pub struct Clusters;

impl Kind for Accounts {
    const KIND: SubjectKind = SubjectKind::Account;
    const PATH: &'static str = "/v1/accounts";
}

impl Kind for Clusters {
    const KIND: SubjectKind = SubjectKind::Cluster;
    const PATH: &'static str = "/v1/clusters";
}

fn subject<K: Kind>(id: String) -> Result<Subject, ApiError> {
    Subject::new(K::KIND, params::path_text("id", id)?).map_err(api_error)
}

/// The audit trail records who acted; the caller's identity never includes its token.
pub(super) fn actor(caller: &Caller) -> Result<Actor, ApiError> {
    Actor::parse(caller.actor.clone()).map_err(api_error)
}

/// Every applied review change (a reassignment too) counts under the status it leaves the finding in.
fn count_review_action(state: &AppState, status: ReviewStatus) {
    state
        .metrics
        .review_actions
        .with_label_values(&[status.as_str()])
        .inc();
}

#[derive(Debug, Serialize)]
pub struct ListReply<T> {
    pub items: Vec<T>,
    /// The link to the next page, or null on the last one.
    pub next: Option<String>,
}

/// `GET /v1/accounts`, `GET /v1/clusters`.
pub async fn list<K: Kind>(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ListReply<FindingSummary>>, ApiError> {
    caller.require(Role::Analyst)?;
    let (filter, page) = params::list_request(query.as_deref())?;
    let page = state
        .store
        .list(K::KIND, &filter, &page)
        .await
        .map_err(api_error)?;
    Ok(Json(ListReply {
        next: page
            .next
            .map(|cursor| params::next_link(K::PATH, query.as_deref(), &cursor)),
        items: page.items,
    }))
}

/// `GET /v1/accounts/{id}`.
pub async fn get_account(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AccountDetail>, ApiError> {
    caller.require(Role::Analyst)?;
    Ok(Json(
        state
            .store
            .get_account(&params::path_text("id", id)?)
            .await
            .map_err(api_error)?,
    ))
}

/// `GET /v1/clusters/{id}`.
pub async fn get_cluster(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ClusterDetail>, ApiError> {
    caller.require(Role::Analyst)?;
    Ok(Json(
        state
            .store
            .get_cluster(&params::path_text("id", id)?)
            .await
            .map_err(api_error)?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    pub status: ReviewStatus,
    /// The version the analyst last read.
    #[serde(deserialize_with = "params::int64")]
    pub version: i64,
    #[serde(default)]
    pub close_reason: Option<CloseReason>,
    #[serde(default, deserialize_with = "double_option")]
    pub assignee: Option<Option<String>>,
}

/// A blank name unassigns like `null` does: what a cleared assignee field in a form sends. A name
/// is checked here, before any subject is touched, so a bulk change fails whole on a bad name.
fn assignee_change(assignee: Option<Option<String>>) -> Result<AssigneeChange, ApiError> {
    Ok(match assignee {
        None => AssigneeChange::Keep,
        Some(None) => AssigneeChange::Clear,
        Some(Some(name)) if name.trim().is_empty() => AssigneeChange::Clear,
        Some(Some(name)) => {
            let max = distillguard_store::MAX_NAME_CHARS;
            if name.chars().count() > max {
                return Err(ApiError::Unprocessable(format!(
                    "invalid body: assignee longer than {max} characters"
                )));
            }
            AssigneeChange::Set(name)
        }
    })
}

/// `PATCH /v1/{accounts|clusters}/{id}/review`.
pub async fn review<K: Kind>(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ReviewState>, ApiError> {
    caller.require(Role::Analyst)?;
    let body: ReviewBody = params::body(&body)?;
    let request = TransitionRequest {
        to: body.status,
        expected_version: body.version,
        close_reason: body.close_reason,
        assignee: assignee_change(body.assignee)?,
    };
    let review = state
        .store
        .transition(&subject::<K>(id)?, &request, &actor(&caller)?)
        .await
        .map_err(api_error)?;
    count_review_action(&state, review.status);
    Ok(Json(review))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkEntry {
    pub id: String,
    #[serde(default, deserialize_with = "params::optional_int64")]
    pub version: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// Ids to change at their current version.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Ids with the version each was read at.
    #[serde(default)]
    pub items: Vec<BulkEntry>,
    pub status: ReviewStatus,
    #[serde(default)]
    pub close_reason: Option<CloseReason>,
    #[serde(default, deserialize_with = "double_option")]
    pub assignee: Option<Option<String>>,
}

/// `POST /v1/{accounts|clusters}/bulk-review`: one result per id, in order.
pub async fn bulk_review<K: Kind>(
    caller: Caller,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Analyst)?;
    let body: BulkBody = params::body(&body)?;
    let max = distillguard_store::MAX_BULK_ITEMS;
    if body.ids.len() + body.items.len() == 0 {
        return Err(ApiError::Unprocessable(
            "invalid body: give at least one subject in ids or items".to_string(),
        ));
    }
    if body.ids.len() > max || body.items.len() > max {
        return Err(ApiError::Unprocessable(format!(
            "invalid body: at most {max} ids and {max} items per request"
        )));
    }
    let items: Vec<BulkItem> = body
        .ids
        .into_iter()
        .map(|id| BulkItem {
            id,
            expected_version: None,
        })
        .chain(body.items.into_iter().map(|entry| BulkItem {
            id: entry.id,
            expected_version: entry.version,
        }))
        .collect();
    let request = TransitionRequest {
        to: body.status,
        expected_version: 0,
        close_reason: body.close_reason,
        assignee: assignee_change(body.assignee)?,
    };
    // The store takes at most MAX_BULK_ITEMS per call; ids and items may each hold that many.
    let actor = actor(&caller)?;
    let mut outcomes = Vec::with_capacity(items.len());
    for chunk in items.chunks(max) {
        let chunk = state
            .store
            .bulk_transition(K::KIND, chunk, &request, &actor)
            .await
            .map_err(api_error)?;
        outcomes.extend(chunk);
    }
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|outcome| match outcome.result {
            Ok(review) => {
                count_review_action(&state, review.status);
                json!({"id": outcome.id, "ok": true, "review": review})
            }
            Err(error) => {
                let (status, code, message) = api_error(error).client_parts();
                json!({
                    "id": outcome.id,
                    "ok": false,
                    "status": status.as_u16(),
                    "error": {"code": code, "message": message},
                })
            }
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub body: String,
}

/// `POST /v1/{accounts|clusters}/{id}/notes`.
pub async fn add_note<K: Kind>(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    caller.require(Role::Analyst)?;
    let body: NoteBody = params::body(&body)?;
    let note = state
        .store
        .add_note(&subject::<K>(id)?, &body.body, &actor(&caller)?)
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(note)))
}

/// `GET /v1/{accounts|clusters}/{id}/notes`.
pub async fn list_notes<K: Kind>(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ListReply<Note>>, ApiError> {
    caller.require(Role::Analyst)?;
    let notes = state
        .store
        .list_notes(&subject::<K>(id)?)
        .await
        .map_err(api_error)?;
    Ok(Json(ListReply {
        items: notes,
        next: None,
    }))
}

const DEFAULT_AUDIT_PAGE: u32 = 100;

/// `GET /v1/{accounts|clusters}/{id}/audit?after=&limit=`: oldest first.
pub async fn audit<K: Kind>(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<ListReply<AuditEntry>>, ApiError> {
    caller.require(Role::Analyst)?;
    let mut after = None;
    let mut limit = DEFAULT_AUDIT_PAGE;
    for (key, value) in params::checked_pairs(uri.query())? {
        match key.as_str() {
            "after" => {
                after = Some(value.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest("query parameter after: an audit entry id".into())
                })?)
            }
            "limit" => limit = params::limit(&key, &value)?,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {key}: unknown parameter"
                )))
            }
        }
    }
    let entries = state
        .store
        .list_audit(&subject::<K>(id)?, after, limit)
        .await
        .map_err(api_error)?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten()
        .map(|last| format!("{}?after={last}&limit={limit}", uri.path()));
    Ok(Json(ListReply {
        items: entries,
        next,
    }))
}
