//! The hub's one outward hook: what happened (membership, connections, publishes), for the
//! monitor's webhooks (docs/design.md#monitor) and whatever else wants to watch.

use super::Envelope;
use crate::cluster::Membership;

/// Something the hub reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubEvent {
    /// A member joined a channel (`onSubscribe`).
    Subscribe,
    /// A member left a channel (`onUnsubscribe`), explicitly or after the grace window.
    Unsubscribe,
    /// A member's first connection arrived (`onConnect`).
    Connect,
    /// A member's last connection is gone for good, after the grace window (`onDisconnect`).
    Disconnect,
    /// A message was published to a channel (or sent to one identity).
    Message,
    /// A custom command was sent to a channel.
    Command,
}

impl HubEvent {
    pub const ALL: [HubEvent; 6] = [
        HubEvent::Subscribe,
        HubEvent::Unsubscribe,
        HubEvent::Connect,
        HubEvent::Disconnect,
        HubEvent::Message,
        HubEvent::Command,
    ];

    /// The name used in `[Monitor] events`.
    pub fn name(self) -> &'static str {
        match self {
            HubEvent::Subscribe => "subscribe",
            HubEvent::Unsubscribe => "unsubscribe",
            HubEvent::Connect => "connect",
            HubEvent::Disconnect => "disconnect",
            HubEvent::Message => "message",
            HubEvent::Command => "command",
        }
    }
}

/// Hears what the hub does. Called on the hub's hot paths with its locks held, which is
/// what keeps events of one channel in order: implementations must only queue (never
/// block, never wait, never call back into the hub).
pub trait Observer: Send + Sync + 'static {
    /// Whether `event` is wanted at all, so unwanted envelopes are never built.
    fn wants(&self, event: HubEvent) -> bool;
    fn observe(&self, event: HubEvent, envelope: &Envelope);
}

impl From<Membership> for HubEvent {
    fn from(change: Membership) -> HubEvent {
        match change {
            Membership::Subscribe => HubEvent::Subscribe,
            Membership::Unsubscribe => HubEvent::Unsubscribe,
            Membership::Connect => HubEvent::Connect,
            Membership::Disconnect => HubEvent::Disconnect,
        }
    }
}
