//! The hub as the cluster sees it ([`Inbound`]): broadcasts from other nodes, membership
//! changes the cluster decided, and this node's presence for a resynchronisation.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::channel::Fanout;
use super::{Envelope, Hub, HubEvent, Member};
use crate::cluster::{Inbound, Membership, Snapshot, identity_of};

impl Inbound for Hub {
    fn deliver(
        &self,
        envelope: &Envelope,
        attachments: Vec<Bytes>,
        to: Option<&str>,
        offset: Option<u64>,
    ) {
        if let Some(identity) = to {
            self.deliver_to(identity, envelope, attachments, offset);
            return;
        }
        let Some(channel) = envelope.channel.as_deref() else {
            return;
        };
        let Ok(map) = self.shard(channel).channels.lock() else {
            return;
        };
        let Some(ch) = map.get(channel) else {
            return;
        };
        // Kept with the offset its members see: the bus's on a sequenced bus (none when
        // the bus could not number it), else this node's.
        let (offset, seen) = match offset {
            Some(o) => self.bus_offset(o),
            None if self.sequenced => (0, 0),
            None => self.broadcast_offset(),
        };
        self.keep(channel, offset, envelope, !attachments.is_empty());
        let item = envelope.encode(seen, attachments);
        let f = ch.deliver(&item, self.config.cache_limit);
        drop(map);
        self.count_fanout(f);
    }

    fn announce(
        &self,
        change: Membership,
        envelope: &Envelope,
        leaving: Option<&str>,
        observe: bool,
    ) {
        let Some(channel) = envelope.channel.as_deref() else {
            return;
        };
        let item = envelope.encode(self.next_offset(), Vec::new()).lazy();
        let tell = self.config.notices.tell(channel, cluster_count(envelope));
        let mut f = Fanout::default();
        let mut in_channel = false;
        if let Ok(map) = self.shard(channel).channels.lock() {
            if observe {
                self.observe(HubEvent::from(change), envelope);
            }
            if let Some(ch) = map.get(channel)
                && tell
            {
                f = ch.deliver(&item, self.config.cache_limit);
                in_channel = leaving.is_some_and(|k| ch.members.contains_key(k));
            }
        }
        if let Some(key) = leaving
            && tell
            && !in_channel
            && let Some(member) = self.member(key)
            && let Ok(st) = member.state.lock()
        {
            for slot in &st.slots {
                f.add(slot.deliver(&item, self.config.cache_limit));
            }
        }
        self.count_fanout(f);
    }

    fn announce_heard(&self, envelope: &Envelope, except: Option<&str>) {
        let Some(channel) = envelope.channel.as_deref() else {
            return;
        };
        if !self.config.notices.tell(channel, cluster_count(envelope)) {
            return;
        }
        let item = envelope.encode(self.next_offset(), Vec::new()).lazy();
        let Ok(map) = self.shard(channel).channels.lock() else {
            return;
        };
        let Some(ch) = map.get(channel) else {
            return;
        };
        let f = match except {
            Some(key) => ch.deliver_except(&item, self.config.cache_limit, key),
            None => ch.deliver(&item, self.config.cache_limit),
        };
        drop(map);
        self.count_fanout(f);
    }

    fn announce_to(&self, key: &str, envelope: &Envelope) {
        let Some(channel) = envelope.channel.as_deref() else {
            return;
        };
        if !self.config.notices.tell(channel, cluster_count(envelope)) {
            return;
        }
        let Some(member) = self.member(key) else {
            return;
        };
        let item = envelope.encode(self.next_offset(), Vec::new()).lazy();
        let mut f = Fanout::default();
        if let Ok(st) = member.state.lock()
            && st.channels.contains(channel)
        {
            for slot in &st.slots {
                f.add(slot.deliver(&item, self.config.cache_limit));
            }
        }
        self.count_fanout(f);
    }

    fn observe_only(&self, change: Membership, envelope: &Envelope) {
        self.observe(HubEvent::from(change), envelope);
    }

    fn announce_presence(&self, member: &str, connected: bool) {
        let identity = identity_of(member).map(Arc::from);
        let change = if connected {
            Membership::Connect
        } else {
            Membership::Disconnect
        };
        self.observe_with(HubEvent::from(change), || {
            Envelope::presence(identity, change)
        });
    }

    /// Subscriptions belong to the member, so its sessions here follow it.
    fn adopt(&self, key: &str, channel: &str) {
        let Some(member) = self.member(key) else {
            return;
        };
        let Ok(mut st) = member.state.lock() else {
            return;
        };
        if st.gone || st.channels.contains(channel) || st.channels.len() >= self.config.max_channels
        {
            return;
        }
        st.channels.insert(channel.to_owned());
        let Ok(mut map) = self.shard(channel).channels.lock() else {
            return;
        };
        let ch = self.channel_entry(&mut map, channel);
        for slot in &st.slots {
            ch.add_slot(slot);
        }
        ch.members.insert(member.key.clone(), member.clone());
        // This node's share of the membership; the cluster already counts the member.
        let _ = self.presence.join(channel, key, &Value::Null);
    }

    fn drop_remote(&self, key: &str, channel: &str) {
        let Some(member) = self.member(key) else {
            return;
        };
        let Ok(mut st) = member.state.lock() else {
            return;
        };
        if !st.channels.remove(channel) {
            return;
        }
        let slots = st.slots.clone();
        let _ = self.leave(&member, channel, Value::Null, &slots, false);
    }

    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();
        for reg in self.members.iter() {
            let Ok(r) = reg.lock() else { continue };
            let members: Vec<Arc<Member>> = r.values().cloned().collect();
            drop(r);
            for m in members {
                let Ok(st) = m.state.lock() else { continue };
                if st.gone {
                    continue;
                }
                snap.members.push(m.key.to_string());
                snap.subscriptions
                    .extend(st.channels.iter().map(|c| (c.clone(), m.key.to_string())));
            }
        }
        snap
    }

    fn local_count(&self, channel: &str) -> usize {
        self.count(channel)
    }

    fn accepts_channel(&self, channel: &str) -> bool {
        self.validate_channel(channel).is_ok()
    }
}

impl Hub {
    fn member(&self, key: &str) -> Option<Arc<Member>> {
        self.registry(key).lock().ok()?.get(key).cloned()
    }
}

/// The member count a membership event carries: the cluster's, which is what the notices
/// rule counts on every node alike (this node may hold few of the members).
fn cluster_count(envelope: &Envelope) -> usize {
    envelope
        .data
        .get("count")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}
