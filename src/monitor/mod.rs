//! The monitor (docs/design.md#monitor): what happens in the hub, POSTed as JSON envelopes to
//! `[Monitor] url`.
//!
//! The hub only ever `try_send`s into a bounded queue ([`Monitor`] is its [`Observer`]); one
//! sender thread (`sender`) posts the events in order, with timeouts, retries and a
//! signature. A full queue drops the event (counted, logged at a limited rate): a slow,
//! dead or hostile endpoint costs events, never message delivery.

mod sender;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::MonitorConfig;
use crate::hub::{Envelope, HubEvent, Observer};
use crate::ratelimit::LogLimit;

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct MonitorStats {
    /// Events waiting in the queue.
    pub queued: AtomicU64,
    /// Events the endpoint accepted (2xx).
    pub sent: AtomicU64,
    /// Events given up on: retries spent, a 3xx/4xx answer, or the shutdown deadline.
    pub failed: AtomicU64,
    /// Events never queued because the queue was full.
    pub dropped: AtomicU64,
}

/// One queued event. The envelope is serialized on the sender thread, off the hub's path.
struct Job {
    envelope: Envelope,
}

/// Shared between the hub side and the sender thread.
struct Shared {
    stats: MonitorStats,
    /// Set by [`Monitor::close`]: the sender drains what is queued, then stops.
    closing: AtomicBool,
    /// When the drain must end, once closing. A std mutex: read between requests only.
    deadline: Mutex<Option<Instant>>,
    /// The sender thread has stopped.
    done: AtomicBool,
}

impl Shared {
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The monitor: the queue and its sender thread.
pub struct Monitor {
    /// Bounded (`[Monitor] queue`): `try_send` only, never a wait.
    tx: SyncSender<Job>,
    /// Which events are posted, by [`HubEvent`] index.
    events: [bool; 6],
    /// The queue's bound: past it an event is dropped before it is even copied.
    capacity: u64,
    shared: Arc<Shared>,
    /// Drops happen in bursts when the endpoint is down: one warning per period.
    drop_log: LogLimit,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// Starts the sender thread when `[Monitor] url` is set.
    pub fn start(config: &MonitorConfig) -> std::io::Result<Option<Arc<Monitor>>> {
        let Some(url) = config.url.clone() else {
            return Ok(None);
        };
        let mut events = [false; 6];
        for (i, e) in HubEvent::ALL.iter().enumerate() {
            events[i] = config.events.iter().any(|n| n == e.name());
        }
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let shared = Arc::new(Shared {
            stats: MonitorStats::default(),
            closing: AtomicBool::new(false),
            deadline: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        let s = sender::Sender::new(url.clone(), config, shared.clone());
        std::thread::Builder::new()
            .name("realtime-monitor".into())
            .spawn(move || s.run(rx))?;
        info!(url = %crate::config::redacted(&url), events = %config.events.join(","), queue = config.queue, "monitor on");
        Ok(Some(Arc::new(Monitor {
            tx,
            events,
            capacity: config.queue.max(1) as u64,
            shared,
            drop_log: LogLimit::new(Duration::from_secs(10)),
        })))
    }

    pub fn stats(&self) -> &MonitorStats {
        &self.shared.stats
    }

    /// Starts the final drain: what is queued is still sent until `within` from now.
    pub fn close(&self, within: Duration) {
        let mut d = self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if d.is_none() {
            *d = Some(Instant::now() + within);
        }
        drop(d);
        self.shared.closing.store(true, Ordering::Release);
    }

    /// Whether the sender thread has stopped.
    pub fn is_finished(&self) -> bool {
        self.shared.done.load(Ordering::Acquire)
    }

    /// Drains the queue for at most `within` (shutdown), without blocking the runtime.
    pub async fn flush(&self, within: Duration) {
        self.close(within);
        let end = tokio::time::Instant::now() + within + Duration::from_millis(100);
        while !self.is_finished() && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.stats().queued.load(Ordering::Relaxed);
        if !self.is_finished() || left > 0 {
            warn!(
                unsent = left,
                "monitor: shutdown deadline passed with events unsent"
            );
        }
    }

    fn drop_one(&self, why: &str) {
        self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(held) = self.drop_log.allow() {
            let total = self.shared.stats.dropped.load(Ordering::Relaxed);
            warn!(
                dropped_total = total,
                since_last_warning = held + 1,
                "monitor: event dropped: {why}"
            );
        }
    }
}

impl Observer for Monitor {
    fn wants(&self, event: HubEvent) -> bool {
        let i = HubEvent::ALL.iter().position(|e| *e == event);
        i.is_some_and(|i| self.events[i])
    }

    fn observe(&self, _event: HubEvent, envelope: &Envelope) {
        if self.shared.closing.load(Ordering::Relaxed) {
            return self.drop_one("shutting down");
        }
        // Counted before the send, so the sender's decrement can never go below zero.
        let queued = self.shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        if queued >= self.capacity {
            // Surely full: drop without copying the envelope (the common case while
            // the endpoint is down, on the publish path).
            self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
            return self.drop_one("queue full (endpoint slow or down)");
        }
        let job = Job {
            envelope: envelope.clone(),
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(e) => {
                self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => self.drop_one("queue full (endpoint slow or down)"),
                    TrySendError::Disconnected(_) => self.drop_one("sender stopped"),
                }
            }
        }
    }
}
