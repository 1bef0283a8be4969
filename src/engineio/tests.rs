//! The engine served over real HTTP/1.1 connections in memory, on a paused clock: the
//! orderings that race on a loaded machine are played here one step at a time.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{
    Backlog, CloseReason, Connection, Engine, EngineConfig, Frame, Handler, Message, Outgoing,
    Socket,
};

/// Echoes every message, as the Engine.IO suite's server does.
pub(super) struct Echo;

struct EchoConnection(Arc<Socket>);

impl Handler for Echo {
    fn on_open(&self, socket: &Arc<Socket>) -> Box<dyn Connection> {
        Box::new(EchoConnection(socket.clone()))
    }
}

impl Connection for EchoConnection {
    fn on_message(&mut self, msg: Message) {
        let _ = self.0.send(match msg {
            Message::Text(t) => Outgoing::one(Frame::message(&t)),
            Message::Binary(b) => Outgoing::binary(b),
        });
    }

    fn on_close(self: Box<Self>, _: CloseReason, _: Backlog) {}
}

type Ws = WebSocketStream<DuplexStream>;

fn engine(config: EngineConfig) -> Engine {
    Engine::new(config, Arc::new(Echo))
}

/// A new connection to the engine, served in its own task.
fn connect(engine: &Engine) -> DuplexStream {
    let (client, server) = duplex(64 * 1024);
    let engine = engine.clone();
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let engine = engine.clone();
            async move { Ok::<_, Infallible>(engine.handle(req, None).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .with_upgrades()
            .await;
    });
    client
}

/// One request on its own connection: the status and the body.
async fn request(engine: Engine, method: &str, query: String, body: &str) -> (u16, String) {
    let mut c = connect(&engine);
    let head = format!(
        "{method} /engine.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: x\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn spawn_request(
    engine: &Engine,
    method: &str,
    sid: &str,
    body: &str,
) -> JoinHandle<(u16, String)> {
    let (engine, method, body) = (engine.clone(), method.to_owned(), body.to_owned());
    let query = format!("&sid={sid}");
    tokio::spawn(async move { request(engine, &method, query, &body).await })
}

async fn handshake(engine: &Engine) -> String {
    let (status, body) = request(engine.clone(), "GET", String::new(), "").await;
    assert_eq!(status, 200, "{body}");
    let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// A WebSocket for the polling session `sid`, not probed yet.
async fn websocket(engine: &Engine, sid: &str) -> Ws {
    let mut c = connect(engine);
    let head = format!(
        "GET /engine.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    // Byte by byte: nothing past the head may be taken from the WebSocket.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(c.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    WebSocketStream::from_raw_socket(c, Role::Client, None).await
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(WsMessage::text(text)).await.unwrap();
}

async fn next_text(ws: &mut Ws) -> String {
    match ws.next().await {
        Some(Ok(WsMessage::Text(t))) => t.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// A WebSocket of session `sid` that answered the probe.
async fn probed(engine: &Engine, sid: &str) -> Ws {
    let mut ws = websocket(engine, sid).await;
    send(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws
}

/// Lets every task run until all of them wait (the paused clock moves on meanwhile).
async fn settle() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_the_upgrade_overtakes_is_refused() {
    let engine = engine(EngineConfig {
        upgrade_hold: Duration::from_secs(3600),
        ..EngineConfig::default()
    });
    let sid = handshake(&engine).await;
    let mut ws = probed(&engine, &sid).await;
    // The client sent `5` and then these; the server reads them first.
    let get = spawn_request(&engine, "GET", &sid, "");
    let post = spawn_request(&engine, "POST", &sid, "4late");
    settle().await;
    assert!(!get.is_finished(), "{:?}", get.await);
    send(&mut ws, "5").await;
    assert_eq!(get.await.unwrap().0, 400);
    assert_eq!(post.await.unwrap().0, 400);
    // The WebSocket carries the session, and nothing of the refused POST was delivered.
    send(&mut ws, "4hello").await;
    assert_eq!(next_text(&mut ws).await, "4hello");
    assert_eq!(
        request(engine.clone(), "GET", format!("&sid={sid}"), "")
            .await
            .0,
        400
    );
}

#[tokio::test(start_paused = true)]
async fn a_poll_during_the_upgrade_is_served_once_the_hold_passes() {
    let engine = engine(EngineConfig::default());
    let sid = handshake(&engine).await;
    let mut ws = probed(&engine, &sid).await;
    let started = tokio::time::Instant::now();
    let get = spawn_request(&engine, "GET", &sid, "");
    assert_eq!(get.await.unwrap(), (200, "6".to_owned()));
    assert!(started.elapsed() >= engine.config().upgrade_hold);
    send(&mut ws, "5").await;
    send(&mut ws, "4hello").await;
    assert_eq!(next_text(&mut ws).await, "4hello");
}

#[tokio::test(start_paused = true)]
async fn a_get_waiting_at_the_probe_is_released_after_3probe() {
    let engine = engine(EngineConfig::default());
    let sid = handshake(&engine).await;
    let get = spawn_request(&engine, "GET", &sid, "");
    settle().await;
    assert!(!get.is_finished());
    let mut ws = probed(&engine, &sid).await;
    assert_eq!(get.await.unwrap(), (200, "6".to_owned()));
    send(&mut ws, "5").await;
    send(&mut ws, "4hello").await;
    assert_eq!(next_text(&mut ws).await, "4hello");
}

/// After a failed upgrade, a GET waits for frames again, and a new upgrade succeeds.
async fn polling_goes_on(engine: &Engine, sid: &str) {
    let get = spawn_request(engine, "GET", sid, "");
    settle().await;
    assert!(!get.is_finished(), "{:?}", get.await);
    let post = spawn_request(engine, "POST", sid, "4polled");
    assert_eq!(post.await.unwrap(), (200, "ok".to_owned()));
    assert_eq!(get.await.unwrap(), (200, "4polled".to_owned()));
    let mut ws = probed(engine, sid).await;
    send(&mut ws, "5").await;
    send(&mut ws, "4hello").await;
    assert_eq!(next_text(&mut ws).await, "4hello");
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_closes_leaves_the_session_polling() {
    let engine = engine(EngineConfig::default());
    let sid = handshake(&engine).await;
    let ws = probed(&engine, &sid).await;
    drop(ws);
    polling_goes_on(&engine, &sid).await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_silent_past_the_upgrade_timeout_leaves_the_session_polling() {
    let engine = engine(EngineConfig {
        upgrade_timeout: Duration::from_secs(2),
        ..EngineConfig::default()
    });
    let sid = handshake(&engine).await;
    let _ws = probed(&engine, &sid).await;
    settle().await;
    polling_goes_on(&engine, &sid).await;
}
