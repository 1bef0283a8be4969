//! A session's heartbeat: when the next ping is due, and when a silent client counts as gone.
//!
//! The deadline follows from the schedule, not from the moment the session task got round
//! to sending the ping: a ping due at `t` makes the client gone at `t + ping timeout` even
//! if the task sent it late, and a session past its deadline is gone for every request,
//! even one that reaches the task before its timer fired. Only a late ping that reached
//! the client at once (over a WebSocket, or to a waiting GET) gives it the whole ping
//! timeout from then: the client cannot answer a ping before it has it.

use std::time::Duration;

use tokio::time::Instant;

/// What the heartbeat's timer asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Beat {
    /// Send a ping now.
    Ping,
    /// The client missed its deadline.
    Gone,
}

#[derive(Debug)]
pub(super) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    /// When the next ping is due.
    ping_at: Instant,
    /// When the client counts as gone: the due ping's time plus the ping timeout.
    deadline: Instant,
    /// A ping went out and its pong has not come back.
    awaiting_pong: bool,
}

impl Heartbeat {
    pub(super) fn new(interval: Duration, timeout: Duration, now: Instant) -> Heartbeat {
        let ping_at = now + interval;
        Heartbeat {
            interval,
            timeout,
            ping_at,
            deadline: ping_at + timeout,
            awaiting_pong: false,
        }
    }

    /// When the session task must next call [`Heartbeat::beat`].
    pub(super) fn timer(&self) -> Instant {
        if self.awaiting_pong {
            self.deadline
        } else {
            self.ping_at
        }
    }

    /// Whether the client is past its deadline at `now`.
    pub(super) fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Whether no ping is due or awaited at `now`: a client that ends its connection then
    /// has not given up on a late ping (as clients do before they reconnect).
    pub(super) fn quiet(&self, now: Instant) -> bool {
        !self.awaiting_pong && now < self.ping_at
    }

    /// The timer fired (possibly late).
    pub(super) fn beat(&mut self, now: Instant) -> Option<Beat> {
        if self.expired(now) {
            return Some(Beat::Gone);
        }
        if self.awaiting_pong || now < self.ping_at {
            return None;
        }
        self.awaiting_pong = true;
        Some(Beat::Ping)
    }

    /// The ping just reached the client: it has the whole ping timeout to answer.
    pub(super) fn delivered(&mut self, now: Instant) {
        if self.awaiting_pong {
            self.deadline = self.deadline.max(now + self.timeout);
        }
    }

    /// A pong came back: the next ping is one interval from now.
    pub(super) fn pong(&mut self, now: Instant) {
        self.awaiting_pong = false;
        self.ping_at = now + self.interval;
        self.deadline = self.ping_at + self.timeout;
    }

    /// Data came while a pong is due: it shows the client alive (engine.io counts it too).
    pub(super) fn alive(&mut self, now: Instant) {
        if self.awaiting_pong {
            self.deadline = self.deadline.max(now + self.timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(300);
    const TIMEOUT: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_ping_one_interval_after_the_start() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(INTERVAL, TIMEOUT, t0);
        assert_eq!(h.timer(), t0 + INTERVAL);
        assert_eq!(h.beat(t0 + ms(299)), None);
        assert_eq!(h.beat(t0 + INTERVAL), Some(Beat::Ping));
        assert_eq!(h.timer(), t0 + ms(500));
        h.pong(t0 + ms(350));
        assert_eq!(h.timer(), t0 + ms(650));
        assert!(!h.expired(t0 + ms(849)));
        assert!(h.expired(t0 + ms(850)));
    }

    #[test]
    fn a_late_ping_does_not_move_the_deadline() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(INTERVAL, TIMEOUT, t0);
        // The task got to the ping 100 ms late: the client is still gone at 500 ms.
        assert_eq!(h.beat(t0 + ms(400)), Some(Beat::Ping));
        assert!(h.expired(t0 + ms(500)));
        assert_eq!(h.beat(t0 + ms(500)), Some(Beat::Gone));
    }

    #[test]
    fn a_late_ping_that_reached_the_client_gets_the_whole_timeout() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(INTERVAL, TIMEOUT, t0);
        assert_eq!(h.beat(t0 + ms(400)), Some(Beat::Ping));
        h.delivered(t0 + ms(410));
        assert!(!h.expired(t0 + ms(600)));
        assert_eq!(h.timer(), t0 + ms(610));
        assert_eq!(h.beat(t0 + ms(610)), Some(Beat::Gone));
    }

    #[test]
    fn past_the_deadline_before_any_ping_is_gone() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(INTERVAL, TIMEOUT, t0);
        assert!(h.expired(t0 + ms(500)));
        assert_eq!(h.beat(t0 + ms(501)), Some(Beat::Gone));
    }

    #[test]
    fn quiet_until_a_ping_is_due_and_again_after_its_pong() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(INTERVAL, TIMEOUT, t0);
        assert!(h.quiet(t0 + ms(299)));
        assert!(!h.quiet(t0 + INTERVAL), "due, even if not sent yet");
        assert_eq!(h.beat(t0 + INTERVAL), Some(Beat::Ping));
        assert!(!h.quiet(t0 + ms(310)));
        h.pong(t0 + ms(320));
        assert!(h.quiet(t0 + ms(321)));
    }

    #[test]
    fn data_while_a_pong_is_due_extends_the_deadline() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(INTERVAL, TIMEOUT, t0);
        h.alive(t0 + ms(100));
        assert!(
            h.expired(t0 + ms(500)),
            "no pong due yet: nothing to extend"
        );
        assert_eq!(h.beat(t0 + INTERVAL), Some(Beat::Ping));
        h.alive(t0 + ms(450));
        assert!(!h.expired(t0 + ms(600)));
        assert!(h.expired(t0 + ms(650)));
    }
}
