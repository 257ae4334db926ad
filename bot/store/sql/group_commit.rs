//! Group commit for inbound messages on SQLite: the inbound messages that arrive while one
//! transaction runs are handled together in the next, by one writer task, so that a burst of
//! webhooks costs a handful of statements and one commit instead of a dozen statements, a
//! commit and a fight for the write lock each.
//!
//! SQLite has one writer at a time. With a transaction per message, concurrent webhooks queue
//! on the lock through SQLite's busy handler, which sleeps for milliseconds at a time, and each
//! statement is a round trip to the connection's thread. Here one task takes every message
//! queued, opens one `BEGIN IMMEDIATE` transaction, reads all their snapshots with a few
//! statements (the addresses go in as one JSON array), has each caller decide on its own
//! snapshot, writes every plan's rows with a few more statements, and commits once.
//!
//! What a caller sees is what [`Store::handle_inbound`](crate::store::Store::handle_inbound)
//! promises: `Ok` only after the commit that holds its message; a duplicate `MessageSid` is
//! `Duplicate` (also only once whatever recorded it is committed); a failed decision records
//! nothing. If anything in a group fails (a write refused, the commit), the whole transaction
//! is rolled back and every message in it is handled again on its own, in a transaction of its
//! own, so one bad message can neither take another down with it nor leave half of itself.
//!
//! The caller decides, not the writer: `decide` borrows from the caller's stack and can only
//! run there. The writer sends each caller its snapshot and waits for the plan; a caller that
//! goes away (its HTTP request dropped) simply has no plan, and its message is left out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use serde_json::{Value, json};
use sqlx::{Pool, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{CaregiverDb, ConversationDb, Ctx, Filter, SqlStore, Ts, json, parse, to_json};
use crate::domain::Channel;
use crate::store::{
    ConsentStatus, ConvRef, Decide, Inbound, InboundOutcome, Plan, Result, Snapshot, StoreError,
    Write,
};

/// The most messages one transaction takes: enough to absorb a burst, few enough that the
/// first caller in a group does not wait long for the last.
const MAX_GROUP: usize = 512;

/// The handle `SqlStore<Sqlite>` keeps: a queue to the writer task. The task ends when the
/// last store clone holding this is dropped, and with it its clone of the pool.
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

/// One inbound message waiting for its group.
struct Job {
    inbound: Inbound,
    /// The snapshot to decide on, sent when the message's turn comes; dropped unsent for a
    /// duplicate.
    ask: oneshot::Sender<Ask>,
    /// The final word, sent after the commit (or the rollback).
    done: oneshot::Sender<Done>,
}

struct Ask {
    snapshot: Snapshot,
    answer: oneshot::Sender<(Snapshot, Plan)>,
}

#[derive(Debug, Clone, Copy)]
enum Done {
    Processed,
    Duplicate,
    /// The group failed and was rolled back: handle this message on its own.
    Alone,
}

impl GroupCommit {
    /// Starts the writer and the checkpointer on a thread of their own.
    pub(crate) fn start(pool: Pool<Sqlite>) -> GroupCommit {
        let (queue, jobs) = mpsc::unbounded_channel();
        let wal_is_long = Arc::new(AtomicBool::new(false));
        let checkpoints = checkpointer(pool.clone(), queue.downgrade(), wal_is_long.clone());
        let writes = writer(pool, jobs, wal_is_long);
        // The writer is what every webhook waits for: on a thread of its own it is never queued
        // behind the HTTP tasks it serves, each time one of its statements comes back.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        std::thread::Builder::new()
            .name("inbound-writer".into())
            .spawn(move || {
                runtime.spawn(checkpoints);
                runtime.block_on(writes);
            })
            .expect("the inbound writer thread starts");
        GroupCommit { queue }
    }

    /// Handles `inbound` in the next group. `None` means "not handled, nothing recorded: do it
    /// alone" (the group failed, or the writer is gone).
    pub(crate) async fn handle(
        &self,
        inbound: &Inbound,
        decide: &Decide<'_>,
    ) -> Option<Result<InboundOutcome>> {
        let (ask, asked) = oneshot::channel();
        let (done, finished) = oneshot::channel();
        let job = Job {
            inbound: inbound.clone(),
            ask,
            done,
        };
        if self.queue.send(job).is_err() {
            return None;
        }
        // Not asked means a duplicate, or a group that failed before this message's turn: the
        // final word says which.
        if let Ok(Ask { snapshot, answer }) = asked.await {
            match decide(&snapshot) {
                Ok(plan) => {
                    let _ = answer.send((snapshot, plan));
                }
                // Dropping `answer` leaves the message out of the group: nothing is recorded.
                Err(e) => return Some(Err(StoreError::Decide(e))),
            }
        }
        match finished.await {
            Ok(Done::Processed) => Some(Ok(InboundOutcome::Processed)),
            Ok(Done::Duplicate) => Some(Ok(InboundOutcome::Duplicate)),
            Ok(Done::Alone) => None,
            // The writer went away mid-group (its runtime shut down): whether the group was
            // committed is unknown, so answer as for any failure; the provider's retry then
            // finds the message recorded, or records it.
            Err(_) => Some(Err(StoreError::Database(sqlx::Error::WorkerCrashed))),
        }
    }
}

async fn writer(
    pool: Pool<Sqlite>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    wal_is_long: Arc<AtomicBool>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        run_group(&pool, std::mem::take(&mut group)).await;
        if wal_is_long.swap(false, Ordering::Relaxed) {
            // Between two groups no write transaction of ours is open, and the checkpointer
            // has copied all but the last few frames: this one finishes quickly, and the next
            // transaction starts the WAL file over instead of making it longer.
            checkpoint(&pool).await;
        }
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages) past which the writer is asked to finish a checkpoint itself.
const LONG_WAL: i64 = 4096;

/// Checkpoints the WAL in the background. SQLite's own automatic checkpoint (turned off in
/// `sqlite.rs`) runs inside whichever commit crosses 1,000 pages, which is nearly always the
/// group writer's, and stalls every message in that group for the tens of milliseconds the
/// copy and its fsyncs take. A passive checkpoint on another connection runs beside the writer
/// instead. Under a steady stream of commits it rarely catches the last frame, so the WAL would
/// only grow: past [`LONG_WAL`] frames the writer finishes the job between two groups.
async fn checkpointer(
    pool: Pool<Sqlite>,
    alive: mpsc::WeakUnboundedSender<Job>,
    wal_is_long: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.strong_count() == 0 {
            return;
        }
        if let Some((_, frames, _)) = checkpoint(&pool).await
            && frames > LONG_WAL
        {
            wal_is_long.store(true, Ordering::Relaxed);
        }
    }
}

/// A passive checkpoint: copies what it can without waiting for readers or writers. Returns
/// SQLite's (busy, frames in the WAL, frames copied).
async fn checkpoint(pool: &Pool<Sqlite>) -> Option<(i64, i64, i64)> {
    match sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await
    {
        Ok(result) => Some(result),
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed");
            None
        }
    }
}

/// Where a group's time went, for `RUST_LOG=carebot::store=debug`.
#[derive(Default)]
struct Spent {
    begin: Duration,
    read: Duration,
    decide: Duration,
    write: Duration,
    commit: Duration,
}

/// A message decided in this group, waiting for its rows to be written.
struct Decided {
    job: usize,
    snapshot: Snapshot,
    plan: Plan,
}

async fn run_group(pool: &Pool<Sqlite>, jobs: Vec<Job>) {
    let mut inbounds = Vec::with_capacity(jobs.len());
    let mut asks = Vec::with_capacity(jobs.len());
    let mut dones = Vec::with_capacity(jobs.len());
    for job in jobs {
        inbounds.push(job.inbound);
        asks.push(Some(job.ask));
        dones.push(job.done);
    }
    let mut outcomes: Vec<Option<Done>> = vec![None; inbounds.len()];
    let started = Instant::now();
    let mut spent = Spent::default();
    let result = async {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        spent.begin = started.elapsed();
        let mut rest: Vec<usize> = (0..inbounds.len()).collect();
        // Rounds of distinct addresses and message ids: a caregiver who wrote twice, or a
        // provider retry racing its original, is decided after the first one's rows are
        // written, on a snapshot that includes them.
        while !rest.is_empty() {
            let mut addresses = HashSet::new();
            let mut ids = HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) = rest.into_iter().partition(|&i| {
                let inbound = &inbounds[i];
                // Both inserts run: `&` does not short-circuit.
                addresses.insert(&inbound.address)
                    & ids.insert((inbound.address.channel, &inbound.external_id))
            });
            rest = later;
            run_round(
                &mut tx,
                &inbounds,
                &mut asks,
                &round,
                &mut outcomes,
                &mut spent,
            )
            .await?;
        }
        let committing = Instant::now();
        tx.commit().await?;
        spent.commit = committing.elapsed();
        Ok::<_, StoreError>(())
    }
    .await;
    tracing::debug!(
        messages = inbounds.len(),
        total_us = started.elapsed().as_micros() as u64,
        begin_us = spent.begin.as_micros() as u64,
        read_us = spent.read.as_micros() as u64,
        decide_us = spent.decide.as_micros() as u64,
        write_us = spent.write.as_micros() as u64,
        commit_us = spent.commit.as_micros() as u64,
        "inbound group"
    );
    match result {
        Ok(()) => {
            for (done, outcome) in dones.into_iter().zip(outcomes) {
                // No outcome: the caller's decision failed or it went away; it knows.
                if let Some(outcome) = outcome {
                    let _ = done.send(outcome);
                }
            }
        }
        Err(e) => {
            // Rolled back (dropping the transaction does it): everyone goes again, alone.
            tracing::warn!(error = %e, messages = dones.len(), "group commit failed; handling its messages one by one");
            for done in dones {
                let _ = done.send(Done::Alone);
            }
        }
    }
}

/// One round: messages with distinct addresses and ids, in the open transaction.
async fn run_round(
    conn: &mut SqliteConnection,
    inbounds: &[Inbound],
    asks: &mut [Option<oneshot::Sender<Ask>>],
    round: &[usize],
    outcomes: &mut [Option<Done>],
    spent: &mut Spent,
) -> Result<()> {
    let reading = Instant::now();
    // Duplicates (a provider retry of a message already recorded changes nothing) come back
    // as `None`.
    let snapshots = snapshots(conn, inbounds, round).await?;
    let mut fresh = Vec::with_capacity(round.len());
    let mut fresh_snapshots = Vec::with_capacity(round.len());
    for (&i, snapshot) in round.iter().zip(snapshots) {
        match snapshot {
            None => outcomes[i] = Some(Done::Duplicate),
            Some(snapshot) => {
                fresh.push(i);
                fresh_snapshots.push(snapshot);
            }
        }
    }
    if fresh.is_empty() {
        spent.read += reading.elapsed();
        return Ok(());
    }
    let snapshots = fresh_snapshots;
    spent.read += reading.elapsed();
    let deciding = Instant::now();
    let mut waiting = Vec::with_capacity(fresh.len());
    for (&i, snapshot) in fresh.iter().zip(snapshots) {
        let (answer, plan) = oneshot::channel();
        let ask = Ask { snapshot, answer };
        // A caller that went away cannot be asked; its message is left out.
        if let Some(sender) = asks[i].take()
            && sender.send(ask).is_ok()
        {
            waiting.push((i, plan));
        }
    }
    let mut decided = Vec::with_capacity(waiting.len());
    for (i, plan) in waiting {
        if let Ok((snapshot, plan)) = plan.await {
            decided.push(Decided {
                job: i,
                snapshot,
                plan,
            });
        }
    }
    spent.decide += deciding.elapsed();
    if decided.is_empty() {
        return Ok(());
    }
    let writing = Instant::now();
    write(conn, inbounds, &decided).await?;
    spent.write += writing.elapsed();
    for d in &decided {
        outcomes[d.job] = Some(Done::Processed);
    }
    Ok(())
}

/// Everything a snapshot needs, for every message of a round, in one statement (each
/// statement is a round trip to the connection's thread): whether the message is already
/// recorded, the address's consent, its caregiver with supervisor and groups, its active
/// conversation, and whether a stranger there already had today's reply. The messages go in
/// as one JSON array, so the statement text, and its prepared plan, is the same for any round.
const SNAPSHOTS: &str = concat!(
    "WITH m AS (SELECT key AS i, value ->> 0 AS channel, value ->> 1 AS address, ",
    "value ->> 2 AS external_id, value ->> 3 AS phone, value ->> 4 AS day, ",
    "value ->> 5 AS now FROM json_each($1)) ",
    "SELECT m.i, ",
    "EXISTS (SELECT 1 FROM inbound_messages r ",
    "WHERE r.channel = m.channel AND r.external_id = m.external_id) AS seen, ",
    "(SELECT status FROM subscriptions s ",
    "WHERE s.channel = m.channel AND s.address = m.address) AS consent, ",
    "EXISTS (SELECT 1 FROM stranger_replies r ",
    "WHERE r.channel = m.channel AND r.address = m.address AND r.day = m.day) ",
    "AS stranger_replied, ",
    // Whether the two lookups most messages do not need can be skipped: a supervisor's desk
    // (any supervisor with this phone, or linked to this chat, found by the links' primary
    // key: a superset of what `SqlStore::contact_at` finds) and the shift offers a caregiver
    // holds (the very condition of `SqlStore::held_shifts`). Each was a round trip per message.
    "(EXISTS (SELECT 1 FROM supervisors x WHERE x.phone = m.address) ",
    "OR EXISTS (SELECT 1 FROM supervisor_links x ",
    "WHERE x.channel = m.channel AND x.address = m.address)) AS contact, ",
    "EXISTS (SELECT 1 FROM shift_offer_recipients r JOIN shift_offers o ON o.id = r.offer_id ",
    "WHERE r.caregiver_id = c.id AND o.ends_at > m.now) AS holds_offers, ",
    "c.id, c.external_id, c.first_name, c.last_name, c.phone, c.timezone, ",
    "c.branch, c.consent_at, c.active, c.fields, c.tags, ",
    "(SELECT json_group_array(g.name) FROM caregiver_groups g WHERE g.caregiver_id = c.id) ",
    "AS groups, ",
    "s.id AS sup_id, s.external_id AS sup_external_id, s.name AS sup_name, ",
    "s.phone AS sup_phone, s.timezone AS sup_timezone, ",
    super::reach_columns!(),
    ", ",
    "v.id AS conv_id, v.caregiver_id AS conv_caregiver_id, v.channel AS conv_channel, ",
    "v.address AS conv_address, v.flow_id AS conv_flow_id, v.flow_rev AS conv_flow_rev, ",
    "v.status AS conv_status, v.state AS conv_state, v.wake_at AS conv_wake_at, ",
    "v.started_at AS conv_started_at ",
    "FROM m ",
    "LEFT JOIN caregivers c ON c.phone = m.phone ",
    "LEFT JOIN supervisors s ON s.external_id = c.supervisor_external_id ",
    "LEFT JOIN conversations v ",
    "ON v.channel = m.channel AND v.address = m.address AND v.status = 'active' ",
    "ORDER BY m.i",
);

/// A row of [`SNAPSHOTS`]: the caregiver and conversation columns are NULL when there is none.
#[derive(sqlx::FromRow)]
struct SnapshotDb {
    i: i64,
    seen: bool,
    consent: Option<String>,
    stranger_replied: bool,
    contact: bool,
    holds_offers: bool,
    id: Option<i64>,
    external_id: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    timezone: Option<String>,
    branch: Option<String>,
    consent_at: Option<chrono::NaiveDate>,
    active: Option<bool>,
    fields: Option<String>,
    tags: Option<String>,
    groups: Option<String>,
    sup_id: Option<i64>,
    sup_external_id: Option<String>,
    sup_name: Option<String>,
    sup_phone: Option<String>,
    sup_timezone: Option<String>,
    chosen_language: Option<String>,
    preferred_channel: Option<String>,
    last_channel: Option<String>,
    sms_consent: Option<String>,
    telegram_chat: Option<String>,
    telegram_consent: Option<String>,
    sup_telegram: Option<String>,
    conv_id: Option<i64>,
    conv_caregiver_id: Option<i64>,
    conv_channel: Option<String>,
    conv_address: Option<String>,
    conv_flow_id: Option<String>,
    conv_flow_rev: Option<i64>,
    conv_status: Option<String>,
    conv_state: Option<String>,
    conv_wake_at: Option<Ts>,
    conv_started_at: Option<Ts>,
}

impl SnapshotDb {
    fn caregiver(&mut self) -> Result<Option<crate::store::Caregiver>> {
        let Some(id) = self.id else {
            return Ok(None);
        };
        let missing = || StoreError::Corrupt(format!("caregiver {id}: a NOT NULL column is NULL"));
        let mut groups: Vec<String> =
            json("caregiver groups", self.groups.as_deref().unwrap_or("[]"))?;
        groups.sort();
        let row = CaregiverDb {
            id,
            external_id: self.external_id.take().ok_or_else(missing)?,
            first_name: self.first_name.take().ok_or_else(missing)?,
            last_name: self.last_name.take().ok_or_else(missing)?,
            phone: self.phone.take().ok_or_else(missing)?,
            timezone: self.timezone.take().ok_or_else(missing)?,
            branch: self.branch.take().ok_or_else(missing)?,
            consent_at: self.consent_at,
            active: self.active.ok_or_else(missing)?,
            fields: self.fields.take().ok_or_else(missing)?,
            tags: self.tags.take().ok_or_else(missing)?,
            sup_id: self.sup_id,
            sup_external_id: self.sup_external_id.take(),
            sup_name: self.sup_name.take(),
            sup_phone: self.sup_phone.take(),
            sup_timezone: self.sup_timezone.take(),
            chosen_language: self.chosen_language.take().ok_or_else(missing)?,
            preferred_channel: self.preferred_channel.take(),
            last_channel: self.last_channel.take(),
            sms_consent: self.sms_consent.take(),
            telegram_chat: self.telegram_chat.take(),
            telegram_consent: self.telegram_consent.take(),
            sup_telegram: self.sup_telegram.take(),
        };
        row.into_caregiver(groups).map(Some)
    }

    fn conversation(&mut self) -> Result<Option<crate::store::ConversationRow>> {
        let Some(id) = self.conv_id else {
            return Ok(None);
        };
        let missing =
            || StoreError::Corrupt(format!("conversation {id}: a NOT NULL column is NULL"));
        let row = ConversationDb {
            id,
            caregiver_id: self.conv_caregiver_id.ok_or_else(missing)?,
            channel: self.conv_channel.take().ok_or_else(missing)?,
            address: self.conv_address.take().ok_or_else(missing)?,
            flow_id: self.conv_flow_id.take().ok_or_else(missing)?,
            flow_rev: self.conv_flow_rev.ok_or_else(missing)?,
            status: self.conv_status.take().ok_or_else(missing)?,
            state: self.conv_state.take().ok_or_else(missing)?,
            wake_at: self.conv_wake_at,
            started_at: self.conv_started_at.ok_or_else(missing)?,
        };
        row.into_row().map(Some)
    }
}

/// The snapshot of each message in `round`, in that order, as [`SqlStore::snapshot`] reads it
/// one at a time; `None` for a message already recorded.
async fn snapshots(
    conn: &mut SqliteConnection,
    inbounds: &[Inbound],
    round: &[usize],
) -> Result<Vec<Option<Snapshot>>> {
    let messages = Value::Array(
        round
            .iter()
            .map(|&i| {
                let inbound = &inbounds[i];
                let a = &inbound.address;
                // Caregivers are found by phone number on SMS and the console, through links
                // elsewhere (below, one at a time, as outside a group).
                let phone = matches!(a.channel, Channel::Sms | Channel::Console)
                    .then_some(a.value.as_str());
                json!([
                    a.channel.as_str(),
                    a.value,
                    inbound.external_id,
                    phone,
                    inbound.received_at.date_naive().to_string(),
                    ts(inbound.received_at),
                ])
            })
            .collect(),
    );
    let rows: Vec<SnapshotDb> = sqlx::query_as(SNAPSHOTS)
        .bind(messages.to_string())
        .fetch_all(&mut *conn)
        .await?;
    if rows.len() != round.len() {
        return Err(StoreError::Corrupt(format!(
            "{} snapshot rows for {} messages",
            rows.len(),
            round.len()
        )));
    }
    let mut snapshots = Vec::with_capacity(round.len());
    for (k, (&i, mut row)) in round.iter().zip(rows).enumerate() {
        debug_assert_eq!(row.i, k as i64);
        if row.seen {
            snapshots.push(None);
            continue;
        }
        let address = &inbounds[i].address;
        let (caregiver, holds_offers) = match address.channel {
            Channel::Sms | Channel::Console => (row.caregiver()?, row.holds_offers),
            // Found through a link, so the statement could not tell: look.
            _ => (
                Store::load_caregiver(conn, Filter::address(address)).await?,
                true,
            ),
        };
        let consent = match &row.consent {
            Some(status) => parse("consent status", status)?,
            None => ConsentStatus::Unknown,
        };
        // The shift offers a YES or NO may answer: a second query, only for roster members.
        let shifts = match &caregiver {
            Some(c) if holds_offers => {
                Store::held_shifts(conn, c.id, Ts(inbounds[i].received_at)).await?
            }
            _ => Vec::new(),
        };
        // A supervisor's reply (ACK 14…) needs their desk: one lookup, a few more for them.
        let now = Ts(inbounds[i].received_at);
        let contact = if row.contact {
            Store::contact_at(conn, address).await?
        } else {
            None
        };
        let desk = match contact {
            Some(me) => Some(Store::desk(conn, me, now, super::DeskFor::Reply).await?),
            None => None,
        };
        // None on this address, but one on another channel (a survey sent on Telegram,
        // answered by SMS): the conversation is the caregiver's, as `SqlStore::snapshot` reads.
        let mut conversation = row.conversation()?;
        if conversation.is_none()
            && let Some(c) = &caregiver
        {
            let other: Option<ConversationDb> =
                sqlx::query_as(<Sqlite as super::Dialect>::ACTIVE_CONVERSATION_OF_CAREGIVER)
                    .bind(c.id)
                    .fetch_optional(&mut *conn)
                    .await?;
            conversation = other.map(ConversationDb::into_row).transpose()?;
        }
        snapshots.push(Some(Snapshot {
            address: address.clone(),
            consent,
            stranger_replied_today: caregiver.is_none() && row.stranger_replied,
            caregiver,
            conversation,
            shifts,
            desk,
        }));
    }
    Ok(snapshots)
}

type Store = SqlStore<Sqlite>;

/// SQLite's text for an instant, as [`Ts`] binds it.
fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Whether every write of `plan` can go into the grouped statements: answers, outbound
/// messages and one conversation update, none of them about a conversation the plan creates.
/// Anything else (consent, escalations, a new conversation...) is applied write by write, as
/// outside a group, in the same transaction.
fn groupable(plan: &Plan, snapshot: &Snapshot) -> bool {
    let mut updates = 0;
    plan.writes.iter().all(|w| match w {
        Write::Answer {
            conversation,
            anonymous,
            ..
        } => {
            // Anonymous answers keep a cohort and redact their inbound text: the one-by-one
            // path does that, so they take it.
            matches!(conversation, ConvRef::Existing(_))
                && !*anonymous
                && snapshot.caregiver.is_some()
        }
        Write::Outbound(o) => !matches!(o.conversation, Some(ConvRef::New)),
        Write::UpdateConversation { conversation, .. } => {
            updates += 1;
            matches!(conversation, ConvRef::Existing(_)) && updates == 1
        }
        _ => false,
    })
}

/// Writes every decided message: its inbound row, then its plan.
async fn write(
    conn: &mut SqliteConnection,
    inbounds: &[Inbound],
    decided: &[Decided],
) -> Result<()> {
    // The inbound rows, with the caregiver each belongs to (the snapshot already knows).
    let rows = Value::Array(
        decided
            .iter()
            .map(|d| {
                let inbound = &inbounds[d.job];
                json!([
                    inbound.address.channel.as_str(),
                    inbound.external_id,
                    inbound.address.value,
                    d.snapshot.caregiver.as_ref().map(|c| c.id),
                    inbound.text,
                    ts(inbound.received_at),
                ])
            })
            .collect(),
    );
    let inserted: Vec<(i64, String, String)> = sqlx::query_as(
        "INSERT INTO inbound_messages \
         (channel, external_id, address, caregiver_id, body, received_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
         FROM json_each($1) RETURNING id, channel, external_id",
    )
    .bind(rows.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let inbound_ids: HashMap<(String, String), i64> = inserted
        .into_iter()
        .map(|(id, channel, external_id)| ((channel, external_id), id))
        .collect();

    let mut answers = Vec::new();
    let mut outbound = Vec::new();
    let mut updates = Vec::new();
    for d in decided {
        let inbound = &inbounds[d.job];
        let now = Ts(inbound.received_at);
        if !groupable(&d.plan, &d.snapshot) {
            let key = (
                inbound.address.channel.as_str().to_owned(),
                inbound.external_id.clone(),
            );
            let ctx = Ctx {
                snapshot: &d.snapshot,
                now,
                inbound_id: inbound_ids.get(&key).copied(),
            };
            Store::apply(conn, &ctx, &d.plan).await?;
            continue;
        }
        let caregiver_id = d.snapshot.caregiver.as_ref().map(|c| c.id);
        for w in &d.plan.writes {
            match w {
                Write::Answer {
                    conversation: ConvRef::Existing(conversation),
                    flow_id,
                    step,
                    key,
                    value,
                    raw,
                    anonymous,
                } => {
                    // An anonymous answer keeps neither the caregiver nor the conversation.
                    let (conversation, caregiver) = if *anonymous {
                        (None, None)
                    } else {
                        (Some(*conversation), caregiver_id)
                    };
                    answers.push(json!([
                        conversation,
                        caregiver,
                        flow_id,
                        step,
                        key,
                        to_json(value),
                        raw,
                        *anonymous,
                        ts(inbound.received_at),
                    ]));
                }
                Write::Outbound(o) => {
                    let conversation = match o.conversation {
                        Some(ConvRef::Existing(id)) => Some(id),
                        _ => None,
                    };
                    outbound.push(json!([
                        o.address.channel.as_str(),
                        o.address.value,
                        o.caregiver_id,
                        conversation,
                        o.kind.as_str(),
                        o.body,
                        o.encoding,
                        o.segments,
                        to_json(&o.buttons),
                        ts(o.not_before),
                        ts(inbound.received_at),
                    ]));
                }
                Write::UpdateConversation {
                    conversation: ConvRef::Existing(id),
                    status,
                    state,
                    wake_at,
                } => {
                    let ended_at = (*status != crate::store::ConversationStatus::Active)
                        .then(|| ts(inbound.received_at));
                    updates.push(json!([
                        id,
                        status.as_str(),
                        to_json(state),
                        wake_at.map(ts),
                        ts(inbound.received_at),
                        ended_at,
                    ]));
                }
                _ => unreachable!("groupable() admits nothing else"),
            }
        }
    }

    if !answers.is_empty() {
        sqlx::query(
            "INSERT INTO answers (conversation_id, caregiver_id, flow_id, step, key, value, raw, \
             anonymous, answered_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
             value ->> 6, value ->> 7, value ->> 8 FROM json_each($1)",
        )
        .bind(Value::Array(answers).to_string())
        .execute(&mut *conn)
        .await?;
    }
    if !outbound.is_empty() {
        sqlx::query(
            "INSERT INTO outbound_messages (channel, address, caregiver_id, conversation_id, \
             kind, body, encoding, segments, buttons, status, attempts, not_before, created_at, \
             updated_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
             value ->> 6, value ->> 7, value ->> 8, 'queued', 0, value ->> 9, value ->> 10, \
             value ->> 10 FROM json_each($1)",
        )
        .bind(Value::Array(outbound).to_string())
        .execute(&mut *conn)
        .await?;
    }
    if !updates.is_empty() {
        let n = updates.len() as u64;
        let updated = sqlx::query(
            "UPDATE conversations SET status = j.value ->> 1, state = j.value ->> 2, \
             wake_at = j.value ->> 3, updated_at = j.value ->> 4, ended_at = j.value ->> 5 \
             FROM json_each($1) AS j WHERE conversations.id = j.value ->> 0",
        )
        .bind(Value::Array(updates).to_string())
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() != n {
            // One of them names a conversation that does not exist: the group goes again one
            // message at a time, where that plan fails alone.
            return Err(StoreError::InvalidPlan(format!(
                "UpdateConversation: {} of {n} conversations found",
                updated.rows_affected()
            )));
        }
    }
    Ok(())
}
