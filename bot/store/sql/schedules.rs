//! Recurring starts: each flow's `schedule:` per time zone, and the start it fires when due.

use chrono::NaiveDate;
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::{Dialect, SqlStore, SqlValue, Ts};
use crate::model::{NewStart, ScheduleRow};
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
    pub(super) async fn schedules_in(&self) -> Result<Vec<ScheduleRow>> {
        let rows: Vec<(String, String, String, String, Ts)> = sqlx::query_as(
            "SELECT flow_id, timezone, cron, audience, next_run_at FROM schedules \
             ORDER BY flow_id, timezone",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(flow_id, timezone, cron, audience, next)| ScheduleRow {
                flow_id,
                timezone,
                cron,
                audience,
                next_run_at: next.0,
            })
            .collect())
    }

    pub(super) async fn put_schedule_in(&self, row: &ScheduleRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedules (flow_id, timezone, cron, audience, next_run_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (flow_id, timezone) DO UPDATE SET \
             cron = excluded.cron, audience = excluded.audience, \
             next_run_at = excluded.next_run_at, updated_at = excluded.updated_at",
        )
        .bind(row.flow_id.clone())
        .bind(row.timezone.clone())
        .bind(row.cron.clone())
        .bind(row.audience.clone())
        .bind(Ts(row.next_run_at))
        .bind(Ts::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn delete_schedules_except_in(&self, flow_ids: &[String]) -> Result<u64> {
        let mut delete = QueryBuilder::<DB>::new("DELETE FROM schedules");
        if !flow_ids.is_empty() {
            delete.push(" WHERE flow_id NOT IN ");
            Self::push_list(&mut delete, flow_ids.iter().cloned());
        }
        let done = delete.build().execute(&self.pool).await?;
        Ok(DB::rows_affected(&done))
    }

    pub(super) async fn caregiver_timezones_in(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT timezone FROM caregivers WHERE active ORDER BY timezone",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn fire_schedule_in(
        &self,
        flow_id: &str,
        timezone: &str,
        due: Ts,
        next: Ts,
        start: &NewStart,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let moved = sqlx::query(
            "UPDATE schedules SET next_run_at = $4, updated_at = $5 \
             WHERE flow_id = $1 AND timezone = $2 AND next_run_at = $3",
        )
        .bind(flow_id.to_owned())
        .bind(timezone.to_owned())
        .bind(due)
        .bind(next)
        .bind(Ts::now())
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&moved) == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let id = Self::insert_start(&mut *tx, start, Ts::now()).await?;
        tx.commit().await?;
        Ok(Some(id))
    }
}
