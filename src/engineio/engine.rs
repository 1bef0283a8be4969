//! The Engine.IO server's state: its settings and the table of open sessions.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug};

use super::errors::EngineError;
use super::packet::{Frame, Packet, Str};
use super::queue::Queue;
use super::session::{self, Control, Session};
use super::socket::{CloseReason, Sid, Socket, TransportKind};
use super::transport::WsStream;
use super::{Gate, Handler};

/// Engine.IO settings; every bound is configurable (STYLE habit 9).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest accepted polling body or WebSocket message, in bytes.
    pub max_payload: usize,
    pub allow_polling: bool,
    pub allow_websocket: bool,
    /// Outbound queue length per session, in queued items, past which a client must catch
    /// up (see `queue`).
    pub queue_capacity: usize,
    /// Sessions at once; handshakes past it get 503.
    pub max_sessions: usize,
    /// A write to a WebSocket that takes longer than this closes the session.
    pub write_timeout: Duration,
    /// How long a polling→WebSocket upgrade may take.
    pub upgrade_timeout: Duration,
    /// How long a polling request that comes during an upgrade waits for its `5` before it
    /// is served on polling (engine.io checks every 100 ms). A request that the `5`
    /// overtakes meanwhile is refused, as one sent after it must be.
    pub upgrade_hold: Duration,
    /// How long a server-side close waits for a polling client to collect its last frames.
    pub close_grace: Duration,
    /// How long a POST body may take to arrive.
    pub body_timeout: Duration,
    /// Packets one polling answer carries at most; the rest go in the next poll.
    pub max_poll_packets: usize,
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
            upgrade_hold: Duration::from_millis(100),
            close_grace: session::default_close_grace(ping_timeout),
            body_timeout: Duration::from_secs(30),
            max_poll_packets: 16,
            history: 0,
            sessions: TaskTracker::new(),
        }
    }
}

/// The Engine.IO server: a table of sessions and the handler above them.
#[derive(Clone)]
pub struct Engine {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: EngineConfig,
    pub(crate) handler: Arc<dyn Handler>,
    /// Set once before serving; none lets everyone in.
    pub(super) gate: OnceLock<Arc<dyn Gate>>,
    /// Short critical sections only (lookup, insert, remove); never held across an await.
    sessions: Mutex<HashMap<Sid, Entry>>,
    /// Set when the server goes away, so WebSocket clients are told so (1001).
    pub(crate) shutting_down: AtomicBool,
    /// Set when the sessions go to the next process: a poll gets no close packet.
    pub(crate) handing_over: AtomicBool,
}

/// What a request needs to reach a session: its handle, and the way to its task.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) socket: Arc<Socket>,
    pub(crate) control: mpsc::Sender<Control>,
}

impl Inner {
    pub(super) fn get(&self, sid: &str) -> Option<Entry> {
        let map = self.sessions.lock().ok()?;
        map.get(&Sid::from(sid)).cloned()
    }

    pub(crate) fn remove(&self, sid: &Sid) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(sid);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Registers a new session and starts its task.
    pub(super) fn open(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
        transport: TransportKind,
        ws: Option<Box<WsStream>>,
    ) -> Result<Arc<Socket>, EngineError> {
        let queue = Arc::new(Queue::with_history(
            self.config.queue_capacity,
            self.config.history,
        ));
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
        self.config
            .sessions
            .spawn(session.run().instrument(socket.span().clone()));
        socket.span().in_scope(|| debug!("session opened"));
        Ok(socket)
    }

    /// A WebSocket session handed over live by the previous process, on its socket.
    async fn resume(
        self: &Arc<Self>,
        fd: std::os::fd::OwnedFd,
        unread: &[u8],
        auth: serde_json::Value,
    ) -> io::Result<()> {
        let ws = super::livews::resume(fd, unread, self.config.max_payload).await?;
        self.resumed(Sid::random(), Some(Box::new(ws)), auth, Vec::new())
    }

    /// A polling session handed over live by the previous process: registered under the
    /// sid its client polls with, the packets its client posted meanwhile handled first.
    fn resume_polling(
        self: &Arc<Self>,
        sid: &str,
        inbound: &[Frame],
        auth: serde_json::Value,
    ) -> io::Result<()> {
        let packets = inbound
            .iter()
            .map(|f| match f {
                Frame::Text(s) => Packet::decode_text(s.clone())
                    .map_err(|e| io::Error::other(format!("a packet posted meanwhile: {e}"))),
                Frame::Binary(b) => Ok(Packet::Binary(b.clone())),
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.resumed(Sid::from(sid), None, auth, packets)
    }

    /// Registers a session handed over live and starts its task: on `ws`, else polling.
    fn resumed(
        self: &Arc<Self>,
        id: Sid,
        ws: Option<Box<WsStream>>,
        auth: serde_json::Value,
        inbound: Vec<Packet>,
    ) -> io::Result<()> {
        let queue = Arc::new(Queue::with_history(
            self.config.queue_capacity,
            self.config.history,
        ));
        let (control_tx, control_rx) = mpsc::channel(8);
        let kind = if ws.is_some() {
            TransportKind::WebSocket
        } else {
            TransportKind::Polling
        };
        let socket = Arc::new(Socket::new(id, None, kind, queue.clone()));
        {
            let mut map = self
                .sessions
                .lock()
                .map_err(|_| io::Error::other("the session table is poisoned"))?;
            // Checked under the lock `shut_down` sweeps the sessions with: a session either
            // is in the sweep, or sees the flag and is not started (its client recovers).
            if self.shutting_down.load(Ordering::Acquire) {
                return Err(io::Error::other("the server is stopping"));
            }
            if map.contains_key(&socket.id) {
                return Err(io::Error::other("a session with this sid exists"));
            }
            map.insert(
                socket.id.clone(),
                Entry {
                    socket: socket.clone(),
                    control: control_tx,
                },
            );
        }
        let mut session = Session::new(socket.clone(), self.clone(), queue, control_rx, ws);
        session.resume(auth, inbound);
        self.config
            .sessions
            .spawn(session.run().instrument(socket.span().clone()));
        socket
            .span()
            .in_scope(|| debug!("session resumed from the previous process"));
        Ok(())
    }

    /// The handshake packet for a new session.
    pub(crate) fn open_packet(&self, sid: &Sid, upgrades: bool) -> Packet {
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

impl Engine {
    pub fn new(config: EngineConfig, handler: Arc<dyn Handler>) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                config,
                handler,
                gate: OnceLock::new(),
                sessions: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                handing_over: AtomicBool::new(false),
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

    /// Closes every open session as the server goes away: each flushes what it has
    /// queued, and a WebSocket client gets 1001 "server shutting down".
    pub fn shut_down(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for socket in self.sockets() {
            socket.close(CloseReason::ServerClose);
        }
    }

    /// Makes the coming [`Engine::shut_down`] a hand-over to the next process: a polling
    /// session parks instead of closing for its client (no close packet), answering what
    /// reaches it until the exec, and goes on in the next process under its sid; a
    /// WebSocket is kept open for the next process.
    pub fn hand_over(&self) {
        self.inner.handing_over.store(true, Ordering::Release);
    }

    /// Whether [`Engine::hand_over`] was called: the sessions go on in another process.
    pub fn is_handing_over(&self) -> bool {
        self.inner.handing_over.load(Ordering::Acquire)
    }

    /// Resumes a WebSocket session the previous process handed over live: its socket,
    /// the bytes its client sent that were not read yet, and the recovery `auth` its main
    /// namespace rejoins with. On failure the socket is closed and its client recovers.
    pub async fn resume(
        &self,
        fd: std::os::fd::OwnedFd,
        unread: &[u8],
        auth: serde_json::Value,
    ) -> std::io::Result<()> {
        self.inner.resume(fd, unread, auth).await
    }

    /// Resumes a polling session the previous process handed over live, under the `sid`
    /// its client polls with; `inbound` is what the client posted to the previous process
    /// after the session ended there. On failure its client recovers.
    pub fn resume_polling(
        &self,
        sid: &str,
        inbound: &[Frame],
        auth: serde_json::Value,
    ) -> std::io::Result<()> {
        self.inner.resume_polling(sid, inbound, auth)
    }

    /// Every open session (for shutdown and status).
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        match self.inner.sessions.lock() {
            Ok(map) => map.values().map(|e| e.socket.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }
}
