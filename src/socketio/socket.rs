//! One client's membership of one namespace: what the application uses to emit, ack and
//! disconnect.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::packet::{Packet, PacketType};
use crate::engineio::{self, CloseReason, Frame, Outgoing, SendError, Sid};

/// A Socket.IO socket: a namespace joined over one Engine.IO session.
pub struct SioSocket {
    /// The Socket.IO id sent in the CONNECT reply (not the Engine.IO session id).
    pub sid: Sid,
    /// The private id a client presents to recover this socket's state (if offered).
    pub pid: Option<Sid>,
    pub nsp: String,
    engine: Arc<engineio::Socket>,
}

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT for the namespace.
    ClientNamespaceDisconnect,
    /// The server disconnected it.
    ServerNamespaceDisconnect,
    /// The underlying Engine.IO session ended.
    Transport(CloseReason),
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::Transport(r) => r.as_str(),
        }
    }
}

impl SioSocket {
    pub(crate) fn new(
        nsp: String,
        engine: Arc<engineio::Socket>,
        sid: Sid,
        pid: Option<Sid>,
    ) -> SioSocket {
        SioSocket {
            sid,
            pid,
            nsp,
            engine,
        }
    }

    /// The Engine.IO session under this socket (peer address, transport).
    pub fn engine(&self) -> &Arc<engineio::Socket> {
        &self.engine
    }

    /// Emits `[event, ...args]`.
    pub fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), SendError> {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(Value::String(event.to_owned()));
        all.extend(args);
        self.emit_raw(Value::Array(all), Vec::new())
    }

    /// Emits an event whose array (name first) may reference `attachments` by placeholder.
    pub fn emit_raw(&self, data: Value, attachments: Vec<Bytes>) -> Result<(), SendError> {
        let p = Packet::event(&self.nsp, data, attachments.len());
        self.engine.send(with_attachments(&p, attachments))
    }

    /// Answers request `id` with `args` (an array).
    pub fn ack(&self, id: u64, args: Value, attachments: Vec<Bytes>) -> Result<(), SendError> {
        let p = Packet::ack(&self.nsp, id, args, attachments.len());
        self.engine.send(with_attachments(&p, attachments))
    }

    /// Queues frames encoded once for many recipients.
    pub fn send(&self, item: Outgoing) -> Result<(), SendError> {
        self.engine.send(item)
    }

    /// The send side of the session's queue, for a broadcaster that keeps it at hand.
    pub fn tx(&self) -> super::SessionTx {
        self.engine.tx()
    }

    /// Like [`SioSocket::send`], but hands a refused item back.
    pub fn offer(&self, item: Outgoing) -> Result<(), (SendError, Outgoing)> {
        self.engine.offer(item)
    }

    /// Tells the client it is disconnected, then closes the session once that is written.
    pub fn disconnect(&self) {
        let p = Packet::new(PacketType::Disconnect, &self.nsp, None);
        let _ = self.engine.send(Outgoing::one(p.to_frame()));
        self.engine.close(CloseReason::ServerClose);
    }
}

/// A packet and its attachments as one queue item, so nothing can come between them.
pub fn with_attachments(p: &Packet, attachments: Vec<Bytes>) -> Outgoing {
    if attachments.is_empty() {
        return Outgoing::one(p.to_frame());
    }
    let mut frames = Vec::with_capacity(attachments.len() + 1);
    frames.push(p.to_frame());
    frames.extend(attachments.into_iter().map(Frame::Binary));
    Outgoing::many(frames)
}

impl fmt::Debug for SioSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SioSocket")
            .field("sid", &self.sid)
            .field("nsp", &self.nsp)
            .field("engine", &self.engine.id)
            .finish()
    }
}
