//! Channels and their members: subscribe, unsubscribe, publish, and the `message` envelope
//! every delivery is wrapped in (SPEC §3).
//!
//! State is sharded by channel name, each shard a map behind a short synchronous lock; a
//! publish is encoded once and the same bytes are queued to every subscriber.

mod app;
mod envelope;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use tracing::debug;

use crate::engineio::Sid;
use crate::socketio::{Packet, SioSocket};

pub use app::HubApp;
pub use envelope::Envelope;

const SHARDS: usize = 64;

/// Limits on what clients may ask of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub max_channel_name: usize,
    pub max_identity: usize,
    pub max_channels: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_channel_name: 256,
            max_identity: 256,
            max_channels: 100,
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
}

/// Counts for status lines and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub channels: usize,
    /// Channel memberships (a member in three channels counts three times).
    pub subscriptions: usize,
}

/// One subscriber: a connection and the member (identity or the connection itself) it counts as.
struct Subscriber {
    socket: Arc<SioSocket>,
    member: Arc<str>,
}

#[derive(Default)]
struct Channel {
    subscribers: HashMap<Sid, Subscriber>,
    /// Member key → connections of that member in this channel.
    members: HashMap<Arc<str>, usize>,
}

#[derive(Default)]
struct Shard {
    /// Held only for map updates and for queueing to subscribers (`try_send`), never across an await.
    channels: Mutex<HashMap<String, Channel>>,
}

/// The hub: every channel of this node.
pub struct Hub {
    shards: Box<[Shard]>,
    hasher: RandomState,
    config: HubConfig,
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: RandomState::new(),
            config,
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn shard(&self, channel: &str) -> &Shard {
        let i = self.hasher.hash_one(channel) as usize % self.shards.len();
        &self.shards[i]
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

    /// Adds a connection to a channel; returns the member count after it.
    pub fn subscribe(&self, channel: &str, socket: &Arc<SioSocket>, member: &Arc<str>) -> usize {
        let Ok(mut map) = self.shard(channel).channels.lock() else {
            return 0;
        };
        let ch = map.entry(channel.to_owned()).or_default();
        if !ch.subscribers.contains_key(&socket.sid) {
            ch.subscribers.insert(
                socket.sid.clone(),
                Subscriber {
                    socket: socket.clone(),
                    member: member.clone(),
                },
            );
            *ch.members.entry(member.clone()).or_default() += 1;
        }
        ch.members.len()
    }

    /// Removes a connection from a channel; returns the member count after it.
    pub fn unsubscribe(&self, channel: &str, sid: &Sid) -> Option<usize> {
        let mut map = self.shard(channel).channels.lock().ok()?;
        let ch = map.get_mut(channel)?;
        let sub = ch.subscribers.remove(sid)?;
        if let Some(n) = ch.members.get_mut(&sub.member) {
            *n -= 1;
            if *n == 0 {
                ch.members.remove(&sub.member);
            }
        }
        let count = ch.members.len();
        if ch.subscribers.is_empty() {
            map.remove(channel);
        }
        Some(count)
    }

    /// Members of a channel now.
    pub fn count(&self, channel: &str) -> usize {
        self.shard(channel)
            .channels
            .lock()
            .ok()
            .and_then(|m| m.get(channel).map(|c| c.members.len()))
            .unwrap_or(0)
    }

    /// Takes every shard's lock once: returns true when all answered (a stuck shard never
    /// returns, which is what a watchdog built on this must detect).
    pub fn probe(&self) -> bool {
        self.shards.iter().all(|s| s.channels.lock().is_ok())
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

    /// Channels and members (distinct member keys per channel, summed) right now.
    pub fn stats(&self) -> HubStats {
        let mut stats = HubStats::default();
        for shard in self.shards.iter() {
            if let Ok(map) = shard.channels.lock() {
                stats.channels += map.len();
                stats.subscriptions += map.values().map(|c| c.members.len()).sum::<usize>();
            }
        }
        stats
    }

    /// Delivers an envelope to every subscriber of its channel; returns how many got it.
    pub fn publish(&self, envelope: &Envelope, attachments: Vec<Bytes>) -> usize {
        let packet = Packet::event("/", envelope.to_event_args(), attachments.len());
        let item = crate::socketio::with_attachments(&packet, attachments);
        let Ok(map) = self.shard(&envelope.channel).channels.lock() else {
            return 0;
        };
        let Some(ch) = map.get(&envelope.channel) else {
            return 0;
        };
        let mut delivered = 0;
        for sub in ch.subscribers.values() {
            // A full queue closes that one client as slow; the others are not held up.
            match sub.socket.send(item.clone()) {
                Ok(()) => delivered += 1,
                Err(e) => debug!(sid = %sub.socket.engine().id, error = %e, "delivery dropped"),
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn channel_names_are_checked() {
        let hub = Hub::new(HubConfig::default());
        assert_eq!(hub.validate_channel(Some(&json!("chat"))), Ok("chat"));
        assert_eq!(
            hub.validate_channel(Some(&json!(""))),
            Err(HubError::ChannelNotString)
        );
        assert_eq!(
            hub.validate_channel(Some(&json!(42))),
            Err(HubError::ChannelNotString)
        );
        assert_eq!(hub.validate_channel(None), Err(HubError::ChannelNotString));
        assert_eq!(
            hub.validate_channel(Some(&json!("a\u{7}b"))),
            Err(HubError::ChannelControlChars)
        );
        let long = "x".repeat(257);
        assert_eq!(
            hub.validate_channel(Some(&json!(long))),
            Err(HubError::ChannelTooLong(256))
        );
    }
}
