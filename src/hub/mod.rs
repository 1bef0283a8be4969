//! Channels, members and their sessions: subscribe, unsubscribe, publish, membership
//! events, and the grace window that makes a short drop lose nothing
//! (docs/design.md#channels-and-members).
//!
//! State is sharded, each shard a map behind a short synchronous lock, and indexed both
//! ways: channel → member sessions (`channel`), member → channels (`member`). A publish is
//! encoded once and the same bytes are queued to every session. Lock order, everywhere:
//! member → channel shard → slot; the registry, recovery maps and history rings are leaves.
//!
//! - `mod.rs`: the [`Hub`] with its config, shards, counters and validation.
//! - `lifecycle`: connections attach, detach and expire; the grace window.
//! - `membership`: subscribe, unsubscribe, leave, and the events they produce.
//! - `deliver`: publishes to a channel and messages to one identity.
//! - `query`: channels, members and stats, read-only.
//! - `history`: each channel's last messages, for a client that asks what it missed.
//! - `remote`: what the cluster tells this node.
//! - `member`, `channel`: the two indexes (member → sessions, channel → sessions).
//! - `envelope`, `observer`: what is delivered, and who hears about it.
//! - `app`: the Socket.IO application in front of the hub.
//! - `handover`: the hub written down for the next process, and taken in from the last.

mod admission;
mod app;
mod channel;
mod deliver;
mod dispatch;
mod envelope;
mod handover;
mod history;
mod legacy;
mod lifecycle;
mod member;
mod membership;
mod notices;
mod observer;
mod query;
mod remote;
mod request;
mod resume;
mod validate;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::{Bus, ChannelInfo, Presence, SingleNode};
use crate::engineio::Sid;

pub use app::HubApp;
pub use envelope::{Envelope, error_envelope};
pub use handover::{Live, LivePoll, Restored};
pub use history::{DEFAULT_LIMIT, MAX_LIMIT, history_json, parse_limit, parse_since};
pub use notices::Notices;
pub use observer::{HubEvent, Observer};
pub use request::{Init, Publication, Request, RequestError};
pub use validate::{ChannelName, CommandName, HubError, Identity, RESERVED_COMMANDS};

use channel::Channel;
use member::{Member, Slot};

const SHARDS: usize = 64;

/// Limits and windows; every one is a config key.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub max_channel_name: usize,
    pub max_identity: usize,
    pub max_channels: usize,
    /// Messages kept per session while it is away (`message-cache-limit`).
    pub cache_limit: usize,
    /// How long a member's subscriptions outlive its last connection (`reconnect-timeout`);
    /// zero turns the window and connection state recovery off.
    pub grace: Duration,
    /// How long a membership ack waits for the cluster's count before using this node's.
    pub cluster_answer: Duration,
    /// Messages kept per channel for `history` (`history-size`); zero keeps none.
    pub history_size: usize,
    /// Age past which a kept message is dropped (`history-ttl`).
    pub history_ttl: Duration,
    /// Which channels get `onSubscribe`/`onUnsubscribe` notices.
    pub notices: Notices,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_channel_name: 256,
            max_identity: 256,
            max_channels: 100,
            cache_limit: 100,
            grace: Duration::from_secs(8),
            cluster_answer: Duration::from_secs(10),
            history_size: 0,
            history_ttl: Duration::from_secs(3600),
            notices: Notices::default(),
        }
    }
}

/// Counts for status lines and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub channels: usize,
    /// Identities and anonymous connections known now (in the grace window too).
    pub members: usize,
    /// Channel memberships (a member in three channels counts three times).
    pub subscriptions: usize,
}

/// Monotonic counters since start.
#[derive(Debug, Default)]
pub struct Counters {
    pub published: AtomicU64,
    /// Items queued to a connection.
    pub delivered: AtomicU64,
    /// Items kept for a session that was away.
    pub kept: AtomicU64,
    pub slow_clients: AtomicU64,
    pub recovered: AtomicU64,
    /// Items for a session that had ended meanwhile.
    pub dropped: AtomicU64,
    /// Kept items dropped because a session away got more than the cache holds.
    pub cache_evictions: AtomicU64,
}

/// The member count after a subscribe or unsubscribe.
#[derive(Debug)]
pub enum Count {
    Now(usize),
    /// Decided by the cluster; the second value is this node's count, for when no answer
    /// comes.
    Later(tokio::sync::oneshot::Receiver<usize>, usize),
}

impl PartialEq for Count {
    fn eq(&self, other: &Count) -> bool {
        matches!((self, other), (Count::Now(a), Count::Now(b)) if a == b)
    }
}

/// A connection as the hub knows it: which member it is, and its slot.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) member: Arc<Member>,
    pub(crate) slot: Arc<Slot>,
}

/// Member key → member, for one shard of the keys.
type Registry = HashMap<Arc<str>, Arc<Member>>;

#[derive(Default)]
struct Shard {
    /// Held for map updates and for queueing to sessions (`try_send`), never across an await.
    channels: Mutex<HashMap<String, Channel>>,
    /// The channels' kept messages; locked under `channels` (a leaf).
    history: Mutex<history::Rings>,
}

/// The hub: every channel and member of this node.
pub struct Hub {
    shards: Box<[Shard]>,
    /// Member key → member; sharded like channels. Locked alone (a leaf).
    members: Box<[Mutex<Registry>]>,
    /// pid → the slot of that session, live or waiting for its connection to recover.
    /// Locked alone (a leaf).
    recovery: Mutex<HashMap<Sid, Arc<Slot>>>,
    /// The last offset given to a broadcast; offsets are unique and increasing.
    offsets: AtomicU64,
    hasher: RandomState,
    config: HubConfig,
    pub counters: Counters,
    /// Told about membership, connections and publishes (the monitor); set before serving.
    observer: Option<Arc<dyn Observer>>,
    /// Carries broadcasts to the other nodes (none on a single node).
    bus: Arc<dyn Bus>,
    /// Decides membership changes and connects cluster-wide (here on a single node).
    presence: Arc<dyn Presence>,
    /// The bus numbers broadcasts and hands them back here (see [`Bus::sequenced`]).
    sequenced: bool,
    /// Sessions of other nodes whose resumption failed here lately: their client is
    /// answered as a new session, not sent round again.
    unresumable: Mutex<HashMap<Sid, std::time::Instant>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            members: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            recovery: Mutex::new(HashMap::new()),
            offsets: AtomicU64::new(0),
            hasher: RandomState::new(),
            config,
            counters: Counters::default(),
            observer: None,
            bus: Arc::new(SingleNode),
            presence: Arc::new(SingleNode),
            sequenced: false,
            unresumable: Mutex::new(HashMap::new()),
        }
    }

    /// Joins the other nodes through `bus` and `presence`; set before serving.
    pub fn with_cluster(mut self, bus: Arc<dyn Bus>, presence: Arc<dyn Presence>) -> Hub {
        self.sequenced = bus.sequenced();
        self.bus = bus;
        self.presence = presence;
        self
    }

    /// The cluster's view of channels, when it has one beyond this node's maps.
    pub fn presence(&self) -> &Arc<dyn Presence> {
        &self.presence
    }

    /// Reports what happens to `observer` (see [`Observer`] for what it must not do).
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Hub {
        self.observer = Some(observer);
        self
    }

    /// Tells the observer.
    fn observe(&self, event: HubEvent, envelope: &Envelope) {
        if let Some(o) = &self.observer
            && o.wants(event)
        {
            o.observe(event, envelope);
        }
    }

    /// Tells the observer, building the envelope only when it is wanted.
    fn observe_with(&self, event: HubEvent, envelope: impl FnOnce() -> Envelope) {
        if let Some(o) = &self.observer
            && o.wants(event)
        {
            o.observe(event, &envelope());
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn shard(&self, channel: &str) -> &Shard {
        let i = self.hasher.hash_one(channel) as usize % self.shards.len();
        &self.shards[i]
    }

    fn registry(&self, key: &str) -> &Mutex<Registry> {
        let i = self.hasher.hash_one(key) as usize % self.members.len();
        &self.members[i]
    }

    /// A broadcast numbered `offset` by a sequenced bus: what it is kept with, and what its
    /// recipients see (0 when recovery is off). This node's counter follows, so that the
    /// current offset a history answer gives is the bus's too.
    fn bus_offset(&self, offset: u64) -> (u64, u64) {
        self.offsets.fetch_max(offset, Ordering::Relaxed);
        let seen = if self.config.grace.is_zero() {
            0
        } else {
            offset
        };
        (offset, seen)
    }

    /// The offset for the next broadcast, or 0 when recovery is off. On a sequenced bus
    /// the bus numbers broadcasts; what the hub sends itself (membership events) carries
    /// no offset, so a client's offset always names a broadcast every node knows.
    fn next_offset(&self) -> u64 {
        if self.config.grace.is_zero() || self.sequenced {
            0
        } else {
            self.offsets.fetch_add(1, Ordering::Relaxed) + 1
        }
    }
}

#[cfg(test)]
mod tests;
