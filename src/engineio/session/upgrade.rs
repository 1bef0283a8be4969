//! The session's side of a WebSocket upgrade: polling goes on while the WebSocket is
//! probed, a polling request that may have been sent after the client's `5` is held until
//! the upgrade ends, and an upgrade that fails leaves plain polling as it was.

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::{Control, PollError, Session, Transport, UpgradeStep, WsStream};
use crate::engineio::Frame;
use crate::engineio::packet::Packet;
use crate::engineio::socket::{CloseReason, TransportKind};

impl Control {
    /// Answers a polling request with 400.
    pub(super) fn refuse(self) {
        match self {
            Control::Poll(reply) => {
                let _ = reply.send(Err(PollError::BadRequest));
            }
            Control::Post(_, reply) => {
                let _ = reply.send(Err(PollError::BadRequest));
            }
            Control::Probe(_) => {}
        }
    }
}

/// A polling request that came while an upgrade is under way: it waits for the upgrade to
/// complete (then it is refused, as a poll sent after `5` must be) or for `until`.
pub(super) struct Held {
    pub(super) request: Control,
    pub(super) until: Instant,
}

impl Session {
    /// A WebSocket got `2probe`: polling goes on, with `steps` reporting the upgrade.
    pub(super) fn probe(&mut self, steps: mpsc::Receiver<UpgradeStep>) {
        let waiting = match &mut self.transport {
            Transport::WebSocket(_) => {
                debug!("probe after the upgrade refused");
                return;
            }
            // A failed probe's end may not have been seen yet: the new one replaces it.
            Transport::Polling { waiting } | Transport::Upgrading { waiting, .. } => waiting.take(),
        };
        self.transport = Transport::Upgrading {
            waiting,
            steps,
            probed: false,
        };
    }

    /// Whether a polling request came before or after the client's `5` cannot be told
    /// until the upgrade ends: it waits, as engine.io's fast-upgrade tick makes it wait.
    pub(super) fn hold(&mut self, request: Control) {
        self.held = Some(Held {
            request,
            until: Instant::now() + self.inner.config.upgrade_hold,
        });
    }

    /// The upgrade went a step further (`None`: it failed).
    pub(super) async fn on_upgrade(
        &mut self,
        step: Option<UpgradeStep>,
    ) -> Result<(), CloseReason> {
        match step {
            Some(UpgradeStep::Probed) => {
                if let Transport::Upgrading { probed, .. } = &mut self.transport {
                    *probed = true;
                }
                self.flush_poll()
            }
            Some(UpgradeStep::Upgraded(ws)) => self.upgraded(ws).await,
            None => {
                debug!("upgrade failed; polling goes on");
                let waiting = self.transport.waiting().and_then(Option::take);
                self.transport = Transport::Polling { waiting };
                match self.held.take() {
                    Some(held) => self.on_request(held.request).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// The client sent `5`: the session moves to the WebSocket, and polling is over.
    async fn upgraded(&mut self, ws: Box<WsStream>) -> Result<(), CloseReason> {
        if let Some(w) = self.transport.waiting().and_then(Option::take) {
            let _ = w.send(Ok(Packet::Noop.encode_bytes()));
        }
        if let Some(held) = self.held.take() {
            held.request.refuse();
        }
        self.transport = Transport::WebSocket(ws);
        self.socket.set_transport(TransportKind::WebSocket);
        self.socket
            .span()
            .record("upgrade", tracing::field::display("websocket"));
        debug!("upgraded to websocket");
        let backlog: Vec<Frame> = self.pending.drain(..).collect();
        self.write_frames(backlog).await
    }
}
