//! A log line at most every so often: for events that a hostile or broken peer can cause
//! at any rate (refused origins, monitor drops), so the journal stays readable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lets one log line through per `every`, and counts what it held back meanwhile.
/// Atomics only: it sits on paths that may be hit at any rate (a drop per publish).
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    /// What "now" is measured from.
    start: Instant,
    /// Milliseconds after `start` of the last line let through, plus one (0: none yet).
    last: AtomicU64,
    /// Lines held back since.
    held: AtomicU64,
}

impl LogLimit {
    pub fn new(every: Duration) -> LogLimit {
        LogLimit {
            every,
            start: Instant::now(),
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now; `n` is how many were suppressed before it.
    pub fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let every = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One caller wins the period; the others count as held back.
        match self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Some(self.held.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.held.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let l = LogLimit::new(Duration::from_millis(50));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.allow(), Some(2));
    }
}
