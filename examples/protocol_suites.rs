//! Serves the application the official Engine.IO v4 and Socket.IO v5 protocol suites expect,
//! on the same library code as the product: `/engine.io/` echoes every message, and
//! `/socket.io/` has namespaces `/` and `/custom`, emits `auth` on connect, answers
//! `message` with `message-back` and acks `message-with-ack`. Ping 300 ms / 200 ms.
//!
//! Usage: `cargo run --release --example protocol_suites -- [PORT]` (default 3000).

use std::sync::Arc;
use std::time::Duration;

use realtime::engineio::{
    self, Backlog, CloseReason, Connection, Engine, EngineConfig, Message, Outgoing,
};
use realtime::http::Router;
use realtime::server;
use realtime::socketio::{
    Accept, App, DisconnectReason, Event, SioSocket, SocketIo, SocketIoConfig,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Engine.IO echo: every message goes back as it came, text as text, binary as binary.
struct Echo;

struct EchoConnection(Arc<engineio::Socket>);

impl engineio::Handler for Echo {
    fn on_open(&self, socket: &Arc<engineio::Socket>) -> Box<dyn Connection> {
        Box::new(EchoConnection(socket.clone()))
    }
}

impl Connection for EchoConnection {
    fn on_message(&mut self, msg: Message) {
        let _ = self.0.send(match msg {
            Message::Text(t) => Outgoing::one(engineio::Frame::message(&t)),
            Message::Binary(b) => Outgoing::binary(b),
        });
    }

    fn on_close(self: Box<Self>, _reason: CloseReason, _backlog: Backlog) {}
}

/// The Socket.IO application of the suite.
struct SuiteApp;

impl App for SuiteApp {
    type Admitted = ();
    type State = ();
    type Refusal = std::convert::Infallible;

    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/custom"
    }

    fn accept(
        &self,
        _: &str,
        _: Option<&Value>,
        _: &engineio::Socket,
    ) -> Result<Accept<()>, Self::Refusal> {
        Ok(Accept::new(()))
    }

    fn on_connect(&self, socket: &Arc<SioSocket>, auth: Option<Value>, _: ()) {
        let _ = socket.emit("auth", vec![auth.unwrap_or_else(|| json!({}))]);
    }

    fn on_event(&self, socket: &Arc<SioSocket>, _: &mut (), event: Event) {
        match (event.name.as_str(), event.ack) {
            ("message", _) => {
                let mut args = vec![Value::from("message-back")];
                args.extend(event.args);
                let _ = socket.emit_raw(Value::Array(args), event.attachments);
            }
            ("message-with-ack", Some(id)) => {
                let _ = socket.ack(id, Value::Array(event.args), event.attachments);
            }
            _ => {}
        }
    }

    fn on_disconnect(&self, _: &Arc<SioSocket>, _: (), _: DisconnectReason, _: Backlog) {}
}

fn main() -> std::io::Result<()> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "3000".into());
    let listener = server::bind(&format!("127.0.0.1:{port}"))?;
    let engine_config = EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        ..EngineConfig::default()
    };
    let sio = SocketIo::new(
        Arc::new(SuiteApp),
        SocketIoConfig {
            connect_timeout: Duration::from_millis(1000),
            ..SocketIoConfig::default()
        },
    );
    let router = Router::new()
        .mount(
            "/engine.io/",
            Engine::new(engine_config.clone(), Arc::new(Echo)),
        )
        .mount("/socket.io/", Engine::new(engine_config, Arc::new(sio)));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    tokio::runtime::Runtime::new()?.block_on(server::serve(
        vec![listener],
        Arc::new(router),
        CancellationToken::new(),
        server::Bounds {
            grace: Duration::from_secs(1),
            ..server::Bounds::default()
        },
    ))
}
