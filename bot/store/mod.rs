//! The store: everything carebot keeps, behind one trait with a SQLite and a PostgreSQL
//! implementation. The runner never writes SQL: it reads a [`Snapshot`], decides (purely) what
//! should happen, and hands back a [`Plan`] that the store applies in the same transaction.

mod postgres;
mod shifts;
mod sql;
mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Address, Channel, Lang, Priority};
use crate::privacy::{CaregiverExport, Erasure, Person, Retention, Swept};

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
    /// Holds the URL's scheme only: the rest may carry a password, and this error is printed.
    #[error("unsupported DATABASE_URL scheme {0:?} (expected sqlite://… or postgres://…)")]
    UnsupportedUrl(String),
    /// The runner's decision failed; the transaction was rolled back.
    #[error("{0}")]
    Decide(String),
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
    /// How the caregiver can be reached besides their phone, and which channel they prefer.
    pub reach: Reach,
}

/// A caregiver's channels: consent on SMS, their Telegram chat (if linked), and which channel
/// program messages should use when both are open (see `runner::reach`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reach {
    /// Consent on their phone number.
    pub sms: ConsentStatus,
    /// Their linked Telegram chat and the consent in force there.
    pub telegram: Option<(String, ConsentStatus)>,
    /// Set by an operator (`carebot prefer`); wins over `last`.
    pub preferred: Option<Channel>,
    /// The channel they last wrote on; `None` until they first write on one that is not SMS.
    pub last: Option<Channel>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Supervisor {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub phone: String,
    pub timezone: String,
    /// Their linked Telegram chat, when it is opted in: alerts go there instead of by SMS.
    pub telegram: Option<String>,
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
    /// When the sender is a supervisor: who, and the alerts they may act on. Read for inbound
    /// messages only.
    pub desk: Option<Desk>,
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
    EscalationStatus: Open, Acknowledged, Calling, Done;
    EscalationAction: Raised, Alerted, Reescalated, Resent, Unrouted, Ack, Call, Note, Done,
        CaregiverTold;
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
    /// The conversation that queued it: Telegram ties a keyboard's buttons to it.
    pub conversation_id: Option<i64>,
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
        /// "keyword", "request" (a request to stop in plain words), "import", "flow",
        /// "provider_error", "cli".
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
        /// Stored apart (`anonymous_pending`, then `anonymous_answers`), with nothing that
        /// leads back to the caregiver.
        anonymous: bool,
        /// Free text (`expect: text`): removed after the retention period, unlike a score.
        free_text: bool,
    },
    Escalation {
        conversation: ConvRef,
        flow_id: String,
        step: String,
        priority: Priority,
        reason: String,
        /// The caregiver's words that caused it.
        answer: String,
        /// The alert text, when it is known already; empty when it is rendered from `template`
        /// at routing time (alerts show the escalation's id, which the store assigns).
        message: String,
        /// The alert template, and what it renders with besides `escalation.*` and `agency`
        /// (caregiver, supervisor, answers, vars, flow, and the caregiver's `address` and
        /// `lang` for the message `when_taken_up`).
        template: String,
        context: Value,
        /// Sent to the caregiver when a supervisor takes the alert up (a flow's choice).
        when_taken_up: Option<String>,
        /// The answer was anonymous and the caregiver agreed to be named.
        consented: bool,
    },
    /// Changes an escalation: its routing, a supervisor's reply, the follow-up clock. The
    /// runner computes the whole new state from the locked row it was given.
    UpdateEscalation(EscalationUpdate),
    /// The routing chain of an escalation, level by level (supervisor ids); written once, when
    /// it is first routed.
    EscalationChain {
        id: i64,
        levels: Vec<Vec<i64>>,
    },
    /// A line in an escalation's history. `Alerted`, `Reescalated` and `Resent` also mark the
    /// supervisor as notified.
    EscalationEvent {
        id: i64,
        action: EscalationAction,
        supervisor_id: Option<i64>,
        level: i64,
        detail: String,
    },
    /// A supervisor got today's digest (`day` is their local date).
    DigestSent {
        supervisor_id: i64,
        day: NaiveDate,
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
    /// Link the snapshot's address (a Telegram chat) to a caregiver and/or a supervisor. A
    /// caregiver keeps one chat per channel: their other links on this channel are removed.
    Link {
        caregiver_id: Option<i64>,
        supervisor_id: Option<i64>,
    },
    /// Use up an invite (see [`Store::handle_link`]); fails the plan if it was used meanwhile.
    UseInvite {
        id: i64,
    },
    /// Move a conversation to the snapshot's address: the caregiver answered it from another
    /// channel, so its next messages go there.
    MoveConversation {
        conversation: i64,
    },
    /// The snapshot's caregiver wrote on this channel (see [`Reach::last`]).
    CaregiverChannel {
        channel: Channel,
    },
    /// The snapshot's caregiver chose this language themselves.
    CaregiverLanguage {
        language: Lang,
    },
    /// Change consent for another address of the snapshot's caregiver (STOP ALL), with a
    /// ledger row.
    ConsentAt {
        address: Address,
        status: ConsentStatus,
        source: String,
        detail: String,
    },
}

impl Write {
    /// An answer to a question marked `anonymous`: its inbound message keeps neither its
    /// words nor its instant.
    pub fn is_anonymous_answer(&self) -> bool {
        matches!(
            self,
            Write::Answer {
                anonymous: true,
                ..
            }
        )
    }
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

// ---------------------------------------------------------------------------------------------
// Escalations after they are raised

/// Where an escalation stands. The names are the export's `status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationStatus {
    /// Raised; nobody has replied yet.
    Open,
    /// A supervisor replied ACK (or NOTE).
    Acknowledged,
    /// A supervisor replied CALL: they will call the caregiver.
    Calling,
    /// A supervisor replied DONE.
    Done,
}

impl EscalationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationStatus::Open => "open",
            EscalationStatus::Acknowledged => "acknowledged",
            EscalationStatus::Calling => "calling",
            EscalationStatus::Done => "done",
        }
    }
}

/// What happened to an escalation, as its history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationAction {
    Raised,
    /// The alert went to a contact of the first level it was routed to.
    Alerted,
    /// Not acknowledged in its window: sent on to a contact of the next level.
    Reescalated,
    /// Not acknowledged in its window: sent again to a contact who had it.
    Resent,
    /// Nobody to send it to: no supervisor, branch contact or program staff on record.
    Unrouted,
    Ack,
    Call,
    Note,
    Done,
    /// The caregiver was told that a supervisor took it up.
    CaregiverTold,
}

impl EscalationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationAction::Raised => "raised",
            EscalationAction::Alerted => "alerted",
            EscalationAction::Reescalated => "reescalated",
            EscalationAction::Resent => "resent",
            EscalationAction::Unrouted => "unrouted",
            EscalationAction::Ack => "ack",
            EscalationAction::Call => "call",
            EscalationAction::Note => "note",
            EscalationAction::Done => "done",
            EscalationAction::CaregiverTold => "caregiver_told",
        }
    }

    /// Whether the event means the supervisor was sent the alert.
    pub fn notifies(self) -> bool {
        matches!(
            self,
            EscalationAction::Alerted | EscalationAction::Reescalated | EscalationAction::Resent
        )
    }
}

/// Someone an alert can go to: a supervisor, a branch contact or program staff (all of them
/// are rows of the supervisors roster), with the address their alerts go to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    /// Where alerts reach them: their linked Telegram chat while it is open to us, else their
    /// phone on SMS.
    pub address: Address,
    pub timezone: String,
    /// They texted STOP on that address: alerts there would be suppressed, so routing skips them.
    pub opted_out: bool,
}

/// An escalation as the follow-up clock and the supervisor replies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationState {
    pub id: i64,
    pub caregiver_id: i64,
    pub flow_id: String,
    pub priority: Priority,
    pub reason: String,
    pub answer: String,
    /// The alert text as sent (empty until it is first routed).
    pub message: String,
    pub status: EscalationStatus,
    pub level: i64,
    /// Who has it: the contact it was last routed to, or who took it up.
    pub supervisor_id: Option<i64>,
    pub template: String,
    pub context: Value,
    pub when_taken_up: Option<String>,
    pub consented: bool,
    pub resends: i64,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
}

/// The new state of an escalation, written over the old ([`Write::UpdateEscalation`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationUpdate {
    pub id: i64,
    pub status: EscalationStatus,
    pub level: i64,
    pub supervisor_id: Option<i64>,
    pub message: String,
    pub due_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub resends: i64,
}

impl EscalationState {
    /// The update that leaves everything as it is; change what the decision changes.
    pub fn update(&self) -> EscalationUpdate {
        EscalationUpdate {
            id: self.id,
            status: self.status,
            level: self.level,
            supervisor_id: self.supervisor_id,
            message: self.message.clone(),
            due_at: self.due_at,
            acknowledged_at: self.acknowledged_at,
            closed_at: self.closed_at,
            resends: self.resends,
        }
    }
}

/// One contact in an escalation's routing chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainContact {
    pub contact: Contact,
    pub level: i64,
    pub notified_at: Option<DateTime<Utc>>,
}

/// What the follow-up clock needs to route or re-route one escalation, read (and on
/// PostgreSQL locked) in the transaction that applies the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationSnapshot {
    pub escalation: EscalationState,
    /// The caregiver it is about (with their supervisor's roster row).
    pub caregiver: Option<Caregiver>,
    /// The caregiver's supervisor as a contact.
    pub supervisor: Option<Contact>,
    /// The contacts the settings name (branch contacts, program staff) that are on the roster.
    pub named: Vec<Contact>,
    /// The chain written at the first routing; empty before it.
    pub chain: Vec<ChainContact>,
}

/// An alert as a supervisor's desk shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeskAlert {
    pub escalation: EscalationState,
    /// The caregiver as alerts name them: first name and last initial.
    pub caregiver: String,
    pub branch: String,
    pub chain: Vec<ChainContact>,
}

/// A supervisor who wrote in (or is due a digest), with the alerts they may act on: those
/// routed to them or to the level before theirs, not closed more than a week ago.
#[derive(Debug, Clone, PartialEq)]
pub struct Desk {
    pub me: Contact,
    pub alerts: Vec<DeskAlert>,
    /// The local day of their last digest.
    pub last_digest: Option<NaiveDate>,
}

/// The decision for an escalation the follow-up clock woke.
pub type DecideEscalation<'a> =
    dyn Fn(&EscalationSnapshot) -> std::result::Result<Plan, String> + Send + Sync + 'a;

/// The decision for a supervisor's daily digest.
pub type DecideDigest<'a> = dyn Fn(&Desk) -> std::result::Result<Plan, String> + Send + Sync + 'a;

/// One row of the week-by-week data `report pulse` aggregates: a pulse started for a
/// caregiver, an answer to the score question, or an escalation. The group columns are the
/// caregiver's branch and state (`fields.state`) now, or as kept on an anonymous answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PulseRow {
    Asked {
        caregiver_id: i64,
        started_at: DateTime<Utc>,
        branch: String,
        state: Option<String>,
    },
    /// A named answer, placed by its conversation.
    Answered {
        caregiver_id: i64,
        started_at: DateTime<Utc>,
        branch: String,
        state: Option<String>,
        value: Value,
    },
    /// An anonymous answer, placed by what it kept.
    AnsweredAnonymously {
        week: NaiveDate,
        branch: String,
        state: Option<String>,
        value: Value,
    },
    /// An escalation the flow raised, placed (like its answer) by when its survey started.
    Escalation {
        priority: Priority,
        /// When its conversation started (when it was raised, if it had none).
        started_at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
        acknowledged_at: Option<DateTime<Utc>>,
        closed_at: Option<DateTime<Utc>>,
        branch: String,
        state: Option<String>,
    },
}

/// A line in an escalation's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationEventRow {
    pub action: String,
    /// The supervisor's external id.
    pub supervisor: Option<String>,
    pub level: i64,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// Where an export writes its rows as the store reads them.
pub type Sink<'a, T> = dyn FnMut(T) -> std::io::Result<()> + Send + 'a;

/// The Monday (UTC) of the week `t` falls in: how anonymous answers and `report pulse` place
/// things in weeks.
pub fn week_start(t: DateTime<Utc>) -> NaiveDate {
    let day = t.date_naive();
    day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()))
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

// ---------------------------------------------------------------------------------------------
// Durable starts, schedules and training assignments (the roster at scale)

impl Audience {
    /// Parses `all`, `group:NAME`, `branch:NAME` or `phone:+1…[,+1…]`; phone numbers are
    /// checked and normalized to E.164.
    pub fn parse(s: &str) -> std::result::Result<Audience, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(Audience::All);
        }
        match s.split_once(':') {
            Some(("group", name)) if !name.is_empty() => Ok(Audience::Group(name.to_lowercase())),
            Some(("branch", name)) if !name.is_empty() => Ok(Audience::Branch(name.to_owned())),
            Some(("phone", list)) => list
                .split(',')
                .map(|p| {
                    crate::domain::Phone::parse(p)
                        .map(|p| p.as_str().to_owned())
                        .map_err(|e| format!("{p:?}: {e}"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Audience::Phones),
            _ => Err(format!(
                "audience {s:?} must be all, group:NAME, branch:NAME or phone:+1…[,+1…]"
            )),
        }
    }
}

impl Audience {
    /// Reads an audience as stored with a durable start: its phone numbers were checked when
    /// it was parsed from the operator's words, so they are taken as they are.
    pub fn parse_stored(s: &str) -> std::result::Result<Audience, String> {
        match s.split_once(':') {
            Some(("phone", list)) => Ok(Audience::Phones(
                list.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            _ => Audience::parse(s),
        }
    }
}

/// The form [`Audience::parse`] reads, as stored with a durable start.
impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audience::All => f.write_str("all"),
            Audience::Group(name) => write!(f, "group:{name}"),
            Audience::Branch(name) => write!(f, "branch:{name}"),
            Audience::Phones(phones) => write!(f, "phone:{}", phones.join(",")),
        }
    }
}

/// How far back contact pressure looks: a caregiver's weekly cap counts the program
/// conversations started in the 7 days before now.
pub const CAP_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// Who asked for a durable start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartOrigin {
    /// `carebot start` (now, or `--at` later).
    Cli,
    /// A flow's `schedule:`.
    Schedule,
}

impl StartOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            StartOrigin::Cli => "cli",
            StartOrigin::Schedule => "schedule",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartStatus {
    /// Not begun.
    Pending,
    /// Going through its audience.
    Running,
    /// Through its audience; capped caregivers wait for room in their weekly cap.
    Waiting,
    Done,
}

impl StartStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StartStatus::Pending => "pending",
            StartStatus::Running => "running",
            StartStatus::Waiting => "waiting",
            StartStatus::Done => "done",
        }
    }
}

from_as_str! {
    StartOrigin: Cli, Schedule;
    StartStatus: Pending, Running, Waiting, Done;
}

/// A flow to start for an audience, recorded before any caregiver is touched.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStart {
    pub flow_id: String,
    /// The flow's program (`shift`, `training`, `benefits`, `survey`, `onboarding`).
    pub program: String,
    /// Lower runs first when several starts are due at once.
    pub priority: i64,
    pub audience: Audience,
    /// Only the audience's caregivers in this IANA zone.
    pub timezone: Option<String>,
    pub vars: BTreeMap<String, Value>,
    pub origin: StartOrigin,
    /// Starts with the same key are one start: a second `create_start` returns the first's id.
    pub dedupe_key: Option<String>,
    pub run_at: DateTime<Utc>,
}

/// A durable start as stored, with its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartRow {
    pub id: i64,
    pub flow_id: String,
    pub program: String,
    pub priority: i64,
    pub audience: String,
    pub timezone: Option<String>,
    pub vars: BTreeMap<String, Value>,
    pub origin: StartOrigin,
    pub run_at: DateTime<Utc>,
    pub status: StartStatus,
    /// Caregivers in the audience when the start began.
    pub total: u64,
    pub processed: u64,
    pub started: u64,
    /// Skipped caregivers by reason ("no consent", "capped"…).
    pub skipped: BTreeMap<String, u64>,
    /// Capped caregivers still waiting for room in their weekly cap.
    pub waiting: u64,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a start decision reads about one caregiver: the usual snapshot, plus how many program
/// conversations they began in the trailing week (contact pressure).
#[derive(Debug, Clone, PartialEq)]
pub struct StartSnapshot {
    pub snapshot: Snapshot,
    /// Program conversations (onboarding excluded) started in the week before `now`.
    pub week_count: u32,
    /// When the oldest of those started: its week ends when a slot frees.
    pub week_oldest: Option<DateTime<Utc>>,
    /// Per-caregiver start variables (a training assignment's module, link and due date).
    pub vars: BTreeMap<String, Value>,
}

/// What a start did for one caregiver.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    Started,
    /// Not started, for this reason ("opted out", "capped"…).
    Skipped(String),
    /// Capped, and the flow waits: try again at `retry_at`.
    Wait {
        retry_at: DateTime<Utc>,
    },
}

/// The decision for one caregiver of a start: pure, called inside the batch's transaction.
pub type StartDecide<'a> =
    dyn Fn(&StartSnapshot) -> std::result::Result<(Plan, StartOutcome), String> + Send + Sync + 'a;

/// What one batch of a durable start did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartBatch {
    /// Caregivers handled in this batch.
    pub handled: usize,
    /// Nothing more to do now: finished, or only waits that are not due yet.
    pub idle: bool,
    /// Another runner holds the start now; nothing was written.
    pub lease_lost: bool,
}

/// A flow's `schedule:` for the caregivers of one time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub flow_id: String,
    pub timezone: String,
    pub cron: String,
    pub audience: String,
    pub next_run_at: DateTime<Utc>,
}

/// One row of `carebot import training`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRecord {
    /// The caregiver's `external_id`.
    pub caregiver: String,
    pub module: String,
    pub link: String,
    pub due_date: NaiveDate,
}

/// What a training batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingBatch {
    pub started: usize,
    /// Assignments tried and put off, by reason.
    pub skipped: BTreeMap<String, usize>,
}

/// A training assignment as stored (for tests and reports).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRow {
    pub caregiver: String,
    pub module: String,
    pub link: String,
    pub due_date: NaiveDate,
    /// assigned, started, done or expired.
    pub status: String,
    pub conversation_id: Option<i64>,
    pub next_try_at: DateTime<Utc>,
    pub last_skip: Option<String>,
}

/// What a person offers to prove who they are when linking a chat (see [`Store::handle_link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkClaim {
    /// Their own phone number, shared as a Telegram contact (E.164).
    Phone(String),
    /// An invite code from `carebot invite`, as its SHA-256 in lowercase hex.
    Invite { code_sha256: String },
}

/// What an invite code came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    /// Unused and unexpired: linking uses it up ([`Write::UseInvite`]).
    Valid(i64),
    Expired,
    Used,
    /// No such code.
    Unknown,
}

/// Who a [`LinkClaim`] names, found in the transaction that will link them.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkCandidate {
    /// The active caregiver with that phone number (or the invite's caregiver).
    pub caregiver: Option<Caregiver>,
    /// The supervisor with that phone number (or the invite's supervisor).
    pub supervisor: Option<Supervisor>,
    /// For an invite claim, what the code came to.
    pub invite: Option<InviteState>,
}

/// Who an invite was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invitee {
    /// A caregiver's external id and first name.
    Caregiver { external_id: String, name: String },
    /// A supervisor's external id and name.
    Supervisor { external_id: String, name: String },
}

/// The decision for a linking message: like [`Decide`], with who the claim named.
pub type LinkDecide<'a> =
    dyn Fn(&Snapshot, &LinkCandidate) -> std::result::Result<Plan, String> + Send + Sync + 'a;

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
