//! Channel history: what is kept (count, age, offsets as members saw them), for which
//! channels, and the `history` event with its refusals.

use super::*;
use crate::auth::Channels;
use crate::cluster::{MemoryBackplane, MemoryCluster};
use crate::config::ClusterConfig;
use crate::socketio::{App, Event};

fn keeping(size: usize, grace: Duration) -> Arc<Hub> {
    Arc::new(Hub::new(HubConfig {
        grace,
        history_size: size,
        history_ttl: Duration::from_secs(10),
        ..HubConfig::default()
    }))
}

/// (offset, data) of an answer's messages.
fn kept(h: &crate::cluster::History) -> Vec<(u64, Value)> {
    h.messages
        .iter()
        .map(|(o, e)| (*o, e.data.clone()))
        .collect()
}

fn offsets(items: &[(Value, Option<String>)]) -> Vec<u64> {
    items
        .iter()
        .map(|(_, o)| o.as_deref().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn the_last_messages_are_kept_with_the_offsets_members_saw() {
    let hub = keeping(3, Duration::from_secs(8));
    let mut t = tab(&hub, None);
    hub.subscribe(&t.conn, "c", Value::Null).unwrap();
    received(&mut t.rx);
    for n in 1..=5 {
        publish(&hub, "c", n);
    }
    let seen = offsets(&received(&mut t.rx));
    let last3: Vec<(u64, Value)> = (2..5).map(|i| (seen[i], json!(i + 1))).collect();

    let h = hub.local_history("c", None, 100);
    assert_eq!(kept(&h), last3);
    assert_eq!(h.offset, seen[4]);
    assert!(!h.complete, "two messages left the ring");
    assert!(!h.more);

    // After an offset still kept: what followed it, complete.
    let h = hub.local_history("c", Some(seen[2]), 100);
    assert_eq!(kept(&h), last3[1..]);
    assert!(h.complete);
    // After an offset that left: everything kept, not complete.
    let h = hub.local_history("c", Some(seen[0]), 100);
    assert_eq!((kept(&h), h.complete), (last3.clone(), false));
    // Up to date: nothing, complete.
    let h = hub.local_history("c", Some(h.offset), 100);
    assert!(h.messages.is_empty() && h.complete);

    // A limit takes the oldest after `since`, the newest without it.
    let h = hub.local_history("c", Some(seen[1]), 2);
    assert_eq!((kept(&h), h.more), (last3[..2].to_vec(), true));
    let h = hub.local_history("c", None, 1);
    assert_eq!((kept(&h), h.more), (last3[2..].to_vec(), true));

    // An offset ahead of this node's (a restart): everything kept, not complete.
    let h = hub.local_history("c", Some(seen[4] + 100), 100);
    assert_eq!((kept(&h), h.complete), (last3, false));
}

#[tokio::test]
async fn a_channel_is_kept_once_published_to_even_without_members() {
    let hub = keeping(5, Duration::from_secs(8));
    publish(&hub, "empty", 1);
    let h = hub.local_history("empty", None, 100);
    assert_eq!(kept(&h).len(), 1);
    assert!(h.complete);
    // Never published to: nothing kept, no ring made.
    let h = hub.local_history("quiet", None, 100);
    assert!(h.messages.is_empty() && h.complete);
    assert!(!has_ring(&hub, "quiet"));
    // Membership events and binary messages are not kept.
    let t = tab(&hub, None);
    hub.subscribe(&t.conn, "empty", Value::Null).unwrap();
    let binary = Envelope::message("empty", None, json!({"_placeholder": true, "num": 0}));
    hub.publish(&binary, vec![Bytes::from_static(b"x")]);
    assert_eq!(kept(&hub.local_history("empty", None, 100)).len(), 1);
}

fn has_ring(hub: &Hub, channel: &str) -> bool {
    hub.shard(channel)
        .history
        .lock()
        .unwrap()
        .rings
        .contains_key(channel)
}

#[tokio::test(start_paused = true)]
async fn messages_age_out_and_quiet_channels_are_dropped() {
    let hub = keeping(100, Duration::from_secs(8));
    publish(&hub, "c", 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    publish(&hub, "c", 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let h = hub.local_history("c", None, 100);
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.messages[0].1.data, json!(2));
    assert!(!h.complete);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(hub.local_history("c", None, 100).messages.is_empty());

    // A channel of the same shard published to later sweeps the quiet one away.
    let other = (0..)
        .map(|i| format!("other{i}"))
        .find(|n| std::ptr::eq(hub.shard(n), hub.shard("c")))
        .unwrap();
    assert!(has_ring(&hub, "c"));
    publish(&hub, &other, 3);
    assert!(!has_ring(&hub, "c"));
}

#[tokio::test]
async fn with_recovery_off_messages_carry_no_offset_but_are_kept_with_one() {
    let hub = keeping(5, Duration::ZERO);
    let mut t = tab(&hub, None);
    hub.subscribe(&t.conn, "c", Value::Null).unwrap();
    received(&mut t.rx);
    publish(&hub, "c", 1);
    publish(&hub, "c", 2);
    let got = received(&mut t.rx);
    assert!(got.iter().all(|(_, o)| o.is_none()));
    let h = hub.local_history("c", None, 100);
    assert_eq!(kept(&h), [(1, json!(1)), (2, json!(2))]);
    let h = hub.local_history("c", Some(1), 100);
    assert_eq!(kept(&h), [(2, json!(2))]);
}

#[tokio::test]
async fn history_off_is_refused() {
    let hub = keeping(0, Duration::from_secs(8));
    publish(&hub, "c", 1);
    let channel = hub.validate_channel("c").unwrap();
    assert_eq!(
        hub.history(&channel, None, 10).err(),
        Some(HubError::HistoryOff)
    );
    assert!(!has_ring(&hub, "c"));
}

#[test]
fn since_and_limit_are_checked() {
    assert_eq!(parse_since(None), Ok(None));
    assert_eq!(parse_since(Some(&json!("42"))), Ok(Some(42)));
    assert_eq!(parse_since(Some(&json!(7))), Ok(Some(7)));
    for bad in [json!("x"), json!(-1), json!(1.5), json!([]), json!("")] {
        assert_eq!(parse_since(Some(&bad)), Err(HubError::BadSince), "{bad}");
    }
    assert_eq!(parse_limit(None), Ok(DEFAULT_LIMIT));
    assert_eq!(parse_limit(Some(&json!("5"))), Ok(5));
    for bad in [json!(0), json!(MAX_LIMIT + 1), json!("many"), json!(-3)] {
        assert_eq!(
            parse_limit(Some(&bad)),
            Err(HubError::BadLimit(MAX_LIMIT)),
            "{bad}"
        );
    }
}

/// Sends `history(query)` with ack 1 from a socket limited to `allowed`, and waits for
/// the ack (it is sent from a task of its own).
async fn ask(app: &HubApp, allowed: Channels, query: Value) -> Value {
    let (socket, rx) = socket(64);
    let conn = app.hub.attach(&socket, None, None);
    let mut st = app::HubSocket {
        conn,
        legacy_ready: false,
        channels: allowed,
    };
    let event = Event {
        name: "history".into(),
        args: vec![query],
        attachments: Vec::new(),
        ack: Some(1),
    };
    app.on_event(&socket, &mut st, event);
    for _ in 0..1000 {
        let mut items = Vec::new();
        rx.take(usize::MAX, &mut items);
        if let Some(item) = items.first() {
            let Frame::Text(t) = &item.frames()[0] else {
                panic!("binary ack")
            };
            let v: Value = serde_json::from_str(&t[3..]).unwrap();
            return v[0].clone();
        }
        tokio::task::yield_now().await;
    }
    panic!("no ack");
}

#[tokio::test]
async fn the_history_event_answers_in_its_ack_within_the_token_s_channels() {
    let hub = keeping(5, Duration::from_secs(8));
    let app = HubApp::new(hub.clone());
    hub.publish(
        &Envelope::message("news", Some("ann".into()), json!("hi")),
        Vec::new(),
    );
    let reply = ask(&app, Channels::any(), json!({"channel": "news"})).await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["offset"], "1");
    assert_eq!(
        (reply["complete"].clone(), reply["more"].clone()),
        (json!(true), json!(false))
    );
    let m = &reply["messages"][0];
    assert_eq!(
        (
            &m["type"],
            &m["channel"],
            &m["identity"],
            &m["data"],
            &m["offset"]
        ),
        (
            &json!("message"),
            &json!("news"),
            &json!("ann"),
            &json!("hi"),
            &json!("1")
        )
    );
    assert!(m["timestamp"].is_string());
    let reply = ask(
        &app,
        Channels::any(),
        json!({"channel": "news", "since": "1"}),
    )
    .await;
    assert_eq!(reply["messages"], json!([]));

    let only_chat = Channels::only(vec!["chat".into()]);
    let refusals = [
        (
            only_chat,
            json!({"channel": "news"}),
            "channel \"news\" not allowed by the token",
        ),
        (
            Channels::any(),
            json!({"channel": "news", "since": "soon"}),
            "since must be an offset: a string of digits or a whole number",
        ),
        (
            Channels::any(),
            json!({"channel": "news", "limit": 1_000_000}),
            "limit must be a whole number from 1 to 1000",
        ),
        (
            Channels::any(),
            json!({"channel": ""}),
            "channel must be a non-empty string",
        ),
        (
            Channels::any(),
            json!("news"),
            "history takes one object: {channel, since?, limit?}",
        ),
    ];
    for (allowed, query, error) in refusals {
        let reply = ask(&app, allowed, query.clone()).await;
        assert_eq!(reply, json!({"ok": false, "error": error}), "{query}");
    }
}

#[tokio::test(start_paused = true)]
async fn in_a_cluster_a_node_keeps_what_reached_its_members_with_its_own_offsets() {
    let backplane = MemoryBackplane::new();
    let nodes: Vec<Arc<Hub>> = ["a", "b"]
        .iter()
        .map(|name| {
            let config = ClusterConfig {
                node_id: Some((*name).to_owned()),
                ..ClusterConfig::default()
            };
            let (cluster, worker) = MemoryCluster::join(&backplane, &config);
            let hub = Hub::new(HubConfig {
                history_size: 10,
                ..HubConfig::default()
            })
            .with_cluster(cluster.clone(), cluster);
            let hub = Arc::new(hub);
            worker.start(hub.clone());
            hub
        })
        .collect();
    let (a, b) = (&nodes[0], &nodes[1]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut alice = tab(a, Some("alice"));
    let Ok(Count::Later(rx, _)) = a.subscribe(&alice.conn, "chat", Value::Null) else {
        panic!("a cluster decides the count")
    };
    rx.await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    received(&mut alice.rx);
    publish(b, "chat", 1);
    publish(b, "chat", 2);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let seen = offsets(&received(&mut alice.rx));
    let channel = a.validate_channel("chat").unwrap();
    let h = a.history(&channel, None, 10).unwrap().await;
    assert_eq!(kept(&h), [(seen[0], json!(1)), (seen[1], json!(2))]);
    let h = a.history(&channel, Some(seen[0]), 10).unwrap().await;
    assert_eq!(kept(&h), [(seen[1], json!(2))]);
}

#[tokio::test]
async fn the_2012_envelope_and_commands_are_kept_like_publishes() {
    let hub = keeping(5, Duration::from_secs(8));
    let app = HubApp::new(hub.clone());
    let (socket, _rx) = socket(64);
    let mut st = app::HubSocket {
        conn: hub.attach(&socket, None, None),
        legacy_ready: false,
        channels: Channels::any(),
    };
    let mut emit = |name: &str, args: Value| {
        let Value::Array(args) = args else {
            panic!("args must be an array")
        };
        let event = Event {
            name: name.into(),
            args,
            attachments: Vec::new(),
            ack: None,
        };
        app.on_event(&socket, &mut st, event);
    };
    let init = json!({"type": "command", "identity": "old", "data": {"command": "init"}});
    emit("message", json!([init]));
    let legacy = json!({"type": "message", "channel": "c", "data": "from 2012"});
    emit("message", json!([legacy.to_string()]));
    emit("command", json!(["c", "poke", {"x": 1}]));
    let h = hub.local_history("c", None, 100);
    let kept: Vec<(&str, Option<&str>, &Value)> = h
        .messages
        .iter()
        .map(|(_, e)| (e.kind, e.identity.as_deref(), &e.data))
        .collect();
    assert_eq!(
        kept,
        [
            ("message", Some("old"), &json!("from 2012")),
            (
                "command",
                Some("old"),
                &json!({"command": "poke", "options": {"x": 1}})
            ),
        ]
    );
}
