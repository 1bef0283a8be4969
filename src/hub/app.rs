//! The client events of SPEC §3.2 on top of Socket.IO: what a connection may ask of the hub.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tracing::debug;

use super::envelope::error_envelope;
use super::{Envelope, Hub, HubError};
use crate::engineio;
use crate::socketio::{App, DisconnectReason, Event, SioSocket};

/// What the hub keeps per connection.
struct Member {
    /// The identity from the CONNECT auth payload, if any.
    identity: Option<Arc<str>>,
    /// The key this connection counts under in a channel: its identity, or its own id.
    key: Arc<str>,
    /// Channels this connection is in, so a disconnect leaves them all. Locked briefly.
    channels: Mutex<HashSet<String>>,
}

/// The Socket.IO application of the product: one namespace, `/`, and the hub behind it.
pub struct HubApp {
    hub: Arc<Hub>,
}

impl HubApp {
    pub fn new(hub: Arc<Hub>) -> HubApp {
        HubApp { hub }
    }

    fn identity_of(&self, auth: Option<&Value>) -> Result<Option<String>, String> {
        match auth.and_then(|a| a.get("identity")) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s.len() > self.hub.config().max_identity => Err(format!(
                "identity longer than {} bytes",
                self.hub.config().max_identity
            )),
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                Err("identity contains control characters".into())
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err("identity must be a string".into()),
        }
    }

    fn subscribe(
        &self,
        socket: &Arc<SioSocket>,
        member: &Member,
        ev: &Event,
    ) -> Result<Value, HubError> {
        let channel = self.hub.validate_channel(ev.args.first())?;
        {
            let Ok(mut channels) = member.channels.lock() else {
                return Err(HubError::NotSubscribed(channel.to_owned()));
            };
            let max = self.hub.config().max_channels;
            if !channels.contains(channel) && channels.len() >= max {
                return Err(HubError::TooManyChannels(max));
            }
            channels.insert(channel.to_owned());
        }
        let count = self.hub.subscribe(channel, socket, &member.key);
        Ok(json!({"ok": true, "channel": channel, "count": count}))
    }

    fn unsubscribe(
        &self,
        socket: &Arc<SioSocket>,
        member: &Member,
        ev: &Event,
    ) -> Result<Value, HubError> {
        let channel = self.hub.validate_channel(ev.args.first())?;
        let was_in = member
            .channels
            .lock()
            .map(|mut c| c.remove(channel))
            .unwrap_or(false);
        if !was_in {
            return Err(HubError::NotSubscribed(channel.to_owned()));
        }
        let count = self.hub.unsubscribe(channel, &socket.sid).unwrap_or(0);
        Ok(json!({"ok": true, "channel": channel, "count": count}))
    }

    fn publish(&self, member: &Member, ev: Event) -> Result<Value, HubError> {
        let channel = self.hub.validate_channel(ev.args.first())?;
        let data = ev.args.get(1).cloned().unwrap_or(Value::Null);
        let envelope = Envelope::message(channel, member.identity.clone(), data);
        self.hub.publish(&envelope, ev.attachments);
        Ok(json!({"ok": true}))
    }
}

impl App for HubApp {
    fn authorize(
        &self,
        _nsp: &str,
        auth: Option<&Value>,
        _engine: &engineio::Socket,
    ) -> Result<(), String> {
        self.identity_of(auth).map(|_| ())
    }

    fn on_connect(&self, socket: &Arc<SioSocket>, auth: Option<Value>) {
        let identity: Option<Arc<str>> = self
            .identity_of(auth.as_ref())
            .ok()
            .flatten()
            .map(Into::into);
        // Anonymous connections are their own member; `#` cannot start a client identity key.
        let key = match &identity {
            Some(id) => Arc::from(format!("@{id}")),
            None => Arc::from(format!("#{}", socket.sid)),
        };
        socket.set_data(Member {
            identity,
            key,
            channels: Mutex::new(HashSet::new()),
        });
    }

    fn on_event(&self, socket: &Arc<SioSocket>, ev: Event) {
        let Some(member) = socket.data::<Member>() else {
            return;
        };
        let ack = ev.ack;
        let channel_hint = ev.args.first().and_then(Value::as_str).map(str::to_owned);
        let result = match ev.name.as_str() {
            "subscribe" => self.subscribe(socket, member, &ev),
            "unsubscribe" => self.unsubscribe(socket, member, &ev),
            "publish" => self.publish(member, ev),
            other => {
                debug!(sid = %socket.sid, event = other, "unknown event");
                if let Some(id) = ack {
                    let error = format!("unknown event {other:?}");
                    let _ = socket.ack(id, json!([{"ok": false, "error": error}]), Vec::new());
                }
                return;
            }
        };
        let reply = match result {
            Ok(v) => v,
            Err(e) => {
                debug!(sid = %socket.sid, error = %e, "request refused");
                if ack.is_none() {
                    let env = error_envelope(channel_hint.as_deref(), &e.to_string());
                    let _ = socket.emit("message", vec![env]);
                    return;
                }
                json!({"ok": false, "error": e.to_string()})
            }
        };
        if let Some(id) = ack {
            let _ = socket.ack(id, json!([reply]), Vec::new());
        }
    }

    fn on_disconnect(&self, socket: &Arc<SioSocket>, reason: DisconnectReason) {
        debug!(sid = %socket.sid, reason = reason.as_str(), "socket disconnected");
        let Some(member) = socket.data::<Member>() else {
            return;
        };
        let channels: Vec<String> = member
            .channels
            .lock()
            .map(|mut c| c.drain().collect())
            .unwrap_or_default();
        for channel in channels {
            self.hub.unsubscribe(&channel, &socket.sid);
        }
    }
}
