//! The promises carebot makes about caregivers' data, end to end over real HTTP (the real
//! server, a fake Twilio, SQLite always and PostgreSQL when CAREBOT_TEST_POSTGRES_URL is set):
//! an anonymous answer cannot be tied back to its caregiver by someone holding the database;
//! text past `CAREBOT_RETENTION_DAYS` is removed by the scheduler while scores and the consent
//! ledger stay; `carebot caregiver export` hands over what is held and `carebot caregiver
//! erase` removes it, keeps the totals, and remembers an opt-out only as a hash.

mod support;

use std::path::Path;
use std::process::ExitCode;

use carebot::model::Audience;
use carebot::store::Store;
use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use sqlx::Connection as _;
use support::app::{AppOptions, TestApp, spawn_app_with, tuesday_morning};
use support::roster::{import_caregivers, import_supervisors};
use support::{TestStore, app_tests, rows};

const MARIA: &str = "+13125550123";
const ANA: &str = "+13125550124";
const ROSA: &str = "+13125550125";
const DANA: &str = "+13125550142";
const OMAR: &str = "+13125550143";

app_tests!(db:
    an_anonymous_answer_cannot_be_tied_back_with_the_database_in_hand,
    retention_removes_old_words_and_keeps_scores_and_the_ledger,
    export_hands_over_everything_and_erase_removes_it_keeping_totals,
    erasing_someone_mid_conversation_stops_every_message_to_them,
    erase_empties_what_supervisors_were_told_about_her_and_takes_her_out_of_audiences,
    erase_leaves_alone_what_others_got_at_numbers_she_once_had,
    erase_cancels_what_is_queued_and_nothing_in_flight_goes_out_afterwards,
    erase_waits_for_a_transaction_writing_about_her_and_erases_what_it_wrote,
);

/// A server on Tuesday morning with Dana (supervisor) and Maria, Ana and Rosa (caregivers in
/// Chicago North, consent on file) imported.
async fn app(db: TestStore, settings: &[(&'static str, &str)]) -> TestApp {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let options = AppOptions {
        settings: settings
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect(),
        extra_flows: vec![root.join("tests/fixtures/flows/anonymous-feedback.yaml")],
        starts_at: Some(tuesday_morning()),
    };
    let app = spawn_app_with(db, options).await;
    let dana = ("S1", "Dana Smith", DANA, "Chicago North");
    import_supervisors(app.store(), &[dana]).await;
    import(
        &app,
        &[
            ("C1", "Maria", "Gonzalez", MARIA),
            ("C2", "Ana", "Lopez", ANA),
            ("C3", "Rosa", "Diaz", ROSA),
        ],
    )
    .await;
    app
}

/// Imports these caregivers (Chicago North, under Dana), every row accepted.
async fn import(app: &TestApp, rows: &[(&str, &str, &str, &str)]) {
    let summary = import_caregivers(app.store(), rows).await;
    assert!(summary.rejected.is_empty(), "{summary}");
}

/// Texts `body` from `from` and waits for a new message to `to` that contains `needle` (other
/// messages may arrive meanwhile: an alert taken up tells the caregiver so); returns it.
async fn text_and_expect(app: &TestApp, from: &str, body: &str, to: &str, needle: &str) -> String {
    let matching = || {
        app.twilio
            .delivered_to(to)
            .into_iter()
            .filter(|m| m.contains(needle))
            .collect::<Vec<_>>()
    };
    let before = matching().len();
    let sid = format!("SM{:032x}", rand::random::<u128>());
    let (status, _) = app.post_sms(from, body, &sid).await;
    assert_eq!(status, 200);
    for _ in 0..200 {
        if let Some(m) = matching().get(before) {
            return m.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "no message to {to} with {needle:?}: {:?}",
        app.twilio.delivered_to(to)
    );
}

/// What `carebot caregiver ARGS` prints and returns on the test's database, parsed as the
/// binary parses its command line.
async fn caregiver_cmd(app: &TestApp, args: &[&str]) -> (ExitCode, String, String) {
    let mut argv = vec!["carebot", "--database-url", &app.db.url, "caregiver"];
    argv.extend_from_slice(args);
    let cli = carebot::cli::Cli::try_parse_from(argv).unwrap();
    let carebot::cli::Command::Caregiver(cmd) = &cli.command else {
        unreachable!()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = carebot::cli::caregiver::run(app.store(), cmd, &mut out, &mut err)
        .await
        .unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Every text column of every table that can hold a person's words or numbers, as one list of
/// (table.column, value): what someone with a dump of the database can read.
async fn all_text(db: &TestStore) -> Vec<(String, String)> {
    let columns = [
        ("inbound_messages", "body"),
        ("inbound_messages", "address"),
        ("outbound_messages", "body"),
        ("outbound_messages", "address"),
        ("outbound_messages", "error"),
        ("conversations", "state"),
        ("conversations", "address"),
        ("answers", "raw"),
        ("answers", "value"),
        ("anonymous_answers", "value"),
        ("anonymous_pending", "value"),
        ("escalations", "answer"),
        ("escalations", "message"),
        ("escalations", "context"),
        ("escalation_events", "detail"),
        ("consent_ledger", "address"),
        ("consent_ledger", "detail"),
        ("subscriptions", "address"),
        ("caregivers", "external_id"),
        ("caregivers", "first_name"),
        ("caregivers", "last_name"),
        ("caregivers", "phone"),
        ("caregivers", "fields"),
        ("caregiver_links", "address"),
        ("stranger_replies", "address"),
    ];
    let mut out = Vec::new();
    for (table, column) in columns {
        for row in rows(db, &format!("SELECT {column} FROM {table}")).await {
            if let Some(v) = &row[0] {
                out.push((format!("{table}.{column}"), v.clone()));
            }
        }
    }
    out
}

/// Where `needle` appears in [`all_text`].
async fn found(db: &TestStore, needle: &str) -> Vec<String> {
    all_text(db)
        .await
        .into_iter()
        .filter(|(_, v)| v.contains(needle))
        .map(|(at, v)| format!("{at}: {v}"))
        .collect()
}

/// The SQLite file itself, every page checkpointed into it, as bytes.
async fn sqlite_file(db: &TestStore) -> Vec<u8> {
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let path = db.url.strip_prefix("sqlite://").unwrap();
    std::fs::read(path).unwrap()
}

fn occurrences(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

async fn an_anonymous_answer_cannot_be_tied_back_with_the_database_in_hand(db: TestStore) {
    let app = app(db, &[]).await;
    let report = app.start("anonymous-feedback", &[MARIA, ANA, ROSA]).await;
    assert_eq!(report.started, 3, "{report:?}");
    let words = [
        (MARIA, "more hours near Evanston please"),
        (ANA, "the new scheduling app is confusing"),
        (ROSA, "mileage pay arrives late every month"),
    ];
    for (phone, text) in words {
        app.twilio.wait_for(phone, 1).await;
        let thanks = app.text_and_wait(phone, text, phone, 2).await;
        assert!(thanks.starts_with("Thank you"), "{thanks}");
    }
    app.clock.advance(Duration::hours(1));

    // Each answer is held once, and nowhere else: not in the inbound message, the
    // conversation, an alert or the answers that name people. Until its day is over it waits
    // apart, and the report already counts it.
    for (_, text) in words {
        assert_eq!(
            found(&app.db, text).await,
            [format!("anonymous_pending.value: \"{text}\"")]
        );
    }
    // After the day, the sweep has moved the day's answers in one transaction, in random
    // order, with random ids: neither their place on disk nor (PostgreSQL) the transaction
    // that wrote them matches a caregiver's message any more.
    app.clock.advance(Duration::days(1));
    wait_until(|| async {
        rows(&app.db, "SELECT id FROM anonymous_pending")
            .await
            .is_empty()
    })
    .await;
    for (_, text) in words {
        assert_eq!(
            found(&app.db, text).await,
            [format!("anonymous_answers.value: \"{text}\"")]
        );
    }
    if !app.db.url.starts_with("sqlite:") {
        let xmins = rows(&app.db, "SELECT DISTINCT xmin::TEXT FROM anonymous_answers").await;
        assert_eq!(xmins.len(), 1, "one transaction wrote all three: {xmins:?}");
        let shared = rows(
            &app.db,
            "SELECT i.id::TEXT FROM inbound_messages i, anonymous_answers a \
             WHERE i.xmin::TEXT = a.xmin::TEXT \
             UNION ALL SELECT o.id::TEXT FROM outbound_messages o, anonymous_answers a \
             WHERE o.xmin::TEXT = a.xmin::TEXT \
             UNION ALL SELECT c.id::TEXT FROM conversations c, anonymous_answers a \
             WHERE c.xmin::TEXT = a.xmin::TEXT",
        )
        .await;
        assert!(
            shared.is_empty(),
            "written with a caregiver's rows: {shared:?}"
        );
    }
    // What each of those rows keeps: nothing that points at a person, a message or an instant.
    let columns = if app.db.url.starts_with("sqlite:") {
        rows(
            &app.db,
            "SELECT name FROM pragma_table_info('anonymous_answers') ORDER BY cid",
        )
        .await
    } else {
        rows(
            &app.db,
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_name = 'anonymous_answers' ORDER BY ordinal_position",
        )
        .await
    };
    let columns: Vec<String> = columns.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(
        columns,
        [
            "id",
            "flow_id",
            "step",
            "key",
            "value",
            "cohort_week",
            "cohort_branch",
            "cohort_state",
            "free_text"
        ]
    );
    let kept = rows(
        &app.db,
        "SELECT CAST(cohort_week AS TEXT), cohort_branch, id FROM anonymous_answers",
    )
    .await;
    assert_eq!(kept.len(), 3);
    for row in &kept {
        assert_eq!(
            row[0].as_deref(),
            Some("2026-11-16"),
            "the ISO week, a Monday"
        );
        assert_eq!(row[1].as_deref(), Some("Chicago North"));
        // Random ids: their order is not the order the answers came in.
        let id: i64 = row[2].as_deref().unwrap().parse().unwrap();
        assert!(
            id > 1 << 32,
            "an id that counts rows would replay their order: {id}"
        );
    }
    // The three inbound messages keep who sent them (a message is never lost), but not the
    // words or a time finer than the day: each of the three is as likely to be any answer.
    let inbound = rows(
        &app.db,
        "SELECT i.address, i.body FROM inbound_messages i \
         WHERE i.body = '[anonymous answer]' ORDER BY i.id",
    )
    .await;
    assert_eq!(inbound.len(), 3);
    let times = app
        .store()
        .export_caregiver(
            &carebot::privacy::Person::Phone(MARIA.into()),
            app.clock.now(),
        )
        .await
        .unwrap()
        .unwrap();
    let mine: Vec<&serde_json::Value> = times
        .messages
        .iter()
        .filter(|m| m["direction"] == "in")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["text"], "[anonymous answer]");
    assert_eq!(mine[0]["at"], "2026-11-17T00:00:00+00:00", "the day only");
    assert!(
        times.answers.is_empty(),
        "nothing links her to an answer: {:?}",
        times.answers
    );
    // The file itself: each answer's words are on disk exactly once (the anonymous row),
    // not left behind in the free space of a page that held them before.
    if app.db.url.starts_with("sqlite:") {
        let file = sqlite_file(&app.db).await;
        for (_, text) in words {
            assert_eq!(occurrences(&file, text), 1, "{text}");
        }
    }
    // Anonymous words have an end too: a year on (the default retention), only the marker.
    app.clock.advance(Duration::days(380));
    wait_until(|| async {
        let mut gone = true;
        for (_, text) in words {
            gone &= found(&app.db, text).await.is_empty();
        }
        gone
    })
    .await;
    let values = rows(&app.db, "SELECT value FROM anonymous_answers").await;
    assert_eq!(
        values,
        vec![vec![Some("\"[removed after 365 days]\"".to_owned())]; 3]
    );
    app.stop().await;
}

async fn retention_removes_old_words_and_keeps_scores_and_the_ledger(db: TestStore) {
    let app = app(
        db,
        &[
            ("CAREBOT_RETENTION_DAYS", "30"),
            ("CAREBOT_CONSENT_RETENTION_DAYS", "60"),
        ],
    )
    .await;
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    text_and_expect(&app, MARIA, "1", MARIA, "6 months from now").await;
    let alert = app.twilio.wait_for(DANA, 1).await[0].clone();
    let id: i64 = alert.split_whitespace().nth(1).unwrap().parse().unwrap();
    text_and_expect(&app, MARIA, "2", MARIA, "make your work better").await;
    text_and_expect(
        &app,
        MARIA,
        "a rota that changes less often",
        MARIA,
        "Thank you",
    )
    .await;
    let note = format!("NOTE {id} spoke with Maria about her rota");
    text_and_expect(&app, DANA, &note, DANA, "Note added").await;
    let done = format!("DONE {id} she is fine now");
    text_and_expect(&app, DANA, &done, DANA, "is closed").await;
    let marker = "[removed after 30 days]";
    assert!(found(&app.db, marker).await.is_empty());

    // A month and a day later the scheduler's sweep has removed the words, not the facts.
    app.clock.advance(Duration::days(31));
    let gone = [
        "rota that changes less often",
        "spoke with Maria",
        "she is fine now",
        "rated the work week",
    ];
    let left = || async {
        let mut all = Vec::new();
        for text in gone {
            all.extend(found(&app.db, text).await);
        }
        all
    };
    for _ in 0..150 {
        if left().await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(left().await.is_empty(), "{:?}", left().await);
    let removed = rows(&app.db, "SELECT body FROM inbound_messages ORDER BY id").await;
    assert_eq!(
        removed,
        vec![vec![Some(marker.to_owned())]; 5],
        "every old inbound message"
    );
    // What is written now is kept, through the next sweeps.
    app.text_and_wait(ANA, "hello, is this the agency?", ANA, 1)
        .await;
    app.clock.advance(Duration::minutes(11));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(found(&app.db, "hello, is this the agency?").await.len(), 1);
    // Scores and choices stay: they are what the reports are made of.
    let answers = rows(
        &app.db,
        "SELECT key, value, raw FROM answers WHERE caregiver_id = \
         (SELECT id FROM caregivers WHERE external_id = 'C1') ORDER BY id",
    )
    .await;
    let answers: Vec<Vec<&str>> = answers
        .iter()
        .map(|r| r.iter().map(|c| c.as_deref().unwrap()).collect())
        .collect();
    assert_eq!(
        answers,
        [
            vec!["week_score", "1", marker],
            vec!["stay", "\"unsure\"", marker],
            vec!["help", &format!("\"{marker}\""), marker],
        ]
    );
    // The escalation keeps its history (who acted and when), not what was said.
    let events = rows(
        &app.db,
        "SELECT action, detail FROM escalation_events ORDER BY id",
    )
    .await;
    assert!(
        events
            .iter()
            .any(|e| e[0].as_deref() == Some("note") && e[1].as_deref() == Some(marker)),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e[0].as_deref() == Some("done")),
        "{events:?}"
    );
    // The consent ledger is kept for its own 60 days, then goes; the consent in force stays.
    let ledger = || async {
        rows(&app.db, "SELECT status FROM consent_ledger")
            .await
            .len()
    };
    assert_eq!(ledger().await, 3, "the import opted the three in");
    // (The import wrote its rows on the wall clock, not the test's: move past both.)
    let later = Utc::now().max(app.clock.now()) + Duration::days(61);
    app.clock.advance(later - app.clock.now());
    wait_until(|| async { ledger().await == 0 }).await;
    let subs = rows(
        &app.db,
        "SELECT status FROM subscriptions WHERE address = '+13125550123'",
    )
    .await;
    assert_eq!(subs, [vec![Some("opted_in".to_owned())]]);
    app.stop().await;
}

/// Polls `check` (the scheduler ticks every second) for up to 15 s.
async fn wait_until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("not reached within 15 s");
}

async fn export_hands_over_everything_and_erase_removes_it_keeping_totals(db: TestStore) {
    let app = app(db, &[]).await;
    app.start("weekly-pulse", &[MARIA, ANA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    app.twilio.wait_for(ANA, 1).await;
    text_and_expect(&app, MARIA, "1", MARIA, "6 months from now").await;
    let alert = app.twilio.wait_for(DANA, 1).await[0].clone();
    let id: i64 = alert.split_whitespace().nth(1).unwrap().parse().unwrap();
    let note = format!("NOTE {id} called Maria, her car broke down");
    text_and_expect(&app, DANA, &note, DANA, "Note added").await;
    text_and_expect(&app, MARIA, "3", MARIA, "make your work better").await;
    text_and_expect(
        &app,
        MARIA,
        "a car allowance would help me",
        MARIA,
        "Thank you",
    )
    .await;
    text_and_expect(&app, ANA, "4", ANA, "6 months from now").await;
    // Then Maria says STOP.
    let bye = text_and_expect(&app, MARIA, "STOP", MARIA, "no more messages").await;
    assert!(bye.contains("no more messages"), "{bye}");
    let pulse_before = report(&app).await;

    // Export: by phone or by external id, the same person.
    let (code, json, _) = caregiver_cmd(&app, &["export", MARIA]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let export: serde_json::Value = serde_json::from_str(&json).unwrap();
    let (_, by_id, _) = caregiver_cmd(&app, &["export", "C1"]).await;
    let by_id: serde_json::Value = serde_json::from_str(&by_id).unwrap();
    assert_eq!(export["profile"], by_id["profile"]);
    assert_eq!(export["profile"]["first_name"], "Maria");
    assert_eq!(export["profile"]["phone"], MARIA);
    let texts: Vec<&str> = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "in")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["1", "3", "a car allowance would help me", "STOP"]);
    let answers: Vec<(&str, &serde_json::Value)> = export["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap(), &a["answer"]))
        .collect();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0], ("week_score", &serde_json::json!(1)));
    let history: Vec<&str> = export["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["opted_in", "opted_out"]);
    let escalation = &export["escalations"][0];
    assert_eq!(escalation["reason"], "low week score");
    assert!(
        escalation["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"] == "called Maria, her car broke down"),
        "{escalation}"
    );
    assert!(export["note"].as_str().unwrap().contains("anonymous"));

    // Without --confirm: refused, nothing changed.
    let (code, _, err) = caregiver_cmd(&app, &["erase", "C1"]).await;
    assert_eq!(code, ExitCode::from(2));
    assert!(err.contains("--confirm"), "{err}");
    // (Her message, the answer as typed and as stored, and her ended conversation's state.)
    assert_eq!(found(&app.db, "car allowance").await.len(), 4);
    // Nobody by that name: exit 1, nothing changed.
    let everything = all_text(&app.db).await;
    let (code, _, err) = caregiver_cmd(&app, &["erase", "+13125559999", "--confirm"]).await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(err.starts_with("no caregiver matches phone"), "{err}");
    assert_eq!(all_text(&app.db).await, everything);

    let (code, out, _) = caregiver_cmd(&app, &["erase", MARIA, "--confirm"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.starts_with("erased caregiver C1:"), "{out}");
    for trace in [
        MARIA,
        "Maria",
        "Gonzalez",
        "car allowance",
        "her car broke down",
        "Maria G.",
    ] {
        assert!(
            found(&app.db, trace).await.is_empty(),
            "{trace}: {:?}",
            found(&app.db, trace).await
        );
    }
    // Ana is untouched; the week's totals are the same.
    assert!(!found(&app.db, ANA).await.is_empty());
    let pulse_after = report(&app).await;
    assert_eq!(pulse_after["answers"], pulse_before["answers"]);
    assert_eq!(
        pulse_after["escalations"][0]["raised"],
        pulse_before["escalations"][0]["raised"]
    );
    // Her two open alerts were closed: nobody is left to follow up with.
    assert_eq!(pulse_after["escalations"][0]["closed"], 2);
    // Idempotent.
    let (code, out, _) = caregiver_cmd(&app, &["erase", "C1", "--confirm"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    // (The CLI runs on the wall clock, not the test's.)
    let today = Utc::now().date_naive();
    assert_eq!(
        out,
        format!("external id C1 was erased on {today}; nothing left to erase\n")
    );
    let (code, _, _) = caregiver_cmd(&app, &["export", MARIA]).await;
    assert_eq!(code, ExitCode::FAILURE);

    // She had said STOP: the same row imported again is opted out, and a survey skips her.
    import(&app, &[("C1", "Maria", "Gonzalez", MARIA)]).await;
    let report = app.start("weekly-pulse", &[MARIA]).await;
    assert_eq!(report.started, 0);
    assert_eq!(report.skipped.get("opted out"), Some(&1), "{report:?}");
    app.stop().await;
}

/// `report pulse` as JSON: the figures an erasure must not change.
async fn report(app: &TestApp) -> serde_json::Value {
    let options = carebot::report::PulseOptions {
        flow: "weekly-pulse".into(),
        key: "week_score".into(),
        by: None,
        weeks: 1,
        now: app.clock.now(),
    };
    let report = carebot::report::pulse(app.store(), &options, &Default::default())
        .await
        .unwrap();
    serde_json::to_value(report).unwrap()
}

async fn erasing_someone_mid_conversation_stops_every_message_to_them(db: TestStore) {
    let app = app(db, &[]).await;
    app.start("weekly-pulse", &[ROSA]).await;
    app.twilio.wait_for(ROSA, 1).await;
    let (code, out, _) = caregiver_cmd(&app, &["erase", "C3", "--confirm"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.contains("conversations ended: 1"), "{out}");
    // The question's reminder was due in 24 h and its expiry in 72 h: neither comes.
    app.clock.advance(Duration::hours(25));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    app.clock.advance(Duration::hours(48));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(app.twilio.delivered_to(ROSA).len(), 1);
    // Her reply, if she still writes, reaches no conversation and names nobody.
    let (status, _) = app.post_sms(ROSA, "hi?", "SMerased1").await;
    assert_eq!(status, 200);
    let conversations = rows(
        &app.db,
        "SELECT status, address FROM conversations ORDER BY id LIMIT 1",
    )
    .await;
    assert_eq!(
        conversations,
        [vec![
            Some("interrupted".to_owned()),
            Some("erased".to_owned())
        ]]
    );
    app.stop().await;
}

/// The roster id of the caregiver with `external_id`.
async fn caregiver_id(app: &TestApp, external_id: &str) -> i64 {
    let found = rows(
        &app.db,
        &format!("SELECT id FROM caregivers WHERE external_id = '{external_id}'"),
    )
    .await;
    found[0][0].as_deref().unwrap().parse().unwrap()
}

/// Waits (bounded) until `to` has been sent a message containing `needle`; returns it.
async fn delivered_with(app: &TestApp, to: &str, needle: &str) -> String {
    for _ in 0..200 {
        if let Some(m) = app
            .twilio
            .delivered_to(to)
            .into_iter()
            .find(|m| m.contains(needle))
        {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "no message to {to} with {needle:?}: {:?}",
        app.twilio.delivered_to(to)
    );
}

fn alert_number(alert: &str) -> i64 {
    alert.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The text column(s) of a query, every value present.
fn texts(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|r| r.into_iter().map(Option::unwrap).collect())
        .collect()
}

async fn erase_empties_what_supervisors_were_told_about_her_and_takes_her_out_of_audiences(
    db: TestStore,
) {
    let app = app(db, &[("CAREBOT_BRANCH_CONTACTS", "Chicago North=S2")]).await;
    let supervisors = [
        ("S1", "Dana Smith", DANA, "Chicago North"),
        ("S2", "Omar Reyes", OMAR, "Chicago North"),
    ];
    import_supervisors(app.store(), &supervisors).await;
    // A survey for Maria and Ana by number, with variables that name them.
    let vars = std::collections::BTreeMap::from([
        ("buddies".to_owned(), serde_json::json!(["C1", "C2"])),
        ("callback".to_owned(), serde_json::json!(MARIA)),
    ]);
    app.runner
        .start(
            "weekly-pulse",
            &Audience::Phones(vec![MARIA.into(), ANA.into()]),
            vars,
            app.clock.now(),
        )
        .await
        .unwrap();
    app.twilio.wait_for(MARIA, 1).await;
    app.twilio.wait_for(ANA, 1).await;
    let maria = alert_number(&text_and_expect(&app, MARIA, "1", DANA, "Maria G.").await);
    let ana = alert_number(&text_and_expect(&app, ANA, "2", DANA, "Ana L.").await);
    // Nobody acknowledges within two hours: Dana is reminded, Omar gets both.
    app.clock.advance(Duration::minutes(121));
    delivered_with(
        &app,
        DANA,
        &format!("Reminder, still not acknowledged: ALERT {maria}"),
    )
    .await;
    delivered_with(&app, OMAR, &format!("so it comes to you: ALERT {maria}")).await;
    delivered_with(&app, OMAR, &format!("so it comes to you: ALERT {ana}")).await;
    // Omar takes both up; Dana hears each is in hand.
    text_and_expect(&app, OMAR, &format!("ACK {maria}"), OMAR, "is yours").await;
    delivered_with(&app, DANA, &format!("ALERT {maria} (Maria G.)")).await;
    text_and_expect(&app, OMAR, &format!("CALL {ana}"), OMAR, "you will call").await;
    delivered_with(&app, DANA, &format!("ALERT {ana} (Ana L.)")).await;
    // A shift offered to the two of them by number: Maria takes it.
    let args = carebot::cli::shifts::OfferArgs {
        client_ref: "CL-7".into(),
        start: "2026-11-20 08:00".into(),
        end: "12:00".into(),
        location: "Evanston, IL".into(),
        to: format!("phone:{MARIA},{ANA}"),
        supervisor: Some("S1".into()),
        ..Default::default()
    };
    app.runner
        .offer_shift(&args.request().unwrap(), app.clock.now())
        .await
        .unwrap();
    delivered_with(&app, MARIA, "open shift").await;
    text_and_expect(&app, MARIA, "YES", MARIA, "It's yours").await;
    delivered_with(&app, DANA, "Shift filled: Maria G. (C1)").await;
    // Wednesday 08:05 in Chicago: both get the digest of what is open.
    let wednesday = DateTime::parse_from_rfc3339("2026-11-18T14:05:00Z")
        .unwrap()
        .to_utc();
    app.clock.advance(wednesday - app.clock.now());
    let digest = delivered_with(&app, DANA, "Your open alerts").await;
    assert!(
        digest.contains("Maria G.") && digest.contains("Ana L."),
        "{digest}"
    );
    delivered_with(&app, OMAR, "Your open alerts").await;

    let to_supervisors = format!(
        "SELECT id, body FROM outbound_messages WHERE address IN ('{DANA}', '{OMAR}') ORDER BY id"
    );
    let before = texts(rows(&app.db, &to_supervisors).await);
    let (code, out, _) = caregiver_cmd(&app, &["erase", "C1", "--confirm"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("audiences that listed them: 2"), "{out}");

    // Every text to a supervisor that named her is emptied: the alert, its reminder and
    // re-escalation, Omar's confirmation, the notice to Dana, the shift-filled alert and both
    // digests (which named Ana too: emptied whole). The texts about Ana alone are unchanged.
    let after = texts(rows(&app.db, &to_supervisors).await);
    assert_eq!(after.len(), before.len());
    let mut emptied = 0;
    for (was, is) in before.iter().zip(&after) {
        if was[1].contains("Maria G.") {
            assert_eq!(is[1], "[erased]", "was: {}", was[1]);
            emptied += 1;
        } else {
            assert_eq!(is[1], was[1]);
        }
    }
    assert_eq!(emptied, 8, "{before:?}");
    assert!(
        after.iter().any(|r| r[1].starts_with(&format!(
            "Not acknowledged by Dana Smith in 2h, so it comes to you: ALERT {ana}"
        ))),
        "{after:?}"
    );
    // Omar's reply about her, not the one about Ana.
    let replies = texts(
        rows(
            &app.db,
            &format!("SELECT body FROM inbound_messages WHERE address = '{OMAR}' ORDER BY id"),
        )
        .await,
    );
    assert_eq!(
        replies,
        [vec!["[erased]".to_owned()], vec![format!("CALL {ana}")]]
    );
    // The survey's audience and variables and the offer's audience keep Ana only.
    let start = texts(rows(&app.db, "SELECT audience, vars FROM flow_starts").await);
    assert_eq!(
        start,
        [vec![
            format!("phone:{ANA}"),
            r#"{"buddies":["C2"],"callback":"[erased]"}"#.to_owned()
        ]]
    );
    let offer = texts(rows(&app.db, "SELECT audience FROM shift_offers").await);
    assert_eq!(offer, [vec![format!("phone:{ANA}")]]);
    assert!(found(&app.db, "Maria G.").await.is_empty());
    app.stop().await;
}

async fn erase_leaves_alone_what_others_got_at_numbers_she_once_had(db: TestStore) {
    const SECOND: &str = "+13125550126";
    const THIRD: &str = "+13125550127";
    let app = app(db, &[]).await;
    let maria_id = caregiver_id(&app, "C1").await;
    // Maria answers a survey from three numbers in turn.
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    text_and_expect(&app, MARIA, "4", MARIA, "6 months from now").await;
    import(&app, &[("C1", "Maria", "Gonzalez", SECOND)]).await;
    text_and_expect(&app, SECOND, "2", SECOND, "make your work better").await;
    import(&app, &[("C1", "Maria", "Gonzalez", THIRD)]).await;
    text_and_expect(&app, THIRD, "more hours please", THIRD, "Thank you").await;
    // Her first number is Lucia's now, and her second a new supervisor's.
    import(&app, &[("C4", "Lucia", "Perez", MARIA)]).await;
    let supervisors = [
        ("S1", "Dana Smith", DANA, "Chicago North"),
        ("S3", "Sam Lee", SECOND, "Chicago North"),
    ];
    import_supervisors(app.store(), &supervisors).await;
    let (mark,): (i64,) = {
        let max = rows(&app.db, "SELECT MAX(id) FROM outbound_messages").await;
        (max[0][0].as_deref().unwrap().parse().unwrap(),)
    };
    app.start("weekly-pulse", &[MARIA]).await;
    delivered_with(&app, MARIA, "Hi Lucia").await;
    text_and_expect(&app, MARIA, "5", MARIA, "6 months from now").await;
    text_and_expect(&app, SECOND, "hello", SECOND, "To answer an alert").await;
    let lucia_id = caregiver_id(&app, "C4").await;
    let at = |address: &str| {
        format!(
            "SELECT body FROM outbound_messages WHERE address = '{address}' AND id > {mark} \
             ORDER BY id"
        )
    };
    let lucia_sent = texts(rows(&app.db, &at(MARIA)).await);
    assert_eq!(lucia_sent.len(), 2, "{lucia_sent:?}");
    let sam_sent = texts(rows(&app.db, &at(SECOND)).await);
    assert_eq!(sam_sent.len(), 1, "{sam_sent:?}");

    // Her export holds what she wrote from each number, and nothing of Lucia's or Sam's.
    let (code, out, _) = caregiver_cmd(&app, &["export", THIRD]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let export: serde_json::Value = serde_json::from_str(&out).unwrap();
    let texts_in: Vec<&str> = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "in")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts_in, ["4", "2", "more hours please"]);
    let to_others = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let text = m["text"].as_str().unwrap();
            text.contains("Lucia") || text.contains("To answer an alert")
        })
        .count();
    assert_eq!(to_others, 0, "{out}");

    let (code, out, _) = caregiver_cmd(&app, &["erase", THIRD, "--confirm"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");

    // Her words are gone, at every number.
    let hers = texts(
        rows(
            &app.db,
            &format!("SELECT body, address FROM inbound_messages WHERE caregiver_id = {maria_id}"),
        )
        .await,
    );
    assert_eq!(hers.len(), 3);
    assert!(
        hers.iter().all(|r| r == &["[erased]", "erased"]),
        "{hers:?}"
    );
    assert!(found(&app.db, "more hours please").await.is_empty());
    // Lucia's messages at the number Maria once had, and her consent there, are hers still.
    assert_eq!(texts(rows(&app.db, &at(MARIA)).await), lucia_sent);
    let lucia_wrote = texts(
        rows(
            &app.db,
            &format!("SELECT body, caregiver_id FROM inbound_messages WHERE address = '{MARIA}'"),
        )
        .await,
    );
    assert_eq!(lucia_wrote, [vec!["5".to_owned(), lucia_id.to_string()]]);
    let consent = texts(
        rows(
            &app.db,
            &format!("SELECT status FROM subscriptions WHERE address = '{MARIA}'"),
        )
        .await,
    );
    assert_eq!(consent, [vec!["opted_in".to_owned()]]);
    // (The ledger rows of Maria's own consent there keep what happened, under a hash.)
    let ledger = texts(
        rows(
            &app.db,
            &format!("SELECT address FROM consent_ledger WHERE caregiver_id = {maria_id}"),
        )
        .await,
    );
    assert!(!ledger.is_empty());
    assert!(
        ledger.iter().all(|r| r[0].starts_with("sha256:")),
        "{ledger:?}"
    );
    // Sam's, at her second number, too.
    assert_eq!(texts(rows(&app.db, &at(SECOND)).await), sam_sent);
    let sam_wrote = texts(
        rows(
            &app.db,
            &format!("SELECT body FROM inbound_messages WHERE address = '{SECOND}'"),
        )
        .await,
    );
    assert_eq!(sam_wrote, [vec!["hello".to_owned()]]);
    app.stop().await;
}

async fn erase_cancels_what_is_queued_and_nothing_in_flight_goes_out_afterwards(db: TestStore) {
    // Caregivers are texted 08:00-12:00, supervisors 18:00-20:00 (an alert of normal
    // priority waits for that).
    let app = app(
        db,
        &[
            ("CAREBOT_SEND_WINDOW", "08:00-12:00"),
            ("CAREBOT_SUPERVISOR_WINDOW", "18:00-20:00"),
        ],
    )
    .await;
    let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
    app.start("weekly-pulse", &[MARIA]).await;
    app.twilio.wait_for(MARIA, 1).await;
    text_and_expect(&app, MARIA, "3", MARIA, "6 months from now").await;
    // "No" to staying: an alert for Dana, held until 18:00.
    text_and_expect(&app, MARIA, "no", MARIA, "make your work better").await;
    let queued_to = |to: &'static str| {
        let db = &app.db;
        async move {
            texts(
                rows(
                    db,
                    &format!(
                        "SELECT id, body FROM outbound_messages \
                         WHERE address = '{to}' AND status = 'queued' ORDER BY id"
                    ),
                )
                .await,
            )
        }
    };
    wait_until(|| async { queued_to(DANA).await.len() == 1 }).await;
    let alert: i64 = queued_to(DANA).await[0][0].parse().unwrap();
    // At 12:30 a shift is offered to her: its text waits for tomorrow 08:00.
    app.clock
        .advance(at("2026-11-17T18:30:00Z") - app.clock.now());
    let args = carebot::cli::shifts::OfferArgs {
        client_ref: "CL-9".into(),
        start: "2026-11-20 08:00".into(),
        end: "12:00".into(),
        location: "Evanston, IL".into(),
        to: format!("phone:{MARIA}"),
        ..Default::default()
    };
    let report = app
        .runner
        .offer_shift(&args.request().unwrap(), app.clock.now())
        .await
        .unwrap();
    assert_eq!(report.wave.sent, 1, "{:?}", report.wave);
    let offer_text = queued_to(MARIA).await;
    assert_eq!(offer_text.len(), 1, "{offer_text:?}");
    // A dispatcher claims Dana's alert at 18:00 and is calling Twilio when the erase runs.
    let claimed = app
        .store()
        .claim_outbound(
            carebot::domain::Channel::Sms,
            at("2026-11-18T00:00:00Z"),
            500,
        )
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [alert],
        "{claimed:?}"
    );
    let sent_before = app.twilio.received().len();

    let (code, out, _) = caregiver_cmd(&app, &["erase", "C1", "--confirm"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("conversations ended: 1, queued messages cancelled: 1"),
        "{out}"
    );
    // The waiting survey ended first; the offer text will never be sent; the alert in the
    // dispatcher's hands lost its text (the dispatcher holds its own copy).
    let conversation = texts(rows(&app.db, "SELECT status FROM conversations").await);
    assert_eq!(conversation, [vec!["interrupted".to_owned()]]);
    let row = |id: &str| {
        let db = &app.db;
        let sql = format!("SELECT status, body, address FROM outbound_messages WHERE id = {id}");
        async move { texts(rows(db, &sql).await).remove(0) }
    };
    assert_eq!(
        row(&offer_text[0][0]).await,
        ["suppressed", "[erased]", "erased"]
    );
    assert_eq!(row(&alert.to_string()).await, ["sending", "[erased]", DANA]);
    // Twilio answered 503: the dispatcher puts it back for a retry, and at 18:05 the next
    // claim finds nothing to say.
    app.store()
        .mark_outbound_retry(alert, at("2026-11-18T00:00:00Z"), "HTTP 503")
        .await
        .unwrap();
    app.clock
        .advance(at("2026-11-18T00:05:00Z") - app.clock.now());
    wait_until(|| async { row(&alert.to_string()).await[0] == "suppressed" }).await;
    // Nor does anything reach her when her window opens on Wednesday.
    app.clock
        .advance(at("2026-11-18T14:05:00Z") - app.clock.now());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after: Vec<_> = app.twilio.received()[sent_before..]
        .iter()
        .map(|r| (r.to.clone(), r.body.clone()))
        .collect();
    assert!(after.is_empty(), "sent after the erase: {after:?}");
    app.stop().await;
}

async fn erase_waits_for_a_transaction_writing_about_her_and_erases_what_it_wrote(db: TestStore) {
    use sqlx::Executor as _;
    let app = app(db, &[]).await;
    let id = caregiver_id(&app, "C1").await;
    let sqlite = app.db.url.starts_with("sqlite:");
    let (now, tomorrow) = if sqlite {
        (
            "'2026-11-17T16:00:00.000000Z'",
            "'2026-11-18T14:00:00.000000Z'",
        )
    } else {
        ("'2026-11-17T16:00:00Z'", "'2026-11-18T14:00:00Z'")
    };
    // What an inbound message of hers writes, in a transaction still open when the erase
    // starts: her words, and a text queued for her.
    let writes = [
        format!(
            "INSERT INTO inbound_messages (channel, external_id, address, caregiver_id, body, \
             received_at) VALUES ('sms', 'SMinflight', '{MARIA}', {id}, 'my knee hurts again', \
             {now})"
        ),
        format!(
            "INSERT INTO outbound_messages (channel, address, caregiver_id, kind, body, encoding, \
             segments, status, not_before, created_at, updated_at) VALUES ('sms', '{MARIA}', \
             {id}, 'program', 'Maria, about your knee: call the nurse line', 'gsm7', 1, \
             'queued', {tomorrow}, {now}, {now})"
        ),
    ];
    let erase = async {
        // Started once the other transaction holds its locks.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        caregiver_cmd(&app, &["erase", "C1", "--confirm"]).await
    };
    let ((code, out, _), ()) = if sqlite {
        let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        conn.execute("BEGIN IMMEDIATE").await.unwrap();
        for sql in &writes {
            conn.execute(sqlx::AssertSqlSafe(sql.clone()))
                .await
                .unwrap();
        }
        tokio::join!(erase, async {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            conn.execute("COMMIT").await.unwrap();
        })
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
        conn.execute("BEGIN").await.unwrap();
        for sql in &writes {
            conn.execute(sqlx::AssertSqlSafe(sql.clone()))
                .await
                .unwrap();
        }
        tokio::join!(erase, async {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            conn.execute("COMMIT").await.unwrap();
        })
    };
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("queued messages cancelled: 1"), "{out}");
    assert!(
        found(&app.db, "knee").await.is_empty(),
        "{:?}",
        found(&app.db, "knee").await
    );
    let queued = texts(
        rows(
            &app.db,
            &format!("SELECT status FROM outbound_messages WHERE caregiver_id = {id}"),
        )
        .await,
    );
    assert!(queued.iter().all(|r| r[0] != "queued"), "{queued:?}");
    app.stop().await;
}
