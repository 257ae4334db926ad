//! Upgrading a SQLite file written by an earlier carebot: migration 0010 rebuilds
//! `outbound_messages` (the same CHECKs, without IN lists). Every message survives it, and so
//! do its constraints and the references other tables hold to it.

use std::str::FromStr;

use carebot::domain::{Address, Channel};
use carebot::store::{AnyStore, OutboundStatus, Store};
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
async fn an_outbox_written_before_the_rebuild_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("carebot.db").display());
    let old = pool(&url).await;
    sqlx::migrate!("migrations/sqlite")
        .run_to(9, &old)
        .await
        .unwrap();
    for sql in [
        insert(1, "reply", "delivered", None),
        insert(2, "program", "queued", None),
        insert(3, "alert", "failed", None),
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
    // What the rebuild is for: queuing a message builds no temporary B-tree of constants.
    let opcodes: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN {}",
        insert(5, "reply", "queued", None)
    )))
    .fetch_all(&db)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get("opcode"))
    .collect();
    assert!(!opcodes.is_empty());
    assert!(
        !opcodes.iter().any(|op| op == "OpenEphemeral"),
        "{opcodes:?}"
    );
    // Shift offers still refer to the rebuilt table, and nothing refers to a missing row.
    let refers: Vec<(String,)> = sqlx::query_as(
        "SELECT \"table\" FROM pragma_foreign_key_list('shift_offer_recipients') \
         WHERE \"from\" = 'outbound_id'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(refers, [("outbound_messages".to_owned(),)]);
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");
}
