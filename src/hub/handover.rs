//! The hub written down for the next process, and made again from what was written: every
//! member with its channels and its sessions waiting in the grace window. Restoring
//! announces nothing: to everyone else the members never left.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Hub;
use super::member::{Member, MemberState, Slot};
use crate::handover::{self, Connection};

/// What a restore took in.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub members: usize,
    pub sessions: usize,
    /// Sessions that could not be taken in (not waiting in a grace window, or no pid).
    pub skipped: usize,
}

impl Hub {
    /// The last offset given to a broadcast.
    pub fn offset(&self) -> u64 {
        self.offsets.load(Ordering::Relaxed)
    }

    /// Every member and its sessions waiting in the grace window, with how many sessions
    /// were not (still connected, or claimed by a recovering connection). Call once every
    /// session is closed, when nothing changes the hub any more.
    pub fn handover_members(&self) -> (Vec<handover::MemberState>, usize) {
        let members: Vec<Arc<Member>> = self
            .members
            .iter()
            .flat_map(|reg| {
                let reg = reg.lock().unwrap_or_else(PoisonError::into_inner);
                reg.values().cloned().collect::<Vec<_>>()
            })
            .collect();
        let mut out = Vec::with_capacity(members.len());
        let mut skipped = 0;
        for member in members {
            let st = member.state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.gone {
                continue;
            }
            let sessions: Vec<_> = st
                .slots
                .iter()
                .filter_map(|s| s.handover_state(self.config.grace))
                .collect();
            skipped += st.slots.len() - sessions.len();
            if sessions.is_empty() {
                continue;
            }
            let mut channels: Vec<String> = st.channels.iter().cloned().collect();
            channels.sort();
            out.push(handover::MemberState {
                key: member.key.to_string(),
                identity: member.identity.as_deref().map(str::to_owned),
                channels,
                sessions,
            });
        }
        (out, skipped)
    }

    /// Takes in what the previous process handed over, before serving: members, their
    /// channels and their sessions, each waiting out the grace time it had left, and the
    /// offset counter. No membership event, no presence change, no webhook.
    pub fn restore(self: &Arc<Self>, members: &[handover::MemberState], offset: u64) -> Restored {
        self.offsets.fetch_max(offset, Ordering::Relaxed);
        let mut done = Restored::default();
        for m in members {
            let key: Arc<str> = Arc::from(m.key.as_str());
            let member = Arc::new(Member {
                key: key.clone(),
                identity: m.identity.as_deref().map(Arc::from),
                state: Mutex::new(MemberState::default()),
            });
            let mut slots = Vec::new();
            for s in &m.sessions {
                match Slot::handed_over(&member, s, self.config.grace) {
                    Some(slot) => slots.push((slot, grace_left(s))),
                    None => done.skipped += 1,
                }
            }
            {
                let mut reg = self
                    .registry(&key)
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if slots.is_empty() || reg.contains_key(&key) {
                    done.skipped += slots.len();
                    continue;
                }
                reg.insert(key.clone(), member.clone());
            }
            let mut st = member.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.channels = m.channels.iter().cloned().collect::<HashSet<_>>();
            st.slots = slots.iter().map(|((slot, _), _)| slot.clone()).collect();
            for ch in &st.channels {
                let mut map = self
                    .shard(ch)
                    .channels
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let c = self.channel_entry(&mut map, ch);
                c.members.insert(key.clone(), member.clone());
                for ((slot, _), _) in &slots {
                    c.add_slot(slot);
                }
            }
            drop(st);
            for ((slot, epoch), left) in slots {
                if let (Some(pid), Ok(mut map)) = (slot.pid(), self.recovery.lock()) {
                    map.insert(pid, slot.clone());
                }
                let hub = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(left).await;
                    hub.expire(&slot, epoch);
                });
                done.sessions += 1;
            }
            done.members += 1;
        }
        done
    }
}

fn grace_left(s: &handover::SessionState) -> Duration {
    match &s.connection {
        Connection::Detached { grace_left_ms, .. } => Duration::from_millis(*grace_left_ms),
        Connection::Live { .. } => Duration::ZERO,
    }
}
