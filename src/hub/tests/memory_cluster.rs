//! Several nodes in one process on the in-memory cluster, with paused time: delivery across
//! nodes, one member across nodes, a dead node's members, and a node that loses the bus.

use std::sync::Mutex;

use super::*;
use crate::cluster::{MemoryBackplane, MemoryCluster};
use crate::config::ClusterConfig;

const HEARTBEAT: Duration = Duration::from_secs(1);
const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// Hears what a hub reports: (event, identity).
#[derive(Default)]
struct Heard(Mutex<Vec<(HubEvent, Option<String>)>>);

impl Observer for Heard {
    fn wants(&self, event: HubEvent) -> bool {
        !matches!(event, HubEvent::Message | HubEvent::Command)
    }
    fn observe(&self, event: HubEvent, envelope: &Envelope) {
        let who = envelope.identity.as_deref().map(str::to_owned);
        self.0.lock().unwrap().push((event, who));
    }
}

impl Heard {
    fn of(&self, event: HubEvent, identity: &str) -> usize {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(e, who)| *e == event && who.as_deref() == Some(identity))
            .count()
    }
}

struct Node {
    hub: Arc<Hub>,
    cluster: Arc<MemoryCluster>,
    heard: Arc<Heard>,
}

fn node(backplane: &Arc<MemoryBackplane>, name: &str) -> Node {
    node_with(backplane, name, Notices::default())
}

fn node_with(backplane: &Arc<MemoryBackplane>, name: &str, notices: Notices) -> Node {
    let config = ClusterConfig {
        node_id: Some(name.to_owned()),
        heartbeat: HEARTBEAT,
        node_timeout: NODE_TIMEOUT,
        ..ClusterConfig::default()
    };
    let (cluster, worker) = MemoryCluster::join(backplane, &config);
    let heard = Arc::new(Heard::default());
    let hub = Hub::new(HubConfig {
        grace: Duration::ZERO,
        notices,
        ..HubConfig::default()
    })
    .with_cluster(cluster.clone(), cluster.clone())
    .with_observer(heard.clone());
    let hub = Arc::new(hub);
    worker.start(hub.clone());
    Node {
        hub,
        cluster,
        heard,
    }
}

/// Lets every worker run what is queued; with paused time this advances the clock only
/// by `d`, so heartbeats run exactly when they are due.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

async fn settle() {
    run_for(Duration::from_millis(10)).await;
}

/// Subscribes and waits for the cluster's count.
async fn join(hub: &Hub, tab: &Tab, channel: &str) -> usize {
    match hub.subscribe(&tab.conn, channel, Value::Null) {
        Ok(Count::Later(rx, _)) => rx.await.unwrap(),
        other => panic!("a cluster decides the count, got {other:?}"),
    }
}

/// Membership events a tab heard: (command, identity, count).
fn events(rx: &mut Arc<Queue>) -> Vec<(String, String, u64)> {
    events_in(&received(rx))
}

fn events_in(items: &[(Value, Option<String>)]) -> Vec<(String, String, u64)> {
    items
        .iter()
        .filter(|(e, _)| e["type"] == "command")
        .map(|(e, _)| {
            (
                e["data"]["command"].as_str().unwrap().to_owned(),
                e["identity"].as_str().unwrap_or("").to_owned(),
                e["data"]["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn ev(command: &str, identity: &str, count: u64) -> (String, String, u64) {
    (command.to_owned(), identity.to_owned(), count)
}

async fn cluster_members(hub: &Hub, channel: &str) -> Vec<String> {
    let query = hub.presence().channel(channel).unwrap();
    query.await.unwrap().identities
}

#[tokio::test(start_paused = true)]
async fn broadcasts_cross_nodes_exactly_once_and_in_order() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    settle().await;
    let mut alice = tab_with_queue(&a.hub, Some("alice"), 1024);
    let mut bob = tab_with_queue(&b.hub, Some("bob"), 1024);
    join(&a.hub, &alice, "chat").await;
    assert_eq!(join(&b.hub, &bob, "chat").await, 2);
    settle().await;
    for n in 0..200 {
        let from_a = Envelope::message("chat", None, json!({"from": "a", "n": n}));
        a.hub.publish(&from_a, Vec::new());
        let from_b = Envelope::message("chat", None, json!({"from": "b", "n": n}));
        b.hub.publish(&from_b, Vec::new());
    }
    settle().await;
    let expect: Vec<i64> = (0..200).collect();
    for tab in [&mut alice, &mut bob] {
        let got = data(&received(&mut tab.rx));
        assert_eq!(got.len(), 400, "each message once");
        for origin in ["a", "b"] {
            let ns: Vec<i64> = got
                .iter()
                .filter(|d| d["from"] == origin)
                .map(|d| d["n"].as_i64().unwrap())
                .collect();
            assert_eq!(ns, expect, "messages from {origin} in order");
        }
    }
    // A direct message reaches the identity on the other node too.
    a.hub.send_to(
        "bob",
        &Envelope::message("x", None, json!("psst")),
        Vec::new(),
    );
    settle().await;
    assert_eq!(data(&received(&mut bob.rx)), [json!("psst")]);
}

#[tokio::test(start_paused = true)]
async fn an_identity_with_tabs_on_two_nodes_is_one_member() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    settle().await;
    let mut carol = tab(&b.hub, Some("carol"));
    assert_eq!(join(&b.hub, &carol, "room").await, 1);
    let alice_a = tab(&a.hub, Some("alice"));
    assert_eq!(join(&a.hub, &alice_a, "room").await, 2);
    settle().await;
    // The second tab, on the other node, is in the room already (it follows its
    // identity) and asking again changes nothing.
    let mut alice_b = tab(&b.hub, Some("alice"));
    settle().await;
    assert_eq!(b.hub.count("room"), 2);
    assert_eq!(join(&b.hub, &alice_b, "room").await, 2);
    settle().await;
    assert_eq!(
        events(&mut carol.rx),
        [ev("onSubscribe", "carol", 1), ev("onSubscribe", "alice", 2)]
    );
    assert!(events(&mut alice_b.rx).is_empty());
    assert_eq!(cluster_members(&a.hub, "room").await, ["alice", "carol"]);
    let heard = |event, who| a.heard.of(event, who) + b.heard.of(event, who);
    assert_eq!(heard(HubEvent::Connect, "alice"), 1);
    assert_eq!(heard(HubEvent::Subscribe, "alice"), 1);

    // One tab going leaves the member in: no event anywhere.
    a.hub
        .detach(&alice_a.conn, &alice_a.socket, Default::default(), false);
    settle().await;
    assert!(events(&mut carol.rx).is_empty());
    assert_eq!(cluster_members(&b.hub, "room").await, ["alice", "carol"]);
    assert_eq!(heard(HubEvent::Disconnect, "alice"), 0);
    // The last tab going is the member leaving, once.
    b.hub
        .detach(&alice_b.conn, &alice_b.socket, Default::default(), false);
    settle().await;
    assert_eq!(events(&mut carol.rx), [ev("onUnsubscribe", "alice", 1)]);
    assert_eq!(heard(HubEvent::Unsubscribe, "alice"), 1);
    assert_eq!(heard(HubEvent::Disconnect, "alice"), 1);
}

#[tokio::test(start_paused = true)]
async fn every_tab_of_an_identity_hears_its_join_once_on_every_node() {
    let backplane = MemoryBackplane::new();
    let (a, b, c) = (
        node(&backplane, "a"),
        node(&backplane, "b"),
        node(&backplane, "c"),
    );
    settle().await;
    // B watches the room (carol is in it); C has nobody there, so it hears no event on
    // the room at all.
    let mut carol = tab(&b.hub, Some("carol"));
    assert_eq!(join(&b.hub, &carol, "room").await, 1);
    let mut alice_b = tab(&b.hub, Some("alice"));
    let mut alice_c = tab(&c.hub, Some("alice"));
    let mut alice_a = tab(&a.hub, Some("alice"));
    settle().await;
    events(&mut carol.rx);
    assert_eq!(join(&a.hub, &alice_a, "room").await, 2);
    settle().await;
    let joined = [ev("onSubscribe", "alice", 2)];
    assert_eq!(events(&mut carol.rx), joined);
    for (at, tab) in [
        ("a", &mut alice_a),
        ("b", &mut alice_b),
        ("c", &mut alice_c),
    ] {
        assert_eq!(events(&mut tab.rx), joined, "alice's tab on {at}");
    }
    assert_eq!((b.hub.count("room"), c.hub.count("room")), (2, 1));
    // Her next join, from the tab on C, is news again once she left.
    c.hub
        .unsubscribe(&alice_c.conn, "room", Value::Null)
        .expect("alice unsubscribes from C");
    settle().await;
    for tab in [&mut carol, &mut alice_a, &mut alice_b, &mut alice_c] {
        assert_eq!(events(&mut tab.rx), [ev("onUnsubscribe", "alice", 1)]);
    }
    assert_eq!(join(&c.hub, &alice_c, "room").await, 2);
    settle().await;
    for tab in [&mut carol, &mut alice_a, &mut alice_b, &mut alice_c] {
        assert_eq!(events(&mut tab.rx), joined);
    }
}

#[tokio::test(start_paused = true)]
async fn the_notices_rule_holds_on_every_node_with_the_clusters_count() {
    let backplane = MemoryBackplane::new();
    let notices = Notices {
        quiet: vec!["quiet.*".to_owned()],
        max_members: 2,
    };
    let (a, b) = (
        node_with(&backplane, "a", notices.clone()),
        node_with(&backplane, "b", notices),
    );
    settle().await;
    let mut bob = tab(&b.hub, Some("bob"));
    join(&b.hub, &bob, "quiet.room").await;
    assert_eq!(join(&b.hub, &bob, "big").await, 1);
    let alice = tab(&a.hub, Some("alice"));
    join(&a.hub, &alice, "quiet.room").await;
    assert_eq!(join(&a.hub, &alice, "big").await, 2);
    let carol = tab(&a.hub, Some("carol"));
    // The third member passes the limit: B holds one member, the cluster three.
    assert_eq!(join(&a.hub, &carol, "big").await, 3);
    settle().await;
    assert_eq!(
        events(&mut bob.rx),
        [ev("onSubscribe", "bob", 1), ev("onSubscribe", "alice", 2)],
        "bob heard only big's notices, up to two members"
    );
    // The observer hears every change either way.
    assert_eq!(a.heard.of(HubEvent::Subscribe, "carol"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_nodes_members_are_removed_after_the_node_timeout() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    settle().await;
    let mut carol = tab(&b.hub, Some("carol"));
    join(&b.hub, &carol, "room").await;
    let alice_a = tab(&a.hub, Some("alice"));
    join(&a.hub, &alice_a, "room").await;
    let _alice_b = tab(&b.hub, Some("alice"));
    let dave = tab(&a.hub, Some("dave"));
    assert_eq!(join(&a.hub, &dave, "room").await, 3);
    settle().await;
    received(&mut carol.rx);

    // Node a stops beating (as if killed): nothing happens before the timeout...
    backplane.cut("a", true);
    run_for(NODE_TIMEOUT - HEARTBEAT).await;
    assert!(events(&mut carol.rx).is_empty());
    assert_eq!(b.heard.of(HubEvent::Unsubscribe, "dave"), 0);
    // ...then its members leave, announced once; alice has a tab on b and stays.
    run_for(HEARTBEAT * 2).await;
    assert_eq!(events(&mut carol.rx), [ev("onUnsubscribe", "dave", 2)]);
    assert_eq!(b.heard.of(HubEvent::Unsubscribe, "dave"), 1);
    assert_eq!(b.heard.of(HubEvent::Disconnect, "dave"), 1);
    assert_eq!(b.heard.of(HubEvent::Unsubscribe, "alice"), 0);
    assert_eq!(b.heard.of(HubEvent::Disconnect, "alice"), 0);
    assert_eq!(cluster_members(&b.hub, "room").await, ["alice", "carol"]);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_loses_the_bus_serves_its_own_and_resyncs_when_back() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    settle().await;
    let mut carol = tab(&b.hub, Some("carol"));
    join(&b.hub, &carol, "room").await;
    let mut alice = tab(&a.hub, Some("alice"));
    assert_eq!(join(&a.hub, &alice, "room").await, 2);
    settle().await;
    received(&mut carol.rx);
    received(&mut alice.rx);

    backplane.cut("a", true);
    // Node a settles alone: a newcomer there is counted and announced on a only.
    let erin = tab(&a.hub, Some("erin"));
    settle().await;
    assert_eq!(join(&a.hub, &erin, "room").await, 2);
    publish(&a.hub, "room", 1);
    publish(&b.hub, "room", 2);
    settle().await;
    let got = received(&mut alice.rx);
    assert_eq!(events_in(&got), [ev("onSubscribe", "erin", 2)]);
    assert_eq!(data(&got), [json!(1)]);
    // The other node removes a's members once a is silent for the node timeout.
    run_for(NODE_TIMEOUT + HEARTBEAT).await;
    let got = received(&mut carol.rx);
    assert_eq!(events_in(&got), [ev("onUnsubscribe", "alice", 1)]);
    assert_eq!(data(&got), [json!(2)]);
    assert_eq!(cluster_members(&b.hub, "room").await, ["carol"]);

    // Back on the bus: a writes its presence back; b counts and announces its members.
    backplane.cut("a", false);
    run_for(HEARTBEAT * 3).await;
    assert_eq!(
        cluster_members(&b.hub, "room").await,
        ["alice", "carol", "erin"]
    );
    let mut heard = events(&mut carol.rx);
    heard.sort();
    assert_eq!(
        heard,
        [ev("onSubscribe", "alice", 3), ev("onSubscribe", "erin", 3)]
    );
    // The monitor hears of erin once, when the cluster learns of it.
    let erin_joined =
        a.heard.of(HubEvent::Subscribe, "erin") + b.heard.of(HubEvent::Subscribe, "erin");
    assert_eq!(erin_joined, 1);
    publish(&b.hub, "room", 3);
    settle().await;
    assert_eq!(data(&received(&mut alice.rx)), [json!(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_departing_node_takes_its_members_out_at_once() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    settle().await;
    assert!(a.cluster.is_up() && b.cluster.is_up());
    let mut carol = tab(&b.hub, Some("carol"));
    join(&b.hub, &carol, "room").await;
    let dave = tab(&a.hub, Some("dave"));
    assert_eq!(join(&a.hub, &dave, "room").await, 2);
    settle().await;
    received(&mut carol.rx);
    a.cluster.depart(Duration::from_secs(1)).await;
    settle().await;
    // Well before the node timeout.
    assert_eq!(events(&mut carol.rx), [ev("onUnsubscribe", "dave", 1)]);
    assert_eq!(cluster_members(&b.hub, "room").await, ["carol"]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// A payload crosses to the other node as it was sent.
    #[test]
    fn a_payload_crosses_nodes_as_it_was_sent(d in crate::json_doc::doc()) {
        let sent: Value = serde_json::from_str(&d.text()).unwrap();
        let mut got = Vec::new();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let backplane = MemoryBackplane::new();
                let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
                settle().await;
                let alice = tab(&a.hub, Some("alice"));
                let mut bob = tab(&b.hub, Some("bob"));
                join(&a.hub, &alice, "chat").await;
                join(&b.hub, &bob, "chat").await;
                settle().await;
                a.hub.publish(&Envelope::message("chat", None, sent), Vec::new());
                settle().await;
                got = data(&received(&mut bob.rx));
            });
        proptest::prop_assert_eq!(got.len(), 1);
        proptest::prop_assert!(d.is(&got[0]), "sent {}\ngot  {}", d.text(), got[0]);
    }
}
