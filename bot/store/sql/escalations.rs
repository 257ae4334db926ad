//! Escalations after they are raised: their history, routing chains, a supervisor's desk,
//! the follow-up clock and the daily digest.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Type;
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments};

use super::apply::Ctx;
use super::roster::Filter;
use super::rows::*;
use super::{Dialect, SqlStore, SqlValue, Ts};
use crate::domain::{Address, Channel};
use crate::model::{
    ChainContact, ConsentStatus, Contact, Desk, DeskAlert, EscalationAction, EscalationEventRow,
    EscalationSnapshot, Snapshot,
};
use crate::store::{DecideDigest, DecideEscalation, Result, StoreError};

/// Why a supervisor's desk is read: a reply may act on alerts routed to them or to the level
/// below; a digest lists the open alerts they were sent.
#[derive(Debug, Clone, Copy)]
pub(super) enum DeskFor {
    Reply,
    Digest,
}

/// "Maria G.": how alerts name a caregiver.
pub(super) fn short_name(first: &str, last: &str) -> String {
    match last.chars().next() {
        Some(initial) => format!("{first} {initial}."),
        None => first.to_owned(),
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
    /// Appends a line to an escalation's history; a line that says the supervisor was sent
    /// the alert also marks them notified in its chain.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn escalation_event(
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

    /// The supervisor (or branch contact, or program staff) who writes from `address`, if any.
    pub(super) async fn contact_at(
        conn: &mut DB::Connection,
        address: &Address,
    ) -> Result<Option<Contact>> {
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

    pub(super) async fn contact_by_external_id(
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

    pub(super) async fn contact_by_id(
        conn: &mut DB::Connection,
        id: i64,
    ) -> Result<Option<Contact>> {
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
    pub(super) async fn chain(
        conn: &mut DB::Connection,
        escalation_id: i64,
    ) -> Result<Vec<ChainContact>> {
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
    pub(super) async fn desk(
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

    pub(super) async fn handle_due_escalation_in(
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

    pub(super) async fn handle_digest_in(
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

    pub(super) async fn escalation_events_in(&self, id: i64) -> Result<Vec<EscalationEventRow>> {
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
}
