//! Delivery across nodes sharing a real `redis-server`: channel messages exactly once
//! and in order, direct messages to every node, and garbage published on the bus dropped
//! with a warning. Every test has its own Redis and nodes; every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::*;
use crate::support::redis::*;
use crate::support::*;

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
async fn numbers_cross_the_bus_as_published() {
    // Written in the form the server writes back (an exponent as `e+`), so the text
    // must come back byte for byte.
    const NUMBERS: &str = "[12345678901234567890123,100000000000000000000,-0,1.5e+3,\
        0.9049426916855675,0.41413233367384084,3.141592653589793238462643383279]";
    let c = Cluster::start(2, "").await;
    let mut sub = Client::connect(c.port(1), "sub").await;
    assert_eq!(sub.subscribe("room").await["count"], 1);
    let mut publisher = Client::connect(c.port(0), "pub").await;
    assert_eq!(publisher.subscribe("room").await["count"], 2);
    publisher
        .ws
        .send(Message::text(format!(r#"42["publish","room",{NUMBERS}]"#)))
        .await
        .unwrap();
    let body = format!(
        r#"{{"channel":"room","type":"command","data":{{"command":"poke","options":{NUMBERS}}}}}"#
    );
    assert_eq!(api(c.port(0), "POST", "/api/publish", &body).await.0, 200);
    let got = sub.drain(QUIET).await;
    let message: Vec<String> = got
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["data"].to_string())
        .collect();
    assert_eq!(message, [NUMBERS], "{got:?}");
    let options: Vec<String> = got
        .iter()
        .filter(|e| e["data"]["command"] == "poke")
        .map(|e| e["data"]["options"].to_string())
        .collect();
    assert_eq!(options, [NUMBERS], "{got:?}");
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
