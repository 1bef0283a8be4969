//! What differs between one node and a cluster (SPEC §11): the message bus that carries
//! broadcasts to the other nodes, and the presence that decides membership changes
//! cluster-wide. One node is [`SingleNode`]; nodes joined through Redis are [`redis`].

pub mod redis;
mod wire;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::hub::{ChannelInfo, Envelope};

pub use self::redis::RedisCluster;

/// An answer from the cluster's presence, when it has one.
pub type Query<T> = Option<BoxFuture<'static, Result<T, String>>>;

/// Carries what this node delivered locally to the other nodes. Called on the hub's hot
/// paths with its locks held: implementations only queue.
pub trait Bus: Send + Sync + 'static {
    /// A broadcast to `envelope.channel`, or to the identity `to`, already delivered here.
    fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>);
    /// This node has members in `channel` now (`true`), or no longer.
    fn watch(&self, channel: &str, on: bool);
}

/// How a membership change is settled.
#[derive(Debug)]
pub enum Settle {
    /// This node alone decides: the hub announces the change itself, with its own count.
    Here,
    /// The cluster decides and announces it; the member count after it follows.
    Later(oneshot::Receiver<usize>),
}

/// Decides membership cluster-wide. Members are hub keys (`@identity`, `#sid`). Called
/// with the hub's locks held: implementations only queue.
pub trait Presence: Send + Sync + 'static {
    /// `member` joined `channel` on this node.
    fn join(&self, channel: &str, member: &str, options: &Value) -> Settle;
    /// `member` left `channel` on this node (all its local sessions); `explicit` when it
    /// unsubscribed, which takes it out of the channel on every node.
    fn leave(&self, channel: &str, member: &str, options: &Value, explicit: bool) -> Settle;
    /// `member` has its first session on this node (`true`) or lost its last one. Returns
    /// whether the hub decides `onConnect`/`onDisconnect` itself.
    fn online(&self, member: &str, on: bool) -> bool;
    /// Every channel with its member count, when presence knows more than this node.
    fn channels(&self) -> Query<Vec<(String, usize)>>;
    /// One channel's members, when presence knows more than this node.
    fn channel(&self, name: &str) -> Query<ChannelInfo>;
}

/// One node is the whole cluster: every change is settled by the hub's own maps, and
/// there is nobody to carry broadcasts to.
pub struct SingleNode;

impl Bus for SingleNode {
    fn publish(&self, _: &Envelope, _: &[Bytes], _: Option<&str>) {}
    fn watch(&self, _: &str, _: bool) {}
}

impl Presence for SingleNode {
    fn join(&self, _: &str, _: &str, _: &Value) -> Settle {
        Settle::Here
    }
    fn leave(&self, _: &str, _: &str, _: &Value, _: bool) -> Settle {
        Settle::Here
    }
    fn online(&self, _: &str, _: bool) -> bool {
        true
    }
    fn channels(&self) -> Query<Vec<(String, usize)>> {
        None
    }
    fn channel(&self, _: &str) -> Query<ChannelInfo> {
        None
    }
}

/// The identity of a member key (`@alice` → `alice`); anonymous members have none.
pub fn identity_of(member: &str) -> Option<&str> {
    member.strip_prefix('@')
}

/// A node id for a node that was not given one: host, process and a random part, so a
/// restart is a new node (the old one's members are removed by the others).
pub fn generated_node_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".to_owned());
    let mut r = [0u8; 3];
    let _ = getrandom::fill(&mut r);
    format!(
        "{host}-{}-{:02x}{:02x}{:02x}",
        std::process::id(),
        r[0],
        r[1],
        r[2]
    )
}
