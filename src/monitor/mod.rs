//! The monitor (docs/design.md#monitor): what happens in the hub, POSTed as JSON envelopes to
//! `[Monitor] url`.
//!
//! The hub only ever `try_send`s into a bounded queue ([`Monitor`] is its [`Observer`]); one
//! sender thread (`sender`) posts the events in order, with timeouts, retries and a
//! signature. A full queue drops the event (counted, logged at a limited rate): a slow,
//! dead or hostile endpoint costs events, never message delivery. At a hand-over the
//! events not yet posted go to the next process with the sessions ([`Monitor::hand_over`]).

mod sender;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
enum Job {
    Event(Envelope),
    /// An event the previous process had not posted yet: its body as it would have been.
    Carried(Bytes),
}

impl Job {
    fn body(self) -> Bytes {
        match self {
            Job::Event(envelope) => Bytes::from(envelope.to_json().to_string()),
            Job::Carried(body) => body,
        }
    }
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
    /// Set by [`Monitor::hand_over`]: the sender takes no further job.
    handing_over: AtomicBool,
    /// The queue's receiving end, shared so a hand-over can take what is left in it. The
    /// sender holds it only while it waits for a job (briefly, [`sender::IDLE_POLL`]).
    rx: Mutex<Receiver<Job>>,
    /// The body being posted, until the endpoint answers: a hand-over passes it on too,
    /// as the endpoint may not have it (at least once).
    in_flight: Mutex<Option<Bytes>>,
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
    /// Starts the sender thread when `[Monitor] url` is set. `carried`: the events the
    /// previous process handed over unposted, queued first, in their order.
    pub fn start(
        config: &MonitorConfig,
        carried: Vec<Bytes>,
    ) -> std::io::Result<Option<Arc<Monitor>>> {
        let Some(url) = config.url.clone() else {
            if !carried.is_empty() {
                warn!(
                    count = carried.len(),
                    "monitor: events handed over by the previous process dropped: no [Monitor] url now"
                );
            }
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
            handing_over: AtomicBool::new(false),
            rx: Mutex::new(rx),
            in_flight: Mutex::new(None),
        });
        let monitor = Monitor {
            tx,
            events,
            capacity: config.queue.max(1) as u64,
            shared: shared.clone(),
            drop_log: LogLimit::new(Duration::from_secs(10)),
        };
        // Before the sender runs and before any event of this process: first in line.
        let count = carried.len();
        for body in carried {
            monitor.enqueue(Job::Carried(body));
        }
        let s = sender::Sender::new(url.clone(), config, shared);
        std::thread::Builder::new()
            .name("realtime-monitor".into())
            .spawn(move || s.run())?;
        info!(url = %crate::config::redacted(&url), events = %config.events.join(","), queue = config.queue, "monitor on");
        if count > 0 {
            info!(
                count,
                "monitor: posting first the events the previous process had not posted"
            );
        }
        Ok(Some(Arc::new(monitor)))
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

    /// A hand-over: the sender stops taking events, and what it has not posted (the one it
    /// is posting, then the queue, in order) is returned for the next process, which posts
    /// it first. The one being posted may reach the endpoint twice: at least once, never
    /// lost. Call once the sessions are closed, so no event follows.
    pub fn hand_over(&self) -> Vec<Bytes> {
        self.shared.handing_over.store(true, Ordering::Release);
        // Locked between two waits of the sender, which then sees the flag and stops.
        let rx = self.shared.rx.lock().unwrap_or_else(|e| e.into_inner());
        let mut left: Vec<Bytes> = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .into_iter()
            .collect();
        while let Ok(job) = rx.try_recv() {
            self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
            left.push(job.body());
        }
        left
    }

    /// Queues a job unless the queue is full.
    fn enqueue(&self, job: Job) {
        // Counted before the send, so the sender's decrement can never go below zero.
        self.shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(job) {
            self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => self.drop_one("queue full (endpoint slow or down)"),
                TrySendError::Disconnected(_) => self.drop_one("sender stopped"),
            }
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
        if self.shared.closing.load(Ordering::Relaxed)
            || self.shared.handing_over.load(Ordering::Relaxed)
        {
            return self.drop_one("shutting down");
        }
        if self.shared.stats.queued.load(Ordering::Relaxed) >= self.capacity {
            // Surely full: drop without copying the envelope (the common case while
            // the endpoint is down, on the publish path).
            return self.drop_one("queue full (endpoint slow or down)");
        }
        self.enqueue(Job::Event(envelope.clone()));
    }
}
