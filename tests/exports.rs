//! `carebot export answers` end to end: answers texted to the real server (webhook, runner,
//! store), then read back through the command line as an operator would, on SQLite always and
//! on PostgreSQL when CAREBOT_TEST_POSTGRES_URL is set. CSV is opened in spreadsheets, so
//! text that a spreadsheet would run as a formula comes out with a leading `'`; JSON lines are
//! read by programs and keep every answer as it was written.

mod support;

use std::path::Path;

use carebot::model::Audience;
use serde_json::Value;
use support::app::TestApp;

const MARIA: &str = "+13125550123";
const ANA: &str = "+13125550124";
const DANA: &str = "+13125550142";

/// What Maria and Ana write when asked what would make their work better.
const FORMULA: &str = r#"=HYPERLINK("http://evil","x")"#;
const CALL_ME: &str = "+1 call me";

macro_rules! app_tests {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::sqlite().await;
                    super::$test(crate::support::app::spawn_app(db).await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = crate::support::postgres().await else { return };
                    super::$test(crate::support::app::spawn_app(db).await).await;
                }
            )+
        }
    };
}

app_tests!(csv_cells_a_spreadsheet_would_run_are_quoted_and_jsonl_keeps_them,);

async fn csv_cells_a_spreadsheet_would_run_are_quoted_and_jsonl_keeps_them(app: TestApp) {
    roster(&app).await;
    for (phone, score, help) in [(MARIA, "4", FORMULA), (ANA, "5", CALL_ME)] {
        answer_the_pulse(&app, phone, score, help).await;
    }

    let csv = carebot(&app.db.url, &["export", "answers", "--format", "csv"]).await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["caregiver", "flow", "step", "answer", "answered_at"]
    );
    let rows: Vec<(String, String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[2].to_owned(), r[3].to_owned())
        })
        .collect();
    let row = |caregiver: &str, step: &str, answer: &str| {
        (caregiver.to_owned(), step.to_owned(), answer.to_owned())
    };
    assert_eq!(
        rows,
        vec![
            row("C1", "week_score", "4"),
            row("C1", "stay", "yes"),
            row("C1", "help", &format!("'{FORMULA}")),
            row("C2", "week_score", "5"),
            row("C2", "stay", "yes"),
            row("C2", "help", &format!("'{CALL_ME}")),
        ],
        "{csv}"
    );

    let jsonl = carebot(&app.db.url, &["export", "answers", "--format", "jsonl"]).await;
    let answers: Vec<(String, String, Value)> = jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let text = |k: &str| v[k].as_str().unwrap().to_owned();
            (text("caregiver"), text("step"), v["answer"].clone())
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            ("C1".into(), "week_score".into(), Value::from(4)),
            ("C1".into(), "stay".into(), Value::from("yes")),
            ("C1".into(), "help".into(), Value::from(FORMULA)),
            ("C2".into(), "week_score".into(), Value::from(5)),
            ("C2".into(), "stay".into(), Value::from("yes")),
            ("C2".into(), "help".into(), Value::from(CALL_ME)),
        ],
        "{jsonl}"
    );
    app.stop().await;
}

/// Dana supervises Maria (C1) and Ana (C2), both with written consent on file.
async fn roster(app: &TestApp) {
    let sups = format!(
        "external_id,name,phone,email,branch,timezone\n\
         S1,Dana Smith,{DANA},dana@example.org,Chicago North,America/Chicago\n"
    );
    carebot::roster::import_supervisors(app.store(), sups.as_bytes())
        .await
        .unwrap();
    let cgs = format!(
        "external_id,first_name,last_name,phone,language,timezone,branch,supervisor_id,groups,consent_at\n\
         C1,Maria,Gonzalez,{MARIA},en,America/Chicago,Chicago North,S1,pulse,2026-01-15\n\
         C2,Ana,Lopez,{ANA},en,America/Chicago,Chicago North,S1,pulse,2026-01-15\n"
    );
    carebot::roster::import_caregivers(app.store(), cgs.as_bytes(), false)
        .await
        .unwrap();
}

/// Starts the pulse for `phone` and answers its three questions by SMS, each after the
/// question arrived.
async fn answer_the_pulse(app: &TestApp, phone: &str, score: &str, help: &str) {
    let report = app
        .runner
        .start(
            "weekly-pulse",
            &Audience::Phones(vec![phone.to_owned()]),
            Default::default(),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(report.started, 1, "{report:?}");
    for (n, reply) in [score, "yes", help].into_iter().enumerate() {
        app.twilio.wait_for(phone, n + 1).await;
        let sid = format!("SM{:032x}", rand::random::<u128>());
        assert_eq!(app.post_sms(phone, reply, &sid).await.0, 200);
    }
    let last = app.twilio.wait_for(phone, 4).await.pop().unwrap();
    assert!(last.starts_with("Thank you"), "{last}");
}

/// What `carebot ARGS` prints for an export on the test's database: the command line parsed
/// as the binary parses it, written to a buffer instead of stdout (as in tests/escalations.rs:
/// in a target directory shared between branches, `CARGO_BIN_EXE_carebot` may be another
/// branch's build).
async fn carebot(db_url: &str, args: &[&str]) -> String {
    use clap::Parser;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let flows = root.join("flows");
    let templates = root.join("templates");
    let mut argv = vec![
        "carebot",
        "--flows",
        flows.to_str().unwrap(),
        "--templates",
        templates.to_str().unwrap(),
        "--database-url",
        db_url,
    ];
    argv.extend(args);
    let cli = carebot::cli::Cli::try_parse_from(argv).expect("a valid command line");
    let mut out = Vec::new();
    carebot::cli::results(&cli, &mut out)
        .await
        .unwrap_or_else(|e| panic!("carebot {args:?} failed: {e:#}"));
    String::from_utf8(out).unwrap()
}
