//! What the messages supervisors get about alerts are rendered with (the templates under
//! `supervisor/`): the supervisor, the alert, a digest's alerts. The escalation program
//! (`crate::escalation`) fills these in to send; `flows check` (`crate::catalog`) renders every
//! desk template against [`sample_desk_view`].

use chrono::Duration;
use serde::Serialize;

use super::Agency;

/// Templates for the messages supervisors get about alerts (the alerts themselves are flow
/// templates under `alerts/`). `flows check` renders each against [`sample_desk_view`].
pub const DESK_TEMPLATES: &[&str] = &[
    "supervisor/help",
    "supervisor/acknowledged",
    "supervisor/calling",
    "supervisor/noted",
    "supervisor/done",
    "supervisor/already",
    "supervisor/refused",
    "supervisor/reescalated",
    "supervisor/taken_up",
    "supervisor/digest",
];

/// What the templates under `supervisor/` see.
#[derive(Debug, Clone, Serialize)]
pub struct DeskView<'a> {
    pub agency: &'a Agency,
    /// The supervisor the message goes to.
    pub supervisor: Name,
    /// The alert the message is about (a placeholder in help and digest messages).
    pub escalation: AlertView,
    /// The alert's text as first sent (for a re-escalation).
    pub alert: String,
    /// How long the alert waited for an acknowledgement, like "2h".
    pub window: String,
    /// A digest's alerts.
    pub alerts: Vec<AlertView>,
    /// The numbers of the alerts the supervisor can act on, like "14, 15" (empty when none).
    pub open: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Name {
    pub name: String,
}

/// An alert as supervisor messages show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub id: i64,
    pub priority: String,
    /// "Maria G."
    pub caregiver: String,
    pub branch: String,
    pub reason: String,
    pub answer: String,
    /// open, acknowledged, calling or done.
    pub status: String,
    /// Who took it up (or, in a re-escalation, who did not).
    pub by: String,
    /// What was replied: ACK, CALL, NOTE or DONE.
    pub action: String,
    /// How long ago it was raised, like "3h" or "2d".
    pub age: String,
}

/// The view `flows check` renders supervisor templates with.
pub fn sample_desk_view(agency: &Agency) -> DeskView<'_> {
    let alert = AlertView {
        id: 14,
        priority: "high".into(),
        caregiver: "Maria G.".into(),
        branch: "Chicago North".into(),
        reason: "low week score".into(),
        answer: "1".into(),
        status: "acknowledged".into(),
        by: "Dana Smith".into(),
        action: "ACK".into(),
        age: "3h".into(),
    };
    DeskView {
        agency,
        supervisor: Name {
            name: "Dana Smith".into(),
        },
        alert: "ALERT 14 (high): Maria G., Chicago North, rated the work week \"1\" on a 1-5 scale. Reply ACK 14, CALL 14, or NOTE 14 <text>.".into(),
        window: "2h".into(),
        alerts: vec![
            alert.clone(),
            AlertView {
                id: 15,
                priority: "normal".into(),
                caregiver: "Ana L.".into(),
                status: "open".into(),
                age: "1d".into(),
                ..alert.clone()
            },
        ],
        open: "14, 15".into(),
        escalation: alert,
    }
}

/// "40m", "5h", "2d": an age or a window, short enough for a text.
pub fn short_duration(d: Duration) -> String {
    let minutes = d.num_minutes().max(0);
    if minutes < 60 {
        format!("{minutes}m")
    } else if minutes < 48 * 60 {
        format!("{}h", minutes / 60)
    } else {
        format!("{}d", minutes / (24 * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::minutes(40)), "40m");
        assert_eq!(short_duration(Duration::hours(2)), "2h");
        assert_eq!(short_duration(Duration::hours(30)), "30h");
        assert_eq!(short_duration(Duration::days(3)), "3d");
    }
}
