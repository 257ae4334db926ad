//! The one implementation of [`Store`], written once over sqlx's `Database` and compiled for
//! SQLite and PostgreSQL: the runner's transactions, the outbox, the roster and the results.
//! The little that differs between the two (how a write transaction begins, row locks,
//! timestamp encoding, migrations) is a [`Dialect`], in `sqlite.rs` and `postgres.rs`.
//!
//! The SQL is shared too: SQLite accepts PostgreSQL's numbered `$1` parameters, `ON CONFLICT`,
//! `RETURNING`, `TRUE`/`FALSE` and partial indexes, so one string serves both.
//!
//! This file holds the types every part shares and the [`Store`] impl, which delegates its
//! longer methods to the module of their part of the data path (see the `mod` lines below).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Type;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool};

use super::ShiftDecide;
use super::StartDecide;
use super::{Decide, DecideDigest, DecideEscalation, LinkDecide, Result, Sink, Store};
use crate::domain::{Address, Channel};
use crate::model::{
    AnswerRow, Audience, Caregiver, CaregiverRecord, ConsentStatus, DueConversation,
    EscalationEventRow, EscalationRow, FlowRevision, Inbound, InboundOutcome, Invitee, LedgerRow,
    LinkClaim, OutboundRow, OutboundStatus, PulseRow, Supervisor, SupervisorRecord, UpsertOutcome,
};
use crate::model::{NewShiftOffer, ShiftListing, ShiftOffer, ShiftStatus, ShiftTrigger};
use crate::model::{
    NewStart, ScheduleRow, StartBatch, StartRow, TrainingBatch, TrainingRecord, TrainingRow,
};
use serde_json::Value;

// What `starts.rs`, `privacy.rs` and `group_commit.rs` take from their parent, and `shifts.rs`
// from the store's SQL.
use apply::Ctx;
pub(in crate::store) use apply::conversation_id;
pub(in crate::store) use encode::{OutboundInsert, sqlite_text};
use escalations::short_name;
pub(in crate::store) use roster::Filter;
use rows::*;
pub(in crate::store) use rows::{parse, to_json};

#[macro_use]
mod fragments;
pub(crate) use fragments::{
    claim_outbound_sql, conversation_sql, escalation_sql, reach_columns, suppress_sql,
};

/// The plan applier: one function per kind of write.
mod apply;
/// The rows writes insert, encoded once for every path that inserts them.
mod encode;
/// Escalations, their chains, a supervisor's desk, digests.
mod escalations;
/// Snapshots and the inbound transactions; consent, links, invites.
mod inbound;
/// Queueing, claiming and the delivery status of outbound messages.
mod outbox;
/// Answers, exports and the pulse report's rows.
mod results;
/// Caregivers and supervisors: the import and the audiences.
mod roster;
/// The rows as read, and their conversions.
mod rows;

/// Durable starts: the batched, set-wise write path.
mod starts;
/// Recurring starts, per flow and time zone.
mod schedules;
/// Training assignments, started in batches like a durable start.
mod training;

/// The retention sweep, and one caregiver's export and erasure.
mod privacy;

/// A store over one database: `SqlStore<Sqlite>` is [`super::SqliteStore`], and
/// `SqlStore<Postgres>` is [`super::PgStore`].
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
    /// SQLite only: the writer that handles concurrent inbound messages in one transaction.
    pub(super) group_commit: Option<Arc<GroupCommit>>,
    /// Start batches read and decided while the previous batch was being written.
    pub(super) next_batches: Arc<starts::NextBatches>,
}

// Not derived: the derive would ask `DB: Clone`, and only the pool is cloned.
impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            group_commit: self.group_commit.clone(),
            next_batches: self.next_batches.clone(),
        }
    }
}

/// What SQLite and PostgreSQL do differently, as far as carebot is concerned.
pub trait Dialect: Database {
    /// The statement that opens a transaction which will write.
    const BEGIN_WRITE: &'static str;
    /// [`claim_outbound_sql!`] with the dialect's row-lock clause: any kind of message.
    const CLAIM_OUTBOUND: &'static str;
    /// [`claim_outbound_sql!`] for replies, consent confirmations and alerts only, which are
    /// claimed before program messages (migration 0007).
    const CLAIM_URGENT: &'static str;
    /// [`conversation_sql!`] for the active conversation of `$1` channel, `$2` address, locked.
    const ACTIVE_CONVERSATION: &'static str;
    /// [`conversation_sql!`] for conversation `$1` if still active and due at `$2`, locked.
    const DUE_CONVERSATION: &'static str;
    /// Locks caregiver `$1` until the transaction ends, so that one caregiver's YES to two
    /// overlapping shifts take turns (`store/shifts.rs`); `None` where writers are serialized.
    const LOCK_CAREGIVER: Option<&'static str>;
    /// [`escalation_sql!`] for escalation `$1` if its follow-up clock is due at `$2`, locked.
    const DUE_ESCALATION: &'static str;
    /// [`escalation_sql!`] for the escalations routed to supervisor `$1`, not closed before
    /// `$2`, locked: a reply acts on them while the follow-up clock waits its turn.
    const DESK_ESCALATIONS: &'static str;
    /// Supervisor `$1`'s row, locked, so two instances never send one digest twice.
    const LOCK_SUPERVISOR: &'static str;
    /// Appended to a `SELECT` whose rows the transaction will update: `FOR UPDATE` on
    /// PostgreSQL; nothing on SQLite, whose write transaction already excludes other writers.
    const LOCK_ROWS: &'static str;
    /// [`conversation_sql!`] for the latest active conversation of caregiver `$1` on any
    /// channel, locked: a conversation continues on whichever channel its caregiver answers.
    const ACTIVE_CONVERSATION_OF_CAREGIVER: &'static str;
    /// Moves the anonymous answers held on days before `$1` from `anonymous_pending` into
    /// `anonymous_answers`, in random order with random ids, in as many statements as the
    /// dialect needs to lose none written meanwhile (run in one write transaction).
    const MIX_ANONYMOUS: &'static [&'static str];
    /// A conversation's `state` as SQL, without the answers so far or alerts waiting for a
    /// yes: what a conversation ended by the store keeps (`runner::interrupted_state`).
    const INTERRUPTED_STATE: &'static str;

    fn migrator() -> &'static Migrator;

    /// `rows_affected`, which each driver's result type has but `Database` does not name.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// An instant as the store keeps it. Each dialect encodes it: TIMESTAMPTZ on PostgreSQL, and on
/// SQLite fixed-width RFC 3339 text in UTC with microseconds (PostgreSQL's precision, so both
/// databases hand back the same value, and comparing the text compares the instants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ts(pub DateTime<Utc>);

impl Ts {
    fn now() -> Ts {
        Ts(Utc::now())
    }

    /// Midnight UTC at the start of `day`: the `since` filters take whole UTC days.
    fn start_of(day: NaiveDate) -> Ts {
        Ts(day.and_time(chrono::NaiveTime::MIN).and_utc())
    }
}

/// A Rust type that binds to and decodes from a column of `DB`. Named so that the bounds below
/// say `i64: SqlValue<DB>` once instead of spelling out encode, decode and type for each use.
pub trait SqlValue<DB: Database>:
    for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB> + Send
{
}
impl<DB: Database, T> SqlValue<DB> for T where
    T: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB> + Send
{
}

/// Whether a report of `to` moves a message on from `current`: only a status of higher
/// [`OutboundStatus::rank`] replaces the stored one.
fn advances(current: OutboundStatus, to: OutboundStatus) -> bool {
    to.rank() > current.rank()
}

// ---------------------------------------------------------------------------------------------

mod group_commit;
pub(super) use group_commit::GroupCommit;

/// Rows to insert per multi-row `INSERT`: few enough binds for either database's limit
/// (SQLite 32,766, PostgreSQL 65,535), many enough that 100,000 rows are 200 statements.
const CHUNK: usize = 500;

/// What an inbound message that answered an anonymous question keeps of its words.
pub(crate) const ANONYMOUS_BODY: &str = "[anonymous answer]";

// The bounds below are everything the shared code asks of a database; both SQLite and PostgreSQL
// meet them. They appear on every `impl` block of the modules below as well, because Rust does
// not yet carry where-clauses along with a trait bound.
impl<DB> Store for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Connection: Migrate,
    DB::Arguments: IntoArguments<DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    i64: SqlValue<DB>,
    bool: SqlValue<DB>,
    String: SqlValue<DB>,
    Ts: SqlValue<DB>,
    NaiveDate: SqlValue<DB>,
    Option<i64>: SqlValue<DB>,
    Option<String>: SqlValue<DB>,
    Option<Ts>: SqlValue<DB>,
    Option<NaiveDate>: SqlValue<DB>,
{
    async fn migrate(&self) -> Result<()> {
        DB::migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn upsert_caregivers(
        &self,
        rows: &[CaregiverRecord],
    ) -> Result<Vec<(UpsertOutcome, Option<String>)>> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let outcomes = Self::upsert_caregivers_in(&mut *tx, rows).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn deactivate_caregivers_except(&self, keep: &[String]) -> Result<u64> {
        self.deactivate_caregivers_except_in(keep).await
    }

    async fn upsert_supervisors(
        &self,
        rows: &[SupervisorRecord],
    ) -> Result<Vec<(UpsertOutcome, Option<String>)>> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let outcomes = Self::upsert_supervisors_in(&mut *tx, rows).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn supervisor_ids(&self) -> Result<Vec<String>> {
        let ids: Vec<(String,)> =
            sqlx::query_as("SELECT external_id FROM supervisors ORDER BY external_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn audience(&self, audience: &Audience) -> Result<Vec<Caregiver>> {
        self.audience_in(audience).await
    }

    async fn caregiver_by_external_id(&self, external_id: &str) -> Result<Option<Caregiver>> {
        let mut conn = self.pool.acquire().await?;
        Self::load_caregiver(&mut *conn, Filter::ExternalId(external_id)).await
    }

    async fn handle_inbound(
        &self,
        inbound: &Inbound,
        decide: &Decide<'_>,
    ) -> Result<InboundOutcome> {
        self.handle_inbound_in(inbound, decide).await
    }

    async fn handle_addresses(
        &self,
        addresses: &[Address],
        now: DateTime<Utc>,
        decide: &Decide<'_>,
    ) -> Result<()> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        for address in addresses {
            Self::decide_and_apply(&mut *tx, address, Ts(now), None, decide).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn due_conversations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueConversation>> {
        self.due_conversations_in(now, limit).await
    }

    async fn handle_due_conversation(
        &self,
        id: i64,
        now: DateTime<Utc>,
        decide: &Decide<'_>,
    ) -> Result<bool> {
        self.handle_due_conversation_in(id, now, decide).await
    }

    async fn register_flow_revision(
        &self,
        flow_id: &str,
        version: i64,
        source: &str,
    ) -> Result<i64> {
        self.register_flow_revision_in(flow_id, version, source)
            .await
    }

    async fn flow_revision(&self, id: i64) -> Result<Option<FlowRevision>> {
        let row: Option<FlowRevisionDb> =
            sqlx::query_as("SELECT id, flow_id, version, source FROM flow_revisions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| FlowRevision {
            id: r.id,
            flow_id: r.flow_id,
            version: r.version,
            source: r.source,
        }))
    }

    async fn claim_outbound(
        &self,
        channel: Channel,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboundRow>> {
        self.claim_outbound_in(channel, now, limit).await
    }

    async fn mark_outbound_unknown(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbound_messages SET status = 'unknown', error = $2, updated_at = $3 \
             WHERE id = $1 AND status = 'sending'",
        )
        .bind(id)
        .bind(error.to_owned())
        .bind(Ts::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_outbound_accepted(&self, id: i64, provider_id: &str) -> Result<()> {
        self.mark_outbound_accepted_many(&[(id, provider_id.to_owned())])
            .await
    }

    async fn mark_outbound_accepted_many(&self, accepted: &[(i64, String)]) -> Result<()> {
        self.mark_outbound_accepted_many_in(accepted).await
    }

    async fn mark_outbound_retry(
        &self,
        id: i64,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        self.mark_outbound_retry_in(id, retry_at, error).await
    }

    async fn defer_outbound(&self, id: i64, until: DateTime<Utc>, why: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbound_messages SET status = 'queued', not_before = $2, error = $3, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $4 \
             WHERE id = $1 AND status = 'sending'",
        )
        .bind(id)
        .bind(Ts(until))
        .bind(why.to_owned())
        .bind(Ts::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_outbound_failed(&self, id: i64, code: Option<&str>, error: &str) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        Self::advance(&mut *conn, id, OutboundStatus::Failed, code, Some(error)).await
    }

    async fn record_delivery_status(
        &self,
        id: Option<i64>,
        provider_id: &str,
        status: OutboundStatus,
        error_code: Option<&str>,
    ) -> Result<bool> {
        self.record_delivery_status_in(id, provider_id, status, error_code)
            .await
    }

    async fn mark_stale_sending_unknown(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let updated = sqlx::query(
            "UPDATE outbound_messages SET status = 'unknown', updated_at = $2 \
             WHERE status = 'sending' AND updated_at < $1",
        )
        .bind(Ts(older_than))
        .bind(Ts::now())
        .execute(&self.pool)
        .await?;
        Ok(DB::rows_affected(&updated))
    }

    async fn set_consent(
        &self,
        address: &Address,
        status: ConsentStatus,
        source: &str,
        detail: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.set_consent_in(address, status, source, detail, at)
            .await
    }

    async fn flag_invalid_phone(&self, phone: &str) -> Result<()> {
        sqlx::query("UPDATE caregivers SET phone_invalid = TRUE, updated_at = $2 WHERE phone = $1")
            .bind(phone.to_owned())
            .bind(Ts::now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn handle_link(
        &self,
        inbound: &Inbound,
        claim: &LinkClaim,
        decide: &LinkDecide<'_>,
    ) -> Result<InboundOutcome> {
        self.handle_link_in(inbound, claim, decide).await
    }

    async fn create_invite(
        &self,
        phone: &str,
        channel: Channel,
        code_sha256: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Invitee>> {
        self.create_invite_in(phone, channel, code_sha256, expires_at)
            .await
    }

    async fn linked_supervisor(&self, address: &Address) -> Result<Option<Supervisor>> {
        self.linked_supervisor_in(address).await
    }

    async fn set_preferred_channel(&self, phone: &str, channel: Option<Channel>) -> Result<bool> {
        let updated = sqlx::query("UPDATE caregivers SET preferred_channel = $2 WHERE phone = $1")
            .bind(phone.to_owned())
            .bind(channel.map(|c| c.as_str().to_owned()))
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&updated) > 0)
    }

    async fn outbound_to(&self, address: &Address) -> Result<Vec<(OutboundStatus, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT status, body FROM outbound_messages WHERE channel = $1 AND address = $2 \
             ORDER BY id",
        )
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(status, body)| Ok((parse("outbound status", &status)?, body)))
            .collect()
    }

    async fn outbound_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM outbound_messages GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn answers(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
    ) -> Result<Vec<AnswerRow>> {
        self.answers_in(flow, since).await
    }

    async fn escalations(&self, since: Option<NaiveDate>) -> Result<Vec<EscalationRow>> {
        self.escalations_in(since).await
    }

    async fn consent_ledger(&self, address: &Address) -> Result<Vec<LedgerRow>> {
        let rows: Vec<LedgerDb> = sqlx::query_as(
            "SELECT status, source, detail, at FROM consent_ledger \
             WHERE channel = $1 AND address = $2 ORDER BY id",
        )
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.status, r.source, r.detail, r.at.0))
            .collect())
    }

    // Shift offers: the SQL is in `shifts.rs`.

    async fn create_shift_offer(&self, offer: &NewShiftOffer) -> Result<ShiftOffer> {
        self.insert_shift_offer(offer).await
    }

    async fn shift_offers(&self, status: Option<ShiftStatus>) -> Result<Vec<ShiftListing>> {
        self.list_shift_offers(status).await
    }

    async fn due_shift_offers(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<ShiftOffer>> {
        self.select_due_shift_offers(Ts(now), limit).await
    }

    async fn handle_shift_offer(
        &self,
        id: i64,
        trigger: ShiftTrigger,
        now: DateTime<Utc>,
        audience: &[Caregiver],
        decide: &ShiftDecide<'_>,
    ) -> Result<bool> {
        self.lock_and_handle_shift_offer(id, trigger, Ts(now), audience, decide)
            .await
    }

    async fn supervisors_of_branch(&self, branch: &str) -> Result<Vec<SupervisorRecord>> {
        self.select_supervisors_of_branch(branch).await
    }

    async fn due_escalations(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<i64>> {
        let due: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM escalations WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2",
        )
        .bind(Ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(due.into_iter().map(|(id,)| id).collect())
    }

    async fn handle_due_escalation(
        &self,
        id: i64,
        now: DateTime<Utc>,
        named: &[String],
        decide: &DecideEscalation<'_>,
    ) -> Result<bool> {
        self.handle_due_escalation_in(id, now, named, decide).await
    }

    async fn digest_candidates(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        let ids: Vec<(i64,)> = sqlx::query_as(
            "SELECT DISTINCT ec.supervisor_id FROM escalation_contacts ec \
             JOIN escalations e ON e.id = ec.escalation_id \
             WHERE ec.notified_at IS NOT NULL AND e.status <> 'done' \
             AND NOT EXISTS (SELECT 1 FROM digests d WHERE d.supervisor_id = ec.supervisor_id \
             AND d.sent_at > $1) ORDER BY ec.supervisor_id",
        )
        .bind(Ts(now - chrono::Duration::hours(20)))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn handle_digest(
        &self,
        supervisor_id: i64,
        now: DateTime<Utc>,
        decide: &DecideDigest<'_>,
    ) -> Result<()> {
        self.handle_digest_in(supervisor_id, now, decide).await
    }

    async fn escalation_events(&self, id: i64) -> Result<Vec<EscalationEventRow>> {
        self.escalation_events_in(id).await
    }

    async fn export_answers(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
        sink: &mut Sink<'_, AnswerRow>,
    ) -> Result<u64> {
        self.export_answers_in(flow, since, sink).await
    }

    async fn export_escalations(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
        sink: &mut Sink<'_, EscalationRow>,
    ) -> Result<u64> {
        self.export_escalations_in(flow, since, sink).await
    }

    async fn pulse_rows(
        &self,
        flow: &str,
        key: &str,
        since: DateTime<Utc>,
        sink: &mut Sink<'_, PulseRow>,
    ) -> Result<()> {
        self.pulse_rows_in(flow, key, since, sink).await
    }

    async fn create_start(&self, start: &NewStart, now: DateTime<Utc>) -> Result<i64> {
        self.create_start_in(start, Ts(now)).await
    }

    async fn start_row(&self, id: i64) -> Result<Option<StartRow>> {
        self.start_row_in(id).await
    }

    async fn unfinished_start(
        &self,
        flow_id: &str,
        audience: &Audience,
        vars: &BTreeMap<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Option<StartRow>> {
        self.unfinished_start_in(flow_id, audience, vars, Ts(now))
            .await
    }

    async fn due_starts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<StartRow>> {
        self.due_starts_in(Ts(now), limit).await
    }

    async fn list_starts(&self, all: bool) -> Result<Vec<StartRow>> {
        self.list_starts_in(all).await
    }

    async fn claim_start(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        self.claim_start_in(id, owner, Ts(now), Ts(lease_until))
            .await
    }

    async fn release_start(&self, id: i64, owner: &str) -> Result<()> {
        self.release_start_in(id, owner).await
    }

    async fn run_start_batch(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> Result<StartBatch> {
        self.run_start_batch_in(id, owner, Ts(now), Ts(lease_until), limit, decide)
            .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.schedules_in().await
    }

    async fn put_schedule(&self, row: &ScheduleRow) -> Result<()> {
        self.put_schedule_in(row).await
    }

    async fn delete_schedules_except(&self, flow_ids: &[String]) -> Result<u64> {
        self.delete_schedules_except_in(flow_ids).await
    }

    async fn caregiver_timezones(&self) -> Result<Vec<String>> {
        self.caregiver_timezones_in().await
    }

    async fn fire_schedule(
        &self,
        flow_id: &str,
        timezone: &str,
        due: DateTime<Utc>,
        next: DateTime<Utc>,
        start: &NewStart,
    ) -> Result<Option<i64>> {
        self.fire_schedule_in(flow_id, timezone, Ts(due), Ts(next), start)
            .await
    }

    async fn caregiver_external_ids(&self) -> Result<Vec<String>> {
        self.caregiver_external_ids_in().await
    }

    async fn upsert_training(
        &self,
        flow_id: &str,
        rows: &[TrainingRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<UpsertOutcome>> {
        self.upsert_training_in(flow_id, rows, Ts(now)).await
    }

    async fn run_training_batch(
        &self,
        flow_id: &str,
        program: &str,
        now: DateTime<Utc>,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> Result<TrainingBatch> {
        self.run_training_batch_in(flow_id, program, Ts(now), limit, decide)
            .await
    }

    async fn training_assignments(&self) -> Result<Vec<TrainingRow>> {
        self.training_assignments_in().await
    }

    async fn sweep_retention(
        &self,
        retention: &crate::privacy::Retention,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<crate::privacy::Swept> {
        self.sweep_in(retention, now, batch).await
    }

    async fn export_caregiver(
        &self,
        who: &crate::privacy::Person,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::privacy::CaregiverExport>> {
        self.export_caregiver_in(who, now).await
    }

    async fn erase_caregiver(
        &self,
        who: &crate::privacy::Person,
        now: DateTime<Utc>,
    ) -> Result<crate::privacy::Erasure> {
        self.erase_caregiver_in(who, now).await
    }
}
