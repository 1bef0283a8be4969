//! Cluster-wide presence: an identity's subscriptions follow it across nodes, and an
//! identity with tabs on two nodes is one member (events and webhooks fire once).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::*;
use crate::support::redis::*;
use crate::support::*;

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

    // tab_b never subscribed: the subscription is alice's, so it hears the room, and
    // her join once, before the message, as tab_a does. Node B had nobody in the room:
    // it heard the join with the control message that joined her tab, not on the room.
    bob.publish_now("room", &json!({"n": 1})).await;
    for who in [&mut tab_a, &mut tab_b] {
        assert_eq!(who.numbers(1, PROPAGATE).await, vec![1], "{}", who.name);
        let before = std::mem::take(&mut who.seen);
        let events = membership_events(&before);
        assert_eq!(events.len(), 1, "{}: {events:?}", who.name);
        assert!(is_event(events[0], "onSubscribe", "room", "alice"));
        assert_eq!(events[0]["data"]["count"], 2, "{}", who.name);
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

/// `quiet-channels` and `notices-max-members` hold for the members on every node, with
/// the cluster's member count: a node holding few of a channel's members does not tell
/// them what the deciding node kept quiet.
#[tokio::test]
async fn the_notices_rule_holds_on_every_node() {
    let c = Cluster::start(
        2,
        "[Messaging]\nquiet-channels = quiet.*\nnotices-max-members = 2\n",
    )
    .await;
    let (a, b) = (c.port(0), c.port(1));
    let mut bob = Client::connect(b, "bob").await;
    bob.subscribe("quiet.room").await;
    bob.subscribe("big").await;
    let mut alice = Client::connect(a, "alice").await;
    alice.subscribe("quiet.room").await;
    assert_eq!(alice.subscribe("big").await["count"], 2);
    let mut carol = Client::connect(a, "carol").await;
    assert_eq!(carol.subscribe("big").await["count"], 3);
    // Published after every join was settled, so any notice would come before it.
    for channel in ["quiet.room", "big"] {
        carol.publish_now(channel, &json!({"n": 1})).await;
        alice.publish_now(channel, &json!({"n": 2})).await;
    }
    let mut got = bob.numbers(4, PROPAGATE).await;
    got.sort_unstable();
    assert_eq!(got, [1, 1, 2, 2]);
    let heard: Vec<(String, String, u64)> = membership_events(&bob.seen)
        .into_iter()
        .map(|e| {
            let who = e["identity"].as_str().unwrap_or_default().to_owned();
            let channel = e["channel"].as_str().unwrap_or_default().to_owned();
            (channel, who, e["data"]["count"].as_u64().unwrap_or(0))
        })
        .collect();
    let told = |who: &str, count| ("big".to_owned(), who.to_owned(), count);
    assert_eq!(
        heard,
        [told("bob", 1), told("alice", 2)],
        "only big, up to two"
    );
}
