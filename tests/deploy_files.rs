//! Deployment files, checked without a Docker engine or a cluster: every YAML/JSON file parses,
//! docker-compose.yml satisfies the Compose Specification, every file a manifest refers to exists,
//! and ports, environment variables, job names and metric names agree with what the binary
//! serves. promtool itself runs in `scripts/check-deploy`.

mod deploy_support;

use deploy_support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;

#[test]
fn every_yaml_and_json_file_in_deploy_parses() {
    let yamls = deploy_files_with(&["yml", "yaml"]);
    assert!(
        yamls.len() >= 12,
        "expected the deploy YAML files, found {yamls:?}"
    );
    for path in yamls.iter().chain([&root().join("docker-compose.yml")]) {
        let text = std::fs::read_to_string(path).expect("readable");
        let value: Value =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            value.is_object(),
            "{} is not a YAML mapping",
            path.display()
        );
    }
    let jsons = deploy_files_with(&["json"]);
    assert!(!jsons.is_empty(), "no dashboard JSON in deploy/");
    for path in jsons {
        let text = std::fs::read_to_string(&path).expect("readable");
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn compose_file_satisfies_the_compose_specification() {
    let schema: Value =
        serde_json::from_str(&read("tests/schemas/compose-spec.json")).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("compose schema compiles");
    let compose = compose();
    let errors: Vec<String> = validator
        .iter_errors(&compose)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "docker-compose.yml violates the Compose Specification: {errors:#?}"
    );

    // The validator is live: a misspelt top-level key is refused.
    let mut broken = compose.clone();
    broken
        .as_object_mut()
        .expect("mapping")
        .insert("servics".into(), Value::Object(Default::default()));
    assert!(
        !validator.is_valid(&broken),
        "schema accepted an unknown top-level key"
    );
}

#[test]
fn compose_references_files_that_exist() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    for (name, service) in services {
        if let Some(build) = service.get("build") {
            let context = build["context"].as_str().expect("build context");
            let dockerfile = build["dockerfile"].as_str().expect("dockerfile");
            let path = Path::new(context).join(dockerfile);
            assert!(
                root().join(&path).is_file(),
                "{name}: {} is missing",
                path.display()
            );
            let target = build["target"].as_str().expect("build target");
            let text = std::fs::read_to_string(root().join(&path)).expect("Dockerfile");
            assert!(
                text.lines()
                    .any(|l| l.starts_with("FROM ") && l.ends_with(&format!(" AS {target}"))),
                "{name}: no stage {target}"
            );
        }
        for volume in service
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let source = volume
                .as_str()
                .expect("short volume syntax")
                .split(':')
                .next()
                .expect("source");
            if let Some(relative) = source.strip_prefix("./") {
                assert!(
                    exists(relative),
                    "{name}: bind mount source {source} is missing"
                );
            } else {
                assert!(
                    compose["volumes"].get(source).is_some(),
                    "{name}: named volume {source} not declared"
                );
            }
        }
    }
    // Grafana's home dashboard path resolves through its mounts to the committed dashboard.
    let home = &service_env(&compose, "grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"];
    let mounts = array_at(&compose, "/services/grafana/volumes");
    let resolved = mounts.iter().filter_map(Value::as_str).find_map(|m| {
        let parts: Vec<&str> = m.split(':').collect();
        home.strip_prefix(parts[1])
            .map(|rest| format!("{}{rest}", parts[0].trim_start_matches("./")))
    });
    let resolved = resolved.expect("home dashboard is under a grafana mount");
    assert!(exists(&resolved), "home dashboard {resolved} is missing");
}

#[test]
fn compose_runs_distillguard_with_the_variables_and_port_the_binary_reads() {
    let compose = compose();
    let env = service_env(&compose, "distillguard");
    for key in env.keys().filter(|k| k.starts_with("DISTILLGUARD_")) {
        assert!(
            binary_env().contains(key),
            "distillguard does not read {key}"
        );
    }
    let port = port_of(&env["DISTILLGUARD_LISTEN"]);
    let published = array_at(&compose, "/services/distillguard/ports");
    assert!(
        published
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.ends_with(&format!(":{port}")))),
        "port {port} is not published"
    );
    assert!(
        env["DISTILLGUARD_DATABASE_URL"].starts_with("postgres://"),
        "compose stores findings in postgres"
    );
    assert!(
        env["DISTILLGUARD_DATABASE_URL"].contains("@postgres:5432/"),
        "database URL names the postgres service"
    );

    // Binding 0.0.0.0 requires tokens; each is `role:token` with a known role and a token of at
    // least 12 characters (docs/configuration.md), or the service refuses to start.
    let tokens = &env["DISTILLGUARD_AUTH_TOKENS"];
    let mut roles = Vec::new();
    for entry in tokens.split(',') {
        let (role, token) = entry.split_once(':').expect("role:token");
        assert!(
            token.len() >= 12,
            "token for {role} is shorter than 12 characters"
        );
        roles.push(role);
    }
    assert!(
        roles.iter().all(|r| TOKEN_ROLES.contains(r)),
        "unknown role in {tokens}"
    );
    assert!(
        roles.contains(&"ingest"),
        "no ingest token for the demo traffic"
    );

    let health = array_at(&compose, "/services/distillguard/healthcheck/test");
    let dockerfile = read("deploy/docker/Dockerfile");
    let script = health[1].as_str().expect("healthcheck command");
    assert!(
        dockerfile.contains(&format!("deploy/docker/healthcheck.sh {script}")),
        "{script} is not installed by the Dockerfile"
    );

    // The demo client posts to the service's port with a token the service accepts as ingest.
    let demo = service_env(&compose, "demo-traffic");
    assert_eq!(
        demo["DISTILLGUARD_URL"],
        format!("http://distillguard:{port}")
    );
    assert!(
        tokens
            .split(',')
            .any(|t| t == format!("ingest:{}", demo["DISTILLGUARD_INGEST_TOKEN"])),
        "demo token is not an ingest token"
    );
}

#[test]
fn prometheus_scrapes_distillguard_under_the_job_name_the_alerts_use() {
    let config = yaml("deploy/prometheus/prometheus.yml");
    for rule_file in array_at(&config, "/rule_files") {
        let rule_file = rule_file.as_str().expect("rule file");
        assert!(
            exists(&format!("deploy/prometheus/{rule_file}")),
            "rule file {rule_file} missing"
        );
    }
    let job = array_at(&config, "/scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "distillguard")
        .expect(
            "a scrape job named distillguard (DistillguardDown matches up{job=\"distillguard\"})",
        );
    assert_eq!(job["metrics_path"], "/metrics");
    let listen = &service_env(&compose(), "distillguard")["DISTILLGUARD_LISTEN"];
    assert_eq!(
        str_at(job, "/static_configs/0/targets/0"),
        format!("distillguard:{}", port_of(listen))
    );
    assert!(read("deploy/prometheus/alerts.yml").contains("up{job=\"distillguard\"}"));
}

#[test]
fn dockerfile_builds_the_binary_and_runs_it_unprivileged_with_a_health_check() {
    let text = read("deploy/docker/Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(text.contains("cargo build --release --locked -p distillguard"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("FROM rust:") && l.ends_with("AS build")));
    let runtime_start = lines
        .iter()
        .position(|l| *l == "FROM debian:bookworm-slim AS runtime")
        .expect("slim runtime stage");
    let runtime: Vec<&str> = lines[runtime_start..]
        .iter()
        .take_while(|l| !l.starts_with("FROM runtime"))
        .copied()
        .collect();
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("runtime sets USER");
    assert!(
        !["0", "root", "0:0"].contains(&user),
        "runtime runs as root"
    );
    assert!(
        runtime.iter().any(|l| l.starts_with("HEALTHCHECK ")),
        "runtime has no HEALTHCHECK"
    );
    assert!(runtime
        .iter()
        .any(|l| l.starts_with("ENTRYPOINT [\"/usr/local/bin/distillguard\"]")));
    for line in &lines {
        if let Some(args) = line.strip_prefix("COPY ").filter(|a| !a.contains("--from")) {
            let parts: Vec<&str> = args
                .split_whitespace()
                .filter(|p| !p.starts_with("--"))
                .collect();
            if parts[0] != "." {
                assert!(exists(parts[0]), "COPY source {} missing", parts[0]);
            }
        }
    }
    // ENV instructions, continuation lines joined, comments skipped.
    let logical = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let env_vars: Vec<&str> = logical
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(!env_vars.is_empty(), "the image sets no environment");
    for var in &env_vars {
        let name = var.split('=').next().expect("name");
        assert!(
            binary_env().contains(name) || allocator_env().contains(&name),
            "Dockerfile sets {name}, which distillguard does not read"
        );
    }
    let listen = env_vars
        .iter()
        .find_map(|v| v.strip_prefix("DISTILLGUARD_LISTEN="))
        .expect("image sets DISTILLGUARD_LISTEN");
    assert!(
        lines.contains(&format!("EXPOSE {}", port_of(listen)).as_str()),
        "EXPOSE does not match {listen}"
    );
}

#[test]
fn kubernetes_manifests_reference_existing_files_and_agree_on_ports_and_labels() {
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let mut by_kind = BTreeMap::new();
    for resource in array_at(&kustomization, "/resources") {
        let file = format!(
            "deploy/kubernetes/{}",
            resource.as_str().expect("resource path")
        );
        assert!(exists(&file), "kustomization lists missing {file}");
        let doc = yaml(&file);
        by_kind.insert(str_at(&doc, "/kind").to_owned(), doc);
    }
    let (deployment, service, monitor) = (
        &by_kind["Deployment"],
        &by_kind["Service"],
        &by_kind["ServiceMonitor"],
    );
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];

    let mut env = BTreeMap::new();
    for var in array_at(container, "/env") {
        let name = str_at(var, "/name");
        assert!(
            binary_env().contains(name),
            "deployment sets {name}, which distillguard does not read"
        );
        env.insert(name.to_owned(), var.clone());
    }
    assert!(
        env.contains_key("DISTILLGUARD_AUTH_TOKENS"),
        "a non-loopback bind needs tokens"
    );
    let port = port_of(str_at(&env["DISTILLGUARD_LISTEN"], "/value"));
    let container_port = array_at(container, "/ports")
        .iter()
        .find(|p| p["containerPort"] == port)
        .expect("containerPort matches DISTILLGUARD_LISTEN");
    let port_name = str_at(container_port, "/name");

    // Secret keys the pod reads exist in the documented example.
    let secret = yaml("deploy/kubernetes/secret.example.yaml");
    for var in env.values().filter(|v| v.get("valueFrom").is_some()) {
        assert_eq!(
            str_at(var, "/valueFrom/secretKeyRef/name"),
            str_at(&secret, "/metadata/name")
        );
        let key = str_at(var, "/valueFrom/secretKeyRef/key");
        assert!(
            secret["stringData"].get(key).is_some(),
            "secret.example.yaml lacks key {key}"
        );
    }
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(
            str_at(container, &format!("/{probe}/httpGet/path")),
            path,
            "{probe}"
        );
        assert_eq!(
            str_at(container, &format!("/{probe}/httpGet/port")),
            port_name,
            "{probe} port"
        );
    }
    for resource in [
        "/resources/requests/cpu",
        "/resources/requests/memory",
        "/resources/limits/memory",
    ] {
        assert!(
            container.pointer(resource).is_some(),
            "container lacks {resource}"
        );
    }
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );

    // Deployment -> Service -> ServiceMonitor wiring, and the job name the alerts match.
    let pod_labels = pod["metadata"]["labels"].as_object().expect("pod labels");
    for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "service selector {k} does not match the pod"
        );
    }
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(str_at(service_port, "/targetPort"), port_name);
    assert_eq!(
        str_at(service, "/metadata/name"),
        "distillguard",
        "job label comes from the Service name"
    );
    let service_labels = service["metadata"]["labels"]
        .as_object()
        .expect("service labels");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            service_labels.get(k),
            Some(v),
            "ServiceMonitor selector {k} misses the Service"
        );
    }
    assert_eq!(
        str_at(monitor, "/spec/endpoints/0/port"),
        str_at(service_port, "/name")
    );
    assert_eq!(str_at(monitor, "/spec/endpoints/0/path"), "/metrics");
}

#[test]
fn prometheusrule_carries_the_same_groups_as_alerts_yml() {
    let alerts = yaml("deploy/prometheus/alerts.yml");
    let rule = yaml("deploy/kubernetes/prometheusrule.yaml");
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "deploy/kubernetes/prometheusrule.yaml drifted from alerts.yml: run deploy/kubernetes/sync-prometheusrule.sh"
    );
}

#[test]
fn every_alert_has_a_pending_period_severity_annotations_and_a_runbook() {
    let runbook_anchors = anchors(&read("docs/operations.md"));
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts.iter().map(|a| str_at(a, "/alert")).collect();
    for required in [
        "DistillationClusterDetected",
        "FlaggedAccountsSpike",
        "IngestStalled",
        "IngestRejectRateHigh",
        "BackpressureActive",
        "DetectionLagHigh",
        "StoreWriteFailures",
        "DistillguardDown",
    ] {
        assert!(names.contains(required), "alert {required} is missing");
    }
    for alert in &alerts {
        let name = str_at(alert, "/alert");
        assert!(
            alert.get("for").and_then(Value::as_str).is_some(),
            "{name} has no `for:`"
        );
        assert!(
            ["critical", "warning", "info"].contains(&str_at(alert, "/labels/severity")),
            "{name} severity"
        );
        for annotation in ["summary", "description"] {
            assert!(
                !str_at(alert, &format!("/annotations/{annotation}")).is_empty(),
                "{name} {annotation}"
            );
        }
        let runbook = str_at(alert, "/annotations/runbook_url");
        let (page, anchor) = runbook.split_once('#').expect("runbook anchor");
        assert!(
            page.ends_with("docs/operations.md"),
            "{name} runbook is not in docs/operations.md"
        );
        assert_eq!(anchor, name.to_lowercase(), "{name} runbook anchor");
        assert!(
            runbook_anchors.contains(anchor),
            "docs/operations.md has no heading `{name}`"
        );
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_promtool_test() {
    let tests = yaml("deploy/prometheus/alerts_test.yml");
    assert_eq!(array_at(&tests, "/rule_files")[0], "alerts.yml");
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in array_at(&tests, "/tests")
        .iter()
        .flat_map(|t| array_at(t, "/alert_rule_test").clone())
    {
        let name = str_at(&case, "/alertname").to_owned();
        if array_at(&case, "/exp_alerts").is_empty() {
            quiet.insert(name);
        } else {
            firing.insert(name);
        }
    }
    for alert in alerts() {
        let name = str_at(&alert, "/alert");
        assert!(firing.contains(name), "no promtool test where {name} fires");
        assert!(
            quiet.contains(name),
            "no promtool test where {name} stays quiet"
        );
    }
}

#[test]
fn alerts_and_dashboard_only_query_metrics_the_binary_exports() {
    let exported = exported_metrics();
    for alert in alerts() {
        for (metric, known) in metrics_in(str_at(&alert, "/expr"), &exported) {
            assert!(
                known,
                "alert {} uses {metric}, which distillguard does not export",
                alert["alert"]
            );
        }
    }
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/distillguard.json"))
            .expect("dashboard");
    let mut ids = BTreeSet::new();
    let mut queried = BTreeSet::new();
    for panel in array_at(&dashboard, "/panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate panel id {}",
            panel["id"]
        );
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (metric, known) in metrics_in(str_at(target, "/expr"), &exported) {
                assert!(
                    known,
                    "panel {} uses {metric}, which distillguard does not export",
                    panel["title"]
                );
                queried.insert(metric);
            }
        }
    }
    // The dashboard shows what the issue asks for: ingest, rejects, queue, lag, findings, fires.
    for metric in [
        "distillguard_events_accepted_total",
        "distillguard_events_rejected_total",
        "distillguard_queue_depth",
        "distillguard_detection_lag_seconds",
        "distillguard_open_findings",
        "distillguard_findings_total",
        "distillguard_detector_fires_total",
    ] {
        assert!(
            queried.contains(metric),
            "dashboard has no panel on {metric}"
        );
    }
    // The dashboard's default datasource is the one provisioning creates.
    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let variable = array_at(&dashboard, "/templating/list")
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("datasource variable");
    assert_eq!(
        variable["current"]["value"],
        datasources["datasources"][0]["uid"]
    );
    let providers = yaml("deploy/grafana/provisioning/dashboards/distillguard.yml");
    let path = str_at(&providers, "/providers/0/options/path");
    assert!(
        read("docker-compose.yml").contains(&format!("./deploy/grafana/dashboards:{path}:ro")),
        "provisioned path {path} is not the mounted dashboards"
    );
}

#[test]
fn every_exported_metric_is_documented_in_operations_md() {
    let docs = read("docs/operations.md");
    for metric in exported_metrics() {
        assert!(
            docs.contains(&format!("| `{metric}` |")),
            "docs/operations.md has no metrics-reference row for `{metric}`"
        );
    }
}

#[test]
fn every_variable_the_binary_reads_is_documented_in_configuration_md() {
    let docs = read("docs/configuration.md");
    for var in binary_env() {
        assert!(
            docs.contains(&format!("| `{var}` |")),
            "docs/configuration.md has no row for `{var}`"
        );
    }
}

#[test]
fn container_health_check_passes_on_200_and_fails_on_503_or_a_closed_port() {
    let (port, server) = serve_status("200 OK");
    assert!(
        run_healthcheck(&format!("0.0.0.0:{port}")),
        "a 200 from /healthz is healthy"
    );
    server.join().expect("server thread");

    let (port, server) = serve_status("503 Service Unavailable");
    assert!(
        !run_healthcheck(&format!("127.0.0.1:{port}")),
        "a 503 is unhealthy"
    );
    server.join().expect("server thread");

    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    assert!(
        !run_healthcheck(&format!("127.0.0.1:{closed}")),
        "nothing listening is unhealthy"
    );
}

/// `share:I/N` specs cover `0..N` once each, with N the number of specs.
fn assert_shares_cover_every_partition(shares: &[String]) {
    let mut indices = BTreeSet::new();
    for share in shares {
        let (index, count) = share
            .strip_prefix("share:")
            .and_then(|s| s.split_once('/'))
            .unwrap_or_else(|| panic!("{share} is not share:I/N"));
        assert_eq!(
            count.parse::<usize>().ok(),
            Some(shares.len()),
            "{share}: N must be the number of detectors"
        );
        assert!(indices.insert(index.to_owned()), "{share} appears twice");
    }
    let expected: BTreeSet<String> = (0..shares.len()).map(|i| i.to_string()).collect();
    assert_eq!(indices, expected, "shares leave partitions unowned");
}

#[test]
fn compose_cluster_profile_runs_nats_an_ingest_node_detectors_splitting_the_partitions_and_a_linker(
) {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let in_profile: Vec<&String> = services
        .iter()
        .filter(|(_, s)| {
            s["profiles"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == "cluster"))
        })
        .map(|(name, _)| name)
        .collect();
    assert!(in_profile.iter().any(|n| *n == "nats"), "no nats service");
    let mut roles = BTreeSet::new();
    let mut shares = Vec::new();
    let mut linkers = 0;
    for name in in_profile.into_iter().filter(|n| *n != "nats") {
        let env = service_env(&compose, name);
        for key in env.keys().filter(|k| k.starts_with("DISTILLGUARD_")) {
            assert!(binary_env().contains(key), "{name}: {key} is not read");
        }
        assert_eq!(env["DISTILLGUARD_BUS"], "jetstream", "{name}");
        assert_eq!(env["DISTILLGUARD_NATS_URL"], "nats://nats:4222", "{name}");
        assert!(
            env["DISTILLGUARD_DATABASE_URL"].contains("@postgres:5432/"),
            "{name}: findings and checkpoints go to the shared postgres"
        );
        assert!(
            compose
                .pointer(&format!("/services/{name}/depends_on/nats"))
                .is_some(),
            "{name} does not wait for nats"
        );
        let role = env["DISTILLGUARD_ROLE"].clone();
        if role == "detector" {
            shares.push(env["DISTILLGUARD_BUS_PARTITIONS"].clone());
            assert_eq!(
                env.get("DISTILLGUARD_BUS_LINKER").map(String::as_str),
                Some("true"),
                "{name}: with a linker in the profile, detectors hand their ticks to it"
            );
        }
        if role == "linker" {
            linkers += 1;
        }
        roles.insert(role);
    }
    assert_eq!(
        roles,
        BTreeSet::from([
            "detector".to_owned(),
            "ingest".to_owned(),
            "linker".to_owned()
        ])
    );
    assert_eq!(linkers, 1, "exactly one linker writes the findings");
    assert!(shares.len() >= 2, "the profile runs several detectors");
    assert_shares_cover_every_partition(&shares);
}

#[test]
fn the_jetstream_overlay_runs_one_detector_per_share_of_the_partitions_and_one_linker() {
    let dir = "deploy/kubernetes/jetstream";
    let kustomization = yaml(&format!("{dir}/kustomization.yaml"));
    for resource in array_at(&kustomization, "/resources") {
        let path = format!("{dir}/{}", resource.as_str().expect("resource path"));
        assert!(exists(&path), "kustomization lists missing {path}");
    }
    for patch in array_at(&kustomization, "/patches") {
        assert!(exists(&format!("{dir}/{}", str_at(patch, "/path"))));
    }
    let set = yaml(&format!("{dir}/detector-statefulset.yaml"));
    assert_eq!(str_at(&set, "/kind"), "StatefulSet");
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas") as usize;
    let pod = &set["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    for var in array_at(container, "/env") {
        let name = str_at(var, "/name").to_owned();
        assert!(
            name == "POD_INDEX" || binary_env().contains(&name),
            "the StatefulSet sets {name}, which distillguard does not read"
        );
        // Kubernetes expands $(VAR) only from variables listed before.
        if let Some(value) = var["value"].as_str() {
            if value.contains("$(POD_INDEX)") {
                assert!(env.contains_key("POD_INDEX"), "{name} uses POD_INDEX first");
            }
        }
        env.insert(name, var.clone());
    }
    assert_eq!(
        str_at(&env["POD_INDEX"], "/valueFrom/fieldRef/fieldPath"),
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert_eq!(str_at(&env["DISTILLGUARD_ROLE"], "/value"), "detector");
    assert_eq!(str_at(&env["DISTILLGUARD_BUS"], "/value"), "jetstream");
    assert_eq!(str_at(&env["DISTILLGUARD_BUS_LINKER"], "/value"), "true");
    // The linker: one pod of role linker, on the same NATS and database as the detectors.
    let linker = yaml(&format!("{dir}/linker-statefulset.yaml"));
    assert_eq!(str_at(&linker, "/kind"), "StatefulSet");
    assert_eq!(linker["spec"]["replicas"].as_u64(), Some(1));
    let linker_env: BTreeMap<&str, &serde_json::Value> =
        array_at(&linker["spec"]["template"]["spec"]["containers"][0], "/env")
            .iter()
            .map(|v| (str_at(v, "/name"), v))
            .collect();
    for name in linker_env.keys() {
        assert!(
            binary_env().contains(*name),
            "the linker sets {name}, not read"
        );
    }
    assert_eq!(str_at(linker_env["DISTILLGUARD_ROLE"], "/value"), "linker");
    for shared in [
        "DISTILLGUARD_BUS",
        "DISTILLGUARD_NATS_URL",
        "DISTILLGUARD_DATABASE_URL",
    ] {
        assert_eq!(Some(linker_env[shared]), env.get(shared), "{shared}");
    }
    let partitions = str_at(&env["DISTILLGUARD_BUS_PARTITIONS"], "/value");
    assert_eq!(partitions, format!("share:$(POD_INDEX)/{replicas}"));
    let shares: Vec<String> = (0..replicas)
        .map(|i| partitions.replace("$(POD_INDEX)", &i.to_string()))
        .collect();
    assert_shares_cover_every_partition(&shares);
    let secret = yaml("deploy/kubernetes/secret.example.yaml");
    for var in env.values() {
        if let Some(key) = var.pointer("/valueFrom/secretKeyRef/key") {
            let key = key.as_str().expect("key");
            assert!(
                secret["stringData"].get(key).is_some(),
                "no secret key {key}"
            );
        }
    }

    // The detectors' own Service and labels: the ingest Service never routes to a detector.
    let headless = yaml(&format!("{dir}/detector-service.yaml"));
    assert_eq!(
        str_at(&set, "/spec/serviceName"),
        str_at(&headless, "/metadata/name")
    );
    let pod_labels = pod["metadata"]["labels"].as_object().expect("pod labels");
    for (k, v) in headless["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(pod_labels.get(k), Some(v), "headless selector {k}");
    }
    for (k, v) in set["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(pod_labels.get(k), Some(v), "StatefulSet selector {k}");
    }
    let ingest_service = yaml("deploy/kubernetes/service.yaml");
    let ingest_selector = ingest_service["spec"]["selector"]
        .as_object()
        .expect("selector");
    assert!(
        ingest_selector
            .iter()
            .any(|(k, v)| pod_labels.get(k) != Some(v)),
        "the ingest Service would select detector pods"
    );
    let patch = yaml(&format!("{dir}/ingest-patch.yaml"));
    let patched: Vec<(&str, &str)> = array_at(&patch, "/spec/template/spec/containers/0/env")
        .iter()
        .map(|v| (str_at(v, "/name"), str_at(v, "/value")))
        .collect();
    assert!(
        patched.contains(&("DISTILLGUARD_ROLE", "ingest")),
        "{patched:?}"
    );
    assert!(
        patched.contains(&("DISTILLGUARD_BUS", "jetstream")),
        "{patched:?}"
    );
}

/// Options of the allocator the binary links by default (mimalloc reads them at start); empty
/// when the default build no longer links mimalloc, so a leftover option is caught.
fn allocator_env() -> Vec<&'static str> {
    let manifest = read("crates/distillguard/Cargo.toml");
    let links_mimalloc = manifest
        .lines()
        .any(|l| l.starts_with("default = ") && l.contains("\"mimalloc\""));
    if links_mimalloc {
        vec!["MIMALLOC_ARENA_EAGER_COMMIT"]
    } else {
        Vec::new()
    }
}
