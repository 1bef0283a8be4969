//! The publication the cluster carries and every client receives: the envelope
//! `{type, channel, identity, timestamp, data}`. How it is encoded for a session is the
//! hub's business (`hub/envelope.rs`); here is what it says.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::Membership;

/// A message or command on its way to members.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `message` or `command`.
    pub kind: &'static str,
    /// `None` only for a direct message to one identity (and a connect or disconnect).
    pub channel: Option<String>,
    /// The publisher's identity; `None` for anonymous connections and the server.
    pub identity: Option<Arc<str>>,
    pub timestamp: SystemTime,
    pub data: Value,
}

impl Envelope {
    pub fn message(channel: &str, identity: Option<Arc<str>>, data: Value) -> Envelope {
        Envelope {
            kind: "message",
            channel: Some(channel.to_owned()),
            identity,
            timestamp: SystemTime::now(),
            data,
        }
    }

    /// A command: `data` is `{command, options}` (plus `count` for membership events).
    pub fn command(
        channel: &str,
        identity: Option<Arc<str>>,
        name: &str,
        options: Value,
    ) -> Envelope {
        Envelope {
            kind: "command",
            data: json!({"command": name, "options": options}),
            ..Envelope::message(channel, identity, Value::Null)
        }
    }

    /// `onSubscribe` / `onUnsubscribe`: who joined or left, and the member count after it.
    pub fn membership(
        channel: &str,
        identity: Option<Arc<str>>,
        change: Membership,
        options: Value,
        count: usize,
    ) -> Envelope {
        Envelope {
            kind: "command",
            data: json!({"command": change.command(), "options": options, "count": count}),
            ..Envelope::message(channel, identity, Value::Null)
        }
    }

    /// `onConnect` / `onDisconnect`: a command without a channel.
    pub fn presence(identity: Option<Arc<str>>, change: Membership) -> Envelope {
        Envelope {
            kind: "command",
            channel: None,
            identity,
            timestamp: SystemTime::now(),
            data: json!({"command": change.command(), "options": null}),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "channel": self.channel,
            "identity": self.identity.as_deref(),
            "timestamp": self.timestamp_text(),
            "data": self.data,
        })
    }

    /// The timestamp as clients read it (RFC 3339, milliseconds).
    pub fn timestamp_text(&self) -> String {
        let mut out = String::new();
        // RFC 3339 stops at year 9999; a later time (only from a hostile peer) says so.
        if write!(out, "{}", humantime::format_rfc3339_millis(self.timestamp)).is_err() {
            out = "9999-12-31T23:59:59.999Z".to_owned();
        }
        out
    }
}
