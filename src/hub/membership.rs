//! Membership: subscribe, unsubscribe and leave, with the `onSubscribe`/`onUnsubscribe`
//! events and member counts they produce, settled here or by the cluster.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::channel::Channel;
use super::member::{Member, Slot};
use super::{Conn, Count, Envelope, Hub, HubError, HubEvent};
use crate::cluster::{Membership, Settle};

impl Hub {
    /// Subscribes the connection's member; returns the member count after it. A member's
    /// first subscription tells every member with `onSubscribe`.
    pub(crate) fn subscribe(
        &self,
        conn: &Conn,
        channel: &str,
        options: Value,
    ) -> Result<Count, HubError> {
        let member = &conn.member;
        let mut st = member.state.lock().map_err(|_| HubError::Closed)?;
        if st.gone {
            return Err(HubError::Closed);
        }
        if st.channels.contains(channel) {
            // Asked again: the cluster's count, with no event (the member is already in).
            let count = self.count(channel);
            return Ok(match self.presence.join(channel, &member.key, &options) {
                Settle::Here => Count::Now(count),
                Settle::Later(rx) => Count::Later(rx, count),
            });
        }
        if st.channels.len() >= self.config.max_channels {
            return Err(HubError::TooManyChannels(self.config.max_channels));
        }
        st.channels.insert(channel.to_owned());
        let mut map = self
            .shard(channel)
            .channels
            .lock()
            .map_err(|_| HubError::Closed)?;
        let ch = self.channel_entry(&mut map, channel);
        for slot in &st.slots {
            ch.add_slot(slot);
        }
        ch.members.insert(member.key.clone(), member.clone());
        let count = ch.count();
        if let Settle::Later(rx) = self.presence.join(channel, &member.key, &options) {
            return Ok(Count::Later(rx, count));
        }
        self.announce_here(ch, channel, member, Membership::Subscribe, options, &[]);
        Ok(Count::Now(count))
    }

    /// The channel, made (and watched on the bus) if this node had no member in it.
    pub(super) fn channel_entry<'m>(
        &self,
        map: &'m mut HashMap<String, Channel>,
        channel: &str,
    ) -> &'m mut Channel {
        match map.entry(channel.to_owned()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.bus.watch(channel, true);
                e.insert(Channel::default())
            }
        }
    }

    /// Unsubscribes the connection's member (all its tabs); returns the member count after it.
    pub(crate) fn unsubscribe(
        &self,
        conn: &Conn,
        channel: &str,
        options: Value,
    ) -> Result<Count, HubError> {
        let member = &conn.member;
        let mut st = member.state.lock().map_err(|_| HubError::Closed)?;
        if !st.channels.remove(channel) {
            return Err(HubError::NotSubscribed(channel.to_owned()));
        }
        // The leaving member's own tabs hear it too, so they know they left.
        let slots = st.slots.clone();
        Ok(self.leave(member, channel, options, &slots, true))
    }

    /// Takes a member out of a channel (member lock held) and tells the remaining members
    /// and `also` (the member's own slots, still live, which leave the channel too);
    /// returns the count after it. `explicit`: an unsubscribe, not the member's end.
    pub(super) fn leave(
        &self,
        member: &Arc<Member>,
        channel: &str,
        options: Value,
        also: &[Arc<Slot>],
        explicit: bool,
    ) -> Count {
        let Ok(mut map) = self.shard(channel).channels.lock() else {
            return Count::Now(0);
        };
        let Some(ch) = map.get_mut(channel) else {
            return Count::Now(0);
        };
        for s in also {
            ch.remove_slot(s.id);
        }
        ch.members.remove(&member.key);
        let count = ch.count();
        if let Settle::Later(rx) = self
            .presence
            .leave(channel, &member.key, &options, explicit)
        {
            if ch.is_empty() {
                map.remove(channel);
                self.bus.watch(channel, false);
            }
            return Count::Later(rx, count);
        }
        self.announce_here(ch, channel, member, Membership::Unsubscribe, options, also);
        if ch.is_empty() {
            map.remove(channel);
            self.bus.watch(channel, false);
        }
        Count::Now(count)
    }

    /// Members of a channel now.
    pub fn count(&self, channel: &str) -> usize {
        self.shard(channel)
            .channels
            .lock()
            .ok()
            .and_then(|m| m.get(channel).map(Channel::count))
            .unwrap_or(0)
    }

    /// A membership change this node settled itself (channel lock held): told to the
    /// observer, then to the channel's sessions and to `also` (slots no longer in it).
    fn announce_here(
        &self,
        ch: &Channel,
        channel: &str,
        member: &Member,
        change: Membership,
        options: Value,
        also: &[Arc<Slot>],
    ) {
        let count = ch.count();
        let event = Envelope::membership(channel, member.identity.clone(), change, options, count);
        self.observe(HubEvent::from(change), &event);
        if !self.config.notices.tell(channel, count) {
            return;
        }
        let item = event.encode(self.next_offset(), Vec::new()).lazy();
        let mut f = ch.deliver(&item, self.config.cache_limit);
        for s in also {
            f.add(s.deliver(&item, self.config.cache_limit));
        }
        self.count_fanout(f);
    }
}
