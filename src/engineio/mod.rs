//! Engine.IO v4: sessions over HTTP long-polling and WebSocket, the upgrade between them,
//! heartbeats and payload limits. The layer above sees only [`Handler`] and [`Socket`].
//!
//! Layout: `packet` is the pure codec; `socket` the handle shared with the layers above;
//! `session` the task that owns a session's transport; `websocket` the upgrade handshake;
//! this file routes an HTTP request to the right session and maps errors to the
//! reference server's responses.

mod buffered;
pub mod packet;
pub(crate) mod queue;
pub mod session;
pub mod socket;
mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::debug;

pub use packet::{Frame, Packet, Str};
pub use session::Backlog;
pub use socket::{CloseReason, Outgoing, SendError, Sid, Socket, TransportKind};

use session::{Control, PollError, Session};

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
}

/// The layer above's side of one session. Called from the session task: implementations
/// must not block (queue work, never wait on a client).
pub trait Connection: Send + 'static {
    fn on_message(&mut self, msg: Message);
    /// The session ended; `backlog` holds what it had queued, for a later replay.
    fn on_close(self: Box<Self>, reason: CloseReason, backlog: Backlog);
}

/// Decides who may open a session (the origin check of SPEC §6). Consulted on handshakes
/// (requests without a session id), which it may refuse, and on every request for CORS:
/// only an allowed `Origin` is reflected.
pub trait Gate: Send + Sync + 'static {
    fn allows(&self, headers: &HeaderMap) -> bool;
    /// A handshake was refused with 403 (for the log line and the count).
    fn refused(&self, headers: &HeaderMap, peer: Option<SocketAddr>);
}

/// Engine.IO settings; every bound is configurable (STYLE habit 9).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest accepted polling body or WebSocket message, in bytes.
    pub max_payload: usize,
    pub allow_polling: bool,
    pub allow_websocket: bool,
    /// Outbound queue length per session, in queued items.
    pub queue_capacity: usize,
    /// Sessions at once; handshakes past it get 503.
    pub max_sessions: usize,
    /// A write to a WebSocket that takes longer than this closes the session.
    pub write_timeout: Duration,
    /// How long a polling→WebSocket upgrade may take.
    pub upgrade_timeout: Duration,
    /// How long a server-side close waits for a polling client to collect its last frames.
    pub close_grace: Duration,
    /// How long a POST body may take to arrive.
    pub body_timeout: Duration,
    /// Tagged items each session keeps after taking them from its queue, for replay
    /// after a lost transport (0: none).
    pub history: usize,
    /// Every session task is spawned on it, so shutdown can await them.
    pub sessions: TaskTracker,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let ping_timeout = Duration::from_secs(20);
        EngineConfig {
            ping_interval: Duration::from_secs(25),
            ping_timeout,
            max_payload: 1_000_000,
            allow_polling: true,
            allow_websocket: true,
            queue_capacity: 4096,
            max_sessions: 100_000,
            write_timeout: Duration::from_secs(10),
            upgrade_timeout: Duration::from_secs(10),
            close_grace: session::default_close_grace(ping_timeout),
            body_timeout: Duration::from_secs(30),
            history: 0,
            sessions: TaskTracker::new(),
        }
    }
}

/// The Engine.IO server: a table of sessions and the handler above them.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: EngineConfig,
    pub(crate) handler: Arc<dyn Handler>,
    /// Set once before serving; none lets everyone in.
    gate: OnceLock<Arc<dyn Gate>>,
    /// Short critical sections only (lookup, insert, remove); never held across an await.
    sessions: Mutex<HashMap<Sid, Entry>>,
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) socket: Arc<Socket>,
    pub(crate) control: mpsc::Sender<Control>,
}

impl Inner {
    fn get(&self, sid: &str) -> Option<Entry> {
        let map = self.sessions.lock().ok()?;
        map.get(&Sid::from(sid)).cloned()
    }

    pub(crate) fn remove(&self, sid: &Sid) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(sid);
        }
    }

    fn len(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Registers a new session and starts its task.
    fn open(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
        transport: TransportKind,
        ws: Option<Box<session::WsStream>>,
    ) -> Result<Arc<Socket>, EngineError> {
        let queue = Arc::new(queue::Queue::new(self.config.queue_capacity));
        let (control_tx, control_rx) = mpsc::channel(8);
        let socket = Arc::new(Socket::new(Sid::random(), peer, transport, queue.clone()));
        {
            let mut map = self.sessions.lock().map_err(|_| EngineError::Internal)?;
            if map.len() >= self.config.max_sessions {
                return Err(EngineError::TooManySessions);
            }
            map.insert(
                socket.id.clone(),
                Entry {
                    socket: socket.clone(),
                    control: control_tx,
                },
            );
        }
        let session = Session::new(socket.clone(), self.clone(), queue, control_rx, ws);
        self.config.sessions.spawn(session.run());
        debug!(sid = %socket.id, ?peer, transport = transport.as_str(), "session opened");
        Ok(socket)
    }

    /// The handshake packet for a new session.
    fn open_packet(&self, sid: &Sid, upgrades: bool) -> Packet {
        let upgrades: &[&str] = if upgrades && self.config.allow_websocket {
            &["websocket"]
        } else {
            &[]
        };
        let json = serde_json::json!({
            "sid": sid.as_str(),
            "upgrades": upgrades,
            "pingInterval": self.config.ping_interval.as_millis() as u64,
            "pingTimeout": self.config.ping_timeout.as_millis() as u64,
            "maxPayload": self.config.max_payload,
        });
        Packet::Open(Str::from(json.to_string()))
    }
}

/// The reference server's errors, each with its `{"code":N,"message":...}` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("Transport unknown")]
    UnknownTransport,
    #[error("Session ID unknown")]
    UnknownSid,
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    #[error("Bad request")]
    BadRequest,
    #[error("Forbidden")]
    Forbidden,
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
    #[error("Payload too large")]
    PayloadTooLarge,
    #[error("Server full")]
    TooManySessions,
    #[error("Internal error")]
    Internal,
}

impl EngineError {
    fn code(self) -> u8 {
        match self {
            EngineError::UnknownTransport => 0,
            EngineError::UnknownSid => 1,
            EngineError::BadHandshakeMethod => 2,
            EngineError::BadRequest | EngineError::PayloadTooLarge => 3,
            EngineError::Forbidden => 4,
            EngineError::UnsupportedProtocolVersion => 5,
            EngineError::TooManySessions | EngineError::Internal => 6,
        }
    }

    fn status(self) -> StatusCode {
        match self {
            EngineError::Forbidden => StatusCode::FORBIDDEN,
            EngineError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::TooManySessions => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({"code": self.code(), "message": self.to_string()});
        let mut res = Response::new(Body::from(body.to_string()));
        *res.status_mut() = self.status();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// The query of an Engine.IO request, parsed at the edge.
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(q: &'a str) -> Query<'a> {
        let mut out = Query {
            eio: None,
            transport: None,
            sid: None,
        };
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => out.eio = Some(v),
                "transport" => out.transport = Some(v),
                "sid" => out.sid = Some(v),
                _ => {}
            }
        }
        out
    }
}

impl Engine {
    pub fn new(config: EngineConfig, handler: Arc<dyn Handler>) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                config,
                handler,
                gate: OnceLock::new(),
                sessions: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Puts handshakes behind `gate`; only the first call has an effect.
    pub fn set_gate(&self, gate: Arc<dyn Gate>) {
        let _ = self.inner.gate.set(gate);
    }

    /// Sessions currently open.
    pub fn session_count(&self) -> usize {
        self.inner.len()
    }

    /// Every open session (for shutdown and status).
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        match self.inner.sessions.lock() {
            Ok(map) => map.values().map(|e| e.socket.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Serves one request under the Engine.IO path.
    pub async fn handle(&self, req: Request<Incoming>, peer: Option<SocketAddr>) -> Response<Body> {
        let allowed = self
            .inner
            .gate
            .get()
            .is_none_or(|g| g.allows(req.headers()));
        let origin = req.headers().get(header::ORIGIN).cloned();
        let mut res = match self.dispatch(req, peer, allowed).await {
            Ok(res) => res,
            Err(e) => {
                debug!(?peer, error = %e, "engine.io request refused");
                e.into_response()
            }
        };
        cors(&mut res, origin, allowed);
        res
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        peer: Option<SocketAddr>,
        allowed: bool,
    ) -> Result<Response<Body>, EngineError> {
        if req.method() == Method::OPTIONS {
            return Ok(preflight(&req));
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        let q = Query::parse(&query);
        let transport = match q.transport {
            Some("polling") if self.inner.config.allow_polling => TransportKind::Polling,
            Some("websocket") if self.inner.config.allow_websocket => TransportKind::WebSocket,
            _ => return Err(EngineError::UnknownTransport),
        };
        if q.eio != Some("4") {
            return Err(EngineError::UnsupportedProtocolVersion);
        }
        if q.sid.is_none() && !allowed {
            if let Some(gate) = self.inner.gate.get() {
                gate.refused(req.headers(), peer);
            }
            return Err(EngineError::Forbidden);
        }
        let wants_upgrade = websocket::is_upgrade_request(&req);
        match (q.sid, transport) {
            (None, TransportKind::WebSocket) if wants_upgrade => {
                websocket::accept(self.inner.clone(), req, None, peer)
            }
            (None, TransportKind::WebSocket) => Err(EngineError::BadRequest),
            (None, TransportKind::Polling) if req.method() == Method::GET => self.handshake(peer),
            (None, TransportKind::Polling) => Err(EngineError::BadHandshakeMethod),
            (Some(sid), _) => {
                let entry = self.inner.get(sid).ok_or(EngineError::UnknownSid)?;
                match transport {
                    TransportKind::WebSocket if wants_upgrade => {
                        websocket::accept(self.inner.clone(), req, Some(entry), peer)
                    }
                    TransportKind::WebSocket => Err(EngineError::BadRequest),
                    TransportKind::Polling => {
                        if entry.socket.transport() != TransportKind::Polling {
                            return Err(EngineError::BadRequest);
                        }
                        match *req.method() {
                            Method::GET => self.poll(entry).await,
                            Method::POST => self.post(entry, req).await,
                            _ => Err(EngineError::BadRequest),
                        }
                    }
                }
            }
        }
    }

    fn handshake(&self, peer: Option<SocketAddr>) -> Result<Response<Body>, EngineError> {
        let socket = self.inner.open(peer, TransportKind::Polling, None)?;
        let open = self.inner.open_packet(&socket.id, true);
        Ok(polling_response(packet::encode_payload([&open.encode()])))
    }

    async fn poll(&self, entry: Entry) -> Result<Response<Body>, EngineError> {
        let (tx, rx) = oneshot::channel();
        entry
            .control
            .send(Control::Poll(tx))
            .await
            .map_err(|_| EngineError::UnknownSid)?;
        match rx.await {
            Ok(Ok(body)) => Ok(polling_response(body)),
            Ok(Err(PollError::BadRequest)) => Err(EngineError::BadRequest),
            Err(_) => Err(EngineError::UnknownSid),
        }
    }

    async fn post(
        &self,
        entry: Entry,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, EngineError> {
        let max = self.inner.config.max_payload;
        let sid = &entry.socket.id;
        let read = tokio::time::timeout(
            self.inner.config.body_timeout,
            Limited::new(req.into_body(), max).collect(),
        )
        .await;
        let body = match read {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                debug!(%sid, max, "polling body over max payload");
                return Err(EngineError::PayloadTooLarge);
            }
            Ok(Err(e)) => {
                debug!(%sid, error = %e, "polling body read failed");
                return Err(EngineError::BadRequest);
            }
            Err(_) => {
                debug!(%sid, "polling body timed out");
                return Err(EngineError::BadRequest);
            }
        };
        let packets = match packet::decode_payload(body, max) {
            Ok(p) => p,
            Err(e) => {
                debug!(%sid, error = %e, "bad polling payload");
                entry.socket.close(CloseReason::ParseError);
                return Err(EngineError::BadRequest);
            }
        };
        let (tx, rx) = oneshot::channel();
        entry
            .control
            .send(Control::Post(packets, tx))
            .await
            .map_err(|_| EngineError::UnknownSid)?;
        match rx.await {
            Ok(Ok(())) => {
                let mut res = Response::new(Body::from("ok"));
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                Ok(res)
            }
            Ok(Err(_)) => Err(EngineError::BadRequest),
            Err(_) => Err(EngineError::UnknownSid),
        }
    }
}

fn polling_response(body: Bytes) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    res
}

/// CORS for browsers on other origins, with credentials (cookies for sticky sessions):
/// an `Origin` the gate refused gets no CORS headers, so its page cannot read the answer.
fn cors(res: &mut Response<Body>, origin: Option<HeaderValue>, allowed: bool) {
    let h = res.headers_mut();
    match origin {
        Some(_) if !allowed => {
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        Some(o) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
}

fn preflight(req: &Request<Incoming>) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    res
}
