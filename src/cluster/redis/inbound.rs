//! What the worker hears from Redis: broadcasts (with their log offsets) delivered here;
//! control messages go to `control.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::warn;

use super::{Worker, log};
use crate::cluster::{Inbound, wire};

impl Worker {
    /// A broadcast from Redis: delivered here unless this node sent it.
    pub(super) fn inbound(&mut self, hub: &Arc<dyn Inbound>, msg: &redis::Msg) {
        let topic = msg.get_channel_name();
        if topic == self.keys.control() {
            self.inbound_control(hub, msg.get_payload_bytes());
            return;
        }
        // A broadcast comes back through the log with its offset, to its origin too; a
        // membership event comes straight, and its origin announced it already.
        let (offset, raw) = match log::split(msg.get_payload_bytes()) {
            Some((id, raw)) => (Some(log::offset_of(id).unwrap_or(0)), raw),
            None => (None, msg.get_payload_bytes()),
        };
        // Delivered already, by the catch-up after a hand-over.
        if offset.is_some_and(|o| o != 0 && o <= self.caught_up) {
            return;
        }
        let m = match wire::decode(raw) {
            Ok(m) => m,
            Err(e) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(redis_channel = %topic, error = %e, "dropped a malformed message from the bus");
                return;
            }
        };
        if offset.is_none() && *m.origin == *self.node {
            return;
        }
        // A broadcast must be for the channel it came on (or a direct one on `direct`).
        let fits = match (&m.to, m.envelope.channel.as_deref()) {
            (Some(_), _) => topic == self.keys.direct(),
            (None, Some(channel)) => topic == self.keys.topic(channel),
            (None, None) => false,
        };
        if !fits {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(redis_channel = %topic, "dropped a bus message addressed elsewhere");
            return;
        }
        if *m.origin != *self.node {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        if offset.is_none() {
            self.heard_membership(&m.envelope);
            hub.announce_heard(&m.envelope, m.except.as_deref());
            return;
        }
        hub.deliver(&m.envelope, m.attachments, m.to.as_deref(), offset);
    }
}
