//! Helpers of tests/deploy_files.rs: reading and walking the repository's deployment files,
//! Compose interpolation, PromQL metric names, Markdown anchors, a fake health endpoint.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the binary declares its flags, each with `env = "DISTILLGUARD_..."` (clap).
pub const BINARY_SETTINGS: &str = "crates/distillguard/src/cmd/settings.rs";

/// `DISTILLGUARD_*` variables the binary reads, taken from its clap declarations.
pub fn binary_env() -> BTreeSet<String> {
    let source = read(BINARY_SETTINGS);
    let names: BTreeSet<String> = source
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| name.starts_with("DISTILLGUARD_"))
        .map(str::to_owned)
        .collect();
    for required in [
        "DISTILLGUARD_LISTEN",
        "DISTILLGUARD_AUTH_TOKENS",
        "DISTILLGUARD_DATABASE_URL",
    ] {
        assert!(
            names.contains(required),
            "{BINARY_SETTINGS} no longer declares {required}: {names:?}"
        );
    }
    names
}

pub const TOKEN_ROLES: &[&str] = &["ingest", "analyst", "admin"];
pub const METRICS_SOURCE: &str = "crates/distillguard-server/src/metrics.rs";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn yaml(relative: &str) -> Value {
    serde_norway::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

pub fn exists(relative: &str) -> bool {
    root().join(relative).exists()
}

pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

pub fn deploy_files_with(extensions: &[&str]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    files_under(&root().join("deploy"), &mut all);
    all.retain(|p| {
        p.extension()
            .is_some_and(|e| extensions.iter().any(|x| e == *x))
    });
    all.sort();
    all
}

pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}"))
}

pub fn array_at<'a>(value: &'a Value, pointer: &str) -> &'a Vec<Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no array at {pointer}"))
}

/// Compose interpolation as the stack runs with no overrides: `${VAR:-default}` -> default.
pub fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} has no default: the stack must run as is"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

pub fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listen}"))
}

pub fn compose() -> Value {
    yaml("docker-compose.yml")
}

pub fn service_env(compose: &Value, service: &str) -> BTreeMap<String, String> {
    let env = compose
        .pointer(&format!("/services/{service}/environment"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("service {service} has no environment map"));
    env.iter()
        .map(|(k, v)| {
            let text = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            (k.clone(), interpolate(&text))
        })
        .collect()
}

/// Metric names registered in the server's metrics module (the source of truth).
pub fn exported_metrics() -> BTreeSet<String> {
    // The bus's series are registered from their own module (`[bus] kind = "jetstream"`).
    let source = read(METRICS_SOURCE) + &read("crates/distillguard-server/src/bus/metrics.rs");
    let names: BTreeSet<String> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("distillguard_") && !s.contains(' '))
        .map(str::to_owned)
        .collect();
    assert!(
        names.len() >= 20,
        "expected the full metric set in {METRICS_SOURCE}, found {names:?}"
    );
    names
}

/// `distillguard_*` and `process_*` series named in a PromQL expression, histogram suffixes
/// folded onto their metric.
pub fn metrics_in(expr: &str, exported: &BTreeSet<String>) -> Vec<(String, bool)> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("distillguard_") || t.starts_with("process_"))
        .map(|t| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| t.strip_suffix(s).filter(|b| exported.contains(*b)))
                .unwrap_or(t);
            // process_* comes from the prometheus crate's process collector, registered too.
            (
                base.to_owned(),
                exported.contains(base) || base.starts_with("process_"),
            )
        })
        .collect()
}

pub fn alerts() -> Vec<Value> {
    let rules = yaml("deploy/prometheus/alerts.yml");
    array_at(&rules, "/groups")
        .iter()
        .flat_map(|g| array_at(g, "/rules").clone())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens.
pub fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| {
            l.strip_prefix('#')
                .map(|h| h.trim_start_matches('#').trim())
        })
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// Serves one canned HTTP status per connection to `/healthz`, 404 elsewhere.
pub fn serve_status(status: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("health check connects");
        let mut request = Vec::new();
        let mut buffer = [0u8; 512];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buffer).expect("read request");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
        }
        let status = if request.starts_with(b"GET /healthz ") {
            status
        } else {
            "404 Not Found"
        };
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("respond");
    });
    (port, handle)
}

pub fn run_healthcheck(listen: &str) -> bool {
    Command::new("bash")
        .arg(root().join("deploy/docker/healthcheck.sh"))
        .env("DISTILLGUARD_LISTEN", listen)
        .output()
        .expect("bash runs")
        .status
        .success()
}
