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

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::engineio::{Body, Engine};
use crate::monitor::Monitor;

pub use api::Api;
pub use assets::Assets;
pub use metrics::Metrics;

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
    cluster_up: Option<Arc<AtomicBool>>,
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
    pub fn cluster(mut self, up: Option<Arc<AtomicBool>>) -> Router {
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
        if let Some(asset) = Assets::lookup(path) {
            return match *req.method() {
                Method::GET | Method::HEAD => self.assets.serve(asset, req.headers()).await,
                _ => method_not_allowed(),
            };
        }
        match (req.method(), path) {
            (&Method::GET | &Method::HEAD, "/healthz") => {
                json_response(StatusCode::OK, json!({"ok": true}))
            }
            (&Method::GET | &Method::HEAD, "/readyz") => {
                let redis_up = self
                    .cluster_up
                    .as_ref()
                    .is_none_or(|up| up.load(Ordering::Acquire));
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
