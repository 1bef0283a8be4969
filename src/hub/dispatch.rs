//! A client's request carried out and answered: an ack when the client asked for one,
//! else an error envelope for a refusal. Acks that wait for the cluster are sent from a
//! task of their own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tracing::debug;

use super::app::{HubApp, HubSocket};
use super::request::{Parsed, Publication, Request, RequestError, parse_event};
use super::validate::{ChannelName, HubError};
use super::{Count, Envelope, Hub, error_envelope};
use crate::auth::Channels;
use crate::refusals::{self, Refusal};
use crate::socketio::{Event, SioSocket};

/// A request's answer: now, or once the cluster has decided (a membership change).
pub(super) enum Answer {
    Now(Value),
    Later(BoxFuture<'static, Value>),
}

impl Answer {
    fn ok() -> Answer {
        Answer::Now(json!({"ok": true}))
    }

    /// `{ok, channel, count}` for a subscribe or unsubscribe; a cluster's count is
    /// awaited for `wait` at most (`[Cluster] answer-timeout`), then this node's is used.
    fn membership(channel: ChannelName, count: Count, wait: Duration) -> Answer {
        let reply =
            |channel: &str, count: usize| json!({"ok": true, "channel": channel, "count": count});
        match count {
            Count::Now(n) => Answer::Now(reply(&channel, n)),
            Count::Later(rx, local) => Answer::Later(Box::pin(async move {
                let n = match tokio::time::timeout(wait, rx).await {
                    Ok(Ok(n)) => n,
                    _ => local,
                };
                reply(&channel, n)
            })),
        }
    }
}

impl HubApp {
    /// A Socket.IO event from a joined socket: parsed, carried out, answered.
    pub(super) fn on_request(&self, socket: &Arc<SioSocket>, st: &mut HubSocket, event: Event) {
        let Event {
            name,
            args,
            attachments,
            ack,
        } = event;
        let Parsed {
            request,
            channel_hint,
        } = parse_event(&name, args, st.legacy_ready, self.hub.config());
        let result = request.and_then(|r| self.execute(socket, st, r, attachments));
        answer(socket, &name, ack, channel_hint.as_deref(), result);
    }

    fn execute(
        &self,
        socket: &Arc<SioSocket>,
        st: &mut HubSocket,
        request: Request,
        attachments: Vec<Bytes>,
    ) -> Result<Answer, RequestError> {
        match request {
            Request::Subscribe { channel, options } => self.subscribe(st, channel, options),
            Request::Unsubscribe { channel, options } => {
                let count = self.hub.unsubscribe(&st.conn, &channel, options)?;
                Ok(Answer::membership(
                    channel,
                    count,
                    self.hub.config().cluster_answer,
                ))
            }
            Request::Publish(publication) => {
                let channel = publication
                    .channel()
                    .ok_or(RequestError::DirectFromClient)?;
                permit(&st.channels, channel)?;
                let channel = channel.clone();
                let from = st.conn.member.identity.clone();
                self.hub.submit(publication, from, attachments);
                // A client publishing faster than the channel's members read is held
                // back, as an API batch is.
                socket
                    .engine()
                    .hold_for(self.hub.catching_up(channel.as_str()));
                Ok(Answer::ok())
            }
            Request::History {
                channel,
                since,
                limit,
            } => {
                permit(&st.channels, &channel)?;
                let answer = self.hub.history(&channel, since, limit)?;
                Ok(Answer::Later(Box::pin(async move {
                    super::history_json(channel.as_str(), &answer.await)
                })))
            }
            Request::Init(init) => self.init(socket, st, init).map(Answer::Now),
        }
    }

    /// Subscribes the socket's member, if its token allows the channel.
    pub(super) fn subscribe(
        &self,
        st: &HubSocket,
        channel: ChannelName,
        options: Value,
    ) -> Result<Answer, RequestError> {
        permit(&st.channels, &channel)?;
        let count = self.hub.subscribe(&st.conn, &channel, options)?;
        Ok(Answer::membership(
            channel,
            count,
            self.hub.config().cluster_answer,
        ))
    }
}

/// Whether the connection's token allows `channel`.
fn permit(channels: &Channels, channel: &ChannelName) -> Result<(), HubError> {
    if channels.allows(channel) {
        Ok(())
    } else {
        Err(HubError::NotAllowed(channel.to_string()))
    }
}

/// Answers a request: its reply or refusal in the ack the client waits for; a refusal
/// with no ack to carry it comes as an error envelope naming `channel_hint`.
fn answer(
    socket: &Arc<SioSocket>,
    event: &str,
    ack: Option<u64>,
    channel_hint: Option<&str>,
    result: Result<Answer, RequestError>,
) {
    // A failed send means the session is closing; there is no one left to answer.
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
        (Err(e), ack) => {
            debug!(sid = %socket.sid, %event, error = %e, "request refused");
            refusals::record(
                Refusal::RequestRefused,
                socket.engine().peer,
                &format_args!("{event}: {e}"),
            );
            let error = e.to_string();
            let _ = match ack {
                Some(id) => socket.ack(id, json!([{"ok": false, "error": error}]), Vec::new()),
                None => socket.emit("message", vec![error_envelope(channel_hint, &error)]),
            };
        }
    }
}

impl Hub {
    /// Delivers a publication from `from` (none: an anonymous connection, or a backend
    /// that names no identity); returns how many sessions got it.
    pub(crate) fn submit(
        &self,
        publication: Publication,
        from: Option<Arc<str>>,
        attachments: Vec<Bytes>,
    ) -> usize {
        match publication {
            Publication::Message { channel, data } => {
                self.publish(&Envelope::message(&channel, from, data), attachments)
            }
            Publication::Command {
                channel,
                name,
                options,
            } => self.publish(
                &Envelope::command(&channel, from, &name, options),
                attachments,
            ),
            Publication::Direct { to, data } => {
                let envelope = Envelope {
                    channel: None,
                    ..Envelope::message("", from, data)
                };
                self.send_to(&to, &envelope, attachments)
            }
        }
    }
}
