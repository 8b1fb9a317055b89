//! The analyst console over plain HTTP: login for a session cookie, CSRF on every change, the
//! ingest role refused, no login with authentication off, and pages that show what the API holds.
//! (`console_browser.rs` drives the same pages in a real headless Chromium.)

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, Response};

use crate::helpers::*;

fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// The value of `name` among the response's `Set-Cookie` headers, with the whole header.
fn set_cookie(response: &Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|header| {
            let value = header[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_string();
            (value, header.to_string())
        })
}

/// The `value` of the hidden input called `name` in a page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// Opens the login page and posts `token`: the response, and the login cookie it used.
async fn log_in(app: &TestApp, token: &str) -> Response {
    let page = client().get(app.url("/ui/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (login_cookie, _) = set_cookie(&page, "dg_login").expect("a login cookie");
    let html = page.text().await.unwrap();
    client()
        .post(app.url("/ui/login"))
        .header(COOKIE, format!("dg_login={login_cookie}"))
        .form(&[
            ("token", token),
            ("login_csrf", &hidden(&html, "login_csrf")),
            ("next", "/ui/clusters"),
        ])
        .send()
        .await
        .unwrap()
}

/// A logged-in analyst: the session cookie and the CSRF token of its pages.
async fn analyst_session(app: &TestApp) -> (String, String) {
    let response = log_in(app, ANALYST_TOKEN).await;
    assert_eq!(response.status(), 303);
    let (session, _) = set_cookie(&response, "dg_session").expect("a session cookie");
    let page = client()
        .get(app.url("/ui/accounts"))
        .header(COOKIE, format!("dg_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = hidden(&page.text().await.unwrap(), "csrf");
    (session, csrf)
}

#[tokio::test]
async fn an_analyst_token_becomes_a_strict_http_only_expiring_session() {
    let app = spawn_app().await;

    let response = log_in(&app, ANALYST_TOKEN).await;

    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/ui/clusters");
    let (session, header) = set_cookie(&response, "dg_session").expect("a session cookie");
    assert_eq!(session.len(), 64, "{header}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/ui"] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }
    assert!(!header.contains(ANALYST_TOKEN));
    let page = client()
        .get(app.url("/ui/clusters"))
        .header(COOKIE, format!("dg_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1>Clusters</h1>"), "{html}");
    assert!(html.contains("(analyst)"));
    app.stop().await;
}

#[tokio::test]
async fn the_ingest_role_and_unknown_tokens_cannot_open_the_console() {
    let app = spawn_app().await;

    let ingest = log_in(&app, INGEST_TOKEN).await;
    let unknown = log_in(&app, "not-a-configured-token").await;
    let anonymous = client()
        .get(app.url("/ui/clusters?status=open"))
        .send()
        .await
        .unwrap();

    assert_eq!(ingest.status(), 403);
    assert!(set_cookie(&ingest, "dg_session").is_none());
    assert!(ingest
        .text()
        .await
        .unwrap()
        .contains("cannot open the console"));
    assert_eq!(unknown.status(), 401);
    assert!(set_cookie(&unknown, "dg_session").is_none());
    assert_eq!(anonymous.status(), 303);
    assert_eq!(
        anonymous.headers()[LOCATION],
        "/ui/login?next=%2Fui%2Fclusters%3Fstatus%3Dopen"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_login_without_its_form_cookie_is_refused() {
    let app = spawn_app().await;

    let response = client()
        .post(app.url("/ui/login"))
        .form(&[("token", ANALYST_TOKEN), ("login_csrf", "forged")])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    assert!(set_cookie(&response, "dg_session").is_none());
    app.stop().await;
}

#[tokio::test]
async fn changes_need_the_session_csrf_token_and_logout_ends_the_session() {
    let app = spawn_app().await;
    let (session, csrf) = analyst_session(&app).await;
    let cookie = format!("dg_session={session}");
    let entry = [
        ("kind", "account"),
        ("id", "acct-eval-lab"),
        ("reason", "our eval lab"),
    ];

    let forged = client()
        .post(app.url("/ui/allowlist"))
        .header(COOKIE, &cookie)
        .form(&entry)
        .send()
        .await
        .unwrap();
    let (forged_status, _) = (forged.status(), forged.text().await.unwrap());
    let mut with_token = entry.to_vec();
    with_token.push(("csrf", &csrf));
    let genuine = client()
        .post(app.url("/ui/allowlist"))
        .header(COOKIE, &cookie)
        .form(&with_token)
        .send()
        .await
        .unwrap();

    assert_eq!(forged_status, 403);
    assert_eq!(genuine.status(), 303);
    let (_, listed) = analyst_get(&app, "/v1/allowlist").await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "only the genuine change went through: {listed}"
    );
    assert_eq!(items[0]["subject"]["id"], "acct-eval-lab");
    assert!(items[0]["created_by"]
        .as_str()
        .unwrap()
        .starts_with("analyst-"));

    let logout = client()
        .post(app.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    let after = client()
        .get(app.url("/ui/accounts"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "the session is revoked at once");
    app.stop().await;
}

#[tokio::test]
async fn with_auth_off_the_console_opens_without_a_token() {
    let settings = distillguard_server::Settings {
        auth_tokens: Vec::new(),
        ..test_settings()
    };
    let app = spawn_app_with(settings).await;

    let login = client()
        .get(app.url("/ui/login?next=/ui/clusters"))
        .send()
        .await
        .unwrap();

    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()[LOCATION], "/ui/clusters");
    let (session, _) = set_cookie(&login, "dg_session").expect("a session without a token");
    let page = client()
        .get(app.url("/ui/clusters"))
        .header(COOKIE, format!("dg_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("local (local)"));
    app.stop().await;
}

#[tokio::test]
async fn the_queue_lists_what_the_api_lists_and_shows_its_filter_errors() {
    let app = spawn_app().await;
    ingest_and_drain(&app, &simulated_harvester()).await;
    let listed = wait_for(&app, "/v1/accounts?flagged=true", |l| {
        l["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let (session, _) = analyst_session(&app).await;
    let cookie = format!("dg_session={session}");

    let page = client()
        .get(app.url("/ui/accounts?flagged=true&detector=&min_score="))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let bad = client()
        .get(app.url("/ui/accounts?since=yesterday"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let csv = client()
        .get(app.url("/ui/accounts/export.csv?flagged=true"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();

    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for item in listed["items"].as_array().unwrap() {
        let id = item["subject"]["id"].as_str().unwrap();
        assert!(
            html.contains(&format!(">{id}</a>")),
            "{id} missing from the queue"
        );
    }
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("query parameter since"));
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("kind,id,score,severity,flagged,status"));
    assert_eq!(lines.count(), listed["items"].as_array().unwrap().len());
    app.stop().await;
}

#[tokio::test]
async fn a_finding_that_judges_one_end_user_names_it_in_the_api_and_on_its_page() {
    let app = spawn_app().await;
    let (events, reseller, harvester) = simulated_reseller_hidden_day();
    ingest_and_drain(&app, &events).await;
    let finding = wait_for(&app, &format!("/v1/accounts/{reseller}"), |f| {
        f["summary"]["flagged"] == true
    })
    .await;
    let (session, _) = analyst_session(&app).await;

    let page = client()
        .get(app.url(&format!("/ui/accounts/{reseller}")))
        .header(COOKIE, format!("dg_session={session}"))
        .send()
        .await
        .unwrap();

    assert_eq!(finding["end_user"], harvester.as_str(), "{finding}");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("end user <strong>{harvester}</strong>")),
        "the page names the end user: {html}"
    );
    app.stop().await;
}
