//! How a session ends: a goodbye where the reason allows it (a close frame on a
//! WebSocket, a last answer to a poll), then the layer above is told, with what is left.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::time::timeout;
use tracing::debug;

use super::upgrade::Held;
use super::{Control, PollError, Session, Transport, WsStream};
use crate::engineio::backlog::Backlog;
use crate::engineio::close::WsClose;
use crate::engineio::livews;
use crate::engineio::packet::{self, Frame, Packet};
use crate::engineio::socket::CloseReason;
use crate::engineio::transport::ws_message;

/// How long a client's close waits for a GET it sent alongside.
const CLIENT_CLOSE_GRACE: Duration = Duration::from_millis(100);

/// How long a session ended by an error may take to say why in a WebSocket close frame.
const CLOSE_FRAME_WAIT: Duration = Duration::from_secs(1);

impl Session {
    /// Ends the session: say goodbye where the reason allows it, then tell the layer above.
    pub(super) async fn finish(mut self, reason: CloseReason) {
        let graceful = matches!(reason, CloseReason::ServerClose);
        if graceful && self.inner.handing_over.load(Ordering::Acquire) {
            self.read_to_boundary().await;
        }
        let handing_over = self.inner.handing_over.load(Ordering::Acquire);
        // A polling session goes on in the next process under its sid (see `park`).
        let parking =
            graceful && handing_over && !matches!(self.transport, Transport::WebSocket(_));
        if parking {
            return self.park();
        }
        if graceful {
            if matches!(self.transport, Transport::WebSocket(_)) {
                self.take_ready();
            } else {
                // The last poll carries the close packet too, within `max-poll-packets`;
                // what does not fit stays queued, in the backlog a recovery replays.
                self.take_ready_leaving(1);
            }
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
                let handing_over = graceful && handing_over;
                let _ = timeout(limit, async {
                    for f in frames {
                        ws.feed(ws_message(f)).await?;
                    }
                    if handing_over && let Some(taken) = livews::take(&mut ws, limit).await {
                        // The connection goes on in the next process: no close frame.
                        self.socket.keep_live(taken);
                        return Ok(());
                    }
                    WsStream::close(&mut ws, close.map(WsClose::frame)).await
                })
                .await;
            }
            Transport::Polling { waiting } | Transport::Upgrading { waiting, .. } => {
                let body = match reason {
                    // The client said goodbye itself; engine.io answers the pending GET with a noop.
                    CloseReason::ClientClose => Packet::Noop.encode_bytes(),
                    _ => {
                        let room = self.inner.config.max_poll_packets.max(1) - 1;
                        let n = self.pending.len().min(room);
                        let mut frames: Vec<Frame> = self.pending.drain(..n).collect();
                        frames.push(Packet::Close.encode());
                        packet::encode_payload(frames.iter())
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
                // A GET held during an upgrade is the one waiting now; a held POST is refused.
                let held = match self.held.take() {
                    Some(Held {
                        request: Control::Poll(reply),
                        ..
                    }) => Some(reply),
                    _ => None,
                };
                if let Some(w) = waiting.or(held) {
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
        self.closed(reason);
    }

    /// Tells the layer above, with what is left in the queue.
    fn closed(&mut self, reason: CloseReason) {
        self.socket.mark_closed();
        debug!(reason = reason.as_str(), "session closed");
        let backlog = Backlog {
            queue: Some(self.queue.clone()),
        };
        if let Some(conn) = self.conn.take() {
            conn.on_close(reason, backlog);
        }
    }

    /// At a hand-over, a polling session ends here but not for its client, which polls
    /// the next process under the same sid. A waiting GET gets what is queued (a noop if
    /// nothing is), so the client polls again, and its next request waits in the listen
    /// backlog for the next process. Until the exec, what still reaches this process is
    /// answered so that the client carries on: a GET with a noop, a POST with `ok`, its
    /// packets kept for the next process to handle first. What was taken from the queue
    /// and not sent goes over with the session, ahead of its queue.
    fn park(mut self) {
        let transport =
            std::mem::replace(&mut self.transport, Transport::Polling { waiting: None });
        let mut waiting = match transport {
            Transport::Polling { waiting } | Transport::Upgrading { waiting, .. } => waiting,
            Transport::WebSocket(_) => None,
        };
        let mut held = self.held.take().map(|h| h.request);
        if waiting.is_none()
            && let Some(Control::Poll(reply)) = held.take_if(|r| matches!(r, Control::Poll(_)))
        {
            waiting = Some(reply);
        }
        if let Some(w) = waiting {
            self.take_ready();
            if self.pending.is_empty() {
                self.pending.push_back(Packet::Noop.encode());
            }
            let body = self.take_payload();
            let _ = w.send(Ok(body));
        }
        self.socket.park(self.pending.drain(..).collect());
        // Parked first: a request that finds the channel closed finds the session parked.
        self.control.close();
        if let Some(request) = held {
            self.park_request(request);
        }
        while let Ok(request) = self.control.try_recv() {
            self.park_request(request);
        }
        self.closed(CloseReason::ServerClose);
    }

    /// A request that reached a parked session: a GET gets a noop, a POST `ok` (its
    /// packets kept for the next process).
    fn park_request(&self, request: Control) {
        match request {
            Control::Poll(reply) => {
                let _ = reply.send(Ok(Packet::Noop.encode_bytes()));
            }
            Control::Post(packets, reply) => {
                let kept = self.socket.add_parked(packets).is_ok();
                let _ = reply.send(if kept {
                    Ok(())
                } else {
                    Err(PollError::BadRequest)
                });
            }
            Control::Probe(_) => {}
        }
    }
}
