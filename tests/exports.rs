//! `carebot export answers` end to end: answers texted to the real server (webhook, runner,
//! store), then read back through the command line as an operator would, on SQLite always and
//! on PostgreSQL when CAREBOT_TEST_POSTGRES_URL is set. CSV is opened in spreadsheets, so
//! text that a spreadsheet would run as a formula comes out with a leading `'`; JSON lines are
//! read by programs and keep every answer as it was written.

mod support;

use serde_json::Value;
use support::app::{TestApp, carebot};
use support::app_tests;
use support::roster::{import_caregivers, import_supervisors};

const MARIA: &str = "+13125550123";
const ANA: &str = "+13125550124";
const DANA: &str = "+13125550142";

/// What Maria and Ana write when asked what would make their work better.
const FORMULA: &str = r#"=HYPERLINK("http://evil","x")"#;
const CALL_ME: &str = "+1 call me";

app_tests!(app: csv_cells_a_spreadsheet_would_run_are_quoted_and_jsonl_keeps_them);

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
    let dana = ("S1", "Dana Smith", DANA, "Chicago North");
    import_supervisors(app.store(), &[dana]).await;
    let caregivers = [
        ("C1", "Maria", "Gonzalez", MARIA),
        ("C2", "Ana", "Lopez", ANA),
    ];
    import_caregivers(app.store(), &caregivers).await;
}

/// Starts the pulse for `phone` and answers its three questions by SMS, each after the
/// question arrived.
async fn answer_the_pulse(app: &TestApp, phone: &str, score: &str, help: &str) {
    app.start_all("weekly-pulse", &[phone]).await;
    for (n, reply) in [score, "yes", help].into_iter().enumerate() {
        app.twilio.wait_for(phone, n + 1).await;
        let sid = format!("SM{:032x}", rand::random::<u128>());
        assert_eq!(app.post_sms(phone, reply, &sid).await.0, 200);
    }
    let last = app.twilio.wait_for(phone, 4).await.pop().unwrap();
    assert!(last.starts_with("Thank you"), "{last}");
}
