//! A subscriber that never reads is disconnected as a slow client; the channel's other
//! members get every message, in order.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const MESSAGES: usize = 3000;
const WINDOW: usize = 32;

#[tokio::test]
async fn a_client_that_never_reads_does_not_hold_up_the_channel() {
    let mut server = Server::start("[Messaging]\nclient-queue = 128\n");
    let p = server.port;

    let mut stalled = sio_connect(p, r#"{"identity":"stalled"}"#).await;
    send(&mut stalled, r#"421["subscribe","flood"]"#).await;
    assert!(next_ack(&mut stalled).await.starts_with("31[{"));

    let mut reader = sio_connect(p, r#"{"identity":"reader"}"#).await;
    send(&mut reader, r#"421["subscribe","flood"]"#).await;
    assert!(next_ack(&mut reader).await.starts_with("31[{"));

    // `reader` keeps up (the publisher stays at most WINDOW messages ahead of it);
    // `stalled` is never read from again.
    let progress = Arc::new(AtomicUsize::new(0));
    let seen_so_far = progress.clone();
    let receive = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(MESSAGES);
        while seen.len() < MESSAGES {
            let Some(packet) = next_sio(&mut reader).await else {
                break;
            };
            let Some(json) = packet.strip_prefix("2") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            if v[1]["type"] != "message" {
                continue; // membership events
            }
            seen.push(v[1]["data"]["n"].as_u64().unwrap());
            seen_so_far.store(seen.len(), Ordering::Release);
        }
        seen
    });

    let mut publisher = sio_connect(p, "").await;
    let pad = "x".repeat(8000);
    for n in 0..MESSAGES {
        while n - progress.load(Ordering::Acquire) > WINDOW {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        send(
            &mut publisher,
            &format!(r#"42["publish","flood",{{"n":{n},"pad":"{pad}"}}]"#),
        )
        .await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), receive)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen,
        (0..MESSAGES as u64).collect::<Vec<_>>(),
        "reader lost or reordered messages"
    );
    assert!(
        server
            .wait_log("reason=\"slow client\"", Duration::from_secs(10))
            .await,
        "the stalled client was not disconnected"
    );
    // Once it reads again, the stalled client finds its session over.
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(10), stalled.next()).await {
        if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the stalled client's connection was not closed");
    server.assert_serving().await;
}

/// A burst: one API request of this many messages.
const BURST: usize = 20_000;

/// A channel member the test reads as fast as it can, or not at all.
enum Member {
    Ws(Box<Ws>),
    Polling(String),
}

impl Member {
    async fn join(port: u16, websocket: bool, channel: &str) -> Member {
        let subscribe = format!(r#"421["subscribe","{channel}"]"#);
        if websocket {
            let mut ws = sio_connect(port, "").await;
            send(&mut ws, &subscribe).await;
            assert!(next_ack(&mut ws).await.starts_with("31[{"));
            return Member::Ws(Box::new(ws));
        }
        let sid = handshake(port).await;
        let mut m = Member::Polling(sid.clone());
        assert_eq!(post(port, &polling(&sid), b"40").await.0, 200);
        assert!(m.packets(port).await.iter().any(|p| p.starts_with("40{")));
        assert_eq!(
            post(port, &polling(&sid), subscribe.as_bytes()).await.0,
            200
        );
        let mut acked = false;
        while !acked {
            acked = m.packets(port).await.iter().any(|p| p.starts_with("431[{"));
        }
        m
    }

    /// The next packets that came (Engine.IO framing kept); empty once the session ended.
    async fn packets(&mut self, port: u16) -> Vec<String> {
        match self {
            Member::Ws(ws) => next_text(ws).await.into_iter().collect(),
            Member::Polling(sid) => {
                let (status, body) = get(port, &polling(sid)).await;
                if status != 200 {
                    return Vec::new();
                }
                body.split('\x1e').map(str::to_owned).collect()
            }
        }
    }

    /// Reads until `n` messages came or the session ended; their `data.n` in order.
    async fn read(mut self, port: u16, n: usize) -> Vec<u64> {
        let mut seen = Vec::with_capacity(n);
        while seen.len() < n {
            let packets = self.packets(port).await;
            if packets.is_empty() || packets.iter().any(|p| p == "1" || p == "41") {
                break;
            }
            for p in packets {
                if p == "2" {
                    self.pong(port).await;
                }
                let Some(json) = p.strip_prefix("42") else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(json).unwrap();
                if v[1]["type"] == "message" {
                    seen.push(v[1]["data"]["n"].as_u64().unwrap());
                }
            }
        }
        seen
    }

    async fn pong(&mut self, port: u16) {
        match self {
            Member::Ws(ws) => send(ws, "3").await,
            Member::Polling(sid) => {
                post(port, &polling(sid), b"3").await;
            }
        }
    }
}

/// One `/api/publish` array of [`BURST`] messages to `channel`, numbered from 0.
async fn publish_burst(port: u16, channel: &str) {
    // Padded, so that what is in flight passes what the kernel's socket buffers hold.
    let pad = "x".repeat(200);
    let items: Vec<String> = (0..BURST)
        .map(|n| format!(r#"{{"channel":"{channel}","data":{{"n":{n},"pad":"{pad}"}}}}"#))
        .collect();
    let (status, reply) = api(
        port,
        "POST",
        "/api/publish",
        &format!("[{}]", items.join(",")),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["published"], BURST);
}

async fn burst_reaches_readers(websocket: bool) {
    let mut server = Server::start("[Server]\nmax-payload = 8MB\n");
    let p = server.port;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let member = Member::join(p, websocket, "burst").await;
        readers.push(tokio::spawn(member.read(p, BURST)));
    }
    publish_burst(p, "burst").await;
    for r in readers {
        let seen = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            seen.len(),
            BURST,
            "a reader lost messages or was cut: {}",
            server.log()
        );
        assert!(seen.iter().copied().eq(0..BURST as u64), "out of order");
    }
    assert!(
        !server.log().contains("slow client"),
        "a reader was cut as slow"
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn a_burst_reaches_members_that_keep_reading_over_websocket() {
    burst_reaches_readers(true).await;
}

#[tokio::test]
async fn a_burst_reaches_members_that_keep_reading_over_polling() {
    burst_reaches_readers(false).await;
}

#[tokio::test]
async fn a_stalled_member_is_still_cut_during_a_burst() {
    let mut server = Server::start("[Server]\nmax-payload = 8MB\n");
    let p = server.port;
    // Polling, and never asked for anything again: it takes nothing at all.
    let stalled = Member::join(p, false, "burst").await;
    let mut readers = Vec::new();
    for websocket in [true, false] {
        let member = Member::join(p, websocket, "burst").await;
        readers.push(tokio::spawn(member.read(p, BURST)));
    }
    publish_burst(p, "burst").await;
    for r in readers {
        let seen = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .unwrap()
            .unwrap();
        assert!(
            seen.iter().copied().eq(0..BURST as u64),
            "a reader lost messages"
        );
    }
    assert!(
        server
            .wait_log("reason=\"slow client\"", Duration::from_secs(10))
            .await,
        "the stalled member was not disconnected"
    );
    drop(stalled);
    server.assert_serving().await;
}

#[tokio::test]
async fn messages_a_session_away_loses_past_the_cache_are_counted() {
    let mut server =
        Server::start("[Messaging]\nmessage-cache-limit = 3\n[Server]\nreconnect-timeout = 60s\n");
    let p = server.port;
    let evictions = || async move {
        let (_, metrics) = get(p, "/metrics").await;
        metric(&metrics, "realtime_recovery_cache_evictions_total")
    };
    assert_eq!(evictions().await, Some(0.0));
    let mut away = sio_connect(p, r#"{"identity":"away"}"#).await;
    send(&mut away, r#"421["subscribe","cache"]"#).await;
    assert!(next_ack(&mut away).await.starts_with("31[{"));
    drop(away);
    // Once the server saw the connection go, each message past the three kept drops one.
    let mut n = 0;
    wait_until_async(Duration::from_secs(10), "a counted eviction", || {
        n += 1;
        let body = format!(r#"{{"channel":"cache","data":{{"n":{n}}}}}"#);
        async move {
            assert_eq!(api(p, "POST", "/api/publish", &body).await.0, 200);
            evictions().await.is_some_and(|e| e >= 1.0)
        }
    })
    .await;
    server.assert_serving().await;
}

#[tokio::test]
async fn a_polling_post_burst_reaches_members_that_keep_reading() {
    let mut server = Server::start("[Server]\nmax-payload = 8MB\n");
    let p = server.port;
    let mut readers = Vec::new();
    for websocket in [true, false, true] {
        let member = Member::join(p, websocket, "burst").await;
        readers.push(tokio::spawn(member.read(p, BURST)));
    }
    let sid = handshake(p).await;
    assert_eq!(post(p, &polling(&sid), b"40").await.0, 200);
    let pad = "x".repeat(200);
    let packets: Vec<String> = (0..BURST)
        .map(|n| format!(r#"42["publish","burst",{{"n":{n},"pad":"{pad}"}}]"#))
        .collect();
    let (status, reply) = post(p, &polling(&sid), packets.join("\x1e").as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    for r in readers {
        let seen = tokio::time::timeout(Duration::from_secs(120), r)
            .await
            .unwrap()
            .unwrap();
        assert!(
            seen.iter().copied().eq(0..BURST as u64),
            "a reader lost messages: {}",
            seen.len()
        );
    }
    assert!(
        !server.log().contains("slow client"),
        "a reader was cut as slow"
    );
    server.assert_serving().await;
}
