//! Nodes in one process joined through an in-memory backplane: the cluster without Redis,
//! so multi-node behaviour runs in-process with paused time.
//!
//! It keeps the Redis implementation's shape and semantics: the hub only queues ops (it
//! calls in with its locks held); one worker task per node applies them in order against
//! the shared [`MemoryBackplane`] (presence decided under one lock, as the Redis scripts
//! decide it atomically) and delivers what the other nodes publish. Heartbeats and the
//! node timeout run on tokio time. A node can be cut off from the backplane
//! ([`MemoryBackplane::cut`]): it then settles every change locally, the others remove it
//! after the node timeout, and when it is back it rewrites its presence from the hub.

mod state;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{Bus, ChannelInfo, ClusterError, Envelope, Presence, Query, Settle};
use crate::config::ClusterConfig;

pub use worker::MemoryWorker;

/// What one node hears from the others.
enum Inbox {
    /// A broadcast to a channel, or to the identity `to`.
    Broadcast {
        envelope: Envelope,
        attachments: Vec<Bytes>,
        to: Option<String>,
    },
    /// A membership event another node decided, not for `except`'s sessions (they hear
    /// it with the control message that follows).
    Announce {
        envelope: Envelope,
        except: Option<String>,
    },
    /// An identity joined (`true`) or left a channel on another node: its sessions here
    /// follow, and hear `told` (its join, when that was news).
    Control {
        join: bool,
        member: String,
        channel: String,
        told: Option<Envelope>,
    },
}

/// One node as the backplane knows it.
struct Link {
    inbox: mpsc::UnboundedSender<Inbox>,
    /// Channels the node has members in: only those broadcasts reach it.
    watched: HashSet<String>,
    /// Cut off from the backplane: it neither sends nor hears, and its calls fail.
    cut: bool,
}

#[derive(Default)]
struct Shared {
    /// node id → how to reach it: the bus.
    links: HashMap<String, Link>,
    /// Who is where, cluster-wide.
    presence: state::Presence,
}

/// The bus and presence every node of one in-process cluster attaches to.
#[derive(Default)]
pub struct MemoryBackplane {
    /// Every change is decided under this lock, never held across an await nor while
    /// calling a hub.
    shared: Mutex<Shared>,
}

impl std::fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackplane").finish_non_exhaustive()
    }
}

impl MemoryBackplane {
    pub fn new() -> Arc<MemoryBackplane> {
        Arc::new(MemoryBackplane::default())
    }

    /// Cuts `node` off from the backplane (`true`), or lets it back.
    pub fn cut(&self, node: &str, cut: bool) {
        if let Some(link) = self.lock().links.get_mut(node) {
            link.cut = cut;
        }
    }

    /// Takes the lock; nothing panics while holding it, so a poisoned one is still whole.
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn attach(&self, node: &str, inbox: mpsc::UnboundedSender<Inbox>) {
        let link = Link {
            inbox,
            watched: HashSet::new(),
            cut: false,
        };
        self.lock().links.insert(node.to_owned(), link);
    }

    /// Runs `f` on the shared state unless `node` is cut off.
    fn with<T>(&self, node: &str, f: impl FnOnce(&mut Shared) -> T) -> Result<T, ClusterError> {
        let mut shared = self.lock();
        if shared.links.get(node).is_none_or(|l| l.cut) {
            return Err(ClusterError::Cut(node.to_owned()));
        }
        Ok(f(&mut shared))
    }

    /// Hands `msg` to every other node that is reachable and wants it.
    fn send(
        &self,
        from: &str,
        channel: Option<&str>,
        msg: impl Fn() -> Inbox,
    ) -> Result<(), ClusterError> {
        self.with(from, |shared| {
            for (name, link) in &shared.links {
                let wanted = channel.is_none_or(|c| link.watched.contains(c));
                if name != from && !link.cut && wanted {
                    let _ = link.inbox.send(msg());
                }
            }
        })
    }
}

/// What the hub asks of the worker.
enum Op {
    Publish {
        envelope: Envelope,
        attachments: Vec<Bytes>,
        to: Option<String>,
    },
    Watch(String, bool),
    Join(Change),
    Leave(Change),
    Online(String, bool),
    /// Shutting down: this node's members leave now, announced.
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

impl Change {
    /// A change nobody waits for (found by a resync or a node's removal).
    fn quiet(channel: &str, member: &str) -> Change {
        Change {
            channel: channel.to_owned(),
            member: member.to_owned(),
            options: Value::Null,
            explicit: false,
            reply: oneshot::channel().0,
        }
    }
}

/// A node's handle on the in-memory cluster: [`Bus`] and [`Presence`] for its hub.
pub struct MemoryCluster {
    node: Arc<str>,
    backplane: Arc<MemoryBackplane>,
    /// Ops for the worker, in the order the hub made them; unbounded for the reason the
    /// Redis one is (each op is a change the hub already made).
    ops: mpsc::UnboundedSender<Op>,
    /// Whether the node is joined to the backplane now.
    up: Arc<AtomicBool>,
}

impl std::fmt::Debug for MemoryCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCluster")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl MemoryCluster {
    /// A node of the cluster on `backplane`, and the worker to start once its hub exists.
    /// `config` gives the node id, the heartbeat and the node timeout.
    pub fn join(
        backplane: &Arc<MemoryBackplane>,
        config: &ClusterConfig,
    ) -> (Arc<MemoryCluster>, MemoryWorker) {
        let node: Arc<str> = Arc::from(
            config
                .node_id
                .clone()
                .unwrap_or_else(super::generated_node_id),
        );
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        backplane.attach(&node, inbox_tx);
        let up = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(MemoryCluster {
            node: node.clone(),
            backplane: backplane.clone(),
            ops: ops_tx,
            up: up.clone(),
        });
        let worker = MemoryWorker::new(
            node,
            backplane.clone(),
            ops_rx,
            inbox_rx,
            up,
            (config.heartbeat, config.node_timeout),
        );
        (handle, worker)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the node is joined to the backplane now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
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
}

impl Bus for MemoryCluster {
    fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>) {
        if to.is_none() && envelope.channel.is_none() {
            return;
        }
        let _ = self.ops.send(Op::Publish {
            envelope: envelope.clone(),
            attachments: attachments.to_vec(),
            to: to.map(str::to_owned),
        });
    }

    fn watch(&self, channel: &str, on: bool) {
        let _ = self.ops.send(Op::Watch(channel.to_owned(), on));
    }
}

impl Presence for MemoryCluster {
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
        let answer = self
            .backplane
            .with(&self.node, |s| s.presence.channel_counts());
        Some(Box::pin(async move { answer }))
    }

    fn channel(&self, name: &str) -> Query<ChannelInfo> {
        let answer = self.backplane.with(&self.node, |s| {
            let members = s.presence.members_of(name);
            ChannelInfo::of(name, members.iter().map(String::as_str))
        });
        Some(Box::pin(async move { answer }))
    }
}
