//! Socket.IO v5 over Engine.IO: namespaces, CONNECT with auth, events and acks, binary
//! attachments, and the connect timeout. The application above sees only [`App`] and
//! [`SioSocket`].

mod client;
pub mod packet;
mod socket;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::engineio::{self, Backlog, Connection, Sid};

/// The send side of a session's outbound queue, as the layers above hold it.
pub use crate::engineio::SessionTx;
pub use packet::{Packet, PacketType};
pub use socket::{DisconnectReason, SioSocket, with_attachments};

/// An event from a client, parsed at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    /// The arguments after the name; binary ones are `{"_placeholder":true,"num":N}`.
    pub args: Vec<Value>,
    /// The binary attachments the placeholders point at, in order.
    pub attachments: Vec<Bytes>,
    /// Set when the client waits for an ack.
    pub ack: Option<u64>,
}

/// What the application decides and hears. Called from the session task: never block.
pub trait App: Send + Sync + 'static {
    /// Whether `nsp` exists; others get CONNECT_ERROR "Invalid namespace".
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/"
    }

    /// Decides a CONNECT before it is answered: `Err(message)` becomes CONNECT_ERROR.
    /// Must not emit: the reply has not been queued yet.
    fn accept(
        &self,
        _nsp: &str,
        _auth: Option<&Value>,
        _engine: &engineio::Socket,
    ) -> Result<Accept, String> {
        Ok(Accept::default())
    }

    /// The client joined a namespace; the CONNECT reply is already queued. `state` is what
    /// [`App::accept`] put in [`Accept::state`].
    fn on_connect(
        &self,
        socket: &Arc<SioSocket>,
        auth: Option<Value>,
        state: Option<Box<dyn Any + Send>>,
    );

    fn on_event(&self, socket: &Arc<SioSocket>, event: Event);

    /// The socket left; `backlog` holds what its session had queued (for the main
    /// namespace's socket; empty for others).
    fn on_disconnect(&self, socket: &Arc<SioSocket>, reason: DisconnectReason, backlog: Backlog);
}

/// How a CONNECT is answered.
#[derive(Default)]
pub struct Accept {
    /// Reuse this socket id (connection state recovery); `None`: a new one.
    pub sid: Option<Sid>,
    /// The private session id sent with the reply for connection state recovery; `None`
    /// leaves it out of the reply (and the client will not try to recover).
    pub pid: Option<Sid>,
    /// Handed to [`App::on_connect`].
    pub state: Option<Box<dyn Any + Send>>,
}

/// Socket.IO settings.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// A session that joins no namespace within this time is closed.
    pub connect_timeout: Duration,
    /// Bytes of binary attachments one packet may carry.
    pub max_attachment_bytes: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_secs(45),
            max_attachment_bytes: 1_000_000,
        }
    }
}

/// The Socket.IO server: the Engine.IO handler that gives each session a [`client::Client`].
pub struct SocketIo {
    app: Arc<dyn App>,
    config: SocketIoConfig,
}

impl SocketIo {
    pub fn new(app: Arc<dyn App>, config: SocketIoConfig) -> SocketIo {
        SocketIo { app, config }
    }
}

impl engineio::Handler for SocketIo {
    fn on_open(&self, socket: &Arc<engineio::Socket>) -> Box<dyn Connection> {
        Box::new(client::Client::new(
            socket.clone(),
            self.app.clone(),
            &self.config,
        ))
    }
}
