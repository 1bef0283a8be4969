//! The slice of Engine.IO v4 / Socket.IO v5 the load generator speaks, as a pure codec:
//! classify a text frame from the server, build the frames it sends, and find the
//! load generator's own marker in a delivered `message` envelope without parsing it.
//!
//! Only `/` is used, so no packet carries a namespace. Only docs/design.md#client-events is relied
//! on (`subscribe`, `publish`, the `message` event), so any Socket.IO server implementing
//! those two events can be driven.

use std::fmt::Write as _;
use std::sync::LazyLock;

use memchr::memmem;

/// A text frame from the server, classified. Payloads are the frame's own bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// Engine.IO OPEN: the handshake JSON.
    Open(&'a [u8]),
    /// Engine.IO PING: must be answered with PONG (`3`).
    Ping,
    /// Engine.IO CLOSE.
    Close,
    /// Engine.IO NOOP (polling only; harmless).
    Noop,
    /// Socket.IO CONNECT reply on `/` (`40{"sid":...}`, maybe with `pid`).
    Connected,
    /// Socket.IO CONNECT_ERROR: the reason JSON.
    ConnectError(&'a [u8]),
    /// Socket.IO ACK: its id and the JSON array of its arguments.
    Ack { id: u64, args: &'a [u8] },
    /// Socket.IO EVENT: the JSON array `[name, ...args]`.
    Event(&'a [u8]),
    /// Anything else (another namespace, a binary event, a DISCONNECT).
    Other(&'a [u8]),
}

/// Classifies one text frame. Cheap: nothing is JSON-parsed here.
pub(crate) fn classify(frame: &[u8]) -> Incoming<'_> {
    match frame.first() {
        Some(b'0') => Incoming::Open(&frame[1..]),
        Some(b'1') => Incoming::Close,
        Some(b'2') => Incoming::Ping,
        Some(b'6') => Incoming::Noop,
        Some(b'4') => classify_sio(&frame[1..]),
        _ => Incoming::Other(frame),
    }
}

fn classify_sio(p: &[u8]) -> Incoming<'_> {
    match p.first() {
        // `/` namespace replies have no namespace part, so the JSON (if any) follows at once.
        Some(b'0') if p.get(1).is_none_or(|c| *c == b'{') => Incoming::Connected,
        Some(b'4') if matches!(p.get(1), Some(b'{' | b'"')) => Incoming::ConnectError(&p[1..]),
        Some(b'2') if p.get(1) == Some(&b'[') => Incoming::Event(&p[1..]),
        Some(b'3') => match number(&p[1..]) {
            Some((id, used)) if p.get(1 + used) == Some(&b'[') => Incoming::Ack {
                id,
                args: &p[1 + used..],
            },
            _ => Incoming::Other(p),
        },
        _ => Incoming::Other(p),
    }
}

/// The decimal number at the start of `b` and how many digits it took.
fn number(b: &[u8]) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    let mut used = 0;
    for &c in b.iter().take(20) {
        if !c.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        used += 1;
    }
    (used > 0).then_some((n, used))
}

/// The PONG answering a server PING.
pub(crate) const PONG: &str = "3";
/// Socket.IO CONNECT to `/` with no auth payload: an anonymous connection.
pub(crate) const CONNECT: &str = "40";

/// `42<ack>["subscribe","<channel>"]`.
pub(crate) fn subscribe(channel: &str, ack: u64) -> String {
    let mut s = String::with_capacity(channel.len() + 24);
    let _ = write!(s, "42{ack}[\"subscribe\",");
    push_json_str(&mut s, channel);
    s.push(']');
    s
}

/// `42["publish","<channel>",{"lg":[c,seq,t],"pad":"..."}]` with the data object padded
/// to about `size` bytes. `c` is the channel index, `seq` the message's number in its
/// channel, `t` microseconds on the load generator's clock when it was sent.
pub(crate) fn publish(channel: &str, c: u32, seq: u32, t: u64, size: usize) -> String {
    let mut data = String::with_capacity(size + 16);
    let _ = write!(data, "{{\"lg\":[{c},{seq},{t}],\"pad\":\"");
    // `"}` closes the object: pad so that the whole data object is `size` bytes.
    let pad = size.saturating_sub(data.len() + 2);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    let mut s = String::with_capacity(data.len() + channel.len() + 20);
    s.push_str("42[\"publish\",");
    push_json_str(&mut s, channel);
    s.push(',');
    s.push_str(&data);
    s.push(']');
    s
}

/// Appends `v` as a JSON string (channel names are ours, but quote them properly anyway).
fn push_json_str(out: &mut String, v: &str) {
    match serde_json::to_string(v) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

/// The marker a publish carries, found again in a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub channel: u32,
    pub seq: u32,
    /// Microseconds on the load generator's clock at publish.
    pub sent_us: u64,
}

/// The marker's key; nothing else a server sends contains it.
static MARKER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"lg\":["));

/// Finds the marker in the JSON array of an EVENT: `["message", {envelope}, ...]`.
///
/// The envelope's keys come in whatever order the server writes them (Node keeps
/// insertion order, serde_json sorts), so instead of parsing the whole envelope once per
/// delivery, which would cost the load generator more than the server spends on it, this
/// looks for the `"lg":[` marker only the load generator puts in `data`.
pub(crate) fn delivery(event: &[u8]) -> Option<Mark> {
    let rest = event.strip_prefix(b"[\"message\",")?;
    let at = MARKER.find(rest)? + 6;
    let (channel, a) = number(&rest[at..])?;
    let at = at + a;
    let (seq, b) = number(rest[at..].strip_prefix(b",")?)?;
    let at = at + 1 + b;
    let (sent_us, _) = number(rest[at..].strip_prefix(b",")?)?;
    Some(Mark {
        channel: u32::try_from(channel).ok()?,
        seq: u32::try_from(seq).ok()?,
        sent_us,
    })
}

/// Whether an ACK's arguments say `{ok: true}` (the form of docs/design.md#client-events).
pub(crate) fn ack_ok(args: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<serde_json::Value>(args),
        Ok(serde_json::Value::Array(a)) if a.first().and_then(|v| v.get("ok")) == Some(&serde_json::Value::Bool(true))
    )
}

/// The session id of an OPEN handshake: its presence shows an Engine.IO v4 server answered.
pub(crate) fn open_sid(open: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(open).ok()?;
    v.get("sid")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn classifies_engine_io_packets() {
        assert_eq!(
            classify(br#"0{"sid":"abc","pingInterval":25000}"#),
            Incoming::Open(br#"{"sid":"abc","pingInterval":25000}"#)
        );
        assert_eq!(classify(b"2"), Incoming::Ping);
        assert_eq!(classify(b"1"), Incoming::Close);
        assert_eq!(classify(b"6"), Incoming::Noop);
        assert_eq!(classify(b""), Incoming::Other(b""));
        assert_eq!(classify(b"x"), Incoming::Other(b"x"));
    }

    #[test]
    fn classifies_socket_io_packets() {
        assert_eq!(classify(br#"40{"sid":"s"}"#), Incoming::Connected);
        assert_eq!(classify(br#"40{"sid":"s","pid":"p"}"#), Incoming::Connected);
        assert_eq!(classify(b"40"), Incoming::Connected);
        assert_eq!(
            classify(br#"44{"message":"no"}"#),
            Incoming::ConnectError(br#"{"message":"no"}"#)
        );
        assert_eq!(
            classify(br#"4312[{"ok":true}]"#),
            Incoming::Ack {
                id: 12,
                args: br#"[{"ok":true}]"#
            }
        );
        assert_eq!(
            classify(br#"42["message",{}]"#),
            Incoming::Event(br#"["message",{}]"#)
        );
        // Another namespace, a binary event, an ACK with no id: not ours.
        assert!(matches!(
            classify(br#"40/admin,{"sid":"s"}"#),
            Incoming::Other(_)
        ));
        assert!(matches!(
            classify(br#"451-["message",{}]"#),
            Incoming::Other(_)
        ));
        assert!(matches!(classify(b"43[]"), Incoming::Other(_)));
    }

    #[test]
    fn subscribe_frames_carry_the_ack_id() {
        assert_eq!(subscribe("chat", 7), r#"427["subscribe","chat"]"#);
        assert_eq!(subscribe("a\"b", 1), r#"421["subscribe","a\"b"]"#);
    }

    #[test]
    fn publish_frames_are_valid_json_of_the_asked_size() {
        let f = publish("fanout", 3, 41, 123_456, 100);
        let v: Value = serde_json::from_str(f.strip_prefix("42").unwrap()).unwrap();
        assert_eq!(v[0], "publish");
        assert_eq!(v[1], "fanout");
        assert_eq!(v[2]["lg"], json!([3, 41, 123_456]));
        assert_eq!(serde_json::to_string(&v[2]).unwrap().len(), 100);
        // Too small a size still gives a valid frame, just unpadded.
        let small = publish("c", 0, 0, 0, 1);
        assert!(serde_json::from_str::<Value>(small.strip_prefix("42").unwrap()).is_ok());
    }

    /// The marker is found whatever order the server writes the envelope's keys in, and
    /// whatever follows the envelope (a recovery offset, docs/design.md#connection-recovery).
    #[test]
    fn finds_the_marker_in_deliveries_from_either_server() {
        let data = json!({"lg": [2, 9, 77], "pad": "xx"});
        // serde_json without preserve_order sorts keys: channel, data, identity, ...
        let sorted = json!(["message", {"type": "message", "channel": "c", "identity": null,
            "timestamp": "2026-01-01T00:00:00.000Z", "data": data}]);
        let node_order = format!(
            r#"["message",{{"type":"message","channel":"c","identity":null,"timestamp":"2026-01-01T00:00:00.000Z","data":{data}}}]"#
        );
        let with_offset =
            format!(r#"["message",{{"type":"message","channel":"c","data":{data}}},"0-17"]"#);
        let want = Some(Mark {
            channel: 2,
            seq: 9,
            sent_us: 77,
        });
        assert_eq!(delivery(sorted.to_string().as_bytes()), want);
        assert_eq!(delivery(node_order.as_bytes()), want);
        assert_eq!(delivery(with_offset.as_bytes()), want);
        // Not a delivery of ours: a command envelope, another event, a broken marker.
        let command = json!(["message", {"type": "command", "channel": "c",
            "data": {"command": "onSubscribe", "options": null, "count": 2}}]);
        assert_eq!(delivery(command.to_string().as_bytes()), None);
        assert_eq!(delivery(br#"["other",{"data":{"lg":[1,2,3]}}]"#), None);
        assert_eq!(delivery(br#"["message",{"data":{"lg":[1,"x",3]}}]"#), None);
        assert_eq!(delivery(br#"["message",{"data":{"lg":[1,2"#), None);
        assert_eq!(
            delivery(br#"["message",{"data":{"lg":[1,99999999999,3]}}]"#),
            None
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"123]"), Some((123, 3)));
        assert_eq!(number(b"x"), None);
        assert_eq!(number(b""), None);
        assert_eq!(number(b"99999999999999999999999"), None);
    }

    #[test]
    fn acks_are_read() {
        assert!(ack_ok(br#"[{"ok":true,"channel":"c","count":1}]"#));
        assert!(!ack_ok(br#"[{"ok":false,"error":"no"}]"#));
        assert!(!ack_ok(b"[]"));
        assert!(!ack_ok(b"not json"));
        assert_eq!(open_sid(br#"{"sid":"abc"}"#).as_deref(), Some("abc"));
        assert_eq!(open_sid(b"{}"), None);
    }
}
