//! The scheduler: the one place that computes due work from the database and feeds it to the
//! runner and the programs on it. One [`Scheduler::tick`] runs everything due, in order: shift
//! offers (waves, deadlines), conversation timers (reminders, expiries), recurring starts (each
//! flow's `schedule:`, per caregiver time zone), one-off and interrupted starts and training
//! assignments, the follow-up clock of escalations, the supervisors' daily digests, and the
//! retention sweep. Everything due is a row (`shift_offers.next_wave_at`,
//! `schedules.next_run_at`, `flow_starts.run_at`, `training_assignments.next_try_at`,
//! `conversations.wake_at`, `escalations.due_at`), claimed in its own transaction, so a restart
//! neither loses nor repeats anything and several instances can tick side by side. Time comes
//! from a [`Clock`], so tests move it instead of sleeping.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::Clock;
use crate::flow::definition::parse_cron;
use crate::model::{Audience, ScheduleRow, StartOrigin};
use crate::privacy::{Retention, Swept};
use crate::runner::{RunError, Runner};
use crate::store::Store;

/// The next run of `cron` strictly after `after`, read on the wall clock of `tz`.
///
/// Daylight-saving changes follow croner (the Open Cron Pattern Specification): a time that
/// happens twice when clocks go back (01:30) runs once, at its first occurrence; a time that
/// does not exist when clocks go forward (02:30) runs at the first instant after the gap.
pub fn next_run(cron: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Shift offers that sent a wave or expired.
    pub shifts: usize,
    /// Recurring runs that came due and were recorded as starts.
    pub fired: usize,
    /// Conversations started (durable starts and training assignments).
    pub started: usize,
    /// Conversation timers fired.
    pub timers: usize,
    /// Escalations routed onward or reminded.
    pub escalations: usize,
    /// Daily digests sent.
    pub digests: usize,
    /// What the retention sweep removed, when it ran.
    pub swept: Option<Swept>,
}

impl Tick {
    pub fn is_empty(&self) -> bool {
        self.queued() == 0 && self.swept.is_none_or(|s| s.total() == 0 && s.mixed == 0)
    }

    /// How many pieces of work may have queued messages: the dispatchers are woken when any
    /// did, so what a tick decided leaves at once rather than at their next poll.
    pub fn queued(&self) -> usize {
        self.shifts + self.fired + self.started + self.timers + self.escalations + self.digests
    }
}

/// One job of a tick that failed. The others still ran: a broken shift offer must not stop
/// reminders, nor a failing digest the retention sweep.
#[derive(Debug)]
pub struct JobFailed {
    /// Which job: "shift offers", "timers", "recurring starts", "starts", "escalations",
    /// "digests", "retention sweep".
    pub job: &'static str,
    pub error: Box<dyn StdError + Send + Sync>,
}

/// A tick in which some jobs failed: what the rest did, and what failed.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.failed))]
pub struct TickFailed {
    pub done: Tick,
    pub failed: Vec<JobFailed>,
}

fn describe(failed: &[JobFailed]) -> String {
    failed
        .iter()
        .map(|f| format!("{} failed: {}", f.job, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

pub struct Scheduler<S> {
    runner: Arc<Runner<S>>,
    clock: Clock,
    /// How long text is kept; `None` (tests that do not look at it) leaves the sweep off.
    retention: Option<Retention>,
    /// When the schedule rows were last brought in line with the flows and the roster's time
    /// zones; once a minute is enough.
    synced: Mutex<Option<DateTime<Utc>>>,
    /// When digests were last looked for, and when the retention sweep runs next.
    last_digests: Mutex<Option<DateTime<Utc>>>,
    next_sweep: Mutex<Option<DateTime<Utc>>>,
}

/// How often the schedule rows are re-derived from the flow files and the roster.
const SYNC_EVERY: chrono::Duration = chrono::Duration::minutes(1);
/// How often digests are looked for: they go out at a supervisor's local hour, so a minute is
/// exact enough, and the query is not free.
const DIGESTS_EVERY: chrono::Duration = chrono::Duration::minutes(1);
/// How often the retention sweep looks for text past its time when it has no backlog.
const SWEEP_EVERY: chrono::Duration = chrono::Duration::minutes(10);
/// Rows of each kind per sweep transaction.
const SWEEP_BATCH: u32 = 1000;

impl<S: Store + Clone> Scheduler<S> {
    pub fn new(runner: Arc<Runner<S>>, clock: Clock) -> Self {
        Scheduler {
            runner,
            clock,
            retention: None,
            synced: Mutex::new(None),
            last_digests: Mutex::new(None),
            next_sweep: Mutex::new(None),
        }
    }

    /// Turns the retention sweep on: text older than `retention` is removed, a batch per tick
    /// while there is a backlog, otherwise every few minutes.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Does everything due now, in order: shift offers, conversation timers, recurring runs,
    /// due starts and training assignments (highest priority first), escalation follow-ups,
    /// digests (once a minute), the retention sweep. A job that fails is reported and the
    /// others still run; the error lists every failure and what the rest did.
    pub async fn tick(&self) -> Result<Tick, TickFailed> {
        let now = self.clock.now();
        let mut done = Tick::default();
        let mut failed = Vec::new();
        let mut check =
            |job: &'static str, result: Result<usize, Box<dyn StdError + Send + Sync>>| {
                result.unwrap_or_else(|error| {
                    failed.push(JobFailed { job, error });
                    0
                })
            };
        // Shift waves first: an offer is the most urgent thing carebot sends.
        done.shifts = check("shift offers", boxed(self.runner.run_due_shifts(now).await));
        // Timers before starts: a conversation that expires now frees its caregiver for a
        // start due now.
        done.timers = check("timers", boxed(self.runner.run_due(now).await));
        done.fired = check("recurring starts", boxed(self.fire_schedules(now).await));
        done.started = check("starts", boxed(self.runner.run_due_starts(now).await));
        done.escalations = check(
            "escalations",
            boxed(self.runner.run_due_escalations(now).await),
        );
        if due_every(&self.last_digests, now, DIGESTS_EVERY) {
            done.digests = check("digests", boxed(self.runner.send_digests(now).await));
        }
        if let Some(retention) = &self.retention {
            match self.sweep(retention, now).await {
                Ok(swept) => done.swept = swept,
                Err(error) => failed.push(JobFailed {
                    job: "retention sweep",
                    error,
                }),
            }
        }
        if failed.is_empty() {
            Ok(done)
        } else {
            Err(TickFailed { done, failed })
        }
    }

    /// The retention sweep, when it is due: every few minutes, or at every tick while the last
    /// sweep left a backlog (the first run on years of data), a batch at a time, so replies
    /// never wait behind it.
    async fn sweep(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> Result<Option<Swept>, Box<dyn StdError + Send + Sync>> {
        {
            let mut next = self.next_sweep.lock().expect("scheduler poisoned");
            // A clock set back by more than the interval must not stop the sweep.
            if next.is_some_and(|t| now < t && t - now <= SWEEP_EVERY) {
                return Ok(None);
            }
            *next = Some(now + SWEEP_EVERY);
        }
        let swept = self
            .runner
            .store
            .sweep_retention(retention, now, SWEEP_BATCH)
            .await?;
        if swept.more {
            *self.next_sweep.lock().expect("scheduler poisoned") = Some(now);
        }
        Ok(Some(swept))
    }

    /// Brings the schedule rows in line with the flows (one row per scheduled flow and time
    /// zone of the active roster), then records a start for every run that is due. A new row
    /// runs first at its next occurrence after now; runs missed while nothing was running
    /// (carebot was down) are recorded once, not once per missed occurrence.
    async fn fire_schedules(&self, now: DateTime<Utc>) -> Result<usize, RunError> {
        let store = &self.runner.store;
        let sync = {
            let synced = self.synced.lock().expect("scheduler poisoned");
            synced.is_none_or(|t| now - t >= SYNC_EVERY || now < t)
        };
        if sync {
            self.sync_schedules(now).await?;
            *self.synced.lock().expect("scheduler poisoned") = Some(now);
        }
        let mut fired = 0;
        for row in store.schedules().await? {
            if row.next_run_at > now {
                continue;
            }
            if self.runner.catalog.get(&row.flow_id).is_none() {
                continue;
            }
            let (Ok(cron), Ok(tz), Ok(audience)) = (
                parse_cron(&row.cron),
                row.timezone.parse::<Tz>(),
                Audience::parse_stored(&row.audience),
            ) else {
                continue;
            };
            let Some(next) = next_run(&cron, tz, now.max(row.next_run_at)) else {
                continue;
            };
            let due = row.next_run_at;
            let start = self.runner.new_start(
                &row.flow_id,
                &audience,
                Some(row.timezone.clone()),
                // The flow's own `vars` apply anyway; a schedule adds none.
                Default::default(),
                due,
                StartOrigin::Schedule,
                Some(format!(
                    "schedule:{}:{}:{}",
                    row.flow_id,
                    row.timezone,
                    due.to_rfc3339()
                )),
            )?;
            if let Some(id) = store
                .fire_schedule(&row.flow_id, &row.timezone, due, next, &start)
                .await?
            {
                tracing::info!(
                    flow = %row.flow_id,
                    timezone = %row.timezone,
                    start = id,
                    due = %due,
                    "recurring start due"
                );
                fired += 1;
            }
        }
        Ok(fired)
    }

    async fn sync_schedules(&self, now: DateTime<Utc>) -> Result<(), RunError> {
        let store = &self.runner.store;
        let existing = store.schedules().await?;
        let zones = store.caregiver_timezones().await?;
        let mut scheduled = Vec::new();
        for (flow_id, loaded) in &self.runner.catalog.flows {
            let Some(schedule) = &loaded.flow.schedule else {
                continue;
            };
            scheduled.push(flow_id.clone());
            // `flows check` refuses a bad cron line, so this only skips what slipped past.
            let Ok(cron) = parse_cron(&schedule.cron) else {
                continue;
            };
            for zone in &zones {
                let Ok(tz) = zone.parse::<Tz>() else { continue };
                let current = existing
                    .iter()
                    .find(|r| r.flow_id == *flow_id && r.timezone == *zone);
                if current.is_some_and(|r| r.cron == schedule.cron && r.audience == schedule.to) {
                    continue;
                }
                let Some(next) = next_run(&cron, tz, now) else {
                    continue;
                };
                store
                    .put_schedule(&ScheduleRow {
                        flow_id: flow_id.clone(),
                        timezone: zone.clone(),
                        cron: schedule.cron.clone(),
                        audience: schedule.to.clone(),
                        next_run_at: next,
                    })
                    .await?;
            }
        }
        store.delete_schedules_except(&scheduled).await?;
        Ok(())
    }
}

/// Whether a job run every `every` is due at `now`, marking it run if so. Either way round: a
/// clock set back must not stop it.
fn due_every(
    last: &Mutex<Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
    every: chrono::Duration,
) -> bool {
    let mut last = last.lock().expect("scheduler poisoned");
    let due = last.is_none_or(|t| (now - t).abs() >= every);
    if due {
        *last = Some(now);
    }
    due
}

fn boxed<T, E: StdError + Send + Sync + 'static>(
    result: Result<T, E>,
) -> Result<T, Box<dyn StdError + Send + Sync>> {
    result.map_err(|e| Box::new(e) as _)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn chicago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        chrono_tz::America::Chicago
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Every run of `cron` in Chicago from `from` to `to`, in UTC.
    fn runs(cron: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let cron = parse_cron(cron).unwrap();
        let mut out = Vec::new();
        let mut t = from;
        while let Some(next) = next_run(&cron, chrono_tz::America::Chicago, t) {
            if next > to {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn friday_ten_is_ten_on_each_local_clock() {
        let cron = parse_cron("0 10 * * 5").unwrap();
        // Wednesday 2025-03-05, noon UTC.
        let after = Utc.with_ymd_and_hms(2025, 3, 5, 12, 0, 0).unwrap();
        let chicago = next_run(&cron, chrono_tz::America::Chicago, after).unwrap();
        let new_york = next_run(&cron, chrono_tz::America::New_York, after).unwrap();
        assert_eq!(chicago, Utc.with_ymd_and_hms(2025, 3, 7, 16, 0, 0).unwrap());
        assert_eq!(
            new_york,
            Utc.with_ymd_and_hms(2025, 3, 7, 15, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_0130_job_runs_once_when_clocks_go_back() {
        // 2025-11-02: 02:00 CDT becomes 01:00 CST, so 01:30 happens twice in Chicago.
        let got = runs(
            "30 1 * * *",
            chicago(2025, 11, 1, 12, 0),
            chicago(2025, 11, 3, 12, 0),
        );
        assert_eq!(
            got,
            [
                Utc.with_ymd_and_hms(2025, 11, 2, 6, 30, 0).unwrap(), // 01:30 CDT, once
                Utc.with_ymd_and_hms(2025, 11, 3, 7, 30, 0).unwrap(), // 01:30 CST
            ]
        );
    }

    #[test]
    fn a_0230_job_still_runs_when_clocks_go_forward() {
        // 2025-03-09: 02:00 CST becomes 03:00 CDT, so 02:30 does not exist in Chicago.
        let got = runs(
            "30 2 * * *",
            chicago(2025, 3, 8, 12, 0),
            chicago(2025, 3, 10, 12, 0),
        );
        assert_eq!(got.len(), 2, "{got:?}");
        // The day of the change: at the end of the gap, 03:00 CDT (08:00 UTC).
        assert_eq!(got[0], Utc.with_ymd_and_hms(2025, 3, 9, 8, 0, 0).unwrap());
        assert_eq!(got[1], Utc.with_ymd_and_hms(2025, 3, 10, 7, 30, 0).unwrap());
    }
}
