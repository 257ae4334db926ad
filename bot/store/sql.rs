//! The one implementation of [`Store`], written once over sqlx's `Database` and compiled for
//! SQLite and PostgreSQL: the runner's transactions, the outbox, the roster and the results.
//! The little that differs between the two (how a write transaction begins, row locks,
//! timestamp encoding, migrations) is a [`Dialect`], in `sqlite.rs` and `postgres.rs`.
//!
//! The SQL is shared too: SQLite accepts PostgreSQL's numbered `$1` parameters, `ON CONFLICT`,
//! `RETURNING`, `TRUE`/`FALSE` and partial indexes, so one string serves both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::query::QueryAs;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool};
use sqlx::{QueryBuilder, Type};

use super::ShiftDecide;
use super::StartDecide;
use super::{Decide, DecideDigest, DecideEscalation, LinkDecide, Result, Sink, Store, StoreError};
use crate::domain::{Address, Channel, Lang};
use crate::model::{
    AnswerRow, Audience, Caregiver, CaregiverRecord, ChainContact, ConsentStatus, Contact, ConvRef,
    ConversationRow, ConversationStatus, Desk, DeskAlert, DueConversation, EscalationAction,
    EscalationEventRow, EscalationRow, EscalationSnapshot, EscalationState, FlowRevision, Inbound,
    InboundOutcome, InviteState, Invitee, LedgerRow, LinkCandidate, LinkClaim, NewOutbound,
    OutboundRow, OutboundStatus, Plan, PulseRow, Reach, Snapshot, Supervisor, SupervisorRecord,
    UpsertOutcome, Write, week_start,
};
use crate::model::{NewShiftOffer, ShiftListing, ShiftOffer, ShiftStatus, ShiftTrigger};
use crate::model::{
    NewStart, ScheduleRow, StartBatch, StartRow, TrainingBatch, TrainingRecord, TrainingRow,
};
use serde_json::Value;

/// Durable starts, schedules and training assignments: the batched, set-wise write path.
mod starts;

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
// SQL that is assembled from parts (the rest is written inline where it runs)

/// The columns of a [`ConversationDb`], then `WHERE` with `$cond` and the dialect's `$lock`.
macro_rules! conversation_sql {
    ($cond:literal, $lock:literal) => {
        concat!(
            "SELECT id, caregiver_id, channel, address, flow_id, flow_rev, status, state, ",
            "wake_at, started_at FROM conversations WHERE ",
            $cond,
            " ",
            $lock
        )
    };
}
pub(crate) use conversation_sql;

/// The columns of an [`EscalationDb`], then `WHERE` with `$cond` and the dialect's `$lock`.
macro_rules! escalation_sql {
    ($cond:literal, $lock:literal) => {
        concat!(
            "SELECT id, caregiver_id, flow_id, priority, reason, answer, message, status, level, ",
            "supervisor_id, template, context, when_taken_up, caregiver_consent, resends, ",
            "raised_at, acknowledged_at, closed_at, due_at FROM escalations WHERE ",
            $cond,
            " ",
            $lock
        )
    };
}
pub(crate) use escalation_sql;

/// The escalations on supervisor `$1`'s desk: routed to them (at any level), not closed
/// before `$2`. A reply or a digest narrows them down further.
macro_rules! desk_ids {
    () => {
        "SELECT e.id FROM escalations e WHERE e.id IN (SELECT escalation_id \
         FROM escalation_contacts WHERE supervisor_id = $1) \
         AND (e.status <> 'done' OR e.closed_at >= $2)"
    };
}

/// The columns of a [`ContactDb`] for supervisor `s`: the one place a supervisor's channel is
/// chosen. Today an alert goes to the supervisor's phone by SMS; Telegram (issue 4) adds a
/// linked chat here, preferred over the phone when the supervisor has one.
macro_rules! contact_columns {
    () => {
        concat!(
            "s.id, s.external_id, s.name, s.timezone, ",
            "CASE WHEN ",
            supervisor_telegram!(),
            " IS NULL THEN 'sms' ELSE 'telegram' END AS channel, ",
            "COALESCE(",
            supervisor_telegram!(),
            ", s.phone) AS address, ",
            "(",
            supervisor_telegram!(),
            " IS NULL AND EXISTS (SELECT 1 FROM subscriptions sub WHERE sub.channel = 'sms' ",
            "AND sub.address = s.phone AND sub.status = 'opted_out')) AS opted_out"
        )
    };
}

/// Supervisor `s`'s linked Telegram chat, if it is open to us: where their alerts go then
/// (see `model::supervisor_address`), else their phone.
macro_rules! supervisor_telegram {
    () => {
        "(SELECT l.address FROM supervisor_links l JOIN subscriptions x \
         ON x.channel = l.channel AND x.address = l.address WHERE l.supervisor_id = s.id \
         AND l.channel = 'telegram' AND x.status = 'opted_in' \
         ORDER BY l.created_at DESC LIMIT 1)"
    };
}

/// Why a queued message must not go out after all; see [`Store::claim_outbound`]. A consent
/// confirmation goes out even after STOP (it is the one message allowed), and an alert to a
/// supervisor does not depend on the caregiver it is about still being active. A message
/// whose text is '[erased]' was being sent to or about a caregiver when they were erased
/// (`carebot caregiver erase`), and was then put back by a retry or a quiet-hours deferral:
/// whatever its kind, it has nothing left to say.
macro_rules! suppress_sql {
    () => {
        "(outbound_messages.body = '[erased]' \
        OR (kind <> 'consent' AND EXISTS (SELECT 1 FROM subscriptions s \
            WHERE s.channel = outbound_messages.channel \
            AND s.address = outbound_messages.address AND s.status = 'opted_out')) \
        OR (kind IN ('reply', 'program') AND EXISTS (SELECT 1 FROM caregivers c \
            WHERE c.id = outbound_messages.caregiver_id AND NOT c.active)) \
        OR (channel = 'sms' AND EXISTS (SELECT 1 FROM caregivers c \
            WHERE c.phone = outbound_messages.address AND c.phone_invalid)))"
    };
}
pub(crate) use suppress_sql;

/// Claims queued messages of channel `$1` due at `$2`, at most `$3`, in one statement. `$lock`
/// is PostgreSQL's `FOR UPDATE SKIP LOCKED`, so that dispatchers on several instances take
/// disjoint rows without waiting on each other; SQLite has one writer and needs none. `$kinds`
/// narrows the claim (`"AND kind <> 'program' "` walks the partial index of migration 0007).
macro_rules! claim_outbound_sql {
    ($lock:literal, $kinds:literal) => {
        concat!(
            "UPDATE outbound_messages SET status = CASE WHEN ",
            $crate::store::sql::suppress_sql!(),
            " THEN 'suppressed' ELSE 'sending' END, attempts = CASE WHEN ",
            $crate::store::sql::suppress_sql!(),
            " THEN attempts ELSE attempts + 1 END, updated_at = $2 ",
            "WHERE id IN (SELECT id FROM outbound_messages WHERE channel = $1 ",
            // `not_before, id`: the order of the partial index `outbound_messages_queue`
            // (migration 0006), so a claim reads its rows off the index and stops at the
            // limit instead of sorting the whole due backlog.
            "AND status = 'queued' AND not_before <= $2 ",
            $kinds,
            "ORDER BY not_before, id LIMIT $3 ",
            $lock,
            ") RETURNING id, channel, address, caregiver_id, kind, body, segments, attempts, ",
            "buttons, status, created_at, conversation_id"
        )
    };
}
pub(crate) use claim_outbound_sql;

/// The columns of a [`CaregiverDb`], from `caregivers c` joined to its supervisor, without a
/// `WHERE`: shared by [`caregivers_where!`] and the batched start path (`sql/starts.rs`).
macro_rules! caregivers_select {
    () => {
        concat!(
            "SELECT c.id, c.external_id, c.first_name, c.last_name, c.phone, ",
            "c.timezone, c.branch, c.consent_at, c.active, c.fields, c.tags, ",
            "s.id AS sup_id, s.external_id AS sup_external_id, s.name AS sup_name, ",
            "s.phone AS sup_phone, s.timezone AS sup_timezone, ",
            $crate::store::sql::reach_columns!(),
            "FROM caregivers c ",
            "LEFT JOIN supervisors s ON s.external_id = c.supervisor_external_id"
        )
    };
}
pub(crate) use caregivers_select;

/// The caregivers matched by `$cond` (over `caregivers c`) with their supervisor, and the
/// groups of the same caregivers: two statements, so that loading 100,000 caregivers is two
/// scans and not one query per caregiver.
macro_rules! caregivers_where {
    ($cond:literal) => {
        (
            concat!(caregivers_select!(), " WHERE ", $cond, " ORDER BY c.id"),
            concat!(
                "SELECT g.caregiver_id, g.name FROM caregiver_groups g ",
                "WHERE g.caregiver_id IN (SELECT c.id FROM caregivers c WHERE ",
                $cond,
                ") ORDER BY g.caregiver_id, g.name"
            ),
        )
    };
}

/// The columns of a caregiver's [`Reach`] and of their supervisor's Telegram chat, over
/// `caregivers c` and `supervisors s` (see `caregivers_where!`). The language a caregiver chose
/// themselves wins over the roster's. A caller that knows the SMS consent already gives the
/// expression for that column instead of the lookup.
macro_rules! reach_columns {
    () => {
        $crate::store::sql::reach_columns!(
            "(SELECT x.status FROM subscriptions x WHERE x.channel = 'sms' AND x.address = c.phone)"
        )
    };
    ($sms_consent:literal) => {
        concat!(
            "COALESCE(c.chosen_language, c.language) AS chosen_language, ",
            "c.preferred_channel, c.last_channel, ",
            $sms_consent,
            " AS sms_consent, ",
            "(SELECT l.address FROM caregiver_links l WHERE l.caregiver_id = c.id ",
            "AND l.channel = 'telegram' ORDER BY l.created_at DESC LIMIT 1) AS telegram_chat, ",
            "(SELECT x.status FROM caregiver_links l JOIN subscriptions x ",
            "ON x.channel = l.channel AND x.address = l.address WHERE l.caregiver_id = c.id ",
            "AND l.channel = 'telegram' ORDER BY l.created_at DESC LIMIT 1) AS telegram_consent, ",
            "(SELECT l.address FROM supervisor_links l JOIN subscriptions x ",
            "ON x.channel = l.channel AND x.address = l.address WHERE l.supervisor_id = s.id ",
            "AND l.channel = 'telegram' AND x.status = 'opted_in' ",
            "ORDER BY l.created_at DESC LIMIT 1) AS sup_telegram "
        )
    };
}
pub(crate) use reach_columns;

/// Which caregivers to load.
#[derive(Debug, Clone, Copy)]
pub(super) enum Filter<'a> {
    Id(i64),
    ExternalId(&'a str),
    Phone(&'a str),
    /// A non-phone address, through `caregiver_links`.
    Link(Channel, &'a str),
    Active,
    ActiveGroup(&'a str),
    ActiveBranch(&'a str),
    ActivePhone(&'a str),
}

impl Filter<'_> {
    /// The caregivers statement and the groups statement.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Filter::Id(_) => caregivers_where!("c.id = $1"),
            Filter::ExternalId(_) => caregivers_where!("c.external_id = $1"),
            Filter::Phone(_) => caregivers_where!("c.phone = $1"),
            Filter::Link(..) => caregivers_where!(
                "c.id IN (SELECT caregiver_id FROM caregiver_links \
                 WHERE channel = $1 AND address = $2)"
            ),
            Filter::Active => caregivers_where!("c.active"),
            Filter::ActiveGroup(_) => caregivers_where!(
                "c.active AND c.id IN (SELECT caregiver_id FROM caregiver_groups WHERE name = $1)"
            ),
            Filter::ActiveBranch(_) => caregivers_where!("c.active AND c.branch = $1"),
            Filter::ActivePhone(_) => caregivers_where!("c.active AND c.phone = $1"),
        }
    }

    /// The caregivers an address belongs to: by phone number on SMS and the console, by link
    /// elsewhere.
    fn address(address: &Address) -> Filter<'_> {
        match address.channel {
            Channel::Sms | Channel::Console => Filter::Phone(&address.value),
            other => Filter::Link(other, &address.value),
        }
    }
}

mod group_commit;
pub(super) use group_commit::GroupCommit;

// ---------------------------------------------------------------------------------------------
// Rows as stored: text where Rust has an enum or JSON, converted (and checked) on the way out

#[derive(FromRow)]
struct CaregiverDb {
    id: i64,
    external_id: String,
    first_name: String,
    last_name: String,
    phone: String,
    timezone: String,
    branch: String,
    consent_at: Option<NaiveDate>,
    active: bool,
    fields: String,
    tags: String,
    sup_id: Option<i64>,
    sup_external_id: Option<String>,
    sup_name: Option<String>,
    sup_phone: Option<String>,
    sup_timezone: Option<String>,
    chosen_language: String,
    preferred_channel: Option<String>,
    last_channel: Option<String>,
    sms_consent: Option<String>,
    telegram_chat: Option<String>,
    telegram_consent: Option<String>,
    sup_telegram: Option<String>,
}

impl CaregiverDb {
    fn into_caregiver(self, groups: Vec<String>) -> Result<Caregiver> {
        let supervisor = match (self.sup_id, self.sup_external_id) {
            (Some(id), Some(external_id)) => Some(Supervisor {
                id,
                external_id,
                name: self.sup_name.unwrap_or_default(),
                phone: self.sup_phone.unwrap_or_default(),
                timezone: self.sup_timezone.unwrap_or_default(),
                telegram: self.sup_telegram,
            }),
            _ => None,
        };
        let consent = |status: Option<String>| -> Result<ConsentStatus> {
            status.map_or(Ok(ConsentStatus::Unknown), |s| parse("consent status", &s))
        };
        let channel = |text: Option<String>| -> Result<Option<Channel>> {
            text.map(|c| parse("caregiver channel", &c)).transpose()
        };
        let reach = Reach {
            sms: consent(self.sms_consent)?,
            telegram: match self.telegram_chat {
                Some(chat) => Some((chat, consent(self.telegram_consent)?)),
                None => None,
            },
            preferred: channel(self.preferred_channel)?,
            last: channel(self.last_channel)?,
        };
        Ok(Caregiver {
            id: self.id,
            language: parse("caregiver language", &self.chosen_language)?,
            fields: json("caregiver fields", &self.fields)?,
            tags: json("caregiver tags", &self.tags)?,
            external_id: self.external_id,
            first_name: self.first_name,
            last_name: self.last_name,
            phone: self.phone,
            timezone: self.timezone,
            branch: self.branch,
            groups,
            consent_at: self.consent_at,
            active: self.active,
            supervisor,
            reach,
        })
    }
}

/// A caregiver as the roster import compares it.
#[derive(FromRow)]
struct RosterDb {
    id: i64,
    external_id: String,
    first_name: String,
    last_name: String,
    phone: String,
    language: String,
    timezone: String,
    branch: String,
    supervisor_external_id: Option<String>,
    consent_at: Option<NaiveDate>,
    active: bool,
}

#[derive(FromRow)]
struct SupervisorDb {
    id: i64,
    external_id: String,
    name: String,
    phone: String,
    email: String,
    branch: String,
    timezone: String,
}

/// A supervisor as a link or an invite finds one.
#[derive(FromRow)]
struct LinkedSupervisorDb {
    id: i64,
    external_id: String,
    name: String,
    phone: String,
    timezone: String,
}

impl LinkedSupervisorDb {
    fn into_supervisor(self) -> Supervisor {
        Supervisor {
            id: self.id,
            external_id: self.external_id,
            name: self.name,
            phone: self.phone,
            timezone: self.timezone,
            telegram: None,
        }
    }
}

#[derive(FromRow)]
struct InviteDb {
    id: i64,
    caregiver_id: Option<i64>,
    supervisor_id: Option<i64>,
    expires_at: Ts,
    used_at: Option<Ts>,
}

#[derive(FromRow, Clone, PartialEq)]
struct ConversationDb {
    id: i64,
    caregiver_id: i64,
    channel: String,
    address: String,
    flow_id: String,
    flow_rev: i64,
    status: String,
    state: String,
    wake_at: Option<Ts>,
    started_at: Ts,
}

impl ConversationDb {
    fn into_row(self) -> Result<ConversationRow> {
        Ok(ConversationRow {
            id: self.id,
            caregiver_id: self.caregiver_id,
            channel: parse("conversation channel", &self.channel)?,
            address: self.address,
            flow_id: self.flow_id,
            flow_rev: self.flow_rev,
            status: parse("conversation status", &self.status)?,
            state: json("conversation state", &self.state)?,
            wake_at: self.wake_at.map(|t| t.0),
            started_at: self.started_at.0,
        })
    }
}

#[derive(FromRow)]
struct OutboundDb {
    id: i64,
    channel: String,
    address: String,
    caregiver_id: Option<i64>,
    kind: String,
    body: String,
    segments: i64,
    attempts: i64,
    buttons: String,
    status: String,
    created_at: Ts,
    conversation_id: Option<i64>,
}

impl OutboundDb {
    fn into_row(self) -> Result<OutboundRow> {
        Ok(OutboundRow {
            id: self.id,
            address: Address::new(parse("outbound channel", &self.channel)?, self.address),
            caregiver_id: self.caregiver_id,
            kind: parse("outbound kind", &self.kind)?,
            body: self.body,
            segments: count("outbound segments", self.segments)?,
            attempts: count("outbound attempts", self.attempts)?,
            buttons: json("outbound buttons", &self.buttons)?,
            conversation_id: self.conversation_id,
            created_at: self.created_at.0,
            timezone: None,
        })
    }
}

#[derive(FromRow)]
struct AnswerDb {
    caregiver: String,
    flow_id: String,
    step: String,
    key: String,
    value: String,
    raw: String,
    answered_at: Ts,
}

#[derive(FromRow)]
struct EscalationDb {
    id: i64,
    caregiver: String,
    supervisor: Option<String>,
    priority: String,
    reason: String,
    answer: String,
    message: String,
    status: String,
    raised_at: Ts,
    acknowledged_at: Option<Ts>,
    closed_at: Option<Ts>,
}

#[derive(FromRow)]
struct EscalationStateDb {
    id: i64,
    caregiver_id: i64,
    flow_id: String,
    priority: String,
    reason: String,
    answer: String,
    message: String,
    status: String,
    level: i64,
    supervisor_id: Option<i64>,
    template: String,
    context: String,
    when_taken_up: Option<String>,
    caregiver_consent: bool,
    resends: i64,
    raised_at: Ts,
    acknowledged_at: Option<Ts>,
    closed_at: Option<Ts>,
    due_at: Option<Ts>,
}

impl EscalationStateDb {
    fn into_state(self) -> Result<EscalationState> {
        Ok(EscalationState {
            id: self.id,
            caregiver_id: self.caregiver_id,
            priority: parse("escalation priority", &self.priority)?,
            status: parse("escalation status", &self.status)?,
            context: json("escalation context", &self.context)?,
            flow_id: self.flow_id,
            reason: self.reason,
            answer: self.answer,
            message: self.message,
            level: self.level,
            supervisor_id: self.supervisor_id,
            template: self.template,
            when_taken_up: self.when_taken_up,
            consented: self.caregiver_consent,
            resends: self.resends,
            raised_at: self.raised_at.0,
            acknowledged_at: self.acknowledged_at.map(|t| t.0),
            closed_at: self.closed_at.map(|t| t.0),
            due_at: self.due_at.map(|t| t.0),
        })
    }
}

#[derive(FromRow)]
struct ContactDb {
    id: i64,
    external_id: String,
    name: String,
    timezone: String,
    channel: String,
    address: String,
    opted_out: bool,
}

impl ContactDb {
    fn into_contact(self) -> Result<Contact> {
        Ok(Contact {
            id: self.id,
            address: Address::new(parse("contact channel", &self.channel)?, self.address),
            external_id: self.external_id,
            name: self.name,
            timezone: self.timezone,
            opted_out: self.opted_out,
        })
    }
}

#[derive(FromRow)]
struct ChainDb {
    level: i64,
    notified_at: Option<Ts>,
    #[sqlx(flatten)]
    contact: ContactDb,
}

/// A chain row with the escalation it belongs to, for a desk's many alerts at once.
#[derive(FromRow)]
struct DeskChainDb {
    escalation_id: i64,
    #[sqlx(flatten)]
    chain: ChainDb,
}

#[derive(FromRow)]
struct EscalationEventDb {
    action: String,
    supervisor: Option<String>,
    level: i64,
    detail: String,
    at: Ts,
}

/// A pulse row before its group is read out of the caregiver's fields.
#[derive(FromRow)]
struct PulseDb {
    caregiver_id: i64,
    started_at: Ts,
    branch: String,
    fields: String,
}

#[derive(FromRow)]
struct PulseAnswerDb {
    caregiver_id: i64,
    started_at: Ts,
    branch: String,
    fields: String,
    value: String,
}

#[derive(FromRow)]
struct PulseAnonymousDb {
    cohort_week: NaiveDate,
    cohort_branch: String,
    cohort_state: Option<String>,
    value: String,
}

#[derive(FromRow)]
struct PulseEscalationDb {
    priority: String,
    started_at: Ts,
    raised_at: Ts,
    acknowledged_at: Option<Ts>,
    closed_at: Option<Ts>,
    branch: String,
    fields: String,
}

/// The state a caregiver is reported under: the `state` field flows set (the benefits
/// screener asks it), if any.
fn state_of(fields: &str) -> Option<String> {
    serde_json::from_str::<BTreeMap<String, serde_json::Value>>(fields)
        .ok()?
        .get("state")?
        .as_str()
        .map(str::to_owned)
}

#[derive(FromRow)]
struct FlowRevisionDb {
    id: i64,
    flow_id: String,
    version: i64,
    source: String,
}

#[derive(FromRow)]
struct LedgerDb {
    status: String,
    source: String,
    detail: String,
    at: Ts,
}

pub(super) fn parse<T: FromStr>(what: &str, text: &str) -> Result<T>
where
    T::Err: Display,
{
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} {text:?}: {e}")))
}

fn json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn to_json(value: &impl serde::Serialize) -> String {
    // Serializing maps with string keys, vectors and `Value`s cannot fail.
    serde_json::to_string(value).expect("JSON serialization of plain data")
}

fn count(what: &str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} out of range")))
}

// ---------------------------------------------------------------------------------------------
// Applying a plan

/// What a plan's writes need besides the plan: who it is about and when it happens.
struct Ctx<'a> {
    snapshot: &'a Snapshot,
    now: Ts,
    /// The inbound message that caused the plan, for the consent ledger.
    inbound_id: Option<i64>,
}

impl Ctx<'_> {
    fn caregiver(&self, write: &str) -> Result<&Caregiver> {
        self.snapshot.caregiver.as_ref().ok_or_else(|| {
            StoreError::InvalidPlan(format!(
                "{write} for {}, which belongs to no caregiver",
                self.snapshot.address.masked()
            ))
        })
    }
}

/// Why a supervisor's desk is read: a reply may act on alerts routed to them or to the level
/// below; a digest lists the open alerts they were sent.
#[derive(Debug, Clone, Copy)]
enum DeskFor {
    Reply,
    Digest,
}

/// "Maria G.": how alerts name a caregiver.
fn short_name(first: &str, last: &str) -> String {
    match last.chars().next() {
        Some(initial) => format!("{first} {initial}."),
        None => first.to_owned(),
    }
}

/// Resolves a conversation reference against the conversation this plan created, if any.
fn conversation_id(conv: ConvRef, created: Option<i64>) -> Result<i64> {
    match conv {
        ConvRef::Existing(id) => Ok(id),
        ConvRef::New => created.ok_or_else(|| {
            StoreError::InvalidPlan(
                "a write refers to a new conversation the plan did not create".into(),
            )
        }),
    }
}

/// Rows to insert per multi-row `INSERT`: few enough binds for either database's limit
/// (SQLite 32,766, PostgreSQL 65,535), many enough that 100,000 rows are 200 statements.
const CHUNK: usize = 500;

/// What an inbound message that answered an anonymous question keeps of its words.
pub(crate) const ANONYMOUS_BODY: &str = "[anonymous answer]";

// The bounds below are everything the shared code asks of a database; both SQLite and PostgreSQL
// meet them. They appear twice (on the helpers and on the `Store` impl) because Rust does not
// yet carry where-clauses along with a trait bound.
impl<DB> SqlStore<DB>
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
    fn bind_filter<'q, O>(
        query: QueryAs<'q, DB, O, DB::Arguments>,
        filter: Filter<'_>,
    ) -> QueryAs<'q, DB, O, DB::Arguments> {
        match filter {
            Filter::Id(id) => query.bind(id),
            Filter::Active => query,
            Filter::Link(channel, address) => query.bind(channel.as_str()).bind(address.to_owned()),
            Filter::ExternalId(text)
            | Filter::Phone(text)
            | Filter::ActiveGroup(text)
            | Filter::ActiveBranch(text)
            | Filter::ActivePhone(text) => query.bind(text.to_owned()),
        }
    }

    async fn load_caregivers(
        conn: &mut DB::Connection,
        filter: Filter<'_>,
    ) -> Result<Vec<Caregiver>> {
        let (caregivers_sql, groups_sql) = filter.sql();
        let rows: Vec<CaregiverDb> = Self::bind_filter(sqlx::query_as(caregivers_sql), filter)
            .fetch_all(&mut *conn)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let memberships: Vec<(i64, String)> = Self::bind_filter(sqlx::query_as(groups_sql), filter)
            .fetch_all(&mut *conn)
            .await?;
        let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
        for (caregiver_id, name) in memberships {
            groups.entry(caregiver_id).or_default().push(name);
        }
        rows.into_iter()
            .map(|row| {
                let mine = groups.remove(&row.id).unwrap_or_default();
                row.into_caregiver(mine)
            })
            .collect()
    }

    pub(super) async fn load_caregiver(
        conn: &mut DB::Connection,
        filter: Filter<'_>,
    ) -> Result<Option<Caregiver>> {
        Ok(Self::load_caregivers(conn, filter)
            .await?
            .into_iter()
            .next())
    }

    async fn consent_of(conn: &mut DB::Connection, address: &Address) -> Result<ConsentStatus> {
        let status: Option<(String,)> =
            sqlx::query_as("SELECT status FROM subscriptions WHERE channel = $1 AND address = $2")
                .bind(address.channel.as_str())
                .bind(address.value.clone())
                .fetch_optional(&mut *conn)
                .await?;
        match status {
            Some((status,)) => parse("consent status", &status),
            None => Ok(ConsentStatus::Unknown),
        }
    }

    /// The snapshot for `address` at `now`, with its active conversation locked on PostgreSQL
    /// so that two instances handling the same caregiver at once take turns.
    async fn snapshot(conn: &mut DB::Connection, address: &Address, now: Ts) -> Result<Snapshot> {
        let consent = Self::consent_of(conn, address).await?;
        let caregiver = Self::load_caregiver(conn, Filter::address(address)).await?;
        let mut conversation: Option<ConversationDb> = sqlx::query_as(DB::ACTIVE_CONVERSATION)
            .bind(address.channel.as_str())
            .bind(address.value.clone())
            .fetch_optional(&mut *conn)
            .await?;
        // None here, but one on another channel (a survey sent on Telegram, answered by SMS):
        // the conversation is the caregiver's, not the channel's.
        if conversation.is_none()
            && let Some(caregiver) = &caregiver
        {
            conversation = sqlx::query_as(DB::ACTIVE_CONVERSATION_OF_CAREGIVER)
                .bind(caregiver.id)
                .fetch_optional(&mut *conn)
                .await?;
        }
        let stranger_replied_today = if caregiver.is_none() {
            Self::stranger_replied(conn, address, now.0.date_naive()).await?
        } else {
            false
        };
        Ok(Snapshot {
            address: address.clone(),
            consent,
            caregiver,
            conversation: conversation.map(ConversationDb::into_row).transpose()?,
            stranger_replied_today,
            // Only an inbound message can answer an offer: `handle_inbound` loads them.
            shifts: Vec::new(),
            desk: None,
        })
    }

    async fn stranger_replied(
        conn: &mut DB::Connection,
        address: &Address,
        day: NaiveDate,
    ) -> Result<bool> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM stranger_replies \
             WHERE channel = $1 AND address = $2 AND day = $3",
        )
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .bind(day)
        .fetch_one(&mut *conn)
        .await?;
        Ok(n > 0)
    }

    /// Sets the consent in force for an address and appends the ledger row that says why.
    // One argument per ledger column; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    async fn write_consent(
        conn: &mut DB::Connection,
        address: &Address,
        caregiver_id: Option<i64>,
        inbound_id: Option<i64>,
        status: ConsentStatus,
        source: &str,
        detail: &str,
        at: Ts,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO subscriptions (channel, address, status, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (channel, address) \
             DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
        )
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .bind(status.as_str())
        .bind(at)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO consent_ledger \
             (channel, address, status, source, detail, caregiver_id, inbound_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .bind(status.as_str())
        .bind(source.to_owned())
        .bind(detail.to_owned())
        .bind(caregiver_id)
        .bind(inbound_id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Applies a plan's writes in order. Any failure leaves the transaction to be rolled back.
    async fn apply(conn: &mut DB::Connection, ctx: &Ctx<'_>, plan: &Plan) -> Result<()> {
        Self::apply_writes(conn, ctx, &plan.writes, None).await
    }

    /// Applies writes in order; `created` is the conversation a `ConvRef::New` means when the
    /// plan's `CreateConversation` was applied elsewhere (the batched start path).
    async fn apply_writes(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        writes: &[Write],
        created: Option<i64>,
    ) -> Result<()> {
        let address = &ctx.snapshot.address;
        let mut created: Option<i64> = created;
        // A caregiver this plan linked the address to, for the ledger rows after the link.
        let mut linked: Option<i64> = None;
        for write in writes {
            match write {
                Write::Consent {
                    status,
                    source,
                    detail,
                } => {
                    let caregiver_id = ctx.snapshot.caregiver.as_ref().map(|c| c.id).or(linked);
                    Self::write_consent(
                        conn,
                        address,
                        caregiver_id,
                        ctx.inbound_id,
                        *status,
                        source,
                        detail,
                        ctx.now,
                    )
                    .await?;
                }
                Write::CreateConversation {
                    flow_id,
                    flow_rev,
                    state,
                    wake_at,
                } => {
                    let caregiver = ctx.caregiver("CreateConversation")?;
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO conversations (caregiver_id, channel, address, flow_id, \
                         flow_rev, status, state, wake_at, started_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $8) RETURNING id",
                    )
                    .bind(caregiver.id)
                    .bind(address.channel.as_str())
                    .bind(address.value.clone())
                    .bind(flow_id.clone())
                    .bind(*flow_rev)
                    .bind(to_json(state))
                    .bind(wake_at.map(Ts))
                    .bind(ctx.now)
                    .fetch_one(&mut *conn)
                    .await?;
                    created = Some(id);
                }
                Write::UpdateConversation {
                    conversation,
                    status,
                    state,
                    wake_at,
                } => {
                    let id = conversation_id(*conversation, created)?;
                    let ended_at = (*status != ConversationStatus::Active).then_some(ctx.now);
                    let updated = sqlx::query(
                        "UPDATE conversations SET status = $2, state = $3, wake_at = $4, \
                         updated_at = $5, ended_at = $6 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(status.as_str())
                    .bind(to_json(state))
                    .bind(wake_at.map(Ts))
                    .bind(ctx.now)
                    .bind(ended_at)
                    .execute(&mut *conn)
                    .await?;
                    if DB::rows_affected(&updated) == 0 {
                        return Err(StoreError::InvalidPlan(format!(
                            "UpdateConversation: no conversation {id}"
                        )));
                    }
                }
                Write::Answer {
                    conversation,
                    flow_id,
                    step,
                    key,
                    value,
                    anonymous: true,
                    free_text,
                    ..
                } => {
                    // Only what the pulse report groups by: the week its survey started, the
                    // branch and the state. Not the caregiver, the conversation, the instant or
                    // the words as typed. It waits in `anonymous_pending` until its day is
                    // over, then joins the others in a random order (`mix_anonymous`), so that
                    // neither where it is stored nor the transaction that wrote it matches the
                    // caregiver's message. (That message was written without its words: see
                    // `handle_inbound`.)
                    let caregiver = ctx.caregiver("Answer")?;
                    let started = match (conversation, &ctx.snapshot.conversation) {
                        (ConvRef::Existing(id), Some(c)) if c.id == *id => c.started_at,
                        _ => ctx.now.0,
                    };
                    let state = caregiver
                        .fields
                        .get("state")
                        .and_then(|s| s.as_str())
                        .map(str::to_owned);
                    sqlx::query(
                        "INSERT INTO anonymous_pending (held_on, flow_id, step, key, value, \
                         cohort_week, cohort_branch, cohort_state, free_text) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(ctx.now.0.date_naive())
                    .bind(flow_id.clone())
                    .bind(step.clone())
                    .bind(key.clone())
                    .bind(to_json(value))
                    .bind(week_start(started))
                    .bind(caregiver.branch.clone())
                    .bind(state)
                    .bind(*free_text)
                    .execute(&mut *conn)
                    .await?;
                }
                Write::Answer {
                    conversation,
                    flow_id,
                    step,
                    key,
                    value,
                    raw,
                    free_text,
                    ..
                } => {
                    let caregiver = ctx.caregiver("Answer")?;
                    sqlx::query(
                        "INSERT INTO answers (conversation_id, caregiver_id, flow_id, step, key, \
                         value, raw, anonymous, answered_at, free_text) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $9)",
                    )
                    .bind(conversation_id(*conversation, created)?)
                    .bind(caregiver.id)
                    .bind(flow_id.clone())
                    .bind(step.clone())
                    .bind(key.clone())
                    .bind(to_json(value))
                    .bind(raw.clone())
                    .bind(ctx.now)
                    .bind(*free_text)
                    .execute(&mut *conn)
                    .await?;
                }
                Write::Escalation {
                    conversation,
                    flow_id,
                    step,
                    priority,
                    reason,
                    answer,
                    message,
                    template,
                    context,
                    when_taken_up,
                    consented,
                } => {
                    let caregiver = ctx.caregiver("Escalation")?;
                    // Due at once: the follow-up clock routes it, right after this commit.
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO escalations (conversation_id, caregiver_id, supervisor_id, \
                         flow_id, step, priority, reason, answer, message, status, raised_at, \
                         level, due_at, template, context, when_taken_up, caregiver_consent) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, 0, $10, $11, \
                         $12, $13, $14) RETURNING id",
                    )
                    .bind(conversation_id(*conversation, created)?)
                    .bind(caregiver.id)
                    .bind(caregiver.supervisor.as_ref().map(|s| s.id))
                    .bind(flow_id.clone())
                    .bind(step.clone())
                    .bind(priority.as_str())
                    .bind(reason.clone())
                    .bind(answer.clone())
                    .bind(message.clone())
                    .bind(ctx.now)
                    .bind(template.clone())
                    .bind(to_json(context))
                    .bind(when_taken_up.clone())
                    .bind(*consented)
                    .fetch_one(&mut *conn)
                    .await?;
                    let detail = if *consented {
                        format!("{reason} (the caregiver agreed to be named)")
                    } else {
                        reason.clone()
                    };
                    Self::escalation_event(
                        conn,
                        id,
                        EscalationAction::Raised,
                        None,
                        0,
                        &detail,
                        ctx.now,
                    )
                    .await?;
                }
                Write::UpdateEscalation(u) => {
                    let updated = sqlx::query(
                        "UPDATE escalations SET status = $2, level = $3, supervisor_id = $4, \
                         message = $5, due_at = $6, acknowledged_at = $7, closed_at = $8, \
                         resends = $9 WHERE id = $1",
                    )
                    .bind(u.id)
                    .bind(u.status.as_str())
                    .bind(u.level)
                    .bind(u.supervisor_id)
                    .bind(u.message.clone())
                    .bind(u.due_at.map(Ts))
                    .bind(u.acknowledged_at.map(Ts))
                    .bind(u.closed_at.map(Ts))
                    .bind(u.resends)
                    .execute(&mut *conn)
                    .await?;
                    if DB::rows_affected(&updated) == 0 {
                        return Err(StoreError::InvalidPlan(format!(
                            "UpdateEscalation: no escalation {}",
                            u.id
                        )));
                    }
                }
                Write::EscalationChain { id, levels } => {
                    for (level, contacts) in levels.iter().enumerate() {
                        for supervisor_id in contacts {
                            sqlx::query(
                                "INSERT INTO escalation_contacts (escalation_id, supervisor_id, \
                                 level) VALUES ($1, $2, $3) \
                                 ON CONFLICT (escalation_id, supervisor_id) DO NOTHING",
                            )
                            .bind(*id)
                            .bind(*supervisor_id)
                            .bind(level as i64)
                            .execute(&mut *conn)
                            .await?;
                        }
                    }
                }
                Write::EscalationEvent {
                    id,
                    action,
                    supervisor_id,
                    level,
                    detail,
                } => {
                    Self::escalation_event(
                        conn,
                        *id,
                        *action,
                        *supervisor_id,
                        *level,
                        detail,
                        ctx.now,
                    )
                    .await?;
                }
                Write::DigestSent { supervisor_id, day } => {
                    sqlx::query(
                        "INSERT INTO digests (supervisor_id, day, sent_at) VALUES ($1, $2, $3)",
                    )
                    .bind(*supervisor_id)
                    .bind(*day)
                    .bind(ctx.now)
                    .execute(&mut *conn)
                    .await?;
                }
                Write::CaregiverFields { fields, tags } => {
                    let caregiver = ctx.caregiver("CaregiverFields")?;
                    sqlx::query(
                        "UPDATE caregivers SET fields = $2, tags = $3, updated_at = $4 \
                         WHERE id = $1",
                    )
                    .bind(caregiver.id)
                    .bind(to_json(fields))
                    .bind(to_json(tags))
                    .bind(ctx.now)
                    .execute(&mut *conn)
                    .await?;
                }
                Write::Outbound(outbound) => {
                    let conversation = outbound
                        .conversation
                        .map(|c| conversation_id(c, created))
                        .transpose()?;
                    Self::queue(conn, outbound, conversation, ctx.now).await?;
                }
                Write::StrangerReplied { day } => {
                    sqlx::query(
                        "INSERT INTO stranger_replies (channel, address, day) VALUES ($1, $2, $3) \
                         ON CONFLICT (channel, address, day) DO NOTHING",
                    )
                    .bind(address.channel.as_str())
                    .bind(address.value.clone())
                    .bind(*day)
                    .execute(&mut *conn)
                    .await?;
                }
                // Shift offers: the SQL is in `shifts.rs`.
                Write::ClaimShift(claim) => {
                    let caregiver = ctx.caregiver("ClaimShift")?;
                    Self::claim_shift(conn, caregiver.id, ctx.now, claim, &ctx.snapshot.shifts)
                        .await?;
                }
                Write::DeclineShift { offer_id } => {
                    let caregiver = ctx.caregiver("DeclineShift")?;
                    Self::decline_shift(conn, caregiver.id, ctx.now, *offer_id).await?;
                }
                Write::Link {
                    caregiver_id,
                    supervisor_id,
                } => {
                    Self::link(conn, address, *caregiver_id, *supervisor_id, ctx.now).await?;
                    linked = linked.or(*caregiver_id);
                }
                Write::UseInvite { id } => {
                    let used = sqlx::query(
                        "UPDATE invites SET used_at = $2, used_by = $3 \
                         WHERE id = $1 AND used_at IS NULL",
                    )
                    .bind(*id)
                    .bind(ctx.now)
                    .bind(address.value.clone())
                    .execute(&mut *conn)
                    .await?;
                    if DB::rows_affected(&used) == 0 {
                        return Err(StoreError::InvalidPlan(format!(
                            "UseInvite: invite {id} is already used"
                        )));
                    }
                }
                Write::MoveConversation { conversation } => {
                    sqlx::query(
                        "UPDATE conversations SET channel = $2, address = $3, updated_at = $4 \
                         WHERE id = $1",
                    )
                    .bind(*conversation)
                    .bind(address.channel.as_str())
                    .bind(address.value.clone())
                    .bind(ctx.now)
                    .execute(&mut *conn)
                    .await?;
                }
                Write::CaregiverChannel { channel } => {
                    // The caregiver the address belongs to, or was just linked to.
                    let id = match linked {
                        Some(id) => id,
                        None => ctx.caregiver("CaregiverChannel")?.id,
                    };
                    sqlx::query("UPDATE caregivers SET last_channel = $2 WHERE id = $1")
                        .bind(id)
                        .bind(channel.as_str())
                        .execute(&mut *conn)
                        .await?;
                }
                Write::CaregiverLanguage { language } => {
                    let caregiver = ctx.caregiver("CaregiverLanguage")?;
                    sqlx::query("UPDATE caregivers SET chosen_language = $2 WHERE id = $1")
                        .bind(caregiver.id)
                        .bind(language.code())
                        .execute(&mut *conn)
                        .await?;
                }
                Write::ConsentAt {
                    address,
                    status,
                    source,
                    detail,
                } => {
                    let caregiver_id = ctx.snapshot.caregiver.as_ref().map(|c| c.id);
                    Self::write_consent(
                        conn,
                        address,
                        caregiver_id,
                        ctx.inbound_id,
                        *status,
                        source,
                        detail,
                        ctx.now,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Appends a line to an escalation's history; a line that says the supervisor was sent
    /// the alert also marks them notified in its chain.
    #[allow(clippy::too_many_arguments)]
    async fn escalation_event(
        conn: &mut DB::Connection,
        id: i64,
        action: EscalationAction,
        supervisor_id: Option<i64>,
        level: i64,
        detail: &str,
        at: Ts,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO escalation_events (escalation_id, action, supervisor_id, level, detail, \
             at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(action.as_str())
        .bind(supervisor_id)
        .bind(level)
        .bind(detail.to_owned())
        .bind(at)
        .execute(&mut *conn)
        .await?;
        if action.notifies()
            && let Some(supervisor_id) = supervisor_id
        {
            sqlx::query(
                "UPDATE escalation_contacts SET notified_at = COALESCE(notified_at, $3) \
                 WHERE escalation_id = $1 AND supervisor_id = $2",
            )
            .bind(id)
            .bind(supervisor_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Makes `address` belong to exactly these people (see [`Write::Link`]).
    async fn link(
        conn: &mut DB::Connection,
        address: &Address,
        caregiver_id: Option<i64>,
        supervisor_id: Option<i64>,
        now: Ts,
    ) -> Result<()> {
        for (table, owner, id) in [
            ("caregiver_links", "caregiver_id", caregiver_id),
            ("supervisor_links", "supervisor_id", supervisor_id),
        ] {
            let Some(id) = id else {
                let forget = format!("DELETE FROM {table} WHERE channel = $1 AND address = $2");
                sqlx::query(sqlx::AssertSqlSafe(forget))
                    .bind(address.channel.as_str())
                    .bind(address.value.clone())
                    .execute(&mut *conn)
                    .await?;
                continue;
            };
            // One chat per person and channel: the newest link wins.
            let older = format!(
                "DELETE FROM {table} WHERE {owner} = $1 AND channel = $2 AND address <> $3"
            );
            sqlx::query(sqlx::AssertSqlSafe(older))
                .bind(id)
                .bind(address.channel.as_str())
                .bind(address.value.clone())
                .execute(&mut *conn)
                .await?;
            let upsert = format!(
                "INSERT INTO {table} (channel, address, {owner}, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (channel, address) \
                 DO UPDATE SET {owner} = excluded.{owner}, created_at = excluded.created_at"
            );
            sqlx::query(sqlx::AssertSqlSafe(upsert))
                .bind(address.channel.as_str())
                .bind(address.value.clone())
                .bind(id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// The supervisor (or branch contact, or program staff) who writes from `address`, if any.
    async fn contact_at(conn: &mut DB::Connection, address: &Address) -> Result<Option<Contact>> {
        let row: Option<ContactDb> = match address.channel {
            Channel::Sms | Channel::Console => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    contact_columns!(),
                    " FROM supervisors s WHERE s.phone = $1 ORDER BY s.id LIMIT 1"
                ))
                .bind(address.value.clone())
                .fetch_optional(&mut *conn)
                .await?
            }
            // A supervisor's Telegram chat, through its link.
            Channel::Telegram => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    contact_columns!(),
                    " FROM supervisors s JOIN supervisor_links sl ON sl.supervisor_id = s.id \
                     WHERE sl.channel = 'telegram' AND sl.address = $1 ORDER BY s.id LIMIT 1"
                ))
                .bind(address.value.clone())
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        row.map(ContactDb::into_contact).transpose()
    }

    async fn contact_by_external_id(
        conn: &mut DB::Connection,
        external_id: &str,
    ) -> Result<Option<Contact>> {
        let row: Option<ContactDb> = sqlx::query_as(concat!(
            "SELECT ",
            contact_columns!(),
            " FROM supervisors s WHERE s.external_id = $1"
        ))
        .bind(external_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(ContactDb::into_contact).transpose()
    }

    async fn contact_by_id(conn: &mut DB::Connection, id: i64) -> Result<Option<Contact>> {
        let row: Option<ContactDb> = sqlx::query_as(concat!(
            "SELECT ",
            contact_columns!(),
            " FROM supervisors s WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(ContactDb::into_contact).transpose()
    }

    /// An escalation's routing chain, level by level.
    async fn chain(conn: &mut DB::Connection, escalation_id: i64) -> Result<Vec<ChainContact>> {
        let rows: Vec<ChainDb> = sqlx::query_as(concat!(
            "SELECT ec.level, ec.notified_at, ",
            contact_columns!(),
            " FROM escalation_contacts ec JOIN supervisors s ON s.id = ec.supervisor_id \
             WHERE ec.escalation_id = $1 ORDER BY ec.level, s.id"
        ))
        .bind(escalation_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ChainContact {
                    level: r.level,
                    notified_at: r.notified_at.map(|t| t.0),
                    contact: r.contact.into_contact()?,
                })
            })
            .collect()
    }

    /// The alerts `me` may act on (a reply) or has open (a digest), each with its chain.
    async fn desk(
        conn: &mut DB::Connection,
        me: Contact,
        now: Ts,
        purpose: DeskFor,
    ) -> Result<Desk> {
        let rows: Vec<EscalationStateDb> = match purpose {
            DeskFor::Reply => {
                sqlx::query_as(DB::DESK_ESCALATIONS)
                    .bind(me.id)
                    .bind(Ts(now.0 - chrono::Duration::days(7)))
                    .fetch_all(&mut *conn)
                    .await?
            }
            DeskFor::Digest => {
                sqlx::query_as(escalation_sql!(
                    "id IN (SELECT escalation_id FROM escalation_contacts \
                     WHERE supervisor_id = $1 AND notified_at IS NOT NULL) \
                     AND status <> 'done' ORDER BY id",
                    ""
                ))
                .bind(me.id)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        // Three reads however many alerts: their chains, and their caregivers' names.
        let chains: Vec<DeskChainDb> = sqlx::query_as(concat!(
            "SELECT ec.escalation_id, ec.level, ec.notified_at, ",
            contact_columns!(),
            " FROM escalation_contacts ec JOIN supervisors s ON s.id = ec.supervisor_id \
             WHERE ec.escalation_id IN (",
            desk_ids!(),
            ") ORDER BY ec.escalation_id, ec.level, s.id"
        ))
        .bind(me.id)
        .bind(Ts(now.0 - chrono::Duration::days(7)))
        .fetch_all(&mut *conn)
        .await?;
        let mut chain_of: HashMap<i64, Vec<ChainContact>> = HashMap::new();
        for row in chains {
            let (escalation_id, r) = (row.escalation_id, row.chain);
            chain_of
                .entry(escalation_id)
                .or_default()
                .push(ChainContact {
                    level: r.level,
                    notified_at: r.notified_at.map(|t| t.0),
                    contact: r.contact.into_contact()?,
                });
        }
        let names: Vec<(i64, String, String, String)> = sqlx::query_as(concat!(
            "SELECT c.id, c.first_name, c.last_name, c.branch FROM caregivers c \
             WHERE c.id IN (SELECT d.caregiver_id FROM escalations d WHERE d.id IN (",
            desk_ids!(),
            "))"
        ))
        .bind(me.id)
        .bind(Ts(now.0 - chrono::Duration::days(7)))
        .fetch_all(&mut *conn)
        .await?;
        let name_of: HashMap<i64, (String, String)> = names
            .into_iter()
            .map(|(id, first, last, branch)| (id, (short_name(&first, &last), branch)))
            .collect();
        let mut alerts = Vec::with_capacity(rows.len());
        for row in rows {
            let escalation = row.into_state()?;
            let chain = chain_of.remove(&escalation.id).unwrap_or_default();
            // Those it was routed to, and the next level up, may act on it.
            let mine = chain.iter().find(|c| c.contact.id == me.id);
            if mine.is_none_or(|c| c.level > escalation.level + 1) {
                continue;
            }
            let (caregiver, branch) = name_of
                .get(&escalation.caregiver_id)
                .cloned()
                .unwrap_or_default();
            alerts.push(DeskAlert {
                caregiver,
                branch,
                escalation,
                chain,
            });
        }
        let (last_digest,): (Option<NaiveDate>,) =
            sqlx::query_as("SELECT MAX(day) FROM digests WHERE supervisor_id = $1")
                .bind(me.id)
                .fetch_one(&mut *conn)
                .await?;
        Ok(Desk {
            me,
            alerts,
            last_digest,
        })
    }

    async fn supervisor_by(
        conn: &mut DB::Connection,
        column: &'static str,
        value: &str,
    ) -> Result<Option<Supervisor>> {
        let sql = format!(
            "SELECT id, external_id, name, phone, timezone FROM supervisors WHERE {column} = $1"
        );
        let row: Option<LinkedSupervisorDb> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(value.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.map(LinkedSupervisorDb::into_supervisor))
    }

    async fn supervisor_by_id(conn: &mut DB::Connection, id: i64) -> Result<Option<Supervisor>> {
        let row: Option<LinkedSupervisorDb> = sqlx::query_as(
            "SELECT id, external_id, name, phone, timezone FROM supervisors WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(LinkedSupervisorDb::into_supervisor))
    }

    /// Who a link claim names (see [`Store::handle_link`]).
    async fn link_candidate(
        conn: &mut DB::Connection,
        channel: Channel,
        claim: &LinkClaim,
        now: Ts,
    ) -> Result<LinkCandidate> {
        match claim {
            LinkClaim::Phone(phone) => Ok(LinkCandidate {
                caregiver: Self::load_caregiver(conn, Filter::ActivePhone(phone)).await?,
                supervisor: Self::supervisor_by(conn, "phone", phone).await?,
                invite: None,
            }),
            LinkClaim::Invite { code_sha256 } => {
                let invite: Option<InviteDb> = sqlx::query_as(
                    "SELECT id, caregiver_id, supervisor_id, expires_at, used_at FROM invites \
                     WHERE code_sha256 = $1 AND channel = $2",
                )
                .bind(code_sha256.clone())
                .bind(channel.as_str())
                .fetch_optional(&mut *conn)
                .await?;
                let Some(invite) = invite else {
                    return Ok(LinkCandidate {
                        caregiver: None,
                        supervisor: None,
                        invite: Some(InviteState::Unknown),
                    });
                };
                let state = if invite.used_at.is_some() {
                    InviteState::Used
                } else if invite.expires_at <= now {
                    InviteState::Expired
                } else {
                    InviteState::Valid(invite.id)
                };
                if state != InviteState::Valid(invite.id) {
                    return Ok(LinkCandidate {
                        caregiver: None,
                        supervisor: None,
                        invite: Some(state),
                    });
                }
                let caregiver = match invite.caregiver_id {
                    Some(id) => Self::load_caregiver(conn, Filter::Id(id))
                        .await?
                        .filter(|c| c.active),
                    None => None,
                };
                let supervisor = match invite.supervisor_id {
                    Some(id) => Self::supervisor_by_id(conn, id).await?,
                    None => None,
                };
                Ok(LinkCandidate {
                    caregiver,
                    supervisor,
                    invite: Some(state),
                })
            }
        }
    }

    async fn queue(
        conn: &mut DB::Connection,
        outbound: &NewOutbound,
        conversation_id: Option<i64>,
        now: Ts,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO outbound_messages (channel, address, caregiver_id, conversation_id, kind, \
             body, encoding, segments, buttons, status, attempts, not_before, created_at, \
             updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $11, $11)",
        )
        .bind(outbound.address.channel.as_str())
        .bind(outbound.address.value.clone())
        .bind(outbound.caregiver_id)
        .bind(conversation_id)
        .bind(outbound.kind.as_str())
        .bind(outbound.body.clone())
        .bind(outbound.encoding.clone())
        .bind(i64::from(outbound.segments))
        .bind(to_json(&outbound.buttons))
        .bind(Ts(outbound.not_before))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Reads the snapshot for `address`, decides, applies: the body of every runner transaction.
    async fn decide_and_apply(
        conn: &mut DB::Connection,
        address: &Address,
        now: Ts,
        inbound_id: Option<i64>,
        decide: &Decide<'_>,
    ) -> Result<()> {
        let snapshot = Self::snapshot(conn, address, now).await?;
        let plan = decide(&snapshot).map_err(StoreError::Decide)?;
        let ctx = Ctx {
            snapshot: &snapshot,
            now,
            inbound_id,
        };
        Self::apply(conn, &ctx, &plan).await
    }

    /// Moves an outbound message to `to` if that is forward (see [`OutboundStatus::rank`]),
    /// recording the error code and text when given. Compare-and-set on the status read, so a
    /// concurrent report (two callbacks at once) can neither be lost nor move it backwards.
    async fn advance(
        conn: &mut DB::Connection,
        id: i64,
        to: OutboundStatus,
        error_code: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        loop {
            let current: Option<(String,)> =
                sqlx::query_as("SELECT status FROM outbound_messages WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let Some((current,)) = current else {
                return Ok(());
            };
            if !advances(parse("outbound status", &current)?, to) {
                return Ok(());
            }
            let updated = sqlx::query(
                "UPDATE outbound_messages SET status = $2, error_code = COALESCE($3, error_code), \
                 error = COALESCE($4, error), updated_at = $5 WHERE id = $1 AND status = $6",
            )
            .bind(id)
            .bind(to.as_str())
            .bind(error_code.map(str::to_owned))
            .bind(error.map(str::to_owned))
            .bind(Ts::now())
            .bind(current)
            .execute(&mut *conn)
            .await?;
            if DB::rows_affected(&updated) == 1 {
                return Ok(());
            }
        }
    }

    /// The phones of `rows` with no consent on record whose hash an erasure kept as opted out.
    async fn erased_opt_outs(
        conn: &mut DB::Connection,
        rows: &[CaregiverRecord],
        consent: &HashMap<String, ConsentStatus>,
    ) -> Result<Vec<String>> {
        let (kept,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM erased_opt_outs")
            .fetch_one(&mut *conn)
            .await?;
        if kept == 0 {
            return Ok(Vec::new());
        }
        let mut by_hash: HashMap<String, &str> = HashMap::new();
        for r in rows.iter().filter(|r| !consent.contains_key(&r.phone)) {
            by_hash.insert(crate::privacy::erasure_hash("sms", &r.phone), &r.phone);
        }
        let hashes: Vec<&String> = by_hash.keys().collect();
        let mut found = Vec::new();
        for chunk in hashes.chunks(CHUNK) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT address_sha256 FROM erased_opt_outs WHERE channel = 'sms' \
                 AND address_sha256 IN (",
            );
            let mut list = q.separated(", ");
            for h in chunk {
                list.push_bind((*h).clone());
            }
            q.push(")");
            for (hash,) in q
                .build_query_as::<(String,)>()
                .fetch_all(&mut *conn)
                .await?
            {
                found.extend(by_hash.get(&hash).map(|p| (*p).to_owned()));
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn upsert_caregivers_in(
        conn: &mut DB::Connection,
        rows: &[CaregiverRecord],
    ) -> Result<Vec<(UpsertOutcome, Option<String>)>> {
        let now = Ts::now();

        // Everything the comparison needs, in three reads of the rows this batch touches (its
        // external ids and its phone numbers), not of the whole roster: an import in chunks
        // stays linear in the size of the file.
        let mut existing: Vec<RosterDb> = Vec::new();
        let mut seen_ids: HashSet<i64> = HashSet::new();
        // Two lists of binds per statement: 2 × 2,000 stays under either database's limit.
        for chunk in rows.chunks(2000) {
            let mut select = QueryBuilder::<DB>::new(
                "SELECT id, external_id, first_name, last_name, phone, language, timezone, \
                 branch, supervisor_external_id, consent_at, active FROM caregivers \
                 WHERE external_id IN (",
            );
            let mut list = select.separated(", ");
            for r in chunk {
                list.push_bind(r.external_id.clone());
            }
            select.push(") OR phone IN (");
            let mut list = select.separated(", ");
            for r in chunk {
                list.push_bind(r.phone.clone());
            }
            select.push(")");
            for row in select
                .build_query_as::<RosterDb>()
                .fetch_all(&mut *conn)
                .await?
            {
                if seen_ids.insert(row.id) {
                    existing.push(row);
                }
            }
        }
        let mut memberships: Vec<(i64, String)> = Vec::new();
        for chunk in existing.chunks(CHUNK) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT caregiver_id, name FROM caregiver_groups WHERE caregiver_id IN (",
            );
            let mut list = q.separated(", ");
            for r in chunk {
                list.push_bind(r.id);
            }
            q.push(") ORDER BY caregiver_id, name");
            memberships.extend(
                q.build_query_as::<(i64, String)>()
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        let mut subscriptions: Vec<(String, String)> = Vec::new();
        for chunk in rows.chunks(CHUNK) {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT address, status FROM subscriptions WHERE channel = 'sms' AND address IN (",
            );
            let mut list = q.separated(", ");
            for r in chunk {
                list.push_bind(r.phone.clone());
            }
            q.push(")");
            subscriptions.extend(
                q.build_query_as::<(String, String)>()
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }

        let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
        for (caregiver_id, name) in memberships {
            groups.entry(caregiver_id).or_default().push(name);
        }
        let mut stored: HashMap<String, (i64, CaregiverRecord, bool)> = HashMap::new();
        let mut phone_owner: HashMap<String, String> = HashMap::new();
        for row in existing {
            let record = CaregiverRecord {
                language: parse::<Lang>("caregiver language", &row.language)?,
                groups: groups.remove(&row.id).unwrap_or_default(),
                external_id: row.external_id,
                first_name: row.first_name,
                last_name: row.last_name,
                phone: row.phone,
                timezone: row.timezone,
                branch: row.branch,
                supervisor_id: row.supervisor_external_id,
                consent_at: row.consent_at,
            };
            phone_owner.insert(record.phone.clone(), record.external_id.clone());
            stored.insert(record.external_id.clone(), (row.id, record, row.active));
        }
        let mut consent: HashMap<String, ConsentStatus> = HashMap::new();
        for (address, status) in subscriptions {
            consent.insert(address, parse("consent status", &status)?);
        }
        // A number that was opted out when its caregiver was erased is opted out again when an
        // import brings it back: the erasure kept its hash for exactly this.
        for phone in Self::erased_opt_outs(conn, rows, &consent).await? {
            let address = Address::new(Channel::Sms, phone.clone());
            Self::write_consent(
                conn,
                &address,
                None,
                None,
                ConsentStatus::OptedOut,
                "erasure",
                "opted out before the caregiver's data was erased",
                now,
            )
            .await?;
            consent.insert(phone, ConsentStatus::OptedOut);
        }

        // Decide every row against what is stored and what earlier rows of this batch did.
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut seen: HashSet<&str> = HashSet::new();
        let mut inserts: Vec<&CaregiverRecord> = Vec::new();
        let mut updates: Vec<(i64, &CaregiverRecord, bool, bool)> = Vec::new();
        let mut opt_ins: Vec<&CaregiverRecord> = Vec::new();
        for record in rows {
            if !seen.insert(&record.external_id) {
                outcomes.push((
                    UpsertOutcome::Rejected,
                    Some(format!(
                        "external_id {} appears more than once",
                        record.external_id
                    )),
                ));
                continue;
            }
            if let Some(owner) = phone_owner.get(&record.phone)
                && *owner != record.external_id
            {
                outcomes.push((
                    UpsertOutcome::Rejected,
                    Some(format!(
                        "phone {} belongs to caregiver {owner}",
                        record.phone
                    )),
                ));
                continue;
            }
            let outcome = match stored.get(&record.external_id) {
                None => {
                    inserts.push(record);
                    UpsertOutcome::Added
                }
                Some((_, old, true)) if old == record => UpsertOutcome::Unchanged,
                Some((id, old, _)) => {
                    let phone_changed = old.phone != record.phone;
                    if phone_changed {
                        phone_owner.remove(&old.phone);
                    }
                    updates.push((*id, record, old.groups != record.groups, phone_changed));
                    UpsertOutcome::Updated
                }
            };
            phone_owner.insert(record.phone.clone(), record.external_id.clone());
            // Written consent on file opts the number in, once; it never overrides a STOP.
            let status = consent
                .get(&record.phone)
                .copied()
                .unwrap_or(ConsentStatus::Unknown);
            if record.consent_at.is_some() && status == ConsentStatus::Unknown {
                consent.insert(record.phone.clone(), ConsentStatus::OptedIn);
                opt_ins.push(record);
            }
            outcomes.push((outcome, None));
        }

        // Updates first, in batch order: a number an update gives up may be taken by a later row.
        let mut ids: HashMap<&str, i64> = HashMap::new();
        for &(id, record, groups_changed, phone_changed) in &updates {
            sqlx::query(
                "UPDATE caregivers SET first_name = $2, last_name = $3, phone = $4, language = $5, \
                 timezone = $6, branch = $7, supervisor_external_id = $8, consent_at = $9, \
                 active = TRUE, phone_invalid = (phone_invalid AND NOT $10), updated_at = $11 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(record.first_name.clone())
            .bind(record.last_name.clone())
            .bind(record.phone.clone())
            .bind(record.language.code())
            .bind(record.timezone.clone())
            .bind(record.branch.clone())
            .bind(record.supervisor_id.clone())
            .bind(record.consent_at)
            .bind(phone_changed)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            if groups_changed {
                sqlx::query("DELETE FROM caregiver_groups WHERE caregiver_id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            ids.insert(&record.external_id, id);
        }
        for chunk in inserts.chunks(CHUNK) {
            let mut insert = QueryBuilder::<DB>::new(
                "INSERT INTO caregivers (external_id, first_name, last_name, phone, language, \
                 timezone, branch, supervisor_external_id, consent_at, created_at, updated_at) ",
            );
            insert.push_values(chunk, |mut row, record| {
                row.push_bind(record.external_id.clone())
                    .push_bind(record.first_name.clone())
                    .push_bind(record.last_name.clone())
                    .push_bind(record.phone.clone())
                    .push_bind(record.language.code())
                    .push_bind(record.timezone.clone())
                    .push_bind(record.branch.clone())
                    .push_bind(record.supervisor_id.clone())
                    .push_bind(record.consent_at)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.push(" RETURNING id, external_id");
            let inserted: Vec<(i64, String)> =
                insert.build_query_as().fetch_all(&mut *conn).await?;
            let by_external_id: HashMap<String, i64> =
                inserted.into_iter().map(|(id, e)| (e, id)).collect();
            for record in chunk {
                ids.insert(&record.external_id, by_external_id[&record.external_id]);
            }
        }

        // Group memberships of new caregivers and of those whose groups changed.
        let new_groups: Vec<(i64, &str)> = inserts
            .iter()
            .copied()
            .chain(updates.iter().filter(|u| u.2).map(|u| u.1))
            .flat_map(|r| {
                r.groups
                    .iter()
                    .map(|g| (ids[r.external_id.as_str()], g.as_str()))
            })
            .collect();
        for chunk in new_groups.chunks(CHUNK) {
            let mut insert =
                QueryBuilder::<DB>::new("INSERT INTO caregiver_groups (caregiver_id, name) ");
            insert.push_values(chunk, |mut row, (id, name)| {
                row.push_bind(*id).push_bind(name.to_string());
            });
            insert.build().execute(&mut *conn).await?;
        }

        for chunk in opt_ins.chunks(CHUNK) {
            let mut subscribe = QueryBuilder::<DB>::new(
                "INSERT INTO subscriptions (channel, address, status, updated_at) ",
            );
            subscribe.push_values(chunk, |mut row, record| {
                row.push_bind("sms")
                    .push_bind(record.phone.clone())
                    .push_bind(ConsentStatus::OptedIn.as_str())
                    .push_bind(now);
            });
            subscribe.push(
                " ON CONFLICT (channel, address) DO UPDATE SET status = excluded.status, \
                 updated_at = excluded.updated_at WHERE subscriptions.status = 'unknown'",
            );
            subscribe.build().execute(&mut *conn).await?;

            let mut ledger = QueryBuilder::<DB>::new(
                "INSERT INTO consent_ledger (channel, address, status, source, detail, \
                 caregiver_id, at) ",
            );
            ledger.push_values(chunk, |mut row, record| {
                let consent_at = record.consent_at.map(|d| d.to_string()).unwrap_or_default();
                row.push_bind("sms")
                    .push_bind(record.phone.clone())
                    .push_bind(ConsentStatus::OptedIn.as_str())
                    .push_bind("import")
                    .push_bind(format!("written consent collected {consent_at}"))
                    .push_bind(ids[record.external_id.as_str()])
                    .push_bind(now);
            });
            ledger.build().execute(&mut *conn).await?;
        }
        Ok(outcomes)
    }

    async fn upsert_supervisors_in(
        conn: &mut DB::Connection,
        rows: &[SupervisorRecord],
    ) -> Result<Vec<(UpsertOutcome, Option<String>)>> {
        let now = Ts::now();
        let existing: Vec<SupervisorDb> = sqlx::query_as(
            "SELECT id, external_id, name, phone, email, branch, timezone FROM supervisors",
        )
        .fetch_all(&mut *conn)
        .await?;
        let stored: HashMap<String, (i64, SupervisorRecord)> = existing
            .into_iter()
            .map(|s| {
                let record = SupervisorRecord {
                    external_id: s.external_id,
                    name: s.name,
                    phone: s.phone,
                    email: s.email,
                    branch: s.branch,
                    timezone: s.timezone,
                };
                (record.external_id.clone(), (s.id, record))
            })
            .collect();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut outcomes = Vec::with_capacity(rows.len());
        for record in rows {
            if !seen.insert(&record.external_id) {
                outcomes.push((
                    UpsertOutcome::Rejected,
                    Some(format!(
                        "external_id {} appears more than once",
                        record.external_id
                    )),
                ));
                continue;
            }
            let outcome = match stored.get(&record.external_id) {
                Some((_, old)) if old == record => UpsertOutcome::Unchanged,
                Some((id, _)) => {
                    sqlx::query(
                        "UPDATE supervisors SET name = $2, phone = $3, email = $4, branch = $5, \
                         timezone = $6, updated_at = $7 WHERE id = $1",
                    )
                    .bind(*id)
                    .bind(record.name.clone())
                    .bind(record.phone.clone())
                    .bind(record.email.clone())
                    .bind(record.branch.clone())
                    .bind(record.timezone.clone())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    UpsertOutcome::Updated
                }
                None => {
                    sqlx::query(
                        "INSERT INTO supervisors (external_id, name, phone, email, branch, \
                         timezone, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    )
                    .bind(record.external_id.clone())
                    .bind(record.name.clone())
                    .bind(record.phone.clone())
                    .bind(record.email.clone())
                    .bind(record.branch.clone())
                    .bind(record.timezone.clone())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    UpsertOutcome::Added
                }
            };
            outcomes.push((outcome, None));
        }
        Ok(outcomes)
    }
}

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
        // The keep list is a whole roster (100,000 ids is too many binds for one statement):
        // compare in Rust, then update the few that left.
        let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let active: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, external_id FROM caregivers WHERE active")
                .fetch_all(&mut *tx)
                .await?;
        let now = Ts::now();
        let mut deactivated = 0;
        for (id, _) in active.iter().filter(|(_, e)| !keep.contains(e.as_str())) {
            sqlx::query("UPDATE caregivers SET active = FALSE, updated_at = $2 WHERE id = $1")
                .bind(*id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            deactivated += 1;
        }
        tx.commit().await?;
        Ok(deactivated)
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
        let mut conn = self.pool.acquire().await?;
        match audience {
            Audience::All => Self::load_caregivers(&mut *conn, Filter::Active).await,
            Audience::Group(name) => {
                Self::load_caregivers(&mut *conn, Filter::ActiveGroup(name)).await
            }
            Audience::Branch(name) => {
                Self::load_caregivers(&mut *conn, Filter::ActiveBranch(name)).await
            }
            Audience::Phones(phones) => {
                // Typed on a command line: a handful, one indexed lookup each.
                let mut found = Vec::new();
                for phone in phones {
                    found.extend(
                        Self::load_caregivers(&mut *conn, Filter::ActivePhone(phone)).await?,
                    );
                }
                found.sort_by_key(|c| c.id);
                found.dedup_by_key(|c| c.id);
                Ok(found)
            }
        }
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
        // On SQLite, most messages are handled in a group; the others come back to be handled
        // here, holding `_alone` until their transaction is over.
        let _alone = match &self.group_commit {
            Some(group) => match group.handle(inbound, decide).await {
                group_commit::Handled::Done(outcome) => return outcome,
                group_commit::Handled::Alone(alone) => alone,
            },
            None => None,
        };
        let now = Ts(inbound.received_at);
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        // A provider's retry of a message already recorded changes nothing and decides nothing.
        let seen: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM inbound_messages WHERE channel = $1 AND external_id = $2",
        )
        .bind(inbound.address.channel.as_str())
        .bind(inbound.external_id.clone())
        .fetch_optional(&mut *tx)
        .await?;
        if seen.is_some() {
            tx.rollback().await?;
            return Ok(InboundOutcome::Duplicate);
        }
        let mut snapshot = Self::snapshot(&mut *tx, &inbound.address, now).await?;
        if let Some(me) = Self::contact_at(&mut *tx, &inbound.address).await? {
            snapshot.desk = Some(Self::desk(&mut *tx, me, now, DeskFor::Reply).await?);
        }
        if let Some(caregiver) = &snapshot.caregiver {
            snapshot.shifts = Self::held_shifts(&mut *tx, caregiver.id, now).await?;
        }
        let plan = decide(&snapshot).map_err(StoreError::Decide)?;
        // The message is recorded after the decision, so that an anonymous answer's words and
        // instant are never written, not even to be overwritten in the same transaction (an
        // overwritten value lingers in the database file until its space is reused).
        let (body, received_at) = if plan.writes.iter().any(Write::is_anonymous_answer) {
            (ANONYMOUS_BODY.to_owned(), Ts::start_of(now.0.date_naive()))
        } else {
            (inbound.text.clone(), now)
        };
        // The unique key absorbs a provider's retry; on PostgreSQL a concurrent retry waits here
        // until this transaction ends, then finds the row (or inserts it, if this one rolled
        // back). A retry decided in vain: nothing of its plan is written.
        let recorded: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO inbound_messages \
             (channel, external_id, address, caregiver_id, body, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (channel, external_id) DO NOTHING RETURNING id",
        )
        .bind(inbound.address.channel.as_str())
        .bind(inbound.external_id.clone())
        .bind(inbound.address.value.clone())
        .bind(snapshot.caregiver.as_ref().map(|c| c.id))
        .bind(body)
        .bind(received_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((inbound_id,)) = recorded else {
            tx.rollback().await?;
            return Ok(InboundOutcome::Duplicate);
        };
        let ctx = Ctx {
            snapshot: &snapshot,
            now,
            inbound_id: Some(inbound_id),
        };
        Self::apply(&mut *tx, &ctx, &plan).await?;
        tx.commit().await?;
        Ok(InboundOutcome::Processed)
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
        let due: Vec<(i64, Ts)> = sqlx::query_as(
            "SELECT id, wake_at FROM conversations WHERE status = 'active' AND wake_at <= $1 \
             ORDER BY wake_at, id LIMIT $2",
        )
        .bind(Ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(due
            .into_iter()
            .map(|(id, wake_at)| DueConversation {
                id,
                wake_at: wake_at.0,
            })
            .collect())
    }

    async fn handle_due_conversation(
        &self,
        id: i64,
        now: DateTime<Utc>,
        decide: &Decide<'_>,
    ) -> Result<bool> {
        let now = Ts(now);
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        // Locked on PostgreSQL: a second instance waits, then re-reads the row after our commit
        // and finds it no longer due.
        let due: Option<ConversationDb> = sqlx::query_as(DB::DUE_CONVERSATION)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(conversation) = due else {
            tx.rollback().await?;
            return Ok(false);
        };
        let conversation = conversation.into_row()?;
        let address = Address::new(conversation.channel, conversation.address.clone());
        let snapshot = Snapshot {
            consent: Self::consent_of(&mut *tx, &address).await?,
            caregiver: Self::load_caregiver(&mut *tx, Filter::Id(conversation.caregiver_id))
                .await?,
            conversation: Some(conversation),
            stranger_replied_today: false,
            desk: None,
            address,
            shifts: Vec::new(),
        };
        let plan = decide(&snapshot).map_err(StoreError::Decide)?;
        let ctx = Ctx {
            snapshot: &snapshot,
            now,
            inbound_id: None,
        };
        Self::apply(&mut *tx, &ctx, &plan).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn register_flow_revision(
        &self,
        flow_id: &str,
        version: i64,
        source: &str,
    ) -> Result<i64> {
        let sha256: String = Sha256::digest(source.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let inserted: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO flow_revisions (flow_id, version, sha256, source, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (flow_id, sha256) DO NOTHING RETURNING id",
        )
        .bind(flow_id.to_owned())
        .bind(version)
        .bind(sha256.clone())
        .bind(source.to_owned())
        .bind(Ts::now())
        .fetch_optional(&mut *tx)
        .await?;
        let id = match inserted {
            Some((id,)) => id,
            None => {
                let (id,): (i64,) = sqlx::query_as(
                    "SELECT id FROM flow_revisions WHERE flow_id = $1 AND sha256 = $2",
                )
                .bind(flow_id.to_owned())
                .bind(sha256)
                .fetch_one(&mut *tx)
                .await?;
                id
            }
        };
        tx.commit().await?;
        Ok(id)
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
        // Replies, confirmations and alerts first, then program messages in the room left:
        // a caregiver who just wrote must not wait behind a broadcast's backlog. Each claim is
        // one statement, atomic on both databases, so no transaction is needed; a message
        // claimed by the first is `sending` and out of reach of the second.
        let mut claimed = Vec::new();
        for sql in [DB::CLAIM_URGENT, DB::CLAIM_OUTBOUND] {
            let room = i64::from(limit) - claimed.len() as i64;
            if room <= 0 {
                break;
            }
            let rows: Vec<OutboundDb> = sqlx::query_as(sql)
                .bind(channel.as_str())
                .bind(Ts(now))
                .bind(room)
                .fetch_all(&self.pool)
                .await?;
            for row in rows {
                if parse::<OutboundStatus>("outbound status", &row.status)?
                    == OutboundStatus::Sending
                {
                    claimed.push(row.into_row()?);
                }
            }
        }
        // RETURNING promises no order.
        claimed.sort_by_key(|r| r.id);
        // Program messages carry their caregiver's time zone so the dispatcher can hold one
        // whose quiet-hours window closed while it waited in a backlog.
        // One query for the whole claim, not one per message: a claim is up to 500 rows.
        let ids: Vec<i64> = claimed
            .iter()
            .filter(|r| r.kind == crate::model::OutboundKind::Program)
            .filter_map(|r| r.caregiver_id)
            .collect();
        if !ids.is_empty() {
            let mut zones =
                QueryBuilder::<DB>::new("SELECT id, timezone FROM caregivers WHERE id IN (");
            let mut list = zones.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            zones.push(")");
            let zones: HashMap<i64, String> = zones
                .build_query_as::<(i64, String)>()
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
            for row in claimed
                .iter_mut()
                .filter(|r| r.kind == crate::model::OutboundKind::Program)
            {
                row.timezone = row.caregiver_id.and_then(|id| zones.get(&id).cloned());
            }
        }
        Ok(claimed)
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
        // One UPDATE per chunk, joined to the list as a `VALUES` table (the same SQL on both
        // databases), instead of a write, a read and a conditional write per message. A status
        // callback may have overtaken the dispatcher: only `queued`, `sending` and `unknown`
        // (the statuses ranked below `accepted`) move, as `advance` would move them.
        let now = Ts::now();
        for chunk in accepted.chunks(CHUNK) {
            let mut update = QueryBuilder::<DB>::new("WITH accepted (id, provider_id) AS (");
            update.push_values(chunk, |mut row, (id, provider_id)| {
                row.push_bind(*id).push_bind(provider_id.clone());
            });
            update.push(
                ") UPDATE outbound_messages SET provider_id = accepted.provider_id, \
                 status = CASE WHEN outbound_messages.status IN ('queued', 'sending', 'unknown') \
                 THEN 'accepted' ELSE outbound_messages.status END, \
                 updated_at = CASE WHEN outbound_messages.status IN ('queued', 'sending', \
                 'unknown') THEN ",
            );
            update.push_bind(now);
            update.push(
                " ELSE outbound_messages.updated_at END FROM accepted \
                 WHERE outbound_messages.id = accepted.id",
            );
            update.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn mark_outbound_retry(
        &self,
        id: i64,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE outbound_messages SET status = 'queued', not_before = $2, error = $3, \
             updated_at = $4 WHERE id = $1 AND status IN ('sending', 'unknown')",
        )
        .bind(id)
        .bind(Ts(retry_at))
        .bind(error.to_owned())
        .bind(Ts::now())
        .execute(&self.pool)
        .await?;
        Ok(())
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
        let mut conn = self.pool.acquire().await?;
        let mut found: Option<(i64, Option<String>)> = None;
        if let Some(id) = id {
            found = sqlx::query_as("SELECT id, provider_id FROM outbound_messages WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        }
        if found.is_none() && !provider_id.is_empty() {
            found = sqlx::query_as(
                "SELECT id, provider_id FROM outbound_messages WHERE provider_id = $1 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(provider_id.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        }
        let Some((id, stored_provider_id)) = found else {
            return Ok(false);
        };
        // A callback carrying our id settles a message whose acceptance was never recorded
        // (a crash between the provider's answer and our write): keep the provider's id.
        if stored_provider_id.is_none() && !provider_id.is_empty() {
            sqlx::query(
                "UPDATE outbound_messages SET provider_id = $2 \
                 WHERE id = $1 AND provider_id IS NULL",
            )
            .bind(id)
            .bind(provider_id.to_owned())
            .execute(&mut *conn)
            .await?;
        }
        Self::advance(&mut *conn, id, status, error_code, None).await?;
        Ok(true)
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
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let caregiver = Self::load_caregiver(&mut *tx, Filter::address(address)).await?;
        Self::write_consent(
            &mut *tx,
            address,
            caregiver.map(|c| c.id),
            None,
            status,
            source,
            detail,
            Ts(at),
        )
        .await?;
        if status == ConsentStatus::OptedOut {
            // Nothing more can reach this address: a conversation waiting on it is over.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE conversations SET status = 'interrupted', wake_at = NULL, \
                 updated_at = $3, ended_at = $3, state = {} \
                 WHERE channel = $1 AND address = $2 AND status = 'active'",
                DB::INTERRUPTED_STATE
            )))
            .bind(address.channel.as_str())
            .bind(address.value.clone())
            .bind(Ts(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
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
        let now = Ts(inbound.received_at);
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let recorded: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO inbound_messages (channel, external_id, address, body, received_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel, external_id) DO NOTHING RETURNING id",
        )
        .bind(inbound.address.channel.as_str())
        .bind(inbound.external_id.clone())
        .bind(inbound.address.value.clone())
        .bind(inbound.text.clone())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((inbound_id,)) = recorded else {
            tx.rollback().await?;
            return Ok(InboundOutcome::Duplicate);
        };
        let candidate = Self::link_candidate(&mut *tx, inbound.address.channel, claim, now).await?;
        let snapshot = Self::snapshot(&mut *tx, &inbound.address, now).await?;
        let caregiver_id = candidate
            .caregiver
            .as_ref()
            .or(snapshot.caregiver.as_ref())
            .map(|c| c.id);
        if let Some(caregiver_id) = caregiver_id {
            sqlx::query("UPDATE inbound_messages SET caregiver_id = $2 WHERE id = $1")
                .bind(inbound_id)
                .bind(caregiver_id)
                .execute(&mut *tx)
                .await?;
        }
        let plan = decide(&snapshot, &candidate).map_err(StoreError::Decide)?;
        let ctx = Ctx {
            snapshot: &snapshot,
            now,
            inbound_id: Some(inbound_id),
        };
        Self::apply(&mut *tx, &ctx, &plan).await?;
        tx.commit().await?;
        Ok(InboundOutcome::Processed)
    }

    async fn create_invite(
        &self,
        phone: &str,
        channel: Channel,
        code_sha256: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Invitee>> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let caregiver = Self::load_caregiver(&mut *tx, Filter::ActivePhone(phone)).await?;
        let (invitee, caregiver_id, supervisor_id) = match caregiver {
            Some(c) => (
                Invitee::Caregiver {
                    external_id: c.external_id,
                    name: c.first_name,
                },
                Some(c.id),
                None,
            ),
            None => match Self::supervisor_by(&mut *tx, "phone", phone).await? {
                Some(s) => (
                    Invitee::Supervisor {
                        external_id: s.external_id,
                        name: s.name,
                    },
                    None,
                    Some(s.id),
                ),
                None => return Ok(None),
            },
        };
        sqlx::query(
            "INSERT INTO invites (code_sha256, channel, caregiver_id, supervisor_id, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(code_sha256.to_owned())
        .bind(channel.as_str())
        .bind(caregiver_id)
        .bind(supervisor_id)
        .bind(Ts::now())
        .bind(Ts(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(invitee))
    }

    async fn linked_supervisor(&self, address: &Address) -> Result<Option<Supervisor>> {
        let row: Option<LinkedSupervisorDb> = sqlx::query_as(
            "SELECT s.id, s.external_id, s.name, s.phone, s.timezone FROM supervisor_links l \
             JOIN supervisors s ON s.id = l.supervisor_id WHERE l.channel = $1 AND l.address = $2",
        )
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            let mut s = r.into_supervisor();
            s.telegram = (address.channel == Channel::Telegram).then(|| address.value.clone());
            s
        }))
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
        let rows: Vec<AnswerDb> = sqlx::query_as(
            "SELECT COALESCE(c.external_id, '') AS caregiver, a.flow_id, a.step, a.key, a.value, \
             a.raw, a.answered_at FROM answers a LEFT JOIN caregivers c ON c.id = a.caregiver_id \
             WHERE ($1 IS NULL OR a.flow_id = $1) AND ($2 IS NULL OR a.answered_at >= $2) \
             ORDER BY a.answered_at, a.id",
        )
        .bind(flow.map(str::to_owned))
        .bind(since.map(Ts::start_of))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AnswerRow {
                    answer: json("answer value", &r.value)?,
                    caregiver: r.caregiver,
                    flow: r.flow_id,
                    step: r.step,
                    key: r.key,
                    raw: r.raw,
                    answered_at: r.answered_at.0,
                })
            })
            .collect()
    }

    async fn escalations(&self, since: Option<NaiveDate>) -> Result<Vec<EscalationRow>> {
        let rows: Vec<EscalationDb> = sqlx::query_as(
            "SELECT e.id, c.external_id AS caregiver, s.external_id AS supervisor, e.priority, \
             e.reason, e.answer, e.message, e.status, e.raised_at, e.acknowledged_at, \
             e.closed_at FROM escalations e JOIN caregivers c ON c.id = e.caregiver_id \
             LEFT JOIN supervisors s ON s.id = e.supervisor_id \
             WHERE ($1 IS NULL OR e.raised_at >= $1) ORDER BY e.raised_at, e.id",
        )
        .bind(since.map(Ts::start_of))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| EscalationRow {
                id: r.id,
                caregiver: r.caregiver,
                supervisor: r.supervisor,
                priority: r.priority,
                reason: r.reason,
                answer: r.answer,
                message: r.message,
                status: r.status,
                raised_at: r.raised_at.0,
                acknowledged_at: r.acknowledged_at.map(|t| t.0),
                closed_at: r.closed_at.map(|t| t.0),
            })
            .collect())
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
        let now = Ts(now);
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let due: Option<EscalationStateDb> = sqlx::query_as(DB::DUE_ESCALATION)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(escalation) = due else {
            tx.rollback().await?;
            return Ok(false);
        };
        let escalation = escalation.into_state()?;
        let caregiver = Self::load_caregiver(&mut *tx, Filter::Id(escalation.caregiver_id)).await?;
        let supervisor = match caregiver.as_ref().and_then(|c| c.supervisor.as_ref()) {
            Some(s) => Self::contact_by_id(&mut *tx, s.id).await?,
            None => None,
        };
        let mut contacts = Vec::new();
        for external_id in named {
            if let Some(c) = Self::contact_by_external_id(&mut *tx, external_id).await? {
                contacts.push(c);
            }
        }
        let chain = Self::chain(&mut *tx, escalation.id).await?;
        let address = caregiver.as_ref().map_or_else(
            || Address::new(Channel::Sms, String::new()),
            |c| Address::new(Channel::Sms, c.phone.clone()),
        );
        let snapshot = EscalationSnapshot {
            escalation,
            caregiver: caregiver.clone(),
            supervisor,
            named: contacts,
            chain,
        };
        let plan = decide(&snapshot).map_err(StoreError::Decide)?;
        // The plan's writes carry their own addresses; the snapshot only names the caregiver.
        let about = Snapshot {
            address,
            consent: ConsentStatus::Unknown,
            caregiver,
            conversation: None,
            stranger_replied_today: false,
            desk: None,
            shifts: Vec::new(),
        };
        let ctx = Ctx {
            snapshot: &about,
            now,
            inbound_id: None,
        };
        Self::apply(&mut *tx, &ctx, &plan).await?;
        tx.commit().await?;
        Ok(true)
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
        let now = Ts(now);
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let locked: Option<(i64,)> = sqlx::query_as(DB::LOCK_SUPERVISOR)
            .bind(supervisor_id)
            .fetch_optional(&mut *tx)
            .await?;
        let me = match locked {
            Some(_) => Self::contact_by_id(&mut *tx, supervisor_id).await?,
            None => None,
        };
        let Some(me) = me else {
            tx.rollback().await?;
            return Ok(());
        };
        let desk = Self::desk(&mut *tx, me, now, DeskFor::Digest).await?;
        let plan = decide(&desk).map_err(StoreError::Decide)?;
        let about = Snapshot {
            address: desk.me.address.clone(),
            consent: ConsentStatus::Unknown,
            caregiver: None,
            conversation: None,
            stranger_replied_today: false,
            desk: None,
            shifts: Vec::new(),
        };
        let ctx = Ctx {
            snapshot: &about,
            now,
            inbound_id: None,
        };
        Self::apply(&mut *tx, &ctx, &plan).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn escalation_events(&self, id: i64) -> Result<Vec<EscalationEventRow>> {
        let rows: Vec<EscalationEventDb> = sqlx::query_as(
            "SELECT ev.action, s.external_id AS supervisor, ev.level, ev.detail, ev.at \
             FROM escalation_events ev LEFT JOIN supervisors s ON s.id = ev.supervisor_id \
             WHERE ev.escalation_id = $1 ORDER BY ev.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| EscalationEventRow {
                action: r.action,
                supervisor: r.supervisor,
                level: r.level,
                detail: r.detail,
                at: r.at.0,
            })
            .collect())
    }

    async fn export_answers(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
        sink: &mut Sink<'_, AnswerRow>,
    ) -> Result<u64> {
        let mut rows = sqlx::query_as::<_, AnswerDb>(
            "SELECT COALESCE(c.external_id, '') AS caregiver, a.flow_id, a.step, a.key, a.value, \
             a.raw, a.answered_at FROM answers a LEFT JOIN caregivers c ON c.id = a.caregiver_id \
             WHERE NOT a.anonymous AND ($1 IS NULL OR a.flow_id = $1) \
             AND ($2 IS NULL OR a.answered_at >= $2) ORDER BY a.answered_at, a.id",
        )
        .bind(flow.map(str::to_owned))
        .bind(since.map(Ts::start_of))
        .fetch(&self.pool);
        let mut n = 0;
        while let Some(r) = rows.try_next().await? {
            sink(AnswerRow {
                answer: json("answer value", &r.value)?,
                caregiver: r.caregiver,
                flow: r.flow_id,
                step: r.step,
                key: r.key,
                raw: r.raw,
                answered_at: r.answered_at.0,
            })?;
            n += 1;
        }
        Ok(n)
    }

    async fn export_escalations(
        &self,
        flow: Option<&str>,
        since: Option<NaiveDate>,
        sink: &mut Sink<'_, EscalationRow>,
    ) -> Result<u64> {
        let mut rows = sqlx::query_as::<_, EscalationDb>(
            "SELECT e.id, c.external_id AS caregiver, s.external_id AS supervisor, e.priority, \
             e.reason, e.answer, e.message, e.status, e.raised_at, e.acknowledged_at, \
             e.closed_at FROM escalations e JOIN caregivers c ON c.id = e.caregiver_id \
             LEFT JOIN supervisors s ON s.id = e.supervisor_id \
             WHERE ($1 IS NULL OR e.flow_id = $1) AND ($2 IS NULL OR e.raised_at >= $2) \
             ORDER BY e.raised_at, e.id",
        )
        .bind(flow.map(str::to_owned))
        .bind(since.map(Ts::start_of))
        .fetch(&self.pool);
        let mut n = 0;
        while let Some(r) = rows.try_next().await? {
            sink(EscalationRow {
                id: r.id,
                caregiver: r.caregiver,
                supervisor: r.supervisor,
                priority: r.priority,
                reason: r.reason,
                answer: r.answer,
                message: r.message,
                status: r.status,
                raised_at: r.raised_at.0,
                acknowledged_at: r.acknowledged_at.map(|t| t.0),
                closed_at: r.closed_at.map(|t| t.0),
            })?;
            n += 1;
        }
        Ok(n)
    }

    async fn pulse_rows(
        &self,
        flow: &str,
        key: &str,
        since: DateTime<Utc>,
        sink: &mut Sink<'_, PulseRow>,
    ) -> Result<()> {
        let since = Ts(since);
        let mut asked = sqlx::query_as::<_, PulseDb>(
            "SELECT conv.caregiver_id, conv.started_at, c.branch, c.fields \
             FROM conversations conv JOIN caregivers c ON c.id = conv.caregiver_id \
             WHERE conv.flow_id = $1 AND conv.started_at >= $2",
        )
        .bind(flow.to_owned())
        .bind(since)
        .fetch(&self.pool);
        while let Some(r) = asked.try_next().await? {
            sink(PulseRow::Asked {
                caregiver_id: r.caregiver_id,
                started_at: r.started_at.0,
                state: state_of(&r.fields),
                branch: r.branch,
            })?;
        }
        drop(asked);
        let mut answered = sqlx::query_as::<_, PulseAnswerDb>(
            "SELECT conv.caregiver_id, conv.started_at, c.branch, c.fields, a.value \
             FROM answers a JOIN conversations conv ON conv.id = a.conversation_id \
             JOIN caregivers c ON c.id = conv.caregiver_id \
             WHERE a.flow_id = $1 AND a.key = $2 AND NOT a.anonymous AND conv.started_at >= $3",
        )
        .bind(flow.to_owned())
        .bind(key.to_owned())
        .bind(since)
        .fetch(&self.pool);
        while let Some(r) = answered.try_next().await? {
            sink(PulseRow::Answered {
                caregiver_id: r.caregiver_id,
                started_at: r.started_at.0,
                state: state_of(&r.fields),
                branch: r.branch,
                value: json("answer value", &r.value)?,
            })?;
        }
        drop(answered);
        let mut anonymous = sqlx::query_as::<_, PulseAnonymousDb>(
            "SELECT cohort_week, cohort_branch, cohort_state, value FROM anonymous_answers \
             WHERE flow_id = $1 AND key = $2 AND cohort_week >= $3 \
             UNION ALL \
             SELECT cohort_week, cohort_branch, cohort_state, value FROM anonymous_pending \
             WHERE flow_id = $1 AND key = $2 AND cohort_week >= $3",
        )
        .bind(flow.to_owned())
        .bind(key.to_owned())
        .bind(week_start(since.0))
        .fetch(&self.pool);
        while let Some(r) = anonymous.try_next().await? {
            sink(PulseRow::AnsweredAnonymously {
                week: r.cohort_week,
                branch: r.cohort_branch,
                state: r.cohort_state,
                value: json("answer value", &r.value)?,
            })?;
        }
        drop(anonymous);
        let mut escalations = sqlx::query_as::<_, PulseEscalationDb>(
            "SELECT e.priority, COALESCE(conv.started_at, e.raised_at) AS started_at, \
             e.raised_at, e.acknowledged_at, e.closed_at, c.branch, c.fields \
             FROM escalations e JOIN caregivers c ON c.id = e.caregiver_id \
             LEFT JOIN conversations conv ON conv.id = e.conversation_id \
             WHERE e.flow_id = $1 AND COALESCE(conv.started_at, e.raised_at) >= $2",
        )
        .bind(flow.to_owned())
        .bind(since)
        .fetch(&self.pool);
        while let Some(r) = escalations.try_next().await? {
            sink(PulseRow::Escalation {
                priority: parse("escalation priority", &r.priority)?,
                started_at: r.started_at.0,
                raised_at: r.raised_at.0,
                acknowledged_at: r.acknowledged_at.map(|t| t.0),
                closed_at: r.closed_at.map(|t| t.0),
                state: state_of(&r.fields),
                branch: r.branch,
            })?;
        }
        Ok(())
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
