//! Group commit for inbound messages on SQLite: the inbound messages that arrive while one
//! transaction runs are handled together in the next, by one writer thread, so that a burst of
//! webhooks shares one transaction and one commit instead of fighting for the write lock.
//!
//! SQLite has one writer at a time. With a transaction per message, concurrent webhooks queue
//! on the lock through the busy handler, and each statement is a round trip to a pool
//! connection's thread. Here one thread, with a connection of its own that it drives directly
//! (prepared statements, no hop between threads), takes every message queued, opens one
//! `BEGIN IMMEDIATE` transaction, reads each message's snapshot row with one statement and hands
//! it to its caller, writes each message's rows as they come back, and commits once. The
//! callers, on the runtime's threads, turn the row into a snapshot, decide, and encode their
//! plan's rows while the writer reads and writes the others: the writer, which every message
//! waits for, runs SQL and little else.
//!
//! What a caller sees is what [`Store::handle_inbound`](crate::store::Store::handle_inbound)
//! promises: `Ok` only after the commit that holds its message; a duplicate `MessageSid` is
//! `Duplicate` (also only once whatever recorded it is committed); a failed decision records
//! nothing. The group does the common case only: an SMS (or console) message answering a
//! conversation on its own address, whose plan stores answers, queues messages and updates that
//! conversation. Anything else (a supervisor's reply, a caregiver holding shift offers, a
//! consent keyword, an escalation, a message on Telegram) is answered "go alone" and takes the
//! general path, one message in one transaction, after the group's commit; so does every later
//! message of the same address in that group. The writer begins its next group only once those
//! are done (see [`AloneGate`]), so they are not starved of the lock and a caregiver's later
//! message does not overtake them. If anything in a group fails (a write refused, the commit),
//! the whole transaction is rolled back and every message in it goes alone, so one bad message
//! can neither take another down with it nor leave half of itself.
//!
//! While the callers of a group decide, the writer reads the messages that came in meanwhile,
//! when they touch none of the group's addresses, so that it is not idle (see
//! `Group::take_more`).
//!
//! The caller decides, not the writer: `decide` borrows from the caller's stack and can only
//! run there. A caller that goes away (its HTTP request dropped) sends no rows, and its message
//! is left out.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::encode::{AnswerInsert, ConversationUpdate, OutboundInsert, sqlite_text};
use super::{CaregiverDb, ConversationDb, Ts, json, parse};
use crate::domain::phone::masked_error;
use crate::domain::{Address, Channel};
use crate::model::{ConsentStatus, ConvRef, Inbound, InboundOutcome, Plan, Snapshot, Write};
use crate::store::{Decide, Result, StoreError};

/// The most messages one transaction takes: enough to absorb a burst, few enough that the
/// first caller in a group does not wait long for the last.
const MAX_GROUP: usize = 512;

/// The handle `SqlStore<Sqlite>` keeps: a queue to the writer thread. The thread ends when the
/// last store clone holding this is dropped, and the checkpointer with it.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
    alone: Arc<AloneGate>,
}

/// The messages a group sent alone that are still on the general path. The writer does not
/// begin its next group until they are done (or [`ALONE_WAIT`] has passed): their transactions
/// need the write lock too, and a writer that took it again at once, group after group, would
/// starve them (a burst of YES to a shift offer, every one of which goes alone, took minutes).
/// It also keeps a later message of the same caregiver from overtaking one that went alone.
#[derive(Default)]
struct AloneGate {
    running: Mutex<usize>,
    finished: Condvar,
}

/// The longest the writer waits for messages gone alone before it takes the lock again.
const ALONE_WAIT: Duration = Duration::from_secs(1);

impl AloneGate {
    fn add(&self) {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    fn done(&self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        if *running == 0 {
            self.finished.notify_all();
        }
    }

    fn wait(&self) {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut running, timeout) = self
            .finished
            .wait_timeout_while(running, ALONE_WAIT, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() {
            tracing::warn!(
                running = *running,
                "messages gone alone still running after {ALONE_WAIT:?}; the group writer goes on"
            );
            // Their guards will still count down; start from nothing rather than wait again.
            *running = 0;
        }
    }
}

/// A message's place on the general path, held until its transaction is over.
pub(crate) struct Alone {
    gate: Arc<AloneGate>,
}

impl Drop for Alone {
    fn drop(&mut self) {
        self.gate.done();
    }
}

/// What became of a message in a group.
pub(crate) enum Handled {
    /// Decided, and committed or refused: the final word.
    Done(Result<InboundOutcome>),
    /// Not handled, nothing recorded: handle it on the general path while holding this (none if
    /// the writer is gone, or the message never reached it).
    Alone(Option<Alone>),
}

/// One inbound message waiting for its group.
struct Job {
    inbound: Inbound,
    /// The row to decide on, sent when the message's turn comes; dropped unsent for a
    /// duplicate or a message that goes alone.
    ask: oneshot::Sender<Ask>,
    /// The final word, sent after the commit (or the rollback).
    done: oneshot::Sender<Done>,
}

/// A message's turn: its row of [`SNAPSHOTS`], for the caller to make a snapshot of and
/// decide on. (The caller, not the writer, turns the row into a snapshot and the plan into
/// rows: the writer is the one thing every message waits for, so it does SQL and nothing else.)
struct Ask {
    row: Box<SnapshotDb>,
    answer: Answer,
}

/// A message's way back to the writer with its rows, in the order they are ready. Dropped
/// without them (the decision failed, or the caller went away), it says so: the writer counts
/// on one word per message asked.
struct Answer {
    job: usize,
    to: Option<mpsc::Sender<Answered>>,
}

/// What a caller decided, for the message at that position; none: leave the message out.
type Answered = (usize, Option<Reply>);

// Large because `Rows` is carried by value: it moves once, from the caller to the writer, and
// boxing it would allocate once more per message.
#[allow(clippy::large_enum_variant)]
enum Reply {
    /// The rows of a plan the grouped statements can write.
    Rows(Rows),
    /// A plan they cannot: the message goes alone.
    Alone,
}

impl Answer {
    fn send(mut self, reply: Reply) {
        if let Some(to) = self.to.take() {
            let _ = to.send((self.job, Some(reply)));
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            let _ = to.send((self.job, None));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Done {
    Processed,
    Duplicate,
    /// Not handled here, nothing recorded: handle this message on its own. Either the group
    /// failed and was rolled back, or the message needs more than the grouped statements do
    /// (see [`SnapshotDb::needs_more`] and [`groupable`]).
    Alone,
}

/// What can go wrong inside a group. Whatever it is, the group is rolled back and its
/// messages go again one by one, where the error, if it is theirs, is reported properly.
#[derive(Debug, thiserror::Error)]
enum GroupError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

type GroupResult<T> = std::result::Result<T, GroupError>;

impl GroupCommit {
    /// Opens the writer's and the checkpointer's connections to the database file at `path`
    /// (already in WAL mode: the pool set it) and starts their threads.
    ///
    /// The writer drives its connection directly, statement after statement on its own
    /// thread. Through sqlx each statement was a round trip to the connection's worker thread
    /// and each row a message back: two thread wake-ups a statement, seven statements a group,
    /// and the writer is the one thing every webhook waits for.
    pub(crate) fn start(path: &Path) -> Result<GroupCommit> {
        let connect = |path| {
            open(path).map_err(|e| {
                StoreError::Database(sqlx::Error::Configuration(
                    format!("opening {} for the inbound writer: {e}", path.display()).into(),
                ))
            })
        };
        let writer_conn = connect(path)?;
        let checkpointer_conn = connect(path)?;
        let (queue, jobs) = mpsc::channel();
        let alone = Arc::new(AloneGate::default());
        let wal_is_long = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        {
            let wal_is_long = wal_is_long.clone();
            let stopped = stopped.clone();
            let alone = alone.clone();
            std::thread::Builder::new()
                .name("inbound-writer".into())
                .spawn(move || {
                    writer(&writer_conn, jobs, &alone, &wal_is_long);
                    stopped.store(true, Ordering::Relaxed);
                })
                .map_err(StoreError::Sink)?;
        }
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || checkpointer(&checkpointer_conn, &stopped, &wal_is_long))
            .map_err(StoreError::Sink)?;
        Ok(GroupCommit { queue, alone })
    }

    /// Handles `inbound` in the next group, or says to handle it alone (the group failed, the
    /// message needs the general path, or the writer is gone).
    pub(crate) async fn handle(&self, inbound: &Inbound, decide: &Decide<'_>) -> Handled {
        // Elsewhere the caregiver is found through a link: the general path reads it.
        if !matches!(inbound.address.channel, Channel::Sms | Channel::Console) {
            return Handled::Alone(None);
        }
        let (ask, asked) = oneshot::channel();
        let (done, finished) = oneshot::channel();
        let job = Job {
            inbound: inbound.clone(),
            ask,
            done,
        };
        if self.queue.send(job).is_err() {
            return Handled::Alone(None);
        }
        // Not asked means a duplicate, a message that goes alone, or a group that failed before
        // this message's turn: the final word says which. Dropping `answer` without a reply
        // leaves the message out of the group: nothing is recorded.
        if let Ok(Ask { row, answer }) = asked.await {
            let snapshot = match row.into_snapshot(&inbound.address) {
                Ok(snapshot) => snapshot,
                Err(e) => return Handled::Done(Err(e)),
            };
            match decide(&snapshot) {
                Ok(plan) if groupable(&plan, &snapshot) => {
                    answer.send(Reply::Rows(Rows::new(inbound, &snapshot, plan)));
                }
                Ok(_) => answer.send(Reply::Alone),
                Err(e) => return Handled::Done(Err(StoreError::Decide(e))),
            }
        }
        match finished.await {
            Ok(Done::Processed) => Handled::Done(Ok(InboundOutcome::Processed)),
            Ok(Done::Duplicate) => Handled::Done(Ok(InboundOutcome::Duplicate)),
            // The writer counted this message in before it said so.
            Ok(Done::Alone) => Handled::Alone(Some(Alone {
                gate: self.alone.clone(),
            })),
            // The writer went away mid-group (it panicked): whether the group was committed is
            // unknown, so answer as for any failure; the provider's retry then finds the
            // message recorded, or records it.
            Err(_) => Handled::Done(Err(StoreError::Database(sqlx::Error::WorkerCrashed))),
        }
    }
}

/// A connection as the pool's are set up (`sqlite.rs`), for a thread of its own, and with the
/// database file mapped into memory: a page read is then a memory access instead of a system
/// call and a copy, which was about a fifth of the writer's time on a 100,000-caregiver roster.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA mmap_size = 1073741824; PRAGMA secure_delete = FAST;",
    )?;
    conn.busy_handler(Some(super::super::sqlite::keep_waiting))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn writer(
    conn: &Connection,
    jobs: mpsc::Receiver<Job>,
    alone: &AloneGate,
    wal_is_long: &AtomicBool,
) {
    // Messages a group could not take (see `Group::take_more`): first in the next one.
    let mut carried = Vec::new();
    loop {
        let mut group = Group::new();
        for job in carried.drain(..) {
            group.push(job);
        }
        if group.is_empty() {
            match jobs.recv() {
                Ok(job) => group.push(job),
                // Every store is gone, and with it every caller.
                Err(_) => return,
            }
        }
        while group.len() < MAX_GROUP
            && let Ok(job) = jobs.try_recv()
        {
            group.push(job);
        }
        alone.wait();
        group.run(conn, &jobs, &mut carried, alone);
        if wal_is_long.swap(false, Ordering::Relaxed) {
            // Between two groups no write transaction of ours is open, and the checkpointer
            // has copied all but the last few frames: this one finishes quickly, and the next
            // transaction starts the WAL file over instead of making it longer.
            let started = Instant::now();
            let result = checkpoint(conn);
            tracing::debug!(
                took_us = started.elapsed().as_micros() as u64,
                ?result,
                "WAL checkpoint between groups"
            );
        }
    }
}

/// How often the WAL is copied back into the database file while it grows, and at least how
/// often when it does not.
const CHECKPOINT_BUSY: Duration = Duration::from_millis(5);
const CHECKPOINT_IDLE: Duration = Duration::from_millis(250);
/// WAL frames (pages) past which the writer is asked to finish a checkpoint itself.
const LONG_WAL: i64 = 512;

/// Checkpoints the WAL in the background. SQLite's own automatic checkpoint (turned off in
/// `sqlite.rs`) runs inside whichever commit crosses 1,000 pages, which is nearly always the
/// group writer's, and stalls every message in that group for the tens of milliseconds the
/// copy and its fsyncs take. A passive checkpoint on another connection runs beside the writer
/// instead. Under a steady stream of commits it rarely catches the last frame, so the WAL would
/// only grow: past [`LONG_WAL`] frames the writer finishes the job between two groups.
///
/// Small and often, because of the disk: a checkpoint fsyncs the WAL and the database file,
/// and while that writeback runs the writer's next appends to the WAL wait on it (seen in the
/// writer's off-CPU stacks: `ext4_block_write_begin`, `fsync`). The more a pass has to write
/// back, the longer the writer stalls. Measured at half load on the 2-core machine, same
/// session: a pass every 250 ms gave a p99 of 26–51 ms, every 25 ms 10.6 ms, every 5 ms
/// 6.7–8.2 ms; with the database on tmpfs it is 3.7 ms. When the WAL stops growing
/// this backs off to [`CHECKPOINT_IDLE`], so an idle server does not wake 200 times a second.
fn checkpointer(conn: &Connection, stopped: &AtomicBool, wal_is_long: &AtomicBool) {
    let mut pause = CHECKPOINT_BUSY;
    let mut frames_before = 0;
    loop {
        std::thread::sleep(pause);
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        let Some((_, frames, _)) = checkpoint(conn) else {
            pause = CHECKPOINT_IDLE;
            continue;
        };
        if frames > LONG_WAL {
            wal_is_long.store(true, Ordering::Relaxed);
        }
        // The same WAL as last time: nothing was committed since.
        pause = if frames == frames_before {
            (pause * 2).min(CHECKPOINT_IDLE)
        } else {
            CHECKPOINT_BUSY
        };
        frames_before = frames;
    }
}

/// A passive checkpoint: copies what it can without waiting for readers or writers. Returns
/// SQLite's (busy, frames in the WAL, frames copied).
fn checkpoint(conn: &Connection) -> Option<(i64, i64, i64)> {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    }) {
        Ok(result) => Some(result),
        Err(e) => {
            tracing::warn!(error = %masked_error(&e), "WAL checkpoint failed");
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
    /// Messages taken in while the first round's callers decided.
    more: usize,
}

/// The addresses and message ids of some of a group's messages.
#[derive(Default)]
struct Keys {
    addresses: HashSet<Address>,
    ids: HashSet<(Channel, String)>,
}

impl Keys {
    fn add(&mut self, inbound: &Inbound) {
        self.addresses.insert(inbound.address.clone());
        self.ids
            .insert((inbound.address.channel, inbound.external_id.clone()));
    }

    fn hold(&self, inbound: &Inbound) -> bool {
        // `Group::alone` is nearly always empty: then no key is built for the lookup.
        !self.addresses.is_empty()
            && (self.addresses.contains(&inbound.address)
                || self
                    .ids
                    .contains(&(inbound.address.channel, inbound.external_id.clone())))
    }
}

/// The messages of one transaction, by position.
struct Group {
    inbounds: Vec<Inbound>,
    asks: Vec<Option<oneshot::Sender<Ask>>>,
    dones: Vec<oneshot::Sender<Done>>,
    /// What each caller is told after the commit; none: its decision failed or it went away.
    outcomes: Vec<Option<Done>>,
    /// The messages that go alone. A later message of the same address (or a retry) in the
    /// same group goes alone too, after them, instead of overtaking them in the group.
    alone: Keys,
    /// The plans, as the callers decide them, and how many are still to come.
    answers: (mpsc::Sender<Answered>, mpsc::Receiver<Answered>),
    deciding: usize,
    spent: Spent,
}

impl Group {
    fn new() -> Group {
        Group {
            inbounds: Vec::new(),
            asks: Vec::new(),
            dones: Vec::new(),
            outcomes: Vec::new(),
            alone: Keys::default(),
            answers: mpsc::channel(),
            deciding: 0,
            spent: Spent::default(),
        }
    }

    fn push(&mut self, job: Job) {
        self.inbounds.push(job.inbound);
        self.asks.push(Some(job.ask));
        self.dones.push(job.done);
        self.outcomes.push(None);
    }

    fn len(&self) -> usize {
        self.inbounds.len()
    }

    fn is_empty(&self) -> bool {
        self.inbounds.is_empty()
    }

    /// Runs the group in one transaction and tells every caller how it went.
    fn run(
        mut self,
        conn: &Connection,
        jobs: &mpsc::Receiver<Job>,
        carried: &mut Vec<Job>,
        alone: &AloneGate,
    ) {
        let started = Instant::now();
        let result = self.transaction(conn, jobs, carried);
        let s = &self.spent;
        tracing::debug!(
            messages = self.len(),
            total_us = started.elapsed().as_micros() as u64,
            begin_us = s.begin.as_micros() as u64,
            read_us = s.read.as_micros() as u64,
            decide_us = s.decide.as_micros() as u64,
            write_us = s.write.as_micros() as u64,
            commit_us = s.commit.as_micros() as u64,
            taken_while_deciding = s.more,
            "inbound group"
        );
        match result {
            Ok(()) => {
                for (done, outcome) in self.dones.into_iter().zip(self.outcomes) {
                    // No outcome: the caller's decision failed or it went away; it knows.
                    if let Some(outcome) = outcome {
                        send(done, outcome, alone);
                    }
                }
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    // A failed COMMIT, or a statement that failed mid-group: undo it all.
                    if let Err(e) = conn.execute_batch("ROLLBACK") {
                        tracing::error!(error = %masked_error(&e), "rolling back a failed group failed");
                    }
                }
                tracing::warn!(error = %masked_error(&e), messages = self.dones.len(), "group commit failed; handling its messages one by one");
                for done in self.dones {
                    send(done, Done::Alone, alone);
                }
            }
        }
    }

    fn transaction(
        &mut self,
        conn: &Connection,
        jobs: &mpsc::Receiver<Job>,
        carried: &mut Vec<Job>,
    ) -> GroupResult<()> {
        let started = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        self.spent.begin = started.elapsed();
        let mut rest: Vec<usize> = (0..self.len()).collect();
        let mut first = true;
        // Rounds of distinct addresses and message ids: a caregiver who wrote twice, or a
        // provider retry racing its original, is decided after the first one's rows are
        // written, on a snapshot that includes them.
        while !rest.is_empty() {
            let mut keys = Keys::default();
            let (round, later): (Vec<usize>, Vec<usize>) = rest.into_iter().partition(|&i| {
                let inbound = &self.inbounds[i];
                let clear = !keys.hold(inbound);
                keys.add(inbound);
                clear
            });
            rest = later;
            self.read_and_ask(conn, &round)?;
            // While the first round's callers decide, this thread would only wait: it reads
            // the messages that came in meanwhile instead, for them to decide next.
            if first {
                first = false;
                let more = self.take_more(jobs, carried);
                self.spent.more = more.len();
                self.read_and_ask(conn, &more)?;
            }
            // Every plan of the round is written before the next round reads.
            while self.deciding > 0 {
                let waiting = Instant::now();
                let answered = self.answers.1.recv();
                self.spent.decide += waiting.elapsed();
                match answered {
                    Ok(answered) => self.write(conn, answered)?,
                    // Cannot happen: the group holds a sender.
                    Err(_) => break,
                }
            }
        }
        let committing = Instant::now();
        conn.execute_batch("COMMIT")?;
        self.spent.commit = committing.elapsed();
        Ok(())
    }

    /// Takes into this group, as one more round, the messages queued since it began that
    /// touch none of its addresses or message ids: their snapshots cannot depend on what this
    /// group writes for the others (a grouped plan writes only rows of its own address and
    /// message), so they can be read before those rows are written. The rest wait for the next
    /// group, in their order.
    fn take_more(&mut self, jobs: &mpsc::Receiver<Job>, carried: &mut Vec<Job>) -> Vec<usize> {
        let mut keys = Keys::default();
        for inbound in &self.inbounds {
            keys.add(inbound);
        }
        let mut more = Vec::new();
        while self.len() < MAX_GROUP
            && let Ok(job) = jobs.try_recv()
        {
            // Its keys either way: a later message of the same address must not pass it.
            let clear = !keys.hold(&job.inbound);
            keys.add(&job.inbound);
            if clear {
                more.push(self.len());
                self.push(job);
            } else {
                carried.push(job);
            }
        }
        more
    }

    /// Reads the snapshots of `round` and sends each caller its own to decide on, as soon as
    /// it is read; writes the plans that are back meanwhile.
    fn read_and_ask(&mut self, conn: &Connection, round: &[usize]) -> GroupResult<()> {
        for &i in round {
            if self.alone.hold(&self.inbounds[i]) {
                self.outcomes[i] = Some(Done::Alone);
                continue;
            }
            let reading = Instant::now();
            let read = snapshot(conn, &self.inbounds[i])?;
            self.spent.read += reading.elapsed();
            match read {
                Read::Seen => self.outcomes[i] = Some(Done::Duplicate),
                Read::NeedsMore => {
                    self.outcomes[i] = Some(Done::Alone);
                    self.alone.add(&self.inbounds[i]);
                }
                Read::Row(row) => {
                    let answer = Answer {
                        job: i,
                        to: Some(self.answers.0.clone()),
                    };
                    // A caller that went away cannot be asked (the answer, dropped, says so).
                    if let Some(sender) = self.asks[i].take() {
                        self.deciding += 1;
                        let _ = sender.send(Ask { row, answer });
                    }
                }
            }
            while let Ok(answered) = self.answers.1.try_recv() {
                self.write(conn, answered)?;
            }
        }
        Ok(())
    }

    /// Writes a message's rows as they come back; a message whose plan the grouped
    /// statements cannot write goes alone.
    fn write(&mut self, conn: &Connection, (i, reply): Answered) -> GroupResult<()> {
        self.deciding -= 1;
        match reply {
            None => {}
            Some(Reply::Alone) => {
                self.outcomes[i] = Some(Done::Alone);
                self.alone.add(&self.inbounds[i]);
            }
            Some(Reply::Rows(rows)) => {
                let writing = Instant::now();
                write(conn, &self.inbounds[i], &rows)?;
                self.spent.write += writing.elapsed();
                self.outcomes[i] = Some(Done::Processed);
            }
        }
        Ok(())
    }
}

/// Tells a caller how its message went; one sent alone is counted in first (see [`AloneGate`]).
fn send(done: oneshot::Sender<Done>, outcome: Done, alone: &AloneGate) {
    if matches!(outcome, Done::Alone) {
        alone.add();
        if done.send(outcome).is_err() {
            // The caller went away: it will not run.
            alone.done();
        }
    } else {
        let _ = done.send(outcome);
    }
}

/// Everything a message's snapshot needs, in one statement: whether the message is already
/// recorded, the address's consent, its caregiver with supervisor and groups, its active
/// conversation, whether a stranger there already had today's reply, and whether the message
/// needs what this statement does not read (see [`SnapshotDb::needs_more`]).
const SNAPSHOTS: &str = concat!(
    "WITH m AS (SELECT ?1 AS channel, ?2 AS address, ?3 AS external_id, ?2 AS phone, ",
    "?4 AS day, ?5 AS now) ",
    "SELECT ",
    "EXISTS (SELECT 1 FROM inbound_messages r ",
    "WHERE r.channel = m.channel AND r.external_id = m.external_id) AS seen, ",
    "(SELECT status FROM subscriptions s ",
    "WHERE s.channel = m.channel AND s.address = m.address) AS consent, ",
    // Only a stranger's snapshot says whether they had the reply for strangers today.
    "CASE WHEN c.id IS NULL THEN EXISTS (SELECT 1 FROM stranger_replies r ",
    "WHERE r.channel = m.channel AND r.address = m.address AND r.day = m.day) ",
    "ELSE 0 END AS stranger_replied, ",
    // Whether the message needs one of the two lookups most messages do not: a supervisor's
    // desk (any supervisor with this phone, or linked to this chat, found by the links'
    // primary key: a superset of what `SqlStore::contact_at` finds) or the shift offers a
    // caregiver holds (the very condition of `SqlStore::held_shifts`).
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
    // On SMS the caregiver's SMS consent is `consent`, already read (see `into_snapshot`).
    super::reach_columns!(
        "CASE WHEN m.channel = 'sms' THEN NULL ELSE (SELECT x.status FROM subscriptions x \
         WHERE x.channel = 'sms' AND x.address = c.phone) END"
    ),
    ", ",
    "v.id AS conv_id, v.caregiver_id AS conv_caregiver_id, v.channel AS conv_channel, ",
    "v.address AS conv_address, v.flow_id AS conv_flow_id, v.flow_rev AS conv_flow_rev, ",
    "v.status AS conv_status, v.state AS conv_state, v.wake_at AS conv_wake_at, ",
    "v.started_at AS conv_started_at ",
    "FROM m ",
    "LEFT JOIN caregivers c ON c.phone = m.phone ",
    "LEFT JOIN supervisors s ON s.external_id = c.supervisor_external_id ",
    "LEFT JOIN conversations v ",
    "ON v.channel = m.channel AND v.address = m.address AND v.status = 'active'",
);

/// A row of [`SNAPSHOTS`]: the caregiver and conversation columns are NULL when there is none.
/// The fields are in the statement's column order, which is how they are read.
struct SnapshotDb {
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
    consent_at: Option<String>,
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
    conv_wake_at: Option<String>,
    conv_started_at: Option<String>,
}

/// The columns of [`SNAPSHOTS`], in order, as [`SnapshotDb::from_row`] reads them.
const SNAPSHOT_COLUMNS: [&str; 39] = [
    "seen",
    "consent",
    "stranger_replied",
    "contact",
    "holds_offers",
    "id",
    "external_id",
    "first_name",
    "last_name",
    "phone",
    "timezone",
    "branch",
    "consent_at",
    "active",
    "fields",
    "tags",
    "groups",
    "sup_id",
    "sup_external_id",
    "sup_name",
    "sup_phone",
    "sup_timezone",
    "chosen_language",
    "preferred_channel",
    "last_channel",
    "sms_consent",
    "telegram_chat",
    "telegram_consent",
    "sup_telegram",
    "conv_id",
    "conv_caregiver_id",
    "conv_channel",
    "conv_address",
    "conv_flow_id",
    "conv_flow_rev",
    "conv_status",
    "conv_state",
    "conv_wake_at",
    "conv_started_at",
];

impl SnapshotDb {
    /// Reads a row by position (by name, each column would be a search through forty names).
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotDb> {
        Ok(SnapshotDb {
            seen: row.get(0)?,
            consent: row.get(1)?,
            stranger_replied: row.get(2)?,
            contact: row.get(3)?,
            holds_offers: row.get(4)?,
            id: row.get(5)?,
            external_id: row.get(6)?,
            first_name: row.get(7)?,
            last_name: row.get(8)?,
            phone: row.get(9)?,
            timezone: row.get(10)?,
            branch: row.get(11)?,
            consent_at: row.get(12)?,
            active: row.get(13)?,
            fields: row.get(14)?,
            tags: row.get(15)?,
            groups: row.get(16)?,
            sup_id: row.get(17)?,
            sup_external_id: row.get(18)?,
            sup_name: row.get(19)?,
            sup_phone: row.get(20)?,
            sup_timezone: row.get(21)?,
            chosen_language: row.get(22)?,
            preferred_channel: row.get(23)?,
            last_channel: row.get(24)?,
            sms_consent: row.get(25)?,
            telegram_chat: row.get(26)?,
            telegram_consent: row.get(27)?,
            sup_telegram: row.get(28)?,
            conv_id: row.get(29)?,
            conv_caregiver_id: row.get(30)?,
            conv_channel: row.get(31)?,
            conv_address: row.get(32)?,
            conv_flow_id: row.get(33)?,
            conv_flow_rev: row.get(34)?,
            conv_status: row.get(35)?,
            conv_state: row.get(36)?,
            conv_wake_at: row.get(37)?,
            conv_started_at: row.get(38)?,
        })
    }

    fn caregiver(&mut self) -> Result<Option<crate::model::Caregiver>> {
        let Some(id) = self.id else {
            return Ok(None);
        };
        let missing = || StoreError::Corrupt(format!("caregiver {id}: a NOT NULL column is NULL"));
        let mut groups: Vec<String> =
            json("caregiver groups", self.groups.as_deref().unwrap_or("[]"))?;
        groups.sort();
        let consent_at = match self.consent_at.as_deref() {
            Some(day) => Some(
                NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map_err(|e| StoreError::Corrupt(format!("consent_at {day:?}: {e}")))?,
            ),
            None => None,
        };
        let row = CaregiverDb {
            id,
            external_id: self.external_id.take().ok_or_else(missing)?,
            first_name: self.first_name.take().ok_or_else(missing)?,
            last_name: self.last_name.take().ok_or_else(missing)?,
            phone: self.phone.take().ok_or_else(missing)?,
            timezone: self.timezone.take().ok_or_else(missing)?,
            branch: self.branch.take().ok_or_else(missing)?,
            consent_at,
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

    fn conversation(&mut self) -> Result<Option<crate::model::ConversationRow>> {
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
            wake_at: self.conv_wake_at.as_deref().map(instant).transpose()?,
            started_at: instant(self.conv_started_at.as_deref().ok_or_else(missing)?)?,
        };
        row.into_row().map(Some)
    }

    /// The snapshot this row describes, for a message from `address`.
    fn into_snapshot(mut self, address: &Address) -> Result<Snapshot> {
        if address.channel == Channel::Sms {
            // The caregiver was found by this phone number: its SMS consent is this address's.
            self.sms_consent = self.consent.clone();
        }
        let caregiver = self.caregiver()?;
        let consent = match &self.consent {
            Some(status) => parse("consent status", status)?,
            None => ConsentStatus::Unknown,
        };
        Ok(Snapshot {
            address: address.clone(),
            consent,
            stranger_replied_today: caregiver.is_none() && self.stranger_replied,
            caregiver,
            conversation: self.conversation()?,
            shifts: Vec::new(),
            desk: None,
        })
    }

    /// Whether the message needs a lookup this statement does not do, which the general path
    /// (one message, one transaction, `SqlStore::handle_inbound`) does: a supervisor's desk,
    /// the shift offers a caregiver holds, or the caregiver's conversation on another channel
    /// (a survey sent on Telegram, answered by SMS). Few messages are any of these.
    fn needs_more(&self) -> bool {
        self.contact || (self.id.is_some() && (self.holds_offers || self.conv_id.is_none()))
    }
}

/// An instant as SQLite keeps it ([`Ts`]: RFC 3339, microseconds, UTC), or as sqlx would also
/// read it.
fn instant(text: &str) -> Result<Ts> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| Ts(t.with_timezone(&Utc)))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map(|t| Ts(t.and_utc()))
        })
        .map_err(|e| StoreError::Corrupt(format!("instant {text:?}: {e}")))
}

/// What [`SNAPSHOTS`] says of one message.
enum Read {
    /// Already recorded: a provider's retry.
    Seen,
    /// Needs more than the grouped statements read or write: goes alone.
    NeedsMore,
    Row(Box<SnapshotDb>),
}

/// What [`SNAPSHOTS`] says of one message. Only SMS and the console come here, where the
/// address is the phone number the caregiver is found by.
fn snapshot(conn: &Connection, inbound: &Inbound) -> GroupResult<Read> {
    let mut statement = conn.prepare_cached(SNAPSHOTS)?;
    debug_assert_eq!(statement.column_names(), SNAPSHOT_COLUMNS);
    let a = &inbound.address;
    let row = statement.query_row(
        rusqlite::params![
            a.channel.as_str(),
            a.value,
            inbound.external_id,
            inbound.received_at.date_naive().to_string(),
            sqlite_text(inbound.received_at),
        ],
        SnapshotDb::from_row,
    )?;
    Ok(if row.seen {
        Read::Seen
    } else if row.needs_more() {
        Read::NeedsMore
    } else {
        Read::Row(Box::new(row))
    })
}

/// Whether every write of `plan` can go into the grouped statements: answers, outbound
/// messages and one conversation update, none of them about a conversation the plan creates.
/// Anything else (consent, escalations, a new conversation...) goes alone, on the general path.
fn groupable(plan: &Plan, snapshot: &Snapshot) -> bool {
    let mut updates = 0;
    plan.writes.iter().all(|w| match w {
        Write::Answer {
            conversation,
            anonymous,
            ..
        } => {
            // Anonymous answers keep a cohort and redact their inbound text: the general path
            // does that.
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

/// A grouped plan's rows, every value as it is bound: made by the caller, off the writer's
/// thread, by the encodings the sqlx paths use (`encode.rs`), with instants as SQLite's text.
struct Rows {
    caregiver_id: Option<i64>,
    /// The message's instant, which every row of it carries.
    now: String,
    answers: Vec<AnswerInsert<String>>,
    outbound: Vec<OutboundInsert<String>>,
    update: Option<UpdateRow>,
}

struct UpdateRow {
    update: ConversationUpdate<String>,
    /// An active conversation that stays active (a step forward, the common case): its
    /// status and end are left as they are, and with them the CHECK on the status and the
    /// one-active-conversation index, which SQLite would otherwise evaluate and rewrite.
    stays_active: bool,
}

impl Rows {
    /// The rows of `plan`, which [`groupable`] admitted.
    fn new(inbound: &Inbound, snapshot: &Snapshot, plan: Plan) -> Rows {
        let now = sqlite_text(inbound.received_at);
        let caregiver_id = snapshot.caregiver.as_ref().map(|c| c.id);
        let mut rows = Rows {
            caregiver_id,
            now,
            answers: Vec::new(),
            outbound: Vec::new(),
            update: None,
        };
        for w in plan.writes {
            match w {
                Write::Answer {
                    conversation: ConvRef::Existing(conversation),
                    ..
                } => {
                    let caregiver_id =
                        caregiver_id.expect("groupable() admits a caregiver's answers only");
                    let row = AnswerInsert::encode(w, conversation, caregiver_id, &rows.now);
                    rows.answers.push(row);
                }
                Write::Outbound(o) => {
                    let conversation = match o.conversation {
                        Some(ConvRef::Existing(id)) => Some(id),
                        _ => None,
                    };
                    let row = OutboundInsert::encode(o, conversation, &rows.now);
                    rows.outbound.push(row);
                }
                Write::UpdateConversation {
                    conversation: ConvRef::Existing(id),
                    status,
                    state,
                    wake_at,
                } => {
                    let active = crate::model::ConversationStatus::Active;
                    let stays_active = status == active
                        && snapshot
                            .conversation
                            .as_ref()
                            .is_some_and(|c| c.id == id && c.status == active);
                    let update = ConversationUpdate::encode(id, status, &state, wake_at, &rows.now);
                    rows.update = Some(UpdateRow {
                        update,
                        stays_active,
                    });
                }
                _ => unreachable!("groupable() admits nothing else"),
            }
        }
        rows
    }
}

/// Writes a message's rows: its inbound row, then its plan's, a prepared statement per row.
/// (On this thread a statement costs microseconds; batching rows into one statement, as JSON
/// for instance, costs more in encoding and parsing than it saves.)
fn write(conn: &Connection, inbound: &Inbound, rows: &Rows) -> GroupResult<()> {
    conn.prepare_cached(
        "INSERT INTO inbound_messages \
         (channel, external_id, address, caregiver_id, body, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        inbound.address.channel.as_str(),
        inbound.external_id,
        inbound.address.value,
        rows.caregiver_id,
        inbound.text,
        rows.now,
    ])?;
    for a in &rows.answers {
        conn.prepare_cached(AnswerInsert::<String>::INSERT_ONE)?
            .execute(a.params())?;
    }
    for o in &rows.outbound {
        conn.prepare_cached(OutboundInsert::<String>::INSERT_ONE)?
            .execute(o.params())?;
    }
    if let Some(UpdateRow {
        update: u,
        stays_active,
    }) = &rows.update
    {
        // The statement of `ConversationUpdate::UPDATE`, with rusqlite's placeholders.
        let updated = if *stays_active {
            // Read active in this transaction; `status` in the condition all the same, so
            // that a conversation that is not counts as not found instead of being changed.
            conn.prepare_cached(
                "UPDATE conversations SET state = ?2, wake_at = ?3, updated_at = ?4 \
                 WHERE id = ?1 AND status = 'active'",
            )?
            .execute(rusqlite::params![u.id, u.state, u.wake_at, u.updated_at])?
        } else {
            conn.prepare_cached(
                "UPDATE conversations SET status = ?2, state = ?3, wake_at = ?4, \
                 updated_at = ?5, ended_at = ?6 WHERE id = ?1",
            )?
            .execute(rusqlite::params![
                u.id,
                u.status,
                u.state,
                u.wake_at,
                u.updated_at,
                u.ended_at,
            ])?
        };
        if updated != 1 {
            // It names a conversation that does not exist: the group goes again one message
            // at a time, where this plan fails alone.
            return Err(StoreError::InvalidPlan(format!(
                "UpdateConversation: conversation {} not found",
                u.id
            ))
            .into());
        }
    }
    Ok(())
}
