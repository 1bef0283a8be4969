//! Delivery: a publish to a channel's sessions, a message to one identity's sessions, and
//! the counters a fan-out adds to.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::channel::Fanout;
use super::{Envelope, Hub, HubEvent, Publication};
use crate::cluster::member_key;
use crate::engineio::SessionTx;
use crate::engineio::queue::{any_behind, wait_caught_up};

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
        let ch = map.get(channel);
        if self.sequenced {
            // Delivered (and kept) here when the bus hands it back, numbered, like on
            // every node.
            return ch.map_or(0, |ch| ch.sessions());
        }
        // The offset is taken under the channel lock, so offsets follow delivery order;
        // a broadcast is kept even when no member of this node hears it.
        if ch.is_none() && !self.keeps_history() {
            return 0;
        }
        let (offset, seen) = self.broadcast_offset();
        self.keep(channel, offset, envelope, !attachments.is_empty());
        let Some(ch) = ch else {
            return 0;
        };
        let item = envelope.encode(seen, attachments);
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
        if self.sequenced {
            return 0;
        }
        self.deliver_to(identity, envelope, attachments, None)
    }

    /// Delivers to this node's sessions of one identity (`offset`: the bus's number).
    pub(super) fn deliver_to(
        &self,
        identity: &str,
        envelope: &Envelope,
        attachments: Vec<Bytes>,
        offset: Option<u64>,
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
        let seen = match offset {
            Some(o) => self.bus_offset(o).1,
            None => self.next_offset(),
        };
        let item = envelope.encode(seen, attachments);
        let mut f = Fanout::default();
        for slot in &st.slots {
            f.add(slot.deliver(&item, self.config.cache_limit));
        }
        drop(st);
        self.count_fanout(f);
        (f.queued + f.kept) as usize
    }

    /// [`Hub::submit`] for the publisher of a batch, which then waits while a recipient
    /// catches up (see [`Hub::pace_channel`]).
    pub async fn submit_paced(&self, publication: Publication, from: Option<Arc<str>>) -> usize {
        let channel = publication.channel().cloned();
        let to = match &publication {
            Publication::Direct { to, .. } => Some(to.clone()),
            _ => None,
        };
        let queued = self.submit(publication, from, Vec::new());
        if let Some(channel) = channel {
            self.pace_channel(channel.as_str()).await;
        } else if let Some(to) = to {
            self.pace_identity(to.as_str()).await;
        }
        queued
    }

    /// Waits while a session of `channel` is behind and still catching up: how a publisher
    /// of a batch is held back instead of pushing readers far past their limit. A session
    /// that stops taking is no longer waited for once the stall time passed (one that
    /// reads too slowly, once the catch-up time passed), and is cut at its next push: a
    /// stalled reader holds a publisher up once, by that long at most.
    pub async fn pace_channel(&self, channel: &str) {
        wait_caught_up(self.catching_up(channel)).await;
    }

    /// The queues of `channel`'s sessions that are behind and still catching up.
    pub(crate) fn catching_up(&self, channel: &str) -> Vec<SessionTx> {
        if !any_behind() {
            return Vec::new();
        }
        match self.shard(channel).channels.lock() {
            Ok(map) => map.get(channel).map(|ch| ch.catching_up()),
            Err(_) => None,
        }
        .unwrap_or_default()
    }

    /// Like [`Hub::pace_channel`], for the sessions of one identity.
    pub async fn pace_identity(&self, identity: &str) {
        if !any_behind() {
            return;
        }
        let key = member_key(Some(identity), "");
        let member = self
            .registry(&key)
            .lock()
            .ok()
            .and_then(|r| r.get(key.as_str()).cloned());
        let behind: Vec<SessionTx> = match member.as_ref().map(|m| m.state.lock()) {
            Some(Ok(st)) => st.slots.iter().filter_map(|s| s.catching_up()).collect(),
            _ => Vec::new(),
        };
        wait_caught_up(behind).await;
    }

    pub(super) fn count_fanout(&self, f: Fanout) {
        self.counters
            .delivered
            .fetch_add(f.queued, Ordering::Relaxed);
        self.counters.kept.fetch_add(f.kept, Ordering::Relaxed);
        self.counters
            .dropped
            .fetch_add(f.dropped, Ordering::Relaxed);
        self.counters
            .cache_evictions
            .fetch_add(f.evicted, Ordering::Relaxed);
    }
}
