//! One shard's task: its two connections to the primary of its slot, found and followed
//! like the presence slot's; publishing what the hub queued, listening to this node's
//! channels, and delivering what the other nodes sent through it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::super::endpoint::Endpoint;
use super::super::{BATCH, BusStats, MAX_BACKOFF, MIN_BACKOFF, RESPONSE_TIMEOUT, subs};
use super::{ShardOp, direct, topic};
use crate::cluster::{ClusterError, Inbound, wire};

/// A shard's task, waiting for the hub.
pub(in crate::cluster::redis) struct ShardTask {
    pub(super) url: String,
    pub(super) tag: String,
    pub(super) node: Arc<str>,
    pub(super) ops: mpsc::UnboundedReceiver<ShardOp>,
    pub(super) up: Arc<AtomicBool>,
    pub(super) stats: Arc<BusStats>,
    pub(super) heartbeat: Duration,
    /// Channels this node has members in that this shard carries.
    pub(super) watched: HashSet<String>,
    /// Tests only (`test_delay`): how long each new subscription waits.
    pub(super) subscribe_delay: Option<Duration>,
}

/// Tests only: `REALTIME_TEST_HOOKS=1` with `REALTIME_TEST_SHARD_SUBSCRIBE_DELAY_MS=N`
/// makes each shard wait N ms before it listens to a channel new here, so that a
/// subscribe's ack can be seen to wait for it.
pub(super) fn test_delay() -> Option<Duration> {
    if std::env::var("REALTIME_TEST_HOOKS").as_deref() != Ok("1") {
        return None;
    }
    let ms = std::env::var("REALTIME_TEST_SHARD_SUBSCRIBE_DELAY_MS").ok()?;
    ms.parse().ok().map(Duration::from_millis)
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
    pub(in crate::cluster::redis) fn start(self, hub: Arc<dyn Inbound>) {
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
                    None => return Ended::Lost(ClusterError::Closed),
                    Some(subs::Heard::Message(msg)) => self.inbound(hub, &msg),
                    // The slot moved: the direct topic, never left, is dropped with the
                    // rest. (A channel's may also be this node's own unsubscribe,
                    // confirmed after the channel was asked for again.)
                    Some(subs::Heard::Dropped(t)) if t == direct(&self.tag) => {
                        return Ended::Lost(ClusterError::Moved);
                    }
                    Some(subs::Heard::Dropped(_) | subs::Heard::Nothing) => {}
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

    /// Sends a batch: publishes in one pipeline, in the order the hub made them. Once
    /// Redis fails, the rest is settled as while away (what to listen to is kept for the
    /// next connection) and the error returned; flushes are answered either way.
    async fn apply(
        &mut self,
        conn: &mut MultiplexedConnection,
        sink: &mut subs::Sink,
        batch: Vec<ShardOp>,
    ) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        let mut sent = 0u64;
        let mut flushed = Vec::new();
        let mut failed = None;
        for op in batch {
            if failed.is_some() {
                self.away_op(op);
                continue;
            }
            match op {
                ShardOp::Publish { topic, payload } => {
                    pipe.cmd("SPUBLISH")
                        .arg(topic)
                        .arg(payload.as_ref())
                        .ignore();
                    sent += 1;
                }
                ShardOp::Watch(channel, on) => {
                    let t = topic(&self.tag, &channel);
                    if on {
                        self.watched.insert(channel);
                    } else {
                        self.watched.remove(&channel);
                    }
                    // What was queued before the change goes first.
                    if let Err(e) = self.send(conn, &mut pipe, &mut sent).await {
                        failed = Some(e);
                        continue;
                    }
                    let done = if on {
                        if let Some(delay) = self.subscribe_delay {
                            tokio::time::sleep(delay).await;
                        }
                        sink.subscribe(&[t]).await
                    } else {
                        sink.unsubscribe(&t).await
                    };
                    if let Err(e) = done {
                        failed = Some(ClusterError::redis("subscribing on a bus shard")(e));
                    }
                }
                ShardOp::Flush(reply) => flushed.push(reply),
            }
        }
        if failed.is_none()
            && let Err(e) = self.send(conn, &mut pipe, &mut sent).await
        {
            failed = Some(e);
        }
        for reply in flushed {
            let _ = reply.send(());
        }
        failed.map_or(Ok(()), Err)
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
