//! The 2012 protocol: one `message` event carrying `{type: "command", channel, data:
//! {command, options}}` or `{type: "message", channel, data}` (old clients sent it as a
//! JSON string), where `init` must come first. Parsed into [`Request`]s here, and `init`
//! carried out, as the original server did.

use std::sync::Arc;

use serde_json::{Value, json};

use super::HubConfig;
use super::app::{HubApp, HubSocket};
use super::request::{Init, Publication, Request, RequestError};
use super::validate::{ChannelName, CommandName, Identity};
use crate::auth::AdmitError;
use crate::socketio::SioSocket;

/// Why a 2012 envelope was refused, in the original server's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    #[error("Malformed message")]
    NoEnvelope,
    #[error("Malformed message: not JSON")]
    NotJson,
    #[error("Client has not sent init command yet!")]
    NotInit,
    #[error("Malformed command message")]
    MalformedCommand,
    #[error("msg either has no channel or no data. not publishing")]
    NoData,
    #[error("identity already set for this connection")]
    IdentitySet,
}

/// An envelope sent as a JSON string.
pub(crate) fn decode(text: &str) -> Result<Value, RequestError> {
    serde_json::from_str(text).map_err(|_| LegacyError::NotJson.into())
}

/// Parses an envelope. `ready`: `init` came (or CONNECT named an identity); until then
/// only `init` is taken.
pub(crate) fn parse(
    mut msg: Value,
    ready: bool,
    config: &HubConfig,
) -> Result<Request, RequestError> {
    let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
    let is_command = match kind {
        "command" => true,
        "message" => false,
        // Neither: refused, once `init` came.
        _ if ready => return Err(LegacyError::MalformedCommand.into()),
        _ => return Err(LegacyError::NotInit.into()),
    };
    let mut data = take(&mut msg, "data").unwrap_or(Value::Null);
    if !is_command {
        if !ready {
            return Err(LegacyError::NotInit.into());
        }
        if data.is_null() {
            return Err(LegacyError::NoData.into());
        }
        let channel = ChannelName::from_json(msg.get("channel").unwrap_or(&Value::Null), config)?;
        return Ok(Request::Publish(Publication::Message { channel, data }));
    }
    let command = match take(&mut data, "command") {
        Some(Value::String(c)) => c,
        _ => String::new(),
    };
    if command == "init" {
        return init(msg, data, config).map(Request::Init);
    }
    if !ready {
        return Err(LegacyError::NotInit.into());
    }
    if command.is_empty() {
        return Err(LegacyError::MalformedCommand.into());
    }
    let channel = ChannelName::from_json(msg.get("channel").unwrap_or(&Value::Null), config)?;
    let options = take(&mut data, "options").unwrap_or(Value::Null);
    Ok(match command.as_str() {
        "subscribe" => Request::Subscribe { channel, options },
        "unsubscribe" => Request::Unsubscribe { channel, options },
        name => Request::Publish(Publication::Command {
            channel,
            name: CommandName::new(name)?,
            options,
        }),
    })
}

/// `init`: `identity` beside `type`, a token in `data.token`, `data.options.token` or
/// beside `type`, channels in `data.channels` or `data.options.channels`.
fn init(mut msg: Value, mut data: Value, config: &HubConfig) -> Result<Init, RequestError> {
    let identity = Identity::from_json(msg.get("identity"), config)?;
    let mut options = take(&mut data, "options");
    let mut from_options = |key| options.as_mut().and_then(|o| take(o, key));
    // The first of them present is the token, even when it is null.
    let token = take(&mut data, "token")
        .or_else(|| from_options("token"))
        .or_else(|| take(&mut msg, "token"));
    let listed = take(&mut data, "channels").or_else(|| from_options("channels"));
    let mut channels = Vec::new();
    let mut bad_channel = None;
    if let Some(Value::Array(list)) = listed {
        for v in &list {
            match ChannelName::from_json(v, config) {
                Ok(c) => channels.push(c),
                Err(e) => {
                    bad_channel = Some(e);
                    break;
                }
            }
        }
    }
    Ok(Init {
        identity,
        token,
        channels,
        bad_channel,
    })
}

/// Moves a field out of a JSON object (nothing, from anything else).
fn take(v: &mut Value, key: &str) -> Option<Value> {
    v.as_object_mut()?.remove(key)
}

impl HubApp {
    /// Carries out `init`: names the identity (once, on a connection that has none; proven
    /// as at CONNECT) and subscribes the listed channels.
    pub(super) fn init(
        &self,
        socket: &Arc<SioSocket>,
        st: &mut HubSocket,
        init: Init,
    ) -> Result<Value, RequestError> {
        let Init {
            identity,
            token,
            channels,
            bad_channel,
        } = init;
        if let Some(id) = identity
            && st.conn.member.identity.as_deref() != Some(id.as_str())
        {
            if st.conn.member.identity.is_some() {
                return Err(LegacyError::IdentitySet.into());
            }
            let (id, allowed) = self.admit(Some(id), token.as_ref())?;
            let Some(id) = id else {
                return Err(AdmitError::IdentityRequired.into());
            };
            st.channels = allowed;
            // An anonymous connection becomes its identity's: its anonymous member leaves.
            self.hub.detach(&st.conn, socket, Default::default(), false);
            st.conn = self.hub.attach(socket, Some(id.into_arc()), None);
        }
        st.legacy_ready = true;
        for channel in channels {
            self.subscribe(st, channel, Value::Null)?;
        }
        match bad_channel {
            Some(e) => Err(e.into()),
            None => Ok(json!({"ok": true})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::validate::HubError;

    fn config() -> HubConfig {
        HubConfig {
            max_channel_name: 10,
            ..HubConfig::default()
        }
    }

    fn parse_ready(msg: Value) -> Result<Request, RequestError> {
        parse(msg, true, &config())
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name, &config()).unwrap()
    }

    fn legacy(e: LegacyError) -> Result<Request, RequestError> {
        Err(RequestError::Legacy(e))
    }

    #[test]
    fn envelopes_become_requests() {
        assert_eq!(
            parse_ready(json!({"type": "message", "channel": "c", "data": {"command": "x"}})),
            Ok(Request::Publish(Publication::Message {
                channel: channel("c"),
                data: json!({"command": "x"})
            }))
        );
        assert_eq!(
            parse_ready(json!({"type": "command", "channel": "c",
                "data": {"command": "subscribe", "options": {"a": 1}}})),
            Ok(Request::Subscribe {
                channel: channel("c"),
                options: json!({"a": 1})
            })
        );
        assert_eq!(
            parse_ready(json!({"type": "command", "channel": "c",
                "data": {"command": "unsubscribe"}})),
            Ok(Request::Unsubscribe {
                channel: channel("c"),
                options: Value::Null
            })
        );
        assert_eq!(
            parse_ready(json!({"type": "command", "channel": "c",
                "data": {"command": "poke", "options": [1]}})),
            Ok(Request::Publish(Publication::Command {
                channel: channel("c"),
                name: CommandName::new("poke").unwrap(),
                options: json!([1])
            }))
        );
        let text = r#"{"type":"message","channel":"c","data":1}"#;
        assert_eq!(
            decode(text).and_then(parse_ready),
            parse_ready(json!({"type": "message", "channel": "c", "data": 1}))
        );
    }

    #[test]
    fn init_comes_first() {
        let early = json!({"type": "message", "channel": "c", "data": 1});
        assert_eq!(
            parse(early.clone(), false, &config()),
            legacy(LegacyError::NotInit)
        );
        assert!(parse(early, true, &config()).is_ok());
        // Before init, even a malformed envelope only hears that init is due.
        for msg in [
            json!({}),
            json!(null),
            json!({"type": "command", "data": {}}),
        ] {
            assert_eq!(
                parse(msg.clone(), false, &config()),
                legacy(LegacyError::NotInit),
                "{msg}"
            );
        }
        let init = json!({"type": "command", "identity": "carol", "data": {"command": "init"}});
        let Ok(Request::Init(init)) = parse(init, false, &config()) else {
            panic!("init is taken before init")
        };
        assert_eq!(init.identity.as_deref(), Some("carol"));
    }

    #[test]
    fn malformed_envelopes_are_refused_with_the_original_texts() {
        assert_eq!(decode("{nope"), Err(LegacyError::NotJson.into()));
        assert_eq!(
            LegacyError::NotJson.to_string(),
            "Malformed message: not JSON"
        );
        let cases = [
            (json!({}), LegacyError::MalformedCommand),
            (json!({"type": "shout"}), LegacyError::MalformedCommand),
            (json!({"type": 5}), LegacyError::MalformedCommand),
            (json!({"type": "command"}), LegacyError::MalformedCommand),
            (
                json!({"type": "command", "data": {"command": 5}}),
                LegacyError::MalformedCommand,
            ),
            (
                json!({"type": "message", "channel": "c"}),
                LegacyError::NoData,
            ),
            (
                json!({"type": "message", "channel": "c", "data": null}),
                LegacyError::NoData,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(parse_ready(msg.clone()), legacy(want), "{msg}");
        }
        let hub = |e| Err(RequestError::Hub(e));
        assert_eq!(
            parse_ready(json!({"type": "message", "data": 1})),
            hub(HubError::ChannelNotString)
        );
        assert_eq!(
            parse_ready(json!({"type": "message", "channel": "c\u{7}", "data": 1})),
            hub(HubError::ChannelControlChars)
        );
        assert_eq!(
            parse_ready(json!({"type": "command", "channel": "elevenchars",
                "data": {"command": "subscribe"}})),
            hub(HubError::ChannelTooLong(10))
        );
        for name in ["onSubscribe", "onUnsubscribe"] {
            assert_eq!(
                parse_ready(json!({"type": "command", "channel": "c", "data": {"command": name}})),
                hub(HubError::ReservedCommand(name.into()))
            );
        }
    }

    #[test]
    fn init_fields() {
        let init = |msg: Value| match parse(msg, false, &config()) {
            Ok(Request::Init(i)) => Ok(i),
            Ok(other) => panic!("not init: {other:?}"),
            Err(e) => Err(e),
        };
        let i = init(json!({"type": "command", "identity": "ann", "token": "t3",
            "data": {"command": "init", "options": {"token": "t2", "channels": ["a", "b"]}}}))
        .unwrap();
        assert_eq!(i.identity, Identity::new("ann", &config()).unwrap());
        assert_eq!(i.token, Some(json!("t2")));
        assert_eq!(i.channels, vec![channel("a"), channel("b")]);
        assert_eq!(i.bad_channel, None);

        // data.token first, even when null; data.channels first, even when not a list.
        let i = init(json!({"type": "command", "token": "t3",
            "data": {"command": "init", "token": null, "channels": "a",
                     "options": {"token": "t2", "channels": ["b"]}}}))
        .unwrap();
        assert_eq!(i.token, Some(Value::Null));
        assert!(i.channels.is_empty() && i.bad_channel.is_none());
        let i = init(json!({"type": "command", "token": "t3", "data": {"command": "init"}}));
        assert_eq!(i.unwrap().token, Some(json!("t3")));

        // A bad entry ends the list: those before it stay.
        let i = init(json!({"type": "command",
            "data": {"command": "init", "channels": ["a", 5, "b"]}}))
        .unwrap();
        assert_eq!(i.channels, vec![channel("a")]);
        assert_eq!(i.bad_channel, Some(HubError::ChannelNotString));

        assert_eq!(
            init(json!({"type": "command", "identity": 7, "data": {"command": "init"}})),
            Err(RequestError::Hub(HubError::IdentityNotString))
        );
        assert_eq!(
            init(json!({"type": "command", "identity": "", "data": {"command": "init"}}))
                .unwrap()
                .identity,
            None
        );
    }
}
