//! The envelope every delivery is wrapped in: `{type, channel, identity, timestamp, data}`,
//! and its encoding as the one `message` event, done once per broadcast.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use crate::engineio::{Frame, Outgoing};
use crate::socketio::Packet;
use crate::socketio::packet::string_writer;

/// A message or command on its way to members.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `message` or `command`.
    pub kind: &'static str,
    /// `None` only for a direct message to one identity.
    pub channel: Option<String>,
    /// The publisher's identity; `None` for anonymous connections and the server.
    pub identity: Option<Arc<str>>,
    pub timestamp: SystemTime,
    pub data: Value,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    channel: Option<&'a str>,
    identity: Option<&'a str>,
    timestamp: &'a str,
    data: &'a Value,
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
        event: &str,
        options: Value,
        count: usize,
    ) -> Envelope {
        Envelope {
            kind: "command",
            data: json!({"command": event, "options": options, "count": count}),
            ..Envelope::message(channel, identity, Value::Null)
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "channel": self.channel,
            "identity": self.identity.as_deref(),
            "timestamp": self.timestamp(),
            "data": self.data,
        })
    }

    fn timestamp(&self) -> String {
        let mut out = String::new();
        // RFC 3339 stops at year 9999; a later time (only from a hostile peer) says so.
        if write!(out, "{}", humantime::format_rfc3339_millis(self.timestamp)).is_err() {
            out = "9999-12-31T23:59:59.999Z".to_owned();
        }
        out
    }

    /// The `message` event carrying this envelope, encoded once for every recipient. A
    /// non-zero `offset` is appended as the last argument (connection state recovery) and
    /// tags the item for replay.
    pub fn encode(&self, offset: u64, attachments: Vec<Bytes>) -> Outgoing {
        let timestamp = self.timestamp();
        let wire = Wire {
            kind: self.kind,
            channel: self.channel.as_deref(),
            identity: self.identity.as_deref(),
            timestamp: &timestamp,
            data: &self.data,
        };
        let frame = Packet::event_frame(attachments.len(), |out| {
            out.push_str("\"message\",");
            // Writing JSON into a String cannot fail.
            let _ = serde_json::to_writer(string_writer(out), &wire);
            if offset != 0 {
                let _ = write!(out, ",\"{offset}\"");
            }
        });
        let item = if attachments.is_empty() {
            Outgoing::one(frame)
        } else {
            let mut frames = Vec::with_capacity(attachments.len() + 1);
            frames.push(frame);
            frames.extend(attachments.into_iter().map(Frame::Binary));
            Outgoing::many(frames)
        };
        item.tagged(offset)
    }
}

/// The envelope for a refused request that had no ack to answer (SPEC §3.3).
pub fn error_envelope(channel: Option<&str>, error: &str) -> Value {
    json!({"type": "error", "channel": channel, "success": false, "error": error})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::Str;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(e: Envelope) -> Envelope {
        Envelope {
            timestamp: UNIX_EPOCH + Duration::from_millis(1_795_000_000_456),
            ..e
        }
    }

    #[test]
    fn has_exactly_the_documented_fields() {
        let e = at(Envelope::message(
            "chat",
            Some("alice".into()),
            json!({"msg": "hi"}),
        ));
        assert_eq!(
            e.to_json(),
            json!({"type": "message", "channel": "chat", "identity": "alice",
                   "timestamp": "2026-11-18T11:06:40.456Z", "data": {"msg": "hi"}})
        );
        let c = at(Envelope::membership(
            "c",
            None,
            "onSubscribe",
            Value::Null,
            2,
        ));
        assert_eq!(
            c.to_json()["data"],
            json!({"command": "onSubscribe", "options": null, "count": 2})
        );
    }

    #[test]
    fn a_time_past_year_9999_does_not_panic() {
        let e = Envelope {
            timestamp: UNIX_EPOCH + Duration::from_millis(253_402_300_800_000),
            ..Envelope::message("c", None, json!(1))
        };
        assert_eq!(e.to_json()["timestamp"], "9999-12-31T23:59:59.999Z");
        assert_eq!(e.encode(0, Vec::new()).frames().len(), 1);
    }

    #[test]
    fn encodes_the_message_event_once_with_its_offset() {
        let e = at(Envelope::message("chat", None, json!([1])));
        let item = e.encode(42, Vec::new());
        assert_eq!(item.tag, 42);
        let expected = r#"42["message",{"type":"message","channel":"chat","identity":null,"timestamp":"2026-11-18T11:06:40.456Z","data":[1]},"42"]"#;
        assert_eq!(item.frames(), &[Frame::Text(Str::from(expected))]);
        let plain = e.encode(0, vec![Bytes::from_static(b"x")]);
        assert_eq!(plain.tag, 0);
        assert_eq!(plain.frames().len(), 2);
        let Frame::Text(t) = &plain.frames()[0] else {
            panic!()
        };
        assert!(t.starts_with(r#"451-["message",{"#) && t.ends_with("}]"));
    }
}
