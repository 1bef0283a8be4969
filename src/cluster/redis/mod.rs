//! Nodes joined through Redis: broadcasts through a message log and pub/sub (`log.rs`),
//! or spread over the shards of a Redis Cluster (`spread/`), presence in Redis (see
//! `scripts.rs`), channel history (`history.rs`), a heartbeat per node, and what a node
//! does while Redis is away. What the hub calls is in `handle.rs`.
//!
//! The hub only queues ops (it calls in with its locks held); one worker task per node
//! applies them in order, so a publisher's messages to a channel leave in the order they
//! were delivered here. While Redis is away the worker settles every change locally and
//! drops what would have crossed nodes; when Redis is back it rewrites this node's presence
//! from the hub, announcing to the other nodes what changed meanwhile.

mod control;
mod endpoint;
mod handle;
mod history;
mod inbound;
mod keys;
mod log;
mod offline;
mod online;
mod presence;
mod queries;
mod resync;
mod scripts;
mod sessions;
mod shards;
mod spread;
mod subs;
mod succession;
mod vanished;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{ClusterError, Envelope, Membership, Settle};

use crate::config::ClusterConfig;
pub use history::Keeping;
use keys::Keys;

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one Redis command may take before the connection counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Broadcasts sent to Redis in one pipeline at most.
const BATCH: usize = 512;

/// What the hub asks of the worker.
enum Op {
    /// An encoded broadcast for a Redis channel; `channel` when it goes in that
    /// channel's history.
    Publish {
        topic: String,
        payload: Bytes,
        channel: Option<String>,
    },
    Watch(String, bool),
    /// A session of this node begins (`true`) or ends: its pid → member record.
    Session {
        pid: String,
        member: String,
        on: bool,
    },
    /// A session of another node to resume here: what it missed after `offset`.
    Resume {
        pid: String,
        member: String,
        offset: u64,
        reply: oneshot::Sender<Result<Vec<super::Replayed>, ClusterError>>,
    },
    Join(Change),
    Leave(Change),
    Online(String, bool),
    /// Shutting down: remove this node's presence now rather than after the timeout.
    Depart(oneshot::Sender<()>),
    /// Handing over to a new process that stays this node: what was queued before goes
    /// out, what Redis published until now is delivered, and the worker stops, leaving
    /// presence as it is. The answer is where the message log ended then (`None`: Redis
    /// could not tell).
    HandOver(oneshot::Sender<Option<u64>>),
}

/// What a node taken over from a previous process (the same node) carries on with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Succession {
    /// The node id the previous process had.
    pub node: String,
    /// The last entry of the message log the previous process delivered or passed: the
    /// new one delivers what follows it (0: nothing to catch up).
    pub offset: u64,
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
    /// The lowest offset the message log surely still holds (`u64::MAX` while Redis is
    /// away), so a resumption the log cannot serve is refused before it is answered.
    floor: Arc<AtomicU64>,
    /// The command connection while Redis is up, for the HTTP API's queries.
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    /// Channel history kept in Redis, for every node to answer.
    history: Keeping,
    /// Broadcasts spread over several shards (`[Cluster] bus-shards`), not logged.
    spread: Option<spread::Spread>,
    pub stats: Arc<BusStats>,
}

/// Whether this node is joined to the cluster: Redis reachable, and every bus shard.
#[derive(Clone, Debug)]
pub struct Reachable(Vec<Arc<AtomicBool>>);

impl Reachable {
    pub fn now(&self) -> bool {
        self.0.iter().all(|up| up.load(Ordering::Acquire))
    }
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster").finish_non_exhaustive()
    }
}

/// The worker, waiting for the hub it serves.
pub struct Worker {
    endpoint: endpoint::Endpoint,
    node: Arc<str>,
    keys: Keys,
    ops: mpsc::UnboundedReceiver<Op>,
    up: Arc<AtomicBool>,
    floor: Arc<AtomicU64>,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    stats: Arc<BusStats>,
    heartbeat: Duration,
    timeout: Duration,
    /// How long a client may take to come back (`reconnect-timeout`): the message log
    /// keeps that much, and a dead node's members are removed only after it.
    window: Duration,
    history: Keeping,
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
    pending: Vec<(Change, Membership)>,
    /// Subscriptions (`channel \0 member`) whose first join or last leave the last resync
    /// took while their op was still queued: that op announces it (to this node's members
    /// too), with whether the other nodes were told already.
    taken: HashMap<String, (Membership, bool)>,
    /// Ops still to apply that were queued when the resync read the hub: once applied,
    /// nothing is left to find in `taken`.
    taken_ops: usize,
    /// Ops taken off the queue before the first connection, applied after the resync.
    held: usize,
    /// Subscriptions (`channel \0 member`) of identities that other nodes hold, as last
    /// heard: while Redis is away, a tab here joining or leaving one of these changes
    /// nothing cluster-wide, so nothing is announced.
    elsewhere: HashSet<String>,
    /// Unsubscribes of identities (`channel \0 member`) settled while Redis was away: once
    /// it is back, the identity leaves the channel on every node.
    dropped: HashSet<String>,
    /// After Redis lost its data: what other nodes held then, and when to check that
    /// they wrote it back.
    suspects: Option<(std::time::Instant, Vec<String>)>,
    /// Taken over from a previous process: the log offset it stopped at, caught up from
    /// at the first connected stretch.
    catch_up: Option<u64>,
    /// Broadcasts at or below this offset were delivered by the catch-up: pub/sub's copy
    /// of them is skipped.
    caught_up: u64,
    /// The last control message applied (a stream id), for those missed while away.
    ctl_seen: Option<String>,
    /// The others had reaped this node when it came back: what Redis lacks of its
    /// holdings is then the reaping's doing, not an unsubscribe elsewhere.
    reaped: bool,
    /// Leaves of a dead node's members announced here whose publish to the other nodes
    /// failed with Redis (`vanished.rs`).
    unsent: Vec<Envelope>,
    /// This node's sessions, for writing them back after an outage (`sessions.rs`).
    sessions: sessions::Sessions,
    /// The bus shards' tasks, started with the worker.
    shards: Vec<spread::ShardTask>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl RedisCluster {
    /// The handle for the hub and the worker to start once the hub exists. Sessions may
    /// come back, on any node, within `window` (`reconnect-timeout`). With `succession`,
    /// this process carries on as the node a previous process was (its id wins over the
    /// configured one: the other nodes know the node by it).
    pub fn new(
        config: &ClusterConfig,
        url: &str,
        window: Duration,
        history: Keeping,
        succession: Option<Succession>,
    ) -> Result<(Arc<RedisCluster>, Worker), ClusterError> {
        let sharded = crate::config::ClusterUrl::is_cluster(url);
        // Plain Redis keeps the names of the versions before Redis Cluster support.
        let keys = Keys {
            prefix: if sharded {
                format!("{{{}}}", config.prefix)
            } else {
                config.prefix.clone()
            },
            sharded,
        };
        let endpoint = endpoint::Endpoint::new(url, &keys.log())?;
        let (node, catch_up) = match succession {
            Some(s) => {
                if config.node_id.as_ref().is_some_and(|id| *id != s.node) {
                    tracing::warn!(node = %s.node, "[Cluster] node-id changed: this process stays the node it took over, the new id applies from the next start without a hand-over");
                }
                (s.node, (s.offset > 0).then_some(s.offset))
            }
            None => (
                config
                    .node_id
                    .clone()
                    .unwrap_or_else(super::generated_node_id),
                None,
            ),
        };
        let node: Arc<str> = Arc::from(node);
        let (tx, rx) = mpsc::unbounded_channel();
        let up = Arc::new(AtomicBool::new(false));
        let floor = Arc::new(AtomicU64::new(u64::MAX));
        let conn = Arc::new(Mutex::new(None));
        let stats = Arc::new(BusStats::default());
        let (spread, shards) = if config.bus_shards > 1 {
            let (s, tasks) = spread::Spread::new(
                url,
                &config.prefix,
                config.bus_shards,
                node.clone(),
                &stats,
                config.heartbeat,
            );
            (Some(s), tasks)
        } else {
            (None, Vec::new())
        };
        let handle = Arc::new(RedisCluster {
            node: node.clone(),
            keys: keys.clone(),
            ops: tx,
            up: up.clone(),
            floor: floor.clone(),
            conn: conn.clone(),
            // Spread, the history is each node's own: nothing writes one for all.
            history: if spread.is_some() {
                Keeping { size: 0, ..history }
            } else {
                history
            },
            spread,
            stats: stats.clone(),
        });
        let worker = Worker {
            endpoint,
            node,
            keys,
            ops: rx,
            up,
            floor,
            conn,
            stats,
            heartbeat: config.heartbeat,
            timeout: config.node_timeout,
            window,
            history,
            watched: HashSet::new(),
            dirty: HashSet::new(),
            epoch: None,
            pending: Vec::new(),
            taken: HashMap::new(),
            taken_ops: 0,
            held: 0,
            elsewhere: HashSet::new(),
            dropped: HashSet::new(),
            suspects: None,
            catch_up,
            caught_up: 0,
            ctl_seen: None,
            reaped: false,
            unsent: Vec::new(),
            sessions: sessions::Sessions::default(),
            shards,
        };
        Ok((handle, worker))
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

impl RedisCluster {
    /// Whether Redis is reachable now, and every bus shard.
    pub fn is_up(&self) -> bool {
        self.reachable().now()
    }

    /// How many bus shards are reachable now, when the bus is spread.
    pub fn shards_up(&self) -> Option<usize> {
        let spread = self.spread.as_ref()?;
        Some(
            spread
                .up_flags()
                .iter()
                .filter(|up| up.load(Ordering::Acquire))
                .count(),
        )
    }

    /// What [`RedisCluster::is_up`] reads, for `/readyz`.
    pub fn reachable(&self) -> Reachable {
        let mut flags = vec![self.up.clone()];
        if let Some(s) = &self.spread {
            flags.extend(s.up_flags());
        }
        Reachable(flags)
    }

    /// Removes this node from the cluster now (its members leave, announced), waiting at
    /// most `within`.
    pub async fn depart(&self, within: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Depart(tx)).is_ok() {
            let _ = tokio::time::timeout(within, rx).await;
        }
        // The broadcasts the bus shards still hold go out too.
        if let Some(s) = &self.spread {
            s.flush(within).await;
        }
    }

    /// Stops the worker for a hand-over, waiting at most `within`: what it had queued
    /// goes out and what Redis published so far is delivered; presence stays as it is,
    /// for the next process to carry on as this node. Returns the log offset to carry on
    /// after, when Redis could tell.
    pub async fn hand_over(&self, within: Duration) -> Option<u64> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(Op::HandOver(tx)).ok()?;
        let offset = tokio::time::timeout(within, rx).await.ok()?.ok()?;
        match &self.spread {
            // Spread broadcasts are not logged: nothing to catch up from.
            Some(s) => {
                s.flush(within).await;
                None
            }
            None => offset,
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

    fn connection(&self) -> Result<MultiplexedConnection, ClusterError> {
        self.conn
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or(ClusterError::Unavailable)
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

fn membership(change: &Change, event: Membership, count: usize) -> Envelope {
    Envelope::membership(
        &change.channel,
        super::identity_of(&change.member).map(Arc::from),
        event,
        change.options.clone(),
        count,
    )
}
