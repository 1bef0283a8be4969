//! The hub as the Socket.IO application: one namespace, `/`, whose sockets become hub
//! connections. Each socket's [`HubSocket`] is owned by its session task, from CONNECT
//! to disconnect; admission, requests and the 2012 protocol live beside this file.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;
use tracing::{debug, warn};

use super::admission::Admitted;
use super::request::RequestError;
use super::{Conn, Hub};
use crate::auth::{Channels, Security};
use crate::engineio::{self, Backlog, CloseReason};
use crate::socketio::{Accept, App, DisconnectReason, Event, SioSocket};

/// The Socket.IO application of the product: one namespace, `/`, and the hub behind it.
pub struct HubApp {
    pub(super) hub: Arc<Hub>,
    /// Identity tokens and `[Identity] require`; none admits every identity unproven.
    pub(super) security: Option<Arc<Security>>,
}

/// What the hub keeps for one socket.
pub struct HubSocket {
    /// Replaced only by a legacy `init` that names an identity.
    pub(super) conn: Conn,
    /// The legacy protocol needs `init` first; an identity from CONNECT counts as one.
    pub(super) legacy_ready: bool,
    /// What the identity's token allows this connection to subscribe, publish and
    /// command to; replaced only by a legacy `init` with a token.
    pub(super) channels: Channels,
}

impl fmt::Debug for HubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubApp")
            .field("guarded", &self.security.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for HubSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSocket")
            .field("identity", &self.conn.member.identity)
            .field("legacy_ready", &self.legacy_ready)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl HubApp {
    pub fn new(hub: Arc<Hub>) -> HubApp {
        HubApp {
            hub,
            security: None,
        }
    }

    /// Checks identities (and their tokens) with `security`.
    pub fn guarded(mut self, security: Arc<Security>) -> HubApp {
        self.security = Some(security);
        self
    }
}

impl App for HubApp {
    type Admitted = Admitted;
    type State = HubSocket;
    type Refusal = RequestError;

    fn accept(
        &self,
        _nsp: &str,
        auth: Option<&Value>,
        _engine: &engineio::Socket,
    ) -> Result<Accept<Admitted>, RequestError> {
        self.admit_connect(auth)
    }

    fn on_connect(
        &self,
        socket: &Arc<SioSocket>,
        _auth: Option<Value>,
        admitted: Admitted,
    ) -> HubSocket {
        let Admitted {
            identity,
            channels,
            claim,
        } = admitted;
        let legacy_ready = identity.is_some();
        HubSocket {
            conn: self.hub.attach(socket, identity, claim),
            legacy_ready,
            channels,
        }
    }

    fn on_event(&self, socket: &Arc<SioSocket>, state: &mut HubSocket, event: Event) {
        self.on_request(socket, state, event);
    }

    fn on_disconnect(
        &self,
        socket: &Arc<SioSocket>,
        state: HubSocket,
        reason: DisconnectReason,
        backlog: Backlog,
    ) {
        // As socket.io decides it: a lost or closed transport may come back (a client that
        // means to leave sends a Socket.IO DISCONNECT first); a protocol error may not.
        let recoverable = match reason {
            DisconnectReason::Transport(r) => {
                !matches!(r, CloseReason::ParseError | CloseReason::BadRequest)
            }
            _ => false,
        };
        if reason == DisconnectReason::Transport(CloseReason::SlowClient) {
            self.hub
                .counters
                .slow_clients
                .fetch_add(1, Ordering::Relaxed);
            warn!(sid = %socket.sid, peer = ?socket.engine().peer, "disconnected a slow client: its outbound queue was full");
        }
        debug!(sid = %socket.sid, reason = reason.as_str(), recoverable, "socket disconnected");
        let items = if recoverable {
            backlog.into_tagged()
        } else {
            Default::default()
        };
        self.hub.detach(&state.conn, socket, items, recoverable);
    }
}
