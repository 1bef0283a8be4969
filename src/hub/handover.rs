//! The hub written down for the next process, and made again from what was written: every
//! member with its channels and its sessions waiting in the grace window. Restoring
//! announces nothing: to everyone else the members never left.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::Hub;
use super::member::{Member, MemberState, Slot, from_frame};
use crate::handover::{self, Connection};

/// What a restore took in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    pub members: usize,
    pub sessions: usize,
    /// Sessions that could not be taken in (not waiting in a grace window, or no pid).
    pub skipped: usize,
    /// Sessions handed over with their WebSocket open, to resume on it.
    pub live: Vec<Live>,
    /// Polling sessions handed over live, to resume under their sid.
    pub polling: Vec<LivePoll>,
}

/// A polling session to resume under the Engine.IO sid its client polls with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePoll {
    pub sid: String,
    /// What its client posted to the previous process after the session ended there.
    pub inbound: Vec<crate::engineio::Frame>,
    /// As [`Live::auth`].
    pub auth: serde_json::Value,
}

/// A session to resume on the WebSocket the previous process kept open for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// The descriptor of its socket, as the state names it.
    pub fd: u32,
    /// What its client sent that was not read yet.
    pub unread: bytes::Bytes,
    /// The recovery auth its main namespace rejoins with: its identity, socket id and pid,
    /// no offset (everything queued for it is replayed).
    pub auth: serde_json::Value,
}

impl handover::Source for Hub {
    fn members(&self, sockets: &mut Vec<OwnedFd>) -> (Vec<handover::MemberState>, usize) {
        self.handover_members(sockets)
    }
    fn offset(&self) -> u64 {
        Hub::offset(self)
    }
}

impl Hub {
    /// The last offset given to a broadcast.
    pub fn offset(&self) -> u64 {
        self.offsets.load(Ordering::Relaxed)
    }

    /// Every member and its sessions waiting in the grace window, with how many sessions
    /// were not (still connected, or claimed by a recovering connection). Call once every
    /// session is closed, when nothing changes the hub any more.
    ///
    /// Sessions whose WebSocket was kept open go over live, their sockets in `sockets`.
    pub fn handover_members(
        &self,
        sockets: &mut Vec<OwnedFd>,
    ) -> (Vec<handover::MemberState>, usize) {
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
                .filter_map(|s| s.handover_state(self.config.grace, sockets))
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
                    Some(slot) => slots.push((slot, grace_left(s, self.config.grace))),
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
            for s in &m.sessions {
                let (Connection::Live { transport, .. }, Some(socket)) = (&s.connection, &s.socket)
                else {
                    continue;
                };
                let auth = serde_json::json!({
                    "identity": m.identity,
                    "sid": socket.id,
                    "pid": socket.pid,
                });
                match transport {
                    handover::Transport::WebSocket { fd, unread } => done.live.push(Live {
                        fd: *fd,
                        unread: unread.clone(),
                        auth,
                    }),
                    handover::Transport::Polling { inbound } => done.polling.push(LivePoll {
                        sid: s.sid.clone(),
                        inbound: inbound.iter().map(from_frame).collect(),
                        auth,
                    }),
                }
            }
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

/// The grace time a restored session waits for its connection: what it had left, or the
/// whole of it for one resumed on its own socket (should that fail, its client recovers).
fn grace_left(s: &handover::SessionState, grace: Duration) -> Duration {
    match &s.connection {
        Connection::Detached { grace_left_ms, .. } => Duration::from_millis(*grace_left_ms),
        Connection::Live { .. } => grace,
    }
}
