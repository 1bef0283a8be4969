//! The envelope every delivery is wrapped in: `{type, channel, identity, timestamp, data}`.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

/// A message or command on its way to a channel's members.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `message` or `command`.
    pub kind: &'static str,
    pub channel: String,
    /// The publisher's identity; `None` for anonymous connections and the server.
    pub identity: Option<Arc<str>>,
    pub timestamp: SystemTime,
    pub data: Value,
}

impl Envelope {
    pub fn message(channel: &str, identity: Option<Arc<str>>, data: Value) -> Envelope {
        Envelope {
            kind: "message",
            channel: channel.to_owned(),
            identity,
            timestamp: SystemTime::now(),
            data,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::with_capacity(5);
        m.insert("type".into(), Value::from(self.kind));
        m.insert("channel".into(), Value::from(self.channel.as_str()));
        m.insert(
            "identity".into(),
            self.identity.as_deref().map_or(Value::Null, Value::from),
        );
        m.insert(
            "timestamp".into(),
            Value::from(humantime::format_rfc3339_millis(self.timestamp).to_string()),
        );
        m.insert("data".into(), self.data.clone());
        Value::Object(m)
    }

    /// The arguments of the `message` event that carries this envelope.
    pub fn to_event_args(&self) -> Value {
        json!(["message", self.to_json()])
    }
}

/// The envelope for a refused request that had no ack to answer (SPEC §3.3).
pub fn error_envelope(channel: Option<&str>, error: &str) -> Value {
    json!({"type": "error", "channel": channel, "success": false, "error": error})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn has_exactly_the_documented_fields() {
        let e = Envelope {
            timestamp: UNIX_EPOCH + Duration::from_millis(1_795_000_000_456),
            ..Envelope::message("chat", Some("alice".into()), json!({"msg": "hi"}))
        };
        assert_eq!(
            e.to_json(),
            json!({"type": "message", "channel": "chat", "identity": "alice",
                   "timestamp": "2026-11-18T11:06:40.456Z", "data": {"msg": "hi"}})
        );
        assert_eq!(
            Envelope::message("c", None, Value::Null).to_json()["identity"],
            Value::Null
        );
    }
}
