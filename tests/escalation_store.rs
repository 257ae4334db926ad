//! The store's side of escalations, on SQLite always and PostgreSQL when
//! `CAREBOT_TEST_POSTGRES_URL` is set: the follow-up clock's due list and its one-at-a-time
//! handling, routing chains, what a supervisor's desk holds, digests, streamed exports, the
//! rows `report pulse` reads, and what an anonymous answer keeps.

mod support;

use std::sync::Mutex;

use carebot::domain::{Address, Channel, Priority};
use carebot::model::{
    ConvRef, Desk, EscalationAction, EscalationSnapshot, EscalationStatus, Plan, PulseRow,
    Snapshot, Write,
};
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::json;
use sqlx::Connection as _;
use support::{at, caregiver, inbound, sms, supervisor};

support::store_tests! {
    a_raised_escalation_is_due_at_once_and_handled_once,
    a_desk_holds_alerts_routed_to_its_supervisor_or_the_level_below,
    a_digest_goes_once_a_day_to_supervisors_with_open_alerts,
    exports_stream_every_row_and_leave_anonymous_answers_out,
    pulse_rows_place_answers_by_the_week_their_survey_started,
}

/// Supervisors s1..s3 (phones 9001..9003), caregiver c1 (phone 1, branch north, supervisor s1,
/// state IL) in a conversation of flow `pulse`; returns the conversation id.
async fn setup(store: &AnyStore) -> i64 {
    store
        .upsert_supervisors(&[
            supervisor("s1", 1),
            supervisor("s2", 2),
            supervisor("s3", 3),
        ])
        .await
        .unwrap();
    let mut c1 = caregiver("c1", 1);
    c1.supervisor_id = Some("s1".into());
    c1.consent_at = Some(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap());
    store.upsert_caregivers(&[c1]).await.unwrap();
    let rev = store
        .register_flow_revision("pulse", 1, "id: pulse\n")
        .await
        .unwrap();
    store
        .handle_addresses(&[sms(1)], at(8), &|_: &Snapshot| {
            Ok(Plan {
                writes: vec![
                    Write::CreateConversation {
                        flow_id: "pulse".into(),
                        flow_rev: rev,
                        state: json!({}),
                        wake_at: None,
                    },
                    Write::CaregiverFields {
                        fields: [("state".to_owned(), json!("IL"))].into(),
                        tags: vec![],
                    },
                ],
            })
        })
        .await
        .unwrap();
    let seen = Mutex::new(0);
    store
        .handle_addresses(&[sms(1)], at(8), &|s: &Snapshot| {
            *seen.lock().unwrap() = s.conversation.as_ref().unwrap().id;
            Ok(Plan::default())
        })
        .await
        .unwrap();
    seen.into_inner().unwrap()
}

fn escalation(conversation: i64, reason: &str) -> Write {
    Write::Escalation {
        conversation: ConvRef::Existing(conversation),
        flow_id: "pulse".into(),
        step: "score".into(),
        priority: Priority::High,
        reason: reason.into(),
        answer: "1".into(),
        message: String::new(),
        template: "alerts/low_score".into(),
        context: json!({"caregiver": {"first_name": "Ana"}}),
        when_taken_up: Some("pulse/taken_up".into()),
        consented: false,
    }
}

/// Caregiver c1 texts `text` and the plan raises an escalation; returns its id.
async fn raise(store: &AnyStore, conversation: i64, sid: &str, reason: &str) -> i64 {
    store
        .handle_inbound(&inbound(&sms(1), "1", sid, at(10)), &|_: &Snapshot| {
            Ok(Plan {
                writes: vec![escalation(conversation, reason)],
            })
        })
        .await
        .unwrap();
    *store
        .due_escalations(at(10), 10)
        .await
        .unwrap()
        .last()
        .unwrap()
}

/// Routes escalation `id` the way the runner does: the chain s1 / s2 / s3, s1 alerted.
async fn route(store: &AnyStore, id: i64) -> EscalationSnapshot {
    let seen = Mutex::new(None);
    let handled = store
        .handle_due_escalation(id, at(10), &["s2".into(), "s3".into()], &|snap| {
            *seen.lock().unwrap() = Some(snap.clone());
            let ids: Vec<i64> = snap.named.iter().map(|c| c.id).collect();
            let s1 = snap.supervisor.as_ref().unwrap().id;
            let mut update = snap.escalation.update();
            update.message = format!("ALERT {id}");
            update.supervisor_id = Some(s1);
            update.due_at = Some(at(12));
            Ok(Plan {
                writes: vec![
                    Write::EscalationChain {
                        id,
                        levels: vec![vec![s1], vec![ids[0]], vec![ids[1]]],
                    },
                    Write::EscalationEvent {
                        id,
                        action: EscalationAction::Alerted,
                        supervisor_id: Some(s1),
                        level: 0,
                        detail: "Supervisor s1".into(),
                    },
                    Write::UpdateEscalation(update),
                ],
            })
        })
        .await
        .unwrap();
    assert!(handled);
    seen.into_inner().unwrap().unwrap()
}

/// The desk the store reads when `from` texts in (`None`: not a supervisor).
async fn desk_of(store: &AnyStore, from: &Address, sid: &str) -> Option<Desk> {
    let seen = Mutex::new(None);
    store
        .handle_inbound(&inbound(from, "ACK", sid, at(11)), &|s: &Snapshot| {
            *seen.lock().unwrap() = Some(s.desk.clone());
            Ok(Plan::default())
        })
        .await
        .unwrap();
    seen.into_inner().unwrap().unwrap()
}

async fn a_raised_escalation_is_due_at_once_and_handled_once(store: AnyStore) {
    let conversation = setup(&store).await;
    let id = raise(&store, conversation, "SM1", "low week score").await;
    assert_eq!(store.due_escalations(at(10), 10).await.unwrap(), [id]);
    assert!(store.due_escalations(at(9), 10).await.unwrap().is_empty());

    let snap = route(&store, id).await;
    assert_eq!(snap.escalation.status, EscalationStatus::Open);
    assert_eq!(snap.escalation.template, "alerts/low_score");
    assert_eq!(snap.escalation.context["caregiver"]["first_name"], "Ana");
    assert_eq!(
        snap.escalation.when_taken_up.as_deref(),
        Some("pulse/taken_up")
    );
    assert_eq!(snap.supervisor.as_ref().unwrap().external_id, "s1");
    assert_eq!(
        snap.supervisor.as_ref().unwrap().address,
        Address::new(Channel::Sms, support::phone(9001))
    );
    assert!(snap.chain.is_empty(), "not routed before");
    let named: Vec<&str> = snap.named.iter().map(|c| c.external_id.as_str()).collect();
    assert_eq!(named, ["s2", "s3"]);

    // Routed: due again only when its window ends, and then with its chain.
    assert!(store.due_escalations(at(11), 10).await.unwrap().is_empty());
    let not_due = store
        .handle_due_escalation(id, at(11), &[], &|_| panic!("not due"))
        .await
        .unwrap();
    assert!(!not_due);
    let seen = Mutex::new(None);
    store
        .handle_due_escalation(id, at(12), &[], &|snap| {
            *seen.lock().unwrap() = Some(snap.clone());
            Ok(Plan::default())
        })
        .await
        .unwrap();
    let again = seen.into_inner().unwrap().unwrap();
    assert_eq!(again.escalation.message, format!("ALERT {id}"));
    let chain: Vec<(String, i64, bool)> = again
        .chain
        .iter()
        .map(|c| {
            (
                c.contact.external_id.clone(),
                c.level,
                c.notified_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            ("s1".into(), 0, true),
            ("s2".into(), 1, false),
            ("s3".into(), 2, false)
        ]
    );
    let history: Vec<(String, Option<String>)> = store
        .escalation_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.supervisor))
        .collect();
    assert_eq!(
        history,
        [
            ("raised".into(), None),
            ("alerted".into(), Some("s1".into()))
        ]
    );
}

async fn a_desk_holds_alerts_routed_to_its_supervisor_or_the_level_below(store: AnyStore) {
    let conversation = setup(&store).await;
    let id = raise(&store, conversation, "SM1", "low week score").await;
    route(&store, id).await;

    let s1 = desk_of(&store, &sms(9001), "SM-s1").await.unwrap();
    assert_eq!(s1.me.name, "Supervisor s1");
    assert_eq!(s1.alerts.len(), 1);
    assert_eq!(s1.alerts[0].escalation.id, id);
    assert_eq!(s1.alerts[0].caregiver, "Ana L.");
    // The next level may act before the window ends; the one after may not.
    assert_eq!(
        desk_of(&store, &sms(9002), "SM-s2")
            .await
            .unwrap()
            .alerts
            .len(),
        1
    );
    assert!(
        desk_of(&store, &sms(9003), "SM-s3")
            .await
            .unwrap()
            .alerts
            .is_empty()
    );
    // A caregiver is not a supervisor.
    assert!(desk_of(&store, &sms(1), "SM-c1").await.is_none());

    // Raised a level, it reaches s3's desk; closed, it stays there a week, then goes.
    let raise_level = |status: EscalationStatus, closed: Option<chrono::DateTime<chrono::Utc>>| {
        move |snap: &EscalationSnapshot| {
            let mut update = snap.escalation.update();
            update.level = 1;
            update.status = status;
            update.closed_at = closed;
            update.due_at = Some(at(14));
            Ok(Plan {
                writes: vec![Write::UpdateEscalation(update)],
            })
        }
    };
    store
        .handle_due_escalation(id, at(12), &[], &raise_level(EscalationStatus::Open, None))
        .await
        .unwrap();
    assert_eq!(
        desk_of(&store, &sms(9003), "SM-s3b")
            .await
            .unwrap()
            .alerts
            .len(),
        1
    );
    store
        .handle_due_escalation(
            id,
            at(14),
            &[],
            &raise_level(EscalationStatus::Done, Some(at(14) - Duration::days(8))),
        )
        .await
        .unwrap();
    assert!(
        desk_of(&store, &sms(9001), "SM-s1b")
            .await
            .unwrap()
            .alerts
            .is_empty()
    );
}

async fn a_digest_goes_once_a_day_to_supervisors_with_open_alerts(store: AnyStore) {
    let conversation = setup(&store).await;
    assert!(store.digest_candidates(at(10)).await.unwrap().is_empty());
    let id = raise(&store, conversation, "SM1", "low week score").await;
    route(&store, id).await;
    let candidates = store.digest_candidates(at(10)).await.unwrap();
    assert_eq!(candidates.len(), 1, "s1 was sent it; s2 and s3 were not");

    let send = |desk: &Desk| {
        Ok(Plan {
            writes: vec![Write::DigestSent {
                supervisor_id: desk.me.id,
                day: NaiveDate::from_ymd_opt(2025, 3, 3).unwrap(),
            }],
        })
    };
    let seen = Mutex::new(None);
    store
        .handle_digest(candidates[0], at(14), &|desk: &Desk| {
            *seen.lock().unwrap() = Some(desk.clone());
            send(desk)
        })
        .await
        .unwrap();
    let desk = seen.into_inner().unwrap().unwrap();
    assert_eq!(desk.alerts.len(), 1);
    assert_eq!(desk.last_digest, None);
    assert!(store.digest_candidates(at(15)).await.unwrap().is_empty());
    // A second digest for the same day is refused by the store itself.
    assert!(
        store
            .handle_digest(candidates[0], at(16), &send)
            .await
            .is_err()
    );
    // The next day it is a candidate again, and knows its last digest.
    let tomorrow = at(14) + Duration::hours(21);
    assert_eq!(store.digest_candidates(tomorrow).await.unwrap(), candidates);
    let seen = Mutex::new(None);
    store
        .handle_digest(candidates[0], tomorrow, &|desk: &Desk| {
            *seen.lock().unwrap() = Some(desk.last_digest);
            Ok(Plan::default())
        })
        .await
        .unwrap();
    assert_eq!(
        seen.into_inner().unwrap().unwrap(),
        NaiveDate::from_ymd_opt(2025, 3, 3)
    );
}

async fn exports_stream_every_row_and_leave_anonymous_answers_out(store: AnyStore) {
    let conversation = setup(&store).await;
    for (n, anonymous) in [(1, false), (2, true), (3, false)] {
        store
            .handle_inbound(
                &inbound(&sms(1), &n.to_string(), &format!("SM{n}"), at(10 + n)),
                &|_: &Snapshot| {
                    Ok(Plan {
                        writes: vec![Write::Answer {
                            conversation: ConvRef::Existing(conversation),
                            flow_id: if n == 3 { "other" } else { "pulse" }.into(),
                            step: "score".into(),
                            key: "score".into(),
                            value: json!(n),
                            raw: n.to_string(),
                            anonymous,
                            free_text: false,
                        }],
                    })
                },
            )
            .await
            .unwrap();
    }
    let mut rows = Vec::new();
    let n = store
        .export_answers(None, None, &mut |r| {
            rows.push((r.caregiver, r.flow, r.raw));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        rows,
        [
            ("c1".into(), "pulse".into(), "1".into()),
            ("c1".into(), "other".into(), "3".into())
        ]
    );
    let mut pulse = 0;
    store
        .export_answers(Some("pulse"), None, &mut |_| {
            pulse += 1;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(pulse, 1);

    raise(&store, conversation, "SM4", "first").await;
    raise(&store, conversation, "SM5", "second").await;
    let mut reasons = Vec::new();
    store
        .export_escalations(Some("pulse"), None, &mut |r| {
            reasons.push((r.reason, r.status, r.supervisor));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        reasons,
        [
            ("first".into(), "open".into(), Some("s1".into())),
            ("second".into(), "open".into(), Some("s1".into()))
        ]
    );
    let mut none = 0;
    store
        .export_escalations(Some("training"), None, &mut |_| {
            none += 1;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(none, 0);
    // A sink that fails (a closed pipe) stops the export with its error.
    let failed = store
        .export_escalations(None, None, &mut |_| {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        })
        .await;
    assert!(matches!(failed, Err(carebot::store::StoreError::Sink(_))));
}

async fn pulse_rows_place_answers_by_the_week_their_survey_started(store: AnyStore) {
    let conversation = setup(&store).await;
    // Answered a week after the survey started: still that survey's week.
    let next_week = at(10) + Duration::days(7);
    for (sid, anonymous) in [("SM1", false), ("SM2", true)] {
        store
            .handle_inbound(&inbound(&sms(1), "4", sid, next_week), &|_: &Snapshot| {
                Ok(Plan {
                    writes: vec![Write::Answer {
                        conversation: ConvRef::Existing(conversation),
                        flow_id: "pulse".into(),
                        step: if anonymous { "mood" } else { "score" }.into(),
                        key: "score".into(),
                        value: json!(4),
                        raw: "4".into(),
                        anonymous,
                        free_text: false,
                    }],
                })
            })
            .await
            .unwrap();
    }
    raise(&store, conversation, "SM3", "low").await;
    let monday = NaiveDate::from_ymd_opt(2025, 3, 3).unwrap();
    let mut rows = Vec::new();
    store
        .pulse_rows("pulse", "score", at(0), &mut |r| {
            rows.push(r);
            Ok(())
        })
        .await
        .unwrap();
    let summary: Vec<String> = rows
        .iter()
        .map(|r| match r {
            PulseRow::Asked {
                started_at,
                branch,
                state,
                ..
            } => format!("asked {} {branch} {state:?}", started_at.date_naive()),
            PulseRow::Answered {
                started_at, value, ..
            } => format!("answered {} {value}", started_at.date_naive()),
            PulseRow::AnsweredAnonymously {
                week,
                branch,
                state,
                value,
            } => format!("anonymous {week} {branch} {state:?} {value}"),
            PulseRow::Escalation {
                priority,
                started_at,
                acknowledged_at,
                ..
            } => format!(
                "escalation {} {} {acknowledged_at:?}",
                priority.as_str(),
                started_at.date_naive()
            ),
        })
        .collect();
    assert_eq!(
        summary,
        [
            format!("asked {monday} north Some(\"IL\")"),
            format!("answered {monday} 4"),
            format!("anonymous {monday} north Some(\"IL\") 4"),
            format!("escalation high {monday} None"),
        ]
    );
}

/// On both databases (with a connection of their own): an anonymous answer keeps no link to
/// its caregiver, only its cohort, and the inbound message that carried it loses its words.
#[tokio::test]
async fn an_anonymous_answer_keeps_its_cohort_and_its_inbound_message_neither_words_nor_time() {
    for (kind, db) in support::stores().await {
        let store = &db.store;
        let conversation = setup(store).await;
        store
            .handle_inbound(
                &inbound(&sms(1), "my client yells at me", "SM1", at(10)),
                &|_: &Snapshot| {
                    Ok(Plan {
                        writes: vec![Write::Answer {
                            conversation: ConvRef::Existing(conversation),
                            flow_id: "pulse".into(),
                            step: "help".into(),
                            key: "help".into(),
                            value: json!("my client yells at me"),
                            raw: "my client yells at me".into(),
                            anonymous: true,
                            free_text: false,
                        }],
                    })
                },
            )
            .await
            .unwrap();
        // The answer is kept apart with its cohort only (waiting for its day to be over before
        // it joins the others); its inbound message keeps neither its words nor a time finer
        // than the day; nothing is in `answers`.
        let query = "SELECT i.body, i.received_at, a.value, a.cohort_branch, \
                     a.cohort_state, (SELECT COUNT(*) FROM answers) \
                     FROM inbound_messages i, anonymous_pending a";
        type Got = (String, DateTime<Utc>, String, String, Option<String>, i64);
        let got: Got = if kind == "sqlite" {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(query).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query_as(query).fetch_one(&mut conn).await.unwrap()
        };
        let midnight = at(0);
        assert_eq!(
            got,
            (
                "[anonymous answer]".into(),
                midnight,
                "\"my client yells at me\"".into(),
                "north".into(),
                Some("IL".into()),
                0
            ),
            "{kind}"
        );
    }
}
