//! HTTP long-polling: the handshake GET, the GET that waits for frames, and the POST that
//! carries packets in. The session task decides; this side only speaks HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use tokio::sync::oneshot;
use tracing::debug;

use super::Body;
use super::engine::{Entry, Inner};
use super::errors::EngineError;
use super::packet;
use super::session::{Control, PollError};
use super::socket::{CloseReason, TransportKind};

/// Opens a polling session; the answer is its handshake packet.
pub(super) fn handshake(
    inner: &Arc<Inner>,
    peer: Option<SocketAddr>,
) -> Result<Response<Body>, EngineError> {
    let socket = inner.open(peer, TransportKind::Polling, None)?;
    let open = inner.open_packet(&socket.id, true);
    Ok(polling_response(packet::encode_payload([&open.encode()])))
}

/// A GET: waits in the session task until it has frames to send (or a reason to answer).
pub(super) async fn poll(entry: Entry) -> Result<Response<Body>, EngineError> {
    let (tx, rx) = oneshot::channel();
    // Refused or not, the answer is on `rx`: a refused request drops its sender.
    let _ = entry.control.send(Control::Poll(tx)).await;
    match rx.await {
        Ok(Ok(body)) => Ok(polling_response(body)),
        Ok(Err(PollError::BadRequest)) => Err(EngineError::BadRequest),
        // Parked for a hand-over: the client polls again, and reaches the next process.
        Err(_) if entry.socket.is_parked() => Ok(polling_response(Bytes::from_static(b"6"))),
        Err(_) => Err(EngineError::UnknownSid),
    }
}

/// A POST: reads and decodes the body here, then hands the packets to the session task.
/// Runs in the session's span.
pub(super) async fn post(
    inner: &Inner,
    entry: Entry,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let max = inner.config.max_payload;
    let read = tokio::time::timeout(
        inner.config.body_timeout,
        Limited::new(req.into_body(), max).collect(),
    )
    .await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            debug!(max, "polling body over max payload");
            return Err(EngineError::PayloadTooLarge);
        }
        Ok(Err(e)) => {
            debug!(error = %e, "polling body read failed");
            return Err(EngineError::BadRequest);
        }
        Err(_) => {
            debug!("polling body timed out");
            return Err(EngineError::BadRequest);
        }
    };
    let packets = match packet::decode_payload(body, max) {
        Ok(p) => p,
        Err(e) => {
            debug!(error = %e, "bad polling payload");
            entry.socket.close(CloseReason::ParseError);
            return Err(EngineError::BadRequest);
        }
    };
    let (tx, rx) = oneshot::channel();
    if let Err(refused) = entry.control.send(Control::Post(packets, tx)).await {
        // Parked for a hand-over: the next process handles the packets first.
        let Control::Post(packets, _) = refused.0 else {
            return Err(EngineError::UnknownSid);
        };
        return match entry.socket.add_parked(packets) {
            Ok(()) => Ok(post_ok()),
            Err(_) => Err(EngineError::UnknownSid),
        };
    }
    match rx.await {
        Ok(Ok(())) => Ok(post_ok()),
        Ok(Err(_)) => Err(EngineError::BadRequest),
        Err(_) => Err(EngineError::UnknownSid),
    }
}

fn post_ok() -> Response<Body> {
    let mut res = Response::new(Body::from("ok"));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    res
}

fn polling_response(body: Bytes) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    res
}
