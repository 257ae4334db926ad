//! The dispatcher: after commit, takes outbound rows from the outbox and hands them to their
//! channel's sender, paced per sender, never inside quiet hours for program messages, retrying
//! what is safe to retry and never sending a message twice.
//!
//! Never twice: a row is marked `sending` in the same statement that claims it, before the
//! provider is called. If the process dies during the call, the row stays `sending`; at start-up
//! (and periodically) rows stuck in `sending` become `unknown` rather than being sent again.
//! Twilio's status callback carries carebot's own id (`?id=`), so an `unknown` message that did
//! reach Twilio is reconciled by the callback; one that did not stays `unknown`, counted in
//! `/metrics`, for a person to look at. Telegram has no status callbacks: its `unknown`
//! messages stay so. A provider's acceptance is recorded a few milliseconds late, in batches
//! (one statement for up to 500 messages, see [`record_accepted`]): until then the row is still
//! `sending`, so a crash in between leaves it `unknown` as above, never sent again.
//!
//! Order and pacing: each address has a lane, and a lane sends its messages one at a time, in
//! the order they were queued, no faster than `per_address_mps` (Telegram: 1 a second per chat)
//! and within the sender's overall rate. When a send must be retried, the messages queued behind
//! it in its lane go back to the outbox with it, so a caregiver never reads the next question
//! before the message it follows. A provider's "retry after N seconds" (Telegram's 429) pauses
//! the whole sender for exactly that long.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::channel::telegram::client::{self as telegram};
use crate::channel::twilio::StatusReport;
use crate::channel::{SendError, Sender, backoff};
use crate::clock::Clock;
use crate::domain::phone::{mask_text, masked_error};
use crate::domain::{Address, Channel};
use crate::metrics::Metrics;
use crate::model::{
    ConsentStatus, NewOutbound, OutboundKind, OutboundRow, OutboundStatus, Plan, Write,
};
use crate::quiet_hours::{self, Window};
use crate::store::{AnyStore, Store, StoreError};

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Segments (SMS) or messages (Telegram) per second this sender may hand to the provider.
    pub mps: f64,
    /// Attempts before a transiently failing message is marked failed.
    pub max_attempts: u32,
    pub caregiver_window: Window,
    /// How many sends may be in flight at once.
    pub concurrency: usize,
    /// Messages per second to any one address (Telegram asks for at most 1 a second per chat);
    /// `None`: no limit beyond `mps`.
    pub per_address_mps: Option<f64>,
}

/// Records a delivery report from Twilio's status callback, on the server's clock: the message's
/// status (never backwards), and when Twilio says the recipient has unsubscribed (21610, a STOP
/// sent to Twilio rather than to us), the opt-out with its ledger row, exactly as a 21610 on
/// a send. Returns false when no message matched.
pub async fn record_status_report(
    store: &AnyStore,
    clock: &Clock,
    report: &StatusReport,
) -> Result<bool, StoreError> {
    let matched = store
        .record_delivery_status(
            report.id,
            &report.message_sid,
            report.status,
            report.error_code.as_deref(),
        )
        .await?;
    if report.status == OutboundStatus::Failed
        && report.error_code.as_deref() == Some(UNSUBSCRIBED)
        && let Some(to) = &report.to
    {
        store
            .set_consent(
                to,
                ConsentStatus::OptedOut,
                "provider_error",
                UNSUBSCRIBED_DETAIL,
                clock.now(),
            )
            .await?;
    }
    Ok(matched)
}

/// Claimed rows one address's lane may hold; more wait in the outbox.
const LANE_DEPTH: usize = 5;

/// Most acceptances recorded in one statement; also how many may wait to be recorded per
/// batch in flight (the channel holds four batches, then lanes wait for the database).
const ACCEPTED_BATCH: usize = 500;

/// Longer than any send can take (the client's 15 s timeout, twice over).
const STALE_SENDING: chrono::Duration = chrono::Duration::seconds(60);

/// Twilio error codes that change what carebot knows about a person.
pub const UNSUBSCRIBED: &str = "21610";
/// The consent ledger's detail for an opt-out learnt from [`UNSUBSCRIBED`].
pub const UNSUBSCRIBED_DETAIL: &str = "twilio 21610: unsubscribed recipient";
const INVALID_NUMBER: &str = "21211";

pub struct Dispatcher<T> {
    store: AnyStore,
    sender: Arc<T>,
    settings: DispatchSettings,
    metrics: Arc<Metrics>,
    /// Poked when something is queued, so a reply leaves at once instead of at the next poll.
    pub wake: Arc<Notify>,
    /// Decides what is due (`not_before`) and what quiet hours hold.
    clock: Clock,
}

/// What the claiming loop and the lanes share.
struct Shared<T> {
    store: AnyStore,
    sender: Arc<T>,
    settings: DispatchSettings,
    metrics: Arc<Metrics>,
    /// Decides what is due (`not_before`), what quiet hours hold and when retries are.
    clock: Clock,
    pacer: tokio::sync::Mutex<Pacer>,
    permits: Semaphore,
    /// Claimed rows waiting in a lane, by address. An address with an entry has a lane running.
    lanes: std::sync::Mutex<HashMap<Address, VecDeque<OutboundRow>>>,
    /// When each recently used address may be sent to next.
    next_at: std::sync::Mutex<HashMap<Address, Instant>>,
    /// A provider's flood control: nothing is sent or claimed before this.
    paused_until: std::sync::Mutex<Option<Instant>>,
    /// Addresses whose earlier rows went back to the outbox until then: a later row claimed
    /// meanwhile waits as long, so it cannot overtake them.
    held: std::sync::Mutex<HashMap<Address, DateTime<Utc>>>,
    /// Rows claimed and not yet sent or put back: the claiming loop keeps this to a few
    /// seconds' worth, so the backlog stays in the outbox.
    pending: AtomicUsize,
    drained: Notify,
    shutdown: watch::Receiver<bool>,
}

impl<T: Sender> Dispatcher<T> {
    pub fn new(
        store: AnyStore,
        sender: T,
        settings: DispatchSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Dispatcher {
            store,
            sender: Arc::new(sender),
            settings,
            metrics,
            wake: Arc::new(Notify::new()),
            clock: Clock::system(),
        }
    }

    /// The same dispatcher on `clock` (tests move it forward; see [`Clock`]).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until `shutdown` turns true; sends already handed to the provider are finished
    /// and recorded before it returns, and rows claimed but not yet sent go back to the outbox.
    // Long because it is the worker's one loop: claim, hand to lanes, record, and on shutdown
    // finish what was handed over and put back what was not.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let wake = self.wake.clone();
        let shared = Arc::new(Shared {
            pacer: tokio::sync::Mutex::new(Pacer::new(self.settings.mps)),
            permits: Semaphore::new(self.settings.concurrency.max(1)),
            store: self.store,
            sender: self.sender,
            settings: self.settings,
            metrics: self.metrics,
            clock: self.clock,
            lanes: Default::default(),
            next_at: Default::default(),
            paused_until: Default::default(),
            held: Default::default(),
            pending: AtomicUsize::new(0),
            drained: Notify::new(),
            shutdown: shutdown.clone(),
        });
        let mut last_stale_check = None;
        let mut lanes = JoinSet::new();
        let (accepted, accepted_rx) = mpsc::channel(ACCEPTED_BATCH * 4);
        let recorder = tokio::spawn(record_accepted(shared.store.clone(), accepted_rx));
        // A few seconds' worth at most: the backlog stays in carebot's outbox, where quiet
        // hours and opt-outs still apply, not in the provider's queue.
        let limit = (shared.settings.mps * 3.0).ceil().clamp(1.0, 500.0) as usize;
        while !*shutdown.borrow() {
            if last_stale_check
                .is_none_or(|t: std::time::Instant| t.elapsed() > Duration::from_secs(60))
            {
                shared.mark_stale().await;
                last_stale_check = Some(std::time::Instant::now());
            }
            while lanes.try_join_next().is_some() {}
            let room = limit.saturating_sub(shared.pending.load(Ordering::SeqCst));
            let paused = shared.paused();
            if room == 0 || paused.is_some() {
                // Wait for the lanes to drain, or for the provider's pause to end, exactly.
                let until = paused.unwrap_or_else(|| Instant::now() + Duration::from_millis(500));
                tokio::select! {
                    _ = shared.drained.notified(), if paused.is_none() => {}
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let rows = match shared
                .store
                .claim_outbound(shared.sender.channel(), shared.clock.now(), room as u32)
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %masked_error(&e), "cannot claim outbound messages");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for row in rows {
                if let Some(later) = shared.held_for_quiet_hours(&row, shared.clock.now()) {
                    let _ = shared
                        .store
                        .mark_outbound_retry(row.id, later, "quiet hours")
                        .await;
                    continue;
                }
                shared.pending.fetch_add(1, Ordering::SeqCst);
                let address = row.address.clone();
                if let Some(until) = shared.held_until(&address) {
                    shared
                        .put_back(&address, row, until, "waiting for an earlier message")
                        .await;
                    continue;
                }
                // A lane runs while its entry exists (it removes the entry when it runs dry),
                // so an address never has two. A lane holds a few rows at most: the rest of a
                // burst to one chat waits in the outbox, so it cannot hold up other chats.
                let (new_lane, deferred) = {
                    let mut all = shared.lanes.lock().expect("lanes poisoned");
                    match all.get_mut(&address) {
                        Some(lane) if lane.len() >= LANE_DEPTH => {
                            let ahead = lane.len() as u32 + 1;
                            (false, Some((row, ahead)))
                        }
                        Some(lane) => {
                            lane.push_back(row);
                            (false, None)
                        }
                        None => {
                            all.insert(address.clone(), VecDeque::from([row]));
                            (true, None)
                        }
                    }
                };
                if let Some((row, ahead)) = deferred {
                    let spacing = shared
                        .settings
                        .per_address_mps
                        .map_or(Duration::ZERO, |mps| Duration::from_secs_f64(1.0 / mps));
                    let until = shared.clock.now()
                        + chrono::Duration::from_std(spacing * ahead).unwrap_or_default();
                    shared.hold(&address, until);
                    shared
                        .put_back(&address, row, until, "paced: one chat at a time")
                        .await;
                }
                if new_lane {
                    lanes.spawn(shared.clone().lane(address, accepted.clone()));
                }
            }
        }
        // Graceful: every send already handed to the provider is recorded before we return.
        while lanes.join_next().await.is_some() {}
        drop(accepted);
        let _ = recorder.await;
    }
}

impl<T: Sender> Shared<T> {
    /// Rows left in `sending` longer than any send can take (a crash, here or on another
    /// instance) become `unknown`: they are never re-sent blindly.
    async fn mark_stale(&self) {
        let stale = self.clock.now() - STALE_SENDING;
        match self.store.mark_stale_sending_unknown(stale).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                count = n,
                "messages left in `sending` by a crash marked `unknown`; they will not be re-sent"
            ),
            Err(e) => {
                tracing::error!(error = %masked_error(&e), "cannot check for messages left in `sending`")
            }
        }
    }

    /// A program message whose caregiver's window has closed since it was queued waits again.
    fn held_for_quiet_hours(&self, row: &OutboundRow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if row.kind != OutboundKind::Program {
            return None;
        }
        let tz = quiet_hours::zone(row.timezone.as_deref()?);
        let next = self.settings.caregiver_window.next_allowed(now, tz);
        (next > now).then_some(next)
    }

    fn paused(&self) -> Option<Instant> {
        let mut paused = self.paused_until.lock().expect("pause poisoned");
        match *paused {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                *paused = None;
                None
            }
        }
    }

    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("pause poisoned");
        *paused = Some(paused.map_or(until, |p| p.max(until)));
    }

    /// Until when rows for `address` must wait behind earlier ones put back in the outbox.
    fn held_until(&self, address: &Address) -> Option<DateTime<Utc>> {
        let mut held = self.held.lock().expect("held poisoned");
        let now = self.clock.now();
        held.retain(|_, until| *until > now);
        held.get(address).copied()
    }

    fn hold(&self, address: &Address, until: DateTime<Utc>) {
        let mut held = self.held.lock().expect("held poisoned");
        let at = held.entry(address.clone()).or_insert(until);
        *at = (*at).max(until);
    }

    /// The next row of `address`'s lane, or `None` (and the lane closed) when it is empty.
    fn next_row(&self, address: &Address) -> Option<OutboundRow> {
        let mut all = self.lanes.lock().expect("lanes poisoned");
        let row = all.get_mut(address).and_then(VecDeque::pop_front);
        if row.is_none() {
            all.remove(address);
        }
        row
    }

    fn done_with(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::SeqCst);
        self.drained.notify_one();
    }

    /// Sends one address's rows in order, spaced and paced; puts them back on shutdown.
    async fn lane(self: Arc<Self>, address: Address, accepted: mpsc::Sender<(i64, String)>) {
        let mut shutdown = self.shutdown.clone();
        while let Some(row) = self.next_row(&address) {
            let waited = tokio::select! {
                _ = self.wait_turn(&row) => true,
                _ = shutdown.wait_for(|s| *s) => false,
            };
            if !waited {
                // Not handed to the provider: back to the outbox, to go out after a restart.
                self.put_back(&address, row, self.clock.now(), "not sent before shutdown")
                    .await;
                continue;
            }
            let permit = self.permits.acquire().await.expect("semaphore open");
            let started = std::time::Instant::now();
            let result = self.sender.send(&row).await;
            self.metrics.observe_send(started.elapsed());
            drop(permit);
            if let Some(per_second) = self.settings.per_address_mps {
                let next = Instant::now() + Duration::from_secs_f64(1.0 / per_second);
                let mut next_at = self.next_at.lock().expect("next_at poisoned");
                if next_at.len() > 10_000 {
                    let now = Instant::now();
                    next_at.retain(|_, t| *t > now);
                }
                next_at.insert(address.clone(), next);
            }
            if let Err(SendError::Transient {
                retry_after: Some(wait),
                ..
            }) = &result
            {
                self.pause(*wait);
            }
            let retry_at = record(
                &self.store,
                &self.metrics,
                &self.settings,
                &row,
                result,
                &self.clock,
                &accepted,
            )
            .await;
            self.done_with(1);
            if let Some(retry_at) = retry_at {
                // Whatever was queued behind it waits with it, so it still arrives after it.
                self.hold(&address, retry_at);
                while let Some(next) = self.next_row(&address) {
                    self.put_back(&address, next, retry_at, "waiting for an earlier message")
                        .await;
                }
            }
        }
    }

    /// Waits until `row` may go: its address's spacing, the provider's pause, the overall pace.
    async fn wait_turn(&self, row: &OutboundRow) {
        let next = self
            .next_at
            .lock()
            .expect("next_at poisoned")
            .get(&row.address)
            .copied();
        if let Some(next) = next {
            tokio::time::sleep_until(next).await;
        }
        let mut pacer = self.pacer.lock().await;
        while let Some(until) = self.paused() {
            tokio::time::sleep_until(until).await;
        }
        pacer.wait(self.sender.cost(row)).await;
    }

    /// Returns a claimed row, not sent, to the outbox until `at` (no attempt is counted).
    async fn put_back(&self, address: &Address, row: OutboundRow, at: DateTime<Utc>, why: &str) {
        if let Err(e) = self.store.defer_outbound(row.id, at, why).await {
            tracing::error!(id = row.id, to = %address.masked(), error = %masked_error(&e), "cannot put a message back in the outbox");
        }
        self.done_with(1);
    }
}

/// Records the result of one send; an acceptance goes to `accepted`, to be recorded with others
/// by [`record_accepted`]. Returns when the row will be tried again, if it will.
async fn record(
    store: &AnyStore,
    metrics: &Metrics,
    settings: &DispatchSettings,
    row: &OutboundRow,
    result: Result<String, SendError>,
    clock: &Clock,
    accepted: &mpsc::Sender<(i64, String)>,
) -> Option<DateTime<Utc>> {
    // Providers quote the number or chat they refused in their error text: every `error`
    // below is masked, while the outbox keeps the provider's words for whoever looks into it.
    let to = row.address.masked();
    let mut retry_at = None;
    let outcome = match result {
        Ok(provider_id) => {
            metrics.count_outbound("accepted");
            tracing::info!(id = row.id, %to, "sent");
            match accepted.send((row.id, provider_id)).await {
                Ok(()) => Ok(()),
                // The recorder is gone (it cannot be, short of a panic): record it alone.
                Err(mpsc::error::SendError((id, provider_id))) => {
                    store.mark_outbound_accepted(id, &provider_id).await
                }
            }
        }
        Err(SendError::Permanent { code, message }) => {
            metrics.count_outbound("failed");
            tracing::warn!(id = row.id, %to, code = code.as_deref().unwrap_or("-"), error = %mask_text(&message), "provider refused the message");
            let opted_out = match code.as_deref() {
                Some(UNSUBSCRIBED) => Some(UNSUBSCRIBED_DETAIL),
                Some(telegram::BLOCKED) => Some("telegram: bot was blocked by the user"),
                Some(INVALID_NUMBER) => {
                    let _ = store.flag_invalid_phone(&row.address.value).await;
                    None
                }
                _ => None,
            };
            if let Some(detail) = opted_out {
                let _ = store
                    .set_consent(
                        &row.address,
                        ConsentStatus::OptedOut,
                        "provider_error",
                        detail,
                        clock.now(),
                    )
                    .await;
            }
            let failed = store
                .mark_outbound_failed(row.id, code.as_deref(), &message)
                .await;
            if row.kind == OutboundKind::Alert && row.address.channel == Channel::Telegram {
                match alert_by_sms(store, row, clock.now()).await {
                    Ok(true) => tracing::info!(id = row.id, %to, "alert sent again by SMS"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(id = row.id, error = %masked_error(&e), "cannot send the alert by SMS")
                    }
                }
            }
            failed
        }
        Err(SendError::Transient {
            message,
            retry_after,
        }) if row.attempts < settings.max_attempts => {
            metrics.count_outbound("retried");
            // When the provider says how long to wait, exactly that; else back off.
            let wait = retry_after.unwrap_or_else(|| backoff(row.attempts));
            tracing::info!(id = row.id, %to, attempt = row.attempts, retry_in_ms = wait.as_millis() as u64, error = %mask_text(&message), "will retry");
            let at = clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
            retry_at = Some(at);
            store.mark_outbound_retry(row.id, at, &message).await
        }
        Err(SendError::Transient { message, .. }) => {
            metrics.count_outbound("failed");
            tracing::warn!(id = row.id, %to, error = %mask_text(&message), "giving up after {} attempts", row.attempts);
            store
                .mark_outbound_failed(
                    row.id,
                    None,
                    &format!("gave up after {} attempts: {message}", row.attempts),
                )
                .await
        }
        Err(SendError::Unknown { message }) => {
            // Not retried: the provider may have it. A status callback (Twilio) may say so.
            metrics.count_outbound("unknown");
            tracing::warn!(id = row.id, %to, error = %mask_text(&message), "outcome unknown; not re-sent");
            store.mark_outbound_unknown(row.id, &message).await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(id = row.id, error = %masked_error(&e), "cannot record the result of a send");
    }
    retry_at
}

/// Records the provider's acceptances in batches, until every lane has dropped its sender.
/// Whatever arrived while one batch was being written is the next batch, so under load a
/// statement covers hundreds of messages, and when sends are few each is recorded at once.
/// A batch that cannot be written leaves its rows `sending`: they become `unknown` and are
/// never re-sent (a status callback can still settle them).
async fn record_accepted(store: AnyStore, mut accepted: mpsc::Receiver<(i64, String)>) {
    let mut batch = Vec::with_capacity(ACCEPTED_BATCH);
    while accepted.recv_many(&mut batch, ACCEPTED_BATCH).await > 0 {
        let mut attempt = 0;
        while let Err(e) = store.mark_outbound_accepted_many(&batch).await {
            attempt += 1;
            if attempt == 3 {
                tracing::error!(count = batch.len(), error = %masked_error(&e), "cannot record that the provider accepted these messages; they will show as `unknown` and are not re-sent");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        batch.clear();
    }
}

/// An alert a supervisor's Telegram refused for good (they blocked the bot, the chat is gone)
/// must still reach them: it is queued again to their phone. False when the chat is no
/// supervisor's.
async fn alert_by_sms(
    store: &AnyStore,
    row: &OutboundRow,
    now: DateTime<Utc>,
) -> crate::store::Result<bool> {
    let Some(supervisor) = store.linked_supervisor(&row.address).await? else {
        return Ok(false);
    };
    let address = Address::new(Channel::Sms, supervisor.phone);
    let seg = crate::sms::segments::analyze(&row.body);
    let alert = Write::Outbound(NewOutbound {
        address: address.clone(),
        caregiver_id: None,
        conversation: None,
        kind: OutboundKind::Alert,
        body: row.body.clone(),
        encoding: match seg.encoding {
            crate::sms::segments::Encoding::Gsm7 => "gsm7".into(),
            crate::sms::segments::Encoding::Ucs2 => "ucs2".into(),
        },
        segments: seg.segments,
        not_before: now,
        buttons: Vec::new(),
    });
    store
        .handle_addresses(&[address], now, &|_| {
            Ok(Plan {
                writes: vec![alert.clone()],
            })
        })
        .await?;
    Ok(true)
}

/// Paces sends to a number of segments per second.
struct Pacer {
    per_segment: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(mps: f64) -> Pacer {
        Pacer {
            per_segment: Duration::from_secs_f64(1.0 / mps),
            next: tokio::time::Instant::now(),
        }
    }

    async fn wait(&mut self, segments: u32) {
        let now = tokio::time::Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        } else {
            self.next = now;
        }
        self.next += self.per_segment * segments;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) < Duration::from_secs(3));
        assert!(backoff(3) > Duration::from_secs(5));
        assert!(backoff(30) <= Duration::from_secs(750));
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_counts_segments() {
        let mut p = Pacer::new(2.0);
        let t0 = tokio::time::Instant::now();
        p.wait(1).await;
        p.wait(3).await; // waits 0.5 s for the first message
        p.wait(1).await; // then 1.5 s for the three segments before it
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
    }
}
