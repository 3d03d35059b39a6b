//! The simulator's notion of "now".
//!
//! Token and code expiry are computed against this clock rather than the system
//! clock directly so that tests (and `POST /sim/clock`) can move time forward and
//! watch tokens expire without sleeping for an hour. Webhook retries are due by this
//! clock too. Webhook timestamps do NOT use it: receivers check
//! `x-zm-request-timestamp` against their own wall clock, so skewing it would make
//! every delivery look stale.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Wall clock plus an adjustable offset.
#[derive(Debug, Default)]
pub struct SimClock {
    offset_ms: AtomicI64,
}

impl SimClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// The simulated current time.
    pub fn now_ms(&self) -> Millis {
        wall_clock_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves simulated time by `secs` (may be negative); returns the total offset in seconds.
    pub fn advance(&self, secs: i64) -> i64 {
        let delta = secs.saturating_mul(1000);
        let previous = self.offset_ms.fetch_add(delta, Ordering::Relaxed);
        previous.saturating_add(delta) / 1000
    }

    /// The total offset from the wall clock, in milliseconds.
    pub fn offset_ms(&self) -> Millis {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// The total offset from the wall clock, in seconds.
    pub fn offset_secs(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed) / 1000
    }
}

/// The real wall clock in milliseconds (used for webhook timestamps).
pub fn wall_clock_ms() -> Millis {
    jiff::Timestamp::now().as_millisecond()
}

/// `ms` as RFC 3339 in UTC to the second (`2024-05-01T00:00:00Z`), as Zoom writes
/// `created_at`, `start_time` and a daily limit's `Retry-After`; None out of range.
pub fn rfc3339_secs(ms: Millis) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// `ms` as RFC 3339 in UTC to the millisecond (`2024-05-01T00:00:00.000Z`); None out
/// of range.
pub fn rfc3339_millis(ms: Millis) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now_forward() {
        let clock = SimClock::new();
        let before = clock.now_ms();
        assert_eq!(clock.advance(3600), 3600);
        let after = clock.now_ms();
        assert!(after - before >= 3_600_000, "{after} - {before}");
        assert_eq!(clock.offset_secs(), 3600);
    }

    #[test]
    fn rfc3339_formats_are_utc() {
        assert_eq!(
            rfc3339_secs(1_700_000_000_999).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(
            rfc3339_millis(1_700_000_000_999).as_deref(),
            Some("2023-11-14T22:13:20.999Z")
        );
        assert_eq!(
            rfc3339_millis(1_700_000_000_000).as_deref(),
            Some("2023-11-14T22:13:20.000Z")
        );
        assert_eq!(rfc3339_secs(-1).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(rfc3339_secs(i64::MAX), None);
    }
}
