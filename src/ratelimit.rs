//! A log line at most every so often: for events that a hostile or broken peer can cause
//! at any rate (refused origins, monitor drops), so the journal stays readable.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets one log line through per `every`, and counts what it held back meanwhile.
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    /// Last time a line went out, and how many were held back since. A std mutex: held for
    /// a comparison and an increment, never across an await.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    pub const fn new(every: Duration) -> LogLimit {
        LogLimit {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a line may be logged now; `n` is how many were suppressed before it.
    pub fn allow(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match st.0 {
            Some(last) if now.duration_since(last) < self.every => {
                st.1 += 1;
                None
            }
            _ => {
                let held = st.1;
                *st = (Some(now), 0);
                Some(held)
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
