//! One channel: the slots it delivers to (a flat list, for the hot path) and the members
//! they belong to (for counts and presence).

use std::collections::HashMap;
use std::sync::Arc;

use super::member::{Delivery, Member, Slot};
use crate::engineio::Outgoing;

#[derive(Default)]
pub(crate) struct Channel {
    /// Every session of every member: a publish walks this and nothing else.
    slots: Vec<Arc<Slot>>,
    /// Slot id → position in `slots`, so removal is O(1).
    index: HashMap<u64, usize>,
    /// Member key → member.
    pub(crate) members: HashMap<Arc<str>, Arc<Member>>,
}

/// What a delivery to a channel did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fanout {
    pub(crate) queued: u64,
    pub(crate) kept: u64,
    pub(crate) dropped: u64,
    /// Kept items dropped from a full grace-window cache to make room.
    pub(crate) evicted: u64,
}

impl Fanout {
    pub(crate) fn add(&mut self, d: Delivery) {
        match d {
            Delivery::Queued => self.queued += 1,
            Delivery::Kept => self.kept += 1,
            Delivery::KeptEvicting => {
                self.kept += 1;
                self.evicted += 1;
            }
            Delivery::Dropped => self.dropped += 1,
        }
    }
}

impl Channel {
    pub(crate) fn add_slot(&mut self, slot: &Arc<Slot>) {
        if self.index.contains_key(&slot.id) {
            return;
        }
        self.index.insert(slot.id, self.slots.len());
        self.slots.push(slot.clone());
    }

    pub(crate) fn remove_slot(&mut self, id: u64) {
        let Some(i) = self.index.remove(&id) else {
            return;
        };
        self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.id, i);
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.members.len()
    }

    /// How many sessions a publish reaches.
    pub(crate) fn sessions(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The queues of the sessions that are behind and still catching up.
    pub(crate) fn catching_up(&self) -> Vec<crate::engineio::SessionTx> {
        self.slots.iter().filter_map(|s| s.catching_up()).collect()
    }

    /// Queues one encoded item to every slot.
    pub(crate) fn deliver(&self, item: &Outgoing, limit: usize) -> Fanout {
        let mut f = Fanout::default();
        for slot in &self.slots {
            f.add(slot.deliver(item, limit));
        }
        f
    }

    /// Queues one encoded item to every slot but those of member `except`.
    pub(crate) fn deliver_except(&self, item: &Outgoing, limit: usize, except: &str) -> Fanout {
        let mut f = Fanout::default();
        for slot in self.slots.iter().filter(|s| *s.member.key != *except) {
            f.add(slot.deliver(item, limit));
        }
        f
    }
}
