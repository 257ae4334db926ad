//! The first step of a message's path through the store: the snapshot a decision reads, the
//! inbound and due-conversation transactions around it, consent, links and invites.

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use sqlx::Type;
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments};

use super::apply::Ctx;
use super::escalations::DeskFor;
use super::group_commit;
use super::roster::Filter;
use super::rows::*;
use super::{ANONYMOUS_BODY, Dialect, SqlStore, SqlValue, Ts};
use crate::domain::{Address, Channel};
use crate::model::{
    ConsentStatus, DueConversation, Inbound, InboundOutcome, InviteState, Invitee, LinkCandidate,
    LinkClaim, Snapshot, Supervisor, Write,
};
use crate::store::{Decide, LinkDecide, Result, StoreError};

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
    pub(super) async fn consent_of(
        conn: &mut DB::Connection,
        address: &Address,
    ) -> Result<ConsentStatus> {
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
    pub(super) async fn snapshot(
        conn: &mut DB::Connection,
        address: &Address,
        now: Ts,
    ) -> Result<Snapshot> {
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

    pub(super) async fn stranger_replied(
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
    pub(super) async fn write_consent(
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

    /// Makes `address` belong to exactly these people (see [`Write::Link`]).
    pub(super) async fn link(
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

    pub(super) async fn supervisor_by(
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

    pub(super) async fn supervisor_by_id(
        conn: &mut DB::Connection,
        id: i64,
    ) -> Result<Option<Supervisor>> {
        let row: Option<LinkedSupervisorDb> = sqlx::query_as(
            "SELECT id, external_id, name, phone, timezone FROM supervisors WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(LinkedSupervisorDb::into_supervisor))
    }

    /// Who a link claim names (see [`Store::handle_link`]).
    pub(super) async fn link_candidate(
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

    /// Reads the snapshot for `address`, decides, applies: the body of every runner transaction.
    pub(super) async fn decide_and_apply(
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

    pub(super) async fn handle_inbound_in(
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

    pub(super) async fn due_conversations_in(
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

    pub(super) async fn handle_due_conversation_in(
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

    pub(super) async fn register_flow_revision_in(
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

    pub(super) async fn set_consent_in(
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

    pub(super) async fn handle_link_in(
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

    pub(super) async fn create_invite_in(
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

    pub(super) async fn linked_supervisor_in(
        &self,
        address: &Address,
    ) -> Result<Option<Supervisor>> {
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
}
