//! The one routing function for the HTTP port: Engine.IO paths, the API, health, metrics,
//! the demo page and the client bundle.

mod api;
mod assets;
pub mod metrics;
mod openapi;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::cluster::Reachable;
use crate::engineio::{Body, Engine};
use crate::monitor::Monitor;

pub use api::Api;
pub use assets::Assets;
pub use metrics::Metrics;

/// A body the router's own answers (health, metrics, assets, 404) do not need is read and
/// dropped up to this size, within this time; past either the connection is closed.
const UNUSED_BODY_LIMIT: usize = 64 * 1024;
const UNUSED_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What answers on the HTTP port.
#[derive(Clone)]
pub struct Router {
    /// Engine.IO servers by path (with trailing slash), e.g. `/socket.io/`.
    engines: Vec<(String, Engine)>,
    /// The demo at `/` and the client bundle at `/realtime.js`.
    assets: Assets,
    /// `/api/*`, if any.
    api: Option<Arc<Api>>,
    /// Cleared when shutdown starts: `/readyz` then says not ready.
    ready: Arc<AtomicBool>,
    /// Whether Redis is reachable, in a cluster: `/readyz` says not ready without it.
    cluster_up: Option<Reachable>,
    /// `/metrics`, if any.
    metrics: Option<Arc<Metrics>>,
    /// The webhook queue, flushed at shutdown (see `server::serve`).
    monitor: Option<Arc<Monitor>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

impl Router {
    pub fn new() -> Router {
        Router {
            engines: Vec::new(),
            assets: Assets::default(),
            api: None,
            ready: Arc::new(AtomicBool::new(true)),
            cluster_up: None,
            metrics: None,
            monitor: None,
        }
    }

    pub fn metrics(mut self, metrics: Metrics) -> Router {
        self.metrics = Some(Arc::new(metrics));
        self
    }

    pub fn monitor(mut self, monitor: Option<Arc<Monitor>>) -> Router {
        self.monitor = monitor;
        self
    }

    /// The monitor, for its flush at shutdown.
    pub fn monitor_handle(&self) -> Option<&Arc<Monitor>> {
        self.monitor.as_ref()
    }

    pub fn api(mut self, api: Api) -> Router {
        self.api = Some(Arc::new(api));
        self
    }

    /// Makes `/readyz` follow `up` too (a cluster node without Redis is not ready).
    pub fn cluster(mut self, up: Option<Reachable>) -> Router {
        self.cluster_up = up;
        self
    }

    /// Marks the server as no longer accepting (shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Serves an Engine.IO server under `path` (with or without its trailing slash).
    pub fn mount(mut self, path: &str, engine: Engine) -> Router {
        let mut path = path.to_owned();
        if !path.ends_with('/') {
            path.push('/');
        }
        self.engines.push((path, engine));
        self
    }

    /// Serves `/` and `/realtime.js` from `www` (`[Server] www`) when set, else built-in.
    pub fn www(mut self, www: Option<PathBuf>) -> Router {
        self.assets = Assets::new(www);
        self
    }

    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.engines.iter().map(|(_, e)| e)
    }

    /// Routes one request.
    pub async fn handle(&self, req: Request<Incoming>, peer: Option<SocketAddr>) -> Response<Body> {
        // Two `Host` headers: which one a check would read is a guess, and a proxy in
        // front may have read the other. HTTP/1.1 allows one.
        if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
            let mut res = json_response(
                StatusCode::BAD_REQUEST,
                json!({"ok": false, "error": "more than one Host header"}),
            );
            close_after(&mut res);
            return res;
        }
        let path = req.uri().path();
        for (mount, engine) in &self.engines {
            if path == mount || path == mount.trim_end_matches('/') {
                return engine.handle(req, peer).await;
            }
        }
        if path == "/api" || path.starts_with("/api/") {
            return match &self.api {
                Some(api) => api.handle(req, peer).await,
                None => not_found(),
            };
        }
        let (parts, body) = req.into_parts();
        let mut res = self.own(&parts).await;
        if !drain(body, UNUSED_BODY_LIMIT, UNUSED_BODY_TIMEOUT).await {
            close_after(&mut res);
        }
        res
    }

    /// The answers that are the router's own: none reads a body.
    async fn own(&self, req: &hyper::http::request::Parts) -> Response<Body> {
        let path = req.uri.path();
        if let Some(asset) = Assets::lookup(path) {
            return match req.method {
                Method::GET | Method::HEAD => self.assets.serve(asset, &req.headers).await,
                _ => method_not_allowed(),
            };
        }
        match (&req.method, path) {
            (&Method::GET | &Method::HEAD, "/healthz") => {
                json_response(StatusCode::OK, json!({"ok": true}))
            }
            (&Method::GET | &Method::HEAD, "/readyz") => {
                let redis_up = self.cluster_up.as_ref().is_none_or(Reachable::now);
                if !self.ready.load(Ordering::Acquire) {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"ok": false, "error": "shutting down"}),
                    )
                } else if !redis_up {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"ok": false, "error": "redis unavailable"}),
                    )
                } else {
                    json_response(StatusCode::OK, json!({"ok": true}))
                }
            }
            (&Method::GET | &Method::HEAD, "/metrics") => match &self.metrics {
                Some(m) => {
                    let mut res = Response::new(Body::from(m.render()));
                    res.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(metrics::CONTENT_TYPE),
                    );
                    res
                }
                None => not_found(),
            },
            (_, "/healthz" | "/readyz" | "/metrics") => method_not_allowed(),
            _ => not_found(),
        }
    }
}

/// Reads what is left of a request body and drops it, up to `limit` bytes within
/// `timeout`. True when it all came: the connection is then at the start of the next
/// request, and can be kept alive after an answer given before the body was read.
pub(crate) async fn drain(mut body: Incoming, limit: usize, timeout: Duration) -> bool {
    if body.is_end_stream() {
        return true;
    }
    if body.size_hint().exact().is_some_and(|n| n > limit as u64) {
        return false;
    }
    let read = async move {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
            if seen > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(false)
}

/// Says `connection: close`; hyper then closes the connection after this answer, and the
/// client knows not to send another request on it.
pub(crate) fn close_after(res: &mut Response<Body>) {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

fn method_not_allowed() -> Response<Body> {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"ok": false, "error": "method not allowed"}),
    )
}

fn not_found() -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"ok": false, "error": "not found"}),
    )
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
