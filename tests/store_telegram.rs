//! The store contract Telegram relies on, on SQLite always and on PostgreSQL when
//! `CAREBOT_TEST_POSTGRES_URL` is set: linking chats (by phone and by one-time invite), a
//! caregiver's reach across channels, supervisors' chats for alerts, a conversation found and
//! moved from the other channel, and the outbox's deferrals.

mod support;

use std::sync::Mutex;

use carebot::domain::{Address, Channel, Lang};
use carebot::model::{
    Audience, ConsentStatus, InboundOutcome, InviteState, Invitee, LinkCandidate, LinkClaim,
    OutboundKind, OutboundStatus, Plan, Snapshot, Write,
};
use carebot::store::{AnyStore, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use support::{at, caregiver, inbound, phone, sms, supervisor};

support::store_tests! {
    a_shared_contact_links_the_chat_and_opts_it_in,
    a_caregiver_keeps_one_chat_and_a_chat_one_caregiver,
    a_supervisors_chat_gets_alerts_only_once_opted_in,
    an_invite_is_good_once_and_not_after_it_expires,
    a_redelivered_link_message_is_a_duplicate,
    a_conversation_is_found_from_the_other_channel_and_moves_there,
    what_a_caregiver_chose_survives_a_roster_reimport,
    stop_all_and_a_provider_opt_out_reach_other_addresses_and_end_conversations,
    claimed_rows_carry_their_conversation_and_a_deferral_is_no_attempt,
}

fn telegram(chat: &str) -> Address {
    Address::new(Channel::Telegram, chat)
}

/// Links `chat` by the caregiver's phone, opting it in, as the runner does; returns what the
/// store found for the claim.
async fn link_by_phone(store: &AnyStore, chat: &Address, phone: &str, id: &str) -> LinkCandidate {
    let found = Mutex::new(None);
    let outcome = store
        .handle_link(
            &inbound(chat, "[shared contact]", id, at(9)),
            &LinkClaim::Phone(phone.to_owned()),
            &|_: &Snapshot, candidate: &LinkCandidate| {
                *found.lock().unwrap() = Some(candidate.clone());
                let mut writes = Vec::new();
                if candidate.caregiver.is_some() || candidate.supervisor.is_some() {
                    writes.push(Write::Link {
                        caregiver_id: candidate.caregiver.as_ref().map(|c| c.id),
                        supervisor_id: candidate.supervisor.as_ref().map(|s| s.id),
                    });
                    writes.push(Write::Consent {
                        status: ConsentStatus::OptedIn,
                        source: "telegram_link".into(),
                        detail: "shared their own phone number".into(),
                    });
                }
                Ok(Plan { writes })
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome, InboundOutcome::Processed);
    found.into_inner().unwrap().unwrap()
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

async fn apply(store: &AnyStore, address: &Address, writes: Vec<Write>) -> Result<(), StoreError> {
    store
        .handle_addresses(std::slice::from_ref(address), at(8), &|_: &Snapshot| {
            Ok(Plan {
                writes: writes.clone(),
            })
        })
        .await
}

async fn only_caregiver(store: &AnyStore) -> carebot::model::Caregiver {
    let all = store.audience(&Audience::All).await.unwrap();
    assert_eq!(all.len(), 1);
    all.into_iter().next().unwrap()
}

async fn invite(
    store: &AnyStore,
    phone: &str,
    code: &str,
    expires: DateTime<Utc>,
) -> Option<Invitee> {
    store
        .create_invite(phone, Channel::Telegram, code, expires)
        .await
        .unwrap()
}

/// Redeems `code` from `chat`; returns the invite's state as the store saw it, and whether the
/// plan (which links and uses the invite when it is valid) was applied.
async fn redeem(store: &AnyStore, chat: &Address, code: &str, id: &str) -> (InviteState, bool) {
    let state = Mutex::new(None);
    let result = store
        .handle_link(
            &inbound(chat, "/start (invite)", id, at(9)),
            &LinkClaim::Invite {
                code_sha256: code.to_owned(),
            },
            &|_: &Snapshot, candidate: &LinkCandidate| {
                *state.lock().unwrap() = candidate.invite;
                let mut writes = Vec::new();
                if let Some(InviteState::Valid(id)) = candidate.invite {
                    writes.push(Write::Link {
                        caregiver_id: candidate.caregiver.as_ref().map(|c| c.id),
                        supervisor_id: candidate.supervisor.as_ref().map(|s| s.id),
                    });
                    writes.push(Write::UseInvite { id });
                }
                Ok(Plan { writes })
            },
        )
        .await;
    (state.into_inner().unwrap().unwrap(), result.is_ok())
}

// ---------------------------------------------------------------------------------------------

async fn a_shared_contact_links_the_chat_and_opts_it_in(store: AnyStore) {
    let mut c = caregiver("c1", 1);
    c.consent_at = Some(at(8).date_naive());
    store.upsert_caregivers(&[c]).await.unwrap();
    let chat = telegram("7001");
    assert!(snapshot(&store, &chat).await.caregiver.is_none());

    let found = link_by_phone(&store, &chat, &phone(1), "9:1").await;
    assert_eq!(found.caregiver.unwrap().external_id, "c1");
    assert!(found.supervisor.is_none() && found.invite.is_none());

    let snap = snapshot(&store, &chat).await;
    assert_eq!(snap.caregiver.as_ref().unwrap().external_id, "c1");
    assert_eq!(snap.consent, ConsentStatus::OptedIn);
    let reach = only_caregiver(&store).await.reach;
    assert_eq!(reach.sms, ConsentStatus::OptedIn);
    assert_eq!(
        reach.telegram,
        Some(("7001".to_owned(), ConsentStatus::OptedIn))
    );
    assert_eq!((reach.preferred, reach.last), (None, None));
    let ledger = store.consent_ledger(&chat).await.unwrap();
    assert_eq!(
        (ledger[0].0.as_str(), ledger[0].1.as_str()),
        ("opted_in", "telegram_link")
    );

    // A number on no roster finds nobody; an inactive caregiver is nobody too.
    let nobody = link_by_phone(&store, &telegram("7002"), &phone(99), "9:2").await;
    assert!(nobody.caregiver.is_none() && nobody.supervisor.is_none());
    store.deactivate_caregivers_except(&[]).await.unwrap();
    let inactive = link_by_phone(&store, &telegram("7003"), &phone(1), "9:3").await;
    assert!(inactive.caregiver.is_none());
}

async fn a_caregiver_keeps_one_chat_and_a_chat_one_caregiver(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1), caregiver("c2", 2)])
        .await
        .unwrap();
    link_by_phone(&store, &telegram("100"), &phone(1), "9:1").await;
    // c1 links again from a new account: the old chat is no longer theirs.
    link_by_phone(&store, &telegram("200"), &phone(1), "9:2").await;
    assert!(snapshot(&store, &telegram("100")).await.caregiver.is_none());
    let c1 = store.caregiver_by_external_id("c1").await.unwrap().unwrap();
    assert_eq!(c1.reach.telegram.unwrap().0, "200");
    // The chat passes to c2 (the account changed hands): it is c2's alone.
    link_by_phone(&store, &telegram("200"), &phone(2), "9:3").await;
    let snap = snapshot(&store, &telegram("200")).await;
    assert_eq!(snap.caregiver.unwrap().external_id, "c2");
    let c1 = store.caregiver_by_external_id("c1").await.unwrap().unwrap();
    assert_eq!(c1.reach.telegram, None);
}

async fn a_supervisors_chat_gets_alerts_only_once_opted_in(store: AnyStore) {
    store
        .upsert_supervisors(&[supervisor("s1", 1)])
        .await
        .unwrap();
    let mut c = caregiver("c1", 1);
    c.supervisor_id = Some("s1".into());
    store.upsert_caregivers(&[c]).await.unwrap();
    let chat = telegram("4242");
    // Linked but not opted in (a plan that links without consent): alerts stay on SMS.
    apply(
        &store,
        &chat,
        vec![Write::Link {
            caregiver_id: None,
            supervisor_id: Some(1),
        }],
    )
    .await
    .unwrap();
    let linked = store.linked_supervisor(&chat).await.unwrap().unwrap();
    assert_eq!(linked.external_id, "s1");
    let sup = only_caregiver(&store).await.supervisor.unwrap();
    assert_eq!(sup.telegram, None);

    let found = link_by_phone(&store, &chat, &phone(9001), "9:1").await;
    assert_eq!(found.supervisor.unwrap().external_id, "s1");
    assert!(found.caregiver.is_none());
    let sup = only_caregiver(&store).await.supervisor.unwrap();
    assert_eq!(sup.telegram.as_deref(), Some("4242"));
    assert!(snapshot(&store, &chat).await.caregiver.is_none());
    assert!(
        store
            .linked_supervisor(&telegram("1"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn an_invite_is_good_once_and_not_after_it_expires(store: AnyStore) {
    store
        .upsert_supervisors(&[supervisor("s1", 1)])
        .await
        .unwrap();
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let later = Utc::now() + Duration::days(7);
    assert_eq!(
        invite(&store, &phone(1), "hash-good", later).await,
        Some(Invitee::Caregiver {
            external_id: "c1".into(),
            name: "Ana".into()
        })
    );
    assert_eq!(
        invite(&store, &phone(9001), "hash-sup", later).await,
        Some(Invitee::Supervisor {
            external_id: "s1".into(),
            name: "Supervisor s1".into()
        })
    );
    assert_eq!(invite(&store, &phone(77), "hash-none", later).await, None);
    invite(&store, &phone(1), "hash-old", at(8)).await;

    let (state, applied) = redeem(&store, &telegram("1"), "hash-good", "9:1").await;
    assert!(matches!(state, InviteState::Valid(_)) && applied);
    assert_eq!(
        snapshot(&store, &telegram("1"))
            .await
            .caregiver
            .unwrap()
            .external_id,
        "c1"
    );
    assert_eq!(
        redeem(&store, &telegram("2"), "hash-good", "9:2").await,
        (InviteState::Used, true)
    );
    assert_eq!(
        redeem(&store, &telegram("2"), "hash-old", "9:3").await,
        (InviteState::Expired, true)
    );
    assert_eq!(
        redeem(&store, &telegram("2"), "no-such-hash", "9:4").await,
        (InviteState::Unknown, true)
    );
    assert!(snapshot(&store, &telegram("2")).await.caregiver.is_none());
    let (state, _) = redeem(&store, &telegram("3"), "hash-sup", "9:5").await;
    assert!(matches!(state, InviteState::Valid(_)));
    assert!(
        store
            .linked_supervisor(&telegram("3"))
            .await
            .unwrap()
            .is_some()
    );

    // Two chats racing on one code, both deciding while it was still good: the second plan to
    // use it fails, and records nothing.
    invite(&store, &phone(1), "hash-race", later).await;
    let (InviteState::Valid(id), true) = redeem(&store, &telegram("4"), "hash-race", "9:6").await
    else {
        panic!("the first chat uses the invite");
    };
    let race = store
        .handle_link(
            &inbound(&telegram("5"), "/start (invite)", "9:7", at(9)),
            &LinkClaim::Invite {
                code_sha256: "hash-race".into(),
            },
            &|_: &Snapshot, _: &LinkCandidate| {
                Ok(Plan {
                    writes: vec![Write::UseInvite { id }],
                })
            },
        )
        .await;
    assert!(matches!(race, Err(StoreError::InvalidPlan(_))), "{race:?}");
    assert!(snapshot(&store, &telegram("5")).await.caregiver.is_none());
}

async fn a_redelivered_link_message_is_a_duplicate(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    link_by_phone(&store, &telegram("1"), &phone(1), "9:1").await;
    let again = store
        .handle_link(
            &inbound(&telegram("1"), "[shared contact]", "9:1", at(9)),
            &LinkClaim::Phone(phone(1)),
            &|_: &Snapshot, _: &LinkCandidate| panic!("a duplicate is not decided again"),
        )
        .await
        .unwrap();
    assert_eq!(again, InboundOutcome::Duplicate);
    assert_eq!(store.consent_ledger(&telegram("1")).await.unwrap().len(), 1);
}

async fn a_conversation_is_found_from_the_other_channel_and_moves_there(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let chat = telegram("7001");
    link_by_phone(&store, &chat, &phone(1), "9:1").await;
    let rev = store
        .register_flow_revision("pulse", 1, "id: pulse\n")
        .await
        .unwrap();
    apply(
        &store,
        &sms(1),
        vec![Write::CreateConversation {
            flow_id: "pulse".into(),
            flow_rev: rev,
            state: json!({"step": "score"}),
            wake_at: Some(at(12)),
        }],
    )
    .await
    .unwrap();
    // Asked by SMS, seen from Telegram.
    let conversation = snapshot(&store, &chat).await.conversation.unwrap();
    assert_eq!(conversation.channel, Channel::Sms);
    apply(
        &store,
        &chat,
        vec![Write::MoveConversation {
            conversation: conversation.id,
        }],
    )
    .await
    .unwrap();
    let moved = snapshot(&store, &chat).await.conversation.unwrap();
    assert_eq!(
        (moved.id, moved.channel),
        (conversation.id, Channel::Telegram)
    );
    assert_eq!(moved.address, "7001");
    // Its timer now wakes it on Telegram, and SMS still sees it as the caregiver's.
    assert_eq!(store.due_conversations(at(12), 10).await.unwrap().len(), 1);
    assert_eq!(
        snapshot(&store, &sms(1))
            .await
            .conversation
            .unwrap()
            .channel,
        Channel::Telegram
    );
    // A stranger's snapshot never borrows anyone's conversation.
    assert!(
        snapshot(&store, &telegram("9"))
            .await
            .conversation
            .is_none()
    );
}

async fn what_a_caregiver_chose_survives_a_roster_reimport(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let chat = telegram("7001");
    link_by_phone(&store, &chat, &phone(1), "9:1").await;
    apply(
        &store,
        &chat,
        vec![
            Write::CaregiverChannel {
                channel: Channel::Telegram,
            },
            Write::CaregiverLanguage { language: Lang::Es },
        ],
    )
    .await
    .unwrap();
    assert!(
        store
            .set_preferred_channel(&phone(1), Some(Channel::Sms))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_preferred_channel(&phone(2), Some(Channel::Sms))
            .await
            .unwrap()
    );
    // The roster still says English: re-importing it changes nothing and keeps her choice.
    let outcome = store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    assert_eq!(outcome[0].0, carebot::model::UpsertOutcome::Unchanged);
    let c = only_caregiver(&store).await;
    assert_eq!(c.language, Lang::Es);
    assert_eq!(c.reach.last, Some(Channel::Telegram));
    assert_eq!(c.reach.preferred, Some(Channel::Sms));
    store.set_preferred_channel(&phone(1), None).await.unwrap();
    assert_eq!(only_caregiver(&store).await.reach.preferred, None);
}

async fn stop_all_and_a_provider_opt_out_reach_other_addresses_and_end_conversations(
    store: AnyStore,
) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let chat = telegram("7001");
    link_by_phone(&store, &chat, &phone(1), "9:1").await;
    apply(
        &store,
        &sms(1),
        vec![Write::ConsentAt {
            address: chat.clone(),
            status: ConsentStatus::OptedOut,
            source: "keyword".into(),
            detail: "STOP ALL (on sms)".into(),
        }],
    )
    .await
    .unwrap();
    let ledger = store.consent_ledger(&chat).await.unwrap();
    assert_eq!(
        (ledger[1].0.as_str(), ledger[1].2.as_str()),
        ("opted_out", "STOP ALL (on sms)")
    );
    assert_eq!(
        only_caregiver(&store).await.reach.telegram,
        Some(("7001".to_owned(), ConsentStatus::OptedOut))
    );

    // A conversation waiting on an address the provider says is gone ends with the opt-out.
    let rev = store
        .register_flow_revision("pulse", 1, "id: pulse\n")
        .await
        .unwrap();
    apply(
        &store,
        &sms(1),
        vec![Write::CreateConversation {
            flow_id: "pulse".into(),
            flow_rev: rev,
            state: json!({"step": "score"}),
            wake_at: Some(at(12)),
        }],
    )
    .await
    .unwrap();
    store
        .set_consent(
            &sms(1),
            ConsentStatus::OptedOut,
            "provider_error",
            "twilio 21610: unsubscribed recipient",
            at(10),
        )
        .await
        .unwrap();
    assert!(snapshot(&store, &sms(1)).await.conversation.is_none());
    assert!(
        store
            .due_conversations(at(12), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn claimed_rows_carry_their_conversation_and_a_deferral_is_no_attempt(store: AnyStore) {
    store
        .upsert_caregivers(&[caregiver("c1", 1)])
        .await
        .unwrap();
    let chat = telegram("7001");
    link_by_phone(&store, &chat, &phone(1), "9:1").await;
    let rev = store
        .register_flow_revision("pulse", 1, "id: pulse\n")
        .await
        .unwrap();
    let question = carebot::model::NewOutbound {
        address: chat.clone(),
        caregiver_id: None,
        conversation: Some(carebot::model::ConvRef::New),
        kind: OutboundKind::Reply,
        body: "How was your week?".into(),
        encoding: "gsm7".into(),
        segments: 1,
        not_before: at(8),
        buttons: vec![("1".into(), "q:abcd1234:1".into())],
    };
    apply(
        &store,
        &chat,
        vec![
            Write::CreateConversation {
                flow_id: "pulse".into(),
                flow_rev: rev,
                state: json!({"step": "score"}),
                wake_at: None,
            },
            Write::Outbound(question),
        ],
    )
    .await
    .unwrap();
    let conversation = snapshot(&store, &chat).await.conversation.unwrap().id;
    let claimed = store
        .claim_outbound(Channel::Telegram, at(9), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].conversation_id, Some(conversation));
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(
        claimed[0].buttons,
        [("1".to_owned(), "q:abcd1234:1".to_owned())]
    );
    // SMS dispatchers never see Telegram rows.
    assert!(
        store
            .claim_outbound(Channel::Sms, at(9), 10)
            .await
            .unwrap()
            .is_empty()
    );

    store
        .defer_outbound(claimed[0].id, at(10), "paced")
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound(Channel::Telegram, at(9), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_outbound(Channel::Telegram, at(10), 10)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 1, "a deferral is not an attempt");
    assert_eq!(
        store.outbound_to(&chat).await.unwrap()[0].0,
        OutboundStatus::Sending
    );
}
