//! SQLite, the default store (one file, zero set-up): how to open it, and what SQLite does
//! differently from PostgreSQL. Everything else is the shared code in `sql/`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArgumentsBuffer, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, Sqlite, Type};

use super::Result;
use super::sql::{
    Dialect, GroupCommit, SqlStore, Ts, claim_outbound_sql, conversation_sql, escalation_sql,
    sqlite_text,
};

/// The store on a SQLite file.
pub type SqliteStore = SqlStore<Sqlite>;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

impl SqlStore<Sqlite> {
    /// Opens `sqlite://PATH` (creating the file if missing) without migrating.
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // Readers keep reading while the one writer writes.
            .journal_mode(SqliteJournalMode::Wal)
            // Durable at every checkpoint rather than every commit: with WAL, a power cut can
            // lose the last commits but never corrupts the file.
            .synchronous(SqliteSynchronous::Normal)
            // A writer waits for the lock instead of failing at once with SQLITE_BUSY (while
            // connecting; then `wait_for_write_lock` takes over).
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // 32 MiB of pages per connection instead of 2: a roster of 100,000 caregivers and
            // their conversations stays in memory instead of being re-read from the OS.
            .pragma("cache_size", "-32768")
            // Checkpoints run in the background instead of inside a commit (see
            // `sql/group_commit.rs`); durability is unchanged: WAL and synchronous NORMAL.
            .pragma("wal_autocheckpoint", "0")
            // Text that is overwritten or deleted (an anonymous answer's conversation state, a
            // message past its retention) is zeroed in its page rather than left in the file's
            // free space, where anyone holding the file could read it. FAST: only when the page
            // is written anyway, so it costs no extra I/O.
            .pragma("secure_delete", "FAST");
        // An in-memory database exists once per connection: keep to one so every query sees it.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let path = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    // SAFETY: the handle is a live connection, locked for the call, and the
                    // handler is a plain function with no state.
                    unsafe {
                        libsqlite3_sys::sqlite3_busy_handler(
                            handle.as_raw_handle().as_ptr(),
                            Some(wait_for_write_lock),
                            std::ptr::null_mut(),
                        );
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        // Concurrent inbound messages share one transaction: see `sql/group_commit.rs`. The
        // group writer has a connection of its own, which an in-memory database cannot give.
        let group_commit = if in_memory {
            None
        } else {
            Some(Arc::new(GroupCommit::start(&path)?))
        };
        Ok(SqlStore {
            pool,
            group_commit,
            next_batches: Default::default(),
        })
    }
}

/// How long a writer waits for SQLite's one write lock before failing with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting writer tries the lock again.
const BUSY_POLL: Duration = Duration::from_micros(500);

/// The busy handler of every connection: try again every [`BUSY_POLL`] for [`BUSY_TIMEOUT`].
///
/// SQLite's own (`busy_timeout`) backs off to 100 ms between tries, and a writer that backs off
/// seldom finds the lock free while another process writes batch after batch (a 100,000-caregiver
/// `carebot start` beside `carebot serve`): replies waited up to 850 ms for a start that frees
/// the lock every 15 ms. A writer that looks again every half millisecond takes the next gap.
/// Runs on the connection's own thread (sqlx's worker), where sleeping blocks nobody else.
extern "C" fn wait_for_write_lock(
    _: *mut std::ffi::c_void,
    tries: std::ffi::c_int,
) -> std::ffi::c_int {
    keep_waiting(tries).into()
}

/// One try of the busy handler: sleeps [`BUSY_POLL`] and says to try again, or gives up after
/// [`BUSY_TIMEOUT`]. Also the group writer's (`sql/group_commit.rs`), on its own connection.
pub(super) fn keep_waiting(tries: i32) -> bool {
    if BUSY_POLL * tries.max(0) as u32 >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

impl Dialect for Sqlite {
    // A deferred transaction that reads and then writes must upgrade its lock, and two of them
    // doing so at once deadlock (one gets SQLITE_BUSY at once, busy handler or not). Taking the
    // write lock up front makes writers queue in the busy handler instead.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // One writer at a time: the statement itself is the lock.
    const CLAIM_OUTBOUND: &'static str = claim_outbound_sql!("", "");
    const CLAIM_URGENT: &'static str = claim_outbound_sql!("", "AND kind <> 'program' ");
    const ACTIVE_CONVERSATION: &'static str =
        conversation_sql!("channel = $1 AND address = $2 AND status = 'active'", "");
    const DUE_CONVERSATION: &'static str =
        conversation_sql!("id = $1 AND status = 'active' AND wake_at <= $2", "");
    // BEGIN IMMEDIATE already makes every write transaction wait for the one before.
    const LOCK_CAREGIVER: Option<&'static str> = None;

    const DUE_ESCALATION: &'static str = escalation_sql!("id = $1 AND due_at <= $2", "");
    const DESK_ESCALATIONS: &'static str = escalation_sql!(
        "id IN (SELECT escalation_id FROM escalation_contacts WHERE supervisor_id = $1) \
         AND (status <> 'done' OR closed_at >= $2) ORDER BY id",
        ""
    );
    const LOCK_SUPERVISOR: &'static str = "SELECT id FROM supervisors WHERE id = $1";

    const LOCK_ROWS: &'static str = "";

    const ACTIVE_CONVERSATION_OF_CAREGIVER: &'static str = conversation_sql!(
        "caregiver_id = $1 AND status = 'active' ORDER BY updated_at DESC, id DESC LIMIT 1",
        ""
    );

    // The write transaction keeps every other writer out between the copy and the delete.
    const MIX_ANONYMOUS: &'static [&'static str] = &[
        "INSERT INTO anonymous_answers (id, flow_id, step, key, value, cohort_week, \
         cohort_branch, cohort_state, free_text) \
         SELECT random() & 9223372036854775807, flow_id, step, key, value, cohort_week, \
         cohort_branch, cohort_state, free_text FROM anonymous_pending WHERE held_on < $1 \
         ORDER BY random()",
        "DELETE FROM anonymous_pending WHERE held_on < $1",
    ];

    const INTERRUPTED_STATE: &'static str =
        "json_remove(json_set(state, '$.answers', json('{}')), '$.consent')";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

// An instant on SQLite: `2024-05-01T13:45:00.000000Z`, always this width, so `<=` on the text
// is `<=` on the instants. Microseconds, as PostgreSQL keeps.
impl Type<Sqlite> for Ts {
    fn type_info() -> SqliteTypeInfo {
        <chrono::DateTime<chrono::Utc> as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <chrono::DateTime<chrono::Utc> as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Ts {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(sqlite_text(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(Decode::<Sqlite>::decode(value)?))
    }
}
