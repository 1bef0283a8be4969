//! A slot written down for the next process, and made again from what was written.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;

use super::{Detached, EPOCHS, Member, SLOT_IDS, Slot, SlotState};
use crate::engineio::{Frame, Outgoing, Sid};
use crate::handover::{self, Connection, SessionState, SocketState};

impl Slot {
    /// The session as the hand-over state has it: only one waiting in its grace window
    /// with its backlog in (every session is there once the server closed them).
    ///
    /// A claimed one is a recovery the close cut short: its reply never reached the client,
    /// which will present the same offset again. Its backlog already starts after that
    /// offset, so it goes over as kept items with no backlog: a claim with no backlog
    /// replays the kept items whatever the offset, which is exactly what followed it.
    ///
    /// One whose WebSocket was kept open goes over live, its socket in `sockets` (passed
    /// across the exec), what it never took as its queue: the same connection carries on,
    /// so nothing written to it needs a replay. A polling one parked for the hand-over
    /// goes over live under its Engine.IO sid, what it took and never sent ahead of its
    /// queue, with the packets its client posted meanwhile.
    pub(crate) fn handover_state(
        &self,
        grace: Duration,
        sockets: &mut Vec<OwnedFd>,
    ) -> Option<SessionState> {
        let state = self.state.lock().ok()?;
        let SlotState::Detached(d) = &*state else {
            return None;
        };
        if !d.closed {
            return None;
        }
        let live = d.from.as_ref().and_then(|s| s.engine().take_live());
        if let Some((fd, unread)) = live
            && !d.claimed
            && !d.overflowed
            && d.pid.is_some()
            && crate::handover::keep_open(&fd).is_ok()
        {
            let queued = d
                .backlog
                .iter()
                .skip(d.unsent)
                .chain(d.kept.iter())
                .map(to_item)
                .collect();
            let index = u32::try_from(fd.as_raw_fd()).ok()?;
            sockets.push(fd);
            return Some(SessionState {
                sid: d.sid.as_str().to_owned(),
                socket: Some(SocketState {
                    id: d.sid.as_str().to_owned(),
                    pid: d.pid.as_ref().map(|p| p.as_str().to_owned()),
                }),
                connection: Connection::Live {
                    transport: handover::Transport::WebSocket { fd: index, unread },
                    ping_due_ms: 0,
                    queued,
                },
            });
        }
        let parked = match &d.from {
            Some(s) if !d.claimed && !d.overflowed && d.pid.is_some() => s.engine().take_parked(),
            _ => None,
        };
        if let Some((taken, inbound)) = parked {
            // What the session took and never sent goes first, then what it never took.
            let taken = (!taken.is_empty()).then(|| handover::Item {
                tag: 0,
                frames: taken.iter().map(to_frame).collect(),
            });
            let queued = taken
                .into_iter()
                .chain(
                    d.backlog
                        .iter()
                        .skip(d.unsent)
                        .chain(d.kept.iter())
                        .map(to_item),
                )
                .collect();
            let engine = d.from.as_ref().map(|s| s.engine().id.as_str().to_owned())?;
            return Some(SessionState {
                sid: engine,
                socket: Some(SocketState {
                    id: d.sid.as_str().to_owned(),
                    pid: d.pid.as_ref().map(|p| p.as_str().to_owned()),
                }),
                connection: Connection::Live {
                    transport: handover::Transport::Polling {
                        inbound: inbound.iter().map(to_frame).collect(),
                    },
                    ping_due_ms: 0,
                    queued,
                },
            });
        }
        let (backlog, unsent, kept) = if d.claimed {
            let kept = d.backlog.iter().chain(d.kept.iter()).map(to_item).collect();
            (Vec::new(), 0, kept)
        } else {
            (
                d.backlog.iter().map(to_item).collect(),
                u32::try_from(d.unsent).unwrap_or(u32::MAX),
                d.kept.iter().map(to_item).collect(),
            )
        };
        let left = grace.saturating_sub(d.since.elapsed());
        Some(SessionState {
            // The Engine.IO session is gone; the Socket.IO socket id is what a recovery gets.
            sid: d.sid.as_str().to_owned(),
            socket: Some(SocketState {
                id: d.sid.as_str().to_owned(),
                pid: d.pid.as_ref().map(|p| p.as_str().to_owned()),
            }),
            connection: Connection::Detached {
                grace_left_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                backlog,
                unsent,
                kept,
                overflowed: d.overflowed,
            },
        })
    }

    /// A slot of `member` waiting in its grace window (`grace` long), as the previous
    /// process left it; with the epoch its expiry must match. `None` for a session that is
    /// not detached or has no pid (nothing could ever recover it).
    pub(crate) fn handed_over(
        member: &Arc<Member>,
        s: &SessionState,
        grace: Duration,
    ) -> Option<(Arc<Slot>, u64)> {
        let empty = Vec::new();
        let (grace_left_ms, backlog, unsent, kept, overflowed) = match &s.connection {
            Connection::Detached {
                grace_left_ms,
                backlog,
                unsent,
                kept,
                overflowed,
            } => (*grace_left_ms, backlog, *unsent, kept, *overflowed),
            // Resumed on its socket right after: its queue is what it replays first.
            Connection::Live { queued, .. } => (
                u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
                queued,
                0,
                &empty,
                false,
            ),
        };
        let socket = s.socket.as_ref()?;
        let pid = Sid::from(socket.pid.as_deref()?);
        let epoch = EPOCHS.fetch_add(1, Ordering::Relaxed);
        let backlog: VecDeque<Outgoing> = backlog.iter().map(from_item).collect();
        // Backdated by the time already spent, so a later hand-over passes on what is left.
        let spent = grace.saturating_sub(Duration::from_millis(grace_left_ms));
        let now = Instant::now();
        let d = Detached {
            from: None,
            since: now.checked_sub(spent).unwrap_or(now),
            sid: Sid::from(socket.id.as_str()),
            pid: Some(pid),
            unsent: (unsent as usize).min(backlog.len()),
            backlog,
            kept: kept.iter().map(from_item).collect(),
            overflowed,
            claimed: false,
            epoch,
            closed: true,
        };
        let slot = Slot {
            id: SLOT_IDS.fetch_add(1, Ordering::Relaxed),
            member: member.clone(),
            state: Mutex::new(SlotState::Detached(d)),
        };
        Some((Arc::new(slot), epoch))
    }
}

fn to_item(o: &Outgoing) -> handover::Item {
    handover::Item {
        tag: o.tag,
        frames: o.frames().iter().map(to_frame).collect(),
    }
}

fn to_frame(f: &Frame) -> handover::Frame {
    match f {
        Frame::Text(s) => handover::Frame::Text(s.clone()),
        Frame::Binary(b) => handover::Frame::Binary(b.clone()),
    }
}

/// A frame of the state as the engine has it.
pub(crate) fn from_frame(f: &handover::Frame) -> Frame {
    match f {
        handover::Frame::Text(s) => Frame::Text(s.clone()),
        handover::Frame::Binary(b) => Frame::Binary(Bytes::clone(b)),
    }
}

fn from_item(i: &handover::Item) -> Outgoing {
    let frames: Vec<Frame> = i.frames.iter().map(from_frame).collect();
    let out = match <[Frame; 1]>::try_from(frames) {
        Ok([one]) => Outgoing::one(one),
        Err(many) => Outgoing::many(many),
    };
    out.tagged(i.tag)
}
