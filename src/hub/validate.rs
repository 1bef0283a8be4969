//! The names a request carries, checked once at the edge: channel names, identities and
//! command names become newtypes that only a successful check makes, and [`HubError`] says
//! why one was refused.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde_json::Value;

use super::{Hub, HubConfig};

/// Names a client may not use for a custom command.
pub const RESERVED_COMMANDS: [&str; 5] = [
    "init",
    "subscribe",
    "unsubscribe",
    "onSubscribe",
    "onUnsubscribe",
];

/// Why a hub request was refused; the text goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("channel must be a non-empty string")]
    ChannelNotString,
    #[error("channel name longer than {0} bytes")]
    ChannelTooLong(usize),
    #[error("channel name contains control characters")]
    ChannelControlChars,
    #[error("too many channels (at most {0})")]
    TooManyChannels(usize),
    #[error("not subscribed to {0:?}")]
    NotSubscribed(String),
    #[error("command name must be a non-empty string")]
    CommandNotString,
    #[error("command name {0:?} is reserved")]
    ReservedCommand(String),
    #[error("identity must be a string")]
    IdentityNotString,
    #[error("identity longer than {0} bytes")]
    IdentityTooLong(usize),
    #[error("identity contains control characters")]
    IdentityControlChars,
    #[error("connection is closed")]
    Closed,
    #[error("channel {0:?} not allowed by the token")]
    NotAllowed(String),
    #[error("history takes one object: {{channel, since?, limit?}}")]
    HistoryNotObject,
    #[error("channel history is off on this server ([Messaging] history-size = 0)")]
    HistoryOff,
    #[error("since must be an offset: a string of digits or a whole number")]
    BadSince,
    #[error("limit must be a whole number from 1 to {0}")]
    BadLimit(usize),
}

/// A channel name that passed [`ChannelName::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelName(String);

impl ChannelName {
    /// Non-empty, at most `config.max_channel_name` bytes, no control characters.
    pub fn new(name: &str, config: &HubConfig) -> Result<ChannelName, HubError> {
        if name.is_empty() {
            return Err(HubError::ChannelNotString);
        }
        if name.len() > config.max_channel_name {
            return Err(HubError::ChannelTooLong(config.max_channel_name));
        }
        if name.chars().any(char::is_control) {
            return Err(HubError::ChannelControlChars);
        }
        Ok(ChannelName(name.to_owned()))
    }

    /// A channel name in JSON: a string that passes [`ChannelName::new`].
    pub fn from_json(v: &Value, config: &HubConfig) -> Result<ChannelName, HubError> {
        match v {
            Value::String(s) => ChannelName::new(s, config),
            _ => Err(HubError::ChannelNotString),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An identity that passed [`Identity::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(Arc<str>);

impl Identity {
    /// At most `config.max_identity` bytes, no control characters; the empty string is no
    /// identity at all (an anonymous connection), so it gives `None`.
    pub fn new(identity: &str, config: &HubConfig) -> Result<Option<Identity>, HubError> {
        if identity.is_empty() {
            return Ok(None);
        }
        if identity.len() > config.max_identity {
            return Err(HubError::IdentityTooLong(config.max_identity));
        }
        if identity.chars().any(char::is_control) {
            return Err(HubError::IdentityControlChars);
        }
        Ok(Some(Identity(Arc::from(identity))))
    }

    /// An identity in JSON: absent, `null` and `""` are anonymous (`None`).
    pub fn from_json(v: Option<&Value>, config: &HubConfig) -> Result<Option<Identity>, HubError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Identity::new(s, config),
            Some(_) => Err(HubError::IdentityNotString),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string the hub keeps for members and envelopes.
    pub fn into_arc(self) -> Arc<str> {
        self.0
    }
}

/// The name of a custom command: non-empty and not one the protocol uses itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandName(String);

impl CommandName {
    pub fn new(name: &str) -> Result<CommandName, HubError> {
        if name.is_empty() {
            return Err(HubError::CommandNotString);
        }
        if RESERVED_COMMANDS.contains(&name) {
            return Err(HubError::ReservedCommand(name.to_owned()));
        }
        Ok(CommandName(name.to_owned()))
    }

    /// A command name in JSON: a string that passes [`CommandName::new`].
    pub fn from_json(v: &Value) -> Result<CommandName, HubError> {
        match v {
            Value::String(s) => CommandName::new(s),
            _ => Err(HubError::CommandNotString),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! str_newtype {
    ($($t:ty),*) => {$(
        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

str_newtype!(ChannelName, Identity, CommandName);

impl Hub {
    /// Checks a channel name against this hub's limits.
    pub fn validate_channel(&self, name: &str) -> Result<ChannelName, HubError> {
        ChannelName::new(name, &self.config)
    }

    /// Checks an identity against this hub's limits: `""` is anonymous (`None`).
    pub fn validate_identity(&self, identity: &str) -> Result<Option<Identity>, HubError> {
        Identity::new(identity, &self.config)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> HubConfig {
        HubConfig {
            max_channel_name: 8,
            max_identity: 5,
            ..HubConfig::default()
        }
    }

    #[test]
    fn channel_names() {
        let c = config();
        assert_eq!(ChannelName::new("room/1", &c).unwrap().as_str(), "room/1");
        assert_eq!(ChannelName::new("12345678", &c).unwrap().len(), 8);
        assert_eq!(ChannelName::new("", &c), Err(HubError::ChannelNotString));
        assert_eq!(
            ChannelName::new("123456789", &c),
            Err(HubError::ChannelTooLong(8))
        );
        // Bytes, not characters: four two-byte characters fit, five do not.
        assert!(ChannelName::new("éééé", &c).is_ok());
        assert_eq!(
            ChannelName::new("ééééé", &c),
            Err(HubError::ChannelTooLong(8))
        );
        for bad in ["a\nb", "\0", "tab\t", "\u{7f}", "\u{85}"] {
            assert_eq!(
                ChannelName::new(bad, &c),
                Err(HubError::ChannelControlChars),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn identities() {
        let c = config();
        assert_eq!(Identity::new("", &c), Ok(None));
        assert_eq!(Identity::new("ann", &c).unwrap().unwrap().as_str(), "ann");
        assert_eq!(
            Identity::new("annabel", &c),
            Err(HubError::IdentityTooLong(5))
        );
        assert_eq!(
            Identity::new("a\rb", &c),
            Err(HubError::IdentityControlChars)
        );
        let id = Identity::new("bea", &c).unwrap().unwrap();
        assert_eq!(&*id.into_arc(), "bea");
    }

    #[test]
    fn command_names() {
        assert_eq!(CommandName::new("dance").unwrap().as_str(), "dance");
        assert_eq!(CommandName::new(""), Err(HubError::CommandNotString));
        for name in RESERVED_COMMANDS {
            assert_eq!(
                CommandName::new(name),
                Err(HubError::ReservedCommand(name.to_owned()))
            );
        }
        // Reserved names are exact: another case is a custom command.
        assert!(CommandName::new("Subscribe").is_ok());
        assert_eq!(
            HubError::ReservedCommand("init".into()).to_string(),
            "command name \"init\" is reserved"
        );
    }

    #[test]
    fn from_json() {
        let c = config();
        assert_eq!(Identity::from_json(None, &c), Ok(None));
        assert_eq!(Identity::from_json(Some(&json!(null)), &c), Ok(None));
        assert_eq!(Identity::from_json(Some(&json!("")), &c), Ok(None));
        assert_eq!(
            Identity::from_json(Some(&json!("ann")), &c),
            Identity::new("ann", &c)
        );
        for bad in [json!(5), json!(true), json!(["ann"]), json!({})] {
            assert_eq!(
                Identity::from_json(Some(&bad), &c),
                Err(HubError::IdentityNotString)
            );
            assert_eq!(
                ChannelName::from_json(&bad, &c),
                Err(HubError::ChannelNotString)
            );
            assert_eq!(
                CommandName::from_json(&bad),
                Err(HubError::CommandNotString)
            );
        }
        assert_eq!(
            Identity::from_json(Some(&json!("annabel")), &c),
            Err(HubError::IdentityTooLong(5))
        );
        assert_eq!(
            ChannelName::from_json(&json!("c"), &c),
            ChannelName::new("c", &c)
        );
        assert_eq!(
            CommandName::from_json(&json!("init")),
            Err(HubError::ReservedCommand("init".into()))
        );
    }
}
