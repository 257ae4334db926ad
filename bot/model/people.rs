//! Who carebot talks to and about: caregivers and supervisors as the roster import hands
//! them over and as the store reads them back, and the audiences a start selects.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;

use super::ConsentStatus;
use crate::domain::{Address, Channel, Lang};

/// One caregiver as the roster import hands it over (already validated).
#[derive(Debug, Clone, PartialEq)]
pub struct CaregiverRecord {
    pub external_id: String,
    pub first_name: String,
    pub last_name: String,
    /// E.164.
    pub phone: String,
    pub language: Lang,
    /// IANA time zone name.
    pub timezone: String,
    pub branch: String,
    pub supervisor_id: Option<String>,
    /// Sorted, deduplicated.
    pub groups: Vec<String>,
    pub consent_at: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorRecord {
    pub external_id: String,
    pub name: String,
    /// E.164.
    pub phone: String,
    pub email: String,
    pub branch: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Added,
    Updated,
    Unchanged,
    /// The row was not written; the string says why (for example the phone number belongs to
    /// another caregiver).
    Rejected,
}

/// A caregiver as the runner sees one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caregiver {
    pub id: i64,
    pub external_id: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: String,
    pub language: Lang,
    pub timezone: String,
    pub branch: String,
    pub groups: Vec<String>,
    pub consent_at: Option<NaiveDate>,
    pub active: bool,
    /// Fields set by flows (`set:`), as a JSON object.
    pub fields: BTreeMap<String, Value>,
    pub tags: Vec<String>,
    pub supervisor: Option<Supervisor>,
    /// How the caregiver can be reached besides their phone, and which channel they prefer.
    pub reach: Reach,
}

/// A caregiver's channels: consent on SMS, their Telegram chat (if linked), and which channel
/// program messages should use when both are open (see [`reach`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reach {
    /// Consent on their phone number.
    pub sms: ConsentStatus,
    /// Their linked Telegram chat and the consent in force there.
    pub telegram: Option<(String, ConsentStatus)>,
    /// Set by an operator (`carebot prefer`); wins over `last`.
    pub preferred: Option<Channel>,
    /// The channel they last wrote on; `None` until they first write on one that is not SMS.
    pub last: Option<Channel>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Supervisor {
    pub id: i64,
    pub external_id: String,
    pub name: String,
    pub phone: String,
    pub timezone: String,
    /// Their linked Telegram chat, when it is opted in: alerts go there instead of by SMS.
    pub telegram: Option<String>,
}

/// Who a `start` or a schedule is for. Only active caregivers are ever selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    All,
    Group(String),
    Branch(String),
    Phones(Vec<String>),
}

impl Audience {
    /// Parses `all`, `group:NAME`, `branch:NAME` or `phone:+1…[,+1…]`; phone numbers are
    /// checked and normalized to E.164.
    pub fn parse(s: &str) -> std::result::Result<Audience, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(Audience::All);
        }
        match s.split_once(':') {
            Some(("group", name)) if !name.is_empty() => Ok(Audience::Group(name.to_lowercase())),
            Some(("branch", name)) if !name.is_empty() => Ok(Audience::Branch(name.to_owned())),
            Some(("phone", list)) => list
                .split(',')
                .map(|p| {
                    crate::domain::Phone::parse(p)
                        .map(|p| p.as_str().to_owned())
                        .map_err(|e| format!("{p:?}: {e}"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Audience::Phones),
            _ => Err(format!(
                "audience {s:?} must be all, group:NAME, branch:NAME or phone:+1…[,+1…]"
            )),
        }
    }
}

impl Audience {
    /// Reads an audience as stored with a durable start: its phone numbers were checked when
    /// it was parsed from the operator's words, so they are taken as they are.
    pub fn parse_stored(s: &str) -> std::result::Result<Audience, String> {
        match s.split_once(':') {
            Some(("phone", list)) => Ok(Audience::Phones(
                list.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            _ => Audience::parse(s),
        }
    }
}

/// The form [`Audience::parse`] reads, as stored with a durable start.
impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audience::All => f.write_str("all"),
            Audience::Group(name) => write!(f, "group:{name}"),
            Audience::Branch(name) => write!(f, "branch:{name}"),
            Audience::Phones(phones) => write!(f, "phone:{}", phones.join(",")),
        }
    }
}

/// Where a program message to `c` goes: their Telegram chat or their phone, whichever they
/// prefer (an operator's `preferred`, else the channel they last wrote on, else SMS) among those
/// open to us (linked and opted in). When only one is open, that one; when neither, the phone,
/// where the start is then skipped for its reason (no consent, opted out).
pub fn reach(c: &Caregiver) -> Address {
    let sms = Address::new(Channel::Sms, c.phone.clone());
    let telegram = c
        .reach
        .telegram
        .as_ref()
        .filter(|(_, consent)| *consent == ConsentStatus::OptedIn)
        .map(|(chat, _)| Address::new(Channel::Telegram, chat.clone()));
    let sms_open = c.reach.sms == ConsentStatus::OptedIn;
    let wanted = c.reach.preferred.or(c.reach.last).unwrap_or(Channel::Sms);
    match telegram {
        Some(tg) if wanted == Channel::Telegram || !sms_open => tg,
        _ => sms,
    }
}

/// Where alerts to a supervisor go: their Telegram chat once they linked it (and have not
/// stopped it), else their phone.
pub fn supervisor_address(s: &Supervisor) -> Address {
    match &s.telegram {
        Some(chat) => Address::new(Channel::Telegram, chat.clone()),
        None => Address::new(Channel::Sms, s.phone.clone()),
    }
}
