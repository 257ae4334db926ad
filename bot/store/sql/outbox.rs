//! The outbox, after the runner's transaction: queueing, the dispatcher's claims, and every
//! status a message moves through until the provider reports it delivered or failed.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments};
use sqlx::{QueryBuilder, Type};

use super::encode::OutboundInsert;
use super::rows::*;
use super::{CHUNK, Dialect, SqlStore, SqlValue, Ts, advances};
use crate::domain::Channel;
use crate::model::{NewOutbound, OutboundRow, OutboundStatus};
use crate::store::Result;

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
    /// Queues one message ([`Write::Outbound`](crate::model::Write::Outbound)), encoded as
    /// every path encodes it.
    pub(super) async fn queue(
        conn: &mut DB::Connection,
        outbound: &NewOutbound,
        conversation_id: Option<i64>,
        now: Ts,
    ) -> Result<()> {
        let row = OutboundInsert::encode(outbound.clone(), conversation_id, &now);
        let mut insert = QueryBuilder::<DB>::new(OutboundInsert::<Ts>::INSERT);
        insert.push_values([&row], |values, row| row.bind(values));
        insert.build().execute(&mut *conn).await?;
        Ok(())
    }

    /// Moves an outbound message to `to` if that is forward (see [`OutboundStatus::rank`]),
    /// recording the error code and text when given. Compare-and-set on the status read, so a
    /// concurrent report (two callbacks at once) can neither be lost nor move it backwards.
    pub(super) async fn advance(
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

    pub(super) async fn claim_outbound_in(
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

    pub(super) async fn mark_outbound_accepted_many_in(
        &self,
        accepted: &[(i64, String)],
    ) -> Result<()> {
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

    pub(super) async fn mark_outbound_retry_in(
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

    pub(super) async fn record_delivery_status_in(
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
}
