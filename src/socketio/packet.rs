//! Socket.IO v5 packets: a pure codec (no I/O, no tokio).
//!
//! Wire form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`; binary attachments
//! travel as separate Engine.IO binary messages and are referenced from the JSON by
//! `{"_placeholder":true,"num":N}`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::engineio::{Frame, Str};

/// More attachments than this on one packet is treated as hostile.
pub const MAX_ATTACHMENTS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl PacketType {
    fn from_digit(c: u8) -> Option<PacketType> {
        Some(match c {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    fn digit(self) -> char {
        match self {
            PacketType::Connect => '0',
            PacketType::Disconnect => '1',
            PacketType::Event => '2',
            PacketType::Ack => '3',
            PacketType::ConnectError => '4',
            PacketType::BinaryEvent => '5',
            PacketType::BinaryAck => '6',
        }
    }

    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// One Socket.IO packet, without its attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    /// Always starts with `/`; `/` is the main namespace.
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Value>,
    /// How many binary attachments follow (binary kinds only).
    pub attachments: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("illegal attachments count")]
    BadAttachments,
    #[error("invalid ack id")]
    BadAckId,
    #[error("invalid JSON payload: {0}")]
    BadJson(String),
    #[error("invalid payload for {0:?}")]
    BadPayload(PacketType),
    /// A placeholder out of range or repeated, an attachment never referenced, or a
    /// placeholder in a packet that carries no binary.
    #[error("illegal attachments: {0}")]
    BadPlaceholders(&'static str),
}

impl Packet {
    pub fn new(kind: PacketType, nsp: &str, data: Option<Value>) -> Packet {
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id: None,
            data,
            attachments: 0,
        }
    }

    /// An EVENT (or BINARY_EVENT when there are attachments) with `args` as its array.
    pub fn event(nsp: &str, args: Value, attachments: usize) -> Packet {
        let kind = if attachments > 0 {
            PacketType::BinaryEvent
        } else {
            PacketType::Event
        };
        Packet {
            attachments,
            ..Packet::new(kind, nsp, Some(args))
        }
    }

    /// An ACK (or BINARY_ACK) for request `id`.
    pub fn ack(nsp: &str, id: u64, args: Value, attachments: usize) -> Packet {
        let kind = if attachments > 0 {
            PacketType::BinaryAck
        } else {
            PacketType::Ack
        };
        Packet {
            id: Some(id),
            attachments,
            ..Packet::new(kind, nsp, Some(args))
        }
    }

    /// Decodes the text part of a packet and checks its payload's shape.
    pub fn decode(s: &str) -> Result<Packet, DecodeError> {
        let b = s.as_bytes();
        let first = *b.first().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_digit(first)
            .ok_or_else(|| DecodeError::UnknownType(s.chars().next().unwrap_or('?')))?;
        let mut i = 1;

        let mut attachments = 0;
        if kind.is_binary() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start || i >= b.len() || b[i] != b'-' || i - start > 4 {
                return Err(DecodeError::BadAttachments);
            }
            attachments = s[start..i]
                .parse::<usize>()
                .map_err(|_| DecodeError::BadAttachments)?;
            if attachments > MAX_ATTACHMENTS {
                return Err(DecodeError::BadAttachments);
            }
            i += 1;
        }

        let nsp = if b.get(i) == Some(&b'/') {
            let end = s[i..].find(',').map_or(b.len(), |p| i + p);
            let nsp = s[i..end].to_owned();
            i = (end + 1).min(b.len());
            nsp
        } else {
            "/".to_owned()
        };

        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let id = if i > start {
            Some(
                s[start..i]
                    .parse::<u64>()
                    .map_err(|_| DecodeError::BadAckId)?,
            )
        } else {
            None
        };

        let data = if i < b.len() {
            Some(
                serde_json::from_str::<Value>(&s[i..])
                    .map_err(|e| DecodeError::BadJson(e.to_string()))?,
            )
        } else {
            None
        };

        let packet = Packet {
            kind,
            nsp,
            id,
            data,
            attachments,
        };
        if !packet.payload_is_valid() {
            return Err(DecodeError::BadPayload(kind));
        }
        check_placeholders(packet.data.as_ref(), packet.attachments)
            .map_err(DecodeError::BadPlaceholders)?;
        Ok(packet)
    }

    /// The shapes socket.io accepts for each packet type.
    fn payload_is_valid(&self) -> bool {
        match (self.kind, &self.data) {
            (PacketType::Connect, None | Some(Value::Object(_))) => true,
            (PacketType::Disconnect, None) => true,
            (PacketType::ConnectError, Some(Value::String(_) | Value::Object(_))) => true,
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(a))) => {
                matches!(a.first(), Some(Value::String(_) | Value::Number(_)))
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(_))) => true,
            _ => false,
        }
    }

    /// The text form, without the Engine.IO message prefix.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    /// The Engine.IO message frame carrying this packet (`4` + text), in one allocation.
    pub fn to_frame(&self) -> Frame {
        let mut out = String::from("4");
        self.encode_into(&mut out);
        Frame::Text(Str::from(out))
    }

    /// An EVENT frame on the main namespace whose array body (the text between `[` and
    /// `]`) the caller writes itself: how a broadcast is encoded once, without building a
    /// JSON tree first.
    pub fn event_frame(attachments: usize, write_body: impl FnOnce(&mut String)) -> Frame {
        let mut out = String::with_capacity(256);
        if attachments > 0 {
            let _ = write!(out, "45{attachments}-[");
        } else {
            out.push_str("42[");
        }
        write_body(&mut out);
        out.push(']');
        Frame::Text(Str::from(out))
    }

    fn encode_into(&self, out: &mut String) {
        out.push(self.kind.digit());
        if self.kind.is_binary() {
            let _ = write!(out, "{}-", self.attachments);
        }
        if self.nsp != "/" {
            out.push_str(&self.nsp);
            out.push(',');
        }
        if let Some(id) = self.id {
            let _ = write!(out, "{id}");
        }
        if let Some(data) = &self.data {
            // Writing JSON into a String cannot fail.
            let _ = serde_json::to_writer(string_writer(out), data);
        }
    }
}

/// Checks that the placeholders of a packet with `attachments` binary attachments
/// reference each attachment exactly once (none at all without attachments): a client
/// parser refuses anything else, so relaying it would break every recipient.
pub fn check_placeholders(data: Option<&Value>, attachments: usize) -> Result<(), &'static str> {
    let mut seen = vec![false; attachments];
    if let Some(data) = data {
        mark_placeholders(data, &mut seen)?;
    }
    if seen.iter().all(|s| *s) {
        Ok(())
    } else {
        Err("an attachment is never referenced")
    }
}

fn mark_placeholders(v: &Value, seen: &mut [bool]) -> Result<(), &'static str> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| mark_placeholders(i, seen)),
        // What socket.io-parser takes for a placeholder: `_placeholder` set to true.
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            if seen.is_empty() {
                return Err("placeholder in a packet without attachments");
            }
            let slot = map
                .get("num")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| seen.get_mut(n))
                .ok_or("placeholder number missing or out of range")?;
            if std::mem::replace(slot, true) {
                return Err("attachment referenced twice");
            }
            Ok(())
        }
        Value::Object(map) => map.values().try_for_each(|i| mark_placeholders(i, seen)),
        _ => Ok(()),
    }
}

/// Lets serde_json write straight into a String (it only ever writes valid UTF-8).
pub fn string_writer(out: &mut String) -> impl std::io::Write + '_ {
    struct W<'a>(&'a mut String);
    impl std::io::Write for W<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let s = std::str::from_utf8(buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.0.push_str(s);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    W(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn round_trip(p: Packet) {
        assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn encodes_like_the_reference() {
        assert_eq!(
            Packet::new(PacketType::Connect, "/", Some(json!({"sid": "a"}))).encode(),
            r#"0{"sid":"a"}"#
        );
        assert_eq!(
            Packet::new(
                PacketType::ConnectError,
                "/random",
                Some(json!({"message": "Invalid namespace"}))
            )
            .encode(),
            r#"4/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            Packet::ack("/", 456, json!([1, "2", {"3": [false]}]), 0).encode(),
            r#"3456[1,"2",{"3":[false]}]"#
        );
        assert_eq!(
            Packet::ack("/", 789, json!([{"_placeholder": true, "num": 0}]), 1).encode(),
            r#"61-789[{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            Packet::event("/custom", json!(["auth", {}]), 0).to_frame(),
            Frame::Text(Str::from(r#"42/custom,["auth",{}]"#))
        );
    }

    #[test]
    fn decodes_every_form() {
        let p = Packet::decode("0").unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketType::Connect, "/", None)
        );
        let p = Packet::decode("0/custom,").unwrap();
        assert_eq!(p.nsp, "/custom");
        let p = Packet::decode("0/custom").unwrap();
        assert_eq!(p.nsp, "/custom");
        let p = Packet::decode(r#"0/admin,{"token":"1"}"#).unwrap();
        assert_eq!(p.data, Some(json!({"token": "1"})));
        let p = Packet::decode(
            r#"52-["message",{"_placeholder":true,"num":0},{"a":[{"_placeholder":true,"num":1}]}]"#,
        )
        .unwrap();
        assert_eq!((p.kind, p.attachments), (PacketType::BinaryEvent, 2));
        let p = Packet::decode(r#"2/nsp,12["ev"]"#).unwrap();
        assert_eq!((p.nsp.as_str(), p.id), ("/nsp", Some(12)));
        assert_eq!(Packet::decode("1").unwrap().kind, PacketType::Disconnect);
    }

    #[test]
    fn event_frame_matches_the_codec() {
        let raw = Packet::event_frame(0, |o| o.push_str(r#""a",{"b":1}"#));
        assert_eq!(
            raw,
            Packet::event("/", json!(["a", {"b": 1}]), 0).to_frame()
        );
        let raw = Packet::event_frame(2, |o| o.push_str(r#""a""#));
        assert_eq!(raw, Packet::event("/", json!(["a"]), 2).to_frame());
    }

    #[test]
    fn round_trips() {
        round_trip(Packet::event("/", json!(["a", 1, null]), 0));
        round_trip(Packet::event(
            "/x",
            json!([
                "a",
                (0..3)
                    .map(|n| json!({"_placeholder": true, "num": n}))
                    .collect::<Vec<_>>()
            ]),
            3,
        ));
        round_trip(Packet::ack("/", 0, json!([]), 0));
        round_trip(Packet::new(PacketType::Disconnect, "/chat", None));
        round_trip(Packet {
            id: Some(u64::MAX),
            ..Packet::event("/", json!(["x"]), 0)
        });
    }

    #[test]
    fn rejects_malformed() {
        use DecodeError::*;
        assert_eq!(Packet::decode(""), Err(Empty));
        assert_eq!(Packet::decode("7"), Err(UnknownType('7')));
        assert_eq!(Packet::decode("abc"), Err(UnknownType('a')));
        assert!(matches!(Packet::decode("2abc[1]"), Err(BadJson(_))));
        assert_eq!(Packet::decode("2{}"), Err(BadPayload(PacketType::Event)));
        assert_eq!(Packet::decode("2[]"), Err(BadPayload(PacketType::Event)));
        assert_eq!(Packet::decode("2[{}]"), Err(BadPayload(PacketType::Event)));
        assert_eq!(Packet::decode("3{}"), Err(BadPayload(PacketType::Ack)));
        assert_eq!(Packet::decode("0[]"), Err(BadPayload(PacketType::Connect)));
        assert_eq!(
            Packet::decode("1{}"),
            Err(BadPayload(PacketType::Disconnect))
        );
        assert_eq!(Packet::decode(r#"5["a"]"#), Err(BadAttachments));
        assert_eq!(Packet::decode(r#"5x-["a"]"#), Err(BadAttachments));
        assert_eq!(Packet::decode(r#"5999-["a"]"#), Err(BadAttachments));
        assert_eq!(Packet::decode(r#"599999999999-["a"]"#), Err(BadAttachments));
        assert_eq!(
            Packet::decode("299999999999999999999999[\"a\"]"),
            Err(BadAckId)
        );
        assert!(matches!(Packet::decode("2[\"a\""), Err(BadJson(_))));
    }

    #[test]
    fn rejects_placeholders_that_do_not_match_the_attachments() {
        let bad = |s: &str| matches!(Packet::decode(s), Err(DecodeError::BadPlaceholders(_)));
        let ph = |n: &str| format!(r#"{{"_placeholder":true,"num":{n}}}"#);
        // Out of range, not an integer, missing.
        assert!(bad(&format!(r#"51-["publish","room",{}]"#, ph("5"))));
        assert!(bad(&format!(r#"51-["publish","room",{}]"#, ph("-1"))));
        assert!(bad(&format!(r#"51-["publish","room",{}]"#, ph("0.5"))));
        assert!(bad(&format!(r#"51-["publish","room",{}]"#, ph("\"0\""))));
        assert!(bad(r#"51-["publish","room",{"_placeholder":true}]"#));
        // Referenced twice, or never.
        assert!(bad(&format!(r#"52-["p",{},{}]"#, ph("0"), ph("0"))));
        assert!(bad(&format!(r#"52-["p",{}]"#, ph("1"))));
        assert!(bad(r#"51-["p","no placeholder"]"#));
        // Nested, and in packets that carry no binary.
        assert!(bad(&format!(
            r#"51-["p",{{"x":[{}]}},{}]"#,
            ph("0"),
            ph("0")
        )));
        assert!(bad(&format!(r#"2["p",{}]"#, ph("0"))));
        assert!(bad(&format!(r#"31[{{"deep":{}}}]"#, ph("0"))));
        // Only `_placeholder: true` makes a placeholder.
        assert!(Packet::decode(r#"2["p",{"_placeholder":false,"num":9}]"#).is_ok());
        assert!(Packet::decode(&format!(r#"61-3[{}]"#, ph("0"))).is_ok());
    }

    proptest! {
        #[test]
        fn any_string_decodes_without_panic(s in "\\PC{0,64}") {
            let _ = Packet::decode(&s);
        }

        #[test]
        fn structured_garbage_decodes_without_panic(
            t in "[0-7]", a in "[0-9-]{0,3}", n in "(/[a-z,]{0,4})?", id in "[0-9]{0,3}", j in "[\\[\\]{}\",:a-z0-9]{0,12}"
        ) {
            let _ = Packet::decode(&format!("{t}{a}{n}{id}{j}"));
        }

        #[test]
        fn events_round_trip(name in "[a-z]{1,8}", id in proptest::option::of(any::<u64>()), n in 0usize..4, nsp in "/[a-z]{0,6}") {
            let refs: Vec<Value> = (0..n).map(|i| json!({"_placeholder": true, "num": i})).collect();
            let p = Packet { id, ..Packet::event(&nsp, json!([name, 1, "x", refs]), n) };
            prop_assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }
    }
}
