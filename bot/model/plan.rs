//! What a decision hands back: a plan of writes that the store applies in the transaction
//! that recorded the message, and the inbound message itself.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::{
    ConsentStatus, ConvRef, ConversationStatus, EscalationAction, EscalationUpdate, NewOutbound,
    ShiftClaim,
};
use crate::domain::{Address, Channel, Lang, Priority};

/// One change the runner decided on. The store applies a plan's writes in order, in the
/// transaction the snapshot was read in.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Change consent for the snapshot's address and add a row to the consent ledger.
    Consent {
        status: ConsentStatus,
        /// "keyword", "request" (a request to stop in plain words), "import", "flow",
        /// "provider_error", "cli".
        source: String,
        /// Free text for the ledger, for example the keyword or the provider's error code.
        detail: String,
    },
    /// Start a conversation (status active) for the snapshot's caregiver and address.
    /// Fails the plan if one is already active on that channel (a unique index enforces it).
    CreateConversation {
        flow_id: String,
        flow_rev: i64,
        state: Value,
        wake_at: Option<DateTime<Utc>>,
    },
    UpdateConversation {
        conversation: ConvRef,
        status: ConversationStatus,
        state: Value,
        wake_at: Option<DateTime<Utc>>,
    },
    Answer {
        conversation: ConvRef,
        flow_id: String,
        step: String,
        key: String,
        value: Value,
        raw: String,
        /// Stored apart (`anonymous_pending`, then `anonymous_answers`), with nothing that
        /// leads back to the caregiver.
        anonymous: bool,
        /// Free text (`expect: text`): removed after the retention period, unlike a score.
        free_text: bool,
    },
    Escalation {
        conversation: ConvRef,
        flow_id: String,
        step: String,
        priority: Priority,
        reason: String,
        /// The caregiver's words that caused it.
        answer: String,
        /// The alert text, when it is known already; empty when it is rendered from `template`
        /// at routing time (alerts show the escalation's id, which the store assigns).
        message: String,
        /// The alert template, and what it renders with besides `escalation.*` and `agency`
        /// (caregiver, supervisor, answers, vars, flow, and the caregiver's `address` and
        /// `lang` for the message `when_taken_up`).
        template: String,
        context: Value,
        /// Sent to the caregiver when a supervisor takes the alert up (a flow's choice).
        when_taken_up: Option<String>,
        /// The answer was anonymous and the caregiver agreed to be named.
        consented: bool,
    },
    /// Changes an escalation: its routing, a supervisor's reply, the follow-up clock. The
    /// runner computes the whole new state from the locked row it was given.
    UpdateEscalation(EscalationUpdate),
    /// The routing chain of an escalation, level by level (supervisor ids); written once, when
    /// it is first routed.
    EscalationChain {
        id: i64,
        levels: Vec<Vec<i64>>,
    },
    /// A line in an escalation's history. `Alerted`, `Reescalated` and `Resent` also mark the
    /// supervisor as notified.
    EscalationEvent {
        id: i64,
        action: EscalationAction,
        supervisor_id: Option<i64>,
        level: i64,
        detail: String,
    },
    /// A supervisor got today's digest (`day` is their local date).
    DigestSent {
        supervisor_id: i64,
        day: NaiveDate,
    },
    /// Replace the caregiver's flow-set fields and tags.
    CaregiverFields {
        fields: BTreeMap<String, Value>,
        tags: Vec<String>,
    },
    Outbound(NewOutbound),
    /// Remember that this stranger got today's polite reply.
    StrangerReplied {
        day: NaiveDate,
    },
    /// A YES to a shift offer from the snapshot's caregiver: the conditional award, then the
    /// messages of whatever it came to (see [`ShiftClaim`]).
    ClaimShift(ShiftClaim),
    /// A NO to a shift offer from the snapshot's caregiver.
    DeclineShift {
        offer_id: i64,
    },
    /// Link the snapshot's address (a Telegram chat) to a caregiver and/or a supervisor. A
    /// caregiver keeps one chat per channel: their other links on this channel are removed.
    Link {
        caregiver_id: Option<i64>,
        supervisor_id: Option<i64>,
    },
    /// Use up an invite (see [`crate::store::Store::handle_link`]); fails the plan if it was
    /// used meanwhile.
    UseInvite {
        id: i64,
    },
    /// Move a conversation to the snapshot's address: the caregiver answered it from another
    /// channel, so its next messages go there.
    MoveConversation {
        conversation: i64,
    },
    /// The snapshot's caregiver wrote on this channel (see [`Reach::last`]).
    CaregiverChannel {
        channel: Channel,
    },
    /// The snapshot's caregiver chose this language themselves.
    CaregiverLanguage {
        language: Lang,
    },
    /// Change consent for another address of the snapshot's caregiver (STOP ALL), with a
    /// ledger row.
    ConsentAt {
        address: Address,
        status: ConsentStatus,
        source: String,
        detail: String,
    },
}

impl Write {
    /// An answer to a question marked `anonymous`: its inbound message keeps neither its
    /// words nor its instant.
    pub fn is_anonymous_answer(&self) -> bool {
        matches!(
            self,
            Write::Answer {
                anonymous: true,
                ..
            }
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<Write>,
}

/// What happened to an inbound message handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Recorded and its plan applied.
    Processed,
    /// Already recorded (a provider retry): nothing changed.
    Duplicate,
}

/// An inbound message, normalized by its transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub address: Address,
    pub text: String,
    /// The provider's message id (Twilio `MessageSid`, Telegram `update_id`); unique per channel.
    pub external_id: String,
    pub received_at: DateTime<Utc>,
}
