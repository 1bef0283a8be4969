//! A session the previous process handed over live: resumed on its own WebSocket, or under
//! its polling sid, with no greeting, its main namespace rejoined through the recovery of
//! its pid.

use tokio::time::Instant;

use std::time::Duration;

use tokio::time::timeout;

use super::{Session, Transport};
use crate::engineio::packet::{Packet, Str};
use crate::engineio::socket::CloseReason;

/// How long a hand-over waits for the rest of a message a client is sending: the rest of
/// a frame already under way normally follows within milliseconds.
const FRAME_REST_WAIT: Duration = Duration::from_secs(1);

impl Session {
    /// At a hand-over, reads on until the WebSocket stands between two messages, handling
    /// what comes as usual: a frame half read would keep the connection from crossing, and
    /// what the client sent from reaching anyone. Bounded by [`FRAME_REST_WAIT`] (a client
    /// stalled in a frame falls back to a recovery rather than hold up the hand-over).
    pub(super) async fn read_to_boundary(&mut self) {
        let limit = FRAME_REST_WAIT.min(self.inner.config.write_timeout);
        let _ = timeout(limit, async {
            while let Transport::WebSocket(ws) = &self.transport {
                if ws.get_ref().get_ref().unread_at_boundary().is_some() {
                    break;
                }
                let event = self.transport.next_event().await;
                if self.on_event(event).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }

    /// Marks the session as handed over live (see [`crate::engineio::Handler::on_resume`]),
    /// with what its client posted meanwhile (polling).
    pub(crate) fn resume(&mut self, auth: serde_json::Value, inbound: Vec<Packet>) {
        self.resumed = Some((auth, inbound));
    }

    /// A session handed over live: the client was greeted by the previous process. What
    /// it posted to the previous process after the session ended there comes first, then
    /// a ping at once restarts the client's heartbeat deadline, which the hand-over ate
    /// into (on polling, it goes out with the next GET).
    pub(super) async fn run_resumed(mut self, auth: serde_json::Value, inbound: Vec<Packet>) {
        self.conn = self.inner.handler.on_resume(&self.socket, &auth);
        let served = if self.conn.is_none() {
            Err(CloseReason::TransportClose)
        } else {
            let ping = Packet::Ping(Str::from_static("")).encode();
            let resumed = match self.on_packets(inbound).await {
                Ok(()) => self.write_frames(std::iter::once(ping)).await,
                Err(reason) => Err(reason),
            };
            match resumed {
                Ok(()) => {
                    self.heartbeat.delivered(Instant::now());
                    self.serve().await
                }
                Err(reason) => Err(reason),
            }
        };
        let reason = match served {
            Ok(()) => self.socket.close_reason(),
            Err(reason) => reason,
        };
        // Boxed, as in `run`: so it does not size the future of every resumed session.
        Box::pin(self.finish(reason)).await;
    }
}
