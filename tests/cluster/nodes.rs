//! Cluster mode (SPEC §11) against real nodes sharing a real `redis-server`: delivery
//! across nodes exactly once and in order, direct messages, cluster-wide presence (an
//! identity with tabs on two nodes is one member; events and webhooks fire once), a node
//! killed with SIGKILL, a Redis outage and the resynchronisation after it, and garbage
//! published on the bus. Every test has its own Redis and nodes; every wait is bounded.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::redis::*;
use crate::support::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Long enough for a Redis round trip between nodes on loopback, with slack.
const PROPAGATE: Duration = Duration::from_secs(5);
/// How long to listen for something that must not come.
const QUIET: Duration = Duration::from_millis(1200);

/// `GET /api/channels/{name}` as `(count, sorted identities)`.
async fn members(port: u16, channel: &str) -> (u64, Vec<String>) {
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
async fn wait_members(
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
struct Client {
    name: String,
    ws: Ws,
    seen: Vec<Value>,
    next_id: u64,
}

impl Client {
    async fn connect(port: u16, identity: &str) -> Client {
        Client {
            name: identity.to_owned(),
            ws: sio_connect(port, &format!(r#"{{"identity":"{identity}"}}"#)).await,
            seen: Vec::new(),
            next_id: 1,
        }
    }

    /// Reads one packet (within `within`); keeps it when it is a `message` event. Returns
    /// the ack `(id, first argument)` when it was one; `Err` on timeout.
    async fn read(&mut self, within: Duration) -> Result<Option<(u64, Value)>, ()> {
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
    async fn request(&mut self, args: &str) -> Value {
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

    async fn subscribe(&mut self, channel: &str) -> Value {
        let ack = self.request(&format!(r#""subscribe","{channel}""#)).await;
        assert_eq!(ack["ok"], true, "{}: {ack}", self.name);
        ack
    }

    /// Publishes without waiting for an ack.
    async fn publish_now(&mut self, channel: &str, data: &Value) {
        send(
            &mut self.ws,
            &format!(r#"42["publish","{channel}",{data}]"#),
        )
        .await;
    }

    /// Waits until an envelope matching `pred` is among those seen; removes and returns it.
    async fn wait_for(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
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
    async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        while self.read(quiet).await.is_ok() {}
        std::mem::take(&mut self.seen)
    }

    /// The `data.n` of channel messages seen until `want` of them arrived (or `within`
    /// passed), in arrival order; other envelopes stay in `seen`.
    async fn numbers(&mut self, want: usize, within: Duration) -> Vec<u64> {
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
    async fn disconnect(mut self) {
        send(&mut self.ws, "41").await;
        let _ = self.ws.close(None).await;
    }
}

/// Whether `e` is the membership event `command` ("onSubscribe"/"onUnsubscribe") of
/// `identity` in `channel`.
fn is_event(e: &Value, command: &str, channel: &str, identity: &str) -> bool {
    e["type"] == "command"
        && e["data"]["command"] == command
        && e["channel"] == channel
        && e["identity"] == identity
}

fn membership_events(envs: &[Value]) -> Vec<&Value> {
    envs.iter()
        .filter(|e| {
            e["type"] == "command"
                && (e["data"]["command"] == "onSubscribe"
                    || e["data"]["command"] == "onUnsubscribe")
        })
        .collect()
}

#[tokio::test]
async fn publishes_cross_nodes_exactly_once_in_order() {
    let c = Cluster::start(3, "").await;
    let (a, b, cc) = (c.port(0), c.port(1), c.port(2));
    let mut sub_b = Client::connect(b, "sub-b").await;
    assert_eq!(sub_b.subscribe("room").await["count"], 1);
    let mut sub_c = Client::connect(cc, "sub-c").await;
    assert_eq!(sub_c.subscribe("room").await["count"], 2);
    let mut publisher = Client::connect(a, "pub").await;
    assert_eq!(
        publisher.subscribe("room").await["count"],
        3,
        "the subscribe ack counts the members of every node"
    );

    // 200 over Socket.IO, then 200 over HTTP in batches of 10, all on A.
    const N: u64 = 200;
    for i in 0..N {
        publisher
            .ws
            .feed(Message::text(format!(
                r#"42["publish","room",{{"n":{i}}}]"#
            )))
            .await
            .unwrap();
    }
    publisher.ws.flush().await.unwrap();
    for batch in 0..N / 10 {
        let body: Vec<Value> = (0..10)
            .map(|k| json!({"channel": "room", "data": {"n": N + batch * 10 + k}}))
            .collect();
        let (status, v) = api(a, "POST", "/api/publish", &Value::from(body).to_string()).await;
        assert_eq!((status, v), (200, json!({"ok": true, "published": 10})));
    }

    for client in [&mut sub_b, &mut sub_c, &mut publisher] {
        let mut got = client
            .numbers(2 * N as usize, Duration::from_secs(20))
            .await;
        // Anything more would be a duplicate.
        while client.read(QUIET).await.is_ok() {}
        got.extend(client.numbers(0, Duration::ZERO).await);
        let socket: Vec<u64> = got.iter().copied().filter(|&n| n < N).collect();
        let http: Vec<u64> = got.iter().copied().filter(|&n| n >= N).collect();
        assert_eq!(
            socket,
            (0..N).collect::<Vec<_>>(),
            "{}: the Socket.IO publishes, each once, in order",
            client.name
        );
        assert_eq!(
            http,
            (N..2 * N).collect::<Vec<_>>(),
            "{}: the HTTP publishes, each once, in order",
            client.name
        );
        assert_eq!(got.len(), 2 * N as usize, "{}: {got:?}", client.name);
    }

    // A custom command crosses too, once.
    let ack = publisher
        .request(r#""command","room","poke",{"x":1}"#)
        .await;
    assert_eq!(ack, json!({"ok": true}));
    for client in [&mut sub_b, &mut sub_c] {
        let got = client.drain(QUIET).await;
        let pokes: Vec<&Value> = got
            .iter()
            .filter(|e| e["type"] == "command" && e["data"]["command"] == "poke")
            .collect();
        assert_eq!(pokes.len(), 1, "{}: {got:?}", client.name);
        assert_eq!(pokes[0]["data"]["options"], json!({"x": 1}));
        assert_eq!(pokes[0]["identity"], "pub");
    }

    let (_, on_a) = get(a, "/metrics").await;
    let (_, on_b) = get(b, "/metrics").await;
    assert_eq!(
        metric(&on_a, "realtime_cluster_redis_up"),
        Some(1.0),
        "{on_a}"
    );
    let sent = metric(
        &on_a,
        r#"realtime_cluster_bus_messages_total{direction="sent"}"#,
    );
    let received = metric(
        &on_b,
        r#"realtime_cluster_bus_messages_total{direction="received"}"#,
    );
    assert!(
        sent.unwrap_or(0.0) > 0.0,
        "A sent nothing on the bus: {on_a}"
    );
    assert!(received.unwrap_or(0.0) > 0.0, "B received nothing: {on_b}");
}

#[tokio::test]
async fn a_direct_message_reaches_every_node() {
    let c = Cluster::start(3, "").await;
    let mut tab_b = Client::connect(c.port(1), "alice").await;
    let mut tab_c = Client::connect(c.port(2), "alice").await;
    let mut bob = Client::connect(c.port(1), "bob").await;

    let (status, _) = api(
        c.port(0),
        "POST",
        "/api/publish",
        r#"{"to":"alice","data":{"hi":1}}"#,
    )
    .await;
    assert_eq!(status, 200);
    for tab in [&mut tab_b, &mut tab_c] {
        let got = tab.drain(QUIET).await;
        let direct: Vec<&Value> = got
            .iter()
            .filter(|e| e["data"] == json!({"hi": 1}))
            .collect();
        assert_eq!(direct.len(), 1, "alice's tab got {got:?}");
        assert_eq!(direct[0]["type"], "message");
        assert_eq!(direct[0]["channel"], Value::Null);
    }
    assert_eq!(
        bob.drain(Duration::from_millis(300)).await,
        Vec::<Value>::new()
    );
}

#[tokio::test]
async fn an_identitys_subscriptions_follow_it_across_nodes() {
    let c = Cluster::start(3, "").await;
    let (a, b, cc) = (c.port(0), c.port(1), c.port(2));
    let mut bob = Client::connect(cc, "bob").await;
    bob.subscribe("room").await;
    let mut tab_a = Client::connect(a, "alice").await;
    tab_a.name = "alice on A".to_owned();
    let mut tab_b = Client::connect(b, "alice").await;
    tab_b.name = "alice on B".to_owned();
    assert_eq!(tab_a.subscribe("room").await["count"], 2);
    bob.wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "alice"))
        .await
        .expect("bob hears alice join");
    bob.drain(Duration::from_millis(100)).await;
    tab_a.drain(Duration::from_millis(100)).await;

    // tab_b never subscribed: the subscription is alice's, so it hears the room.
    bob.publish_now("room", &json!({"n": 1})).await;
    for who in [&mut tab_a, &mut tab_b] {
        assert_eq!(who.numbers(1, PROPAGATE).await, vec![1], "{}", who.name);
    }
    // A tab opened later on a third node joins the room one Redis round trip after its
    // CONNECT is answered (its node asks Redis what alice is in): the README says so, and
    // a message published within that instant may miss it.
    let mut tab_c = Client::connect(cc, "alice").await;
    tab_c.name = "alice on C".to_owned();
    // Nothing outside node C shows when it has asked: a fixed pause past that instant.
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.publish_now("room", &json!({"n": 2})).await;
    for who in [&mut tab_a, &mut tab_b, &mut tab_c] {
        assert_eq!(who.numbers(1, PROPAGATE).await, vec![2], "{}", who.name);
    }
    let got = bob.drain(QUIET).await;
    assert_eq!(
        membership_events(&got),
        Vec::<&Value>::new(),
        "no new member"
    );
    for port in [a, b, cc] {
        assert_eq!(members(port, "room").await.0, 2, "on :{port}");
    }

    // An unsubscribe from any tab takes alice out everywhere, with one onUnsubscribe that
    // her tabs hear too.
    let ack = tab_b.request(r#""unsubscribe","room""#).await;
    assert_eq!(ack, json!({"ok": true, "channel": "room", "count": 1}));
    for who in [&mut bob, &mut tab_a, &mut tab_b, &mut tab_c] {
        let ev = who
            .wait_for(PROPAGATE, |e| is_event(e, "onUnsubscribe", "room", "alice"))
            .await
            .unwrap_or_else(|| panic!("{}: no onUnsubscribe for alice", who.name));
        assert_eq!(ev["data"]["count"], 1, "{}", who.name);
        let more = who.drain(Duration::from_millis(500)).await;
        assert_eq!(
            membership_events(&more),
            Vec::<&Value>::new(),
            "{}",
            who.name
        );
    }
    bob.publish_now("room", &json!({"n": 3})).await;
    assert_eq!(bob.numbers(1, PROPAGATE).await, vec![3]);
    for who in [&mut tab_a, &mut tab_b, &mut tab_c] {
        let got = who.drain(Duration::from_millis(500)).await;
        assert_eq!(got, Vec::<Value>::new(), "{} is out of the room", who.name);
    }
    for port in [a, b, cc] {
        assert_eq!(
            members(port, "room").await,
            (1, vec!["bob".to_owned()]),
            "on :{port}"
        );
    }
}

#[tokio::test]
async fn an_identity_on_two_nodes_is_one_member() {
    let hook = Endpoint::start(Behaviour::Accept);
    let c = Cluster::start(
        3,
        &format!(
            "[Monitor]\nurl = {}\nevents = subscribe, unsubscribe, connect, disconnect\n",
            hook.url("/hook")
        ),
    )
    .await;
    let (a, b, cc) = (c.port(0), c.port(1), c.port(2));

    let mut bob = Client::connect(a, "bob").await;
    assert_eq!(bob.subscribe("room").await["count"], 1);
    let mut carol = Client::connect(cc, "carol").await;
    assert_eq!(carol.subscribe("room").await["count"], 2);
    let ev = bob
        .wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "carol"))
        .await
        .expect("bob hears carol join on another node");
    assert_eq!(ev["data"]["count"], 2);

    // alice's first tab, on A.
    let mut alice1 = Client::connect(a, "alice").await;
    let ack = alice1.subscribe("room").await;
    assert_eq!(ack, json!({"ok": true, "channel": "room", "count": 3}));
    let own = alice1
        .wait_for(Duration::ZERO, |e| {
            is_event(e, "onSubscribe", "room", "alice")
        })
        .await
        .expect("the joining member hears its own onSubscribe, before the ack");
    assert_eq!(own["data"]["count"], 3);
    for who in [&mut bob, &mut carol] {
        let ev = who
            .wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "alice"))
            .await
            .unwrap_or_else(|| panic!("{} never heard alice join", who.name));
        assert_eq!(ev["data"]["count"], 3, "{}", who.name);
        // Once: nothing else about alice (what came before, carol's and bob's own
        // joins, is done with).
        let rest = who.drain(Duration::from_millis(300)).await;
        let about_alice: Vec<&Value> = membership_events(&rest)
            .into_iter()
            .filter(|e| e["identity"] == "alice")
            .collect();
        assert_eq!(about_alice, Vec::<&Value>::new(), "{}", who.name);
    }

    // Her second tab, on B: not a new member.
    let mut alice2 = Client::connect(b, "alice").await;
    assert_eq!(alice2.subscribe("room").await["count"], 3);
    for who in [&mut bob, &mut carol] {
        let got = who.drain(QUIET).await;
        assert_eq!(
            membership_events(&got),
            Vec::<&Value>::new(),
            "{}: a second tab on another node is not a new member",
            who.name
        );
    }
    let names = ["alice", "bob", "carol"].map(str::to_owned).to_vec();
    for port in [a, b, cc] {
        assert_eq!(
            members(port, "room").await,
            (3, names.clone()),
            "GET /api/channels/room on :{port}"
        );
    }

    // The first tab leaves cleanly: alice is still a member through B.
    alice1.disconnect().await;
    for who in [&mut bob, &mut carol] {
        let got = who.drain(QUIET).await;
        assert_eq!(
            membership_events(&got),
            Vec::<&Value>::new(),
            "{}: alice still has a tab in the room",
            who.name
        );
    }
    for port in [a, b, cc] {
        assert_eq!(members(port, "room").await.0, 3, "on :{port}");
    }

    // The second leaves: one onUnsubscribe, count 2.
    alice2.disconnect().await;
    for who in [&mut bob, &mut carol] {
        let ev = who
            .wait_for(PROPAGATE, |e| is_event(e, "onUnsubscribe", "room", "alice"))
            .await
            .unwrap_or_else(|| panic!("{} never heard alice leave", who.name));
        assert_eq!(ev["data"]["count"], 2, "{}", who.name);
        let more = who.drain(QUIET).await;
        assert_eq!(
            membership_events(&more),
            Vec::<&Value>::new(),
            "{}",
            who.name
        );
    }
    for port in [a, b, cc] {
        let got = wait_members(port, "room", 2, PROPAGATE).await;
        assert_eq!(
            got,
            (2, vec!["bob".to_owned(), "carol".to_owned()]),
            "on :{port}"
        );
    }

    // The webhook, configured on all three nodes, heard each event once.
    let _ = poll_until_async(Duration::from_secs(8), || async {
        let hits = hook.hits();
        let alice_gone = ("onDisconnect".to_owned(), Value::Null, json!("alice"));
        hits.iter()
            .any(|h| summary(&h.json()) == alice_gone)
            .then_some(())
    })
    .await;
    // Nothing more comes (no event twice): a wait for nothing to arrive, so a fixed one.
    tokio::time::sleep(QUIET).await;
    let all: Vec<(String, Value, Value)> = hook.hits().iter().map(|h| summary(&h.json())).collect();
    let alice: Vec<(String, Value)> = all
        .iter()
        .filter(|s| s.2 == "alice")
        .map(|s| (s.0.clone(), s.1.clone()))
        .collect();
    assert_eq!(
        alice,
        vec![
            ("onConnect".to_owned(), Value::Null),
            ("onSubscribe".to_owned(), json!("room")),
            ("onUnsubscribe".to_owned(), json!("room")),
            ("onDisconnect".to_owned(), Value::Null),
        ],
        "alice's webhooks, once each; all: {all:?}"
    );
    for s in &all {
        assert_eq!(
            all.iter().filter(|t| *t == s).count(),
            1,
            "{s:?} posted more than once; all: {all:?}"
        );
    }
    let hits = hook.hits();
    let unsub = hits
        .iter()
        .map(|h| h.json())
        .find(|v| summary(v).0 == "onUnsubscribe")
        .unwrap();
    assert_eq!(unsub["data"]["count"], 2);
}

#[tokio::test]
async fn a_killed_nodes_members_leave_within_the_node_timeout() {
    let hook = Endpoint::start(Behaviour::Accept);
    let mut c = Cluster::start(3, &format!("[Monitor]\nurl = {}\n", hook.url("/"))).await;
    let (a, cc) = (c.port(0), c.port(2));
    let mut erin = Client::connect(a, "erin").await;
    erin.subscribe("room").await;
    let mut frank = Client::connect(cc, "frank").await;
    frank.subscribe("room").await;
    // greta has a tab on A and one on B: B's death does not take her out.
    let mut greta_a = Client::connect(a, "greta").await;
    assert_eq!(greta_a.subscribe("room").await["count"], 3);
    let mut greta_b = Client::connect(c.port(1), "greta").await;
    assert_eq!(greta_b.subscribe("room").await["count"], 3);
    let mut dave = Client::connect(c.port(1), "dave").await;
    assert_eq!(dave.subscribe("room").await["count"], 4);
    for who in [&mut erin, &mut frank] {
        who.wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "dave"))
            .await
            .unwrap_or_else(|| panic!("{} never heard dave join", who.name));
        who.drain(Duration::from_millis(100)).await;
    }

    let start = Instant::now();
    kill9(&mut c.nodes[1]);
    for who in [&mut erin, &mut frank] {
        let ev = who
            .wait_for(Duration::from_secs(10), |e| {
                is_event(e, "onUnsubscribe", "room", "dave")
            })
            .await
            .unwrap_or_else(|| panic!("{}: no onUnsubscribe for dave within 10 s", who.name));
        eprintln!("{} heard dave leave after {:?}", who.name, start.elapsed());
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(ev["data"]["count"], 3, "{}", who.name);
    }
    for who in [&mut erin, &mut frank] {
        let more = who.drain(QUIET).await;
        assert_eq!(
            membership_events(&more),
            Vec::<&Value>::new(),
            "{}: dave left once, greta not at all",
            who.name
        );
    }
    let left = ["erin", "frank", "greta"].map(str::to_owned).to_vec();
    for port in [a, cc] {
        assert_eq!(members(port, "room").await, (3, left.clone()), "on :{port}");
    }
    // greta's tab on A is still in the room.
    let (status, _) = api(
        a,
        "POST",
        "/api/publish",
        r#"{"channel":"room","data":{"n":7}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(greta_a.numbers(1, PROPAGATE).await, vec![7]);
    drop(greta_b);
    // The webhook heard dave leave once, though both survivors saw him go.
    hook.wait_for(5, Duration::from_secs(3));
    // No event comes twice: a wait for nothing to arrive, so a fixed one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dave_left = hook
        .hits()
        .iter()
        .filter(|h| {
            summary(&h.json()) == ("onUnsubscribe".to_owned(), json!("room"), json!("dave"))
        })
        .count();
    let all: Vec<Value> = hook.hits().iter().map(|h| h.json()).collect();
    assert_eq!(dave_left, 1, "webhooks: {all:?}");
    assert!(
        !all.iter()
            .any(|v| summary(v).0 == "onUnsubscribe" && v["identity"] == "greta"),
        "greta never left: {all:?}"
    );
}

#[tokio::test]
async fn a_node_without_redis_serves_its_own_and_resynchronises() {
    let mut c = Cluster::start(2, "").await;
    let (a, b) = (c.port(0), c.port(1));
    let mut x = Client::connect(b, "x").await;
    x.subscribe("room").await;
    let mut m1 = Client::connect(a, "m1").await;
    m1.subscribe("room").await;
    let mut m2 = Client::connect(a, "m2").await;
    assert_eq!(m2.subscribe("room").await["count"], 3);
    x.drain(Duration::from_millis(300)).await;
    m1.drain(Duration::from_millis(100)).await;
    m2.drain(Duration::from_millis(100)).await;

    c.redis.stop();
    let outage = Instant::now();
    let mut late: Option<Client> = None;
    let mut sent = 0u64;
    while outage.elapsed() < Duration::from_secs(10) {
        let ack = m1
            .request(&format!(r#""publish","room",{{"n":{sent}}}"#))
            .await;
        assert_eq!(ack, json!({"ok": true}), "publish {sent} during the outage");
        let got = m2.numbers(1, Duration::from_secs(2)).await;
        assert_eq!(
            got,
            vec![sent],
            "m2 on the same node got A's message {sent}"
        );
        sent += 1;
        if sent == 10 {
            // By now the node knows.
            assert!(
                wait_readyz(a, 503, Duration::from_secs(3)).await,
                "/readyz stayed 200"
            );
            let (status, body) = api(a, "GET", "/readyz", "").await;
            assert_eq!(
                (status, body),
                (503, json!({"ok": false, "error": "redis unavailable"}))
            );
            assert!(
                c.nodes[0]
                    .wait_log("lost Redis", Duration::from_secs(1))
                    .await,
                "no 'lost Redis' in the log"
            );
            let (_, metrics) = get(a, "/metrics").await;
            assert_eq!(metric(&metrics, "realtime_cluster_redis_up"), Some(0.0));
            // A member joins during the outage: local count (m1, m2, late).
            let mut newcomer = Client::connect(a, "late").await;
            assert_eq!(newcomer.subscribe("room").await["count"], 3);
            for m in [&mut m1, &mut m2] {
                m.wait_for(Duration::from_secs(2), |e| {
                    is_event(e, "onSubscribe", "room", "late")
                })
                .await
                .unwrap_or_else(|| panic!("{} did not hear late join during the outage", m.name));
            }
            late = Some(newcomer);
        }
        // The publishes are paced through the outage: the pause is the point.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut late = late.expect("the outage lasted 10 s");
    assert!(sent > 20, "only {sent} publishes in 10 s");
    let log = c.nodes[0].log();
    assert!(
        log.contains(" WARN ") && log.contains("lost Redis"),
        "{log}"
    );

    c.redis.restart();
    let back = Instant::now();
    assert!(
        wait_readyz(a, 200, Duration::from_secs(10)).await,
        "/readyz on A not 200 within 10 s of Redis coming back"
    );
    eprintln!("A ready {:?} after Redis came back", back.elapsed());
    assert!(
        c.nodes[0]
            .wait_log("Redis connection restored", Duration::from_secs(1))
            .await
    );
    assert!(
        wait_readyz(b, 200, Duration::from_secs(10)).await,
        "B not ready again"
    );
    let (_, metrics) = get(a, "/metrics").await;
    assert_eq!(metric(&metrics, "realtime_cluster_redis_up"), Some(1.0));

    // A's presence was rewritten: B counts the member who joined during the outage.
    let names = ["late", "m1", "m2", "x"].map(str::to_owned).to_vec();
    assert_eq!(
        wait_members(b, "room", 4, PROPAGATE).await,
        (4, names.clone()),
        "on B"
    );
    assert_eq!(
        wait_members(a, "room", 4, PROPAGATE).await,
        (4, names),
        "on A"
    );
    let ev = x
        .wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "late"))
        .await
        .unwrap_or_else(|| {
            panic!(
                "x on B is not told of the member who joined during the outage; x saw {:?}",
                x.seen
            )
        });
    assert_eq!(
        ev["data"]["count"], 4,
        "late's onSubscribe counts every member of both nodes: {ev}"
    );
    let rest = x.drain(Duration::from_millis(300)).await;
    let crossed: Vec<&Value> = rest.iter().filter(|e| e["data"]["n"].is_u64()).collect();
    assert_eq!(
        crossed,
        Vec::<&Value>::new(),
        "outage messages are not queued"
    );
    // Only the change is announced: m1 and m2 never left.
    assert_eq!(
        membership_events(&rest),
        Vec::<&Value>::new(),
        "x on B saw membership churn after the outage"
    );

    // late, who joined during the outage, got A's messages from then on.
    let from_join = late
        .numbers((sent - 10) as usize, Duration::from_secs(2))
        .await;
    assert_eq!(from_join, (10..sent).collect::<Vec<_>>());
    late.drain(Duration::from_millis(100)).await;

    // Across nodes again, both ways.
    m1.publish_now("room", &json!({"n": 1000})).await;
    assert_eq!(
        x.numbers(1, PROPAGATE).await,
        vec![1000],
        "A to B after the outage"
    );
    x.publish_now("room", &json!({"n": 2000})).await;
    let got = late.numbers(2, PROPAGATE).await;
    assert_eq!(got, vec![1000, 2000], "late on A gets A's and B's messages");
}

#[tokio::test]
async fn garbage_on_the_bus_is_dropped_with_a_warning() {
    let mut c = Cluster::start(2, "").await;
    let (a, b) = (c.port(0), c.port(1));
    let mut s = Client::connect(a, "s").await;
    s.subscribe("room").await;
    let mut t = Client::connect(b, "t").await;
    assert_eq!(t.subscribe("room").await["count"], 2);
    s.wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "t"))
        .await
        .expect("s hears t join");
    s.drain(Duration::from_millis(100)).await;
    t.drain(Duration::from_millis(100)).await;

    // A real message, as it crosses the bus.
    let mut tap = c.redis.tap("realtime:m:room");
    let (status, _) = api(
        b,
        "POST",
        "/api/publish",
        r#"{"channel":"room","data":{"n":0}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let real = tap.next();
    assert_eq!(s.numbers(1, PROPAGATE).await, vec![0]);
    assert_eq!(t.numbers(1, PROPAGATE).await, vec![0]);
    // And a binary one (a Socket.IO binary event and its attachment).
    send(
        &mut t.ws,
        r#"451-["publish","room",{"_placeholder":true,"num":0}]"#,
    )
    .await;
    t.ws.send(Message::binary(vec![1u8, 2, 3, 4, 5, 6, 7, 8]))
        .await
        .unwrap();
    let binary = tap.next();
    let is_binary = |e: &Value| e["type"] == "message" && e["data"]["_placeholder"] == true;
    for who in [&mut s, &mut t] {
        who.wait_for(PROPAGATE, is_binary)
            .await
            .unwrap_or_else(|| panic!("{}: the binary publish did not arrive", who.name));
    }

    // A broadcast dated past year 9999, which no timestamp format can write.
    let far_future = {
        let text = String::from_utf8_lossy(&real).into_owned();
        let i = text.find("\"t\":").unwrap() + 4;
        let j = i + text[i..].find(|c: char| !c.is_ascii_digit()).unwrap();
        format!("{}253402300800000{}", &text[..i], &text[j..]).into_bytes()
    };
    let mut oversized = binary.clone();
    oversized.extend(std::iter::repeat_n(0xffu8, 4 << 20));
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("realtime:m:room", b"garbage".to_vec()),
        ("realtime:m:room", Vec::new()),
        ("realtime:m:room", b"{}".to_vec()),
        ("realtime:m:room", b"null".to_vec()),
        ("realtime:m:room", vec![0xff, 0xfe, 0x00, 0x80]),
        ("realtime:m:room", real[..real.len() / 2].to_vec()),
        ("realtime:m:room", binary[..binary.len() - 1].to_vec()),
        ("realtime:m:room", oversized),
        ("realtime:m:room", far_future),
        ("realtime:direct", b"garbage".to_vec()),
        ("realtime:direct", real[..real.len() / 2].to_vec()),
    ];
    for (channel, payload) in &hostile {
        let receivers = c.redis.publish(channel, payload);
        assert!(
            receivers >= 2,
            "both nodes listen on {channel}: {receivers}"
        );
    }
    for node in &c.nodes {
        for channel in ["realtime:m:room", "realtime:direct"] {
            let warned = node.wait_log_line(&[" WARN ", channel], PROPAGATE).await;
            assert!(warned, "no warning naming {channel} on :{}", node.port);
        }
    }

    // Nothing was delivered; the next real message is.
    let (status, _) = api(
        a,
        "POST",
        "/api/publish",
        r#"{"channel":"room","data":{"n":1}}"#,
    )
    .await;
    assert_eq!(status, 200);
    for who in [&mut s, &mut t] {
        let got = who.numbers(1, PROPAGATE).await;
        assert_eq!(got, vec![1], "{}", who.name);
        let rest = who.drain(Duration::from_millis(300)).await;
        assert_eq!(
            rest,
            Vec::<Value>::new(),
            "{}: garbage was delivered",
            who.name
        );
    }
    for node in &mut c.nodes {
        node.assert_serving().await;
        assert_eq!(get(node.port, "/readyz").await.0, 200);
    }
    assert_eq!(members(a, "room").await.0, 2);
}

#[tokio::test]
async fn a_node_the_others_removed_while_frozen_writes_its_presence_back() {
    let c = Cluster::start(2, "").await;
    let (a, b) = (c.port(0), c.port(1));
    let mut bob = Client::connect(a, "bob").await;
    bob.subscribe("room").await;
    let mut alice = Client::connect(b, "alice").await;
    assert_eq!(alice.subscribe("room").await["count"], 2);
    bob.wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "alice"))
        .await
        .expect("bob hears alice join");

    // Frozen past node-timeout (3 s) + a heartbeat: A removes B's members.
    freeze(&c.nodes[1], Duration::from_secs(5)).await;
    bob.wait_for(PROPAGATE, |e| is_event(e, "onUnsubscribe", "room", "alice"))
        .await
        .expect("A removes alice while B is frozen");

    // B finds at its next heartbeat that it was removed and writes alice back: the
    // cluster counts her again and bob hears her join.
    bob.wait_for(Duration::from_secs(8), |e| {
        is_event(e, "onSubscribe", "room", "alice")
    })
    .await
    .expect("B writes alice back and announces her");
    assert_eq!(
        wait_members(a, "room", 2, PROPAGATE).await,
        (2, vec!["alice".to_owned(), "bob".to_owned()])
    );
    assert!(
        c.nodes[1]
            .log()
            .contains("the other nodes had removed this node"),
        "{}",
        c.nodes[1].log()
    );
    // And messages cross again.
    bob.publish_now("room", &json!({"n": 7})).await;
    assert_eq!(alice.numbers(1, PROPAGATE).await, vec![7]);
}
