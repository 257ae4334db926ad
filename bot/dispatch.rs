//! The dispatcher: after commit, takes outbound rows from the outbox and hands them to their
//! channel's sender, paced per sender, never inside quiet hours for program messages, retrying
//! what is safe to retry and never sending a message twice.
//!
//! Never twice: a row is marked `sending` in the same statement that claims it, before the
//! provider is called. If the process dies during the call, the row stays `sending`; at start-up
//! (and periodically) rows stuck in `sending` become `unknown` rather than being sent again.
//! Twilio's status callback carries carebot's own id (`?id=`), so an `unknown` message that did
//! reach Twilio is reconciled by the callback; one that did not stays `unknown`, counted in
//! `/metrics`, for a person to look at.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::channel::twilio::client::{SendError, TwilioClient};
use crate::clock::Clock;
use crate::domain::Channel;
use crate::metrics::Metrics;
use crate::quiet_hours::{self, Window};
use crate::store::{AnyStore, ConsentStatus, OutboundKind, OutboundRow, Store};

/// A provider that can send one outbound row. SMS today; Telegram plugs in here.
pub trait Sender: Send + Sync + 'static {
    fn channel(&self) -> Channel;
    /// Returns the provider's id for the message.
    fn send(&self, row: &OutboundRow) -> impl Future<Output = Result<String, SendError>> + Send;
}

impl Sender for TwilioClient {
    fn channel(&self) -> Channel {
        Channel::Sms
    }
    async fn send(&self, row: &OutboundRow) -> Result<String, SendError> {
        TwilioClient::send(self, row.id, &row.address.value, &row.body).await
    }
}

#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Segments per second this sender may hand to the provider.
    pub mps: f64,
    /// Attempts before a transiently failing message is marked failed.
    pub max_attempts: u32,
    pub caregiver_window: Window,
    /// How many sends may be in flight at once.
    pub concurrency: usize,
}

/// Longer than any send can take (the client's 15 s timeout, twice over).
const STALE_SENDING: chrono::Duration = chrono::Duration::seconds(60);

/// Twilio error codes that change what carebot knows about a person.
const UNSUBSCRIBED: &str = "21610";
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
    /// and recorded before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_stale_check = None;
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut inflight = JoinSet::new();
        let mut pacer = Pacer::new(self.settings.mps);
        while !*shutdown.borrow() {
            if last_stale_check
                .is_none_or(|t: std::time::Instant| t.elapsed() > Duration::from_secs(60))
            {
                self.mark_stale().await;
                last_stale_check = Some(std::time::Instant::now());
            }
            // A few seconds' worth at most: the backlog stays in carebot's outbox, where quiet
            // hours and opt-outs still apply, not in Twilio's queue.
            let limit = (self.settings.mps * 3.0).ceil().clamp(1.0, 500.0) as u32;
            let rows = match self
                .store
                .claim_outbound(self.sender.channel(), self.clock.now(), limit)
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim outbound messages");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
                while inflight.try_join_next().is_some() {}
                continue;
            }
            for row in rows {
                if let Some(later) = self.held_for_quiet_hours(&row, self.clock.now()) {
                    let _ = self
                        .store
                        .mark_outbound_retry(row.id, later, "quiet hours")
                        .await;
                    continue;
                }
                pacer.wait(row.segments.max(1)).await;
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let sender = self.sender.clone();
                let store = self.store.clone();
                let metrics = self.metrics.clone();
                let settings = self.settings.clone();
                let clock = self.clock.clone();
                inflight.spawn(async move {
                    let started = std::time::Instant::now();
                    let result = sender.send(&row).await;
                    metrics.observe_send(started.elapsed());
                    record(&store, &metrics, &settings, &row, result, &clock).await;
                    drop(permit);
                });
            }
        }
        // Graceful: every send already handed to the provider is recorded before we return.
        while inflight.join_next().await.is_some() {}
    }

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
            Err(e) => tracing::error!(error = %e, "cannot check for messages left in `sending`"),
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
}

async fn record(
    store: &AnyStore,
    metrics: &Metrics,
    settings: &DispatchSettings,
    row: &OutboundRow,
    result: Result<String, SendError>,
    clock: &Clock,
) {
    let to = row.address.masked();
    let outcome = match result {
        Ok(provider_id) => {
            metrics.count_outbound("accepted");
            tracing::info!(id = row.id, %to, "sent");
            store.mark_outbound_accepted(row.id, &provider_id).await
        }
        Err(SendError::Permanent { code, message }) => {
            metrics.count_outbound("failed");
            tracing::warn!(id = row.id, %to, code = code.as_deref().unwrap_or("-"), %message, "provider refused the message");
            match code.as_deref() {
                Some(UNSUBSCRIBED) => {
                    let _ = store
                        .set_consent(
                            &row.address,
                            ConsentStatus::OptedOut,
                            "provider_error",
                            "twilio 21610: unsubscribed recipient",
                            Utc::now(),
                        )
                        .await;
                }
                Some(INVALID_NUMBER) => {
                    let _ = store.flag_invalid_phone(&row.address.value).await;
                }
                _ => {}
            }
            store
                .mark_outbound_failed(row.id, code.as_deref(), &message)
                .await
        }
        Err(SendError::Transient {
            message,
            retry_after,
        }) if row.attempts < settings.max_attempts => {
            metrics.count_outbound("retried");
            let wait = backoff(row.attempts).max(retry_after.unwrap_or_default());
            tracing::info!(id = row.id, %to, attempt = row.attempts, retry_in_s = wait.as_secs(), %message, "will retry");
            store
                .mark_outbound_retry(
                    row.id,
                    clock.now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                    &message,
                )
                .await
        }
        Err(SendError::Transient { message, .. }) => {
            metrics.count_outbound("failed");
            tracing::warn!(id = row.id, %to, %message, "giving up after {} attempts", row.attempts);
            store
                .mark_outbound_failed(
                    row.id,
                    None,
                    &format!("gave up after {} attempts: {message}", row.attempts),
                )
                .await
        }
        Err(SendError::Unknown { message }) => {
            // Not retried: Twilio may have it. A status callback will say so.
            metrics.count_outbound("unknown");
            tracing::warn!(id = row.id, %to, %message, "outcome unknown; not re-sent");
            store.mark_outbound_unknown(row.id, &message).await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(id = row.id, error = %e, "cannot record the result of a send");
    }
}

/// Exponential backoff with jitter: about 2 s, 4 s, 8 s… capped at 10 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let base = 2f64.powi(attempt.clamp(1, 20) as i32).min(600.0);
    let jitter = rand::rng().random_range(0.75..1.25);
    Duration::from_secs_f64(base * jitter)
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
