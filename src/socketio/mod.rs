//! Socket.IO v5 over Engine.IO: namespaces, CONNECT with auth, events and acks, binary
//! attachments, and the connect timeout. The application above sees only [`App`] and
//! [`SioSocket`].

mod attachments;
mod client;
pub mod packet;
mod socket;

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
///
/// The session task owns each socket's [`App::State`] and lends it to every call, so the
/// application keeps per-socket state without locks.
pub trait App: Send + Sync + 'static {
    /// What [`App::accept`] decided, handed to [`App::on_connect`].
    type Admitted: Send + 'static;
    /// The application's state for one socket, from [`App::on_connect`] to
    /// [`App::on_disconnect`].
    type State: Send + 'static;
    /// Why a CONNECT was refused; its text is the CONNECT_ERROR message.
    type Refusal: std::error::Error;

    /// Whether `nsp` exists; others get CONNECT_ERROR "Invalid namespace".
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/"
    }

    /// Decides a CONNECT before it is answered. Must not emit: the reply has not been
    /// queued yet.
    fn accept(
        &self,
        nsp: &str,
        auth: Option<&Value>,
        engine: &engineio::Socket,
    ) -> Result<Accept<Self::Admitted>, Self::Refusal>;

    /// The client joined a namespace; the CONNECT reply is already queued. Returns the
    /// socket's state.
    fn on_connect(
        &self,
        socket: &Arc<SioSocket>,
        auth: Option<Value>,
        admitted: Self::Admitted,
    ) -> Self::State;

    fn on_event(&self, socket: &Arc<SioSocket>, state: &mut Self::State, event: Event);

    /// The socket left; `backlog` holds what its session had queued (for the main
    /// namespace's socket; empty for others).
    fn on_disconnect(
        &self,
        socket: &Arc<SioSocket>,
        state: Self::State,
        reason: DisconnectReason,
        backlog: Backlog,
    );
}

/// How a CONNECT is answered.
#[derive(Debug)]
pub struct Accept<A> {
    /// Reuse this socket id (connection state recovery); `None`: a new one.
    pub sid: Option<Sid>,
    /// The private session id sent with the reply for connection state recovery; `None`
    /// leaves it out of the reply (and the client will not try to recover).
    pub pid: Option<Sid>,
    /// Handed to [`App::on_connect`].
    pub admitted: A,
}

impl<A> Accept<A> {
    /// A new socket id, and no connection state recovery.
    pub fn new(admitted: A) -> Accept<A> {
        Accept {
            sid: None,
            pid: None,
            admitted,
        }
    }
}

/// Socket.IO settings.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// A session that joins no namespace within this time is closed.
    pub connect_timeout: Duration,
    /// Bytes of binary attachments one packet may carry.
    pub max_attachment_bytes: usize,
    /// A binary packet whose attachments do not all come within this time closes its
    /// session.
    pub attachment_timeout: Duration,
    /// Bytes that binary packets still waiting for attachments may hold, all sessions
    /// together; past it, a session starting another one is closed.
    pub attachment_budget: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_secs(45),
            max_attachment_bytes: 1_000_000,
            attachment_timeout: Duration::from_secs(20),
            attachment_budget: 64_000_000,
        }
    }
}

/// The Socket.IO server: the Engine.IO handler that gives each session a [`client::Client`].
#[derive(Debug)]
pub struct SocketIo<A> {
    app: Arc<A>,
    config: SocketIoConfig,
    budget: Arc<attachments::Budget>,
}

impl<A: App> SocketIo<A> {
    pub fn new(app: Arc<A>, config: SocketIoConfig) -> SocketIo<A> {
        let budget = attachments::Budget::new(config.attachment_budget);
        SocketIo {
            app,
            config,
            budget,
        }
    }
}

impl<A: App> engineio::Handler for SocketIo<A> {
    fn on_open(&self, socket: &Arc<engineio::Socket>) -> Box<dyn Connection> {
        Box::new(client::Client::new(
            socket.clone(),
            self.app.clone(),
            &self.config,
            self.budget.clone(),
        ))
    }

    fn on_resume(
        &self,
        socket: &Arc<engineio::Socket>,
        auth: &Value,
    ) -> Option<Box<dyn Connection>> {
        let mut client = client::Client::new(
            socket.clone(),
            self.app.clone(),
            &self.config,
            self.budget.clone(),
        );
        client
            .rejoin(auth)
            .then(|| Box::new(client) as Box<dyn Connection>)
    }
}
