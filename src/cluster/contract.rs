//! The contract between the hub and the cluster: what the hub hands the cluster ([`Bus`],
//! [`Presence`]), what the cluster hands back ([`Inbound`]), and the words both speak
//! (member keys, membership changes, channel info, snapshots).

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{ClusterError, Envelope};

/// An answer from the cluster's presence, when it has one.
pub type Query<T> = Option<BoxFuture<'static, Result<T, ClusterError>>>;

/// A message to replay for a session resumed from another node: what was published, to
/// whom, and its offset.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub envelope: Envelope,
    pub attachments: Vec<Bytes>,
    pub to: Option<String>,
    pub offset: u64,
}

/// The messages published after an offset, or why they cannot all be told.
pub type Replay = oneshot::Receiver<Result<Vec<Replayed>, ClusterError>>;

/// Carries broadcasts to the other nodes. Called on the hub's hot paths with its locks
/// held: implementations only queue.
pub trait Bus: Send + Sync + 'static {
    /// A broadcast to `envelope.channel`, or to the identity `to`: already delivered here
    /// unless the bus is [`Bus::sequenced`].
    fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>);
    /// This node has members in `channel` now (`true`), or no longer.
    fn watch(&self, channel: &str, on: bool);
    /// Whether the bus gives each broadcast its cluster-wide offset and hands it back to
    /// every node, this one included ([`Inbound::deliver`]), in one order: the hub then
    /// delivers nothing itself, so an offset means the same on every node.
    fn sequenced(&self) -> bool {
        false
    }
    /// The session `pid` of `member` lives on this node (`true`) or is over here: what
    /// another node needs to resume it if this one dies or the client moves.
    fn session(&self, _pid: &str, _member: &str, _on: bool) {}
    /// Whether the bus still holds every message after `offset`, as far as it knows
    /// without asking (see [`Bus::resume`] for the answer that counts).
    fn replayable(&self, _offset: u64) -> bool {
        false
    }
    /// What `member`'s session `pid` (held by another node) missed after `offset`, when
    /// the bus still has every message since. `None`: the bus keeps no history.
    fn resume(&self, _pid: &str, _member: &str, _offset: u64) -> Option<Replay> {
        None
    }
}

/// How a membership change is settled.
#[derive(Debug)]
pub enum Settle {
    /// This node alone decides: the hub announces the change itself, with its own count.
    Here,
    /// The cluster decides and announces it; the member count after it follows.
    Later(oneshot::Receiver<usize>),
}

/// Decides membership cluster-wide. Members are member keys (see [`member_key`]). Called
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
    /// The messages kept for `channel` after offset `since` (the last `limit` without
    /// it), when the cluster keeps a history shared by every node. `None` (the default):
    /// each node answers from its own, which holds what was delivered to that node.
    fn history(&self, channel: &str, since: Option<u64>, limit: usize) -> Query<History> {
        let _ = (channel, since, limit);
        None
    }
}

/// A channel's history as one answer: the kept messages after the offset asked for,
/// oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Each message with the offset it was delivered with.
    pub messages: Vec<(u64, Envelope)>,
    /// The last offset given out when the answer was made: the `since` of the next ask.
    pub offset: u64,
    /// No message after `since` has left the history (by count or age) unanswered.
    pub complete: bool,
    /// The limit left kept messages out: newer ones after `since`, older ones without.
    pub more: bool,
}

/// What the cluster tells this node's hub. Called from the cluster's own task, never with
/// a cluster lock held, so implementations may take the hub's locks.
pub trait Inbound: Send + Sync + 'static {
    /// A broadcast published on another node (or on any node, this one included, when
    /// the bus is [`Bus::sequenced`]): delivered here, and nowhere else. `offset` is its
    /// cluster-wide offset; `None` lets the hub number it.
    fn deliver(
        &self,
        envelope: &Envelope,
        attachments: Vec<Bytes>,
        to: Option<&str>,
        offset: Option<u64>,
    );
    /// A membership change the cluster decided: told to the observer when `observe`, and
    /// delivered to this node's members of the channel and to `leaving`'s sessions (which
    /// are no longer in it).
    fn announce(
        &self,
        change: Membership,
        envelope: &Envelope,
        leaving: Option<&str>,
        observe: bool,
    );
    /// A membership change another node decided and published: delivered to this node's
    /// members of the channel, except `except`'s sessions, which hear it with the control
    /// message that joins them ([`Inbound::announce_to`]), once either way.
    fn announce_heard(&self, envelope: &Envelope, except: Option<&str>);
    /// Delivers a membership change to `member`'s sessions here that are in its channel:
    /// the member's own join, decided on another node.
    fn announce_to(&self, member: &str, envelope: &Envelope);
    /// Tells the observer only: a change this node's members already heard.
    fn observe_only(&self, change: Membership, envelope: &Envelope);
    /// A member's first connection anywhere (`onConnect`) or its last one gone
    /// (`onDisconnect`), as the cluster decided: told to the observer.
    fn announce_presence(&self, member: &str, connected: bool);
    /// The member joined `channel` on another node: its sessions here join it too,
    /// silently (the cluster announced it).
    fn adopt(&self, member: &str, channel: &str);
    /// The member unsubscribed from `channel` on another node: its sessions here leave
    /// it too, silently.
    fn drop_remote(&self, member: &str, channel: &str);
    /// Every subscription and member of this node now, for a resynchronisation.
    fn snapshot(&self) -> Snapshot;
    /// This node's member count of `channel`, for a change settled without the cluster.
    fn local_count(&self, channel: &str) -> usize;
    /// Whether `channel` is a name this node accepts (a peer's message is checked too).
    fn accepts_channel(&self, channel: &str) -> bool;
}

/// A change in who is where, as clients hear it (the command of its envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Membership {
    /// A member joined a channel.
    Subscribe,
    /// A member left a channel.
    Unsubscribe,
    /// A member's first connection anywhere.
    Connect,
    /// A member's last connection is gone.
    Disconnect,
}

impl Membership {
    /// The command name clients and the monitor see.
    pub fn command(self) -> &'static str {
        match self {
            Membership::Subscribe => "onSubscribe",
            Membership::Unsubscribe => "onUnsubscribe",
            Membership::Connect => "onConnect",
            Membership::Disconnect => "onDisconnect",
        }
    }
}

/// What a channel looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    pub count: usize,
    /// Identities of the members that have one, sorted.
    pub identities: Vec<String>,
    /// Members without an identity.
    pub anonymous: usize,
}

impl ChannelInfo {
    /// The info of `name` with these members (member keys), identities sorted.
    pub fn of<'a>(name: &str, members: impl IntoIterator<Item = &'a str>) -> ChannelInfo {
        let mut info = ChannelInfo {
            name: name.to_owned(),
            count: 0,
            identities: Vec::new(),
            anonymous: 0,
        };
        for m in members {
            info.count += 1;
            match identity_of(m) {
                Some(id) => info.identities.push(id.to_owned()),
                None => info.anonymous += 1,
            }
        }
        info.identities.sort();
        info
    }
}

/// What one node holds: (channel, member key) pairs and member keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub subscriptions: Vec<(String, String)>,
    pub members: Vec<String>,
}

/// The key of a member cluster-wide: `@identity` for an identity (all its tabs, on every
/// node), `#sid` for one anonymous connection. A client identity can never be mistaken
/// for an anonymous connection.
pub fn member_key(identity: Option<&str>, sid: &str) -> String {
    match identity {
        Some(id) => format!("@{id}"),
        None => format!("#{sid}"),
    }
}

/// The identity of a member key (`@alice` → `alice`); anonymous members have none.
pub fn identity_of(member: &str) -> Option<&str> {
    member.strip_prefix('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_key_names_its_identity_or_its_connection() {
        assert_eq!(member_key(Some("alice"), "s1"), "@alice");
        assert_eq!(member_key(None, "s1"), "#s1");
        assert_eq!(identity_of(&member_key(Some("#x"), "s")), Some("#x"));
        assert_eq!(identity_of(&member_key(None, "s")), None);
        let info = ChannelInfo::of("c", ["@b", "#s", "@a"]);
        assert_eq!((info.count, info.anonymous), (3, 1));
        assert_eq!(info.identities, ["a", "b"]);
    }
}
