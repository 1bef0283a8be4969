//! The WebSocket side of Engine.IO: the HTTP upgrade, and the probe that moves a polling
//! session onto a WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tracing::{Instrument, debug, warn};

use super::Body;
use super::buffered::Buffered;
use super::engine::{Entry, Inner};
use super::errors::EngineError;
use super::session::Control;
use super::socket::TransportKind;
use super::transport::{UpgradeStep, WsStream};
use super::wsread::{FrameBounded, WsIo};

/// Whether the request asks for a WebSocket (`Connection: upgrade`, `Upgrade: websocket`).
pub(crate) fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    let has = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Answers the upgrade with 101 and serves the WebSocket in its own task: a new session
/// when `entry` is `None`, else the upgrade of that polling session.
pub(crate) fn accept(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
    entry: Option<Entry>,
    peer: Option<SocketAddr>,
) -> Result<Response<Body>, EngineError> {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(EngineError::BadRequest)?;
    if req.headers().get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return Err(EngineError::BadRequest);
    }
    if entry.is_none() && inner.len() >= inner.config.max_sessions {
        return Err(EngineError::TooManySessions);
    }
    let accept_key = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(?peer, error = %e, "websocket upgrade failed");
                return;
            }
        };
        let (io, read_past, answer) = WsIo::from_upgraded(upgraded);
        let mut ws = WebSocketStream::from_raw_socket(
            Buffered::starting_with(FrameBounded::new(io, &read_past), answer),
            Role::Server,
            Some(ws_config(inner.config.max_payload)),
        )
        .await;
        match entry {
            None => {
                if let Err(e) = inner.open(peer, TransportKind::WebSocket, Some(Box::new(ws))) {
                    warn!(?peer, error = %e, "websocket session refused");
                }
            }
            Some(entry) => {
                // Here the client speaks first (`2probe`), so the 101 goes out now; a new
                // session's goes with its OPEN packet.
                if let Err(e) = ws.flush().await {
                    debug!(?peer, error = %e, "websocket upgrade answer not sent");
                    return;
                }
                let span = entry.socket.span().clone();
                upgrade(&inner, entry, ws).instrument(span).await
            }
        }
    });
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(res)
}

/// Buffers sized for idle connections: the read buffer grows for a large message, and each
/// frame goes straight down to [`Buffered`], which gathers a batch into one write and frees
/// its memory after the flush. Messages are bounded by max payload.
pub(super) fn ws_config(max_payload: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(max_payload))
        .max_frame_size(Some(max_payload))
}

/// The upgrade of a polling session: `2probe` → `3probe`, then `5` hands the socket over.
/// The session hears of each step; however this ends short of `5` (the socket closes, the
/// client falls silent past the upgrade timeout), the channel of steps ends with it and
/// the session goes back to plain polling.
async fn upgrade(inner: &Inner, entry: Entry, mut ws: WsStream) {
    let socket = &entry.socket;
    if socket.transport() == TransportKind::WebSocket
        || socket.upgrading.swap(true, Ordering::AcqRel)
    {
        debug!("second upgrade refused");
        let _ = ws.close(None).await;
        return;
    }
    let (steps, steps_rx) = mpsc::channel(2);
    let probe = timeout(inner.config.upgrade_timeout, async {
        if !next_is(&mut ws, "2probe").await {
            return false;
        }
        // From here the session holds every polling request until the upgrade ends, so a
        // GET the client sends after `5` cannot be served before the `5` is read.
        if entry.control.send(Control::Probe(steps_rx)).await.is_err() {
            return false;
        }
        if ws
            .send(WsMessage::Text(Utf8Bytes::from_static("3probe")))
            .await
            .is_err()
        {
            return false;
        }
        // The waiting GET is released only now: the client reads `3probe` first, pauses
        // polling, and sends no other GET.
        if steps.send(UpgradeStep::Probed).await.is_err() {
            return false;
        }
        next_is(&mut ws, "5").await
    })
    .await;
    if probe == Ok(true) {
        if steps
            .send(UpgradeStep::Upgraded(Box::new(ws)))
            .await
            .is_err()
        {
            debug!("session ended during upgrade");
        }
        return;
    }
    debug!("upgrade failed or timed out");
    // The session sees the end of the steps before a retry can send its probe.
    drop(steps);
    socket.upgrading.store(false, Ordering::Release);
    let _ = ws.close(None).await;
}

async fn next_is(ws: &mut WsStream, expected: &str) -> bool {
    matches!(ws.next().await, Some(Ok(WsMessage::Text(t))) if t.as_str() == expected)
}
