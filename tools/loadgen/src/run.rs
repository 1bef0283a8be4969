//! The machinery every scenario shares: subscriber tasks (connect, subscribe, receive and
//! check), publisher tasks (a bounded window or a fixed rate), and the bookkeeping that
//! tells when every subscriber has every message.
//!
//! A run goes in phases the main task observes from outside: all connected (handshakes),
//! all subscribed (subscribe acks), then publishing until every message reached every
//! subscriber of its channel, or nothing moved for the stall timeout.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::check::{Counts, OrderCheck, Seen};
use crate::conn::{self, Target};
use crate::wire::{self, Incoming};
use crate::ws::Ws;

/// Tasks that have passed a point, awaited from the main task.
#[derive(Default)]
pub(crate) struct Arrivals {
    arrived: AtomicUsize,
    failed: AtomicUsize,
    notify: Notify,
}

impl Arrivals {
    fn arrive(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    fn fail(&self) {
        self.failed.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    pub(crate) fn failed(&self) -> usize {
        self.failed.load(Ordering::Acquire)
    }

    /// Waits until `total` tasks have arrived or failed; returns how many arrived.
    pub(crate) async fn wait(&self, total: usize) -> usize {
        loop {
            let mut n = pin!(self.notify.notified());
            n.as_mut().enable();
            let arrived = self.arrived.load(Ordering::Acquire);
            if arrived + self.failed() >= total {
                return arrived;
            }
            n.await;
        }
    }
}

/// The points of a run every client passes, and the signals that move them on.
#[derive(Default)]
pub(crate) struct Phases {
    /// Bounds handshakes in flight, so the server's listen backlog never overflows
    /// (a dropped SYN costs a one-second retransmit and would wreck handshakes/s).
    connect_gate: Option<Arc<Semaphore>>,
    pub connected: Arrivals,
    /// Cancelled (as a broadcast) when every client should subscribe.
    pub go_subscribe: CancellationToken,
    pub subscribed: Arrivals,
    /// Cancelled when the run is over: clients stop reading and hang up.
    pub stop: CancellationToken,
}

impl Phases {
    pub(crate) fn new(concurrency: usize) -> Phases {
        Phases {
            connect_gate: Some(Arc::new(Semaphore::new(concurrency.max(1)))),
            ..Phases::default()
        }
    }
}

/// Which messages a run sends, and who must get them: per channel, messages numbered
/// `0..per_channel`, each expected by every subscriber of its channel.
pub(crate) struct Tracker {
    /// The load generator's clock: publish times and latencies are microseconds since it.
    pub epoch: Instant,
    pub per_channel: u32,
    /// Subscribers of each channel.
    expected: Vec<u32>,
    /// First receipts of each message (channel × per_channel + seq), across subscribers.
    receipts: Vec<AtomicU32>,
    /// Messages received by every subscriber of their channel.
    completed: AtomicU64,
    /// Messages sent, by all publishers.
    pub published: AtomicU64,
    /// Microseconds since `epoch` when the last message completed.
    last_completion_us: AtomicU64,
    /// Woken on each completed message (the publishers' window opens).
    notify: Notify,
}

impl Tracker {
    pub(crate) fn new(expected: Vec<u32>, per_channel: u32) -> Tracker {
        let n = expected.len() * per_channel as usize;
        Tracker {
            epoch: Instant::now(),
            per_channel,
            expected,
            receipts: (0..n).map(|_| AtomicU32::new(0)).collect(),
            completed: AtomicU64::new(0),
            published: AtomicU64::new(0),
            last_completion_us: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Messages that will be sent in all.
    pub(crate) fn total_messages(&self) -> u64 {
        self.expected.len() as u64 * u64::from(self.per_channel)
    }

    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// When the last message completed, on the run's clock.
    pub(crate) fn last_completion(&self) -> Duration {
        Duration::from_micros(self.last_completion_us.load(Ordering::Acquire))
    }

    /// A subscriber got a message for the first time.
    fn receipt(&self, channel: u32, seq: u32) {
        let i = channel as usize * self.per_channel as usize + seq as usize;
        let (Some(r), Some(&want)) = (self.receipts.get(i), self.expected.get(channel as usize))
        else {
            return;
        };
        if r.fetch_add(1, Ordering::AcqRel) + 1 == want {
            self.completed.fetch_add(1, Ordering::AcqRel);
            self.last_completion_us
                .fetch_max(self.now_us(), Ordering::AcqRel);
            self.notify.notify_waiters();
        }
    }

    /// Waits until fewer than `window` messages are unreceived by some subscriber; returns
    /// how many more may be sent now.
    async fn room(&self, window: u64) -> u64 {
        loop {
            let mut n = pin!(self.notify.notified());
            n.as_mut().enable();
            let in_flight = self.published.load(Ordering::Acquire) - self.completed();
            if in_flight < window {
                return window - in_flight;
            }
            n.await;
        }
    }

    /// Waits until every message completed or none completed for `stall`; returns whether
    /// all completed.
    pub(crate) async fn wait_done(&self, stall: Duration) -> bool {
        let total = self.total_messages();
        let mut last = self.completed();
        let mut moved_at = Instant::now();
        loop {
            let c = self.completed();
            if c >= total {
                return true;
            }
            if c != last {
                last = c;
                moved_at = Instant::now();
            } else if moved_at.elapsed() >= stall {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Publish-to-delivery times in microseconds, first receipts only.
    pub latencies: Vec<u32>,
    pub counts: Counts,
    /// Events that were not our deliveries (e.g. join notices).
    pub other_events: u64,
    /// Connection failed, or the server ended it before the run did.
    pub error: Option<String>,
}

/// A subscribing client: which channels (indexes into `names`) it joins.
pub(crate) struct Subscriber {
    pub target: Arc<Target>,
    pub names: Arc<Vec<String>>,
    pub channels: Vec<u32>,
    pub phases: Arc<Phases>,
    pub tracker: Arc<Tracker>,
}

impl Subscriber {
    pub(crate) fn spawn(self) -> JoinHandle<Outcome> {
        tokio::spawn(self.run())
    }

    async fn run(self) -> Outcome {
        let mut out = Outcome {
            counts: Counts {
                expected: self.channels.len() as u64 * u64::from(self.tracker.per_channel),
                lost: self.channels.len() as u64 * u64::from(self.tracker.per_channel),
                ..Counts::default()
            },
            ..Outcome::default()
        };
        let permit = match &self.phases.connect_gate {
            Some(g) => g.clone().acquire_owned().await.ok(),
            None => None,
        };
        let mut ws = match conn::connect(&self.target).await {
            Ok(ws) => ws,
            Err(e) => {
                self.phases.connected.fail();
                out.error = Some(format!("{e:#}"));
                return out;
            }
        };
        drop(permit);
        self.phases.connected.arrive();

        if let Err(e) = idle_until(&mut ws, &self.phases.go_subscribe).await {
            self.phases.subscribed.fail();
            out.error = Some(format!("{e:#}"));
            return out;
        }
        let names: Vec<&str> = self
            .channels
            .iter()
            .map(|&c| self.names[c as usize].as_str())
            .collect();
        match conn::subscribe(&mut ws, &names).await {
            Ok(events) => out.other_events += events,
            Err(e) => {
                self.phases.subscribed.fail();
                out.error = Some(format!("{e:#}"));
                return out;
            }
        }
        self.phases.subscribed.arrive();
        self.receive(ws, out).await
    }

    /// The hot loop: every delivery is checked, timed, and counted towards completion.
    async fn receive(&self, mut ws: Ws, mut out: Outcome) -> Outcome {
        let mut checks: Vec<OrderCheck> = self
            .channels
            .iter()
            .map(|_| OrderCheck::new(self.tracker.per_channel))
            .collect();
        let mut stop = pin!(self.phases.stop.cancelled());
        let epoch = self.tracker.epoch;
        loop {
            // Biased towards the socket: the stop signal is only looked at when no frame
            // is ready, so it costs nothing per delivery.
            let msg = tokio::select! {
                biased;
                msg = ws.next() => msg,
                _ = &mut stop => break,
            };
            let received = match msg {
                Ok(Some(r)) => r,
                Ok(None) => {
                    out.error = Some("server closed the connection".into());
                    break;
                }
                Err(e) => {
                    out.error = Some(format!("read: {e:#}"));
                    break;
                }
            };
            let mut pong = false;
            match wire::classify(received.text) {
                Incoming::Event(ev) => match wire::delivery(ev) {
                    None => out.other_events += 1,
                    Some(mark) => {
                        let slot = self.channels.iter().position(|&c| c == mark.channel);
                        match slot.and_then(|i| checks.get_mut(i)) {
                            // A delivery for a channel this client never joined.
                            None => out.counts.unexpected += 1,
                            Some(check) => {
                                if check.record(mark.seq) == Seen::New {
                                    // Arrival is when the bytes were read, not when parsed.
                                    let at =
                                        received.read_at.duration_since(epoch).as_micros() as u64;
                                    let us =
                                        at.saturating_sub(mark.sent_us).min(u64::from(u32::MAX));
                                    out.latencies.push(us as u32);
                                    self.tracker.receipt(mark.channel, mark.seq);
                                }
                            }
                        }
                    }
                },
                Incoming::Ping => pong = true,
                Incoming::Close => {
                    out.error = Some("server closed the session".into());
                    break;
                }
                _ => out.other_events += 1,
            }
            if pong {
                ws.queue_text(wire::PONG);
            }
            if ws.wants_flush() && ws.flush().await.is_err() {
                out.error = Some("write failed".into());
                break;
            }
        }
        let unexpected = out.counts.unexpected;
        out.counts = Counts {
            unexpected,
            ..Counts::default()
        };
        for c in &checks {
            out.counts.add(&c.counts());
        }
        // Hang up politely so the server does not count a transport error.
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
        out
    }
}

/// Answers pings (and ignores events) until `until` is cancelled.
async fn idle_until(ws: &mut Ws, until: &CancellationToken) -> Result<()> {
    let mut until = pin!(until.cancelled());
    loop {
        let msg = tokio::select! {
            _ = &mut until => return Ok(()),
            msg = ws.next() => msg,
        };
        let Some(received) = msg? else {
            bail!("server closed the connection");
        };
        match wire::classify(received.text) {
            Incoming::Ping => ws.queue_text(wire::PONG),
            Incoming::Close => bail!("server closed the session"),
            _ => {}
        }
        ws.flush().await?;
    }
}

/// How a publisher paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// At most this many messages sent but not yet received by every subscriber of their
    /// channel (all publishers together), so the server's queues are never the limit.
    Window(u64),
    /// This many messages per second (catching up after a late tick, never skipping).
    Rate(f64),
}

/// A publishing client: sends `per_channel` messages to each of its channels, round-robin.
pub(crate) struct Publisher {
    pub ws: Ws,
    pub names: Arc<Vec<String>>,
    pub channels: Vec<u32>,
    pub tracker: Arc<Tracker>,
    pub pace: Pace,
    /// Bytes of each message's data object.
    pub size: usize,
    pub stop: CancellationToken,
}

impl Publisher {
    pub(crate) fn spawn(self) -> JoinHandle<Result<u64>> {
        tokio::spawn(self.run())
    }

    async fn run(self) -> Result<u64> {
        let Publisher {
            mut ws,
            names,
            channels,
            tracker,
            pace,
            size,
            stop,
        } = self;
        let total = channels.len() as u64 * u64::from(tracker.per_channel);
        let mut sent = 0u64;
        let period = match pace {
            Pace::Rate(r) => Duration::from_secs_f64(1.0 / r.max(0.001)),
            Pace::Window(_) => Duration::from_secs(3600),
        };
        let mut ticks = tokio::time::interval(period);
        let mut stop = pin!(stop.cancelled());
        loop {
            let room = async {
                match pace {
                    Pace::Window(w) => tracker.room(w).await,
                    Pace::Rate(_) => {
                        ticks.tick().await;
                        1
                    }
                }
            };
            tokio::select! {
                biased;
                msg = ws.next() => {
                    let Some(received) = msg? else {
                        bail!("server closed the publisher's connection");
                    };
                    match wire::classify(received.text) {
                        Incoming::Ping => ws.queue_text(wire::PONG),
                        Incoming::Close => bail!("server closed the publisher's session"),
                        _ => {}
                    }
                    ws.flush().await?;
                }
                _ = &mut stop => break,
                n = room, if sent < total => {
                    // A batch goes out in one write: at most 64, so pings are still answered.
                    let k = channels.len() as u64;
                    for _ in 0..n.min(total - sent).min(64) {
                        let (c, seq) = (channels[(sent % k) as usize], (sent / k) as u32);
                        ws.queue_text(&wire::publish(&names[c as usize], c, seq, tracker.now_us(), size));
                        tracker.published.fetch_add(1, Ordering::AcqRel);
                        sent += 1;
                    }
                    ws.flush().await?;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
        Ok(sent)
    }
}
