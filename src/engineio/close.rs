//! The WebSocket close frame a session ends with: a status code (RFC 6455 §7.4) and a
//! short reason, so that a client can say why it was disconnected.

use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Utf8Bytes};

use super::socket::CloseReason;

/// A close frame's status code and reason. Reasons stay short: a close frame carries at
/// most 123 bytes of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsClose {
    pub code: u16,
    pub reason: &'static str,
}

impl WsClose {
    pub const fn new(code: u16, reason: &'static str) -> WsClose {
        WsClose { code, reason }
    }

    /// The close a session ends with for `reason`, where nothing more precise is known.
    /// `None`: the connection is gone or broken, so there is no one to tell.
    pub(crate) fn for_reason(reason: CloseReason, shutting_down: bool) -> Option<WsClose> {
        let (code, text) = match reason {
            CloseReason::ServerClose if shutting_down => (1001, "server shutting down"),
            CloseReason::ServerClose => (1000, "server close"),
            CloseReason::ClientClose => (1000, "client close"),
            CloseReason::ParseError => (1002, "parse error"),
            CloseReason::BadRequest => (1002, "bad request"),
            // The client failed the heartbeat the protocol asks of it.
            CloseReason::PingTimeout => (1002, "ping timeout"),
            // The client broke the server's policy of reading what it is sent in time;
            // 1013 would blame the server instead.
            CloseReason::SlowClient => (1008, "slow client"),
            // The client's own close frame is echoed.
            CloseReason::ClientDisconnect => return None,
            CloseReason::TransportClose | CloseReason::TransportError => return None,
        };
        Some(WsClose::new(code, text))
    }

    /// The close for a failed WebSocket read, when the failure is the client's message.
    pub(crate) fn for_read_error(e: &tungstenite::Error) -> Option<WsClose> {
        match e {
            tungstenite::Error::Capacity(_) => Some(WsClose::new(1009, "message too big")),
            tungstenite::Error::Utf8(_) => Some(WsClose::new(1007, "invalid utf-8")),
            tungstenite::Error::Protocol(_) => Some(WsClose::new(1002, "websocket protocol error")),
            _ => None,
        }
    }

    pub(crate) fn frame(self) -> CloseFrame {
        CloseFrame {
            code: CloseCode::from(self.code),
            reason: Utf8Bytes::from_static(self.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_fits_a_close_frame() {
        let reasons = [
            CloseReason::ClientClose,
            CloseReason::ClientDisconnect,
            CloseReason::TransportClose,
            CloseReason::TransportError,
            CloseReason::PingTimeout,
            CloseReason::ParseError,
            CloseReason::BadRequest,
            CloseReason::SlowClient,
            CloseReason::ServerClose,
        ];
        for r in reasons {
            for down in [false, true] {
                if let Some(c) = WsClose::for_reason(r, down) {
                    assert!(c.reason.len() <= 123, "{c:?}");
                    assert!(CloseCode::from(c.code).is_allowed(), "{c:?}");
                }
            }
        }
        assert_eq!(
            WsClose::for_reason(CloseReason::ServerClose, true).map(|c| c.code),
            Some(1001)
        );
    }
}
