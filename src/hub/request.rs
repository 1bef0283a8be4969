//! One request to the hub, whichever edge it came through (a Socket.IO event, the 2012
//! envelope, `POST /api/publish`): parsed and validated once into a [`Request`], with one
//! error type, [`RequestError`], for every refusal on the way.

use serde_json::Value;

use super::HubConfig;
use super::legacy::{self, LegacyError};
use super::validate::{ChannelName, CommandName, HubError, Identity};
use crate::auth::AdmitError;

/// What a client asks of the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Subscribe {
        channel: ChannelName,
        options: Value,
    },
    Unsubscribe {
        channel: ChannelName,
        options: Value,
    },
    Publish(Publication),
    /// The kept messages of a channel after an offset (docs/protocol.md#history).
    History {
        channel: ChannelName,
        since: Option<u64>,
        limit: usize,
    },
    /// The 2012 protocol's first request.
    Init(Init),
}

/// Something to deliver: what a client publishes, and all the HTTP API can ask.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    Message {
        channel: ChannelName,
        data: Value,
    },
    Command {
        channel: ChannelName,
        name: CommandName,
        options: Value,
    },
    /// To every session of one identity, on no channel (the HTTP API only).
    Direct {
        to: Identity,
        data: Value,
    },
}

impl Publication {
    /// The channel it goes to; `None` for a direct message.
    pub fn channel(&self) -> Option<&ChannelName> {
        match self {
            Publication::Message { channel, .. } | Publication::Command { channel, .. } => {
                Some(channel)
            }
            Publication::Direct { .. } => None,
        }
    }
}

/// The 2012 `init`: names the connection's identity and may subscribe it to channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Init {
    pub identity: Option<Identity>,
    /// Proves `identity`; checked as a CONNECT's `auth.token` is.
    pub token: Option<Value>,
    /// Subscribed in order, after the identity is set.
    pub channels: Vec<ChannelName>,
    /// The invalid entry that ended `channels`: refused once those before it are
    /// subscribed, as the original server did.
    pub bad_channel: Option<HubError>,
}

/// Why a request was refused; the text goes back to the client (in an ack, an error
/// envelope or a CONNECT_ERROR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    /// No client event parses to a direct message; refused should one ever be made.
    #[error("a client cannot send to one identity")]
    DirectFromClient,
}

/// A Socket.IO event parsed, and the channel a refusal's error envelope names.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) request: Result<Request, RequestError>,
    /// The event's first argument when it is a string (moved out of it, not copied).
    pub(crate) channel_hint: Option<String>,
}

/// Parses a Socket.IO event: `subscribe(channel, options?)`, `unsubscribe(channel,
/// options?)`, `publish(channel, data?)`, `command(channel, name, options?)`,
/// `history({channel, since?, limit?})`, or the
/// 2012 envelope in `message(envelope)`. `legacy_ready`: the connection may send 2012
/// requests other than `init`. Missing arguments are `null`.
pub(crate) fn parse_event(
    name: &str,
    args: Vec<Value>,
    legacy_ready: bool,
    config: &HubConfig,
) -> Parsed {
    let mut args = args.into_iter();
    // A string first argument is kept whole for the hint, and read through it.
    let (channel_hint, first) = match args.next() {
        Some(Value::String(s)) => (Some(s), None),
        other => (None, other),
    };
    let request = event_request(
        name,
        channel_hint.as_deref(),
        first,
        args,
        legacy_ready,
        config,
    );
    Parsed {
        request,
        channel_hint,
    }
}

/// The request of an event whose first argument is `text` when it is a string, else
/// `first`; `rest` are the arguments after it.
fn event_request(
    name: &str,
    text: Option<&str>,
    first: Option<Value>,
    mut rest: impl Iterator<Item = Value>,
    legacy_ready: bool,
    config: &HubConfig,
) -> Result<Request, RequestError> {
    let mut next = || rest.next().unwrap_or(Value::Null);
    let channel = || ChannelName::new(text.ok_or(HubError::ChannelNotString)?, config);
    Ok(match name {
        "message" => {
            let msg = match (text, first) {
                (Some(text), _) => legacy::decode(text)?,
                (None, Some(msg)) => msg,
                (None, None) => return Err(LegacyError::NoEnvelope.into()),
            };
            return legacy::parse(msg, legacy_ready, config);
        }
        "subscribe" => Request::Subscribe {
            channel: channel()?,
            options: next(),
        },
        "unsubscribe" => Request::Unsubscribe {
            channel: channel()?,
            options: next(),
        },
        "publish" => Request::Publish(Publication::Message {
            channel: channel()?,
            data: next(),
        }),
        "command" => Request::Publish(Publication::Command {
            channel: channel()?,
            name: CommandName::from_json(&next())?,
            options: next(),
        }),
        "history" => {
            let Some(Value::Object(query)) = first else {
                return Err(HubError::HistoryNotObject.into());
            };
            Request::History {
                channel: ChannelName::from_json(
                    query.get("channel").unwrap_or(&Value::Null),
                    config,
                )?,
                since: super::history::parse_since(query.get("since"))?,
                limit: super::history::parse_limit(query.get("limit"))?,
            }
        }
        other => return Err(RequestError::UnknownEvent(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(name: &str, args: Value) -> Result<Request, RequestError> {
        parse_ready(name, args, true)
    }

    fn parse_ready(name: &str, args: Value, ready: bool) -> Result<Request, RequestError> {
        let Value::Array(args) = args else {
            panic!("args must be an array")
        };
        let config = HubConfig {
            max_channel_name: 10,
            max_identity: 5,
            ..HubConfig::default()
        };
        parse_event(name, args, ready, &config).request
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name, &HubConfig::default()).unwrap()
    }

    fn hub_err(e: HubError) -> Result<Request, RequestError> {
        Err(RequestError::Hub(e))
    }

    #[test]
    fn events_become_requests() {
        assert_eq!(
            parse("subscribe", json!(["c", {"a": 1}])),
            Ok(Request::Subscribe {
                channel: channel("c"),
                options: json!({"a": 1})
            })
        );
        assert_eq!(
            parse("unsubscribe", json!(["c"])),
            Ok(Request::Unsubscribe {
                channel: channel("c"),
                options: Value::Null
            })
        );
        assert_eq!(
            parse("publish", json!(["c", [1, 2], "extra"])),
            Ok(Request::Publish(Publication::Message {
                channel: channel("c"),
                data: json!([1, 2])
            }))
        );
        assert_eq!(
            parse("publish", json!(["c"])),
            Ok(Request::Publish(Publication::Message {
                channel: channel("c"),
                data: Value::Null
            }))
        );
        assert_eq!(
            parse("command", json!(["c", "poke", {"x": 1}])),
            Ok(Request::Publish(Publication::Command {
                channel: channel("c"),
                name: CommandName::new("poke").unwrap(),
                options: json!({"x": 1})
            }))
        );
    }

    #[test]
    fn malformed_events_are_refused_with_the_reason() {
        for args in [
            json!([]),
            json!([5]),
            json!([null]),
            json!([""]),
            json!([["c"]]),
        ] {
            for name in ["subscribe", "unsubscribe", "publish", "command"] {
                assert_eq!(
                    parse(name, args.clone()),
                    hub_err(HubError::ChannelNotString),
                    "{name} {args}"
                );
            }
        }
        assert_eq!(
            parse("publish", json!(["12345678901", 1])),
            hub_err(HubError::ChannelTooLong(10))
        );
        assert_eq!(
            parse("subscribe", json!(["a\u{1}b"])),
            hub_err(HubError::ChannelControlChars)
        );
        for name in [json!(null), json!(""), json!(5), json!({"n": "x"})] {
            assert_eq!(
                parse("command", json!(["c", name])),
                hub_err(HubError::CommandNotString),
                "{name}"
            );
        }
        assert_eq!(
            parse("command", json!(["c"])),
            hub_err(HubError::CommandNotString)
        );
        for name in super::super::RESERVED_COMMANDS {
            assert_eq!(
                parse("command", json!(["c", name])),
                hub_err(HubError::ReservedCommand(name.into()))
            );
        }
        let unknown = parse("dance", json!(["c"])).unwrap_err();
        assert_eq!(unknown, RequestError::UnknownEvent("dance".into()));
        assert_eq!(unknown.to_string(), "unknown event \"dance\"");
        assert_eq!(
            parse("message", json!([])).unwrap_err().to_string(),
            "Malformed message"
        );
    }

    #[test]
    fn the_first_string_argument_is_the_hint() {
        let config = HubConfig::default();
        let hint = |name: &str, args: Value| {
            let Value::Array(args) = args else {
                panic!("args must be an array")
            };
            parse_event(name, args, false, &config).channel_hint
        };
        assert_eq!(hint("publish", json!(["c", 1])), Some("c".into()));
        assert_eq!(hint("publish", json!(["", 1])), Some("".into()));
        assert_eq!(hint("dance", json!([5])), None);
        assert_eq!(
            hint("message", json!(["{\"type\":\"message\"}"])),
            Some("{\"type\":\"message\"}".into())
        );
    }
}
