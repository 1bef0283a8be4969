//! Nodes joined through Redis: broadcasts over pub/sub, presence in Redis (see
//! [`super::scripts`]), a heartbeat per node, and what a node does while Redis is away.
//!
//! The hub only queues [`Op`]s (it calls in with its locks held); one worker task per node
//! applies them in order, so a publisher's messages to a channel leave in the order they
//! were delivered here. While Redis is away the worker settles every change locally and
//! drops what would have crossed nodes; when Redis is back it rewrites this node's presence
//! from the hub, announcing to the other nodes what changed meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Script};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{Bus, Presence, Query, Settle, identity_of, scripts, wire};
use crate::config::ClusterConfig;
use crate::engineio::Sid;
use crate::hub::{ChannelInfo, Envelope, Hub, HubEvent};

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one Redis command may take before the connection counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Broadcasts sent to Redis in one pipeline at most.
const BATCH: usize = 512;

/// What the hub asks of the worker.
enum Op {
    /// An encoded broadcast for a Redis channel.
    Publish {
        topic: String,
        payload: Bytes,
    },
    Watch(String, bool),
    Join(Change),
    Leave(Change),
    Online(String, bool),
    /// Shutting down: remove this node's presence now rather than after the timeout.
    Depart(oneshot::Sender<()>),
}

struct Change {
    channel: String,
    member: String,
    options: Value,
    /// An unsubscribe (the member leaves on every node), not the end of its sessions here.
    explicit: bool,
    reply: oneshot::Sender<usize>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct BusStats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Broadcasts not sent because Redis was away, or received malformed.
    pub dropped: AtomicU64,
}

/// The hub's handle on the cluster: [`Bus`] and [`Presence`] over Redis.
pub struct RedisCluster {
    node: Arc<str>,
    keys: Keys,
    /// Ops for the worker, in the order the hub made them. Unbounded because every op
    /// stands for a change the hub already made (a delivery, a membership), which is
    /// bounded by connections and their limits; the worker drains it even without Redis.
    ops: mpsc::UnboundedSender<Op>,
    /// Whether Redis is reachable: `/readyz` and `/metrics` read it.
    up: Arc<AtomicBool>,
    /// The command connection while Redis is up, for the HTTP API's queries.
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    pub stats: Arc<BusStats>,
}

/// The worker, waiting for the hub it serves.
pub struct Worker {
    client: Client,
    node: Arc<str>,
    keys: Keys,
    ops: mpsc::UnboundedReceiver<Op>,
    up: Arc<AtomicBool>,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    stats: Arc<BusStats>,
    heartbeat: Duration,
    timeout: Duration,
    /// Channels this node has members in: subscribed on Redis whenever it is up.
    watched: HashSet<String>,
    /// Subscriptions (`channel \0 member`) and members that changed while Redis was away:
    /// the resync announces these to the other nodes.
    dirty: HashSet<String>,
    /// The Redis data set this node last wrote to (`P:epoch`): a new one means Redis lost
    /// its data, and what the resync writes back is no news to anyone.
    epoch: Option<String>,
    /// Membership changes a resync found, told to the other nodes at the next heartbeat:
    /// by then the other nodes, which lost Redis at the same moment, have subscribed and
    /// written their own presence back, so they hear it and the count is whole.
    pending: Vec<(Change, &'static str)>,
}

#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn topic(&self, channel: &str) -> String {
        format!("{}:m:{channel}", self.prefix)
    }
    fn direct(&self) -> String {
        format!("{}:direct", self.prefix)
    }
    /// Where nodes tell each other that a member joined or left a channel, so its
    /// sessions on every node follow.
    fn control(&self) -> String {
        format!("{}:ctl", self.prefix)
    }
    fn member_channels(&self, member: &str) -> String {
        format!("{}:ms:{member}", self.prefix)
    }
    fn sub(&self, node: &str) -> String {
        format!("{}:sub:{node}", self.prefix)
    }
    fn channel(&self, channel: &str) -> String {
        format!("{}:ch:{channel}", self.prefix)
    }
    fn channels(&self) -> String {
        format!("{}:channels", self.prefix)
    }
    fn node_members(&self, node: &str) -> String {
        format!("{}:nm:{node}", self.prefix)
    }
    fn members(&self) -> String {
        format!("{}:members", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }
    fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
}

impl RedisCluster {
    /// The handle for the hub and the worker to start once the hub exists.
    pub fn new(config: &ClusterConfig, url: &str) -> Result<(Arc<RedisCluster>, Worker), String> {
        let client = Client::open(url).map_err(|e| format!("[Cluster] redis: {e}"))?;
        let node: Arc<str> = Arc::from(
            config
                .node_id
                .clone()
                .unwrap_or_else(super::generated_node_id),
        );
        let keys = Keys {
            prefix: config.prefix.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let up = Arc::new(AtomicBool::new(false));
        let conn = Arc::new(Mutex::new(None));
        let stats = Arc::new(BusStats::default());
        let handle = Arc::new(RedisCluster {
            node: node.clone(),
            keys: keys.clone(),
            ops: tx,
            up: up.clone(),
            conn: conn.clone(),
            stats: stats.clone(),
        });
        let worker = Worker {
            client,
            node,
            keys,
            ops: rx,
            up,
            conn,
            stats,
            heartbeat: config.heartbeat,
            timeout: config.node_timeout,
            watched: HashSet::new(),
            dirty: HashSet::new(),
            epoch: None,
            pending: Vec::new(),
        };
        Ok((handle, worker))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether Redis is reachable now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The flag behind [`RedisCluster::is_up`], for `/readyz`.
    pub fn up_flag(&self) -> Arc<AtomicBool> {
        self.up.clone()
    }

    /// Removes this node from the cluster now (its members leave, announced), waiting at
    /// most `within`.
    pub async fn depart(&self, within: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Depart(tx)).is_ok() {
            let _ = tokio::time::timeout(within, rx).await;
        }
    }

    fn change(
        &self,
        channel: &str,
        member: &str,
        options: &Value,
        explicit: bool,
    ) -> (Change, Settle) {
        let (reply, rx) = oneshot::channel();
        let change = Change {
            channel: channel.to_owned(),
            member: member.to_owned(),
            options: options.clone(),
            explicit,
            reply,
        };
        (change, Settle::Later(rx))
    }

    fn connection(&self) -> Result<MultiplexedConnection, String> {
        self.conn
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| "redis unavailable".to_owned())
    }
}

impl Bus for RedisCluster {
    fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>) {
        let topic = match (to, envelope.channel.as_deref()) {
            (Some(_), _) => self.keys.direct(),
            (None, Some(channel)) => self.keys.topic(channel),
            (None, None) => return,
        };
        let payload = wire::encode(&self.node, envelope, attachments, to);
        let _ = self.ops.send(Op::Publish { topic, payload });
    }

    fn watch(&self, channel: &str, on: bool) {
        let _ = self.ops.send(Op::Watch(channel.to_owned(), on));
    }
}

impl Presence for RedisCluster {
    fn join(&self, channel: &str, member: &str, options: &Value) -> Settle {
        let (change, settle) = self.change(channel, member, options, false);
        let _ = self.ops.send(Op::Join(change));
        settle
    }

    fn leave(&self, channel: &str, member: &str, options: &Value, explicit: bool) -> Settle {
        let (change, settle) = self.change(channel, member, options, explicit);
        let _ = self.ops.send(Op::Leave(change));
        settle
    }

    fn online(&self, member: &str, on: bool) -> bool {
        let _ = self.ops.send(Op::Online(member.to_owned(), on));
        false
    }

    fn channels(&self) -> Query<Vec<(String, usize)>> {
        let conn = self.connection();
        let keys = self.keys.clone();
        Some(Box::pin(async move {
            let mut conn = conn?;
            let mut names: Vec<String> = redis::cmd("SMEMBERS")
                .arg(keys.channels())
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            names.sort();
            let mut pipe = redis::pipe();
            for n in &names {
                pipe.hlen(keys.channel(n));
            }
            let counts: Vec<usize> = if names.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?
            };
            Ok(names
                .into_iter()
                .zip(counts)
                .filter(|(_, c)| *c > 0)
                .collect())
        }))
    }

    fn channel(&self, name: &str) -> Query<ChannelInfo> {
        let conn = self.connection();
        let key = self.keys.channel(name);
        let name = name.to_owned();
        Some(Box::pin(async move {
            let mut conn = conn?;
            let members: Vec<String> = redis::cmd("HKEYS")
                .arg(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let mut info = ChannelInfo {
                name,
                count: members.len(),
                identities: Vec::new(),
                anonymous: 0,
            };
            for m in members {
                match identity_of(&m) {
                    Some(id) => info.identities.push(id.to_owned()),
                    None => info.anonymous += 1,
                }
            }
            info.identities.sort();
            Ok(info)
        }))
    }
}

/// Why a connected stretch ended.
enum Ended {
    /// Redis is away; `true` when this node had been up with it.
    Lost(String, bool),
    Departed,
}

/// The two connections of a connected stretch.
struct Live {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Worker {
    /// Runs until the hub is gone or the node departs.
    pub fn start(self, hub: Arc<Hub>) {
        tokio::spawn(self.run(hub));
    }

    async fn run(mut self, hub: Arc<Hub>) {
        let mut delay = MIN_BACKOFF;
        // Whether Redis was lost since start (the next success is a restoration), and
        // whether that was said already (one warning per outage, not one per retry).
        let mut lost_at_least_once = false;
        let mut said = false;
        info!(node = %self.node, "joining the cluster through Redis");
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
        if let Ok(mut c) = self.conn.lock() {
            *c = None;
        }
    }

    async fn connect(&self) -> Result<Live, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        let pubsub = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| "timed out opening the subscription connection".to_owned())?
            .map_err(|e| e.to_string())?;
        let (sink, stream) = pubsub.split();
        Ok(Live { conn, sink, stream })
    }

    /// One connected stretch: subscribe, resynchronise, then apply ops, deliver what other
    /// nodes publish and beat, until Redis is lost.
    async fn serve(&mut self, hub: &Arc<Hub>, live: Live, restored: bool) -> Ended {
        let Live {
            mut conn,
            mut sink,
            mut stream,
        } = live;
        // What queued up while Redis was away is settled locally first; the resync below
        // then tells the other nodes.
        while let Ok(op) = self.ops.try_recv() {
            if self.offline_op(hub, op) {
                return Ended::Departed;
            }
        }
        let mut topics: Vec<String> = self.watched.iter().map(|c| self.keys.topic(c)).collect();
        topics.push(self.keys.direct());
        topics.push(self.keys.control());
        if let Err(e) = sink.subscribe(&topics).await {
            return Ended::Lost(e.to_string(), false);
        }
        if let Err(e) = self.beat(hub, &mut conn).await {
            return Ended::Lost(e, false);
        }
        if let Err(e) = self.resync(hub, &mut conn).await {
            return Ended::Lost(e, false);
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
                msg = stream.next() => match msg {
                    Some(msg) => self.inbound(hub, &msg),
                    None => return Ended::Lost("the subscription connection closed".into(), true),
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
                    match self.apply(hub, &mut conn, &mut sink, batch).await {
                        Ok(true) => return Ended::Departed,
                        Ok(false) => {}
                        Err(e) => return Ended::Lost(e, true),
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.beat(hub, &mut conn).await {
                        return Ended::Lost(e, true);
                    }
                    if let Err(e) = self.tell_pending(hub, &mut conn).await {
                        return Ended::Lost(e, true);
                    }
                }
            }
        }
    }

    /// Applies ops in order, pipelining consecutive broadcasts. On an error the rest are
    /// settled locally and the error returned. `Ok(true)`: the node departed.
    async fn apply(
        &mut self,
        hub: &Arc<Hub>,
        conn: &mut MultiplexedConnection,
        sink: &mut PubSubSink,
        batch: Vec<Op>,
    ) -> Result<bool, String> {
        let mut pipe = redis::pipe();
        let mut queued = 0u64;
        let mut ops = batch.into_iter();
        let mut failed: Option<String> = None;
        while let Some(op) = ops.next() {
            if let Op::Publish { topic, payload } = op {
                pipe.publish(topic, payload.as_ref()).ignore();
                queued += 1;
                continue;
            }
            if queued > 0
                && let Err(e) = self.flush(conn, &mut pipe, &mut queued).await
            {
                failed = Some(e);
            }
            let result = match failed {
                Some(_) => Err(String::new()),
                None => self.online_op(hub, conn, sink, op).await,
            };
            match result {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => {
                    // The op that failed was handed back to be settled locally.
                    failed.get_or_insert(e);
                    for op in ops.by_ref() {
                        if self.offline_op(hub, op) {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        if queued > 0
            && failed.is_none()
            && let Err(e) = self.flush(conn, &mut pipe, &mut queued).await
        {
            failed = Some(e);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    async fn flush(
        &self,
        conn: &mut MultiplexedConnection,
        pipe: &mut redis::Pipeline,
        queued: &mut u64,
    ) -> Result<(), String> {
        let n = std::mem::take(queued);
        let result: redis::RedisResult<()> = pipe.query_async(conn).await;
        pipe.clear();
        match result {
            Ok(()) => {
                self.stats.sent.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.dropped.fetch_add(n, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    /// One op with Redis up. On an error the op is settled locally before returning it.
    async fn online_op(
        &mut self,
        hub: &Arc<Hub>,
        conn: &mut MultiplexedConnection,
        sink: &mut PubSubSink,
        op: Op,
    ) -> Result<bool, String> {
        match op {
            // `apply` pipelines broadcasts; one that gets here goes alone.
            Op::Publish { topic, payload } => {
                let sent: redis::RedisResult<()> = redis::cmd("PUBLISH")
                    .arg(topic)
                    .arg(payload.as_ref())
                    .query_async(conn)
                    .await;
                sent.map_err(|e| e.to_string())?;
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Op::Watch(channel, on) => {
                let topic = self.keys.topic(&channel);
                let result = if on {
                    self.watched.insert(channel);
                    sink.subscribe(&topic).await
                } else {
                    self.watched.remove(&channel);
                    sink.unsubscribe(&topic).await
                };
                result.map_err(|e| e.to_string())?;
            }
            Op::Join(change) => match self.run_change(conn, scripts::JOIN, &change).await {
                Ok((first, count)) => {
                    if first {
                        self.announce(hub, conn, &change, "onSubscribe", count, true)
                            .await?;
                        self.control(conn, "join", &change).await?;
                    }
                    let _ = change.reply.send(count);
                }
                Err(e) => {
                    self.offline_op(hub, Op::Join(change));
                    return Err(e);
                }
            },
            Op::Leave(change) => {
                let result = if change.explicit && identity_of(&change.member).is_some() {
                    self.drop_everywhere(conn, &change).await
                } else {
                    self.run_change(conn, scripts::LEAVE, &change).await
                };
                match result {
                    Ok((last, count)) => {
                        if last {
                            self.announce(hub, conn, &change, "onUnsubscribe", count, true)
                                .await?;
                            if change.explicit {
                                self.control(conn, "leave", &change).await?;
                            }
                        }
                        let _ = change.reply.send(count);
                    }
                    Err(e) => {
                        self.offline_op(hub, Op::Leave(change));
                        return Err(e);
                    }
                }
            }
            Op::Online(member, on) => {
                if self.online(conn, &member, on).await? {
                    hub.announce_presence(&member, on);
                }
                if on && identity_of(&member).is_some() {
                    // A new tab here joins what its identity is in on other nodes.
                    let channels: Vec<String> = redis::cmd("SMEMBERS")
                        .arg(self.keys.member_channels(&member))
                        .query_async(conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    for channel in channels {
                        hub.adopt(&member, &channel);
                    }
                }
            }
            Op::Depart(done) => {
                let result = self.reap(hub, conn, "leave").await;
                let _ = done.send(());
                if let Err(e) = result {
                    warn!(error = %e, "could not remove this node from Redis; the others will after node-timeout");
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One op with Redis away: settled by this node alone. Returns true on departure.
    fn offline_op(&mut self, hub: &Arc<Hub>, op: Op) -> bool {
        match op {
            Op::Publish { .. } => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Op::Watch(channel, on) => {
                if on {
                    self.watched.insert(channel);
                } else {
                    self.watched.remove(&channel);
                }
            }
            Op::Join(change) => {
                self.dirty.insert(entry(&change.channel, &change.member));
                let count = hub.count(&change.channel);
                let env = membership(&change, "onSubscribe", count);
                hub.announce(HubEvent::Subscribe, &env, None, false);
                let _ = change.reply.send(count);
            }
            Op::Leave(change) => {
                self.dirty.insert(entry(&change.channel, &change.member));
                let count = hub.count(&change.channel);
                let env = membership(&change, "onUnsubscribe", count);
                hub.announce(HubEvent::Unsubscribe, &env, Some(&change.member), false);
                let _ = change.reply.send(count);
            }
            // Told to the monitor at the resync, once the cluster can decide.
            Op::Online(member, _) => {
                self.dirty.insert(member);
            }
            Op::Depart(done) => {
                let _ = done.send(());
                return true;
            }
        }
        false
    }

    /// Settles ops locally for `wait`; true when the node departed meanwhile.
    async fn offline_for(&mut self, hub: &Arc<Hub>, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => if self.offline_op(hub, op) { return true },
                    None => return true,
                },
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    async fn run_change(
        &self,
        conn: &mut MultiplexedConnection,
        script: &str,
        change: &Change,
    ) -> Result<(bool, usize), String> {
        let (flag, count): (u8, usize) = Script::new(script)
            .key(self.keys.sub(&self.node))
            .key(self.keys.channel(&change.channel))
            .key(self.keys.channels())
            .key(self.keys.member_channels(&change.member))
            .arg(&change.channel)
            .arg(&change.member)
            .invoke_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok((flag == 1, count))
    }

    /// An unsubscribe: out of the channel on every node at once.
    async fn drop_everywhere(
        &self,
        conn: &mut MultiplexedConnection,
        change: &Change,
    ) -> Result<(bool, usize), String> {
        let (had, count): (u8, usize) = Script::new(scripts::DROP)
            .key(self.keys.channel(&change.channel))
            .key(self.keys.channels())
            .key(self.keys.member_channels(&change.member))
            .key(self.keys.nodes())
            .arg(&self.keys.prefix)
            .arg(&change.channel)
            .arg(&change.member)
            .invoke_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok((had == 1, count))
    }

    /// Tells the other nodes that an identity joined or left a channel, so its sessions
    /// there follow (anonymous members live on one node: nothing to tell).
    async fn control(
        &self,
        conn: &mut MultiplexedConnection,
        op: &str,
        change: &Change,
    ) -> Result<(), String> {
        if identity_of(&change.member).is_none() {
            return Ok(());
        }
        let payload = serde_json::json!({
            "n": &*self.node, "op": op, "m": change.member, "c": change.channel,
        })
        .to_string();
        let _: () = redis::cmd("PUBLISH")
            .arg(self.keys.control())
            .arg(payload)
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn online(
        &self,
        conn: &mut MultiplexedConnection,
        member: &str,
        on: bool,
    ) -> Result<bool, String> {
        let flag: u8 = Script::new(scripts::ONLINE)
            .key(self.keys.node_members(&self.node))
            .key(self.keys.members())
            .arg(member)
            .arg(if on { "1" } else { "0" })
            .invoke_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(flag == 1)
    }

    /// A membership change decided here: to the monitor, this node's members of the
    /// channel and the other nodes (`leaving`: the member's own sessions here too).
    async fn announce(
        &self,
        hub: &Arc<Hub>,
        conn: &mut MultiplexedConnection,
        change: &Change,
        event: &str,
        count: usize,
        leaving: bool,
    ) -> Result<(), String> {
        let env = membership(change, event, count);
        let kind = if event == "onSubscribe" {
            HubEvent::Subscribe
        } else {
            HubEvent::Unsubscribe
        };
        let member = leaving.then_some(change.member.as_str());
        hub.announce(kind, &env, member, true);
        self.send(conn, &env).await
    }

    async fn send(&self, conn: &mut MultiplexedConnection, env: &Envelope) -> Result<(), String> {
        let Some(channel) = env.channel.as_deref() else {
            return Ok(());
        };
        let payload = wire::encode(&self.node, env, &[], None);
        let _: () = redis::cmd("PUBLISH")
            .arg(self.keys.topic(channel))
            .arg(payload.as_ref())
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Heartbeat, and removal of the nodes that stopped beating.
    async fn beat(&self, hub: &Arc<Hub>, conn: &mut MultiplexedConnection) -> Result<(), String> {
        self.reap(hub, conn, "beat").await
    }

    async fn reap(
        &self,
        hub: &Arc<Hub>,
        conn: &mut MultiplexedConnection,
        mode: &str,
    ) -> Result<(), String> {
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let ended: Vec<String> = Script::new(scripts::REAP)
            .key(self.keys.nodes())
            .arg(&self.keys.prefix)
            .arg(&*self.node)
            .arg(timeout_ms)
            .arg(mode)
            .invoke_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        if mode == "leave" {
            info!(node = %self.node, changes = ended.len() / 4, "left the cluster: this node's members are removed");
        } else if !ended.is_empty() {
            info!(node = %self.node, changes = ended.len() / 4, "removed the members of nodes that stopped beating");
        }
        for item in ended.chunks_exact(4) {
            match item[0].as_str() {
                "s" => {
                    let change = quiet(&item[1], &item[2]);
                    let count = item[3].parse().unwrap_or(0);
                    self.announce(hub, conn, &change, "onUnsubscribe", count, false)
                        .await?;
                }
                "m" => hub.announce_presence(&item[1], false),
                _ => {}
            }
        }
        Ok(())
    }

    /// Makes this node's presence in Redis what the hub holds, announcing to the other
    /// nodes (and the monitor) what that changes cluster-wide. This node's members heard
    /// of those changes already, when they happened.
    async fn resync(
        &mut self,
        hub: &Arc<Hub>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), String> {
        let fresh = Sid::random().to_string();
        let (epoch,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.epoch())
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(self.keys.epoch())
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        let data_lost = self.epoch.as_ref().is_some_and(|old| *old != epoch);
        if data_lost {
            warn!(node = %self.node, "Redis lost its data: writing this node's presence back");
        }
        // Unless Redis lost its data, what differs is news: changes made while it was away,
        // or this node's members removed by the others meanwhile.
        let news = |key: &str| !data_lost || self.dirty.contains(key);
        let snap = hub.snapshot();
        let held: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.sub(&self.node))
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        let online: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_members(&self.node))
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        let here: HashMap<String, (String, String)> = snap
            .subscriptions
            .into_iter()
            .map(|(c, m)| (entry(&c, &m), (c, m)))
            .collect();
        let mut changed = 0usize;
        for (entry, (channel, member)) in &here {
            if held.contains(entry) {
                continue;
            }
            let change = quiet(channel, member);
            let (first, _) = self.run_change(conn, scripts::JOIN, &change).await?;
            if first && news(entry) {
                self.pending.push((change, "onSubscribe"));
            }
            changed += 1;
        }
        for entry in held.iter().filter(|e| !here.contains_key(*e)) {
            let Some((channel, member)) = entry.split_once('\0') else {
                continue;
            };
            let change = quiet(channel, member);
            let (last, _) = self.run_change(conn, scripts::LEAVE, &change).await?;
            if last && news(entry) {
                self.pending.push((change, "onUnsubscribe"));
            }
            changed += 1;
        }
        let members: HashSet<&String> = snap.members.iter().collect();
        for m in members.iter().filter(|m| !online.contains(**m)) {
            if self.online(conn, m, true).await? && news(m) {
                hub.announce_presence(m, true);
            }
            changed += 1;
        }
        for m in online.iter().filter(|m| !members.contains(m)) {
            if self.online(conn, m, false).await? && news(m) {
                hub.announce_presence(m, false);
            }
            changed += 1;
        }
        if changed > 0 {
            info!(node = %self.node, changes = changed, "presence resynchronised with Redis");
        }
        self.dirty.clear();
        self.epoch = Some(epoch);
        Ok(())
    }

    /// Tells what the last resync found, with the counts as they are now.
    async fn tell_pending(
        &mut self,
        hub: &Arc<Hub>,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), String> {
        while let Some((change, event)) = self.pending.first() {
            let count: usize = redis::cmd("HLEN")
                .arg(self.keys.channel(&change.channel))
                .query_async(conn)
                .await
                .map_err(|e| e.to_string())?;
            self.announce_remote(hub, conn, change, event, count)
                .await?;
            self.pending.remove(0);
        }
        Ok(())
    }

    /// Tells the monitor and the other nodes, not this node's members.
    async fn announce_remote(
        &self,
        hub: &Arc<Hub>,
        conn: &mut MultiplexedConnection,
        change: &Change,
        event: &str,
        count: usize,
    ) -> Result<(), String> {
        let env = membership(change, event, count);
        let kind = if event == "onSubscribe" {
            HubEvent::Subscribe
        } else {
            HubEvent::Unsubscribe
        };
        hub.observe_only(kind, &env);
        self.send(conn, &env).await
    }

    /// A broadcast from Redis: delivered here unless this node sent it.
    fn inbound(&self, hub: &Arc<Hub>, msg: &redis::Msg) {
        let topic = msg.get_channel_name();
        if topic == self.keys.control() {
            self.inbound_control(hub, msg.get_payload_bytes());
            return;
        }
        let m = match wire::decode(msg.get_payload_bytes()) {
            Ok(m) => m,
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(redis_channel = %topic, error = %e, "dropped a malformed message from the bus");
                return;
            }
        };
        if *m.origin == *self.node {
            return;
        }
        // A broadcast must be for the channel it came on (or a direct one on `direct`).
        let fits = match (&m.to, m.envelope.channel.as_deref()) {
            (Some(_), _) => topic == self.keys.direct(),
            (None, Some(channel)) => topic == self.keys.topic(channel),
            (None, None) => false,
        };
        if !fits {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(redis_channel = %topic, "dropped a bus message addressed elsewhere");
            return;
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        hub.deliver_remote(&m.envelope, m.attachments, m.to.as_deref());
    }
}

/// A control message: an identity joined or left a channel on node `n`.
#[derive(serde::Deserialize)]
struct Control {
    n: String,
    op: String,
    m: String,
    c: String,
}

impl Worker {
    fn inbound_control(&self, hub: &Arc<Hub>, raw: &[u8]) {
        let ctl: Control = match serde_json::from_slice(raw) {
            Ok(c) => c,
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(redis_channel = %self.keys.control(), error = %e, "dropped a malformed control message from the bus");
                return;
            }
        };
        if ctl.n == *self.node {
            return;
        }
        let valid = identity_of(&ctl.m).is_some()
            && hub
                .validate_channel(Some(&Value::String(ctl.c.clone())))
                .is_ok();
        match ctl.op.as_str() {
            "join" if valid => hub.adopt(&ctl.m, &ctl.c),
            "leave" if valid => hub.drop_remote(&ctl.m, &ctl.c),
            _ => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(redis_channel = %self.keys.control(), op = %ctl.op, "dropped a control message that makes no sense");
            }
        }
    }
}

/// A subscription as the scripts store it.
fn entry(channel: &str, member: &str) -> String {
    format!("{channel}\0{member}")
}

fn quiet(channel: &str, member: &str) -> Change {
    Change {
        channel: channel.to_owned(),
        member: member.to_owned(),
        options: Value::Null,
        explicit: false,
        reply: oneshot::channel().0,
    }
}

fn membership(change: &Change, event: &str, count: usize) -> Envelope {
    Envelope::membership(
        &change.channel,
        identity_of(&change.member).map(Arc::from),
        event,
        change.options.clone(),
        count,
    )
}
