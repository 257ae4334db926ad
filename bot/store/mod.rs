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
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Address, Channel, Lang, Priority};

pub use postgres::PgStore;
pub use shifts::{
    ClaimOutcome, HeldShift, NewShiftOffer, ShiftAnswer, ShiftCandidate, ShiftClaim, ShiftDecide,
    ShiftListing, ShiftOffer, ShiftPlan, ShiftRecipient, ShiftSnapshot, ShiftStatus, ShiftTrigger,
    ShiftWrite, next_code,
};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported DATABASE_URL {0:?} (expected sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    /// The runner's decision failed; the transaction was rolled back.
    #[error("{0}")]
    Decide(String),
    /// The runner handed over a plan that cannot be applied as written (an answer for an
    /// address with no caregiver, a reference to a conversation the plan did not create). The
    /// transaction is rolled back.
    #[error("plan cannot be applied: {0}")]
    InvalidPlan(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Roster

/// One caregiver as the roster import hands it over (already validated).
#[derive(Debug, Clone, PartialEq)]
pub struct CaregiverRecord {
    pub external_id: String,
    pub first_name: String,
    pub last_name: String,
    /// E.164.
    pub phone: String,
    pub language: Lang,
    /// IANA time zone name.
    pub timezone: String,
    pub branch: String,
    pub supervisor_id: Option<String>,
    /// Sorted, deduplicated.
    pub groups: Vec<String>,
    pub consent_at: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorRecord {
    pub external_id: String,
    pub name: String,
    /// E.164.
    pub phone: String,
    pub email: String,
    pub branch: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Added,
    Updated,
    Unchanged,
    /// The row was not written; the string says why (for example the phone number belongs to
    /// another caregiver).
    Rejected,
}

/// A caregiver as the runner sees one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caregiver {
    pub id: i64,
    pub external_id: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: String,
    pub language: Lang,
    pub timezone: String,
    pub branch: String,
    pub groups: Vec<String>,
    pub consent_at: Option<NaiveDate>,
    pub active: bool,
    /// Fields set by flows (`set:`), as a JSON object.
    pub fields: BTreeMap<String, Value>,
    pub tags: Vec<String>,
    pub supervisor: Option<Supervisor>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Supervisor {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub phone: String,
    pub timezone: String,
}

/// Who a `start` or a schedule is for. Only active caregivers are ever selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    All,
    Group(String),
    Branch(String),
    Phones(Vec<String>),
}

// ---------------------------------------------------------------------------------------------
// Consent

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// Nothing on record for this address on this channel.
    Unknown,
    OptedIn,
    OptedOut,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Unknown => "unknown",
            ConsentStatus::OptedIn => "opted_in",
            ConsentStatus::OptedOut => "opted_out",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conversations

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Waiting for the caregiver (at most one per caregiver and channel).
    Active,
    Completed,
    Expired,
    /// Ended because another flow took over, or the caregiver opted out.
    Interrupted,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Active => "active",
            ConversationStatus::Completed => "completed",
            ConversationStatus::Expired => "expired",
            ConversationStatus::Interrupted => "interrupted",
        }
    }
}

/// An open conversation as stored: `state` is the engine's state, serialized as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub id: i64,
    pub caregiver_id: i64,
    pub channel: Channel,
    pub address: String,
    pub flow_id: String,
    /// Key into `flow_revisions`: the exact flow text this conversation started on.
    pub flow_rev: i64,
    pub status: ConversationStatus,
    pub state: Value,
    /// When the scheduler must wake this conversation (reminder or expiry), if ever.
    pub wake_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
}

/// Everything the runner needs to decide what one inbound message (or timer, or start) does,
/// read inside the transaction that will apply the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub address: Address,
    pub consent: ConsentStatus,
    pub caregiver: Option<Caregiver>,
    /// The caregiver's active conversation on this channel.
    pub conversation: Option<ConversationRow>,
    /// For an address that is not on the roster: whether it already got today's polite reply.
    /// "Today" is the UTC date of the inbound message's `received_at` (or of `now`), so a
    /// [`Write::StrangerReplied`] should carry that same date.
    pub stranger_replied_today: bool,
    /// Shift offers the caregiver was texted whose shift has not ended, newest first: a YES or
    /// NO to one is read before any flow. Loaded for inbound messages only (empty for starts
    /// and timers).
    pub shifts: Vec<HeldShift>,
}

// ---------------------------------------------------------------------------------------------
// Messages

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundKind {
    /// An immediate reply inside a conversation the caregiver just wrote to: never held for
    /// quiet hours.
    Reply,
    /// A message the caregiver did not just ask for (a flow start, a reminder): quiet hours apply.
    Program,
    /// A consent confirmation (STOP, START, HELP): the one message allowed after STOP.
    Consent,
    /// A supervisor alert.
    Alert,
}

impl OutboundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundKind::Reply => "reply",
            OutboundKind::Program => "program",
            OutboundKind::Consent => "consent",
            OutboundKind::Alert => "alert",
        }
    }
}

/// Delivery status of an outbound message. The order of the variants is the order a message
/// moves through; a status never moves backwards (a late `sent` callback after `delivered`
/// changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundStatus {
    /// In the outbox, waiting for its time (quiet hours, pacing, retry backoff).
    Queued,
    /// Claimed by a dispatcher that is calling the provider right now.
    Sending,
    /// Accepted by the provider (`queued`/`accepted` there).
    Accepted,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    /// Not sent on purpose: opted out since it was queued, caregiver deactivated.
    Suppressed,
    /// Left in `sending` by a crash: the provider may or may not have it. Needs reconciliation
    /// (a status callback carrying our id) or a human; never re-sent blindly.
    Unknown,
}

impl OutboundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundStatus::Queued => "queued",
            OutboundStatus::Sending => "sending",
            OutboundStatus::Accepted => "accepted",
            OutboundStatus::Sent => "sent",
            OutboundStatus::Delivered => "delivered",
            OutboundStatus::Undelivered => "undelivered",
            OutboundStatus::Failed => "failed",
            OutboundStatus::Suppressed => "suppressed",
            OutboundStatus::Unknown => "unknown",
        }
    }

    /// How far along a message is: a status report is applied only when its rank is higher
    /// than the stored status's, so nothing moves backwards and nothing final changes.
    ///
    /// - 0 `queued`
    /// - 1 `sending` and `unknown`: the provider may or may not have it; a report settles it
    /// - 2 `accepted`
    /// - 3 `sent`
    /// - 4 `delivered`, `undelivered`, `failed`, `suppressed`: final. The derived order puts
    ///   `undelivered` and `failed` after `delivered`, but a late `undelivered` after
    ///   `delivered` (or a `delivered` after `failed`) is a report out of order, not news.
    pub fn rank(self) -> u8 {
        match self {
            OutboundStatus::Queued => 0,
            OutboundStatus::Sending | OutboundStatus::Unknown => 1,
            OutboundStatus::Accepted => 2,
            OutboundStatus::Sent => 3,
            OutboundStatus::Delivered
            | OutboundStatus::Undelivered
            | OutboundStatus::Failed
            | OutboundStatus::Suppressed => 4,
        }
    }
}

/// `FromStr` for the store's enums: the inverse of `as_str`, for reading them back.
macro_rules! from_as_str {
    ($($ty:ident: $($variant:ident),+;)+) => {$(
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                [$($ty::$variant),+]
                    .into_iter()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| format!(concat!("unknown ", stringify!($ty), " {:?}"), text))
            }
        }
    )+};
}

from_as_str! {
    ConsentStatus: Unknown, OptedIn, OptedOut;
    ConversationStatus: Active, Completed, Expired, Interrupted;
    OutboundKind: Reply, Program, Consent, Alert;
    OutboundStatus: Queued, Sending, Accepted, Sent, Delivered, Undelivered, Failed, Suppressed,
        Unknown;
}

/// A message to queue in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbound {
    pub address: Address,
    pub caregiver_id: Option<i64>,
    pub conversation: Option<ConvRef>,
    pub kind: OutboundKind,
    pub body: String,
    /// "gsm7" or "ucs2".
    pub encoding: String,
    pub segments: u32,
    /// Not before this instant (quiet hours).
    pub not_before: DateTime<Utc>,
    /// Buttons to offer where the channel has them (Telegram), as `(label, payload)`.
    pub buttons: Vec<(String, String)>,
}

/// A conversation referred to from a plan: one that exists, or the one this plan creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvRef {
    Existing(i64),
    New,
}

/// An outbound message claimed by a dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRow {
    pub id: i64,
    pub address: Address,
    pub caregiver_id: Option<i64>,
    pub kind: OutboundKind,
    pub body: String,
    pub segments: u32,
    pub attempts: u32,
    pub buttons: Vec<(String, String)>,
    pub created_at: DateTime<Utc>,
    /// The caregiver's time zone, so the dispatcher can hold a program message whose window
    /// closed while it waited in a backlog.
    pub timezone: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Plans

/// One change the runner decided on. The store applies a plan's writes in order, in the
/// transaction the snapshot was read in.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Change consent for the snapshot's address and add a row to the consent ledger.
    Consent {
        status: ConsentStatus,
        /// "keyword", "import", "flow", "provider_error", "cli".
        source: String,
        /// Free text for the ledger, for example the keyword or the provider's error code.
        detail: String,
    },
    /// Start a conversation (status active) for the snapshot's caregiver and address.
    /// Fails the plan if one is already active on that channel (a unique index enforces it).
    CreateConversation {
        flow_id: String,
        flow_rev: i64,
        state: Value,
        wake_at: Option<DateTime<Utc>>,
    },
    UpdateConversation {
        conversation: ConvRef,
        status: ConversationStatus,
        state: Value,
        wake_at: Option<DateTime<Utc>>,
    },
    Answer {
        conversation: ConvRef,
        flow_id: String,
        step: String,
        key: String,
        value: Value,
        raw: String,
        anonymous: bool,
    },
    Escalation {
        conversation: ConvRef,
        flow_id: String,
        step: String,
        priority: Priority,
        reason: String,
        /// The caregiver's words that caused it.
        answer: String,
        /// The rendered alert text.
        message: String,
    },
    /// Replace the caregiver's flow-set fields and tags.
    CaregiverFields {
        fields: BTreeMap<String, Value>,
        tags: Vec<String>,
    },
    Outbound(NewOutbound),
    /// Remember that this stranger got today's polite reply.
    StrangerReplied {
        day: NaiveDate,
    },
    /// A YES to a shift offer from the snapshot's caregiver: the conditional award, then the
    /// messages of whatever it came to (see [`ShiftClaim`]).
    ClaimShift(ShiftClaim),
    /// A NO to a shift offer from the snapshot's caregiver.
    DeclineShift {
        offer_id: i64,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<Write>,
}

/// What happened to an inbound message handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Recorded and its plan applied.
    Processed,
    /// Already recorded (a provider retry): nothing changed.
    Duplicate,
}

/// An inbound message, normalized by its transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub address: Address,
    pub text: String,
    /// The provider's message id (Twilio `MessageSid`, Telegram `update_id`); unique per channel.
    pub external_id: String,
    pub received_at: DateTime<Utc>,
}

/// What a conversation timer was for; see [`Store::due_conversations`].
#[derive(Debug, Clone, PartialEq)]
pub struct DueConversation {
    pub id: i64,
    pub wake_at: DateTime<Utc>,
}

/// A stored answer, for exports and the simulator's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerRow {
    pub caregiver: String,
    pub flow: String,
    pub step: String,
    pub key: String,
    pub answer: Value,
    pub raw: String,
    pub answered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationRow {
    pub id: i64,
    pub caregiver: String,
    pub supervisor: Option<String>,
    pub priority: String,
    pub reason: String,
    pub answer: String,
    pub message: String,
    pub status: String,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// A consent ledger row: (status, source, detail, at).
pub type LedgerRow = (String, String, String, DateTime<Utc>);

/// A flow revision: the exact text a conversation started on.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRevision {
    pub id: i64,
    pub flow_id: String,
    pub version: i64,
    pub source: String,
}

/// The decision function the runner hands to the store: pure, called inside the transaction.
/// An `Err` rolls the whole transaction back (the store returns `StoreError::Decide`).
pub type Decide<'a> = dyn Fn(&Snapshot) -> std::result::Result<Plan, String> + Send + Sync + 'a;

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

    /// Claims up to `limit` queued messages on `channel` whose `not_before` has come, oldest
    /// first, and marks them `sending` (attempts + 1) in the same statement, so two dispatchers
    /// never claim the same row. Messages to an address that has opted out since they were
    /// queued are marked `suppressed` instead (consent confirmations excepted).
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
    /// Twilio 21610, or Telegram's "bot was blocked"), with a ledger row.
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
            Err(StoreError::UnsupportedUrl(url.to_owned()))
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
    fn mark_outbound_unknown(&self, id: i64, error: &str) -> Result<()>;
    fn mark_outbound_retry(&self, id: i64, retry_at: DateTime<Utc>, error: &str) -> Result<()>;
    fn mark_outbound_failed(&self, id: i64, code: Option<&str>, error: &str) -> Result<()>;
    fn record_delivery_status(&self, id: Option<i64>, provider_id: &str, status: OutboundStatus,
        error_code: Option<&str>) -> Result<bool>;
    fn mark_stale_sending_unknown(&self, older_than: DateTime<Utc>) -> Result<u64>;
    fn set_consent(&self, address: &Address, status: ConsentStatus, source: &str, detail: &str,
        at: DateTime<Utc>) -> Result<()>;
    fn flag_invalid_phone(&self, phone: &str) -> Result<()>;
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
}
