//! Quiet hours: program messages go out only inside each person's allowed window in their own
//! time zone; anything that falls outside waits for the next window. Used when a message is
//! queued and again when the dispatcher picks it up.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The local hours in which program messages may be sent, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            start: NaiveTime::from_hms_opt(8, 0, 0).expect("valid"),
            end: NaiveTime::from_hms_opt(20, 0, 0).expect("valid"),
        }
    }
}

impl Window {
    /// Parses "08:00-20:00".
    pub fn parse(s: &str) -> Result<Window, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("quiet-hours window {s:?} must look like 08:00-20:00"))?;
        let t = |x: &str| {
            // "24:00" closes a window at midnight, so "00:00-24:00" means any hour.
            if x.trim() == "24:00" {
                return Ok(NaiveTime::from_hms_nano_opt(23, 59, 59, 1_999_999_999).expect("valid"));
            }
            NaiveTime::parse_from_str(x.trim(), "%H:%M")
                .map_err(|_| format!("invalid time {x:?} in window {s:?}"))
        };
        let w = Window {
            start: t(a)?,
            end: t(b)?,
        };
        if w.start >= w.end {
            return Err(format!("window {s:?} must start before it ends"));
        }
        Ok(w)
    }

    /// The first instant at or after `now` that is inside the window where `tz` is.
    pub fn next_allowed(&self, now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = now.with_timezone(&tz);
        let time = local.time();
        if time >= self.start && time < self.end {
            return now;
        }
        let day = if time < self.start {
            local.date_naive()
        } else {
            local.date_naive() + Duration::days(1)
        };
        let start = day.and_time(self.start);
        // A window start that falls in a daylight-saving gap moves to the first valid instant.
        match tz.from_local_datetime(&start) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            chrono::LocalResult::None => tz
                .from_local_datetime(&(start + Duration::hours(1)))
                .earliest()
                .map_or(now, |t| t.with_timezone(&Utc)),
        }
    }
}

/// Parses an IANA zone name, falling back to UTC for a zone that slipped past validation.
pub fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(chrono_tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn inside_the_window_sends_now() {
        let now = utc("2026-11-20T16:00:00Z"); // 10:00 in Chicago
        assert_eq!(
            Window::default().next_allowed(now, chrono_tz::America::Chicago),
            now
        );
    }

    #[test]
    fn late_evening_waits_for_eight_the_next_morning_local_time() {
        let now = utc("2026-11-21T03:00:00Z"); // 21:00 in Chicago
        assert_eq!(
            Window::default().next_allowed(now, chrono_tz::America::Chicago),
            utc("2026-11-21T14:00:00Z")
        );
    }

    #[test]
    fn early_morning_waits_for_eight_the_same_day() {
        let now = utc("2026-11-20T08:00:00Z"); // 02:00 in Chicago
        assert_eq!(
            Window::default().next_allowed(now, chrono_tz::America::Chicago),
            utc("2026-11-20T14:00:00Z")
        );
    }

    #[test]
    fn a_window_to_midnight_allows_every_hour() {
        let w = Window::parse("00:00-24:00").unwrap();
        let now = utc("2026-11-21T05:59:59Z"); // 23:59:59 in Chicago
        assert_eq!(w.next_allowed(now, chrono_tz::America::Chicago), now);
    }

    #[test]
    fn windows_parse_and_reject_nonsense() {
        assert!(Window::parse("09:00-17:30").is_ok());
        assert!(Window::parse("20:00-08:00").is_err());
        assert!(Window::parse("nine to five").is_err());
    }
}
