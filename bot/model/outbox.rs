//! The outbox's vocabulary: a message to queue, a claimed one, and the statuses a message
//! moves through on its way to the provider.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Address;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundKind {
    /// An immediate reply inside a conversation the caregiver just wrote to: never held for
    /// quiet hours.
    Reply,
    /// A message the caregiver did not just ask for (a flow start, a reminder): quiet hours apply.
    Program,
    /// A consent confirmation (STOP, START, HELP): the one message allowed after STOP.
    Consent,
    /// A supervisor alert.
    Alert,
}

impl OutboundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundKind::Reply => "reply",
            OutboundKind::Program => "program",
            OutboundKind::Consent => "consent",
            OutboundKind::Alert => "alert",
        }
    }
}

/// Delivery status of an outbound message. The order of the variants is the order a message
/// moves through; a status never moves backwards (a late `sent` callback after `delivered`
/// changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundStatus {
    /// In the outbox, waiting for its time (quiet hours, pacing, retry backoff).
    Queued,
    /// Claimed by a dispatcher that is calling the provider right now.
    Sending,
    /// Accepted by the provider (`queued`/`accepted` there).
    Accepted,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    /// Not sent on purpose: opted out since it was queued, caregiver deactivated.
    Suppressed,
    /// Left in `sending` by a crash: the provider may or may not have it. Needs reconciliation
    /// (a status callback carrying our id) or a human; never re-sent blindly.
    Unknown,
}

impl OutboundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundStatus::Queued => "queued",
            OutboundStatus::Sending => "sending",
            OutboundStatus::Accepted => "accepted",
            OutboundStatus::Sent => "sent",
            OutboundStatus::Delivered => "delivered",
            OutboundStatus::Undelivered => "undelivered",
            OutboundStatus::Failed => "failed",
            OutboundStatus::Suppressed => "suppressed",
            OutboundStatus::Unknown => "unknown",
        }
    }

    /// How far along a message is: a status report is applied only when its rank is higher
    /// than the stored status's, so nothing moves backwards and nothing final changes.
    ///
    /// - 0 `queued`
    /// - 1 `sending` and `unknown`: the provider may or may not have it; a report settles it
    /// - 2 `accepted`
    /// - 3 `sent`
    /// - 4 `delivered`, `undelivered`, `failed`, `suppressed`: final. The derived order puts
    ///   `undelivered` and `failed` after `delivered`, but a late `undelivered` after
    ///   `delivered` (or a `delivered` after `failed`) is a report out of order, not news.
    pub fn rank(self) -> u8 {
        match self {
            OutboundStatus::Queued => 0,
            OutboundStatus::Sending | OutboundStatus::Unknown => 1,
            OutboundStatus::Accepted => 2,
            OutboundStatus::Sent => 3,
            OutboundStatus::Delivered
            | OutboundStatus::Undelivered
            | OutboundStatus::Failed
            | OutboundStatus::Suppressed => 4,
        }
    }
}

/// A message to queue in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbound {
    pub address: Address,
    pub caregiver_id: Option<i64>,
    pub conversation: Option<ConvRef>,
    pub kind: OutboundKind,
    pub body: String,
    /// "gsm7" or "ucs2".
    pub encoding: String,
    pub segments: u32,
    /// Not before this instant (quiet hours).
    pub not_before: DateTime<Utc>,
    /// Buttons to offer where the channel has them (Telegram), as `(label, payload)`.
    pub buttons: Vec<(String, String)>,
}

/// A conversation referred to from a plan: one that exists, or the one this plan creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvRef {
    Existing(i64),
    New,
}

/// An outbound message claimed by a dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRow {
    pub id: i64,
    pub address: Address,
    pub caregiver_id: Option<i64>,
    pub kind: OutboundKind,
    pub body: String,
    pub segments: u32,
    pub attempts: u32,
    pub buttons: Vec<(String, String)>,
    /// The conversation that queued it: Telegram ties a keyboard's buttons to it.
    pub conversation_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// The caregiver's time zone, so the dispatcher can hold a program message whose window
    /// closed while it waited in a backlog.
    pub timezone: Option<String>,
}
