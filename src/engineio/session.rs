//! The task that owns one Engine.IO session: its transport, heartbeat and outbound queue.
//!
//! All session state lives in this one task, so nothing here is locked: HTTP requests and
//! the WebSocket upgrade talk to it through `Control` messages, the layers above through
//! the bounded queue of [`Socket`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tracing::debug;

use super::close::WsClose;
use super::engine::Inner;
use super::heartbeat::{Beat, Heartbeat};
use super::packet::{self, Frame, Packet, Str};
use super::queue::Queue;
use super::socket::{CloseReason, Outgoing, Socket};
use super::transport::{Event, Transport, UpgradeStep};

mod finish;
mod resume;
#[cfg(test)]
mod tests;
mod upgrade;
mod write;

use super::{Connection, Message};
use upgrade::Held;

pub(crate) use super::transport::{PollError, PollReply, WsStream};

/// How many queued items a writer takes before it flushes once.
const DRAIN_BATCH: usize = 256;
/// How long a writer woken by lazy items alone waits for more to write with them.
const LAZY_WAIT: Duration = Duration::from_millis(10);

/// Requests to the session task from the HTTP side.
pub(crate) enum Control {
    /// A polling GET waits here for frames.
    Poll(PollReply),
    /// Packets of a polling POST, already decoded.
    Post(Vec<Packet>, oneshot::Sender<Result<(), PollError>>),
    /// A WebSocket being upgraded got `2probe`; it reports how the upgrade goes on
    /// here, and its end without [`UpgradeStep::Upgraded`] means the upgrade failed.
    Probe(mpsc::Receiver<UpgradeStep>),
}

pub(crate) struct Session {
    socket: Arc<Socket>,
    inner: Arc<Inner>,
    /// The layer above's state for this session, set once the session starts.
    conn: Option<Box<dyn Connection>>,
    queue: Arc<Queue>,
    control: mpsc::Receiver<Control>,
    /// Frames taken from the queue that wait for the next polling GET.
    pending: VecDeque<Frame>,
    transport: Transport,
    heartbeat: Heartbeat,
    /// At most one polling request held during an upgrade; the others wait behind it.
    held: Option<Held>,
    /// The close frame for what the WebSocket reader found wrong, if it found something.
    read_error: Option<WsClose>,
    /// Handed over live by the previous process: rejoined with this recovery auth, no
    /// greeting; then the packets its client posted meanwhile (polling) are handled.
    resumed: Option<(serde_json::Value, Vec<Packet>)>,
}

impl Session {
    pub(crate) fn new(
        socket: Arc<Socket>,
        inner: Arc<Inner>,
        queue: Arc<Queue>,
        control: mpsc::Receiver<Control>,
        ws: Option<Box<WsStream>>,
    ) -> Session {
        let heartbeat = Heartbeat::new(
            inner.config.ping_interval,
            inner.config.ping_timeout,
            Instant::now(),
        );
        Session {
            socket,
            inner,
            conn: None,
            queue,
            control,
            pending: VecDeque::new(),
            transport: Transport::new(ws),
            heartbeat,
            held: None,
            read_error: None,
            resumed: None,
        }
    }

    pub(crate) async fn run(mut self) {
        // The rare paths are boxed: each connection's task is sized for its largest state,
        // and these made it about 2 KiB larger (`a_sessions_task_stays_small`).
        if let Some((auth, inbound)) = self.resumed.take() {
            return Box::pin(self.run_resumed(auth, inbound)).await;
        }
        // A session born on a WebSocket greets first; a polling one was greeted by its GET.
        let hello = if matches!(self.transport, Transport::WebSocket(_)) {
            let open = self.inner.open_packet(&self.socket.id, false).encode();
            self.write_frames(std::iter::once(open)).await
        } else {
            Ok(())
        };
        // Called here, in the session task, so no message can overtake it.
        self.conn = Some(self.inner.handler.on_open(&self.socket));
        let served = match hello {
            Ok(()) => self.serve().await,
            Err(reason) => Err(reason),
        };
        let reason = match served {
            Ok(()) => self.socket.close_reason(),
            Err(reason) => reason,
        };
        Box::pin(self.finish(reason)).await;
    }

    async fn serve(&mut self) -> Result<(), CloseReason> {
        let closing = self.socket.closing_token().clone();
        loop {
            let timer = self.heartbeat.timer();
            let hold = self.held.as_ref().map(|h| h.until);
            let can_write = self.transport.can_write();
            let batch_max = self.batch_max();
            // Filled only when the queue branch wins (no allocation until then).
            let mut batch = Vec::new();
            // Unbiased: a client flooding one direction cannot starve the other, or the timers.
            tokio::select! {
                _ = closing.cancelled() => return Ok(()),
                // Nothing more is read while a request is held: what comes next waits behind it.
                Some(control) = self.control.recv(), if hold.is_none() => {
                    self.on_control(control).await?
                }
                event = self.transport.next_event() => self.on_event(event).await?,
                n = self.queue.wait_take(batch_max, &mut batch), if can_write => {
                    if n > 0 && n < DRAIN_BATCH && matches!(self.transport, Transport::WebSocket(_)) {
                        // Let the broadcasts already under way land too: one write for
                        // several of them costs less than a write for each. Items nobody
                        // waits for (membership notices, one per join) wait longer.
                        if batch.iter().all(Outgoing::is_lazy) && self.queue.wait_lazily() {
                            tokio::select! {
                                () = tokio::time::sleep(LAZY_WAIT) => {}
                                // A message or an ack does not wait.
                                () = self.queue.urgent() => {}
                                () = closing.cancelled() => return Ok(()),
                            }
                        } else {
                            tokio::task::yield_now().await;
                        }
                        self.queue.take(DRAIN_BATCH - n, &mut batch);
                    }
                    if n > 0 {
                        self.write(batch).await?;
                    }
                }
                _ = sleep_until(timer) => match self.heartbeat.beat(Instant::now()) {
                    Some(Beat::Gone) => return Err(CloseReason::PingTimeout),
                    Some(Beat::Ping) => {
                        // Over a WebSocket, or to a waiting GET, the ping reaches the client now.
                        let reaches_client = self.transport.can_write();
                        let ping = Packet::Ping(Str::from_static("")).encode();
                        self.write_frames(std::iter::once(ping)).await?;
                        if reaches_client {
                            self.heartbeat.delivered(Instant::now());
                        }
                    }
                    None => {}
                },
                _ = sleep_until(hold.unwrap_or(timer)), if hold.is_some() => {
                    // The upgrade did not complete meanwhile: the request is served on polling.
                    if let Some(held) = self.held.take() {
                        self.check_alive()?;
                        self.on_request(held.request).await?;
                    }
                }
            }
        }
    }

    /// A session past its heartbeat deadline is gone for every request, even one that
    /// reaches this task before its timer fired.
    fn check_alive(&self) -> Result<(), CloseReason> {
        if self.heartbeat.expired(Instant::now()) {
            return Err(CloseReason::PingTimeout);
        }
        Ok(())
    }

    async fn on_control(&mut self, control: Control) -> Result<(), CloseReason> {
        self.check_alive()?;
        if self.socket.is_closing() {
            let reason = self.socket.close_reason();
            if reason != CloseReason::ServerClose {
                // Closed from outside (a bad payload, a slow client) while this request was
                // on its way: it loses the race, as it would a moment later. A server close
                // still gives the client its last poll (see `finish`).
                control.refuse();
                return Err(reason);
            }
        }
        match control {
            Control::Probe(steps) => self.probe(steps),
            request if matches!(self.transport, Transport::Upgrading { .. }) => self.hold(request),
            request => self.on_request(request).await?,
        }
        Ok(())
    }

    /// A polling GET or POST, served on the transport as it is now.
    async fn on_request(&mut self, request: Control) -> Result<(), CloseReason> {
        match request {
            Control::Poll(reply) => match self.transport.waiting() {
                None => {
                    let _ = reply.send(Err(PollError::BadRequest));
                }
                Some(waiting) => {
                    if waiting.is_some() && reply.is_closed() {
                        // Given up by its client before it was served, and overtaken on the
                        // way in by a poll sent after it: the abort ends the session, and the
                        // later poll is refused with it.
                        waiting.take();
                        debug!("polling request aborted by the client");
                        return Err(CloseReason::TransportClose);
                    }
                    if let Some(first) = waiting.take() {
                        // Two GETs at once: the first ends with a close packet, the second is refused.
                        let _ = first.send(Ok(Packet::Close.encode_bytes()));
                        let _ = reply.send(Err(PollError::BadRequest));
                        return Err(CloseReason::BadRequest);
                    }
                    *waiting = Some(reply);
                    self.take_ready();
                    self.flush_poll()?;
                }
            },
            // Polling is over once the session moved to a WebSocket.
            post @ Control::Post(..) if matches!(self.transport, Transport::WebSocket(_)) => {
                post.refuse();
            }
            Control::Post(packets, reply) => {
                let result = self.on_packets(packets).await;
                let _ = reply.send(Ok(()));
                result?;
            }
            Control::Probe(_) => {}
        }
        Ok(())
    }

    async fn on_event(&mut self, event: Event) -> Result<(), CloseReason> {
        self.check_alive()?;
        match event {
            Event::Ws(msg) => self.on_ws_message(msg).await,
            Event::PollAborted => {
                debug!("polling request aborted by the client");
                Err(CloseReason::TransportClose)
            }
            Event::Upgrade(step) => self.on_upgrade(step).await,
        }
    }

    /// Packets from the client, in order.
    async fn on_packets(&mut self, packets: Vec<Packet>) -> Result<(), CloseReason> {
        self.heartbeat.alive(Instant::now());
        for p in packets {
            match p {
                Packet::Message(text) => {
                    self.deliver(Message::Text(text));
                    self.paced().await;
                }
                Packet::Binary(data) => {
                    self.deliver(Message::Binary(data));
                    self.paced().await;
                }
                Packet::Pong(_) => self.heartbeat.pong(Instant::now()),
                Packet::Close => return Err(CloseReason::ClientClose),
                Packet::Ping(_) | Packet::Noop | Packet::Upgrade => {}
                Packet::Open(_) => return Err(CloseReason::ParseError),
            }
            if self.socket.is_closing() {
                break;
            }
        }
        Ok(())
    }

    /// Waits while what the client just published is still being caught up with by other
    /// sessions (see [`Socket::hold_for`]); bounded by their progress, and by the stall
    /// time for one that stopped reading.
    async fn paced(&mut self) {
        let holds = self.socket.take_holds();
        if holds.is_empty() {
            return;
        }
        tokio::select! {
            _ = super::queue::wait_caught_up(holds) => {}
            _ = self.socket.closing() => {}
        }
        // Held back by the server, the client could not answer: it is not late.
        self.heartbeat.alive(Instant::now());
    }

    fn deliver(&mut self, msg: Message) {
        if let Some(conn) = self.conn.as_mut() {
            conn.on_message(msg);
        }
    }

    async fn on_ws_message(
        &mut self,
        msg: Option<Result<WsMessage, tungstenite::Error>>,
    ) -> Result<(), CloseReason> {
        match msg {
            Some(Ok(WsMessage::Text(text))) => match Packet::decode_text(text) {
                Ok(p) => self.on_packets(vec![p]).await,
                Err(e) => {
                    debug!(error = %e, "bad packet on websocket");
                    Err(CloseReason::ParseError)
                }
            },
            Some(Ok(WsMessage::Binary(data))) => {
                self.deliver(Message::Binary(data));
                self.paced().await;
                Ok(())
            }
            Some(Ok(WsMessage::Close(frame))) => {
                let normal = frame.is_some_and(|f| f.code == CloseCode::Normal);
                // 1000 says the purpose of the connection is fulfilled. A client that gives
                // up on a late ping may close with it too, and means to come back: only a
                // close while no ping is due counts as deliberate.
                if normal && self.heartbeat.quiet(Instant::now()) {
                    Err(CloseReason::ClientDisconnect)
                } else {
                    Err(CloseReason::TransportClose)
                }
            }
            None => Err(CloseReason::TransportClose),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                debug!(error = %e, "websocket read failed");
                self.read_error = WsClose::for_read_error(&e);
                Err(CloseReason::TransportError)
            }
        }
    }

    /// How many items to take from the queue at once: on polling, no more than the next
    /// answer carries, so the rest waits in the bounded queue (which is what notices a
    /// client that does not keep up).
    fn batch_max(&self) -> usize {
        match self.transport {
            Transport::WebSocket(_) => DRAIN_BATCH,
            _ => self.inner.config.max_poll_packets.clamp(1, DRAIN_BATCH),
        }
    }

    /// Moves whatever is already queued into `pending`, without waiting.
    fn take_ready(&mut self) {
        self.take_ready_leaving(0);
    }

    /// Like [`Session::take_ready`], leaving room for `reserve` more packets in a poll answer.
    fn take_ready_leaving(&mut self, reserve: usize) {
        let max = match self.transport {
            Transport::WebSocket(_) => DRAIN_BATCH,
            _ => self
                .batch_max()
                .saturating_sub(self.pending.len() + reserve),
        };
        let mut items = Vec::new();
        self.queue.take(max, &mut items);
        for item in items {
            self.pending.extend(item.frames().iter().cloned());
        }
    }

    /// Answers the waiting GET if there is something to say.
    fn flush_poll(&mut self) -> Result<(), CloseReason> {
        let upgrading = match &self.transport {
            Transport::Polling { waiting: Some(_) } => false,
            // Until `3probe` went out, a GET waits as on plain polling: the client reads
            // `3probe` before the noop, and does not poll again.
            Transport::Upgrading {
                waiting: Some(_),
                probed,
                ..
            } => *probed,
            _ => return Ok(()),
        };
        let body = if self.pending.is_empty() {
            if !upgrading {
                return Ok(());
            }
            // A fast upgrade: release the GET so the client can pause polling.
            Packet::Noop.encode_bytes()
        } else {
            self.take_payload()
        };
        if let Some(w) = self.transport.waiting().and_then(Option::take)
            && w.send(Ok(body)).is_err()
        {
            return Err(CloseReason::TransportClose);
        }
        Ok(())
    }

    /// Takes pending frames up to the max payload and the packet limit (at least one frame).
    fn take_payload(&mut self) -> Bytes {
        let max = self.inner.config.max_payload;
        let max_packets = self.inner.config.max_poll_packets;
        let mut size = 0;
        let mut n = 0;
        for f in &self.pending {
            let len = packet::payload_len(f) + usize::from(n > 0);
            if n > 0 && (size + len > max || n >= max_packets) {
                break;
            }
            size += len;
            n += 1;
        }
        let body = packet::encode_payload(self.pending.iter().take(n));
        self.pending.drain(..n);
        body
    }
}

impl Packet {
    /// A single packet as a polling body.
    fn encode_bytes(&self) -> Bytes {
        packet::encode_payload(std::iter::once(&self.encode()))
    }
}

/// How long a graceful close may wait for the client.
pub(crate) fn default_close_grace(ping_timeout: Duration) -> Duration {
    ping_timeout.min(Duration::from_secs(2))
}
