//! The worker's loop: connecting with backoff, and one connected stretch (subscribe,
//! resynchronise, apply ops, deliver what other nodes publish, beat). What it hears is
//! read in `inbound`; each op with Redis up is applied in `online`, while it is away in
//! `offline`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tracing::{debug, info, warn};

use super::{BATCH, MAX_BACKOFF, MIN_BACKOFF, Op, RESPONSE_TIMEOUT, Worker, scripts, subs};
use crate::cluster::{ClusterError, Inbound, wire};

/// Why a connected stretch ended.
enum Ended {
    /// Redis is away; `true` when this node had been up with it.
    Lost(ClusterError, bool),
    Departed,
}

/// What applying a batch of ops leads to.
enum Flow {
    Go,
    /// The node departed.
    Stop,
    /// A hand-over: the rest is done with both connections (see `succession`).
    HandOver(tokio::sync::oneshot::Sender<Option<u64>>),
}

/// The two connections of a connected stretch.
struct Live {
    conn: MultiplexedConnection,
    sink: subs::Sink,
    stream: subs::Stream,
}

impl Worker {
    /// Runs until the hub is gone or the node departs.
    pub fn start(mut self, hub: Arc<dyn Inbound>) {
        for shard in std::mem::take(&mut self.shards) {
            shard.start(hub.clone());
        }
        tokio::spawn(self.run(hub));
    }

    async fn run(mut self, hub: Arc<dyn Inbound>) {
        let mut delay = MIN_BACKOFF;
        // Whether Redis was lost since start (the next success is a restoration), and
        // whether that was said already (one warning per outage, not one per retry).
        let mut lost_at_least_once = false;
        let mut said = false;
        info!(node = %self.node, "joining the cluster through Redis");
        if self.catch_up.is_some()
            && let Some(delay) = super::succession::test_delay()
        {
            warn!(?delay, "test hook: reaching Redis late after the hand-over");
            tokio::time::sleep(delay).await;
        }
        loop {
            let result = match self.connect().await {
                Ok(live) => self.serve(&hub, live, lost_at_least_once).await,
                Err(e) => Ended::Lost(e, false),
            };
            match result {
                Ended::Departed => return,
                Ended::Lost(e, was_up) => {
                    if was_up {
                        // A connected stretch ended: a new outage, retried from the start.
                        delay = MIN_BACKOFF;
                        said = false;
                    }
                    if said {
                        debug!(error = %e, retry_in = ?delay, "Redis still unreachable");
                    } else {
                        warn!(node = %self.node, error = %e, "lost Redis: serving this node's members only until it is back");
                        said = true;
                    }
                }
            }
            lost_at_least_once = true;
            self.set_down();
            if self.offline_for(&hub, delay).await {
                return;
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    fn set_down(&mut self) {
        self.up.store(false, Ordering::Release);
        self.floor.store(u64::MAX, Ordering::Release);
        if let Ok(mut c) = self.conn.lock() {
            *c = None;
        }
    }

    async fn connect(&mut self) -> Result<Live, ClusterError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let client = self.endpoint.primary().await?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(ClusterError::redis("connecting"))?;
        self.endpoint.check(&mut conn).await?;
        let (sink, stream) = subs::open(&client, self.keys.sharded).await?;
        Ok(Live { conn, sink, stream })
    }

    /// One connected stretch: subscribe, resynchronise, then apply ops, deliver what other
    /// nodes publish and beat, until Redis is lost.
    async fn serve(&mut self, hub: &Arc<dyn Inbound>, live: Live, restored: bool) -> Ended {
        let Live {
            mut conn,
            mut sink,
            mut stream,
        } = live;
        // What queued up while Redis was away is settled locally first; the resync below
        // then tells the other nodes. Before the first connection nothing was away: those
        // ops (a hand-over's first publishes, say) go through Redis once it is set up, only
        // the channels to watch are taken now, to be subscribed with the rest.
        let mut early = Vec::new();
        while let Ok(op) = self.ops.try_recv() {
            if restored || matches!(op, Op::Watch(..)) {
                if self.offline_op(hub, op) {
                    return Ended::Departed;
                }
            } else {
                early.push(op);
            }
        }
        self.held = early.len();
        let set_up = self.set_up(hub, &mut conn, &mut sink).await;
        self.held = 0;
        if let Err(e) = set_up {
            for op in early {
                if self.offline_op(hub, op) {
                    return Ended::Departed;
                }
            }
            return Ended::Lost(e, false);
        }
        if !early.is_empty() {
            let n = early.len();
            let applied = self.apply(hub, &mut conn, &mut sink, early).await;
            self.applied(n);
            match applied {
                Ok(Flow::Go) => {}
                Ok(Flow::Stop) => return Ended::Departed,
                Ok(Flow::HandOver(reply)) => {
                    let end = self.pass_on(hub, &mut conn, &mut sink, &mut stream).await;
                    let _ = reply.send(end);
                    return Ended::Departed;
                }
                Err(e) => return Ended::Lost(e, false),
            }
        }
        if let Ok(mut c) = self.conn.lock() {
            *c = Some(conn.clone());
        }
        self.up.store(true, Ordering::Release);
        if restored {
            info!(node = %self.node, "Redis connection restored; presence resynchronised");
        } else {
            info!(node = %self.node, "joined the cluster");
        }
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.reset();
        loop {
            tokio::select! {
                heard = stream.next() => match heard {
                    Some(subs::Heard::Message(msg)) => self.inbound(hub, &msg),
                    // The slot moved: what this node publishes no longer reaches it.
                    Some(subs::Heard::Dropped(topic)) if topic == self.keys.control() => {
                        return Ended::Lost(ClusterError::Moved, true);
                    }
                    Some(_) => {}
                    None => return Ended::Lost(ClusterError::Closed, true),
                },
                op = self.ops.recv() => {
                    let Some(op) = op else { return Ended::Departed };
                    let mut batch = vec![op];
                    while batch.len() < BATCH {
                        match self.ops.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    let n = batch.len();
                    let applied = self.apply(hub, &mut conn, &mut sink, batch).await;
                    self.applied(n);
                    match applied {
                        Ok(Flow::Go) => {}
                        Ok(Flow::Stop) => return Ended::Departed,
                        Ok(Flow::HandOver(reply)) => {
                            let end = self.pass_on(hub, &mut conn, &mut sink, &mut stream).await;
                            let _ = reply.send(end);
                            return Ended::Departed;
                        }
                        Err(e) => return Ended::Lost(e, true),
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.refresh_floor(&mut conn).await {
                        return Ended::Lost(e, true);
                    }
                    match self.beat(hub, &mut conn).await {
                        Err(e) => return Ended::Lost(e, true),
                        Ok(true) => {
                            warn!(node = %self.node, "the other nodes had removed this node (it missed heartbeats): writing its presence back");
                            if let Err(e) = self.resync(hub, &mut conn).await {
                                return Ended::Lost(e, true);
                            }
                        }
                        Ok(false) => {}
                    }
                    if let Err(e) = self.tell_pending(hub, &mut conn).await {
                        return Ended::Lost(e, true);
                    }
                    if let Err(e) = self.tell_unsent(&mut conn, None).await {
                        return Ended::Lost(e, true);
                    }
                    if let Err(e) = self.settle_vanished(hub, &mut conn).await {
                        return Ended::Lost(e, true);
                    }
                }
            }
        }
    }

    /// The start of a connected stretch: subscribe, load the log's script, catch up
    /// after a hand-over, beat and resynchronise.
    async fn set_up(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        sink: &mut subs::Sink,
    ) -> Result<(), ClusterError> {
        let mut topics: Vec<String> = self.watched.iter().map(|c| self.keys.topic(c)).collect();
        topics.push(self.keys.direct());
        topics.push(self.keys.control());
        sink.subscribe(&topics)
            .await
            .map_err(ClusterError::redis("subscribing"))?;
        // Broadcasts run the log's script by its hash, in pipelines: it must be loaded.
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(scripts::publish_lua(self.keys.sharded))
            .query_async(conn)
            .await
            .map_err(ClusterError::redis("loading the publish script"))?;
        // Taken over from a previous process: what was published since it stopped first.
        self.catch_up(hub, conn).await?;
        self.reaped = self.beat(hub, conn).await?;
        self.resync(hub, conn).await?;
        self.refresh_floor(conn).await
    }

    /// Applies ops in order, pipelining consecutive broadcasts. Once Redis fails, the rest
    /// (broadcasts queued after the failure included) are settled locally and the error
    /// returned.
    async fn apply(
        &mut self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        sink: &mut subs::Sink,
        batch: Vec<Op>,
    ) -> Result<Flow, ClusterError> {
        let mut pipe = redis::pipe();
        let mut queued = Vec::new();
        let mut failed: Option<ClusterError> = None;
        for op in batch {
            // The broadcasts pipelined so far go before any other op.
            if failed.is_none()
                && !matches!(op, Op::Publish { .. })
                && let Err(e) = self.flush(hub, conn, &mut pipe, &mut queued).await
            {
                failed = Some(e);
            }
            if failed.is_some() {
                if self.offline_op(hub, op) {
                    return Ok(Flow::Stop);
                }
                continue;
            }
            match op {
                Op::Publish {
                    topic,
                    payload,
                    channel,
                } => {
                    self.logged(&mut pipe, &topic, &payload, channel.as_deref())
                        .ignore();
                    queued.push(payload);
                }
                // Nothing comes after it: the hub no longer changes.
                Op::HandOver(reply) => return Ok(Flow::HandOver(reply)),
                op => match self.online_op(hub, conn, sink, op).await {
                    Ok(true) => return Ok(Flow::Stop),
                    Ok(false) => {}
                    // The op that failed was handed back to be settled locally.
                    Err(e) => failed = Some(e),
                },
            }
        }
        if failed.is_none()
            && let Err(e) = self.flush(hub, conn, &mut pipe, &mut queued).await
        {
            failed = Some(e);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(Flow::Go),
        }
    }

    /// Sends the pipelined broadcasts. When that fails, they are delivered here without
    /// an offset: this node's members still get them, the other nodes do not.
    pub(super) async fn flush(
        &self,
        hub: &Arc<dyn Inbound>,
        conn: &mut MultiplexedConnection,
        pipe: &mut redis::Pipeline,
        queued: &mut Vec<bytes::Bytes>,
    ) -> Result<(), ClusterError> {
        if queued.is_empty() {
            return Ok(());
        }
        let sent = std::mem::take(queued);
        let result: redis::RedisResult<()> = pipe.query_async(conn).await;
        pipe.clear();
        match result {
            Ok(()) => {
                self.stats
                    .sent
                    .fetch_add(sent.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                for payload in &sent {
                    self.deliver_here(hub, payload);
                }
                Err(ClusterError::redis("publishing broadcasts")(e))
            }
        }
    }

    /// A broadcast of this node that could not go through Redis: its members get it.
    pub(super) fn deliver_here(&self, hub: &Arc<dyn Inbound>, payload: &[u8]) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        if let Ok(m) = wire::decode(payload) {
            hub.deliver(&m.envelope, m.attachments, m.to.as_deref(), None);
        }
    }
}
