//! Channel history with nodes of the real binary sharing a `redis-server`: the history is
//! kept in Redis, and every node answers the same, with the cluster's offsets.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::*;
use crate::support::redis::*;
use crate::support::*;

#[tokio::test]
async fn a_node_keeps_what_reached_its_members_from_other_nodes() {
    let c = Cluster::start(2, "[Messaging]\nhistory-size = 5\n").await;
    let (a, b) = (c.port(0), c.port(1));
    let mut sub = Client::connect(b, "sub").await;
    sub.subscribe("room").await;
    let body: Vec<Value> = (0..3)
        .map(|n| json!({"channel": "room", "data": {"n": n}}))
        .collect();
    let (status, _) = api(a, "POST", "/api/publish", &Value::from(body).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(sub.numbers(3, Duration::from_secs(10)).await, [0, 1, 2]);

    for (node, port) in [("a, where it was published", a), ("b, by its member", b)] {
        let (status, h) = api(port, "GET", "/api/channels/room/history", "").await;
        assert_eq!(status, 200, "{node}: {h}");
        let ns: Vec<&Value> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["data"]["n"])
            .collect();
        assert_eq!(ns, [0, 1, 2], "{node}: {h}");
        assert_eq!(h["complete"], true, "{node}: {h}");
    }

    // The event on b, after the first message's offset there.
    let all = sub.request(r#""history",{"channel":"room"}"#).await;
    let first = all["messages"][0]["offset"].as_str().unwrap().to_owned();
    let after = sub
        .request(&format!(
            r#""history",{{"channel":"room","since":"{first}"}}"#
        ))
        .await;
    let ns: Vec<&Value> = after["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["data"]["n"])
        .collect();
    assert_eq!(ns, [1, 2], "{after}");
}

#[tokio::test]
async fn every_node_gives_the_same_history_bounded_by_count() {
    let c = Cluster::start(2, "[Messaging]\nhistory-size = 3\n").await;
    let (a, b) = (c.port(0), c.port(1));
    // Nobody is subscribed anywhere: the history is the cluster's, not a node's.
    for n in 0..5 {
        let body = json!({"channel": "quiet", "data": {"n": n}}).to_string();
        assert_eq!(api(a, "POST", "/api/publish", &body).await.0, 200);
    }
    let (_, on_a) = api(a, "GET", "/api/channels/quiet/history", "").await;
    let (_, on_b) = api(b, "GET", "/api/channels/quiet/history", "").await;
    assert_eq!(on_a, on_b, "the same answer on every node");
    let ns = |h: &Value| -> Vec<Value> {
        let list = h["messages"].as_array().unwrap();
        list.iter().map(|m| m["data"]["n"].clone()).collect()
    };
    assert_eq!(ns(&on_b), [json!(2), json!(3), json!(4)], "{on_b}");
    assert_eq!(on_b["complete"], false, "two left it: {on_b}");
    assert_eq!(on_b["offset"], on_b["messages"][2]["offset"], "{on_b}");

    // After the oldest kept one: the rest, nothing missing.
    let since = on_b["messages"][0]["offset"].as_str().unwrap().to_owned();
    let path = format!("/api/channels/quiet/history?since={since}&limit=1");
    let (_, h) = api(b, "GET", &path, "").await;
    assert_eq!(ns(&h), [json!(3)], "{h}");
    assert_eq!(
        (&h["complete"], &h["more"]),
        (&json!(true), &json!(true)),
        "{h}"
    );
    // Before what left it: what is kept, and not complete.
    let (_, h) = api(a, "GET", "/api/channels/quiet/history?since=1", "").await;
    assert_eq!(ns(&h), [json!(2), json!(3), json!(4)], "{h}");
    assert_eq!(h["complete"], false, "{h}");
}
