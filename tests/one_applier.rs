//! One plan, one applier (issue 17): every path that writes a kind of row writes the same
//! columns with the same values. The same writes go through the general transaction, SQLite's
//! group writer, a start batch and a shift offer; the rows they leave are read back with plain
//! SQL, every column of the table as text, and compared column by column. A path that drops a
//! column (or encodes one differently) fails here, naming the path and the column.

mod support;

use std::collections::BTreeMap;

use carebot::domain::{Address, Channel};
use carebot::model::{
    Audience, ConvRef, ConversationStatus, NewOutbound, NewShiftOffer, NewStart, OutboundKind,
    Plan, ShiftPlan, ShiftSnapshot, ShiftTrigger, ShiftWrite, Snapshot, StartOrigin, StartOutcome,
    StartSnapshot, Write,
};
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::{Connection, PgConnection, Row, SqliteConnection};
use support::{TestStore, at, caregiver, inbound, phone, sms};

#[tokio::test]
async fn sqlite() {
    every_path_writes_the_same_rows(&support::sqlite().await).await;
}

#[tokio::test]
async fn postgres() {
    let Some(db) = support::postgres().await else {
        return;
    };
    every_path_writes_the_same_rows(&db).await;
}

/// The instant every path writes at, so that their timestamps compare equal.
fn now() -> DateTime<Utc> {
    at(10)
}

/// The flow revision all conversations run.
const FLOW: &str = "same";

/// A message as every path queues it: every column given a value unlike its default, so that
/// a path that leaves one out writes something else.
fn message(address: &Address, caregiver_id: i64, conversation: Option<ConvRef>) -> NewOutbound {
    NewOutbound {
        address: address.clone(),
        caregiver_id: Some(caregiver_id),
        conversation,
        kind: OutboundKind::Reply,
        body: "Gracias — ¿algo más?".into(),
        encoding: "ucs2".into(),
        segments: 2,
        not_before: at(11),
        buttons: vec![("Yes".into(), "1".into())],
    }
}

/// A conversation's creation and its first update, as a start's plan and a direct one write.
fn create(rev: i64, s: &Snapshot) -> Vec<Write> {
    let id = s.caregiver.as_ref().unwrap().id;
    vec![
        Write::CreateConversation {
            flow_id: FLOW.into(),
            flow_rev: rev,
            state: json!({"step": "q1"}),
            wake_at: Some(at(12)),
        },
        Write::Outbound(message(&s.address, id, Some(ConvRef::New))),
        Write::UpdateConversation {
            conversation: ConvRef::New,
            status: ConversationStatus::Active,
            state: json!({"step": "q2"}),
            wake_at: Some(at(13)),
        },
    ]
}

/// A reply's writes: an answer, a message and the conversation's next step (or its end).
fn reply(s: &Snapshot, ends: bool) -> Vec<Write> {
    let conv = s.conversation.as_ref().expect("a conversation").id;
    let id = s.caregiver.as_ref().unwrap().id;
    vec![
        Write::Answer {
            conversation: ConvRef::Existing(conv),
            flow_id: FLOW.into(),
            step: "q2".into(),
            key: "help".into(),
            value: json!("more hours"),
            raw: "more hours".into(),
            anonymous: false,
            free_text: true,
        },
        Write::Outbound(message(&s.address, id, Some(ConvRef::Existing(conv)))),
        Write::UpdateConversation {
            conversation: ConvRef::Existing(conv),
            status: if ends {
                ConversationStatus::Completed
            } else {
                ConversationStatus::Active
            },
            state: json!({"step": "q3"}),
            wake_at: (!ends).then(|| at(14)),
        },
    ]
}

// Caregivers by path: 1 and 3 answer on the general path (their plans go alone), 2 and 4 in a
// group on SQLite (and on the general path on PostgreSQL, which has no group writer); 1 and 2
// stay in their conversation, 3 and 4 end it. 5's conversation is created directly, 6's by a
// start; 7 is offered a shift.
const GENERAL: [u32; 2] = [1, 3];
const GROUPED: [u32; 2] = [2, 4];
const DIRECT: u32 = 5;
const STARTED: u32 = 6;
const SHIFT: u32 = 7;

async fn every_path_writes_the_same_rows(db: &TestStore) {
    let store = &db.store;
    let records: Vec<_> = (1..=SHIFT)
        .map(|n| caregiver(&format!("c{n}"), n))
        .collect();
    store.upsert_caregivers(&records).await.unwrap();
    let rev = store
        .register_flow_revision(FLOW, 1, "id: same\n")
        .await
        .unwrap();
    let ids: BTreeMap<u32, i64> = {
        let mut ids = BTreeMap::new();
        for n in 1..=SHIFT {
            let c = store.caregiver_by_external_id(&format!("c{n}")).await;
            ids.insert(n, c.unwrap().unwrap().id);
        }
        ids
    };

    // Direct creations (the general path), then the replies.
    let direct: Vec<Address> = [1, 2, 3, 4, DIRECT].map(sms).into();
    let decide = |s: &Snapshot| {
        Ok(Plan {
            writes: create(rev, s),
        })
    };
    store
        .handle_addresses(&direct, now(), &decide)
        .await
        .unwrap();
    replies(store).await;
    start(store, rev).await;
    shift(store, ids[&SHIFT]).await;

    let outbound = read(&db.url, "outbound_messages").await;
    let conversations = read(&db.url, "conversations").await;
    let answers = read(&db.url, "answers").await;
    let of = |rows: &[Columns], n: u32| -> Vec<Columns> {
        let id = ids[&n].to_string();
        rows.iter()
            .filter(|r| r["caregiver_id"].as_deref() == Some(id.as_str()))
            .cloned()
            .collect()
    };

    // Outbound messages: the direct creation's is the reference for every other path.
    let reference = of(&outbound, DIRECT);
    assert_eq!(reference.len(), 1, "{reference:?}");
    let reference = &reference[0];
    assert!(reference["conversation_id"].is_some());
    for n in GENERAL.into_iter().chain(GROUPED) {
        let rows = of(&outbound, n);
        assert_eq!(
            rows.len(),
            2,
            "caregiver {n}: a creation's message and a reply's"
        );
        for row in &rows {
            same(reference, row, &format!("outbound of caregiver {n}"), &[]);
        }
    }
    let started = of(&outbound, STARTED);
    assert_eq!(started.len(), 1, "{started:?}");
    same(reference, &started[0], "outbound of a start batch", &[]);
    let offered = of(&outbound, SHIFT);
    assert_eq!(offered.len(), 1, "{offered:?}");
    same(
        reference,
        &offered[0],
        "outbound of a shift offer",
        &["conversation_id"],
    );
    assert_eq!(offered[0]["conversation_id"], None);

    // Conversations: created directly or by a start, the same row but for the start's own
    // columns; updated on the general path or in a group, the same row.
    let direct = &of(&conversations, DIRECT)[0];
    let started = &of(&conversations, STARTED)[0];
    same(
        direct,
        started,
        "a start's conversation",
        &["program", "start_id"],
    );
    assert_eq!(direct["program"], None);
    assert_eq!(direct["start_id"], None);
    assert_eq!(started["program"].as_deref(), Some("survey"));
    assert!(started["start_id"].is_some());
    for (general, grouped) in GENERAL.into_iter().zip(GROUPED) {
        let (general, grouped) = (
            &of(&conversations, general)[0],
            &of(&conversations, grouped)[0],
        );
        same(general, grouped, "a conversation updated in a group", &[]);
    }
    assert_eq!(of(&conversations, 1)[0]["ended_at"], None);
    assert!(of(&conversations, 3)[0]["ended_at"].is_some());

    // Answers: on the general path and in a group, the same row.
    for (general, grouped) in GENERAL.into_iter().zip(GROUPED) {
        let (general, grouped) = (&of(&answers, general)[0], &of(&answers, grouped)[0]);
        assert!(general["conversation_id"].is_some());
        same(general, grouped, "an answer written in a group", &[]);
    }
}

/// The replies of caregivers 1 to 4: those of 1 and 3 carry a write no group takes, so they go
/// alone; those of 2 and 4 arrive at once and, on SQLite, are written by the group writer.
async fn replies(store: &AnyStore) {
    for n in GENERAL {
        let message = inbound(&sms(n), "more hours", &format!("SM{n}"), now());
        let decide = move |s: &Snapshot| {
            let mut writes = reply(s, n == 3);
            writes.push(Write::CaregiverChannel {
                channel: Channel::Sms,
            });
            Ok(Plan { writes })
        };
        store.handle_inbound(&message, &decide).await.unwrap();
    }
    let tasks: Vec<_> = GROUPED
        .into_iter()
        .map(|n| {
            let store = store.clone();
            let message = inbound(&sms(n), "more hours", &format!("SM{n}"), now());
            tokio::spawn(async move {
                let decide = move |s: &Snapshot| {
                    Ok(Plan {
                        writes: reply(s, n == 4),
                    })
                };
                store.handle_inbound(&message, &decide).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

/// A start for caregiver 6, run as one batch.
async fn start(store: &AnyStore, rev: i64) {
    let new = NewStart {
        flow_id: FLOW.into(),
        program: "survey".into(),
        priority: 0,
        audience: Audience::Phones(vec![phone(STARTED)]),
        timezone: None,
        vars: BTreeMap::new(),
        origin: StartOrigin::Cli,
        dedupe_key: None,
        run_at: now(),
    };
    let id = store.create_start(&new, now()).await.unwrap();
    let lease = now() + Duration::minutes(5);
    assert!(store.claim_start(id, "A", now(), lease).await.unwrap());
    let decide = |s: &StartSnapshot| {
        let writes = create(rev, &s.snapshot);
        Ok((Plan { writes }, StartOutcome::Started))
    };
    let batch = store
        .run_start_batch(id, "A", now(), lease, 10, &decide)
        .await
        .unwrap();
    assert_eq!(batch.handled, 1);
}

/// A shift offered to caregiver 7, who is texted from the offer's transaction.
async fn shift(store: &AnyStore, caregiver_id: i64) {
    let offer = store
        .create_shift_offer(&NewShiftOffer {
            client_ref: "client 1".into(),
            location: "Elm St".into(),
            notes: String::new(),
            branch: "north".into(),
            timezone: "America/Chicago".into(),
            starts_at: at(20),
            ends_at: at(23),
            expires_at: at(19),
            audience: "all".into(),
            supervisor: None,
            wave_size: 0,
            wave_minutes: 0,
            created_at: now(),
        })
        .await
        .unwrap();
    let address = sms(SHIFT);
    let decide = |_: &ShiftSnapshot| {
        Ok(ShiftPlan {
            writes: vec![ShiftWrite::Outbound(message(&address, caregiver_id, None))],
        })
    };
    assert!(
        store
            .handle_shift_offer(offer.id, ShiftTrigger::Create, now(), &[], &decide)
            .await
            .unwrap()
    );
}

/// A row as text, column by column (`None` for NULL).
type Columns = BTreeMap<String, Option<String>>;

/// Every column of every row of `table`, cast to text by the database itself.
async fn read(url: &str, table: &str) -> Vec<Columns> {
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url).await.unwrap();
        let columns: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(select(table, &columns)))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.iter()
            .map(|r| as_text(&columns, |i| r.get(i)))
            .collect()
    } else {
        let mut conn = PgConnection::connect(url).await.unwrap();
        let columns: Vec<(String,)> = sqlx::query_as(
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(select(table, &columns)))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.iter()
            .map(|r| as_text(&columns, |i| r.get(i)))
            .collect()
    }
}

fn select(table: &str, columns: &[(String,)]) -> String {
    assert!(!columns.is_empty(), "no columns in {table}");
    let list: Vec<String> = columns
        .iter()
        .map(|(c,)| format!("CAST({c} AS TEXT)"))
        .collect();
    format!("SELECT {} FROM {table} ORDER BY id", list.join(", "))
}

fn as_text(columns: &[(String,)], get: impl Fn(usize) -> Option<String>) -> Columns {
    columns
        .iter()
        .enumerate()
        .map(|(i, (c,))| (c.clone(), get(i)))
        .collect()
}

/// Asserts that `row` equals `reference` in every column but its identity (`id`, the
/// caregiver and address it is for, the conversation it belongs to: only whether it has one)
/// and `except`.
fn same(reference: &Columns, row: &Columns, what: &str, except: &[&str]) {
    const IDENTITY: [&str; 3] = ["id", "caregiver_id", "address"];
    assert_eq!(
        reference.keys().collect::<Vec<_>>(),
        row.keys().collect::<Vec<_>>()
    );
    for (column, expected) in reference {
        if IDENTITY.contains(&column.as_str()) || except.contains(&column.as_str()) {
            continue;
        }
        let (expected, actual) = if column == "conversation_id" {
            (
                expected.as_ref().map(|_| "some conversation".to_owned()),
                row[column].as_ref().map(|_| "some conversation".to_owned()),
            )
        } else {
            (expected.clone(), row[column].clone())
        };
        assert_eq!(actual, expected, "{what}: column {column} differs");
    }
}
