//! Training assignments: imported per caregiver and module, and started in batches through
//! the same set-wise path as a durable start (`starts.rs`).

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate};
use serde_json::Value;
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::{CHUNK, Dialect, SqlStore, SqlValue, Ts};
use crate::model::{Plan, StartOutcome, TrainingBatch, TrainingRecord, TrainingRow, UpsertOutcome};
use crate::store::{Result, StartDecide, StoreError};

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
    pub(super) async fn caregiver_external_ids_in(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT external_id FROM caregivers ORDER BY external_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub(super) async fn upsert_training_in(
        &self,
        flow_id: &str,
        rows: &[TrainingRecord],
        now: Ts,
    ) -> Result<Vec<UpsertOutcome>> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let ids: HashMap<String, i64> =
            sqlx::query_as::<_, (i64, String)>("SELECT id, external_id FROM caregivers")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(id, e)| (e, id))
                .collect();
        type Stored = (i64, i64, String, String, NaiveDate, String);
        let existing: HashMap<(i64, String), Stored> = sqlx::query_as::<_, Stored>(
            "SELECT id, caregiver_id, module, link, due_date, status FROM training_assignments \
             WHERE flow_id = $1",
        )
        .bind(flow_id.to_owned())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| ((row.1, row.2.clone()), row))
        .collect();
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut inserts: Vec<(i64, &TrainingRecord)> = Vec::new();
        for record in rows {
            let Some(&caregiver_id) = ids.get(&record.caregiver) else {
                outcomes.push(UpsertOutcome::Rejected);
                continue;
            };
            match existing.get(&(caregiver_id, record.module.clone())) {
                None => {
                    inserts.push((caregiver_id, record));
                    outcomes.push(UpsertOutcome::Added);
                }
                Some((_, _, _, link, due, _))
                    if *link == record.link && *due == record.due_date =>
                {
                    outcomes.push(UpsertOutcome::Unchanged)
                }
                Some((id, _, _, _, _, status)) => {
                    // Done stays done (no nudge for a module already finished); running keeps
                    // its conversation; assigned or expired is assigned again, from now.
                    let reassign = status == "assigned" || status == "expired";
                    sqlx::query(
                        "UPDATE training_assignments SET link = $2, due_date = $3, \
                         status = CASE WHEN $4 THEN 'assigned' ELSE status END, \
                         next_try_at = CASE WHEN $4 THEN $5 ELSE next_try_at END, \
                         updated_at = $5 WHERE id = $1",
                    )
                    .bind(*id)
                    .bind(record.link.clone())
                    .bind(record.due_date)
                    .bind(reassign)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    outcomes.push(UpsertOutcome::Updated);
                }
            }
        }
        for chunk in inserts.chunks(CHUNK) {
            let mut insert = QueryBuilder::<DB>::new(
                "INSERT INTO training_assignments (caregiver_id, flow_id, module, link, due_date, \
                 status, next_try_at, created_at, updated_at) ",
            );
            insert.push_values(chunk, |mut row, (caregiver_id, record)| {
                row.push_bind(*caregiver_id)
                    .push_bind(flow_id.to_owned())
                    .push_bind(record.module.clone())
                    .push_bind(record.link.clone())
                    .push_bind(record.due_date)
                    .push("'assigned'")
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub(super) async fn run_training_batch_in(
        &self,
        flow_id: &str,
        program: &str,
        now: Ts,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> Result<TrainingBatch> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        // Settle assignments whose conversation has ended: DONE completes the flow.
        for (ended, becomes) in [
            ("'completed'", "'done'"),
            ("'expired'", "'expired'"),
            ("'interrupted'", "'assigned'"),
        ] {
            let sql = format!(
                "UPDATE training_assignments SET status = {becomes}, updated_at = $1, \
                 next_try_at = $1 WHERE status = 'started' AND EXISTS (SELECT 1 FROM \
                 conversations v WHERE v.id = training_assignments.conversation_id \
                 AND v.status = {ended})"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        type Due = (i64, i64, String, String, NaiveDate);
        let due: Vec<Due> = sqlx::query_as(
            "SELECT id, caregiver_id, module, link, due_date FROM training_assignments \
             WHERE status = 'assigned' AND flow_id = $1 AND next_try_at <= $2 \
             ORDER BY next_try_at, id LIMIT $3",
        )
        .bind(flow_id.to_owned())
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        // One module per caregiver per batch: a caregiver is in one conversation at a time.
        let mut assignment_of: HashMap<i64, i64> = HashMap::new();
        let mut vars: HashMap<i64, BTreeMap<String, Value>> = HashMap::new();
        for (id, caregiver_id, module, link, due_date) in &due {
            if assignment_of.contains_key(caregiver_id) {
                continue;
            }
            assignment_of.insert(*caregiver_id, *id);
            vars.insert(
                *caregiver_id,
                BTreeMap::from([
                    ("module".to_owned(), Value::from(module.clone())),
                    ("link".to_owned(), Value::from(link.clone())),
                    ("due_date".to_owned(), Value::from(due_date.to_string())),
                ]),
            );
        }
        let mut ids: Vec<i64> = assignment_of.keys().copied().collect();
        ids.sort_unstable();
        let mut report = TrainingBatch::default();
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(report);
        }
        let snapshots = Self::start_snapshots(&mut *tx, &ids, now, &vars).await?;
        let mut plans = Vec::with_capacity(snapshots.len());
        for snapshot in &snapshots {
            plans.push(decide(snapshot).map_err(StoreError::Decide)?);
        }
        let only_plans: Vec<&Plan> = plans.iter().map(|(p, _)| p).collect();
        let created =
            Self::apply_start_plans(&mut *tx, None, program, &snapshots, &only_plans, now).await?;
        for ((snapshot, (_, outcome)), conversation) in snapshots.iter().zip(&plans).zip(created) {
            let caregiver_id = snapshot.snapshot.caregiver.as_ref().map_or(0, |c| c.id);
            let assignment = assignment_of[&caregiver_id];
            let (status, next_try, skip) = match outcome {
                StartOutcome::Started => {
                    report.started += 1;
                    ("started", now, None)
                }
                StartOutcome::Skipped(reason) => {
                    *report.skipped.entry(reason.clone()).or_default() += 1;
                    // A caregiver busy in another conversation is tried again within the
                    // hour; one without consent, opted out or capped, the next day.
                    let later = if reason == "already in a conversation" {
                        Duration::hours(1)
                    } else {
                        Duration::days(1)
                    };
                    ("assigned", Ts(now.0 + later), Some(reason.clone()))
                }
                StartOutcome::Wait { retry_at } => {
                    *report.skipped.entry("capped".into()).or_default() += 1;
                    ("assigned", Ts(*retry_at), Some("capped".to_owned()))
                }
            };
            sqlx::query(
                "UPDATE training_assignments SET status = $2, conversation_id = $3, \
                 next_try_at = $4, last_skip = $5, updated_at = $6 WHERE id = $1",
            )
            .bind(assignment)
            .bind(status)
            .bind(conversation)
            .bind(next_try)
            .bind(skip)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    pub(super) async fn training_assignments_in(&self) -> Result<Vec<TrainingRow>> {
        type Row = (
            String,
            String,
            String,
            NaiveDate,
            String,
            Option<i64>,
            Ts,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT c.external_id, a.module, a.link, a.due_date, a.status, a.conversation_id, \
             a.next_try_at, a.last_skip FROM training_assignments a \
             JOIN caregivers c ON c.id = a.caregiver_id ORDER BY c.external_id, a.module",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| TrainingRow {
                caregiver: r.0,
                module: r.1,
                link: r.2,
                due_date: r.3,
                status: r.4,
                conversation_id: r.5,
                next_try_at: r.6.0,
                last_skip: r.7,
            })
            .collect())
    }
}
