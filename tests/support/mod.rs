//! Test support shared by the integration tests: a fresh, migrated store per test, on SQLite
//! always and on PostgreSQL when `CAREBOT_TEST_POSTGRES_URL` is set, plus small builders for the
//! rows tests start from.
//!
//! Use it from a test file with `mod support;` and either [`stores`] (both databases, in one
//! test) or [`store_tests!`] (a `sqlite::NAME` and a `postgres::NAME` test for each
//! `async fn NAME(store: AnyStore)`); the end-to-end suites use [`app_tests!`], which does the
//! same for tests of the whole server ([`app`]), started on each database. What the people
//! of such a test saw is one string ([`conversation`]) for an insta snapshot in
//! tests/snapshots/; a snapshot that differs fails the test (in CI, where `CI` is set, insta
//! writes nothing; elsewhere it leaves a `.snap.new` for `cargo insta review`).

// Each test file uses a different part of this module.
#![allow(dead_code)]

pub mod app;
pub mod conversation;
pub mod fake_telegram;
pub mod fake_twilio;
pub mod roster;
pub mod shift_race;

use std::io::Write as _;
use std::sync::Once;

use carebot::domain::{Address, Channel, Lang};
use carebot::model::{CaregiverRecord, Inbound, SupervisorRecord};
use carebot::store::{AnyStore, Store};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Connection, Executor, PgConnection};

/// The variable that turns the PostgreSQL half of the suite on.
pub const POSTGRES_URL_VAR: &str = "CAREBOT_TEST_POSTGRES_URL";

/// A store that lives as long as the test: its SQLite file is deleted, or its PostgreSQL
/// database dropped, when this is dropped (even when the test panics).
pub struct TestStore {
    pub store: AnyStore,
    /// The `DATABASE_URL` of this store, for a test that opens it another way.
    pub url: String,
    // Declared after `store` so the store's pool is dropped first.
    _owned: Owned,
}

enum Owned {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

/// A migrated store on a new SQLite file.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("carebot.db").display());
    let store = AnyStore::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    TestStore {
        store,
        url,
        _owned: Owned::Sqlite(dir),
    }
}

/// A migrated store on a new PostgreSQL database created through `CAREBOT_TEST_POSTGRES_URL`,
/// or `None` (after saying so once) when the variable is unset.
pub async fn postgres() -> Option<TestStore> {
    let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            // Straight to stderr: libtest captures `eprintln!` from a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL store tests SKIPPED: {POSTGRES_URL_VAR} is unset \
                 (e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
            );
        });
        return None;
    };
    let database = format!("carebot_test_{:016x}", rand::random::<u64>());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to CAREBOT_TEST_POSTGRES_URL");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let owned = Owned::Postgres {
        admin_url: admin_url.clone(),
        database: database.clone(),
    };
    let url = with_database(&admin_url, &database);
    let store = AnyStore::connect(&url)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate PostgreSQL");
    Some(TestStore {
        store,
        url,
        _owned: owned,
    })
}

/// Every store this run can test: SQLite, and PostgreSQL when configured.
pub async fn stores() -> Vec<(&'static str, TestStore)> {
    let mut stores = vec![("sqlite", sqlite().await)];
    if let Some(pg) = postgres().await {
        stores.push(("postgres", pg));
    }
    stores
}

/// `url` with its database name replaced by `database`, query string kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{database}{query}", &base[..host_end])
}

impl Drop for Owned {
    fn drop(&mut self) {
        let Owned::Postgres {
            admin_url,
            database,
        } = self
        else {
            return;
        };
        // Best effort, on a thread of its own: drop runs inside the test's runtime, which
        // cannot block on another future.
        let (admin_url, database) = (admin_url.clone(), database.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                let drop = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
                admin.execute(sqlx::AssertSqlSafe(drop)).await.ok()?;
                admin.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// Defines, for each `async fn NAME(store: AnyStore)` in the calling file, a test
/// `sqlite::NAME` and a test `postgres::NAME` (which says it was skipped when
/// `CAREBOT_TEST_POSTGRES_URL` is unset).
#[allow(unused_macros)]
macro_rules! store_tests {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = crate::support::sqlite().await;
                    super::$test(db.store.clone()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(db) = crate::support::postgres().await else {
                        return;
                    };
                    super::$test(db.store.clone()).await;
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use store_tests;

/// Defines, for each `async fn NAME(arg)` in the calling file, a test `sqlite::NAME` and a test
/// `postgres::NAME` (which returns at once when `CAREBOT_TEST_POSTGRES_URL` is unset), on a
/// runtime with two worker threads: the server under test, its dispatcher and the test itself
/// run side by side. The first word says what `arg` is:
///
/// - `app_tests!(app: NAME, …)`: the [`app::TestApp`] that [`app::spawn_app`] starts;
/// - `app_tests!(db: NAME, …)`: the fresh [`TestStore`] alone, for a test that starts its app
///   with options of its own;
/// - `app_tests!(telegram MODE: NAME, …)`, MODE `webhook` or `polling`: the app that
///   [`app::spawn_telegram_app`] starts with Telegram updates arriving that way; the tests sit
///   in a module named MODE, so both modes can run one test.
#[allow(unused_macros)]
macro_rules! app_tests {
    (app: $($test:ident),+ $(,)?) => {
        crate::support::app_tests!(@each crate::support::app::spawn_app; $($test),+);
    };
    (db: $($test:ident),+ $(,)?) => {
        crate::support::app_tests!(@each std::future::ready; $($test),+);
    };
    (telegram $mode:ident: $($test:ident),+ $(,)?) => {
        mod $mode {
            use super::*;
            crate::support::app_tests!(@each
                |db| crate::support::app::spawn_telegram_app(db, stringify!($mode).parse().unwrap());
                $($test),+);
        }
    };
    (@each $arg:expr; $($test:ident),+) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = crate::support::sqlite().await;
                    super::$test(($arg)(db).await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = crate::support::postgres().await else {
                        return;
                    };
                    super::$test(($arg)(db).await).await;
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use app_tests;

/// Rows of a query on the test's database, every column read as text, whichever the database.
pub async fn rows(db: &TestStore, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::{Row, ValueRef};
    fn read<R: Row>(row: &R) -> Vec<Option<String>>
    where
        usize: sqlx::ColumnIndex<R>,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        (0..row.columns().len())
            .map(|i| {
                if row.try_get_raw(i).unwrap().is_null() {
                    None
                } else {
                    row.try_get::<String, _>(i)
                        .or_else(|_| row.try_get::<i64, _>(i).map(|n| n.to_string()))
                        .ok()
                }
            })
            .collect()
    }
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.iter().map(read).collect()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.iter().map(read).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Builders

/// A fixed instant: 2025-03-03 (a Monday) at `hour`:00 UTC.
pub fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 3, hour, 0, 0).unwrap()
}

/// A caregiver row as an import would hand it over: `+1555000` followed by `n` as the phone.
pub fn caregiver(external_id: &str, n: u32) -> CaregiverRecord {
    CaregiverRecord {
        external_id: external_id.to_owned(),
        first_name: "Ana".to_owned(),
        last_name: format!("Lopez {external_id}"),
        phone: phone(n),
        language: Lang::En,
        timezone: "America/Chicago".to_owned(),
        branch: "north".to_owned(),
        supervisor_id: None,
        groups: Vec::new(),
        consent_at: None,
    }
}

pub fn supervisor(external_id: &str, n: u32) -> SupervisorRecord {
    SupervisorRecord {
        external_id: external_id.to_owned(),
        name: format!("Supervisor {external_id}"),
        phone: phone(9000 + n),
        email: format!("{external_id}@agency.example"),
        branch: "north".to_owned(),
        timezone: "America/Chicago".to_owned(),
    }
}

/// `+1555` and seven digits.
pub fn phone(n: u32) -> String {
    format!("+1555{n:07}")
}

pub fn sms(n: u32) -> Address {
    Address::new(Channel::Sms, phone(n))
}

pub fn inbound(
    address: &Address,
    text: &str,
    external_id: &str,
    received_at: DateTime<Utc>,
) -> Inbound {
    Inbound {
        address: address.clone(),
        text: text.to_owned(),
        external_id: external_id.to_owned(),
        received_at,
    }
}
