//! A broadcast as it crosses the bus: one JSON header line (origin node, envelope, target,
//! attachment lengths), then the binary attachments back to back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Envelope;

/// 9999-12-31T23:59:59.999Z, the last time RFC 3339 (the envelope's timestamp) can say.
const LAST_MILLISECOND: u64 = 253_402_300_799_999;

/// A broadcast from another node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BusMessage {
    /// The node that published it (a node ignores its own).
    pub origin: String,
    pub envelope: Envelope,
    /// An identity for a direct message; `None` for a channel broadcast.
    pub to: Option<String>,
    pub attachments: Vec<Bytes>,
    /// A membership event about this member, whose own sessions hear it with the control
    /// message that follows instead.
    pub except: Option<String>,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    n: &'a str,
    k: &'a str,
    c: Option<&'a str>,
    to: Option<&'a str>,
    i: Option<&'a str>,
    t: u64,
    d: &'a Value,
    a: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<&'a str>,
}

#[derive(Deserialize)]
struct HeaderIn {
    n: String,
    k: String,
    c: Option<String>,
    to: Option<String>,
    i: Option<String>,
    t: u64,
    d: Value,
    a: Vec<usize>,
    #[serde(default)]
    x: Option<String>,
}

/// Why a bus message was dropped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum WireError {
    #[error("no header line")]
    NoHeader,
    #[error("bad header: {0}")]
    Header(String),
    #[error("unknown envelope type {0:?}")]
    Kind(String),
    #[error("neither a channel nor an identity")]
    NoTarget,
    #[error("timestamp {0} ms is past year 9999")]
    Timestamp(u64),
    #[error("attachments announce {announced} bytes, {got} follow")]
    Attachments { announced: usize, got: usize },
}

pub(super) fn encode(
    origin: &str,
    envelope: &Envelope,
    attachments: &[Bytes],
    to: Option<&str>,
    except: Option<&str>,
) -> Bytes {
    let millis = millis_of(envelope.timestamp);
    let header = HeaderOut {
        n: origin,
        k: envelope.kind,
        c: envelope.channel.as_deref(),
        to,
        i: envelope.identity.as_deref(),
        t: millis,
        d: &envelope.data,
        a: attachments.iter().map(Bytes::len).collect(),
        x: except,
    };
    let body: usize = attachments.iter().map(Bytes::len).sum();
    let mut out = BytesMut::with_capacity(128 + body).writer();
    // Compact JSON never holds a raw newline, so the first one ends the header.
    let _ = serde_json::to_writer(&mut out, &header);
    let mut out = out.into_inner();
    out.put_u8(b'\n');
    for a in attachments {
        out.put_slice(a);
    }
    out.freeze()
}

pub(super) fn decode(raw: &[u8]) -> Result<BusMessage, WireError> {
    let nl = memchr::memchr(b'\n', raw).ok_or(WireError::NoHeader)?;
    let h: HeaderIn =
        serde_json::from_slice(&raw[..nl]).map_err(|e| WireError::Header(e.to_string()))?;
    let kind = match h.k.as_str() {
        "message" => "message",
        "command" => "command",
        _ => return Err(WireError::Kind(h.k)),
    };
    if h.c.is_none() && h.to.is_none() {
        return Err(WireError::NoTarget);
    }
    let timestamp = time_of(h.t).ok_or(WireError::Timestamp(h.t))?;
    let rest = &raw[nl + 1..];
    let announced =
        h.a.iter()
            .try_fold(0usize, |sum, &n| sum.checked_add(n))
            .unwrap_or(usize::MAX);
    if announced != rest.len() {
        return Err(WireError::Attachments {
            announced,
            got: rest.len(),
        });
    }
    let mut attachments = Vec::with_capacity(h.a.len());
    let mut at = 0;
    for n in h.a {
        attachments.push(Bytes::copy_from_slice(&rest[at..at + n]));
        at += n;
    }
    Ok(BusMessage {
        origin: h.n,
        envelope: Envelope {
            kind,
            channel: h.c,
            identity: h.i.map(Arc::from),
            timestamp,
            data: h.d,
        },
        to: h.to,
        attachments,
        except: h.x,
    })
}

/// A timestamp as the bus carries it: milliseconds since the epoch.
pub(super) fn millis_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `millis` after the epoch, if RFC 3339 (the envelope's timestamp) can say it.
pub(super) fn time_of(millis: u64) -> Option<SystemTime> {
    (millis <= LAST_MILLISECOND).then(|| UNIX_EPOCH + Duration::from_millis(millis))
}

/// Now, to the millisecond the wire keeps (so a round trip compares equal in tests).
#[cfg(test)]
fn now_millis() -> std::time::SystemTime {
    let d = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH + Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Membership;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn round_trips_a_broadcast_with_attachments() {
        let mut e = Envelope::message("news", Some("alice".into()), json!({"x": "a\nb"}));
        e.timestamp = now_millis();
        let att = vec![Bytes::from_static(b"\n\x00\xff"), Bytes::new()];
        let raw = encode("n1", &e, &att, None, None);
        let m = decode(&raw).unwrap();
        assert_eq!(m.origin, "n1");
        assert_eq!(m.envelope, e);
        assert_eq!(m.attachments, att);
        assert_eq!(m.to, None);
    }

    #[test]
    fn round_trips_a_direct_command() {
        let mut e = Envelope::command("c", None, "poke", json!(1));
        e.channel = None;
        e.timestamp = now_millis();
        let m = decode(&encode("n2", &e, &[], Some("bob"), None)).unwrap();
        assert_eq!((m.envelope, m.to.as_deref()), (e, Some("bob")));
    }

    #[test]
    fn a_membership_event_names_the_member_that_hears_it_otherwise() {
        let e = Envelope::membership("c", Some("al".into()), Membership::Subscribe, json!(1), 2);
        let m = decode(&encode("n1", &e, &[], None, Some("@al"))).unwrap();
        assert_eq!(m.except.as_deref(), Some("@al"));
        // Left out when there is none, so the header is what an older node sends and reads.
        let raw = encode("n1", &e, &[], None, None);
        assert!(!String::from_utf8_lossy(&raw).contains("\"x\""));
        assert_eq!(decode(&raw).unwrap().except, None);
    }

    #[test]
    fn refuses_what_no_node_sends() {
        assert_eq!(decode(b"garbage"), Err(WireError::NoHeader));
        assert!(matches!(decode(b"{]\n"), Err(WireError::Header(_))));
        let ok = r#"{"n":"x","k":"message","c":"c","to":null,"i":null,"t":0,"d":1,"a":[]}"#;
        assert!(decode(format!("{ok}\n").as_bytes()).is_ok());
        let bad_kind = ok.replace("\"message\"", "\"error\"");
        assert!(matches!(
            decode(format!("{bad_kind}\n").as_bytes()),
            Err(WireError::Kind(_))
        ));
        let nowhere = ok.replace("\"c\":\"c\"", "\"c\":null");
        assert_eq!(
            decode(format!("{nowhere}\n").as_bytes()),
            Err(WireError::NoTarget)
        );
        let short = ok.replace("\"a\":[]", "\"a\":[5]");
        assert_eq!(
            decode(format!("{short}\nab").as_bytes()),
            Err(WireError::Attachments {
                announced: 5,
                got: 2
            })
        );
        let late = ok.replace("\"t\":0", "\"t\":253402300800000");
        assert_eq!(
            decode(format!("{late}\n").as_bytes()),
            Err(WireError::Timestamp(253_402_300_800_000))
        );
        let last = ok.replace("\"t\":0", "\"t\":253402300799999");
        assert!(decode(format!("{last}\n").as_bytes()).is_ok());
        let overflow = ok.replace("\"a\":[]", &format!("\"a\":[{},2]", usize::MAX));
        assert!(decode(format!("{overflow}\nab").as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn a_payload_crosses_the_bus_as_it_was_sent(d in crate::json_doc::doc()) {
            let data: Value = serde_json::from_str(&d.text()).unwrap();
            let mut e = Envelope::command("c", None, "poke", data.clone());
            e.timestamp = now_millis();
            let m = decode(&encode("n1", &e, &[], None, None)).unwrap();
            prop_assert!(d.is(&m.envelope.data["options"]), "{}", m.envelope.data);
            let e = Envelope::message("c", None, data);
            let m = decode(&encode("n1", &e, &[], Some("bob"), None)).unwrap();
            prop_assert!(d.is(&m.envelope.data), "{}", m.envelope.data);
        }

        #[test]
        fn never_panics_on_any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&raw);
        }
    }
}
