//! Session lifecycle: a connection attaches to its member (resuming a claimed session or
//! taking one over within the grace window), detaches, and its slot expires or is dropped,
//! which takes a member with no session left out of every channel.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use serde_json::Value;
use tracing::debug;

use super::member::{Claim, Detach, Member, MemberState, Slot};
use super::{Conn, Envelope, Hub, HubEvent};
use crate::cluster::{Membership, member_key};
use crate::engineio::{Outgoing, Sid};
use crate::socketio::SioSocket;

impl Hub {
    /// Claims the session `pid` for a recovering connection of `identity`, when an exact
    /// replay after `offset` is possible: a detached one, or one still open, whose
    /// transport is then closed.
    pub(crate) fn claim(
        &self,
        pid: &str,
        offset: Option<u64>,
        identity: Option<&str>,
    ) -> Option<Claim> {
        let slot = self.recovery.lock().ok()?.get(&Sid::from(pid)).cloned()?;
        if slot.member.identity.as_deref() != identity {
            return None;
        }
        // For the log only: whether its old connection was still open.
        let open = slot.is_live();
        let claim = slot.claim(pid, offset)?;
        if let Ok(mut map) = self.recovery.lock() {
            map.remove(&Sid::from(pid));
        }
        if open {
            debug!(sid = %claim.sid, "an open session taken over by its reconnecting client");
        }
        Some(claim)
    }

    /// A connection joins: it resumes a claimed session, takes over its identity's session
    /// from the grace window (getting what was kept for it), or joins its member afresh.
    pub(crate) fn attach(
        &self,
        socket: &Arc<SioSocket>,
        identity: Option<Arc<str>>,
        claim: Option<Claim>,
    ) -> Conn {
        self.attach_as(socket, identity, claim, true)
    }

    /// [`Hub::attach`]; without `take_over`, a session of the identity waiting in the
    /// grace window is left to its own client (a connection resuming another node's
    /// session gets what it missed from the cluster, not from that one).
    pub(crate) fn attach_as(
        &self,
        socket: &Arc<SioSocket>,
        identity: Option<Arc<str>>,
        claim: Option<Claim>,
        take_over: bool,
    ) -> Conn {
        if let Some(id) = &identity {
            socket.engine().record_identity(id);
        }
        if let Some(claim) = claim
            && claim.slot.attach(socket, true, self.config.cache_limit)
        {
            self.counters.recovered.fetch_add(1, Ordering::Relaxed);
            debug!(sid = %socket.sid, "connection state recovered");
            self.index_pid(&claim.slot, socket);
            return Conn {
                member: claim.slot.member.clone(),
                slot: claim.slot,
            };
        }
        let key = member_key(identity.as_deref(), socket.sid.as_str());
        loop {
            let member = {
                // Nothing panics while holding these locks; if something ever did, the
                // maps are still consistent enough to go on with.
                let mut reg = self
                    .registry(&key)
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                reg.entry(Arc::from(key.as_str()))
                    .or_insert_with(|| Arc::new(Member::new(identity.clone(), &socket.sid)))
                    .clone()
            };
            let mut st = member.state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.gone {
                // It left between the lookup and the lock; a fresh member will be made.
                drop(st);
                self.unregister(&member);
                continue;
            }
            // A member with no session at all was just made: its first connection.
            let first = st.slots.is_empty();
            let slot = self.join_member(&member, &mut st, socket, take_over);
            self.index_pid(&slot, socket);
            if first && self.presence.online(&member.key, true) {
                self.observe_with(HubEvent::Connect, || {
                    Envelope::presence(member.identity.clone(), Membership::Connect)
                });
            }
            drop(st);
            return Conn { member, slot };
        }
    }

    /// Makes a live session findable by its pid, so that a client back from a connection
    /// the server still holds open can take it over.
    fn index_pid(&self, slot: &Arc<Slot>, socket: &SioSocket) {
        if let (Some(pid), Ok(mut map)) = (socket.pid.clone(), self.recovery.lock()) {
            // Other nodes may have to resume it.
            self.bus.session(pid.as_str(), &slot.member.key, true);
            map.insert(pid, slot.clone());
        }
    }

    /// Forgets `pid` if it still leads to `slot`.
    fn unindex_pid(&self, pid: Option<Sid>, slot: &Arc<Slot>) {
        if let (Some(pid), Ok(mut map)) = (pid, self.recovery.lock())
            && map.get(&pid).is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            map.remove(&pid);
            self.bus.session(pid.as_str(), &slot.member.key, false);
        }
    }

    /// Adds a connection to its member (member lock held).
    fn join_member(
        &self,
        member: &Arc<Member>,
        st: &mut MemberState,
        socket: &Arc<SioSocket>,
        take_over: bool,
    ) -> Arc<Slot> {
        let waiting = take_over && !st.slots.iter().any(|s| s.is_live());
        let newest = st
            .slots
            .iter()
            .filter_map(|s| s.detached_epoch().map(|e| (e, s.clone())))
            .max_by_key(|(e, _)| *e)
            .map(|(_, s)| s);
        if let (true, Some(slot)) = (waiting, newest) {
            // The identity came back within the window (a reload, a new tab): it takes over
            // the latest session with what was kept for it; no membership churn.
            let pid = slot.pid();
            if slot.attach(socket, false, self.config.cache_limit) {
                if let (Some(pid), Ok(mut map)) = (pid, self.recovery.lock()) {
                    map.remove(&pid);
                }
                let stale: Vec<Arc<Slot>> = st
                    .slots
                    .iter()
                    .filter(|s| !Arc::ptr_eq(s, &slot) && s.detached_epoch().is_some())
                    .cloned()
                    .collect();
                for s in stale {
                    self.drop_slot(st, &s);
                }
                debug!(sid = %socket.sid, member = %member.key, "session taken over within the grace window");
                return slot;
            }
        }
        let slot = Arc::new(Slot::live(member.clone(), socket.clone()));
        st.slots.push(slot.clone());
        for ch in &st.channels {
            if let Ok(mut map) = self.shard(ch).channels.lock()
                && let Some(c) = map.get_mut(ch)
            {
                c.add_slot(&slot);
            }
        }
        slot
    }

    /// A connection ended. When `recoverable`, its session waits out the grace window
    /// (keeping what arrives); else it is gone at once.
    /// `backlog` is what the session had queued, and how many of those it had taken.
    pub(crate) fn detach(
        self: &Arc<Self>,
        conn: &Conn,
        socket: &Arc<SioSocket>,
        backlog: (VecDeque<Outgoing>, usize),
        recoverable: bool,
    ) {
        let grace = recoverable && !self.config.grace.is_zero();
        match conn.slot.detach(socket, backlog, grace) {
            Detach::Waiting(epoch) => {
                if let (Some(pid), Ok(mut map)) = (conn.slot.pid(), self.recovery.lock()) {
                    map.insert(pid, conn.slot.clone());
                }
                let hub = self.clone();
                let slot = conn.slot.clone();
                let wait = self.config.grace;
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    hub.expire(&slot, epoch);
                });
            }
            Detach::Ended => {
                // The slot is gone already: only the connection still knows its pid.
                self.unindex_pid(socket.pid.clone(), &conn.slot);
                self.remove_slot(&conn.slot);
            }
            Detach::TakenOver => {}
        }
    }

    /// The grace window of a detached session is over.
    pub(super) fn expire(&self, slot: &Arc<Slot>, epoch: u64) {
        let member = slot.member.clone();
        let Ok(mut st) = member.state.lock() else {
            return;
        };
        let pid = slot.pid();
        if slot.expire(epoch) {
            self.unindex_pid(pid, slot);
            debug!(member = %member.key, "grace window over");
            self.drop_slot(&mut st, slot);
            let gone = st.gone;
            drop(st);
            if gone {
                self.unregister(&member);
            }
        }
    }

    pub(super) fn remove_slot(&self, slot: &Arc<Slot>) {
        let member = slot.member.clone();
        let Ok(mut st) = member.state.lock() else {
            return;
        };
        self.drop_slot(&mut st, slot);
        let gone = st.gone;
        drop(st);
        if gone {
            self.unregister(&member);
        }
    }

    /// Removes a slot from its member and channels (member lock held). The member's last
    /// slot takes the member out of every channel, with `onUnsubscribe`.
    fn drop_slot(&self, st: &mut MemberState, slot: &Arc<Slot>) {
        self.unindex_pid(slot.pid(), slot);
        slot.end();
        st.slots.retain(|s| !Arc::ptr_eq(s, slot));
        for ch in &st.channels {
            if let Ok(mut map) = self.shard(ch).channels.lock()
                && let Some(c) = map.get_mut(ch)
            {
                c.remove_slot(slot.id);
            }
        }
        if st.slots.is_empty() {
            let member = slot.member.clone();
            for ch in std::mem::take(&mut st.channels) {
                self.leave(&member, &ch, Value::Null, &[], false);
            }
            st.gone = true;
            if self.presence.online(&member.key, false) {
                self.observe_with(HubEvent::Disconnect, || {
                    Envelope::presence(member.identity.clone(), Membership::Disconnect)
                });
            }
        }
    }

    fn unregister(&self, member: &Arc<Member>) {
        if let Ok(mut reg) = self.registry(&member.key).lock()
            && reg.get(&member.key).is_some_and(|m| Arc::ptr_eq(m, member))
        {
            reg.remove(&member.key);
        }
    }
}
