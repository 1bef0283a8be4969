//! What carries a session now, as one value: long-polling (with the GET held open, if
//! any), polling while a WebSocket upgrade completes, or the WebSocket. A session cannot
//! hold a WebSocket and a waiting GET at once, because no variant has both: the WebSocket
//! being probed stays with the upgrade, which reports its steps until it hands it over.

use std::future::pending;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use super::buffered::Buffered;
use super::packet::Frame;
use super::wsread::{FrameBounded, WsIo};

pub(crate) type WsStream = WebSocketStream<Buffered<FrameBounded<WsIo>>>;

/// The answer to a held polling GET: a payload, or a refusal.
pub(crate) type PollReply = oneshot::Sender<Result<Bytes, PollError>>;

/// Why a polling request was refused by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollError {
    /// The request breaks the transport's rules (e.g. a second concurrent GET).
    BadRequest,
}

pub(super) enum Transport {
    /// Long-polling; `waiting` is the GET being held open.
    Polling {
        waiting: Option<PollReply>,
    },
    /// A WebSocket is being probed; polling goes on until the upgrade ends. Once `3probe`
    /// went out (`probed`), a GET is answered at once, with a noop when there is nothing
    /// to send, so the client can pause polling and finish the upgrade. `steps` ends
    /// without [`UpgradeStep::Upgraded`] when the upgrade failed.
    Upgrading {
        waiting: Option<PollReply>,
        steps: mpsc::Receiver<UpgradeStep>,
        probed: bool,
    },
    WebSocket(Box<WsStream>),
}

/// How an upgrade goes on, as the WebSocket being probed reports it to the session.
pub(crate) enum UpgradeStep {
    /// `3probe` went out.
    Probed,
    /// The client sent `5`: the session moves to this WebSocket.
    Upgraded(Box<WsStream>),
}

/// What the transport itself reported, besides the frames the session writes.
pub(super) enum Event {
    /// The WebSocket's next message (`None`: the stream ended).
    Ws(Option<Result<WsMessage, tungstenite::Error>>),
    /// The client gave up the held GET.
    PollAborted,
    /// The upgrade under way went a step further (`None`: it failed).
    Upgrade(Option<UpgradeStep>),
}

impl Transport {
    pub(super) fn new(ws: Option<Box<WsStream>>) -> Transport {
        match ws {
            Some(ws) => Transport::WebSocket(ws),
            None => Transport::Polling { waiting: None },
        }
    }

    /// Whether frames can go out now: over the WebSocket, or to a held GET.
    pub(super) fn can_write(&self) -> bool {
        match self {
            Transport::WebSocket(_) => true,
            Transport::Polling { waiting } | Transport::Upgrading { waiting, .. } => {
                waiting.is_some()
            }
        }
    }

    /// The held GET, on polling.
    pub(super) fn waiting(&mut self) -> Option<&mut Option<PollReply>> {
        match self {
            Transport::Polling { waiting } | Transport::Upgrading { waiting, .. } => Some(waiting),
            Transport::WebSocket(_) => None,
        }
    }

    /// Resolves when the transport has something to report. Cancel-safe: nothing is lost
    /// when another branch of the session's `select!` wins.
    pub(super) async fn next_event(&mut self) -> Event {
        match self {
            Transport::WebSocket(ws) => Event::Ws(ws.next().await),
            Transport::Polling {
                waiting: Some(reply),
            } => {
                reply.closed().await;
                Event::PollAborted
            }
            Transport::Upgrading { waiting, steps, .. } => {
                let aborted = async {
                    match waiting {
                        Some(reply) => reply.closed().await,
                        None => pending().await,
                    }
                };
                tokio::select! {
                    step = steps.recv() => Event::Upgrade(step),
                    () = aborted => Event::PollAborted,
                }
            }
            Transport::Polling { waiting: None } => pending().await,
        }
    }
}

pub(super) fn ws_message(f: Frame) -> WsMessage {
    match f {
        Frame::Text(s) => WsMessage::Text(s),
        Frame::Binary(b) => WsMessage::Binary(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polling_writes_only_to_a_held_get_and_sees_it_aborted() {
        let mut t = Transport::new(None);
        assert!(!t.can_write());
        let (reply, answer) = oneshot::channel();
        if let Some(waiting) = t.waiting() {
            *waiting = Some(reply);
        }
        assert!(t.can_write());
        drop(answer);
        assert!(matches!(t.next_event().await, Event::PollAborted));
    }
}
