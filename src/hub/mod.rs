//! Channels, members and their sessions: subscribe, unsubscribe, publish, membership
//! events, and the grace window that makes a short drop lose nothing (SPEC §3).
//!
//! State is sharded, each shard a map behind a short synchronous lock, and indexed both
//! ways: channel → member sessions (`channel`), member → channels (`member`). A publish is
//! encoded once and the same bytes are queued to every session. Lock order, everywhere:
//! member → channel shard → slot; the registry and recovery maps are leaves.
//!
//! - `mod.rs`: the [`Hub`] with its config, shards, counters and validation.
//! - `lifecycle`: connections attach, detach and expire; the grace window.
//! - `membership`: subscribe, unsubscribe, leave, and the events they produce.
//! - `deliver`: publishes to a channel and messages to one identity.
//! - `query`: channels, members and stats, read-only.
//! - `remote`: what the cluster tells this node.
//! - `member`, `channel`: the two indexes (member → sessions, channel → sessions).
//! - `envelope`, `observer`: what is delivered, and who hears about it.
//! - `app`: the Socket.IO application in front of the hub.

mod app;
mod channel;
mod deliver;
mod envelope;
mod lifecycle;
mod member;
mod membership;
mod observer;
mod query;
mod remote;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Bus, ChannelInfo, Presence, SingleNode};
use crate::engineio::Sid;

pub use app::HubApp;
pub use envelope::{Envelope, error_envelope};
pub use observer::{HubEvent, Observer};

use channel::Channel;
use member::{Member, Slot};

const SHARDS: usize = 64;

/// Names a client may not use for a custom command.
pub const RESERVED_COMMANDS: [&str; 5] = [
    "init",
    "subscribe",
    "unsubscribe",
    "onSubscribe",
    "onUnsubscribe",
];

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
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_channel_name: 256,
            max_identity: 256,
            max_channels: 100,
            cache_limit: 100,
            grace: Duration::from_secs(8),
        }
    }
}

/// Why a hub request was refused; the text goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("channel must be a non-empty string")]
    ChannelNotString,
    #[error("channel name longer than {0} bytes")]
    ChannelTooLong(usize),
    #[error("channel name contains control characters")]
    ChannelControlChars,
    #[error("too many channels (at most {0})")]
    TooManyChannels(usize),
    #[error("not subscribed to {0:?}")]
    NotSubscribed(String),
    #[error("command name must be a non-empty string")]
    CommandNotString,
    #[error("command name {0:?} is reserved")]
    ReservedCommand(String),
    #[error("identity must be a string")]
    IdentityNotString,
    #[error("identity longer than {0} bytes")]
    IdentityTooLong(usize),
    #[error("identity contains control characters")]
    IdentityControlChars,
    #[error("connection is closed")]
    Closed,
    #[error("channel {0:?} not allowed by the token")]
    NotAllowed(String),
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
}

/// The hub: every channel and member of this node.
pub struct Hub {
    shards: Box<[Shard]>,
    /// Member key → member; sharded like channels. Locked alone (a leaf).
    members: Box<[Mutex<Registry>]>,
    /// pid → detached slot waiting for its connection to recover. Locked alone (a leaf).
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
        }
    }

    /// Joins the other nodes through `bus` and `presence`; set before serving.
    pub fn with_cluster(mut self, bus: Arc<dyn Bus>, presence: Arc<dyn Presence>) -> Hub {
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

    /// The offset for the next broadcast, or 0 when recovery is off.
    fn next_offset(&self) -> u64 {
        if self.config.grace.is_zero() {
            0
        } else {
            self.offsets.fetch_add(1, Ordering::Relaxed) + 1
        }
    }

    /// Checks a channel name from a client.
    pub fn validate_channel<'a>(&self, channel: Option<&'a Value>) -> Result<&'a str, HubError> {
        let name = match channel {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(HubError::ChannelNotString),
        };
        if name.len() > self.config.max_channel_name {
            return Err(HubError::ChannelTooLong(self.config.max_channel_name));
        }
        if name.chars().any(char::is_control) {
            return Err(HubError::ChannelControlChars);
        }
        Ok(name)
    }

    /// Checks an identity from a client: `None` (or empty) is anonymous.
    pub fn validate_identity(
        &self,
        identity: Option<&Value>,
    ) -> Result<Option<Arc<str>>, HubError> {
        match identity {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s.len() > self.config.max_identity => {
                Err(HubError::IdentityTooLong(self.config.max_identity))
            }
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                Err(HubError::IdentityControlChars)
            }
            Some(Value::String(s)) => Ok(Some(Arc::from(s.as_str()))),
            Some(_) => Err(HubError::IdentityNotString),
        }
    }
}

#[cfg(test)]
mod tests;
