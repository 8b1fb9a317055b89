//! The queue: flagged accounts or clusters with the API's filters, sorting and paging; bulk
//! triage of a selection; CSV and JSON export of the current list.
//!
//! The filter form submits the API's own query parameters, so a queue URL and the matching
//! `/v1/...` URL read the same list through the same handler.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use distillguard_core::finding::Severity;
use distillguard_core::time::EventTime;
use distillguard_store::{CloseReason, FindingSummary, ReviewStatus, MAX_PAGE_SIZE};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::{
    csrf_field, message, page, score, status, time, ChangeForm, ConsoleSession, Nav, PageError,
};
use crate::api::review::params::{encode, pairs};
use crate::api::review::subjects::{self, Accounts, Clusters, Kind, ListReply};
use crate::api::AppState;
use crate::error::ApiError;

/// What the console adds to a kind of subject: where its pages are and what to call it.
pub trait UiKind: Kind {
    const UI: &'static str;
    const TITLE: &'static str;
    const NAV: Nav;
}

impl UiKind for Accounts {
    const UI: &'static str = "/ui/accounts";
    const TITLE: &'static str = "Accounts";
    const NAV: Nav = Nav::Accounts;
}

impl UiKind for Clusters {
    const UI: &'static str = "/ui/clusters";
    const TITLE: &'static str = "Clusters";
    const NAV: Nav = Nav::Clusters;
}

/// Rows an export holds at most (a few MB); the response says when the list was longer.
const EXPORT_MAX_ROWS: usize = 20_000;

/// The API query of a queue URL: empty form fields dropped, and the browser's
/// `datetime-local` values (`2026-01-01T10:00`) read as UTC.
pub fn api_query(raw: Option<&str>) -> Vec<(String, String)> {
    pairs(raw)
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(key, value)| {
            let value = value.trim().to_string();
            if (key == "since" || key == "until") && value.len() == 16 && !value.ends_with('Z') {
                (key, format!("{value}:00Z"))
            } else {
                (key, value)
            }
        })
        .collect()
}

pub fn join(query: &[(String, String)]) -> String {
    query
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn list<K: UiKind>(
    session: &ConsoleSession,
    state: &AppState,
    query: &str,
) -> Result<ListReply<FindingSummary>, ApiError> {
    let Json(reply) = subjects::list::<K>(
        session.caller(),
        State(state.clone()),
        RawQuery(Some(query.to_string())),
    )
    .await?;
    Ok(reply)
}

/// `GET /ui/accounts`, `GET /ui/clusters`.
pub async fn queue<K: UiKind>(
    session: ConsoleSession,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = api_query(raw.as_deref());
    let joined = join(&query);
    let (status, results) = match list::<K>(&session, &state, &joined).await {
        Ok(reply) => (StatusCode::OK, results::<K>(&session, &reply, &joined)),
        Err(error) => {
            let text = message(&error);
            (
                status(error),
                html! { div #results.alert role="alert" { (text) } },
            )
        }
    };
    let body = html! {
        h1 { (K::TITLE) }
        (filters::<K>(&query))
        p.exports {
            "Export this list: "
            a href={ (K::UI) "/export.csv?" (joined) } download { "CSV" }
            " · "
            a href={ (K::UI) "/export.json?" (joined) } download { "JSON" }
        }
        (results)
    };
    (status, page(K::TITLE, K::NAV, &session, body)).into_response()
}

fn value<'a>(query: &'a [(String, String)], key: &str) -> &'a str {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn has(query: &[(String, String)], key: &str, wanted: &str) -> bool {
    query
        .iter()
        .filter(|(k, _)| k == key)
        .any(|(_, v)| v.split(',').any(|part| part.trim() == wanted))
}

fn filters<K: UiKind>(query: &[(String, String)]) -> Markup {
    let sort = value(query, "sort");
    html! {
        form.filters method="get" action=(K::UI) aria-label="Filters" {
            fieldset {
                legend { "Status" }
                @for s in ReviewStatus::ALL {
                    label { input type="checkbox" name="status" value=(s.as_str()) checked[has(query, "status", s.as_str())]; " " (s.as_str()) }
                }
            }
            fieldset {
                legend { "Severity" }
                @for s in Severity::ALL {
                    label { input type="checkbox" name="severity" value=(s.as_str()) checked[has(query, "severity", s.as_str())]; " " (s.as_str()) }
                }
            }
            label { "Detector " input type="text" name="detector" size="14" value=(value(query, "detector")); }
            label { "Min score " input type="number" name="min_score" min="0" max="1" step="0.05" value=(value(query, "min_score")); }
            label { "Seen since (UTC) " input type="text" name="since" placeholder="2026-01-01T00:00:00Z" size="20" value=(value(query, "since")); }
            label { "until " input type="text" name="until" placeholder="2026-01-02T00:00:00Z" size="20" value=(value(query, "until")); }
            label { "Assignee " input type="text" name="assignee" size="12" value=(value(query, "assignee")); }
            label { "Flagged "
                select name="flagged" {
                    option value="" { "any" }
                    option value="true" selected[value(query, "flagged") == "true"] { "flagged" }
                    option value="false" selected[value(query, "flagged") == "false"] { "not flagged" }
                }
            }
            label { "Sort "
                select name="sort" {
                    option value="score" selected[sort == "score"] { "score" }
                    option value="last_seen" selected[sort == "last_seen"] { "last seen" }
                    option value="created" selected[sort == "created"] { "created" }
                }
            }
            label { "Per page "
                select name="limit" {
                    @for n in ["25", "50", "100", "200"] {
                        option value=(n) selected[value(query, "limit") == n || (n == "50" && value(query, "limit").is_empty())] { (n) }
                    }
                }
            }
            button type="submit" { "Apply" }
            " "
            a href=(K::UI) { "Reset" }
        }
    }
}

fn results<K: UiKind>(
    session: &ConsoleSession,
    reply: &ListReply<FindingSummary>,
    joined: &str,
) -> Markup {
    let now = chrono::Utc::now().format("%H:%M:%S UTC").to_string();
    html! {
        div #results data-refresh="15" {
            form method="post" action={ (K::UI) "/bulk" } {
                (csrf_field(session))
                table.queue {
                    caption { (reply.items.len()) " on this page · updated " (now) }
                    thead { tr {
                        th scope="col" { input #select-all type="checkbox" aria-label="Select every row of this page"; }
                        th scope="col" { "Id" }
                        th scope="col" { "Score" }
                        th scope="col" { "Severity" }
                        th scope="col" { "Flagged" }
                        th scope="col" { "Status" }
                        th scope="col" { "Assignee" }
                        th scope="col" { "Detectors" }
                        th scope="col" { @if K::UI == Clusters::UI { "Members" } @else { "Cluster" } }
                        th scope="col" { "Last seen (event time)" }
                    } }
                    tbody {
                        @for item in &reply.items { (row::<K>(item)) }
                        @if reply.items.is_empty() {
                            tr { td colspan="10" { "Nothing matches these filters." } }
                        }
                    }
                }
                nav.pager aria-label="Pages" {
                    @if joined.contains("cursor=") {
                        a href=(K::UI) { "First page" } " "
                    }
                    @if let Some(next) = &reply.next {
                        a rel="next" href=(next.replacen(K::PATH, K::UI, 1)) { "Next page" }
                    }
                }
                (bulk_controls())
            }
        }
    }
}

fn row<K: UiKind>(item: &FindingSummary) -> Markup {
    let id = &item.subject.id;
    let href = format!("{}/{}", K::UI, encode(id));
    html! {
        tr.flagged[item.flagged] {
            td { input type="checkbox" name="select" value={ (item.review.version) ":" (id) } aria-label={ "Select " (id) }; }
            td { a href=(href) { (id) } @if item.allowlisted.is_some() { " " span.badge { "allowlisted" } } }
            td.num { (score(item.score)) }
            td { span class={ "sev sev-" (item.severity.as_str()) } { (item.severity.as_str()) } }
            td { @if item.flagged { "yes" } @else { "no" } }
            td { (item.review.status.as_str()) @if let Some(reason) = item.review.close_reason { " (" (reason.as_str()) ")" } }
            td { (item.review.assignee.as_deref().unwrap_or("")) }
            td { (item.detectors.join(", ")) }
            td {
                @if let Some(count) = item.member_count { (count) }
                @else if let Some(cluster) = &item.cluster_id { a href={ "/ui/clusters/" (encode(cluster)) } { (cluster) } }
            }
            td { (time(&item.last_seen)) }
        }
    }
}

/// Status, close reason and assignee for the selected rows.
fn bulk_controls() -> Markup {
    html! {
        fieldset.bulk {
            legend { "Change the selected rows" }
            (status_select("bulk-status", None))
            (reason_select("bulk-reason", None))
            label { "Assign to " input type="text" name="assignee" size="12"; }
            label { input type="checkbox" name="unassign" value="true"; " unassign" }
            button type="submit" { "Apply to selection" }
        }
    }
}

pub fn status_select(id: &str, current: Option<ReviewStatus>) -> Markup {
    html! {
        label for=(id) { "Status " }
        select #(id) name="status" {
            @for s in ReviewStatus::ALL {
                option value=(s.as_str()) selected[current == Some(s)] { (s.as_str()) }
            }
        }
    }
}

pub fn reason_select(id: &str, current: Option<CloseReason>) -> Markup {
    html! {
        label for=(id) { " Close reason " }
        select #(id) name="close_reason" {
            option value="" { "(none: not closing)" }
            @for r in CloseReason::ALL {
                option value=(r.as_str()) selected[current == Some(r)] { (r.as_str()) }
            }
        }
    }
}

/// `POST /ui/accounts/bulk`, `POST /ui/clusters/bulk`: the selection at the versions shown.
pub async fn bulk<K: UiKind>(
    State(state): State<AppState>,
    form: ChangeForm,
) -> Result<Response, PageError> {
    let items: Vec<Value> = form
        .all("select")
        .filter_map(|v| v.split_once(':'))
        .map(|(version, id)| json!({"id": id, "version": version.parse::<i64>().ok()}))
        .collect();
    if items.is_empty() {
        return Err(ApiError::BadRequest("select at least one row".into()).into());
    }
    let mut request = json!({
        "items": items,
        "status": form.filled("status").unwrap_or("open"),
    });
    if let Some(reason) = form.filled("close_reason") {
        request["close_reason"] = json!(reason);
    }
    if form.filled("unassign") == Some("true") {
        request["assignee"] = Value::Null;
    } else if let Some(assignee) = form.filled("assignee") {
        request["assignee"] = json!(assignee.trim());
    }
    let session = form.session;
    let Json(reply) = subjects::bulk_review::<K>(
        session.caller(),
        State(state),
        Bytes::from(request.to_string()),
    )
    .await?;
    let results = reply["results"].as_array().cloned().unwrap_or_default();
    let changed = results.iter().filter(|r| r["ok"] == true).count();
    let body = html! {
        h1 { "Bulk change" }
        p role="status" { (changed) " of " (results.len()) " changed." }
        table {
            caption { "Result per selected row" }
            thead { tr { th scope="col" { "Id" } th scope="col" { "Result" } } }
            tbody {
                @for r in &results {
                    @let id = r["id"].as_str().unwrap_or("");
                    tr {
                        td { a href={ (K::UI) "/" (encode(id)) } { (id) } }
                        td {
                            @if r["ok"] == true { "changed to " (r["review"]["status"].as_str().unwrap_or("")) " (version " (r["review"]["version"]) ")" }
                            @else { span.alert { (r["error"]["message"].as_str().unwrap_or("failed")) } }
                        }
                    }
                }
            }
        }
        p { a href=(K::UI) { "Back to the queue" } }
    };
    Ok(page("Bulk change", K::NAV, &session, body).into_response())
}

/// Every page of the list, through the API handler, up to [`EXPORT_MAX_ROWS`].
async fn export_rows<K: UiKind>(
    session: &ConsoleSession,
    state: &AppState,
    raw: Option<&str>,
) -> Result<(Vec<FindingSummary>, bool), ApiError> {
    let mut query: Vec<(String, String)> = api_query(raw)
        .into_iter()
        .filter(|(k, _)| k != "limit" && k != "cursor")
        .collect();
    query.push(("limit".into(), MAX_PAGE_SIZE.to_string()));
    let mut joined = join(&query);
    let mut rows = Vec::new();
    loop {
        let reply = list::<K>(session, state, &joined).await?;
        rows.extend(reply.items);
        match reply.next {
            Some(_) if rows.len() >= EXPORT_MAX_ROWS => return Ok((rows, true)),
            Some(next) => {
                joined = next
                    .split_once('?')
                    .map_or(String::new(), |(_, q)| q.to_string())
            }
            None => return Ok((rows, false)),
        }
    }
}

fn download(name: &str, content_type: &'static str, body: String, truncated: bool) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                    .expect("ascii file name"),
            ),
        ],
        body,
    )
        .into_response();
    if truncated {
        response.headers_mut().insert(
            "x-export-truncated",
            HeaderValue::from_str(&EXPORT_MAX_ROWS.to_string()).expect("digits"),
        );
    }
    response
}

/// `GET /ui/{accounts|clusters}/export.json`: the current list, every page, as the API's items.
pub async fn export_json<K: UiKind>(
    session: ConsoleSession,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (rows, truncated) = export_rows::<K>(&session, &state, raw.as_deref()).await?;
    let body = serde_json::to_string_pretty(&json!({ "items": rows, "truncated": truncated }))
        .map_err(|e| ApiError::Internal(e.into()))?;
    let name = format!("distillguard-{}.json", K::TITLE.to_lowercase());
    Ok(download(&name, "application/json", body, truncated))
}

/// `GET /ui/{accounts|clusters}/export.csv`: one row per finding of the current list.
pub async fn export_csv<K: UiKind>(
    session: ConsoleSession,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (rows, truncated) = export_rows::<K>(&session, &state, raw.as_deref()).await?;
    let mut out = String::from(
        "kind,id,score,severity,flagged,status,close_reason,assignee,version,detectors,first_seen,last_seen,first_flagged_at,cluster_id,member_count,allowlisted\n",
    );
    for r in &rows {
        let fields = [
            r.subject.kind.as_str().to_string(),
            r.subject.id.clone(),
            format!("{:.4}", r.score),
            r.severity.as_str().to_string(),
            r.flagged.to_string(),
            r.review.status.as_str().to_string(),
            r.review
                .close_reason
                .map_or(String::new(), |c| c.as_str().to_string()),
            r.review.assignee.clone().unwrap_or_default(),
            r.review.version.to_string(),
            r.detectors.join(";"),
            r.first_seen.to_rfc3339(),
            r.last_seen.to_rfc3339(),
            r.first_flagged_at
                .map_or(String::new(), EventTime::to_rfc3339),
            r.cluster_id.clone().unwrap_or_default(),
            r.member_count.map_or(String::new(), |n| n.to_string()),
            r.allowlisted.is_some().to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    let name = format!("distillguard-{}.csv", K::TITLE.to_lowercase());
    Ok(download(&name, "text/csv; charset=utf-8", out, truncated))
}

/// One CSV field: quoted when needed, and a leading `= + - @` (ids come from gateway logs, which
/// an attacker writes) neutralised so a spreadsheet never runs it as a formula.
pub fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_form_fields_are_dropped_and_local_times_read_as_utc() {
        let query = api_query(Some(
            "status=open&detector=&min_score=&since=2026-01-01T10%3A00&until=2026-01-02T00:00:00Z",
        ));
        assert_eq!(
            query,
            vec![
                ("status".to_string(), "open".to_string()),
                ("since".to_string(), "2026-01-01T10:00:00Z".to_string()),
                ("until".to_string(), "2026-01-02T00:00:00Z".to_string()),
            ]
        );
        assert_eq!(
            join(&query),
            "status=open&since=2026-01-01T10%3A00%3A00Z&until=2026-01-02T00%3A00%3A00Z"
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("acct-1"), "acct-1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
