//! The roster at scale, in SQL: durable starts, a flow started for an audience and resumed after
//! a crash from its cursor (schedules and training assignments start theirs through here too).
//!
//! Starting a flow for 100,000 caregivers must take seconds, so a batch of caregivers is read
//! with a handful of `IN (…)` queries and written with multi-row `INSERT`s, in one transaction
//! that also moves the start's cursor and counters: after a crash, a caregiver is either started
//! and counted, or untouched and still ahead of the cursor. Never one transaction per caregiver.
//!
//! Replies keep being answered during a start: a batch is read and decided before its write
//! transaction takes the lock (SQLite has one writer), and inside it only what replies and
//! opt-outs change is read again (see [`Volatile`]), so the lock is held for the writes.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate};
use serde_json::Value;
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

use super::encode::{ConversationInsert, NewConversation, OutboundInsert};
use super::{
    CHUNK, CaregiverDb, ConversationDb, Ctx, Dialect, SqlStore, SqlValue, Ts, conversation_id,
    json, parse, to_json,
};
use crate::domain::Channel;
use crate::domain::phone::masked_error;
use crate::model::{
    Audience, CAP_WINDOW, Caregiver, ConsentStatus, ConversationStatus, NewStart, Plan, Snapshot,
    StartBatch, StartOutcome, StartRow, StartSnapshot, StartStatus, Write,
};
use crate::store::{Result, StartDecide, StoreError};

/// The columns of a [`StartDb`].
const START_COLUMNS: &str = "SELECT id, flow_id, program, priority, audience, timezone, vars, \
    origin, run_at, status, total, processed, started, skipped, finished_at, \
    (SELECT COUNT(*) FROM start_waits w WHERE w.start_id = flow_starts.id) AS waiting \
    FROM flow_starts";

#[derive(FromRow)]
struct StartDb {
    id: i64,
    flow_id: String,
    program: String,
    priority: i64,
    audience: String,
    timezone: Option<String>,
    vars: String,
    origin: String,
    run_at: Ts,
    status: String,
    total: i64,
    processed: i64,
    started: i64,
    skipped: String,
    finished_at: Option<Ts>,
    waiting: i64,
}

impl StartDb {
    fn into_row(self) -> Result<StartRow> {
        let n = |v: i64| v.max(0) as u64;
        Ok(StartRow {
            id: self.id,
            vars: json("start vars", &self.vars)?,
            origin: parse("start origin", &self.origin)?,
            status: parse("start status", &self.status)?,
            skipped: json("start skipped", &self.skipped)?,
            flow_id: self.flow_id,
            program: self.program,
            priority: self.priority,
            audience: self.audience,
            timezone: self.timezone,
            run_at: self.run_at.0,
            total: n(self.total),
            processed: n(self.processed),
            started: n(self.started),
            waiting: n(self.waiting),
            finished_at: self.finished_at.map(|t| t.0),
        })
    }
}

/// The parts of a caregiver's start snapshot that replies, opt-outs and other starts change
/// from one moment to the next: reachability and consent, active conversations, the week's
/// program conversations. A batch is read and decided before its write transaction, then these
/// are read again inside it; a caregiver whose parts changed is read and decided again there.
/// (Names, language, groups change only by a roster import, which may as well have committed
/// just after the start.)
#[derive(PartialEq)]
struct Volatile {
    /// `active, phone, preferred_channel, last_channel, sms_consent, telegram_chat,
    /// telegram_consent`, as [`CaregiverDb`] reads them.
    reach: Reach,
    conversations: Vec<ConversationDb>,
    week: Option<(i64, Option<Ts>)>,
}

type Reach = (
    bool,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The columns of a [`Reach`], after `c.id`, over `caregivers c` (as `reach_columns!` reads them).
const REACH_SELECT: &str = "SELECT c.id, c.active, c.phone, c.preferred_channel, c.last_channel, \
    (SELECT x.status FROM subscriptions x WHERE x.channel = 'sms' AND x.address = c.phone), \
    (SELECT l.address FROM caregiver_links l WHERE l.caregiver_id = c.id \
     AND l.channel = 'telegram' ORDER BY l.created_at DESC LIMIT 1), \
    (SELECT x.status FROM caregiver_links l JOIN subscriptions x \
     ON x.channel = l.channel AND x.address = l.address WHERE l.caregiver_id = c.id \
     AND l.channel = 'telegram' ORDER BY l.created_at DESC LIMIT 1) \
    FROM caregivers c WHERE c.id IN ";

/// Start batches read and decided ahead, by start: while one batch is written, the next is
/// read and decided on another connection (the two take a core each), and the start's next
/// call takes it over, if it is still the next batch and was decided a moment ago.
#[derive(Default)]
pub(in crate::store) struct NextBatches(std::sync::Mutex<HashMap<i64, (Ts, Prepared)>>);

/// How long before a batch's own `now` a batch prepared ahead may have been decided: its plans
/// carry that moment's timestamps (a conversation's start, a reminder's wake-up).
const PREPARED_MAX_AGE: Duration = Duration::seconds(1);

impl NextBatches {
    fn take(&self, start: i64, now: Ts) -> Option<Prepared> {
        let (at, prepared) = self
            .0
            .lock()
            .expect("next batches poisoned")
            .remove(&start)?;
        let age = now.0 - at.0;
        (age >= Duration::zero() && age <= PREPARED_MAX_AGE).then_some(prepared)
    }

    fn put(&self, start: i64, at: Ts, prepared: Prepared) {
        self.0
            .lock()
            .expect("next batches poisoned")
            .insert(start, (at, prepared));
    }
}

/// A batch read and decided outside the write transaction.
struct Prepared {
    ids: Vec<i64>,
    snapshots: Vec<StartSnapshot>,
    volatile: HashMap<i64, Volatile>,
    plans: Vec<(Plan, StartOutcome)>,
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
    /// Appends the condition selecting an audience's active caregivers (`caregivers c`).
    fn push_audience(qb: &mut QueryBuilder<DB>, audience: &Audience, timezone: Option<&str>) {
        qb.push("c.active");
        match audience {
            Audience::All => {}
            Audience::Group(name) => {
                qb.push(" AND c.id IN (SELECT caregiver_id FROM caregiver_groups WHERE name = ");
                qb.push_bind(name.clone());
                qb.push(")");
            }
            Audience::Branch(name) => {
                qb.push(" AND c.branch = ");
                qb.push_bind(name.clone());
            }
            Audience::Phones(phones) if phones.is_empty() => {
                qb.push(" AND FALSE");
            }
            Audience::Phones(phones) => {
                qb.push(" AND c.phone IN (");
                let mut list = qb.separated(", ");
                for phone in phones {
                    list.push_bind(phone.clone());
                }
                qb.push(")");
            }
        }
        if let Some(tz) = timezone {
            qb.push(" AND c.timezone = ");
            qb.push_bind(tz.to_owned());
        }
    }

    /// Appends `(a, b, c)` binding each value.
    pub(super) fn push_list<T>(qb: &mut QueryBuilder<DB>, values: impl IntoIterator<Item = T>)
    where
        T: SqlValue<DB> + 'static,
    {
        qb.push("(");
        let mut list = qb.separated(", ");
        for v in values {
            list.push_bind(v);
        }
        qb.push(")");
    }

    pub(super) async fn start_by_id(
        conn: &mut DB::Connection,
        id: i64,
    ) -> Result<Option<StartRow>> {
        let sql = format!("{START_COLUMNS} WHERE id = $1");
        let row: Option<StartDb> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(StartDb::into_row).transpose()
    }

    pub(super) async fn insert_start(
        conn: &mut DB::Connection,
        start: &NewStart,
        now: Ts,
    ) -> Result<i64> {
        let inserted: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO flow_starts (flow_id, program, priority, audience, timezone, vars, \
             origin, dedupe_key, run_at, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10) \
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(start.flow_id.clone())
        .bind(start.program.clone())
        .bind(start.priority)
        .bind(start.audience.to_string())
        .bind(start.timezone.clone())
        .bind(to_json(&start.vars))
        .bind(start.origin.as_str())
        .bind(start.dedupe_key.clone())
        .bind(Ts(start.run_at))
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
        match inserted {
            Some((id,)) => Ok(id),
            None => {
                let (id,): (i64,) =
                    sqlx::query_as("SELECT id FROM flow_starts WHERE dedupe_key = $1")
                        .bind(start.dedupe_key.clone())
                        .fetch_one(&mut *conn)
                        .await?;
                Ok(id)
            }
        }
    }

    pub(super) async fn create_start_in(&self, start: &NewStart, now: Ts) -> Result<i64> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let id = Self::insert_start(&mut *tx, start, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(super) async fn start_row_in(&self, id: i64) -> Result<Option<StartRow>> {
        let mut conn = self.pool.acquire().await?;
        Self::start_by_id(&mut *conn, id).await
    }

    pub(super) async fn unfinished_start_in(
        &self,
        flow_id: &str,
        audience: &Audience,
        vars: &BTreeMap<String, Value>,
        now: Ts,
    ) -> Result<Option<StartRow>> {
        let sql = format!(
            "{START_COLUMNS} WHERE status <> 'done' AND origin = 'cli' AND flow_id = $1 \
             AND audience = $2 AND vars = $3 AND run_at <= $4 AND timezone IS NULL \
             ORDER BY id LIMIT 1"
        );
        let row: Option<StartDb> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(flow_id.to_owned())
            .bind(audience.to_string())
            .bind(to_json(vars))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(StartDb::into_row).transpose()
    }

    pub(super) async fn due_starts_in(&self, now: Ts, limit: u32) -> Result<Vec<StartRow>> {
        let sql = format!(
            "{START_COLUMNS} WHERE ((status IN ('pending', 'running') AND run_at <= $1) \
             OR (status = 'waiting' AND EXISTS (SELECT 1 FROM start_waits w \
                 WHERE w.start_id = flow_starts.id AND w.retry_at <= $1))) \
             AND (lease_until IS NULL OR lease_until < $1) \
             ORDER BY priority, run_at, id LIMIT $2"
        );
        let rows: Vec<StartDb> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(StartDb::into_row).collect()
    }

    pub(super) async fn list_starts_in(&self, all: bool) -> Result<Vec<StartRow>> {
        let sql =
            format!("{START_COLUMNS} WHERE $1 OR status <> 'done' ORDER BY id DESC LIMIT 500");
        let rows: Vec<StartDb> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(all)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(StartDb::into_row).collect()
    }

    pub(super) async fn claim_start_in(
        &self,
        id: i64,
        owner: &str,
        now: Ts,
        lease_until: Ts,
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let claimed = sqlx::query(
            "UPDATE flow_starts SET owner = $2, lease_until = $3, updated_at = $4 \
             WHERE id = $1 AND (owner IS NULL OR owner = $2 OR lease_until IS NULL \
             OR lease_until < $4)",
        )
        .bind(id)
        .bind(owner.to_owned())
        .bind(lease_until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&claimed) == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let Some(start) = Self::start_by_id(&mut *tx, id).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        if start.status == StartStatus::Pending {
            // The audience as it is when the start begins, for progress bars and reports.
            let audience = Audience::parse_stored(&start.audience).map_err(StoreError::Corrupt)?;
            let mut count = QueryBuilder::<DB>::new("SELECT COUNT(*) FROM caregivers c WHERE ");
            Self::push_audience(&mut count, &audience, start.timezone.as_deref());
            let (total,): (i64,) = count.build_query_as().fetch_one(&mut *tx).await?;
            sqlx::query("UPDATE flow_starts SET status = 'running', total = $2 WHERE id = $1")
                .bind(id)
                .bind(total)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn release_start_in(&self, id: i64, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE flow_starts SET owner = NULL, lease_until = NULL WHERE id = $1 AND owner = $2",
        )
        .bind(id)
        .bind(owner.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // Long because the prepared batch, its re-check and its write are one transaction's steps.
    pub(super) async fn run_start_batch_in(
        &self,
        id: i64,
        owner: &str,
        now: Ts,
        lease_until: Ts,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> Result<StartBatch> {
        // Read and decide the next batch first, without the write lock, so that replies can
        // write meanwhile; the transaction below takes the batch over if it is still the next.
        let t_prepare = std::time::Instant::now();
        let mut prepared = match self.next_batches.take(id, now) {
            Some(ahead) => Some(ahead),
            None => self.prepare_start_batch(id, now, limit, decide).await?,
        };
        let t_begin = std::time::Instant::now();
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let t_locked = std::time::Instant::now();
        // The lease is checked and renewed first, inside the transaction: on SQLite the write
        // lock, on PostgreSQL the row lock, keeps any other runner out until this commits.
        let renewed = sqlx::query(
            "UPDATE flow_starts SET lease_until = $3, updated_at = $4 WHERE id = $1 AND owner = $2",
        )
        .bind(id)
        .bind(owner.to_owned())
        .bind(lease_until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&renewed) == 0 {
            tx.rollback().await?;
            return Ok(StartBatch {
                lease_lost: true,
                ..StartBatch::default()
            });
        }
        let Some(start) = Self::start_by_id(&mut *tx, id).await? else {
            tx.rollback().await?;
            return Err(StoreError::Corrupt(format!("start {id} vanished")));
        };
        let (done_through,): (i64,) =
            sqlx::query_as("SELECT done_through FROM flow_starts WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        let from_waits = match start.status {
            StartStatus::Done => {
                tx.commit().await?;
                return Ok(StartBatch {
                    idle: true,
                    ..StartBatch::default()
                });
            }
            StartStatus::Pending | StartStatus::Running => false,
            StartStatus::Waiting => true,
        };
        let ids =
            Self::next_start_ids(&mut *tx, &start, from_waits, done_through, now, limit).await?;

        if ids.is_empty() {
            // Through the audience (or no wait is due): wait for the capped, or finish.
            let (waits,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM start_waits WHERE start_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            let status = if waits > 0 {
                StartStatus::Waiting
            } else {
                StartStatus::Done
            };
            sqlx::query(
                "UPDATE flow_starts SET status = $2, finished_at = $3, updated_at = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(status.as_str())
            .bind((status == StartStatus::Done).then_some(now))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            // Moving from running to waiting may leave waits already due: one more round.
            return Ok(StartBatch {
                idle: from_waits || status == StartStatus::Done,
                ..StartBatch::default()
            });
        }

        let t_ids = std::time::Instant::now();
        let (snapshots, plans, rechecked) = match prepared.take().filter(|p| p.ids == ids) {
            Some(prepared) => {
                let rechecked = prepared.ids.len();
                let (snapshots, plans) =
                    Self::recheck_prepared(&mut *tx, prepared, now, decide).await?;
                (snapshots, plans, rechecked)
            }
            None => {
                let (snapshots, _) =
                    Self::read_start_batch(&mut *tx, &ids, now, &HashMap::new()).await?;
                let plans = snapshots
                    .iter()
                    .map(|s| decide(s).map_err(StoreError::Decide))
                    .collect::<Result<Vec<_>>>()?;
                (snapshots, plans, 0)
            }
        };
        let t_decided = std::time::Instant::now();
        // The next batch is read and decided while this one is written (not from the waits,
        // which are few, and not on a database of one connection, which the write holds).
        let ahead = !from_waits && self.pool.options().get_max_connections() > 1;
        let after = *ids.last().expect("ids is not empty");
        let write = async {
            Self::write_start_batch(
                &mut *tx,
                &start,
                &ids,
                (!from_waits).then_some(after),
                &snapshots,
                &plans,
                now,
            )
            .await?;
            let t_written = std::time::Instant::now();
            tx.commit().await?;
            Ok::<_, StoreError>((t_written, std::time::Instant::now()))
        };
        let next = async {
            if !ahead {
                return None;
            }
            let mut conn = self.pool.acquire().await.ok()?;
            Self::prepare_after(&mut *conn, &start, false, after, now, limit, decide)
                .await
                .inspect_err(
                    |e| tracing::debug!(start = id, error = %masked_error(e), "no batch ahead"),
                )
                .ok()
                .flatten()
        };
        let (written, next) = tokio::join!(write, next);
        let (t_written, t_committed) = written?;
        if let Some(next) = next {
            self.next_batches.put(id, now, next);
        }
        let ms = |from: std::time::Instant, to: std::time::Instant| (to - from).as_secs_f64() * 1e3;
        tracing::debug!(
            start = id,
            caregivers = ids.len(),
            prepared = rechecked,
            prepare_ms = ms(t_prepare, t_begin),
            wait_ms = ms(t_begin, t_locked),
            cursor_ms = ms(t_locked, t_ids),
            recheck_ms = ms(t_ids, t_decided),
            write_ms = ms(t_decided, t_written),
            commit_ms = ms(t_written, t_committed),
            ahead_ms = ms(t_committed, std::time::Instant::now()),
            "start batch"
        );
        Ok(StartBatch {
            handled: ids.len(),
            idle: false,
            lease_lost: false,
        })
    }

    /// Writes a decided batch of start `start` inside its transaction: the conversations and
    /// first messages, the capped caregivers' waits, the counters, and the cursor, moved to
    /// `advance` when the batch came from the audience (`None`: from the waits).
    async fn write_start_batch(
        conn: &mut DB::Connection,
        start: &StartRow,
        ids: &[i64],
        advance: Option<i64>,
        snapshots: &[StartSnapshot],
        plans: &[(Plan, StartOutcome)],
        now: Ts,
    ) -> Result<()> {
        let only_plans: Vec<&Plan> = plans.iter().map(|(p, _)| p).collect();
        Self::apply_start_plans(
            &mut *conn,
            Some(start.id),
            &start.program,
            snapshots,
            &only_plans,
            now,
        )
        .await?;

        let mut started = start.started as i64;
        let mut skipped = start.skipped.clone();
        let mut waits: Vec<(i64, Ts)> = Vec::new();
        let mut settled: Vec<i64> = Vec::new();
        for (snapshot, (_, outcome)) in snapshots.iter().zip(plans) {
            let caregiver_id = snapshot
                .snapshot
                .caregiver
                .as_ref()
                .map_or(0, |c: &Caregiver| c.id);
            match outcome {
                StartOutcome::Started => {
                    started += 1;
                    settled.push(caregiver_id);
                }
                StartOutcome::Skipped(reason) => {
                    *skipped.entry(reason.clone()).or_default() += 1;
                    settled.push(caregiver_id);
                }
                StartOutcome::Wait { retry_at } => waits.push((caregiver_id, Ts(*retry_at))),
            }
        }
        for chunk in waits.chunks(CHUNK) {
            let mut insert = QueryBuilder::<DB>::new(
                "INSERT INTO start_waits (start_id, caregiver_id, retry_at) ",
            );
            insert.push_values(chunk, |mut row, (caregiver_id, retry_at)| {
                row.push_bind(start.id)
                    .push_bind(*caregiver_id)
                    .push_bind(*retry_at);
            });
            insert.push(
                " ON CONFLICT (start_id, caregiver_id) DO UPDATE SET retry_at = excluded.retry_at",
            );
            insert.build().execute(&mut *conn).await?;
        }
        if advance.is_none() {
            for chunk in settled.chunks(CHUNK) {
                let mut delete =
                    QueryBuilder::<DB>::new("DELETE FROM start_waits WHERE start_id = ");
                delete.push_bind(start.id);
                delete.push(" AND caregiver_id IN ");
                Self::push_list(&mut delete, chunk.iter().copied());
                delete.build().execute(&mut *conn).await?;
            }
        }
        sqlx::query(
            "UPDATE flow_starts SET done_through = COALESCE($2, done_through), \
             processed = processed + $3, started = $4, skipped = $5, updated_at = $6 WHERE id = $1",
        )
        .bind(start.id)
        .bind(advance)
        .bind(if advance.is_some() {
            ids.len() as i64
        } else {
            0
        })
        .bind(started)
        .bind(to_json(&skipped))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The caregivers of start `start`'s next batch: due waits, or the audience past the cursor.
    async fn next_start_ids(
        conn: &mut DB::Connection,
        start: &StartRow,
        from_waits: bool,
        done_through: i64,
        now: Ts,
        limit: u32,
    ) -> Result<Vec<i64>> {
        Ok(if from_waits {
            sqlx::query_scalar(
                "SELECT caregiver_id FROM start_waits WHERE start_id = $1 AND retry_at <= $2 \
                 ORDER BY caregiver_id LIMIT $3",
            )
            .bind(start.id)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?
        } else {
            let audience = Audience::parse_stored(&start.audience).map_err(StoreError::Corrupt)?;
            let mut select = QueryBuilder::<DB>::new("SELECT c.id FROM caregivers c WHERE ");
            Self::push_audience(&mut select, &audience, start.timezone.as_deref());
            select.push(" AND c.id > ");
            select.push_bind(done_through);
            select.push(" ORDER BY c.id LIMIT ");
            select.push_bind(i64::from(limit));
            select.build_query_scalar().fetch_all(&mut *conn).await?
        })
    }

    /// Reads and decides start `id`'s next batch on a connection of its own, outside any write
    /// transaction; `None` when there is nothing to prepare (the write transaction then decides
    /// what to do, as it would have anyway).
    async fn prepare_start_batch(
        &self,
        id: i64,
        now: Ts,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> Result<Option<Prepared>> {
        let mut conn = self.pool.acquire().await?;
        let Some(start) = Self::start_by_id(&mut *conn, id).await? else {
            return Ok(None);
        };
        let from_waits = match start.status {
            StartStatus::Done => return Ok(None),
            StartStatus::Pending | StartStatus::Running => false,
            StartStatus::Waiting => true,
        };
        let (done_through,): (i64,) =
            sqlx::query_as("SELECT done_through FROM flow_starts WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
        Self::prepare_after(
            &mut *conn,
            &start,
            from_waits,
            done_through,
            now,
            limit,
            decide,
        )
        .await
    }

    /// Reads and decides the batch of start `start` after caregiver `after` (its cursor).
    async fn prepare_after(
        conn: &mut DB::Connection,
        start: &StartRow,
        from_waits: bool,
        after: i64,
        now: Ts,
        limit: u32,
        decide: &StartDecide<'_>,
    ) -> Result<Option<Prepared>> {
        let ids = Self::next_start_ids(&mut *conn, start, from_waits, after, now, limit).await?;
        if ids.is_empty() {
            return Ok(None);
        }
        let (snapshots, volatile) =
            Self::read_start_batch(&mut *conn, &ids, now, &HashMap::new()).await?;
        let plans = snapshots
            .iter()
            .map(|s| decide(s).map_err(StoreError::Decide))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Prepared {
            ids,
            snapshots,
            volatile,
            plans,
        }))
    }

    /// Inside the write transaction: reads the [`Volatile`] parts of a prepared batch again,
    /// and reads and decides again the caregivers whose parts changed since it was prepared.
    async fn recheck_prepared(
        conn: &mut DB::Connection,
        prepared: Prepared,
        now: Ts,
        decide: &StartDecide<'_>,
    ) -> Result<(Vec<StartSnapshot>, Vec<(Plan, StartOutcome)>)> {
        let Prepared {
            ids,
            mut snapshots,
            volatile,
            mut plans,
        } = prepared;
        let current = Self::read_volatile(&mut *conn, &ids, now).await?;
        let changed: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| current.get(id) != volatile.get(id))
            .collect();
        if changed.is_empty() {
            return Ok((snapshots, plans));
        }
        let (fresh, _) = Self::read_start_batch(&mut *conn, &changed, now, &HashMap::new()).await?;
        let mut fresh: HashMap<i64, StartSnapshot> = fresh
            .into_iter()
            .map(|s| (s.snapshot.caregiver.as_ref().map_or(0, |c| c.id), s))
            .collect();
        // A caregiver read before and gone now (deleted) drops out, as the audience query
        // inside the transaction would have left them out.
        let mut kept_snapshots = Vec::with_capacity(snapshots.len());
        let mut kept_plans = Vec::with_capacity(plans.len());
        for (snapshot, plan) in snapshots.drain(..).zip(plans.drain(..)) {
            let caregiver_id = snapshot.snapshot.caregiver.as_ref().map_or(0, |c| c.id);
            if !changed.contains(&caregiver_id) {
                kept_snapshots.push(snapshot);
                kept_plans.push(plan);
            } else if let Some(fresh) = fresh.remove(&caregiver_id) {
                kept_plans.push(decide(&fresh).map_err(StoreError::Decide)?);
                kept_snapshots.push(fresh);
            }
        }
        Ok((kept_snapshots, kept_plans))
    }

    /// The [`Volatile`] parts of caregivers `ids`, by caregiver.
    async fn read_volatile(
        conn: &mut DB::Connection,
        ids: &[i64],
        now: Ts,
    ) -> Result<HashMap<i64, Volatile>> {
        let mut reach_q = QueryBuilder::<DB>::new(REACH_SELECT);
        Self::push_list(&mut reach_q, ids.iter().copied());
        #[allow(clippy::type_complexity)]
        let reach: Vec<(
            i64,
            bool,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = reach_q.build_query_as().fetch_all(&mut *conn).await?;
        let mut conversations = Self::active_conversations(&mut *conn, ids).await?;
        let mut week = Self::week_counts(&mut *conn, ids, now).await?;
        Ok(reach
            .into_iter()
            .map(
                |(id, active, phone, preferred, last, sms, chat, telegram)| {
                    (
                        id,
                        Volatile {
                            reach: (active, phone, preferred, last, sms, chat, telegram),
                            conversations: conversations.remove(&id).unwrap_or_default(),
                            week: week.remove(&id),
                        },
                    )
                },
            )
            .collect())
    }

    /// Each caregiver's active conversations on any channel, latest first, locked on
    /// PostgreSQL for the rest of the transaction.
    async fn active_conversations(
        conn: &mut DB::Connection,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<ConversationDb>>> {
        let mut conv_q = QueryBuilder::<DB>::new(
            "SELECT id, caregiver_id, channel, address, flow_id, flow_rev, status, state, \
             wake_at, started_at FROM conversations \
             WHERE status = 'active' AND caregiver_id IN ",
        );
        Self::push_list(&mut conv_q, ids.iter().copied());
        conv_q.push(" ORDER BY caregiver_id, updated_at DESC, id DESC ");
        conv_q.push(DB::LOCK_ROWS);
        let mut conversations: HashMap<i64, Vec<ConversationDb>> = HashMap::new();
        for c in conv_q
            .build_query_as::<ConversationDb>()
            .fetch_all(&mut *conn)
            .await?
        {
            conversations.entry(c.caregiver_id).or_default().push(c);
        }
        Ok(conversations)
    }

    /// Each caregiver's program conversations (onboarding excluded) started in the week before
    /// `now`: how many, and when the oldest started.
    async fn week_counts(
        conn: &mut DB::Connection,
        ids: &[i64],
        now: Ts,
    ) -> Result<HashMap<i64, (i64, Option<Ts>)>> {
        let mut week_q = QueryBuilder::<DB>::new(
            "SELECT caregiver_id, COUNT(*), MIN(started_at) FROM conversations \
             WHERE program IS NOT NULL AND program <> 'onboarding' AND started_at > ",
        );
        week_q.push_bind(Ts(now.0 - CAP_WINDOW));
        week_q.push(" AND caregiver_id IN ");
        Self::push_list(&mut week_q, ids.iter().copied());
        week_q.push(" GROUP BY caregiver_id");
        Ok(week_q
            .build_query_as::<(i64, i64, Option<Ts>)>()
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(id, n, oldest)| (id, (n, oldest)))
            .collect())
    }

    /// The start snapshots of caregivers `ids` (ascending), read with one query per table.
    pub(super) async fn start_snapshots(
        conn: &mut DB::Connection,
        ids: &[i64],
        now: Ts,
        vars: &HashMap<i64, BTreeMap<String, Value>>,
    ) -> Result<Vec<StartSnapshot>> {
        Ok(Self::read_start_batch(conn, ids, now, vars).await?.0)
    }

    /// [`Self::start_snapshots`], with the [`Volatile`] parts of each as read.
    // Long because a batch's snapshots are assembled from a handful of set-wise reads.
    async fn read_start_batch(
        conn: &mut DB::Connection,
        ids: &[i64],
        now: Ts,
        vars: &HashMap<i64, BTreeMap<String, Value>>,
    ) -> Result<(Vec<StartSnapshot>, HashMap<i64, Volatile>)> {
        let mut select = QueryBuilder::<DB>::new(caregivers_select!());
        select.push(" WHERE c.id IN ");
        Self::push_list(&mut select, ids.iter().copied());
        select.push(" ORDER BY c.id");
        let rows: Vec<CaregiverDb> = select.build_query_as().fetch_all(&mut *conn).await?;

        let mut groups_q = QueryBuilder::<DB>::new(
            "SELECT caregiver_id, name FROM caregiver_groups WHERE caregiver_id IN ",
        );
        Self::push_list(&mut groups_q, ids.iter().copied());
        groups_q.push(" ORDER BY caregiver_id, name");
        let memberships: Vec<(i64, String)> =
            groups_q.build_query_as().fetch_all(&mut *conn).await?;
        let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
        for (caregiver_id, name) in memberships {
            groups.entry(caregiver_id).or_default().push(name);
        }
        let reach: HashMap<i64, Reach> = rows
            .iter()
            .map(|r| {
                (
                    r.id,
                    (
                        r.active,
                        r.phone.clone(),
                        r.preferred_channel.clone(),
                        r.last_channel.clone(),
                        r.sms_consent.clone(),
                        r.telegram_chat.clone(),
                        r.telegram_consent.clone(),
                    ),
                )
            })
            .collect();
        let caregivers: Vec<Caregiver> = rows
            .into_iter()
            .map(|row| {
                let mine = groups.remove(&row.id).unwrap_or_default();
                row.into_caregiver(mine)
            })
            .collect::<Result<_>>()?;
        let phones: Vec<String> = caregivers.iter().map(|c| c.phone.clone()).collect();

        let mut consent_q = QueryBuilder::<DB>::new(
            "SELECT address, status FROM subscriptions WHERE channel = 'sms' AND address IN ",
        );
        Self::push_list(&mut consent_q, phones.iter().cloned());
        let consent: HashMap<String, String> = consent_q
            .build_query_as::<(String, String)>()
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();

        // Each caregiver's active conversations on any channel, latest first: a conversation
        // is the caregiver's, not the channel's (as `SqlStore::snapshot` reads it).
        let mut conversations = Self::active_conversations(&mut *conn, ids).await?;
        let week = Self::week_counts(&mut *conn, ids, now).await?;

        let mut volatile = HashMap::with_capacity(caregivers.len());
        let mut out = Vec::with_capacity(caregivers.len());
        for caregiver in caregivers {
            if let Some(reach) = reach.get(&caregiver.id) {
                volatile.insert(
                    caregiver.id,
                    Volatile {
                        reach: reach.clone(),
                        conversations: conversations
                            .get(&caregiver.id)
                            .cloned()
                            .unwrap_or_default(),
                        week: week.get(&caregiver.id).copied(),
                    },
                );
            }
            // Each caregiver on one channel: the one they prefer among those open to us.
            let address = crate::model::reach(&caregiver);
            let consent = match address.channel {
                Channel::Telegram => caregiver
                    .reach
                    .telegram
                    .as_ref()
                    .map_or(ConsentStatus::Unknown, |(_, status)| *status),
                _ => match consent.get(&caregiver.phone) {
                    Some(status) => parse("consent status", status)?,
                    None => ConsentStatus::Unknown,
                },
            };
            // The one on this address, else the latest elsewhere.
            let conversation = conversations
                .remove(&caregiver.id)
                .map(|mut mine| {
                    let here = mine.iter().position(|c| {
                        c.channel == address.channel.as_str() && c.address == address.value
                    });
                    mine.swap_remove(here.unwrap_or(0))
                })
                .map(ConversationDb::into_row)
                .transpose()?;
            let (week_count, week_oldest) = week
                .get(&caregiver.id)
                .map_or((0, None), |(n, oldest)| (*n as u32, oldest.map(|t| t.0)));
            out.push(StartSnapshot {
                vars: vars.get(&caregiver.id).cloned().unwrap_or_default(),
                snapshot: Snapshot {
                    address,
                    consent,
                    caregiver: Some(caregiver),
                    conversation,
                    stranger_replied_today: false,
                    // A start reads no shift offers and no supervisor desk: those answer
                    // inbound messages only.
                    shifts: Vec::new(),
                    desk: None,
                },
                week_count,
                week_oldest,
            });
        }
        Ok((out, volatile))
    }

    /// Applies the plans of a batch: writes before a plan's `CreateConversation` one by one
    /// (ending a running conversation is rare), every new conversation in multi-row `INSERT`s,
    /// then every outbound message in multi-row `INSERT`s; anything else (an answer, an alert
    /// raised at the first step) one by one. Returns the conversation created for each
    /// snapshot, if any.
    // Long because a batch's plans are folded into multi-row inserts: conversations, then messages.
    pub(super) async fn apply_start_plans(
        conn: &mut DB::Connection,
        start_id: Option<i64>,
        program: &str,
        snapshots: &[StartSnapshot],
        plans: &[&Plan],
        now: Ts,
    ) -> Result<Vec<Option<i64>>> {
        // A conversation a batch creates: the plan's `CreateConversation` with its last
        // `UpdateConversation` of the new conversation folded in, so it is one row in one
        // `INSERT`; with the snapshot it is for and its caregiver.
        let mut creates: Vec<(usize, i64, NewConversation<'_>)> = Vec::new();
        for (i, (snapshot, plan)) in snapshots.iter().zip(plans).enumerate() {
            let ctx = Ctx {
                snapshot: &snapshot.snapshot,
                now,
                inbound_id: None,
            };
            let Some(at) = plan
                .writes
                .iter()
                .position(|w| matches!(w, Write::CreateConversation { .. }))
            else {
                Self::apply_writes(conn, &ctx, &plan.writes, None).await?;
                continue;
            };
            Self::apply_writes(conn, &ctx, &plan.writes[..at], None).await?;
            let Write::CreateConversation {
                flow_id,
                flow_rev,
                state,
                wake_at,
            } = &plan.writes[at]
            else {
                unreachable!("position found a CreateConversation");
            };
            let caregiver_id = ctx.caregiver("CreateConversation")?.id;
            let mut new = NewConversation {
                flow_id,
                flow_rev: *flow_rev,
                status: ConversationStatus::Active,
                state,
                wake_at: *wake_at,
                program: Some(program),
                start_id,
            };
            for w in &plan.writes[at + 1..] {
                if let Write::UpdateConversation {
                    conversation: crate::model::ConvRef::New,
                    status,
                    state,
                    wake_at,
                } = w
                {
                    new.status = *status;
                    new.state = state;
                    new.wake_at = *wake_at;
                }
            }
            creates.push((i, caregiver_id, new));
        }

        let mut created: Vec<Option<i64>> = vec![None; snapshots.len()];
        for chunk in creates.chunks(CHUNK) {
            let rows: Vec<ConversationInsert> = chunk
                .iter()
                .map(|(i, caregiver_id, c)| {
                    ConversationInsert::encode(
                        *caregiver_id,
                        &snapshots[*i].snapshot.address,
                        c,
                        now,
                    )
                })
                .collect();
            let mut insert = QueryBuilder::<DB>::new(ConversationInsert::INSERT);
            insert.push_values(&rows, |values, row| row.bind(values));
            insert.push(" RETURNING id, caregiver_id");
            let ids: HashMap<i64, i64> = insert
                .build_query_as::<(i64, i64)>()
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|(id, caregiver_id)| (caregiver_id, id))
                .collect();
            for (i, caregiver_id, _) in chunk {
                created[*i] = Some(ids[caregiver_id]);
            }
        }

        // Everything after each CreateConversation: outbound messages together, the rest one
        // by one (the new conversation's updates were folded into its row above).
        let mut outbound = Vec::new();
        for (i, _, _) in &creates {
            let (snapshot, plan) = (&snapshots[*i], plans[*i]);
            let ctx = Ctx {
                snapshot: &snapshot.snapshot,
                now,
                inbound_id: None,
            };
            let at = plan
                .writes
                .iter()
                .position(|w| matches!(w, Write::CreateConversation { .. }))
                .expect("a create");
            for w in &plan.writes[at + 1..] {
                match w {
                    Write::UpdateConversation {
                        conversation: crate::model::ConvRef::New,
                        ..
                    } => {}
                    Write::Outbound(o) => {
                        let conv = o
                            .conversation
                            .map(|c| conversation_id(c, created[*i]))
                            .transpose()?;
                        outbound.push(OutboundInsert::encode(o.clone(), conv, &now));
                    }
                    other => {
                        Self::apply_writes(conn, &ctx, std::slice::from_ref(other), created[*i])
                            .await?
                    }
                }
            }
        }
        for chunk in outbound.chunks(CHUNK) {
            let mut insert = QueryBuilder::<DB>::new(OutboundInsert::<Ts>::INSERT);
            insert.push_values(chunk, |values, row| row.bind(values));
            insert.build().execute(&mut *conn).await?;
        }
        Ok(created)
    }
}
