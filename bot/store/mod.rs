//! The store: everything carebot keeps, behind one trait with a SQLite and a PostgreSQL
//! implementation. The runner never writes SQL: it reads a [`Snapshot`], decides (purely) what
//! should happen, and hands back a [`Plan`] that the store applies in the same transaction.

mod postgres;
mod shifts;
mod sql;
mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::domain::{Address, Channel};
use crate::model::{
    AnswerRow, Audience, Caregiver, CaregiverRecord, ConsentStatus, DecideError, Desk,
    DueConversation, EscalationEventRow, EscalationRow, EscalationSnapshot, FlowRevision, Inbound,
    InboundOutcome, Invitee, LedgerRow, LinkCandidate, LinkClaim, NewShiftOffer, NewStart,
    OutboundRow, OutboundStatus, Plan, PulseRow, ScheduleRow, ShiftListing, ShiftOffer,
    ShiftStatus, ShiftTrigger, Snapshot, StartBatch, StartOutcome, StartRow, StartSnapshot,
    Supervisor, SupervisorRecord, TrainingBatch, TrainingRecord, TrainingRow, UpsertOutcome,
};
use crate::privacy::{CaregiverExport, Erasure, Person, Retention, Swept};

pub use postgres::PgStore;
pub use shifts::ShiftDecide;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Holds the URL's scheme only: the rest may carry a password, and this error is printed.
    #[error("unsupported DATABASE_URL scheme {0:?} (expected sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    /// The runner's decision failed; the transaction was rolled back.
    #[error(transparent)]
    Decide(#[from] DecideError),
    /// The runner handed over a plan that cannot be applied as written (an answer for an
    /// address with no caregiver, a reference to a conversation the plan did not create). The
    /// transaction is rolled back.
    #[error("plan cannot be applied: {0}")]
    InvalidPlan(String),
    /// Writing an export's rows failed (a closed pipe, a full disk).
    #[error("cannot write: {0}")]
    Sink(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
/// The decision for an escalation the follow-up clock woke.
pub type DecideEscalation<'a> =
    dyn Fn(&EscalationSnapshot) -> std::result::Result<Plan, DecideError> + Send + Sync + 'a;
/// The decision for a supervisor's daily digest.
pub type DecideDigest<'a> =
    dyn Fn(&Desk) -> std::result::Result<Plan, DecideError> + Send + Sync + 'a;
/// Where an export writes its rows as the store reads them.
pub type Sink<'a, T> = dyn FnMut(T) -> std::io::Result<()> + Send + 'a;
/// The decision for one caregiver of a start: pure, called inside the batch's transaction.
pub type StartDecide<'a> = dyn Fn(&StartSnapshot) -> std::result::Result<(Plan, StartOutcome), DecideError>
    + Send
    + Sync
    + 'a;
/// The decision for a linking message: like [`Decide`], with who the claim named.
pub type LinkDecide<'a> =
    dyn Fn(&Snapshot, &LinkCandidate) -> std::result::Result<Plan, DecideError> + Send + Sync + 'a;

/// The decision function the runner hands to the store: pure, called inside the transaction.
/// An `Err` rolls the whole transaction back (the store returns `StoreError::Decide`).
pub type Decide<'a> =
    dyn Fn(&Snapshot) -> std::result::Result<Plan, DecideError> + Send + Sync + 'a;

/// Everything carebot keeps. Both implementations pass one test suite (`tests/store.rs`).
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations (also done by `carebot migrate`).
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;

    // Roster ---------------------------------------------------------------------------------

    /// Inserts or updates caregivers by `external_id`, in one transaction. A row whose phone
    /// number belongs to another caregiver is `Rejected` (with the reason) and the others are kept.
    /// A caregiver whose record changed is re-activated. The first import of a `consent_at`
    /// adds an "import" row to the consent ledger and opts the phone in on SMS.
    fn upsert_caregivers(
        &self,
        rows: &[CaregiverRecord],
    ) -> impl Future<Output = Result<Vec<(UpsertOutcome, Option<String>)>>> + Send;

    /// Marks active caregivers whose `external_id` is not in `keep` as inactive; returns how many.
    fn deactivate_caregivers_except(
        &self,
        keep: &[String],
    ) -> impl Future<Output = Result<u64>> + Send;

    fn upsert_supervisors(
        &self,
        rows: &[SupervisorRecord],
    ) -> impl Future<Output = Result<Vec<(UpsertOutcome, Option<String>)>>> + Send;

    /// External ids of all supervisors (to validate `supervisor_id` in a caregiver import).
    fn supervisor_ids(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Active caregivers in the audience, ordered by id.
    fn audience(&self, audience: &Audience) -> impl Future<Output = Result<Vec<Caregiver>>> + Send;

    fn caregiver_by_external_id(
        &self,
        external_id: &str,
    ) -> impl Future<Output = Result<Option<Caregiver>>> + Send;

    // The runner's transactions ----------------------------------------------------------------

    /// Records the inbound message (unique on channel + external id: a retry is `Duplicate` and
    /// changes nothing), reads the snapshot for its address, calls `decide`, applies the plan,
    /// commits. Any error rolls everything back, the message included, so the provider's retry
    /// is safe.
    fn handle_inbound(
        &self,
        inbound: &Inbound,
        decide: &Decide<'_>,
    ) -> impl Future<Output = Result<InboundOutcome>> + Send;

    /// For each address: reads its snapshot, calls `decide`, applies the plan; one transaction
    /// for the whole batch. Used by `start` and by the scheduler. Returns the plans applied.
    fn handle_addresses(
        &self,
        addresses: &[Address],
        now: DateTime<Utc>,
        decide: &Decide<'_>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Active conversations whose `wake_at` has come, oldest first.
    fn due_conversations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DueConversation>>> + Send;

    /// Reads the snapshot of conversation `id` (if it is still active and due at `now`), calls
    /// `decide`, applies the plan, in one transaction. Returns false when it was no longer due
    /// (another instance handled it).
    fn handle_due_conversation(
        &self,
        id: i64,
        now: DateTime<Utc>,
        decide: &Decide<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;

    // Flow revisions ---------------------------------------------------------------------------

    /// Stores a flow's source text if this exact text is new; returns its revision id either way.
    fn register_flow_revision(
        &self,
        flow_id: &str,
        version: i64,
        source: &str,
    ) -> impl Future<Output = Result<i64>> + Send;

    fn flow_revision(&self, id: i64) -> impl Future<Output = Result<Option<FlowRevision>>> + Send;

    // Outbox -----------------------------------------------------------------------------------

    /// Claims up to `limit` queued messages on `channel` whose `not_before` has come: replies,
    /// consent confirmations and alerts before program messages, and within each the earliest
    /// due first (messages due at the same instant in the order they were queued). Marks them
    /// `sending` (attempts + 1) in the same statement, so two dispatchers never claim the same
    /// row. Messages to an address that has opted out since they were queued are marked
    /// `suppressed` instead (consent confirmations excepted).
    fn claim_outbound(
        &self,
        channel: Channel,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<OutboundRow>>> + Send;

    /// The provider accepted the message.
    fn mark_outbound_accepted(
        &self,
        id: i64,
        provider_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The provider accepted each of these messages `(id, provider's id)`: one statement per
    /// few hundred, for a dispatcher sending thousands a second. Like
    /// [`Store::mark_outbound_accepted`], never moves a status backwards (a delivery callback
    /// may have overtaken the dispatcher).
    fn mark_outbound_accepted_many(
        &self,
        accepted: &[(i64, String)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// The provider may or may not have the message (no answer came back): `unknown`, never
    /// re-sent; a status callback carrying our id reconciles it.
    fn mark_outbound_unknown(
        &self,
        id: i64,
        error: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A transient failure: back to `queued` until `retry_at`.
    fn mark_outbound_retry(
        &self,
        id: i64,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A claimed message that was not sent after all (it waits for its chat's pace, for an
    /// earlier message that is being retried, or for a restart): back to `queued` until
    /// `until`, its claim not counted as an attempt.
    fn defer_outbound(
        &self,
        id: i64,
        until: DateTime<Utc>,
        why: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A permanent failure, with the provider's error code when it gave one.
    fn mark_outbound_failed(
        &self,
        id: i64,
        code: Option<&str>,
        error: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// A delivery status report from the provider, found by our id or the provider's id.
    /// Never moves a status backwards. Returns false when no message matched.
    fn record_delivery_status(
        &self,
        id: Option<i64>,
        provider_id: &str,
        status: OutboundStatus,
        error_code: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// On start-up: messages left in `sending` by a crash become `unknown` (never re-sent
    /// blindly). Returns how many.
    fn mark_stale_sending_unknown(
        &self,
        older_than: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Sets consent for an address outside an inbound message (a provider error such as
    /// Twilio 21610, or Telegram's "bot was blocked"), with a ledger row. An opt-out also ends
    /// the conversation waiting on that address, which can no longer be reached.
    fn set_consent(
        &self,
        address: &Address,
        status: ConsentStatus,
        source: &str,
        detail: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Flags a caregiver's phone as invalid (Twilio 21211) so no further sends are attempted.
    fn flag_invalid_phone(&self, phone: &str) -> impl Future<Output = Result<()>> + Send;

    // Linking chats (Telegram) --------------------------------------------------------------

    /// Like [`Store::handle_inbound`] for a message that asks to link its address: records it
    /// (a retry is `Duplicate`), finds who `claim` names ([`LinkCandidate`]: by phone, the
    /// active caregiver and the supervisor with that number; by invite, its holder and whether
    /// the code is still good), reads the snapshot of the address as it was before, calls
    /// `decide`, applies the plan (usually [`Write::Link`]), commits.
    fn handle_link(
        &self,
        inbound: &Inbound,
        claim: &LinkClaim,
        decide: &LinkDecide<'_>,
    ) -> impl Future<Output = Result<InboundOutcome>> + Send;

    /// Stores a one-time invite (by the SHA-256 of its code) for the caregiver, or else the
    /// supervisor, with this phone number. `None` when the number is on neither roster.
    fn create_invite(
        &self,
        phone: &str,
        channel: Channel,
        code_sha256: &str,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Invitee>>> + Send;

    /// The supervisor an address (a Telegram chat) is linked to, if any.
    fn linked_supervisor(
        &self,
        address: &Address,
    ) -> impl Future<Output = Result<Option<Supervisor>>> + Send;

    /// Sets (or with `None` clears) the channel a caregiver prefers; false when no caregiver
    /// has this phone number.
    fn set_preferred_channel(
        &self,
        phone: &str,
        channel: Option<Channel>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Outbound messages ever queued to an address, oldest first (for the simulator and tests).
    fn outbound_to(
        &self,
        address: &Address,
    ) -> impl Future<Output = Result<Vec<(OutboundStatus, String)>>> + Send;

    /// Count of outbound messages by status (for /metrics).
    fn outbound_counts(&self) -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;

    // Reading results --------------------------------------------------------------------------

    fn answers(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
    ) -> impl Future<Output = Result<Vec<AnswerRow>>> + Send;

    fn escalations(
        &self,
        since: Option<NaiveDate>,
    ) -> impl Future<Output = Result<Vec<EscalationRow>>> + Send;

    /// Consent ledger rows for an address, oldest first.
    fn consent_ledger(
        &self,
        address: &Address,
    ) -> impl Future<Output = Result<Vec<LedgerRow>>> + Send;

    // Shift offers -----------------------------------------------------------------------------

    /// Stores a new open offer with a free short code. Its creator sends the first wave
    /// ([`ShiftTrigger::Create`]); the scheduler does a minute later if it did not.
    fn create_shift_offer(
        &self,
        offer: &NewShiftOffer,
    ) -> impl Future<Output = Result<ShiftOffer>> + Send;

    /// Offers with how many were texted and answered, oldest first; all, or those in `status`.
    fn shift_offers(
        &self,
        status: Option<ShiftStatus>,
    ) -> impl Future<Output = Result<Vec<ShiftListing>>> + Send;

    /// Open offers whose deadline has passed or whose next wave is due at `now`.
    fn due_shift_offers(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ShiftOffer>>> + Send;

    /// Takes offer `id` if `trigger` still applies (create: open and no wave sent yet; due: open
    /// and past its deadline or wave time; cancel: open or filled), reads its snapshot (with `audience` as candidates when a
    /// wave is due), calls `decide`, applies the plan: one transaction. Returns false when it no
    /// longer applied (another instance got there first, or it closed).
    fn handle_shift_offer(
        &self,
        id: i64,
        trigger: ShiftTrigger,
        now: DateTime<Utc>,
        audience: &[Caregiver],
        decide: &ShiftDecide<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The supervisors of a branch, by external id (for an offer's time zone and whom to tell).
    fn supervisors_of_branch(
        &self,
        branch: &str,
    ) -> impl Future<Output = Result<Vec<SupervisorRecord>>> + Send;
    // Escalations after they are raised ---------------------------------------------------------

    /// Escalations whose follow-up clock (`due_at`) has come, oldest first.
    fn due_escalations(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Reads escalation `id` (if still due at `now`, locked), its caregiver, the contacts
    /// `named` by external id and its chain; calls `decide`; applies the plan; in one
    /// transaction. Returns false when it was no longer due (another instance handled it).
    fn handle_due_escalation(
        &self,
        id: i64,
        now: DateTime<Utc>,
        named: &[String],
        decide: &DecideEscalation<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Supervisors who have been sent an alert that is not done and have had no digest in the
    /// last 20 hours: the candidates for today's digest.
    fn digest_candidates(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<i64>>> + Send;

    /// Reads supervisor `id`'s desk (the supervisor row locked), calls `decide`, applies the
    /// plan, in one transaction.
    fn handle_digest(
        &self,
        supervisor_id: i64,
        now: DateTime<Utc>,
        decide: &DecideDigest<'_>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// An escalation's history, oldest first.
    fn escalation_events(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Vec<EscalationEventRow>>> + Send;

    /// Hands every named answer (flow, since) to `sink` as it is read, oldest first, so an
    /// export of a million rows holds one row at a time. Anonymous answers are left out: they
    /// are reported only in aggregate. Returns how many rows were written.
    fn export_answers(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
        sink: &mut Sink<'_, AnswerRow>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Hands every escalation (flow, since) to `sink` as it is read, oldest first.
    fn export_escalations(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
        sink: &mut Sink<'_, EscalationRow>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Hands `report pulse` its rows for `flow` since `since`: the conversations started, the
    /// answers saved as `key`, the escalations raised.
    fn pulse_rows(
        &self,
        flow: &str,
        key: &str,
        since: DateTime<Utc>,
        sink: &mut Sink<'_, PulseRow>,
    ) -> impl Future<Output = Result<()>> + Send;
    // Durable starts (the roster at scale) -----------------------------------------------------

    /// Records a start (status pending). With a `dedupe_key` already used, records nothing and
    /// returns the existing start's id.
    fn create_start(
        &self,
        start: &NewStart,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64>> + Send;

    fn start_row(&self, id: i64) -> impl Future<Output = Result<Option<StartRow>>> + Send;

    /// An unfinished start from the CLI for the same flow, audience and variables, due by
    /// `now`: what a re-run of an interrupted `carebot start` resumes.
    fn unfinished_start(
        &self,
        flow_id: &str,
        audience: &Audience,
        vars: &BTreeMap<String, Value>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<StartRow>>> + Send;

    /// Starts with work due at `now` (pending or running and due, or waiting with a wait due)
    /// that no live runner holds, by priority, then `run_at`.
    fn due_starts(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StartRow>>> + Send;

    /// Starts, newest first (`carebot starts`); `all` includes finished ones.
    fn list_starts(&self, all: bool) -> impl Future<Output = Result<Vec<StartRow>>> + Send;

    /// Takes the start for `owner` until `lease_until` if nobody else holds a live lease
    /// (counting the audience on the first claim). Returns false when another runner has it.
    fn claim_start(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Gives the lease up (the start stays as it is).
    fn release_start(&self, id: i64, owner: &str) -> impl Future<Output = Result<()>> + Send;

    /// Handles the next `limit` caregivers of a start `owner` holds, in one transaction: reads
    /// their snapshots, calls `decide` for each, applies the plans set-wise (multi-row inserts),
    /// and moves the start's cursor, counters and lease in the same transaction, so a crash
    /// leaves each caregiver either started and counted or untouched. Past the end of the
    /// audience, handles due waits; with nothing left, marks the start done.
    fn run_start_batch(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> impl Future<Output = Result<StartBatch>> + Send;

    // Schedules -----------------------------------------------------------------------------

    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRow>>> + Send;

    /// Inserts or replaces a schedule row (a new zone, or a changed cron line or audience).
    fn put_schedule(&self, row: &ScheduleRow) -> impl Future<Output = Result<()>> + Send;

    /// Removes the schedules of flows that no longer have one.
    fn delete_schedules_except(
        &self,
        flow_ids: &[String],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Distinct time zones of active caregivers.
    fn caregiver_timezones(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Fires a schedule's run in one transaction: moves `next_run_at` from `due` to `next`
    /// (compare-and-set, so two instances never both fire it) and records `start`. Returns the
    /// start's id, or None when another instance fired it first.
    fn fire_schedule(
        &self,
        flow_id: &str,
        timezone: &str,
        due: DateTime<Utc>,
        next: DateTime<Utc>,
        start: &NewStart,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    // Training assignments --------------------------------------------------------------------

    /// Caregiver external ids that exist, for validating a training import.
    fn caregiver_external_ids(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Upserts assignments by (caregiver, module). A new one, or one whose link or due date
    /// changed and that is not done or running, is (re)assigned to start at `now`; a done one
    /// stays done. Outcomes in row order.
    fn upsert_training(
        &self,
        flow_id: &str,
        rows: &[TrainingRecord],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<UpsertOutcome>>> + Send;

    /// Settles started assignments whose conversation ended (completed: done; expired or
    /// interrupted: expired), then starts up to `limit` assignments due at `now` in one
    /// transaction: snapshots, `decide` (with the module, link and due date as the snapshot's
    /// vars), set-wise writes, and each assignment marked started or put off to `retry_at`.
    fn run_training_batch(
        &self,
        flow_id: &str,
        program: &str,
        now: DateTime<Utc>,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> impl Future<Output = Result<TrainingBatch>> + Send;

    fn training_assignments(&self) -> impl Future<Output = Result<Vec<TrainingRow>>> + Send;

    // Personal data over time (see `crate::privacy`) ------------------------------------------

    /// One batch of the retention sweep: up to `batch` rows of each kind past their retention
    /// at `now` lose their text (or, for the consent ledger, are deleted).
    fn sweep_retention(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
        batch: u32,
    ) -> impl Future<Output = Result<Swept>> + Send;

    /// Everything held about one caregiver, or `None` when nobody on the roster matches.
    fn export_caregiver(
        &self,
        who: &Person,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<CaregiverExport>>> + Send;

    /// Removes or anonymises every row about one caregiver, in one transaction: their waiting
    /// conversations end and their queued messages are cancelled first.
    fn erase_caregiver(
        &self,
        who: &Person,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Erasure>> + Send;
}

/// The store chosen by `DATABASE_URL`.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// Connects to `sqlite://…` (created if missing) or `postgres://…`, without migrating.
    pub async fn connect(url: &str) -> Result<AnyStore> {
        if url.starts_with("sqlite:") {
            Ok(AnyStore::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(AnyStore::Postgres(PgStore::connect(url).await?))
        } else {
            let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
            Err(StoreError::UnsupportedUrl(scheme.to_owned()))
        }
    }
}

/// Implements [`Store`] for [`AnyStore`] by handing each call to the store inside.
macro_rules! delegate {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)+) => {
        impl Store for AnyStore {
            $(async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    AnyStore::Sqlite(store) => store.$name($($arg),*).await,
                    AnyStore::Postgres(store) => store.$name($($arg),*).await,
                }
            })+
        }
    };
}

delegate! {
    fn migrate(&self) -> Result<()>;
    fn upsert_caregivers(&self, rows: &[CaregiverRecord])
        -> Result<Vec<(UpsertOutcome, Option<String>)>>;
    fn deactivate_caregivers_except(&self, keep: &[String]) -> Result<u64>;
    fn upsert_supervisors(&self, rows: &[SupervisorRecord])
        -> Result<Vec<(UpsertOutcome, Option<String>)>>;
    fn supervisor_ids(&self) -> Result<Vec<String>>;
    fn audience(&self, audience: &Audience) -> Result<Vec<Caregiver>>;
    fn caregiver_by_external_id(&self, external_id: &str) -> Result<Option<Caregiver>>;
    fn handle_inbound(&self, inbound: &Inbound, decide: &Decide<'_>) -> Result<InboundOutcome>;
    fn handle_addresses(&self, addresses: &[Address], now: DateTime<Utc>, decide: &Decide<'_>)
        -> Result<()>;
    fn due_conversations(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<DueConversation>>;
    fn handle_due_conversation(&self, id: i64, now: DateTime<Utc>, decide: &Decide<'_>)
        -> Result<bool>;
    fn register_flow_revision(&self, flow_id: &str, version: i64, source: &str) -> Result<i64>;
    fn flow_revision(&self, id: i64) -> Result<Option<FlowRevision>>;
    fn claim_outbound(&self, channel: Channel, now: DateTime<Utc>, limit: u32)
        -> Result<Vec<OutboundRow>>;
    fn mark_outbound_accepted(&self, id: i64, provider_id: &str) -> Result<()>;
    fn mark_outbound_accepted_many(&self, accepted: &[(i64, String)]) -> Result<()>;
    fn mark_outbound_unknown(&self, id: i64, error: &str) -> Result<()>;
    fn mark_outbound_retry(&self, id: i64, retry_at: DateTime<Utc>, error: &str) -> Result<()>;
    fn defer_outbound(&self, id: i64, until: DateTime<Utc>, why: &str) -> Result<()>;
    fn mark_outbound_failed(&self, id: i64, code: Option<&str>, error: &str) -> Result<()>;
    fn record_delivery_status(&self, id: Option<i64>, provider_id: &str, status: OutboundStatus,
        error_code: Option<&str>) -> Result<bool>;
    fn mark_stale_sending_unknown(&self, older_than: DateTime<Utc>) -> Result<u64>;
    fn set_consent(&self, address: &Address, status: ConsentStatus, source: &str, detail: &str,
        at: DateTime<Utc>) -> Result<()>;
    fn flag_invalid_phone(&self, phone: &str) -> Result<()>;
    fn handle_link(&self, inbound: &Inbound, claim: &LinkClaim, decide: &LinkDecide<'_>)
        -> Result<InboundOutcome>;
    fn create_invite(&self, phone: &str, channel: Channel, code_sha256: &str,
        expires_at: DateTime<Utc>) -> Result<Option<Invitee>>;
    fn linked_supervisor(&self, address: &Address) -> Result<Option<Supervisor>>;
    fn set_preferred_channel(&self, phone: &str, channel: Option<Channel>) -> Result<bool>;
    fn outbound_to(&self, address: &Address) -> Result<Vec<(OutboundStatus, String)>>;
    fn outbound_counts(&self) -> Result<Vec<(String, i64)>>;
    fn answers(&self, flow: Option<&str>, since: Option<NaiveDate>) -> Result<Vec<AnswerRow>>;
    fn escalations(&self, since: Option<NaiveDate>) -> Result<Vec<EscalationRow>>;
    fn consent_ledger(&self, address: &Address) -> Result<Vec<LedgerRow>>;
    fn create_shift_offer(&self, offer: &NewShiftOffer) -> Result<ShiftOffer>;
    fn shift_offers(&self, status: Option<ShiftStatus>) -> Result<Vec<ShiftListing>>;
    fn due_shift_offers(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<ShiftOffer>>;
    fn handle_shift_offer(&self, id: i64, trigger: ShiftTrigger, now: DateTime<Utc>,
        audience: &[Caregiver], decide: &ShiftDecide<'_>) -> Result<bool>;
    fn supervisors_of_branch(&self, branch: &str) -> Result<Vec<SupervisorRecord>>;
    fn due_escalations(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<i64>>;
    fn handle_due_escalation(&self, id: i64, now: DateTime<Utc>, named: &[String],
        decide: &DecideEscalation<'_>) -> Result<bool>;
    fn digest_candidates(&self, now: DateTime<Utc>) -> Result<Vec<i64>>;
    fn handle_digest(&self, supervisor_id: i64, now: DateTime<Utc>, decide: &DecideDigest<'_>)
        -> Result<()>;
    fn escalation_events(&self, id: i64) -> Result<Vec<EscalationEventRow>>;
    fn export_answers(&self, flow: Option<&str>, since: Option<NaiveDate>,
        sink: &mut Sink<'_, AnswerRow>) -> Result<u64>;
    fn export_escalations(&self, flow: Option<&str>, since: Option<NaiveDate>,
        sink: &mut Sink<'_, EscalationRow>) -> Result<u64>;
    fn pulse_rows(&self, flow: &str, key: &str, since: DateTime<Utc>,
        sink: &mut Sink<'_, PulseRow>) -> Result<()>;
    fn create_start(&self, start: &NewStart, now: DateTime<Utc>) -> Result<i64>;
    fn start_row(&self, id: i64) -> Result<Option<StartRow>>;
    fn unfinished_start(&self, flow_id: &str, audience: &Audience,
        vars: &BTreeMap<String, Value>, now: DateTime<Utc>) -> Result<Option<StartRow>>;
    fn due_starts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<StartRow>>;
    fn list_starts(&self, all: bool) -> Result<Vec<StartRow>>;
    fn claim_start(&self, id: i64, owner: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>)
        -> Result<bool>;
    fn release_start(&self, id: i64, owner: &str) -> Result<()>;
    fn run_start_batch(&self, id: i64, owner: &str, now: DateTime<Utc>,
        lease_until: DateTime<Utc>, limit: u32, decide: &StartDecide<'_>) -> Result<StartBatch>;
    fn schedules(&self) -> Result<Vec<ScheduleRow>>;
    fn put_schedule(&self, row: &ScheduleRow) -> Result<()>;
    fn delete_schedules_except(&self, flow_ids: &[String]) -> Result<u64>;
    fn caregiver_timezones(&self) -> Result<Vec<String>>;
    fn fire_schedule(&self, flow_id: &str, timezone: &str, due: DateTime<Utc>,
        next: DateTime<Utc>, start: &NewStart) -> Result<Option<i64>>;
    fn caregiver_external_ids(&self) -> Result<Vec<String>>;
    fn upsert_training(&self, flow_id: &str, rows: &[TrainingRecord], now: DateTime<Utc>)
        -> Result<Vec<UpsertOutcome>>;
    fn run_training_batch(&self, flow_id: &str, program: &str, now: DateTime<Utc>, limit: u32,
        decide: &StartDecide<'_>) -> Result<TrainingBatch>;
    fn training_assignments(&self) -> Result<Vec<TrainingRow>>;
    fn sweep_retention(&self, retention: &Retention, now: DateTime<Utc>, batch: u32)
        -> Result<Swept>;
    fn export_caregiver(&self, who: &Person, now: DateTime<Utc>)
        -> Result<Option<CaregiverExport>>;
    fn erase_caregiver(&self, who: &Person, now: DateTime<Utc>) -> Result<Erasure>;
}
