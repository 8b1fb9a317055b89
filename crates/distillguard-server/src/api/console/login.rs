//! Login, logout and the allowlist page.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::html;
use serde_json::json;

use super::session::{
    self, cookie, csrf_matches, random_token, safe_next, set_cookie, LOGIN_COOKIE, SESSION_LIFETIME,
};
use super::{
    bare_page, csrf_field, message, page, status, ChangeForm, ConsoleSession, Nav, PageError,
};
use crate::api::review::admin;
use crate::api::review::params::{encode, pairs};
use crate::api::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// The first page of the console: open work, most suspicious first.
pub const HOME: &str = "/ui/accounts?status=open&status=investigating&flagged=true";

/// `GET /ui`.
pub async fn home() -> Redirect {
    Redirect::to(HOME)
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Opens a session for `caller` and sends the browser on to `next`.
fn logged_in(state: &AppState, caller: Caller, next: &str, headers: &HeaderMap) -> Response {
    let id = state.console.open(caller);
    let next = if next == "/ui" { HOME } else { next };
    let mut response = Redirect::to(next).into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        set_cookie(session::COOKIE, &id, SESSION_LIFETIME, headers),
    );
    cookies.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", Duration::ZERO, headers),
    );
    response
}

fn login_form(next: &str, login_csrf: &str, error: Option<&str>) -> axum::response::Html<String> {
    bare_page(
        "Log in",
        html! {
            h1 { "distillguard console" }
            @if let Some(error) = error { p.alert role="alert" { (error) } }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="login_csrf" value=(login_csrf);
                input type="hidden" name="next" value=(next);
                label for="token" { "Analyst or admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
            p.muted { "The token is exchanged for a session of 8 hours; it is not stored in the browser." }
        },
    )
}

/// `GET /ui/login?next=`: the token form, or straight in with authentication off.
pub async fn login_page(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = pairs(raw.as_deref());
    let next = safe_next(field(&query, "next"));
    if !state.auth.enabled() {
        // Loopback only: the local operator, as the JSON API treats it.
        let local = state
            .auth
            .authenticate(None)
            .expect("with auth off everyone is the local operator");
        return logged_in(&state, local, &next, &headers);
    }
    let login_csrf = random_token();
    let mut response = login_form(&next, &login_csrf, None).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &login_csrf,
            Duration::from_secs(3600),
            &headers,
        ),
    );
    response
}

/// `POST /ui/login`: an analyst or admin token for a session; the ingest role is refused.
pub async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = pairs(std::str::from_utf8(&body).ok());
    let next = safe_next(field(&form, "next"));
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !csrf_matches(expected, field(&form, "login_csrf")) {
        return (
            StatusCode::FORBIDDEN,
            login_form(
                &next,
                expected,
                Some("The login form expired; reload the page and try again."),
            ),
        )
            .into_response();
    }
    let token = field(&form, "token").unwrap_or_default().trim();
    let refuse = |code: StatusCode, text: &str| {
        (code, login_form(&next, expected, Some(text))).into_response()
    };
    match state.auth.authenticate(Some(&format!("Bearer {token}"))) {
        Ok(caller) if caller.require(Role::Analyst).is_ok() => {
            tracing::info!(actor = %caller.actor, "console login");
            logged_in(&state, caller, &next, &headers)
        }
        Ok(caller) => {
            tracing::warn!(actor = %caller.actor, "console login refused: role cannot review");
            refuse(
                StatusCode::FORBIDDEN,
                "This token's role cannot open the console: use an analyst or admin token.",
            )
        }
        Err(_) => refuse(StatusCode::UNAUTHORIZED, "Unknown token."),
    }
}

/// `POST /ui/logout`: ends the session here and now.
pub async fn logout(State(state): State<AppState>, form: ChangeForm) -> Response {
    let ChangeForm {
        session, headers, ..
    } = form;
    state.console.close(&session.id);
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(session::COOKIE, "", Duration::ZERO, &headers),
    );
    response
}

/// `GET /ui/allowlist`: live entries, and the form to add one.
pub async fn allowlist(
    session: ConsoleSession,
    State(state): State<AppState>,
) -> Result<Response, PageError> {
    allowlist_page(&session, &state, None, StatusCode::OK).await
}

async fn allowlist_page(
    session: &ConsoleSession,
    state: &AppState,
    error: Option<String>,
    code: StatusCode,
) -> Result<Response, PageError> {
    let Json(reply) =
        admin::list_allowlist(session.caller(), State(state.clone()), RawQuery(None)).await?;
    let body = html! {
        h1 { "Allowlist" }
        p { "Allowlisted subjects stay scored but are never flagged (for example a known evaluation lab)." }
        @if let Some(error) = error { p.alert role="alert" { "Not saved: " (error) } }
        table {
            caption.visually-hidden { "Live allowlist entries" }
            thead { tr { th scope="col" { "Kind" } th scope="col" { "Id" } th scope="col" { "Reason" } th scope="col" { "Expires" } th scope="col" { "By" } th scope="col" { span.visually-hidden { "Remove" } } } }
            tbody {
                @for entry in &reply.items {
                    tr {
                        td { (entry.subject.kind.as_str()) }
                        td { a href={ "/ui/" (entry.subject.kind.as_str()) "s/" (encode(&entry.subject.id)) } { (entry.subject.id) } }
                        td { (entry.reason) }
                        td { (entry.expires_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|| "never".into())) }
                        td { (entry.created_by) }
                        td {
                            form method="post" action={ "/ui/allowlist/" (entry.id) "/remove" } {
                                (csrf_field(session))
                                button type="submit" aria-label={ "Remove " (entry.subject.id) } { "Remove" }
                            }
                        }
                    }
                }
                @if reply.items.is_empty() { tr { td colspan="6" { "The allowlist is empty." } } }
            }
        }
        h2 { "Add an entry" }
        form.stack method="post" action="/ui/allowlist" {
            (csrf_field(session))
            label { "Kind " select name="kind" { option value="account" { "account" } option value="cluster" { "cluster" } } }
            label { "Id " input type="text" name="id" required; }
            label { "Reason " input type="text" name="reason" required size="40"; }
            label { "Expires (UTC, optional) " input type="text" name="expires_at" placeholder="2026-12-31T00:00:00Z"; }
            button type="submit" { "Add" }
        }
    };
    Ok((code, page("Allowlist", Nav::Allowlist, session, body)).into_response())
}

/// `POST /ui/allowlist`.
pub async fn add_allowlist(
    State(state): State<AppState>,
    form: ChangeForm,
) -> Result<Response, PageError> {
    let mut request = json!({
        "kind": form.get("kind").unwrap_or("account"),
        "id": form.text("id").trim(),
        "reason": form.text("reason").trim(),
    });
    if let Some(expires) = form.filled("expires_at") {
        request["expires_at"] = json!(expires.trim());
    }
    let session = form.session;
    match admin::add_allowlist(
        session.caller(),
        State(state.clone()),
        Bytes::from(request.to_string()),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/ui/allowlist").into_response()),
        Err(
            error @ (ApiError::Unprocessable(_) | ApiError::BadRequest(_) | ApiError::NotFound(_)),
        ) => {
            let text = message(&error);
            allowlist_page(&session, &state, Some(text), status(error)).await
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /ui/allowlist/{entry}/remove` (a form cannot send DELETE).
pub async fn remove_allowlist(
    State(state): State<AppState>,
    Path(entry): Path<String>,
    form: ChangeForm,
) -> Result<Response, PageError> {
    let caller = form.session.caller();
    let _removed = admin::remove_allowlist(caller, State(state), Path(entry)).await?;
    Ok(Redirect::to("/ui/allowlist").into_response())
}
