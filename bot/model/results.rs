//! What exports and reports read: answers, escalations and their history, pulse rows.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::Priority;

/// A stored answer, for exports and the simulator's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerRow {
    pub caregiver: String,
    pub flow: String,
    pub step: String,
    pub key: String,
    pub answer: Value,
    pub raw: String,
    pub answered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationRow {
    pub id: i64,
    pub caregiver: String,
    pub supervisor: Option<String>,
    pub priority: String,
    pub reason: String,
    pub answer: String,
    pub message: String,
    pub status: String,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// One row of the week-by-week data `report pulse` aggregates: a pulse started for a
/// caregiver, an answer to the score question, or an escalation. The group columns are the
/// caregiver's branch and state (`fields.state`) now, or as kept on an anonymous answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PulseRow {
    Asked {
        caregiver_id: i64,
        started_at: DateTime<Utc>,
        branch: String,
        state: Option<String>,
    },
    /// A named answer, placed by its conversation.
    Answered {
        caregiver_id: i64,
        started_at: DateTime<Utc>,
        branch: String,
        state: Option<String>,
        value: Value,
    },
    /// An anonymous answer, placed by what it kept.
    AnsweredAnonymously {
        week: NaiveDate,
        branch: String,
        state: Option<String>,
        value: Value,
    },
    /// An escalation the flow raised, placed (like its answer) by when its survey started.
    Escalation {
        priority: Priority,
        /// When its conversation started (when it was raised, if it had none).
        started_at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
        acknowledged_at: Option<DateTime<Utc>>,
        closed_at: Option<DateTime<Utc>>,
        branch: String,
        state: Option<String>,
    },
}

/// A line in an escalation's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationEventRow {
    pub action: String,
    /// The supervisor's external id.
    pub supervisor: Option<String>,
    pub level: i64,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// The Monday (UTC) of the week `t` falls in: how anonymous answers and `report pulse` place
/// things in weeks.
pub fn week_start(t: DateTime<Utc>) -> NaiveDate {
    let day = t.date_naive();
    day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()))
}
