//! The clock `serve` runs on. In production it is the system clock; tests move it forward
//! (`advance`) to make a two-hour acknowledgement window pass at once, and every part of the
//! server that asks for the time (webhooks, dispatcher, scheduler) sees the same moved time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// The system clock, plus an offset that only tests change.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Sets this clock (and every clone of it) to `to`, from where it runs on.
    pub fn set(&self, to: DateTime<Utc>) {
        self.offset_ms
            .store((to - Utc::now()).num_milliseconds(), Ordering::Relaxed);
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }
}

/// The scheduler reads this clock, so a test that moves it moves starts and timers too.
impl crate::scheduler::Clock for Clock {
    fn now(&self) -> DateTime<Utc> {
        Clock::now(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clone_moves_every_clone() {
        let clock = Clock::system();
        let seen_by_server = clock.clone();
        clock.advance(Duration::hours(2));
        let ahead = seen_by_server.now() - Utc::now();
        assert!(
            ahead > Duration::minutes(119) && ahead <= Duration::hours(2),
            "{ahead}"
        );
        let tuesday = DateTime::parse_from_rfc3339("2026-11-17T16:00:00Z")
            .unwrap()
            .to_utc();
        clock.set(tuesday);
        assert!((seen_by_server.now() - tuesday).abs() < Duration::seconds(1));
    }
}
