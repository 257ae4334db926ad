//! Upgrading a SQLite file written by an earlier carebot: migration 0010 rebuilds
//! `outbound_messages` and `conversations` (the same CHECKs, without IN lists). Every message
//! and conversation survives it, and so do their constraints and the references other tables
//! hold to them.

use std::str::FromStr;

use carebot::domain::{Address, Channel};
use carebot::model::{OutboundStatus, Plan, Snapshot};
use carebot::store::{AnyStore, Store};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

const PHONE: &str = "+13125550101";

async fn pool(url: &str) -> SqlitePool {
    let options = SqliteConnectOptions::from_str(url)
        .unwrap()
        .create_if_missing(true)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

/// An outbound row as raw SQL, with the given id, kind, status and caregiver.
fn insert(id: i64, kind: &str, status: &str, caregiver: Option<i64>) -> String {
    let caregiver = caregiver.map_or("NULL".to_owned(), |c| c.to_string());
    format!(
        "INSERT INTO outbound_messages (id, channel, address, caregiver_id, kind, body, \
         encoding, segments, status, not_before, created_at, updated_at) \
         VALUES ({id}, 'sms', '{PHONE}', {caregiver}, '{kind}', 'Message {id}', 'gsm7', 1, \
         '{status}', '2025-03-01T10:00:00.000000Z', '2025-03-01T10:00:00.000000Z', \
         '2025-03-01T10:00:00.000000Z')"
    )
}

#[tokio::test]
async fn an_outbox_and_conversations_written_before_the_rebuild_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("carebot.db").display());
    let old = pool(&url).await;
    sqlx::migrate!("migrations/sqlite")
        .run_to(9, &old)
        .await
        .unwrap();
    let at = "'2025-03-01T10:00:00.000000Z'";
    for sql in [
        format!(
            "INSERT INTO caregivers (id, external_id, first_name, last_name, phone, language, \
             timezone, branch, created_at, updated_at) VALUES (1, 'c1', 'Ana', 'Lopez', \
             '{PHONE}', 'en', 'America/Chicago', 'north', {at}, {at})"
        ),
        format!(
            "INSERT INTO flow_revisions (id, flow_id, version, sha256, source, created_at) \
             VALUES (1, 'count', 1, 'x', 'id: count', {at})"
        ),
        format!(
            "INSERT INTO conversations (id, caregiver_id, channel, address, flow_id, flow_rev, \
             status, state, started_at, updated_at) VALUES (1, 1, 'sms', '{PHONE}', 'count', 1, \
             'active', '{{\"n\": 7}}', {at}, {at})"
        ),
        insert(1, "reply", "delivered", None),
        insert(2, "program", "queued", Some(1)),
        insert(3, "alert", "failed", None),
        "UPDATE outbound_messages SET conversation_id = 1 WHERE id = 2".to_owned(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&old)
            .await
            .unwrap();
    }
    old.close().await;

    let store = AnyStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let messages = store
        .outbound_to(&Address::new(Channel::Sms, PHONE))
        .await
        .unwrap();
    assert_eq!(
        messages,
        [
            (OutboundStatus::Delivered, "Message 1".to_owned()),
            (OutboundStatus::Queued, "Message 2".to_owned()),
            (OutboundStatus::Failed, "Message 3".to_owned()),
        ]
    );

    let conversation = std::sync::Mutex::new(None);
    store
        .handle_addresses(
            &[Address::new(Channel::Sms, PHONE)],
            chrono::Utc::now(),
            &|s: &Snapshot| {
                *conversation.lock().unwrap() = s
                    .conversation
                    .as_ref()
                    .map(|c| (c.id, c.flow_id.clone(), c.state["n"].clone()));
                Ok(Plan::default())
            },
        )
        .await
        .unwrap();
    assert_eq!(
        conversation.into_inner().unwrap(),
        Some((1, "count".to_owned(), serde_json::json!(7)))
    );

    let db = pool(&url).await;
    let refused = |sql: String| {
        let db = db.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&db)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert!(
        refused(insert(4, "shout", "queued", None))
            .await
            .contains("CHECK constraint failed")
    );
    assert!(
        refused(insert(4, "reply", "lost", None))
            .await
            .contains("CHECK constraint failed")
    );
    assert!(
        refused(insert(4, "reply", "queued", Some(99)))
            .await
            .contains("FOREIGN KEY")
    );
    sqlx::query(sqlx::AssertSqlSafe(insert(4, "consent", "sending", None)))
        .execute(&db)
        .await
        .unwrap();
    assert!(
        refused("UPDATE conversations SET status = 'paused' WHERE id = 1".to_owned())
            .await
            .contains("CHECK constraint failed")
    );
    // What the rebuild is for: queuing a message, or starting a conversation, builds no
    // temporary B-tree of constants.
    for sql in [
        insert(5, "reply", "queued", None),
        format!(
            "INSERT INTO conversations (caregiver_id, channel, address, flow_id, flow_rev, \
             status, state, started_at, updated_at) VALUES (1, 'sms', '+13125550199', \
             'count', 1, 'active', '{{}}', {at}, {at})"
        ),
    ] {
        let opcodes: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
            .fetch_all(&db)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get("opcode"))
            .collect();
        assert!(!opcodes.is_empty());
        assert!(
            !opcodes.iter().any(|op| op == "OpenEphemeral"),
            "{sql}: {opcodes:?}"
        );
    }
    // The tables that refer to the rebuilt ones still do, and nothing refers to a missing row.
    for (table, column, parent) in [
        ("shift_offer_recipients", "outbound_id", "outbound_messages"),
        ("outbound_messages", "conversation_id", "conversations"),
        ("answers", "conversation_id", "conversations"),
        ("escalations", "conversation_id", "conversations"),
        ("training_assignments", "conversation_id", "conversations"),
    ] {
        let refers: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT \"table\" FROM pragma_foreign_key_list('{table}') WHERE \"from\" = '{column}'"
        )))
        .fetch_all(&db)
        .await
        .unwrap();
        assert_eq!(refers, [(parent.to_owned(),)], "{table}.{column}");
    }
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");
}
