//! The HTTP API of SPEC §4: publish from a backend, and look at channels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tracing::debug;

use super::json_response;
use crate::auth::Security;
use crate::engineio::Body;
use crate::hub::{Envelope, Hub, HubError, RESERVED_COMMANDS};

/// Why an API request failed: the status and the text the caller gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }

    fn into_response(self, allow: Option<&'static str>) -> Response<Body> {
        let mut res = json_response(self.0, json!({"ok": false, "error": self.1}));
        if let Some(allow) = allow {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        res
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        ApiError::bad(e.to_string())
    }
}

/// One thing to publish, checked before anything is published.
enum Item {
    Channel(Envelope),
    Direct(String, Envelope),
}

/// The API over one hub.
pub struct Api {
    hub: Arc<Hub>,
    max_payload: usize,
    /// How long a request body may take to arrive (`[Server] body-timeout`).
    body_timeout: Duration,
    /// API keys, else the origin check (SPEC §4); none lets everyone in.
    security: Option<Arc<Security>>,
}

impl Api {
    pub fn new(hub: Arc<Hub>, max_payload: usize) -> Api {
        Api {
            hub,
            max_payload,
            body_timeout: Duration::from_secs(30),
            security: None,
        }
    }

    /// Sets how long a request body may take to arrive.
    pub fn body_timeout(mut self, timeout: Duration) -> Api {
        self.body_timeout = timeout;
        self
    }

    /// Puts every `/api/*` request behind `security`.
    pub fn guarded(mut self, security: Arc<Security>) -> Api {
        self.security = Some(security);
        self
    }

    /// Serves a request whose path starts with `/api/`.
    pub async fn handle(&self, req: Request<Incoming>, peer: Option<SocketAddr>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if let Some(refusal) = self
            .security
            .as_ref()
            .and_then(|s| s.check_api(req.headers(), peer).err())
        {
            debug!(%method, %path, ?peer, status = refusal.status.as_u16(), "api request refused");
            let mut res = ApiError(refusal.status, refusal.message.into()).into_response(None);
            if refusal.status == StatusCode::UNAUTHORIZED {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return res;
        }
        let (result, allow) = match path.as_str() {
            "/api/publish" if method == Method::POST => (self.publish(req).await, None),
            "/api/publish" => (Err(method_not_allowed()), Some("POST")),
            "/api/channels" if is_get(&method) => (Ok(self.channels().await), None),
            p if p.starts_with("/api/channels/") && is_get(&method) => {
                (self.channel(&p["/api/channels/".len()..]).await, None)
            }
            p if p.starts_with("/api/channels") => (Err(method_not_allowed()), Some("GET, HEAD")),
            _ => (
                Err(ApiError(StatusCode::NOT_FOUND, "not found".into())),
                None,
            ),
        };
        match result {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => {
                debug!(%method, %path, status = e.0.as_u16(), error = %e.1, "api request refused");
                e.into_response(allow)
            }
        }
    }

    async fn publish(&self, req: Request<Incoming>) -> Result<Value, ApiError> {
        let body = self.read_body(req).await?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))?;
        let items = match &value {
            Value::Array(list) if list.is_empty() => return Err(ApiError::bad("empty array")),
            Value::Array(list) => list
                .iter()
                .map(|v| self.item(v))
                .collect::<Result<Vec<_>, _>>()?,
            v => vec![self.item(v)?],
        };
        // Everything was checked first: a bad element publishes nothing.
        let mut published = 0;
        for item in items {
            match item {
                Item::Channel(env) => {
                    self.hub.publish(&env, Vec::new());
                }
                Item::Direct(to, env) => {
                    self.hub.send_to(&to, &env, Vec::new());
                }
            }
            published += 1;
        }
        Ok(json!({"ok": true, "published": published}))
    }

    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, ApiError> {
        let read = tokio::time::timeout(
            self.body_timeout,
            Limited::new(req.into_body(), self.max_payload).collect(),
        )
        .await;
        match read {
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes", self.max_payload),
            )),
            Ok(Err(e)) => Err(ApiError::bad(format!("cannot read body: {e}"))),
            Err(_) => Err(ApiError(
                StatusCode::REQUEST_TIMEOUT,
                "body took too long".into(),
            )),
        }
    }

    /// One envelope `{channel, data, identity?, type?}` or a direct `{to, data}`.
    fn item(&self, v: &Value) -> Result<Item, ApiError> {
        let Value::Object(o) = v else {
            return Err(ApiError::bad("each message must be a JSON object"));
        };
        let identity = self.hub.validate_identity(o.get("identity"))?;
        let data = o.get("data").cloned().unwrap_or(Value::Null);
        if let Some(to) = o.get("to") {
            let to = match to {
                Value::String(s) if !s.is_empty() => s.clone(),
                _ => return Err(ApiError::bad("\"to\" must be a non-empty identity")),
            };
            self.hub
                .validate_identity(Some(&Value::String(to.clone())))?;
            let env = Envelope {
                channel: None,
                ..Envelope::message("", identity, data)
            };
            return Ok(Item::Direct(to, env));
        }
        let channel = match o.get("channel") {
            None => return Err(ApiError::bad("missing \"channel\"")),
            c => self.hub.validate_channel(c)?,
        };
        match o.get("type") {
            None | Some(Value::Null) => {
                Ok(Item::Channel(Envelope::message(channel, identity, data)))
            }
            Some(Value::String(t)) if t == "message" => {
                Ok(Item::Channel(Envelope::message(channel, identity, data)))
            }
            Some(Value::String(t)) if t == "command" => {
                let name = match data.get("command") {
                    Some(Value::String(n)) if !n.is_empty() => n.as_str(),
                    _ => {
                        return Err(ApiError::bad(
                            "a command needs data.command, a non-empty string",
                        ));
                    }
                };
                if RESERVED_COMMANDS.contains(&name) {
                    return Err(ApiError::bad(format!("command name {name:?} is reserved")));
                }
                let options = data.get("options").cloned().unwrap_or(Value::Null);
                Ok(Item::Channel(Envelope::command(
                    channel, identity, name, options,
                )))
            }
            Some(_) => Err(ApiError::bad("\"type\" must be \"message\" or \"command\"")),
        }
    }

    /// Cluster-wide when the cluster can answer; else this node's view, marked `partial`.
    async fn channels(&self) -> Value {
        let (all, partial) = match self.hub.presence().channels() {
            None => (self.hub.channels(), false),
            Some(query) => match query.await {
                Ok(all) => (all, false),
                Err(e) => {
                    debug!(error = %e, "cluster presence unavailable; answering for this node");
                    (self.hub.channels(), true)
                }
            },
        };
        let list: Vec<Value> = all
            .into_iter()
            .map(|(name, count)| json!({"name": name, "count": count}))
            .collect();
        let mut v = json!({"ok": true, "channels": list});
        if partial {
            v["partial"] = Value::Bool(true);
        }
        v
    }

    async fn channel(&self, raw: &str) -> Result<Value, ApiError> {
        let name = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| ApiError::bad("channel name is not valid UTF-8"))?;
        let name = self
            .hub
            .validate_channel(Some(&Value::String(name.into_owned())))?
            .to_owned();
        let (info, partial) = match self.hub.presence().channel(&name) {
            None => (self.hub.channel(&name), false),
            Some(query) => match query.await {
                Ok(info) => (info, false),
                Err(e) => {
                    debug!(error = %e, "cluster presence unavailable; answering for this node");
                    (self.hub.channel(&name), true)
                }
            },
        };
        let mut v = json!({
            "ok": true,
            "channel": info.name,
            "count": info.count,
            "identities": info.identities,
            "anonymous": info.anonymous,
        });
        if partial {
            v["partial"] = Value::Bool(true);
        }
        Ok(v)
    }
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

fn method_not_allowed() -> ApiError {
    ApiError(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into())
}
