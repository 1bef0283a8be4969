//! The monitor (docs/design.md#monitor) against the real binary and a webhook endpoint run by the
//! test: events in order with their signatures, the default selection, endpoints that fail in
//! every way, a dead endpoint that must not slow 10,000 publishes, and the shutdown flush.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::support::*;
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;

fn hex_hmac(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One member's whole life: connect, two subscriptions, a publish, a command, one
/// unsubscribe, then a clean disconnect (which leaves the other channel at once).
async fn life_of_alice(port: u16) {
    let mut ws = sio_connect(port, r#"{"identity":"alice"}"#).await;
    for (i, ev) in [
        r#"["subscribe","a"]"#,
        r#"["subscribe","b"]"#,
        r#"["publish","a",{"n":1}]"#,
        r#"["command","a","poke",{"x":2}]"#,
        r#"["unsubscribe","a"]"#,
    ]
    .iter()
    .enumerate()
    {
        send(&mut ws, &format!("42{i}{ev}")).await;
        next_ack(&mut ws).await;
    }
    send(&mut ws, "41").await;
    let _ = closes_within(&mut ws, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn events_arrive_in_order_and_signed() {
    let hook = Endpoint::start(Behaviour::Accept);
    let server = Server::start(&format!(
        "[Monitor]\nurl = {}\nsecret = hook-secret\n\
         events = subscribe, unsubscribe, connect, disconnect, message, command\n",
        hook.url("/hook?src=rt")
    ));
    life_of_alice(server.port).await;

    let hits = hook.wait_for(8, Duration::from_secs(10));
    let got: Vec<_> = hits.iter().map(|h| summary(&h.json())).collect();
    let s = |w: &str, c: Value| (w.to_owned(), c, json!("alice"));
    assert_eq!(
        got,
        vec![
            s("onConnect", Value::Null),
            s("onSubscribe", json!("a")),
            s("onSubscribe", json!("b")),
            s("message", json!("a")),
            s("poke", json!("a")),
            s("onUnsubscribe", json!("a")),
            s("onUnsubscribe", json!("b")),
            s("onDisconnect", Value::Null),
        ]
    );
    for h in &hits {
        assert_eq!(
            (h.method.as_str(), h.path.as_str()),
            ("POST", "/hook?src=rt")
        );
        assert_eq!(h.header("content-type"), Some("application/json"));
        let expected = format!("sha256={}", hex_hmac("hook-secret", &h.body));
        assert_eq!(h.header("x-realtime-signature"), Some(expected.as_str()));
        let v = h.json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["type", "channel", "identity", "timestamp", "data"]);
    }
    let v = hits[1].json();
    assert_eq!(
        v["data"],
        json!({"command": "onSubscribe", "options": null, "count": 1})
    );
    assert_eq!(hits[3].json()["data"], json!({"n": 1}));
    assert_eq!(
        hits[4].json()["data"],
        json!({"command": "poke", "options": {"x": 2}})
    );
    assert_eq!(hits[6].json()["data"]["count"], 0);

    let (_, metrics) = get(server.port, "/metrics").await;
    assert_eq!(metric(&metrics, "realtime_monitor_sent_total"), Some(8.0));
}

#[tokio::test]
async fn the_default_events_are_subscribe_and_unsubscribe() {
    let hook = Endpoint::start(Behaviour::Accept);
    let server = Server::start(&format!("[Monitor]\nurl = {}\n", hook.url("/")));
    life_of_alice(server.port).await;
    let hits = hook.wait_for(4, Duration::from_secs(10));
    // No more than these four come: a wait for nothing to arrive, so a fixed one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<String> = hook.hits().iter().map(|h| summary(&h.json()).0).collect();
    assert_eq!(
        got,
        [
            "onSubscribe",
            "onSubscribe",
            "onUnsubscribe",
            "onUnsubscribe"
        ]
    );
    assert_eq!(
        hits[0].header("x-realtime-signature"),
        None,
        "no secret, no signature"
    );
}

/// Waits until `/metrics` shows `name` at least `n`; returns the metrics text.
#[tokio::test]
async fn the_webhook_gets_the_numbers_as_published() {
    let hook = Endpoint::start(Behaviour::Accept);
    let server = Server::start(&format!(
        "[Monitor]\nurl = {}\nevents = message, command\n",
        hook.url("/hook")
    ));
    let numbers =
        "[12345678901234567890123,-0,0.9049426916855675,3.141592653589793238462643383279]";
    let mut ws = sio_connect(server.port, "{}").await;
    send(&mut ws, &format!(r#"420["publish","a",{{"n":{numbers}}}]"#)).await;
    next_ack(&mut ws).await;
    send(&mut ws, &format!(r#"421["command","a","poke",{numbers}]"#)).await;
    next_ack(&mut ws).await;
    let hits = hook.wait_for(2, Duration::from_secs(10));
    let bodies: Vec<_> = hits
        .iter()
        .map(|h| String::from_utf8_lossy(&h.body))
        .collect();
    assert!(
        bodies[0].contains(&format!(r#""data":{{"n":{numbers}}}"#)),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[1].contains(&format!(r#""options":{numbers}"#)),
        "{}",
        bodies[1]
    );
}

async fn wait_metric(port: u16, name: &str, n: f64) -> String {
    let reached = poll_until_async(Duration::from_secs(15), || async {
        let (_, text) = get(port, "/metrics").await;
        (metric(&text, name).unwrap_or(0.0) >= n).then_some(text)
    })
    .await;
    match reached {
        Some(text) => text,
        None => get(port, "/metrics").await.1,
    }
}

#[tokio::test]
async fn failing_endpoints_are_retried_or_not_as_they_deserve() {
    let elsewhere = Endpoint::start(Behaviour::Accept);
    // (behaviour, requests expected with retries = 2)
    let cases = [
        (Behaviour::Status(503), 3),
        (Behaviour::Garbage, 3),
        (Behaviour::Slow(Duration::from_millis(1500)), 3),
        (Behaviour::Status(404), 1),
        (Behaviour::Status(400), 1),
        (Behaviour::Redirect(elsewhere.url("/stolen")), 1),
    ];
    for (behaviour, expected) in cases {
        let hook = Endpoint::start(behaviour.clone());
        let mut server = Server::start(&format!(
            "[Monitor]\nurl = {}\ntimeout = 300ms\nretries = 2\n",
            hook.url("/")
        ));
        let mut ws = sio_connect(server.port, "").await;
        send(&mut ws, r#"421["subscribe","x"]"#).await;
        next_ack(&mut ws).await;
        let metrics = wait_metric(server.port, "realtime_monitor_failed_total", 1.0).await;
        assert_eq!(
            metric(&metrics, "realtime_monitor_failed_total"),
            Some(1.0),
            "{behaviour:?}"
        );
        assert_eq!(metric(&metrics, "realtime_monitor_sent_total"), Some(0.0));
        assert_eq!(hook.hits().len(), expected, "{behaviour:?}");
        // Delivery went on meanwhile.
        send(&mut ws, r#"422["publish","x",1]"#).await;
        assert_eq!(next_ack(&mut ws).await, r#"32[{"ok":true}]"#);
        server.assert_serving().await;
    }
    assert!(elsewhere.hits().is_empty(), "a redirect was followed");
}

/// Publishes `n` messages from one client to a subscriber on another; returns what the
/// subscriber got, in order, and how long it took.
async fn fan_out(port: u16, n: u64) -> (Vec<u64>, Duration) {
    let mut sub = sio_connect(port, r#"{"identity":"sub"}"#).await;
    send(&mut sub, r#"421["subscribe","load"]"#).await;
    next_ack(&mut sub).await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < n {
            let Some(p) = next_sio(&mut sub).await else {
                break;
            };
            let Some(json) = p.strip_prefix('2') else {
                continue;
            };
            let v: Value = serde_json::from_str(json).unwrap();
            if v[1]["type"] == "message" {
                got.push(v[1]["data"]["n"].as_u64().unwrap());
            }
        }
        got
    });
    let start = Instant::now();
    let mut publisher = sio_connect(port, r#"{"identity":"pub"}"#).await;
    for i in 0..n {
        publisher
            .feed(Message::text(format!(
                r#"42["publish","load",{{"n":{i}}}]"#
            )))
            .await
            .unwrap();
        if i % 256 == 255 {
            publisher.flush().await.unwrap();
        }
    }
    publisher.flush().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("subscriber did not get everything within 60 s")
        .unwrap();
    let took = start.elapsed();
    drop(publisher);
    (got, took)
}

#[tokio::test]
async fn a_dead_endpoint_never_slows_delivery() {
    const N: u64 = 10_000;
    let common_conf = "[Messaging]\nclient-queue = 20000\n";
    let plain = Server::start(common_conf);
    let (baseline, plain_took) = fan_out(plain.port, N).await;

    // Accepts connections and never answers: the sender waits out every timeout.
    let dead = Endpoint::start(Behaviour::NeverAnswer);
    let server = Server::start(&format!(
        "{common_conf}[Monitor]\nurl = {}\nevents = subscribe, message\nqueue = 64\ntimeout = 30s\nretries = 3\n",
        dead.url("/")
    ));
    let (got, took) = fan_out(server.port, N).await;

    let expected: Vec<u64> = (0..N).collect();
    assert_eq!(baseline, expected, "without a monitor");
    assert_eq!(
        got, expected,
        "with a dead monitor: every message, in order"
    );
    eprintln!("10,000 publishes: {plain_took:?} without a monitor, {took:?} with a dead one");

    let (_, metrics) = get(server.port, "/metrics").await;
    let dropped = metric(&metrics, "realtime_monitor_dropped_total").unwrap();
    assert!(
        dropped >= (N - 64 - 2) as f64,
        "drops visible in /metrics: {dropped}"
    );
    assert!(metric(&metrics, "realtime_monitor_queue").unwrap() <= 64.0);
    assert_eq!(metric(&metrics, "realtime_monitor_sent_total"), Some(0.0));
    assert_eq!(
        metric(&metrics, "realtime_slow_client_disconnects_total"),
        Some(0.0)
    );
    assert!(metric(&metrics, "realtime_messages_published_total").unwrap() >= N as f64);
    // Drops are logged, but at a limited rate.
    let warnings = server.log().matches("monitor: event dropped").count();
    assert!((1..=5).contains(&warnings), "{warnings} drop warnings");
    assert_eq!(
        dead.hits().len(),
        1,
        "one request in flight, the rest queued or dropped"
    );
}

async fn exits_within(server: &mut Server, within: Duration) -> bool {
    poll_until_async(within, || {
        let gone = !server.alive();
        async move { gone.then_some(()) }
    })
    .await
    .is_some()
}

#[tokio::test]
async fn shutdown_flushes_the_queue_for_a_bounded_time() {
    // A slow endpoint: what is queued at SIGTERM is still posted.
    let slow = Endpoint::start(Behaviour::Slow(Duration::from_millis(100)));
    let mut server = Server::start(&format!(
        "[Monitor]\nurl = {}\nevents = message\n",
        slow.url("/")
    ));
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"channel": "c", "data": i}))
        .collect();
    let (status, _) = http(
        server.port,
        "POST",
        "/api/publish",
        Value::from(batch).to_string().as_bytes(),
        "Content-Type: application/json\r\n",
    )
    .await;
    assert_eq!(status, 200);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(exits_within(&mut server, Duration::from_secs(10)).await);
    let data: Vec<Value> = slow
        .hits()
        .iter()
        .map(|h| h.json()["data"].clone())
        .collect();
    assert_eq!(data, (0..10).map(Value::from).collect::<Vec<_>>());

    // A dead endpoint does not hold the exit past the flush bound.
    let dead = Endpoint::start(Behaviour::NeverAnswer);
    let mut server = Server::start(&format!(
        "[Monitor]\nurl = {}\nevents = message\ntimeout = 60s\n",
        dead.url("/")
    ));
    let (status, _) = http(
        server.port,
        "POST",
        "/api/publish",
        br#"[{"channel":"c","data":1},{"channel":"c","data":2}]"#,
        "Content-Type: application/json\r\n",
    )
    .await;
    assert_eq!(status, 200);
    dead.wait_for(1, Duration::from_secs(5));
    let start = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(exits_within(&mut server, Duration::from_secs(8)).await);
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    assert!(server.log().contains("unsent"), "{}", server.log());
}

#[tokio::test]
async fn a_hand_over_passes_on_the_events_not_posted_yet() {
    // The endpoint takes each POST but answers none until the gate opens: the first event
    // is in flight, the others queued, when SIGUSR1 hands the process over.
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook = Endpoint::start(Behaviour::Gate(open.clone()));
    let mut server = Server::start(&format!(
        "[Monitor]\nurl = {}\nevents = message\ntimeout = 60s\n",
        hook.url("/")
    ));
    let batch: Vec<Value> = (0..5).map(|i| json!({"channel": "c", "data": i})).collect();
    let (status, _) = http(
        server.port,
        "POST",
        "/api/publish",
        Value::from(batch).to_string().as_bytes(),
        "Content-Type: application/json\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(hook.wait_for(1, Duration::from_secs(5)).len(), 1);
    server.signal(nix::sys::signal::Signal::SIGUSR1);
    server.expect_log(
        "took over the sessions of the previous process",
        Duration::from_secs(10),
    );
    assert!(
        server
            .log()
            .contains("events not posted yet go to the next process count=5"),
        "{}",
        server.log()
    );
    // The new process posts them first, in order, the one in flight again (at least
    // once), then its own.
    open.store(true, std::sync::atomic::Ordering::Release);
    let (status, _) = http(
        server.port,
        "POST",
        "/api/publish",
        br#"{"channel":"c","data":5}"#,
        "Content-Type: application/json\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let hits = hook.wait_for(7, Duration::from_secs(10));
    let data: Vec<Value> = hits.iter().map(|h| h.json()["data"].clone()).collect();
    let mut want = vec![json!(0)];
    want.extend((0..6).map(Value::from));
    assert_eq!(data, want, "{}", server.log());
    assert!(server.alive());
}
