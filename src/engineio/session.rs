//! The task that owns one Engine.IO session: its transport, heartbeat and outbound queue.
//!
//! All session state lives in this one task, so nothing here is locked: HTTP requests and
//! the WebSocket upgrade talk to it through `Control` messages, the layers above through
//! the bounded queue of [`Socket`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tracing::debug;

use super::backlog::Backlog;
use super::close::WsClose;
use super::engine::Inner;
use super::packet::{self, Frame, Packet, Str};
use super::queue::Queue;
use super::socket::{CloseReason, Outgoing, Socket, TransportKind};
use super::transport::{Event, Transport, ws_message};
use super::{Connection, Message};

pub(crate) use super::transport::{PollError, PollReply, WsStream};

/// How long a client's close waits for a GET it sent alongside.
const CLIENT_CLOSE_GRACE: Duration = Duration::from_millis(100);

/// How long a session ended by an error may take to say why in a WebSocket close frame.
const CLOSE_FRAME_WAIT: Duration = Duration::from_secs(1);

/// How many queued items a writer takes before it flushes once.
const DRAIN_BATCH: usize = 256;

/// Requests to the session task from the HTTP side.
pub(crate) enum Control {
    /// A polling GET waits here for frames.
    Poll(PollReply),
    /// Packets of a polling POST, already decoded.
    Post(Vec<Packet>, oneshot::Sender<Result<(), PollError>>),
    /// The WebSocket being upgraded answered the probe: release the pending GET.
    Probe,
    /// The upgrade completed: the session moves to this WebSocket.
    Upgrade(Box<WsStream>),
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
    /// When the next ping goes out (if no pong is awaited).
    ping_at: Instant,
    /// When the awaited pong is late.
    pong_deadline: Option<Instant>,
    /// The close frame for what the WebSocket reader found wrong, if it found something.
    read_error: Option<WsClose>,
}

impl Session {
    pub(crate) fn new(
        socket: Arc<Socket>,
        inner: Arc<Inner>,
        queue: Arc<Queue>,
        control: mpsc::Receiver<Control>,
        ws: Option<Box<WsStream>>,
    ) -> Session {
        let ping_at = Instant::now() + inner.config.ping_interval;
        Session {
            socket,
            inner,
            conn: None,
            queue,
            control,
            pending: VecDeque::new(),
            transport: Transport::new(ws),
            ping_at,
            pong_deadline: None,
            read_error: None,
        }
    }

    pub(crate) async fn run(mut self) {
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
        self.finish(reason).await;
    }

    async fn serve(&mut self) -> Result<(), CloseReason> {
        let closing = self.socket.closing_token().clone();
        loop {
            let timer = self.pong_deadline.unwrap_or(self.ping_at);
            let can_write = self.transport.can_write();
            let batch_max = self.batch_max();
            // Filled only when the queue branch wins (no allocation until then).
            let mut batch = Vec::new();
            // Unbiased: a client flooding one direction cannot starve the other, or the timers.
            tokio::select! {
                _ = closing.cancelled() => return Ok(()),
                Some(control) = self.control.recv() => self.on_control(control).await?,
                event = self.transport.next_event() => match event {
                    Event::Ws(msg) => self.on_ws_message(msg).await?,
                    Event::PollAborted => {
                        debug!("polling request aborted by the client");
                        return Err(CloseReason::TransportClose);
                    }
                },
                n = self.queue.wait_take(batch_max, &mut batch), if can_write => {
                    if n > 0 && n < DRAIN_BATCH && matches!(self.transport, Transport::WebSocket(_)) {
                        // Let the broadcasts already under way land too: one write for
                        // several of them costs less than a write for each.
                        tokio::task::yield_now().await;
                        self.queue.take(DRAIN_BATCH - n, &mut batch);
                    }
                    if n > 0 {
                        self.write(batch).await?;
                    }
                }
                _ = sleep_until(timer) => {
                    if self.pong_deadline.is_some() {
                        return Err(CloseReason::PingTimeout);
                    }
                    self.pong_deadline = Some(Instant::now() + self.inner.config.ping_timeout);
                    self.write_frames(std::iter::once(Packet::Ping(Str::from_static("")).encode())).await?;
                }
            }
        }
    }

    async fn on_control(&mut self, control: Control) -> Result<(), CloseReason> {
        // A request may beat the timer to a deadline already passed: it must see the session gone.
        if self.pong_deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(CloseReason::PingTimeout);
        }
        match control {
            Control::Poll(reply) => match self.transport.waiting() {
                None => {
                    let _ = reply.send(Err(PollError::BadRequest));
                }
                Some(waiting) => {
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
            Control::Post(packets, reply) => {
                let result = self.on_packets(packets).await;
                let _ = reply.send(Ok(()));
                result?;
            }
            Control::Probe => {
                if let Transport::Polling { waiting } = &mut self.transport {
                    let waiting = waiting.take();
                    self.transport = Transport::Upgrading { waiting };
                }
                self.flush_poll()?;
            }
            Control::Upgrade(ws) => {
                if let Some(w) = self.transport.waiting().and_then(Option::take) {
                    let _ = w.send(Ok(Packet::Noop.encode_bytes()));
                }
                self.transport = Transport::WebSocket(ws);
                self.socket.set_transport(TransportKind::WebSocket);
                self.socket
                    .span()
                    .record("upgrade", tracing::field::display("websocket"));
                debug!("upgraded to websocket");
                let backlog: Vec<Frame> = self.pending.drain(..).collect();
                self.write_frames(backlog).await?;
            }
        }
        Ok(())
    }

    /// Packets from the client, in order.
    async fn on_packets(&mut self, packets: Vec<Packet>) -> Result<(), CloseReason> {
        if self.pong_deadline.is_some() {
            // Data while a pong is due shows the client alive; engine.io refreshes the deadline too.
            self.pong_deadline = Some(Instant::now() + self.inner.config.ping_timeout);
        }
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
                Packet::Pong(_) => {
                    self.pong_deadline = None;
                    self.ping_at = Instant::now() + self.inner.config.ping_interval;
                }
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
        if self.pong_deadline.is_some() {
            // Held back by the server, the client could not answer: it is not late.
            self.pong_deadline = Some(Instant::now() + self.inner.config.ping_timeout);
        }
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
            Some(Ok(WsMessage::Close(_))) | None => Err(CloseReason::TransportClose),
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
        let max = match self.transport {
            Transport::WebSocket(_) => DRAIN_BATCH,
            _ => self.batch_max().saturating_sub(self.pending.len()),
        };
        let mut items = Vec::new();
        self.queue.take(max, &mut items);
        for item in items {
            self.pending.extend(item.frames().iter().cloned());
        }
    }

    /// Writes a batch taken from the queue plus whatever else is ready, then flushes once.
    async fn write(&mut self, items: Vec<Outgoing>) -> Result<(), CloseReason> {
        if matches!(self.transport, Transport::WebSocket(_)) {
            let frames: Vec<Frame> = items
                .iter()
                .flat_map(|i| i.frames().iter().cloned())
                .collect();
            // The queue kept what was taken: written or not, a replay decides by what the
            // client saw.
            self.write_frames(frames).await
        } else {
            for item in items {
                self.pending.extend(item.frames().iter().cloned());
            }
            self.take_ready();
            self.flush_poll()
        }
    }

    async fn write_frames(
        &mut self,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), CloseReason> {
        let Transport::WebSocket(ws) = &mut self.transport else {
            self.pending.extend(frames);
            return self.flush_poll();
        };
        let limit = self.inner.config.write_timeout;
        let closing = self.socket.closing_token();
        let write = timeout(limit, async {
            for f in frames {
                ws.feed(ws_message(f)).await?;
            }
            ws.flush().await
        });
        // A client that stopped reading must not keep its session alive past a close.
        let written = tokio::select! {
            w = write => w,
            _ = closing.cancelled() => return Err(self.socket.close_reason()),
        };
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(error = %e, "websocket write failed");
                Err(CloseReason::TransportError)
            }
            Err(_) => {
                debug!("websocket write timed out");
                Err(CloseReason::SlowClient)
            }
        }
    }

    /// Answers the waiting GET if there is something to say.
    fn flush_poll(&mut self) -> Result<(), CloseReason> {
        let upgrading = match &self.transport {
            Transport::Polling { waiting: Some(_) } => false,
            Transport::Upgrading { waiting: Some(_) } => true,
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

    /// Ends the session: say goodbye where the reason allows it, then tell the layer above.
    async fn finish(mut self, reason: CloseReason) {
        let graceful = matches!(reason, CloseReason::ServerClose);
        if graceful {
            self.take_ready();
        }
        // Nothing is served after this: the transport is taken apart to say goodbye.
        let transport =
            std::mem::replace(&mut self.transport, Transport::Polling { waiting: None });
        match transport {
            Transport::WebSocket(mut ws) => {
                let close = self.read_error.or_else(|| {
                    self.socket.ws_close_for(reason).or_else(|| {
                        let down = self.inner.shutting_down.load(Ordering::Acquire);
                        WsClose::for_reason(reason, down)
                    })
                });
                // Flushed whatever the reason: after a close frame from the client, this
                // sends the echo that completes the closing handshake.
                let frames: Vec<Frame> = if graceful {
                    self.pending.drain(..).collect()
                } else {
                    Vec::new()
                };
                let limit = if graceful {
                    self.inner.config.write_timeout
                } else {
                    CLOSE_FRAME_WAIT.min(self.inner.config.write_timeout)
                };
                let _ = timeout(limit, async {
                    for f in frames {
                        ws.feed(ws_message(f)).await?;
                    }
                    WsStream::close(&mut ws, close.map(WsClose::frame)).await
                })
                .await;
            }
            Transport::Polling { waiting } | Transport::Upgrading { waiting } => {
                let body = match reason {
                    // The client said goodbye itself; engine.io answers the pending GET with a noop.
                    CloseReason::ClientClose => Packet::Noop.encode_bytes(),
                    _ => {
                        self.pending.push_back(Packet::Close.encode());
                        let n = self.pending.len();
                        packet::encode_payload(self.pending.drain(..n).collect::<Vec<_>>().iter())
                    }
                };
                // A server close gives the client one poll to collect what was queued before it.
                // A client close answers a GET sent together with it (a client that closes
                // while polling does so) even when the close overtook it on the way in.
                let wait = match reason {
                    _ if graceful => Some(self.inner.config.close_grace),
                    CloseReason::ClientClose => Some(CLIENT_CLOSE_GRACE),
                    _ => None,
                };
                if let Some(w) = waiting {
                    let _ = w.send(Ok(body));
                } else if let Some(wait) = wait
                    && let Ok(Some(Control::Poll(reply))) = timeout(wait, self.control.recv()).await
                {
                    let _ = reply.send(Ok(body));
                }
            }
        }
        self.control.close();
        self.inner.remove(&self.socket.id);
        self.socket.mark_closed();
        debug!(reason = reason.as_str(), "session closed");
        let backlog = Backlog {
            queue: Some(self.queue.clone()),
        };
        if let Some(conn) = self.conn.take() {
            conn.on_close(reason, backlog);
        }
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
