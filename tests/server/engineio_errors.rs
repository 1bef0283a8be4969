//! Bad input at the Engine.IO layer: each gets the reference server's answer, a debug log
//! line, and the server keeps serving everyone else.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const FAST_PINGS: &str = "[Server]\nping-interval = 300ms\nping-timeout = 200ms\n";

fn error_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn bad_eio_and_transport_get_400_with_reference_codes() {
    let mut server = Server::start("");
    let p = server.port;
    let cases = [
        (
            "/socket.io/?transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "/socket.io/?EIO=3&transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "/socket.io/?EIO=abc&transport=polling",
            5,
            "Unsupported protocol version",
        ),
        ("/socket.io/?EIO=4", 0, "Transport unknown"),
        (
            "/socket.io/?EIO=4&transport=flashsocket",
            0,
            "Transport unknown",
        ),
        (
            "/socket.io/?EIO=4&transport=polling&sid=nope",
            1,
            "Session ID unknown",
        ),
    ];
    for (target, code, message) in cases {
        let (status, body) = get(p, target).await;
        assert_eq!(status, 400, "{target}");
        assert_eq!(
            error_body(&body),
            json!({"code": code, "message": message}),
            "{target}"
        );
    }
    let (status, body) = post(p, "/socket.io/?EIO=4&transport=polling", b"").await;
    assert_eq!((status, error_body(&body)["code"].clone()), (400, json!(2)));
    assert!(
        server
            .wait_log("engine.io request refused", Duration::from_secs(2))
            .await
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn websocket_with_bad_query_is_refused() {
    let mut server = Server::start("");
    for q in [
        "transport=websocket",
        "EIO=abc&transport=websocket",
        "EIO=4&transport=abc",
    ] {
        let url = format!("ws://127.0.0.1:{}/socket.io/?{q}", server.port);
        assert!(tokio_tungstenite::connect_async(url).await.is_err(), "{q}");
    }
    server.assert_serving().await;
}

#[tokio::test]
async fn closed_sid_is_unknown() {
    let mut server = Server::start("");
    let p = server.port;
    let sid = handshake(p).await;
    assert_eq!(post(p, &polling(&sid), b"1").await, (200, "ok".into()));
    // A GET racing the close (sent with it) still gets the noop; after it, the sid is gone.
    let (status, body) = get(p, &polling(&sid)).await;
    assert!(
        (status, body.as_str()) == (200, "6") || status == 400,
        "{status} {body}"
    );
    let (status, body) = get(p, &polling(&sid)).await;
    assert_eq!((status, error_body(&body)["code"].clone()), (400, json!(1)));
    server.assert_serving().await;
}

#[tokio::test]
async fn a_close_that_overtakes_its_get_still_answers_it() {
    let mut server = Server::start("");
    let p = server.port;
    let sid = handshake(p).await;
    // The close arrives first; the GET the client sent with it comes right after.
    assert_eq!(post(p, &polling(&sid), b"1").await, (200, "ok".into()));
    assert_eq!(get(p, &polling(&sid)).await, (200, "6".into()));
    assert!(
        server
            .wait_log_line(&[&sid, "session closed"], Duration::from_secs(5))
            .await
    );
    assert_eq!(get(p, &polling(&sid)).await.0, 400);
    server.assert_serving().await;
}

#[tokio::test]
async fn malformed_polling_payload_closes_the_session() {
    let mut server = Server::start("");
    let p = server.port;
    for body in [
        &b"abc"[..],
        b"4ok\x1e9x",
        b"b!!notbase64",
        b"4\xff\xfe",
        b"",
    ] {
        let sid = handshake(p).await;
        let (status, _) = post(p, &polling(&sid), body).await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(get(p, &polling(&sid)).await.0, 400, "{body:?}");
    }
    assert!(
        server
            .wait_log("bad polling payload", Duration::from_secs(2))
            .await
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn polling_body_over_max_payload_is_413() {
    let mut server = Server::start("[Server]\nmax-payload = 1000\n");
    let p = server.port;
    let sid = handshake(p).await;
    let big = format!("4{}", "x".repeat(2000));
    let (status, body) = post(p, &polling(&sid), big.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        server
            .wait_log("polling body over max payload", Duration::from_secs(2))
            .await
    );
    // What fits is still accepted on the same session.
    assert_eq!(post(p, &polling(&sid), b"3").await, (200, "ok".into()));
    server.assert_serving().await;
}

#[tokio::test]
async fn websocket_message_over_max_payload_closes() {
    let mut server = Server::start("[Server]\nmax-payload = 1000\n");
    let (mut ws, _) = ws_open(server.port).await;
    ws.send(Message::text(format!("4{}", "x".repeat(5000))))
        .await
        .unwrap();
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(5)).await,
        Some((1009, "message too big".into()))
    );
    assert!(
        server
            .wait_log("websocket read failed", Duration::from_secs(2))
            .await
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn websocket_protocol_errors_end_with_a_close_frame() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut server = Server::start("");
    // Not an Engine.IO packet.
    let (mut ws, _) = ws_open(server.port).await;
    send(&mut ws, "9nonsense").await;
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1002, "parse error".into()))
    );
    // A text frame that is not UTF-8.
    let (mut ws, _) = ws_open(server.port).await;
    let bad = Frame::message(vec![b'4', 0xff, 0xfe], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.unwrap();
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1007, "invalid utf-8".into()))
    );
    // A client that says goodbye with a close packet.
    let (mut ws, _) = ws_open(server.port).await;
    send(&mut ws, "1").await;
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(3)).await,
        Some((1000, "client close".into()))
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn shutdown_tells_websocket_clients_the_server_goes_away() {
    let server = Server::start("");
    let (mut ws, _) = ws_open(server.port).await;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(5)).await,
        Some((1001, "server shutting down".into()))
    );
}

#[tokio::test]
async fn polling_on_a_websocket_session_is_a_bad_request() {
    let mut server = Server::start("");
    let p = server.port;
    let (mut ws, sid) = ws_open(p).await;
    let (status, body) = post(p, &polling(&sid), b"4hello").await;
    assert_eq!(
        (status, error_body(&body)),
        (400, json!({"code": 3, "message": "Bad request"}))
    );
    assert_eq!(get(p, &polling(&sid)).await.0, 400);
    // The WebSocket session itself is unharmed.
    send(&mut ws, "40").await;
    assert!(next_sio(&mut ws).await.unwrap().starts_with("0{\"sid\""));
    server.assert_serving().await;
}

#[tokio::test]
async fn second_concurrent_get_closes_the_session() {
    let mut server = Server::start("");
    let p = server.port;
    let sid = handshake(p).await;
    let first = tokio::spawn({
        let target = polling(&sid);
        async move { get(p, &target).await }
    });
    // The first GET must be parked before the second comes, and the server says nothing
    // when it parks one: a fixed pause, long enough for a loaded machine.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = get(p, &polling(&sid)).await;
    assert_eq!(second.0, 400);
    assert_eq!(first.await.unwrap(), (200, "1".into()));
    assert_eq!(get(p, &polling(&sid)).await.0, 400);
    server.assert_serving().await;
}

#[tokio::test]
async fn silent_client_is_dropped_on_ping_timeout() {
    let mut server = Server::start(FAST_PINGS);
    let p = server.port;
    let (mut ws, _) = ws_open(p).await;
    // The first ping comes one interval after the handshake, never before.
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("2"));
    assert_eq!(
        close_frame(&mut ws, Duration::from_secs(2)).await,
        Some((1002, "ping timeout".into()))
    );
    // A polling session that never polls gets its ping and no pong: it is closed.
    let sid = handshake(p).await;
    assert!(
        server
            .wait_log_line(&[&sid, "session closed"], Duration::from_secs(5))
            .await
    );
    assert_eq!(get(p, &polling(&sid)).await.0, 400);
    assert!(
        server
            .wait_log("reason=\"ping timeout\"", Duration::from_secs(2))
            .await
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn half_sent_request_is_cut_off_and_others_are_served() {
    let mut server = Server::start("");
    let p = server.port;
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", p))
        .await
        .unwrap();
    half.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Everyone else is served meanwhile.
    for _ in 0..5 {
        server.assert_serving().await;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), half.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "a half-sent request must not hold its connection forever"
    );
    server.assert_serving().await;
}

#[tokio::test]
async fn a_poll_closed_as_soon_as_sent_still_ends_its_session() {
    let mut server = Server::start("");
    let p = server.port;
    let sid = handshake(p).await;
    // The request and the client's close arrive together, as when a client aborts its poll
    // before a loaded server got to it.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p))
        .await
        .unwrap();
    let head = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", polling(&sid));
    s.write_all(head.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    // Without the aborted poll the next one would wait for the first ping (25 s).
    let next = tokio::time::timeout(Duration::from_secs(10), get(p, &polling(&sid))).await;
    assert_eq!(next.map(|(status, _)| status).ok(), Some(400));
    server.assert_serving().await;
}
