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

use chrono::SecondsFormat;
use serde_json::{Value, json};
use sqlx::{Pool, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{CaregiverDb, ConversationDb, Ctx, Filter, SqlStore, Ts, parse, to_json};
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
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start(pool: Pool<Sqlite>) -> GroupCommit {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(writer(pool, jobs));
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

async fn writer(pool: Pool<Sqlite>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        run_group(&pool, std::mem::take(&mut group)).await;
    }
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
    let result = async {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
            run_round(&mut tx, &inbounds, &mut asks, &round, &mut outcomes).await?;
        }
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }
    .await;
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
) -> Result<()> {
    // Duplicates first: a provider retry of a message already recorded changes nothing.
    let keys = Value::Array(
        round
            .iter()
            .map(|&i| {
                let inbound = &inbounds[i];
                json!([inbound.address.channel.as_str(), inbound.external_id])
            })
            .collect(),
    );
    let seen: Vec<(String, String)> = sqlx::query_as(
        "SELECT channel, external_id FROM inbound_messages \
         WHERE (channel, external_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each($1))",
    )
    .bind(keys.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let seen: HashSet<(String, String)> = seen.into_iter().collect();
    let mut fresh = Vec::with_capacity(round.len());
    for &i in round {
        let inbound = &inbounds[i];
        let key = (
            inbound.address.channel.as_str().to_owned(),
            inbound.external_id.clone(),
        );
        if seen.contains(&key) {
            outcomes[i] = Some(Done::Duplicate);
        } else {
            fresh.push(i);
        }
    }
    if fresh.is_empty() {
        return Ok(());
    }

    // Snapshots, read together, then decided by each caller on its own task.
    let snapshots = snapshots(conn, inbounds, &fresh).await?;
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
    if decided.is_empty() {
        return Ok(());
    }
    write(conn, inbounds, &decided).await?;
    for d in &decided {
        outcomes[d.job] = Some(Done::Processed);
    }
    Ok(())
}

/// The snapshot of each message in `fresh`, in that order, as
/// [`SqlStore::snapshot`](super::SqlStore) reads it one at a time.
async fn snapshots(
    conn: &mut SqliteConnection,
    inbounds: &[Inbound],
    fresh: &[usize],
) -> Result<Vec<Snapshot>> {
    let pairs = Value::Array(
        fresh
            .iter()
            .map(|&i| {
                let a = &inbounds[i].address;
                json!([a.channel.as_str(), a.value])
            })
            .collect(),
    );
    let pairs = pairs.to_string();

    let consents: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT channel, address, status FROM subscriptions \
         WHERE (channel, address) IN (SELECT value ->> 0, value ->> 1 FROM json_each($1))",
    )
    .bind(pairs.clone())
    .fetch_all(&mut *conn)
    .await?;
    let mut consent: HashMap<(String, String), ConsentStatus> = HashMap::new();
    for (channel, address, status) in consents {
        consent.insert((channel, address), parse("consent status", &status)?);
    }

    let conversations: Vec<ConversationDb> = sqlx::query_as(conversation_sql!(
        "(channel, address) IN (SELECT value ->> 0, value ->> 1 FROM json_each($1)) \
         AND status = 'active'",
        ""
    ))
    .bind(pairs)
    .fetch_all(&mut *conn)
    .await?;
    let mut conversation = HashMap::new();
    for row in conversations {
        let row = row.into_row()?;
        conversation.insert((row.channel, row.address.clone()), row);
    }

    // Caregivers by phone number (SMS and the console); other channels go through links, one
    // address at a time, as they do outside a group.
    let phones: Vec<&str> = fresh
        .iter()
        .map(|&i| &inbounds[i].address)
        .filter(|a| matches!(a.channel, Channel::Sms | Channel::Console))
        .map(|a| a.value.as_str())
        .collect();
    let mut by_phone = HashMap::new();
    if !phones.is_empty() {
        let phones = serde_json::to_string(&phones).expect("strings serialize");
        let (caregivers_sql, groups_sql) =
            caregivers_where!("c.phone IN (SELECT value FROM json_each($1))");
        let rows: Vec<CaregiverDb> = sqlx::query_as(caregivers_sql)
            .bind(phones.clone())
            .fetch_all(&mut *conn)
            .await?;
        if !rows.is_empty() {
            let memberships: Vec<(i64, String)> = sqlx::query_as(groups_sql)
                .bind(phones)
                .fetch_all(&mut *conn)
                .await?;
            let mut groups: HashMap<i64, Vec<String>> = HashMap::new();
            for (caregiver_id, name) in memberships {
                groups.entry(caregiver_id).or_default().push(name);
            }
            for row in rows {
                let mine = groups.remove(&row.id).unwrap_or_default();
                let caregiver = row.into_caregiver(mine)?;
                by_phone.insert(caregiver.phone.clone(), caregiver);
            }
        }
    }

    let mut snapshots = Vec::with_capacity(fresh.len());
    for &i in fresh {
        let inbound = &inbounds[i];
        let address = &inbound.address;
        let caregiver = match address.channel {
            Channel::Sms | Channel::Console => by_phone.remove(&address.value),
            _ => Store::load_caregiver(conn, Filter::address(address)).await?,
        };
        let stranger_replied_today = if caregiver.is_none() {
            Store::stranger_replied(conn, address, inbound.received_at.date_naive()).await?
        } else {
            false
        };
        let key = (address.channel.as_str().to_owned(), address.value.clone());
        snapshots.push(Snapshot {
            address: address.clone(),
            consent: consent.get(&key).copied().unwrap_or(ConsentStatus::Unknown),
            caregiver,
            conversation: conversation.remove(&(address.channel, address.value.clone())),
            stranger_replied_today,
        });
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
            matches!(conversation, ConvRef::Existing(_))
                && (*anonymous || snapshot.caregiver.is_some())
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
