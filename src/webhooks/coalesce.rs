//! Rate-limits `status.lastEventTime` writes: at most one per connection per interval however
//! many events arrive, and never losing the last one (a write that falls inside the interval
//! is deferred to its end and carries the newest time seen by then).
//!
//! Pure: the caller passes the clock in and performs the writes this decides on.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// api.md section 5: at most one status write per connection every 10 seconds.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// What to do about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write this time now.
    WriteNow(Timestamp),
    /// Schedule a [`Coalescer::flush`] at this instant (none is scheduled yet).
    FlushAt(Instant),
    /// A flush is already scheduled and will carry this event's time.
    Coalesced,
}

#[derive(Debug, Default)]
struct Entry {
    last_write: Option<Instant>,
    pending: Option<Timestamp>,
    flush_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Coalescer<K> {
    interval: Duration,
    entries: HashMap<K, Entry>,
    since_prune: usize,
}

impl<K: Hash + Eq + Clone> Coalescer<K> {
    pub fn new(interval: Duration) -> Self {
        Coalescer {
            interval,
            entries: HashMap::new(),
            since_prune: 0,
        }
    }

    /// An event for `key` happened at `event_time`; `now` is the monotonic clock.
    pub fn record(&mut self, key: K, event_time: Timestamp, now: Instant) -> Decision {
        self.since_prune += 1;
        if self.since_prune >= 256 {
            self.prune(now);
        }
        let interval = self.interval;
        let entry = self.entries.entry(key).or_default();
        entry.pending = Some(entry.pending.map_or(event_time, |p| p.max(event_time)));
        if entry.flush_at.is_some() {
            return Decision::Coalesced;
        }
        match entry.last_write.map(|t| t + interval) {
            Some(next) if now < next => {
                entry.flush_at = Some(next);
                Decision::FlushAt(next)
            }
            _ => {
                entry.last_write = Some(now);
                let time = entry.pending.take().unwrap_or(event_time);
                Decision::WriteNow(time)
            }
        }
    }

    /// The scheduled flush for `key` is due: the time to write, if any event is pending.
    pub fn flush(&mut self, key: &K, now: Instant) -> Option<Timestamp> {
        let entry = self.entries.get_mut(key)?;
        entry.flush_at = None;
        let time = entry.pending.take()?;
        entry.last_write = Some(now);
        Some(time)
    }

    /// Forgets connections that have been quiet for a whole interval: they would be written
    /// at once on their next event anyway.
    fn prune(&mut self, now: Instant) {
        self.since_prune = 0;
        let interval = self.interval;
        self.entries.retain(|_, e| {
            e.flush_at.is_some()
                || e.last_write
                    .is_some_and(|t| now.saturating_duration_since(t) < interval)
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn first_event_writes_at_once_then_one_trailing_write_per_interval() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        let mut c = Coalescer::new(MIN_INTERVAL);
        assert_eq!(c.record("zc", ts(0), at(0)), Decision::WriteNow(ts(0)));
        // A burst inside the interval: one flush is scheduled at its end, the rest ride along.
        assert_eq!(
            c.record("zc", ts(1), at(1_000)),
            Decision::FlushAt(at(10_000))
        );
        for i in 2..50 {
            assert_eq!(
                c.record("zc", ts(i / 10 + 1), at(1_000 + i as u64 * 100)),
                Decision::Coalesced
            );
        }
        assert_eq!(c.record("zc", ts(9), at(9_999)), Decision::Coalesced);
        // The trailing write carries the newest time.
        assert_eq!(c.flush(&"zc", at(10_000)), Some(ts(9)));
        // Right after a flush the interval starts again.
        assert_eq!(
            c.record("zc", ts(11), at(11_000)),
            Decision::FlushAt(at(20_000))
        );
        assert_eq!(c.flush(&"zc", at(20_000)), Some(ts(11)));
        // Quiet for a whole interval: written at once again.
        assert_eq!(
            c.record("zc", ts(40), at(40_000)),
            Decision::WriteNow(ts(40))
        );
    }

    #[test]
    fn at_most_one_write_per_interval_under_a_steady_stream() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(MIN_INTERVAL);
        let mut writes: Vec<u64> = Vec::new();
        let mut scheduled: Option<Instant> = None;
        // One event every 50ms for 60s; flushes run when due.
        for ms in (0..60_000u64).step_by(50) {
            let now = t0 + Duration::from_millis(ms);
            if let Some(due) = scheduled.filter(|d| *d <= now) {
                if c.flush(&1, due).is_some() {
                    writes.push(due.duration_since(t0).as_millis() as u64);
                }
                scheduled = None;
            }
            match c.record(1, ts(ms as i64 / 1000), now) {
                Decision::WriteNow(_) => writes.push(ms),
                Decision::FlushAt(at) => scheduled = Some(at),
                Decision::Coalesced => {}
            }
        }
        assert!(
            writes.windows(2).all(|w| w[1] - w[0] >= 10_000),
            "{writes:?}"
        );
        assert_eq!(writes.len(), 6, "{writes:?}");
    }

    #[test]
    fn connections_are_independent_and_a_flush_without_events_writes_nothing() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(MIN_INTERVAL);
        assert!(matches!(c.record("a", ts(0), t0), Decision::WriteNow(_)));
        assert!(matches!(c.record("b", ts(0), t0), Decision::WriteNow(_)));
        assert_eq!(c.flush(&"a", t0 + MIN_INTERVAL), None);
        assert_eq!(c.flush(&"unknown", t0), None);
    }

    #[test]
    fn quiet_connections_are_forgotten() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(Duration::from_secs(1));
        for i in 0..300u64 {
            let _ = c.record(i, ts(0), t0 + Duration::from_millis(i * 10));
        }
        // The prune at the 256th record dropped those quiet for more than a second.
        assert!(c.len() < 256, "{}", c.len());
    }
}
