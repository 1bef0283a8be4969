//! The one table of configuration keys: section, name, value type, default as written in
//! the file, whether a reload applies it, and what it means.
//!
//! Parsing accepts only the keys listed here, the reload rules are this table's `apply`,
//! and docs/configuration.md is its rendering (`realtime config-reference`). The tests
//! below check the documented defaults and types against the setters and the sample
//! etc/realtime.conf, so none of them can drift from the others.

use super::Config;
use super::sections::{LOG_LEVELS, LOG_TARGETS, MONITOR_EVENTS};

/// When a key's new value takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// On reload (SIGHUP).
    Live,
    /// At the next start.
    Restart,
}

/// The form of a key's value, as the reference names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// A duration; zero allowed.
    Duration,
    /// A duration greater than zero.
    NonzeroDuration,
    /// A size in bytes, at least 1.
    Size,
    /// A whole number, zero allowed.
    Count,
    /// A whole number of at least 1.
    Positive,
    Port,
    /// Any text; empty means unset.
    Text,
    /// A file or directory; empty means unset.
    Path,
    /// One word, no whitespace.
    Word,
    /// A URL with one of these schemes.
    Url(&'static [&'static str]),
    /// A URL path such as `/socket.io/`.
    UrlPath,
    /// One of these words, any case.
    OneOf(&'static [&'static str]),
    /// A list of these words, any case.
    ListOf(&'static [&'static str]),
    /// A list of `host:port` listen addresses.
    Addresses,
    /// A list of Engine.IO transports (or their socket.io 0.6 names).
    Transports,
    /// A list of words.
    List,
}

impl Kind {
    /// The type column of the reference.
    pub fn describe(self) -> String {
        match self {
            Kind::Bool => "boolean".to_owned(),
            Kind::Duration => "duration".to_owned(),
            Kind::NonzeroDuration => "duration > 0".to_owned(),
            Kind::Size => "size ≥ 1 byte".to_owned(),
            Kind::Count => "whole number".to_owned(),
            Kind::Positive => "whole number ≥ 1".to_owned(),
            Kind::Port => "port".to_owned(),
            Kind::Text => "text".to_owned(),
            Kind::Path => "path".to_owned(),
            Kind::Word => "word".to_owned(),
            Kind::Url(schemes) => {
                let s: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
                format!("URL ({})", s.join(", "))
            }
            Kind::UrlPath => "URL path".to_owned(),
            Kind::OneOf(words) => format!("one of {}", words.join(", ")),
            Kind::ListOf(words) => format!("list of {}", words.join(", ")),
            Kind::Addresses => "list of host:port".to_owned(),
            Kind::Transports => "list of polling, websocket".to_owned(),
            Kind::List => "list".to_owned(),
        }
    }

    /// A value this kind takes, and one it refuses (none when every text is taken): the
    /// tests set both on every key, so a key's documented kind must be what its setter reads.
    pub fn samples(self) -> (String, Option<&'static str>) {
        let (good, bad) = match self {
            Kind::Bool => ("yes", Some("maybe")),
            Kind::Duration => ("0", Some("soon")),
            Kind::NonzeroDuration => ("1500ms", Some("0")),
            Kind::Size => ("64K", Some("0")),
            Kind::Count => ("0", Some("-1")),
            Kind::Positive => ("7", Some("0")),
            Kind::Port => ("8443", Some("0")),
            Kind::Text => ("any text", None),
            Kind::Path => ("/some/where", None),
            Kind::Word => ("word", Some("two words")),
            Kind::Url(schemes) => {
                let scheme = schemes.first().copied().unwrap_or("http");
                return (format!("{scheme}://host/"), Some("host"));
            }
            Kind::UrlPath => ("/rt/", Some("/a b/")),
            Kind::OneOf(words) => (words.last().copied().unwrap_or(""), Some("nope")),
            Kind::ListOf(words) => return (words.join(", "), Some("nope")),
            Kind::Addresses => ("127.0.0.1:1, [::1]:2", Some("nowhere")),
            Kind::Transports => ("websocket", Some("carrier-pigeon")),
            Kind::List => ("a, b", None),
        };
        (good.to_owned(), bad)
    }
}

/// One configuration key, as written in the file.
#[derive(Debug)]
pub struct Key {
    pub section: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    /// The built-in value as the file would spell it; empty: unset.
    pub default: &'static str,
    pub apply: Apply,
    /// One line: what the key does.
    pub about: &'static str,
    pub(crate) changed: fn(&Config, &Config) -> bool,
    /// Copies this key's value from a new configuration into the running one.
    pub(crate) take: fn(&mut Config, &Config),
}

impl Key {
    /// Whether the key is one of the rules of who may connect (`auth::Security` holds them).
    pub fn is_rule(&self) -> bool {
        matches!(self.section, "License" | "Api" | "Identity")
    }
}

macro_rules! key {
    ($section:literal $name:literal, $kind:expr, $default:literal, $apply:ident,
     $($field:ident).+, $about:literal) => {
        Key {
            section: $section,
            name: $name,
            kind: $kind,
            default: $default,
            apply: Apply::$apply,
            about: $about,
            changed: |old, new| old.$($field).+ != new.$($field).+,
            take: |running, new| running.$($field).+ = new.$($field).+.clone(),
        }
    };
}

use Kind::*;

/// Every key, in the order of etc/realtime.conf. The monitor becomes live when it can be
/// rebuilt in place.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    key!("Server" "debug", Bool, "false", Live, server.debug,
        "Log at debug level (as `--debug` does), whatever `[Log] level` says."),
    key!("Server" "bind", Addresses, "[::]:8001", Restart, server.bind,
        "Addresses to listen on; IPv6 in brackets, `[::]` is every interface, IPv4 and IPv6."),
    key!("Server" "websocket-port", Port, "", Restart, server.websocket_port,
        "Legacy (2012): when set, replaces the port of every `bind` address (so does `--port`)."),
    key!("Server" "path", UrlPath, "/socket.io/", Restart, server.path,
        "URL path of the Socket.IO endpoint (the 2012 clients used `/realtime/`)."),
    key!("Server" "ping-interval", NonzeroDuration, "25s", Restart, server.ping_interval,
        "Engine.IO heartbeat: how often the server pings a client."),
    key!("Server" "ping-timeout", NonzeroDuration, "20s", Restart, server.ping_timeout,
        "How long after a ping without answer the connection is given up."),
    key!("Server" "max-payload", Size, "1M", Restart, server.max_payload,
        "Largest accepted message or HTTP request body."),
    key!("Server" "max-connections", Positive, "100000", Restart, server.max_connections,
        "Connections accepted at once; more are refused."),
    key!("Server" "reconnect-timeout", Duration, "8s", Restart, server.reconnect_timeout,
        "How long an identity's subscriptions and missed messages outlive its last connection."),
    key!("Server" "allowed-types", Transports, "polling, websocket", Restart, server.allowed_types,
        "Transports clients may use; 2012 names map onto these, blank means all."),
    key!("Server" "user", Word, "", Restart, server.user,
        "When started as root: the user to run as once the ports are bound."),
    key!("Server" "www", Path, "", Restart, server.www,
        "Directory served at `/` and `/realtime.js` instead of the built-in demo and client."),
    key!("Server" "connect-timeout", NonzeroDuration, "45s", Restart, server.connect_timeout,
        "Time a client has to join the Socket.IO namespace after connecting."),
    key!("Server" "max-http-connections", Positive, "200000", Restart, server.max_http_connections,
        "HTTP connections served at once; more are closed as they are accepted."),
    key!("Server" "body-timeout", NonzeroDuration, "30s", Restart, server.body_timeout,
        "How long a request body (a polling POST, an `/api/` request) may take to arrive."),
    key!("Server" "shutdown-grace", Duration, "5s", Restart, server.shutdown_grace,
        "At shutdown, how long clients get to be told and connections to finish; 0: no wait."),
    key!("Server" "max-poll-packets", Positive, "16", Restart, server.max_poll_packets,
        "Packets one long-polling answer carries at most; the rest go in the next poll."),
    key!("Flash" "enabled", Bool, "true", Restart, flash.enabled,
        "Answer Flash socket policy requests."),
    key!("Flash" "port", Port, "843", Restart, flash.port,
        "Port of the Flash policy server (843 needs root or socket activation)."),
    key!("Flash" "policy-file", Path, "", Restart, flash.policy_file,
        "Policy XML to serve instead of the built-in one."),
    key!("Monitor" "url", Url(&["http", "https"]), "", Restart, monitor.url,
        "POST events as JSON to this URL; unset: no monitor."),
    key!("Monitor" "events", ListOf(&MONITOR_EVENTS), "subscribe, unsubscribe", Restart,
        monitor.events, "Events to post."),
    key!("Monitor" "secret", Text, "", Restart, monitor.secret,
        "Sign each POST: `X-Realtime-Signature: sha256=<HMAC of the body with this key>`."),
    key!("Monitor" "queue", Positive, "10000", Restart, monitor.queue,
        "Events waiting to be posted; beyond this, new events are dropped."),
    key!("Monitor" "timeout", NonzeroDuration, "5s", Restart, monitor.timeout,
        "Time allowed per webhook request."),
    key!("Monitor" "retries", Count, "3", Restart, monitor.retries,
        "Retries of a webhook request on connection errors and 5xx."),
    key!("Messaging" "message-cache-limit", Count, "100", Restart, messaging.message_cache_limit,
        "Messages kept per identity while it is disconnected; further ones are discarded."),
    key!("Messaging" "client-queue", Positive, "4096", Restart, messaging.client_queue,
        "Messages queued for one connection before it must show progress (docs/protocol.md)."),
    key!("Messaging" "max-channels", Positive, "100", Restart, messaging.max_channels,
        "Channels one connection may subscribe to."),
    key!("Messaging" "max-channel-name", Positive, "256", Restart, messaging.max_channel_name,
        "Longest channel name, in bytes."),
    key!("Messaging" "max-identity", Positive, "256", Restart, messaging.max_identity,
        "Longest identity, in bytes."),
    key!("Messaging" "history-size", Count, "0", Restart, messaging.history_size,
        "Messages kept per channel for the `history` event and API; 0: no history."),
    key!("Messaging" "history-ttl", NonzeroDuration, "1h", Restart, messaging.history_ttl,
        "Age past which a message leaves its channel's history."),
    key!("Messaging" "quiet-channels", List, "", Restart, messaging.quiet_channels,
        "Channels (names, or patterns with `*`) whose members are not told of joins and leaves."),
    key!("Messaging" "notices-max-members", Count, "0", Restart, messaging.notices_max_members,
        "Past this many members a channel's joins and leaves are not told; 0: no limit."),
    key!("License" "file", Path, "", Live, license.file,
        "License key file; unset: /etc/realtime/license.txt, else ./etc/license.txt, \
         if one exists."),
    key!("License" "secret", Text, "", Live, license.secret,
        "Secret of the license keys; unset: the original server's, so old keys work."),
    key!("License" "allowed-origins", List, "", Live, license.allowed_origins,
        "Origins always allowed: `https://app.example.com`, `app.example.com`, \
         `*.example.com` or `*`."),
    key!("Api" "keys", List, "", Live, api.keys,
        "Keys for `/api/*` (`Authorization: Bearer KEY`); empty: the origin check applies."),
    key!("Identity" "secret", Text, "", Live, identity.secret,
        "HS256 key: when set, an identity must come with a JWT signed with it."),
    key!("Identity" "require", Bool, "false", Live, identity.require,
        "Refuse connections that do not name an identity."),
    key!("Cluster" "redis", Url(&["redis", "rediss", "redis+sentinel", "rediss+sentinel",
            "redis+cluster", "rediss+cluster"]), "",
        Restart, cluster.redis,
        "Join the other nodes through this Redis; unset: single node. With Sentinel: \
         `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]` \
         (the login is the primary's; `?sentinel-password=` for the sentinels'; \
         `rediss+sentinel://` for TLS). A Redis Cluster (7 or later): \
         `redis+cluster://[[user]:password@]host[:port][,host[:port]...]`, its seed nodes \
         (`rediss+cluster://` for TLS)."),
    key!("Cluster" "prefix", Word, "realtime", Restart, cluster.prefix,
        "Prefix of every Redis key and channel; the same on every node of one cluster."),
    key!("Cluster" "node-id", Word, "", Restart, cluster.node_id,
        "This node's name in the cluster; unset: generated at start (host-pid-random)."),
    key!("Cluster" "heartbeat", NonzeroDuration, "5s", Restart, cluster.heartbeat,
        "How often this node tells Redis it is alive; the same on every node."),
    key!("Cluster" "node-timeout", NonzeroDuration, "15s", Restart, cluster.node_timeout,
        "A node silent this long is dead and its members are removed; must exceed `heartbeat`."),
    key!("Cluster" "answer-timeout", NonzeroDuration, "10s", Restart, cluster.answer_timeout,
        "How long a subscribe or unsubscribe ack waits for the cluster's member count."),
    key!("Cluster" "bus-shards", Positive, "1", Restart, cluster.bus_shards,
        "Redis Cluster shards broadcasts are spread over (1 to 64), each channel's on one; \
         the same on every node. Above 1, a session resumes only on the node that held \
         it and history is each node's own; needs a `redis+cluster://` URL."),
    key!("Log" "target", OneOf(&LOG_TARGETS), "auto", Restart, log.target,
        "Where logs go: auto is journald under systemd, else stderr."),
    key!("Log" "level", OneOf(&LOG_LEVELS), "info", Live, log.level,
        "Least severe level logged."),
];

/// Keys of the 2011 releases: still accepted, so those files start, but ignored with a
/// warning naming what replaced them.
pub const LEGACY: &[(&str, &str, &str)] = &[
    (
        "Server",
        "allowed-domain",
        "[License] allowed-origins or license keys",
    ),
    ("Server", "flash-server-port", "[Flash] port"),
];

/// The key `name` (lower-case) of `section` (canonical), if the table has it.
pub fn find(section: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.section == section && k.name == name)
}

/// What replaced a legacy key, if `name` is one.
pub(super) fn legacy(section: &str, name: &str) -> Option<&'static str> {
    LEGACY
        .iter()
        .find(|(s, n, _)| *s == section && *n == name)
        .map(|(_, _, instead)| *instead)
}

#[cfg(test)]
mod tests;
