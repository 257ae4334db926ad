//! Transports: each verifies what its provider sends, normalizes it into one inbound message and
//! acks; nothing flow-related happens here. And the contract the dispatcher sends through: a
//! [`Sender`] per provider, what a send attempt came to ([`SendError`]), and the backoff both
//! the dispatcher and Telegram's long polling wait by.

use std::time::Duration;

use rand::Rng;

use crate::domain::Channel;
use crate::model::OutboundRow;

pub mod telegram;
pub mod twilio;

/// A provider that can send one outbound row: Twilio for SMS, Telegram's Bot API.
pub trait Sender: Send + Sync + 'static {
    fn channel(&self) -> Channel;
    /// Returns the provider's id for the message.
    fn send(&self, row: &OutboundRow) -> impl Future<Output = Result<String, SendError>> + Send;
    /// What a row counts against the sender's rate: SMS segments by default.
    fn cost(&self, row: &OutboundRow) -> u32 {
        row.segments.max(1)
    }
}

/// What one send attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The provider refused the message for good (Twilio's 4xx): do not retry. `code` is the
    /// provider's error code (Twilio's 21211 invalid number, 21610 unsubscribed recipient...).
    Permanent {
        code: Option<String>,
        message: String,
    },
    /// Nothing was sent (connection refused, 429, 5xx): safe to retry later.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request may have reached the provider but no answer came back (a timeout mid-request).
    /// Retrying could text the caregiver twice, so the message is left for reconciliation.
    Unknown { message: String },
}

/// Exponential backoff with jitter: about 2 s, 4 s, 8 s… capped at 10 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let base = 2f64.powi(attempt.clamp(1, 20) as i32).min(600.0);
    let jitter = rand::rng().random_range(0.75..1.25);
    Duration::from_secs_f64(base * jitter)
}
