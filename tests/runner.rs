//! The runner against a real store (SQLite always, PostgreSQL when configured): consent before
//! flows, the welcome flow's opt-in, quiet hours, what a start skips and why, and conversations
//! that keep the flow version they started on after the file changes.

mod support;

use std::path::Path;
use std::sync::Arc;

use carebot::catalog::Catalog;
use carebot::config::RunnerSettings;
use carebot::domain::{Address, Channel};
use carebot::model::{Audience, CaregiverRecord, Inbound, InboundOutcome};
use carebot::runner::Runner;
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Utc};
use support::store_tests;

store_tests!(
    a_conversation_keeps_the_flow_version_it_started_on,
    without_consent_only_the_welcome_flow_starts_and_yes_opts_in,
    program_messages_wait_for_the_caregivers_morning_but_replies_do_not,
    a_start_skips_people_already_in_a_conversation_unless_the_flow_interrupts,
    every_consent_change_is_in_the_ledger,
);

const MARIA: &str = "+13125550123";

fn shipped() -> Arc<Catalog> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Arc::new(
        Catalog::load(&root.join("flows"), &root.join("templates"))
            .unwrap()
            .0,
    )
}

fn catalog_with(flow_yaml: &str) -> (tempfile::TempDir, Arc<Catalog>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("custom.yaml"), flow_yaml).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = Catalog::load(dir.path(), &root.join("templates"))
        .unwrap()
        .0;
    (dir, Arc::new(catalog))
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn maria(store: &AnyStore, consent: bool) {
    let rec = CaregiverRecord {
        external_id: "C1".into(),
        first_name: "Maria".into(),
        last_name: "Gonzalez".into(),
        phone: MARIA.into(),
        language: carebot::domain::Lang::En,
        timezone: "America/Chicago".into(),
        branch: "Chicago North".into(),
        supervisor_id: None,
        groups: vec!["pulse".into()],
        consent_at: consent.then(|| chrono::NaiveDate::from_ymd_opt(2026, 1, 15).unwrap()),
    };
    store.upsert_caregivers(&[rec]).await.unwrap();
}

fn sms() -> Address {
    Address::new(Channel::Sms, MARIA)
}

fn reply(text: &str, id: &str, at: DateTime<Utc>) -> Inbound {
    Inbound {
        address: sms(),
        text: text.into(),
        external_id: id.into(),
        received_at: at,
    }
}

async fn texts(store: &AnyStore) -> Vec<String> {
    store
        .outbound_to(&sms())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, b)| b)
        .collect()
}

const V1: &str = "id: custom\nname: Custom\nversion: 1\nsteps:\n  - id: score\n    ask: pulse/score\n    expect: { scale: { min: 1, max: 5 } }\n  - id: thanks\n    send: pulse/thanks\n";
const V2: &str = "id: custom\nname: Custom\nversion: 2\nsteps:\n  - id: score\n    ask: pulse/score\n    expect: { scale: { min: 1, max: 5 } }\n  - id: stay\n    ask: pulse/stay\n    expect: yes_no\n";

async fn a_conversation_keeps_the_flow_version_it_started_on(store: AnyStore) {
    maria(&store, true).await;
    let now = utc("2026-11-20T16:00:00Z");
    let (_d1, v1) = catalog_with(V1);
    let old = Runner::new(store.clone(), v1, RunnerSettings::default())
        .await
        .unwrap();
    let r = old
        .start(
            "custom",
            &Audience::Phones(vec![MARIA.into()]),
            Default::default(),
            now,
        )
        .await
        .unwrap();
    assert_eq!(r.started, 1);
    // The file changes and the server restarts on version 2.
    let (_d2, v2) = catalog_with(V2);
    let new = Runner::new(store.clone(), v2, RunnerSettings::default())
        .await
        .unwrap();
    new.handle_inbound(&reply("4", "in-1", now)).await.unwrap();
    let got = texts(&store).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[1].starts_with("Thank you, Maria!"),
        "version 1's next step, not version 2's: {got:?}"
    );
    // A conversation started now runs version 2.
    new.start(
        "custom",
        &Audience::Phones(vec![MARIA.into()]),
        Default::default(),
        now,
    )
    .await
    .unwrap();
    new.handle_inbound(&reply("4", "in-2", now)).await.unwrap();
    let got = texts(&store).await;
    assert!(got[3].contains("6 months from now"), "{got:?}");
}

async fn without_consent_only_the_welcome_flow_starts_and_yes_opts_in(store: AnyStore) {
    maria(&store, false).await;
    let now = utc("2026-11-20T16:00:00Z");
    let runner = Runner::new(store.clone(), shipped(), RunnerSettings::default())
        .await
        .unwrap();
    let to = Audience::Phones(vec![MARIA.into()]);
    let r = runner
        .start("weekly-pulse", &to, Default::default(), now)
        .await
        .unwrap();
    assert_eq!(
        (r.started, r.skipped.get("no consent").copied()),
        (0, Some(1))
    );
    assert!(texts(&store).await.is_empty());
    let r = runner
        .start("welcome", &to, Default::default(), now)
        .await
        .unwrap();
    assert_eq!(r.started, 1);
    runner
        .handle_inbound(&reply("Yes", "in-1", now))
        .await
        .unwrap();
    let ledger = store.consent_ledger(&sms()).await.unwrap();
    assert_eq!(
        ledger.last().map(|l| (l.0.as_str(), l.1.as_str())),
        Some(("opted_in", "flow"))
    );
    let r = runner
        .start("weekly-pulse", &to, Default::default(), now)
        .await
        .unwrap();
    assert_eq!(r.started, 1);
}

async fn program_messages_wait_for_the_caregivers_morning_but_replies_do_not(store: AnyStore) {
    maria(&store, true).await;
    // 22:00 in Chicago.
    let late = utc("2026-11-21T04:00:00Z");
    let runner = Runner::new(store.clone(), shipped(), RunnerSettings::default())
        .await
        .unwrap();
    runner
        .start(
            "weekly-pulse",
            &Audience::Phones(vec![MARIA.into()]),
            Default::default(),
            late,
        )
        .await
        .unwrap();
    // Nothing is due before 08:00 Chicago (14:00 UTC).
    assert!(
        store
            .claim_outbound(Channel::Sms, utc("2026-11-21T13:59:00Z"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store
        .claim_outbound(Channel::Sms, utc("2026-11-21T14:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    // She answers at 23:00 her time: the next question is a reply, not held.
    runner
        .handle_inbound(&reply("4", "in-1", utc("2026-11-21T05:00:00Z")))
        .await
        .unwrap();
    let due = store
        .claim_outbound(Channel::Sms, utc("2026-11-21T05:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].body.contains("6 months from now"));
}

async fn a_start_skips_people_already_in_a_conversation_unless_the_flow_interrupts(
    store: AnyStore,
) {
    maria(&store, true).await;
    let now = utc("2026-11-20T16:00:00Z");
    let runner = Runner::new(store.clone(), shipped(), RunnerSettings::default())
        .await
        .unwrap();
    let to = Audience::Phones(vec![MARIA.into()]);
    assert_eq!(
        runner
            .start("weekly-pulse", &to, Default::default(), now)
            .await
            .unwrap()
            .started,
        1
    );
    let again = runner
        .start("weekly-pulse", &to, Default::default(), now)
        .await
        .unwrap();
    assert_eq!(again.skipped.get("already in a conversation"), Some(&1));
    let (_d, interrupting) =
        catalog_with(&V1.replace("version: 1\n", "version: 1\nwhen_busy: interrupt\n"));
    let other = Runner::new(store.clone(), interrupting, RunnerSettings::default())
        .await
        .unwrap();
    assert_eq!(
        other
            .start("custom", &to, Default::default(), now)
            .await
            .unwrap()
            .started,
        1
    );
    // Her next reply answers the new flow.
    other
        .handle_inbound(&reply("5", "in-1", now))
        .await
        .unwrap();
    assert!(
        texts(&store)
            .await
            .last()
            .unwrap()
            .starts_with("Thank you, Maria!")
    );
}

async fn every_consent_change_is_in_the_ledger(store: AnyStore) {
    maria(&store, true).await;
    let now = utc("2026-11-20T16:00:00Z");
    let runner = Runner::new(store.clone(), shipped(), RunnerSettings::default())
        .await
        .unwrap();
    for (i, text) in ["STOP", "stop", "START", "please cancel", "YES"]
        .iter()
        .enumerate()
    {
        let outcome = runner
            .handle_inbound(&reply(text, &format!("in-{i}"), now))
            .await
            .unwrap();
        assert_eq!(outcome, InboundOutcome::Processed);
    }
    let ledger: Vec<(String, String, String)> = store
        .consent_ledger(&sms())
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.0, l.1, l.2))
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        ledger,
        vec![
            s("opted_in", "import", ledger[0].2.as_str()),
            s("opted_out", "keyword", "STOP"),
            s("opted_in", "keyword", "START"),
            // Plain words, not a keyword: the ledger says which (issue 16).
            s("opted_out", "request", "please cancel"),
            s("opted_in", "keyword", "YES"),
        ]
    );
    // One confirmation per change; the repeated STOP got none.
    assert_eq!(texts(&store).await.len(), 4);
}
