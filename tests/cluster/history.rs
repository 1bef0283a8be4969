//! Channel history with nodes of the real binary sharing a `redis-server`: a node answers
//! from what it delivered, what other nodes published to its members included.
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
