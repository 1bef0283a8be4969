//! A yardstick, not a usable server: the least work this machine needs to do what the
//! benchmark asks (WebSocket handshake, Engine.IO OPEN, Socket.IO CONNECT, the `subscribe`,
//! `unsubscribe` and `publish` events of tests/bench/reference-server.mjs, acks), so
//! BENCHMARKS.md can say how far each server is from what the machine can do.
//!
//!   limit-peer [--port N]     (0 = any free port; default 8004)
//!
//! Each broadcast is serialised once into shared bytes; every connection has a writer task
//! that drains its queue and flushes once per batch. Deliberately missing: back-pressure
//! (queues are unbounded), the polling transport, namespaces, binary packets, pong
//! timeouts, input checks beyond not panicking. One thread (the bench gives each server one
//! core): no work stealing, no wakeups across threads. Prints `listening on 127.0.0.1:PORT`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Tx = UnboundedSender<Message>;

/// Every connection's queue, and the members of each room, by connection number.
#[derive(Debug, Default)]
struct Hub {
    all: Mutex<HashMap<u64, Tx>>,
    rooms: Mutex<HashMap<String, HashMap<u64, Tx>>>,
}

impl Hub {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Tx>>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// socket.io's defaults, those of the reference.
const OPEN: &str =
    r#""upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut port: u16 = 8004;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--port", Some(p)) => port = p.parse().map_err(|e| format!("--port {p}: {e}"))?,
            _ => return Err(format!("usage: limit-peer [--port N], not {a}").into()),
        }
    }
    let hub = Arc::new(Hub::default());
    // One ping for everyone every 25 s, the same shared bytes: clients stay in protocol.
    let pinger = hub.clone();
    tokio::spawn(async move {
        let ping = Message::Text(Utf8Bytes::from_static("2"));
        let mut every = tokio::time::interval(Duration::from_secs(25));
        every.tick().await;
        loop {
            every.tick().await;
            let all = pinger.all.lock().unwrap_or_else(PoisonError::into_inner);
            all.values().for_each(|tx| drop(tx.send(ping.clone())));
        }
    });
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on {}", listener.local_addr()?);
    let ids = AtomicU64::new(0);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await; // out of descriptors
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(hub.clone(), stream, id));
    }
}

async fn serve(hub: Arc<Hub>, stream: TcpStream, id: u64) {
    let _ = stream.set_nodelay(true);
    // A 4 KiB read buffer, as tungstenite advises for many mostly idle connections (its
    // default, 128 KiB, is allocated up front).
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(1_000_000));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (sink, mut stream) = ws.split();
    let (tx, rx) = unbounded_channel();
    let _ = tx.send(text(format!(r#"0{{"sid":"e{id}",{OPEN}"#)));
    hub.all
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, tx.clone());
    tokio::spawn(write(sink, rx));
    let mut joined = Vec::new();
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(t) if t.as_str() == "40" => {
                drop(tx.send(text(format!(r#"40{{"sid":"s{id}"}}"#))))
            }
            Message::Text(t) if t.as_str() == "1" => break,
            Message::Text(t) if t.as_str().starts_with("42") => {
                on_event(&hub, &tx, id, &t.as_str()[2..], &mut joined)
            }
            Message::Close(_) => break,
            _ => {} // a pong, or something this yardstick does not speak
        }
    }
    hub.all
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    let mut rooms = hub.rooms();
    for ch in joined {
        if let Some(members) = rooms.get_mut(&ch) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(&ch);
            }
        }
    }
}

/// Drains the queue in batches: every frame of a batch written, then one flush.
async fn write<S>(mut sink: S, mut rx: UnboundedReceiver<Message>)
where
    S: SinkExt<Message> + Unpin,
{
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 256).await > 0 {
        for msg in batch.drain(..) {
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

fn text(s: String) -> Message {
    Message::Text(Utf8Bytes::from(s))
}

/// `<ack id>["name", args...]`: the three events of the reference, anything else ignored.
fn on_event(hub: &Hub, tx: &Tx, id: u64, event: &str, joined: &mut Vec<String>) {
    let digits = event.bytes().take_while(u8::is_ascii_digit).count();
    let (ack, json) = event.split_at(digits);
    let Ok(args) = serde_json::from_str::<Vec<&RawValue>>(json) else {
        return;
    };
    let (Some(name), Some(channel)) = (args.first(), args.get(1)) else {
        return;
    };
    let Ok(ch) = serde_json::from_str::<String>(channel.get()) else {
        return;
    };
    let reply = match name.get() {
        r#""subscribe""# => {
            let mut rooms = hub.rooms();
            let members = rooms.entry(ch.clone()).or_default();
            if members.insert(id, tx.clone()).is_none() {
                joined.push(ch);
            }
            format!(
                r#"[{{"ok":true,"channel":{},"count":{}}}]"#,
                channel.get(),
                members.len()
            )
        }
        r#""unsubscribe""# => {
            let mut rooms = hub.rooms();
            let count = rooms.get_mut(&ch).map_or(0, |m| {
                m.remove(&id);
                m.len()
            });
            joined.retain(|c| *c != ch);
            format!(
                r#"[{{"ok":true,"channel":{},"count":{count}}}]"#,
                channel.get()
            )
        }
        r#""publish""# => {
            let data = args.get(2).map_or("null", |d| d.get());
            let now = humantime::format_rfc3339_millis(SystemTime::now());
            // Serialised once; every member's queue gets the same bytes.
            let msg = text(format!(
                r#"42["message",{{"type":"message","channel":{},"identity":null,"timestamp":"{now}","data":{data}}}]"#,
                channel.get()
            ));
            if let Some(members) = hub.rooms().get(&ch) {
                members.values().for_each(|m| drop(m.send(msg.clone())));
            }
            r#"[{"ok":true}]"#.to_owned()
        }
        _ => return,
    };
    if !ack.is_empty() {
        let _ = tx.send(text(format!("43{ack}{reply}")));
    }
}
