//! Escalations end to end over real HTTP: the real server (webhooks, dispatcher, scheduler) on
//! port 0, a fake Twilio, a fresh database per test (SQLite always, PostgreSQL when
//! CAREBOT_TEST_POSTGRES_URL is set), and a clock the test moves instead of sleeping. Each
//! test reads what the caregiver's and the supervisors' phones received, and what an operator
//! sees from `carebot export escalations` and `carebot report pulse`.

mod support;

use std::path::Path;

use carebot::store::Store;
use chrono::Duration;
use support::app::{AppOptions, TestApp, carebot, spawn_app_with, tuesday_morning};
use support::roster::{import_caregivers, import_caregivers_in, import_supervisors};
use support::{TestStore, app_tests};

const MARIA: &str = "+13125550123";
const ANA: &str = "+13125550124";
/// Maria's supervisor.
const DANA: &str = "+13125550142";
/// The Chicago North branch contact: the level after Dana.
const OMAR: &str = "+13125550143";
/// A supervisor in another branch: not in Maria's chain.
const LENA: &str = "+13125550144";
/// Program staff: the last level.
const PAT: &str = "+13125550145";
/// Everyone whose phone a transcript shows.
const PEOPLE: [(&str, &str); 6] = [
    ("Maria", MARIA),
    ("Ana", ANA),
    ("Dana", DANA),
    ("Omar", OMAR),
    ("Lena", LENA),
    ("Pat", PAT),
];

app_tests!(db:
    a_low_score_reaches_the_supervisor_and_ack_closes_the_loop,
    an_unacknowledged_high_alert_is_re_sent_and_raised_after_its_window,
    the_chain_ends_with_program_staff_and_a_bounded_number_of_reminders,
    a_reply_from_another_supervisor_is_refused,
    an_anonymous_answers_escalation_asks_the_caregiver_first,
    supervisors_get_one_digest_a_day_of_what_was_open,
    the_pulse_report_counts_people_asked_not_people_who_answered,
);

/// A server whose alerts go Dana -> Omar (Chicago North's contact) -> Pat (program staff),
/// with its clock on Tuesday morning and the roster imported.
async fn app(db: TestStore, extra_flows: &[&str]) -> TestApp {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let options = AppOptions {
        settings: vec![
            (
                "CAREBOT_BRANCH_CONTACTS",
                "Chicago North=S2; Peoria=S3".into(),
            ),
            ("CAREBOT_PROGRAM_STAFF", "P1".into()),
            ("CAREBOT_DIGEST_AT", "08:00".into()),
        ],
        extra_flows: extra_flows
            .iter()
            .map(|f| root.join("tests/fixtures/flows").join(f))
            .collect(),
        starts_at: Some(tuesday_morning()),
    };
    let app = spawn_app_with(db, options).await;
    let supervisors = [
        ("S1", "Dana Smith", DANA, "Chicago North"),
        ("S2", "Omar Reyes", OMAR, "Chicago North"),
        ("S3", "Lena Park", LENA, "Peoria"),
        ("P1", "Pat Kim", PAT, "Program"),
    ];
    import_supervisors(app.store(), &supervisors).await;
    let caregivers = [
        ("C1", "Maria", "Gonzalez", MARIA),
        ("C2", "Ana", "Lopez", ANA),
    ];
    import_caregivers(app.store(), &caregivers).await;
    app
}

/// The number an alert asks to be answered with ("ALERT 14 (high): …" -> 14).
fn alert_id(alert: &str) -> i64 {
    alert
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an alert: {alert:?}"))
}

/// `carebot export escalations` as (id, caregiver, supervisor, priority, reason, status,
/// acknowledged?, closed?).
async fn exported(app: &TestApp) -> Vec<Vec<String>> {
    let csv = carebot(&app.db.url, &["export", "escalations"]).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,caregiver,supervisor,priority,reason,status,raised_at,acknowledged_at,closed_at")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let mut row: Vec<String> = f[..6].iter().map(|s| (*s).to_owned()).collect();
            row.push(if f[7].is_empty() { "-" } else { "acked" }.into());
            row.push(if f[8].is_empty() { "-" } else { "closed" }.into());
            row
        })
        .collect()
}

fn row(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|s| (*s).to_owned()).collect()
}

async fn a_low_score_reaches_the_supervisor_and_ack_closes_the_loop(db: TestStore) {
    let app = app(db, &[]).await;
    app.start_all("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;

    let alert = app.text_and_wait(MARIA, "1", DANA, 1).await;
    let id = alert_id(&alert);
    assert_eq!(
        alert,
        format!(
            "ALERT {id} (high): Maria G., Chicago North, rated the work week 1/5. Reply ACK {id}, CALL {id}, or NOTE {id} <text>."
        )
    );
    assert_eq!(
        exported(&app).await,
        vec![row(&[
            &id.to_string(),
            "C1",
            "S1",
            "high",
            "low week score",
            "open",
            "-",
            "-"
        ])]
    );

    // Dana acknowledges from her phone: she is told it is hers, and Maria that it is in hand.
    let confirmation = app.text_and_wait(DANA, &format!("ack {id}"), DANA, 2).await;
    assert_eq!(
        confirmation,
        format!(
            "ALERT {id} is yours. Reply CALL {id} if you will call Maria G., DONE {id} when it is resolved."
        )
    );
    let maria = app.twilio.wait_for(MARIA, 3).await;
    assert!(maria[1].contains("6 months from now"), "{maria:?}");
    assert_eq!(
        maria[2],
        "Dana Smith got your message and will be in touch soon. Thank you for telling us, Maria."
    );
    assert_eq!(
        exported(&app).await,
        vec![row(&[
            &id.to_string(),
            "C1",
            "S1",
            "high",
            "low week score",
            "acknowledged",
            "acked",
            "-"
        ])]
    );

    // Acknowledged in time: when the window passes, nobody else hears of it.
    app.clock.advance(Duration::hours(3));
    assert_eq!(
        app.runner
            .run_due_escalations(app.clock.now())
            .await
            .unwrap(),
        0
    );

    let note = app
        .text_and_wait(DANA, &format!("NOTE {id} called her, she is OK"), DANA, 3)
        .await;
    assert_eq!(note, format!("Note added to ALERT {id}."));
    let done = app
        .text_and_wait(DANA, &format!("Done {id}"), DANA, 4)
        .await;
    assert_eq!(done, format!("ALERT {id} is closed. Thank you."));
    assert_eq!(
        exported(&app).await,
        vec![row(&[
            &id.to_string(),
            "C1",
            "S1",
            "high",
            "low week score",
            "done",
            "acked",
            "closed"
        ])]
    );
    let history: Vec<String> = app
        .store()
        .escalation_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.detail))
        .collect();
    assert_eq!(
        history,
        [
            "raised low week score",
            "alerted Dana Smith",
            "ack ",
            "caregiver_told pulse/taken_up",
            "note called her, she is OK",
            "done ",
        ]
    );
    assert!(app.twilio.delivered_to(OMAR).is_empty());
    assert!(app.twilio.delivered_to(PAT).is_empty());
    insta::assert_snapshot!(
        "a_low_score_reaches_the_supervisor_and_ack_closes_the_loop",
        app.transcript(&PEOPLE).await
    );
    app.stop().await;
}

async fn an_unacknowledged_high_alert_is_re_sent_and_raised_after_its_window(db: TestStore) {
    let app = app(db, &[]).await;
    app.start_all("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    let alert = app.text_and_wait(MARIA, "2", DANA, 1).await;
    let id = alert_id(&alert);

    // A minute before the two-hour window ends, nothing is due.
    app.clock.advance(Duration::minutes(119));
    assert_eq!(
        app.runner
            .run_due_escalations(app.clock.now())
            .await
            .unwrap(),
        0
    );
    assert!(app.twilio.delivered_to(OMAR).is_empty());

    // Two minutes later the scheduler re-sends it to Dana and raises it to Omar.
    app.clock.advance(Duration::minutes(2));
    let omar = app.twilio.wait_for(OMAR, 1).await;
    assert_eq!(
        omar[0],
        format!("Not acknowledged by Dana Smith in 2h, so it comes to you: {alert}")
    );
    let dana = app.twilio.wait_for(DANA, 2).await;
    assert_eq!(
        dana[1],
        format!("Reminder, still not acknowledged: {alert}")
    );
    assert!(
        app.twilio.delivered_to(PAT).is_empty(),
        "not yet the last level"
    );

    // Omar takes it: Dana hears it is in hand, Maria hears from Omar.
    let confirmation = app
        .text_and_wait(OMAR, &format!("CALL {id}"), OMAR, 2)
        .await;
    assert_eq!(
        confirmation,
        format!("ALERT {id}: you will call Maria G. Reply DONE {id} when it is resolved.")
    );
    let dana = app.twilio.wait_for(DANA, 3).await;
    assert_eq!(
        dana[2],
        format!("ALERT {id} (Maria G.): Omar Reyes replied CALL. Nothing more is needed from you.")
    );
    let maria = app.twilio.wait_for(MARIA, 3).await;
    assert_eq!(
        maria[2],
        "Omar Reyes got your message and will be in touch soon. Thank you for telling us, Maria."
    );
    assert_eq!(
        exported(&app).await,
        vec![row(&[
            &id.to_string(),
            "C1",
            "S2",
            "high",
            "low week score",
            "calling",
            "acked",
            "-"
        ])]
    );
    // Taken up: the clock stops.
    app.clock.advance(Duration::hours(4));
    assert_eq!(
        app.runner
            .run_due_escalations(app.clock.now())
            .await
            .unwrap(),
        0
    );
    assert!(app.twilio.delivered_to(PAT).is_empty());

    // Dana, who had it first, can still close it.
    let done = app
        .text_and_wait(DANA, &format!("DONE {id} all settled"), DANA, 4)
        .await;
    assert_eq!(done, format!("ALERT {id} is closed. Thank you."));
    insta::assert_snapshot!(
        "an_unacknowledged_high_alert_is_re_sent_and_raised_after_its_window",
        app.transcript(&PEOPLE).await
    );
    app.stop().await;
}

async fn the_chain_ends_with_program_staff_and_a_bounded_number_of_reminders(db: TestStore) {
    let app = app(db, &[]).await;
    app.start_all("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    let alert = app.text_and_wait(MARIA, "1", DANA, 1).await;

    // Every two hours: Omar, then Pat, then Pat reminded twice; then it is left to the digest.
    for (hours, omar, pat) in [(2, 1, 0), (4, 2, 1), (6, 2, 2), (8, 2, 3)] {
        app.clock.advance(Duration::hours(2) + Duration::seconds(1));
        app.twilio.wait_for(OMAR, omar).await;
        if pat > 0 {
            let got = app.twilio.wait_for(PAT, pat).await;
            assert!(got[pat - 1].ends_with(&alert), "after {hours}h: {got:?}");
        }
    }
    let pat = app.twilio.delivered_to(PAT);
    assert!(pat[0].starts_with("Not acknowledged by Omar Reyes in 2h, so it comes to you: "));
    assert!(pat[1].starts_with("Reminder, still not acknowledged: "));
    // Two hours on, the clock looks once more and stops; after that nothing is due.
    app.clock.advance(Duration::hours(2) + Duration::seconds(1));
    app.runner
        .run_due_escalations(app.clock.now())
        .await
        .unwrap();
    app.clock.advance(Duration::hours(2));
    assert_eq!(
        app.runner
            .run_due_escalations(app.clock.now())
            .await
            .unwrap(),
        0
    );
    assert_eq!(app.twilio.delivered_to(PAT).len(), 3);
    assert_eq!(app.twilio.delivered_to(OMAR).len(), 2);
    assert_eq!(app.twilio.delivered_to(DANA).len(), 2);
    insta::assert_snapshot!(
        "the_chain_ends_with_program_staff_and_a_bounded_number_of_reminders",
        app.transcript(&PEOPLE).await
    );
    app.stop().await;
}

async fn a_reply_from_another_supervisor_is_refused(db: TestStore) {
    let app = app(db, &[]).await;
    app.start_all("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    let id = alert_id(&app.text_and_wait(MARIA, "1", DANA, 1).await);

    // Lena supervises another branch; Pat is two levels above the alert.
    let lena = app.text_and_wait(LENA, &format!("ACK {id}"), LENA, 1).await;
    assert_eq!(
        lena,
        format!("ALERT {id} is not one of your alerts, so nothing changed.")
    );
    let pat = app.text_and_wait(PAT, &format!("done {id}"), PAT, 1).await;
    assert_eq!(
        pat,
        format!("ALERT {id} is not one of your alerts, so nothing changed.")
    );
    // Anything that is not a reply to an alert gets one line of help.
    let help = app.text_and_wait(LENA, "what is this?", LENA, 2).await;
    assert_eq!(
        help,
        "To answer an alert, reply with its number: ACK 14, CALL 14, NOTE 14 <text> or DONE 14. You have no open alerts."
    );
    let help = app.text_and_wait(DANA, "hi, which one?", DANA, 2).await;
    assert_eq!(
        help,
        format!(
            "To answer an alert, reply with its number: ACK {id}, CALL {id}, NOTE {id} <text> or DONE {id}. Your open alerts: {id}."
        )
    );
    assert_eq!(
        exported(&app).await,
        vec![row(&[
            &id.to_string(),
            "C1",
            "S1",
            "high",
            "low week score",
            "open",
            "-",
            "-"
        ])]
    );
    // Omar, the next level, may act before the window ends.
    let omar = app.text_and_wait(OMAR, &format!("Ack {id}"), OMAR, 1).await;
    assert!(omar.starts_with(&format!("ALERT {id} is yours.")), "{omar}");
    // And then Dana hears it is taken: her own ACK is too late.
    let dana = app.twilio.wait_for(DANA, 3).await;
    assert!(dana[2].contains("Omar Reyes replied ACK"), "{dana:?}");
    let late = app.text_and_wait(DANA, &format!("ACK {id}"), DANA, 4).await;
    assert_eq!(
        late,
        format!("ALERT {id} is already taken by Omar Reyes. Reply NOTE {id} <text> to add a note.")
    );
    insta::assert_snapshot!(
        "a_reply_from_another_supervisor_is_refused",
        app.transcript(&PEOPLE).await
    );
    app.stop().await;
}

async fn an_anonymous_answers_escalation_asks_the_caregiver_first(db: TestStore) {
    let app = app(db, &["anonymous-feedback.yaml"]).await;
    app.start_all("anonymous-feedback", &[MARIA, ANA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    app.twilio.wait_for(ANA, 1).await;

    // Maria's answer has worrying words: she is asked before anyone is told.
    let words = "My client's son yells at me and I feel unsafe";
    let asked = app.text_and_wait(MARIA, words, MARIA, 2).await;
    assert_eq!(
        asked,
        "Thank you for telling us. Your answer is anonymous. May we share it, with your name, with Dana Smith so they can help? Reply YES or NO."
    );
    assert_eq!(
        app.runner
            .run_due_escalations(app.clock.now())
            .await
            .unwrap(),
        0
    );
    assert!(app.store().escalations(None).await.unwrap().is_empty());
    assert!(app.twilio.delivered_to(DANA).is_empty());

    // Her yes names her to Dana.
    let alert = app.text_and_wait(MARIA, "Yes", DANA, 1).await;
    let id = alert_id(&alert);
    assert_eq!(
        alert,
        format!(
            "ALERT {id} (high): Maria G., Chicago North, wrote in Anonymous feedback: \"{words}\" Reply ACK {id}, CALL {id}, or NOTE {id} <text>."
        )
    );
    let maria = app.twilio.wait_for(MARIA, 3).await;
    assert!(maria[2].starts_with("Thank you, Maria!"), "{maria:?}");

    // Ana says no: nobody is told, and her answer stays anonymous.
    app.text_and_wait(ANA, "I want to quit, they harass me", ANA, 2)
        .await;
    let ana = app.text_and_wait(ANA, "no", ANA, 3).await;
    assert!(ana.starts_with("Thank you, Ana!"), "{ana}");
    assert_eq!(
        app.runner
            .run_due_escalations(app.clock.now())
            .await
            .unwrap(),
        0
    );
    assert_eq!(app.twilio.delivered_to(DANA).len(), 1);
    let escalations = app.store().escalations(None).await.unwrap();
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0].caregiver, "C1");

    // Anonymous answers are reported only in aggregate: not in the answers export.
    let export = carebot(
        &app.db.url,
        &["export", "answers", "--flow", "anonymous-feedback"],
    )
    .await;
    assert_eq!(export, "caregiver,flow,step,answer,answered_at\n");
    // Nor among the stored answers anything reads by caregiver: they are kept apart, unnamed
    // (tests/privacy.rs shows they cannot be tied back).
    let stored = app
        .store()
        .answers(Some("anonymous-feedback"), None)
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    insta::assert_snapshot!(
        "an_anonymous_answers_escalation_asks_the_caregiver_first",
        app.transcript(&PEOPLE).await
    );
    app.stop().await;
}

async fn supervisors_get_one_digest_a_day_of_what_was_open(db: TestStore) {
    let app = app(db, &[]).await;
    app.start_all("weekly-pulse", &[MARIA, ANA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    app.twilio.wait_for(ANA, 1).await;
    let first = alert_id(&app.text_and_wait(MARIA, "1", DANA, 1).await);
    let second = alert_id(&app.text_and_wait(ANA, "2", DANA, 2).await);
    app.text_and_wait(DANA, &format!("ACK {first}"), DANA, 3)
        .await;
    app.text_and_wait(DANA, &format!("CALL {second}"), DANA, 4)
        .await;
    // Raised after this morning's digest time: nothing until tomorrow's.
    assert_eq!(app.runner.send_digests(app.clock.now()).await.unwrap(), 1);
    assert_eq!(app.twilio.delivered_to(DANA).len(), 4);

    // Wednesday 08:00 in Chicago.
    app.clock.advance(Duration::hours(22));
    let digest = app.twilio.wait_for(DANA, 5).await;
    assert_eq!(
        digest[4],
        format!(
            "Your open alerts (2): {first} Maria G. (high, acknowledged, 22h); {second} Ana L. (high, calling, 22h). Reply DONE <number> when one is resolved."
        )
    );
    // Once a day.
    app.clock.advance(Duration::hours(3));
    assert_eq!(app.runner.send_digests(app.clock.now()).await.unwrap(), 0);
    app.text_and_wait(DANA, &format!("DONE {first}"), DANA, 6)
        .await;
    app.text_and_wait(DANA, &format!("DONE {second}"), DANA, 7)
        .await;
    // Nothing open: no digest on Thursday.
    app.clock.advance(Duration::hours(21));
    assert_eq!(app.runner.send_digests(app.clock.now()).await.unwrap(), 0);
    assert_eq!(app.twilio.delivered_to(DANA).len(), 7);
    app.stop().await;
}

async fn the_pulse_report_counts_people_asked_not_people_who_answered(db: TestStore) {
    let app = app(db, &[]).await;
    // Ten caregivers asked: eight in Chicago North, two in Peoria.
    let phones: Vec<String> = (0..10).map(|n| format!("+1312555{:04}", 160 + n)).collect();
    let names: Vec<(String, String)> = (0..10)
        .map(|n| (format!("R{n}"), format!("Number{n}")))
        .collect();
    let rows: Vec<_> = phones
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(n, (phone, (id, last)))| {
            let (branch, sup) = if n < 8 {
                ("Chicago North", "S1")
            } else {
                ("Peoria", "S3")
            };
            (
                id.as_str(),
                "Caregiver",
                last.as_str(),
                phone.as_str(),
                branch,
                sup,
            )
        })
        .collect();
    import_caregivers_in(app.store(), &rows).await;
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    app.start_all("weekly-pulse", &refs).await;
    for p in &refs {
        app.twilio.wait_for(p, 1).await;
    }
    // Five of the eight in Chicago North answer, one of the two in Peoria.
    let scores = [(0, "3"), (1, "4"), (2, "5"), (3, "4"), (4, "2"), (8, "1")];
    for (n, score) in scores {
        app.text_and_wait(refs[n], score, refs[n], 2).await;
    }
    let lena = app.twilio.wait_for(LENA, 1).await;
    app.text_and_wait(LENA, &format!("ack {}", alert_id(&lena[0])), LENA, 2)
        .await;

    let report = carebot(
        &app.db.url,
        &[
            "report",
            "pulse",
            "--by",
            "branch",
            "--weeks",
            "2",
            "--until",
            "2026-11-17",
        ],
    )
    .await;
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "Pulse weekly-pulse (score: week_score), 2 week(s) starting Monday 2026-11-09 to 2026-11-16, by branch",
            "Asked = caregivers the survey was started for; rate = responded / asked. Groups with fewer than 5 respondents are suppressed (-), and so is the next-smallest group when the total would give them away.",
            "",
        ]
    );
    // Columns are separated by two spaces or more; a group name has single spaces.
    let cells = |range: std::ops::Range<usize>| -> Vec<Vec<&str>> {
        lines[range]
            .iter()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .collect()
    };
    let header = [
        "week",
        "group",
        "asked",
        "responded",
        "rate",
        "mean",
        "change",
    ];
    assert_eq!(
        cells(3..8),
        [
            header.to_vec(),
            // No survey that week: shown, not left out.
            vec!["2026-11-09", "(all)", "0", "-", "-", "-", "-"],
            vec!["2026-11-16", "(all)", "10", "6", "60.0%", "3.17"],
            // Shown, Chicago North's 5 answers (mean 3.60) would give Peoria's lone score
            // away: 6 × 3.17 − 5 × 3.60 = 1. So it is suppressed with Peoria.
            vec!["2026-11-16", "Chicago North", "8", "-", "-", "-", "-"],
            // One respondent of two: suppressed.
            vec!["2026-11-16", "Peoria", "2", "-", "-", "-", "-"],
        ]
    );
    assert_eq!(
        lines[9],
        "Escalations raised by weekly-pulse (acknowledged in window: high 2h, normal 24h, low 3d)"
    );
    let header = [
        "week",
        "group",
        "raised",
        "ack in window",
        "median to ack",
        "closed",
    ];
    assert_eq!(
        cells(11..15),
        [
            header.to_vec(),
            vec!["2026-11-16", "(all)", "2", "1 (50%)", "0m", "0"],
            vec!["2026-11-16", "Chicago North", "1", "0 (0%)", "-", "0"],
            vec!["2026-11-16", "Peoria", "1", "1 (100%)", "0m", "0"],
        ]
    );
    app.stop().await;
}
