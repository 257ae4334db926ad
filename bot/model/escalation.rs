//! Escalations after they are raised, as the follow-up clock, the supervisors' replies and
//! the digests see them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Caregiver;
use crate::domain::{Address, Priority};

/// Where an escalation stands. The names are the export's `status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationStatus {
    /// Raised; nobody has replied yet.
    Open,
    /// A supervisor replied ACK (or NOTE).
    Acknowledged,
    /// A supervisor replied CALL: they will call the caregiver.
    Calling,
    /// A supervisor replied DONE.
    Done,
}

impl EscalationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationStatus::Open => "open",
            EscalationStatus::Acknowledged => "acknowledged",
            EscalationStatus::Calling => "calling",
            EscalationStatus::Done => "done",
        }
    }
}

/// What happened to an escalation, as its history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationAction {
    Raised,
    /// The alert went to a contact of the first level it was routed to.
    Alerted,
    /// Not acknowledged in its window: sent on to a contact of the next level.
    Reescalated,
    /// Not acknowledged in its window: sent again to a contact who had it.
    Resent,
    /// Nobody to send it to: no supervisor, branch contact or program staff on record.
    Unrouted,
    Ack,
    Call,
    Note,
    Done,
    /// The caregiver was told that a supervisor took it up.
    CaregiverTold,
}

impl EscalationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationAction::Raised => "raised",
            EscalationAction::Alerted => "alerted",
            EscalationAction::Reescalated => "reescalated",
            EscalationAction::Resent => "resent",
            EscalationAction::Unrouted => "unrouted",
            EscalationAction::Ack => "ack",
            EscalationAction::Call => "call",
            EscalationAction::Note => "note",
            EscalationAction::Done => "done",
            EscalationAction::CaregiverTold => "caregiver_told",
        }
    }

    /// Whether the event means the supervisor was sent the alert.
    pub fn notifies(self) -> bool {
        matches!(
            self,
            EscalationAction::Alerted | EscalationAction::Reescalated | EscalationAction::Resent
        )
    }
}

/// Someone an alert can go to: a supervisor, a branch contact or program staff (all of them
/// are rows of the supervisors roster), with the address their alerts go to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    /// Where alerts reach them: their linked Telegram chat while it is open to us, else their
    /// phone on SMS.
    pub address: Address,
    pub timezone: String,
    /// They texted STOP on that address: alerts there would be suppressed, so routing skips them.
    pub opted_out: bool,
}

/// An escalation as the follow-up clock and the supervisor replies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationState {
    pub id: i64,
    pub caregiver_id: i64,
    pub flow_id: String,
    pub priority: Priority,
    pub reason: String,
    pub answer: String,
    /// The alert text as sent (empty until it is first routed).
    pub message: String,
    pub status: EscalationStatus,
    pub level: i64,
    /// Who has it: the contact it was last routed to, or who took it up.
    pub supervisor_id: Option<i64>,
    pub template: String,
    pub context: Value,
    pub when_taken_up: Option<String>,
    pub consented: bool,
    pub resends: i64,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
}

/// The new state of an escalation, written over the old ([`Write::UpdateEscalation`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationUpdate {
    pub id: i64,
    pub status: EscalationStatus,
    pub level: i64,
    pub supervisor_id: Option<i64>,
    pub message: String,
    pub due_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub resends: i64,
}

impl EscalationState {
    /// The update that leaves everything as it is; change what the decision changes.
    pub fn update(&self) -> EscalationUpdate {
        EscalationUpdate {
            id: self.id,
            status: self.status,
            level: self.level,
            supervisor_id: self.supervisor_id,
            message: self.message.clone(),
            due_at: self.due_at,
            acknowledged_at: self.acknowledged_at,
            closed_at: self.closed_at,
            resends: self.resends,
        }
    }
}

/// One contact in an escalation's routing chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainContact {
    pub contact: Contact,
    pub level: i64,
    pub notified_at: Option<DateTime<Utc>>,
}

/// What the follow-up clock needs to route or re-route one escalation, read (and on
/// PostgreSQL locked) in the transaction that applies the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationSnapshot {
    pub escalation: EscalationState,
    /// The caregiver it is about (with their supervisor's roster row).
    pub caregiver: Option<Caregiver>,
    /// The caregiver's supervisor as a contact.
    pub supervisor: Option<Contact>,
    /// The contacts the settings name (branch contacts, program staff) that are on the roster.
    pub named: Vec<Contact>,
    /// The chain written at the first routing; empty before it.
    pub chain: Vec<ChainContact>,
}

/// An alert as a supervisor's desk shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeskAlert {
    pub escalation: EscalationState,
    /// The caregiver as alerts name them: first name and last initial.
    pub caregiver: String,
    pub branch: String,
    pub chain: Vec<ChainContact>,
}

/// A supervisor who wrote in (or is due a digest), with the alerts they may act on: those
/// routed to them or to the level before theirs, not closed more than a week ago.
#[derive(Debug, Clone, PartialEq)]
pub struct Desk {
    pub me: Contact,
    pub alerts: Vec<DeskAlert>,
    /// The local day of their last digest.
    pub last_digest: Option<NaiveDate>,
}
