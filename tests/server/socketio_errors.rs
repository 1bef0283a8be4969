//! Bad input at the Socket.IO layer: malformed packets close the session; the server goes on.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use std::time::Duration;

async fn assert_closes(server: &mut Server, packets: &[&str]) {
    let mut ws = sio_connect(server.port, "").await;
    for p in packets {
        send(&mut ws, p).await;
    }
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1002, "parse error".into())),
        "{packets:?}"
    );
}

#[tokio::test]
async fn malformed_packets_close_the_websocket_session() {
    let mut server = Server::start("");
    let cases: &[&[&str]] = &[
        &["4abc"],                       // unknown packet type
        &["47"],                         // unknown packet type
        &["42[\"publish\",\"chat\""],    // bad JSON
        &["42{}"],                       // event payload not an array
        &["42[]"],                       // event without a name
        &["42abc[\"subscribe\",\"x\"]"], // non-numeric ack id
        &["451-[\"publish\"]", "4x"],    // text where an attachment was due
        &["459999-[\"publish\"]"],       // absurd attachment count
        // placeholders that do not match the attachments
        &[r#"451-["publish","x",{"_placeholder":true,"num":5}]"#],
        &[r#"42["publish","x",{"_placeholder":true,"num":0}]"#],
        &["41/other,"], // leaving a namespace never joined
        &["40"],        // joining a namespace twice
    ];
    for packets in cases {
        assert_closes(&mut server, packets).await;
    }
    assert!(
        server
            .wait_log("bad socket.io packet", Duration::from_secs(2))
            .await
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn binary_without_a_packet_closes() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut server = Server::start("");
    let mut ws = sio_connect(server.port, "").await;
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1003, "binary message not expected".into()))
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn unknown_namespace_gets_connect_error_and_events_to_it_close() {
    let mut server = Server::start("");
    let (mut ws, _) = ws_open(server.port).await;
    send(&mut ws, "40/random").await;
    assert_eq!(
        next_sio(&mut ws).await.as_deref(),
        Some(r#"4/random,{"message":"Invalid namespace"}"#)
    );
    send(&mut ws, "42/random,[\"publish\",\"x\"]").await;
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1002, "parse error".into()))
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn malformed_packets_over_polling_close_the_session() {
    let mut server = Server::start("");
    let p = server.port;
    for body in ["4abc", "42{}", "40\x1e42abc[\"x\"]"] {
        let sid = handshake(p).await;
        let (status, _) = post(p, &polling(&sid), body.as_bytes()).await;
        assert_eq!(status, 200, "{body}");
        // The close packet ends the session; after it, the sid is gone.
        let (status, reply) = get(p, &polling(&sid)).await;
        assert!(
            (status == 200 && reply.ends_with('1')) || status == 400,
            "{body}: {status} {reply}"
        );
        assert_eq!(get(p, &polling(&sid)).await.0, 400, "{body}");
    }
    server.assert_serving().await;
}

#[tokio::test]
async fn no_connect_in_time_closes() {
    let mut server = Server::start("[Server]\nconnect-timeout = 300ms\n");
    let (mut ws, _) = ws_open(server.port).await;
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1000, "server close".into()))
    );
    assert!(
        server
            .wait_log("no CONNECT in time", Duration::from_secs(2))
            .await
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn bad_identity_is_a_connect_error() {
    let mut server = Server::start("[Messaging]\nmax-identity = 8\n");
    let (mut ws, _) = ws_open(server.port).await;
    send(&mut ws, r#"40{"identity":42}"#).await;
    assert_eq!(
        next_sio(&mut ws).await.as_deref(),
        Some(r#"4{"message":"identity must be a string"}"#)
    );
    send(&mut ws, r#"40{"identity":"much-too-long"}"#).await;
    assert_eq!(
        next_sio(&mut ws).await.as_deref(),
        Some(r#"4{"message":"identity longer than 8 bytes"}"#)
    );
    send(&mut ws, r#"40{"identity":"alice"}"#).await;
    assert!(next_sio(&mut ws).await.unwrap().starts_with("0{\"sid\""));
    server.assert_serving().await;
}

#[tokio::test]
async fn attachments_over_max_payload_close_as_too_big() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut server = Server::start("[Server]\nmax-payload = 1000\n");
    let mut ws = sio_connect(server.port, "").await;
    send(
        &mut ws,
        r#"452-["publish","chat",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    // Each fits the max payload; together they do not.
    for _ in 0..2 {
        ws.send(Message::binary(vec![0u8; 600])).await.unwrap();
    }
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1009, "attachments too big".into()))
    );
    server.assert_serving().await;
}

/// Announces two attachments and sends one of `size` bytes.
async fn half_sent(ws: &mut Ws, size: usize) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    send(
        ws,
        r#"452-["publish","chat",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    ws.send(Message::binary(vec![7u8; size])).await.unwrap();
}

#[tokio::test]
async fn attachments_not_all_sent_in_time_close_the_session() {
    let mut server = Server::start("[Server]\nping-timeout = 1s\n");
    let mut ws = sio_connect(server.port, "").await;
    half_sent(&mut ws, 100).await;
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(10)).await,
        Some((1002, "attachments not sent in time".into()))
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn half_sent_attachments_of_all_sessions_stay_within_one_budget() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    // max-payload 1000: 64,000 bytes for all unfinished packets, 71 of 900 bytes.
    let mut server = Server::start("[Server]\nmax-payload = 1000\n");
    let p = server.port;
    let mut sessions = Vec::new();
    for _ in 0..72 {
        let mut ws = sio_connect(p, "").await;
        half_sent(&mut ws, 900).await;
        sessions.push(ws);
    }
    // Whichever came last is refused; the others are held (nothing else can close them).
    let closes: Vec<_> = futures_util::future::join_all(
        sessions
            .iter_mut()
            .map(|ws| close_frame(ws, Duration::from_secs(5))),
    )
    .await;
    let refused = (1013, "too many attachments in flight".to_owned());
    assert_eq!(
        closes
            .iter()
            .filter(|c| **c == Some(refused.clone()))
            .count(),
        1
    );
    assert_eq!(closes.iter().filter(|c| c.is_none()).count(), 71);

    // The bytes of sessions that end go back to the budget: binary packets go through again.
    drop(sessions);
    wait_until_async(
        Duration::from_secs(10),
        "a binary publish to go through",
        || async {
            let mut ws = sio_connect(p, "").await;
            send(
                &mut ws,
                r#"451-1["publish","chat",{"_placeholder":true,"num":0}]"#,
            )
            .await;
            if ws.send(Message::binary(vec![1u8; 900])).await.is_err() {
                return false;
            }
            matches!(next_sio(&mut ws).await, Some(ack) if ack.starts_with("31["))
        },
    )
    .await;
    server.assert_serving().await;
}
