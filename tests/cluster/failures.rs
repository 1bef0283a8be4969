//! Nodes that fail: killed with SIGKILL (its members leave within the node timeout),
//! cut off from Redis (serves its own, then resynchronises), frozen past the node timeout
//! (writes its presence back).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::*;
use crate::support::redis::*;
use crate::support::*;

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

#[tokio::test]
async fn a_member_back_on_another_node_within_the_window_is_not_seen_leaving() {
    // The window (8 s) outlasts the node timeout (3 s): the others wait for it.
    let mut c = Cluster::start(3, "[Server]\nreconnect-timeout = 8s\n").await;
    let (a, cc) = (c.port(0), c.port(2));
    let mut erin = Client::connect(a, "erin").await;
    erin.subscribe("room").await;
    let mut dave = Client::connect(c.port(1), "dave").await;
    assert_eq!(dave.subscribe("room").await["count"], 2);
    erin.wait_for(PROPAGATE, |e| is_event(e, "onSubscribe", "room", "dave"))
        .await
        .expect("erin heard dave join");

    kill9(&mut c.nodes[1]);
    drop(dave);
    // dave's client takes longer to come back than the node timeout and a heartbeat: by
    // then the others know node B is dead, but the window is still open.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut dave = Client::connect(cc, "dave").await;
    assert_eq!(dave.subscribe("room").await["count"], 2);
    // Node B is removed once the window is over (8 s + 3 s after its last beat).
    wait_until(Duration::from_secs(15), "node B removed", || {
        c.redis.command(&[b"ZSCORE", b"realtime:nodes", b"b"]) == Resp::Bulk(None)
    });
    let heard = erin.drain(QUIET).await;
    let left: Vec<&Value> = heard
        .iter()
        .filter(|e| is_event(e, "onUnsubscribe", "room", "dave"))
        .collect();
    assert_eq!(
        left,
        Vec::<&Value>::new(),
        "dave was back within the window"
    );
    assert_eq!(
        members(a, "room").await,
        (2, vec!["dave".to_owned(), "erin".to_owned()])
    );
}
