//! Hub behaviour without the network: members, counts, membership events, the grace
//! window and connection state recovery, on sockets whose queues the test reads.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::cluster::{Inbound, Membership, Settle, Snapshot};
use crate::engineio::queue::Queue;
use crate::engineio::{self, Frame, Outgoing, Sid, TransportKind};
use crate::socketio::SioSocket;
use bytes::Bytes;

struct Tab {
    socket: Arc<SioSocket>,
    rx: Arc<Queue>,
    conn: Conn,
}

fn hub() -> Arc<Hub> {
    Arc::new(Hub::new(HubConfig {
        cache_limit: 5,
        grace: Duration::from_secs(8),
        ..HubConfig::default()
    }))
}

fn socket(queue: usize) -> (Arc<SioSocket>, Arc<Queue>) {
    let rx = Arc::new(Queue::bounded(queue, queue));
    (socket_on(&rx, Sid::random(), Sid::random()), rx)
}

/// A Socket.IO socket `sid` with private id `pid`, over a WebSocket session whose queue
/// the test reads.
fn socket_on(rx: &Arc<Queue>, sid: Sid, pid: Sid) -> Arc<SioSocket> {
    let engine = Arc::new(engineio::Socket::new(
        Sid::random(),
        None,
        TransportKind::WebSocket,
        rx.clone(),
    ));
    Arc::new(SioSocket::new("/".into(), engine, sid, Some(pid)))
}

fn tab(hub: &Hub, identity: Option<&str>) -> Tab {
    tab_with_queue(hub, identity, 64)
}

fn tab_with_queue(hub: &Hub, identity: Option<&str>, queue: usize) -> Tab {
    let (socket, rx) = socket(queue);
    let conn = hub.attach(&socket, identity.map(Arc::from), None);
    Tab { socket, rx, conn }
}

/// Decodes `42["message", envelope, "offset"?]` items: (envelope, offset).
fn received(rx: &mut Arc<Queue>) -> Vec<(Value, Option<String>)> {
    let mut items = Vec::new();
    rx.take(usize::MAX, &mut items);
    items.iter().map(decode).collect()
}

fn decode(item: &Outgoing) -> (Value, Option<String>) {
    let Frame::Text(t) = &item.frames()[0] else {
        panic!("binary first frame")
    };
    let v: Value = serde_json::from_str(&t[2..]).unwrap();
    assert_eq!(v[0], "message");
    (
        v[1].clone(),
        v.get(2).and_then(Value::as_str).map(str::to_owned),
    )
}

fn commands(items: &[(Value, Option<String>)]) -> Vec<(String, u64)> {
    items
        .iter()
        .filter(|(e, _)| e["type"] == "command")
        .map(|(e, _)| {
            (
                e["data"]["command"].as_str().unwrap().to_owned(),
                e["data"]["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn data(items: &[(Value, Option<String>)]) -> Vec<Value> {
    items
        .iter()
        .filter(|(e, _)| e["type"] == "message")
        .map(|(e, _)| e["data"].clone())
        .collect()
}

fn publish(hub: &Hub, channel: &str, n: i64) {
    hub.publish(&Envelope::message(channel, None, json!(n)), Vec::new());
}

#[tokio::test]
async fn tabs_of_one_identity_are_one_member() {
    let hub = hub();
    let mut a1 = tab(&hub, Some("alice"));
    let mut a2 = tab(&hub, Some("alice"));
    assert_eq!(
        hub.subscribe(&a1.conn, "chat", Value::Null),
        Ok(Count::Now(1))
    );
    assert_eq!(
        hub.subscribe(&a2.conn, "chat", Value::Null),
        Ok(Count::Now(1))
    );
    // One onSubscribe, heard by both tabs.
    assert_eq!(
        commands(&received(&mut a1.rx)),
        [("onSubscribe".to_owned(), 1)]
    );
    assert_eq!(
        commands(&received(&mut a2.rx)),
        [("onSubscribe".to_owned(), 1)]
    );

    let mut b = tab(&hub, Some("bob"));
    assert_eq!(
        hub.subscribe(&b.conn, "chat", json!({"x": 1})),
        Ok(Count::Now(2))
    );
    for rx in [&mut a1.rx, &mut a2.rx, &mut b.rx] {
        let got = received(rx);
        assert_eq!(commands(&got), [("onSubscribe".to_owned(), 2)]);
        assert_eq!(got[0].0["identity"], "bob");
        assert_eq!(got[0].0["data"]["options"], json!({"x": 1}));
    }
    publish(&hub, "chat", 7);
    for rx in [&mut a1.rx, &mut a2.rx, &mut b.rx] {
        assert_eq!(data(&received(rx)), [json!(7)]);
    }
    assert_eq!(hub.stats().members, 2);

    // bob leaves: everyone, bob included, hears onUnsubscribe with the new count.
    assert_eq!(
        hub.unsubscribe(&b.conn, "chat", Value::Null),
        Ok(Count::Now(1))
    );
    for rx in [&mut a1.rx, &mut b.rx] {
        assert_eq!(commands(&received(rx)), [("onUnsubscribe".to_owned(), 1)]);
    }
    assert_eq!(
        hub.unsubscribe(&b.conn, "chat", Value::Null),
        Err(HubError::NotSubscribed("chat".into()))
    );
    let info = hub.channel("chat");
    assert_eq!((info.count, info.identities), (1, vec!["alice".to_owned()]));
}

#[tokio::test]
async fn anonymous_connections_are_their_own_members() {
    let hub = hub();
    let x = tab(&hub, None);
    let y = tab(&hub, None);
    assert_eq!(hub.subscribe(&x.conn, "c", Value::Null), Ok(Count::Now(1)));
    assert_eq!(hub.subscribe(&y.conn, "c", Value::Null), Ok(Count::Now(2)));
    assert_eq!(hub.channel("c").anonymous, 2);
}

#[tokio::test]
async fn max_channels_per_member() {
    let hub = Arc::new(Hub::new(HubConfig {
        max_channels: 2,
        ..HubConfig::default()
    }));
    let t = tab(&hub, Some("a"));
    hub.subscribe(&t.conn, "1", Value::Null).unwrap();
    hub.subscribe(&t.conn, "2", Value::Null).unwrap();
    assert_eq!(hub.subscribe(&t.conn, "2", Value::Null), Ok(Count::Now(1)));
    assert_eq!(
        hub.subscribe(&t.conn, "3", Value::Null),
        Err(HubError::TooManyChannels(2))
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_within_the_window_gets_the_kept_messages_and_no_churn() {
    let hub = hub();
    let mut bob = tab(&hub, Some("bob"));
    let alice = tab(&hub, Some("alice"));
    hub.subscribe(&bob.conn, "chat", Value::Null).unwrap();
    hub.subscribe(&alice.conn, "chat", Value::Null).unwrap();
    received(&mut bob.rx);

    hub.detach(&alice.conn, &alice.socket, (VecDeque::new(), 0), true);
    publish(&hub, "chat", 1);
    publish(&hub, "chat", 2);
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut again = tab(&hub, Some("alice"));
    publish(&hub, "chat", 3);
    assert_eq!(
        data(&received(&mut again.rx)),
        [json!(1), json!(2), json!(3)]
    );
    assert!(
        Arc::ptr_eq(&again.conn.slot, &alice.conn.slot),
        "the session was taken over"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Nobody saw alice leave or come back.
    assert!(commands(&received(&mut bob.rx)).is_empty());
    assert_eq!(hub.count("chat"), 2);
}

#[tokio::test(start_paused = true)]
async fn past_the_window_the_member_leaves() {
    let hub = hub();
    let mut bob = tab(&hub, Some("bob"));
    let alice = tab(&hub, Some("alice"));
    hub.subscribe(&bob.conn, "chat", Value::Null).unwrap();
    hub.subscribe(&alice.conn, "chat", Value::Null).unwrap();
    received(&mut bob.rx);
    hub.detach(&alice.conn, &alice.socket, (VecDeque::new(), 0), true);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(commands(&received(&mut bob.rx)).is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = received(&mut bob.rx);
    assert_eq!(commands(&got), [("onUnsubscribe".to_owned(), 1)]);
    assert_eq!(got[0].0["identity"], "alice");
    assert_eq!(hub.stats().members, 1);
}

#[tokio::test]
async fn an_explicit_disconnect_leaves_at_once() {
    let hub = hub();
    let mut bob = tab(&hub, Some("bob"));
    let anon = tab(&hub, None);
    hub.subscribe(&bob.conn, "chat", Value::Null).unwrap();
    hub.subscribe(&anon.conn, "chat", Value::Null).unwrap();
    received(&mut bob.rx);
    hub.detach(&anon.conn, &anon.socket, (VecDeque::new(), 0), false);
    assert_eq!(
        commands(&received(&mut bob.rx)),
        [("onUnsubscribe".to_owned(), 1)]
    );
}

/// Everything the first socket was sent, as its engine session would hand it back.
fn backlog_of(rx: &mut Arc<Queue>) -> VecDeque<Outgoing> {
    let mut v = Vec::new();
    rx.take(usize::MAX, &mut v);
    v.into()
}

#[tokio::test]
async fn recovery_replays_exactly_what_followed_the_offset() {
    let hub = hub();
    let mut t = tab(&hub, None);
    hub.subscribe(&t.conn, "c", Value::Null).unwrap();
    publish(&hub, "c", 1);
    publish(&hub, "c", 2);
    let backlog = backlog_of(&mut t.rx);
    // The client saw up to the message 1 (the onSubscribe, then 1).
    let seen: u64 = decode(&backlog[1]).1.unwrap().parse().unwrap();
    hub.detach(&t.conn, &t.socket, (backlog, 0), true);
    publish(&hub, "c", 3);

    let pid = t.socket.pid.clone().unwrap();
    assert!(
        hub.claim(pid.as_str(), Some(seen), Some("someone"))
            .is_none(),
        "identity must match"
    );
    assert!(hub.claim("nope", Some(seen), None).is_none());
    let claim = hub
        .claim(pid.as_str(), Some(seen), None)
        .expect("recoverable");
    assert_eq!(claim.sid, t.socket.sid);
    assert!(
        hub.claim(pid.as_str(), Some(seen), None).is_none(),
        "claimed once"
    );
    let (socket, mut rx) = socket(64);
    let conn = hub.attach(&socket, None, Some(claim));
    publish(&hub, "c", 4);
    let got = received(&mut rx);
    assert_eq!(data(&got), [json!(2), json!(3), json!(4)]);
    assert!(Arc::ptr_eq(&conn.slot, &t.conn.slot));
}

#[tokio::test]
async fn recovery_is_refused_when_the_offset_is_unknown_or_the_cache_overflowed() {
    let hub = hub();
    let mut t = tab(&hub, None);
    hub.subscribe(&t.conn, "c", Value::Null).unwrap();
    publish(&hub, "c", 1);
    let backlog = backlog_of(&mut t.rx);
    hub.detach(&t.conn, &t.socket, (backlog, 0), true);
    let pid = t.socket.pid.clone().unwrap();
    assert!(hub.claim(pid.as_str(), Some(999_999), None).is_none());

    let mut u = tab(&hub, None);
    hub.subscribe(&u.conn, "d", Value::Null).unwrap();
    let backlog = backlog_of(&mut u.rx);
    hub.detach(&u.conn, &u.socket, (backlog, 0), true);
    let evicted = || hub.counters.cache_evictions.load(Ordering::Relaxed);
    for n in 0..5 {
        publish(&hub, "d", n);
    }
    assert_eq!(evicted(), 0, "the cache holds 5");
    for n in 5..8 {
        publish(&hub, "d", n);
    }
    assert_eq!(
        evicted(),
        3,
        "each message past the cache drops one, and is counted"
    );
    assert!(
        hub.claim(u.socket.pid.clone().unwrap().as_str(), None, None)
            .is_none()
    );
}

#[tokio::test]
async fn a_full_queue_keeps_what_it_could_not_take() {
    let hub = hub();
    let mut slow = tab_with_queue(&hub, Some("slow"), 2);
    hub.subscribe(&slow.conn, "c", Value::Null).unwrap();
    publish(&hub, "c", 1);
    publish(&hub, "c", 2);
    assert!(slow.socket.engine().is_closing(), "closed as a slow client");
    // The session ends with what was queued; the rest was kept, in order.
    let backlog = backlog_of(&mut slow.rx);
    hub.detach(&slow.conn, &slow.socket, (backlog, 0), true);
    publish(&hub, "c", 3);
    let claim = hub
        .claim(
            slow.socket.pid.clone().unwrap().as_str(),
            None,
            Some("slow"),
        )
        .expect("recoverable");
    let (socket, mut rx) = socket(64);
    hub.attach(&socket, Some(Arc::from("slow")), Some(claim));
    assert_eq!(data(&received(&mut rx)), [json!(1), json!(2), json!(3)]);
}

#[tokio::test]
async fn direct_messages_reach_every_tab_of_an_identity() {
    let hub = hub();
    let mut a1 = tab(&hub, Some("alice"));
    let mut a2 = tab(&hub, Some("alice"));
    let env = Envelope {
        channel: None,
        ..Envelope::message("", None, json!("psst"))
    };
    assert_eq!(hub.send_to("alice", &env, Vec::new()), 2);
    assert_eq!(hub.send_to("nobody", &env, Vec::new()), 0);
    for rx in [&mut a1.rx, &mut a2.rx] {
        let got = received(rx);
        assert_eq!(got[0].0["channel"], Value::Null);
        assert_eq!(got[0].0["data"], "psst");
    }
}

#[tokio::test]
async fn offsets_increase_and_tag_the_items() {
    let hub = hub();
    let mut t = tab(&hub, None);
    hub.subscribe(&t.conn, "c", Value::Null).unwrap();
    publish(&hub, "c", 1);
    let items = backlog_of(&mut t.rx);
    let tags: Vec<u64> = items.iter().map(|i| i.tag).collect();
    assert!(tags[0] > 0 && tags[1] > tags[0]);
    assert_eq!(decode(&items[1]).1, Some(tags[1].to_string()));
}

#[tokio::test]
async fn a_takeover_replays_what_never_left_the_server_but_not_what_did() {
    let hub = hub();
    let mut gone = tab(&hub, Some("kim"));
    hub.subscribe(&gone.conn, "c", Value::Null).unwrap();
    publish(&hub, "c", 1);
    publish(&hub, "c", 2);
    // The session had written the onSubscribe and 1; 2 was still queued.
    let backlog = backlog_of(&mut gone.rx);
    hub.detach(&gone.conn, &gone.socket, (backlog, 2), true);
    publish(&hub, "c", 3);
    let mut back = tab(&hub, Some("kim"));
    assert_eq!(data(&received(&mut back.rx)), [json!(2), json!(3)]);
}

/// A cluster double: records what the hub hands over, settles nothing itself.
#[derive(Default)]
struct Recorder {
    sent: std::sync::Mutex<Vec<(Envelope, Option<String>)>>,
    watched: std::sync::Mutex<Vec<(String, bool)>>,
    changes: std::sync::Mutex<Vec<(String, String, String)>>,
    replies: std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<usize>>>,
}

impl Bus for Recorder {
    fn publish(&self, envelope: &Envelope, _: &[Bytes], to: Option<&str>) {
        let to = to.map(str::to_owned);
        self.sent.lock().unwrap().push((envelope.clone(), to));
    }
    fn watch(&self, channel: &str, on: bool) {
        self.watched.lock().unwrap().push((channel.to_owned(), on));
    }
}

impl Recorder {
    fn settle(&self, what: &str, channel: &str, member: &str) -> Settle {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.replies.lock().unwrap().push(tx);
        let change = (what.to_owned(), channel.to_owned(), member.to_owned());
        self.changes.lock().unwrap().push(change);
        Settle::Later(rx)
    }
}

impl Presence for Recorder {
    fn join(&self, channel: &str, member: &str, _: &Value) -> Settle {
        self.settle("join", channel, member)
    }
    fn leave(&self, channel: &str, member: &str, _: &Value, _: bool) -> Settle {
        self.settle("leave", channel, member)
    }
    fn online(&self, member: &str, on: bool) -> bool {
        let what = if on { "online" } else { "offline" };
        let change = (what.to_owned(), String::new(), member.to_owned());
        self.changes.lock().unwrap().push(change);
        false
    }
    fn channels(&self) -> crate::cluster::Query<Vec<(String, usize)>> {
        None
    }
    fn channel(&self, _: &str) -> crate::cluster::Query<ChannelInfo> {
        None
    }
}

fn clustered() -> (Arc<Hub>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let hub = Hub::new(HubConfig {
        cache_limit: 5,
        grace: Duration::ZERO,
        ..HubConfig::default()
    })
    .with_cluster(rec.clone(), rec.clone());
    (Arc::new(hub), rec)
}

#[tokio::test]
async fn in_a_cluster_membership_waits_for_the_cluster_to_decide() {
    let (hub, rec) = clustered();
    let mut bob = tab(&hub, Some("bob"));
    let Ok(Count::Later(rx, local)) = hub.subscribe(&bob.conn, "chat", Value::Null) else {
        panic!("a cluster decides the count")
    };
    assert_eq!(local, 1);
    // No event until the cluster announces one, and only the first subscriber watches.
    assert!(received(&mut bob.rx).is_empty());
    let mut alice = tab(&hub, Some("alice"));
    assert!(matches!(
        hub.subscribe(&alice.conn, "chat", Value::Null),
        Ok(Count::Later(..))
    ));
    assert_eq!(*rec.watched.lock().unwrap(), [("chat".to_owned(), true)]);
    rec.replies.lock().unwrap().remove(0).send(7).unwrap();
    assert_eq!(rx.await.unwrap(), 7);
    let env = Envelope::membership(
        "chat",
        Some("alice".into()),
        Membership::Subscribe,
        Value::Null,
        7,
    );
    hub.announce(Membership::Subscribe, &env, None, true);
    assert_eq!(
        commands(&received(&mut bob.rx)),
        [("onSubscribe".into(), 7)]
    );
    assert_eq!(
        commands(&received(&mut alice.rx)),
        [("onSubscribe".into(), 7)]
    );

    // A leave is announced to the leaving member's own tabs too, which left the channel.
    assert!(matches!(
        hub.unsubscribe(&alice.conn, "chat", Value::Null),
        Ok(Count::Later(..))
    ));
    let env = Envelope::membership(
        "chat",
        Some("alice".into()),
        Membership::Unsubscribe,
        Value::Null,
        1,
    );
    hub.announce(Membership::Unsubscribe, &env, Some("@alice"), true);
    assert_eq!(
        commands(&received(&mut alice.rx)),
        [("onUnsubscribe".into(), 1)]
    );
    assert_eq!(
        commands(&received(&mut bob.rx)),
        [("onUnsubscribe".into(), 1)]
    );
    let changes = rec.changes.lock().unwrap().clone();
    let names: Vec<_> = changes
        .iter()
        .map(|c| (c.0.as_str(), c.2.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("online", "@bob"),
            ("join", "@bob"),
            ("online", "@alice"),
            ("join", "@alice"),
            ("leave", "@alice")
        ]
    );
}

#[tokio::test]
async fn in_a_cluster_broadcasts_go_to_the_bus_once_and_remote_ones_stay_here() {
    let (hub, rec) = clustered();
    let mut bob = tab(&hub, Some("bob"));
    let _ = hub.subscribe(&bob.conn, "chat", Value::Null);
    publish(&hub, "chat", 1);
    // A channel with no member here still reaches the other nodes.
    publish(&hub, "elsewhere", 2);
    hub.send_to("carol", &Envelope::message("x", None, json!(3)), Vec::new());
    let sent = rec.sent.lock().unwrap().clone();
    let targets: Vec<_> = sent
        .iter()
        .map(|(e, to)| (e.channel.clone(), to.clone(), e.data.clone()))
        .collect();
    assert_eq!(
        targets,
        [
            (Some("chat".into()), None, json!(1)),
            (Some("elsewhere".into()), None, json!(2)),
            (Some("x".into()), Some("carol".into()), json!(3)),
        ]
    );
    // From another node: delivered here, never handed back to the bus.
    hub.deliver(
        &Envelope::message("chat", None, json!(4)),
        Vec::new(),
        None,
        None,
    );
    hub.deliver(
        &Envelope::message("x", None, json!(5)),
        Vec::new(),
        Some("bob"),
        None,
    );
    assert_eq!(data(&received(&mut bob.rx)), [json!(1), json!(4), json!(5)]);
    assert_eq!(rec.sent.lock().unwrap().len(), 3);
    // The last member leaving the channel here stops watching it.
    hub.detach(&bob.conn, &bob.socket, Default::default(), false);
    assert_eq!(
        *rec.watched.lock().unwrap(),
        [("chat".to_owned(), true), ("chat".to_owned(), false)]
    );
    assert_eq!(hub.snapshot(), Snapshot::default());
}

#[tokio::test]
async fn snapshot_lists_what_this_node_holds() {
    let (hub, _rec) = clustered();
    let a = tab(&hub, Some("alice"));
    let anon = tab(&hub, None);
    let _ = hub.subscribe(&a.conn, "x", Value::Null);
    let _ = hub.subscribe(&a.conn, "y", Value::Null);
    let _ = hub.subscribe(&anon.conn, "x", Value::Null);
    let mut snap = hub.snapshot();
    snap.subscriptions.sort();
    snap.members.sort();
    let anon_key = anon.conn.member.key.to_string();
    let mut want = vec![
        ("x".to_owned(), "@alice".to_owned()),
        ("y".to_owned(), "@alice".to_owned()),
        ("x".to_owned(), anon_key.clone()),
    ];
    want.sort();
    assert_eq!(snap.subscriptions, want);
    let mut members = vec!["@alice".to_owned(), anon_key];
    members.sort();
    assert_eq!(snap.members, members);
}

mod exact;
mod handover;
mod history;
mod memory_cluster;
mod resume;
mod takeover;
