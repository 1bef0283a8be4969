//! Engine.IO v4: sessions over HTTP long-polling and WebSocket, the upgrade between them,
//! heartbeats and payload limits. The layer above sees only [`Handler`], [`Connection`] and
//! [`Socket`].
//!
//! Layout, in the order a request meets them:
//! - `service`: the one routing function (query → request info → one `match`);
//! - `errors`: the error enum and its mapping to the reference server's JSON errors;
//! - `cors`: CORS headers and the preflight;
//! - `polling`: the handshake GET, the waiting GET and the POST;
//! - `websocket`: the upgrade handshake and the probe;
//! - `engine`: the settings and the table of open sessions;
//! - `session`: the task that owns a session's transport, heartbeat and queue, entered
//!   in the session's tracing span (its parts: `session/upgrade`, polling while a WebSocket
//!   is probed; `session/finish`, how it ends); `heartbeat`: its ping schedule and
//!   deadline; `close`: the WebSocket close frame it ends with; `transport`: what carries
//!   the session now (one enum);
//!   `backlog`: what a closed session leaves for a replay;
//! - `socket`: the handle shared with the layers above, with the send handle
//!   [`SessionTx`]; `queue`: the outbound queue behind both;
//! - `client_tcp`: the client's TCP stream under HTTP, which holds a 101 back so it
//!   shares the first frame's write;
//! - `packet`: the pure codec; `buffered`: the write buffer under the WebSocket;
//!   `wsread`: its read side, frame by frame, on the client's TCP stream; `livews`: a live
//!   WebSocket taken off its socket between two messages, and resumed on it.

mod backlog;
mod buffered;
pub(crate) mod client_tcp;
mod close;
mod cors;
mod engine;
mod errors;
mod heartbeat;
mod livews;
mod outgoing;
pub mod packet;
mod polling;
pub(crate) mod queue;
mod service;
pub mod session;
pub mod socket;
#[cfg(test)]
mod tests;
mod transport;
mod websocket;
mod wsframe;
mod wsread;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderMap;

pub use backlog::Backlog;
pub use close::WsClose;
pub use engine::{Engine, EngineConfig};
pub use errors::EngineError;
pub use packet::{Frame, Packet, Str};
pub use socket::{CloseReason, Outgoing, SendError, SessionTx, Sid, Socket, TransportKind};

/// The body type of every response this server writes.
pub type Body = Full<Bytes>;

/// A message from a client, for the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Str),
    Binary(Bytes),
}

/// The only seam between Engine.IO and the layer above: a new session gets a
/// [`Connection`], which the session task then owns and feeds, so per-session state above
/// needs no lock.
pub trait Handler: Send + Sync + 'static {
    fn on_open(&self, socket: &Arc<Socket>) -> Box<dyn Connection>;
    /// A session the previous process handed over live, resumed on `socket` with the
    /// recovery `auth` of its main namespace; `None` when it cannot be resumed (its client
    /// then recovers as after a lost connection).
    fn on_resume(
        &self,
        _socket: &Arc<Socket>,
        _auth: &serde_json::Value,
    ) -> Option<Box<dyn Connection>> {
        None
    }
}

/// The layer above's side of one session. Called from the session task: implementations
/// must not block (queue work, never wait on a client).
pub trait Connection: Send + 'static {
    fn on_message(&mut self, msg: Message);
    /// The session ended; `backlog` holds what it had queued, for a later replay.
    fn on_close(self: Box<Self>, reason: CloseReason, backlog: Backlog);
}

/// Decides who may open a session (the origin check of docs/design.md#origin-check). Consulted on
/// handshakes (requests without a session id), which it may refuse, and on every request for CORS:
/// only an allowed `Origin` is reflected.
pub trait Gate: Send + Sync + 'static {
    /// `peer` is where the request came from: loopback headers count only from loopback.
    fn allows(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool;
    /// A handshake was refused with 403 (for the log line and the count).
    fn refused(&self, headers: &HeaderMap, peer: Option<SocketAddr>);
}
