//! One account or one cluster: its evidence, the cluster graph, triage (with the API's 409
//! answered by re-reading and showing what changed), notes and the audit trail.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use distillguard_core::finding::{HourlyActivity, Signal};
use distillguard_core::time::EventTime;
use distillguard_store::{
    AccountDetail, AuditEntry, ClusterDetail, FindingSummary, Note, ReviewState, SubjectKind,
};
use maud::{html, Markup};
use serde_json::{json, Value};

use super::queue::{reason_select, status_select, UiKind};
use super::{
    csrf_field, message, page, score, status, time, ChangeForm, ConsoleSession, PageError,
};
use crate::api::review::params::encode;
use crate::api::review::subjects;
use crate::api::AppState;
use crate::error::ApiError;

/// What the API says about one subject.
pub enum Detail {
    Account(Box<AccountDetail>),
    Cluster(Box<ClusterDetail>),
}

impl Detail {
    fn summary(&self) -> &FindingSummary {
        match self {
            Detail::Account(a) => &a.summary,
            Detail::Cluster(c) => &c.summary,
        }
    }
}

/// Reads a subject through the API's own handler for its kind.
async fn load<K: UiKind>(
    session: &ConsoleSession,
    state: &AppState,
    id: &str,
) -> Result<Detail, ApiError> {
    let (caller, state, path) = (session.caller(), State(state.clone()), Path(id.to_string()));
    Ok(match K::KIND {
        SubjectKind::Account => Detail::Account(Box::new(
            subjects::get_account(caller, state, path).await?.0,
        )),
        SubjectKind::Cluster => Detail::Cluster(Box::new(
            subjects::get_cluster(caller, state, path).await?.0,
        )),
    })
}

/// What the analyst asked for, kept on the form when the change could not be applied.
#[derive(Default)]
struct Intended {
    status: Option<distillguard_store::ReviewStatus>,
    close_reason: Option<distillguard_store::CloseReason>,
    assignee: Option<String>,
}

/// `GET /ui/accounts/{id}`, `GET /ui/clusters/{id}`.
pub async fn show<K: UiKind>(
    session: ConsoleSession,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let detail = load::<K>(&session, &state, &id).await?;
    Ok(
        render::<K>(&session, &state, &detail, None, Intended::default())
            .await?
            .into_response(),
    )
}

async fn render<K: UiKind>(
    session: &ConsoleSession,
    state: &AppState,
    detail: &Detail,
    banner: Option<Markup>,
    intended: Intended,
) -> Result<axum::response::Html<String>, ApiError> {
    let summary = detail.summary();
    let id = &summary.subject.id;
    let Json(notes) =
        subjects::list_notes::<K>(session.caller(), State(state.clone()), Path(id.clone())).await?;
    let audit_uri: Uri = format!("{}/{}/audit?limit=500", K::PATH, encode(id))
        .parse()
        .map_err(|_| ApiError::NotFound(format!("{} {id}", K::KIND.as_str())))?;
    let Json(audit) = subjects::audit::<K>(
        session.caller(),
        State(state.clone()),
        Path(id.clone()),
        OriginalUri(audit_uri),
    )
    .await?;
    let evidence = match detail {
        Detail::Account(account) => account_evidence(account),
        Detail::Cluster(cluster) => cluster_evidence(cluster),
    };
    let title = format!("{} {id}", K::KIND.as_str());
    let body = html! {
        p.crumbs { a href=(K::UI) { (K::TITLE) } " / " (id) }
        h1 { (title) }
        @if let Some(banner) = banner { (banner) }
        (headline(summary))
        div.columns {
            section.evidence aria-label="Evidence" { (evidence) }
            aside.triage {
                (triage_form::<K>(session, summary, &intended))
                (notes_section::<K>(session, id, &notes.items))
            }
        }
        (audit_section(&audit.items))
    };
    Ok(page(&title, K::NAV, session, body))
}

fn headline(summary: &FindingSummary) -> Markup {
    html! {
        dl.headline {
            div { dt { "Score" } dd.big { (score(summary.score)) } }
            div { dt { "Severity" } dd { span class={ "sev sev-" (summary.severity.as_str()) } { (summary.severity.as_str()) } } }
            div { dt { "Flagged" } dd { @if summary.flagged { "yes" } @else { "no" } @if summary.engine_flagged != summary.flagged { " (engine: " (summary.engine_flagged) ")" } } }
            div { dt { "Status" } dd #review-status { (summary.review.status.as_str()) @if let Some(r) = summary.review.close_reason { " (" (r.as_str()) ")" } } }
            div { dt { "Assignee" } dd { (summary.review.assignee.as_deref().unwrap_or("nobody")) } }
            div { dt { "Detectors" } dd { (summary.detectors.join(", ")) } }
            div { dt { "First seen" } dd { (time(&summary.first_seen)) } }
            div { dt { "Last seen" } dd { (time(&summary.last_seen)) } }
            div { dt { "First flagged" } dd { @if let Some(t) = &summary.first_flagged_at { (time(t)) } @else { "never" } } }
            @if let Some(entry) = &summary.allowlisted {
                div { dt { "Allowlisted" } dd { (entry.reason) " (by " (entry.created_by) ")" } }
            }
        }
    }
}

fn signals_table(signals: &[Signal]) -> Markup {
    html! {
        h2 { "Signals" }
        @if signals.is_empty() { p { "No detector scored this subject." } }
        @for signal in signals {
            section.signal {
                h3 { (signal.detector) " " span.num { (score(signal.score)) } }
                p { (signal.evidence.summary) }
                @if !signal.evidence.measurements.is_empty() {
                    table {
                        caption.visually-hidden { "Measurements of " (signal.detector) }
                        thead { tr {
                            th scope="col" { "Measurement" } th scope="col" { "Value" }
                            th scope="col" { "Threshold" } th scope="col" { "Baseline" } th scope="col" { "Window" }
                        } }
                        tbody {
                            @for m in &signal.evidence.measurements {
                                tr.over[m.threshold.is_some_and(|t| m.value >= t)] {
                                    th scope="row" { (m.name) }
                                    td.num { (format!("{:.4}", m.value)) }
                                    td.num { @if let Some(t) = m.threshold { (format!("{t:.4}")) } }
                                    td.num { @if let Some(b) = m.baseline { (format!("{b:.4}")) } }
                                    td { (m.window.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn account_evidence(account: &AccountDetail) -> Markup {
    html! {
        p { (account.events) " events scored." }
        @if let Some(end_user) = &account.end_user {
            p.end-user {
                "Shared account: the signals below judge end user " strong { (end_user) }
                " on its own requests, not the account's other customers."
            }
        }
        @if let Some(cluster) = &account.cluster {
            p.cluster-link {
                "Member of cluster "
                a href={ "/ui/clusters/" (encode(&cluster.subject.id)) } { (cluster.subject.id) }
                " (score " (score(cluster.score)) ", " (cluster.member_count.unwrap_or(0)) " members, " (cluster.review.status.as_str()) ")."
            }
        }
        h2 { "Activity" }
        @match &account.activity {
            Some(activity) => { (activity_chart(activity)) }
            None => { p.muted { "No hourly activity stored for this finding (written before the service kept it)." } }
        }
        (signals_table(&account.signals))
        h2 { "Sample prompts" }
        @if account.samples.is_empty() { p { "No samples kept." } }
        ol.samples {
            @for sample in &account.samples {
                li {
                    span.when { (time(&sample.at)) } " "
                    @match &sample.text {
                        Some(text) => { q { (text) } }
                        None => { span.muted { "text not kept (store.keep_prompts off); sha256 " code { (sample.hash) } } }
                    }
                }
            }
        }
    }
}

/// Requests per event-time hour as an inline SVG bar chart (no script, readable as text too).
fn activity_chart(activity: &HourlyActivity) -> Markup {
    const WIDTH: usize = 600;
    const HEIGHT: u32 = 110;
    let hours = activity.events.len().max(1);
    let bar = WIDTH / hours;
    let peak = activity.events.iter().copied().max().unwrap_or(0).max(1);
    let total: u64 = activity.events.iter().map(|&n| u64::from(n)).sum();
    let start_ms = activity.until.epoch_ms() - hours as i64 * EventTime::HOUR;
    let hour_label = |i: usize| {
        EventTime::from_epoch_ms(start_ms + i as i64 * EventTime::HOUR)
            .map(|t| format!("{:02}:00", t.hour_of_day()))
            .unwrap_or_default()
    };
    let busiest = activity
        .events
        .iter()
        .enumerate()
        .max_by_key(|(i, n)| (**n, std::cmp::Reverse(*i)))
        .map_or(0, |(i, _)| i);
    let label = format!(
        "Requests per hour over the {hours} event-time hours to {}: {total} in all, at most {peak} (from {} UTC)",
        time(&activity.until),
        hour_label(busiest)
    );
    html! {
        figure.activity {
            svg #activity role="img" aria-label=(label) viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 16) } width=(WIDTH) height=(HEIGHT + 16) {
                title { (label) }
                @for (i, &n) in activity.events.iter().enumerate() {
                    @let h = (u64::from(n) * u64::from(HEIGHT) / u64::from(peak)) as u32;
                    rect x=(i * bar + 1) y=(HEIGHT - h) width=(bar - 2) height=(h) {
                        title { (hour_label(i)) " UTC: " (n) " requests" }
                    }
                    @if i % 6 == 0 {
                        text x=(i * bar + 1) y=(HEIGHT + 13) { (hour_label(i)) }
                    }
                }
                line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
            }
            figcaption.muted { (label) "." }
        }
    }
}

/// The graph's data: member nodes and one node per kind of shared value, read by console.js.
fn graph_data(cluster: &ClusterDetail) -> String {
    json!({
        "cluster": cluster.summary.subject.id,
        "members": cluster.members,
        "links": cluster.links,
    })
    .to_string()
}

fn cluster_evidence(cluster: &ClusterDetail) -> Markup {
    let m = &cluster.metrics;
    html! {
        h2 { "Graph" }
        p.muted #graph-help {
            "Accounts are round (size by score, red when flagged); each kind of shared value is a square joined to the accounts that share it, or to the cluster when the evidence does not name them. Hover or focus a node for its details; drag to rearrange, scroll to zoom."
        }
        div #graph role="img" aria-describedby="graph-help" aria-label={ "Graph of " (cluster.members.len()) " members and " (cluster.links.len()) " kinds of shared values" } data-graph=(graph_data(cluster)) {}
        div #graph-tip role="status" aria-live="polite" {}
        h2 { "Combined metrics" }
        dl.headline {
            div { dt { "Members" } dd { (m.members) } }
            div { dt { "Flagged members" } dd { (m.flagged_members) } }
            div { dt { "Max member score" } dd { (m.max_member_score.map(score).unwrap_or_default()) } }
            div { dt { "Mean member score" } dd { (m.mean_member_score.map(score).unwrap_or_default()) } }
            div { dt { "Events" } dd { (m.total_events) } }
        }
        h2 { "Shared values" }
        table #links {
            caption.visually-hidden { "Links between the members" }
            thead { tr { th scope="col" { "Kind" } th scope="col" { "Members sharing" } th scope="col" { "Weight" } th scope="col" { "Examples" } } }
            tbody {
                @for link in &cluster.links {
                    tr { th scope="row" { (link.kind) } td.num { (link.members_sharing) } td.num { (format!("{:.3}", link.weight)) } td { (link.examples.join("; ")) } }
                }
            }
        }
        h2 { "Members" }
        table #members {
            caption.visually-hidden { "Members with their scores" }
            thead { tr { th scope="col" { "Account" } th scope="col" { "Score" } th scope="col" { "Severity" } th scope="col" { "Flagged" } th scope="col" { "Events" } } }
            tbody {
                @for member in &cluster.members {
                    tr.flagged[member.flagged] {
                        td { a href={ "/ui/accounts/" (encode(&member.account_id)) } { (member.account_id) } }
                        td.num { (member.score.map(score).unwrap_or_default()) }
                        td { (member.severity.map(|s| s.as_str()).unwrap_or("")) }
                        td { @if member.flagged { "yes" } @else { "no" } }
                        td.num { (member.events.map(|e| e.to_string()).unwrap_or_default()) }
                    }
                }
            }
        }
        (signals_table(&cluster.signals))
    }
}

fn triage_form<K: UiKind>(
    session: &ConsoleSession,
    summary: &FindingSummary,
    intended: &Intended,
) -> Markup {
    let review = &summary.review;
    let id = &summary.subject.id;
    let assignee = intended
        .assignee
        .clone()
        .or_else(|| review.assignee.clone())
        .unwrap_or_default();
    html! {
        section #triage aria-labelledby="triage-title" {
            h2 #triage-title { "Triage" }
            form method="post" action={ (K::UI) "/" (encode(id)) "/review" } {
                (csrf_field(session))
                input type="hidden" name="version" value=(review.version);
                input type="hidden" name="read_status" value=(review.status.as_str());
                input type="hidden" name="read_assignee" value=(review.assignee.as_deref().unwrap_or(""));
                input type="hidden" name="read_close_reason" value=(review.close_reason.map_or("", |r| r.as_str()));
                p { (status_select("triage-status", intended.status.or(Some(review.status)))) }
                p { (reason_select("triage-reason", intended.close_reason.or(review.close_reason))) }
                p { label for="triage-assignee" { "Assignee " } input #triage-assignee type="text" name="assignee" value=(assignee); }
                p.muted { "Version " (review.version) ", updated " (review.updated_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                button type="submit" { "Save" }
            }
        }
    }
}

fn notes_section<K: UiKind>(session: &ConsoleSession, id: &str, notes: &[Note]) -> Markup {
    html! {
        section #notes aria-labelledby="notes-title" {
            h2 #notes-title { "Notes" }
            @for note in notes {
                article.note {
                    p.muted { (note.author) ", " (note.created_at.format("%Y-%m-%d %H:%M UTC")) }
                    p { (note.body) }
                }
            }
            form method="post" action={ (K::UI) "/" (encode(id)) "/notes" } {
                (csrf_field(session))
                label for="note-body" { "Add a note" }
                textarea #note-body name="body" rows="3" required {}
                button type="submit" { "Add note" }
            }
        }
    }
}

fn change_text(value: &Option<Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(value) => {
            let mut parts = Vec::new();
            if let Some(map) = value.as_object() {
                for (key, v) in map {
                    if !v.is_null() {
                        parts.push(format!(
                            "{key}: {}",
                            v.as_str().map_or(v.to_string(), str::to_string)
                        ));
                    }
                }
            }
            parts.join(", ")
        }
    }
}

fn audit_section(entries: &[AuditEntry]) -> Markup {
    html! {
        section #audit aria-labelledby="audit-title" {
            h2 #audit-title { "Audit trail" }
            table {
                caption.visually-hidden { "Every change, oldest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Before" } th scope="col" { "After" } } }
                tbody {
                    @for e in entries {
                        tr {
                            td { (e.at.format("%Y-%m-%d %H:%M:%S")) }
                            td { (e.actor) }
                            td { (e.action) }
                            td { (change_text(&e.before)) }
                            td { (change_text(&e.after)) }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /ui/{accounts|clusters}/{id}/review`: the review API's PATCH, at the version shown.
pub async fn review<K: UiKind>(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ChangeForm,
) -> Result<Response, PageError> {
    let session = &form.session;
    let version: i64 = form
        .text("version")
        .parse()
        .map_err(|_| ApiError::BadRequest("version: a number".into()))?;
    let mut request = json!({"status": form.text("status"), "version": version});
    if !form.text("close_reason").is_empty() {
        request["close_reason"] = json!(form.text("close_reason"));
    }
    let assignee = form.text("assignee").trim();
    if assignee != form.text("read_assignee") {
        request["assignee"] = if assignee.is_empty() {
            Value::Null
        } else {
            json!(assignee)
        };
    }
    let outcome = subjects::review::<K>(
        session.caller(),
        State(state.clone()),
        Path(id.clone()),
        Bytes::from(request.to_string()),
    )
    .await;
    let error = match outcome {
        Ok(_) => {
            return Ok(Redirect::to(&format!("{}/{}", K::UI, encode(&id))).into_response());
        }
        Err(error) => error,
    };
    // The change was not applied: re-read the subject and show why, keeping what was asked.
    let intended = Intended {
        status: form.text("status").parse().ok(),
        close_reason: serde_json::from_value(json!(form.text("close_reason"))).ok(),
        assignee: Some(assignee.to_string()),
    };
    let detail = load::<K>(session, &state, &id).await?;
    let banner = match &error {
        ApiError::Conflict(_) => conflict_banner(&form, version, &detail.summary().review),
        other => html! { div.alert role="alert" { "Not saved: " (message(other)) } },
    };
    let code = status(error);
    let page = render::<K>(session, &state, &detail, Some(banner), intended).await?;
    Ok((code, page).into_response())
}

/// What changed between the version the analyst read and the current one.
fn conflict_banner(form: &ChangeForm, read_version: i64, now: &ReviewState) -> Markup {
    let now_reason = now.close_reason.map_or("", |r| r.as_str());
    let now_assignee = now.assignee.as_deref().unwrap_or("");
    let rows = [
        ("status", form.text("read_status"), now.status.as_str()),
        ("close reason", form.text("read_close_reason"), now_reason),
        ("assignee", form.text("read_assignee"), now_assignee),
    ];
    html! {
        div.alert.conflict role="alert" {
            p { strong { "Not saved: someone changed this since you read it" } " (you read version " (read_version) ", it is now version " (now.version) "). Your change is still in the form below; check the current state and save again." }
            table {
                caption.visually-hidden { "What changed" }
                thead { tr { th scope="col" { "Field" } th scope="col" { "You read" } th scope="col" { "Now" } } }
                tbody {
                    @for (name, before, after) in rows {
                        tr.changed[before != after] { th scope="row" { (name) } td { (before) } td { (after) } }
                    }
                }
            }
        }
    }
}

/// `POST /ui/{accounts|clusters}/{id}/notes`.
pub async fn add_note<K: UiKind>(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ChangeForm,
) -> Result<Response, PageError> {
    let request = json!({"body": form.text("body")});
    let _created = subjects::add_note::<K>(
        form.session.caller(),
        State(state),
        Path(id.clone()),
        Bytes::from(request.to_string()),
    )
    .await?;
    Ok(Redirect::to(&format!("{}/{}#notes", K::UI, encode(&id))).into_response())
}
