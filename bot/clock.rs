//! The one clock carebot reads: the webhooks, the dispatcher and the scheduler of `serve` all
//! share it. In production it is the system clock; tests move it forward (`advance`) to make a
//! two-hour acknowledgement window pass at once, or stop it (`frozen`) to tick a schedule at
//! an exact instant, and every clone sees the same time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// `frozen_ms` holds this value while the clock runs.
const RUNNING: i64 = i64::MIN;

/// The system clock plus an offset, or a stopped instant; only tests change either.
#[derive(Debug, Clone)]
pub struct Clock {
    /// Added to the system clock while the clock runs.
    offset_ms: Arc<AtomicI64>,
    /// The instant (milliseconds since the epoch) a frozen clock shows, or [`RUNNING`].
    frozen_ms: Arc<AtomicI64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset_ms: Arc::default(),
            frozen_ms: Arc::new(AtomicI64::new(RUNNING)),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock stopped at `at`: it moves only when told (`set`, `advance`), so a test can tick
    /// a schedule at exactly 01:30 on the night clocks go back.
    pub fn frozen(at: DateTime<Utc>) -> Clock {
        let clock = Clock::default();
        clock
            .frozen_ms
            .store(at.timestamp_millis(), Ordering::Relaxed);
        clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.frozen_ms.load(Ordering::Relaxed) {
            RUNNING => Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed)),
            ms => {
                DateTime::from_timestamp_millis(ms).expect("a frozen clock holds a valid instant")
            }
        }
    }

    /// Sets this clock (and every clone of it) to `to`, from where it runs on (or stays, if
    /// frozen).
    pub fn set(&self, to: DateTime<Utc>) {
        if self.frozen_ms.load(Ordering::Relaxed) != RUNNING {
            self.frozen_ms
                .store(to.timestamp_millis(), Ordering::Relaxed);
        } else {
            self.offset_ms
                .store((to - Utc::now()).num_milliseconds(), Ordering::Relaxed);
        }
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let moved = if self.frozen_ms.load(Ordering::Relaxed) != RUNNING {
            &self.frozen_ms
        } else {
            &self.offset_ms
        };
        moved.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
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

    #[test]
    fn a_frozen_clock_moves_only_when_told() {
        let half_past_one = DateTime::parse_from_rfc3339("2025-11-02T06:30:00Z")
            .unwrap()
            .to_utc();
        let clock = Clock::frozen(half_past_one);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clock.clone().now(), half_past_one);
        clock.advance(Duration::hours(1));
        assert_eq!(clock.now(), half_past_one + Duration::hours(1));
        clock.set(half_past_one);
        assert_eq!(clock.now(), half_past_one);
    }
}
