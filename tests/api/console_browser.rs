//! The analyst console in a real headless Chromium, driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`; `.ci/run` installs them when missing): log in, load a simulated
//! campaign, open the queue and the hydra cluster, see its members in the graph, confirm it with
//! a close reason, see the audit entry, export the list as CSV, and meet a conflict when the
//! version read is stale.
//!
//! With `DG_CONSOLE_SCREENSHOTS=DIR` (an absolute path) it also saves the screenshots of `docs/console.md`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::*;

/// Bounds every wait on the browser, so a broken page fails the test instead of hanging CI.
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = [
            "chromedriver",
            "/usr/bin/chromedriver",
            "/usr/lib/chromium/chromedriver",
        ]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect(
            "the browser tests need chromedriver and chromium \
                 (Debian/Ubuntu: apt-get install chromium chromium-driver)",
        );
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Self { child, port }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        let mut options = json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,900", "--force-device-scale-factor=1",
        ]});
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        caps.insert("goog:chromeOptions".into(), options);
        // fantoccini's TLS config asks rustls for the process default provider.
        distillguard_server::app::install_tls_provider();
        let started = Instant::now();
        loop {
            let attempt = ClientBuilder::rustls()
                .expect("a TLS config")
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{}", self.port))
                .await;
            match attempt {
                Ok(client) => return client,
                Err(error) if started.elapsed() > WAIT => {
                    panic!("chromedriver did not start a browser: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the first element matching `css`, read again if the page replaced it meanwhile
/// (navigation, or the queue refreshing itself).
/// The text of `css` once it reads `expected`, or what it read last when `WAIT` ran out: right
/// after a click that navigates, the previous page's element can still be read for a moment.
async fn text_once(browser: &Client, css: &str, expected: &str) -> String {
    let started = Instant::now();
    loop {
        let text = text_of(browser, css).await;
        if text == expected || started.elapsed() > WAIT {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(browser: &Client, css: &str) -> String {
    let started = Instant::now();
    loop {
        let found = browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"));
        match found.text().await {
            Ok(text) => return text,
            Err(error) if started.elapsed() > WAIT => panic!("{css} kept going stale: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Picks a status and close reason in the page's triage form and submits it.
async fn submit_triage(browser: &Client, status: &str, reason: &str) {
    for (css, value) in [("#triage-status", status), ("#triage-reason", reason)] {
        browser
            .find(Locator::Css(css))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }
    browser
        .find(Locator::Css("#triage button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn screenshot(browser: &Client, name: &str) {
    let Some(dir) = std::env::var_os("DG_CONSOLE_SCREENSHOTS") else {
        return;
    };
    let png = browser.screenshot().await.unwrap();
    std::fs::write(PathBuf::from(dir).join(name), png).unwrap();
}

/// The page's own fetch, with the browser's session cookie.
async fn fetch_text(browser: &Client, path: &str) -> String {
    let script = "const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.text()).then(done, e => done('failed: ' + e));";
    let value = browser
        .execute_async(script, vec![json!(path)])
        .await
        .unwrap();
    value.as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn an_analyst_triages_a_hydra_campaign_in_the_browser() {
    let driver = Driver::start();
    let app = spawn_app().await;
    let browser = driver.browser().await;
    let base = app.url("");

    // 1. Log in.
    browser.goto(&format!("{base}/ui/login")).await.unwrap();
    browser
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(ANALYST_TOKEN)
        .await
        .unwrap();
    browser
        .find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_once(&browser, "h1", "Accounts").await, "Accounts");
    assert!(text_of(&browser, "header .who").await.contains("(analyst)"));

    // 2. Load a simulated campaign: a day of 100 accounts with one hydra campaign.
    let (events, hydra) = simulated_hydra_day();
    ingest_and_drain(&app, &events).await;
    let first = wait_for(&app, &format!("/v1/accounts/{}", hydra[0]), |a| {
        a["summary"]["cluster_id"].is_string() && a["summary"]["flagged"] == true
    })
    .await;
    let cluster_id = first["summary"]["cluster_id"].as_str().unwrap().to_string();
    wait_for(&app, &format!("/v1/clusters/{cluster_id}"), |c| {
        c["summary"]["flagged"] == true
            && c["members"].as_array().map(Vec::len) >= Some(hydra.len())
    })
    .await;

    // 3. The queue shows the campaign's accounts; the cluster queue leads to the hydra cluster.
    browser
        .goto(&format!(
            "{base}/ui/accounts?flagged=true&sort=score&limit=200"
        ))
        .await
        .unwrap();
    let queue = text_of(&browser, "table.queue").await;
    for account in &hydra {
        assert!(
            queue.contains(account.as_str()),
            "{account} not in the queue"
        );
    }
    screenshot(&browser, "queue.png").await;
    // The queue re-reads itself in place (what its timer does every 15 s).
    let before = text_of(&browser, "#results caption").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    browser
        .execute("window.dgRefreshQueue(); return null;", vec![])
        .await
        .unwrap();
    let started = Instant::now();
    while text_of(&browser, "#results caption").await == before {
        assert!(started.elapsed() < WAIT, "the queue never refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text_of(&browser, "table.queue")
        .await
        .contains(hydra[0].as_str()));
    browser
        .goto(&format!("{base}/ui/clusters?flagged=true"))
        .await
        .unwrap();
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::LinkText(&cluster_id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let title = format!("cluster {cluster_id}");
    assert_eq!(text_once(&browser, "h1", &title).await, title);

    // 4. The graph has drawn every member (and a node per kind of shared value).
    let started = Instant::now();
    let drawn = loop {
        let value = browser
            .execute(
                "const g = document.getElementById('graph');
                 return g.dataset.renderedMembers ? [Number(g.dataset.renderedMembers), Number(g.dataset.renderedLinks), window.dgGraph.nodes('[kind = \"account\"]').map(n => n.data('label'))] : null;",
                vec![],
            )
            .await
            .unwrap();
        if !value.is_null() || started.elapsed() > WAIT {
            break value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!drawn.is_null(), "the graph was never drawn");
    assert!(drawn[0].as_u64().unwrap() >= hydra.len() as u64, "{drawn}");
    assert!(
        drawn[1].as_u64().unwrap() >= 3,
        "kinds of shared values: {drawn}"
    );
    let labels: Vec<&str> = drawn[2]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for account in &hydra {
        assert!(
            labels.contains(&account.as_str()),
            "{account} is not in the graph"
        );
    }
    screenshot(&browser, "cluster.png").await;

    // 5. Confirm the cluster with a close reason.
    submit_triage(&browser, "confirmed", "true_positive").await;
    let started = Instant::now();
    while !text_of(&browser, "#review-status")
        .await
        .contains("confirmed")
    {
        assert!(
            started.elapsed() < WAIT,
            "the cluster was never shown confirmed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        text_of(&browser, "#review-status").await,
        "confirmed (true_positive)"
    );

    // 6. The audit trail shows who did it.
    let audit = text_of(&browser, "#audit tbody").await;
    let line = audit
        .lines()
        .find(|l| l.contains("confirmed"))
        .unwrap_or_else(|| panic!("no audit entry for the confirmation: {audit}"));
    assert!(line.contains("analyst-"), "{line}");
    assert!(line.contains("true_positive"), "{line}");

    // 7. Export the list of confirmed clusters as CSV: one row, this cluster.
    let csv = fetch_text(&browser, "/ui/clusters/export.csv?status=confirmed").await;
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let header: Vec<&str> = rows[0].split(',').collect();
    let row: Vec<&str> = rows[1].split(',').collect();
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(column("id"), cluster_id);
    assert_eq!(column("status"), "confirmed");
    assert_eq!(column("close_reason"), "true_positive");
    assert!(column("member_count").parse::<usize>().unwrap() >= hydra.len());

    // 8. A stale version: someone else changes the account after the page was read.
    let account = &hydra[0];
    browser
        .goto(&format!("{base}/ui/accounts/{account}"))
        .await
        .unwrap();
    // Its activity chart: a bar per event-time hour, and the campaign's requests in them.
    let bars = browser
        .execute(
            "return [...document.querySelectorAll('#activity rect')].map(r => Number(r.getAttribute('height')))",
            vec![],
        )
        .await
        .unwrap();
    let bars = bars.as_array().unwrap();
    assert_eq!(bars.len(), 24);
    assert!(bars.iter().any(|h| h.as_f64() > Some(0.0)), "{bars:?}");
    screenshot(&browser, "account.png").await;
    let read_version = first_version(&app, account).await;
    let changed = app
        .client
        .patch(app.url(&format!("/v1/accounts/{account}/review")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"status": "investigating", "version": read_version, "assignee": "dana"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    submit_triage(&browser, "dismissed", "false_positive").await;
    let conflict = text_of(&browser, ".conflict").await;
    assert!(conflict.contains("someone changed this"), "{conflict}");
    assert!(
        conflict.contains(&format!("you read version {read_version}")),
        "{conflict}"
    );
    assert!(conflict.contains("investigating"), "{conflict}");
    assert!(conflict.contains("dana"), "{conflict}");
    // The change was not applied, and the form now carries the current version.
    assert_eq!(text_of(&browser, "#review-status").await, "investigating");
    let (_, now) = analyst_get(&app, &format!("/v1/accounts/{account}")).await;
    assert_eq!(now["summary"]["review"]["status"], "investigating");
    let form_version = browser
        .execute(
            "return document.querySelector('#triage input[name=version]').value",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        form_version.as_str().unwrap(),
        now["summary"]["review"]["version"].to_string()
    );

    browser.close().await.unwrap();
    app.stop().await;
}

async fn first_version(app: &TestApp, account: &str) -> i64 {
    let (_, detail) = analyst_get(app, &format!("/v1/accounts/{account}")).await;
    detail["summary"]["review"]["version"].as_i64().unwrap()
}
