//! The rows a plan's writes insert, each encoded once from its write and bound the same way by
//! every path that writes it: the general applier (`apply.rs`), the start batches
//! (`starts.rs`), shift offers (`shifts.rs`) and SQLite's group writer (`group_commit.rs`).
//!
//! A row is a struct whose fields are its table's columns, in the order of its column list
//! (`outbound_columns!` and the like: the one place each list is spelled, from which both the
//! sqlx `INSERT` and the group writer's are made). Its instants are a type parameter
//! ([`Stamp`]): [`Ts`] where sqlx binds the row (one or many in an `INSERT`, through
//! `QueryBuilder::push_values`), and SQLite's text where the group writer binds it with
//! rusqlite, formatted by the function `Ts` also encodes with on SQLite, so that both write the
//! same bytes. A row is built on the caller's side: the group writer, which every message waits
//! for, only binds it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::query_builder::Separated;
use sqlx::{Database, Encode, Type};

use super::{SqlValue, Ts, to_json};
use crate::domain::Address;
use crate::model::{ConversationStatus, NewOutbound, Write};

/// An instant as a row binds it.
pub(in crate::store) trait Stamp: Clone {
    fn at(t: DateTime<Utc>) -> Self;
}

impl Stamp for Ts {
    fn at(t: DateTime<Utc>) -> Ts {
        Ts(t)
    }
}

/// SQLite's text for an instant: fixed-width RFC 3339 in UTC with microseconds (see [`Ts`]).
impl Stamp for String {
    fn at(t: DateTime<Utc>) -> String {
        sqlite_text(t)
    }
}

/// How [`Ts`] is stored on SQLite; the group writer binds the same text.
pub(in crate::store) fn sqlite_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `?1, ?2, …` for rusqlite, spelled out so that the statement stays a `&'static str`.
macro_rules! placeholders {
    (13) => {
        "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13"
    };
    (14) => {
        "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14"
    };
}

// ---------------------------------------------------------------------------------------------
// Outbound messages

macro_rules! outbound_columns {
    () => {
        "channel, address, caregiver_id, conversation_id, kind, body, encoding, segments, \
         buttons, status, attempts, not_before, created_at, updated_at"
    };
}

/// A row of `outbound_messages` as queued: from [`NewOutbound`], with its conversation
/// resolved (`None` for a message outside any conversation, such as a shift offer).
pub(in crate::store) struct OutboundInsert<T> {
    channel: &'static str,
    address: String,
    caregiver_id: Option<i64>,
    conversation_id: Option<i64>,
    kind: &'static str,
    body: String,
    encoding: String,
    segments: i64,
    buttons: String,
    status: &'static str,
    attempts: i64,
    not_before: T,
    created_at: T,
    updated_at: T,
}

impl<T: Stamp> OutboundInsert<T> {
    /// `INSERT … (columns) `, for `push_values` to follow.
    pub(in crate::store) const INSERT: &'static str =
        concat!("INSERT INTO outbound_messages (", outbound_columns!(), ") ");

    /// Takes the message by value: the group writer's caller owns its plan and moves the
    /// text in; a path that borrows its plan clones, as its binds did before.
    pub(in crate::store) fn encode(o: NewOutbound, conversation_id: Option<i64>, now: &T) -> Self {
        OutboundInsert {
            channel: o.address.channel.as_str(),
            address: o.address.value,
            caregiver_id: o.caregiver_id,
            conversation_id,
            kind: o.kind.as_str(),
            body: o.body,
            encoding: o.encoding,
            segments: i64::from(o.segments),
            buttons: to_json(&o.buttons),
            status: "queued",
            attempts: 0,
            not_before: T::at(o.not_before),
            created_at: now.clone(),
            updated_at: now.clone(),
        }
    }
}

impl OutboundInsert<Ts> {
    /// Binds the row's values in column-list order, as one tuple of `push_values`.
    pub(in crate::store) fn bind<DB>(&self, mut row: Separated<'_, DB, &'static str>)
    where
        DB: Database,
        for<'a> &'a str: Encode<'a, DB> + Type<DB>,
        i64: SqlValue<DB>,
        Option<i64>: SqlValue<DB>,
        Ts: SqlValue<DB>,
    {
        row.push_bind(self.channel)
            .push_bind(self.address.as_str())
            .push_bind(self.caregiver_id)
            .push_bind(self.conversation_id)
            .push_bind(self.kind)
            .push_bind(self.body.as_str())
            .push_bind(self.encoding.as_str())
            .push_bind(self.segments)
            .push_bind(self.buttons.as_str())
            .push_bind(self.status)
            .push_bind(self.attempts)
            .push_bind(self.not_before)
            .push_bind(self.created_at)
            .push_bind(self.updated_at);
    }
}

impl OutboundInsert<String> {
    /// The group writer's statement: the same columns, numbered placeholders.
    pub(in crate::store) const INSERT_ONE: &'static str = concat!(
        "INSERT INTO outbound_messages (",
        outbound_columns!(),
        ") VALUES (",
        placeholders!(14),
        ")"
    );

    /// The row's values in column-list order, for rusqlite: references, nothing allocated.
    pub(in crate::store) fn params(&self) -> [&dyn rusqlite::ToSql; 14] {
        [
            &self.channel,
            &self.address,
            &self.caregiver_id,
            &self.conversation_id,
            &self.kind,
            &self.body,
            &self.encoding,
            &self.segments,
            &self.buttons,
            &self.status,
            &self.attempts,
            &self.not_before,
            &self.created_at,
            &self.updated_at,
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Conversations

macro_rules! conversation_columns {
    () => {
        "caregiver_id, channel, address, flow_id, flow_rev, status, state, wake_at, started_at, \
         updated_at, ended_at, program, start_id"
    };
}

/// A row of `conversations` as created: by a plan's `CreateConversation` alone (general path),
/// or with the same plan's later updates of it folded in and the start it belongs to (start
/// batches). Only sqlx writes it; the group writer creates no conversations.
pub(super) struct ConversationInsert {
    caregiver_id: i64,
    channel: &'static str,
    address: String,
    flow_id: String,
    flow_rev: i64,
    status: &'static str,
    state: String,
    wake_at: Option<Ts>,
    started_at: Ts,
    updated_at: Ts,
    ended_at: Option<Ts>,
    program: Option<String>,
    start_id: Option<i64>,
}

/// What a conversation is created as, besides who and where: the flow and its state after the
/// plan's writes, and the start (`program`, `start_id`) it belongs to, if any.
pub(super) struct NewConversation<'a> {
    pub(super) flow_id: &'a str,
    pub(super) flow_rev: i64,
    pub(super) status: ConversationStatus,
    pub(super) state: &'a Value,
    pub(super) wake_at: Option<DateTime<Utc>>,
    pub(super) program: Option<&'a str>,
    pub(super) start_id: Option<i64>,
}

impl ConversationInsert {
    pub(super) const INSERT: &'static str =
        concat!("INSERT INTO conversations (", conversation_columns!(), ") ");

    pub(super) fn encode(
        caregiver_id: i64,
        address: &Address,
        new: &NewConversation<'_>,
        now: Ts,
    ) -> Self {
        ConversationInsert {
            caregiver_id,
            channel: address.channel.as_str(),
            address: address.value.clone(),
            flow_id: new.flow_id.to_owned(),
            flow_rev: new.flow_rev,
            status: new.status.as_str(),
            state: to_json(new.state),
            wake_at: new.wake_at.map(Ts),
            started_at: now,
            updated_at: now,
            ended_at: (new.status != ConversationStatus::Active).then_some(now),
            program: new.program.map(str::to_owned),
            start_id: new.start_id,
        }
    }

    /// Binds the row's values in column-list order, as one tuple of `push_values`.
    pub(super) fn bind<DB>(&self, mut row: Separated<'_, DB, &'static str>)
    where
        DB: Database,
        for<'a> &'a str: Encode<'a, DB> + Type<DB>,
        i64: SqlValue<DB>,
        Option<i64>: SqlValue<DB>,
        Option<String>: SqlValue<DB>,
        Ts: SqlValue<DB>,
        Option<Ts>: SqlValue<DB>,
    {
        row.push_bind(self.caregiver_id)
            .push_bind(self.channel)
            .push_bind(self.address.as_str())
            .push_bind(self.flow_id.as_str())
            .push_bind(self.flow_rev)
            .push_bind(self.status)
            .push_bind(self.state.as_str())
            .push_bind(self.wake_at)
            .push_bind(self.started_at)
            .push_bind(self.updated_at)
            .push_bind(self.ended_at)
            .push_bind(self.program.clone())
            .push_bind(self.start_id);
    }
}

/// An `UPDATE` of a conversation's progress: what every path sets, in `SET` order.
pub(super) struct ConversationUpdate<T> {
    pub(super) id: i64,
    pub(super) status: &'static str,
    pub(super) state: String,
    pub(super) wake_at: Option<T>,
    pub(super) updated_at: T,
    pub(super) ended_at: Option<T>,
}

impl<T: Stamp> ConversationUpdate<T> {
    /// `$1` is the id, then the columns set.
    pub(super) const UPDATE: &'static str = "UPDATE conversations SET status = $2, state = $3, \
         wake_at = $4, updated_at = $5, ended_at = $6 WHERE id = $1";

    pub(super) fn encode(
        id: i64,
        status: ConversationStatus,
        state: &Value,
        wake_at: Option<DateTime<Utc>>,
        now: &T,
    ) -> Self {
        ConversationUpdate {
            id,
            status: status.as_str(),
            state: to_json(state),
            wake_at: wake_at.map(T::at),
            updated_at: now.clone(),
            ended_at: (status != ConversationStatus::Active).then(|| now.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

macro_rules! answer_columns {
    () => {
        "conversation_id, caregiver_id, flow_id, step, key, value, raw, anonymous, answered_at, \
         free_text, cohort_week, cohort_branch, cohort_state"
    };
}

/// A row of `answers`: a named answer. (An anonymous one is held in `anonymous_pending`
/// instead, with its cohort; see `apply.rs`. The cohort columns here are from before that
/// table and stay NULL, written so on every path.)
pub(super) struct AnswerInsert<T> {
    conversation_id: i64,
    caregiver_id: i64,
    flow_id: String,
    step: String,
    key: String,
    value: String,
    raw: String,
    anonymous: bool,
    answered_at: T,
    free_text: bool,
}

impl<T: Stamp> AnswerInsert<T> {
    pub(super) const INSERT: &'static str =
        concat!("INSERT INTO answers (", answer_columns!(), ") ");

    /// `write` is a named [`Write::Answer`], taken by value as [`OutboundInsert::encode`]
    /// takes its message; its conversation is resolved by the caller, which matched it.
    pub(super) fn encode(write: Write, conversation_id: i64, caregiver_id: i64, now: &T) -> Self {
        let Write::Answer {
            flow_id,
            step,
            key,
            value,
            raw,
            anonymous: false,
            free_text,
            ..
        } = write
        else {
            unreachable!("an anonymous answer or another write encoded as an answer");
        };
        AnswerInsert {
            conversation_id,
            caregiver_id,
            flow_id,
            step,
            key,
            value: to_json(&value),
            raw,
            anonymous: false,
            answered_at: now.clone(),
            free_text,
        }
    }
}

impl AnswerInsert<Ts> {
    /// Binds the row's values in column-list order, as one tuple of `push_values`; the cohort
    /// columns as typed NULLs (PostgreSQL takes no untyped one for a DATE).
    pub(super) fn bind<DB>(&self, mut row: Separated<'_, DB, &'static str>)
    where
        DB: Database,
        for<'a> &'a str: Encode<'a, DB> + Type<DB>,
        i64: SqlValue<DB>,
        bool: SqlValue<DB>,
        Ts: SqlValue<DB>,
        Option<String>: SqlValue<DB>,
        Option<chrono::NaiveDate>: SqlValue<DB>,
    {
        row.push_bind(self.conversation_id)
            .push_bind(self.caregiver_id)
            .push_bind(self.flow_id.as_str())
            .push_bind(self.step.as_str())
            .push_bind(self.key.as_str())
            .push_bind(self.value.as_str())
            .push_bind(self.raw.as_str())
            .push_bind(self.anonymous)
            .push_bind(self.answered_at)
            .push_bind(self.free_text)
            .push_bind(None::<chrono::NaiveDate>)
            .push_bind(None::<String>)
            .push_bind(None::<String>);
    }
}

impl AnswerInsert<String> {
    /// The group writer's statement: the same columns, numbered placeholders.
    pub(super) const INSERT_ONE: &'static str = concat!(
        "INSERT INTO answers (",
        answer_columns!(),
        ") VALUES (",
        placeholders!(13),
        ")"
    );

    /// The row's values in column-list order, for rusqlite: references, nothing allocated.
    pub(super) fn params(&self) -> [&dyn rusqlite::ToSql; 13] {
        const NULL: Option<&str> = None;
        [
            &self.conversation_id,
            &self.caregiver_id,
            &self.flow_id,
            &self.step,
            &self.key,
            &self.value,
            &self.raw,
            &self.anonymous,
            &self.answered_at,
            &self.free_text,
            &NULL,
            &NULL,
            &NULL,
        ]
    }
}
