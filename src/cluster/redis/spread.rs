//! Broadcasts spread over several Redis Cluster shards (`[Cluster] bus-shards`): each
//! channel's go to one shard's slot with `SPUBLISH`, and every node listens to each shard
//! with `SSUBSCRIBE` over a connection of its own, so the bus grows with the primaries
//! instead of one carrying every message. Nothing goes through the message log: a node
//! delivers its own broadcasts first (as with one Redis before the log), each channel's
//! in one order on every node, and a session resumes only on the node that held it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::endpoint::Endpoint;
use super::{BATCH, BusStats, MAX_BACKOFF, MIN_BACKOFF, RESPONSE_TIMEOUT, subs};
use crate::cluster::{ClusterError, Envelope, Inbound, Settle, wire};

/// Redis Cluster's hash slots.
const SLOTS: u32 = 16_384;

/// The hash slot of a key whose hash tag is all of it (CRC16/XMODEM, as Redis Cluster's
/// specification gives it).
fn slot(tag: &str) -> u32 {
    let mut crc: u16 = 0;
    for &b in tag.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    u32::from(crc) % SLOTS
}

/// The hash tag of shard `i` of `n`: one whose slot lies in the middle half of the `i`-th
/// of `n` equal parts of the slot range, so that shards land on different primaries where
/// the slots are split evenly (as `redis-cli --cluster create` splits them, give or take
/// a slot). Every node finds the same.
fn tag(prefix: &str, i: usize, n: usize) -> String {
    let (low, high) = part(i, n);
    (0..u32::MAX)
        .map(|j| format!("{prefix}.{i}.{j}"))
        .find(|t| (low..high).contains(&slot(t)))
        .unwrap_or_else(|| format!("{prefix}.{i}"))
}

/// The middle half of the `i`-th of `n` equal parts of the slot range.
fn part(i: usize, n: usize) -> (u32, u32) {
    let (i, n) = (i as u32, n as u32);
    let (start, end) = (SLOTS * i / n, SLOTS * (i + 1) / n);
    let quarter = (end - start) / 4;
    (start + quarter, end - quarter)
}

/// Which of `n` shards carries `name` (a channel, or an identity for direct messages):
/// FNV-1a, stable across nodes and versions.
fn shard_of(name: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

/// What the hub asks of one shard's task.
enum ShardOp {
    Publish {
        topic: String,
        payload: Bytes,
    },
    Watch(String, bool),
    /// Everything queued before goes out first (a hand-over, a shutdown).
    Flush(oneshot::Sender<()>),
}

/// One shard as the hub sees it: its queue and whether it is reachable.
struct Shard {
    tag: String,
    ops: mpsc::UnboundedSender<ShardOp>,
    up: Arc<AtomicBool>,
}

/// The broadcasts' side of the bus when it is spread over shards.
pub(super) struct Spread {
    node: Arc<str>,
    shards: Vec<Shard>,
}

/// A shard's task, waiting for the hub.
pub(super) struct ShardTask {
    url: String,
    tag: String,
    node: Arc<str>,
    ops: mpsc::UnboundedReceiver<ShardOp>,
    up: Arc<AtomicBool>,
    stats: Arc<BusStats>,
    heartbeat: Duration,
    /// Channels this node has members in that this shard carries.
    watched: HashSet<String>,
    /// Tests only (`test_delay`): how long each new subscription waits.
    subscribe_delay: Option<Duration>,
}

/// Tests only: `REALTIME_TEST_HOOKS=1` with `REALTIME_TEST_SHARD_SUBSCRIBE_DELAY_MS=N`
/// makes each shard wait N ms before it listens to a channel new here, so that a
/// subscribe's ack can be seen to wait for it.
fn test_delay() -> Option<Duration> {
    if std::env::var("REALTIME_TEST_HOOKS").as_deref() != Ok("1") {
        return None;
    }
    let ms = std::env::var("REALTIME_TEST_SHARD_SUBSCRIBE_DELAY_MS").ok()?;
    ms.parse().ok().map(Duration::from_millis)
}

fn topic(tag: &str, channel: &str) -> String {
    format!("{{{tag}}}:m:{channel}")
}

fn direct(tag: &str) -> String {
    format!("{{{tag}}}:direct")
}

impl Spread {
    /// `n` shards of the cluster at `url` (a `redis+cluster://` URL), and their tasks.
    pub(super) fn new(
        url: &str,
        prefix: &str,
        n: usize,
        node: Arc<str>,
        stats: &Arc<BusStats>,
        heartbeat: Duration,
    ) -> (Spread, Vec<ShardTask>) {
        let mut shards = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let subscribe_delay = test_delay();
        if let Some(delay) = subscribe_delay {
            warn!(?delay, "test hook: bus shards listen to new channels late");
        }
        for i in 0..n {
            let tag = tag(prefix, i, n);
            let (tx, rx) = mpsc::unbounded_channel();
            let up = Arc::new(AtomicBool::new(false));
            shards.push(Shard {
                tag: tag.clone(),
                ops: tx,
                up: up.clone(),
            });
            tasks.push(ShardTask {
                url: url.to_owned(),
                tag,
                node: node.clone(),
                ops: rx,
                up,
                stats: stats.clone(),
                heartbeat,
                watched: HashSet::new(),
                subscribe_delay,
            });
        }
        (Spread { node, shards }, tasks)
    }

    /// Queues a broadcast on the shard of its channel (or of its identity).
    pub(super) fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>) {
        let (shard, topic) = match (to, envelope.channel.as_deref()) {
            (Some(id), _) => {
                let s = &self.shards[shard_of(id, self.shards.len())];
                (s, direct(&s.tag))
            }
            (None, Some(channel)) => {
                let s = &self.shards[shard_of(channel, self.shards.len())];
                (s, topic(&s.tag, channel))
            }
            (None, None) => return,
        };
        let payload = wire::encode(&self.node, envelope, attachments, to, None);
        let _ = shard.ops.send(ShardOp::Publish { topic, payload });
    }

    pub(super) fn watch(&self, channel: &str, on: bool) {
        let shard = &self.shards[shard_of(channel, self.shards.len())];
        let _ = shard.ops.send(ShardOp::Watch(channel.to_owned(), on));
    }

    /// The member count `count` will tell, told once the shard of `channel` has done what
    /// was queued before (listening to the channel, when it was new here).
    pub(super) fn once_listening(&self, channel: &str, count: oneshot::Receiver<usize>) -> Settle {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Settle::Later(count);
        };
        let shard = &self.shards[shard_of(channel, self.shards.len())];
        let (done, listening) = oneshot::channel();
        let _ = shard.ops.send(ShardOp::Flush(done));
        let (tx, rx) = oneshot::channel();
        runtime.spawn(async move {
            let _ = listening.await;
            if let Ok(n) = count.await {
                let _ = tx.send(n);
            }
        });
        Settle::Later(rx)
    }

    /// The flags of the shards' connections.
    pub(super) fn up_flags(&self) -> Vec<Arc<AtomicBool>> {
        self.shards.iter().map(|s| s.up.clone()).collect()
    }

    /// Waits, at most `within`, for what every shard had queued to go out.
    pub(super) async fn flush(&self, within: Duration) {
        let waits: Vec<_> = self
            .shards
            .iter()
            .filter_map(|s| {
                let (tx, rx) = oneshot::channel();
                s.ops.send(ShardOp::Flush(tx)).ok().map(|()| rx)
            })
            .collect();
        let _ = tokio::time::timeout(within, futures_util::future::join_all(waits)).await;
    }
}

/// One connected stretch's connections to the shard's primary.
struct Live {
    conn: MultiplexedConnection,
    sink: subs::Sink,
    stream: subs::Stream,
    /// Ops queued before the connection, to apply first.
    early: Vec<ShardOp>,
}

/// Why a connected stretch ended.
enum Ended {
    Lost(ClusterError),
    /// The hub is gone.
    Done,
}

impl ShardTask {
    pub(super) fn start(self, hub: Arc<dyn Inbound>) {
        tokio::spawn(self.run(hub));
    }

    async fn run(mut self, hub: Arc<dyn Inbound>) {
        let mut delay = MIN_BACKOFF;
        let mut said = false;
        let mut endpoint = match Endpoint::new(&self.url, &format!("{{{}}}", self.tag)) {
            Ok(e) => e,
            Err(e) => {
                warn!(shard = %self.tag, error = %e, "a bus shard cannot be reached: its broadcasts stay on this node");
                return self.away_forever().await;
            }
        };
        loop {
            let ended = match self.connect(&mut endpoint).await {
                Ok(live) => {
                    self.up.store(true, Ordering::Release);
                    if said {
                        info!(shard = %self.tag, "bus shard reachable again");
                    }
                    said = false;
                    delay = MIN_BACKOFF;
                    self.serve(&hub, live).await
                }
                Err(e) => Ended::Lost(e),
            };
            self.up.store(false, Ordering::Release);
            match ended {
                Ended::Done => return,
                Ended::Lost(e) if said => {
                    debug!(shard = %self.tag, error = %e, retry_in = ?delay, "bus shard still unreachable");
                }
                Ended::Lost(e) => {
                    warn!(shard = %self.tag, error = %e, "lost a bus shard: its channels' broadcasts reach this node's members only until it is back");
                    said = true;
                }
            }
            if self.away(delay).await {
                return;
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&mut self, endpoint: &mut Endpoint) -> Result<Live, ClusterError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let client = endpoint.primary().await?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(ClusterError::redis("connecting to a bus shard"))?;
        endpoint.check(&mut conn).await?;
        let (mut sink, stream) = subs::open(&client, true).await?;
        // Channels asked for meanwhile (a hand-over's, say) are listened to before the
        // shard counts as up; what else was queued follows, in order.
        let mut early = Vec::new();
        while let Ok(op) = self.ops.try_recv() {
            match op {
                ShardOp::Watch(..) => self.away_op(op),
                op => early.push(op),
            }
        }
        let mut topics: Vec<String> = self.watched.iter().map(|c| topic(&self.tag, c)).collect();
        topics.push(direct(&self.tag));
        if let Err(e) = sink.subscribe(&topics).await {
            for op in early {
                self.away_op(op);
            }
            return Err(ClusterError::redis("subscribing on a bus shard")(e));
        }
        Ok(Live {
            conn,
            sink,
            stream,
            early,
        })
    }

    /// Applies ops and delivers what the shard carries until the connection is lost.
    async fn serve(&mut self, hub: &Arc<dyn Inbound>, live: Live) -> Ended {
        let Live {
            mut conn,
            mut sink,
            mut stream,
            early,
        } = live;
        if let Err(e) = self.apply(&mut conn, &mut sink, early).await {
            return Ended::Lost(e);
        }
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.tick().await;
        loop {
            tokio::select! {
                op = self.ops.recv() => {
                    let Some(op) = op else { return Ended::Done };
                    let mut batch = vec![op];
                    while batch.len() < BATCH {
                        match self.ops.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.apply(&mut conn, &mut sink, batch).await {
                        return Ended::Lost(e);
                    }
                }
                heard = stream.next() => match heard {
                    None => return Ended::Lost(ClusterError::Unavailable),
                    Some(subs::Heard::Message(msg)) => self.inbound(hub, &msg),
                    Some(subs::Heard::Dropped(t)) => {
                        // The server dropped a topic still wanted: its slot moved away.
                        let wanted = t == direct(&self.tag)
                            || self.watched.iter().any(|c| topic(&self.tag, c) == t);
                        if wanted {
                            return Ended::Lost(ClusterError::Answer("the bus shard's slot moved"));
                        }
                    }
                    Some(subs::Heard::Nothing) => {}
                },
                _ = beat.tick() => {
                    let ping = tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping()).await;
                    if !matches!(ping, Ok(Ok(()))) {
                        return Ended::Lost(ClusterError::Timeout("pinging a bus shard"));
                    }
                }
            }
        }
    }

    /// Sends a batch: publishes in one pipeline, in the order the hub made them.
    async fn apply(
        &mut self,
        conn: &mut MultiplexedConnection,
        sink: &mut subs::Sink,
        batch: Vec<ShardOp>,
    ) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        let mut sent = 0u64;
        let mut flushed = Vec::new();
        for op in batch {
            match op {
                ShardOp::Publish { topic, payload } => {
                    pipe.cmd("SPUBLISH")
                        .arg(topic)
                        .arg(payload.as_ref())
                        .ignore();
                    sent += 1;
                }
                ShardOp::Watch(channel, on) => {
                    // What was queued before the change goes first.
                    self.send(conn, &mut pipe, &mut sent).await?;
                    let t = topic(&self.tag, &channel);
                    let done = if on {
                        if let Some(delay) = self.subscribe_delay {
                            tokio::time::sleep(delay).await;
                        }
                        self.watched.insert(channel);
                        sink.subscribe(&[t]).await
                    } else {
                        self.watched.remove(&channel);
                        sink.unsubscribe(&t).await
                    };
                    done.map_err(ClusterError::redis("subscribing on a bus shard"))?;
                }
                ShardOp::Flush(reply) => flushed.push(reply),
            }
        }
        self.send(conn, &mut pipe, &mut sent).await?;
        for reply in flushed {
            let _ = reply.send(());
        }
        Ok(())
    }

    async fn send(
        &self,
        conn: &mut MultiplexedConnection,
        pipe: &mut redis::Pipeline,
        sent: &mut u64,
    ) -> Result<(), ClusterError> {
        if *sent == 0 {
            return Ok(());
        }
        let result = pipe.query_async::<()>(conn).await;
        let n = std::mem::take(sent);
        *pipe = redis::pipe();
        match result {
            Ok(()) => {
                self.stats.sent.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                Err(ClusterError::redis("publishing on a bus shard")(e))
            }
        }
    }

    /// A broadcast another node sent through this shard: delivered here.
    fn inbound(&self, hub: &Arc<dyn Inbound>, msg: &redis::Msg) {
        let name = msg.get_channel_name();
        let m = match wire::decode(msg.get_payload_bytes()) {
            Ok(m) => m,
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(redis_channel = %name, error = %e, "dropped a malformed message from the bus");
                return;
            }
        };
        if *m.origin == *self.node {
            return;
        }
        let fits = match (&m.to, m.envelope.channel.as_deref()) {
            (Some(_), _) => name == direct(&self.tag),
            (None, Some(channel)) => name == topic(&self.tag, channel),
            (None, None) => false,
        };
        if !fits {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(redis_channel = %name, "dropped a bus message addressed elsewhere");
            return;
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        hub.deliver(&m.envelope, m.attachments, m.to.as_deref(), None);
    }

    /// While the shard is away, for `delay`: broadcasts are counted as not sent, changes
    /// of what to watch are kept for the next connection. `true` when the hub is gone.
    async fn away(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            match tokio::time::timeout_at(until, self.ops.recv()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(op)) => self.away_op(op),
            }
        }
    }

    async fn away_forever(mut self) {
        while let Some(op) = self.ops.recv().await {
            self.away_op(op);
        }
    }

    fn away_op(&mut self, op: ShardOp) {
        match op {
            ShardOp::Publish { .. } => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            ShardOp::Watch(channel, true) => {
                self.watched.insert(channel);
            }
            ShardOp::Watch(channel, false) => {
                self.watched.remove(&channel);
            }
            ShardOp::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // The reference values of Redis Cluster's specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
    }

    #[test]
    fn each_shard_has_its_part_of_the_slots() {
        for n in [1, 2, 3, 7, 64] {
            let tags: Vec<String> = (0..n).map(|i| tag("realtime", i, n)).collect();
            for (i, t) in tags.iter().enumerate() {
                let s = slot(t);
                let (low, high) = part(i, n);
                assert!(
                    low >= SLOTS * i as u32 / n as u32
                        && high <= SLOTS * (i as u32 + 1) / n as u32
                        && (low..high).contains(&s),
                    "{t}: slot {s} not in the middle of part {i} of {n}"
                );
            }
            assert_eq!(
                tags,
                (0..n).map(|i| tag("realtime", i, n)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn channels_spread_over_the_shards() {
        let mut counts = [0usize; 4];
        for c in 0..4000 {
            counts[shard_of(&format!("room-{c}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
        assert_eq!(shard_of("room", 1), 0);
        assert_eq!(shard_of("room", 4), shard_of("room", 4));
    }
}
