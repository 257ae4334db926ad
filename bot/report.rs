//! `carebot report pulse`: week by week, and per branch or state, how many caregivers a pulse
//! survey was started for (asked), how many answered its score question (responded), the
//! response rate over those asked, the mean score and its change from the week before; and the
//! escalations those surveys raised (placed in the week their survey started, like the
//! answers): how many, how many were acknowledged within their window, the median time to
//! acknowledge, how many are closed.
//!
//! Honest by construction: the denominator is the people asked, so silence lowers the rate
//! instead of vanishing; a group with fewer than five respondents is suppressed, and so are the
//! next-smallest groups until what is hidden cannot be computed back from the total and the
//! groups shown, so nobody's answer can be read off a small group, directly or by subtraction
//! (anonymous answers are reported nowhere else). The
//! store streams its rows and only the per-week tallies are kept, so the report's memory does
//! not grow with the years of answers behind it.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::EscalationSettings;
use crate::model::{PulseRow, week_start};
use crate::render::desk::short_duration;
use crate::store::{Store, StoreError};

/// Fewer respondents than this and a group's answers are not shown.
pub const MIN_RESPONDENTS: u64 = 5;

/// The label of the row that counts everyone.
pub const ALL: &str = "(all)";

/// What groups the rows, besides the all-caregivers row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Branch,
    /// The caregiver's `state` field (set by flows such as the benefits screener).
    State,
}

#[derive(Debug, Clone)]
pub struct PulseOptions {
    pub flow: String,
    /// The answer (`save_as`) that holds the score.
    pub key: String,
    pub by: Option<GroupBy>,
    pub weeks: u32,
    pub now: DateTime<Utc>,
}

/// One week of one group's answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PulseLine {
    /// The Monday (UTC) of the week the surveys were started in.
    pub week: NaiveDate,
    pub group: String,
    pub asked: u64,
    /// `None` (with the rest) when fewer than [`MIN_RESPONDENTS`] answered.
    pub responded: Option<u64>,
    pub response_rate: Option<f64>,
    pub mean_score: Option<f64>,
    /// The mean minus the previous week's, when both are shown.
    pub change: Option<f64>,
    pub suppressed: bool,
}

/// One week of one group's escalations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationLine {
    pub week: NaiveDate,
    pub group: String,
    pub raised: u64,
    pub acknowledged_in_window: u64,
    /// Over the acknowledged ones.
    pub median_minutes_to_acknowledge: Option<i64>,
    pub closed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PulseReport {
    pub flow: String,
    pub key: String,
    pub by: Option<GroupBy>,
    pub weeks: Vec<NaiveDate>,
    pub answers: Vec<PulseLine>,
    pub escalations: Vec<EscalationLine>,
}

#[derive(Default)]
struct Tally {
    asked: HashSet<i64>,
    respondents: HashSet<i64>,
    anonymous_respondents: u64,
    scores: u64,
    sum: f64,
}

#[derive(Default)]
struct EscalationTally {
    raised: u64,
    in_window: u64,
    to_acknowledge: Vec<i64>,
    closed: u64,
}

impl Tally {
    fn responded(&self) -> u64 {
        self.respondents.len() as u64 + self.anonymous_respondents
    }
}

/// The groups of one week whose figures are not shown, given each group's respondents (the
/// all-caregivers row among them): every group with fewer than [`MIN_RESPONDENTS`], and then
/// (complementary suppression) the smallest shown groups until the hidden ones together hold
/// none or at least [`MIN_RESPONDENTS`]. Otherwise the all-caregivers row minus the groups
/// shown would give the hidden group's count and score sum: a lone respondent's answer.
fn suppressed<'a>(groups: impl Iterator<Item = (&'a str, u64)>) -> HashSet<&'a str> {
    let mut all = None;
    let mut others: Vec<(&str, u64)> = Vec::new();
    for (group, responded) in groups {
        if group == ALL {
            all = Some(responded);
        } else {
            others.push((group, responded));
        }
    }
    let mut hidden: HashSet<&str> = HashSet::new();
    if all.is_some_and(|n| n < MIN_RESPONDENTS) {
        hidden.insert(ALL);
    }
    // Smallest first (then by name, so the choice is the same on every run).
    others.sort_by_key(|&(group, n)| (n, group));
    let mut hidden_total = 0;
    for &(group, n) in &others {
        if n < MIN_RESPONDENTS {
            hidden.insert(group);
            hidden_total += n;
        }
    }
    // With the all-caregivers row hidden too there is no total to subtract from.
    if !hidden.contains(ALL) {
        for &(group, n) in &others {
            if hidden_total == 0 || hidden_total >= MIN_RESPONDENTS {
                break;
            }
            if hidden.insert(group) {
                hidden_total += n;
            }
        }
    }
    hidden
}

/// Builds the report from the store's rows.
// Long because it is one pass over the week's rows that fills every figure of a week at
// once; the suppression rules it applies are separate functions above.
pub async fn pulse<S: Store>(
    store: &S,
    options: &PulseOptions,
    windows: &EscalationSettings,
) -> Result<PulseReport, StoreError> {
    let weeks = options.weeks.max(1);
    let last = week_start(options.now);
    let first = last - Duration::weeks(i64::from(weeks) - 1);
    let since = first.and_time(chrono::NaiveTime::MIN).and_utc();
    let group_of = |branch: &str, state: &Option<String>| -> Option<String> {
        match options.by? {
            GroupBy::Branch => Some(branch.to_owned()),
            GroupBy::State => Some(state.clone().unwrap_or_else(|| "(no state)".to_owned())),
        }
    };

    let mut tallies: BTreeMap<(NaiveDate, String), Tally> = BTreeMap::new();
    let mut escalations: BTreeMap<(NaiveDate, String), EscalationTally> = BTreeMap::new();
    // Every row counts in the all-caregivers group and in its own.
    let groups = |branch: &str, state: &Option<String>| -> Vec<String> {
        let mut out = vec![ALL.to_owned()];
        out.extend(group_of(branch, state));
        out
    };
    let mut sink = |row: PulseRow| -> std::io::Result<()> {
        match row {
            PulseRow::Asked {
                caregiver_id,
                started_at,
                branch,
                state,
            } => {
                for g in groups(&branch, &state) {
                    let t = tallies.entry((week_start(started_at), g)).or_default();
                    t.asked.insert(caregiver_id);
                }
            }
            PulseRow::Answered {
                caregiver_id,
                started_at,
                branch,
                state,
                value,
            } => {
                for g in groups(&branch, &state) {
                    let t = tallies.entry((week_start(started_at), g)).or_default();
                    t.respondents.insert(caregiver_id);
                    if let Some(score) = score(&value) {
                        t.scores += 1;
                        t.sum += score;
                    }
                }
            }
            PulseRow::AnsweredAnonymously {
                week,
                branch,
                state,
                value,
            } => {
                for g in groups(&branch, &state) {
                    let t = tallies.entry((week, g)).or_default();
                    t.anonymous_respondents += 1;
                    if let Some(score) = score(&value) {
                        t.scores += 1;
                        t.sum += score;
                    }
                }
            }
            PulseRow::Escalation {
                priority,
                started_at,
                raised_at,
                acknowledged_at,
                closed_at,
                branch,
                state,
            } => {
                for g in groups(&branch, &state) {
                    let t = escalations.entry((week_start(started_at), g)).or_default();
                    t.raised += 1;
                    if let Some(ack) = acknowledged_at {
                        let waited = ack - raised_at;
                        if waited <= windows.window(priority) {
                            t.in_window += 1;
                        }
                        t.to_acknowledge.push(waited.num_minutes());
                    }
                    if closed_at.is_some() {
                        t.closed += 1;
                    }
                }
            }
        }
        Ok(())
    };
    store
        .pulse_rows(&options.flow, &options.key, since, &mut sink)
        .await?;

    let weeks: Vec<NaiveDate> = (0..i64::from(weeks))
        .map(|i| first + Duration::weeks(i))
        .collect();
    let mut answers = Vec::new();
    let mut previous: BTreeMap<String, f64> = BTreeMap::new();
    for week in &weeks {
        // A week without a survey says so, rather than vanishing from the table.
        tallies.entry((*week, ALL.to_owned())).or_default();
        let groups: Vec<(&String, &Tally)> = tallies
            .range((*week, String::new())..)
            .take_while(|((w, _), _)| w == week)
            .map(|((_, group), t)| (group, t))
            .collect();
        let hidden = suppressed(
            groups
                .iter()
                .map(|(group, t)| (group.as_str(), t.responded())),
        );
        let mut shown: BTreeMap<String, f64> = BTreeMap::new();
        for (group, t) in groups {
            let responded = t.responded();
            let asked = t.asked.len() as u64;
            let mean = (t.scores > 0).then(|| t.sum / t.scores as f64);
            let line = if hidden.contains(group.as_str()) {
                PulseLine {
                    week: *week,
                    group: group.clone(),
                    asked,
                    responded: None,
                    response_rate: None,
                    mean_score: None,
                    change: None,
                    suppressed: true,
                }
            } else {
                if let Some(m) = mean {
                    shown.insert(group.clone(), m);
                }
                PulseLine {
                    week: *week,
                    group: group.clone(),
                    asked,
                    responded: Some(responded),
                    response_rate: (asked > 0).then(|| responded as f64 / asked as f64),
                    mean_score: mean,
                    change: mean
                        .zip(previous.get(group))
                        .map(|(now, before)| now - before),
                    suppressed: false,
                }
            };
            answers.push(line);
        }
        previous = shown;
    }
    let escalations = escalations
        .into_iter()
        .filter(|((week, _), _)| *week >= first && *week <= last)
        .map(|((week, group), mut t)| {
            t.to_acknowledge.sort_unstable();
            EscalationLine {
                week,
                group,
                raised: t.raised,
                acknowledged_in_window: t.in_window,
                median_minutes_to_acknowledge: median(&t.to_acknowledge),
                closed: t.closed,
            }
        })
        .collect();
    // The all-caregivers row first in each week, then the groups by name.
    let order = |g: &str| (g != ALL, g.to_owned());
    let mut report = PulseReport {
        flow: options.flow.clone(),
        key: options.key.clone(),
        by: options.by,
        weeks,
        answers,
        escalations,
    };
    report.answers.sort_by_key(|a| (a.week, order(&a.group)));
    report
        .escalations
        .sort_by_key(|a| (a.week, order(&a.group)));
    Ok(report)
}

/// "38m", "1h35m", "2d3h": a wait, to the minute while it is short.
fn hours_minutes(minutes: i64) -> String {
    match minutes {
        m if m < 60 => format!("{m}m"),
        m if m < 48 * 60 => format!("{}h{:02}m", m / 60, m % 60),
        m => format!("{}d{}h", m / (24 * 60), (m % (24 * 60)) / 60),
    }
}

/// A numeric answer (scores are stored as JSON numbers).
fn score(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// The median of sorted values (the lower middle one for an even count, so it is a value
/// someone actually waited).
fn median(sorted: &[i64]) -> Option<i64> {
    if sorted.is_empty() {
        None
    } else {
        Some(sorted[(sorted.len() - 1) / 2])
    }
}

impl PulseReport {
    /// The report as a terminal table.
    pub fn to_table(&self, windows: &EscalationSettings) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let (Some(first), Some(last)) = (self.weeks.first(), self.weeks.last()) else {
            return out;
        };
        let by = match self.by {
            None => String::new(),
            Some(GroupBy::Branch) => ", by branch".into(),
            Some(GroupBy::State) => ", by state".into(),
        };
        let _ = writeln!(
            out,
            "Pulse {} (score: {}), {} week(s) starting Monday {first} to {last}{by}",
            self.flow,
            self.key,
            self.weeks.len()
        );
        let _ = writeln!(
            out,
            "Asked = caregivers the survey was started for; rate = responded / asked. Groups with fewer than {MIN_RESPONDENTS} respondents are suppressed (-), and so is the next-smallest group when the total would give them away.\n"
        );
        let width = self
            .answers
            .iter()
            .map(|l| l.group.chars().count())
            .chain(self.escalations.iter().map(|l| l.group.chars().count()))
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            out,
            "{:<10}  {:<width$}  {:>7}  {:>9}  {:>6}  {:>5}  {:>6}",
            "week", "group", "asked", "responded", "rate", "mean", "change"
        );
        let dash = || "-".to_owned();
        for l in &self.answers {
            let _ = writeln!(
                out,
                "{:<10}  {:<width$}  {:>7}  {:>9}  {:>6}  {:>5}  {:>6}",
                l.week,
                l.group,
                l.asked,
                l.responded.map_or_else(dash, |n| n.to_string()),
                l.response_rate
                    .map_or_else(dash, |r| format!("{:.1}%", r * 100.0)),
                l.mean_score.map_or_else(dash, |m| format!("{m:.2}")),
                l.change.map_or_else(
                    || if l.suppressed { dash() } else { String::new() },
                    |c| format!("{c:+.2}")
                ),
            );
        }
        let _ = writeln!(
            out,
            "\nEscalations raised by {} (acknowledged in window: high {}, normal {}, low {})\n",
            self.flow,
            short_duration(windows.ack_window_high),
            short_duration(windows.ack_window_normal),
            short_duration(windows.ack_window_low)
        );
        let _ = writeln!(
            out,
            "{:<10}  {:<width$}  {:>6}  {:>13}  {:>13}  {:>6}",
            "week", "group", "raised", "ack in window", "median to ack", "closed"
        );
        for l in &self.escalations {
            let _ = writeln!(
                out,
                "{:<10}  {:<width$}  {:>6}  {:>13}  {:>13}  {:>6}",
                l.week,
                l.group,
                l.raised,
                format!(
                    "{} ({:.0}%)",
                    l.acknowledged_in_window,
                    100.0 * l.acknowledged_in_window as f64 / l.raised.max(1) as f64
                ),
                l.median_minutes_to_acknowledge
                    .map_or_else(dash, hours_minutes),
                l.closed,
            );
        }
        if self.escalations.is_empty() {
            let _ = writeln!(out, "(none)");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(groups: &[(&'static str, u64)]) -> Vec<&'static str> {
        let mut out: Vec<&str> = suppressed(groups.iter().copied()).into_iter().collect();
        out.sort();
        out
    }

    #[test]
    fn a_lone_small_group_takes_the_next_smallest_with_it() {
        // Peoria's one respondent would be (all) minus North minus South.
        assert_eq!(
            hidden(&[(ALL, 26), ("North", 12), ("South", 13), ("Peoria", 1)]),
            ["North", "Peoria"]
        );
        // Two small groups hiding 4 between them: still too few, a third goes.
        assert_eq!(
            hidden(&[(ALL, 34), ("A", 1), ("B", 3), ("C", 9), ("D", 21)]),
            ["A", "B", "C"]
        );
        // Hidden groups that hold 5 or more between them reveal no one's answer.
        assert_eq!(
            hidden(&[(ALL, 30), ("A", 2), ("B", 4), ("C", 24)]),
            ["A", "B"]
        );
        // A group asked but with no respondent hides nobody's answer.
        assert_eq!(hidden(&[(ALL, 20), ("A", 0), ("B", 20)]), ["A"]);
        // Nothing small: nothing hidden.
        assert!(hidden(&[(ALL, 10), ("A", 5), ("B", 5)]).is_empty());
        // The all row small too: there is no total to subtract from.
        assert_eq!(hidden(&[(ALL, 3), ("A", 3)]), [ALL, "A"]);
    }

    #[test]
    fn the_median_is_a_value_someone_waited() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[1, 2, 3, 40]), Some(2));
        assert_eq!(median(&[1, 2, 3]), Some(2));
    }

    #[test]
    fn waits_read_in_hours_and_minutes() {
        assert_eq!(hours_minutes(38), "38m");
        assert_eq!(hours_minutes(95), "1h35m");
        assert_eq!(hours_minutes(3 * 24 * 60 + 61), "3d1h");
    }
}
