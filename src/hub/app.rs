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
        engine: &engineio::Socket,
    ) -> Result<Accept<Admitted>, RequestError> {
        self.admit_connect(auth, engine.peer)
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
            resume,
        } = admitted;
        let legacy_ready = identity.is_some();
        let conn = self
            .hub
            .attach_as(socket, identity, claim, resume.is_none());
        if let Some(resume) = resume {
            self.hub.resume(&conn, socket, resume);
        }
        HubSocket {
            conn,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engineio::queue::Queue;
    use crate::engineio::{Frame, Sid, TransportKind};
    use crate::hub::HubConfig;

    /// A socket joined to `app`, with the queue its session would write from.
    struct Tab {
        socket: Arc<SioSocket>,
        state: HubSocket,
        rx: Arc<Queue>,
    }

    fn app() -> HubApp {
        HubApp::new(Arc::new(Hub::new(HubConfig::default())))
    }

    fn connect(app: &HubApp, auth: Value) -> Result<Tab, RequestError> {
        let rx = Arc::new(Queue::new(64));
        let engine = Arc::new(engineio::Socket::new(
            Sid::random(),
            None,
            TransportKind::WebSocket,
            rx.clone(),
        ));
        let accept = app.accept("/", Some(&auth), &engine)?;
        let sid = accept.sid.unwrap_or_else(Sid::random);
        let socket = Arc::new(SioSocket::new("/".into(), engine, sid, accept.pid));
        let state = app.on_connect(&socket, Some(auth), accept.admitted);
        Ok(Tab { socket, state, rx })
    }

    impl Tab {
        fn emit(&mut self, app: &HubApp, name: &str, args: Value, ack: Option<u64>) {
            let Value::Array(args) = args else {
                panic!("args must be an array")
            };
            let event = Event {
                name: name.into(),
                args,
                attachments: Vec::new(),
                ack,
            };
            app.on_event(&self.socket, &mut self.state, event);
        }

        /// The packets queued since the last call: (type and ack id, arguments).
        fn sent(&self) -> Vec<(String, Value)> {
            let mut items = Vec::new();
            self.rx.take(usize::MAX, &mut items);
            let frames = items.iter().flat_map(|i| i.frames().iter());
            frames
                .map(|f| {
                    let Frame::Text(t) = f else {
                        panic!("binary frame")
                    };
                    let at = t.find('[').expect("an array");
                    let args = serde_json::from_str(&t[at..]).expect("JSON");
                    (t[..at].to_owned(), args)
                })
                .collect()
        }
    }

    #[tokio::test]
    async fn requests_are_answered_in_their_ack() {
        let app = app();
        let mut tab = connect(&app, json!({"identity": "ann"})).unwrap();
        tab.emit(&app, "subscribe", json!(["c", {"x": 1}]), Some(1));
        let sent = tab.sent();
        let ack = sent.last().unwrap();
        assert_eq!(
            ack,
            &(
                "431".to_owned(),
                json!([{"ok": true, "channel": "c", "count": 1}])
            )
        );
        tab.emit(&app, "publish", json!(["c", "hi"]), Some(2));
        let sent = tab.sent();
        assert_eq!(sent[0].1[1]["data"], "hi");
        assert_eq!(sent[0].1[1]["identity"], "ann");
        assert_eq!(sent[1], ("432".to_owned(), json!([{"ok": true}])));
        tab.emit(&app, "command", json!(["c", "init"]), Some(3));
        assert_eq!(
            tab.sent(),
            [(
                "433".to_owned(),
                json!([{"ok": false, "error": "command name \"init\" is reserved"}])
            )]
        );
        tab.emit(&app, "dance", json!([]), Some(4));
        assert_eq!(tab.sent()[0].1[0]["error"], "unknown event \"dance\"");
    }

    #[tokio::test]
    async fn a_refusal_without_an_ack_is_an_error_envelope() {
        let app = app();
        let mut tab = connect(&app, json!({})).unwrap();
        tab.emit(&app, "publish", json!(["bad\nname", 1]), None);
        assert_eq!(
            tab.sent(),
            [(
                "42".to_owned(),
                json!(["message", {"type": "error", "channel": "bad\nname", "success": false,
                    "error": "channel name contains control characters"}])
            )]
        );
        tab.emit(&app, "unsubscribe", json!(["never"]), None);
        let sent = tab.sent();
        assert_eq!(sent[0].1[1]["error"], "not subscribed to \"never\"");
        assert_eq!(sent[0].1[1]["channel"], "never");
    }

    #[tokio::test]
    async fn the_2012_protocol_takes_init_first_then_names_the_identity() {
        let app = app();
        let mut tab = connect(&app, json!({})).unwrap();
        let message = json!({"type": "message", "channel": "c", "data": 1});
        tab.emit(&app, "message", json!([message]), None);
        let sent = tab.sent();
        assert_eq!(
            sent[0].1[1]["error"],
            "Client has not sent init command yet!"
        );
        assert_eq!(sent[0].1[1]["channel"], Value::Null);

        let init = json!({"type": "command", "identity": "carol",
            "data": {"command": "init", "channels": ["c"]}});
        tab.emit(&app, "message", json!([init.to_string()]), Some(1));
        assert_eq!(tab.state.conn.member.identity.as_deref(), Some("carol"));
        assert!(tab.state.legacy_ready);
        let sent = tab.sent();
        assert_eq!(sent.last().unwrap(), &("431".into(), json!([{"ok": true}])));

        // The identity is set once.
        let again = json!({"type": "command", "identity": "dave", "data": {"command": "init"}});
        tab.emit(&app, "message", json!([again]), Some(2));
        assert_eq!(
            tab.sent()[0].1[0]["error"],
            "identity already set for this connection"
        );
        tab.emit(&app, "message", json!([message]), Some(3));
        let sent = tab.sent();
        assert_eq!(sent[0].1[1]["identity"], "carol");
        assert_eq!(sent[1], ("433".into(), json!([{"ok": true}])));
    }

    #[tokio::test]
    async fn connect_refusals_say_why() {
        let app = app();
        let refusal = |auth| connect(&app, auth).err().map(|e| e.to_string());
        assert_eq!(
            refusal(json!({"identity": 5})),
            Some("identity must be a string".into())
        );
        assert_eq!(
            refusal(json!({"identity": "x".repeat(300)})),
            Some("identity longer than 256 bytes".into())
        );
        assert_eq!(refusal(json!({"identity": ""})), None);
    }
}
