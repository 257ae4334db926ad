//! Rows as the store reads them back: the `*Db` structs that `query_as` decodes, and their
//! conversion (checked) into the model's types, with the parse and JSON helpers they share.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use sqlx::FromRow;

use super::Ts;
use crate::domain::{Address, Channel};
use crate::model::{
    Caregiver, ConsentStatus, Contact, ConversationRow, EscalationState, OutboundRow, Reach,
    Supervisor,
};
use crate::store::{Result, StoreError};

// ---------------------------------------------------------------------------------------------
// Rows as stored: text where Rust has an enum or JSON, converted (and checked) on the way out

#[derive(FromRow)]
pub(super) struct CaregiverDb {
    pub(super) id: i64,
    pub(super) external_id: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) phone: String,
    pub(super) timezone: String,
    pub(super) branch: String,
    pub(super) consent_at: Option<NaiveDate>,
    pub(super) active: bool,
    pub(super) fields: String,
    pub(super) tags: String,
    pub(super) sup_id: Option<i64>,
    pub(super) sup_external_id: Option<String>,
    pub(super) sup_name: Option<String>,
    pub(super) sup_phone: Option<String>,
    pub(super) sup_timezone: Option<String>,
    pub(super) chosen_language: String,
    pub(super) preferred_channel: Option<String>,
    pub(super) last_channel: Option<String>,
    pub(super) sms_consent: Option<String>,
    pub(super) telegram_chat: Option<String>,
    pub(super) telegram_consent: Option<String>,
    pub(super) sup_telegram: Option<String>,
}

impl CaregiverDb {
    pub(super) fn into_caregiver(self, groups: Vec<String>) -> Result<Caregiver> {
        let supervisor = match (self.sup_id, self.sup_external_id) {
            (Some(id), Some(external_id)) => Some(Supervisor {
                id,
                external_id,
                name: self.sup_name.unwrap_or_default(),
                phone: self.sup_phone.unwrap_or_default(),
                timezone: self.sup_timezone.unwrap_or_default(),
                telegram: self.sup_telegram,
            }),
            _ => None,
        };
        let consent = |status: Option<String>| -> Result<ConsentStatus> {
            status.map_or(Ok(ConsentStatus::Unknown), |s| parse("consent status", &s))
        };
        let channel = |text: Option<String>| -> Result<Option<Channel>> {
            text.map(|c| parse("caregiver channel", &c)).transpose()
        };
        let reach = Reach {
            sms: consent(self.sms_consent)?,
            telegram: match self.telegram_chat {
                Some(chat) => Some((chat, consent(self.telegram_consent)?)),
                None => None,
            },
            preferred: channel(self.preferred_channel)?,
            last: channel(self.last_channel)?,
        };
        Ok(Caregiver {
            id: self.id,
            language: parse("caregiver language", &self.chosen_language)?,
            fields: json("caregiver fields", &self.fields)?,
            tags: json("caregiver tags", &self.tags)?,
            external_id: self.external_id,
            first_name: self.first_name,
            last_name: self.last_name,
            phone: self.phone,
            timezone: self.timezone,
            branch: self.branch,
            groups,
            consent_at: self.consent_at,
            active: self.active,
            supervisor,
            reach,
        })
    }
}

/// A caregiver as the roster import compares it.
#[derive(FromRow)]
pub(super) struct RosterDb {
    pub(super) id: i64,
    pub(super) external_id: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) phone: String,
    pub(super) language: String,
    pub(super) timezone: String,
    pub(super) branch: String,
    pub(super) supervisor_external_id: Option<String>,
    pub(super) consent_at: Option<NaiveDate>,
    pub(super) active: bool,
}

#[derive(FromRow)]
pub(super) struct SupervisorDb {
    pub(super) id: i64,
    pub(super) external_id: String,
    pub(super) name: String,
    pub(super) phone: String,
    pub(super) email: String,
    pub(super) branch: String,
    pub(super) timezone: String,
}

/// A supervisor as a link or an invite finds one.
#[derive(FromRow)]
pub(super) struct LinkedSupervisorDb {
    pub(super) id: i64,
    pub(super) external_id: String,
    pub(super) name: String,
    pub(super) phone: String,
    pub(super) timezone: String,
}

impl LinkedSupervisorDb {
    pub(super) fn into_supervisor(self) -> Supervisor {
        Supervisor {
            id: self.id,
            external_id: self.external_id,
            name: self.name,
            phone: self.phone,
            timezone: self.timezone,
            telegram: None,
        }
    }
}

#[derive(FromRow)]
pub(super) struct InviteDb {
    pub(super) id: i64,
    pub(super) caregiver_id: Option<i64>,
    pub(super) supervisor_id: Option<i64>,
    pub(super) expires_at: Ts,
    pub(super) used_at: Option<Ts>,
}

#[derive(FromRow, Clone, PartialEq)]
pub(super) struct ConversationDb {
    pub(super) id: i64,
    pub(super) caregiver_id: i64,
    pub(super) channel: String,
    pub(super) address: String,
    pub(super) flow_id: String,
    pub(super) flow_rev: i64,
    pub(super) status: String,
    pub(super) state: String,
    pub(super) wake_at: Option<Ts>,
    pub(super) started_at: Ts,
}

impl ConversationDb {
    pub(super) fn into_row(self) -> Result<ConversationRow> {
        Ok(ConversationRow {
            id: self.id,
            caregiver_id: self.caregiver_id,
            channel: parse("conversation channel", &self.channel)?,
            address: self.address,
            flow_id: self.flow_id,
            flow_rev: self.flow_rev,
            status: parse("conversation status", &self.status)?,
            state: json("conversation state", &self.state)?,
            wake_at: self.wake_at.map(|t| t.0),
            started_at: self.started_at.0,
        })
    }
}

#[derive(FromRow)]
pub(super) struct OutboundDb {
    pub(super) id: i64,
    pub(super) channel: String,
    pub(super) address: String,
    pub(super) caregiver_id: Option<i64>,
    pub(super) kind: String,
    pub(super) body: String,
    pub(super) segments: i64,
    pub(super) attempts: i64,
    pub(super) buttons: String,
    pub(super) status: String,
    pub(super) created_at: Ts,
    pub(super) conversation_id: Option<i64>,
}

impl OutboundDb {
    pub(super) fn into_row(self) -> Result<OutboundRow> {
        Ok(OutboundRow {
            id: self.id,
            address: Address::new(parse("outbound channel", &self.channel)?, self.address),
            caregiver_id: self.caregiver_id,
            kind: parse("outbound kind", &self.kind)?,
            body: self.body,
            segments: count("outbound segments", self.segments)?,
            attempts: count("outbound attempts", self.attempts)?,
            buttons: json("outbound buttons", &self.buttons)?,
            conversation_id: self.conversation_id,
            created_at: self.created_at.0,
            timezone: None,
        })
    }
}

#[derive(FromRow)]
pub(super) struct AnswerDb {
    pub(super) caregiver: String,
    pub(super) flow_id: String,
    pub(super) step: String,
    pub(super) key: String,
    pub(super) value: String,
    pub(super) raw: String,
    pub(super) answered_at: Ts,
}

#[derive(FromRow)]
pub(super) struct EscalationDb {
    pub(super) id: i64,
    pub(super) caregiver: String,
    pub(super) supervisor: Option<String>,
    pub(super) priority: String,
    pub(super) reason: String,
    pub(super) answer: String,
    pub(super) message: String,
    pub(super) status: String,
    pub(super) raised_at: Ts,
    pub(super) acknowledged_at: Option<Ts>,
    pub(super) closed_at: Option<Ts>,
}

#[derive(FromRow)]
pub(super) struct EscalationStateDb {
    pub(super) id: i64,
    pub(super) caregiver_id: i64,
    pub(super) flow_id: String,
    pub(super) priority: String,
    pub(super) reason: String,
    pub(super) answer: String,
    pub(super) message: String,
    pub(super) status: String,
    pub(super) level: i64,
    pub(super) supervisor_id: Option<i64>,
    pub(super) template: String,
    pub(super) context: String,
    pub(super) when_taken_up: Option<String>,
    pub(super) caregiver_consent: bool,
    pub(super) resends: i64,
    pub(super) raised_at: Ts,
    pub(super) acknowledged_at: Option<Ts>,
    pub(super) closed_at: Option<Ts>,
    pub(super) due_at: Option<Ts>,
}

impl EscalationStateDb {
    pub(super) fn into_state(self) -> Result<EscalationState> {
        Ok(EscalationState {
            id: self.id,
            caregiver_id: self.caregiver_id,
            priority: parse("escalation priority", &self.priority)?,
            status: parse("escalation status", &self.status)?,
            context: json("escalation context", &self.context)?,
            flow_id: self.flow_id,
            reason: self.reason,
            answer: self.answer,
            message: self.message,
            level: self.level,
            supervisor_id: self.supervisor_id,
            template: self.template,
            when_taken_up: self.when_taken_up,
            consented: self.caregiver_consent,
            resends: self.resends,
            raised_at: self.raised_at.0,
            acknowledged_at: self.acknowledged_at.map(|t| t.0),
            closed_at: self.closed_at.map(|t| t.0),
            due_at: self.due_at.map(|t| t.0),
        })
    }
}

#[derive(FromRow)]
pub(super) struct ContactDb {
    pub(super) id: i64,
    pub(super) external_id: String,
    pub(super) name: String,
    pub(super) timezone: String,
    pub(super) channel: String,
    pub(super) address: String,
    pub(super) opted_out: bool,
}

impl ContactDb {
    pub(super) fn into_contact(self) -> Result<Contact> {
        Ok(Contact {
            id: self.id,
            address: Address::new(parse("contact channel", &self.channel)?, self.address),
            external_id: self.external_id,
            name: self.name,
            timezone: self.timezone,
            opted_out: self.opted_out,
        })
    }
}

#[derive(FromRow)]
pub(super) struct ChainDb {
    pub(super) level: i64,
    pub(super) notified_at: Option<Ts>,
    #[sqlx(flatten)]
    pub(super) contact: ContactDb,
}

/// A chain row with the escalation it belongs to, for a desk's many alerts at once.
#[derive(FromRow)]
pub(super) struct DeskChainDb {
    pub(super) escalation_id: i64,
    #[sqlx(flatten)]
    pub(super) chain: ChainDb,
}

#[derive(FromRow)]
pub(super) struct EscalationEventDb {
    pub(super) action: String,
    pub(super) supervisor: Option<String>,
    pub(super) level: i64,
    pub(super) detail: String,
    pub(super) at: Ts,
}

/// A pulse row before its group is read out of the caregiver's fields.
#[derive(FromRow)]
pub(super) struct PulseDb {
    pub(super) caregiver_id: i64,
    pub(super) started_at: Ts,
    pub(super) branch: String,
    pub(super) fields: String,
}

#[derive(FromRow)]
pub(super) struct PulseAnswerDb {
    pub(super) caregiver_id: i64,
    pub(super) started_at: Ts,
    pub(super) branch: String,
    pub(super) fields: String,
    pub(super) value: String,
}

#[derive(FromRow)]
pub(super) struct PulseAnonymousDb {
    pub(super) cohort_week: NaiveDate,
    pub(super) cohort_branch: String,
    pub(super) cohort_state: Option<String>,
    pub(super) value: String,
}

#[derive(FromRow)]
pub(super) struct PulseEscalationDb {
    pub(super) priority: String,
    pub(super) started_at: Ts,
    pub(super) raised_at: Ts,
    pub(super) acknowledged_at: Option<Ts>,
    pub(super) closed_at: Option<Ts>,
    pub(super) branch: String,
    pub(super) fields: String,
}

/// The state a caregiver is reported under: the `state` field flows set (the benefits
/// screener asks it), if any.
pub(super) fn state_of(fields: &str) -> Option<String> {
    serde_json::from_str::<BTreeMap<String, serde_json::Value>>(fields)
        .ok()?
        .get("state")?
        .as_str()
        .map(str::to_owned)
}

#[derive(FromRow)]
pub(super) struct FlowRevisionDb {
    pub(super) id: i64,
    pub(super) flow_id: String,
    pub(super) version: i64,
    pub(super) source: String,
}

#[derive(FromRow)]
pub(super) struct LedgerDb {
    pub(super) status: String,
    pub(super) source: String,
    pub(super) detail: String,
    pub(super) at: Ts,
}

pub(in crate::store) fn parse<T: FromStr>(what: &str, text: &str) -> Result<T>
where
    T::Err: Display,
{
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what} {text:?}: {e}")))
}

pub(super) fn json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(in crate::store) fn to_json(value: &impl serde::Serialize) -> String {
    // Serializing maps with string keys, vectors and `Value`s cannot fail.
    serde_json::to_string(value).expect("JSON serialization of plain data")
}

pub(super) fn count(what: &str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} out of range")))
}
