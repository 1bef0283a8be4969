//! The client side of the hub on Socket.IO: CONNECT with identity and recovery, the events
//! of SPEC §3.2 with their acks, and the legacy 2012 envelope (§3.4).

use std::any::Any;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tracing::{debug, warn};

use super::member::Claim;
use super::{Conn, Count, Envelope, Hub, HubError, RESERVED_COMMANDS, error_envelope};
use crate::auth::{Channels, Security};
use crate::engineio::{self, Backlog, CloseReason, Sid};
use crate::socketio::{Accept, App, DisconnectReason, Event, SioSocket};

/// What a socket carries for the hub.
struct State {
    /// Replaced only by a legacy `init` that names an identity.
    conn: Mutex<Conn>,
    /// The legacy protocol needs `init` first; an identity from CONNECT counts as one.
    legacy_ready: Mutex<bool>,
    /// What the identity's token allows this connection to subscribe, publish and
    /// command to; replaced only by a legacy `init` with a token.
    channels: Mutex<Channels>,
}

/// A request's answer: now, or once the cluster has decided (a membership change).
enum Answer {
    Now(Value),
    Later(futures_util::future::BoxFuture<'static, Value>),
}

impl Answer {
    /// `{ok, channel, count}` for a subscribe or unsubscribe; a cluster's count is
    /// awaited for `wait` at most.
    fn membership(channel: &str, count: Count, wait: std::time::Duration) -> Answer {
        let reply = |count: usize| json!({"ok": true, "channel": channel, "count": count});
        match count {
            Count::Now(n) => Answer::Now(reply(n)),
            Count::Later(rx, local) => {
                let channel = channel.to_owned();
                Answer::Later(Box::pin(async move {
                    let n = match tokio::time::timeout(wait, rx).await {
                        Ok(Ok(n)) => n,
                        _ => local,
                    };
                    json!({"ok": true, "channel": channel, "count": n})
                }))
            }
        }
    }
}

impl From<Value> for Answer {
    fn from(v: Value) -> Answer {
        Answer::Now(v)
    }
}

/// What [`App::accept`] decided, for [`App::on_connect`].
struct Admitted {
    identity: Option<Arc<str>>,
    channels: Channels,
    claim: Option<Claim>,
}

/// The Socket.IO application of the product: one namespace, `/`, and the hub behind it.
pub struct HubApp {
    hub: Arc<Hub>,
    /// Identity tokens and `[Identity] require`; none admits every identity unproven.
    security: Option<Arc<Security>>,
}

impl HubApp {
    pub fn new(hub: Arc<Hub>) -> HubApp {
        HubApp {
            hub,
            security: None,
        }
    }

    /// Checks identities (and their tokens) with `security`.
    pub fn guarded(mut self, security: Arc<Security>) -> HubApp {
        self.security = Some(security);
        self
    }

    /// The identity a CONNECT (or a legacy `init`) may use, and its channels.
    fn admit(
        &self,
        identity: Option<Arc<str>>,
        token: Option<&Value>,
    ) -> Result<(Option<Arc<str>>, Channels), String> {
        let Some(security) = &self.security else {
            return Ok((identity, Channels::any()));
        };
        let (identity, channels) = security.admit(identity, token)?;
        // A token's `sub` may name the identity: it must be one the hub takes.
        let identity = self
            .hub
            .validate_identity(identity.map(|i| Value::from(&*i)).as_ref())
            .map_err(|e| e.to_string())?;
        Ok((identity, channels))
    }

    fn permit(channels: &Channels, channel: &str) -> Result<(), HubError> {
        if channels.allows(channel) {
            Ok(())
        } else {
            Err(HubError::NotAllowed(channel.to_owned()))
        }
    }

    fn recovery_on(&self) -> bool {
        !self.hub.config().grace.is_zero()
    }

    fn conn(socket: &SioSocket) -> Option<(Conn, &State)> {
        let state = socket.data::<State>()?;
        let conn = state.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some((conn, state))
    }

    fn channels(state: &State) -> Channels {
        state
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn subscribe(
        &self,
        conn: &Conn,
        allowed: &Channels,
        channel: Option<&Value>,
        options: Option<&Value>,
    ) -> Result<Answer, HubError> {
        let channel = self.hub.validate_channel(channel)?;
        Self::permit(allowed, channel)?;
        let options = options.cloned().unwrap_or(Value::Null);
        let count = self.hub.subscribe(conn, channel, options)?;
        Ok(Answer::membership(
            channel,
            count,
            self.hub.config().cluster_answer,
        ))
    }

    fn unsubscribe(
        &self,
        conn: &Conn,
        channel: Option<&Value>,
        options: Option<&Value>,
    ) -> Result<Answer, HubError> {
        let channel = self.hub.validate_channel(channel)?;
        let options = options.cloned().unwrap_or(Value::Null);
        let count = self.hub.unsubscribe(conn, channel, options)?;
        Ok(Answer::membership(
            channel,
            count,
            self.hub.config().cluster_answer,
        ))
    }

    fn publish(
        &self,
        conn: &Conn,
        allowed: &Channels,
        channel: Option<&Value>,
        data: Value,
        ev_attachments: Vec<bytes::Bytes>,
    ) -> Result<Value, HubError> {
        let channel = self.hub.validate_channel(channel)?;
        Self::permit(allowed, channel)?;
        let envelope = Envelope::message(channel, conn.member.identity.clone(), data);
        self.hub.publish(&envelope, ev_attachments);
        Ok(json!({"ok": true}))
    }

    fn command(
        &self,
        conn: &Conn,
        allowed: &Channels,
        channel: Option<&Value>,
        name: Option<&Value>,
        options: Value,
        attachments: Vec<bytes::Bytes>,
    ) -> Result<Value, HubError> {
        let channel = self.hub.validate_channel(channel)?;
        Self::permit(allowed, channel)?;
        let name = match name {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(HubError::CommandNotString),
        };
        if RESERVED_COMMANDS.contains(&name) {
            return Err(HubError::ReservedCommand(name.to_owned()));
        }
        let envelope = Envelope::command(channel, conn.member.identity.clone(), name, options);
        self.hub.publish(&envelope, attachments);
        Ok(json!({"ok": true}))
    }

    /// The 2012 envelope: `{type: "command", data: {command, options}, channel}` or
    /// `{type: "message", channel, data}`, handled as the original server did.
    fn legacy(
        &self,
        socket: &Arc<SioSocket>,
        state: &State,
        conn: Conn,
        msg: &Value,
        attachments: Vec<bytes::Bytes>,
    ) -> Result<Answer, String> {
        let msg = match msg {
            // Old clients sent the envelope as a JSON string.
            Value::String(s) => &serde_json::from_str::<Value>(s)
                .map_err(|_| "Malformed message: not JSON".to_owned())?,
            other => other,
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let channel = msg.get("channel");
        let data = msg.get("data").cloned().unwrap_or(Value::Null);
        let command = data.get("command").and_then(Value::as_str).unwrap_or("");
        let options = data.get("options").cloned().unwrap_or(Value::Null);
        let ready = *state.legacy_ready.lock().unwrap_or_else(|e| e.into_inner());
        if kind == "command" && command == "init" {
            return self
                .legacy_init(socket, state, conn, msg, &data)
                .map(Answer::Now);
        }
        if !ready {
            return Err("Client has not sent init command yet!".into());
        }
        let err = |e: HubError| e.to_string();
        let allowed = &Self::channels(state);
        match (kind, command) {
            ("command", "") => Err("Malformed command message".into()),
            ("command", "subscribe") => self
                .subscribe(&conn, allowed, channel, Some(&options))
                .map_err(err),
            ("command", "unsubscribe") => self
                .unsubscribe(&conn, channel, Some(&options))
                .map_err(err),
            ("command", name) => self
                .command(
                    &conn,
                    allowed,
                    channel,
                    Some(&Value::from(name)),
                    options,
                    attachments,
                )
                .map(Answer::Now)
                .map_err(err),
            ("message", _) => {
                if data.is_null() {
                    return Err("msg either has no channel or no data. not publishing".into());
                }
                self.publish(&conn, allowed, channel, data, attachments)
                    .map(Answer::Now)
                    .map_err(err)
            }
            _ => Err("Malformed command message".into()),
        }
    }

    /// `init`: names the identity (once, on a connection that has none) and may subscribe
    /// to `data.channels` (or `data.options.channels`).
    fn legacy_init(
        &self,
        socket: &Arc<SioSocket>,
        state: &State,
        conn: Conn,
        msg: &Value,
        data: &Value,
    ) -> Result<Value, String> {
        let identity = self
            .hub
            .validate_identity(msg.get("identity"))
            .map_err(|e| e.to_string())?;
        let mut conn = conn;
        if let Some(id) = identity
            && conn.member.identity.as_deref() != Some(&*id)
        {
            if conn.member.identity.is_some() {
                return Err("identity already set for this connection".into());
            }
            // The identity must be proven as at CONNECT: a token beside it in the envelope.
            let token = [
                data.get("token"),
                data.get("options").and_then(|o| o.get("token")),
                msg.get("token"),
            ]
            .into_iter()
            .flatten()
            .next();
            let (id, channels) = self.admit(Some(id), token)?;
            let Some(id) = id else {
                return Err("identity required".into());
            };
            *state.channels.lock().unwrap_or_else(|e| e.into_inner()) = channels;
            // An anonymous connection becomes its identity's: its anonymous member leaves.
            self.hub.detach(&conn, socket, Default::default(), false);
            conn = self.hub.attach(socket, Some(id), None);
            *state.conn.lock().unwrap_or_else(|e| e.into_inner()) = conn.clone();
        }
        *state.legacy_ready.lock().unwrap_or_else(|e| e.into_inner()) = true;
        let channels = data
            .get("channels")
            .or_else(|| data.get("options").and_then(|o| o.get("channels")));
        if let Some(Value::Array(list)) = channels {
            let allowed = Self::channels(state);
            for ch in list {
                self.subscribe(&conn, &allowed, Some(ch), None)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(json!({"ok": true}))
    }
}

impl App for HubApp {
    fn accept(
        &self,
        _nsp: &str,
        auth: Option<&Value>,
        _engine: &engineio::Socket,
    ) -> Result<Accept, String> {
        let identity = self
            .hub
            .validate_identity(auth.and_then(|a| a.get("identity")))
            .map_err(|e| e.to_string())?;
        // Checked on every CONNECT, a recovering one too: a pid proves nothing by itself.
        let (identity, channels) = self.admit(identity, auth.and_then(|a| a.get("token")))?;
        let admitted = |claim| {
            Some(Box::new(Admitted {
                identity: identity.clone(),
                channels: channels.clone(),
                claim,
            }) as Box<dyn Any + Send>)
        };
        if !self.recovery_on() {
            return Ok(Accept {
                state: admitted(None),
                ..Accept::default()
            });
        }
        // A client back from a lost connection presents its pid and the last offset it saw.
        if let Some(pid) = auth.and_then(|a| a.get("pid")).and_then(Value::as_str) {
            let offset = match auth.and_then(|a| a.get("offset")) {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(s)) => s.parse::<u64>().ok().map(Some),
                Some(_) => None,
            };
            if let Some(offset) = offset
                && let Some(claim) = self.hub.claim(pid, offset, identity.as_deref())
            {
                return Ok(Accept {
                    sid: Some(claim.sid.clone()),
                    pid: claim.pid.clone(),
                    state: admitted(Some(claim)),
                });
            }
            debug!(%pid, "connection state not recoverable; new session");
        }
        Ok(Accept {
            sid: None,
            pid: Some(Sid::random()),
            state: admitted(None),
        })
    }

    fn on_connect(
        &self,
        socket: &Arc<SioSocket>,
        _auth: Option<Value>,
        state: Option<Box<dyn Any + Send>>,
    ) {
        // `accept` always leaves its decision; without it nothing was checked.
        let Some(admitted) = state.and_then(|s| s.downcast::<Admitted>().ok()) else {
            socket.disconnect();
            return;
        };
        let Admitted {
            identity,
            channels,
            claim,
        } = *admitted;
        let ready = identity.is_some();
        let conn = self.hub.attach(socket, identity, claim);
        socket.set_data(State {
            conn: Mutex::new(conn),
            legacy_ready: Mutex::new(ready),
            channels: Mutex::new(channels),
        });
    }

    fn on_event(&self, socket: &Arc<SioSocket>, ev: Event) {
        let Some((conn, state)) = Self::conn(socket) else {
            return;
        };
        let ack = ev.ack;
        let args = &ev.args;
        let channel_hint = args.first().and_then(Value::as_str).map(str::to_owned);
        let allowed = &Self::channels(state);
        let result: Result<Answer, String> = match ev.name.as_str() {
            "subscribe" => self
                .subscribe(&conn, allowed, args.first(), args.get(1))
                .map_err(|e| e.to_string()),
            "unsubscribe" => self
                .unsubscribe(&conn, args.first(), args.get(1))
                .map_err(|e| e.to_string()),
            "publish" => {
                let data = args.get(1).cloned().unwrap_or(Value::Null);
                self.publish(&conn, allowed, args.first(), data, ev.attachments)
                    .map(Answer::Now)
                    .map_err(|e| e.to_string())
            }
            "command" => {
                let options = args.get(2).cloned().unwrap_or(Value::Null);
                self.command(
                    &conn,
                    allowed,
                    args.first(),
                    args.get(1),
                    options,
                    ev.attachments,
                )
                .map(Answer::Now)
                .map_err(|e| e.to_string())
            }
            "message" => match args.first() {
                Some(msg) => self.legacy(socket, state, conn, msg, ev.attachments),
                None => Err("Malformed message".into()),
            },
            other => Err(format!("unknown event {other:?}")),
        };
        match (result, ack) {
            (Ok(Answer::Now(reply)), Some(id)) => {
                let _ = socket.ack(id, json!([reply]), Vec::new());
            }
            (Ok(Answer::Later(reply)), Some(id)) => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let reply = reply.await;
                    let _ = socket.ack(id, json!([reply]), Vec::new());
                });
            }
            (Ok(_), None) => {}
            (Err(e), Some(id)) => {
                debug!(sid = %socket.sid, event = %ev.name, error = %e, "request refused");
                let _ = socket.ack(id, json!([{"ok": false, "error": e}]), Vec::new());
            }
            (Err(e), None) => {
                debug!(sid = %socket.sid, event = %ev.name, error = %e, "request refused");
                let _ = socket.emit("message", vec![error_envelope(channel_hint.as_deref(), &e)]);
            }
        }
    }

    fn on_disconnect(&self, socket: &Arc<SioSocket>, reason: DisconnectReason, backlog: Backlog) {
        let Some((conn, _)) = Self::conn(socket) else {
            return;
        };
        // As socket.io decides it: a lost or closed transport may come back (a client that
        // means to leave sends a Socket.IO DISCONNECT first); a protocol error may not.
        let recoverable = match reason {
            DisconnectReason::Transport(r) => {
                !matches!(r, CloseReason::ParseError | CloseReason::BadRequest)
            }
            _ => false,
        };
        if reason == DisconnectReason::Transport(CloseReason::SlowClient) {
            self.hub
                .counters
                .slow_clients
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(sid = %socket.sid, peer = ?socket.engine().peer, "disconnected a slow client: its outbound queue was full");
        }
        debug!(sid = %socket.sid, reason = reason.as_str(), recoverable, "socket disconnected");
        let items = if recoverable {
            backlog.into_tagged()
        } else {
            Default::default()
        };
        self.hub.detach(&conn, socket, items, recoverable);
    }
}
