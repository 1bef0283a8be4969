//! How a session writes to its WebSocket: frames encoded beforehand (a broadcast's once for
//! every recipient) copied straight into the socket's write buffer, one flush per batch.

use std::future::poll_fn;
use std::sync::atomic::Ordering;

use futures_util::SinkExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite;
use tracing::debug;

use super::{Session, Transport};
use crate::engineio::packet::Frame;
use crate::engineio::socket::{CloseReason, Outgoing};
use crate::engineio::wsframe;

impl Session {
    /// Writes a batch taken from the queue plus whatever else is ready, then flushes once.
    pub(super) async fn write(&mut self, items: Vec<Outgoing>) -> Result<(), CloseReason> {
        if matches!(self.transport, Transport::WebSocket(_)) {
            // The queue kept what was taken: written or not, a replay decides by what the
            // client saw.
            self.write_ws(items.iter().map(Outgoing::ws_bytes)).await
        } else {
            for item in items {
                self.pending.extend(item.frames().iter().cloned());
            }
            self.take_ready();
            self.flush_poll()
        }
    }

    pub(super) async fn write_frames(
        &mut self,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), CloseReason> {
        if !matches!(self.transport, Transport::WebSocket(_)) {
            self.pending.extend(frames);
            return self.flush_poll();
        }
        let mut encoded = Vec::new();
        for f in frames {
            wsframe::encode_into(&mut encoded, &f);
        }
        self.write_ws(std::iter::once(encoded.as_slice())).await
    }

    /// Writes WebSocket frames encoded beforehand straight into the socket's write buffer
    /// (the same bytes for every recipient of a broadcast, no framing per recipient), then
    /// flushes once.
    async fn write_ws<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), CloseReason> {
        let Transport::WebSocket(ws) = &mut self.transport else {
            return Ok(());
        };
        let limit = self.inner.config.write_timeout;
        let closing = self.socket.closing_token();
        let write = timeout(limit, async {
            for chunk in chunks {
                let out = ws.get_mut();
                if out.is_full() {
                    poll_fn(|cx| out.drain(cx))
                        .await
                        .map_err(tungstenite::Error::Io)?;
                }
                out.extend(chunk);
            }
            // Also writes what the WebSocket layer queued itself (a pong).
            ws.flush().await
        });
        tokio::pin!(write);
        // A client that stopped reading must not keep its session alive past a close.
        let written = tokio::select! {
            w = &mut write => w,
            _ = closing.cancelled() => {
                if !self.inner.handing_over.load(Ordering::Acquire) {
                    return Err(self.socket.close_reason());
                }
                // The connection carries on in the next process, which replays only what
                // was never taken: what this batch took is written whole (still bounded).
                write.await
            }
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
}
