//! The plan applier: the writes a decision made, applied inside its transaction, one function
//! per kind of write.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Type;
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, QueryBuilder};

use super::encode::{AnswerInsert, ConversationInsert, ConversationUpdate, NewConversation};
use super::rows::*;
use super::{Dialect, SqlStore, SqlValue, Ts};
use crate::domain::Address;
use crate::model::EscalationUpdate;
use crate::model::{
    Caregiver, ConsentStatus, ConvRef, ConversationStatus, EscalationAction, Plan, Snapshot, Write,
    week_start,
};
use crate::store::{Result, StoreError};
use serde_json::Value;

/// What a plan's writes need besides the plan: who it is about and when it happens.
pub(super) struct Ctx<'a> {
    pub(super) snapshot: &'a Snapshot,
    pub(super) now: Ts,
    /// The inbound message that caused the plan, for the consent ledger.
    pub(super) inbound_id: Option<i64>,
}

impl Ctx<'_> {
    pub(super) fn caregiver(&self, write: &str) -> Result<&Caregiver> {
        self.snapshot.caregiver.as_ref().ok_or_else(|| {
            StoreError::InvalidPlan(format!(
                "{write} for {}, which belongs to no caregiver",
                self.snapshot.address.masked()
            ))
        })
    }
}

/// Resolves a conversation reference against the conversation this plan created, if any.
pub(in crate::store) fn conversation_id(conv: ConvRef, created: Option<i64>) -> Result<i64> {
    match conv {
        ConvRef::Existing(id) => Ok(id),
        ConvRef::New => created.ok_or_else(|| {
            StoreError::InvalidPlan(
                "a write refers to a new conversation the plan did not create".into(),
            )
        }),
    }
}

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
    /// Applies a plan's writes in order. Any failure leaves the transaction to be rolled back.
    pub(super) async fn apply(conn: &mut DB::Connection, ctx: &Ctx<'_>, plan: &Plan) -> Result<()> {
        Self::apply_writes(conn, ctx, &plan.writes, None).await
    }

    /// Applies writes in order; `created` is the conversation a `ConvRef::New` means when the
    /// plan's `CreateConversation` was applied elsewhere (the batched start path). Each kind of
    /// write is one function below; this only routes, and carries what one write tells the
    /// next (the conversation created, the caregiver linked).
    // Long because it is the one match over every kind of write; each arm is a call or a statement.
    pub(super) async fn apply_writes(
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
                    let consent = (*status, source.as_str(), detail.as_str());
                    Self::write_consent_of(conn, ctx, address, caregiver_id, consent).await?;
                }
                Write::CreateConversation {
                    flow_id,
                    flow_rev,
                    state,
                    wake_at,
                } => {
                    let id =
                        Self::create_conversation(conn, ctx, flow_id, *flow_rev, state, *wake_at)
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
                    Self::update_conversation(conn, ctx, id, *status, state, *wake_at).await?;
                }
                Write::Answer {
                    anonymous: true, ..
                } => Self::hold_anonymous_answer(conn, ctx, write).await?,
                Write::Answer { .. } => Self::insert_answer(conn, ctx, write, created).await?,
                Write::Escalation { .. } => {
                    Self::raise_escalation(conn, ctx, write, created).await?;
                }
                Write::UpdateEscalation(u) => Self::update_escalation(conn, u).await?,
                Write::EscalationChain { id, levels } => {
                    Self::escalation_chain(conn, *id, levels).await?;
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
                    Self::digest_sent(conn, ctx, *supervisor_id, *day).await?;
                }
                Write::CaregiverFields { fields, tags } => {
                    Self::caregiver_fields(conn, ctx, fields, tags).await?;
                }
                Write::Outbound(outbound) => {
                    let conversation = outbound
                        .conversation
                        .map(|c| conversation_id(c, created))
                        .transpose()?;
                    Self::queue(conn, outbound, conversation, ctx.now).await?;
                }
                Write::StrangerReplied { day } => {
                    Self::stranger_replied_on(conn, address, *day).await?;
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
                Write::UseInvite { id } => Self::use_invite(conn, ctx, *id).await?,
                Write::MoveConversation { conversation } => {
                    Self::move_conversation(conn, ctx, *conversation).await?;
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
                    let consent = (*status, source.as_str(), detail.as_str());
                    Self::write_consent_of(conn, ctx, address, caregiver_id, consent).await?;
                }
            }
        }
        Ok(())
    }

    /// [`Write::Consent`] and [`Write::ConsentAt`]: `consent` is the status, source and detail.
    async fn write_consent_of(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        address: &Address,
        caregiver_id: Option<i64>,
        (status, source, detail): (ConsentStatus, &str, &str),
    ) -> Result<()> {
        Self::write_consent(
            conn,
            address,
            caregiver_id,
            ctx.inbound_id,
            status,
            source,
            detail,
            ctx.now,
        )
        .await
    }

    /// [`Write::CreateConversation`]: returns the new conversation's id, which the plan's later
    /// writes mean by `ConvRef::New`. Outside a start, so with no program or start.
    async fn create_conversation(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        flow_id: &str,
        flow_rev: i64,
        state: &Value,
        wake_at: Option<DateTime<Utc>>,
    ) -> Result<i64> {
        let caregiver = ctx.caregiver("CreateConversation")?;
        let new = NewConversation {
            flow_id,
            flow_rev,
            status: ConversationStatus::Active,
            state,
            wake_at,
            program: None,
            start_id: None,
        };
        let row = ConversationInsert::encode(caregiver.id, &ctx.snapshot.address, &new, ctx.now);
        let mut insert = QueryBuilder::<DB>::new(ConversationInsert::INSERT);
        insert.push_values([&row], |values, row| row.bind(values));
        insert.push(" RETURNING id");
        let (id,): (i64,) = insert.build_query_as().fetch_one(&mut *conn).await?;
        Ok(id)
    }

    /// [`Write::UpdateConversation`] of conversation `id`, which must exist.
    async fn update_conversation(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        id: i64,
        status: ConversationStatus,
        state: &Value,
        wake_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let u = ConversationUpdate::encode(id, status, state, wake_at, &ctx.now);
        let updated = sqlx::query(ConversationUpdate::<Ts>::UPDATE)
            .bind(u.id)
            .bind(u.status)
            .bind(u.state)
            .bind(u.wake_at)
            .bind(u.updated_at)
            .bind(u.ended_at)
            .execute(&mut *conn)
            .await?;
        if DB::rows_affected(&updated) == 0 {
            return Err(StoreError::InvalidPlan(format!(
                "UpdateConversation: no conversation {id}"
            )));
        }
        Ok(())
    }

    /// An anonymous [`Write::Answer`].
    ///
    /// Only what the pulse report groups by: the week its survey started, the branch and the
    /// state. Not the caregiver, the conversation, the instant or the words as typed. It waits
    /// in `anonymous_pending` until its day is over, then joins the others in a random order
    /// (`mix_anonymous`), so that neither where it is stored nor the transaction that wrote it
    /// matches the caregiver's message. (That message was written without its words: see
    /// `handle_inbound`.)
    async fn hold_anonymous_answer(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        write: &Write,
    ) -> Result<()> {
        let Write::Answer {
            conversation,
            flow_id,
            step,
            key,
            value,
            free_text,
            ..
        } = write
        else {
            unreachable!("apply_writes routes answers here");
        };
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
        Ok(())
    }

    /// A named [`Write::Answer`], encoded as the group writer encodes it.
    async fn insert_answer(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        write: &Write,
        created: Option<i64>,
    ) -> Result<()> {
        let Write::Answer { conversation, .. } = write else {
            unreachable!("apply_writes routes answers here");
        };
        let caregiver = ctx.caregiver("Answer")?;
        let conversation = conversation_id(*conversation, created)?;
        let row = AnswerInsert::encode(write.clone(), conversation, caregiver.id, &ctx.now);
        let mut insert = QueryBuilder::<DB>::new(AnswerInsert::<Ts>::INSERT);
        insert.push_values([&row], |values, row| row.bind(values));
        insert.build().execute(&mut *conn).await?;
        Ok(())
    }

    /// [`Write::Escalation`]: raised, and due at once, so that the follow-up clock routes it
    /// right after this commit.
    async fn raise_escalation(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        write: &Write,
        created: Option<i64>,
    ) -> Result<()> {
        let Write::Escalation {
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
        } = write
        else {
            unreachable!("apply_writes routes escalations here");
        };
        let caregiver = ctx.caregiver("Escalation")?;
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
        .await
    }

    /// [`Write::UpdateEscalation`] of an escalation that must exist.
    async fn update_escalation(conn: &mut DB::Connection, u: &EscalationUpdate) -> Result<()> {
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
        Ok(())
    }

    /// [`Write::EscalationChain`]: who escalation `id` goes to, level by level.
    async fn escalation_chain(
        conn: &mut DB::Connection,
        id: i64,
        levels: &[Vec<i64>],
    ) -> Result<()> {
        for (level, contacts) in levels.iter().enumerate() {
            for supervisor_id in contacts {
                sqlx::query(
                    "INSERT INTO escalation_contacts (escalation_id, supervisor_id, \
                     level) VALUES ($1, $2, $3) \
                     ON CONFLICT (escalation_id, supervisor_id) DO NOTHING",
                )
                .bind(id)
                .bind(*supervisor_id)
                .bind(level as i64)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }

    /// [`Write::DigestSent`].
    async fn digest_sent(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        supervisor_id: i64,
        day: NaiveDate,
    ) -> Result<()> {
        sqlx::query("INSERT INTO digests (supervisor_id, day, sent_at) VALUES ($1, $2, $3)")
            .bind(supervisor_id)
            .bind(day)
            .bind(ctx.now)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// [`Write::CaregiverFields`].
    async fn caregiver_fields(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        fields: &BTreeMap<String, Value>,
        tags: &[String],
    ) -> Result<()> {
        let caregiver = ctx.caregiver("CaregiverFields")?;
        sqlx::query(
            "UPDATE caregivers SET fields = $2, tags = $3, updated_at = $4 \
             WHERE id = $1",
        )
        .bind(caregiver.id)
        .bind(to_json(fields))
        .bind(to_json(&tags))
        .bind(ctx.now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// [`Write::StrangerReplied`]: once a day per address at most.
    async fn stranger_replied_on(
        conn: &mut DB::Connection,
        address: &Address,
        day: NaiveDate,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO stranger_replies (channel, address, day) VALUES ($1, $2, $3) \
             ON CONFLICT (channel, address, day) DO NOTHING",
        )
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .bind(day)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// [`Write::UseInvite`]: an invite is used once.
    async fn use_invite(conn: &mut DB::Connection, ctx: &Ctx<'_>, id: i64) -> Result<()> {
        let used = sqlx::query(
            "UPDATE invites SET used_at = $2, used_by = $3 \
             WHERE id = $1 AND used_at IS NULL",
        )
        .bind(id)
        .bind(ctx.now)
        .bind(ctx.snapshot.address.value.clone())
        .execute(&mut *conn)
        .await?;
        if DB::rows_affected(&used) == 0 {
            return Err(StoreError::InvalidPlan(format!(
                "UseInvite: invite {id} is already used"
            )));
        }
        Ok(())
    }

    /// [`Write::MoveConversation`]: the conversation continues on this message's address.
    async fn move_conversation(
        conn: &mut DB::Connection,
        ctx: &Ctx<'_>,
        conversation: i64,
    ) -> Result<()> {
        let address = &ctx.snapshot.address;
        sqlx::query(
            "UPDATE conversations SET channel = $2, address = $3, updated_at = $4 \
             WHERE id = $1",
        )
        .bind(conversation)
        .bind(address.channel.as_str())
        .bind(address.value.clone())
        .bind(ctx.now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
