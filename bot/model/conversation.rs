//! Conversations as stored, and the snapshot a decision reads: the person, their consent,
//! the conversation in progress.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Caregiver, ConsentStatus, Desk, HeldShift};
use crate::domain::{Address, Channel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// Waiting for the caregiver (at most one per caregiver and channel).
    Active,
    Completed,
    Expired,
    /// Ended because another flow took over, or the caregiver opted out.
    Interrupted,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Active => "active",
            ConversationStatus::Completed => "completed",
            ConversationStatus::Expired => "expired",
            ConversationStatus::Interrupted => "interrupted",
        }
    }
}

/// An open conversation as stored: `state` is the engine's state, serialized as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub id: i64,
    pub caregiver_id: i64,
    pub channel: Channel,
    pub address: String,
    pub flow_id: String,
    /// Key into `flow_revisions`: the exact flow text this conversation started on.
    pub flow_rev: i64,
    pub status: ConversationStatus,
    pub state: Value,
    /// When the scheduler must wake this conversation (reminder or expiry), if ever.
    pub wake_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
}

/// Everything the runner needs to decide what one inbound message (or timer, or start) does,
/// read inside the transaction that will apply the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub address: Address,
    pub consent: ConsentStatus,
    pub caregiver: Option<Caregiver>,
    /// The caregiver's active conversation on this channel.
    pub conversation: Option<ConversationRow>,
    /// For an address that is not on the roster: whether it already got today's polite reply.
    /// "Today" is the UTC date of the inbound message's `received_at` (or of `now`), so a
    /// [`Write::StrangerReplied`] should carry that same date.
    pub stranger_replied_today: bool,
    /// Shift offers the caregiver was texted whose shift has not ended, newest first: a YES or
    /// NO to one is read before any flow. Loaded for inbound messages only (empty for starts
    /// and timers).
    pub shifts: Vec<HeldShift>,
    /// When the sender is a supervisor: who, and the alerts they may act on. Read for inbound
    /// messages only.
    pub desk: Option<Desk>,
}

/// What a conversation timer was for; see [`crate::store::Store::due_conversations`].
#[derive(Debug, Clone, PartialEq)]
pub struct DueConversation {
    pub id: i64,
    pub wake_at: DateTime<Utc>,
}

/// A flow revision: the exact text a conversation started on.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRevision {
    pub id: i64,
    pub flow_id: String,
    pub version: i64,
    pub source: String,
}
