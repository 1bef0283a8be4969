//! The smaller sections: `[Monitor]`, `[Messaging]`, `[License]`, `[Api]`, `[Identity]`,
//! `[Cluster]` and `[Log]`, with their defaults and key setters.

use std::path::PathBuf;
use std::time::Duration;

use super::SetError;
use super::redis_cluster::ClusterUrl;
use super::sentinel::SentinelUrl;
use super::value::{
    boolean, count, expected, list, nonzero_duration, one_of, optional, positive, url, word,
};

/// Monitor event names accepted in `[Monitor] events`.
pub const MONITOR_EVENTS: [&str; 6] = [
    "subscribe",
    "unsubscribe",
    "connect",
    "disconnect",
    "message",
    "command",
];

/// Log targets accepted in `[Log] target`.
pub(super) const LOG_TARGETS: [&str; 4] = ["auto", "journald", "syslog", "stderr"];

/// Log levels accepted in `[Log] level`.
/// The most Redis Cluster shards broadcasts may be spread over: a node holds two
/// connections per shard.
pub(crate) const MAX_BUS_SHARDS: usize = 64;

pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// `[Monitor]`: webhooks (docs/design.md#monitor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Endpoint for the POSTs; `None` = no monitor.
    pub url: Option<String>,
    /// Which events are posted: lower-case names from [`MONITOR_EVENTS`], no duplicates.
    pub events: Vec<String>,
    /// HMAC key for `X-Realtime-Signature`.
    pub secret: Option<String>,
    pub queue: usize,
    pub timeout: Duration,
    pub retries: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            url: None,
            events: vec!["subscribe".to_owned(), "unsubscribe".to_owned()],
            secret: None,
            queue: 10_000,
            timeout: Duration::from_secs(5),
            retries: 3,
        }
    }
}

impl MonitorConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "url" => {
                self.url = optional(v)
                    .map(|u| url(&u, &["http", "https"]))
                    .transpose()?
            }
            "events" => {
                let mut events = Vec::new();
                for name in list(v) {
                    let name = one_of(&name, &MONITOR_EVENTS)?;
                    if !events.contains(&name) {
                        events.push(name);
                    }
                }
                self.events = events;
            }
            "secret" => self.secret = optional(v),
            "queue" => self.queue = positive(v)?,
            "timeout" => self.timeout = nonzero_duration(v)?,
            "retries" => self.retries = count(v)?,
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// `[Messaging]`: per-identity cache and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingConfig {
    /// Messages kept for an identity that dropped (docs/design.md#grace-window); 0 keeps none.
    pub message_cache_limit: usize,
    /// Outbound queue length after which a slow client is disconnected.
    pub client_queue: usize,
    /// Channels one connection may be subscribed to.
    pub max_channels: usize,
    /// Longest channel name, in bytes.
    pub max_channel_name: usize,
    /// Longest identity, in bytes.
    pub max_identity: usize,
    /// Messages kept per channel for `history` (docs/protocol.md#history); 0 keeps none.
    pub history_size: usize,
    /// Age past which a kept message is dropped from a channel's history.
    pub history_ttl: Duration,
    /// Channels (names or `*` patterns) whose members get no membership notices.
    pub quiet_channels: Vec<String>,
    /// Members past which a channel gets no membership notices; 0: no limit.
    pub notices_max_members: usize,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            message_cache_limit: 100,
            client_queue: 4096,
            max_channels: 100,
            max_channel_name: 256,
            max_identity: 256,
            history_size: 0,
            history_ttl: Duration::from_secs(3600),
            quiet_channels: Vec::new(),
            notices_max_members: 0,
        }
    }
}

impl MessagingConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "message-cache-limit" => self.message_cache_limit = count(v)?,
            "client-queue" => self.client_queue = positive(v)?,
            "max-channels" => self.max_channels = positive(v)?,
            "max-channel-name" => self.max_channel_name = positive(v)?,
            "max-identity" => self.max_identity = positive(v)?,
            "history-size" => self.history_size = count(v)?,
            "history-ttl" => self.history_ttl = nonzero_duration(v)?,
            "quiet-channels" => self.quiet_channels = list(v),
            "notices-max-members" => self.notices_max_members = count(v)?,
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// `[License]`: origin check (docs/design.md#origin-check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseConfig {
    /// License key file; `None` = the caller's default location.
    pub file: Option<PathBuf>,
    /// Key secret; `None` = the original's built-in secret.
    pub secret: Option<String>,
    /// Plain allowlist: `https://app.example.com`, `*.example.com`, `*`.
    pub allowed_origins: Vec<String>,
}

impl LicenseConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "file" => self.file = optional(v).map(PathBuf::from),
            "secret" => self.secret = optional(v),
            "allowed-origins" => self.allowed_origins = list(v),
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// `[Api]`: bearer keys for `/api/*`; empty = local requests only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiConfig {
    pub keys: Vec<String>,
}

impl ApiConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "keys" => self.keys = list(v),
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// `[Identity]`: JWT proof of identities (docs/design.md#identity-tokens).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityConfig {
    /// HS256 key; when set, an identity needs a valid token.
    pub secret: Option<String>,
    /// Refuse connections that name no identity.
    pub require: bool,
}

impl IdentityConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "secret" => self.secret = optional(v),
            "require" => self.require = boolean(v)?,
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// `[Cluster]`: Redis backplane (docs/design.md#cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://` URL, a [`SentinelUrl`] or a [`ClusterUrl`]; `None` = single
    /// node.
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel.
    pub prefix: String,
    /// This node's name; `None` = generated at start.
    pub node_id: Option<String>,
    /// How often this node tells Redis it is alive.
    pub heartbeat: Duration,
    /// A node silent this long is dead: the others remove its members.
    pub node_timeout: Duration,
    /// How long a subscribe or unsubscribe ack waits for the cluster's member count
    /// before answering with this node's.
    pub answer_timeout: Duration,
    /// Redis Cluster shards the broadcasts are spread over (1: all in the one slot of
    /// every other key, with the message log).
    pub bus_shards: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            prefix: "realtime".to_owned(),
            node_id: None,
            heartbeat: Duration::from_secs(5),
            node_timeout: Duration::from_secs(15),
            answer_timeout: Duration::from_secs(10),
            bus_shards: 1,
        }
    }
}

impl ClusterConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "redis" => {
                self.redis = optional(v)
                    .map(|u| {
                        if SentinelUrl::is_sentinel(&u) {
                            SentinelUrl::parse(&u).map(|_| u)
                        } else if ClusterUrl::is_cluster(&u) {
                            ClusterUrl::parse(&u).map(|_| u)
                        } else {
                            url(&u, &["redis", "rediss"])
                        }
                    })
                    .transpose()?
            }
            "prefix" => self.prefix = word(v, "a key prefix without spaces")?,
            "node-id" => {
                self.node_id = optional(v)
                    .map(|n| word(&n, "a node id without spaces"))
                    .transpose()?
            }
            "heartbeat" => self.heartbeat = nonzero_duration(v)?,
            "node-timeout" => self.node_timeout = nonzero_duration(v)?,
            "answer-timeout" => self.answer_timeout = nonzero_duration(v)?,
            "bus-shards" => {
                self.bus_shards = match positive(v)? {
                    n if n <= MAX_BUS_SHARDS => n,
                    _ => return Err(expected("a shard count from 1 to 64", v).into()),
                }
            }
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogTarget {
    /// journald when stderr is the journal (`JOURNAL_STREAM`), else stderr.
    #[default]
    Auto,
    Journald,
    Syslog,
    Stderr,
}

/// `[Log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub target: LogTarget,
    /// One of [`LOG_LEVELS`], lower-case.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            target: LogTarget::Auto,
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    pub(super) fn set(&mut self, key: &str, v: &str) -> Result<(), SetError> {
        match key {
            "target" => {
                self.target = match one_of(v, &LOG_TARGETS)?.as_str() {
                    "journald" => LogTarget::Journald,
                    "syslog" => LogTarget::Syslog,
                    "stderr" => LogTarget::Stderr,
                    _ => LogTarget::Auto,
                }
            }
            "level" => self.level = one_of(v, &LOG_LEVELS)?,
            _ => return Err(SetError::UnknownKey),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_events_are_checked_and_deduplicated() {
        let mut m = MonitorConfig::default();
        assert!(m.set("events", "Connect, message connect").is_ok());
        assert_eq!(m.events, ["connect", "message"]);
        assert!(m.set("events", "").is_ok());
        assert!(m.events.is_empty());
        assert!(
            matches!(m.set("events", "subscribe, join"), Err(SetError::Invalid(e)) if e.to_string().contains("\"join\""))
        );
    }

    #[test]
    fn log_target_and_level() {
        let mut l = LogConfig::default();
        assert!(l.set("target", "Syslog").is_ok() && l.set("level", "DEBUG").is_ok());
        assert_eq!((l.target, l.level.as_str()), (LogTarget::Syslog, "debug"));
        assert!(l.set("target", "file").is_err() && l.set("level", "verbose").is_err());
    }

    #[test]
    fn cluster_values() {
        let mut c = ClusterConfig::default();
        assert!(c.set("redis", "rediss://h:6380/1").is_ok());
        assert!(c.set("redis", "http://h").is_err());
        assert!(c.set("redis", "redis+cluster://n1:7000,n2:7001").is_ok());
        assert!(c.set("redis", "redis+cluster://n1:7000/2").is_err());
        assert!(
            c.set("redis", "redis+sentinel://s1,s2:26380/mymaster")
                .is_ok()
        );
        assert!(c.set("redis", "redis+sentinel://s1,s2:26380").is_err());
        assert!(c.set("prefix", "").is_err());
        assert!(c.set("node-id", "").is_ok() && c.node_id.is_none());
        assert!(c.set("heartbeat", "2s").is_ok() && c.set("node-timeout", "7s").is_ok());
        assert_eq!(c.heartbeat, Duration::from_secs(2));
        assert!(c.set("node-timeout", "0").is_err());
    }
}
