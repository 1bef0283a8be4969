//! What the cluster tests share: a raw Socket.IO client that keeps every envelope it
//! sees, the members of a channel as a node reports them, membership events, and the
//! bounds for "it propagates" and "nothing comes".
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Long enough for a Redis round trip between nodes on loopback, with slack.
pub(crate) const PROPAGATE: Duration = Duration::from_secs(5);
/// How long to listen for something that must not come.
pub(crate) const QUIET: Duration = Duration::from_millis(1200);

/// `GET /api/channels/{name}` as `(count, sorted identities)`.
pub(crate) async fn members(port: u16, channel: &str) -> (u64, Vec<String>) {
    let (status, v) = api(port, "GET", &format!("/api/channels/{channel}"), "").await;
    assert_eq!(status, 200, "{v}");
    let mut ids: Vec<String> = v["identities"]
        .as_array()
        .map(|a| a.iter().map(|i| i.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    (v["count"].as_u64().unwrap_or(0), ids)
}

/// Polls `GET /api/channels/{name}` on `port` until it shows `count` members.
pub(crate) async fn wait_members(
    port: u16,
    channel: &str,
    count: u64,
    within: Duration,
) -> (u64, Vec<String>) {
    let reached = poll_until_async(within, || async {
        let got = members(port, channel).await;
        (got.0 == count).then_some(got)
    })
    .await;
    match reached {
        Some(got) => got,
        None => members(port, channel).await,
    }
}

/// A raw Socket.IO client that keeps every `message` envelope it sees, also those that
/// come before an ack.
pub(crate) struct Client {
    pub(crate) name: String,
    pub(crate) ws: Ws,
    pub(crate) seen: Vec<Value>,
    pub(crate) next_id: u64,
}

impl Client {
    pub(crate) async fn connect(port: u16, identity: &str) -> Client {
        Client {
            name: identity.to_owned(),
            ws: sio_connect(port, &format!(r#"{{"identity":"{identity}"}}"#)).await,
            seen: Vec::new(),
            next_id: 1,
        }
    }

    /// Reads one packet (within `within`); keeps it when it is a `message` event. Returns
    /// the ack `(id, first argument)` when it was one; `Err` on timeout.
    pub(crate) async fn read(&mut self, within: Duration) -> Result<Option<(u64, Value)>, ()> {
        // next_sio gives up by itself after 10 s, as if the socket had closed.
        let within = within.min(Duration::from_secs(9));
        let p = tokio::time::timeout(within, next_sio(&mut self.ws))
            .await
            .map_err(|_| ())?
            .unwrap_or_else(|| panic!("{}: socket closed", self.name));
        // An event, or a binary event (`5N-[…]`, its attachments in binary frames that
        // next_sio skips): the envelope is kept either way.
        let event = p.strip_prefix('2').or_else(|| {
            p.strip_prefix('5')
                .and_then(|r| r.find('[').map(|i| &r[i..]))
        });
        if let Some(json) = event {
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(v[0], "message", "{}: unexpected event {p}", self.name);
            self.seen.push(v[1].clone());
        } else if let Some(rest) = p.strip_prefix('3') {
            let digits = rest.find('[').unwrap();
            let id = rest[..digits].parse().unwrap();
            let args: Value = serde_json::from_str(&rest[digits..]).unwrap();
            return Ok(Some((id, args[0].clone())));
        }
        Ok(None)
    }

    /// Emits `[event, args…]` (a JSON array's inner text) with an ack id; returns the ack.
    pub(crate) async fn request(&mut self, args: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        send(&mut self.ws, &format!("42{id}[{args}]")).await;
        let end = Instant::now() + PROPAGATE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Ok(Some((got, ack))) if got == id => return ack,
                Ok(_) => continue,
                Err(()) => panic!("{}: no ack for [{args}] within {PROPAGATE:?}", self.name),
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, channel: &str) -> Value {
        let ack = self.request(&format!(r#""subscribe","{channel}""#)).await;
        assert_eq!(ack["ok"], true, "{}: {ack}", self.name);
        ack
    }

    /// Publishes without waiting for an ack.
    pub(crate) async fn publish_now(&mut self, channel: &str, data: &Value) {
        send(
            &mut self.ws,
            &format!(r#"42["publish","{channel}",{data}]"#),
        )
        .await;
    }

    /// Waits until an envelope matching `pred` is among those seen; removes and returns it.
    pub(crate) async fn wait_for(
        &mut self,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let end = Instant::now() + within;
        loop {
            if let Some(i) = self.seen.iter().position(&pred) {
                return Some(self.seen.remove(i));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.read(left).await.is_err() {
                return self
                    .seen
                    .iter()
                    .position(&pred)
                    .map(|i| self.seen.remove(i));
            }
        }
    }

    /// Everything that arrives until nothing has come for `quiet`, with what was already
    /// seen; empties the list.
    pub(crate) async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        while self.read(quiet).await.is_ok() {}
        std::mem::take(&mut self.seen)
    }

    /// The `data.n` of channel messages seen until `want` of them arrived (or `within`
    /// passed), in arrival order; other envelopes stay in `seen`.
    pub(crate) async fn numbers(&mut self, want: usize, within: Duration) -> Vec<u64> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let (nums, rest): (Vec<Value>, Vec<Value>) = std::mem::take(&mut self.seen)
                .into_iter()
                .partition(|e| e["type"] == "message" && e["data"]["n"].is_u64());
            self.seen = rest;
            got.extend(nums.iter().map(|e| e["data"]["n"].as_u64().unwrap()));
            if got.len() >= want {
                return got;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.read(left).await.is_err() {
                return got;
            }
        }
    }

    /// A clean disconnect (`socket.disconnect()`): the server leaves the member at once.
    pub(crate) async fn disconnect(mut self) {
        send(&mut self.ws, "41").await;
        let _ = self.ws.close(None).await;
    }
}

/// Whether `e` is the membership event `command` ("onSubscribe"/"onUnsubscribe") of
/// `identity` in `channel`.
pub(crate) fn is_event(e: &Value, command: &str, channel: &str, identity: &str) -> bool {
    e["type"] == "command"
        && e["data"]["command"] == command
        && e["channel"] == channel
        && e["identity"] == identity
}

pub(crate) fn membership_events(envs: &[Value]) -> Vec<&Value> {
    envs.iter()
        .filter(|e| {
            e["type"] == "command"
                && (e["data"]["command"] == "onSubscribe"
                    || e["data"]["command"] == "onUnsubscribe")
        })
        .collect()
}
