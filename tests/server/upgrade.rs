//! The polling→WebSocket upgrade against the real binary: a probe that fails leaves plain
//! polling as it was, and a later upgrade succeeds.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use tokio_tungstenite::connect_async;

/// A GET unanswered this long is waiting for frames: far below the ping interval (25 s),
/// far above an answer given at once.
const WAITING: Duration = Duration::from_secs(2);

/// A WebSocket for polling session `sid` that answered the probe.
async fn probe(port: u16, sid: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (mut ws, _) = connect_async(url).await.unwrap();
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("3probe"));
    ws
}

#[tokio::test]
async fn a_failed_upgrade_leaves_polling_as_it_was() {
    let mut server = Server::start("");
    let p = server.port;
    let sid = handshake(p).await;
    drop(probe(p, &sid).await);
    // A GET that reaches the session before it heard of the failure is answered with a
    // noop after a short hold; after that, GETs wait for frames again.
    let mut at_once = 0;
    let waiting = loop {
        let target = polling(&sid);
        let mut get = tokio::spawn(async move { get(p, &target).await });
        match tokio::time::timeout(WAITING, &mut get).await {
            Err(_) => break get,
            Ok(answer) => {
                assert_eq!(answer.unwrap(), (200, "6".to_owned()));
                at_once += 1;
                assert!(
                    at_once < 10,
                    "every GET after the failed upgrade got a noop at once"
                );
            }
        }
    };
    // A new upgrade succeeds: the waiting GET is released, and the WebSocket carries on.
    let mut ws = probe(p, &sid).await;
    assert_eq!(waiting.await.unwrap(), (200, "6".to_owned()));
    send(&mut ws, "5").await;
    send(&mut ws, "40").await;
    assert!(next_sio(&mut ws).await.unwrap().starts_with("0{\"sid\""));
    assert_eq!(get(p, &polling(&sid)).await.0, 400);
    server.assert_serving().await;
}
