//! Durable starts, recurring schedules and training assignments (the roster at scale).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Audience, Snapshot};

/// How far back contact pressure looks: a caregiver's weekly cap counts the program
/// conversations started in the 7 days before now.
pub const CAP_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// Who asked for a durable start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartOrigin {
    /// `carebot start` (now, or `--at` later).
    Cli,
    /// A flow's `schedule:`.
    Schedule,
}

impl StartOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            StartOrigin::Cli => "cli",
            StartOrigin::Schedule => "schedule",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartStatus {
    /// Not begun.
    Pending,
    /// Going through its audience.
    Running,
    /// Through its audience; capped caregivers wait for room in their weekly cap.
    Waiting,
    Done,
}

impl StartStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StartStatus::Pending => "pending",
            StartStatus::Running => "running",
            StartStatus::Waiting => "waiting",
            StartStatus::Done => "done",
        }
    }
}

/// A flow to start for an audience, recorded before any caregiver is touched.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStart {
    pub flow_id: String,
    /// The flow's program (`shift`, `training`, `benefits`, `survey`, `onboarding`).
    pub program: String,
    /// Lower runs first when several starts are due at once.
    pub priority: i64,
    pub audience: Audience,
    /// Only the audience's caregivers in this IANA zone.
    pub timezone: Option<String>,
    pub vars: BTreeMap<String, Value>,
    pub origin: StartOrigin,
    /// Starts with the same key are one start: a second `create_start` returns the first's id.
    pub dedupe_key: Option<String>,
    pub run_at: DateTime<Utc>,
}

/// A durable start as stored, with its progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartRow {
    pub id: i64,
    pub flow_id: String,
    pub program: String,
    pub priority: i64,
    pub audience: String,
    pub timezone: Option<String>,
    pub vars: BTreeMap<String, Value>,
    pub origin: StartOrigin,
    pub run_at: DateTime<Utc>,
    pub status: StartStatus,
    /// Caregivers in the audience when the start began.
    pub total: u64,
    pub processed: u64,
    pub started: u64,
    /// Skipped caregivers by reason ("no consent", "capped"…).
    pub skipped: BTreeMap<String, u64>,
    /// Capped caregivers still waiting for room in their weekly cap.
    pub waiting: u64,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a start decision reads about one caregiver: the usual snapshot, plus how many program
/// conversations they began in the trailing week (contact pressure).
#[derive(Debug, Clone, PartialEq)]
pub struct StartSnapshot {
    pub snapshot: Snapshot,
    /// Program conversations (onboarding excluded) started in the week before `now`.
    pub week_count: u32,
    /// When the oldest of those started: its week ends when a slot frees.
    pub week_oldest: Option<DateTime<Utc>>,
    /// Per-caregiver start variables (a training assignment's module, link and due date).
    pub vars: BTreeMap<String, Value>,
}

/// What a start did for one caregiver.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    Started,
    /// Not started, for this reason ("opted out", "capped"…).
    Skipped(String),
    /// Capped, and the flow waits: try again at `retry_at`.
    Wait {
        retry_at: DateTime<Utc>,
    },
}

/// What one batch of a durable start did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartBatch {
    /// Caregivers handled in this batch.
    pub handled: usize,
    /// Nothing more to do now: finished, or only waits that are not due yet.
    pub idle: bool,
    /// Another runner holds the start now; nothing was written.
    pub lease_lost: bool,
}

/// A flow's `schedule:` for the caregivers of one time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub flow_id: String,
    pub timezone: String,
    pub cron: String,
    pub audience: String,
    pub next_run_at: DateTime<Utc>,
}

/// One row of `carebot import training`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRecord {
    /// The caregiver's `external_id`.
    pub caregiver: String,
    pub module: String,
    pub link: String,
    pub due_date: NaiveDate,
}

/// What a training batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingBatch {
    pub started: usize,
    /// Assignments tried and put off, by reason.
    pub skipped: BTreeMap<String, usize>,
}

/// A training assignment as stored (for tests and reports).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingRow {
    pub caregiver: String,
    pub module: String,
    pub link: String,
    pub due_date: NaiveDate,
    /// assigned, started, done or expired.
    pub status: String,
    pub conversation_id: Option<i64>,
    pub next_try_at: DateTime<Utc>,
    pub last_skip: Option<String>,
}
