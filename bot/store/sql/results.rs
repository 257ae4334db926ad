//! What program staff read back: answers and escalations as exports, the pulse report's rows,
//! and the outbox as tests and the console see it.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use sqlx::Type;
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments};

use super::rows::*;
use super::{Dialect, SqlStore, SqlValue, Ts};
use crate::model::{AnswerRow, EscalationRow, PulseRow, week_start};
use crate::store::{Result, Sink};

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
    pub(super) async fn answers_in(
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

    pub(super) async fn escalations_in(
        &self,
        since: Option<NaiveDate>,
    ) -> Result<Vec<EscalationRow>> {
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

    pub(super) async fn export_answers_in(
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

    pub(super) async fn export_escalations_in(
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

    pub(super) async fn pulse_rows_in(
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
}
