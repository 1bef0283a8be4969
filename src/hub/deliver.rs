//! Delivery: a publish to a channel's sessions, a message to one identity's sessions, and
//! the counters a fan-out adds to.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::channel::Fanout;
use super::{Envelope, Hub, HubEvent};
use crate::cluster::member_key;

impl Hub {
    /// Delivers an envelope to every session of its channel's members; returns how many
    /// got it queued (sessions away in the grace window keep it instead).
    pub fn publish(&self, envelope: &Envelope, attachments: Vec<Bytes>) -> usize {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let Some(channel) = envelope.channel.as_deref() else {
            return 0;
        };
        let Ok(map) = self.shard(channel).channels.lock() else {
            return 0;
        };
        // Under the channel lock, so the monitor and the other nodes hear a channel's
        // events in their order.
        self.observe(Self::kind_of(envelope), envelope);
        self.bus.publish(envelope, &attachments, None);
        let Some(ch) = map.get(channel) else {
            return 0;
        };
        // The offset is taken under the channel lock, so offsets follow delivery order.
        let item = envelope.encode(self.next_offset(), attachments);
        let f = ch.deliver(&item, self.config.cache_limit);
        drop(map);
        self.count_fanout(f);
        f.queued as usize
    }

    fn kind_of(envelope: &Envelope) -> HubEvent {
        if envelope.kind == "command" {
            HubEvent::Command
        } else {
            HubEvent::Message
        }
    }

    /// Delivers an envelope to every session of one identity; returns how many got it.
    pub fn send_to(&self, identity: &str, envelope: &Envelope, attachments: Vec<Bytes>) -> usize {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        self.observe(Self::kind_of(envelope), envelope);
        self.bus.publish(envelope, &attachments, Some(identity));
        self.deliver_to(identity, envelope, attachments)
    }

    /// Delivers to this node's sessions of one identity.
    pub(super) fn deliver_to(
        &self,
        identity: &str,
        envelope: &Envelope,
        attachments: Vec<Bytes>,
    ) -> usize {
        let key = member_key(Some(identity), "");
        let Some(member) = self
            .registry(&key)
            .lock()
            .ok()
            .and_then(|r| r.get(key.as_str()).cloned())
        else {
            return 0;
        };
        let Ok(st) = member.state.lock() else {
            return 0;
        };
        let item = envelope.encode(self.next_offset(), attachments);
        let mut f = Fanout::default();
        for slot in &st.slots {
            f.add(slot.deliver(&item, self.config.cache_limit));
        }
        drop(st);
        self.count_fanout(f);
        (f.queued + f.kept) as usize
    }

    pub(super) fn count_fanout(&self, f: Fanout) {
        self.counters
            .delivered
            .fetch_add(f.queued, Ordering::Relaxed);
        self.counters.kept.fetch_add(f.kept, Ordering::Relaxed);
        self.counters
            .dropped
            .fetch_add(f.dropped, Ordering::Relaxed);
    }
}
