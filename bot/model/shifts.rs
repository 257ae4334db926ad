//! Shift offers: an offer, who was texted and what they answered, and the writes that award
//! a shift to the first YES.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Caregiver, ConsentStatus, NewOutbound, Supervisor};

/// Where an offer stands. Only `open` offers can be taken; the other three are final, except
/// that a `filled` shift can still be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftStatus {
    Open,
    Filled,
    Expired,
    Cancelled,
}

impl ShiftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShiftStatus::Open => "open",
            ShiftStatus::Filled => "filled",
            ShiftStatus::Expired => "expired",
            ShiftStatus::Cancelled => "cancelled",
        }
    }
}

impl FromStr for ShiftStatus {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            ShiftStatus::Open,
            ShiftStatus::Filled,
            ShiftStatus::Expired,
            ShiftStatus::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| format!("unknown shift status {s:?} (open, filled, expired, cancelled)"))
    }
}

/// A caregiver's answer to an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftAnswer {
    Yes,
    No,
}

impl ShiftAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            ShiftAnswer::Yes => "yes",
            ShiftAnswer::No => "no",
        }
    }
}

impl FromStr for ShiftAnswer {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "yes" => Ok(ShiftAnswer::Yes),
            "no" => Ok(ShiftAnswer::No),
            other => Err(format!("unknown shift answer {other:?}")),
        }
    }
}

/// What a YES got. Stored with the answer (`shift_offer_recipients.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimOutcome {
    /// This YES took the shift.
    Won,
    /// The shift was already this caregiver's (a second YES, or two sent at once).
    Again,
    /// Someone else was first.
    Filled,
    /// The offer expired or was cancelled.
    Closed,
    /// The caregiver already holds a shift that overlaps this one.
    Clash,
}

impl ClaimOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimOutcome::Won => "won",
            ClaimOutcome::Again => "again",
            ClaimOutcome::Filled => "filled",
            ClaimOutcome::Closed => "closed",
            ClaimOutcome::Clash => "clash",
        }
    }
}

/// A new offer, validated by `carebot shifts offer`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewShiftOffer {
    pub client_ref: String,
    pub location: String,
    pub notes: String,
    pub branch: String,
    /// The branch's IANA zone.
    pub timezone: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Never after `starts_at`.
    pub expires_at: DateTime<Utc>,
    /// As typed (`all`, `group:NAME`, …): every wave reads it again.
    pub audience: String,
    /// The supervisor told about the outcome, by external id.
    pub supervisor: Option<String>,
    /// Caregivers per wave; 0 sends to everyone eligible at once.
    pub wave_size: u32,
    pub wave_minutes: u32,
    pub created_at: DateTime<Utc>,
}

/// An offer as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftOffer {
    pub id: i64,
    pub code: u32,
    pub client_ref: String,
    pub location: String,
    pub notes: String,
    pub branch: String,
    pub timezone: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub audience: String,
    pub supervisor: Option<Supervisor>,
    pub wave_size: u32,
    pub wave_minutes: u32,
    pub waves_sent: u32,
    pub next_wave_at: Option<DateTime<Utc>>,
    pub status: ShiftStatus,
    /// The winner's caregiver id and external id.
    pub filled_by_id: Option<i64>,
    pub filled_by: Option<String>,
    pub filled_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An offer with how it went, for `carebot shifts list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftListing {
    pub offer: ShiftOffer,
    /// Caregivers it was texted to, and how many answered yes and no.
    pub sent: u32,
    pub yes: u32,
    pub no: u32,
}

/// An offer the snapshot's caregiver was texted, with their answer so far. Part of every
/// inbound [`super::Snapshot`], so that a YES is recognised before any flow sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldShift {
    pub offer: ShiftOffer,
    pub sent_at: DateTime<Utc>,
    pub answer: Option<ShiftAnswer>,
    /// The caregiver took this shift.
    pub won: bool,
}

/// A YES to an offer, as a write: the store runs the conditional award and queues the
/// messages of whichever outcome it got. The runner cannot know the outcome when it decides
/// (on PostgreSQL another instance may be awarding the same shift right now), so it renders
/// every outcome's messages and the store picks.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftClaim {
    pub offer_id: i64,
    /// The confirmation to the caregiver and the supervisor's alert.
    pub won: Vec<NewOutbound>,
    pub again: Vec<NewOutbound>,
    pub filled: Vec<NewOutbound>,
    pub closed: Vec<NewOutbound>,
    pub clash: Vec<NewOutbound>,
}

impl ShiftClaim {
    pub fn messages(&self, outcome: ClaimOutcome) -> &[NewOutbound] {
        match outcome {
            ClaimOutcome::Won => &self.won,
            ClaimOutcome::Again => &self.again,
            ClaimOutcome::Filled => &self.filled,
            ClaimOutcome::Closed => &self.closed,
            ClaimOutcome::Clash => &self.clash,
        }
    }
}

/// Why an offer is being handled outside an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftTrigger {
    /// `carebot shifts offer`, right after creating it: the first wave, if nobody sent it yet.
    Create,
    /// The scheduler: its deadline passed or its next wave is due.
    Due,
    /// `carebot shifts cancel`.
    Cancel,
}

/// Someone an offer was texted to.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftRecipient {
    pub caregiver_id: i64,
    pub wave: u32,
    pub answer: Option<ShiftAnswer>,
}

/// A caregiver in the offer's audience who has not been texted it yet, with what eligibility
/// and ranking need.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftCandidate {
    pub caregiver: Caregiver,
    /// Consent on SMS, where offers are sent.
    pub consent: ConsentStatus,
    /// Shifts won in the seven days before now, and the last time they won one.
    pub won_this_week: u32,
    pub last_won_at: Option<DateTime<Utc>>,
    /// They already hold a shift that overlaps this one.
    pub clash: bool,
    /// Other open offers they were texted and have not answered: when there are any, texts
    /// carry the offer's code.
    pub open_offers_held: u32,
}

/// What the runner needs to decide what happens to an offer (a wave, expiry, cancellation),
/// read inside the transaction that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftSnapshot {
    pub offer: ShiftOffer,
    pub trigger: ShiftTrigger,
    pub recipients: Vec<ShiftRecipient>,
    /// Who took it, when it is filled.
    pub winner: Option<Caregiver>,
    /// Filled in only when a wave is due.
    pub candidates: Vec<ShiftCandidate>,
}

/// One change to an offer.
#[derive(Debug, Clone, PartialEq)]
pub enum ShiftWrite {
    /// Close the offer (`expired` or `cancelled`). Offer texts still queued are suppressed.
    Close { status: ShiftStatus },
    /// Text the offer to a caregiver and remember it.
    Offer {
        caregiver_id: i64,
        wave: u32,
        outbound: NewOutbound,
    },
    /// A wave went out; the next is due at `next_at` (never, when `None`).
    Wave {
        waves_sent: u32,
        next_at: Option<DateTime<Utc>>,
    },
    /// Any other message: supervisor alerts, a cancellation notice.
    Outbound(NewOutbound),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShiftPlan {
    pub writes: Vec<ShiftWrite>,
}

/// Codes go round from 10 to 99 so that a code freed by a closed offer is not handed out again
/// for weeks; past 90 open offers at once they grow a digit.
const CODES: std::ops::RangeInclusive<u32> = 10..=99;

/// The code for a new offer: the next after the last one handed out, skipping codes of open
/// offers.
pub fn next_code(last: Option<u32>, open: &HashSet<u32>) -> u32 {
    let span = CODES.end() - CODES.start() + 1;
    let first = match last {
        Some(c) if CODES.contains(&c) => c + 1 - CODES.start(),
        _ => 0,
    };
    (0..span)
        .map(|i| CODES.start() + (first + i) % span)
        .find(|c| !open.contains(c))
        .unwrap_or_else(|| (100..).find(|c| !open.contains(c)).expect("a free code"))
}
