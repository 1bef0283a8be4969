//! The one routing function of Engine.IO: the query and headers of a request are read
//! once into a [`RequestInfo`], and one `match` sends it to the handshake, polling or the
//! WebSocket upgrade. Every refusal becomes the reference server's error here.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response};
use tracing::{Instrument, Span, debug, warn};

use super::cors::{cors, preflight};
use super::engine::{Engine, EngineConfig};
use super::errors::EngineError;
use super::socket::TransportKind;
use super::{Body, polling, websocket};
use crate::refusals::{self, Refusal};

/// The query of an Engine.IO request, as sent.
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(q: &'a str) -> Query<'a> {
        let mut out = Query {
            eio: None,
            transport: None,
            sid: None,
        };
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => out.eio = Some(v),
                "transport" => out.transport = Some(v),
                "sid" => out.sid = Some(v),
                _ => {}
            }
        }
        out
    }
}

/// What a request asks for, checked against the protocol version and the transports this
/// server offers.
struct RequestInfo {
    sid: Option<String>,
    transport: TransportKind,
    method: Method,
    /// `Connection: upgrade` with `Upgrade: websocket`.
    upgrade: bool,
}

impl RequestInfo {
    fn parse(req: &Request<Incoming>, config: &EngineConfig) -> Result<RequestInfo, EngineError> {
        let q = Query::parse(req.uri().query().unwrap_or(""));
        let transport = match q.transport {
            Some("polling") if config.allow_polling => TransportKind::Polling,
            Some("websocket") if config.allow_websocket => TransportKind::WebSocket,
            _ => return Err(EngineError::UnknownTransport),
        };
        if q.eio != Some("4") {
            return Err(EngineError::UnsupportedProtocolVersion);
        }
        Ok(RequestInfo {
            sid: q.sid.map(str::to_owned),
            transport,
            method: req.method().clone(),
            upgrade: websocket::is_upgrade_request(req),
        })
    }
}

impl Engine {
    /// Serves one request under the Engine.IO path.
    pub async fn handle(&self, req: Request<Incoming>, peer: Option<SocketAddr>) -> Response<Body> {
        let allowed = self
            .inner
            .gate
            .get()
            .is_none_or(|g| g.allows(req.headers(), peer));
        let origin = req.headers().get(header::ORIGIN).cloned();
        let mut res = match self.route(req, peer, allowed).await {
            Ok(res) => res,
            Err(e) if e.is_server_side() => {
                warn!(?peer, error = %e, "engine.io request not served");
                e.into_response()
            }
            Err(e) => {
                debug!(?peer, error = %e, "engine.io request refused");
                // A refused origin is counted and logged by the origin check already.
                let kind = match e {
                    EngineError::UnsupportedProtocolVersion => Some(Refusal::UnsupportedProtocol),
                    EngineError::Forbidden => None,
                    _ => Some(Refusal::EngineRequest),
                };
                if let Some(kind) = kind {
                    refusals::record(kind, peer, &e);
                }
                e.into_response()
            }
        };
        cors(&mut res, origin, allowed);
        res
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        peer: Option<SocketAddr>,
        allowed: bool,
    ) -> Result<Response<Body>, EngineError> {
        if req.method() == Method::OPTIONS {
            return Ok(preflight(&req));
        }
        let info = RequestInfo::parse(&req, &self.inner.config)?;
        if info.sid.is_none() && !allowed {
            if let Some(gate) = self.inner.gate.get() {
                gate.refused(req.headers(), peer);
            }
            return Err(EngineError::Forbidden);
        }
        let entry = match &info.sid {
            Some(sid) => Some(self.inner.get(sid).ok_or(EngineError::UnknownSid)?),
            None => None,
        };
        // A request for a session is served in that session's span.
        let span = entry
            .as_ref()
            .map_or_else(Span::none, |e| e.socket.span().clone());
        let inner = &self.inner;
        use TransportKind::{Polling, WebSocket};
        async move {
            match (entry, info.transport, info.upgrade, info.method) {
                (entry, WebSocket, true, _) => websocket::accept(inner.clone(), req, entry, peer),
                (_, WebSocket, false, _) => Err(EngineError::BadRequest),
                (None, Polling, _, Method::GET) => polling::handshake(inner, peer),
                (None, Polling, _, _) => Err(EngineError::BadHandshakeMethod),
                // The session moved to a WebSocket: polling for it is over.
                (Some(entry), Polling, _, _) if entry.socket.transport() != Polling => {
                    Err(EngineError::BadRequest)
                }
                (Some(entry), Polling, _, Method::GET) => polling::poll(entry).await,
                (Some(entry), Polling, _, Method::POST) => polling::post(inner, entry, req).await,
                (Some(_), Polling, _, _) => Err(EngineError::BadRequest),
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_the_three_keys() {
        let q = Query::parse("EIO=4&transport=polling&t=abc&sid=xyz");
        assert_eq!(q.eio, Some("4"));
        assert_eq!(q.transport, Some("polling"));
        assert_eq!(q.sid, Some("xyz"));
        let q = Query::parse("EIO&transport=");
        assert_eq!(q.eio, Some(""));
        assert_eq!(q.transport, Some(""));
        assert_eq!(q.sid, None);
    }
}
