//! Console sessions: an analyst or admin token exchanged once for a server-side session.
//!
//! The cookie holds only a random id (HttpOnly, SameSite=Strict, `Max-Age` = the session's life);
//! the caller it stands for lives in memory, so logging out revokes it at once and a restart
//! ends every session. Each session has its own CSRF token, which every change must echo in a
//! form field or the `X-CSRF-Token` header. With authentication off (loopback only) the console
//! opens a session for the local operator without asking for a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::api::AppState;
use crate::auth::{Caller, Role};

pub const COOKIE: &str = "dg_session";
/// The pre-login double-submit cookie that protects the login form itself.
pub const LOGIN_COOKIE: &str = "dg_login";
/// How long a session lasts from login, whatever the activity (a shift).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; the oldest go first when a flood of logins fills the table.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    expires: Instant,
}

/// The live sessions, shared by every handler.
#[derive(Debug, Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Session>>>);

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// Opens a session for `caller`; returns its id (the cookie value).
    pub fn open(&self, caller: Caller) -> String {
        let id = random_token();
        let session = Session {
            caller,
            csrf: random_token(),
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let mut map = self.0.lock().expect("sessions lock");
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session);
        id
    }

    /// The live session with this id, if any.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.0.lock().expect("sessions lock");
        match map.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.0.lock().expect("sessions lock").remove(id);
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of one cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Behind a TLS-terminating proxy the cookie is also marked `Secure`.
fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

/// `Set-Cookie` for a session id (an empty id with `max_age` 0 clears it).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, headers: &HeaderMap) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        secure(headers)
    );
    HeaderValue::from_str(&text).expect("cookie values are hex")
}

/// Whether `presented` is the expected CSRF token (constant time).
pub fn csrf_matches(expected: &str, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())))
}

/// The logged-in browser, for console handlers. Without a session: to the login page.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub id: String,
    pub session: Session,
}

impl ConsoleSession {
    pub fn caller(&self) -> Caller {
        self.session.caller.clone()
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    /// The role shown in the header: `local` with authentication off.
    pub fn role_name(&self) -> &'static str {
        self.session.caller.role.map_or("local", Role::as_str)
    }

    /// Refuses a change whose form field or header does not carry this session's CSRF token.
    pub fn check_csrf(
        &self,
        headers: &HeaderMap,
        form: &[(String, String)],
    ) -> Result<(), CsrfRefused> {
        let presented = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                form.iter()
                    .find(|(k, _)| k == "csrf")
                    .map(|(_, v)| v.as_str())
            });
        if csrf_matches(&self.session.csrf, presented) {
            Ok(())
        } else {
            Err(CsrfRefused)
        }
    }
}

/// A console form posted by a logged-in browser whose CSRF token checked out: every change
/// handler takes one, so none can forget the check. Without a session: to the login page; with
/// a wrong or missing token: 403, nothing done.
#[derive(Debug)]
pub struct ChangeForm {
    pub session: ConsoleSession,
    pub headers: HeaderMap,
    fields: Vec<(String, String)>,
}

impl ChangeForm {
    /// The field's value, if the form carries it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The field's value, or "" when absent.
    pub fn text(&self, key: &str) -> &str {
        self.get(key).unwrap_or_default()
    }

    /// The field's value unless absent or blank.
    pub fn filled(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.trim().is_empty())
    }

    /// Every value of a repeated field (checkboxes), in form order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl<S> FromRequest<S> for ChangeForm
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let session = ConsoleSession::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let request = Request::from_parts(parts, body);
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = crate::api::review::params::pairs(std::str::from_utf8(&body).ok());
        let form = Self {
            session,
            headers,
            fields,
        };
        form.session
            .check_csrf(&form.headers, &form.fields)
            .map_err(IntoResponse::into_response)?;
        Ok(form)
    }
}

/// A change without the session's CSRF token: 403, nothing done.
#[derive(Debug)]
pub struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from the console (CSRF check failed). Reload the page and try again.",
        )
            .into_response()
    }
}

/// Where a request without a session goes: the login page, back here afterwards.
pub struct LoginRequired {
    next: String,
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        let location = format!(
            "/ui/login?next={}",
            crate::api::review::params::encode(&self.next)
        );
        let mut response = Redirect::to(&location).into_response();
        // htmx follows redirects inside its request: ask it to navigate instead.
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert("hx-redirect", value);
        }
        response
    }
}

impl<S> FromRequestParts<S> for ConsoleSession
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = LoginRequired;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let found = cookie(&parts.headers, COOKIE)
            .and_then(|id| state.console.get(id).map(|s| (id.to_string(), s)));
        match found {
            Some((id, session)) => Ok(Self { id, session }),
            None => Err(LoginRequired {
                next: safe_next(parts.uri.path_and_query().map(|p| p.as_str())),
            }),
        }
    }
}

/// A console path to return to after login; anything else (another site, `//host`) is `/ui`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/ui")
                && !path.starts_with("/ui/login")
                && !path.contains("//")
                && !path.contains('\\') =>
        {
            path.to_string()
        }
        _ => "/ui".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyst() -> Caller {
        Caller {
            role: Some(Role::Analyst),
            actor: "analyst-0011aabb".into(),
        }
    }

    #[test]
    fn an_opened_session_is_found_by_its_id_until_closed() {
        let sessions = Sessions::default();
        let id = sessions.open(analyst());
        assert_eq!(id.len(), 64);
        let session = sessions.get(&id).expect("open session");
        assert_eq!(session.caller, analyst());
        assert_ne!(session.csrf, id);
        assert!(sessions.get("not-a-session").is_none());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn the_session_table_never_grows_past_its_cap() {
        let sessions = Sessions::default();
        for _ in 0..MAX_SESSIONS + 5 {
            sessions.open(analyst());
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
    }

    #[test]
    fn csrf_needs_the_exact_token() {
        assert!(csrf_matches("abc123", Some("abc123")));
        assert!(!csrf_matches("abc123", Some("abc124")));
        assert!(!csrf_matches("abc123", Some("")));
        assert!(!csrf_matches("abc123", None));
    }

    #[test]
    fn cookies_are_read_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; dg_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_expiring_and_secure_behind_https() {
        let plain = set_cookie(COOKIE, "id", SESSION_LIFETIME, &HeaderMap::new());
        let text = plain.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict"));
        assert!(text.contains("Max-Age=28800") && !text.contains("Secure"));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let secure = set_cookie(COOKIE, "id", SESSION_LIFETIME, &headers);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn only_console_paths_are_returned_to_after_login() {
        assert_eq!(
            safe_next(Some("/ui/clusters?status=open")),
            "/ui/clusters?status=open"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui");
        assert_eq!(safe_next(Some("/ui//evil.example")), "/ui");
        assert_eq!(safe_next(Some("/v1/accounts")), "/ui");
        assert_eq!(safe_next(Some("/ui/login?next=/ui")), "/ui");
        assert_eq!(safe_next(None), "/ui");
    }
}
