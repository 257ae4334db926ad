//! Personal data over time, in SQL: the retention sweep the scheduler runs (message text, free
//! text and notes removed after `CAREBOT_RETENTION_DAYS`, the consent ledger after its own
//! period), and one caregiver's export and erasure (`carebot caregiver export|erase`).
//!
//! The sweep works in batches, one short transaction per kind of row, so replies keep flowing
//! while years of backlog are removed. Through the large tables (messages, answers,
//! conversations, escalation events, the ledger) it walks by id from where it stopped last time
//! (`retention_progress`): ids grow with time, so the rows past the mark that are old enough
//! are a prefix, found without an index on the time column that every inbound message would
//! pay for.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use sqlx::migrate::Migrate;
use sqlx::{ColumnIndex, Encode, Executor, FromRow, IntoArguments, Type};

use super::{Dialect, SqlStore, SqlValue, Ts, json as parse_json, to_json};
use crate::model::week_start;
use crate::privacy::{
    CaregiverExport, EXPORT_NOTE, Erased, Erasure, Person, Retention, Swept, audience_without,
    erasure_hash, vars_without,
};
use crate::store::Result;

/// What erased text is replaced with (`suppress_sql!` in `store/sql/fragments.rs` spells it too: an
/// outbound message with this text is never sent).
const ERASED: &str = "[erased]";

/// What an erased caregiver's messages and conversations keep as their address.
const ERASED_ADDRESS: &str = "erased";

/// Supervisors' replies to an alert, whose `detail` is the supervisor's own words.
const REPLY_ACTIONS: &str =
    "(action = 'ack' OR action = 'call' OR action = 'note' OR action = 'done')";

/// One large table the sweep walks by id: which rows are old enough, and what it does to them.
struct Walk {
    /// Its row in `retention_progress`.
    name: &'static str,
    /// `id`, the time that decides its age, and whether the row may be changed yet (not a
    /// message still waiting to go out, not a conversation still running), past the mark `$1`,
    /// in id order, `$2` of them.
    select: &'static str,
    /// Changes (or deletes) rows `$1 < id <= $2` written before `$3`; `$4` is the marker and
    /// `$5` the marker as a JSON string, for the statements that use them.
    change: &'static str,
    /// How many of those parameters `change` uses: 3, 4 or 5.
    params: usize,
}

const WALKS: [Walk; 6] = [
    Walk {
        name: "inbound_messages",
        select: "SELECT id, received_at, TRUE FROM inbound_messages \
                 WHERE id > $1 ORDER BY id LIMIT $2",
        change: "UPDATE inbound_messages SET body = $4 \
                 WHERE id > $1 AND id <= $2 AND received_at < $3 AND body <> $4",
        params: 4,
    },
    Walk {
        name: "outbound_messages",
        select: "SELECT id, created_at, (status <> 'queued' AND status <> 'sending') \
                 FROM outbound_messages WHERE id > $1 ORDER BY id LIMIT $2",
        // Not a message still waiting to go out (a year in the queue is a bug to see, not text
        // to remove: the walk waits for it); a provider's error text quotes the number, so it
        // goes too.
        change: "UPDATE outbound_messages SET body = $4, \
                 error = CASE WHEN error IS NULL THEN NULL ELSE $4 END \
                 WHERE id > $1 AND id <= $2 AND created_at < $3 AND body <> $4 \
                 AND status <> 'queued' AND status <> 'sending'",
        params: 4,
    },
    Walk {
        name: "answers",
        select: "SELECT id, answered_at, TRUE FROM answers WHERE id > $1 ORDER BY id LIMIT $2",
        // The words as typed go; the value only when it is the words (free text): a score or a
        // choice is what the reports are made of and says nothing in the caregiver's voice.
        change: "UPDATE answers SET raw = $4, \
                 value = CASE WHEN free_text THEN $5 ELSE value END \
                 WHERE id > $1 AND id <= $2 AND answered_at < $3 AND raw <> $4",
        params: 5,
    },
    Walk {
        name: "conversations",
        select: "SELECT id, started_at, status <> 'active' FROM conversations \
                 WHERE id > $1 ORDER BY id LIMIT $2",
        // An ended conversation's state holds its answers and variables; nothing reads it any
        // more. The walk waits at a conversation still active past the retention period
        // (timers end them long before; one without an expiry is named in the log).
        change: "UPDATE conversations SET state = 'null' \
                 WHERE id > $1 AND id <= $2 AND started_at < $3 AND status <> 'active' \
                 AND state <> 'null'",
        params: 3,
    },
    Walk {
        name: "escalation_events",
        select: "SELECT id, at, TRUE FROM escalation_events WHERE id > $1 ORDER BY id LIMIT $2",
        change: "UPDATE escalation_events SET detail = $4 \
                 WHERE id > $1 AND id <= $2 AND at < $3 AND detail <> '' AND detail <> $4 \
                 AND (action = 'ack' OR action = 'call' OR action = 'note' OR action = 'done')",
        params: 4,
    },
    Walk {
        name: "consent_ledger",
        select: "SELECT id, at, TRUE FROM consent_ledger WHERE id > $1 ORDER BY id LIMIT $2",
        // `$3` here is the ledger's own cutoff (see `sweep_in`).
        change: "DELETE FROM consent_ledger WHERE id > $1 AND id <= $2 AND at < $3",
        params: 3,
    },
];

#[derive(FromRow)]
struct ProfileDb {
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
    fields: String,
    tags: String,
    preferred_channel: Option<String>,
    created_at: Ts,
    updated_at: Ts,
}

#[derive(FromRow)]
struct MessageDb {
    id: i64,
    channel: String,
    address: String,
    body: String,
    at: Ts,
    kind: Option<String>,
    status: Option<String>,
}

#[derive(FromRow)]
struct LedgerDb {
    id: i64,
    channel: String,
    address: String,
    status: String,
    source: String,
    detail: String,
    at: Ts,
}

#[derive(FromRow)]
struct ConversationDb {
    id: i64,
    flow_id: String,
    channel: String,
    status: String,
    started_at: Ts,
    ended_at: Option<Ts>,
}

#[derive(FromRow)]
struct AnswerDb {
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
    flow_id: String,
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
struct EventDb {
    escalation_id: i64,
    action: String,
    supervisor: Option<String>,
    detail: String,
    at: Ts,
}

#[derive(FromRow)]
struct OfferDb {
    id: i64,
    client_ref: String,
    location: String,
    starts_at: Ts,
    ends_at: Ts,
    status: String,
    sent_at: Ts,
    answer: Option<String>,
    outcome: Option<String>,
    answered_at: Option<Ts>,
    won: bool,
}

#[derive(FromRow)]
struct TrainingDb {
    module: String,
    link: String,
    due_date: NaiveDate,
    status: String,
}

fn at(t: &Ts) -> String {
    t.0.to_rfc3339()
}

fn at_opt(t: &Option<Ts>) -> Value {
    t.as_ref().map_or(Value::Null, |t| Value::from(at(t)))
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
    /// One batch of the retention sweep: up to `batch` rows of each kind.
    pub(super) async fn sweep_in(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
        batch: u32,
    ) -> Result<Swept> {
        let marker = retention.marker();
        let cutoff = Ts(retention.cutoff(now));
        let consent_cutoff = Ts(retention.consent_cutoff(now));
        let mut swept = Swept::default();

        // First the anonymous answers of days that are over join the others (see
        // migration 0011), so that what follows sees them where they stay.
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        for statement in DB::MIX_ANONYMOUS {
            let moved = sqlx::query(*statement)
                .bind(now.date_naive())
                .execute(&mut *tx)
                .await?;
            swept.mixed = swept.mixed.max(DB::rows_affected(&moved));
        }
        // Anonymous free text past its time, by the week its survey started (all it keeps).
        let anonymous = sqlx::query(
            "UPDATE anonymous_answers SET value = $2, free_text = FALSE \
             WHERE id IN (SELECT id FROM anonymous_answers \
             WHERE free_text AND cohort_week < $1 LIMIT $3)",
        )
        .bind(week_start(cutoff.0))
        .bind(to_json(&marker))
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?;
        swept.anonymous = DB::rows_affected(&anonymous);
        swept.more |= swept.anonymous == u64::from(batch);
        tx.commit().await?;
        for walk in &WALKS {
            let cut = if walk.name == "consent_ledger" {
                consent_cutoff
            } else {
                cutoff
            };
            let (n, full) = self.walk(walk, cut, &marker, batch).await?;
            swept.more |= full;
            match walk.name {
                "inbound_messages" => swept.inbound = n,
                "outbound_messages" => swept.outbound = n,
                "answers" => swept.answers = n,
                "conversations" => swept.conversations = n,
                "escalation_events" => swept.notes = n,
                _ => swept.ledger = n,
            }
        }

        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        // Escalations are few: found by their time index, and only once closed (an open one's
        // text is still read when it is re-sent or listed in a digest).
        let escalations = sqlx::query(
            "UPDATE escalations SET answer = $2, message = $2, context = '{}' \
             WHERE id IN (SELECT id FROM escalations WHERE raised_at < $1 \
             AND status = 'done' AND answer <> $2 ORDER BY id LIMIT $3)",
        )
        .bind(cutoff)
        .bind(marker.clone())
        .bind(i64::from(batch))
        .execute(&mut *tx)
        .await?;
        swept.escalations = DB::rows_affected(&escalations);
        swept.more |= swept.escalations == u64::from(batch);
        // Rows that exist only to keep a number: the once-a-day stranger reply, old invites.
        let strangers = sqlx::query("DELETE FROM stranger_replies WHERE day < $1")
            .bind(cutoff.0.date_naive())
            .execute(&mut *tx)
            .await?;
        let invites = sqlx::query("DELETE FROM invites WHERE expires_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        swept.other = DB::rows_affected(&strangers) + DB::rows_affected(&invites);
        tx.commit().await?;
        Ok(swept)
    }

    /// One batch of one walk: returns the rows changed and whether the batch was full of rows
    /// old enough (so more may be waiting).
    async fn walk(&self, walk: &Walk, cutoff: Ts, marker: &str, batch: u32) -> Result<(u64, bool)> {
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        let mark: Option<(i64,)> =
            sqlx::query_as("SELECT last_id FROM retention_progress WHERE name = $1")
                .bind(walk.name)
                .fetch_optional(&mut *tx)
                .await?;
        let mark = mark.map_or(0, |(m,)| m);
        let rows: Vec<(i64, Ts, bool)> = sqlx::query_as(walk.select)
            .bind(mark)
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?;
        // The old-enough prefix: a row written after the cutoff ends it, and the walk resumes
        // there next time. So does an old row still in use: passing it would leave its text
        // behind for good once it is done.
        let old = rows
            .iter()
            .take_while(|(_, t, ready)| *t < cutoff && *ready)
            .count();
        if let Some((id, t, false)) = rows.get(old)
            && *t < cutoff
        {
            tracing::warn!(
                table = walk.name,
                id,
                "retention: a row past its time is still in use; the sweep of this table \
                 waits for it"
            );
        }
        let Some(&(upto, _, _)) = rows[..old].last() else {
            tx.rollback().await?;
            return Ok((0, false));
        };
        let mut change = sqlx::query(walk.change).bind(mark).bind(upto).bind(cutoff);
        if walk.params >= 4 {
            change = change.bind(marker.to_owned());
        }
        if walk.params >= 5 {
            change = change.bind(to_json(&marker));
        }
        let changed = change.execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO retention_progress (name, last_id) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id \
             WHERE retention_progress.last_id < excluded.last_id",
        )
        .bind(walk.name)
        .bind(upto)
        .execute(&mut *tx)
        .await?;
        // A walk that deletes (the ledger) can empty its table, and SQLite then numbers the
        // next row 1 again, below the mark, where the walk would never look: start over.
        // (PostgreSQL's sequences never go back; there the table is only empty until the next
        // row, which is past the mark.)
        if walk.change.starts_with("DELETE") {
            let left: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM {} LIMIT 1",
                walk.name
            )))
            .fetch_optional(&mut *tx)
            .await?;
            if left.is_none() {
                sqlx::query("DELETE FROM retention_progress WHERE name = $1")
                    .bind(walk.name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok((
            DB::rows_affected(&changed),
            old == rows.len() && rows.len() == batch as usize,
        ))
    }

    /// The roster row of `who`, if on the roster (an erased caregiver's placeholder never
    /// matches: its phone and external id are `erased-…`), locked with `lock` (a row-lock
    /// clause, or nothing).
    async fn profile(
        conn: &mut DB::Connection,
        who: &Person,
        lock: &str,
    ) -> Result<Option<ProfileDb>> {
        let column = match who {
            Person::Phone(_) => "phone",
            Person::ExternalId(_) => "external_id",
        };
        let sql = format!(
            "SELECT id, external_id, first_name, last_name, phone, language, timezone, branch, \
             supervisor_external_id, consent_at, active, fields, tags, preferred_channel, \
             created_at, updated_at FROM caregivers \
             WHERE {column} = $1 AND phone NOT LIKE 'erased-%' {lock}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(who.key().to_owned())
            .fetch_optional(&mut *conn)
            .await?)
    }

    /// Every channel address that is or was this caregiver's: their phone, their links, and
    /// whatever their messages, conversations and ledger rows were kept under (an old number
    /// after a change of phone).
    async fn addresses_of(
        conn: &mut DB::Connection,
        id: i64,
        phone: &str,
    ) -> Result<BTreeSet<(String, String)>> {
        let mut out = BTreeSet::new();
        out.insert(("sms".to_owned(), phone.to_owned()));
        for sql in [
            "SELECT channel, address FROM caregiver_links WHERE caregiver_id = $1",
            "SELECT DISTINCT channel, address FROM inbound_messages WHERE caregiver_id = $1",
            "SELECT DISTINCT channel, address FROM conversations WHERE caregiver_id = $1",
            "SELECT DISTINCT channel, address FROM consent_ledger WHERE caregiver_id = $1",
            "SELECT DISTINCT channel, address FROM outbound_messages WHERE caregiver_id = $1",
        ] {
            let rows: Vec<(String, String)> =
                sqlx::query_as(sql).bind(id).fetch_all(&mut *conn).await?;
            out.extend(rows);
        }
        out.retain(|(_, a)| a != ERASED_ADDRESS && !a.starts_with("sha256:"));
        Ok(out)
    }

    // Long because it reads every table that holds her and lays out the export in one place.
    pub(super) async fn export_caregiver_in(
        &self,
        who: &Person,
        now: DateTime<Utc>,
    ) -> Result<Option<CaregiverExport>> {
        // One read transaction, so the export is one consistent moment.
        let mut tx = self.pool.begin().await?;
        let Some(p) = Self::profile(&mut *tx, who, "").await? else {
            return Ok(None);
        };
        let id = p.id;
        let addresses = Self::addresses_of(&mut *tx, id, &p.phone).await?;
        let groups: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM caregiver_groups WHERE caregiver_id = $1 ORDER BY name",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let links: Vec<(String, String, Ts)> = sqlx::query_as(
            "SELECT channel, address, created_at FROM caregiver_links WHERE caregiver_id = $1 \
             ORDER BY created_at",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let profile = json!({
            "external_id": p.external_id,
            "first_name": p.first_name,
            "last_name": p.last_name,
            "phone": p.phone,
            "language": p.language,
            "timezone": p.timezone,
            "branch": p.branch,
            "supervisor_id": p.supervisor_external_id,
            "groups": groups.into_iter().map(|(g,)| g).collect::<Vec<_>>(),
            "consent_at": p.consent_at.map(|d| d.to_string()),
            "active": p.active,
            "fields": parse_json::<Value>("caregiver fields", &p.fields)?,
            "tags": parse_json::<Value>("caregiver tags", &p.tags)?,
            "preferred_channel": p.preferred_channel,
            "linked": links.iter().map(|(c, a, t)| json!({
                "channel": c, "address": a, "since": at(t),
            })).collect::<Vec<_>>(),
            "on_roster_since": at(&p.created_at),
            "updated_at": at(&p.updated_at),
        });

        let mut consent = Vec::new();
        let mut messages: Vec<(Ts, i64, Value)> = Vec::new();
        for (channel, address) in &addresses {
            let status: Option<(String, Ts)> = sqlx::query_as(
                "SELECT status, updated_at FROM subscriptions WHERE channel = $1 AND address = $2",
            )
            .bind(channel.clone())
            .bind(address.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((status, since)) = status {
                consent.push(json!({
                    "channel": channel, "address": address, "status": status, "since": at(&since),
                }));
            }
        }
        let ledger: Vec<LedgerDb> = sqlx::query_as(
            "SELECT id, channel, address, status, source, detail, at FROM consent_ledger \
             WHERE caregiver_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let mut ledger_rows: BTreeMap<i64, Value> = BTreeMap::new();
        let mut keep = |l: LedgerDb| {
            ledger_rows.insert(
                l.id,
                json!({
                    "channel": l.channel, "address": l.address, "status": l.status,
                    "source": l.source, "detail": l.detail, "at": at(&l.at),
                }),
            );
        };
        ledger.into_iter().for_each(&mut keep);
        for (channel, address) in &addresses {
            // At an old number of theirs that someone else holds now, only the rows that name
            // them are theirs (as in `erase_caregiver_in`); elsewhere also the rows that name
            // nobody, written before the number was on the roster.
            let others = Self::held_by_someone_else(&mut *tx, id, channel, address).await?;
            // Rows written before the number was on the roster carry no caregiver id.
            let rows: Vec<LedgerDb> = sqlx::query_as(
                "SELECT id, channel, address, status, source, detail, at FROM consent_ledger \
                 WHERE channel = $1 AND address = $2 AND caregiver_id IS NULL",
            )
            .bind(channel.clone())
            .bind(address.clone())
            .fetch_all(&mut *tx)
            .await?;
            rows.into_iter().for_each(&mut keep);
            for (direction, sql) in [
                (
                    "in",
                    "SELECT id, channel, address, body, received_at AS at, \
                     CAST(NULL AS TEXT) AS kind, CAST(NULL AS TEXT) AS status \
                     FROM inbound_messages WHERE channel = $1 AND address = $2 \
                     AND (caregiver_id = $3 OR (caregiver_id IS NULL AND $4))",
                ),
                (
                    "out",
                    "SELECT id, channel, address, body, created_at AS at, kind, status \
                     FROM outbound_messages WHERE channel = $1 AND address = $2 \
                     AND (caregiver_id = $3 OR (caregiver_id IS NULL AND $4))",
                ),
            ] {
                let rows: Vec<MessageDb> = sqlx::query_as(sql)
                    .bind(channel.clone())
                    .bind(address.clone())
                    .bind(id)
                    .bind(!others)
                    .fetch_all(&mut *tx)
                    .await?;
                for m in rows {
                    let mut v = json!({
                        "direction": direction, "channel": m.channel, "address": m.address,
                        "text": m.body, "at": at(&m.at),
                    });
                    if let (Some(kind), Some(status)) = (m.kind, m.status) {
                        v["kind"] = kind.into();
                        v["status"] = status.into();
                    }
                    let order = if direction == "in" {
                        m.id * 2
                    } else {
                        m.id * 2 + 1
                    };
                    messages.push((m.at, order, v));
                }
            }
        }
        // In the order they were written (an import's row carries the wall clock, a reply's
        // the message's own time).
        let consent_history: Vec<Value> = ledger_rows.into_values().collect();
        messages.sort_by_key(|(t, order, _)| (*t, *order));

        let conversations: Vec<ConversationDb> = sqlx::query_as(
            "SELECT id, flow_id, channel, status, started_at, ended_at FROM conversations \
             WHERE caregiver_id = $1 ORDER BY started_at, id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let answers: Vec<AnswerDb> = sqlx::query_as(
            "SELECT flow_id, step, key, value, raw, answered_at FROM answers \
             WHERE caregiver_id = $1 ORDER BY answered_at, id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let escalations: Vec<EscalationDb> = sqlx::query_as(
            "SELECT id, flow_id, priority, reason, answer, message, status, raised_at, \
             acknowledged_at, closed_at FROM escalations WHERE caregiver_id = $1 \
             ORDER BY raised_at, id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let events: Vec<EventDb> = sqlx::query_as(
            "SELECT ev.escalation_id, ev.action, s.external_id AS supervisor, ev.detail, ev.at \
             FROM escalation_events ev LEFT JOIN supervisors s ON s.id = ev.supervisor_id \
             WHERE ev.escalation_id IN (SELECT id FROM escalations WHERE caregiver_id = $1) \
             ORDER BY ev.at, ev.id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let offers: Vec<OfferDb> = sqlx::query_as(
            "SELECT o.id, o.client_ref, o.location, o.starts_at, o.ends_at, o.status, \
             r.sent_at, r.answer, r.outcome, r.answered_at, \
             (o.filled_by IS NOT NULL AND o.filled_by = r.caregiver_id) AS won \
             FROM shift_offer_recipients r JOIN shift_offers o ON o.id = r.offer_id \
             WHERE r.caregiver_id = $1 ORDER BY r.sent_at, o.id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let training: Vec<TrainingDb> = sqlx::query_as(
            "SELECT module, link, due_date, status FROM training_assignments \
             WHERE caregiver_id = $1 ORDER BY due_date, id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.rollback().await?;

        Ok(Some(CaregiverExport {
            exported_at: now,
            profile,
            consent,
            consent_history,
            messages: messages.into_iter().map(|(_, _, v)| v).collect(),
            conversations: conversations
                .into_iter()
                .map(|c| {
                    json!({
                        "id": c.id, "flow": c.flow_id, "channel": c.channel, "status": c.status,
                        "started_at": at(&c.started_at), "ended_at": at_opt(&c.ended_at),
                    })
                })
                .collect(),
            answers: answers
                .into_iter()
                .map(|a| {
                    Ok(json!({
                        "flow": a.flow_id, "step": a.step, "key": a.key,
                        "answer": parse_json::<Value>("answer value", &a.value)?,
                        "as_written": a.raw, "answered_at": at(&a.answered_at),
                    }))
                })
                .collect::<Result<_>>()?,
            escalations: escalations
                .into_iter()
                .map(|e| {
                    json!({
                        "id": e.id, "flow": e.flow_id, "priority": e.priority,
                        "reason": e.reason, "answer": e.answer, "alert": e.message,
                        "status": e.status, "raised_at": at(&e.raised_at),
                        "acknowledged_at": at_opt(&e.acknowledged_at),
                        "closed_at": at_opt(&e.closed_at),
                        "history": events.iter().filter(|ev| ev.escalation_id == e.id)
                            .map(|ev| json!({
                                "action": ev.action, "supervisor": ev.supervisor,
                                "detail": ev.detail, "at": at(&ev.at),
                            })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
            shift_offers: offers
                .into_iter()
                .map(|o| {
                    json!({
                        "offer": o.id, "client": o.client_ref, "location": o.location,
                        "starts_at": at(&o.starts_at), "ends_at": at(&o.ends_at),
                        "offer_status": o.status, "texted_at": at(&o.sent_at),
                        "answer": o.answer, "outcome": o.outcome,
                        "answered_at": at_opt(&o.answered_at), "won": o.won,
                    })
                })
                .collect(),
            training: training
                .into_iter()
                .map(|t| {
                    json!({
                        "module": t.module, "link": t.link,
                        "due_date": t.due_date.to_string(), "status": t.status,
                    })
                })
                .collect(),
            note: EXPORT_NOTE,
        }))
    }

    // Long because one transaction over every table that holds her, a statement or two per table.
    pub(super) async fn erase_caregiver_in(
        &self,
        who: &Person,
        now: DateTime<Utc>,
    ) -> Result<Erasure> {
        let now = Ts(now);
        let mut tx = self.pool.begin_with(DB::BEGIN_WRITE).await?;
        // On PostgreSQL their roster row is locked (FOR UPDATE) before anything else is read. A
        // transaction that has already written a row referring to them (an inbound message, a
        // text queued to them) holds a key-share lock on that row, so the erase waits for it to
        // commit and then reads what it wrote; unlocked, the erase would read past those rows
        // and wait only at its last statement (the roster row), leaving them behind. One that
        // writes about them after this point waits until the erase has committed. On SQLite
        // BEGIN IMMEDIATE already serialises every writer.
        //
        // Their running conversations are locked first, in the order an inbound message takes
        // its locks (its conversation, then their roster row when it writes a row naming them),
        // so that the two wait for each other instead of deadlocking.
        if !DB::LOCK_ROWS.is_empty()
            && let Some(p) = Self::profile(&mut *tx, who, "").await?
        {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM conversations WHERE caregiver_id = $1 AND status = 'active' {}",
                DB::LOCK_ROWS
            )))
            .bind(p.id)
            .fetch_all(&mut *tx)
            .await?;
        }
        let Some(p) = Self::profile(&mut *tx, who, DB::LOCK_ROWS).await? else {
            let erased: Option<(Ts,)> =
                sqlx::query_as("SELECT erased_at FROM erasures WHERE key_sha256 = $1")
                    .bind(who.hash())
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Ok(match erased {
                Some((t,)) => Erasure::AlreadyErased(t.0.date_naive()),
                None => Erasure::NoMatch,
            });
        };
        let id = p.id;
        let mut done = Erased {
            external_id: p.external_id.clone(),
            ..Erased::default()
        };
        // An old number of theirs may be someone else's now (another caregiver's, or a
        // supervisor's): that person's rows at it are not theirs to erase. Such addresses are
        // left out of every by-address change; their own rows there are still found by
        // caregiver_id. At the addresses that are theirs alone, only rows that are theirs or
        // nobody's (caregiver_id NULL: sent before the number was on the roster) change: a
        // number can have had an owner before them.
        let mut own = BTreeSet::new();
        let mut held_by_others = BTreeSet::new();
        for (channel, address) in Self::addresses_of(&mut *tx, id, &p.phone).await? {
            if Self::held_by_someone_else(&mut *tx, id, &channel, &address).await? {
                held_by_others.insert((channel, address));
            } else {
                own.insert((channel, address));
            }
        }
        let n = |r: &DB::QueryResult| DB::rows_affected(r);

        // First, nothing more goes out to them: their waiting conversations end (so no timer
        // wakes them) and their queued messages are cancelled ('suppressed': the dispatcher
        // claims only 'queued' rows). A message the dispatcher has already claimed ('sending')
        // is in its hands, text and number in memory, and may still reach them; it loses its
        // text and address below with the rest, and should the send fail and be put back in the
        // queue, the claim suppresses it (its text is ERASED, see `suppress_sql!`).
        let ended = sqlx::query(
            "UPDATE conversations SET status = 'interrupted', wake_at = NULL, ended_at = $2, \
             updated_at = $2 WHERE caregiver_id = $1 AND status = 'active'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        done.conversations_ended = n(&ended);
        let cancelled = sqlx::query(
            "UPDATE outbound_messages SET status = 'suppressed', updated_at = $2 \
             WHERE caregiver_id = $1 AND status = 'queued'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        done.messages_cancelled += n(&cancelled);
        for (channel, address) in &own {
            let cancelled = sqlx::query(
                "UPDATE outbound_messages SET status = 'suppressed', updated_at = $3 \
                 WHERE channel = $1 AND address = $2 AND status = 'queued' \
                 AND caregiver_id IS NULL",
            )
            .bind(channel.clone())
            .bind(address.clone())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            done.messages_cancelled += n(&cancelled);
        }

        // What supervisors were told about them, and what they replied (before the
        // escalations lose the alert text these are recognised by).
        done.alerts_scrubbed = Self::erase_supervisor_texts(&mut *tx, &p, now).await?;
        let notes = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE escalation_events SET detail = $2 WHERE detail <> '' AND {REPLY_ACTIONS} \
             AND escalation_id IN (SELECT id FROM escalations WHERE caregiver_id = $1)"
        )))
        .bind(id)
        .bind(ERASED)
        .execute(&mut *tx)
        .await?;
        done.alerts_scrubbed += n(&notes);
        // Open escalations about someone who no longer exists here are closed, with the reason
        // in their history; every escalation keeps its events and times, for the reports.
        sqlx::query(
            "INSERT INTO escalation_events (escalation_id, action, supervisor_id, level, detail, at) \
             SELECT id, 'done', NULL, level, 'caregiver erased', $2 FROM escalations \
             WHERE caregiver_id = $1 AND status <> 'done'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let closed = sqlx::query(
            "UPDATE escalations SET status = 'done', closed_at = $2, due_at = NULL \
             WHERE caregiver_id = $1 AND status <> 'done'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        done.escalations_closed = n(&closed);
        let escalations = sqlx::query(
            "UPDATE escalations SET answer = $2, message = $2, context = '{}' \
             WHERE caregiver_id = $1",
        )
        .bind(id)
        .bind(ERASED)
        .execute(&mut *tx)
        .await?;
        done.escalations_scrubbed = n(&escalations);

        // Their words and addresses. Rows stay (unnamed) so that counts and rates do not change.
        // A provider's error text quotes the number, so it goes too.
        for (table, also) in [
            ("inbound_messages", ""),
            ("outbound_messages", ", error = NULL"),
        ] {
            let by_id = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET body = $2, address = $3{also} WHERE caregiver_id = $1"
            )))
            .bind(id)
            .bind(ERASED)
            .bind(ERASED_ADDRESS)
            .execute(&mut *tx)
            .await?;
            done.messages_scrubbed += n(&by_id);
            for (channel, address) in &own {
                let by_address = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET body = $3, address = $4{also} \
                     WHERE channel = $1 AND address = $2 AND caregiver_id IS NULL"
                )))
                .bind(channel.clone())
                .bind(address.clone())
                .bind(ERASED)
                .bind(ERASED_ADDRESS)
                .execute(&mut *tx)
                .await?;
                done.messages_scrubbed += n(&by_address);
            }
        }
        sqlx::query(
            "UPDATE conversations SET state = 'null', address = $2 WHERE caregiver_id = $1",
        )
        .bind(id)
        .bind(ERASED_ADDRESS)
        .execute(&mut *tx)
        .await?;
        let answers = sqlx::query(
            "UPDATE answers SET raw = $2, value = CASE WHEN free_text THEN $3 ELSE value END \
             WHERE caregiver_id = $1",
        )
        .bind(id)
        .bind(ERASED)
        .bind(to_json(&ERASED))
        .execute(&mut *tx)
        .await?;
        done.answers_scrubbed = n(&answers);

        // Consent: the ledger keeps what happened and when, under a hash of the address; an
        // opt-out is remembered (hashed) so that a later import of the number does not text it.
        // At a number someone else holds now, only their own ledger rows change, and the
        // consent in force there is the new holder's.
        for ((channel, address), theirs_alone) in own
            .iter()
            .map(|a| (a, true))
            .chain(held_by_others.iter().map(|a| (a, false)))
        {
            let hashed = format!("sha256:{}", erasure_hash(channel, address));
            let whose = if theirs_alone {
                "(caregiver_id = $5 OR caregiver_id IS NULL)"
            } else {
                "caregiver_id = $5"
            };
            let ledger = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE consent_ledger SET address = $3, detail = $4 \
                 WHERE channel = $1 AND address = $2 AND {whose}"
            )))
            .bind(channel.clone())
            .bind(address.clone())
            .bind(hashed)
            .bind(ERASED)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            done.ledger_rows_anonymised += n(&ledger);
            if !theirs_alone {
                continue;
            }
            let status: Option<(String,)> = sqlx::query_as(
                "SELECT status FROM subscriptions WHERE channel = $1 AND address = $2",
            )
            .bind(channel.clone())
            .bind(address.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if status.is_some_and(|(s,)| s == "opted_out") {
                sqlx::query(
                    "INSERT INTO erased_opt_outs (channel, address_sha256, erased_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (channel, address_sha256) DO NOTHING",
                )
                .bind(channel.clone())
                .bind(erasure_hash(channel, address))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                done.opt_outs_kept += 1;
            }
            for sql in [
                "DELETE FROM subscriptions WHERE channel = $1 AND address = $2",
                "DELETE FROM stranger_replies WHERE channel = $1 AND address = $2",
            ] {
                let deleted = sqlx::query(sql)
                    .bind(channel.clone())
                    .bind(address.clone())
                    .execute(&mut *tx)
                    .await?;
                done.rows_deleted += n(&deleted);
            }
        }
        let ledger = sqlx::query("UPDATE consent_ledger SET detail = $2 WHERE caregiver_id = $1")
            .bind(id)
            .bind(ERASED)
            .execute(&mut *tx)
            .await?;
        done.ledger_rows_anonymised = done.ledger_rows_anonymised.max(n(&ledger));

        // The audiences operators typed, which name people by number.
        let phones: Vec<&str> = own
            .iter()
            .filter(|(channel, _)| channel == "sms" || channel == "console")
            .map(|(_, address)| address.as_str())
            .collect();
        done.audiences_edited =
            Self::erase_from_audiences(&mut *tx, &phones, &p.external_id).await?;

        for sql in [
            "DELETE FROM caregiver_links WHERE caregiver_id = $1",
            "DELETE FROM caregiver_groups WHERE caregiver_id = $1",
            "DELETE FROM invites WHERE caregiver_id = $1",
            "DELETE FROM start_waits WHERE caregiver_id = $1",
        ] {
            let deleted = sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            done.rows_deleted += n(&deleted);
        }

        // The roster row becomes a placeholder: no name, number or fields, inactive; its branch
        // (and `state` field) stay so that last year's totals by branch stay the same.
        let placeholder = format!("erased-{id}");
        let fields: Value = parse_json("caregiver fields", &p.fields)?;
        let kept = match fields.get("state") {
            Some(state) => json!({ "state": state }),
            None => json!({}),
        };
        sqlx::query(
            "UPDATE caregivers SET external_id = $2, first_name = '', last_name = '', phone = $2, \
             supervisor_external_id = NULL, consent_at = NULL, active = FALSE, fields = $3, \
             tags = '[]', preferred_channel = NULL, last_channel = NULL, chosen_language = NULL, \
             phone_invalid = FALSE, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(placeholder)
        .bind(to_json(&kept))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for key in [
            Person::ExternalId(p.external_id.clone()).hash(),
            Person::Phone(p.phone.clone()).hash(),
        ] {
            sqlx::query(
                "INSERT INTO erasures (key_sha256, erased_at) VALUES ($1, $2) \
                 ON CONFLICT (key_sha256) DO NOTHING",
            )
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Erasure::Erased(done))
    }

    /// Whether `address` on `channel` belongs to someone other than caregiver `id` now: another
    /// caregiver's phone or link, or a supervisor's.
    async fn held_by_someone_else(
        conn: &mut DB::Connection,
        id: i64,
        channel: &str,
        address: &str,
    ) -> Result<bool> {
        // SMS and the console reach a caregiver or supervisor by their phone; other channels
        // through a link.
        let by_phone = channel == "sms" || channel == "console";
        let (n,): (i64,) = sqlx::query_as(
            "SELECT \
             (SELECT COUNT(*) FROM caregivers WHERE $4 AND phone = $2 AND id <> $3) + \
             (SELECT COUNT(*) FROM supervisors WHERE $4 AND phone = $2) + \
             (SELECT COUNT(*) FROM caregiver_links \
              WHERE channel = $1 AND address = $2 AND caregiver_id <> $3) + \
             (SELECT COUNT(*) FROM supervisor_links WHERE channel = $1 AND address = $2)",
        )
        .bind(channel.to_owned())
        .bind(address.to_owned())
        .bind(id)
        .bind(by_phone)
        .fetch_one(&mut *conn)
        .await?;
        Ok(n > 0)
    }

    /// Empties what supervisors were sent about caregiver `p`, and their replies about them;
    /// returns how many messages lost their text. Those still queued are cancelled: an
    /// "[erased]" text would tell a supervisor nothing.
    ///
    /// A message is known to be about them by what links it to them, read from the rows that
    /// record why it was written, not by searching for their name:
    /// - an alert, its reminders and re-escalations quote the escalation's alert text, which
    ///   carries the escalation's number ("ALERT 14 (high): …"), so they contain it;
    /// - the confirmation a supervisor gets for ACK, CALL, NOTE or DONE, and the "taken up"
    ///   notice the rest of the chain gets, are written in the transaction of that reply: at
    ///   the instant of its event;
    /// - the shift-filled alert is written in the transaction that filled the offer: at its
    ///   `filled_at`;
    /// - a copy the dispatcher queued by SMS when a supervisor's Telegram refused one of these
    ///   has the same text, at a later time.
    ///
    /// Only the daily digest has no link but its text: it lists every open alert of the
    /// supervisor. One sent at a `digests` row's time that contains their name as a digest
    /// renders it ("Maria G.") is emptied whole, other caregivers' lines with it: cutting out
    /// one line would mean parsing a template that program staff may reword, and the others'
    /// alerts are still listed in their own alert texts.
    ///
    /// Only the supervisors who were sent something about them are read: the chain of each of
    /// their escalations, whoever acted on one, and the supervisor of each shift they took, at
    /// their current phone and links.
    // Long because each kind of text a supervisor was sent about her is found and emptied in turn.
    async fn erase_supervisor_texts(
        conn: &mut DB::Connection,
        p: &ProfileDb,
        now: Ts,
    ) -> Result<u64> {
        let id = p.id;
        let escalations: Vec<(String, String, Ts)> = sqlx::query_as(
            "SELECT message, context, raised_at FROM escalations WHERE caregiver_id = $1",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let replies: Vec<(Option<i64>, Ts)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT supervisor_id, at FROM escalation_events WHERE {REPLY_ACTIONS} \
             AND escalation_id IN (SELECT id FROM escalations WHERE caregiver_id = $1)"
        )))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let fills: Vec<(Option<i64>, Ts)> = sqlx::query_as(
            "SELECT supervisor_id, filled_at FROM shift_offers \
             WHERE filled_by = $1 AND filled_at IS NOT NULL",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        // Nothing about them was written before their first alert or shift.
        let Some(since) = escalations
            .iter()
            .map(|(_, _, t)| *t)
            .chain(fills.iter().map(|(_, t)| *t))
            .min()
        else {
            return Ok(0);
        };
        let supervisors: Vec<(i64,)> = sqlx::query_as(
            "SELECT supervisor_id FROM escalation_contacts \
             WHERE escalation_id IN (SELECT id FROM escalations WHERE caregiver_id = $1) \
             UNION SELECT supervisor_id FROM escalation_events WHERE supervisor_id IS NOT NULL \
             AND escalation_id IN (SELECT id FROM escalations WHERE caregiver_id = $1) \
             UNION SELECT supervisor_id FROM shift_offers \
             WHERE filled_by = $1 AND supervisor_id IS NOT NULL",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;

        let alerts: Vec<&str> = escalations
            .iter()
            .map(|(message, _, _)| message.as_str())
            .filter(|m| !m.is_empty() && *m != ERASED)
            .collect();
        let reply_times: BTreeSet<Ts> = replies.iter().map(|(_, t)| *t).collect();
        let fill_times: BTreeSet<Ts> = fills.iter().map(|(_, t)| *t).collect();
        // Their name as a digest shows it: from the roster now, and as each alert was raised
        // (a name changed since is still the one the older digests carry).
        let mut names: BTreeSet<String> = BTreeSet::new();
        names.insert(super::short_name(&p.first_name, &p.last_name));
        for (_, context, _) in &escalations {
            let context: Value = parse_json("escalation context", context)?;
            let caregiver = &context["caregiver"];
            if let Some(first) = caregiver["first_name"].as_str() {
                let last = caregiver["last_name"].as_str().unwrap_or_default();
                names.insert(super::short_name(first, last));
            }
        }
        names.retain(|n| !n.trim().is_empty());

        let mut scrubbed = 0;
        for (supervisor_id,) in supervisors {
            let digest_times: Vec<(Ts,)> =
                sqlx::query_as("SELECT sent_at FROM digests WHERE supervisor_id = $1")
                    .bind(supervisor_id)
                    .fetch_all(&mut *conn)
                    .await?;
            let digest_times: BTreeSet<Ts> = digest_times.into_iter().map(|(t,)| t).collect();
            let mut addresses: Vec<(String, String)> = sqlx::query_as(
                "SELECT channel, address FROM supervisor_links WHERE supervisor_id = $1",
            )
            .bind(supervisor_id)
            .fetch_all(&mut *conn)
            .await?;
            let phone: Option<(String,)> =
                sqlx::query_as("SELECT phone FROM supervisors WHERE id = $1")
                    .bind(supervisor_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            addresses.extend(phone.map(|(phone,)| ("sms".to_owned(), phone)));

            let mut sent: Vec<(i64, String, String, Ts)> = Vec::new();
            for (channel, address) in &addresses {
                let rows: Vec<(i64, String, String, Ts)> = sqlx::query_as(
                    "SELECT id, kind, body, created_at FROM outbound_messages \
                     WHERE channel = $1 AND address = $2 AND created_at >= $3 AND body <> $4",
                )
                .bind(channel.clone())
                .bind(address.clone())
                .bind(since)
                .bind(ERASED)
                .fetch_all(&mut *conn)
                .await?;
                sent.extend(rows);
            }
            let about = |(_, kind, body, at): &(i64, String, String, Ts)| {
                alerts.iter().any(|alert| body.contains(alert))
                    || reply_times.contains(at)
                    || (kind == "alert" && fill_times.contains(at))
                    || (kind == "alert"
                        && digest_times.contains(at)
                        && names.iter().any(|name| body.contains(name.as_str())))
            };
            let texts: BTreeSet<&str> = sent
                .iter()
                .filter(|m| about(m))
                .map(|(_, _, body, _)| body.as_str())
                .collect();
            let ids: Vec<i64> = sent
                .iter()
                .filter(|(_, _, body, _)| texts.contains(body.as_str()))
                .map(|(id, _, _, _)| *id)
                .collect();
            for message in ids {
                let emptied = sqlx::query(
                    "UPDATE outbound_messages SET body = $2, \
                     status = CASE WHEN status = 'queued' THEN 'suppressed' ELSE status END, \
                     updated_at = CASE WHEN status = 'queued' THEN $3 ELSE updated_at END \
                     WHERE id = $1",
                )
                .bind(message)
                .bind(ERASED)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                scrubbed += DB::rows_affected(&emptied);
            }

            // Their replies (a NOTE's words, a DONE's reason) came in from one of these
            // addresses at the instant of the reply's event.
            let times: Vec<Ts> = replies
                .iter()
                .filter(|(by, _)| *by == Some(supervisor_id))
                .map(|(_, t)| *t)
                .collect();
            for (channel, address) in &addresses {
                for at in &times {
                    let emptied = sqlx::query(
                        "UPDATE inbound_messages SET body = $4 \
                         WHERE channel = $1 AND address = $2 AND received_at = $3 \
                         AND body <> $4",
                    )
                    .bind(channel.clone())
                    .bind(address.clone())
                    .bind(*at)
                    .bind(ERASED)
                    .execute(&mut *conn)
                    .await?;
                    scrubbed += DB::rows_affected(&emptied);
                }
            }
        }
        Ok(scrubbed)
    }

    /// Takes their phone numbers and external id out of the audiences of starts and shift
    /// offers (`phone:+1…,+1…`, as the operator typed it) and out of starts' variables; the
    /// rest of each list stays. Returns how many rows changed.
    ///
    /// Both tables hold a row per start or offer, not per caregiver, and no index could find a
    /// number inside a list: each is read through once per key, with `replace` as a portable
    /// "contains" (no LIKE wildcards to escape), and the exact match is made here.
    async fn erase_from_audiences(
        conn: &mut DB::Connection,
        phones: &[&str],
        external_id: &str,
    ) -> Result<u64> {
        let mut keys: Vec<&str> = phones.to_vec();
        keys.push(external_id);
        let mut edited = 0;
        for key in &keys {
            let starts: Vec<(i64, String, String)> = sqlx::query_as(
                "SELECT id, audience, vars FROM flow_starts \
                 WHERE replace(audience, $1, '') <> audience OR replace(vars, $1, '') <> vars",
            )
            .bind((*key).to_owned())
            .fetch_all(&mut *conn)
            .await?;
            for (start, audience, vars) in starts {
                let audience = audience_without(&audience, phones);
                let mut parsed: Value = parse_json("start vars", &vars)?;
                let vars =
                    vars_without(&mut parsed, &keys, phones, ERASED).then(|| to_json(&parsed));
                if audience.is_none() && vars.is_none() {
                    continue;
                }
                sqlx::query(
                    "UPDATE flow_starts SET audience = COALESCE($2, audience), \
                     vars = COALESCE($3, vars) WHERE id = $1",
                )
                .bind(start)
                .bind(audience)
                .bind(vars)
                .execute(&mut *conn)
                .await?;
                edited += 1;
            }
            let offers: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, audience FROM shift_offers WHERE replace(audience, $1, '') <> audience",
            )
            .bind((*key).to_owned())
            .fetch_all(&mut *conn)
            .await?;
            for (offer, audience) in offers {
                if let Some(audience) = audience_without(&audience, phones) {
                    sqlx::query("UPDATE shift_offers SET audience = $2 WHERE id = $1")
                        .bind(offer)
                        .bind(audience)
                        .execute(&mut *conn)
                        .await?;
                    edited += 1;
                }
            }
        }
        Ok(edited)
    }
}
