//! The hand-over state: every session of this node as plain data, and its binary format.
//!
//! The format, all integers little-endian:
//!
//! ```text
//! magic "RTHS" | version u16 | reserved u16 (0) | body length u64 | body | check [u8; 8]
//! ```
//!
//! `check` is the first 8 bytes of SHA-256 over everything before it: a state damaged in
//! transit is refused, not half-restored. In the body a string or a byte string is a u32
//! length and the bytes, a list is a u32 count and the items, an option is a u8 (0 none,
//! 1 some) and the value. Payloads are kept byte for byte (text frames as the JSON text
//! that was encoded once), so every number comes back exactly as it was written.
//!
//! Version 2 writes each queued item once: the body holds a table of every distinct item
//! (a broadcast sits in the queue of each of its recipients), and the queues, backlogs
//! and kept lists are lists of u32 indexes into it. It also records when it was written
//! ([`State::written_ms`]) and, for a polling session, what its client posted after the
//! session ended in the old process. Version 1 wrote every item inline.
//!
//! A new field means a new [`VERSION`]; the decoder of a release reads its own version and
//! the one before it, so an upgrade hands over and a downgrade starts fresh.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::engineio::Str;

/// The format this build writes.
pub const VERSION: u16 = 2;
/// The format before it, which this build still reads.
pub(super) const PREVIOUS: u16 = 1;
/// The largest state written or read (the header and check included). Far above what a
/// node holds (100k sessions with a full cache of small messages is some hundreds of MiB):
/// a bound, so a damaged length cannot make the reader allocate without end.
pub const MAX_STATE: usize = 1 << 30;

pub(super) const MAGIC: &[u8; 4] = b"RTHS";
/// Magic, version, reserved and body length.
pub(super) const HEADER: usize = 16;
pub(super) const CHECK: usize = 8;

/// Everything the next process needs to carry on where this one stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// When the state was written: milliseconds on `CLOCK_BOOTTIME` (see [`boot_ms`]);
    /// 0 when unknown (a version 1 state).
    pub written_ms: u64,
    /// The cluster node id, kept so the other nodes see no departure; `None` on a single node.
    pub node_id: Option<String>,
    /// The hub's last broadcast offset: offsets stay unique and increasing across the exec.
    pub offset: u64,
    /// Monitor events queued and not yet posted, as the JSON bodies they will be posted as.
    pub monitor: Vec<Bytes>,
    pub members: Vec<MemberState>,
}

/// One identity (all its tabs) or one anonymous connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// The member's key cluster-wide.
    pub key: String,
    pub identity: Option<String>,
    pub channels: Vec<String>,
    pub sessions: Vec<SessionState>,
}

/// One session of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// The Engine.IO session id.
    pub sid: String,
    /// `None` until the client joined the namespace.
    pub socket: Option<SocketState>,
    pub connection: Connection,
}

/// The Socket.IO socket on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketState {
    /// The socket id the client was told.
    pub id: String,
    /// The private id a client recovers its connection with (none when recovery is off).
    pub pid: Option<String>,
}

/// Whether the session is connected, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Live {
        transport: Transport,
        /// Milliseconds until the next ping is due.
        ping_due_ms: u64,
        /// Items queued and not yet written, oldest first.
        queued: Vec<Item>,
    },
    /// Away in the grace window.
    Detached {
        /// Milliseconds of the grace window left.
        grace_left_ms: u64,
        /// Tagged items the lost connection had queued, oldest first.
        backlog: Vec<Item>,
        /// Where in `backlog` the items the connection never took begin.
        unsent: u32,
        /// Items that arrived since (at most the cache limit).
        kept: Vec<Item>,
        /// More arrived than the cache holds: no exact replay.
        overflowed: bool,
    },
}

/// The transport of a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Polling: the session goes on under its sid (the session's `sid`). Its waiting GET
    /// was answered before the hand-over; the client polls the new process next.
    Polling {
        /// Packets the client posted after the session ended in the old process, in order,
        /// to be handled before anything else.
        inbound: Vec<Frame>,
    },
    WebSocket {
        /// Index of the client's socket among the descriptors handed over.
        fd: u32,
        /// Bytes read from the client and not yet taken as frames (a partial frame, or
        /// frames behind it), to be read before the socket.
        unread: Bytes,
    },
}

/// One item of an outbound queue: frames that go out together, with the item's offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Item {
    /// The offset given to a broadcast (0: untagged).
    pub tag: u64,
    pub frames: Vec<Frame>,
}

/// A text frame shares its bytes (the same broadcast in many queues is one copy, in this
/// process and in the one that reads the state).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    Text(Str),
    Binary(Bytes),
}

/// The state could not be written.
#[derive(Debug, thiserror::Error)]
#[error("the hand-over state would be {0} bytes, more than the {MAX_STATE} allowed")]
pub struct TooLarge(pub usize);

impl State {
    /// The state in the format of [`VERSION`].
    pub fn encode(&self) -> Result<Vec<u8>, TooLarge> {
        let table = Table::of(self);
        let mut w = Writer {
            out: Vec::with_capacity(4096),
            table: &table,
        };
        w.out.extend_from_slice(MAGIC);
        w.out.extend_from_slice(&VERSION.to_le_bytes());
        w.out.extend_from_slice(&0u16.to_le_bytes());
        w.out.extend_from_slice(&0u64.to_le_bytes());
        w.u64(self.written_ms);
        w.opt(self.node_id.as_deref(), Writer::str);
        w.u64(self.offset);
        w.list(&self.monitor, |w, b| w.bytes(b));
        w.list(&table.items, |w, item| w.item(item));
        w.list(&self.members, Writer::member);
        let total = w.out.len() + CHECK;
        if total > MAX_STATE {
            return Err(TooLarge(total));
        }
        let body = (w.out.len() - HEADER) as u64;
        w.out[8..HEADER].copy_from_slice(&body.to_le_bytes());
        let check = check(&w.out);
        w.out.extend_from_slice(&check);
        Ok(w.out)
    }

    /// How long ago the state was written (the time a restart took, read by the new
    /// process); zero when that is unknown.
    pub fn age(&self) -> Duration {
        match (self.written_ms, boot_ms()) {
            (0, _) | (_, None) => Duration::ZERO,
            (then, Some(now)) => Duration::from_millis(now.saturating_sub(then)),
        }
    }

    /// Takes the time since the state was written off every grace window: the clients
    /// were away for it too.
    pub fn subtract_age(&mut self) -> Duration {
        let age = self.age();
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        for s in self.members.iter_mut().flat_map(|m| &mut m.sessions) {
            if let Connection::Detached { grace_left_ms, .. } = &mut s.connection {
                *grace_left_ms = grace_left_ms.saturating_sub(ms);
            }
        }
        age
    }
}

/// Now on `CLOCK_BOOTTIME`, in milliseconds: the clock a state's age is measured on. One
/// clock for every process of the machine (the state never outlives a boot: it lives in
/// a memfd, or in systemd's store), never stepped (unlike `CLOCK_REALTIME`, which NTP or
/// an operator may set back or forth), and running during a suspend, when the clients'
/// grace time runs too (unlike `CLOCK_MONOTONIC`). `None` if the clock cannot be read.
pub(super) fn boot_ms() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let ms = u64::try_from(t.tv_sec()).ok()?.checked_mul(1000)?;
    ms.checked_add(u64::try_from(t.tv_nsec() / 1_000_000).ok()?)
}

/// Every distinct item of a state, in the order first met, each written once.
struct Table<'a> {
    items: Vec<&'a Item>,
    index: HashMap<&'a Item, u32>,
}

impl<'a> Table<'a> {
    fn of(state: &'a State) -> Table<'a> {
        let mut t = Table {
            items: Vec::new(),
            index: HashMap::new(),
        };
        for s in state.members.iter().flat_map(|m| &m.sessions) {
            let lists: [&[Item]; 2] = match &s.connection {
                Connection::Live { queued, .. } => [queued, &[]],
                Connection::Detached { backlog, kept, .. } => [backlog, kept],
            };
            for item in lists.into_iter().flatten() {
                let next = u32::try_from(t.items.len()).unwrap_or(u32::MAX);
                t.index.entry(item).or_insert_with(|| {
                    t.items.push(item);
                    next
                });
            }
        }
        t
    }
}

impl State {
    /// The descriptors of the sessions handed over with their WebSocket open.
    pub fn live_sockets(&self) -> Vec<u32> {
        self.members
            .iter()
            .flat_map(|m| &m.sessions)
            .filter_map(|s| match &s.connection {
                Connection::Live {
                    transport: Transport::WebSocket { fd, .. },
                    ..
                } => Some(*fd),
                _ => None,
            })
            .collect()
    }
}

/// The check over a header and body.
pub(super) fn check(data: &[u8]) -> [u8; CHECK] {
    let digest = Sha256::digest(data);
    let mut out = [0u8; CHECK];
    out.copy_from_slice(&digest[..CHECK]);
    out
}

struct Writer<'a> {
    out: Vec<u8>,
    table: &'a Table<'a>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Lengths past u32 cannot fit under [`MAX_STATE`]: saturating makes `encode` refuse.
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.out.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt<T: ?Sized>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }

    fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.len(items.len());
        for item in items {
            f(self, item);
        }
    }

    fn member(&mut self, m: &MemberState) {
        self.str(&m.key);
        self.opt(m.identity.as_deref(), Self::str);
        self.list(&m.channels, |w, c| w.str(c));
        self.list(&m.sessions, Self::session);
    }

    fn session(&mut self, s: &SessionState) {
        self.str(&s.sid);
        self.opt(s.socket.as_ref(), |w, sock| {
            w.str(&sock.id);
            w.opt(sock.pid.as_deref(), Self::str);
        });
        match &s.connection {
            Connection::Live {
                transport,
                ping_due_ms,
                queued,
            } => {
                self.u8(0);
                match transport {
                    Transport::Polling { inbound } => {
                        self.u8(0);
                        self.list(inbound, Self::frame);
                    }
                    Transport::WebSocket { fd, unread } => {
                        self.u8(1);
                        self.u32(*fd);
                        self.bytes(unread);
                    }
                }
                self.u64(*ping_due_ms);
                self.list(queued, Self::item_ref);
            }
            Connection::Detached {
                grace_left_ms,
                backlog,
                unsent,
                kept,
                overflowed,
            } => {
                self.u8(1);
                self.u64(*grace_left_ms);
                self.list(backlog, Self::item_ref);
                self.u32(*unsent);
                self.list(kept, Self::item_ref);
                self.u8(u8::from(*overflowed));
            }
        }
    }

    fn item(&mut self, item: &Item) {
        self.u64(item.tag);
        self.list(&item.frames, Self::frame);
    }

    /// An item as its index in the table (every item of the state is in it).
    fn item_ref(&mut self, item: &Item) {
        let index = self.table.index.get(item).copied().unwrap_or(u32::MAX);
        self.u32(index);
    }

    fn frame(&mut self, f: &Frame) {
        match f {
            Frame::Text(s) => {
                self.u8(0);
                self.str(s);
            }
            Frame::Binary(b) => {
                self.u8(1);
                self.bytes(b);
            }
        }
    }
}
