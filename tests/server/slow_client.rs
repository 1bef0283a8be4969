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
