//! A hand-over (SIGUSR1) while Redis is away: the new process keeps the node's sessions
//! and serves them as a node whose Redis is away, then rejoins as the same node once
//! Redis is back. (The hand-over with Redis up, with the stock client on both
//! transports: tests/js/cluster-handover.test.mjs.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::client::*;
use crate::support::redis::*;
use crate::support::*;

#[tokio::test]
async fn a_hand_over_while_redis_is_away_keeps_the_sessions() {
    let mut c = Cluster::start(2, "[Server]\nreconnect-timeout = 10s\n").await;
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
    assert!(
        wait_readyz(a, 503, Duration::from_secs(10)).await,
        "A never saw Redis go"
    );
    let pid = c.nodes[0].pid();
    c.nodes[0].signal(Signal::SIGUSR1);
    c.nodes[0].expect_log(
        "took over the sessions of the previous process",
        Duration::from_secs(10),
    );
    assert_eq!(c.nodes[0].pid(), pid);
    // The sessions go on, on the WebSockets they had (the raw client does not reconnect:
    // a closed socket fails the test), served by this node alone.
    for n in 1..=3u64 {
        let ack = m1
            .request(&format!(r#""publish","room",{{"n":{n}}}"#))
            .await;
        assert_eq!(ack, json!({"ok": true}), "publish {n} after the hand-over");
        assert_eq!(m2.numbers(1, PROPAGATE).await, vec![n], "m2 got {n}");
    }
    let (status, _) = api(a, "GET", "/readyz", "").await;
    assert_eq!(status, 503, "the new process knows Redis is away");

    c.redis.restart();
    assert!(
        wait_readyz(a, 200, Duration::from_secs(10)).await,
        "A never rejoined; log:\n{}",
        c.nodes[0].log()
    );
    assert!(
        wait_readyz(b, 200, Duration::from_secs(10)).await,
        "B never rejoined"
    );
    // The same node: written back under its id, B counts A's members again.
    let names = ["m1", "m2", "x"].map(str::to_owned).to_vec();
    assert_eq!(wait_members(b, "room", 3, PROPAGATE).await, (3, names));
    let joined = c.nodes[0]
        .log()
        .matches("joining the cluster through Redis node=a")
        .count();
    assert_eq!(joined, 2, "both processes were node a");
    // And the cluster delivers to the handed-over sessions again.
    x.drain(Duration::from_millis(300)).await;
    let ack = x.request(r#""publish","room",{"n":9}"#).await;
    assert_eq!(ack, json!({"ok": true}));
    assert_eq!(m2.numbers(1, PROPAGATE).await, vec![9], "m2 hears B again");
    // m1 heard its own publishes too.
    assert_eq!(m1.numbers(4, PROPAGATE).await, vec![1, 2, 3, 9]);
}
