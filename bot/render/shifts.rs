//! What shift-offer texts are rendered with: the shift as a template sees it (`shift.*`, in the
//! reader's language and the branch's time zone), the caregiver, the open offers to choose
//! from, and the tally of an offer nobody took. The shift program (`crate::shifts`) fills these
//! in to send; `flows check` (`crate::catalog`) renders every shift template against
//! [`sample_offer`] the same way.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::Agency;
use crate::domain::Lang;
use crate::model::{Caregiver, ShiftOffer, ShiftStatus};
use crate::quiet_hours;

/// What a shift template is rendered with, so that `flows check` renders each the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `caregiver`, `agency`, `shift`.
    Caregiver,
    /// The same, plus `offers`: the open offers to choose from.
    Choice,
    /// To a supervisor, about a caregiver: `caregiver`, `agency`, `shift`. English.
    Alert,
    /// To a supervisor, about nobody: `agency`, `shift`, `tally`. English.
    Unfilled,
}

/// Every template shift offers send; `flows check` requires them and renders each.
pub const SHIFT_TEMPLATES: &[(&str, Shape)] = &[
    ("shifts/offer", Shape::Caregiver),
    ("shifts/won", Shape::Caregiver),
    ("shifts/filled", Shape::Caregiver),
    ("shifts/closed", Shape::Caregiver),
    ("shifts/clash", Shape::Caregiver),
    ("shifts/declined", Shape::Caregiver),
    ("shifts/yours", Shape::Caregiver),
    ("shifts/which", Shape::Choice),
    ("shifts/cancelled", Shape::Caregiver),
    ("alerts/shift_filled", Shape::Alert),
    ("alerts/shift_unfilled", Shape::Unfilled),
];

/// A shift as templates see it (`shift.*`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShiftView {
    pub id: i64,
    pub code: u32,
    /// Whether the text must carry the code ("reply YES 14").
    pub show_code: bool,
    /// "Tue Dec 1, 8:00 AM-12:00 PM" or "mar 1 dic, 8:00-12:00".
    pub when: String,
    /// "Tue Dec 1, 8:00 AM" or "mar 1 dic, 8:00".
    pub starts: String,
    #[serde(rename = "where")]
    pub location: String,
    pub client: String,
    pub notes: String,
    pub branch: String,
}

/// A caregiver as shift templates see one.
#[derive(Debug, Clone, Serialize)]
pub struct Who<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub external_id: &'a str,
}

/// How an offer went, for the "nobody took it" alert.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tally {
    pub offered: usize,
    pub declined: usize,
}

/// Everything a shift template is rendered with.
#[derive(Debug, Clone, Serialize)]
pub struct ShiftMessage<'a> {
    pub agency: &'a Agency,
    pub shift: &'a ShiftView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caregiver: Option<Who<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offers: Option<&'a [ShiftView]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
}

const EN_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const EN_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
// Without accents outside GSM-7 ("sáb" would turn the whole text into UCS-2 and double its cost).
const ES_DAYS: [&str; 7] = ["lun", "mar", "mié", "jue", "vie", "sab", "dom"];
const ES_MONTHS: [&str; 12] = [
    "ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic",
];

fn day(lang: Lang, t: &DateTime<Tz>) -> String {
    let wd = t.weekday().num_days_from_monday() as usize;
    let m = t.month0() as usize;
    match lang {
        Lang::En => format!("{} {} {}", EN_DAYS[wd], EN_MONTHS[m], t.day()),
        Lang::Es => format!("{} {} {}", ES_DAYS[wd], t.day(), ES_MONTHS[m]),
    }
}

fn clock_time(lang: Lang, t: &DateTime<Tz>) -> String {
    match lang {
        Lang::En => {
            let (pm, h) = t.hour12();
            format!("{h}:{:02} {}", t.minute(), if pm { "PM" } else { "AM" })
        }
        Lang::Es => format!("{}:{:02}", t.hour(), t.minute()),
    }
}

/// The shift's start and span in its branch's zone, in the reader's language; with the zone's
/// abbreviation when the reader lives in another zone.
pub fn describe(offer: &ShiftOffer, lang: Lang, reader_tz: &str) -> (String, String) {
    let tz = quiet_hours::zone(&offer.timezone);
    let start = offer.starts_at.with_timezone(&tz);
    let end = offer.ends_at.with_timezone(&tz);
    let zone = if reader_tz == offer.timezone || reader_tz.is_empty() {
        String::new()
    } else {
        format!(" ({})", start.format("%Z"))
    };
    let starts = format!("{}, {}", day(lang, &start), clock_time(lang, &start));
    let until = if end.date_naive() == start.date_naive() {
        clock_time(lang, &end)
    } else {
        // An overnight shift names the day it ends.
        let wd = end.weekday().num_days_from_monday() as usize;
        let name = match lang {
            Lang::En => EN_DAYS[wd],
            Lang::Es => ES_DAYS[wd],
        };
        format!("{name} {}", clock_time(lang, &end))
    };
    (format!("{starts}-{until}{zone}"), format!("{starts}{zone}"))
}

pub fn view(offer: &ShiftOffer, lang: Lang, reader_tz: &str, show_code: bool) -> ShiftView {
    let (when, starts) = describe(offer, lang, reader_tz);
    ShiftView {
        id: offer.id,
        code: offer.code,
        show_code,
        when,
        starts,
        location: offer.location.clone(),
        client: offer.client_ref.clone(),
        notes: offer.notes.clone(),
        branch: offer.branch.clone(),
    }
}

pub fn who(c: &Caregiver) -> Who<'_> {
    Who {
        first_name: &c.first_name,
        last_name: &c.last_name,
        external_id: &c.external_id,
    }
}

/// The shift every shift template is checked against: a morning with notes, the longest
/// ordinary case.
pub fn sample_offer() -> ShiftOffer {
    let tz = chrono_tz::America::Chicago;
    let at = |h| {
        tz.with_ymd_and_hms(2026, 12, 1, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    };
    ShiftOffer {
        id: 41,
        code: 12,
        client_ref: "CL-2291".into(),
        location: "Evanston, IL".into(),
        notes: "Hoyer lift".into(),
        branch: "Chicago North".into(),
        timezone: "America/Chicago".into(),
        starts_at: at(8),
        ends_at: at(12),
        expires_at: at(8),
        audience: "branch:Chicago North".into(),
        supervisor: None,
        wave_size: 0,
        wave_minutes: 30,
        waves_sent: 1,
        next_wave_at: None,
        status: ShiftStatus::Open,
        filled_by_id: None,
        filled_by: None,
        filled_at: None,
        closed_at: None,
        created_at: at(6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer_at(start: &str, end: &str) -> ShiftOffer {
        let mut o = sample_offer();
        let tz = chrono_tz::America::Chicago;
        let t = |s: &str| {
            let local = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
            tz.from_local_datetime(&local).unwrap().with_timezone(&Utc)
        };
        o.starts_at = t(start);
        o.ends_at = t(end);
        o
    }

    #[test]
    fn times_read_in_the_branch_zone_and_language() {
        let o = offer_at("2026-12-01 08:00", "2026-12-01 12:30");
        assert_eq!(
            describe(&o, Lang::En, "America/Chicago"),
            (
                "Tue Dec 1, 8:00 AM-12:30 PM".to_owned(),
                "Tue Dec 1, 8:00 AM".to_owned()
            )
        );
        assert_eq!(
            describe(&o, Lang::Es, "America/Chicago").0,
            "mar 1 dic, 8:00-12:30"
        );
        // A caregiver in another zone is told which zone the times are in.
        assert_eq!(
            describe(&o, Lang::En, "America/New_York").0,
            "Tue Dec 1, 8:00 AM-12:30 PM (CST)"
        );
        let night = offer_at("2026-12-01 22:00", "2026-12-02 06:00");
        assert_eq!(
            describe(&night, Lang::En, "America/Chicago").0,
            "Tue Dec 1, 10:00 PM-Wed 6:00 AM"
        );
    }
}
