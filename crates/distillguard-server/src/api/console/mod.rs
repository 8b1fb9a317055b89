//! The analyst console under `/ui`: server-rendered HTML (maud) with vendored htmx and
//! cytoscape.js embedded in the binary (see `docs/console.md`).
//!
//! There is no second data path: every page calls the review API's own handlers
//! ([`crate::api::review::subjects`], [`crate::api::review::admin`]) with the session's
//! [`Caller`], so the console reads and writes exactly what the JSON API does, under the same role
//! checks. Its routes are listed in [`crate::api::router`].

pub mod assets;
pub mod login;
pub mod queue;
pub mod session;
pub mod subject;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::error::ApiError;
pub use session::{ChangeForm, ConsoleSession, Sessions};

/// An API failure shown as a page: the same status, and the message the JSON API would give.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

/// The client-facing message of an API error (internal details never reach the page).
pub fn message(error: &ApiError) -> String {
    match error {
        ApiError::Internal(_) => "internal error".to_string(),
        other => other.to_string(),
    }
}

/// The status the JSON API answers for `error` (logs an internal error once, as the API does).
pub fn status(error: ApiError) -> StatusCode {
    error.into_response().status()
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let text = message(&self.0);
        let status = status(self.0);
        let body = bare_page(
            "Error",
            html! {
                h1 { "Error " (status.as_u16()) }
                p role="alert" { (text) }
                p { a href="/ui" { "Back to the queue" } }
            },
        );
        (status, body).into_response()
    }
}

/// Where the page sits in the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Accounts,
    Clusters,
    Allowlist,
    None,
}

/// A whole page with the header and navigation of a logged-in analyst.
pub fn page(title: &str, nav: Nav, session: &ConsoleSession, body: Markup) -> Html<String> {
    let link = |href: &str, label: &str, this: Nav| {
        html! { a href=(href) aria-current=[(nav == this).then_some("page")] { (label) } }
    };
    document(
        title,
        html! {
            header.top {
                a.skip href="#main" { "Skip to content" }
                span.brand { "distillguard" }
                nav aria-label="Main" {
                    (link("/ui/accounts", "Accounts", Nav::Accounts))
                    (link("/ui/clusters", "Clusters", Nav::Clusters))
                    (link("/ui/allowlist", "Allowlist", Nav::Allowlist))
                }
                span.who { (session.session.caller.actor) " (" (session.role_name()) ")" }
                form method="post" action="/ui/logout" {
                    (csrf_field(session))
                    button type="submit" { "Log out" }
                }
            }
            main #main { (body) }
        },
        Some(session.csrf()),
    )
}

/// A page without navigation (login, errors).
pub fn bare_page(title: &str, body: Markup) -> Html<String> {
    document(title, html! { main #main { (body) } }, None)
}

fn document(title: &str, body: Markup, csrf: Option<&str>) -> Html<String> {
    let version = env!("CARGO_PKG_VERSION");
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    // No inline styles from htmx, so the CSP needs no exception for them.
                    meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                    @if let Some(token) = csrf { meta name="csrf-token" content=(token); }
                    title { (title) " · distillguard" }
                    link rel="stylesheet" href={ "/ui/assets/console.css?v=" (version) };
                    script defer src={ "/ui/assets/htmx.min.js?v=" (version) } {}
                    script defer src={ "/ui/assets/console.js?v=" (version) } {}
                }
                body { (body) }
            }
        }
        .into_string(),
    )
}

/// The hidden field every console form carries.
pub fn csrf_field(session: &ConsoleSession) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf()); }
}

/// Headers of every console response: no framing, no caching of evidence, scripts from here only.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    set(headers, header::CACHE_CONTROL.as_str(), "no-store");
    response
}

/// A score as the queue shows it.
pub fn score(value: f64) -> String {
    format!("{value:.2}")
}

/// Event times and wall-clock times, to the second.
pub fn time(value: &impl std::fmt::Display) -> String {
    let text = value.to_string();
    text.split('.')
        .next()
        .unwrap_or(&text)
        .trim_end_matches('Z')
        .replace('T', " ")
}
