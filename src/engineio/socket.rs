//! The handle of one Engine.IO session that the layers above hold: id, peer, outbound queue
//! (and [`SessionTx`], its send side alone), close, and the session's tracing span.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio_util::sync::CancellationToken;
use tracing::Span;

use super::close::WsClose;
use super::livews::Taken;
use super::packet::{Frame, Packet};
use super::queue::Queue;

pub use super::outgoing::Outgoing;

/// A session id: 20 characters of base64url over 15 bytes from the OS CSPRNG.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sid(Box<str>);

/// Sids taken from one `getrandom` call: a connection needs three (Engine.IO, Socket.IO,
/// the pid's secret), and a system call each was a visible part of a handshake's cost.
const SIDS_PER_DRAW: usize = 32;

thread_local! {
    /// OS random bytes not handed out yet, per thread; each byte goes to one sid only.
    static RANDOM: std::cell::RefCell<(usize, [u8; 15 * SIDS_PER_DRAW])> =
        const { std::cell::RefCell::new((15 * SIDS_PER_DRAW, [0; 15 * SIDS_PER_DRAW])) };
}

impl Sid {
    pub fn random() -> Sid {
        let raw = RANDOM.with_borrow_mut(|(used, pool)| {
            if *used == pool.len() {
                // The OS CSPRNG failing is not something a server can carry on from.
                getrandom::fill(pool).expect("the OS random number generator failed");
                *used = 0;
            }
            let mut raw = [0u8; 15];
            raw.copy_from_slice(&pool[*used..*used + 15]);
            // Handed out: wiped, so a later copy of this memory does not hold it.
            pool[*used..*used + 15].fill(0);
            *used += 15;
            raw
        });
        Sid(URL_SAFE_NO_PAD.encode(raw).into_boxed_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Sid {
    fn from(s: &str) -> Sid {
        Sid(s.into())
    }
}

/// Which transport currently carries a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TransportKind {
    Polling = 0,
    WebSocket = 1,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// Why a session ended. These are the documented disconnect reasons of the Engine.IO layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet.
    ClientClose,
    /// The client closed its WebSocket with 1000 (normal closure) while no ping was due:
    /// a deliberate end (python-socketio sends its Socket.IO DISCONNECT only after it).
    ClientDisconnect,
    /// The connection went away (socket closed, aborted poll).
    TransportClose,
    /// The transport failed (I/O error, write timeout, oversized WebSocket frame).
    TransportError,
    /// No pong within the ping timeout.
    PingTimeout,
    /// The client sent bytes that are not Engine.IO (or the layer above rejected them).
    ParseError,
    /// The client broke the polling rules (two GETs at once, wrong transport).
    BadRequest,
    /// The outbound queue overflowed: the client does not read fast enough.
    SlowClient,
    /// The server closed it (the layer above asked, or shutdown).
    ServerClose,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client close",
            CloseReason::ClientDisconnect => "client disconnect",
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::BadRequest => "bad request",
            CloseReason::SlowClient => "slow client",
            CloseReason::ServerClose => "server close",
        }
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("session closed")]
    Closed,
    #[error("outbound queue full")]
    Full,
}

/// The send side of one session's outbound queue: what a broadcaster keeps per recipient,
/// so a delivery is one push with no detour through the [`Socket`]. Unlike
/// [`Socket::offer`], a push to a full queue does not close the session: the holder
/// decides what a full queue means.
#[derive(Clone)]
pub struct SessionTx(Arc<Queue>);

impl SessionTx {
    /// Queues an item without waiting, or hands it back when the queue is full or closed.
    #[inline]
    pub fn push(&self, item: Outgoing) -> Result<(), (SendError, Outgoing)> {
        self.0.push(item)
    }

    /// Whether the client is behind and still has time to catch up: a publisher of a batch
    /// waits while it is, rather than push it further behind.
    pub fn is_catching_up(&self) -> bool {
        self.0.is_catching_up()
    }
}

impl fmt::Debug for SessionTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionTx")
    }
}

/// The shared handle of a session. The session task owns the transport; everyone else
/// talks to it through this handle.
pub struct Socket {
    pub id: Sid,
    /// Peer address of the connection that opened the session.
    pub peer: Option<SocketAddr>,
    /// Bounded, so that a client that does not read costs bounded memory (STYLE habit 5).
    queue: Arc<Queue>,
    /// Cancelled once, by whoever closes first; the session task then winds down.
    closing: CancellationToken,
    /// The first close reason wins, with the WebSocket close given with it, if any; read
    /// by the session task when it winds down.
    reason: Mutex<Option<(CloseReason, Option<WsClose>)>>,
    transport: AtomicU8,
    /// Set once the session task has finished and the layer above was told.
    closed: AtomicBool,
    /// Set while a WebSocket upgrade is under way, so that a second one is refused.
    pub(crate) upgrading: AtomicBool,
    /// Queues of other sessions still catching up with what this client published: the
    /// session reads nothing more from its client until they did (see `queue`).
    holds: Mutex<Vec<SessionTx>>,
    /// The session's span: entered by everything the session does, so its lines carry
    /// sid, peer and transport without repeating them.
    span: Span,
    /// The WebSocket this session ended on, kept open for the next process at a hand-over.
    live: Mutex<Option<Taken>>,
    /// A polling session that goes on in the next process under the same sid: what it
    /// took and never sent, and what its client posted after it ended here.
    parked: Mutex<Option<Parked>>,
}

/// A polling session parked at a hand-over (see [`Socket::park`]).
#[derive(Debug, Default)]
struct Parked {
    unsent: Vec<Frame>,
    inbound: Vec<Packet>,
}

impl Socket {
    pub(crate) fn new(
        id: Sid,
        peer: Option<SocketAddr>,
        transport: TransportKind,
        queue: Arc<Queue>,
    ) -> Socket {
        Socket {
            peer,
            queue,
            closing: CancellationToken::new(),
            reason: Mutex::new(None),
            transport: AtomicU8::new(transport as u8),
            closed: AtomicBool::new(false),
            upgrading: AtomicBool::new(false),
            holds: Mutex::new(Vec::new()),
            span: session_span(&id, peer, transport),
            live: Mutex::new(None),
            parked: Mutex::new(None),
            id,
        }
    }

    /// Keeps the WebSocket the session ended on for the hand-over.
    pub(crate) fn keep_live(&self, taken: Taken) {
        if let Ok(mut live) = self.live.lock() {
            *live = Some(taken);
        }
    }

    /// The WebSocket kept for the hand-over: its socket, and what the client sent that was
    /// not read yet.
    pub fn take_live(&self) -> Option<(std::os::fd::OwnedFd, bytes::Bytes)> {
        let taken = self.live.lock().ok()?.take()?;
        Some((taken.fd, taken.unread))
    }

    /// Parks a polling session for the hand-over, with the frames it took from its queue
    /// and did not send: requests for it are answered here until the exec, and its client
    /// polls the next process under the same sid.
    pub(crate) fn park(&self, unsent: Vec<Frame>) {
        if let Ok(mut parked) = self.parked.lock() {
            *parked = Some(Parked {
                unsent,
                inbound: Vec::new(),
            });
        }
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.parked.lock().is_ok_and(|p| p.is_some())
    }

    /// Keeps packets a client posted to its parked session, for the next process to
    /// handle first; hands them back if the session is not (or no longer) parked.
    pub(crate) fn add_parked(&self, packets: Vec<Packet>) -> Result<(), Vec<Packet>> {
        match self.parked.lock() {
            Ok(mut parked) => match parked.as_mut() {
                Some(p) => {
                    p.inbound.extend(packets);
                    Ok(())
                }
                None => Err(packets),
            },
            Err(_) => Err(packets),
        }
    }

    /// The parked session for the hand-over: the frames it never sent, then the packets
    /// its client posted meanwhile (encoded). Later posts are refused.
    pub fn take_parked(&self) -> Option<(Vec<Frame>, Vec<Frame>)> {
        let p = self.parked.lock().ok()?.take()?;
        Some((p.unsent, p.inbound.iter().map(Packet::encode).collect()))
    }

    /// Queues frames without waiting. A refused push (the client fell too far behind, or
    /// stopped catching up) closes the session as a slow client: one slow reader must never
    /// stall a broadcast.
    pub fn send(&self, item: Outgoing) -> Result<(), SendError> {
        self.offer(item).map_err(|(e, _)| e)
    }

    /// Like [`Socket::send`], but hands a refused item back, so the caller can keep it.
    pub fn offer(&self, item: Outgoing) -> Result<(), (SendError, Outgoing)> {
        match self.queue.push(item) {
            Err((SendError::Full, item)) => {
                self.close(CloseReason::SlowClient);
                Err((SendError::Full, item))
            }
            other => other,
        }
    }

    /// The send side of the outbound queue, for a broadcaster that keeps it at hand.
    pub fn tx(&self) -> SessionTx {
        SessionTx(self.queue.clone())
    }

    /// Holds the client's next packets until `queues` (other sessions' queues its last
    /// publish pushed past their limit) caught up: a publisher is paced by its readers.
    pub fn hold_for(&self, queues: Vec<SessionTx>) {
        // Its own queue is drained by this very session, which then waits: never on it.
        let others = queues
            .into_iter()
            .filter(|q| !Arc::ptr_eq(&q.0, &self.queue));
        if let Ok(mut holds) = self.holds.lock() {
            holds.extend(others);
        }
    }

    /// What [`Socket::hold_for`] asked to wait for, cleared.
    pub(crate) fn take_holds(&self) -> Vec<SessionTx> {
        self.holds
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default()
    }

    /// For a new connection that takes this session over while its transport is still
    /// open: what [`super::Backlog::into_tagged`] gives once a session has closed, handed
    /// over now when `accept` takes it. Nothing is queued here afterwards.
    pub fn take_backlog(
        &self,
        accept: impl FnOnce(&VecDeque<Outgoing>) -> bool,
    ) -> Option<(VecDeque<Outgoing>, usize)> {
        self.queue.seize_if(accept)
    }

    /// The session's span, for work done on its behalf outside its task.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Names the identity behind the session on its span, once the layer above knows it
    /// (quoted and escaped: it comes from the client).
    pub fn record_identity(&self, identity: &str) {
        self.span.record("identity", identity);
    }

    /// Asks the session to close; the first reason given is the one reported.
    pub fn close(&self, reason: CloseReason) {
        self.close_as(reason, None);
    }

    /// Closes the session for a protocol violation ([`CloseReason::ParseError`]), with the
    /// close frame a WebSocket client gets, when it says more than "parse error".
    pub fn reject(&self, ws: WsClose) {
        self.close_as(CloseReason::ParseError, Some(ws));
    }

    fn close_as(&self, reason: CloseReason, ws: Option<WsClose>) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert((reason, ws));
        }
        self.closing.cancel();
    }

    /// Resolves once the session is asked to close.
    pub async fn closing(&self) {
        self.closing.cancelled().await
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn transport(&self) -> TransportKind {
        match self.transport.load(Ordering::Acquire) {
            0 => TransportKind::Polling,
            _ => TransportKind::WebSocket,
        }
    }

    pub(crate) fn set_transport(&self, t: TransportKind) {
        self.transport.store(t as u8, Ordering::Release);
    }

    pub(crate) fn closing_token(&self) -> &CancellationToken {
        &self.closing
    }

    pub(crate) fn close_reason(&self) -> CloseReason {
        self.reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .map_or(CloseReason::ServerClose, |(reason, _)| reason)
    }

    /// The close frame given with the close, if the session ends for the reason it came with.
    pub(crate) fn ws_close_for(&self, reason: CloseReason) -> Option<WsClose> {
        match self.reason.lock().ok().and_then(|r| *r) {
            Some((r, ws)) if r == reason => ws,
            _ => None,
        }
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// One span per session. At debug level, as nearly everything a session logs is: at the
/// usual info level a session then costs no span memory, and its few warnings name the
/// session themselves. A session opened before the level was raised keeps its disabled
/// span. `upgrade` and `identity` are filled in later.
fn session_span(id: &Sid, peer: Option<SocketAddr>, transport: TransportKind) -> Span {
    tracing::debug_span!(
        "session",
        sid = %id,
        peer = peer.map(tracing::field::display),
        transport = %transport.as_str(),
        upgrade = tracing::field::Empty,
        identity = tracing::field::Empty,
    )
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("transport", &self.transport())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::Str;

    #[test]
    fn sids_are_random_and_url_safe() {
        let a = Sid::random();
        let b = Sid::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 20);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn sids_drawn_across_many_refills_are_all_distinct() {
        let sids: std::collections::HashSet<Sid> =
            (0..SIDS_PER_DRAW * 40 + 7).map(|_| Sid::random()).collect();
        assert_eq!(sids.len(), SIDS_PER_DRAW * 40 + 7);
    }

    #[test]
    fn full_queue_closes_as_slow_client() {
        let s = Socket::new(
            Sid::random(),
            None,
            TransportKind::Polling,
            Arc::new(Queue::bounded(1, 1)),
        );
        assert_eq!(s.send(Outgoing::text(Str::from("4a"))), Ok(()));
        assert_eq!(
            s.send(Outgoing::text(Str::from("4b"))),
            Err(SendError::Full)
        );
        assert!(s.is_closing());
        assert_eq!(s.close_reason(), CloseReason::SlowClient);
        s.close(CloseReason::ServerClose);
        assert_eq!(s.close_reason(), CloseReason::SlowClient);
    }
}
