//! A session of another node resumed here, over a bus that numbers broadcasts: held while
//! the log is read, then the replay, then what arrived meanwhile, each once, in order.

use std::sync::Mutex;

use tokio::sync::oneshot;

use super::*;
use crate::cluster::{ClusterError, Query, Replay, Replayed};

type Asked = (
    String,
    String,
    u64,
    oneshot::Sender<Result<Vec<Replayed>, ClusterError>>,
);

/// A sequenced bus double: the test plays the log.
#[derive(Default)]
struct Log {
    rec: Recorder,
    asked: Mutex<Vec<Asked>>,
}

impl Bus for Log {
    fn publish(&self, envelope: &Envelope, attachments: &[Bytes], to: Option<&str>) {
        self.rec.publish(envelope, attachments, to);
    }
    fn watch(&self, channel: &str, on: bool) {
        self.rec.watch(channel, on);
    }
    fn sequenced(&self) -> bool {
        true
    }
    fn replayable(&self, offset: u64) -> bool {
        offset >= 100
    }
    fn resume(&self, pid: &str, member: &str, offset: u64) -> Option<Replay> {
        let (tx, rx) = oneshot::channel();
        let ask = (pid.to_owned(), member.to_owned(), offset, tx);
        self.asked.lock().unwrap().push(ask);
        Some(rx)
    }
}

impl Presence for Log {
    fn join(&self, channel: &str, member: &str, options: &Value) -> Settle {
        self.rec.join(channel, member, options)
    }
    fn leave(&self, channel: &str, member: &str, options: &Value, explicit: bool) -> Settle {
        self.rec.leave(channel, member, options, explicit)
    }
    fn online(&self, member: &str, on: bool) -> bool {
        self.rec.online(member, on)
    }
    fn channels(&self) -> Query<Vec<(String, usize)>> {
        None
    }
    fn channel(&self, _: &str) -> Query<ChannelInfo> {
        None
    }
}

fn sequenced() -> (Arc<Hub>, Arc<Log>) {
    let log = Arc::new(Log::default());
    let hub = Hub::new(HubConfig {
        cache_limit: 5,
        ..HubConfig::default()
    })
    .with_cluster(log.clone(), log.clone());
    (Arc::new(hub), log)
}

fn message(n: i64, offset: u64) -> Replayed {
    Replayed {
        envelope: Envelope::message("chat", None, json!(n)),
        attachments: Vec::new(),
        to: None,
        offset,
    }
}

fn deliver(hub: &Hub, n: i64, offset: u64) {
    let m = message(n, offset);
    hub.deliver(&m.envelope, Vec::new(), None, Some(offset));
}

/// A connection that presents `resume`'s session.
fn resuming(hub: &Arc<Hub>, identity: &str, pid: &str, offset: u64) -> Option<Tab> {
    let resume = hub.resumable(pid, Some(offset))?;
    let rx = Arc::new(Queue::bounded(64, 64));
    let socket = socket_on(&rx, resume.sid.clone(), resume.pid.clone());
    let conn = hub.attach_as(&socket, Some(Arc::from(identity)), None, false);
    hub.resume(&conn, &socket, resume);
    Some(Tab { socket, rx, conn })
}

async fn settled(what: impl Fn() -> bool) {
    for _ in 0..1000 {
        if what() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never settled");
}

#[tokio::test]
async fn on_a_sequenced_bus_the_hub_delivers_what_the_bus_hands_back() {
    let (hub, log) = sequenced();
    let mut bob = tab(&hub, Some("bob"));
    let _ = hub.subscribe(&bob.conn, "chat", Value::Null);
    received(&mut bob.rx);
    publish(&hub, "chat", 1);
    assert_eq!(received(&mut bob.rx), [], "delivered once it comes back");
    assert_eq!(log.rec.sent.lock().unwrap().len(), 1);
    deliver(&hub, 1, 1 << 20);
    let got = received(&mut bob.rx);
    assert_eq!(data(&got), [json!(1)]);
    assert_eq!(got[0].1.as_deref(), Some("1048576"), "the bus's offset");
    // What the hub sends itself has no offset: a client's offset names a broadcast.
    let env = Envelope::membership("chat", None, Membership::Subscribe, Value::Null, 2);
    hub.announce(Membership::Subscribe, &env, None, false);
    assert_eq!(received(&mut bob.rx)[0].1, None);
    // Its new sessions have pids that carry their session id.
    let (sid, pid) = hub.new_session();
    let sid = sid.unwrap();
    assert!(pid.as_str().starts_with(&format!("{sid}.")));
}

#[tokio::test]
async fn a_session_of_another_node_gets_what_it_missed_once_in_order() {
    let (hub, log) = sequenced();
    assert!(
        hub.resumable("plain-pid", Some(100)).is_none(),
        "not a cluster pid"
    );
    assert!(
        hub.resumable("s.p", None).is_none(),
        "no offset to start from"
    );
    assert!(hub.resumable("s.p", Some(99)).is_none(), "before the log");
    let mut alice = resuming(&hub, "alice", "old-sid.secret", 100).unwrap();
    assert_eq!(alice.socket.sid.as_str(), "old-sid");
    let (pid, member, offset, reply) = log.asked.lock().unwrap().pop().unwrap();
    assert_eq!(
        (pid.as_str(), member.as_str(), offset),
        ("old-sid.secret", "@alice", 100)
    );
    // The cluster adopts her channels; what arrives meanwhile waits.
    hub.adopt("@alice", "chat");
    deliver(&hub, 3, 103);
    deliver(&hub, 4, 104);
    assert_eq!(received(&mut alice.rx), []);
    // The log was read after 103 was published, before 104.
    let entries = vec![message(1, 101), message(2, 102), message(3, 103)];
    reply.send(Ok(entries)).unwrap();
    settled(|| hub.counters.recovered.load(Ordering::Relaxed) == 1).await;
    // 103 reaches this node late (after the replay had it): not twice.
    deliver(&hub, 3, 103);
    deliver(&hub, 5, 105);
    let got = received(&mut alice.rx);
    assert_eq!(
        data(&got),
        [json!(1), json!(2), json!(3), json!(4), json!(5)]
    );
    let offsets: Vec<_> = got.iter().map(|(_, o)| o.clone().unwrap()).collect();
    assert_eq!(offsets, ["101", "102", "103", "104", "105"]);
}

#[tokio::test]
async fn a_session_the_log_cannot_replay_is_closed_and_not_tried_again() {
    let (hub, log) = sequenced();
    let mut bob = resuming(&hub, "bob", "sid.secret", 100).unwrap();
    hub.adopt("@bob", "chat");
    deliver(&hub, 7, 107);
    let (_, _, _, reply) = log.asked.lock().unwrap().pop().unwrap();
    reply
        .send(Err(ClusterError::Unrecoverable("trimmed")))
        .unwrap();
    settled(|| bob.socket.engine().is_closing()).await;
    assert_eq!(
        data(&received(&mut bob.rx)),
        Vec::<Value>::new(),
        "nothing passed off"
    );
    assert!(hub.resumable("sid.secret", Some(100)).is_none());
    assert_eq!(hub.count("chat"), 0, "the session is over");
}

#[tokio::test]
async fn a_resumed_session_leaves_the_identitys_waiting_one_alone() {
    let (hub, log) = sequenced();
    // carol's tab on this node dropped; it waits out its window, keeping what arrives.
    let tab = tab(&hub, Some("carol"));
    let _ = hub.subscribe(&tab.conn, "chat", Value::Null);
    hub.detach(&tab.conn, &tab.socket, Default::default(), true);
    deliver(&hub, 1, 101);
    // Her tab from a dead node comes back here: it gets the log's replay only.
    let mut moved = resuming(&hub, "carol", "old.secret", 100).unwrap();
    let (_, _, _, reply) = log.asked.lock().unwrap().pop().unwrap();
    reply.send(Ok(vec![message(1, 101)])).unwrap();
    settled(|| hub.counters.recovered.load(Ordering::Relaxed) == 1).await;
    assert_eq!(data(&received(&mut moved.rx)), [json!(1)], "once");
    // The waiting tab is still there for its own client.
    let st = moved.conn.member.state.lock().unwrap();
    assert!(st.slots.iter().any(|s| s.detached_epoch().is_some()));
}
