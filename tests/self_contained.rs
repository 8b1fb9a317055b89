//! A fresh clone has only the repository: nothing in its tests, scripts or docs may need a file
//! beside it, and the vendored corpora must work as simulator input.

use std::path::{Path, PathBuf};

use distillguard_sim::{simulate, Corpus, PromptBook, Scenario};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

/// Text files under `dir`, skipping build output and VCS metadata.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" || name == "corpora" {
            continue;
        }
        if path.is_dir() {
            text_files(&path, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["rs", "md", "sh", "toml", "yml", "yaml", "json"].contains(&e))
            || path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|d| d == "scripts" || d == ".ci")
        {
            out.push(path);
        }
    }
}

#[test]
fn no_test_script_or_doc_needs_the_folder_beside_the_repository() {
    let root = repo();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "scripts", "tests", "crates", "deploy", ".ci"] {
        text_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "walked only {} files", files.len());
    // Built at run time so that this file does not match itself.
    let needle = format!("../{}/", "shared");
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f).is_ok_and(|text| {
                text.lines()
                    .any(|line| line.contains(&needle) && !line.contains("optional"))
            })
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these files need {needle} (vendor what they use, or mark the line optional): {offenders:?}"
    );
}

fn corpus(name: &str) -> Corpus {
    let path = repo().join("corpora").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Corpus::from_jsonl(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_vendored_corpora_are_small_licensed_and_feed_a_simulation() {
    let readme = std::fs::read_to_string(repo().join("corpora/README.md")).expect("README");
    let mut total_bytes = 0;
    for entry in std::fs::read_dir(repo().join("corpora")).expect("corpora/") {
        let path = entry.expect("entry").path();
        total_bytes += std::fs::metadata(&path).expect("metadata").len();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".jsonl") {
            assert!(
                readme.contains(name),
                "{name} has no origin and licence row"
            );
        }
    }
    assert!(total_bytes < 512 * 1024, "corpora/ is {total_bytes} bytes");

    let benign = corpus("benign_dolly_open_qa_1500.jsonl");
    let attack = corpus("distill_seed_tasks_175.jsonl");
    assert_eq!((benign.len(), attack.len()), (1_500, 175));
    let book = PromptBook::new(Some(benign.clone()), Some(attack.clone()));
    let scenario = Scenario {
        accounts: 60,
        volume: 0.2,
        ..Scenario::default()
    };
    let mut prompts = Vec::new();
    simulate(
        &scenario,
        &book,
        |event| -> Result<(), distillguard_sim::SimError> {
            if let Some(p) = event.prompt.as_deref() {
                if prompts.len() < 5_000 {
                    prompts.push(p.to_owned());
                }
            }
            Ok(())
        },
    )
    .expect("simulation");
    let lines = std::fs::read_to_string(repo().join("corpora/benign_dolly_open_qa_1500.jsonl"))
        .expect("corpus");
    let originals: Vec<String> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["prompt"].as_str().map(str::to_owned))
        .collect();
    let from_corpus = prompts
        .iter()
        .filter(|p| originals.iter().any(|o| p.contains(o.as_str())))
        .count();
    assert!(
        from_corpus > 0,
        "no simulated prompt came from the vendored benign corpus ({} prompts)",
        prompts.len()
    );
}

/// The README's quick start in order on one data directory: its first event, then the simulated
/// day the demo script streams. The first event must not push the watermark past the day's start
/// (or the whole day would be late), and the script must simulate the day the README means.
#[test]
fn the_readme_first_event_and_the_simulated_day_fit_together() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let body = readme
        .lines()
        .find_map(|l| l.trim().strip_prefix("--data-binary '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("the README's first event");
    let event: serde_json::Value = serde_json::from_str(body).expect("the first event is JSON");
    let first = distillguard_core::time::EventTime::parse_rfc3339(
        event["timestamp"].as_str().expect("timestamp"),
    )
    .expect("RFC 3339");
    let day = Scenario::default().start;
    let lateness = distillguard_core::engine::EngineConfig::default().allowed_lateness_ms;
    assert!(
        first.epoch_ms() - lateness <= day.epoch_ms(),
        "the README's first event ({}) would make the simulated day from {} late",
        first.to_rfc3339(),
        day.to_rfc3339()
    );

    let script =
        std::fs::read_to_string(repo().join("deploy/docker/demo-traffic.sh")).expect("script");
    let default_start = script
        .lines()
        .find_map(|l| l.strip_prefix("start=\"${DEMO_START:-"))
        .and_then(|l| l.strip_suffix("}\""))
        .expect("the demo script's DEMO_START default");
    assert_eq!(
        distillguard_core::time::EventTime::parse_rfc3339(default_start).expect("RFC 3339"),
        day,
        "the demo day is the simulator's default day"
    );
    assert!(
        readme.contains("deploy/docker/demo-traffic.sh") && readme.contains("serve --reset"),
        "the README streams the demo day and says how to start over"
    );
}

/// Everything the README's commands write goes under `out/`, which git ignores.
#[test]
fn the_readme_commands_write_under_an_ignored_folder() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let ignore = std::fs::read_to_string(repo().join(".gitignore")).expect(".gitignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "/out"),
        "out/ is not ignored"
    );
    let mut outputs = Vec::new();
    for line in readme.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if ["--out", "--labels", "--report"].contains(&pair[0]) {
                outputs.push(pair[1].to_owned());
            }
        }
        if let Some(dir) = line.split("DEMO_WORK_DIR=").nth(1) {
            outputs.push(dir.split_whitespace().next().unwrap_or_default().to_owned());
        }
    }
    assert!(outputs.len() >= 4, "found only {outputs:?}");
    for output in &outputs {
        assert!(
            output.starts_with("out/"),
            "the README writes {output} outside out/"
        );
    }
}
