//! PostgreSQL, the store for production and for several instances: how to open it, and what
//! PostgreSQL does differently from SQLite (row locks). Everything else is the shared code in
//! `sql/`.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArgumentBuffer, PgPoolOptions, PgQueryResult, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use super::Result;
use super::sql::{Dialect, SqlStore, Ts, claim_outbound_sql, conversation_sql, escalation_sql};

/// The store on a PostgreSQL database.
pub type PgStore = SqlStore<Postgres>;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

impl SqlStore<Postgres> {
    /// Connects to `postgres://…` without migrating.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        Ok(SqlStore {
            pool,
            group_commit: None,
            next_batches: Default::default(),
        })
    }
}

impl Dialect for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    // Dispatchers on several instances each take rows no other has locked, without waiting.
    const CLAIM_OUTBOUND: &'static str = claim_outbound_sql!("FOR UPDATE SKIP LOCKED", "");
    const CLAIM_URGENT: &'static str =
        claim_outbound_sql!("FOR UPDATE SKIP LOCKED", "AND kind <> 'program' ");
    // Two messages from one caregiver handled at once on two instances take turns on the
    // conversation instead of both advancing it from the same state.
    const ACTIVE_CONVERSATION: &'static str = conversation_sql!(
        "channel = $1 AND address = $2 AND status = 'active'",
        "FOR UPDATE"
    );
    // The second instance to reach a due conversation waits, then re-checks the condition on
    // the committed row and finds it no longer due.
    const DUE_CONVERSATION: &'static str = conversation_sql!(
        "id = $1 AND status = 'active' AND wake_at <= $2",
        "FOR UPDATE"
    );

    // NO KEY UPDATE: rows that merely reference the caregiver (messages, answers) need not wait.
    const LOCK_CAREGIVER: Option<&'static str> =
        Some("SELECT id FROM caregivers WHERE id = $1 FOR NO KEY UPDATE");
    // The follow-up clock and a supervisor's reply never both act on one escalation from the
    // same state: the second waits for the first's commit and reads what it wrote.
    const DUE_ESCALATION: &'static str = escalation_sql!("id = $1 AND due_at <= $2", "FOR UPDATE");
    const DESK_ESCALATIONS: &'static str = escalation_sql!(
        "id IN (SELECT escalation_id FROM escalation_contacts WHERE supervisor_id = $1) \
         AND (status <> 'done' OR closed_at >= $2) ORDER BY id",
        "FOR UPDATE"
    );
    const LOCK_SUPERVISOR: &'static str = "SELECT id FROM supervisors WHERE id = $1 FOR UPDATE";
    const LOCK_ROWS: &'static str = "FOR UPDATE";
    const ACTIVE_CONVERSATION_OF_CAREGIVER: &'static str = conversation_sql!(
        "caregiver_id = $1 AND status = 'active' ORDER BY updated_at DESC, id DESC LIMIT 1",
        "FOR UPDATE"
    );

    // One statement: a row another instance commits between a copy and a delete would be
    // deleted without being copied.
    const MIX_ANONYMOUS: &'static [&'static str] = &[
        "WITH moved AS (DELETE FROM anonymous_pending WHERE held_on < $1 \
         RETURNING flow_id, step, key, value, cohort_week, cohort_branch, cohort_state, \
         free_text) \
         INSERT INTO anonymous_answers (id, flow_id, step, key, value, cohort_week, \
         cohort_branch, cohort_state, free_text) \
         SELECT (random() * 9.2e18)::BIGINT, flow_id, step, key, value, cohort_week, \
         cohort_branch, cohort_state, free_text FROM moved ORDER BY random()",
    ];

    const INTERRUPTED_STATE: &'static str =
        "((state::jsonb || '{\"answers\": {}}'::jsonb) - 'consent')::TEXT";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

// An instant on PostgreSQL is a TIMESTAMPTZ, as chrono encodes it.
impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <chrono::DateTime<chrono::Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <chrono::DateTime<chrono::Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(Decode::<Postgres>::decode(value)?))
    }
}
