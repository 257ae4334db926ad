//! Many inbound messages at once, as a burst of webhooks brings them: on SQLite they share a
//! transaction (group commit), on PostgreSQL each has its own; either way each message is
//! recorded exactly once, decided on a snapshot that includes everything committed before it,
//! and a message whose decision or plan fails records nothing and takes no other down with it.

mod support;

use carebot::domain::Address;
use carebot::model::{
    ConvRef, ConversationStatus, DecideError, InboundOutcome, NewOutbound, OutboundKind, Plan,
    Snapshot, Write,
};
use carebot::store::{AnyStore, Store, StoreError};
use serde_json::json;
use support::{at, caregiver, inbound, sms};

support::store_tests! {
    a_burst_is_recorded_once_each_in_order_per_caregiver,
    a_failing_plan_in_a_burst_fails_alone,
    a_plan_beyond_the_group_s_statements_is_recorded_once,
    a_burst_that_ends_conversations_leaves_them_ended,
    a_burst_of_retries_of_earlier_messages_records_nothing_twice,
}

const CAREGIVERS: u32 = 40;

/// What the test flow does with a reply: "ok" counts it, "boom" fails to decide, "bad" names a
/// conversation that does not exist, "jump" writes the conversation twice (more than a group
/// writes for one message, so on SQLite it goes alone), "done" stores the answer and ends the
/// conversation.
fn decide(text: &str, s: &Snapshot) -> Result<Plan, DecideError> {
    let conv = s
        .conversation
        .as_ref()
        .ok_or_else(|| DecideError::Refused("no conversation".into()))?;
    let n = conv.state["n"].as_i64().unwrap_or(0);
    match text {
        "done" => Ok(Plan {
            writes: vec![
                Write::Answer {
                    conversation: ConvRef::Existing(conv.id),
                    flow_id: "count".into(),
                    step: "count".into(),
                    key: "n".into(),
                    value: json!(n + 1),
                    raw: text.into(),
                    anonymous: false,
                    free_text: false,
                },
                Write::UpdateConversation {
                    conversation: ConvRef::Existing(conv.id),
                    status: ConversationStatus::Completed,
                    state: json!({"n": n + 1}),
                    wake_at: None,
                },
            ],
        }),
        "boom" => Err(DecideError::Refused("the flow broke".into())),
        "jump" => Ok(Plan {
            writes: [n + 1, (n + 1) * 100]
                .map(|n| Write::UpdateConversation {
                    conversation: ConvRef::Existing(conv.id),
                    status: ConversationStatus::Active,
                    state: json!({ "n": n }),
                    wake_at: None,
                })
                .into(),
        }),
        "bad" => Ok(Plan {
            writes: vec![Write::UpdateConversation {
                conversation: ConvRef::Existing(i64::MAX),
                status: ConversationStatus::Active,
                state: json!({"n": n + 1}),
                wake_at: None,
            }],
        }),
        _ => Ok(Plan {
            writes: vec![
                Write::Answer {
                    conversation: ConvRef::Existing(conv.id),
                    flow_id: "count".into(),
                    step: "count".into(),
                    key: "n".into(),
                    value: json!(n + 1),
                    raw: text.into(),
                    anonymous: false,
                    free_text: false,
                },
                Write::Outbound(NewOutbound {
                    address: s.address.clone(),
                    caregiver_id: s.caregiver.as_ref().map(|c| c.id),
                    conversation: Some(ConvRef::Existing(conv.id)),
                    kind: OutboundKind::Reply,
                    body: format!("That makes {}", n + 1),
                    encoding: "gsm7".into(),
                    segments: 1,
                    not_before: at(10),
                    buttons: Vec::new(),
                }),
                Write::UpdateConversation {
                    conversation: ConvRef::Existing(conv.id),
                    status: ConversationStatus::Active,
                    state: json!({"n": n + 1}),
                    wake_at: None,
                },
            ],
        }),
    }
}

/// Caregivers 0..CAREGIVERS, each in a conversation with `n = 0`.
async fn roster(store: &AnyStore) {
    let records: Vec<_> = (0..CAREGIVERS)
        .map(|i| caregiver(&format!("c{i}"), i))
        .collect();
    store.upsert_caregivers(&records).await.unwrap();
    let rev = store
        .register_flow_revision("count", 1, "id: count\n")
        .await
        .unwrap();
    let addresses: Vec<Address> = (0..CAREGIVERS).map(sms).collect();
    store
        .handle_addresses(&addresses, at(8), &|_: &Snapshot| {
            Ok(Plan {
                writes: vec![Write::CreateConversation {
                    flow_id: "count".into(),
                    flow_rev: rev,
                    state: json!({"n": 0}),
                    wake_at: None,
                }],
            })
        })
        .await
        .unwrap();
}

/// Sends every `(caregiver, text, sid)` at once, each from a task of its own, and returns the
/// outcomes in the same order.
async fn burst(
    store: &AnyStore,
    messages: &[(u32, &str, &str)],
) -> Vec<Result<InboundOutcome, StoreError>> {
    let tasks: Vec<_> = messages
        .iter()
        .map(|&(who, text, sid)| {
            let store = store.clone();
            let message = inbound(&sms(who), text, sid, at(10));
            let text = text.to_owned();
            tokio::spawn(async move {
                let decide = move |s: &Snapshot| decide(&text, s);
                store.handle_inbound(&message, &decide).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}

/// The message ids `SM0`, `SM1`…: one per caregiver.
fn sids() -> Vec<String> {
    (0..CAREGIVERS).map(|i| format!("SM{i}")).collect()
}

/// One message from every caregiver `i`, saying `text(i)`, with the id `sids[i]`.
fn one_each(sids: &[String], text: impl Fn(u32) -> &'static str) -> Vec<(u32, &'static str, &str)> {
    (0..CAREGIVERS)
        .map(|i| (i, text(i), sids[i as usize].as_str()))
        .collect()
}

/// The count stored in each caregiver's conversation.
async fn counts(store: &AnyStore) -> Vec<i64> {
    let mut counts = Vec::new();
    for i in 0..CAREGIVERS {
        let seen = std::sync::Mutex::new(0);
        store
            .handle_addresses(&[sms(i)], at(8), &|s: &Snapshot| {
                *seen.lock().unwrap() = s.conversation.as_ref().unwrap().state["n"]
                    .as_i64()
                    .unwrap();
                Ok(Plan::default())
            })
            .await
            .unwrap();
        counts.push(seen.into_inner().unwrap());
    }
    counts
}

async fn a_burst_is_recorded_once_each_in_order_per_caregiver(store: AnyStore) {
    roster(&store).await;
    let sids = sids();
    let mut messages = one_each(&sids, |_| "ok");
    // Caregiver 0 writes twice; Twilio retries SM1 while the original is in flight; caregiver
    // 2's second message breaks the flow.
    messages.push((0, "ok", "SM0-again"));
    messages.push((1, "ok", "SM1"));
    messages.push((2, "boom", "SM2-boom"));
    let outcomes = burst(&store, &messages).await;

    let n = CAREGIVERS as usize;
    for (i, outcome) in outcomes[..n].iter().enumerate() {
        if i != 1 {
            assert_eq!(outcome.as_ref().unwrap(), &InboundOutcome::Processed, "{i}");
        }
    }
    assert_eq!(outcomes[n].as_ref().unwrap(), &InboundOutcome::Processed);
    let mut retried = [
        *outcomes[1].as_ref().unwrap(),
        *outcomes[n + 1].as_ref().unwrap(),
    ];
    retried.sort_by_key(|o| *o == InboundOutcome::Duplicate);
    assert_eq!(
        retried,
        [InboundOutcome::Processed, InboundOutcome::Duplicate]
    );
    assert!(matches!(outcomes[n + 2], Err(StoreError::Decide(_))));

    // Caregiver 0's second message was decided on the first one's state.
    let mut expected = vec![1; n];
    expected[0] = 2;
    assert_eq!(counts(&store).await, expected);
    assert_eq!(store.answers(None, None).await.unwrap().len(), n + 1);
    assert_eq!(store.outbound_to(&sms(0)).await.unwrap().len(), 2);
    assert_eq!(store.outbound_to(&sms(1)).await.unwrap().len(), 1);
    // The broken message was not recorded: sent again, it is new, not a duplicate.
    let again = burst(&store, &[(2, "ok", "SM2-boom")]).await;
    assert_eq!(again[0].as_ref().unwrap(), &InboundOutcome::Processed);
}

async fn a_failing_plan_in_a_burst_fails_alone(store: AnyStore) {
    roster(&store).await;
    let sids = sids();
    let mut messages = one_each(&sids, |_| "ok");
    messages.push((3, "bad", "SM3-bad"));
    let outcomes = burst(&store, &messages).await;

    let n = CAREGIVERS as usize;
    for outcome in &outcomes[..n] {
        assert_eq!(outcome.as_ref().unwrap(), &InboundOutcome::Processed);
    }
    assert!(
        matches!(outcomes[n], Err(StoreError::InvalidPlan(_))),
        "{:?}",
        outcomes[n]
    );
    assert_eq!(counts(&store).await, vec![1; n]);
    assert_eq!(store.answers(None, None).await.unwrap().len(), n);
    let again = burst(&store, &[(3, "ok", "SM3-bad")]).await;
    assert_eq!(again[0].as_ref().unwrap(), &InboundOutcome::Processed);
}

async fn a_plan_beyond_the_group_s_statements_is_recorded_once(store: AnyStore) {
    roster(&store).await;
    let sids = sids();
    let mut messages = one_each(&sids, |i| if i % 4 == 0 { "jump" } else { "ok" });
    // A retry of a message that goes alone, in the same burst.
    messages.push((4, "jump", "SM4"));
    let outcomes = burst(&store, &messages).await;

    let n = CAREGIVERS as usize;
    for (i, outcome) in outcomes[..n].iter().enumerate() {
        if i != 4 {
            assert_eq!(outcome.as_ref().unwrap(), &InboundOutcome::Processed, "{i}");
        }
    }
    // Whichever of the two came first was processed; the other is its duplicate.
    let mut retried = [
        *outcomes[4].as_ref().unwrap(),
        *outcomes[n].as_ref().unwrap(),
    ];
    retried.sort_by_key(|o| *o == InboundOutcome::Duplicate);
    assert_eq!(
        retried,
        [InboundOutcome::Processed, InboundOutcome::Duplicate]
    );
    let expected: Vec<i64> = (0..CAREGIVERS)
        .map(|i| if i % 4 == 0 { 100 } else { 1 })
        .collect();
    assert_eq!(counts(&store).await, expected);
    assert_eq!(store.answers(None, None).await.unwrap().len(), n * 3 / 4);
}

/// A grouped step that ends its conversation (on SQLite the group writes the status change;
/// a step that stays active writes less): the conversation is over, and a later message of
/// the same caregiver in the same burst finds none to answer.
async fn a_burst_that_ends_conversations_leaves_them_ended(store: AnyStore) {
    roster(&store).await;
    let sids = sids();
    let mut messages = one_each(&sids, |i| if i % 2 == 0 { "done" } else { "ok" });
    messages.push((0, "ok", "SM0-after"));
    let outcomes = burst(&store, &messages).await;

    let n = CAREGIVERS as usize;
    for (i, outcome) in outcomes[..n].iter().enumerate() {
        assert_eq!(outcome.as_ref().unwrap(), &InboundOutcome::Processed, "{i}");
    }
    assert!(
        matches!(&outcomes[n], Err(StoreError::Decide(e)) if e.to_string() == "no conversation"),
        "{:?}",
        outcomes[n]
    );
    for i in 0..CAREGIVERS {
        let active = std::sync::Mutex::new(None);
        store
            .handle_addresses(&[sms(i)], at(8), &|s: &Snapshot| {
                *active.lock().unwrap() =
                    Some(s.conversation.as_ref().map(|c| c.state["n"].clone()));
                Ok(Plan::default())
            })
            .await
            .unwrap();
        let expected = if i % 2 == 0 { None } else { Some(json!(1)) };
        assert_eq!(
            active.into_inner().unwrap(),
            Some(expected),
            "caregiver {i}"
        );
    }
    assert_eq!(store.answers(None, None).await.unwrap().len(), n);
}

/// The second burst of two: every message of the first again (Twilio retrying after a lost
/// answer), half the caregivers' next reply, and a caregiver with no conversation. On SQLite
/// the retries and that caregiver's message are read in the group's first round, from what
/// the first burst committed; the next replies, in a later round of the same transaction.
async fn a_burst_of_retries_of_earlier_messages_records_nothing_twice(store: AnyStore) {
    roster(&store).await;
    let without = CAREGIVERS + 1;
    store
        .upsert_caregivers(&[caregiver("c-without", without)])
        .await
        .unwrap();
    let sids = sids();
    let first = one_each(&sids, |_| "ok");
    let outcomes = burst(&store, &first).await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().unwrap() == &InboundOutcome::Processed)
    );

    let next: Vec<String> = (0..CAREGIVERS).map(|i| format!("SM{i}-next")).collect();
    let mut second = first.clone();
    second.extend((0..CAREGIVERS / 2).map(|i| (i * 2, "ok", next[i as usize].as_str())));
    second.push((without, "ok", "SM-without"));
    let outcomes = burst(&store, &second).await;

    let n = CAREGIVERS as usize;
    for (i, outcome) in outcomes[..n].iter().enumerate() {
        assert_eq!(outcome.as_ref().unwrap(), &InboundOutcome::Duplicate, "{i}");
    }
    for (i, outcome) in outcomes[n..n + n / 2].iter().enumerate() {
        assert_eq!(outcome.as_ref().unwrap(), &InboundOutcome::Processed, "{i}");
    }
    assert!(
        matches!(&outcomes[n + n / 2], Err(StoreError::Decide(e)) if e.to_string() == "no conversation"),
        "{:?}",
        outcomes[n + n / 2]
    );
    let expected: Vec<i64> = (0..CAREGIVERS).map(|i| 2 - i64::from(i % 2)).collect();
    assert_eq!(counts(&store).await, expected);
    assert_eq!(store.answers(None, None).await.unwrap().len(), n + n / 2);
    assert_eq!(store.outbound_to(&sms(0)).await.unwrap().len(), 2);
    assert_eq!(store.outbound_to(&sms(1)).await.unwrap().len(), 1);
    assert!(store.outbound_to(&sms(without)).await.unwrap().is_empty());
}
