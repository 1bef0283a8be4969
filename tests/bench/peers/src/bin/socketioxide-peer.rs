//! The socketioxide peer of the benchmarks: the `subscribe`, `unsubscribe` and `publish`
//! events of tests/bench/reference-server.mjs on socketioxide's rooms, served by hyper,
//! with the Node reference's Engine.IO settings, so BENCHMARKS.md can take a ratio to the
//! best-known Rust Socket.IO server measured in the same run.
//!
//!   socketioxide-peer [--port N]     (0 = any free port; default 8003)
//!
//! Prints `listening on 127.0.0.1:PORT` once it accepts connections, like the other servers.
//! Where it differs from the reference, and why:
//! - the subscribe/unsubscribe acks carry no `count`: socketioxide can only count a room by
//!   collecting its sockets, work the reference does not do and the load generator does not
//!   read;
//! - one thread (tokio's current-thread runtime): socketioxide runs every event handler as a
//!   task of its own, and on the multi-thread runtime two publishes from one client can be
//!   broadcast in the wrong order (the load generator sees reordered deliveries). One
//!   thread runs them in arrival order, and the bench gives each server one core anyway;
//! - each connection buffers at most 4,096 packets (Realtime's default client queue);
//!   socketioxide's default of 128 would drop deliveries in the fan-out window, where Node
//!   buffers without bound.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use tokio::net::TcpListener;

fn valid_channel(ch: &str) -> bool {
    !ch.is_empty() && ch.len() <= 256
}

/// Answers an ack when the client asked for one.
fn reply(ack: AckSender, value: Value) {
    // An ack the client no longer waits for (gone, or its queue full) is nobody's loss.
    let _ = ack.send(&value);
}

fn refused() -> Value {
    json!({"ok": false, "error": "channel must be a non-empty string"})
}

async fn on_connect(socket: SocketRef) {
    socket.on(
        "subscribe",
        async |s: SocketRef, TryData::<String>(ch), ack: AckSender| match ch {
            Ok(ch) if valid_channel(&ch) => {
                s.join(ch.clone());
                reply(ack, json!({"ok": true, "channel": ch}));
            }
            _ => reply(ack, refused()),
        },
    );
    socket.on(
        "unsubscribe",
        async |s: SocketRef, TryData::<String>(ch), ack: AckSender| match ch {
            Ok(ch) if valid_channel(&ch) => {
                s.leave(ch.clone());
                reply(ack, json!({"ok": true, "channel": ch}));
            }
            _ => reply(ack, refused()),
        },
    );
    socket.on(
        "publish",
        async |s: SocketRef, TryData::<(String, Value)>(args), ack: AckSender| {
            let (ch, data) = match args {
                Ok((ch, data)) if valid_channel(&ch) => (ch, data),
                _ => return reply(ack, refused()),
            };
            let envelope = json!({
                "type": "message",
                "channel": ch,
                "identity": null,
                "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                "data": data,
            });
            // `within`, not `to`: the publisher gets its own message if it is a member,
            // as with the reference's `io.to(ch)`. A member whose buffer is full misses it;
            // the load generator counts that as lost.
            let _ = s.within(ch).emit("message", &envelope).await;
            reply(ack, json!({"ok": true}));
        },
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut port: u16 = 8003;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--port", Some(p)) => port = p.parse().map_err(|e| format!("--port {p}: {e}"))?,
            _ => return Err(format!("usage: socketioxide-peer [--port N], not {a}").into()),
        }
    }

    // socket.io's defaults, those of the reference: ping every 25 s, 20 s to answer, 1 MB.
    let (svc, io) = SocketIo::builder()
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .max_payload(1_000_000)
        .max_buffer_size(4096)
        .build_svc();
    io.ns("/", on_connect);

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to be freed.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            // A client that hangs up mid-request is not the server's error.
            let _ = conn.await;
        });
    }
}
