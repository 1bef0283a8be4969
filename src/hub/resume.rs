//! Resuming a session another node held: a client back with the pid and offset of a
//! session this node never had (its node died, or the balancer moved it). It is answered
//! as recovered at once and held; the cluster adopts its channels and fetches what it
//! missed from the message log, which is handed over before anything newer. When the log
//! cannot tell all of it, the connection is closed and the client's next attempt is a new
//! session: a gap is never passed off as a recovery.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::{Conn, Hub};
use crate::cluster::Replayed;
use crate::engineio::{CloseReason, Outgoing, Sid};
use crate::socketio::SioSocket;

/// Between the session id a cluster pid carries and its secret part (never in a sid).
const PID_SEP: char = '.';
/// How long a failed resumption is remembered, at least: the client comes back soon.
const REFUSED_FOR: Duration = Duration::from_secs(30);

/// A CONNECT that names a session of another node.
#[derive(Debug)]
pub(crate) struct Resume {
    pub(crate) sid: Sid,
    pub(crate) pid: Sid,
    offset: u64,
}

impl Hub {
    /// The session id (when the hub chooses it) and pid of a new session. In a cluster
    /// the pid carries the session id, so that another node resumes the same member (an
    /// anonymous member is its session id); the rest of it is the secret.
    pub(crate) fn new_session(&self) -> (Option<Sid>, Sid) {
        if !self.sequenced {
            return (None, Sid::random());
        }
        let sid = Sid::random();
        let pid = Sid::from(format!("{sid}{PID_SEP}{}", Sid::random()).as_str());
        (Some(sid), pid)
    }

    /// Whether a CONNECT of `pid`, which saw up to `offset`, may resume a session of
    /// another node: this node must not know the pid (else it decided already).
    pub(crate) fn resumable(&self, pid: &str, offset: Option<u64>) -> Option<Resume> {
        if !self.sequenced {
            return None;
        }
        let offset = offset.filter(|o| *o != 0 && self.bus.replayable(*o))?;
        let (sid, secret) = pid.split_once(PID_SEP)?;
        if sid.is_empty() || secret.is_empty() {
            return None;
        }
        let pid = Sid::from(pid);
        if self.recovery.lock().ok()?.contains_key(&pid) {
            return None;
        }
        let mut refused = self.unresumable.lock().ok()?;
        let now = Instant::now();
        refused.retain(|_, until| *until > now);
        if refused.contains_key(&pid) {
            return None;
        }
        Some(Resume {
            sid: Sid::from(sid),
            pid,
            offset,
        })
    }

    /// Right after the connection attached: holds its session while the cluster adopts
    /// its channels and fetches what it missed, then hands that over.
    pub(crate) fn resume(self: &Arc<Self>, conn: &Conn, socket: &Arc<SioSocket>, resume: Resume) {
        conn.slot.hold(socket);
        let Some(replay) = self
            .bus
            .resume(resume.pid.as_str(), &conn.member.key, resume.offset)
        else {
            return self.refuse_resume(conn, socket, &resume.pid, "the cluster keeps no log");
        };
        let (hub, conn, socket) = (self.clone(), conn.clone(), socket.clone());
        tokio::spawn(async move {
            let why = match replay.await {
                Ok(Ok(entries)) => {
                    let items = hub.missed(&conn, entries);
                    let n = items.len();
                    if conn.slot.release(&socket, items, hub.config.cache_limit) {
                        hub.counters.recovered.fetch_add(1, Ordering::Relaxed);
                        debug!(sid = %socket.sid, replayed = n, "session resumed from another node");
                        return;
                    }
                    "more arrived meanwhile than the cache holds".to_owned()
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the cluster stopped".to_owned(),
            };
            hub.refuse_resume(&conn, &socket, &resume.pid, &why);
        });
    }

    /// What of the log's `entries` the member receives, encoded with their offsets.
    fn missed(&self, conn: &Conn, entries: Vec<Replayed>) -> VecDeque<Outgoing> {
        let Ok(st) = conn.member.state.lock() else {
            return VecDeque::new();
        };
        let identity = conn.member.identity.as_deref();
        entries
            .into_iter()
            .filter(|e| match (&e.to, &e.envelope.channel) {
                (Some(to), _) => Some(to.as_str()) == identity,
                (None, Some(channel)) => st.channels.contains(channel),
                (None, None) => false,
            })
            .map(|e| e.envelope.encode(e.offset, e.attachments))
            .collect()
    }

    /// The session cannot be resumed exactly: it ends, and its client, whose connection
    /// is closed, gets a new session when it comes back.
    fn refuse_resume(&self, conn: &Conn, socket: &Arc<SioSocket>, pid: &Sid, why: &str) {
        info!(sid = %socket.sid, reason = why, "session of another node not recoverable; closing it");
        if let Ok(mut refused) = self.unresumable.lock() {
            refused.insert(
                pid.clone(),
                Instant::now() + REFUSED_FOR.max(self.config.grace),
            );
        }
        self.remove_slot(&conn.slot);
        socket.engine().close(CloseReason::TransportClose);
    }
}
