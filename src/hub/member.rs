//! Members and their sessions. A member is an identity (all its tabs) or one anonymous
//! connection; each of its sessions is a [`Slot`] that channels deliver to. A slot outlives
//! its connection for the grace window: it keeps what arrives, so a recovered connection or
//! a new tab of the identity gets it, in order, with nothing lost.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::engineio::{CloseReason, Outgoing, SendError, Sid};
use crate::socketio::{SessionTx, SioSocket};

mod handover;
pub(super) use handover::from_frame;

/// One identity, or one anonymous connection.
pub(crate) struct Member {
    /// The member's key cluster-wide (see [`crate::cluster::member_key`]).
    pub(crate) key: Arc<str>,
    pub(crate) identity: Option<Arc<str>>,
    /// Locked before any channel shard (lock order: member → channel → slot).
    pub(crate) state: Mutex<MemberState>,
}

#[derive(Default)]
pub(crate) struct MemberState {
    pub(crate) channels: HashSet<String>,
    pub(crate) slots: Vec<Arc<Slot>>,
    /// Set once the member left everything; a newcomer must make a new one.
    pub(crate) gone: bool,
}

impl Member {
    pub(crate) fn new(identity: Option<Arc<str>>, sid: &Sid) -> Member {
        let key = Arc::from(crate::cluster::member_key(
            identity.as_deref(),
            sid.as_str(),
        ));
        Member {
            key,
            identity,
            state: Mutex::new(MemberState::default()),
        }
    }
}

/// One session of a member, as channels see it.
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) member: Arc<Member>,
    /// Taken for every delivery: it orders deliveries against the switch between live and
    /// detached, which is what makes a replay exact.
    state: Mutex<SlotState>,
}

enum SlotState {
    Live(Live),
    Detached(Detached),
    Gone,
}

/// A connected session. Its queue is held here too, so a delivery reaches it without
/// going through the socket (one pointer less per recipient on the hot path).
struct Live {
    socket: Arc<SioSocket>,
    queue: SessionTx,
    /// The last offset a replay from another node's log gave: a broadcast at or below it
    /// that reaches this node late is one the session has already (0: none).
    floor: u64,
}

impl Live {
    fn state(socket: &Arc<SioSocket>) -> SlotState {
        SlotState::Live(Live {
            socket: socket.clone(),
            queue: socket.tx(),
            floor: 0,
        })
    }
}

/// A session whose connection went away, waiting out the grace window.
struct Detached {
    /// The connection it came from: only that one's end may still report in. None for a
    /// session handed over by the previous process (it has no connection here).
    from: Option<Arc<SioSocket>>,
    /// When it was detached, for the grace time left at a hand-over (tokio's clock, as the
    /// expiry timer's).
    since: tokio::time::Instant,
    sid: Sid,
    pid: Option<Sid>,
    /// Tagged items the lost session had queued, oldest first.
    backlog: VecDeque<Outgoing>,
    /// Where in `backlog` the items the session never took begin: those surely never
    /// reached the client.
    unsent: usize,
    /// Items that arrived since, at most the cache limit (the newest are kept).
    kept: VecDeque<Outgoing>,
    /// More arrived than the cache holds: an exact replay is impossible.
    overflowed: bool,
    /// A recovering connection claimed it; it keeps everything until handed over.
    claimed: bool,
    /// Distinguishes this detachment from a later one (for the expiry timer).
    epoch: u64,
    /// The connection's end has been seen (its backlog is in).
    closed: bool,
}

static SLOT_IDS: AtomicU64 = AtomicU64::new(1);
static EPOCHS: AtomicU64 = AtomicU64::new(1);

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Queued,
    Kept,
    /// Kept, and the cache was full: the oldest kept item was dropped for it.
    KeptEvicting,
    Dropped,
}

/// What became of a slot whose connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detach {
    /// It waits out the grace window; its expiry must match this epoch.
    Waiting(u64),
    /// It is over.
    Ended,
    /// Another connection had already taken it over.
    TakenOver,
}

/// A detached session handed to a recovering connection.
pub(crate) struct Claim {
    pub(crate) slot: Arc<Slot>,
    pub(crate) sid: Sid,
    pub(crate) pid: Option<Sid>,
}

impl Slot {
    pub(crate) fn live(member: Arc<Member>, socket: Arc<SioSocket>) -> Slot {
        Slot {
            id: SLOT_IDS.fetch_add(1, Ordering::Relaxed),
            member,
            state: Mutex::new(Live::state(&socket)),
        }
    }

    /// Delivers one item: queued on the live connection, or kept while detached.
    pub(crate) fn deliver(&self, item: &Outgoing, limit: usize) -> Delivery {
        let Ok(mut state) = self.state.lock() else {
            return Delivery::Dropped;
        };
        match &mut *state {
            SlotState::Live(live) if item.tag != 0 && item.tag <= live.floor => Delivery::Queued,
            SlotState::Live(live) => match live.queue.push(item.clone()) {
                Ok(()) => Delivery::Queued,
                Err((e, item)) => {
                    let socket = &live.socket;
                    if e == SendError::Full {
                        socket.engine().close(CloseReason::SlowClient);
                    }
                    // The connection is closing (too slow, or gone): keep what it could
                    // not take, so its recovery still gets everything in order.
                    let mut d = Detached::new(socket);
                    let kept = d.keep(item, limit);
                    *state = SlotState::Detached(d);
                    kept
                }
            },
            SlotState::Detached(d) => d.keep(item.clone(), limit),
            SlotState::Gone => Delivery::Dropped,
        }
    }

    /// The live session's queue, when its client is behind and still catching up.
    pub(crate) fn catching_up(&self) -> Option<SessionTx> {
        match self.state.lock().as_deref() {
            Ok(SlotState::Live(l)) if l.queue.is_catching_up() => Some(l.queue.clone()),
            _ => None,
        }
    }

    /// The live socket's connection ended. With `grace`, the slot keeps deliveries until
    /// its expiry; without, it is over.
    pub(crate) fn detach(
        &self,
        socket: &Arc<SioSocket>,
        backlog: (VecDeque<Outgoing>, usize),
        grace: bool,
    ) -> Detach {
        let Ok(mut state) = self.state.lock() else {
            return Detach::Ended;
        };
        let ours = match &*state {
            SlotState::Live(l) => Arc::ptr_eq(&l.socket, socket),
            // By the connection, not the sid: a recovered connection has its predecessor's.
            SlotState::Detached(d) => {
                d.from.as_ref().is_some_and(|f| Arc::ptr_eq(f, socket)) && !d.claimed && !d.closed
            }
            SlotState::Gone => false,
        };
        if !ours {
            // Another connection already took this slot over.
            return Detach::TakenOver;
        }
        if !grace {
            *state = SlotState::Gone;
            return Detach::Ended;
        }
        if let SlotState::Live(l) = &*state {
            *state = SlotState::Detached(Detached::new(&l.socket));
        }
        let SlotState::Detached(d) = &mut *state else {
            return Detach::Ended;
        };
        // What the session had queued came before anything kept since.
        (d.backlog, d.unsent) = backlog;
        d.closed = true;
        Detach::Waiting(d.epoch)
    }

    /// Whether this slot is detached and unclaimed with this epoch.
    fn detached_at(&self, epoch: u64) -> bool {
        matches!(self.state.lock().as_deref(), Ok(SlotState::Detached(d)) if d.epoch == epoch && !d.claimed)
    }

    /// Ends the slot if it still waits in detachment `epoch`; true when it did.
    pub(crate) fn expire(&self, epoch: u64) -> bool {
        if !self.detached_at(epoch) {
            return false;
        }
        if let Ok(mut state) = self.state.lock() {
            *state = SlotState::Gone;
        }
        true
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(self.state.lock().as_deref(), Ok(SlotState::Live(_)))
    }

    /// The detachment epoch, if detached and unclaimed.
    pub(crate) fn detached_epoch(&self) -> Option<u64> {
        match self.state.lock().as_deref() {
            Ok(SlotState::Detached(d)) if !d.claimed => Some(d.epoch),
            _ => None,
        }
    }

    pub(crate) fn pid(&self) -> Option<Sid> {
        match self.state.lock().as_deref() {
            Ok(SlotState::Detached(d)) => d.pid.clone(),
            Ok(SlotState::Live(l)) => l.socket.pid.clone(),
            _ => None,
        }
    }

    /// Claims a session for connection state recovery when an exact replay from `offset`
    /// (the last tag the client saw) is possible: a detached one, or one whose transport
    /// is still open (see [`Slot::take_over`]).
    pub(crate) fn claim(self: &Arc<Self>, pid: &str, offset: Option<u64>) -> Option<Claim> {
        let mut state = self.state.lock().ok()?;
        if let Some(claim) = self.take_over(&mut state, pid, offset) {
            return claim;
        }
        let SlotState::Detached(d) = &mut *state else {
            return None;
        };
        if d.claimed || d.overflowed || !d.closed || d.pid.as_ref().map(Sid::as_str) != Some(pid) {
            return None;
        }
        let start = replay_start(&d.backlog, offset)?;
        d.backlog.drain(..start);
        d.unsent = 0;
        d.claimed = true;
        Some(Claim {
            slot: self.clone(),
            sid: d.sid.clone(),
            pid: d.pid.clone(),
        })
    }

    /// A client is back while the server still holds its session open: its old connection
    /// died in silence (a NAT timeout, a network switch), or is closing but has not yet
    /// said so. The old transport is closed and everything it took or had queued becomes
    /// the backlog, since nothing written to it is known to have arrived; the replay starts
    /// from the client's offset. `None` when the session is not open (the caller goes on
    /// with a detached one), `Some(None)` when it is but cannot be recovered exactly.
    fn take_over(
        self: &Arc<Self>,
        state: &mut SlotState,
        pid: &str,
        offset: Option<u64>,
    ) -> Option<Option<Claim>> {
        let (old, kept) = match state {
            SlotState::Live(l) => (l.socket.clone(), VecDeque::new()),
            SlotState::Detached(d) if !d.closed && !d.claimed => {
                let from = d.from.clone()?;
                if d.overflowed {
                    return Some(None);
                }
                (from, std::mem::take(&mut d.kept))
            }
            _ => return None,
        };
        let refused = |state: &mut SlotState, kept: VecDeque<Outgoing>| {
            if let SlotState::Detached(d) = state {
                d.kept = kept;
            }
            Some(None)
        };
        if old.pid.as_ref().map(Sid::as_str) != Some(pid) {
            return refused(state, kept);
        }
        let engine = old.engine();
        let Some((mut backlog, _)) =
            engine.take_backlog(|items| replay_start(items, offset).is_some())
        else {
            return refused(state, kept);
        };
        engine.close(CloseReason::TransportClose);
        backlog.drain(..replay_start(&backlog, offset).unwrap_or(0));
        let mut d = Detached::new(&old);
        (d.backlog, d.kept) = (backlog, kept);
        (d.closed, d.claimed) = (true, true);
        let claim = Claim {
            slot: self.clone(),
            sid: d.sid.clone(),
            pid: d.pid.clone(),
        };
        *state = SlotState::Detached(d);
        Some(Some(claim))
    }

    /// Hands the slot to a new connection: first what the lost session had queued (all of
    /// it from the replay point with `with_backlog`, else only what it never took), then
    /// what was kept since, then everything new.
    pub(crate) fn attach(&self, socket: &Arc<SioSocket>, with_backlog: bool, limit: usize) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let SlotState::Detached(d) = &mut *state else {
            return false;
        };
        let mut items = std::mem::take(&mut d.backlog);
        if !with_backlog {
            items.drain(..d.unsent.min(items.len()));
        }
        items.append(&mut d.kept);
        *state = hand_over(socket, items, limit);
        true
    }

    /// Holds what arrives for the live `socket` instead of queueing it, while its
    /// session's earlier messages are fetched from elsewhere (resumption on another
    /// node). Its connection ending meanwhile detaches it as usual.
    pub(crate) fn hold(&self, socket: &Arc<SioSocket>) {
        if let Ok(mut state) = self.state.lock()
            && matches!(&*state, SlotState::Live(l) if Arc::ptr_eq(&l.socket, socket))
        {
            *state = SlotState::Detached(Detached::new(socket));
        }
    }

    /// Ends [`Slot::hold`]: `replay` (tagged, in order) goes first, then what was held
    /// that `replay` does not already hold, then everything new. False when an exact
    /// replay is impossible (more arrived than the cache holds, or the slot moved on).
    pub(crate) fn release(
        &self,
        socket: &Arc<SioSocket>,
        mut replay: VecDeque<Outgoing>,
        limit: usize,
    ) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let SlotState::Detached(d) = &mut *state else {
            return false;
        };
        if !d.from.as_ref().is_some_and(|f| Arc::ptr_eq(f, socket)) || d.claimed || d.overflowed {
            return false;
        }
        // Offsets grow in the log's order: a held item at or below the replay's last one
        // is in the replay already. Items without an offset (membership events) stay.
        let last = replay.iter().map(|i| i.tag).max().unwrap_or(0);
        replay.extend(d.kept.drain(..).filter(|i| i.tag == 0 || i.tag > last));
        if d.closed {
            // The connection ended meanwhile: it is in the grace window, holding all.
            d.backlog.append(&mut replay);
            return true;
        }
        *state = hand_over(socket, replay, limit);
        if let SlotState::Live(live) = &mut *state {
            live.floor = last;
        }
        true
    }

    pub(crate) fn end(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = SlotState::Gone;
        }
    }
}

/// The state of a slot whose `socket` takes `items` first: live, or detached again with
/// the rest kept when they are too much for its queue (it is closing as slow).
fn hand_over(socket: &Arc<SioSocket>, mut items: VecDeque<Outgoing>, limit: usize) -> SlotState {
    while let Some(item) = items.pop_front() {
        if let Err((_, item)) = socket.offer(item) {
            let mut d = Detached::new(socket);
            d.keep(item, limit);
            for rest in items.drain(..) {
                d.keep(rest, limit);
            }
            return SlotState::Detached(d);
        }
    }
    Live::state(socket)
}

/// Where in `backlog` the replay after `offset` (the last tag the client saw) starts, if
/// an exact one is possible.
fn replay_start(backlog: &VecDeque<Outgoing>, offset: Option<u64>) -> Option<usize> {
    match offset {
        None => Some(0),
        Some(seen) => match backlog.iter().position(|i| i.tag == seen) {
            Some(p) => Some(p + 1),
            // Nothing was queued since that offset: nothing to replay from the backlog.
            None if backlog.is_empty() => Some(0),
            // The offset fell out of the history: what followed it is unknown.
            None => None,
        },
    }
}

impl Detached {
    fn new(socket: &Arc<SioSocket>) -> Detached {
        Detached {
            from: Some(socket.clone()),
            since: tokio::time::Instant::now(),
            sid: socket.sid.clone(),
            pid: socket.pid.clone(),
            backlog: VecDeque::new(),
            unsent: 0,
            kept: VecDeque::new(),
            overflowed: false,
            claimed: false,
            epoch: EPOCHS.fetch_add(1, Ordering::Relaxed),
            closed: false,
        }
    }

    /// Keeps an item, dropping the oldest past the limit; says whether one was lost.
    fn keep(&mut self, item: Outgoing, limit: usize) -> Delivery {
        let mut kept = Delivery::Kept;
        // A claimed slot is about to be handed over: dropping now would break the replay.
        if !self.claimed && self.kept.len() >= limit {
            self.kept.pop_front();
            self.overflowed = true;
            kept = Delivery::KeptEvicting;
            if limit == 0 {
                return kept;
            }
        }
        self.kept.push_back(item);
        kept
    }
}
