//! The Socket.IO state of one Engine.IO session: its namespaces and a binary packet being
//! reassembled. Owned by the session task, so it needs no lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::{Instrument, debug};

use super::attachments::{Budget, Partial};
use super::packet::{Packet, PacketType};
use super::socket::{DisconnectReason, SioSocket};
use super::{App, Event, SocketIoConfig};
use crate::engineio::{self, Backlog, CloseReason, Connection, Message, Outgoing, Sid, WsClose};
use crate::refusals::{self, Refusal};

pub(crate) struct Client<A: App> {
    engine: Arc<engineio::Socket>,
    app: Arc<A>,
    /// Each joined namespace's socket and the application's state for it.
    nsps: HashMap<String, (Arc<SioSocket>, A::State)>,
    /// A binary packet waiting for its attachments.
    partial: Option<Partial>,
    max_attachment_bytes: usize,
    attachment_timeout: Duration,
    /// Shared by every session.
    budget: Arc<Budget>,
    /// Dropped on the first CONNECT, which stops the connect-timeout task.
    connected: Option<oneshot::Sender<()>>,
}

impl<A: App> Client<A> {
    pub(crate) fn new(
        engine: Arc<engineio::Socket>,
        app: Arc<A>,
        config: &SocketIoConfig,
        budget: Arc<Budget>,
    ) -> Client<A> {
        // The timer ends as soon as a namespace is joined (the sender is dropped), so an
        // idle connection carries no task for it.
        let (connected, joined) = oneshot::channel::<()>();
        let (socket, wait) = (engine.clone(), config.connect_timeout);
        let span = engine.span().clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        debug!("no CONNECT in time");
                        socket.close(CloseReason::ServerClose);
                    }
                    _ = joined => {}
                    _ = socket.closing() => {}
                }
            }
            .instrument(span),
        );
        Client {
            engine,
            app,
            nsps: HashMap::new(),
            partial: None,
            max_attachment_bytes: config.max_attachment_bytes,
            attachment_timeout: config.attachment_timeout,
            budget,
            connected: Some(connected),
        }
    }

    /// Ends the whole session for a protocol violation.
    fn reject(&self, why: &dyn std::fmt::Display) {
        debug!(error = %why, "closing: bad socket.io packet");
        refusals::record(Refusal::BadPacket, self.engine.peer, why);
        self.engine.close(CloseReason::ParseError);
    }

    /// Like [`Client::reject`], with the close frame a WebSocket client gets.
    fn reject_as(&self, ws: WsClose) {
        debug!(error = ws.reason, "closing: bad socket.io packet");
        refusals::record(Refusal::BadPacket, self.engine.peer, &ws.reason);
        self.engine.reject(ws);
    }

    fn on_text(&mut self, text: &str) {
        if self.partial.is_some() {
            return self.reject(&"text packet while binary attachments were due");
        }
        let packet = match Packet::decode(text) {
            Ok(p) => p,
            Err(e) => return self.reject(&e),
        };
        if packet.kind.is_binary() && packet.attachments > 0 {
            match Partial::start(packet, &self.budget, &self.engine, self.attachment_timeout) {
                Ok(p) => self.partial = Some(p),
                Err(refused) => self.reject_as(refused.ws_close()),
            }
        } else {
            self.on_packet(packet, Vec::new());
        }
    }

    fn on_binary(&mut self, data: Bytes) {
        let Some(partial) = self.partial.as_mut() else {
            // What a client with another parser (e.g. msgpack) sends first.
            return self.reject_as(WsClose::new(1003, "binary message not expected"));
        };
        match partial.add(data, self.max_attachment_bytes) {
            Ok(false) => {}
            Ok(true) => {
                if let Some(p) = self.partial.take() {
                    let (packet, attachments) = p.finish();
                    self.on_packet(packet, attachments);
                }
            }
            Err(refused) => {
                // Dropped at once: its bytes go back to the budget.
                self.partial = None;
                self.reject_as(refused.ws_close());
            }
        }
    }

    fn on_packet(&mut self, packet: Packet, attachments: Vec<Bytes>) {
        match packet.kind {
            PacketType::Connect => self.on_connect(packet),
            PacketType::Disconnect => match self.nsps.remove(&packet.nsp) {
                Some((socket, state)) => self.app.on_disconnect(
                    &socket,
                    state,
                    DisconnectReason::ClientNamespaceDisconnect,
                    Backlog::empty(),
                ),
                None => self.reject(&"DISCONNECT for a namespace not joined"),
            },
            PacketType::Event | PacketType::BinaryEvent => {
                if !self.nsps.contains_key(&packet.nsp) {
                    return self.reject(&"EVENT for a namespace not joined");
                }
                let Some(Value::Array(mut args)) = packet.data else {
                    return self.reject(&"EVENT without an array");
                };
                let name = match args.remove(0) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let event = Event {
                    name,
                    args,
                    attachments,
                    ack: packet.id,
                };
                if let Some((socket, state)) = self.nsps.get_mut(&packet.nsp) {
                    self.app.on_event(socket, state, event);
                }
            }
            // This server asks clients for no acks, so an ACK has nothing to answer.
            PacketType::Ack | PacketType::BinaryAck => {
                if !self.nsps.contains_key(&packet.nsp) {
                    self.reject(&"ACK for a namespace not joined");
                }
            }
            PacketType::ConnectError => self.reject(&"CONNECT_ERROR from a client"),
        }
    }

    /// Rejoins the main namespace of a session handed over live, as the recovery `auth`
    /// would, without a reply: the client joined it with the previous process. False when
    /// the session is not recovered (admission refused it, or nothing waits for the pid).
    pub(crate) fn rejoin(&mut self, auth: &Value) -> bool {
        let nsp = "/";
        let Ok(accept) = self.app.accept(nsp, Some(auth), &self.engine) else {
            return false;
        };
        // Only the recovery of the session named: anything else is a new session.
        let (Some(sid), Some(pid)) = (accept.sid, accept.pid) else {
            return false;
        };
        if auth.get("sid").and_then(Value::as_str) != Some(sid.as_str()) {
            return false;
        }
        let socket = Arc::new(SioSocket::new(
            nsp.to_owned(),
            self.engine.clone(),
            sid,
            Some(pid),
        ));
        self.connected.take();
        let state = self.app.on_connect(&socket, None, accept.admitted);
        self.nsps.insert(nsp.to_owned(), (socket, state));
        true
    }

    fn on_connect(&mut self, packet: Packet) {
        if self.nsps.contains_key(&packet.nsp) {
            return self.reject(&"CONNECT to a namespace already joined");
        }
        let refuse = |message: &str| {
            let p = Packet::new(
                PacketType::ConnectError,
                &packet.nsp,
                Some(json!({"message": message})),
            );
            let _ = self.engine.send(Outgoing::one(p.to_frame()));
        };
        if !self.app.has_namespace(&packet.nsp) {
            debug!(nsp = %packet.nsp, "CONNECT to unknown namespace");
            return refuse("Invalid namespace");
        }
        let accept = match self
            .app
            .accept(&packet.nsp, packet.data.as_ref(), &self.engine)
        {
            Ok(a) => a,
            Err(refusal) => {
                let message = refusal.to_string();
                debug!(nsp = %packet.nsp, %message, "CONNECT refused");
                return refuse(&message);
            }
        };
        let sid = accept.sid.unwrap_or_else(Sid::random);
        let socket = Arc::new(SioSocket::new(
            packet.nsp.clone(),
            self.engine.clone(),
            sid,
            accept.pid,
        ));
        let mut reply = json!({"sid": socket.sid.as_str()});
        if let Some(pid) = &socket.pid {
            reply["pid"] = Value::from(pid.as_str());
        }
        let reply = Packet::new(PacketType::Connect, &packet.nsp, Some(reply));
        // A reply that cannot be queued means the session is closing: its close follows.
        // The socket still joins, so that close hands what it admitted (a recovered
        // session, for one) back to its grace window instead of leaving it claimed.
        let _ = self.engine.send(Outgoing::one(reply.to_frame()));
        self.connected.take();
        let state = self.app.on_connect(&socket, packet.data, accept.admitted);
        self.nsps.insert(packet.nsp, (socket, state));
    }
}

impl<A: App> Connection for Client<A> {
    fn on_message(&mut self, msg: Message) {
        match msg {
            Message::Text(t) => self.on_text(&t),
            Message::Binary(b) => self.on_binary(b),
        }
    }

    fn on_close(self: Box<Self>, reason: CloseReason, backlog: Backlog) {
        // The backlog is the session's; it goes with the main namespace, which carries
        // the application's broadcasts.
        let mut backlog = Some(backlog);
        let Client { app, nsps, .. } = *self;
        let mut sockets: Vec<_> = nsps.into_values().collect();
        sockets.sort_by_key(|(s, _)| s.nsp != "/");
        // A WebSocket closed on purpose ends every namespace as its DISCONNECT would
        // (python-socketio sends that only after the close, where it is never read).
        let reason = match reason {
            CloseReason::ClientDisconnect => DisconnectReason::ClientNamespaceDisconnect,
            r => DisconnectReason::Transport(r),
        };
        for (socket, state) in sockets {
            let b = backlog.take().unwrap_or_else(Backlog::empty);
            app.on_disconnect(&socket, state, reason, b);
        }
    }
}
