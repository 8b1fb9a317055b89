//! `docs/openapi.json` is exact: it lists every route of the router with its methods, no more.
//!
//! The router's routes are read from its source (`.route("/path", get(..).post(..))` under
//! `crates/distillguard-server/src/api`), the one place they are declared; Schemathesis
//! (`scripts/test-clients`) then checks that each documented operation behaves as documented.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `METHOD /path` for every route declared in `source`.
fn declared(source: &str, out: &mut BTreeSet<String>) {
    for segment in source.split(".route(").skip(1) {
        let Some(path) = segment.trim_start().strip_prefix('"') else {
            continue;
        };
        let path = &path[..path.find('"').unwrap()];
        // The route's method routers end where the next builder call starts.
        let end = [".merge(", ".layer(", ".with_state(", "\n}"]
            .iter()
            .filter_map(|stop| segment.find(stop))
            .min()
            .unwrap_or(segment.len());
        let body = &segment[..end];
        for method in METHODS {
            let needle = format!("{method}(");
            let bytes = body.as_bytes();
            // `get(` itself, not the end of a longer name (`forget(`).
            let called = body.match_indices(&needle).any(|(i, _)| {
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
            });
            if called {
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
}

#[test]
fn the_openapi_document_lists_every_route_of_the_router_and_no_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root.join("crates/distillguard-server/src/api"), &mut files);
    let mut routes = BTreeSet::new();
    for file in &files {
        declared(&std::fs::read_to_string(file).unwrap(), &mut routes);
    }
    assert!(routes.contains("POST /v1/traces"), "{routes:?}");
    assert!(
        routes.contains("POST /v1/accounts/{id}/notes"),
        "{routes:?}"
    );

    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("docs/openapi.json")).unwrap()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&routes).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "routes missing from docs/openapi.json: {undocumented:?}; documented but not routed: {phantom:?}"
    );
}

#[test]
fn every_operation_documents_its_error_statuses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("docs/openapi.json")).unwrap()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let responses = operation["responses"].as_object().unwrap();
            let secured = operation
                .get("security")
                .and_then(|s| s.as_array())
                .is_some_and(|s| !s.is_empty());
            if secured {
                for status in ["401", "403"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
            let reads_input = operation.get("requestBody").is_some()
                || operation["parameters"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
            if reads_input {
                assert!(responses.contains_key("400"), "{method} {path}: 400");
            }
        }
    }
}
