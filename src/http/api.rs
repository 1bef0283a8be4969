//! The HTTP API of docs/design.md#http-api: publish from a backend, and look at channels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tracing::debug;

use super::{close_after, drain, json_response};
use crate::auth::{ApiGrant, ApiRefusal, Security};
use crate::engineio::Body;
use crate::hub::{
    ChannelName, CommandName, Hub, HubConfig, HubError, Identity, Publication, history_json,
    parse_limit, parse_since,
};
use crate::refusals::{self, Refusal};

/// Why an API request failed; [`ApiError::into_response`] makes it the status and the
/// `{ok: false, error}` body the caller gets back.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{}", .0.message)]
    Refused(ApiRefusal),
    #[error(
        "publishing under an identity needs an API key when [Identity] secret is set ([Api] keys)"
    )]
    IdentityNeedsKey,
    #[error("not found")]
    NotFound,
    /// The methods the path takes.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("body took too long")]
    BodyTimeout,
    #[error("cannot read body: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    #[error("bad JSON: {0}")]
    Json(serde_json::Error),
    #[error("empty array")]
    EmptyArray,
    #[error("each message must be a JSON object")]
    NotObject,
    #[error("\"to\" must be a non-empty identity")]
    BadRecipient,
    #[error("missing \"channel\"")]
    MissingChannel,
    #[error("a command needs data.command, a non-empty string")]
    NoCommandName,
    #[error("\"type\" must be \"message\" or \"command\"")]
    BadType,
    #[error("channel name is not valid UTF-8")]
    ChannelNotUtf8,
    #[error(transparent)]
    Invalid(#[from] HubError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Refused(r) => r.status,
            ApiError::IdentityNeedsKey => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Body(_)
            | ApiError::Json(_)
            | ApiError::EmptyArray
            | ApiError::NotObject
            | ApiError::BadRecipient
            | ApiError::MissingChannel
            | ApiError::NoCommandName
            | ApiError::BadType
            | ApiError::ChannelNotUtf8 => StatusCode::BAD_REQUEST,
            ApiError::Invalid(HubError::HistoryOff) => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether the body was left part read: the connection cannot carry another request.
    fn body_broken(&self) -> bool {
        matches!(
            self,
            ApiError::TooLarge(_) | ApiError::BodyTimeout | ApiError::Body(_)
        )
    }

    fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut res = json_response(status, json!({"ok": false, "error": self.to_string()}));
        let headers = res.headers_mut();
        if let ApiError::MethodNotAllowed(allow) = self {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// One thing to publish, from the identity it names (if any), checked before anything
/// is published.
type Item = (Option<Identity>, Publication);

/// The API over one hub.
pub struct Api {
    hub: Arc<Hub>,
    max_payload: usize,
    /// How long a request body may take to arrive (`[Server] body-timeout`).
    body_timeout: Duration,
    /// API keys, else the origin check (docs/design.md#http-api); none lets everyone in.
    security: Option<Arc<Security>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
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
        let (parts, body) = req.into_parts();
        // Taken by whatever reads it; left here when the answer comes first.
        let mut body = Some(body);
        // Public, before the key and origin check: see the openapi module.
        let public = (parts.uri.path() == super::openapi::PATH)
            .then(|| (super::openapi::serve(&parts.method), true));
        let routed = match public {
            Some(answer) => Ok(answer),
            None => self
                .route(&parts, &mut body, peer)
                .await
                .map(|v| (json_response(StatusCode::OK, v), true)),
        };
        let (mut res, mut settled) = match routed {
            Ok(answer) => answer,
            Err(e) => {
                debug!(method = %parts.method, path = parts.uri.path(), ?peer,
                    status = e.status().as_u16(), error = %e, "api request refused");
                if matches!(e, ApiError::Refused(_) | ApiError::IdentityNeedsKey) {
                    refusals::record(Refusal::ApiRefused, peer, &e);
                }
                // A body read in part leaves the connection mid-request.
                let settled = !e.body_broken();
                (e.into_response(), settled)
            }
        };
        if let Some(unread) = body {
            // Answered before the body was read (a refusal, a 404): read it now, bounded,
            // so the next request on this keep-alive connection is read from its start.
            settled = drain(unread, self.max_payload, self.body_timeout).await;
        }
        if !settled {
            close_after(&mut res);
        }
        res
    }

    async fn route(
        &self,
        parts: &Parts,
        body: &mut Option<Incoming>,
        peer: Option<SocketAddr>,
    ) -> Result<Value, ApiError> {
        let grant = match &self.security {
            Some(security) => security
                .check_api(&parts.headers, peer)
                .map_err(ApiError::Refused)?,
            None => ApiGrant { identities: true },
        };
        let method = &parts.method;
        match parts.uri.path() {
            "/api/publish" if method == Method::POST => match body.take() {
                Some(b) => self.publish(b, grant).await,
                None => Err(ApiError::Body("body already read".into())),
            },
            "/api/publish" => Err(ApiError::MethodNotAllowed("POST")),
            "/api/channels" if is_get(method) => Ok(self.channels().await),
            p if p.starts_with("/api/channels/") && is_get(method) => {
                let raw = &p["/api/channels/".len()..];
                // A `/` in a name is sent as %2F, so this suffix is never part of one.
                match raw.strip_suffix("/history") {
                    Some(name) => self.history(name, parts.uri.query().unwrap_or("")).await,
                    None => self.channel(raw).await,
                }
            }
            p if p == "/api/channels" || p.starts_with("/api/channels/") => {
                Err(ApiError::MethodNotAllowed("GET, HEAD"))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    async fn publish(&self, body: Incoming, grant: ApiGrant) -> Result<Value, ApiError> {
        let body = self.read_body(body).await?;
        let value: Value = serde_json::from_slice(&body).map_err(ApiError::Json)?;
        let items = match value {
            Value::Array(list) if list.is_empty() => return Err(ApiError::EmptyArray),
            Value::Array(list) => list
                .into_iter()
                .map(|v| item(v, self.hub.config()))
                .collect::<Result<Vec<_>, _>>()?,
            v => vec![item(v, self.hub.config())?],
        };
        if !grant.identities && items.iter().any(|(from, _)| from.is_some()) {
            return Err(ApiError::IdentityNeedsKey);
        }
        // Everything was checked first: a bad element publishes nothing.
        let published = items.len();
        // Paced: a long batch goes at the speed of the members that keep reading.
        for (from, publication) in items {
            self.hub
                .submit_paced(publication, from.map(Identity::into_arc))
                .await;
        }
        Ok(json!({"ok": true, "published": published}))
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, ApiError> {
        let read = tokio::time::timeout(
            self.body_timeout,
            Limited::new(body, self.max_payload).collect(),
        )
        .await;
        match read {
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(ApiError::TooLarge(self.max_payload))
            }
            Ok(Err(e)) => Err(ApiError::Body(e)),
            Err(_) => Err(ApiError::BodyTimeout),
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
        let name = self.channel_name(raw)?;
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

    /// A channel name from the path, percent-decoded and checked.
    fn channel_name(&self, raw: &str) -> Result<ChannelName, ApiError> {
        let name = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| ApiError::ChannelNotUtf8)?;
        Ok(self.hub.validate_channel(&name)?)
    }

    /// `GET /api/channels/{name}/history?since=&limit=`: what the `history` event answers.
    async fn history(&self, raw: &str, query: &str) -> Result<Value, ApiError> {
        let name = self.channel_name(raw)?;
        let (mut since, mut limit) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            match k {
                "since" => since = Some(Value::String(v.into_owned())),
                "limit" => limit = Some(Value::String(v.into_owned())),
                _ => {}
            }
        }
        let since = parse_since(since.as_ref())?;
        let limit = parse_limit(limit.as_ref())?;
        let answer = self.hub.history(&name, since, limit)?.await;
        Ok(history_json(name.as_str(), &answer))
    }
}

/// One envelope `{channel, data, identity?, type?}` or a direct `{to, data,
/// identity?}`.
fn item(v: Value, config: &HubConfig) -> Result<Item, ApiError> {
    let Value::Object(mut o) = v else {
        return Err(ApiError::NotObject);
    };
    let identity = Identity::from_json(o.get("identity"), config)?;
    let data = o.remove("data").unwrap_or(Value::Null);
    if let Some(to) = o.get("to") {
        let to = match to {
            Value::String(s) => Identity::new(s, config)?,
            _ => None,
        };
        let to = to.ok_or(ApiError::BadRecipient)?;
        return Ok((identity, Publication::Direct { to, data }));
    }
    let channel =
        ChannelName::from_json(o.get("channel").ok_or(ApiError::MissingChannel)?, config)?;
    let publication = match o.get("type") {
        None | Some(Value::Null) => Publication::Message { channel, data },
        Some(Value::String(t)) if t == "message" => Publication::Message { channel, data },
        Some(Value::String(t)) if t == "command" => {
            let mut data = data;
            let name = match data.get("command") {
                Some(Value::String(n)) if !n.is_empty() => CommandName::new(n)?,
                _ => return Err(ApiError::NoCommandName),
            };
            let options = data
                .get_mut("options")
                .map(Value::take)
                .unwrap_or(Value::Null);
            Publication::Command {
                channel,
                name,
                options,
            }
        }
        Some(_) => return Err(ApiError::BadType),
    };
    Ok((identity, publication))
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

#[cfg(test)]
mod tests;
