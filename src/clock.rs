//! The wall clock as this process sees it.
//!
//! Every wall-clock reading in `src/` goes through [`now`], so a test can run one replica with
//! a clock that is seconds ahead of or behind the others (the hidden `--clock-offset-secs`
//! flag) and show that rotation safety does not depend on clocks agreeing. Durations that
//! only measure how long something took use `tokio::time::Instant`, which no offset touches.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};

/// Seconds added to the system clock. Set once at start-up, before any task runs.
static OFFSET_SECS: AtomicI64 = AtomicI64::new(0);

/// Shifts every later reading of [`now`] by `secs` (negative: behind).
pub fn set_offset_secs(secs: i64) {
    OFFSET_SECS.store(secs, Ordering::Relaxed);
}

/// The current wall-clock time, shifted by the configured offset.
pub fn now() -> Timestamp {
    let real = Timestamp::now();
    match OFFSET_SECS.load(Ordering::Relaxed) {
        0 => real,
        secs => real
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap_or(real),
    }
}
