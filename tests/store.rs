//! The store contract, tested on SQLite always and on PostgreSQL when
//! `CAREBOT_TEST_POSTGRES_URL` is set: what the import, the runner and the dispatcher rely on,
//! asserted as a user would see it (import counts, audiences, messages queued and their status,
//! the consent ledger, exports).

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use carebot::domain::{Address, Channel, Priority};
use carebot::model::{
    Audience, ConsentStatus, ConvRef, ConversationStatus, DecideError, InboundOutcome, NewOutbound,
    OutboundKind, OutboundRow, OutboundStatus, Plan, Snapshot, UpsertOutcome, Write,
};
use carebot::store::{AnyStore, Store, StoreError};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::json;
use sqlx::Connection as _;
use support::{at, caregiver, inbound, phone, sms, supervisor};

support::store_tests! {
    migrations_apply_twice,
    import_reports_added_updated_unchanged,
    import_rejects_a_phone_owned_by_another_caregiver_and_keeps_the_others,
    deactivation_keeps_the_listed_and_a_reimport_reactivates,
    audience_selects_only_active_caregivers,
    import_consent_opts_in_once_and_never_over_a_stop,
    supervisors_are_upserted_and_loaded_with_their_caregivers,
    inbound_retry_is_a_duplicate_and_changes_nothing,
    inbound_plan_creates_a_conversation_and_queues_a_reply,
    failing_plan_rolls_back_the_inbound_message_too,
    failing_decide_rolls_back_and_records_nothing,
    claim_marks_sending_and_a_second_claim_gets_nothing,
    concurrent_claims_take_disjoint_messages,
    claims_take_the_earliest_due_first_and_one_instant_in_queue_order,
    a_reply_is_claimed_before_an_earlier_program_backlog,
    acceptances_recorded_together_never_move_a_status_back,
    claim_suppresses_opted_out_inactive_and_invalid_except_consent,
    dispatcher_transitions_retry_failed_accepted,
    delivery_status_never_moves_backwards,
    stale_sending_becomes_unknown_and_is_not_resent,
    unanswered_send_becomes_unknown_and_a_report_reconciles_it,
    consent_ledger_records_keyword_and_provider_changes,
    flow_revisions_dedupe_by_text,
    due_conversation_is_handled_once,
    racing_timers_handle_a_due_conversation_once,
    racing_retries_of_one_inbound_are_processed_once,
    answers_and_escalations_are_listed_with_filters,
    stranger_gets_one_polite_reply_a_day,
    caregiver_fields_and_tags_are_replaced,
    start_for_an_audience_skips_those_already_in_a_conversation,
    upsert_of_100000_caregivers_is_fast,
    retention_waits_for_a_message_in_flight_and_never_skips_its_text,
    retention_empties_the_ledger_and_still_sweeps_what_comes_after,
}

/// SQLite alone: the file is in WAL mode, and instants are stored as fixed-width UTC text, so
/// that the outbox's and the timers' `<=` on text compare instants.
#[tokio::test]
async fn sqlite_file_is_wal_with_fixed_width_utc_instants() {
    let db = support::sqlite().await;
    let half_past = at(10) + Duration::microseconds(500_000);
    let no_fraction = inbound(&sms(1), "hi", "SM1", at(11));
    let fraction = inbound(&sms(1), "hi", "SM2", half_past);
    for message in [no_fraction, fraction] {
        let outcome = db
            .store
            .handle_inbound(&message, &|_: &Snapshot| Ok(Plan::default()))
            .await;
        assert_eq!(outcome.unwrap(), InboundOutcome::Processed);
    }

    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let stored: Vec<(String,)> =
        sqlx::query_as("SELECT received_at FROM inbound_messages ORDER BY received_at")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        stored,
        [
            ("2025-03-03T10:00:00.500000Z".to_owned(),),
            ("2025-03-03T11:00:00.000000Z".to_owned(),)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn message(
    address: &Address,
    kind: OutboundKind,
    body: &str,
    not_before: DateTime<Utc>,
) -> NewOutbound {
    NewOutbound {
        address: address.clone(),
        caregiver_id: None,
        conversation: None,
        kind,
        body: body.to_owned(),
        encoding: "gsm7".to_owned(),
        segments: 1,
        not_before,
        buttons: Vec::new(),
    }
}

/// Queues one message the way `start` or the scheduler would.
async fn queue(store: &AnyStore, outbound: NewOutbound) {
    let address = outbound.address.clone();
    let write = Write::Outbound(outbound);
    store
        .handle_addresses(&[address], at(8), &|_: &Snapshot| {
            Ok(Plan {
                writes: vec![write.clone()],
            })
        })
        .await
        .unwrap();
}

/// Queues a program message to `address` for the caregiver on the snapshot.
async fn queue_for_caregiver(store: &AnyStore, address: &Address, kind: OutboundKind, body: &str) {
    store
        .handle_addresses(std::slice::from_ref(address), at(8), &|s: &Snapshot| {
            let mut outbound = message(address, kind, body, at(9));
            outbound.caregiver_id = s.caregiver.as_ref().map(|c| c.id);
            Ok(Plan {
                writes: vec![Write::Outbound(outbound)],
            })
        })
        .await
        .unwrap();
}

/// The status of every message ever queued to `address`, oldest first.
async fn statuses_to(store: &AnyStore, address: &Address) -> Vec<OutboundStatus> {
    let outbound = store.outbound_to(address).await.unwrap();
    outbound.iter().map(|(status, _)| *status).collect()
}

/// What one SMS dispatcher claims at `now`.
async fn claim_sms(store: &AnyStore, now: DateTime<Utc>, limit: u32) -> Vec<OutboundRow> {
    store
        .claim_outbound(Channel::Sms, now, limit)
        .await
        .unwrap()
}

fn bodies(claimed: &[OutboundRow]) -> Vec<&str> {
    claimed.iter().map(|m| m.body.as_str()).collect()
}

fn external_ids(caregivers: &[carebot::model::Caregiver]) -> Vec<&str> {
    caregivers.iter().map(|c| c.external_id.as_str()).collect()
}

/// The snapshot the store reads for `address` (through a plan that writes nothing).
async fn snapshot(store: &AnyStore, address: &Address) -> Snapshot {
    let seen = Mutex::new(None);
    store
        .handle_addresses(std::slice::from_ref(address), at(8), &|s: &Snapshot| {
            *seen.lock().unwrap() = Some(s.clone());
            Ok(Plan::default())
        })
        .await
        .unwrap();
    seen.into_inner().unwrap().unwrap()
}

/// Starts a conversation in `flow_id` for the caregiver at `address`; returns its id.
async fn start(
    store: &AnyStore,
    address: &Address,
    flow_id: &str,
    wake_at: Option<DateTime<Utc>>,
) -> i64 {
    let rev = store
        .register_flow_revision(flow_id, 1, &format!("id: {flow_id}\n"))
        .await
        .unwrap();
    store
        .handle_addresses(std::slice::from_ref(address), at(8), &|_: &Snapshot| {
            Ok(Plan {
                writes: vec![Write::CreateConversation {
                    flow_id: flow_id.to_owned(),
                    flow_rev: rev,
                    state: json!({"step": "score"}),
                    wake_at,
                }],
            })
        })
        .await
        .unwrap();
    snapshot(store, address).await.conversation.unwrap().id
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 3, d).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Migrations and the roster

async fn migrations_apply_twice(store: AnyStore) {
    // The test store is migrated already: both of these find nothing to do.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.supervisor_ids().await.unwrap(), Vec::<String>::new());
}

async fn import_reports_added_updated_unchanged(store: AnyStore) {
    let mut rows = vec![caregiver("c1", 1), caregiver("c2", 2), caregiver("c3", 3)];
    rows[1].groups = vec!["aides".into(), "nights".into()];
    let added = store.upsert_caregivers(&rows).await.unwrap();
    assert_eq!(added, vec![(UpsertOutcome::Added, None); 3]);

    let again = store.upsert_caregivers(&rows).await.unwrap();
    assert_eq!(again, vec![(UpsertOutcome::Unchanged, None); 3]);

    rows[1].branch = "south".into();
    rows[2].groups = vec!["days".into()];
    let changed = store.upsert_caregivers(&rows).await.unwrap();
    let outcomes: Vec<_> = changed.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        outcomes,
        [
            UpsertOutcome::Unchanged,
            UpsertOutcome::Updated,
            UpsertOutcome::Updated
        ]
    );
    let reimport = store.upsert_caregivers(&rows).await.unwrap();
    assert_eq!(reimport, vec![(UpsertOutcome::Unchanged, None); 3]);

    let c2 = store.caregiver_by_external_id("c2").await.unwrap().unwrap();
    assert_eq!(c2.branch, "south");
    assert_eq!(c2.groups, ["aides", "nights"]);
    assert_eq!(c2.phone, phone(2));
    assert!(c2.active);
    let c3 = store.caregiver_by_external_id("c3").await.unwrap().unwrap();
    assert_eq!(c3.groups, ["days"]);
    assert!(
        store
            .caregiver_by_external_id("c9")
            .await
            .unwrap()
            .is_none()
    );
}

async fn import_rejects_a_phone_owned_by_another_caregiver_and_keeps_the_others(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1), caregiver("c2", 2)])
        .await
        .unwrap();

    let mut c2 = caregiver("c2", 2);
    c2.first_name = "Bea".into();
    let outcomes = store
        .upsert_caregivers(&[
            caregiver("c3", 1),
            caregiver("c4", 4),
            c2,
            caregiver("c4", 5),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0].0, UpsertOutcome::Rejected);
    let reason = outcomes[0].1.as_deref().unwrap();
    assert!(
        reason.contains(&phone(1)) && reason.contains("c1"),
        "{reason}"
    );
    assert_eq!(outcomes[1], (UpsertOutcome::Added, None));
    assert_eq!(outcomes[2], (UpsertOutcome::Updated, None));
    assert_eq!(
        outcomes[3].0,
        UpsertOutcome::Rejected,
        "c4 twice in one file"
    );

    assert!(
        store
            .caregiver_by_external_id("c3")
            .await
            .unwrap()
            .is_none()
    );
    let c4 = store.caregiver_by_external_id("c4").await.unwrap().unwrap();
    assert_eq!(c4.phone, phone(4));
    let c1 = store.caregiver_by_external_id("c1").await.unwrap().unwrap();
    assert_eq!(c1.phone, phone(1));
    let c2 = store.caregiver_by_external_id("c2").await.unwrap().unwrap();
    assert_eq!(c2.first_name, "Bea");

    // A number given up earlier in the same file can be taken by a later row.
    let outcomes = store
        .upsert_caregivers(&[caregiver("c1", 6), caregiver("c5", 1)])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [(UpsertOutcome::Updated, None), (UpsertOutcome::Added, None)]
    );
    let c5 = store.caregiver_by_external_id("c5").await.unwrap().unwrap();
    assert_eq!(c5.phone, phone(1));
}

async fn deactivation_keeps_the_listed_and_a_reimport_reactivates(store: AnyStore) {
    let rows = [caregiver("c1", 1), caregiver("c2", 2), caregiver("c3", 3)];
    store.upsert_caregivers(&rows).await.unwrap();

    let keep = ["c1".to_owned(), "c3".to_owned()];
    assert_eq!(store.deactivate_caregivers_except(&keep).await.unwrap(), 1);
    assert_eq!(store.deactivate_caregivers_except(&keep).await.unwrap(), 0);
    let c2 = store.caregiver_by_external_id("c2").await.unwrap().unwrap();
    assert!(!c2.active);
    assert_eq!(
        external_ids(&store.audience(&Audience::All).await.unwrap()),
        ["c1", "c3"]
    );

    // Back in the roster file: active again.
    let outcomes = store.upsert_caregivers(&rows).await.unwrap();
    assert_eq!(outcomes[1], (UpsertOutcome::Updated, None));
    assert!(
        store
            .caregiver_by_external_id("c2")
            .await
            .unwrap()
            .unwrap()
            .active
    );
    assert_eq!(
        store.upsert_caregivers(&rows).await.unwrap()[1].0,
        UpsertOutcome::Unchanged
    );
}

async fn audience_selects_only_active_caregivers(store: AnyStore) {
    let mut c1 = caregiver("c1", 1);
    c1.groups = vec!["aides".into()];
    let mut c2 = caregiver("c2", 2);
    c2.groups = vec!["aides".into(), "nights".into()];
    c2.branch = "south".into();
    let mut c3 = caregiver("c3", 3);
    c3.groups = vec!["aides".into(), "nights".into()];
    store.upsert_caregivers(&[c1, c2, c3]).await.unwrap();
    store
        .deactivate_caregivers_except(&["c1".to_owned(), "c2".to_owned()])
        .await
        .unwrap();

    let all = store.audience(&Audience::All).await.unwrap();
    assert_eq!(external_ids(&all), ["c1", "c2"]);
    assert_eq!(all[1].groups, ["aides", "nights"]);
    let nights = store
        .audience(&Audience::Group("nights".into()))
        .await
        .unwrap();
    assert_eq!(external_ids(&nights), ["c2"]);
    let aides = store
        .audience(&Audience::Group("aides".into()))
        .await
        .unwrap();
    assert_eq!(external_ids(&aides), ["c1", "c2"]);
    let north = store
        .audience(&Audience::Branch("north".into()))
        .await
        .unwrap();
    assert_eq!(external_ids(&north), ["c1"]);
    let phones = Audience::Phones(vec![phone(3), phone(2), phone(2), phone(99)]);
    assert_eq!(
        external_ids(&store.audience(&phones).await.unwrap()),
        ["c2"]
    );
    let nobody = store
        .audience(&Audience::Group("none".into()))
        .await
        .unwrap();
    assert!(nobody.is_empty());
}

async fn import_consent_opts_in_once_and_never_over_a_stop(store: AnyStore) {
    // c3 texted STOP before the agency's roster said it had written consent.
    store
        .set_consent(&sms(3), ConsentStatus::OptedOut, "keyword", "STOP", at(7))
        .await
        .unwrap();
    let mut c1 = caregiver("c1", 1);
    c1.consent_at = Some(day(1));
    let c2 = caregiver("c2", 2);
    let mut c3 = caregiver("c3", 3);
    c3.consent_at = Some(day(1));
    let rows = [c1, c2, c3];
    store.upsert_caregivers(&rows).await.unwrap();
    store.upsert_caregivers(&rows).await.unwrap();

    let ledger = store.consent_ledger(&sms(1)).await.unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        (ledger[0].0.as_str(), ledger[0].1.as_str()),
        ("opted_in", "import")
    );
    assert!(ledger[0].2.contains("2025-03-01"), "{ledger:?}");
    assert_eq!(
        snapshot(&store, &sms(1)).await.consent,
        ConsentStatus::OptedIn
    );

    assert!(store.consent_ledger(&sms(2)).await.unwrap().is_empty());
    assert_eq!(
        snapshot(&store, &sms(2)).await.consent,
        ConsentStatus::Unknown
    );

    let ledger = store.consent_ledger(&sms(3)).await.unwrap();
    assert_eq!(
        ledger,
        [("opted_out".into(), "keyword".into(), "STOP".into(), at(7))]
    );
    assert_eq!(
        snapshot(&store, &sms(3)).await.consent,
        ConsentStatus::OptedOut
    );
}

async fn supervisors_are_upserted_and_loaded_with_their_caregivers(store: AnyStore) {
    let mut rows = vec![supervisor("s2", 2), supervisor("s1", 1)];
    assert_eq!(
        store.upsert_supervisors(&rows).await.unwrap(),
        vec![(UpsertOutcome::Added, None); 2]
    );
    assert_eq!(
        store.upsert_supervisors(&rows).await.unwrap(),
        vec![(UpsertOutcome::Unchanged, None); 2]
    );
    rows[0].email = "new@agency.example".into();
    let outcomes = store.upsert_supervisors(&rows).await.unwrap();
    assert_eq!(outcomes[0], (UpsertOutcome::Updated, None));
    assert_eq!(store.supervisor_ids().await.unwrap(), ["s1", "s2"]);

    let mut c1 = caregiver("c1", 1);
    c1.supervisor_id = Some("s1".into());
    store
        .upsert_caregivers(&[c1, caregiver("c2", 2)])
        .await
        .unwrap();
    let c1 = store.caregiver_by_external_id("c1").await.unwrap().unwrap();
    let s1 = c1.supervisor.unwrap();
    assert_eq!(
        (s1.external_id.as_str(), s1.phone.as_str()),
        ("s1", phone(9001).as_str())
    );
    assert!(
        store
            .caregiver_by_external_id("c2")
            .await
            .unwrap()
            .unwrap()
            .supervisor
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// The runner's transactions

async fn inbound_retry_is_a_duplicate_and_changes_nothing(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let calls = Mutex::new(0);
    let decide = |s: &Snapshot| {
        *calls.lock().unwrap() += 1;
        Ok(Plan {
            writes: vec![Write::Outbound(message(
                &s.address,
                OutboundKind::Reply,
                "Got it",
                at(10),
            ))],
        })
    };
    let first = inbound(&sms(1), "4", "SM1", at(10));
    assert_eq!(
        store.handle_inbound(&first, &decide).await.unwrap(),
        InboundOutcome::Processed
    );
    assert_eq!(
        store.handle_inbound(&first, &decide).await.unwrap(),
        InboundOutcome::Duplicate
    );
    let resent_later = inbound(&sms(1), "4", "SM1", at(11));
    assert_eq!(
        store.handle_inbound(&resent_later, &decide).await.unwrap(),
        InboundOutcome::Duplicate
    );
    assert_eq!(*calls.lock().unwrap(), 1, "decide runs once");
    let sent = store.outbound_to(&sms(1)).await.unwrap();
    assert_eq!(sent, [(OutboundStatus::Queued, "Got it".to_owned())]);

    // Provider ids are unique per channel, not across channels.
    let telegram = Address::new(Channel::Telegram, "777");
    let other_channel = inbound(&telegram, "hi", "SM1", at(10));
    assert_eq!(
        store.handle_inbound(&other_channel, &decide).await.unwrap(),
        InboundOutcome::Processed
    );
}

async fn inbound_plan_creates_a_conversation_and_queues_a_reply(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let rev = store
        .register_flow_revision("pulse", 1, "id: pulse\n")
        .await
        .unwrap();
    let seen = Mutex::new(Vec::new());
    let decide = |s: &Snapshot| {
        seen.lock().unwrap().push(s.clone());
        let caregiver_id = s.caregiver.as_ref().map(|c| c.id);
        let conversation = match &s.conversation {
            None => ConvRef::New,
            Some(c) => ConvRef::Existing(c.id),
        };
        let mut writes = Vec::new();
        if s.conversation.is_none() {
            writes.push(Write::CreateConversation {
                flow_id: "pulse".into(),
                flow_rev: rev,
                state: json!({"step": "score"}),
                wake_at: Some(at(12)),
            });
        }
        writes.push(Write::Answer {
            conversation,
            flow_id: "pulse".into(),
            step: "score".into(),
            key: "score".into(),
            value: json!(4),
            raw: "4".into(),
            anonymous: false,
            free_text: false,
        });
        let mut reply = message(&s.address, OutboundKind::Reply, "Thanks!", at(10));
        reply.caregiver_id = caregiver_id;
        reply.conversation = Some(conversation);
        writes.push(Write::Outbound(reply));
        Ok(Plan { writes })
    };

    let outcome = store
        .handle_inbound(&inbound(&sms(1), "4", "SM1", at(10)), &decide)
        .await;
    assert_eq!(outcome.unwrap(), InboundOutcome::Processed);
    assert_eq!(
        store.outbound_to(&sms(1)).await.unwrap(),
        [(OutboundStatus::Queued, "Thanks!".to_owned())]
    );

    store
        .handle_inbound(&inbound(&sms(1), "5", "SM2", at(11)), &decide)
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert!(seen[0].conversation.is_none());
    assert_eq!(seen[0].caregiver.as_ref().unwrap().external_id, "c1");
    let conversation = seen[1].conversation.as_ref().unwrap();
    assert_eq!(conversation.flow_id, "pulse");
    assert_eq!(conversation.flow_rev, rev);
    assert_eq!(conversation.status, ConversationStatus::Active);
    assert_eq!(conversation.state, json!({"step": "score"}));
    assert_eq!(conversation.wake_at, Some(at(12)));
    assert_eq!(conversation.started_at, at(10));
    assert_eq!(store.outbound_to(&sms(1)).await.unwrap().len(), 2);

    let answers = store.answers(Some("pulse"), None).await.unwrap();
    let values: Vec<_> = answers
        .iter()
        .map(|a| (a.caregiver.as_str(), a.answer.clone()))
        .collect();
    assert_eq!(values, [("c1", json!(4)), ("c1", json!(4))]);
    assert_eq!(answers[1].answered_at, at(11));
}

async fn failing_plan_rolls_back_the_inbound_message_too(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    start(&store, &sms(1), "pulse", None).await;
    let rev = store
        .register_flow_revision("training", 1, "id: training\n")
        .await
        .unwrap();

    // A second active conversation on the same channel breaks the unique index, after a reply
    // and an answer were already written in the same transaction.
    let conflicting = |s: &Snapshot| {
        Ok(Plan {
            writes: vec![
                Write::Outbound(message(&s.address, OutboundKind::Reply, "Welcome", at(10))),
                Write::CreateConversation {
                    flow_id: "training".into(),
                    flow_rev: rev,
                    state: json!({}),
                    wake_at: None,
                },
            ],
        })
    };
    let message_in = inbound(&sms(1), "hi", "SM1", at(10));
    let failed = store.handle_inbound(&message_in, &conflicting).await;
    assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
    assert!(store.outbound_to(&sms(1)).await.unwrap().is_empty());

    // The provider's retry is processed, not taken for a duplicate.
    let fine = |s: &Snapshot| {
        Ok(Plan {
            writes: vec![Write::Outbound(message(
                &s.address,
                OutboundKind::Reply,
                "Hi",
                at(10),
            ))],
        })
    };
    let retried = store.handle_inbound(&message_in, &fine).await.unwrap();
    assert_eq!(retried, InboundOutcome::Processed);
    assert_eq!(store.outbound_to(&sms(1)).await.unwrap().len(), 1);

    // A plan that cannot be applied as written is refused the same way.
    let stranger = inbound(&sms(50), "hi", "SM2", at(10));
    let answer_for_nobody = |_: &Snapshot| {
        Ok(Plan {
            writes: vec![Write::CaregiverFields {
                fields: Default::default(),
                tags: vec![],
            }],
        })
    };
    let refused = store.handle_inbound(&stranger, &answer_for_nobody).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidPlan(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.handle_inbound(&stranger, &fine).await.unwrap(),
        InboundOutcome::Processed
    );
}

async fn failing_decide_rolls_back_and_records_nothing(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let message_in = inbound(&sms(1), "4", "SM1", at(10));
    let boom = |_: &Snapshot| Err(DecideError::Refused("boom".into()));
    let failed = store.handle_inbound(&message_in, &boom).await;
    assert!(
        matches!(&failed, Err(StoreError::Decide(reason)) if reason.to_string() == "boom"),
        "{failed:?}"
    );
    assert!(store.outbound_to(&sms(1)).await.unwrap().is_empty());

    // The message was not recorded: the provider's retry is processed, not a duplicate.
    let reply = |s: &Snapshot| {
        Ok(Plan {
            writes: vec![Write::Outbound(message(
                &s.address,
                OutboundKind::Reply,
                "Got it",
                at(10),
            ))],
        })
    };
    assert_eq!(
        store.handle_inbound(&message_in, &reply).await.unwrap(),
        InboundOutcome::Processed
    );
    assert_eq!(
        store.outbound_to(&sms(1)).await.unwrap(),
        [(OutboundStatus::Queued, "Got it".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------------
// The outbox

async fn claim_marks_sending_and_a_second_claim_gets_nothing(store: AnyStore) {
    for (n, body) in [(1, "one"), (2, "two"), (3, "three")] {
        queue(&store, message(&sms(n), OutboundKind::Program, body, at(9))).await;
    }
    queue(
        &store,
        message(&sms(4), OutboundKind::Program, "later", at(12)),
    )
    .await;
    let telegram = Address::new(Channel::Telegram, "777");
    let mut with_buttons = message(&telegram, OutboundKind::Program, "tg", at(9));
    with_buttons.buttons = vec![("Yes".into(), "yes".into()), ("No".into(), "no".into())];
    queue(&store, with_buttons).await;

    let first = claim_sms(&store, at(10), 2).await;
    assert_eq!(
        bodies(&first),
        ["one", "two"],
        "oldest first, up to the limit"
    );
    assert!(first.iter().all(|m| m.attempts == 1 && m.segments == 1));
    assert_eq!(first[0].address, sms(1));
    assert_eq!(first[0].kind, OutboundKind::Program);
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Sending]
    );

    let second = claim_sms(&store, at(10), 10).await;
    assert_eq!(bodies(&second), ["three"]);
    assert!(claim_sms(&store, at(10), 10).await.is_empty());

    let due_later = claim_sms(&store, at(12), 10).await;
    assert_eq!(bodies(&due_later), ["later"]);

    let tg = store
        .claim_outbound(Channel::Telegram, at(10), 10)
        .await
        .unwrap();
    assert_eq!(tg.len(), 1);
    assert_eq!(
        tg[0].buttons,
        [
            ("Yes".to_owned(), "yes".to_owned()),
            ("No".to_owned(), "no".to_owned())
        ]
    );
}

async fn concurrent_claims_take_disjoint_messages(store: AnyStore) {
    for n in 0..40 {
        queue(
            &store,
            message(&sms(n), OutboundKind::Program, &format!("m{n}"), at(9)),
        )
        .await;
    }
    let (a, b, c) = tokio::join!(
        store.claim_outbound(Channel::Sms, at(10), 15),
        store.claim_outbound(Channel::Sms, at(10), 15),
        store.claim_outbound(Channel::Sms, at(10), 15),
    );
    let mut ids: Vec<i64> = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .flatten()
        .map(|m| m.id)
        .collect();
    let claimed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), claimed, "no message claimed twice");
    let rest = claim_sms(&store, at(10), 100).await;
    assert_eq!(claimed + rest.len(), 40, "every message claimed once");
}

async fn claims_take_the_earliest_due_first_and_one_instant_in_queue_order(store: AnyStore) {
    // Queued first, due last: a message held for later.
    let later = at(9) + Duration::minutes(30);
    queue(
        &store,
        message(&sms(1), OutboundKind::Program, "later", later),
    )
    .await;
    for body in ["first", "second", "third"] {
        queue(&store, message(&sms(2), OutboundKind::Program, body, at(9))).await;
    }
    assert_eq!(
        bodies(&claim_sms(&store, at(10), 2).await),
        ["first", "second"]
    );
    assert_eq!(
        bodies(&claim_sms(&store, at(10), 2).await),
        ["later", "third"]
    );
}

async fn a_reply_is_claimed_before_an_earlier_program_backlog(store: AnyStore) {
    for body in ["survey 1", "survey 2", "survey 3"] {
        queue(&store, message(&sms(2), OutboundKind::Program, body, at(9))).await;
    }
    // Queued after the backlog and due later, but someone is waiting for it.
    queue(
        &store,
        message(
            &sms(1),
            OutboundKind::Reply,
            "thanks",
            at(9) + Duration::minutes(1),
        ),
    )
    .await;
    assert_eq!(
        bodies(&claim_sms(&store, at(10), 2).await),
        ["survey 1", "thanks"]
    );
    assert_eq!(
        bodies(&claim_sms(&store, at(10), 5).await),
        ["survey 2", "survey 3"]
    );
}

async fn acceptances_recorded_together_never_move_a_status_back(store: AnyStore) {
    for n in 1..=3 {
        queue(
            &store,
            message(&sms(n), OutboundKind::Program, "hello", at(9)),
        )
        .await;
    }
    let claimed = claim_sms(&store, at(10), 10).await;
    // The third message's delivery report overtook the dispatcher's write.
    store
        .record_delivery_status(Some(claimed[2].id), "SM3", OutboundStatus::Delivered, None)
        .await
        .unwrap();
    let accepted: Vec<(i64, String)> = claimed
        .iter()
        .zip(["SM1", "SM2", "SM3"])
        .map(|(m, sid)| (m.id, sid.to_owned()))
        .collect();
    store.mark_outbound_accepted_many(&accepted).await.unwrap();
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Accepted]
    );
    assert_eq!(
        statuses_to(&store, &sms(2)).await,
        [OutboundStatus::Accepted]
    );
    assert_eq!(
        statuses_to(&store, &sms(3)).await,
        [OutboundStatus::Delivered]
    );
    // Found again by the provider's id, which the batch stored.
    assert!(
        store
            .record_delivery_status(None, "SM2", OutboundStatus::Delivered, None)
            .await
            .unwrap()
    );
    assert_eq!(
        statuses_to(&store, &sms(2)).await,
        [OutboundStatus::Delivered]
    );
}

async fn claim_suppresses_opted_out_inactive_and_invalid_except_consent(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1), caregiver("c2", 2), caregiver("c3", 3)])
        .await
        .unwrap();
    queue_for_caregiver(&store, &sms(1), OutboundKind::Program, "pulse").await;
    queue_for_caregiver(
        &store,
        &sms(1),
        OutboundKind::Consent,
        "You are unsubscribed",
    )
    .await;
    queue_for_caregiver(&store, &sms(2), OutboundKind::Reply, "thanks").await;
    queue_for_caregiver(&store, &sms(3), OutboundKind::Program, "pulse").await;
    queue(
        &store,
        message(
            &supervisor_address(),
            OutboundKind::Alert,
            "c2 needs a call",
            at(9),
        ),
    )
    .await;

    store
        .set_consent(&sms(1), ConsentStatus::OptedOut, "keyword", "STOP", at(9))
        .await
        .unwrap();
    store
        .deactivate_caregivers_except(&["c1".to_owned(), "c3".to_owned()])
        .await
        .unwrap();
    store.flag_invalid_phone(&phone(3)).await.unwrap();

    let claimed = claim_sms(&store, at(10), 10).await;
    assert_eq!(
        bodies(&claimed),
        ["You are unsubscribed", "c2 needs a call"]
    );
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Suppressed, OutboundStatus::Sending]
    );
    assert_eq!(
        statuses_to(&store, &sms(2)).await,
        [OutboundStatus::Suppressed]
    );
    assert_eq!(
        statuses_to(&store, &sms(3)).await,
        [OutboundStatus::Suppressed]
    );
    let counts = store.outbound_counts().await.unwrap();
    assert_eq!(
        counts,
        [("sending".to_owned(), 2), ("suppressed".to_owned(), 3)]
    );
}

fn supervisor_address() -> Address {
    sms(9001)
}

async fn dispatcher_transitions_retry_failed_accepted(store: AnyStore) {
    for (n, body) in [(1, "a"), (2, "b"), (3, "c")] {
        queue(&store, message(&sms(n), OutboundKind::Program, body, at(9))).await;
    }
    let claimed = claim_sms(&store, at(10), 10).await;
    let [a, b, c] = [claimed[0].id, claimed[1].id, claimed[2].id];

    store
        .mark_outbound_retry(a, at(11), "timeout")
        .await
        .unwrap();
    assert_eq!(statuses_to(&store, &sms(1)).await, [OutboundStatus::Queued]);
    assert!(claim_sms(&store, at(10), 10).await.is_empty(), "backoff");
    let retried = claim_sms(&store, at(11), 10).await;
    assert_eq!((retried[0].id, retried[0].attempts), (a, 2));

    store
        .mark_outbound_failed(b, Some("21610"), "unsubscribed")
        .await
        .unwrap();
    assert_eq!(statuses_to(&store, &sms(2)).await, [OutboundStatus::Failed]);

    store.mark_outbound_accepted(c, "SM300").await.unwrap();
    assert_eq!(
        statuses_to(&store, &sms(3)).await,
        [OutboundStatus::Accepted]
    );
    let found = store
        .record_delivery_status(None, "SM300", OutboundStatus::Sent, None)
        .await
        .unwrap();
    assert!(found);
    assert_eq!(statuses_to(&store, &sms(3)).await, [OutboundStatus::Sent]);
    let unknown = store
        .record_delivery_status(None, "SM-nobody", OutboundStatus::Delivered, None)
        .await
        .unwrap();
    assert!(!unknown);
}

async fn delivery_status_never_moves_backwards(store: AnyStore) {
    for n in 1..=3 {
        queue(
            &store,
            message(&sms(n), OutboundKind::Program, "hello", at(9)),
        )
        .await;
    }
    let claimed = claim_sms(&store, at(10), 10).await;
    let status_of = |n| {
        let store = store.clone();
        async move { statuses_to(&store, &sms(n)).await[0] }
    };
    let report = |provider_id: &'static str, status| {
        let store = store.clone();
        async move {
            store
                .record_delivery_status(None, provider_id, status, Some("30003"))
                .await
                .unwrap()
        }
    };

    store
        .mark_outbound_accepted(claimed[0].id, "SM1")
        .await
        .unwrap();
    report("SM1", OutboundStatus::Delivered).await;
    report("SM1", OutboundStatus::Sent).await;
    report("SM1", OutboundStatus::Undelivered).await;
    report("SM1", OutboundStatus::Accepted).await;
    assert_eq!(status_of(1).await, OutboundStatus::Delivered);

    store
        .mark_outbound_accepted(claimed[1].id, "SM2")
        .await
        .unwrap();
    report("SM2", OutboundStatus::Failed).await;
    report("SM2", OutboundStatus::Delivered).await;
    assert_eq!(status_of(2).await, OutboundStatus::Failed);

    // The callback overtook the dispatcher's own write: the later status stays.
    let third = claimed[2].id;
    let found = store
        .record_delivery_status(Some(third), "SM3", OutboundStatus::Sent, None)
        .await
        .unwrap();
    assert!(found);
    store.mark_outbound_accepted(third, "SM3").await.unwrap();
    assert_eq!(status_of(3).await, OutboundStatus::Sent);
    report("SM3", OutboundStatus::Delivered).await;
    assert_eq!(status_of(3).await, OutboundStatus::Delivered);
}

async fn stale_sending_becomes_unknown_and_is_not_resent(store: AnyStore) {
    queue(
        &store,
        message(&sms(1), OutboundKind::Program, "hello", at(9)),
    )
    .await;
    let claimed = claim_sms(&store, at(10), 10).await;

    assert_eq!(
        store.mark_stale_sending_unknown(at(10)).await.unwrap(),
        0,
        "claimed at 10:00"
    );
    assert_eq!(store.mark_stale_sending_unknown(at(11)).await.unwrap(), 1);
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Unknown]
    );
    assert!(claim_sms(&store, at(12), 10).await.is_empty());

    // A status callback that carries our id settles it.
    let found = store
        .record_delivery_status(Some(claimed[0].id), "SM1", OutboundStatus::Delivered, None)
        .await
        .unwrap();
    assert!(found);
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Delivered]
    );
}

async fn unanswered_send_becomes_unknown_and_a_report_reconciles_it(store: AnyStore) {
    queue(
        &store,
        message(&sms(1), OutboundKind::Program, "hello", at(9)),
    )
    .await;
    let claimed = claim_sms(&store, at(10), 10).await;
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Sending]
    );

    // The provider call timed out: it may or may not have the message.
    store
        .mark_outbound_unknown(claimed[0].id, "timeout")
        .await
        .unwrap();
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Unknown]
    );
    assert!(
        claim_sms(&store, at(12), 10).await.is_empty(),
        "never re-sent"
    );

    // A status callback that carries our id settles it.
    let found = store
        .record_delivery_status(Some(claimed[0].id), "SM1", OutboundStatus::Delivered, None)
        .await
        .unwrap();
    assert!(found);
    assert_eq!(
        statuses_to(&store, &sms(1)).await,
        [OutboundStatus::Delivered]
    );
}

// ---------------------------------------------------------------------------------------------
// Consent, flows, timers, results

async fn consent_ledger_records_keyword_and_provider_changes(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let stop = |s: &Snapshot| {
        Ok(Plan {
            writes: vec![
                Write::Consent {
                    status: ConsentStatus::OptedOut,
                    source: "keyword".into(),
                    detail: "STOP".into(),
                },
                Write::Outbound(message(
                    &s.address,
                    OutboundKind::Consent,
                    "Unsubscribed",
                    at(10),
                )),
            ],
        })
    };
    store
        .handle_inbound(&inbound(&sms(1), "stop", "SM1", at(10)), &stop)
        .await
        .unwrap();
    assert_eq!(
        snapshot(&store, &sms(1)).await.consent,
        ConsentStatus::OptedOut
    );

    store
        .set_consent(&sms(1), ConsentStatus::OptedIn, "keyword", "START", at(11))
        .await
        .unwrap();
    store
        .set_consent(
            &sms(1),
            ConsentStatus::OptedOut,
            "provider_error",
            "21610",
            at(12),
        )
        .await
        .unwrap();
    let ledger = store.consent_ledger(&sms(1)).await.unwrap();
    let expected = [
        ("opted_out", "keyword", "STOP", at(10)),
        ("opted_in", "keyword", "START", at(11)),
        ("opted_out", "provider_error", "21610", at(12)),
    ]
    .map(|(a, b, c, d)| (a.to_owned(), b.to_owned(), c.to_owned(), d));
    assert_eq!(ledger, expected);
    assert_eq!(
        snapshot(&store, &sms(1)).await.consent,
        ConsentStatus::OptedOut
    );
    assert!(store.consent_ledger(&sms(2)).await.unwrap().is_empty());
}

async fn flow_revisions_dedupe_by_text(store: AnyStore) {
    let first = store
        .register_flow_revision("pulse", 1, "id: pulse\nv: 1\n")
        .await
        .unwrap();
    let same = store
        .register_flow_revision("pulse", 1, "id: pulse\nv: 1\n")
        .await
        .unwrap();
    let edited = store
        .register_flow_revision("pulse", 2, "id: pulse\nv: 2\n")
        .await
        .unwrap();
    let back = store
        .register_flow_revision("pulse", 1, "id: pulse\nv: 1\n")
        .await
        .unwrap();
    assert_eq!(first, same);
    assert_eq!(first, back);
    assert_ne!(first, edited);

    let revision = store.flow_revision(edited).await.unwrap().unwrap();
    assert_eq!(
        (
            revision.flow_id.as_str(),
            revision.version,
            revision.source.as_str()
        ),
        ("pulse", 2, "id: pulse\nv: 2\n")
    );
    assert!(store.flow_revision(edited + 100).await.unwrap().is_none());
}

async fn due_conversation_is_handled_once(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1), caregiver("c2", 2)])
        .await
        .unwrap();
    let id = start(&store, &sms(1), "pulse", Some(at(12))).await;
    let later = start(&store, &sms(2), "pulse", Some(at(15))).await;

    assert!(
        store
            .due_conversations(at(11), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.due_conversations(at(12), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| (d.id, d.wake_at)).collect::<Vec<_>>(),
        [(id, at(12))]
    );

    let remind = |s: &Snapshot| {
        let conversation = s.conversation.as_ref().unwrap();
        Ok(Plan {
            writes: vec![
                Write::UpdateConversation {
                    conversation: ConvRef::Existing(conversation.id),
                    status: ConversationStatus::Active,
                    state: json!({"step": "score", "reminded": true}),
                    wake_at: None,
                },
                Write::Outbound(message(
                    &s.address,
                    OutboundKind::Program,
                    "Reminder",
                    at(12),
                )),
            ],
        })
    };
    assert!(
        store
            .handle_due_conversation(id, at(12), &remind)
            .await
            .unwrap()
    );
    assert!(
        !store
            .handle_due_conversation(id, at(12), &remind)
            .await
            .unwrap()
    );
    assert!(
        !store
            .handle_due_conversation(later, at(12), &remind)
            .await
            .unwrap(),
        "not yet due"
    );
    assert_eq!(
        store.outbound_to(&sms(1)).await.unwrap(),
        [(OutboundStatus::Queued, "Reminder".to_owned())]
    );
    let due = store.due_conversations(at(16), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [later]);
    let conversation = snapshot(&store, &sms(1)).await.conversation.unwrap();
    assert_eq!(
        conversation.state,
        json!({"step": "score", "reminded": true})
    );

    // Ending a conversation frees the address for the next flow.
    let end = |s: &Snapshot| {
        Ok(Plan {
            writes: vec![Write::UpdateConversation {
                conversation: ConvRef::Existing(s.conversation.as_ref().unwrap().id),
                status: ConversationStatus::Expired,
                state: json!({}),
                wake_at: None,
            }],
        })
    };
    assert!(
        store
            .handle_due_conversation(later, at(15), &end)
            .await
            .unwrap()
    );
    assert!(snapshot(&store, &sms(2)).await.conversation.is_none());
    start(&store, &sms(2), "training", None).await;
}

async fn racing_timers_handle_a_due_conversation_once(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let id = start(&store, &sms(1), "pulse", Some(at(12))).await;
    let remind = |s: &Snapshot| {
        Ok(Plan {
            writes: vec![
                Write::UpdateConversation {
                    conversation: ConvRef::Existing(id),
                    status: ConversationStatus::Active,
                    state: json!({}),
                    wake_at: None,
                },
                Write::Outbound(message(
                    &s.address,
                    OutboundKind::Program,
                    "Reminder",
                    at(12),
                )),
            ],
        })
    };
    // Two schedulers (two instances on PostgreSQL) reach the same timer at once.
    let (a, b) = tokio::join!(
        store.handle_due_conversation(id, at(12), &remind),
        store.handle_due_conversation(id, at(12), &remind),
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one handles it");
    assert_eq!(store.outbound_to(&sms(1)).await.unwrap().len(), 1);
}

async fn racing_retries_of_one_inbound_are_processed_once(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let reply = |s: &Snapshot| {
        Ok(Plan {
            writes: vec![Write::Outbound(message(
                &s.address,
                OutboundKind::Reply,
                "Got it",
                at(10),
            ))],
        })
    };
    let message_in = inbound(&sms(1), "4", "SM1", at(10));
    let (a, b) = tokio::join!(
        store.handle_inbound(&message_in, &reply),
        store.handle_inbound(&message_in, &reply),
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == InboundOutcome::Duplicate);
    assert_eq!(
        outcomes,
        [InboundOutcome::Processed, InboundOutcome::Duplicate]
    );
    assert_eq!(store.outbound_to(&sms(1)).await.unwrap().len(), 1);
}

async fn answers_and_escalations_are_listed_with_filters(store: AnyStore) {
    store
        .upsert_supervisors(&[supervisor("s1", 1)])
        .await
        .unwrap();
    let mut c1 = caregiver("c1", 1);
    c1.supervisor_id = Some("s1".into());
    store
        .upsert_caregivers(&[c1, caregiver("c2", 2)])
        .await
        .unwrap();
    start(&store, &sms(1), "pulse", None).await;
    start(&store, &sms(2), "pulse", None).await;

    let answer = |flow: &'static str, score: i64, anonymous: bool, escalate: bool| {
        move |s: &Snapshot| {
            let conversation = ConvRef::Existing(s.conversation.as_ref().unwrap().id);
            let mut writes = vec![Write::Answer {
                conversation,
                flow_id: flow.into(),
                step: "score".into(),
                key: "score".into(),
                value: json!(score),
                raw: score.to_string(),
                anonymous,
                free_text: false,
            }];
            if escalate {
                writes.push(Write::Escalation {
                    conversation,
                    flow_id: flow.into(),
                    step: "score".into(),
                    priority: Priority::High,
                    reason: "score 1".into(),
                    answer: "1".into(),
                    message: "Call them".into(),
                    template: String::new(),
                    context: json!({}),
                    when_taken_up: None,
                    consented: false,
                });
            }
            Ok(Plan { writes })
        }
    };
    let march = |d: u32, hour: u32| at(hour) + Duration::days(i64::from(d) - 3);
    // (caregiver, provider id, received, flow, score, anonymous, escalates)
    let replies = [
        (2, "SM1", march(3, 10), "pulse", 3, false, true),
        (1, "SM2", march(4, 10), "pulse", 1, false, true),
        (1, "SM3", march(4, 11), "training", 5, false, false),
        (2, "SM4", march(5, 9), "pulse", 2, true, false),
    ];
    for (n, id, received, flow, score, anonymous, escalates) in replies {
        let message = inbound(&sms(n), &score.to_string(), id, received);
        let decide = answer(flow, score, anonymous, escalates);
        store.handle_inbound(&message, &decide).await.unwrap();
    }

    let all = store.answers(None, None).await.unwrap();
    let rows: Vec<_> = all
        .iter()
        .map(|a| (a.caregiver.as_str(), a.flow.as_str(), a.raw.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("c2", "pulse", "3"),
            ("c1", "pulse", "1"),
            ("c1", "training", "5"),
        ],
        "an anonymous answer is not listed: it is kept apart, with nothing that names anyone"
    );
    let pulse = store.answers(Some("pulse"), None).await.unwrap();
    assert_eq!(pulse.len(), 2);
    let since = store.answers(None, Some(day(4))).await.unwrap();
    assert_eq!(
        since.iter().map(|a| a.raw.as_str()).collect::<Vec<_>>(),
        ["1", "5"]
    );
    let both = store.answers(Some("pulse"), Some(day(4))).await.unwrap();
    assert_eq!(
        both.iter().map(|a| a.raw.as_str()).collect::<Vec<_>>(),
        ["1"]
    );
    assert_eq!(both[0].answered_at, march(4, 10));

    let escalations = store.escalations(None).await.unwrap();
    let rows: Vec<_> = escalations
        .iter()
        .map(|e| {
            (
                e.caregiver.as_str(),
                e.supervisor.as_deref(),
                e.priority.as_str(),
                e.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("c2", None, "high", "open"),
            ("c1", Some("s1"), "high", "open")
        ]
    );
    assert_eq!(escalations[1].raised_at, march(4, 10));
    assert_eq!(escalations[1].message, "Call them");
    assert!(escalations[1].acknowledged_at.is_none() && escalations[1].closed_at.is_none());
    let recent = store.escalations(Some(day(4))).await.unwrap();
    assert_eq!(
        recent
            .iter()
            .map(|e| e.caregiver.as_str())
            .collect::<Vec<_>>(),
        ["c1"]
    );
}

async fn stranger_gets_one_polite_reply_a_day(store: AnyStore) {
    let stranger = sms(42);
    // The runner's rule: a number not on the roster gets one reply a day, dated by the UTC day
    // of the message it answers.
    let polite = |today: NaiveDate| {
        move |s: &Snapshot| {
            if s.caregiver.is_some() || s.stranger_replied_today {
                return Ok(Plan::default());
            }
            Ok(Plan {
                writes: vec![
                    Write::StrangerReplied { day: today },
                    Write::Outbound(message(
                        &s.address,
                        OutboundKind::Reply,
                        "Who is this?",
                        at(10),
                    )),
                ],
            })
        }
    };
    let monday = at(10);
    let tuesday = at(10) + Duration::days(1);
    for (id, when) in [
        ("SM1", monday),
        ("SM2", monday + Duration::hours(2)),
        ("SM3", tuesday),
    ] {
        let message = inbound(&stranger, "hello?", id, when);
        let outcome = store
            .handle_inbound(&message, &polite(when.date_naive()))
            .await;
        assert_eq!(outcome.unwrap(), InboundOutcome::Processed);
    }
    assert_eq!(
        store.outbound_to(&stranger).await.unwrap().len(),
        2,
        "one on Monday, one on Tuesday"
    );
}

async fn caregiver_fields_and_tags_are_replaced(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let fields: BTreeMap<String, serde_json::Value> = [("hours_wanted".to_owned(), json!(30))]
        .into_iter()
        .collect();
    let set = move |_: &Snapshot| {
        Ok(Plan {
            writes: vec![Write::CaregiverFields {
                fields: fields.clone(),
                tags: vec!["wants_hours".into()],
            }],
        })
    };
    store
        .handle_addresses(&[sms(1)], at(10), &set)
        .await
        .unwrap();
    let c1 = store.caregiver_by_external_id("c1").await.unwrap().unwrap();
    assert_eq!(c1.fields.get("hours_wanted"), Some(&json!(30)));
    assert_eq!(c1.tags, ["wants_hours"]);
    // A re-import leaves what flows set alone.
    assert_eq!(
        store
            .upsert_caregivers(&[caregiver("c1", 1)])
            .await
            .unwrap(),
        [(UpsertOutcome::Unchanged, None)]
    );
    assert_eq!(
        store
            .caregiver_by_external_id("c1")
            .await
            .unwrap()
            .unwrap()
            .tags,
        ["wants_hours"]
    );
}

async fn start_for_an_audience_skips_those_already_in_a_conversation(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1), caregiver("c2", 2), caregiver("c3", 3)])
        .await
        .unwrap();
    start(&store, &sms(2), "training", None).await;
    let rev = store
        .register_flow_revision("pulse", 1, "id: pulse\n")
        .await
        .unwrap();
    let addresses: Vec<Address> = store
        .audience(&Audience::All)
        .await
        .unwrap()
        .iter()
        .map(|c| Address::new(Channel::Sms, c.phone.clone()))
        .collect();
    let begin = |s: &Snapshot| {
        if s.conversation.is_some() {
            return Ok(Plan::default());
        }
        let mut hello = message(
            &s.address,
            OutboundKind::Program,
            "How was your week?",
            at(10),
        );
        hello.conversation = Some(ConvRef::New);
        hello.caregiver_id = s.caregiver.as_ref().map(|c| c.id);
        Ok(Plan {
            writes: vec![
                Write::CreateConversation {
                    flow_id: "pulse".into(),
                    flow_rev: rev,
                    state: json!({}),
                    wake_at: None,
                },
                Write::Outbound(hello),
            ],
        })
    };
    store
        .handle_addresses(&addresses, at(10), &begin)
        .await
        .unwrap();
    store
        .handle_addresses(&addresses, at(10), &begin)
        .await
        .unwrap();
    for (n, flow, sent) in [(1, "pulse", 1), (2, "training", 0), (3, "pulse", 1)] {
        let snapshot = snapshot(&store, &sms(n)).await;
        assert_eq!(snapshot.conversation.unwrap().flow_id, flow);
        assert_eq!(store.outbound_to(&sms(n)).await.unwrap().len(), sent);
    }
}

async fn upsert_of_100000_caregivers_is_fast(store: AnyStore) {
    let name = match store {
        AnyStore::Sqlite(_) => "SQLite",
        AnyStore::Postgres(_) => "PostgreSQL",
    };
    let rows: Vec<_> = (0..100_000)
        .map(|n| {
            let mut row = caregiver(&format!("cg{n:06}"), n);
            row.groups = vec![format!("team{}", n % 50)];
            row.consent_at = (n % 2 == 0).then(|| day(1));
            row
        })
        .collect();
    let started = Instant::now();
    let outcomes = store.upsert_caregivers(&rows).await.unwrap();
    let first = started.elapsed();
    assert!(outcomes.iter().all(|o| o.0 == UpsertOutcome::Added));

    let started = Instant::now();
    let outcomes = store.upsert_caregivers(&rows).await.unwrap();
    let again = started.elapsed();
    assert!(outcomes.iter().all(|o| o.0 == UpsertOutcome::Unchanged));
    assert_eq!(
        store
            .audience(&Audience::Group("team7".into()))
            .await
            .unwrap()
            .len(),
        2000
    );

    // Shown even when the test passes (libtest captures `println!`).
    let _ = writeln!(
        std::io::stderr(),
        "{name}: upserted 100,000 caregivers in {:.2} s (added), {:.2} s (unchanged re-import)",
        first.as_secs_f64(),
        again.as_secs_f64()
    );
}

/// A message still going out when its text is due for removal: the sweep leaves it alone (it
/// is being sent) and comes back for it once it has gone, instead of passing it for good.
async fn retention_waits_for_a_message_in_flight_and_never_skips_its_text(store: AnyStore) {
    let retention = carebot::privacy::Retention {
        days: 30,
        consent_days: 60,
    };
    let marker = "[removed after 30 days]";
    queue(
        &store,
        message(&sms(1), OutboundKind::Program, "slow one", at(9)),
    )
    .await;
    queue(
        &store,
        message(&sms(2), OutboundKind::Program, "quick one", at(9)),
    )
    .await;
    let claimed = claim_sms(&store, at(10), 10).await;
    let quick = claimed.iter().find(|m| m.body == "quick one").unwrap();
    store.mark_outbound_accepted(quick.id, "SM2").await.unwrap();

    let later = at(10) + Duration::days(31);
    store.sweep_retention(&retention, later, 100).await.unwrap();
    let bodies_to = |n| {
        let store = &store;
        async move {
            let sent = store.outbound_to(&sms(n)).await.unwrap();
            sent.into_iter().map(|(_, body)| body).collect::<Vec<_>>()
        }
    };
    assert_eq!(bodies_to(1).await, ["slow one"], "still being sent");
    assert_eq!(bodies_to(2).await, ["quick one"], "behind it in the walk");

    let slow = claimed.iter().find(|m| m.body == "slow one").unwrap();
    store.mark_outbound_accepted(slow.id, "SM1").await.unwrap();
    store
        .sweep_retention(&retention, later + Duration::minutes(10), 100)
        .await
        .unwrap();
    assert_eq!(bodies_to(1).await, [marker]);
    assert_eq!(bodies_to(2).await, [marker]);
}

/// The ledger is the one table the sweep deletes from; emptied, it must not lose track of the
/// rows written after (SQLite numbers them from 1 again).
async fn retention_empties_the_ledger_and_still_sweeps_what_comes_after(store: AnyStore) {
    let retention = carebot::privacy::Retention {
        days: 30,
        consent_days: 60,
    };
    for n in 1..=3 {
        store
            .set_consent(&sms(n), ConsentStatus::OptedOut, "keyword", "STOP", at(9))
            .await
            .unwrap();
    }
    let later = at(9) + Duration::days(61);
    store.sweep_retention(&retention, later, 100).await.unwrap();
    assert!(store.consent_ledger(&sms(1)).await.unwrap().is_empty());

    store
        .set_consent(&sms(4), ConsentStatus::OptedOut, "keyword", "STOP", later)
        .await
        .unwrap();
    assert_eq!(store.consent_ledger(&sms(4)).await.unwrap().len(), 1);
    store
        .sweep_retention(&retention, later + Duration::days(61), 100)
        .await
        .unwrap();
    assert!(
        store.consent_ledger(&sms(4)).await.unwrap().is_empty(),
        "a row written after the table was emptied is swept in its turn"
    );
}
