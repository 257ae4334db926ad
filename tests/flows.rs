//! The shipped flows and templates as program staff see them: `flows check` finds no errors,
//! every transcript in flows/tests passes through the real runner, `flows test` prints what it
//! prints (snapshots in tests/snapshots/), and a broken flow is refused with file:line:column.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use carebot::catalog::{self, Catalog};
use carebot::flow::Severity;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_flows_and_templates_have_no_errors() {
    let (_, report) = catalog::check(&root().join("flows"), &root().join("templates"));
    let errors: Vec<String> = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // Every message of every shipped flow was rendered in both languages.
    assert!(report.messages.len() >= 80, "{}", report.messages.len());
}

#[tokio::test]
async fn every_shipped_transcript_passes() {
    let catalog = catalog();
    let results = carebot::transcript::run_dir(&catalog, &root().join("flows/tests")).await;
    assert!(
        results.len() >= 8,
        "expected transcripts for every flow in both languages"
    );
    let failures: Vec<String> = results.iter().flat_map(|r| r.failure_lines()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_transcript_that_expects_the_wrong_thing_fails() {
    let wrong = "flow: weekly-pulse\nlanguage: en\ntranscript:\n  - bot: \"this text is not in the question\"\nexpect:\n  outcome: completed\n";
    let failures = carebot::transcript::run_one(&catalog(), wrong).await;
    assert_eq!(failures.len(), 2, "{failures:?}");
}

fn catalog() -> Arc<Catalog> {
    let (catalog, _) =
        Catalog::load(&root().join("flows"), &root().join("templates")).expect("valid catalog");
    Arc::new(catalog)
}

fn carebot(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_carebot"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("carebot runs")
}

#[test]
fn flows_check_reports_every_error_with_file_line_and_column_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    copy_dir(&root().join("templates"), &dir.path().join("templates"));
    std::fs::write(
        flows.join("broken.yaml"),
        "id: broken\nname: Broken\nversion: 1\nsteps:\n  - id: q\n    ask: pulse/score\n    expect: { scale: { min: 1, max: 5 } }\n    next: nowhere\n  - id: orphan\n    send: pulse/thanks\n    branch:\n      - if: \"answers.score >\"\n        goto: q\n",
    )
    .unwrap();
    let out = carebot(&["flows", "check"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("flows/broken.yaml:8:11: error: unknown step \"nowhere\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("flows/broken.yaml:9:9: error: step \"orphan\" can never be reached"),
        "{stdout}"
    );
    assert!(
        stdout.contains("flows/broken.yaml:12:13: error: invalid expression"),
        "{stdout}"
    );

    let json = carebot(&["flows", "check", "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    assert!(v["problems"].as_array().unwrap().len() >= 3);

    // simulate refuses to load a catalog with errors.
    let sim = carebot(&["simulate", "broken"], dir.path());
    assert_eq!(sim.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&sim.stderr).contains("unknown step"));
}

/// What program staff see from `carebot flows test` on the shipped flows: every transcript
/// listed, each passing.
#[test]
fn flows_test_runs_the_shipped_transcripts() {
    let out = carebot(&["flows", "test"], root());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    insta::assert_snapshot!("flows_test_shipped", stdout);
}

/// A transcript that expects what does not happen fails the command, and each failure names
/// the file and the line of the transcript that expected it.
#[test]
fn flows_test_names_the_file_and_line_of_each_failure() {
    let out = carebot(
        &["flows", "test", "--dir", "tests/fixtures/transcripts"],
        root(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
    insta::assert_snapshot!("flows_test_failing", stdout);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
