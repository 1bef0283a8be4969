//! Channels, members and their sessions: subscribe, unsubscribe, publish, membership
//! events, and the grace window that makes a short drop lose nothing (SPEC §3).
//!
//! State is sharded, each shard a map behind a short synchronous lock, and indexed both
//! ways: channel → member sessions (`channel`), member → channels (`member`). A publish is
//! encoded once and the same bytes are queued to every session. Lock order, everywhere:
//! member → channel shard → slot; the registry and recovery maps are leaves.

mod app;
mod channel;
mod envelope;
mod member;
mod observer;
mod remote;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tracing::debug;

use crate::cluster::{Bus, Presence, Settle, SingleNode};
use crate::engineio::{Outgoing, Sid};
use crate::socketio::SioSocket;

pub use app::HubApp;
pub use envelope::{Envelope, error_envelope};
pub use observer::{HubEvent, Observer};
pub use remote::Snapshot;

use channel::{Channel, Fanout};
use member::{Claim, Detach, Member, MemberState, Slot};

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
    /// How long a membership ack waits for the cluster's count before using this node's.
    pub cluster_answer: Duration,
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

    /// Claims the detached session `pid` for a recovering connection of `identity`, when
    /// an exact replay after `offset` is possible.
    pub(crate) fn claim(
        &self,
        pid: &str,
        offset: Option<u64>,
        identity: Option<&str>,
    ) -> Option<Claim> {
        let slot = self.recovery.lock().ok()?.get(&Sid::from(pid)).cloned()?;
        if slot.member.identity.as_deref() != identity {
            return None;
        }
        let claim = slot.claim(pid, offset)?;
        if let Ok(mut map) = self.recovery.lock() {
            map.remove(&Sid::from(pid));
        }
        Some(claim)
    }

    /// A connection joins: it resumes a claimed session, takes over its identity's session
    /// from the grace window (getting what was kept for it), or joins its member afresh.
    pub(crate) fn attach(
        &self,
        socket: &Arc<SioSocket>,
        identity: Option<Arc<str>>,
        claim: Option<Claim>,
    ) -> Conn {
        if let Some(claim) = claim
            && claim.slot.attach(socket, true, self.config.cache_limit)
        {
            self.counters.recovered.fetch_add(1, Ordering::Relaxed);
            debug!(sid = %socket.sid, "connection state recovered");
            return Conn {
                member: claim.slot.member.clone(),
                slot: claim.slot,
            };
        }
        let key = Member::key_for(identity.as_deref(), &socket.sid);
        loop {
            let member = {
                // Nothing panics while holding these locks; if something ever did, the
                // maps are still consistent enough to go on with.
                let mut reg = self
                    .registry(&key)
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                reg.entry(Arc::from(key.as_str()))
                    .or_insert_with(|| Arc::new(Member::new(identity.clone(), &socket.sid)))
                    .clone()
            };
            let mut st = member.state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.gone {
                // It left between the lookup and the lock; a fresh member will be made.
                drop(st);
                self.unregister(&member);
                continue;
            }
            // A member with no session at all was just made: its first connection.
            let first = st.slots.is_empty();
            let slot = self.join_member(&member, &mut st, socket);
            if first && self.presence.online(&member.key, true) {
                self.observe_with(HubEvent::Connect, || {
                    observer::presence(member.identity.clone(), "onConnect")
                });
            }
            drop(st);
            return Conn { member, slot };
        }
    }

    /// Adds a connection to its member (member lock held).
    fn join_member(
        &self,
        member: &Arc<Member>,
        st: &mut MemberState,
        socket: &Arc<SioSocket>,
    ) -> Arc<Slot> {
        let waiting = !st.slots.iter().any(|s| s.is_live());
        let newest = st
            .slots
            .iter()
            .filter_map(|s| s.detached_epoch().map(|e| (e, s.clone())))
            .max_by_key(|(e, _)| *e)
            .map(|(_, s)| s);
        if let (true, Some(slot)) = (waiting, newest) {
            // The identity came back within the window (a reload, a new tab): it takes over
            // the latest session with what was kept for it; no membership churn.
            let pid = slot.pid();
            if slot.attach(socket, false, self.config.cache_limit) {
                if let (Some(pid), Ok(mut map)) = (pid, self.recovery.lock()) {
                    map.remove(&pid);
                }
                let stale: Vec<Arc<Slot>> = st
                    .slots
                    .iter()
                    .filter(|s| !Arc::ptr_eq(s, &slot) && s.detached_epoch().is_some())
                    .cloned()
                    .collect();
                for s in stale {
                    self.drop_slot(st, &s);
                }
                debug!(sid = %socket.sid, member = %member.key, "session taken over within the grace window");
                return slot;
            }
        }
        let slot = Arc::new(Slot::live(member.clone(), socket.clone()));
        st.slots.push(slot.clone());
        for ch in &st.channels {
            if let Ok(mut map) = self.shard(ch).channels.lock()
                && let Some(c) = map.get_mut(ch)
            {
                c.add_slot(&slot);
            }
        }
        slot
    }

    /// A connection ended. When `recoverable`, its session waits out the grace window
    /// (keeping what arrives); else it is gone at once.
    /// `backlog` is what the session had queued, and how many of those it had taken.
    pub(crate) fn detach(
        self: &Arc<Self>,
        conn: &Conn,
        socket: &Arc<SioSocket>,
        backlog: (VecDeque<Outgoing>, usize),
        recoverable: bool,
    ) {
        let grace = recoverable && !self.config.grace.is_zero();
        match conn.slot.detach(socket, backlog, grace) {
            Detach::Waiting(epoch) => {
                if let (Some(pid), Ok(mut map)) = (conn.slot.pid(), self.recovery.lock()) {
                    map.insert(pid, conn.slot.clone());
                }
                let hub = self.clone();
                let slot = conn.slot.clone();
                let wait = self.config.grace;
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    hub.expire(&slot, epoch);
                });
            }
            Detach::Ended => self.remove_slot(&conn.slot),
            Detach::TakenOver => {}
        }
    }

    /// The grace window of a detached session is over.
    fn expire(&self, slot: &Arc<Slot>, epoch: u64) {
        let member = slot.member.clone();
        let Ok(mut st) = member.state.lock() else {
            return;
        };
        let pid = slot.pid();
        if slot.expire(epoch) {
            if let (Some(pid), Ok(mut map)) = (pid, self.recovery.lock()) {
                map.remove(&pid);
            }
            debug!(member = %member.key, "grace window over");
            self.drop_slot(&mut st, slot);
            let gone = st.gone;
            drop(st);
            if gone {
                self.unregister(&member);
            }
        }
    }

    fn remove_slot(&self, slot: &Arc<Slot>) {
        let member = slot.member.clone();
        let Ok(mut st) = member.state.lock() else {
            return;
        };
        self.drop_slot(&mut st, slot);
        let gone = st.gone;
        drop(st);
        if gone {
            self.unregister(&member);
        }
    }

    /// Removes a slot from its member and channels (member lock held). The member's last
    /// slot takes the member out of every channel, with `onUnsubscribe`.
    fn drop_slot(&self, st: &mut MemberState, slot: &Arc<Slot>) {
        slot.end();
        st.slots.retain(|s| !Arc::ptr_eq(s, slot));
        for ch in &st.channels {
            if let Ok(mut map) = self.shard(ch).channels.lock()
                && let Some(c) = map.get_mut(ch)
            {
                c.remove_slot(slot.id);
            }
        }
        if st.slots.is_empty() {
            let member = slot.member.clone();
            for ch in std::mem::take(&mut st.channels) {
                self.leave(&member, &ch, Value::Null, &[], false);
            }
            st.gone = true;
            if self.presence.online(&member.key, false) {
                self.observe_with(HubEvent::Disconnect, || {
                    observer::presence(member.identity.clone(), "onDisconnect")
                });
            }
        }
    }

    fn unregister(&self, member: &Arc<Member>) {
        if let Ok(mut reg) = self.registry(&member.key).lock()
            && reg.get(&member.key).is_some_and(|m| Arc::ptr_eq(m, member))
        {
            reg.remove(&member.key);
        }
    }

    /// Subscribes the connection's member; returns the member count after it. A member's
    /// first subscription tells every member with `onSubscribe`.
    pub(crate) fn subscribe(
        &self,
        conn: &Conn,
        channel: &str,
        options: Value,
    ) -> Result<Count, HubError> {
        let member = &conn.member;
        let mut st = member.state.lock().map_err(|_| HubError::Closed)?;
        if st.gone {
            return Err(HubError::Closed);
        }
        if st.channels.contains(channel) {
            // Asked again: the cluster's count, with no event (the member is already in).
            let count = self.count(channel);
            return Ok(match self.presence.join(channel, &member.key, &options) {
                Settle::Here => Count::Now(count),
                Settle::Later(rx) => Count::Later(rx, count),
            });
        }
        if st.channels.len() >= self.config.max_channels {
            return Err(HubError::TooManyChannels(self.config.max_channels));
        }
        st.channels.insert(channel.to_owned());
        let mut map = self
            .shard(channel)
            .channels
            .lock()
            .map_err(|_| HubError::Closed)?;
        let ch = self.channel_entry(&mut map, channel);
        for slot in &st.slots {
            ch.add_slot(slot);
        }
        ch.members.insert(member.key.clone(), member.clone());
        let count = ch.count();
        if let Settle::Later(rx) = self.presence.join(channel, &member.key, &options) {
            return Ok(Count::Later(rx, count));
        }
        let event = Envelope::membership(
            channel,
            member.identity.clone(),
            "onSubscribe",
            options,
            count,
        );
        self.observe(HubEvent::Subscribe, &event);
        let item = event.encode(self.next_offset(), Vec::new());
        let f = ch.deliver(&item, self.config.cache_limit);
        self.count_fanout(f);
        Ok(Count::Now(count))
    }

    /// The channel, made (and watched on the bus) if this node had no member in it.
    fn channel_entry<'m>(
        &self,
        map: &'m mut HashMap<String, Channel>,
        channel: &str,
    ) -> &'m mut Channel {
        match map.entry(channel.to_owned()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.bus.watch(channel, true);
                e.insert(Channel::default())
            }
        }
    }

    /// Unsubscribes the connection's member (all its tabs); returns the member count after it.
    pub(crate) fn unsubscribe(
        &self,
        conn: &Conn,
        channel: &str,
        options: Value,
    ) -> Result<Count, HubError> {
        let member = &conn.member;
        let mut st = member.state.lock().map_err(|_| HubError::Closed)?;
        if !st.channels.remove(channel) {
            return Err(HubError::NotSubscribed(channel.to_owned()));
        }
        // The leaving member's own tabs hear it too, so they know they left.
        let slots = st.slots.clone();
        Ok(self.leave(member, channel, options, &slots, true))
    }

    /// Takes a member out of a channel (member lock held) and tells the remaining members
    /// and `also` (the member's own slots, still live, which leave the channel too);
    /// returns the count after it. `explicit`: an unsubscribe, not the member's end.
    fn leave(
        &self,
        member: &Arc<Member>,
        channel: &str,
        options: Value,
        also: &[Arc<Slot>],
        explicit: bool,
    ) -> Count {
        let Ok(mut map) = self.shard(channel).channels.lock() else {
            return Count::Now(0);
        };
        let Some(ch) = map.get_mut(channel) else {
            return Count::Now(0);
        };
        for s in also {
            ch.remove_slot(s.id);
        }
        ch.members.remove(&member.key);
        let count = ch.count();
        if let Settle::Later(rx) = self
            .presence
            .leave(channel, &member.key, &options, explicit)
        {
            if ch.is_empty() {
                map.remove(channel);
                self.bus.watch(channel, false);
            }
            return Count::Later(rx, count);
        }
        let event = Envelope::membership(
            channel,
            member.identity.clone(),
            "onUnsubscribe",
            options,
            count,
        );
        self.observe(HubEvent::Unsubscribe, &event);
        let item = event.encode(self.next_offset(), Vec::new());
        let mut f = ch.deliver(&item, self.config.cache_limit);
        for s in also {
            f.add(s.deliver(&item, self.config.cache_limit));
        }
        self.count_fanout(f);
        if ch.is_empty() {
            map.remove(channel);
            self.bus.watch(channel, false);
        }
        Count::Now(count)
    }

    /// Members of a channel now.
    pub fn count(&self, channel: &str) -> usize {
        self.shard(channel)
            .channels
            .lock()
            .ok()
            .and_then(|m| m.get(channel).map(Channel::count))
            .unwrap_or(0)
    }

    /// Delivers an envelope to every session of its channel's members; returns how many
    /// got it queued (sessions away in the grace window keep it instead).
    pub fn publish(&self, envelope: &Envelope, attachments: Vec<Bytes>) -> usize {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let Some(channel) = envelope.channel.as_deref() else {
            return 0;
        };
        let Ok(map) = self.shard(channel).channels.lock() else {
            return 0;
        };
        // Under the channel lock, so the monitor and the other nodes hear a channel's
        // events in their order.
        self.observe(Self::kind_of(envelope), envelope);
        self.bus.publish(envelope, &attachments, None);
        let Some(ch) = map.get(channel) else {
            return 0;
        };
        // The offset is taken under the channel lock, so offsets follow delivery order.
        let item = envelope.encode(self.next_offset(), attachments);
        let f = ch.deliver(&item, self.config.cache_limit);
        drop(map);
        self.count_fanout(f);
        f.queued as usize
    }

    fn kind_of(envelope: &Envelope) -> HubEvent {
        if envelope.kind == "command" {
            HubEvent::Command
        } else {
            HubEvent::Message
        }
    }

    /// Delivers an envelope to every session of one identity; returns how many got it.
    pub fn send_to(&self, identity: &str, envelope: &Envelope, attachments: Vec<Bytes>) -> usize {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        self.observe(Self::kind_of(envelope), envelope);
        self.bus.publish(envelope, &attachments, Some(identity));
        self.deliver_to(identity, envelope, attachments)
    }

    /// Delivers to this node's sessions of one identity.
    fn deliver_to(&self, identity: &str, envelope: &Envelope, attachments: Vec<Bytes>) -> usize {
        let key = Member::key_for(Some(identity), &Sid::from(""));
        let Some(member) = self
            .registry(&key)
            .lock()
            .ok()
            .and_then(|r| r.get(key.as_str()).cloned())
        else {
            return 0;
        };
        let Ok(st) = member.state.lock() else {
            return 0;
        };
        let item = envelope.encode(self.next_offset(), attachments);
        let mut f = Fanout::default();
        for slot in &st.slots {
            f.add(slot.deliver(&item, self.config.cache_limit));
        }
        drop(st);
        self.count_fanout(f);
        (f.queued + f.kept) as usize
    }

    fn count_fanout(&self, f: Fanout) {
        self.counters
            .delivered
            .fetch_add(f.queued, Ordering::Relaxed);
        self.counters.kept.fetch_add(f.kept, Ordering::Relaxed);
        self.counters
            .dropped
            .fetch_add(f.dropped, Ordering::Relaxed);
    }

    /// Every channel with its member count, sorted by name.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            if let Ok(map) = shard.channels.lock() {
                all.extend(map.iter().map(|(n, c)| (n.clone(), c.count())));
            }
        }
        all.sort();
        all
    }

    /// One channel's members (an unknown channel has none).
    pub fn channel(&self, name: &str) -> ChannelInfo {
        let mut info = ChannelInfo {
            name: name.to_owned(),
            count: 0,
            identities: Vec::new(),
            anonymous: 0,
        };
        if let Ok(map) = self.shard(name).channels.lock()
            && let Some(ch) = map.get(name)
        {
            info.count = ch.count();
            for m in ch.members.values() {
                match &m.identity {
                    Some(id) => info.identities.push(id.to_string()),
                    None => info.anonymous += 1,
                }
            }
        }
        info.identities.sort();
        info
    }

    /// Takes every shard's lock once: returns true when all answered (a stuck shard never
    /// returns, which is what a watchdog built on this must detect).
    pub fn probe(&self) -> bool {
        self.shards.iter().all(|s| s.channels.lock().is_ok())
            && self.members.iter().all(|m| m.lock().is_ok())
    }

    /// TEST ONLY, reached through `REALTIME_TEST_HOOKS=1` and SIGUSR2 (see `service`): holds
    /// every shard's lock for `d` on a thread of its own, so tests can show that a stuck
    /// hub stops the systemd watchdog pings.
    pub fn hang_shards_for_test(self: &Arc<Self>, d: std::time::Duration) {
        let hub = self.clone();
        std::thread::spawn(move || {
            let held: Vec<_> = hub
                .shards
                .iter()
                .filter_map(|s| s.channels.lock().ok())
                .collect();
            std::thread::sleep(d);
            drop(held);
        });
    }

    /// Channels, members and subscriptions right now.
    pub fn stats(&self) -> HubStats {
        let mut stats = HubStats::default();
        for shard in self.shards.iter() {
            if let Ok(map) = shard.channels.lock() {
                stats.channels += map.len();
                stats.subscriptions += map.values().map(Channel::count).sum::<usize>();
            }
        }
        for reg in self.members.iter() {
            if let Ok(r) = reg.lock() {
                stats.members += r.len();
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests;
