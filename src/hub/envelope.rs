//! How the envelope every delivery is wrapped in (`{type, channel, identity, timestamp,
//! data}`, defined with the cluster that carries it) is encoded as the one `message` event,
//! once per broadcast; and the error envelope.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

pub use crate::cluster::Envelope;

use crate::engineio::{Frame, Outgoing};
use crate::socketio::Packet;
use crate::socketio::packet::string_writer;

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
    /// The `message` event carrying this envelope, encoded once for every recipient. A
    /// non-zero `offset` is appended as the last argument (connection state recovery) and
    /// tags the item for replay.
    pub fn encode(&self, offset: u64, attachments: Vec<Bytes>) -> Outgoing {
        let timestamp = self.timestamp_text();
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

/// The envelope for a refused request that had no ack to answer (docs/design.md#server-events).
pub fn error_envelope(channel: Option<&str>, error: &str) -> Value {
    json!({"type": "error", "channel": channel, "success": false, "error": error})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Membership;
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
            Membership::Subscribe,
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

    proptest::proptest! {
        /// The event frame and the webhook body (`to_json`) write the data as it came.
        #[test]
        fn the_frame_and_the_webhook_body_keep_the_data(d in crate::json_doc::doc()) {
            let e = Envelope::message("c", None, serde_json::from_str(&d.text()).unwrap());
            let item = e.encode(7, Vec::new());
            let Frame::Text(t) = &item.frames()[0] else {
                panic!("binary first frame")
            };
            let event: Value = serde_json::from_str(&t[2..]).unwrap();
            proptest::prop_assert!(d.is(&event[1]["data"]), "{t}");
            let body: Value = serde_json::from_str(&e.to_json().to_string()).unwrap();
            proptest::prop_assert!(d.is(&body["data"]), "{body}");
        }
    }
}
